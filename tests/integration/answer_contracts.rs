//! The answer contracts: no state machine reads a field of a function's answer
//! that the answer can lack. On AWS a JSONPath that finds nothing is
//! `States.Runtime`, which no `Catch` catches (not even `States.ALL`), so a run
//! that hits one leaves whatever it made behind. moto's engine is lenient about
//! it, so this is proven from the answer types instead of by running.
//!
//! The proof reads each function's `answer_schema(action)` (the JSON Schema of
//! the action's answer type, as it serializes) and every state of every
//! `statemachines/*.asl.json`, including those inside `Parallel` branches and
//! `Map` processors:
//! - a Lambda task's function is named by `Parameters.FunctionName` (its
//!   `${...FunctionArn}` placeholder, resolved through infra/template.yaml to
//!   the function's binary) and its action by `Parameters.Payload.action`; a
//!   forwarded request (`Payload.$`) is the mirror's own `STEP_ACTION`;
//! - each `ResultSelector` value `$.Payload.a.b` must be guaranteed: every
//!   segment a required property, and every segment that is descended into
//!   non-nullable (the last one may be null: it is there);
//! - the answer lands at the task's `ResultPath`, under the `ResultSelector`'s
//!   field names (or as `Payload` without one). Every other read of state data
//!   in the same scope (Choice variables and `...Path` operands, `.$` values of
//!   `Parameters`/`ItemSelector` including paths inside intrinsic functions,
//!   `SecondsPath`, `TimestampPath`, `ItemsPath`, `InputPath`, `OutputPath`,
//!   `ErrorPath`, `CausePath`) that resolves into an answer must be guaranteed
//!   by every task writing there. A read under a `ResultSelector`'s output that
//!   names none of its fields is refused too. Reads guarded by `IsPresent: true`
//!   in the same `And` are allowed.
//!
//! Limits, on purpose: reads of the context object (`$$...`) and data that
//! flows through `Pass` states or `Map` items are not followed back to an answer.

use std::fs;

use schemars::Schema;
use serde_json::{Map, Value};
use understudy_tests::workspace_root;

/// A read of an answer field that the answer can lack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The state that reads.
    pub state: String,
    /// The JSONPath it reads.
    pub path: String,
    /// The function and action whose answer it reads.
    pub answer: String,
    /// Why the answer can lack it.
    pub reason: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "state `{}` reads `{}` of {}'s answer: {}", self.state, self.path, self.answer, self.reason)
    }
}

/// Finds a task's answer schema: `Err` says why there is none.
pub type AnswerSchemas<'a> = &'a dyn Fn(&str, &Value) -> Result<Schema, String>;

/// The functions' own answer schemas: `function` is the binary's name, `payload`
/// the task's `Parameters.Payload` (or `None` for a forwarded request).
fn answer_schema(function: &str, payload: &Value) -> Result<Schema, String> {
    let action = match payload.get("action").and_then(Value::as_str) {
        Some(action) => action,
        None if payload.is_null() && function == "mirror" => mirror::STEP_ACTION,
        None => return Err("the task's Payload names no literal `action`".into()),
    };
    let given = |field: &str| payload.get(field).is_some() || payload.get(format!("{field}.$")).is_some();
    let schema = match function {
        "restore" if action == "status" && given("snapshot") => restore::status_answer_schema("snapshot"),
        "restore" if action == "status" && given("database") => restore::status_answer_schema("database"),
        "restore" => restore::answer_schema(action),
        "snapshot" => snapshot::answer_schema(action),
        "share" => share::answer_schema(action),
        "mirror" => mirror::answer_schema(action),
        "scale-to-zero" => scale_to_zero::answer_schema(action),
        "smoke-test" => smoke_test::answer_schema(action),
        other => return Err(format!("no function `{other}`")),
    };
    schema.ok_or_else(|| format!("`{function}` has no action `{action}`"))
}

