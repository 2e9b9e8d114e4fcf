//! Lifecycle events: what the `refresh`, `sleep` and `wake` machines announce on
//! EventBridge when they start, succeed or fail.
//!
//! The machines publish with the `events:putEvents` task integration (retried by
//! Step Functions, no SDK crate in any function); the event's detail is built
//! here, by the `announce` action, from the run's state data as the machine
//! holds it (the `state` of an [`AnnounceRequest`]). The state is read leniently:
//! a failed run has only some of the fields, and each part of the detail is
//! there when its source is. Nothing from the configuration is read, so no
//! secret can reach an event.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::deployment::Deployment;
use crate::Result;

/// The `source` of every event understudy publishes.
pub const EVENT_SOURCE: &str = "understudy";

/// An event the machines announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    /// `Refresh Started`: the configuration is valid, nothing is made yet.
    RefreshStarted,
    /// `Refresh Succeeded`: staging runs on the new data.
    RefreshSucceeded,
    /// `Refresh Failed`: with the error and the step.
    RefreshFailed,
    /// `Environment Slept`.
    EnvironmentSlept,
    /// `Sleep Failed`.
    SleepFailed,
    /// `Environment Woke`: awake, stable and smoke-tested.
    EnvironmentWoke,
    /// `Wake Failed`.
    WakeFailed,
}

impl Lifecycle {
    /// Every event, in the order docs/contracts.md lists them.
    pub const ALL: [Lifecycle; 7] = [
        Lifecycle::RefreshStarted,
        Lifecycle::RefreshSucceeded,
        Lifecycle::RefreshFailed,
        Lifecycle::EnvironmentSlept,
        Lifecycle::SleepFailed,
        Lifecycle::EnvironmentWoke,
        Lifecycle::WakeFailed,
    ];

    /// The EventBridge `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            Lifecycle::RefreshStarted => "Refresh Started",
            Lifecycle::RefreshSucceeded => "Refresh Succeeded",
            Lifecycle::RefreshFailed => "Refresh Failed",
            Lifecycle::EnvironmentSlept => "Environment Slept",
            Lifecycle::SleepFailed => "Sleep Failed",
            Lifecycle::EnvironmentWoke => "Environment Woke",
            Lifecycle::WakeFailed => "Wake Failed",
        }
    }

    /// The request's name for it (`refresh-succeeded`).
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::RefreshStarted => "refresh-started",
            Lifecycle::RefreshSucceeded => "refresh-succeeded",
            Lifecycle::RefreshFailed => "refresh-failed",
            Lifecycle::EnvironmentSlept => "environment-slept",
            Lifecycle::SleepFailed => "sleep-failed",
            Lifecycle::EnvironmentWoke => "environment-woke",
            Lifecycle::WakeFailed => "wake-failed",
        }
    }

    /// The machine that announces it.
    pub fn machine(self) -> &'static str {
        match self {
            Lifecycle::RefreshStarted | Lifecycle::RefreshSucceeded | Lifecycle::RefreshFailed => "refresh",
            Lifecycle::EnvironmentSlept | Lifecycle::SleepFailed => "sleep",
            Lifecycle::EnvironmentWoke | Lifecycle::WakeFailed => "wake",
        }
    }

    /// `started`, `succeeded` or `failed`.
    pub fn outcome(self) -> &'static str {
        match self {
            Lifecycle::RefreshStarted => "started",
            Lifecycle::RefreshFailed | Lifecycle::SleepFailed | Lifecycle::WakeFailed => "failed",
            _ => "succeeded",
        }
    }
}

/// `{"action": "announce", "event": "refresh-succeeded", "execution": ARN,
/// "started": TIME, "now": TIME, "input": {...}, "state": {...}}`: the machine
/// passes its context (`$$.Execution.Id`, `$$.Execution.StartTime`,
/// `$$.State.EnteredTime`, `$$.Execution.Input`) and its whole state data (`$`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceRequest {
    /// Which event.
    pub event: Lifecycle,
    /// The execution's ARN.
    pub execution: String,
    /// When the execution started (RFC 3339).
    #[serde(default)]
    pub started: Option<String>,
    /// When the announcing state was entered (RFC 3339).
    pub now: String,
    /// The execution's input (only `label` and `trigger` are read).
    #[serde(default)]
    pub input: Value,
    /// The machine's state data at that point.
    #[serde(default)]
    pub state: Value,
}

/// What `announce` answers: the `DetailType` and `Detail` of the `PutEvents` entry.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Announcement {
    /// The EventBridge `detail-type`.
    pub detail_type: String,
    /// The event's detail.
    pub detail: EventDetail,
}

