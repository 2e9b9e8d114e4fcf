//! The snapshot function: manual snapshots of the production database (an Aurora
//! cluster or an RDS instance), made with the production client set.
//!
//! Actions:
//! - `begin`: the first task of the `snapshot` and `refresh` machines: check the
//!   execution input and the configuration, pin the stored document's version,
//!   answer the reference every later task passes on and the wait plans;
//! - `validate`: the effective configuration (external id redacted), for operators;
//! - `create`: snapshot `config.database.source` under an identifier derived from
//!   `run_id`, so a retried task finds the snapshot it already made;
//! - `status`: `{status, progress, available}` for a `Wait`/`Choice` loop;
//! - `prune`: keep the newest `config.retention.keep_snapshots` of understudy's
//!   snapshots of the source and delete the rest; never an untagged or automated one.

mod naming;
mod prune;

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use understudy_shared::answer::{bounded, schema_of, to_answer};
use understudy_shared::aws::{rds_client, AwsContext};
use understudy_shared::config::{DatabaseKind, EnvironmentConfig, Validated};
use understudy_shared::rds::{SnapshotRef, SnapshotStatus, SnapshotSummary, Snapshots};
use understudy_shared::request::ActionRequest;
use understudy_shared::settings::{BeginRequest, Begun, ConfigRef, Settings, ValidateRequest};
use understudy_shared::tags::{self, tag_value};
use understudy_shared::{guard, Error, Result};

pub use naming::snapshot_identifier;
pub use prune::select_for_pruning;

/// The function's handler, holding the AWS config built once per cold start.
pub struct SnapshotFunction {
    aws: AwsContext,
    settings: Settings,
}

/// `{"action": "create", "run_id": "...", "config": {...}}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The run (execution name) the snapshot belongs to; its identifier derives from it.
    pub run_id: String,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// `{"action": "status", "snapshot": {"kind": "cluster", "identifier": "..."}, "config": {...}}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// Which snapshot to look at.
    pub snapshot: SnapshotRef,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// `{"action": "prune", "config": {...}}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// The function's requests, by action.
#[derive(Debug)]
pub enum SnapshotRequest {
    /// See [`BeginRequest`].
    Begin(BeginRequest),
    /// See [`ValidateRequest`].
    Validate(ValidateRequest),
    /// See [`CreateRequest`].
    Create(CreateRequest),
    /// See [`StatusRequest`].
    Status(StatusRequest),
    /// See [`PruneRequest`].
    Prune(PruneRequest),
}

/// Every action, in the order the module doc lists them.
pub const ACTIONS: &[&str] = &["begin", "validate", "create", "status", "prune"];

/// The schema of each action's answer, for the state machines' contract test.
pub fn answer_schema(action: &str) -> Option<Schema> {
    Some(match action {
        "begin" => schema_of::<Begun>(),
        "validate" => schema_of::<Validated>(),
        "create" => schema_of::<CreatedSnapshot>(),
        "status" => schema_of::<SnapshotStatus>(),
        "prune" => schema_of::<Pruned>(),
        _ => return None,
    })
}

impl SnapshotRequest {
    /// Parses a payload; errors name the offending field.
    pub fn parse(payload: Value) -> Result<Self> {
        let request = ActionRequest::new(payload)?;
        match request.action() {
            "begin" => request.fields().map(Self::Begin),
            "validate" => request.fields().map(Self::Validate),
            "create" => request.fields().map(Self::Create),
            "status" => request.fields().map(Self::Status),
            "prune" => request.fields().map(Self::Prune),
            _ => Err(request.unknown_action(ACTIONS)),
        }
    }
}

/// What `create` returns: enough for `status`, `share` and the execution's output.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CreatedSnapshot {
    /// Cluster or instance snapshot.
    pub kind: DatabaseKind,
    /// Snapshot identifier.
    pub identifier: String,
    /// Snapshot ARN.
    pub arn: Option<String>,
    /// The production database it was taken from.
    pub source: String,
    /// AWS status at the time of the call (`creating`, `available`, ...).
    pub status: String,
    /// False when a previous attempt of this run had already made it.
    pub created: bool,
}

/// The machines whose `validate` this function runs: their waits must fit their history.
const VALIDATED_MACHINES: &[&str] = &["snapshot", "refresh"];

/// What `prune` answers: at most [`MAX_LISTED`](understudy_shared::answer::MAX_LISTED)
/// identifiers per list, newest first, with a count of those left out.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Pruned {
    /// Snapshots kept.
    pub kept: Vec<String>,
    /// Kept snapshots not listed.
    pub kept_left_out: usize,
    /// Snapshots deleted.
    pub deleted: Vec<String>,
    /// Deleted snapshots not listed.
    pub deleted_left_out: usize,
}

impl SnapshotFunction {
    /// A handler using `aws` for every call.
    pub fn new(aws: AwsContext) -> Self {
        let settings = Settings::from_env(aws.base());
        Self { aws, settings }
    }

