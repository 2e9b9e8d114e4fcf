//! The few plain helpers every machine is built from: a Lambda task with the
//! suite's one `Retry` list and a `Catch` to the machine's failure path, a
//! bounded poll loop, and the states around them. Each returns plain
//! `serde_json::Value`s; [`States`] collects them under their names.

use serde_json::{json, Map, Value};
use understudy_shared::error::{RetryRule, PUBLISH_RETRY, RETRY_POLICY};
use understudy_shared::lifecycle::{Lifecycle, EVENT_SOURCE};
use understudy_shared::poll::PollKind;

/// The task resource every Lambda step uses.
pub const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";

/// A function of the suite, as the definitions name it: a SAM
/// `DefinitionSubstitutions` placeholder for its ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `functions/snapshot`.
    Snapshot,
    /// `functions/share`.
    Share,
    /// `functions/restore`.
    Restore,
    /// `functions/mirror`.
    Mirror,
    /// `functions/scale-to-zero`.
    ScaleToZero,
    /// `functions/smoke-test`.
    SmokeTest,
}

impl Function {
    /// Every function, for lookups by placeholder.
    pub const ALL: [Function; 6] = [
        Function::Snapshot,
        Function::Share,
        Function::Restore,
        Function::Mirror,
        Function::ScaleToZero,
        Function::SmokeTest,
    ];

    /// The `${...}` placeholder SAM replaces with the function's ARN.
    pub fn placeholder(self) -> &'static str {
        match self {
            Function::Snapshot => "${SnapshotFunctionArn}",
            Function::Share => "${ShareFunctionArn}",
            Function::Restore => "${RestoreFunctionArn}",
            Function::Mirror => "${MirrorFunctionArn}",
            Function::ScaleToZero => "${ScaleToZeroFunctionArn}",
            Function::SmokeTest => "${SmokeTestFunctionArn}",
        }
    }

    /// The function's crate and binary name (`functions/<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Function::Snapshot => "snapshot",
            Function::Share => "share",
            Function::Restore => "restore",
            Function::Mirror => "mirror",
            Function::ScaleToZero => "scale-to-zero",
            Function::SmokeTest => "smoke-test",
        }
    }

    /// The function a `FunctionName` placeholder names.
    pub fn from_placeholder(placeholder: &str) -> Option<Function> {
        Self::ALL.into_iter().find(|f| f.placeholder() == placeholder)
    }
}

/// States under their names. Names are sentences (`Wait for the snapshot`,
/// `Is the copy available?`) and unique within a machine.
#[derive(Debug, Default, Clone)]
pub struct States {
    states: Map<String, Value>,
}

impl States {
    /// No states yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `state` as `name`; a name used twice is a bug in the generator.
    pub fn add(&mut self, name: &str, state: Value) -> &mut Self {
        assert!(self.states.insert(name.to_owned(), state).is_none(), "state `{name}` is defined twice");
        self
    }

    /// Adds every state of `other`.
    pub fn extend(&mut self, other: States) -> &mut Self {
        for (name, state) in other.states {
            self.add(&name, state);
        }
        self
    }

    /// The `States` object.
    pub fn into_value(self) -> Value {
        Value::Object(self.states)
    }
}

/// The suite's one `Retry` list, from [`RETRY_POLICY`].
pub fn retry() -> Value {
    retry_list(RETRY_POLICY)
}

fn retry_list(rules: &[RetryRule]) -> Value {
    Value::Array(
        rules
            .iter()
            .map(|rule| {
                json!({
                    "ErrorEquals": rule.errors,
                    "IntervalSeconds": rule.interval_seconds,
                    "MaxAttempts": rule.max_attempts,
                    "BackoffRate": number(rule.backoff_rate),
                    "JitterStrategy": "FULL",
                })
            })
            .collect(),
    )
}

/// The task resource that publishes lifecycle events.
pub const PUT_EVENTS: &str = "arn:aws:states:::events:putEvents";

/// Where the `announce` answer lands before it is published.
pub const ANNOUNCED: &str = "$.announced";

