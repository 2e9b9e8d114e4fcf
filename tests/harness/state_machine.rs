//! Creating state machines from `statemachines/*.asl.json` (with the definition
//! substitutions SAM would apply) and running them in moto's engine.

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use serde_json::Value;

use crate::accounts::{REGION, STAGING_ACCOUNT};
use crate::workspace_root;

/// Step Functions in the staging account.
#[derive(Debug, Clone)]
pub struct StateMachines {
    sfn: aws_sdk_sfn::Client,
}

/// One history event, reduced to what tests and the demo read.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event type, e.g. `TaskStateEntered`, `TaskFailed`, `ExecutionSucceeded`.
    pub kind: String,
    /// The state the event belongs to (the last state entered).
    pub state: Option<String>,
    /// Error name of a failure event.
    pub error: Option<String>,
    /// Cause of a failure event.
    pub cause: Option<String>,
    /// Every input, output and parameters text the event carries (state input
    /// and output, task parameters and results, execution input and output).
    pub data: Vec<String>,
}

/// A started execution.
#[derive(Debug, Clone)]
pub struct Execution {
    sfn: aws_sdk_sfn::Client,
    /// Its ARN.
    pub arn: String,
    /// Its input.
    pub input: Value,
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED`.
    pub status: String,
    /// The output of a succeeded execution.
    pub output: Option<Value>,
    /// The error name of a failed one.
    pub error: Option<String>,
    /// The cause of a failed one.
    pub cause: Option<String>,
    /// The whole history.
    pub events: Vec<Event>,
}

impl Outcome {
    /// How many times `state` was entered.
    pub fn times_entered(&self, state: &str) -> usize {
        self.events
            .iter()
            .filter(|e| e.kind.ends_with("StateEntered") && e.state.as_deref() == Some(state))
            .count()
    }

    /// Error names of the failure events in the history.
    pub fn failure_errors(&self) -> Vec<String> {
        self.events.iter().filter(|e| e.kind.ends_with("Failed")).filter_map(|e| e.error.clone()).collect()
    }
}

impl StateMachines {
    /// Step Functions of the emulated staging account.
    pub fn new(staging: &aws_config::SdkConfig) -> Self {
        Self { sfn: aws_sdk_sfn::Client::new(staging) }
    }

    /// Creates `statemachines/<file>` as `name`, with `${Name}` placeholders
    /// replaced as SAM's `DefinitionSubstitutions` would: the functions' ARNs
    /// (the invoke host's), and `substitutions` (e.g. `MirrorShards`). Returns the ARN.
    pub async fn create(&self, name: &str, file: &str, substitutions: &[(String, String)]) -> String {
        let path = workspace_root().join("statemachines").join(file);
        let mut definition =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let defaults = function_arns().into_iter().chain(template_defaults());
        let given: Vec<String> = substitutions.iter().map(|(key, _)| key.clone()).collect();
        let defaults: Vec<(String, String)> = defaults.filter(|(key, _)| !given.contains(key)).collect();
        for (key, value) in substitutions.iter().cloned().chain(defaults) {
            definition = definition.replace(&format!("${{{key}}}"), &value);
        }
        if let Some(at) = definition.find("${") {
            panic!("{file}: no substitution for {}", &definition[at..definition.len().min(at + 40)]);
        }
        self.sfn
            .create_state_machine()
            .name(name)
            .definition(definition)
            .role_arn(format!("arn:aws:iam::{STAGING_ACCOUNT}:role/understudy-state-machines"))
            .send()
            .await
            .expect("create state machine")
            .state_machine_arn
    }

    /// The names of `state_machine_arn`'s executions, newest first.
    pub async fn execution_names(&self, state_machine_arn: &str) -> Vec<String> {
        let listed = self
            .sfn
            .list_executions()
            .state_machine_arn(state_machine_arn)
            .send()
            .await
            .expect("list executions");
        listed.executions().iter().map(|e| e.name().to_owned()).collect()
    }

    /// Starts a named execution (moto reuses the name `None` for unnamed ones).
    pub async fn start(&self, state_machine_arn: &str, name: &str, input: &Value) -> Execution {
        let arn = self
            .sfn
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .expect("start execution")
            .execution_arn;
        Execution { sfn: self.sfn.clone(), arn, input: input.clone() }
    }
}

impl Execution {
    /// Waits (up to `timeout`) for the execution to end, calling `on_event` for
    /// each history event as it appears.
    pub async fn watch(&self, timeout: Duration, mut on_event: impl FnMut(&Event)) -> Outcome {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            let described = self
                .sfn
                .describe_execution()
                .execution_arn(&self.arn)
                .send()
                .await
                .expect("describe execution");
            let events = self.history().await;
            for event in &events[seen..] {
                on_event(event);
            }
            seen = events.len();
            if described.status != ExecutionStatus::Running {
                let leaks = configuration_leaks(&events, &self.input);
                assert!(
                    leaks.is_empty(),
                    "execution {} carries configuration in its history: {leaks:#?}",
                    self.arn
                );
                return Outcome {
                    status: described.status.as_str().to_owned(),
                    output: described.output.as_deref().and_then(|o| serde_json::from_str(o).ok()),
                    error: described.error,
                    cause: described.cause,
                    events,
                };
            }
            assert!(Instant::now() < deadline, "execution {} still running after {timeout:?}", self.arn);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits (up to `timeout`) until `state` has been entered; panics if the
    /// execution ends first.
    pub async fn wait_until_entered(&self, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let history = self.history().await;
            if history.iter().any(|e| e.kind.ends_with("StateEntered") && e.state.as_deref() == Some(state)) {
                return;
            }
            let ended =
                history.iter().any(|e| e.kind.starts_with("Execution") && e.kind != "ExecutionStarted");
            assert!(!ended && Instant::now() < deadline, "`{state}` was never entered: {history:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Aborts the execution (StopExecution): it ends ABORTED, running no Catch.
    pub async fn stop(&self) {
        self.sfn.stop_execution().execution_arn(&self.arn).send().await.expect("stop execution");
    }

    /// Waits for the end without watching.
    pub async fn finish(&self, timeout: Duration) -> Outcome {
        self.watch(timeout, |_| {}).await
    }

    /// The execution's history so far, oldest first.
    pub async fn history(&self) -> Vec<Event> {
        let mut raw = Vec::new();
        let mut pages = self.sfn.get_execution_history().execution_arn(&self.arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            raw.extend(page.expect("get execution history").events);
        }
        let mut state = None;
        raw.iter().map(|event| simplify(event, &mut state)).collect()
    }
}

/// What an execution's history must never hold, found in `events`: the external
/// id, or a configuration document (an object with a `production` section naming
/// an account, or a `tag` section with a key and a value, as the effective
/// configuration has). The execution's own `input` is the caller's and is not
/// counted, wherever it is passed on. Every execution the tests watch is checked.
pub fn configuration_leaks(events: &[Event], input: &Value) -> Vec<String> {
    let mut leaks = Vec::new();
    for event in events {
        for text in &event.data {
            let state = event.state.as_deref().unwrap_or("-");
            if text.contains(crate::accounts::EXTERNAL_ID) {
                leaks.push(format!("{} in `{state}`: the external id: {text}", event.kind));
            }
            if let Ok(value) = serde_json::from_str::<Value>(text) {
                if let Some(found) = find_config(&value, input) {
                    leaks.push(format!("{} in `{state}`: a configuration document: {found}", event.kind));
                }
            }
        }
    }
    leaks
}

fn find_config(value: &Value, input: &Value) -> Option<Value> {
    if value == input {
        return None;
    }
    match value {
        Value::Object(fields) => {
            // The input's own fields, wherever a state carries them on (with `$.error`
            // beside them after a Catch, say), are the caller's.
            let own = |key: &str, field: &Value| input.get(key) == Some(field);
            let production = fields
                .get("production")
                .is_some_and(|p| !own("production", p) && p.get("account_id").is_some());
            let tag = fields
                .get("tag")
                .is_some_and(|t| !own("tag", t) && t.get("key").is_some() && t.get("value").is_some());
            if production || tag {
                return Some(value.clone());
            }
            fields.iter().filter(|(k, v)| !own(k, v)).find_map(|(_, v)| find_config(v, input))
        }
        Value::Array(items) => items.iter().find_map(|v| find_config(v, input)),
        _ => None,
    }
}

/// The other substitutions at the template's defaults: the account's default bus.
fn template_defaults() -> Vec<(String, String)> {
    vec![("EventBusName".to_owned(), DEFAULT_EVENT_BUS.to_owned())]
}

/// The template's default `EventBusName`: the account's default bus.
pub const DEFAULT_EVENT_BUS: &str = "default";

/// `<Name>FunctionArn` for every function the template's machines invoke.
fn function_arns() -> Vec<(String, String)> {
    [
        ("Snapshot", "snapshot"),
        ("Share", "share"),
        ("Restore", "restore"),
        ("Mirror", "mirror"),
        ("ScaleToZero", "scale-to-zero"),
        ("SmokeTest", "smoke-test"),
    ]
    .into_iter()
    .map(|(key, name)| {
        (format!("{key}FunctionArn"), format!("arn:aws:lambda:{REGION}:{STAGING_ACCOUNT}:function:{name}"))
    })
    .collect()
}

fn simplify(event: &HistoryEvent, current_state: &mut Option<String>) -> Event {
    if let Some(entered) = event.state_entered_event_details() {
        *current_state = Some(entered.name().to_owned());
    }
    let (error, cause) = if let Some(d) = event.task_failed_event_details() {
        (d.error(), d.cause())
    } else if let Some(d) = event.execution_failed_event_details() {
        (d.error(), d.cause())
    } else if let Some(d) = event.lambda_function_failed_event_details() {
        (d.error(), d.cause())
    } else {
        (None, None)
    };
    let data = [
        event.state_entered_event_details().and_then(|d| d.input()),
        event.state_exited_event_details().and_then(|d| d.output()),
        event.task_scheduled_event_details().map(|d| d.parameters()),
        event.task_succeeded_event_details().and_then(|d| d.output()),
        event.lambda_function_scheduled_event_details().and_then(|d| d.input()),
        event.lambda_function_succeeded_event_details().and_then(|d| d.output()),
        event.execution_started_event_details().and_then(|d| d.input()),
        event.execution_succeeded_event_details().and_then(|d| d.output()),
    ]
    .into_iter()
    .flatten()
    .map(str::to_owned)
    .collect();
    Event {
        kind: event.r#type().as_str().to_owned(),
        state: current_state.clone(),
        error: error.map(str::to_owned),
        cause: cause.map(str::to_owned),
        data,
    }
}
