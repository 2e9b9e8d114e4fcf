//! The scale-to-zero function: puts staging to sleep at near-zero cost and
//! wakes it exactly as it was.
//!
//! Actions (every request carries `config`, the run's configuration reference;
//! only the `scale` and `poll` sections and the stack's staging settings are read):
//! - `begin`: the first task of the `sleep`, `wake` and `restop` machines: checks
//!   the input and the configuration, pins the document version, answers the
//!   reference, the wait plans and whether the idle check runs;
//! - `validate`: the effective configuration, for operators;
//! - `sleep`: ECS services to 0 tasks (and their Application Auto Scaling range
//!   to 0–0), Auto Scaling groups to 0/0/0, EC2 instances stopped, RDS
//!   instances and Aurora clusters stopped (or Serverless v2 at 0 ACU). What
//!   wake restores is written first, into `understudy:sleep:*` tags on the
//!   resource itself. `settled: false` means call again later (a database that
//!   cannot be stopped until it is available);
//! - `wake` (`phase`: `databases`, `services` or `all`): back to what the tags
//!   remember; something changed by hand while asleep is kept and reported;
//! - `status`: asleep / awake / mixed, per resource and for the environment,
//!   with `databases_available` and `services_stable` for the wait loops;
//! - `check-idle`: a CloudWatch metric over the last N minutes against a threshold;
//! - `restop`: an RDS "started after 7 days stopped" event; a sleeping database
//!   is stopped again once available;
//! - `restart`: a new deployment of every awake ECS service the `scale` section
//!   selects (`refresh.restart_services`: apps that cache database connections
//!   reconnect to the refreshed database); `status` then waits until stable;
//! - `run-migration-task`, `migration-task-status`: the refresh's one-off ECS
//!   migration task (`refresh.migrate_task`, see [`migration`]);
//! - `take-lease`, `release-lease`: the environment's run lock, taken by the
//!   `sleep`, `wake` and `refresh` machines before any change and released at
//!   every end they control (`understudy_shared::lease`);
//! - `announce`: the detail of a lifecycle event (`Refresh Succeeded`, `Environment
//!   Woke`, ...) from the announcing machine's state (`understudy_shared::lifecycle`);
//!   the machine publishes it with `events:putEvents`. Makes no AWS call.
//!
//! Every resource must carry the staging tag (`config.tag`): one that does not
//! is refused with `GuardRailViolation` before any mutating call.

pub mod apply;
pub mod discover;
pub mod idle;
pub mod migration;
pub mod model;
pub mod restop;

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_config::retry::RetryConfig;
use aws_config::SdkConfig;
use futures::stream::{self, StreamExt};
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use understudy_shared::answer::{schema_of, to_answer, MAX_LISTED};
use understudy_shared::aws::{s3_client, AwsContext};
use understudy_shared::config::EnvironmentConfig;
use understudy_shared::config::Validated;
use understudy_shared::lease::{self, Lease, LeaseReleased, LeaseTaken};
use understudy_shared::lifecycle::{announce, AnnounceRequest, Announcement};
use understudy_shared::request::ActionRequest;
use understudy_shared::settings::{BeginRequest, Begun, ConfigRef, Settings, ValidateRequest};
use understudy_shared::tags;
use understudy_shared::{Error, Result};

use crate::discover::{describe, select, Clients, Selection};
use crate::idle::IdleReport;
use crate::model::{
    condition, environment_state, plan_sleep, plan_wake, Condition, Entry, Kind, Outcome, Plan, Resource,
};
use crate::restop::{RestopAnswer, RestopDatabase, RestopOutcome};

/// Attempts per AWS call (the SDK's standard retry: exponential backoff with
/// jitter on throttling and transient errors); the state machines retry
/// `Throttled` on top.
pub const MAX_ATTEMPTS: u32 = 5;

