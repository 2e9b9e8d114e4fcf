//! A Mermaid `stateDiagram-v2` of a definition, so an operator sees the flow
//! before opening the console: one box per state, choices' edges labelled with
//! their condition, failure edges labelled `error`, `Map` and `Parallel`
//! states drawn around their own states.

use std::fmt::Write;

use serde_json::Value;

/// The diagram of `definition`.
pub fn diagram(definition: &Value) -> String {
    let mut out = String::from("stateDiagram-v2\n");
    let mut ids = Ids::default();
    states(&mut out, definition, &mut ids, 1);
    out
}

#[derive(Default)]
struct Ids {
    next: usize,
}

impl Ids {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("s{}", self.next)
    }
}

/// Writes the states of `machine` (a definition, a branch or an item
/// processor: anything with `StartAt` and `States`).
fn states(out: &mut String, machine: &Value, ids: &mut Ids, indent: usize) {
    let pad = "    ".repeat(indent);
    let Some(map) = machine["States"].as_object() else { return };
    let order = crate::output::flow_order(map, machine["StartAt"].as_str().unwrap_or_default());
    let id_of: std::collections::HashMap<&str, String> =
        order.iter().map(|name| (name.as_str(), ids.fresh())).collect();
    for name in &order {
        let state = &map[name];
        let id = &id_of[name.as_str()];
        let nested: Vec<&Value> = match state["Type"].as_str() {
            Some("Map") => state.get("ItemProcessor").or(state.get("Iterator")).into_iter().collect(),
            Some("Parallel") => state["Branches"].as_array().into_iter().flatten().collect(),
            _ => Vec::new(),
        };
        if nested.is_empty() {
            writeln!(out, "{pad}state \"{}\" as {id}", label(name)).unwrap();
        } else {
            writeln!(out, "{pad}state \"{}\" as {id} {{", label(name)).unwrap();
            for (i, inner) in nested.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "{pad}    --").unwrap();
                }
                states(out, inner, ids, indent + 1);
            }
            writeln!(out, "{pad}}}").unwrap();
        }
    }
    if let Some(start) = machine["StartAt"].as_str().and_then(|s| id_of.get(s)) {
        writeln!(out, "{pad}[*] --> {start}").unwrap();
    }
    for name in &order {
        let state = &map[name];
        let from = &id_of[name.as_str()];
        let mut edge = |to: &str, text: Option<String>| {
            let to = id_of.get(to).map(String::as_str).unwrap_or("[*]");
            match text {
                Some(text) => writeln!(out, "{pad}{from} --> {to} : {}", label(&text)).unwrap(),
                None => writeln!(out, "{pad}{from} --> {to}").unwrap(),
            }
        };
        if let Some(next) = state["Next"].as_str() {
            edge(next, None);
        }
        for choice in state["Choices"].as_array().into_iter().flatten() {
            if let Some(next) = choice["Next"].as_str() {
                edge(next, Some(condition(choice)));
            }
        }
        if let Some(default) = state["Default"].as_str() {
            edge(default, Some("otherwise".into()));
        }
        for catch in state["Catch"].as_array().into_iter().flatten() {
            if let Some(next) = catch["Next"].as_str() {
                edge(next, Some("error".into()));
            }
        }
        let ends = matches!(state["Type"].as_str(), Some("Succeed" | "Fail")) || state["End"] == true;
        if ends {
            writeln!(out, "{pad}{from} --> [*]").unwrap();
        }
    }
}

/// A choice rule in words: `available`, `not settled`, `count >= max_polls`.
fn condition(rule: &Value) -> String {
    if let Some(all) = rule["And"].as_array() {
        return all
            .iter()
            .map(condition)
            .filter(|c| !c.ends_with(" present"))
            .collect::<Vec<_>>()
            .join(" and ");
    }
    if let Some(any) = rule["Or"].as_array() {
        return any.iter().map(condition).collect::<Vec<_>>().join(" or ");
    }
    if !rule["Not"].is_null() {
        return format!("not ({})", condition(&rule["Not"]));
    }
    let field = |path: &str| path.rsplit('.').next().unwrap_or(path).to_owned();
    let variable = field(rule["Variable"].as_str().unwrap_or("?"));
    let operators = [
        ("BooleanEquals", "=="),
        ("IsNull", "is null"),
        ("IsPresent", "present"),
        ("StringEquals", "=="),
        ("NumericEquals", "=="),
        ("NumericGreaterThanEquals", ">="),
        ("NumericGreaterThan", ">"),
        ("NumericLessThanEquals", "<="),
        ("NumericLessThan", "<"),
    ];
    for (operator, words) in operators {
        if let Some(value) = rule.get(operator) {
            return match (operator, value) {
                ("BooleanEquals", Value::Bool(true)) => variable,
                ("BooleanEquals", Value::Bool(false)) => format!("not {variable}"),
                ("IsNull" | "IsPresent", Value::Bool(true)) => format!("{variable} {words}"),
                ("IsNull" | "IsPresent", _) => format!("{variable} not {words}"),
                _ => format!("{variable} {words} {value}"),
            };
        }
        if let Some(path) = rule.get(format!("{operator}Path")).and_then(Value::as_str) {
            return format!("{variable} {words} {}", field(path));
        }
    }
    "condition".into()
}

/// Text Mermaid shows as is: no quotes, colons or semicolons.
fn label(text: &str) -> String {
    text.replace('"', "'").replace([':', ';'], " -").replace("  ", " ")
}