/// The function binary a `${XFunctionArn}` placeholder stands for, through
/// infra/template.yaml (`XFunctionArn: !GetAtt XFunction.Arn`, and that
/// resource's `Binary:`).
fn function_binary(template: &str, function_name: &str) -> Option<String> {
    let placeholder = function_name.strip_prefix("${")?.strip_suffix('}')?;
    let line = template.lines().find(|l| l.trim_start().starts_with(&format!("{placeholder}: !GetAtt ")))?;
    let resource = line.split("!GetAtt ").nth(1)?.trim().strip_suffix(".Arn")?;
    let start = template.find(&format!("\n  {resource}:\n"))?;
    let binary = template[start..].split("Binary: ").nth(1)?.lines().next()?.trim();
    Some(binary.to_owned())
}

/// `$.a.b` as `["a", "b"]`; `None` for the context object (`$$...`) and for
/// paths this check does not follow (brackets, wildcards).
fn segments(path: &str) -> Option<Vec<String>> {
    if path.starts_with("$$") {
        return None;
    }
    let rest = path.strip_prefix('$')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let rest = rest.strip_prefix('.')?;
    let parts: Vec<String> = rest.split('.').map(str::to_owned).collect();
    let plain = |p: &String| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    parts.iter().all(plain).then_some(parts)
}

/// Why `schema` does not guarantee `path` (`Ok` when it does).
fn guarantees(root: &Value, path: &[String]) -> Result<(), String> {
    guarantee_at(root, root, path, "the answer")
}

fn guarantee_at(root: &Value, node: &Value, path: &[String], at: &str) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else { return Ok(()) };
    let node = resolve(root, node);
    if let Some(variants) = node.get("anyOf").or_else(|| node.get("oneOf")).and_then(Value::as_array) {
        for variant in variants {
            guarantee_at(root, variant, path, at)?;
        }
        return Ok(());
    }
    if let Some(parts) = node.get("allOf").and_then(Value::as_array) {
        let errors: Vec<String> =
            parts.iter().filter_map(|part| guarantee_at(root, part, path, at).err()).collect();
        if errors.len() < parts.len() {
            return Ok(());
        }
        return Err(errors.join("; "));
    }
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.contains(&"null") {
        return Err(format!("{at} can be null"));
    }
    let Some(properties) = node.get("properties").and_then(Value::as_object) else {
        return Err(if node.get("additionalProperties").is_some() {
            format!("{at} is a map: no key is always there")
        } else if types.is_empty() {
            format!("{at} is any JSON: nothing below it is guaranteed")
        } else {
            format!("{at} is {}, with no fields", types.join(" or "))
        });
    };
    let Some(property) = properties.get(first) else {
        return Err(format!("{at} has no field `{first}`"));
    };
    let required =
        node.get("required").and_then(Value::as_array).is_some_and(|r| r.iter().any(|f| f == first));
    if !required {
        return Err(format!("`{first}` is not always present (an optional or skipped field)"));
    }
    guarantee_at(root, property, rest, &format!("`{first}`"))
}

/// Follows `$ref`s (`#/$defs/Name`).
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').unwrap_or(reference);
            resolve(root, root.pointer(pointer).unwrap_or(&Value::Null))
        }
        None => node,
    }
}

/// Where a task's answer (or anything else) lands in the state data.
struct Write {
    /// The state that writes.
    state: String,
    /// `ResultPath`, as segments.
    base: Vec<String>,
    /// What it writes there.
    what: Written,
}

enum Written {
    /// A Lambda task's answer: `fields` maps each written field (relative to
    /// `base`) to the answer path it holds (`None`: not the answer); `closed`
    /// when a `ResultSelector` says exactly which fields there are.
    Answer { answer: String, schema: Value, fields: Vec<(Vec<String>, Option<Vec<String>>)>, closed: bool },
    /// Anything else (a Pass state, a Map's results, a caught error).
    Other,
}

/// One read of state data.
struct Read {
    state: String,
    path: String,
    /// Paths an `IsPresent: true` in the same `And` guards.
    guarded: Vec<Vec<String>>,
}

/// Every violation of the answer contracts in `definition`, with the
/// functions' own answer schemas.
pub fn violations(definition: &Value) -> Vec<Violation> {
    let template = fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    violations_with(definition, &template, &answer_schema)
}