/// The detail of every lifecycle event (docs/contracts.md documents it; examples in
/// `tests/events/lifecycle-*.json`). Absent parts are left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventDetail {
    /// Deterministic from the execution and the event: a redelivery has the same id.
    pub event_id: String,
    /// The stack's `EnvironmentName`.
    pub environment: String,
    /// `refresh`, `sleep` or `wake`.
    pub machine: String,
    /// `started`, `succeeded` or `failed`.
    pub outcome: String,
    /// The execution's ARN.
    pub execution: String,
    /// The execution input's `label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The production deploy a refresh follows (the input's `trigger`, written
    /// by the trigger function): which event, version and deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<crate::trigger::Trigger>,
    /// When the execution started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the event was announced.
    pub at: String,
    /// Seconds from the start to the announcement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Seconds per stage that ran, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageTime>,
    /// The production snapshot the refresh restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The staging database now live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// What the mirror copied and deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorSummary>,
    /// How staging was left: `awake` or `asleep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<String>,
    /// What `sleep` or `wake` did, by outcome (`slept`, `woke`, `already-asleep`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
    /// The smoke test's summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke: Option<SmokeSummary>,
    /// Why the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FailureSummary>,
}

/// One stage's duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageTime {
    /// The stage (see [`STAGES`]).
    pub stage: String,
    /// Its seconds, to the millisecond.
    pub seconds: f64,
}

/// The mirror's totals and each bucket's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MirrorSummary {
    /// Objects copied.
    pub copied: u64,
    /// Their bytes.
    pub copied_bytes: u64,
    /// Objects deleted from staging.
    pub deleted: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Per staging bucket.
    pub buckets: Vec<BucketSummary>,
}

/// One bucket's mirror.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketSummary {
    /// The staging bucket.
    pub target: String,
    /// Objects copied.
    pub copied: u64,
    /// Their bytes.
    pub copied_bytes: u64,
    /// Objects found identical.
    pub unchanged: u64,
    /// Objects deleted.
    pub deleted: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
}

/// The smoke test's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmokeSummary {
    /// Whether every check passed.
    pub passed: bool,
    /// Whether it was skipped, and why (`no checks configured`, `staging is asleep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Rounds run.
    pub rounds: u32,
    /// Checks that passed.
    pub checks_passed: Vec<String>,
    /// Checks still failing, with their last failure.
    pub checks_failing: Vec<FailingCheck>,
}

/// A check that did not pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailingCheck {
    /// The check's name.
    pub name: String,
    /// Its last failures.
    pub failures: Vec<String>,
}

/// A failure: the error name, its message, and the stage that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureSummary {
    /// The error name (`SmokeTestFailed`, `GuardRailViolation`, ...).
    pub error: String,
    /// Its message.
    pub cause: String,
    /// The stage that failed (see [`STAGES`]), when the machine knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// The stages a duration is reported for: the name, and the clock marks it runs
/// between: `started` (the execution's start), a mark of the state's `clock`
/// (a time, or `{"at": TIME}`), or a branch's `<branch>.finished`.
pub const STAGES: &[(&str, &str, &str)] = &[
    ("validate", "started", "preparing"),
    ("database", "preparing", "database.finished"),
    ("mirror-copy", "preparing", "mirror.finished"),
    ("swap", "joined", "swapped"),
    ("mirror-delete", "swapped", "deleted"),
    ("wake-or-sleep", "deleted", "settled"),
    ("smoke", "settled", "verified"),
];