/// Every action, in the order the module doc lists them.
pub const ACTIONS: &[&str] = &[
    "begin",
    "validate",
    "sleep",
    "wake",
    "status",
    "check-idle",
    "restop",
    "restart",
    "run-migration-task",
    "migration-task-status",
    "take-lease",
    "release-lease",
    "announce",
];

/// The schema of each action's answer, for the state machines' contract test.
pub fn answer_schema(action: &str) -> Option<Schema> {
    Some(match action {
        "begin" => schema_of::<Begun>(),
        "validate" => schema_of::<Validated>(),
        "sleep" => schema_of::<Report>(),
        "wake" => schema_of::<WakeReport>(),
        "status" => schema_of::<StatusReport>(),
        "check-idle" => schema_of::<IdleReport>(),
        "restop" => schema_of::<RestopAnswer>(),
        "restart" => schema_of::<RestartReport>(),
        "run-migration-task" => schema_of::<migration::StartedTask>(),
        "migration-task-status" => schema_of::<migration::MigrationStatus>(),
        "take-lease" => schema_of::<LeaseTaken>(),
        "release-lease" => schema_of::<LeaseReleased>(),
        "announce" => schema_of::<Announcement>(),
        _ => return None,
    })
}

/// `{"action": "sleep" | "status" | "check-idle", "config": {...}}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRequest {
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// Which resources `wake` acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// RDS instances and Aurora clusters.
    Databases,
    /// ECS services, Auto Scaling groups, EC2 instances.
    Services,
    /// Databases first, then the rest.
    #[default]
    All,
}

impl Phase {
    fn kinds(self) -> &'static [Kind] {
        match self {
            Phase::Databases => &[Kind::DbInstance, Kind::DbCluster],
            Phase::Services => &[Kind::EcsService, Kind::AutoScalingGroup, Kind::Ec2Instance],
            Phase::All => ALL_KINDS,
        }
    }
}

const ALL_KINDS: &[Kind] =
    &[Kind::EcsService, Kind::AutoScalingGroup, Kind::Ec2Instance, Kind::DbInstance, Kind::DbCluster];

/// `{"action": "wake", "phase": "databases" | "services" | "all", "config": {...}}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WakeRequest {
    /// Which resources (default all).
    #[serde(default)]
    pub phase: Phase,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// `{"action": "restop", "event": {EventBridge RDS event}, "config": {...}}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestopRequest {
    /// The RDS event as EventBridge delivers it.
    pub event: Value,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// `{"action": "take-lease" | "release-lease", "execution": "<execution ARN>"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The execution taking or releasing the lease (`$$.Execution.Id`).
    pub execution: String,
}

/// The function's requests, by action.
#[derive(Debug)]
pub enum ScaleRequest {
    /// Start a run.
    Begin(BeginRequest),
    /// The effective configuration.
    Validate(ValidateRequest),
    /// Put staging to sleep.
    Sleep(ConfigRequest),
    /// Wake staging.
    Wake(WakeRequest),
    /// Report asleep / awake / mixed.
    Status(ConfigRequest),
    /// Whether staging is idle.
    CheckIdle(ConfigRequest),
    /// Re-stop a database AWS started after 7 days.
    Restop(RestopRequest),
    /// New deployments of the awake services.
    Restart(ConfigRequest),
    /// Start the migration task.
    RunMigrationTask(migration::RunMigrationRequest),
    /// The migration task's status.
    MigrationTaskStatus(migration::MigrationStatusRequest),
    /// Take the environment's run lock.
    TakeLease(LeaseRequest),
    /// Release it.
    ReleaseLease(LeaseRequest),
    /// A lifecycle event's detail.
    Announce(AnnounceRequest),
}

