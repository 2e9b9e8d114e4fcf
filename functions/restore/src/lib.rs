//! The restore function: everything a refresh does in the staging account, with
//! staging's own credentials. Each action is one idempotent step of the refresh
//! state machine; names derive from the target and the run id, so a retried
//! step finds what an earlier attempt made.
//!
//! Actions, in refresh order:
//! - `check`: read-only guard rails on the live staging database, before anything is made;
//! - `copy`: copy a shared, encrypted instance snapshot into staging with staging's key
//!   (AWS cannot restore one directly); other snapshots restore as they are;
//! - `restore`: restore under a temporary identifier with staging's own settings,
//!   and a cluster's instances;
//! - `status`: a snapshot's or a database's (with a cluster's instances) status;
//! - `prepare`: on the temporary database, before it goes live: staging's own
//!   master password, so production's never works on live staging (post-restore
//!   SQL such as PII masking belongs here too);
//! - `wake-live`: start a sleeping live database (a stopped one cannot be renamed);
//! - `swap`: `step: "aside"` renames the live database to `<target>-retired-<run>`,
//!   `step: "in"` renames the temporary one to the target; the state machine waits
//!   between the two, as AWS needs;
//! - `retire`: delete retired databases: this run's, and those of runs that have
//!   ended (each carries `understudy:retired-by`, the run that renamed it aside);
//! - `repair`: the first change of a refresh, after `check`: when no database holds the target name
//!   and exactly one retired database of an ended run exists (a run aborted between
//!   the two renames), rename it back;
//! - `return-to-sleep`: stop the new live database when the old one was asleep;
//! - `undo`: after a failure, put live staging back as it was and delete what this
//!   run made (see [`RestoreFunction::undo`]).
//!
//! Guard rails: every database modified or deleted carries the staging tag, is not
//! the source, and is not in the production account; every instance deleted with
//! its cluster carries the staging tag or is named as a restore names a cluster's
//! instances (`<target>-new-<run hash>-<n>`); otherwise `GuardRailViolation`
//! before any mutating call.
//!
//! Encryption: what staging restores is encrypted with staging's key
//! (`database.staging_kms_key_id`, else staging's own [`DEFAULT_STAGING_KMS_KEY`]),
//! never with the key production shared the snapshot under.

mod databases;
#[cfg(test)]
mod mocked_tests;
mod naming;

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use understudy_shared::answer::{bounded, schema_of, to_answer};
use understudy_shared::aws::{rds_client, AwsContext};
use understudy_shared::config::{DatabaseConfig, DatabaseKind, EnvironmentConfig};
use understudy_shared::lease::{self, RunState};
use understudy_shared::rds::{arn_account, SnapshotRef, SnapshotStatus, Snapshots};
use understudy_shared::request::ActionRequest;
use understudy_shared::settings::{ConfigRef, Settings};
use understudy_shared::tags::{self, tag_value};
use understudy_shared::{guard, Error, Result};

pub use databases::{DatabaseSummary, Databases, MasterPassword};
pub use naming::{retired_identifier, temporary_identifier};

/// Staging's key when `database.staging_kms_key_id` is not set: the AWS-managed
/// RDS key of the account that makes the call, which is staging (an alias is
/// resolved in the caller's account). Used for the staging copy of an instance
/// snapshot and for a cluster restored from an encrypted snapshot.
pub const DEFAULT_STAGING_KMS_KEY: &str = "alias/aws/rds";

/// The function's handler, holding the AWS config built once per cold start.
pub struct RestoreFunction {
    aws: AwsContext,
    settings: Settings,
    /// Whether the run that retired a database still runs (`retire`, `repair`).
    sfn: aws_sdk_sfn::Client,
}

/// `{"action": "check" | "wake-live" | "retire" | "repair" | "return-to-sleep" | "undo", "run_id", "execution"?, "config"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The run (execution name).
    pub run_id: String,
    /// The execution's ARN (`$$.Execution.Id`), for `retire` and `repair`: another
    /// run's state is asked of Step Functions under the same state machine. Without
    /// it, every other run counts as still running.
    #[serde(default)]
    pub execution: Option<String>,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// `{"action": "copy" | "restore", "run_id", "snapshot": {kind, identifier or ARN}, "config"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// The run (execution name).
    pub run_id: String,
    /// The snapshot shared with staging (its ARN), or staging's copy of it.
    pub snapshot: SnapshotRef,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// `{"action": "status", "snapshot": {...}}` or `{"action": "status", "database": {...}}`, plus `config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// A snapshot to look at.
    #[serde(default)]
    pub snapshot: Option<SnapshotRef>,
    /// A database to look at.
    #[serde(default)]
    pub database: Option<DatabaseRef>,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// `{"action": "prepare", "run_id", "database": {kind, identifier}, "config"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareRequest {
    /// The run (execution name).
    pub run_id: String,
    /// The temporary database (`restore`'s answer).
    pub database: DatabaseRef,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// `{"action": "swap", "step": "aside" | "in", "run_id", "config"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// Which rename.
    pub step: SwapStep,
    /// The run (execution name).
    pub run_id: String,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// The two renames of a swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwapStep {
    /// Rename the live database aside.
    Aside,
    /// Rename the new database to the target identifier.
    In,
}

