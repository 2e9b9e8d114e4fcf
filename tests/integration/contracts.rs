//! The contracts between the pieces: example events parse into the functions'
//! request types, every state machine retries exactly the retryable error names,
//! every placeholder has a SAM substitution, every function has a template entry.

use std::fs;

use serde_json::Value;
use understudy_shared::config::EnvironmentConfig;
use understudy_shared::scale::ScaleDocument;
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

#[test]
fn every_function_event_parses_and_its_config_validates() {
    let events: Vec<_> =
        json_files("tests/events").into_iter().filter(|(n, _)| !n.starts_with("statemachine-")).collect();
    assert!(events.len() >= 18, "{events:?}");
    for (name, event) in events {
        let config = event["config"].clone();
        if name.starts_with("scale-to-zero-") {
            // Reads only its own sections of the document: no production account needed.
            scale_to_zero::ScaleRequest::parse(event).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !config.is_null() {
                ScaleDocument::from_value(config).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            continue;
        }
        let parsed = match name.split('-').next().unwrap() {
            "snapshot" => snapshot::SnapshotRequest::parse(event).map(drop),
            "share" => share::Request::parse(event).map(drop),
            "restore" => restore::Request::parse(event).map(drop),
            "mirror" => mirror::MirrorFunctionRequest::parse(event).map(drop),
            other => panic!("{name}: no function `{other}`"),
        };
        parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
        if config.is_null() {
            continue; // the mirror takes its buckets directly, not the config document
        }
        let config = EnvironmentConfig::from_value(config).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name.starts_with("restore-") {
            config.require_database().unwrap().check_refresh().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn execution_inputs_only_use_config_sections() {
    let known =
        ["environment", "production", "staging", "database", "buckets", "tag", "poll", "retention", "scale"];
    // The restop machine's input is the RDS event EventBridge delivers, not a config.
    for (name, input) in json_files("tests/events")
        .into_iter()
        .filter(|(n, _)| n.starts_with("statemachine-") && !n.starts_with("statemachine-restop-"))
    {
        for key in input.as_object().unwrap().keys() {
            assert!(known.contains(&key.as_str()), "{name}: `{key}` is not a config section");
        }
    }
}

fn task_states(definition: &Value) -> Vec<(String, Value)> {
    definition["States"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| s["Type"] == "Task")
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect()
}

#[test]
fn every_task_retries_exactly_the_retryable_errors_and_catches_the_rest() {
    let machines = json_files("statemachines");
    assert!(!machines.is_empty());
    for (file, definition) in machines {
        assert_eq!(definition["QueryLanguage"], "JSONPath", "{file}: the local engine runs JSONPath only");
        for (state, task) in task_states(&definition) {
            let mut retried: Vec<&str> = task["Retry"]
                .as_array()
                .unwrap_or_else(|| panic!("{file} / {state}: no Retry"))
                .iter()
                .flat_map(|r| r["ErrorEquals"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()))
                .collect();
            retried.sort();
            let mut expected: Vec<&str> =
                LAMBDA_SERVICE_ERRORS.iter().chain(Error::RETRYABLE).copied().collect();
            expected.sort();
            assert_eq!(retried, expected, "{file} / {state}: retries exactly the retryable names");
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