impl ScaleRequest {
    /// Parses a payload; errors name the bad field.
    pub fn parse(payload: Value) -> Result<Self> {
        let request = ActionRequest::new(payload)?;
        match request.action() {
            "begin" => request.fields().map(Self::Begin),
            "validate" => request.fields().map(Self::Validate),
            "sleep" => request.fields().map(Self::Sleep),
            "wake" => request.fields().map(Self::Wake),
            "status" => request.fields().map(Self::Status),
            "check-idle" => request.fields().map(Self::CheckIdle),
            "restop" => request.fields().map(Self::Restop),
            "restart" => request.fields().map(Self::Restart),
            "run-migration-task" => request.fields().map(Self::RunMigrationTask),
            "migration-task-status" => request.fields().map(Self::MigrationTaskStatus),
            "take-lease" => request.fields().map(Self::TakeLease),
            "release-lease" => request.fields().map(Self::ReleaseLease),
            "announce" => request.fields().map(Self::Announce),
            _ => Err(request.unknown_action(ACTIONS)),
        }
    }
}

/// What `sleep` answers (and `wake`, with two more fields). At most
/// [`MAX_LISTED`] resources are listed, those that need attention first
/// (failed, changed by hand while asleep, in progress, changed now); `counts`
/// and `resources_left_out` cover them all.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Report {
    /// `sleep` or `wake`.
    pub action: String,
    /// The environment's name.
    pub environment: String,
    /// `asleep`, `awake`, `mixed` or `empty`, after the calls.
    pub state: String,
    /// False when some resource needs another pass (call again later).
    pub settled: bool,
    /// Resources by outcome (`slept`, `already-asleep`, ...).
    pub counts: BTreeMap<String, usize>,
    /// One row per listed resource, by kind and id.
    pub resources: Vec<Entry>,
    /// Resources not listed.
    pub resources_left_out: usize,
}

/// What `wake` answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WakeReport {
    /// As for `sleep`.
    #[serde(flatten)]
    pub report: Report,
    /// Which resources were woken.
    pub phase: Phase,
    /// True when every woken database was already available (for the wait loop).
    pub databases_available: bool,
}

/// What `status` answers. At most [`MAX_LISTED`] resources are listed, the
/// changing ones first; `counts` and `resources_left_out` cover them all.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StatusReport {
    /// `status`.
    pub action: String,
    /// The environment's name.
    pub environment: String,
    /// `asleep`, `awake`, `mixed` or `empty`.
    pub state: String,
    /// True when every counted database is available (or asleep).
    pub databases_available: bool,
    /// True when every counted service, group and instance is stable (or asleep).
    pub services_stable: bool,
    /// Resources by state (`asleep`, `awake`, `off`, `changing`, `skipped`).
    pub counts: BTreeMap<String, usize>,
    /// One row per listed resource, by kind and id.
    pub resources: Vec<StatusRow>,
    /// Resources not listed.
    pub resources_left_out: usize,
}

/// One resource in a `status` answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StatusRow {
    /// Resource kind.
    pub kind: Kind,
    /// Resource id.
    pub id: String,
    /// Its state.
    pub state: Condition,
    /// What was observed (counts, status, remembered sleep state).
    pub detail: Value,
}

/// The [`MAX_LISTED`] rows with the lowest `rank` (those most in need of
/// attention), in their given order, and how many were left out.
fn most_telling<T>(rows: Vec<T>, rank: impl Fn(&T) -> u8) -> (Vec<T>, usize) {
    if rows.len() <= MAX_LISTED {
        return (rows, 0);
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rank(&rows[i]));
    let mut keep = vec![false; rows.len()];
    for &i in &order[..MAX_LISTED] {
        keep[i] = true;
    }
    let left_out = rows.len() - MAX_LISTED;
    (rows.into_iter().zip(keep).filter_map(|(row, keep)| keep.then_some(row)).collect(), left_out)
}

fn outcome_rank(entry: &Entry) -> u8 {
    match entry.outcome {
        Outcome::Failed => 0,
        Outcome::ChangedWhileAsleep => 1,
        Outcome::InProgress => 2,
        Outcome::Slept | Outcome::Woke => 3,
        Outcome::Skipped => 4,
        Outcome::AlreadyAsleep | Outcome::AlreadyAwake => 5,
    }
}