/// A database by kind and identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseRef {
    /// Cluster or instance.
    pub kind: DatabaseKind,
    /// Its identifier.
    pub identifier: String,
}

/// The function's requests, by action.
#[derive(Debug)]
pub enum Request {
    /// Read-only guard-rail check of the live database.
    Check(RunRequest),
    /// Copy a shared snapshot into staging where needed.
    Copy(SnapshotRequest),
    /// Restore under the temporary identifier.
    Restore(SnapshotRequest),
    /// Status of a snapshot or a database.
    Status(StatusRequest),
    /// Staging's password on the temporary database.
    Prepare(PrepareRequest),
    /// Start a sleeping live database.
    WakeLive(RunRequest),
    /// One of the two renames.
    Swap(SwapRequest),
    /// Delete retired databases.
    Retire(RunRequest),
    /// Rename back the retired database of a run that died between the renames.
    Repair(RunRequest),
    /// Stop the new live database again.
    ReturnToSleep(RunRequest),
    /// Put staging back after a failure.
    Undo(RunRequest),
}

/// Every action, in refresh order.
pub const ACTIONS: &[&str] = &[
    "check",
    "copy",
    "restore",
    "status",
    "prepare",
    "wake-live",
    "swap",
    "retire",
    "repair",
    "return-to-sleep",
    "undo",
];

/// The schema of each action's answer, for the state machines' contract test.
/// `status` answers a snapshot's or a database's status, depending on the
/// request: see [`status_answer_schema`] for the one a request gets.
pub fn answer_schema(action: &str) -> Option<Schema> {
    Some(match action {
        "check" => schema_of::<LiveCheck>(),
        "copy" => schema_of::<Restorable>(),
        "restore" => schema_of::<Restored>(),
        "status" => schema_of::<StatusAnswer>(),
        "prepare" => schema_of::<Prepared>(),
        "wake-live" => schema_of::<WokenLive>(),
        "swap" => schema_of::<Swapped>(),
        "retire" => schema_of::<Retired>(),
        "repair" => schema_of::<Repaired>(),
        "return-to-sleep" => schema_of::<ReturnedToSleep>(),
        "undo" => schema_of::<Undone>(),
        _ => return None,
    })
}

/// The answer schema of a `status` request that gives the field `looking_at`
/// (`snapshot` or `database`); `None` for any other field.
pub fn status_answer_schema(looking_at: &str) -> Option<Schema> {
    match looking_at {
        "snapshot" => Some(schema_of::<SnapshotStatus>()),
        "database" => Some(schema_of::<DatabaseStatus>()),
        _ => None,
    }
}

impl Request {
    /// Parses a payload; errors name the offending field.
    pub fn parse(payload: Value) -> Result<Self> {
        let request = ActionRequest::new(payload)?;
        match request.action() {
            "check" => request.fields().map(Self::Check),
            "copy" => request.fields().map(Self::Copy),
            "restore" => request.fields().map(Self::Restore),
            "status" => request.fields().map(Self::Status),
            "prepare" => request.fields().map(Self::Prepare),
            "wake-live" => request.fields().map(Self::WakeLive),
            "swap" => request.fields().map(Self::Swap),
            "retire" => request.fields().map(Self::Retire),
            "repair" => request.fields().map(Self::Repair),
            "return-to-sleep" => request.fields().map(Self::ReturnToSleep),
            "undo" => request.fields().map(Self::Undo),
            _ => Err(request.unknown_action(ACTIONS)),
        }
    }
}

/// A database's progress, for a `Wait`/`Choice` loop on `available`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DatabaseStatus {
    /// Identifier.
    pub identifier: String,
    /// The cluster's or instance's status.
    pub status: String,
    /// A cluster's instances and their statuses.
    pub members: Vec<MemberStatus>,
    /// True when the database and all its instances are available.
    pub available: bool,
}

/// One instance of a cluster.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MemberStatus {
    /// Instance identifier.
    pub identifier: String,
    /// Its status.
    pub status: String,
}

/// What `restore` answers.
#[derive(Debug, Serialize, PartialEq, Eq, JsonSchema)]
pub struct Restored {
    /// The temporary database.
    pub database: DatabaseRef,
    /// A cluster's instances.
    pub members: Vec<String>,
}

/// What `check` answers: the live staging database under the target name.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LiveCheck {
    /// The target identifier.
    pub target: String,
    /// Whether a database has that name.
    pub exists: bool,
    /// Its AWS status; null when it does not exist.
    pub status: Option<String>,
    /// Whether it is stopped or stopping.
    pub asleep: bool,
}

/// What `copy` answers: the snapshot to restore from.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Restorable {
    /// The shared snapshot, or staging's copy of it.
    pub snapshot: SnapshotRef,
    /// True when staging's copy is being made (wait for it).
    pub copied: bool,
}

/// What `status` answers, depending on what the request looks at.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum StatusAnswer {
    /// A snapshot's status.
    Snapshot(SnapshotStatus),
    /// A database's status.
    Database(DatabaseStatus),
}

/// How `prepare` set staging's master password.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PasswordMethod {
    /// From the secret `config.database.password.secret_arn`.
    Secret,
    /// Managed by RDS in Secrets Manager.
    Managed,
}