/// The two states that announce `event`: the scale-to-zero function's
/// `announce` builds the detail from the state data (`$`, read leniently, so it
/// works on every path), then `events:putEvents` publishes it on the stack's bus
/// (`${EventBusName}`) with source `understudy`. Both go to `catch` on an error.
pub fn announce_states(event: Lifecycle, announce: &str, publish: &str, catch: Catch, next: &str) -> States {
    let mut states = States::new();
    states.add(
        announce,
        lambda(
            Function::ScaleToZero,
            json!({
                "action": "announce",
                "event": event.as_str(),
                "execution.$": "$$.Execution.Id",
                "started.$": "$$.Execution.StartTime",
                "now.$": "$$.State.EnteredTime",
                "input.$": "$$.Execution.Input",
                "state.$": "$",
            }),
        )
        .comment(&format!(
            "The detail of `{}`, from what the run holds (no configuration).",
            event.detail_type()
        ))
        .select(&["detail_type", "detail"])
        .result_path(ANNOUNCED)
        .catch(catch.clone())
        .next(publish)
        .build(),
    );
    states.add(
        publish,
        json!({
            "Type": "Task",
            "Resource": PUT_EVENTS,
            "Parameters": {"Entries": [{
                "Source": EVENT_SOURCE,
                "DetailType.$": format!("{ANNOUNCED}.detail_type"),
                "Detail.$": format!("{ANNOUNCED}.detail"),
                "EventBusName": "${EventBusName}",
            }]},
            "ResultPath": null,
            "Retry": retry_list(&[PUBLISH_RETRY]),
            "Catch": catch.to_value(),
            "Next": next,
        }),
    );
    states
}

/// Where `take-lease` answers: `{taken, holder}`.
pub const LEASE: &str = "$.lease";

/// The run lock's first states, right after the config preamble and before
/// any change: `take` takes the environment's lease (scale-to-zero's
/// `take-lease`, see `understudy_shared::lease`), reclaiming one whose holder
/// has ended. When another running execution holds it, the run ends SUCCEEDED
/// with `{"skipped": "busy", "holder"}` having changed nothing, so a scheduled
/// sleep during a refresh raises no alarm. Otherwise `next`; errors to `failure`.
pub fn take_lease_states(take: &str, next: &str, failure: &str) -> States {
    let choice = "Is the environment free?";
    let busy = "Report the busy environment";
    let skipped = "Skipped: the environment is busy";
    let mut states = States::new();
    states.add(
        take,
        lambda(Function::ScaleToZero, json!({"action": "take-lease", "execution.$": "$$.Execution.Id"}))
            .comment("One run at a time per environment: a conditional write of this execution's ARN (S3 If-None-Match) in the stack's LeaseBucket; a lease whose holder is no longer RUNNING is reclaimed.")
            .select(&["taken", "holder"])
            .result_path(LEASE)
            .catch(Catch::to(failure))
            .next(choice)
            .build(),
    );
    states.add(
        choice,
        with_comment(
            when_true(&format!("{LEASE}.taken"), next, busy),
            "Busy: another run of this environment is in flight.",
        ),
    );
    states.add(
        busy,
        report(
            "The execution's output: which run holds the environment. Nothing was changed.",
            json!({"skipped": "busy", "holder.$": format!("{LEASE}.holder")}),
            skipped,
        ),
    );
    states.add(skipped, succeed());
    states
}

/// Releases the run lock if this execution holds it (a no-op otherwise, so
/// every end may pass here), then `next`. A failed release does not change how
/// the run ends: the next run reclaims the lease of an ended holder.
pub fn release_lease(next: &str) -> Value {
    lambda(Function::ScaleToZero, json!({"action": "release-lease", "execution.$": "$$.Execution.Id"}))
        .comment("Deletes the lease only if this execution holds it.")
        .select(&["released"])
        .result_path("$.released")
        .catch(Catch::keeping(next, "$.release_error"))
        .next(next)
        .build()
}

/// A `Pass` that records when it was entered at `$.clock.<mark>` (`{"at": TIME}`),
/// for the lifecycle event's stage durations.
pub fn clock_mark(mark: &str, next: &str) -> Value {
    json!({
        "Type": "Pass",
        "Parameters": {"at.$": "$$.State.EnteredTime"},
        "ResultPath": format!("$.clock.{mark}"),
        "Next": next,
    })
}

/// A `Pass` that records which stage failed (`$.failed.stage`) before the failure path `next`.
pub fn failed_stage(stage: &str, next: &str) -> Value {
    json!({
        "Type": "Pass",
        "Comment": "Names the failed stage for the Refresh Failed event.",
        "Result": {"stage": stage},
        "ResultPath": "$.failed",
        "Next": next,
    })
}