fn condition_rank(row: &StatusRow) -> u8 {
    match row.state {
        Condition::Changing => 0,
        Condition::Awake => 1,
        Condition::Asleep => 2,
        Condition::Off => 3,
        Condition::Skipped => 4,
    }
}

fn condition_name(condition: Condition) -> String {
    serde_json::to_value(condition).expect("conditions serialize").as_str().unwrap_or_default().to_owned()
}

/// The function's handler, holding the AWS config built once per cold start.
pub struct ScaleFunction {
    aws: AwsContext,
    settings: Settings,
}

/// The machines whose `validate` this function runs: their waits must fit their history.
const VALIDATED_MACHINES: &[&str] = &["sleep", "wake", "restop"];

impl ScaleFunction {
    /// A handler using `aws` for every call.
    pub fn new(aws: AwsContext) -> Self {
        let settings = Settings::from_env(aws.base());
        Self { aws, settings }
    }

    /// Handles one invocation.
    pub async fn handle(&self, payload: Value) -> Result<Value> {
        match ScaleRequest::parse(payload)? {
            ScaleRequest::Begin(request) => {
                to_answer(&self.settings.begin(request.input, VALIDATED_MACHINES).await?.0)
            }
            ScaleRequest::Validate(request) => {
                to_answer(&self.settings.validate(&request.config, VALIDATED_MACHINES).await?)
            }
            ScaleRequest::Sleep(request) => {
                let document = self.settings.load(&request.config).await?;
                let in_flight = self.lease()?.running_holder().await?;
                to_answer(&sleep(&self.clients(&document), &document, in_flight.as_deref()).await?)
            }
            ScaleRequest::Wake(request) => {
                let document = self.settings.load(&request.config).await?;
                to_answer(&wake(&self.clients(&document), &document, request.phase).await?)
            }
            ScaleRequest::Status(request) => {
                let document = self.settings.load(&request.config).await?;
                to_answer(&status(&self.clients(&document), &document).await?)
            }
            ScaleRequest::CheckIdle(request) => {
                let document = self.settings.load(&request.config).await?;
                let cloudwatch = idle::CloudWatch(aws_sdk_cloudwatch::Client::new(&self.config(&document)));
                to_answer(&idle::check_idle(&cloudwatch, &document.scale.idle, SystemTime::now()).await?)
            }
            ScaleRequest::Restop(request) => {
                let document = self.settings.load(&request.config).await?;
                let event = restop::parse_event(request.event)?;
                to_answer(&restop_database(&self.clients(&document), &document, &event).await?)
            }
            ScaleRequest::Restart(request) => {
                let document = self.settings.load(&request.config).await?;
                to_answer(&restart(&self.clients(&document), &document).await?)
            }
            ScaleRequest::RunMigrationTask(request) => {
                let document = self.settings.load(&request.config).await?;
                to_answer(&migration::run(&self.clients(&document), &document, &request.run_id).await?)
            }
            ScaleRequest::MigrationTaskStatus(request) => {
                let document = self.settings.load(&request.config).await?;
                to_answer(&migration::status(&self.clients(&document).ecs, &request.task).await?)
            }
            ScaleRequest::TakeLease(request) => to_answer(&self.lease()?.take(&request.execution).await?),
            ScaleRequest::ReleaseLease(request) => {
                to_answer(&self.lease()?.release(&request.execution).await?)
            }
            ScaleRequest::Announce(request) => to_answer(&announce(self.settings.deployment()?, &request)?),
        }
    }

    /// The environment's run lock, in the stack's `LeaseBucket`.
    fn lease(&self) -> Result<Lease> {
        let deployment = self.settings.deployment()?;
        let bucket = deployment.lease_bucket.as_deref().ok_or_else(|| {
            Error::InvalidInput(
                "the stack parameter LeaseBucket (UNDERSTUDY_LEASE_BUCKET) is not set; the SAM template sets it for every function".into(),
            )
        })?;
        let config = self.aws.base();
        Ok(Lease::new(s3_client(config), aws_sdk_sfn::Client::new(config), bucket, &deployment.environment))
    }