/// [`violations`] with answer schemas from `schemas`.
pub fn violations_with(definition: &Value, template: &str, schemas: AnswerSchemas) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut scopes = Vec::new();
    collect_scopes(definition["States"].as_object().expect("a definition has States"), &mut scopes, 0);
    for scope in scopes.iter().map(|(id, _)| *id).collect::<std::collections::BTreeSet<_>>() {
        let states: Vec<(&String, &Value)> =
            scopes.iter().filter(|(id, _)| *id == scope).flat_map(|(_, s)| s.iter().copied()).collect();
        let mut writes = Vec::new();
        for (name, state) in &states {
            collect_writes(name, state, template, schemas, &mut writes, &mut found);
        }
        let mut reads = Vec::new();
        for (name, state) in &states {
            collect_reads(name, state, &mut reads);
        }
        for read in reads {
            check_read(&read, &writes, &mut found);
        }
    }
    found
}

/// The states of each scope: the top level and `Parallel` branches share the
/// state data they start from; a `Map` processor's items are its own.
fn collect_scopes<'a>(
    states: &'a Map<String, Value>,
    scopes: &mut Vec<(usize, Vec<(&'a String, &'a Value)>)>,
    scope: usize,
) {
    scopes.push((scope, states.iter().collect()));
    for state in states.values() {
        if let Some(branches) = state["Branches"].as_array() {
            for branch in branches {
                collect_scopes(branch["States"].as_object().unwrap(), scopes, scope);
            }
        }
        let processor = state.get("ItemProcessor").or_else(|| state.get("Iterator"));
        if let Some(processor) = processor {
            let id = scopes.len() + 1_000;
            collect_scopes(processor["States"].as_object().unwrap(), scopes, id);
        }
    }
}

fn result_path(state: &Value) -> Option<Vec<String>> {
    match state.get("ResultPath") {
        None => Some(Vec::new()),
        Some(Value::Null) => None,
        Some(Value::String(path)) => segments(path),
        Some(_) => None,
    }
}

fn collect_writes(
    name: &str,
    state: &Value,
    template: &str,
    schemas: AnswerSchemas,
    writes: &mut Vec<Write>,
    found: &mut Vec<Violation>,
) {
    for catch in state["Catch"].as_array().into_iter().flatten() {
        if let Some(base) = result_path(catch) {
            writes.push(Write { state: name.to_owned(), base, what: Written::Other });
        }
    }
    let lambda = state["Type"] == "Task" && state["Resource"] == "arn:aws:states:::lambda:invoke";
    let base = result_path(state);
    if !lambda {
        if let (Some(base), true) =
            (base, matches!(state["Type"].as_str(), Some("Pass" | "Map" | "Parallel" | "Task")))
        {
            writes.push(Write { state: name.to_owned(), base, what: Written::Other });
        }
        return;
    }
    let parameters = &state["Parameters"];
    let function_name = parameters["FunctionName"].as_str().unwrap_or_default();
    let violation = |path: &str, answer: &str, reason: String| Violation {
        state: name.to_owned(),
        path: path.to_owned(),
        answer: answer.to_owned(),
        reason,
    };
    let Some(function) = function_binary(template, function_name) else {
        found.push(violation(function_name, "?", "no function in infra/template.yaml has this ARN".into()));
        return;
    };
    let payload = parameters.get("Payload").cloned().unwrap_or(Value::Null);
    let action = payload["action"].as_str().unwrap_or("(forwarded request)");
    let answer = format!("`{function}` `{action}`");
    let schema = match schemas(&function, &payload) {
        Ok(schema) => schema.to_value(),
        Err(reason) => {
            found.push(violation("Parameters.Payload", &answer, reason));
            return;
        }
    };
    let mut fields = Vec::new();
    let closed = state.get("ResultSelector").is_some();
    match state.get("ResultSelector") {
        Some(selector) => selector_fields(selector, &mut Vec::new(), &mut fields),
        None => fields.push((vec!["Payload".to_owned()], Some(Vec::new()))),
    }
    // The selector reads the task's result: `$.Payload...` is the answer.
    for (_, source) in &mut fields {
        if let Some(path) = source.take() {
            *source = path.strip_prefix(&["Payload".to_owned()]).map(<[String]>::to_vec);
        }
    }
    if closed {
        for (path, read) in selector_reads(&state["ResultSelector"]) {
            if let Some(Some(answer_path)) =
                segments(&path).map(|s| s.strip_prefix(&["Payload".to_owned()]).map(<[String]>::to_vec))
            {
                if let Err(reason) = guarantees(&schema, &answer_path) {
                    found.push(violation(&read, &answer, reason));
                }
            }
        }
    }
    if let Some(base) = base {
        writes.push(Write {
            state: name.to_owned(),
            base,
            what: Written::Answer { answer, schema, fields, closed },
        });
    }
}