/// A JSON number, integral when it can be (`2`, not `2.0`).
pub fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// Where a task's error goes: a `Catch` on `States.ALL` to `next`, the error
/// (`{Error, Cause}`) stored at `result_path`.
#[derive(Debug, Clone)]
pub struct Catch {
    /// The state that handles the failure.
    pub next: String,
    /// Where the error object lands (`$.error` on the main failure path).
    pub result_path: String,
}

impl Catch {
    /// Every error to `next`, stored at `$.error`.
    pub fn to(next: &str) -> Self {
        Self { next: next.to_owned(), result_path: "$.error".to_owned() }
    }

    /// Every error to `next`, stored at `result_path` (so an earlier `$.error`
    /// survives a failing clean-up step).
    pub fn keeping(next: &str, result_path: &str) -> Self {
        Self { next: next.to_owned(), result_path: result_path.to_owned() }
    }

    fn to_value(&self) -> Value {
        json!([{"ErrorEquals": ["States.ALL"], "ResultPath": self.result_path, "Next": self.next}])
    }
}

/// A Lambda task: `lambda:invoke` of one function with one payload, the suite's
/// `Retry` list, and (outside a `Map` whose own `Catch` handles it) a `Catch`.
#[derive(Debug, Clone)]
pub struct Task {
    function: Function,
    payload: Value,
    comment: Option<String>,
    selector: Option<Value>,
    result_path: Option<String>,
    catch: Option<Catch>,
    next: Option<String>,
}

/// A Lambda task calling `function` with `payload` (an object whose `...$`
/// fields are JSONPaths, or a JSONPath string for the whole payload).
pub fn lambda(function: Function, payload: Value) -> Task {
    Task { function, payload, comment: None, selector: None, result_path: None, catch: None, next: None }
}

/// `{"action": action, "run_id.$": "$$.Execution.Name", "config.$": "$.config"}`
/// plus `extra`: the payload most steps send.
pub fn run_payload(action: &str, extra: Value) -> Value {
    let mut payload = json!({"action": action, "run_id.$": "$$.Execution.Name"});
    merge_into(&mut payload, extra);
    payload["config.$"] = json!("$.config");
    payload
}

/// `{"action": action, "config.$": "$.config"}` plus `extra`.
pub fn config_payload(action: &str, extra: Value) -> Value {
    let mut payload = json!({"action": action});
    merge_into(&mut payload, extra);
    payload["config.$"] = json!("$.config");
    payload
}

fn merge_into(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        target.extend(extra);
    }
}

impl Task {
    /// A comment on the state (why it is there).
    pub fn comment(mut self, comment: &str) -> Self {
        self.comment = Some(comment.to_owned());
        self
    }

    /// Keeps these fields of the answer (`"f.$": "$.Payload.f"`).
    pub fn select(mut self, fields: &[&str]) -> Self {
        let selector: Map<String, Value> =
            fields.iter().map(|f| (format!("{f}.$"), json!(format!("$.Payload.{f}")))).collect();
        self.selector = Some(Value::Object(selector));
        self
    }

    /// A `ResultSelector` of its own.
    pub fn selector(mut self, selector: Value) -> Self {
        self.selector = Some(selector);
        self
    }

    /// Where the (selected) answer lands.
    pub fn result_path(mut self, path: &str) -> Self {
        self.result_path = Some(path.to_owned());
        self
    }

    /// Where an error goes.
    pub fn catch(mut self, catch: Catch) -> Self {
        self.catch = Some(catch);
        self
    }

    /// The next state.
    pub fn next(mut self, next: &str) -> Self {
        self.next = Some(next.to_owned());
        self
    }

    /// The state.
    pub fn build(self) -> Value {
        let mut state = json!({"Type": "Task"});
        if let Some(comment) = self.comment {
            state["Comment"] = json!(comment);
        }
        state["Resource"] = json!(LAMBDA_INVOKE);
        state["Parameters"] = match self.payload {
            Value::String(path) => json!({"FunctionName": self.function.placeholder(), "Payload.$": path}),
            payload => json!({"FunctionName": self.function.placeholder(), "Payload": payload}),
        };
        if let Some(selector) = self.selector {
            state["ResultSelector"] = selector;
        }
        if let Some(path) = self.result_path {
            state["ResultPath"] = json!(path);
        }
        state["Retry"] = retry();
        if let Some(catch) = &self.catch {
            state["Catch"] = catch.to_value();
        }
        match self.next {
            Some(next) => state["Next"] = json!(next),
            None => state["End"] = json!(true),
        }
        state
    }
}

/// A `Wait` of `seconds_path` seconds.
fn wait(seconds_path: &str, next: &str) -> Value {
    json!({"Type": "Wait", "SecondsPath": seconds_path, "Next": next})
}