    fn config(&self, document: &EnvironmentConfig) -> SdkConfig {
        self.aws
            .staging(&document.staging)
            .into_builder()
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .build()
    }

    fn clients(&self, document: &EnvironmentConfig) -> Clients {
        Clients::new(&self.config(document))
    }
}

async fn find(clients: &Clients, document: &EnvironmentConfig, kinds: &[Kind]) -> Result<Vec<Resource>> {
    let selection = select(clients, &document.scale, &document.tag, kinds).await?;
    describe(clients, &selection, &document.tag).await
}

/// Puts every selected resource to sleep: services, groups and instances first,
/// databases after them. A database that a run in flight made (its
/// `understudy:run` tag names `in_flight`, the execution holding the run lock)
/// is skipped: it is that run's to change.
pub async fn sleep(
    clients: &Clients,
    document: &EnvironmentConfig,
    in_flight: Option<&str>,
) -> Result<Report> {
    let mut resources = find(clients, document, ALL_KINDS).await?;
    if let Some(holder) = in_flight {
        let run = lease::execution_name(holder);
        for resource in &mut resources {
            if let model::State::Database { unstoppable, .. } = &mut resource.state {
                if tags::tag_value(&resource.tags, tags::RUN) == Some(run) {
                    *unstoppable =
                        Some(format!("made by the run in flight ({holder}), which holds the run lock"));
                }
            }
        }
    }
    let now = tags::now_rfc3339();
    // Every plan first: a config that cannot be honoured fails before any call.
    let plans = resources
        .iter()
        .map(|r| plan_sleep(r, &document.scale, &now).map(|plan| (r, plan)))
        .collect::<Result<Vec<_>>>()?;
    let (databases, others): (Vec<_>, Vec<_>) = plans.into_iter().partition(|(r, _)| r.kind.is_database());
    let mut entries = carry_out(clients, others, document.scale.concurrency).await;
    entries.extend(carry_out(clients, databases, document.scale.concurrency).await);
    report("sleep", document, entries).map(|(report, _)| report)
}

/// What `restart` answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RestartReport {
    /// `restart`.
    pub action: String,
    /// The environment's name.
    pub environment: String,
    /// The services given a new deployment (`cluster/service`), at most [`MAX_LISTED`].
    pub restarted: Vec<String>,
    /// Restarted services not listed.
    pub restarted_left_out: usize,
    /// Selected services at zero tasks (asleep or off), left alone.
    pub at_zero: usize,
}

/// A new deployment (`forceNewDeployment`) of every selected ECS service that runs
/// tasks; the staging tag is checked first, as for sleep and wake.
pub async fn restart(clients: &Clients, document: &EnvironmentConfig) -> Result<RestartReport> {
    let services = find(clients, document, &[Kind::EcsService]).await?;
    let (awake, at_zero): (Vec<&Resource>, Vec<&Resource>) = services
        .iter()
        .partition(|service| matches!(service.state, model::State::Scalable { desired, .. } if desired > 0));
    let restarted: Vec<String> = stream::iter(awake)
        .map(|service| async move {
            apply::apply(clients, service, &model::Change::NewDeployment).await.map(|()| service.id.clone())
        })
        .buffer_unordered(document.scale.concurrency.max(1) as usize)
        .collect::<Vec<Result<String>>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    tracing::info!(restarted = restarted.len(), at_zero = at_zero.len(), "restarted the awake services");
    let (restarted, restarted_left_out) = understudy_shared::answer::bounded(restarted);
    Ok(RestartReport {
        action: "restart".into(),
        environment: document.environment.clone(),
        restarted,
        restarted_left_out,
        at_zero: at_zero.len(),
    })
}

