//! Writing a definition as JSON a person can review: states in the order the
//! flow reaches them (failure paths last), and each state's fields in the order
//! the ASL specification lists them.

use std::collections::HashSet;
use std::fmt::Write;

use serde_json::{Map, Value};

/// Fields in the order they are written; any other field comes after these
/// and before [`TAIL`], alphabetically.
const HEAD: &[&str] = &[
    "Type",
    "Comment",
    "QueryLanguage",
    "StartAt",
    "TimeoutSeconds",
    "Type",
    "Resource",
    "FunctionName",
    "Payload",
    "Payload.$",
    "action",
    "InputPath",
    "Parameters",
    "ItemsPath",
    "ItemSelector",
    "MaxConcurrency",
    "ItemProcessor",
    "ProcessorConfig",
    "Mode",
    "Branches",
    "Result",
    "ResultSelector",
    "ResultPath",
    "OutputPath",
    "Seconds",
    "SecondsPath",
    "Variable",
    "Choices",
    "Default",
    "Error",
    "Cause",
    "ErrorPath",
    "CausePath",
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "JitterStrategy",
];
const TAIL: &[&str] = &["Retry", "Catch", "Next", "End", "States"];

/// The definition as pretty-printed JSON, ending with a newline.
pub fn to_json(definition: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, definition, 0, None);
    out.push('\n');
    out
}

fn rank(key: &str) -> (usize, &str) {
    if let Some(i) = HEAD.iter().position(|k| *k == key) {
        (i, "")
    } else if let Some(i) = TAIL.iter().position(|k| *k == key) {
        (HEAD.len() + 1 + i, "")
    } else {
        (HEAD.len(), key)
    }
}

fn write_value(out: &mut String, value: &Value, indent: usize, states_start: Option<&str>) {
    match value {
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            let keys = match states_start {
                Some(start) => flow_order(map, start),
                None => ordered_keys(map),
            };
            let start_at = map.get("StartAt").and_then(Value::as_str);
            out.push_str("{\n");
            for (i, key) in keys.iter().enumerate() {
                pad(out, indent + 1);
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                let inner = if key == "States" && states_start.is_none() { start_at } else { None };
                write_value(out, &map[key.as_str()], indent + 1, inner);
                out.push_str(if i + 1 < keys.len() { ",\n" } else { "\n" });
            }
            pad(out, indent);
            out.push('}');
        }
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            let items: Vec<String> = items.iter().map(Value::to_string).collect();
            write!(out, "[{}]", items.join(", ")).expect("writing to a String");
        }
        Value::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                pad(out, indent + 1);
                write_value(out, item, indent + 1, None);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            pad(out, indent);
            out.push(']');
        }
        scalar => write!(out, "{scalar}").expect("writing to a String"),
    }
}

fn pad(out: &mut String, indent: usize) {
    out.push_str(&"  ".repeat(indent));
}

fn ordered_keys(map: &Map<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = map.keys().cloned().collect();
    keys.sort_by(|a, b| rank(a).cmp(&rank(b)));
    keys
}

/// The names of a `States` object in the order the flow reaches them: depth
/// first along `Next`, `Choices` and `Default`; states reached only through a
/// `Catch` after those; anything left (unreachable) last, alphabetically.
pub(crate) fn flow_order(states: &Map<String, Value>, start: &str) -> Vec<String> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut later: Vec<String> = Vec::new();
    let mut stack: Vec<String> = vec![start.to_owned()];
    loop {
        while let Some(name) = stack.pop() {
            if !states.contains_key(&name) || !seen.insert(name.clone()) {
                continue;
            }
            let mut normal = Vec::new();
            for (target, via_catch) in successors(&states[&name]) {
                if via_catch {
                    later.push(target.to_owned());
                } else {
                    normal.push(target.to_owned());
                }
            }
            order.push(name);
            stack.extend(normal.into_iter().rev());
        }
        match later.iter().position(|n| !seen.contains(n)) {
            Some(i) => stack.push(later.remove(i)),
            None => break,
        }
    }
    let mut rest: Vec<String> = states.keys().filter(|k| !seen.contains(*k)).cloned().collect();
    rest.sort();
    order.extend(rest);
    order
}

/// A state's successors, each with whether it is reached through a `Catch`.
pub fn successors(state: &Value) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    if let Some(next) = state["Next"].as_str() {
        out.push((next, false));
    }
    for choice in state["Choices"].as_array().into_iter().flatten() {
        if let Some(next) = choice["Next"].as_str() {
            out.push((next, false));
        }
    }
    if let Some(default) = state["Default"].as_str() {
        out.push((default, false));
    }
    for catch in state["Catch"].as_array().into_iter().flatten() {
        if let Some(next) = catch["Next"].as_str() {
            out.push((next, true));
        }
    }
    out
}