/// A `Choice` going to `next` when the boolean at `variable` is true, else to `otherwise`.
pub fn when_true(variable: &str, next: &str, otherwise: &str) -> Value {
    json!({
        "Type": "Choice",
        "Choices": [{"Variable": variable, "BooleanEquals": true, "Next": next}],
        "Default": otherwise,
    })
}

/// Adds a comment to a state built by one of the helpers.
pub fn with_comment(mut state: Value, comment: &str) -> Value {
    state["Comment"] = json!(comment);
    state
}

/// A bounded poll loop: `Wait` → a status task → `Choice`, back to the `Wait`
/// until the boolean at `done` is true.
///
/// The loop counts its polls in `$.poll`, starting from the kind's plan that
/// `validate` answered (`$.waits.<kind>`, see `understudy_shared::poll`). Each
/// wait doubles the last one up to the plan's cap; after `max_polls` polls the
/// loop gives up with `WaitTimedOut`, naming what it awaited and for how long,
/// and goes to `failure`, the same path as any other error. A status that needs
/// an operator is the status task's own error (e.g. `DatabaseFailed`), so it
/// fails at once.
#[derive(Debug, Clone)]
pub struct PollLoop {
    /// What is awaited, as the wait's name goes on: `for the restore`.
    pub what: String,
    /// The kind of wait (its plan and its `config.poll` fields).
    pub kind: PollKind,
    /// Name of the status task.
    pub check: String,
    /// Name of the `Choice`.
    pub choice: String,
    /// The status task, without `Next`.
    pub task: Task,
    /// The boolean that ends the loop.
    pub done: String,
    /// Where to go when done.
    pub then: String,
    /// Where to go after `WaitTimedOut`.
    pub failure: String,
    /// Whether the loop looks before its first wait (actions that are their own status).
    pub look_first: bool,
    /// A comment on the `Choice`.
    pub choice_comment: Option<String>,
    /// How the loop fails when it gives up, instead of `WaitTimedOut`.
    pub gives_up_with: Option<GiveUp>,
}

/// A poll loop's own failure at its bound: an error name and the cause's `States.Format` expression.
#[derive(Debug, Clone)]
pub struct GiveUp {
    /// The error name (e.g. `SmokeTestFailed`).
    pub error: String,
    /// An intrinsic expression for the cause.
    pub cause: String,
}

/// The error a poll loop ends with when it gives up.
pub const WAIT_TIMED_OUT: &str = "WaitTimedOut";

impl PollLoop {
    /// The loop's entry: the state that starts its count.
    pub fn start(&self) -> String {
        format!("Start waiting {}", self.what)
    }

    /// The `Wait` state's name.
    pub fn wait(&self) -> String {
        format!("Wait {}", self.what)
    }

    /// The loop's states.
    pub fn states(self) -> States {
        let (start, wait_name) = (self.start(), self.wait());
        let longer = format!("Wait longer {}", self.what);
        let same = format!("Keep waiting {}", self.what);
        let give_up = format!("Give up waiting {}", self.what);
        let kind = self.kind.as_str();
        let mut states = States::new();
        states.add(
            &start,
            json!({
                "Type": "Pass",
                "Comment": format!("Counts this loop's polls from the {kind} wait plan (config.poll.{kind}_*)."),
                "InputPath": format!("$.waits.{kind}"),
                "ResultPath": "$.poll",
                "Next": if self.look_first { &self.check } else { &wait_name },
            }),
        );
        states.add(&wait_name, wait("$.poll.seconds", &self.check));
        states.add(&self.check, self.task.next(&self.choice).build());
        let mut choice = json!({
            "Type": "Choice",
            "Choices": [
                {"Variable": self.done, "BooleanEquals": true, "Next": self.then},
                {"Variable": "$.poll.count", "NumericGreaterThanEqualsPath": "$.poll.max_polls", "Next": give_up},
                {"Variable": "$.poll.doubled", "NumericLessThanEqualsPath": "$.poll.cap", "Next": longer},
            ],
            "Default": same,
        });
        if let Some(comment) = &self.choice_comment {
            choice = with_comment(choice, comment);
        }
        states.add(&self.choice, choice);
        let counted = |seconds: &str, doubled: &str| {
            json!({
                "count.$": "States.MathAdd($.poll.count, 1)",
                "seconds.$": seconds,
                "doubled.$": doubled,
                "cap.$": "$.poll.cap",
                "max_polls.$": "$.poll.max_polls",
                "timeout_minutes.$": "$.poll.timeout_minutes",
            })
        };
        states.add(
            &longer,
            json!({
                "Type": "Pass",
                "Comment": "One more poll; the next wait is twice the last.",
                "Parameters": counted("$.poll.doubled", "States.MathAdd($.poll.doubled, $.poll.doubled)"),
                "ResultPath": "$.poll",
                "Next": wait_name,
            }),
        );
        states.add(
            &same,
            json!({
                "Type": "Pass",
                "Comment": "One more poll; the wait stays at its cap.",
                "Parameters": counted("$.poll.cap", "States.MathAdd($.poll.cap, $.poll.cap)"),
                "ResultPath": "$.poll",
                "Next": wait_name,
            }),
        );
        let (error, cause) = match &self.gives_up_with {
            Some(give_up) => (give_up.error.clone(), give_up.cause.clone()),
            None => (
                WAIT_TIMED_OUT.to_owned(),
                format!(
                    "States.Format('Gave up waiting {} after {{}} polls over {{}} minutes (config.poll.{kind}_timeout_minutes).', $.poll.count, $.poll.timeout_minutes)",
                    self.what
                ),
            ),
        };
        states.add(
            &give_up,
            json!({
                "Type": "Pass",
                "Comment": format!("The {kind} timeout passed: {error}, handled like any other failure."),
                "Parameters": {"Error": error, "Cause.$": cause},
                "ResultPath": "$.error",
                "Next": self.failure,
            }),
        );
        states
    }
}