/// A `ResultSelector`'s fields: each output path and, for a plain `.$` path,
/// the path of the result it copies.
fn selector_fields(
    selector: &Value,
    at: &mut Vec<String>,
    fields: &mut Vec<(Vec<String>, Option<Vec<String>>)>,
) {
    let Some(object) = selector.as_object() else { return };
    for (key, value) in object {
        match key.strip_suffix(".$") {
            Some(field) => {
                at.push(field.to_owned());
                fields.push((at.clone(), value.as_str().and_then(segments)));
                at.pop();
            }
            None if value.is_object() => {
                at.push(key.clone());
                selector_fields(value, at, fields);
                at.pop();
            }
            None => {
                at.push(key.clone());
                fields.push((at.clone(), None));
                at.pop();
            }
        }
    }
}

/// Every JSONPath a `ResultSelector` reads, with the path as written.
fn selector_reads(selector: &Value) -> Vec<(String, String)> {
    let mut reads = Vec::new();
    dollar_values(selector, &mut |value| {
        for path in json_paths_in(value) {
            reads.push((path.clone(), path));
        }
    });
    reads
}

/// Calls `each` with every string value of a `.$` key, at any depth.
fn dollar_values(value: &Value, each: &mut dyn FnMut(&str)) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match (key.ends_with(".$"), value.as_str()) {
                    (true, Some(text)) => each(text),
                    _ => dollar_values(value, each),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| dollar_values(item, each)),
        _ => {}
    }
}

fn collect_reads(name: &str, state: &Value, reads: &mut Vec<Read>) {
    let mut read = |path: &str, guarded: &[Vec<String>]| {
        for path in json_paths_in(path) {
            reads.push(Read { state: name.to_owned(), path, guarded: guarded.to_vec() });
        }
    };
    for key in
        ["SecondsPath", "TimestampPath", "ItemsPath", "InputPath", "OutputPath", "ErrorPath", "CausePath"]
    {
        if let Some(path) = state[key].as_str() {
            read(path, &[]);
        }
    }
    for key in ["Parameters", "ItemSelector"] {
        dollar_values(&state[key], &mut |value| read(value, &[]));
    }
    for rule in state["Choices"].as_array().into_iter().flatten() {
        choice_reads(rule, &[], &mut read);
    }
}

fn choice_reads(rule: &Value, guarded: &[Vec<String>], read: &mut dyn FnMut(&str, &[Vec<String>])) {
    if let Some(all) = rule["And"].as_array() {
        let mut guarded = guarded.to_vec();
        guarded.extend(
            all.iter()
                .filter(|r| r["IsPresent"] == true)
                .filter_map(|r| r["Variable"].as_str().and_then(segments)),
        );
        all.iter().for_each(|r| choice_reads(r, &guarded, read));
        return;
    }
    for key in ["Or", "Not"] {
        match &rule[key] {
            Value::Array(rules) => rules.iter().for_each(|r| choice_reads(r, guarded, read)),
            Value::Object(_) => choice_reads(&rule[key], guarded, read),
            _ => {}
        }
    }
    if rule.get("IsPresent").is_some() {
        return; // reading a path to ask whether it is there is always safe
    }
    if let Some(variable) = rule["Variable"].as_str() {
        read(variable, guarded);
    }
    for (key, value) in rule.as_object().into_iter().flatten() {
        if key.ends_with("Path") {
            if let Some(path) = value.as_str() {
                read(path, guarded);
            }
        }
    }
}

