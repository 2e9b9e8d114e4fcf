//! The contracts between the pieces: example events parse into the functions'
//! request types, every state machine retries exactly the retryable error names,
//! every placeholder has a SAM substitution, every function has a template entry.

use std::fs;

use serde_json::{json, Value};
use understudy_shared::config::EnvironmentConfig;
use understudy_shared::deployment::Deployment;
use understudy_shared::error::PUBLISH_RETRY;
use understudy_shared::Error;
use understudy_tests::stack::function_names;
use understudy_tests::workspace_root;

const LAMBDA_SERVICE_ERRORS: &[&str] = &[
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

fn json_files(dir: &str) -> Vec<(String, Value)> {
    let mut files: Vec<_> = fs::read_dir(workspace_root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap();
            let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), value)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// The configuration an event's `config` (or a machine's execution input) makes
/// on an example deployment.
fn assemble(name: &str, input: &Value) -> EnvironmentConfig {
    EnvironmentConfig::assemble(&Deployment::example(), None, input).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_function_event_parses_and_its_config_assembles() {
    let events: Vec<_> = json_files("tests/events")
        .into_iter()
        .filter(|(n, _)| !n.starts_with("statemachine-") && !n.starts_with("lifecycle-"))
        .collect();
    assert!(events.len() >= 20, "{events:?}");
    for (name, event) in events {
        let input = event["config"]["input"].clone();
        let parsed = match name.split('-').next().unwrap() {
            "snapshot" => snapshot::SnapshotRequest::parse(event).map(drop),
            "share" => share::Request::parse(event).map(drop),
            "restore" => restore::Request::parse(event).map(drop),
            "mirror" => mirror::MirrorFunctionRequest::parse(event).map(drop),
            "scale" => scale_to_zero::ScaleRequest::parse(event).map(drop),
            "smoke" => smoke_test::SmokeRequest::parse(event).map(drop),
            "trigger" => serde_json::from_value::<trigger::DeployEvent>(event)
                .map(drop)
                .map_err(|e| understudy_shared::Error::InvalidInput(e.to_string())),
            other => panic!("{name}: no function `{other}`"),
        };
        parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
        if input.is_null() {
            continue; // a mirror step names its bucket pair; `begin` its execution input
        }
        let config = assemble(&name, &input);
        if name.starts_with("restore-") {
            config.require_database().unwrap().check_refresh().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// The published lifecycle events (`lifecycle-*.json`, as a rule target receives
/// them): source `understudy`, a known detail type, a detail of the documented shape.
#[test]
fn every_lifecycle_event_example_has_the_published_shape() {
    use understudy_shared::lifecycle::{EventDetail, Lifecycle, EVENT_SOURCE};
    let examples: Vec<_> =
        json_files("tests/events").into_iter().filter(|(n, _)| n.starts_with("lifecycle-")).collect();
    assert!(examples.len() >= 4, "{examples:?}");
    for (name, event) in examples {
        assert_eq!(event["source"], EVENT_SOURCE, "{name}");
        let detail_type = event["detail-type"].as_str().unwrap();
        let lifecycle = Lifecycle::ALL
            .into_iter()
            .find(|l| l.detail_type() == detail_type)
            .unwrap_or_else(|| panic!("{name}: unknown detail type `{detail_type}`"));
        assert_eq!(name, format!("lifecycle-{}.json", lifecycle.as_str()), "named after its event");
        let detail: EventDetail = serde_json::from_value(event["detail"].clone())
            .unwrap_or_else(|e| panic!("{name}: the detail does not parse: {e}"));
        assert_eq!(
            (detail.machine.as_str(), detail.outcome.as_str()),
            (lifecycle.machine(), lifecycle.outcome())
        );
        assert_eq!(
            detail.error.is_some(),
            lifecycle.outcome() == "failed",
            "{name}: an error exactly when failed"
        );
        assert!(
            event["resources"].as_array().unwrap().iter().any(|r| r == &json!(detail.execution)),
            "{name}"
        );
    }
}

#[test]
fn execution_inputs_are_small_overrides_that_assemble() {
    // The restop machine's input is the RDS event EventBridge delivers, not an override.
    for (name, input) in json_files("tests/events")
        .into_iter()
        .filter(|(n, _)| n.starts_with("statemachine-") && !n.starts_with("statemachine-restop-"))
    {
        assemble(&name, &input);
    }
}

/// Every `Task` state with whether it needs its own `Catch`: top-level and
/// `Parallel` branch tasks do; a `Map` processor's tasks fail their `Map`, whose
/// `Catch` handles them.
fn task_states(states: &Value, needs_catch: bool, found: &mut Vec<(String, Value, bool)>) {
    for (name, state) in states.as_object().unwrap() {
        if state["Type"] == "Task" {
            found.push((name.clone(), state.clone(), needs_catch));
        }
        for branch in state["Branches"].as_array().into_iter().flatten() {
            task_states(&branch["States"], needs_catch, found);
        }
        if let Some(processor) = state.get("ItemProcessor") {
            assert!(state.get("Catch").is_some(), "{name}: a Map catches its processor's errors");
            task_states(&processor["States"], false, found);
        }
    }
}

#[test]
fn every_task_retries_exactly_the_retryable_errors_and_catches_the_rest() {
    let machines = json_files("statemachines");
    assert!(!machines.is_empty());
    for (file, definition) in machines {
        assert_eq!(definition["QueryLanguage"], "JSONPath", "{file}: the local engine runs JSONPath only");
        let mut tasks = Vec::new();
        task_states(&definition["States"], true, &mut tasks);
        for (state, task, needs_catch) in tasks {
            let mut retried: Vec<&str> = task["Retry"]
                .as_array()
                .unwrap_or_else(|| panic!("{file} / {state}: no Retry"))
                .iter()
                .flat_map(|r| r["ErrorEquals"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()))
                .collect();
            retried.sort();
            let mut expected: Vec<&str> = if task["Resource"] == "arn:aws:states:::events:putEvents" {
                PUBLISH_RETRY.errors.to_vec()
            } else {
                LAMBDA_SERVICE_ERRORS.iter().chain(Error::RETRYABLE).copied().collect()
            };
            expected.sort();
            assert_eq!(retried, expected, "{file} / {state}: retries exactly the retryable names");
            if !needs_catch {
                continue;
            }
            let caught: Vec<&str> = task["Catch"]
                .as_array()
                .unwrap_or_else(|| panic!("{file} / {state}: no Catch"))
                .iter()
                .flat_map(|c| c["ErrorEquals"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()))
                .collect();
            assert!(caught.contains(&"States.ALL"), "{file} / {state}: terminal errors must be caught");
        }
    }
}

#[test]
fn every_placeholder_has_a_definition_substitution_in_the_template() {
    let template = fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    for (file, _) in json_files("statemachines") {
        let text = fs::read_to_string(workspace_root().join("statemachines").join(&file)).unwrap();
        for placeholder in text.split("${").skip(1).map(|rest| rest.split('}').next().unwrap()) {
            assert!(
                template.contains(&format!("        {placeholder}: ")),
                "{file}: ${{{placeholder}}} has no DefinitionSubstitutions entry in infra/template.yaml"
            );
        }
    }
}

#[test]
fn every_function_has_a_template_entry_and_an_example_event() {
    let template = fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    let events: Vec<String> = json_files("tests/events").into_iter().map(|(n, _)| n).collect();
    for function in function_names() {
        assert!(template.contains(&format!("Binary: {function}")), "{function}: no function in the template");
        assert!(
            events.iter().any(|e| e.starts_with(&format!("{function}-"))),
            "{function}: no example event"
        );
    }
}

/// Every example of README's configuration section, checked against what `validate`
/// accepts: a `<!-- config example: Name=value ... -->` line before a JSON block is a
/// document stored by a stack deployed with those parameters, an `input example` an
/// execution input on such a stack.
#[test]
fn every_configuration_example_in_the_readme_is_accepted() {
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let mut checked = 0;
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("<!-- ") else { continue };
        let Some((kind, parameters)) = rest.strip_suffix(" -->").and_then(|r| r.split_once(" example: "))
        else {
            continue;
        };
        let overrides: Vec<(&str, &str)> =
            parameters.split_whitespace().map(|p| p.split_once('=').expect("Name=value")).collect();
        assert_eq!(lines.next(), Some("```json"), "README: a JSON block follows `{line}`");
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let value: Value = serde_json::from_str(&block.join("\n")).unwrap_or_else(|e| panic!("{line}: {e}"));
        let deployment = Deployment::example_with(&overrides).unwrap_or_else(|e| panic!("{line}: {e}"));
        let config = match kind {
            "config" => EnvironmentConfig::assemble(&deployment, Some(&value), &serde_json::json!({})),
            "input" => EnvironmentConfig::assemble(&deployment, None, &value),
            other => panic!("README: unknown example kind `{other}`"),
        }
        .unwrap_or_else(|e| panic!("README example `{line}`: {e}"));
        if let Some(database) = &config.database {
            if database.target.is_some() {
                database.check_refresh().unwrap_or_else(|e| panic!("README example `{line}`: {e}"));
            }
        }
        checked += 1;
    }
    assert!(checked >= 7, "{checked} README examples");
}