/// Wakes the resources of `phase`.
pub async fn wake(clients: &Clients, document: &EnvironmentConfig, phase: Phase) -> Result<WakeReport> {
    let resources = find(clients, document, phase.kinds()).await?;
    let (databases, others): (Vec<_>, Vec<_>) =
        resources.iter().map(|r| (r, plan_wake(r))).partition(|(r, _)| r.kind.is_database());
    let mut entries = carry_out(clients, databases, document.scale.concurrency).await;
    entries.extend(carry_out(clients, others, document.scale.concurrency).await);
    let (report, databases_available) = report("wake", document, entries)?;
    Ok(WakeReport { report, phase, databases_available })
}

/// Makes every plan's calls, `concurrency` resources at a time; a failed
/// resource is reported as such and does not stop the others.
async fn carry_out(
    clients: &Clients,
    plans: Vec<(&Resource, Plan)>,
    concurrency: u32,
) -> Vec<(Entry, Option<Error>)> {
    stream::iter(plans)
        .map(|(resource, plan)| async move {
            for change in &plan.changes {
                if let Err(err) = apply::apply(clients, resource, change).await {
                    tracing::warn!(kind = resource.kind.as_str(), id = %resource.id, error = %err, "call failed");
                    let mut entry = plan.entry;
                    entry.outcome = Outcome::Failed;
                    entry.after = entry.before.clone();
                    entry.reason = Some(err.to_string());
                    entry.settled = false;
                    return (entry, Some(err));
                }
            }
            tracing::info!(kind = resource.kind.as_str(), id = %resource.id, outcome = plan.entry.outcome.as_str(), "done");
            (plan.entry, None)
        })
        .buffer_unordered(concurrency.max(1) as usize)
        .collect()
        .await
}

/// The report of `action` over every resource's result, and whether every
/// database is available; the first error (terminal ones first) when any failed.
fn report(
    action: &str,
    document: &EnvironmentConfig,
    results: Vec<(Entry, Option<Error>)>,
) -> Result<(Report, bool)> {
    let mut entries: Vec<Entry> = Vec::with_capacity(results.len());
    let mut errors: Vec<(String, Error)> = Vec::new();
    for (entry, error) in results {
        if let Some(error) = error {
            errors.push((format!("{} `{}`", entry.kind.as_str(), entry.id), error));
        }
        entries.push(entry);
    }
    entries.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for entry in &entries {
        *counts.entry(entry.outcome.as_str().to_owned()).or_default() += 1;
    }
    let settled = entries.iter().all(|e| e.settled);
    // Available when observed and left so: a database just started is not yet.
    let databases_available = entries
        .iter()
        .filter(|e| e.kind.is_database() && e.outcome != Outcome::Skipped)
        .all(|e| e.before["status"] == "available" && e.after["status"] == "available");
    tracing::info!(action, counts = ?counts, settled, "report");
    if !errors.is_empty() {
        // Terminal errors first: retrying does not help them.
        errors.sort_by_key(|(_, e)| e.is_retryable());
        let message = errors.iter().map(|(what, e)| format!("{what}: {e}")).collect::<Vec<_>>().join("; ");
        let summary = format!("{action}: {} of {} resources failed: {message}", errors.len(), entries.len());
        let first = errors.swap_remove(0).1;
        return Err(match first {
            Error::Throttled(_) => Error::Throttled(summary),
            Error::AwsTransient(_) => Error::AwsTransient(summary),
            Error::ResourceBusy(_) => Error::ResourceBusy(summary),
            Error::AccessDenied(_) => Error::AccessDenied(summary),
            Error::GuardRailViolation(_) => Error::GuardRailViolation(summary),
            _ => Error::AwsRequestFailed(summary),
        });
    }
    let state = environment_state(entries.iter().map(|e| match e.outcome {
        Outcome::Slept | Outcome::AlreadyAsleep => Condition::Asleep,
        Outcome::Woke | Outcome::AlreadyAwake | Outcome::ChangedWhileAsleep => Condition::Awake,
        Outcome::InProgress | Outcome::Failed => Condition::Changing,
        Outcome::Skipped => Condition::Skipped,
    }));
    let (resources, resources_left_out) = most_telling(entries, outcome_rank);
    let report = Report {
        action: action.to_owned(),
        environment: document.environment.clone(),
        state: state.to_owned(),
        settled,
        counts,
        resources,
        resources_left_out,
    };
    Ok((report, databases_available))
}