fn check_read(read: &Read, writes: &[Write], found: &mut Vec<Violation>) {
    let Some(path) = segments(&read.path) else { return };
    if read.guarded.iter().any(|g| path.starts_with(g)) {
        return;
    }
    let Some(longest) = writes.iter().filter(|w| path.starts_with(&w.base)).map(|w| w.base.len()).max()
    else {
        return;
    };
    let here: Vec<&Write> =
        writes.iter().filter(|w| w.base.len() == longest && path.starts_with(&w.base)).collect();
    let rest = &path[longest..];
    if rest.is_empty() {
        return;
    }
    let anything_else_writes_here = here.iter().any(|w| matches!(w.what, Written::Other));
    for write in here {
        let Written::Answer { answer, schema, fields, closed } = &write.what else { continue };
        let field = fields.iter().find(|(field, _)| rest.starts_with(field));
        let reason = match field {
            Some((field, Some(source))) => {
                let answer_path: Vec<String> = source.iter().chain(&rest[field.len()..]).cloned().collect();
                guarantees(schema, &answer_path).err()
            }
            Some((_, None)) => None,
            None if fields.iter().any(|(field, _)| field.starts_with(rest)) => None,
            None if *closed && !anything_else_writes_here => {
                let mut names: Vec<String> =
                    fields.iter().map(|(f, _)| format!("`{}`", f.join("."))).collect();
                names.sort();
                Some(format!("state `{}` writes only {} there", write.state, names.join(", ")))
            }
            None => None,
        };
        if let Some(reason) = reason {
            found.push(Violation {
                state: read.state.clone(),
                path: read.path.clone(),
                answer: format!("{answer} (state `{}`)", write.state),
                reason,
            });
        }
    }
}