/// What `prepare` answers (never the password itself).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Prepared {
    /// The temporary database.
    pub database: DatabaseRef,
    /// How its password was set.
    pub password: PasswordMethod,
}

/// What `wake-live` answers, also when staging has no database under the
/// target name yet (a first refresh): `database` is then the one the refresh
/// will create, and `exists` is false.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WokenLive {
    /// True when the live database was asleep, so the run puts the new one back to sleep.
    pub was_asleep: bool,
    /// Whether a live database exists under the target name.
    pub exists: bool,
    /// The live database (kind and target identifier).
    pub database: DatabaseRef,
}

/// What `swap` answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Swapped {
    /// Whether a rename was made (or had been, by an earlier attempt).
    pub renamed: bool,
    /// The database the step is about: the retired one (`aside`) or the new live one (`in`).
    pub database: DatabaseRef,
}

/// What `retire` answers: at most [`MAX_LISTED`](understudy_shared::answer::MAX_LISTED)
/// deleted identifiers, with a count of those left out.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Retired {
    /// Retired databases deleted.
    pub deleted: Vec<String>,
    /// Deleted ones not listed.
    pub deleted_left_out: usize,
    /// Retired databases kept: their run is still running (its undo may need them).
    pub kept: Vec<String>,
}

/// What `repair` answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Repaired {
    /// True when a retired database was renamed back to the target (wait for it).
    pub repaired: bool,
    /// The database under the target name (being renamed when repaired).
    pub database: DatabaseRef,
    /// The retired database renamed back, if any.
    pub from: Option<String>,
}

/// What `return-to-sleep` answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReturnedToSleep {
    /// The live database, stopped (or stopping).
    pub stopped: String,
}

/// What `undo` answers. `deleted` holds at most two identifiers: this run's
/// temporary database and its staging copy of the snapshot.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Undone {
    /// Whether the live database was renamed back from its retired name.
    pub renamed_back: bool,
    /// What this run made and undo deleted.
    pub deleted: Vec<String>,
}

/// Everything an action needs, parsed and checked once.
pub struct Refresh {
    config: EnvironmentConfig,
    databases: Databases,
    snapshots: Snapshots,
}

impl Refresh {
    /// A refresh with the effective configuration `config` through staging's `rds`.
    pub fn with_config(config: EnvironmentConfig, rds: aws_sdk_rds::Client) -> Result<Self> {
        let database = config.require_database()?;
        database.check_refresh()?;
        ensure_staging_is_not_production(&config, &config.staging.account_id)?;
        Ok(Self {
            databases: Databases::new(rds.clone(), database.kind),
            snapshots: Snapshots::new(rds, database.kind),
            config,
        })
    }

    fn database(&self) -> &DatabaseConfig {
        self.config.database.as_ref().expect("checked by Refresh::load")
    }

    fn target(&self) -> &str {
        self.database().target.as_deref().expect("checked by Refresh::load")
    }

    /// The KMS key staging encrypts its copies and restores with.
    fn staging_kms_key(&self) -> &str {
        self.database().staging_kms_key_id.as_deref().unwrap_or(DEFAULT_STAGING_KMS_KEY)
    }

    /// Whether the snapshot ARN `reference` belongs to another account than
    /// staging's (so it is reached by ARN and, if encrypted, copied first).
    fn is_foreign(&self, reference: &str) -> bool {
        let Some(owner) = arn_account(reference) else { return false };
        owner != self.config.staging.account_id
    }

    /// The tags on everything this run makes in staging.
    fn run_tags(&self, run_id: &str) -> Vec<(String, String)> {
        vec![
            (self.config.tag.key.clone(), self.config.tag.value.clone()),
            (tags::MANAGED.to_owned(), tags::MANAGED_VALUE.to_owned()),
            (tags::RUN.to_owned(), run_id.to_owned()),
        ]
    }

    /// The guard rails for a staging database about to be modified or deleted.
    fn ensure_may_modify(&self, database: &DatabaseSummary) -> Result<()> {
        guard::ensure_staging(&database.identifier, &database.tags, &self.config.tag)?;
        guard::ensure_not_source(&database.identifier, &self.database().source)?;
        let production = &self.config.production;
        let cross_account = production.role_arn.is_some();
        if cross_account && arn_account(&database.arn) == Some(production.account_id.as_str()) {
            return Err(Error::GuardRailViolation(format!(
                "refusing to modify `{}`: it is in the production account {}",
                database.identifier, production.account_id
            )));
        }
        Ok(())
    }

    /// A cluster's instances are deleted with it ([`Databases::delete`]), so each
    /// must be one understudy may delete: carrying the staging tag, or named as a
    /// restore of the target names a cluster's instances (`<target>-new-<run
    /// hash>-<n>`; the IAM policy allows those by name). Reads only: a
    /// `DescribeDBInstances` for each instance with another name.
    async fn ensure_members_may_be_deleted(&self, cluster: &DatabaseSummary) -> Result<()> {
        let tag = &self.config.tag;
        for member in &cluster.members {
            if naming::is_member_identifier(member, self.target()) {
                continue;
            }
            let Some(instance) = self.databases.find_instance(member).await? else { continue };
            if guard::ensure_staging(member, &instance.tags, tag).is_err() {
                return Err(Error::GuardRailViolation(format!(
                    "refusing to delete `{member}`, an instance of the cluster `{}`: it does not carry the staging \
                     tag {}={} and is not named as understudy names a restored cluster's instances; tag the \
                     instance {}={} (a cluster's tags do not reach its instances), then run again",
                    cluster.identifier, tag.key, tag.value, tag.key, tag.value
                )));
            }
        }
        Ok(())
    }