fn seconds_of(time: &str) -> Option<f64> {
    let parsed = aws_smithy_types::DateTime::from_str(time, aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .or_else(|| {
            // moto writes `+00:00` where AWS writes `Z`.
            let utc = time.strip_suffix("+00:00")?;
            aws_smithy_types::DateTime::from_str(
                &format!("{utc}Z"),
                aws_smithy_types::date_time::Format::DateTime,
            )
            .ok()
        })?;
    Some(parsed.as_secs_f64())
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn text(state: &Value, pointer: &str) -> Option<String> {
    state.pointer(pointer).and_then(Value::as_str).map(str::to_owned)
}

fn number(value: &Value, field: &str) -> u64 {
    value.get(field).and_then(Value::as_u64).unwrap_or(0)
}

/// The clock mark `name` (see [`STAGES`]).
fn mark(request: &AnnounceRequest, name: &str) -> Option<f64> {
    if name == "started" {
        return request.started.as_deref().and_then(seconds_of);
    }
    let pointer = match name.split_once('.') {
        Some((branch, field)) => format!("/{branch}/{field}"),
        None => format!("/clock/{name}"),
    };
    let value = request.state.pointer(&pointer)?;
    value.as_str().or_else(|| value["at"].as_str()).and_then(seconds_of)
}

/// The mirror's buckets, from the delete phase's results when it ran, else the copy phase's.
fn mirror_summary(state: &Value) -> Option<MirrorSummary> {
    let buckets = state
        .pointer("/mirrored")
        .and_then(Value::as_array)
        .or_else(|| state.pointer("/mirror/copied").and_then(Value::as_array))?;
    let mut summary = MirrorSummary::default();
    for bucket in buckets {
        let counts = &bucket["counts"];
        let row = BucketSummary {
            target: bucket["target"].as_str().unwrap_or_default().to_owned(),
            copied: number(counts, "copied"),
            copied_bytes: number(counts, "copied_bytes"),
            unchanged: number(counts, "unchanged"),
            deleted: number(counts, "deleted"),
            deleted_bytes: number(counts, "deleted_bytes"),
        };
        summary.copied += row.copied;
        summary.copied_bytes += row.copied_bytes;
        summary.deleted += row.deleted;
        summary.deleted_bytes += row.deleted_bytes;
        summary.buckets.push(row);
    }
    Some(summary)
}

fn smoke_summary(state: &Value) -> Option<SmokeSummary> {
    if let Some(reason) = text(state, "/smoke_skipped") {
        return Some(SmokeSummary {
            passed: false,
            skipped: Some(reason),
            rounds: 0,
            checks_passed: Vec::new(),
            checks_failing: Vec::new(),
        });
    }
    let smoke = state.get("smoke").filter(|s| s.get("rounds").is_some())?;
    let checks = smoke["checks"].as_array().cloned().unwrap_or_default();
    let name = |check: &Value| check["name"].as_str().unwrap_or_default().to_owned();
    Some(SmokeSummary {
        passed: smoke["passed"].as_bool().unwrap_or(false),
        skipped: smoke["skipped"].as_bool().unwrap_or(false).then(|| "no checks configured".to_owned()),
        rounds: smoke["rounds"].as_u64().unwrap_or(0) as u32,
        checks_passed: checks.iter().filter(|c| c["passed"] == true).map(name).collect(),
        checks_failing: checks
            .iter()
            .filter(|c| c["passed"] != true)
            .map(|c| FailingCheck {
                name: name(c),
                failures: c["failures"]
                    .as_array()
                    .map(|f| f.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
            .collect(),
    })
}

/// The error at `$.error`: a function's error cause is its JSON error object, whose message is shown.
fn failure(state: &Value) -> Option<FailureSummary> {
    let error = state.get("error")?;
    let cause = error["Cause"].as_str().unwrap_or_default();
    let cause = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|c| c["errorMessage"].as_str().map(str::to_owned))
        .unwrap_or_else(|| cause.to_owned());
    Some(FailureSummary {
        error: error["Error"].as_str().unwrap_or("States.TaskFailed").to_owned(),
        cause,
        step: text(state, "/failed/stage"),
    })
}

/// How the refresh left staging.
fn staging_state(event: Lifecycle, state: &Value) -> Option<String> {
    if event != Lifecycle::RefreshSucceeded {
        return None;
    }
    Some(if state.get("slept").is_some() { "asleep" } else { "awake" }.to_owned())
}

/// The announcement of `request` for `deployment`'s environment.
pub fn announce(deployment: &Deployment, request: &AnnounceRequest) -> Result<Announcement> {
    let state = &request.state;
    let event = request.event;
    let event_id = {
        let digest = Sha256::digest(format!("{}\n{}", request.execution, event.as_str()).as_bytes());
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>()
    };
    let now = seconds_of(&request.now);
    let started_at = request.started.clone();
    let duration_seconds = match (started_at.as_deref().and_then(seconds_of), now) {
        (Some(start), Some(now)) => Some(round_ms((now - start).max(0.0))),
        _ => None,
    };
    let stages = STAGES
        .iter()
        .filter_map(|(stage, from, to)| {
            let (from, to) = (mark(request, from)?, mark(request, to)?);
            Some(StageTime { stage: (*stage).to_owned(), seconds: round_ms((to - from).max(0.0)) })
        })
        .collect();
    let resources = match event.machine() {
        "sleep" => state.pointer("/sleep/counts").cloned(),
        "wake" => state.pointer("/services/counts").cloned(),
        _ => None,
    };
    let detail = EventDetail {
        event_id,
        environment: deployment.environment.clone(),
        machine: event.machine().to_owned(),
        outcome: event.outcome().to_owned(),
        execution: request.execution.clone(),
        label: request.input.get("label").and_then(Value::as_str).map(str::to_owned),
        trigger: request.input.get("trigger").and_then(|t| serde_json::from_value(t.clone()).ok()),
        started_at,
        at: request.now.clone(),
        duration_seconds,
        stages,
        snapshot: text(state, "/database/snapshot/identifier"),
        database: text(state, "/swapped/database/identifier"),
        mirror: mirror_summary(state),
        staging: staging_state(event, state),
        resources,
        smoke: smoke_summary(state),
        error: if event.outcome() == "failed" { failure(state) } else { None },
    };
    Ok(Announcement { detail_type: event.detail_type().to_owned(), detail })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(event: Lifecycle, state: Value) -> AnnounceRequest {
        AnnounceRequest {
            event,
            execution: "arn:aws:states:eu-west-1:123456789012:execution:understudy-refresh:run-1".into(),
            started: Some("2026-12-01T10:00:00Z".into()),
            now: "2026-12-01T10:05:00.500Z".into(),
            input: json!({"label": "v1.42.0"}),
            state,
        }
    }

    #[test]
    fn a_succeeded_refresh_reports_its_stages_counts_and_smoke_summary() {
        let state = json!({
            "clock": {"preparing": "2026-12-01T10:00:02Z",
                      "joined": "2026-12-01T10:03:00Z", "swapped": {"at": "2026-12-01T10:04:00Z"},
                      "deleted": {"at": "2026-12-01T10:04:10Z"}, "settled": {"at": "2026-12-01T10:04:10Z"},
                      "verified": {"at": "2026-12-01T10:04:30.250Z"}},
            "database": {"outcome": "ready", "finished": "2026-12-01T10:03:00+00:00",
                         "snapshot": {"identifier": "understudy-app-run-1"}},
            "mirror": {"outcome": "ready", "finished": "2026-12-01T10:01:00Z",
                       "copied": [{"target": "images", "counts": {"copied": 9, "copied_bytes": 90}}]},
            "mirrored": [{"target": "images", "counts": {"copied": 9, "copied_bytes": 90, "deleted": 2, "deleted_bytes": 20}}],
            "swapped": {"database": {"identifier": "staging-app"}},
            "smoke": {"skipped": false, "passed": true, "rounds": 2,
                      "checks": [{"name": "health", "passed": true, "failures": []}]},
        });
        let announced =
            announce(&Deployment::example(), &request(Lifecycle::RefreshSucceeded, state)).unwrap();
        assert_eq!(announced.detail_type, "Refresh Succeeded");
        let detail = announced.detail;
        assert_eq!(detail.duration_seconds, Some(300.5));
        let stages: Vec<(&str, f64)> = detail.stages.iter().map(|s| (s.stage.as_str(), s.seconds)).collect();
        assert_eq!(
            stages,
            [
                ("validate", 2.0),
                ("database", 178.0),
                ("mirror-copy", 58.0),
                ("swap", 60.0),
                ("mirror-delete", 10.0),
                ("wake-or-sleep", 0.0),
                ("smoke", 20.25)
            ]
        );
        assert_eq!(detail.snapshot.as_deref(), Some("understudy-app-run-1"));
        assert_eq!(detail.database.as_deref(), Some("staging-app"));
        let mirror = detail.mirror.unwrap();
        assert_eq!(
            (mirror.copied, mirror.copied_bytes, mirror.deleted, mirror.deleted_bytes),
            (9, 90, 2, 20)
        );
        assert_eq!(detail.smoke.unwrap().checks_passed, ["health"]);
        assert_eq!(detail.staging.as_deref(), Some("awake"));
        assert_eq!(detail.label.as_deref(), Some("v1.42.0"));
        assert!(detail.error.is_none());
    }

    #[test]
    fn the_event_id_depends_on_the_execution_and_the_event_only() {
        let one = announce(&Deployment::example(), &request(Lifecycle::RefreshFailed, json!({}))).unwrap();
        let again =
            announce(&Deployment::example(), &request(Lifecycle::RefreshFailed, json!({"x": 1}))).unwrap();
        let other = announce(&Deployment::example(), &request(Lifecycle::RefreshStarted, json!({}))).unwrap();
        assert_eq!(one.detail.event_id, again.detail.event_id);
        assert_ne!(one.detail.event_id, other.detail.event_id);
        assert_eq!(one.detail.event_id.len(), 32);
    }

    #[test]
    fn a_failure_names_the_error_its_message_and_the_step() {
        let state = json!({
            "error": {"Error": "AccessDenied", "Cause": "{\"errorType\":\"AccessDenied\",\"errorMessage\":\"s3:GetObject images/a.jpg: denied\"}"},
            "failed": {"stage": "mirror-copy"},
        });
        let detail =
            announce(&Deployment::example(), &request(Lifecycle::RefreshFailed, state)).unwrap().detail;
        let error = detail.error.unwrap();
        assert_eq!(error.error, "AccessDenied");
        assert_eq!(error.cause, "s3:GetObject images/a.jpg: denied");
        assert_eq!(error.step.as_deref(), Some("mirror-copy"));
        assert!(detail.staging.is_none() && detail.snapshot.is_none() && detail.mirror.is_none());
    }
}