/// Asleep, awake or mixed, per resource and for the environment.
pub async fn status(clients: &Clients, document: &EnvironmentConfig) -> Result<StatusReport> {
    let resources = find(clients, document, ALL_KINDS).await?;
    Ok(status_report(document, &resources))
}

/// The `status` answer for observed resources.
pub fn status_report(document: &EnvironmentConfig, resources: &[Resource]) -> StatusReport {
    let mut rows = Vec::with_capacity(resources.len());
    let (mut databases_available, mut services_stable) = (true, true);
    let mut conditions = Vec::with_capacity(resources.len());
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for resource in resources {
        let (state, ready) = condition(resource);
        conditions.push(state);
        *counts.entry(condition_name(state)).or_default() += 1;
        let counted = !matches!(state, Condition::Off | Condition::Skipped);
        if resource.kind.is_database() {
            databases_available &= ready || !counted || state == Condition::Asleep;
        } else {
            services_stable &= ready || !counted || state == Condition::Asleep;
        }
        rows.push(StatusRow {
            kind: resource.kind,
            id: resource.id.clone(),
            state,
            detail: detail(resource),
        });
    }
    rows.sort_by(|a, b| (a.kind.as_str(), &a.id).cmp(&(b.kind.as_str(), &b.id)));
    let (resources, resources_left_out) = most_telling(rows, condition_rank);
    StatusReport {
        action: "status".to_owned(),
        environment: document.environment.clone(),
        state: environment_state(conditions).to_owned(),
        databases_available,
        services_stable,
        counts,
        resources,
        resources_left_out,
    }
}

fn detail(resource: &Resource) -> Value {
    use crate::model::State;
    let memory = model::Memory::of(&resource.tags);
    let mut detail = match &resource.state {
        State::Scalable { desired, running, pending, deployments, range } => {
            let mut d = json!({"desired": desired, "running": running, "pending": pending});
            if *deployments > 1 {
                d["deployments"] = json!(deployments);
            }
            if let Some(r) = range {
                d["min"] = json!(r.min);
                d["max"] = json!(r.max);
            }
            d
        }
        State::Database { status, unstoppable, serverless, .. } => {
            let mut d = json!({"status": status});
            if let Some(c) = serverless {
                d["min_capacity"] = json!(c.min);
                d["max_capacity"] = json!(c.max);
            }
            if let Some(reason) = unstoppable {
                d["reason"] = json!(reason);
            }
            d
        }
        State::Machine { state } => json!({"state": state}),
    };
    if memory.asleep {
        detail["remembered"] = json!({
            "since": tags::tag_value(&resource.tags, tags::SLEEP_SINCE),
            "desired": memory.desired, "min": memory.min, "max": memory.max, "min_acu": memory.min_acu,
        });
    }
    detail
}