/// JSONPaths of the state data (`$`, `$.a.b`) in a path or an intrinsic
/// function's arguments, without the context object's (`$$...`).
fn json_paths_in(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i] == '$' && (i == 0 || !is_path_char(chars[i - 1]) && chars[i - 1] != '$');
        if starts && chars.get(i + 1) != Some(&'$') {
            let mut end = i + 1;
            while end < chars.len() && (is_path_char(chars[end]) || chars[end] == '.') {
                end += 1;
            }
            paths.push(chars[i..end].iter().collect::<String>().trim_end_matches('.').to_owned());
            i = end;
        } else if chars[i] == '$' {
            while i < chars.len() && (chars[i] == '$' || is_path_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    paths
}

fn is_path_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

fn definitions() -> Vec<(String, Value)> {
    let mut files: Vec<_> = fs::read_dir(workspace_root().join("statemachines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".asl.json"))
        .map(|p| {
            let value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), value)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

fn fixture(name: &str) -> Value {
    let path = workspace_root().join("tests/fixtures").join(name);
    serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn no_state_machine_reads_an_answer_field_that_can_be_missing() {
    let machines = definitions();
    assert!(machines.len() >= 7, "{machines:?}");
    let mut all = Vec::new();
    for (file, definition) in &machines {
        all.extend(violations(definition).into_iter().map(|v| format!("{file}: {v}")));
    }
    assert!(all.is_empty(), "answers the state machines cannot rely on:\n{}", all.join("\n"));
}

#[test]
fn the_wrong_definition_is_rejected_for_each_wrong_read() {
    let found = violations(&fixture("wrong-answer-read.asl.json"));
    let reasons: Vec<String> = found.iter().map(ToString::to_string).collect();
    let has = |state: &str, path: &str, reason: &str| {
        found.iter().any(|v| v.state == state && v.path == path && v.reason.contains(reason))
    };
    assert!(
        has("Wake the live database if asleep", "$.Payload.identifier", "has no field `identifier`"),
        "a made-up field: {reasons:#?}"
    );
    assert!(
        has("Is the database known?", "$.restop.database.identifier", "`database` can be null"),
        "a field below a nullable one: {reasons:#?}"
    );
    assert!(
        has("Is the live database stopped?", "$.live.status", "writes only `asleep`, `exists`, `target`"),
        "a field the ResultSelector did not keep: {reasons:#?}"
    );
    assert!(
        has("Say which run", "$.live.asleep.since", "is boolean, with no fields"),
        "a path through an intrinsic function: {reasons:#?}"
    );
    assert!(found.iter().all(|v| v.state != "Was it asleep, if known?"), "a guarded read: {reasons:#?}");
    assert_eq!(found.len(), 4, "{reasons:#?}");
    assert!(found[0].answer.contains("`restore` `wake-live`"), "{reasons:#?}");
}

/// `wake-live`'s answer before the fix: no `database` without a live database.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct WakeLiveBeforeTheFix {
    was_asleep: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<restore::DatabaseRef>,
}

#[test]
fn the_first_refresh_bug_is_what_the_check_catches() {
    let refresh = definitions().into_iter().find(|(f, _)| f == "refresh.asl.json").unwrap().1;
    let template = fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    let before = |function: &str, payload: &Value| match payload["action"].as_str() {
        Some("wake-live") => Ok(understudy_shared::answer::schema_of::<WakeLiveBeforeTheFix>()),
        _ => answer_schema(function, payload),
    };
    let found = violations_with(&refresh, &template, &before);
    assert!(
        found.iter().any(|v| v.state == "Wake the live database if asleep"
            && v.path == "$.Payload.database"
            && v.reason.contains("not always present")),
        "{found:#?}"
    );
}

#[test]
fn placeholders_name_the_function_binaries() {
    let template = fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    assert_eq!(function_binary(&template, "${RestoreFunctionArn}").as_deref(), Some("restore"));
    assert_eq!(function_binary(&template, "${ScaleToZeroFunctionArn}").as_deref(), Some("scale-to-zero"));
    assert_eq!(json_paths_in("States.Format('{}-{}', $.a.b, $$.Execution.Name)"), ["$.a.b"]);
    assert_eq!(json_paths_in("$"), ["$"]);
}

#[test]
fn reads_through_the_state_data_are_checked_in_every_scope() {
    let machine = |file: &str| definitions().into_iter().find(|(f, _)| f == file).unwrap().1;
    let mut sleep = machine("sleep.asl.json");
    sleep["States"]["Is staging settled?"]["Choices"][0]["Variable"] = "$.sleep.counts.slept".into();
    let found = violations(&sleep);
    assert!(
        found.iter().any(|v| v.state == "Is staging settled?" && v.reason.contains("is a map")),
        "{found:#?}"
    );
    let mut mirror = machine("mirror.asl.json");
    let step = &mut mirror["States"]["Mirror each bucket"]["ItemProcessor"]["States"];
    step["Is the bucket mirrored?"]["Choices"][0]["Variable"] = "$.step.resume.phase".into();
    let found = violations(&mirror);
    assert!(
        found.iter().any(|v| v.state == "Is the bucket mirrored?"
            && v.answer.contains("`mirror` `(forwarded request)`")
            && v.reason.contains("writes only")),
        "inside a Map processor: {found:#?}"
    );
}

/// A function's `answer_schema`.
type SchemaOf = fn(&str) -> Option<Schema>;

/// Each function's action list and its answer schemas: no action without one.
#[test]
fn every_action_of_every_function_has_an_answer_schema() {
    let functions: [(&str, &[&str], SchemaOf); 6] = [
        ("snapshot", snapshot::ACTIONS, snapshot::answer_schema),
        ("share", share::ACTIONS, share::answer_schema),
        ("restore", restore::ACTIONS, restore::answer_schema),
        ("mirror", mirror::ACTIONS, mirror::answer_schema),
        ("scale-to-zero", scale_to_zero::ACTIONS, scale_to_zero::answer_schema),
        ("smoke-test", smoke_test::ACTIONS, smoke_test::answer_schema),
    ];
    for (function, actions, schema) in functions {
        for action in actions {
            assert!(schema(action).is_some(), "{function}: `{action}` has no answer schema");
        }
        assert!(schema("explode").is_none(), "{function}: an unknown action has no schema");
    }
    assert!(
        restore::status_answer_schema("snapshot").is_some()
            && restore::status_answer_schema("database").is_some()
    );
}