    /// Refuses a database this run did not make.
    fn ensure_this_runs(&self, database: &DatabaseSummary, run_id: &str) -> Result<()> {
        self.ensure_may_modify(database)?;
        guard::ensure_managed(&database.identifier, &database.tags)?;
        if tag_value(&database.tags, tags::RUN) != Some(run_id) {
            return Err(Error::GuardRailViolation(format!(
                "refusing to modify `{}`: it was made by run `{}`, not this run `{run_id}`",
                database.identifier,
                tag_value(&database.tags, tags::RUN).unwrap_or("?")
            )));
        }
        Ok(())
    }

    /// Restores `snapshot` under this run's temporary identifier, with a
    /// cluster's instances. A retry that finds its own temporary database (the
    /// restore answered `DBClusterAlreadyExistsFault`) carries on; one that finds
    /// a database another run made stops with `GuardRailViolation`.
    pub async fn restore_temporary(&self, run_id: &str, snapshot: &SnapshotRef) -> Result<Restored> {
        let database = self.database();
        let temporary = temporary_identifier(self.target(), run_id);
        let found = self.snapshots.find(&snapshot.identifier).await?.ok_or_else(|| {
            Error::SnapshotNotFound(format!(
                "snapshot `{}` does not exist or is not shared with staging",
                snapshot.identifier
            ))
        })?;
        let tags = self.run_tags(run_id);
        // Without a KmsKeyId AWS keeps the snapshot's key: for a shared snapshot,
        // the production key it was shared under. (An instance restore takes no
        // key: `copy` re-encrypted a shared, encrypted one with staging's key.)
        let kms_key = if found.encrypted {
            Some(self.staging_kms_key())
        } else {
            database.staging_kms_key_id.as_deref()
        };
        let created = self
            .databases
            .restore(&temporary, &found, &snapshot.identifier, &database.restore, kms_key, &tags)
            .await?;
        if !created {
            let existing = self.databases.find(&temporary).await?.ok_or_else(|| {
                Error::AwsTransient(format!("`{temporary}` was reported as existing but cannot be read yet"))
            })?;
            self.ensure_this_runs(&existing, run_id)?;
        }
        let mut members = Vec::new();
        if database.kind == DatabaseKind::Cluster {
            let engine = found.engine.as_deref().unwrap_or("aurora-postgresql");
            members = self.databases.create_members(&temporary, engine, &database.restore, &tags).await?;
        }
        tracing::info!(database = %temporary, ?members, resumed = !created, "restoring into a temporary database");
        Ok(Restored { database: DatabaseRef { kind: database.kind, identifier: temporary }, members })
    }

    /// A stopped database cannot be renamed: start a sleeping live database and
    /// say so, so the run puts the new one back to sleep at the end. Without a
    /// live database (a first refresh) there is nothing to wake.
    pub async fn wake_live(&self) -> Result<WokenLive> {
        let database = DatabaseRef { kind: self.databases.kind(), identifier: self.target().to_owned() };
        let Some(live) = self.databases.find(self.target()).await? else {
            return Ok(WokenLive { was_asleep: false, exists: false, database });
        };
        let asleep_by_tag = tag_value(&live.tags, tags::SLEEP_STATE) == Some("asleep");
        let was_asleep = match live.status.as_str() {
            "stopped" => {
                self.ensure_may_modify(&live)?;
                self.databases.start(&live.identifier).await?;
                tracing::info!(database = %live.identifier, "started the sleeping live database for the swap");
                true
            }
            "stopping" => {
                return Err(Error::ResourceBusy(format!(
                    "`{}` is stopping; it can be started once stopped",
                    live.identifier
                )))
            }
            "starting" => true,
            _ => asleep_by_tag,
        };
        Ok(WokenLive {
            was_asleep,
            exists: true,
            database: DatabaseRef { identifier: live.identifier, ..database },
        })
    }

    async fn status(&self, identifier: &str) -> Result<DatabaseStatus> {
        let database = self.databases.find(identifier).await?.ok_or_else(|| {
            Error::DatabaseNotFound(format!(
                "staging {} `{identifier}` does not exist",
                self.databases.kind()
            ))
        })?;
        let mut members = Vec::new();
        for member in &database.members {
            let status = match self.databases.find_instance(member).await? {
                Some(instance) => instance.status,
                None => "missing".to_owned(),
            };
            members.push(MemberStatus { identifier: member.clone(), status });
        }
        let failed = std::iter::once((&database.identifier, &database.status))
            .chain(members.iter().map(|m| (&m.identifier, &m.status)))
            .find(|(_, status)| FAILED_STATUSES.contains(&status.as_str()));
        if let Some((identifier, status)) = failed {
            return Err(Error::DatabaseFailed(format!(
                "staging database `{identifier}` is `{status}`: it needs an operator (see the RDS console's events \
                 for `{identifier}`); waiting longer will not help"
            )));
        }
        let available = database.status == "available" && members.iter().all(|m| m.status == "available");
        Ok(DatabaseStatus { identifier: database.identifier, status: database.status, members, available })
    }
}