/// Poll loops of each kind in a definition (their starting states read `$.waits.<kind>`).
pub fn poll_loops(definition: &Value, kind: PollKind) -> u32 {
    let input_path = format!("$.waits.{}", kind.as_str());
    let mut count = 0;
    visit_states(definition, &mut |state| {
        if state["Type"] == "Pass" && state["InputPath"] == input_path.as_str() {
            count += 1;
        }
    });
    count
}

/// Calls `f` on every state of `machine`, nested ones (`Map`, `Parallel`) too.
pub fn visit_states(machine: &Value, f: &mut impl FnMut(&Value)) {
    for state in machine["States"].as_object().into_iter().flat_map(|m| m.values()) {
        f(state);
        for inner in state.get("ItemProcessor").or(state.get("Iterator")).into_iter() {
            visit_states(inner, f);
        }
        for branch in state["Branches"].as_array().into_iter().flatten() {
            visit_states(branch, f);
        }
    }
}

/// Seconds each task may take in the worst case, retries included, in a
/// machine's `TimeoutSeconds` backstop.
pub const TASK_ALLOWANCE_SECONDS: u64 = 3600;

/// A machine's `TimeoutSeconds`: longer than every poll loop's longest accepted
/// timeout plus every task's allowance plus `extra`, so it only ever ends a run
/// whose own bounds failed. (An execution that times out runs no `Catch`.)
pub fn timeout_seconds(definition: &Value, extra: u64) -> u64 {
    let waits: u64 = PollKind::ALL
        .iter()
        .map(|k| u64::from(poll_loops(definition, *k)) * u64::from(k.max_timeout_minutes()) * 60)
        .sum();
    let mut tasks = 0;
    visit_states(definition, &mut |state| {
        if state["Type"] == "Task" {
            tasks += 1;
        }
    });
    waits + tasks * TASK_ALLOWANCE_SECONDS + extra
}

/// A `Pass` shaping the execution's output from `parameters`.
pub fn report(comment: &str, parameters: Value, next: &str) -> Value {
    json!({"Type": "Pass", "Comment": comment, "Parameters": parameters, "Next": next})
}

/// The machine's failure end: the error of the failed step.
pub fn fail(comment: &str) -> Value {
    json!({"Type": "Fail", "Comment": comment, "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"})
}

/// A successful end.
pub fn succeed() -> Value {
    json!({"Type": "Succeed"})
}

/// A whole definition, its `TimeoutSeconds` from [`timeout_seconds`] (`extra`
/// for work no poll loop bounds, such as a mirror's continuation loop).
pub fn machine(comment: &str, start_at: &str, states: States, extra_seconds: u64) -> Value {
    let mut definition = json!({
        "Comment": comment,
        "QueryLanguage": "JSONPath",
        "StartAt": start_at,
        "States": states.into_value(),
    });
    definition["TimeoutSeconds"] = json!(timeout_seconds(&definition, extra_seconds));
    definition
}