/// Handles a 7-day restart event: a sleeping staging database is stopped again
/// once it is available.
pub async fn restop_database(
    clients: &Clients,
    document: &EnvironmentConfig,
    event: &restop::RdsEvent,
) -> Result<RestopAnswer> {
    let Some((kind, identifier)) = restop::restarted_database(event) else {
        let id = event.detail.as_ref().map(|d| d.event_id.as_str()).unwrap_or("(no detail)");
        return Ok(restop::ignored(None, &format!("event {id} is not a restart after 7 days stopped")));
    };
    let selection = Selection { ids: [(kind, identifier.to_owned())].into(), listed: Default::default() };
    // Described without the guard rail: a production database's event is ignored, not an error.
    let resources = discover::describe_all(clients, &selection).await?;
    let database = resources.iter().find(|r| r.kind == kind && r.id == identifier);
    if let Some(answer) = restop::decide(database, &document.tag) {
        tracing::info!(database = identifier, outcome = ?answer.outcome, "restop");
        return Ok(answer);
    }
    let database = database.expect("decide answers for a missing database");
    apply::apply(clients, database, &model::Change::StopDatabase).await?;
    tracing::info!(database = identifier, "stopped again after AWS restarted it");
    Ok(RestopAnswer {
        outcome: RestopOutcome::Stopped,
        done: true,
        database: Some(RestopDatabase { kind, identifier: identifier.to_owned() }),
        status: Some("stopping".into()),
        reason: "started by AWS after 7 days stopped while staging sleeps: stopped again".into(),
    })
}

#[cfg(test)]
mod tests {
    use understudy_shared::tags;

    use super::*;
    use crate::model::State;
    use understudy_shared::deployment::Deployment;

    fn service(n: usize) -> Resource {
        Resource {
            kind: Kind::EcsService,
            id: format!("staging-cluster-{}/service-with-a-long-name-{n:05}", n % 4),
            arn: format!("arn:aws:ecs:us-east-1:123456789012:service/staging/service-{n:05}"),
            tags: vec![
                ("understudy:environment".into(), "staging".into()),
                (tags::SLEEP_STATE.into(), "asleep".into()),
                (tags::SLEEP_SINCE.into(), "2026-11-22T20:00:00Z".into()),
                (tags::SLEEP_DESIRED.into(), "3".into()),
            ],
            state: State::Scalable {
                desired: 0,
                running: 0,
                pending: i32::from(n % 500 == 0),
                deployments: 1,
                range: Some(model::Range { min: 0, max: 0 }),
            },
        }
    }

    #[test]
    fn answers_for_2000_resources_stay_small_and_list_what_needs_attention() {
        let document = EnvironmentConfig::assemble(&Deployment::example(), None, &json!({})).unwrap();
        let resources: Vec<Resource> = (0..2000).map(service).collect();
        let results = resources
            .iter()
            .map(|r| {
                let mut entry = plan_sleep(r, &document.scale, "2026-11-22T20:00:00Z").unwrap().entry;
                if r.id.ends_with("01234") {
                    entry.outcome = Outcome::ChangedWhileAsleep;
                    entry.reason = Some("scaled by hand while asleep".into());
                }
                (entry, None)
            })
            .collect();
        let (report, _) = report("sleep", &document, results).unwrap();
        let bytes = serde_json::to_vec(&report).unwrap().len();
        assert!(bytes < 64 * 1024, "sleep answer of {bytes} bytes");
        assert_eq!((report.resources.len(), report.resources_left_out), (MAX_LISTED, 1900));
        assert_eq!(report.counts.values().sum::<usize>(), 2000, "{:?}", report.counts);
        assert!(report.resources.iter().any(|e| e.outcome == Outcome::ChangedWhileAsleep), "kept first");
        assert!(report.resources.windows(2).all(|w| (w[0].kind, &w[0].id) <= (w[1].kind, &w[1].id)));

        let status = status_report(&document, &resources);
        let bytes = serde_json::to_vec(&status).unwrap().len();
        assert!(bytes < 64 * 1024, "status answer of {bytes} bytes");
        assert_eq!((status.resources.len(), status.resources_left_out), (MAX_LISTED, 1900));
        assert_eq!(status.counts.values().sum::<usize>(), 2000, "{:?}", status.counts);
        let changing = status.resources.iter().filter(|r| r.state == Condition::Changing).count();
        assert_eq!(changing, 4, "every changing resource is listed");
    }
}