/// With a production role configured, production is another account: a staging
/// account equal to it would restore and delete databases in production.
fn ensure_staging_is_not_production(config: &EnvironmentConfig, staging_account: &str) -> Result<()> {
    if config.production.role_arn.is_some() && staging_account == config.production.account_id {
        let target = config.database.as_ref().and_then(|d| d.target.as_deref()).unwrap_or("the target");
        return Err(Error::GuardRailViolation(format!(
            "refusing to refresh `{target}`: staging runs in account {staging_account}, which is the production \
             account (stack parameters StagingAccountId and ProductionAccountId; a production role is configured, \
             so production must be another account)"
        )));
    }
    Ok(())
}

/// A first refresh creates the target: only where staging's network says, never
/// in the default VPC, so the subnet group and security groups are required.
fn ensure_can_create(database: &DatabaseConfig) -> Result<()> {
    let target = database.target.as_deref().unwrap_or("the target");
    let restore = &database.restore;
    if restore.subnet_group.is_none() {
        return Err(Error::InvalidInput(format!(
            "invalid input at `config.database.restore.subnet_group`: staging has no database `{target}` yet, so this \
             refresh creates it; name staging's DB subnet group so it is not created in the default VPC"
        )));
    }
    if restore.security_group_ids.is_empty() {
        return Err(Error::InvalidInput(format!(
            "invalid input at `config.database.restore.security_group_ids`: staging has no database `{target}` yet, \
             so this refresh creates it; name the security groups it gets"
        )));
    }
    Ok(())
}

/// Statuses that need an operator: polling longer will not change them.
const FAILED_STATUSES: &[&str] = &[
    "failed",
    "incompatible-restore",
    "incompatible-parameters",
    "incompatible-network",
    "incompatible-option-group",
    "incompatible-credentials",
    "storage-full",
    "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable",
    "migration-failed",
    "restore-error",
];

fn is_asleep(status: &str) -> bool {
    matches!(status, "stopped" | "stopping")
}

impl RestoreFunction {
    /// A handler using `aws` for every call.
    pub fn new(aws: AwsContext) -> Self {
        let settings = Settings::from_env(aws.base());
        let sfn = aws_sdk_sfn::Client::new(aws.base());
        Self { aws, settings, sfn }
    }

    /// Handles one invocation.
    pub async fn handle(&self, payload: Value) -> Result<Value> {
        match Request::parse(payload)? {
            Request::Check(r) => to_answer(&self.check(r).await?),
            Request::Copy(r) => to_answer(&self.copy(r).await?),
            Request::Restore(r) => to_answer(&self.restore(r).await?),
            Request::Status(r) => to_answer(&self.status(r).await?),
            Request::Prepare(r) => to_answer(&self.prepare(r).await?),
            Request::WakeLive(r) => to_answer(&self.wake_live(r).await?),
            Request::Swap(r) => to_answer(&self.swap(r).await?),
            Request::Retire(r) => to_answer(&self.retire(r).await?),
            Request::Repair(r) => to_answer(&self.repair(r).await?),
            Request::ReturnToSleep(r) => to_answer(&self.return_to_sleep(r).await?),
            Request::Undo(r) => to_answer(&self.undo(r).await?),
        }
    }

    async fn load(&self, config: &ConfigRef) -> Result<Refresh> {
        let config = self.settings.load(config).await?;
        let rds = rds_client(&self.aws.staging(&config.staging));
        Refresh::with_config(config, rds)
    }

    /// Read-only: the guard rails on the live staging database, so a run that
    /// would be refused later is refused before it makes anything.
    async fn check(&self, request: RunRequest) -> Result<LiveCheck> {
        let refresh = self.load(&request.config).await?;
        let own_account = self.own_account(&refresh).await?;
        if own_account != refresh.config.staging.account_id {
            return Err(Error::GuardRailViolation(format!(
                "refusing to refresh: the functions run in account {own_account}, but the stack's StagingAccountId is {} \
                 (production's snapshot would be shared with that account, not this one)",
                refresh.config.staging.account_id
            )));
        }
        let target = refresh.target();
        let live = refresh.databases.find(target).await?;
        match &live {
            Some(live) => {
                // This run retires the live database, its instances with it.
                refresh.ensure_may_modify(live)?;
                refresh.ensure_members_may_be_deleted(live).await?;
            }
            None => {
                // No database under the target name: a first refresh creates one, unless
                // a run died between its renames, whose retired database `repair` renames back.
                let retired = self.retired_databases(&refresh).await?;
                if retired.is_empty() {
                    ensure_can_create(refresh.database())?;
                }
                for database in &retired {
                    refresh.ensure_may_modify(database)?;
                    refresh.ensure_members_may_be_deleted(database).await?;
                }
            }
        }
        Ok(LiveCheck {
            target: target.to_owned(),
            exists: live.is_some(),
            status: live.as_ref().map(|l| l.status.clone()),
            asleep: live.as_ref().is_some_and(|l| is_asleep(&l.status)),
        })
    }