    /// Handles one invocation.
    pub async fn handle(&self, payload: Value) -> Result<Value> {
        match SnapshotRequest::parse(payload)? {
            SnapshotRequest::Begin(request) => {
                to_answer(&self.settings.begin(request.input, VALIDATED_MACHINES).await?.0)
            }
            SnapshotRequest::Validate(request) => {
                to_answer(&self.settings.validate(&request.config, VALIDATED_MACHINES).await?)
            }
            SnapshotRequest::Create(request) => to_answer(&self.create(request).await?),
            SnapshotRequest::Status(request) => to_answer(&self.status(request).await?),
            SnapshotRequest::Prune(request) => to_answer(&self.prune(request).await?),
        }
    }

    async fn snapshots(&self, config: &EnvironmentConfig, kind: DatabaseKind) -> Result<Snapshots> {
        let production = self.aws.production(&config.production).await?;
        Ok(Snapshots::new(rds_client(&production), kind))
    }

    async fn create(&self, request: CreateRequest) -> Result<CreatedSnapshot> {
        let config = self.settings.load(&request.config).await?;
        let database = config.require_database()?;
        check_run_id(&request.run_id)?;
        let snapshots = self.snapshots(&config, database.kind).await?;
        let identifier = snapshot_identifier(&request.run_id);

        let adopt = |existing: SnapshotSummary| -> Result<CreatedSnapshot> {
            ensure_made_by_this_run(&existing, &database.source, &request.run_id)?;
            tracing::info!(snapshot = %existing.identifier, status = %existing.status, "snapshot already made by this run");
            Ok(created_snapshot(database.kind, existing, false))
        };
        if let Some(existing) = snapshots.find(&identifier).await? {
            return adopt(existing);
        }
        let tags = vec![
            (tags::MANAGED.to_owned(), tags::MANAGED_VALUE.to_owned()),
            (tags::RUN.to_owned(), request.run_id.clone()),
            (tags::SOURCE.to_owned(), database.source.clone()),
        ];
        match snapshots.create(&database.source, &identifier, &tags).await? {
            Some(made) => {
                tracing::info!(snapshot = %made.identifier, source = %database.source, "snapshot started");
                Ok(created_snapshot(database.kind, made, true))
            }
            // Another attempt of this run created it between our read and our create.
            None => match snapshots.find(&identifier).await? {
                Some(existing) => adopt(existing),
                None => Err(Error::AwsTransient(format!(
                    "snapshot `{identifier}` was reported as existing but cannot be read yet"
                ))),
            },
        }
    }

    async fn status(&self, request: StatusRequest) -> Result<SnapshotStatus> {
        let config = self.settings.load(&request.config).await?;
        let snapshots = self.snapshots(&config, request.snapshot.kind).await?;
        snapshots.status(&request.snapshot.identifier).await
    }

    async fn prune(&self, request: PruneRequest) -> Result<Pruned> {
        let config = self.settings.load(&request.config).await?;
        let database = config.require_database()?;
        let snapshots = self.snapshots(&config, database.kind).await?;
        let all = snapshots.list_manual(&database.source).await?;
        let (kept, doomed) =
            select_for_pruning(&all, &database.source, config.retention.keep_snapshots as usize);
        // Check every deletion first, so a violation stops the whole prune before
        // anything is deleted.
        for snapshot in &doomed {
            guard::ensure_managed(&snapshot.identifier, &snapshot.tags)?;
        }
        let mut deleted = Vec::new();
        for snapshot in doomed {
            snapshots.delete(&snapshot.identifier).await?;
            tracing::info!(snapshot = %snapshot.identifier, "pruned snapshot");
            deleted.push(snapshot.identifier.clone());
        }
        let (kept, kept_left_out) = bounded(kept.iter().map(|s| s.identifier.clone()).collect());
        let (deleted, deleted_left_out) = bounded(deleted);
        Ok(Pruned { kept, kept_left_out, deleted, deleted_left_out })
    }
}

fn created_snapshot(kind: DatabaseKind, snapshot: SnapshotSummary, created: bool) -> CreatedSnapshot {
    CreatedSnapshot {
        kind,
        identifier: snapshot.identifier,
        arn: snapshot.arn,
        source: snapshot.source,
        status: snapshot.status,
        created,
    }
}

/// Run ids become a tag value (at most 256 characters) and the snapshot name.
fn check_run_id(run_id: &str) -> Result<()> {
    if run_id.trim().is_empty() || run_id.len() > 256 {
        return Err(Error::InvalidInput(
            "invalid input at `run_id`: must be 1-256 characters (the execution name)".into(),
        ));
    }
    Ok(())
}

/// A snapshot under our derived identifier is adopted only if this run made it;
/// anything else under that name is someone else's and is left alone.
fn ensure_made_by_this_run(snapshot: &SnapshotSummary, source: &str, run_id: &str) -> Result<()> {
    let ours = tag_value(&snapshot.tags, tags::MANAGED) == Some(tags::MANAGED_VALUE)
        && tag_value(&snapshot.tags, tags::RUN) == Some(run_id)
        && snapshot.source == source;
    if ours {
        Ok(())
    } else {
        Err(Error::SnapshotConflict(format!(
            "snapshot `{}` already exists and was not made by run `{run_id}` from `{source}`; it is left untouched",
            snapshot.identifier
        )))
    }
}