    /// The account the functions run in (read-only `sts:GetCallerIdentity`).
    async fn own_account(&self, refresh: &Refresh) -> Result<String> {
        let sts = aws_sdk_sts::Client::new(&self.aws.staging(&refresh.config.staging));
        let identity = sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| Error::from_sdk("sts:GetCallerIdentity", e))?;
        identity
            .account()
            .map(str::to_owned)
            .ok_or_else(|| Error::AwsTransient("sts:GetCallerIdentity answered without an account".into()))
    }

    /// A shared, encrypted instance snapshot must be copied (with a key staging
    /// owns) before AWS restores it; every other snapshot restores as shared.
    async fn copy(&self, request: SnapshotRequest) -> Result<Restorable> {
        let refresh = self.load(&request.config).await?;
        let foreign = refresh.is_foreign(&request.snapshot.identifier);
        let mut snapshot = request.snapshot;
        if !foreign {
            // Staging's own snapshot (a same-account setup): restored by identifier.
            snapshot.identifier = snapshot.identifier.rsplit(':').next().unwrap_or_default().to_owned();
        }
        let shared = refresh.snapshots.find(&snapshot.identifier).await?.ok_or_else(|| {
            Error::SnapshotNotFound(format!(
                "snapshot `{}` does not exist or is not shared with staging",
                snapshot.identifier
            ))
        })?;
        if refresh.database().kind == DatabaseKind::Cluster || !shared.encrypted || !foreign {
            return Ok(Restorable { snapshot, copied: false });
        }
        let identifier = naming::staging_copy_identifier(refresh.target(), &request.run_id);
        let key = refresh.staging_kms_key();
        let tags = refresh.run_tags(&request.run_id);
        if refresh.snapshots.copy(&snapshot.identifier, &identifier, Some(key), &tags).await?.is_none() {
            let existing = refresh.snapshots.find(&identifier).await?;
            let ours =
                existing.is_some_and(|s| tag_value(&s.tags, tags::RUN) == Some(request.run_id.as_str()));
            if !ours {
                return Err(Error::SnapshotConflict(format!(
                    "snapshot `{identifier}` exists and is not this run's"
                )));
            }
        }
        tracing::info!(copy = %identifier, "copying the shared snapshot into staging");
        let snapshot = SnapshotRef { kind: refresh.database().kind, identifier };
        Ok(Restorable { snapshot, copied: true })
    }

    async fn restore(&self, request: SnapshotRequest) -> Result<Restored> {
        let refresh = self.load(&request.config).await?;
        refresh.restore_temporary(&request.run_id, &request.snapshot).await
    }

    async fn status(&self, request: StatusRequest) -> Result<StatusAnswer> {
        let config = self.settings.load(&request.config).await?;
        let rds = rds_client(&self.aws.staging(&config.staging));
        match (request.snapshot, request.database) {
            (Some(snapshot), None) => Ok(StatusAnswer::Snapshot(
                Snapshots::new(rds, snapshot.kind).status(&snapshot.identifier).await?,
            )),
            (None, Some(database)) => {
                let config_kind = config.database.as_ref().map(|d| d.kind).unwrap_or(database.kind);
                let refresh = Refresh {
                    databases: Databases::new(rds.clone(), database.kind),
                    snapshots: Snapshots::new(rds, config_kind),
                    config,
                };
                Ok(StatusAnswer::Database(refresh.status(&database.identifier).await?))
            }
            _ => Err(Error::InvalidInput(
                "invalid input: give exactly one of `snapshot` or `database` to look at".into(),
            )),
        }
    }

    /// Staging's own master password on the temporary database, before it goes
    /// live. The password is read from Secrets Manager and never logged or returned.
    async fn prepare(&self, request: PrepareRequest) -> Result<Prepared> {
        let refresh = self.load(&request.config).await?;
        let database = refresh.databases.find(&request.database.identifier).await?.ok_or_else(|| {
            Error::DatabaseNotFound(format!("`{}` does not exist", request.database.identifier))
        })?;
        refresh.ensure_this_runs(&database, &request.run_id)?;
        let source = &refresh.database().password;
        let (password, method) = match &source.secret_arn {
            Some(secret_arn) => (
                MasterPassword::Value(self.read_password(&refresh, secret_arn).await?),
                PasswordMethod::Secret,
            ),
            None => (MasterPassword::Managed, PasswordMethod::Managed),
        };
        refresh.databases.set_master_password(&database.identifier, password).await?;
        tracing::info!(database = %database.identifier, ?method, "staging's master password set");
        Ok(Prepared { database: request.database, password: method })
    }

    async fn read_password(&self, refresh: &Refresh, secret_arn: &str) -> Result<String> {
        let secrets = aws_sdk_secretsmanager::Client::new(&self.aws.staging(&refresh.config.staging));
        let secret = secrets.get_secret_value().secret_id(secret_arn).send().await.map_err(|err| {
            match err.as_service_error() {
                Some(e) if e.is_resource_not_found_exception() => Error::InvalidInput(format!(
                    "invalid input at `config.database.password.secret_arn`: secret `{secret_arn}` does not exist"
                )),
                _ => Error::from_sdk("secretsmanager:GetSecretValue", err),
            }
        })?;
        let text = secret.secret_string().unwrap_or_default();
        let password = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => fields.get("password").and_then(Value::as_str).map(str::to_owned),
            _ => Some(text.to_owned()),
        };
        password.filter(|p| !p.is_empty()).ok_or_else(|| {
            Error::InvalidInput(format!(
                "invalid input at `config.database.password.secret_arn`: secret `{secret_arn}` holds no password \
                 (a string, or JSON with a \"password\" field)"
            ))
        })
    }

    async fn wake_live(&self, request: RunRequest) -> Result<WokenLive> {
        self.load(&request.config).await?.wake_live().await
    }

    async fn swap(&self, request: SwapRequest) -> Result<Swapped> {
        let refresh = self.load(&request.config).await?;
        let kind = refresh.databases.kind();
        let target = refresh.target().to_owned();
        let retired = retired_identifier(&target, &request.run_id);
        let temporary = temporary_identifier(&target, &request.run_id);
        match request.step {
            SwapStep::Aside => {
                let Some(live) = refresh.databases.find(&target).await? else {
                    let done = refresh.databases.find(&retired).await?.is_some();
                    return Ok(Swapped {
                        renamed: done,
                        database: DatabaseRef { kind, identifier: retired },
                    });
                };
                refresh.ensure_may_modify(&live)?;
                if tag_value(&live.tags, tags::RUN) == Some(request.run_id.as_str()) {
                    // Our new database is already live: both renames happened.
                    return Ok(Swapped {
                        renamed: false,
                        database: DatabaseRef { kind, identifier: target },
                    });
                }
                if is_asleep(&live.status) {
                    return Err(Error::ResourceBusy(format!(
                        "`{target}` is {}; start it before the swap",
                        live.status
                    )));
                }
                if tag_value(&live.tags, tags::RETIRED_BY) != Some(request.run_id.as_str()) {
                    // Which run retired it: retire and repair leave a running run's alone.
                    let retired_by = [(tags::RETIRED_BY.to_owned(), request.run_id.clone())];
                    refresh.databases.add_tags(&live.arn, &retired_by).await?;
                }
                refresh.databases.rename(&target, &retired).await?;
                tracing::info!(from = %target, to = %retired, "renamed the live database aside");
                Ok(Swapped { renamed: true, database: DatabaseRef { kind, identifier: retired } })
            }
            SwapStep::In => {
                if let Some(live) = refresh.databases.find(&target).await? {
                    if tag_value(&live.tags, tags::RUN) == Some(request.run_id.as_str()) {
                        return Ok(Swapped {
                            renamed: true,
                            database: DatabaseRef { kind, identifier: target },
                        });
                    }
                    return Err(Error::ResourceBusy(format!(
                        "`{target}` is still taken by the live database"
                    )));
                }
                let new = refresh.databases.find(&temporary).await?.ok_or_else(|| {
                    Error::DatabaseNotFound(format!("the restored database `{temporary}` does not exist"))
                })?;
                refresh.ensure_this_runs(&new, &request.run_id)?;
                refresh.databases.rename(&temporary, &target).await?;
                tracing::info!(from = %temporary, to = %target, "renamed the new database into place");
                Ok(Swapped { renamed: true, database: DatabaseRef { kind, identifier: target } })
            }
        }
    }

    /// The retired databases of the target (any run's).
    async fn retired_databases(&self, refresh: &Refresh) -> Result<Vec<DatabaseSummary>> {
        let target = refresh.target();
        Ok(refresh
            .databases
            .list_with_prefix(&naming::retired_prefix(target))
            .await?
            .into_iter()
            .filter(|db| naming::is_retired_identifier(&db.identifier, target))
            .collect())
    }

    /// Whether the run that retired `database` has ended: true for this run's own
    /// (`own`), for one retired before runs tagged them, and for a run Step
    /// Functions no longer reports RUNNING; false while it runs (or, without this
    /// execution's ARN, when it cannot be asked).
    async fn retired_by_ended_run(&self, database: &DatabaseSummary, request: &RunRequest) -> Result<bool> {
        let Some(run) = tag_value(&database.tags, tags::RETIRED_BY) else { return Ok(true) };
        if run == request.run_id {
            return Ok(true);
        }
        let Some(sibling) = request.execution.as_deref().and_then(|e| lease::sibling_execution(e, run))
        else {
            return Ok(false);
        };
        Ok(lease::run_state(&self.sfn, &sibling).await? == RunState::Ended)
    }

    /// Deletes the target's retired databases: this run's, and those of runs
    /// that have ended (left behind by a late failure); a running run's is kept.
    async fn retire(&self, request: RunRequest) -> Result<Retired> {
        let refresh = self.load(&request.config).await?;
        let settings = refresh.database().retire.clone();
        let mut retired = Vec::new();
        let mut kept = Vec::new();
        for database in self.retired_databases(&refresh).await? {
            if self.retired_by_ended_run(&database, &request).await? {
                retired.push(database);
            } else {
                tracing::info!(database = %database.identifier, "kept: its run is still running");
                kept.push(database.identifier);
            }
        }
        // Every deletion is checked before the first one.
        for database in &retired {
            refresh.ensure_may_modify(database)?;
            if database.deletion_protection && !settings.disable_deletion_protection {
                return Err(Error::GuardRailViolation(format!(
                    "`{}` has deletion protection and config.database.retire.disable_deletion_protection is false; \
                     it is left in place",
                    database.identifier
                )));
            }
            if database.status != "deleting" {
                refresh.ensure_members_may_be_deleted(database).await?;
            }
        }
        let mut deleted = Vec::new();
        for database in retired.drain(..) {
            if database.status == "deleting" {
                continue;
            }
            if database.deletion_protection {
                refresh.databases.disable_deletion_protection(&database.identifier).await?;
            }
            let final_snapshot = settings.final_snapshot.then(|| format!("{}-final", database.identifier));
            refresh.databases.delete(&database, final_snapshot.as_deref()).await?;
            tracing::info!(database = %database.identifier, "deleted the retired database");
            deleted.push(database.identifier);
        }
        let (deleted, deleted_left_out) = bounded(deleted);
        Ok(Retired { deleted, deleted_left_out, kept })
    }

    /// A refresh aborted (or timed out) between its two renames leaves no database
    /// under the target name, only `<target>-retired-<run>`. Before anything else,
    /// the next refresh renames that one back, if it is the only retired database
    /// of an ended run; with several, it refuses to choose.
    async fn repair(&self, request: RunRequest) -> Result<Repaired> {
        let refresh = self.load(&request.config).await?;
        let target = refresh.target().to_owned();
        let database = DatabaseRef { kind: refresh.databases.kind(), identifier: target.clone() };
        if refresh.databases.find(&target).await?.is_some() {
            return Ok(Repaired { repaired: false, database, from: None });
        }
        let mut orphans = Vec::new();
        for retired in self.retired_databases(&refresh).await? {
            if retired.status != "deleting" && self.retired_by_ended_run(&retired, &request).await? {
                orphans.push(retired);
            }
        }
        match orphans.as_slice() {
            [] => Ok(Repaired { repaired: false, database, from: None }),
            [orphan] => {
                refresh.ensure_may_modify(orphan)?;
                refresh.databases.rename(&orphan.identifier, &target).await?;
                tracing::warn!(from = %orphan.identifier, to = %target, "renamed the retired database of an ended run back");
                Ok(Repaired { repaired: true, database, from: Some(orphan.identifier.clone()) })
            }
            several => Err(Error::GuardRailViolation(format!(
                "no database is named `{target}` and several retired ones of ended runs exist ({}); \
                 rename the right one back to `{target}` by hand",
                several.iter().map(|d| d.identifier.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    async fn return_to_sleep(&self, request: RunRequest) -> Result<ReturnedToSleep> {
        let refresh = self.load(&request.config).await?;
        let live = refresh
            .databases
            .find(refresh.target())
            .await?
            .ok_or_else(|| Error::DatabaseNotFound(format!("`{}` does not exist", refresh.target())))?;
        refresh.ensure_may_modify(&live)?;
        if !is_asleep(&live.status) {
            refresh.databases.stop(&live.identifier).await?;
        }
        let since = tags::now_rfc3339();
        let sleep_tags =
            [(tags::SLEEP_STATE.to_owned(), "asleep".to_owned()), (tags::SLEEP_SINCE.to_owned(), since)];
        refresh.databases.add_tags(&live.arn, &sleep_tags).await?;
        tracing::info!(database = %live.identifier, "put the refreshed database back to sleep");
        Ok(ReturnedToSleep { stopped: live.identifier })
    }

    /// After a failure: if the live database was renamed aside and the new one
    /// is not in place, rename it back; delete this run's temporary database and
    /// staging copy. After a complete swap there is nothing to undo: the new
    /// database stays live and the retired one waits for the next run's `retire`.
    pub async fn undo(&self, request: RunRequest) -> Result<Undone> {
        let refresh = self.load(&request.config).await?;
        let target = refresh.target().to_owned();
        let retired = retired_identifier(&target, &request.run_id);
        let temporary = temporary_identifier(&target, &request.run_id);
        let mut renamed_back = false;
        let mut deleted = Vec::new();
        let old = match refresh.databases.find(&target).await? {
            None => refresh.databases.find(&retired).await?,
            Some(_) => None,
        };
        let new = refresh.databases.find(&temporary).await?;
        // Every guard rail of the step before its first change.
        if let Some(old) = &old {
            refresh.ensure_may_modify(old)?;
        }
        if let Some(new) = &new {
            refresh.ensure_this_runs(new, &request.run_id)?;
            if new.status != "deleting" {
                refresh.ensure_members_may_be_deleted(new).await?;
            }
        }
        if old.is_some() {
            refresh.databases.rename(&retired, &target).await?;
            tracing::info!(from = %retired, to = %target, "renamed the live database back");
            renamed_back = true;
        }
        if let Some(new) = new.filter(|new| new.status != "deleting") {
            refresh.databases.delete(&new, None).await?;
            deleted.push(temporary.clone());
        }
        let copy = naming::staging_copy_identifier(&target, &request.run_id);
        if let Some(snapshot) = refresh.snapshots.find(&copy).await? {
            if tag_value(&snapshot.tags, tags::RUN) == Some(request.run_id.as_str()) {
                guard::ensure_managed(&copy, &snapshot.tags)?;
                refresh.snapshots.delete(&copy).await?;
                deleted.push(copy);
            }
        }
        tracing::info!(renamed_back, ?deleted, "undid this run's changes");
        Ok(Undone { renamed_back, deleted })
    }
}
