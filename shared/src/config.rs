//! The configuration of a run, assembled from three layers (later ones win):
//!
//! 1. the deployed stack ([`Deployment`]): the trust settings, which no other
//!    layer can set, and the simple parameters, which make the default document;
//! 2. the configuration document stored where the stack names it
//!    (`s3://<ConfigBucket>/config.json`, see [`crate::settings`]), if any;
//! 3. the execution's input: a small override of *what* to do.
//!
//! Layers merge deeply: objects field by field, anything else (lists included)
//! replaced whole, `null` removing the field so its default applies. So
//! `{"database": {"target": "x"}}` keeps the deployed subnet group. Unknown
//! fields are refused, named by their path under `config.` (the document) or
//! `input.` (the execution input).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::deployment::{check_no_trust_settings, Deployment};
use crate::request::parse_under;
use crate::{Error, Result};

/// The effective configuration of a run: what the functions act on, and what
/// `validate` shows (with the external id redacted).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EnvironmentConfig {
    /// Name of the environment understudy keeps (stack parameter `EnvironmentName`).
    pub environment: String,
    /// Where production lives and how to reach it (stack parameters).
    pub production: ProductionAccount,
    /// The staging account, where the functions run (stack parameters).
    pub staging: StagingAccount,
    /// The tag that marks staging's resources; only those are ever modified (stack parameters).
    pub tag: TagSelector,
    /// The database to snapshot and restore into staging.
    pub database: Option<DatabaseConfig>,
    /// The bucket pairs this run mirrors: the deployed ones (`MirrorBuckets`), or
    /// those the input's `buckets` chose, with the document's filters.
    pub buckets: Vec<BucketMirror>,
    /// Wait-loop intervals.
    pub poll: PollIntervals,
    /// How many of understudy's snapshots to keep.
    pub retention: Retention,
    /// What `sleep` and `wake` scale, and how (the scale-to-zero function).
    pub scale: crate::scale::ScaleSettings,
    /// The smoke test's checks (the smoke-test function).
    pub smoke: crate::smoke::SmokeSettings,
    /// How a refresh ends: staging as before or awake, migrations.
    pub refresh: crate::refresh::RefreshSettings,
    /// The input's `dry_run`: count what the mirror would copy and delete, change nothing.
    pub dry_run: bool,
    /// The input's `label`, a note for the run's output and events.
    pub label: Option<String>,
}

/// The configuration document, as stored in the stack's bucket: every section
/// optional, unknown fields refused. The execution input may override any of it
/// (and choose `buckets`, `dry_run`, `label`); neither may name a trust setting
/// (`environment`, `production`, `staging`, `tag`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "understudy configuration document")]
pub struct ConfigDocument {
    /// The production database and its staging counterpart (default: from the
    /// `Database*` stack parameters, absent without `DatabaseSource`).
    #[serde(default)]
    pub database: Option<DatabaseConfig>,
    /// Filters per deployed staging bucket (a target of `MirrorBuckets`).
    #[serde(default)]
    pub mirror: BTreeMap<String, MirrorFilters>,
    /// Wait-loop intervals.
    #[serde(default)]
    pub poll: PollIntervals,
    /// Retention of understudy's snapshots.
    #[serde(default)]
    pub retention: Retention,
    /// What `sleep` and `wake` scale, and how.
    #[serde(default)]
    pub scale: crate::scale::ScaleSettings,
    /// The smoke test: HTTP(S) checks that staging answers correctly.
    #[serde(default)]
    pub smoke: crate::smoke::SmokeSettings,
    /// What a refresh does after the swap: how staging ends, migrations.
    #[serde(default)]
    pub refresh: crate::refresh::RefreshSettings,
}

/// The parts of an execution input that are not document overrides.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    /// Mirror only these of the deployed staging buckets (targets of `MirrorBuckets`); default all.
    #[serde(default)]
    pub buckets: Option<Vec<String>>,
    /// Count what the mirror would copy and delete, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// A note for the run's output and events (at most 256 characters).
    #[serde(default)]
    pub label: Option<String>,
    /// The production deploy a refresh follows (written by the trigger function).
    #[serde(default)]
    pub trigger: Option<crate::trigger::Trigger>,
}

impl RunOptions {
    const FIELDS: &'static [&'static str] = &["buckets", "dry_run", "label", "trigger"];
}

/// Which keys of a deployed bucket pair are mirrored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MirrorFilters {
    /// Only keys (relative to the pair's prefix) matching one of these prefixes or
    /// globs are mirrored; empty means all.
    #[serde(default)]
    pub include: Vec<String>,
    /// Keys matching one of these are neither copied nor deleted.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// The production account. Without `role_arn` production is the functions' own
/// account (a same-account setup) and no role is assumed.
#[derive(Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ProductionAccount {
    /// 12-digit AWS account id.
    pub account_id: String,
    /// Region of the production database; defaults to the functions' region.
    pub region: Option<String>,
    /// Role in production that understudy assumes (`arn:aws:iam::<account_id>:role/...`).
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires. Never logged, shown as `<redacted>`.
    #[serde(serialize_with = "redacted")]
    pub external_id: Option<String>,
}

/// What an answer or a log shows for a secret.
pub const REDACTED: &str = "<redacted>";

fn redacted<S: Serializer>(value: &Option<String>, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str(REDACTED),
        None => serializer.serialize_none(),
    }
}

impl fmt::Debug for ProductionAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProductionAccount")
            .field("account_id", &self.account_id)
            .field("region", &self.region)
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// The staging account, where the functions run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct StagingAccount {
    /// 12-digit AWS account id (the stack's own unless `StagingAccountId` names another).
    pub account_id: String,
    /// Region of staging's resources; defaults to the functions' region.
    pub region: Option<String>,
}

/// Whether a database is an Aurora cluster or an RDS instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    /// An Aurora cluster (`DBCluster`, cluster snapshots).
    Cluster,
    /// An RDS DB instance (`DBInstance`, DB snapshots).
    Instance,
}

impl fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatabaseKind::Cluster => "cluster",
            DatabaseKind::Instance => "instance",
        })
    }
}

/// The production database and its staging counterpart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Cluster or instance.
    pub kind: DatabaseKind,
    /// Identifier of the production database (only ever read and snapshotted).
    pub source: String,
    /// Identifier of the staging database that a refresh replaces.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub target: Option<String>,
    /// Customer-managed KMS key in production (full ARN) that a snapshot encrypted
    /// with the AWS-managed `aws/rds` key is re-encrypted with before it is
    /// shared: another account can never use `aws/rds`. Its key policy must let
    /// the staging account use it.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub share_kms_key_arn: Option<String>,
    /// Staging's KMS key for the staging copy and the restored database; default
    /// staging's `alias/aws/rds`.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub staging_kms_key_id: Option<String>,
    /// Staging's own settings for the restored database.
    #[serde(default)]
    pub restore: RestoreSettings,
    /// Where staging's own master password comes from.
    #[serde(default)]
    pub password: PasswordSource,
    /// How the replaced staging database is deleted.
    #[serde(default)]
    pub retire: RetireSettings,
}

impl DatabaseConfig {
    /// The staging identifier, or an error naming the field when a refresh needs it.
    pub fn require_target(&self) -> Result<&str> {
        self.target
            .as_deref()
            .ok_or_else(|| invalid("config.database.target", "is required for a refresh".into()))
    }

    /// What a refresh needs beyond a snapshot: a target that is not the source,
    /// exactly one password source, a sane capacity range.
    pub fn check_refresh(&self) -> Result<()> {
        let target = self.require_target()?;
        if target == self.source {
            return Err(Error::GuardRailViolation(format!(
                "config.database.target `{target}` is the source database; a refresh never replaces its source"
            )));
        }
        match (&self.password.secret_arn, self.password.managed) {
            (Some(_), true) => {
                return Err(invalid("config.database.password", "give either secret_arn or managed: true, not both".into()))
            }
            (None, false) => {
                return Err(invalid(
                    "config.database.password",
                    "staging needs its own master password (production's must never work on staging): set secret_arn or managed: true".into(),
                ))
            }
            _ => {}
        }
        if let (Some(min), Some(max)) = (self.restore.min_capacity, self.restore.max_capacity) {
            if min > max {
                return Err(invalid(
                    "config.database.restore.min_capacity",
                    format!("{min} is above max_capacity {max}"),
                ));
            }
        }
        if self.restore.instances == Some(0) && self.kind == DatabaseKind::Cluster {
            return Err(invalid(
                "config.database.restore.instances",
                "a restored cluster needs at least 1 instance".into(),
            ));
        }
        Ok(())
    }
}

/// Staging's own settings for a restored database; unset fields take the
/// snapshot's (or AWS's) defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreSettings {
    /// DB subnet group in staging's VPC.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub subnet_group: Option<String>,
    /// VPC security groups (a list, or one comma-separated string).
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    pub security_group_ids: Vec<String>,
    /// Cluster parameter group (clusters).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub cluster_parameter_group: Option<String>,
    /// DB parameter group (instances, and a cluster's instances).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub parameter_group: Option<String>,
    /// Instance class; for a cluster's instances default `db.serverless`, for an
    /// instance default the snapshot's.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub instance_class: Option<String>,
    /// Instances to create in a restored cluster (default 1).
    #[serde(default, deserialize_with = "optional_number")]
    pub instances: Option<u32>,
    /// Aurora Serverless v2 minimum capacity (ACU).
    #[serde(default, deserialize_with = "optional_float")]
    pub min_capacity: Option<f64>,
    /// Aurora Serverless v2 maximum capacity (ACU).
    #[serde(default, deserialize_with = "optional_float")]
    pub max_capacity: Option<f64>,
    /// Engine version; default the snapshot's.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub engine_version: Option<String>,
    /// Deletion protection on the restored database (default false).
    #[serde(default, deserialize_with = "flag")]
    pub deletion_protection: bool,
}

/// Where staging's master password comes from: a Secrets Manager secret (its
/// `password` field, or the whole string), or RDS-managed (`managed: true`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordSource {
    /// ARN of the secret holding staging's password.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub secret_arn: Option<String>,
    /// Let RDS manage the master password in Secrets Manager instead.
    #[serde(default, deserialize_with = "flag")]
    pub managed: bool,
}

/// How a replaced staging database is deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetireSettings {
    /// Take a final snapshot before deleting (default false).
    #[serde(default, deserialize_with = "flag")]
    pub final_snapshot: bool,
    /// Turn deletion protection off to delete it (default false: a protected
    /// database is left in place and the refresh fails with GuardRailViolation).
    #[serde(default, deserialize_with = "flag")]
    pub disable_deletion_protection: bool,
}

/// One bucket pair of a run, with its filters: the mirror's unit of work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketMirror {
    /// Production bucket (only read).
    pub source: String,
    /// Staging bucket (must carry the staging tag).
    pub target: String,
    /// Key prefix to mirror; empty for the whole bucket.
    #[serde(default)]
    pub prefix: String,
    /// Only keys (relative to `prefix`) matching one of these prefixes or globs
    /// are mirrored; empty means all.
    #[serde(default)]
    pub include: Vec<String>,
    /// Keys (relative to `prefix`) matching one of these prefixes or globs are
    /// neither copied nor deleted.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// The tag that selects staging's resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagSelector {
    /// Tag key (stack parameter `StagingTagKey`).
    pub key: String,
    /// Tag value (stack parameter `StagingTagValue`).
    pub value: String,
}

/// How the state machines' wait loops poll (see [`crate::poll`]): each waits
/// `<kind>_seconds` first, doubles the wait up to `<kind>_max_seconds`, and
/// fails with `WaitTimedOut` after `<kind>_timeout_minutes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollIntervals {
    /// First wait on a snapshot or snapshot copy (default 30, at least 1).
    #[serde(default = "default_snapshot_poll", deserialize_with = "number_or_numeric_string")]
    pub snapshot_seconds: u32,
    /// Longest wait on a snapshot (default 300).
    #[serde(default = "default_max_wait", deserialize_with = "number_or_numeric_string")]
    pub snapshot_max_seconds: u32,
    /// Give up on a snapshot after this long (default 720: a large database's snapshot takes hours).
    #[serde(default = "default_long_timeout", deserialize_with = "number_or_numeric_string")]
    pub snapshot_timeout_minutes: u32,
    /// First wait on a database: restore, rename, start (default 30, at least 1).
    #[serde(default = "default_snapshot_poll", deserialize_with = "number_or_numeric_string")]
    pub database_seconds: u32,
    /// Longest wait on a database (default 300).
    #[serde(default = "default_max_wait", deserialize_with = "number_or_numeric_string")]
    pub database_max_seconds: u32,
    /// Give up on a database after this long (default 720).
    #[serde(default = "default_long_timeout", deserialize_with = "number_or_numeric_string")]
    pub database_timeout_minutes: u32,
    /// First wait for woken services to be stable (default 15, at least 1).
    #[serde(default = "default_service_poll", deserialize_with = "number_or_numeric_string")]
    pub service_seconds: u32,
    /// Longest wait for services (default 60).
    #[serde(default = "default_service_max_wait", deserialize_with = "number_or_numeric_string")]
    pub service_max_seconds: u32,
    /// Give up on services after this long (default 30).
    #[serde(default = "default_service_timeout", deserialize_with = "number_or_numeric_string")]
    pub service_timeout_minutes: u32,
}

impl Default for PollIntervals {
    fn default() -> Self {
        Self {
            snapshot_seconds: default_snapshot_poll(),
            snapshot_max_seconds: default_max_wait(),
            snapshot_timeout_minutes: default_long_timeout(),
            database_seconds: default_snapshot_poll(),
            database_max_seconds: default_max_wait(),
            database_timeout_minutes: default_long_timeout(),
            service_seconds: default_service_poll(),
            service_max_seconds: default_service_max_wait(),
            service_timeout_minutes: default_service_timeout(),
        }
    }
}

/// Retention of understudy's own snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// How many of understudy's snapshots of the source to keep (default 3, at least 1).
    #[serde(default = "default_keep", deserialize_with = "number_or_numeric_string")]
    pub keep_snapshots: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self { keep_snapshots: default_keep() }
    }
}

/// The deployed stack fills unset SAM parameters in as empty strings; an empty
/// optional field means "not set".
pub(crate) fn empty_as_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(deserializer)?;
    Ok(value.filter(|s| !s.is_empty()))
}

/// Definition substitutions are strings, so the deployed defaults carry numbers
/// as `"30"`; the validated config that later states use has real numbers.
pub(crate) fn number_or_numeric_string<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(u32),
        String(String),
    }
    match NumberOrString::deserialize(deserializer)? {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(s) => s.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("expected a whole number of at least 0, got `{s}`"))
        }),
    }
}

fn optional_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(v) => number_or_numeric_string(v).map(Some).map_err(serde::de::Error::custom),
    }
}

pub(crate) fn optional_float<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected a number, got `{s}`"))),
        Some(other) => Err(serde::de::Error::custom(format!("expected a number, got {other}"))),
    }
}

/// `true`/`false`, also as the strings a definition substitution produces.
pub(crate) fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
        other => Err(serde::de::Error::custom(format!("expected true or false, got {other}"))),
    }
}

/// A list of strings, or one comma-separated string (a SAM `CommaDelimitedList`
/// substituted into a definition).
pub(crate) fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    Ok(match ListOrString::deserialize(deserializer)? {
        ListOrString::List(list) => list,
        ListOrString::String(s) => {
            s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
        }
    })
}

pub(crate) fn default_snapshot_poll() -> u32 {
    30
}
fn default_service_poll() -> u32 {
    15
}
fn default_max_wait() -> u32 {
    300
}
fn default_long_timeout() -> u32 {
    720
}
fn default_service_max_wait() -> u32 {
    60
}
fn default_service_timeout() -> u32 {
    30
}
fn default_keep() -> u32 {
    3
}

impl EnvironmentConfig {
    /// The configuration of a run: `deployment`'s trust settings, and its simple
    /// parameters with the `stored` document and the execution `input` merged
    /// over them (see the module doc). The input is checked first, so an input
    /// that names a trust setting fails before anything else is looked at.
    pub fn assemble(deployment: &Deployment, stored: Option<&Value>, input: &Value) -> Result<Self> {
        let (overrides, run) = split_input(deployment, input)?;
        let mut merged = deployment.base_document();
        if let Some(stored) = stored {
            if !stored.is_object() {
                return Err(invalid("config", "the configuration document must be a JSON object".into()));
            }
            check_no_trust_settings("config", stored)?;
            deep_merge(&mut merged, stored.clone());
        }
        deep_merge(&mut merged, overrides.clone());
        let document: ConfigDocument = parse_layered(merged, &overrides)?;
        for target in document.mirror.keys() {
            if deployment.pair(target).is_none() {
                return Err(invalid(
                    &format!("config.mirror.{target}"),
                    format!(
                        "is not a deployed staging bucket (MirrorBuckets targets: {})",
                        deployment.targets()
                    ),
                ));
            }
        }
        let chosen: Vec<&str> = match &run.buckets {
            Some(targets) => targets.iter().map(String::as_str).collect(),
            None => deployment.mirror.iter().map(|pair| pair.target.as_str()).collect(),
        };
        let buckets = chosen
            .into_iter()
            .filter_map(|target| deployment.pair(target))
            .map(|pair| {
                let filters = document.mirror.get(&pair.target).cloned().unwrap_or_default();
                BucketMirror {
                    source: pair.source.clone(),
                    target: pair.target.clone(),
                    prefix: pair.prefix.clone(),
                    include: filters.include,
                    exclude: filters.exclude,
                }
            })
            .collect();
        let config = Self {
            environment: deployment.environment.clone(),
            production: deployment.production.clone(),
            staging: deployment.staging.clone(),
            tag: deployment.tag.clone(),
            database: document.database,
            buckets,
            poll: document.poll,
            retention: document.retention,
            scale: document.scale,
            smoke: document.smoke,
            refresh: document.refresh,
            dry_run: run.dry_run,
            label: run.label,
        };
        config.check()?;
        Ok(config)
    }

    /// Checks what types alone cannot: identifiers, intervals, retention.
    pub fn check(&self) -> Result<()> {
        if let Some(database) = &self.database {
            check_identifier("config.database.source", &database.source)?;
            if let Some(target) = &database.target {
                check_identifier("config.database.target", target)?;
            }
        }
        self.scale.check()?;
        self.smoke.check()?;
        self.refresh.check()?;
        self.poll.plans(&self.smoke, &[])?;
        if self.retention.keep_snapshots == 0 {
            return Err(invalid(
                "config.retention.keep_snapshots",
                "must be at least 1 (0 would delete the snapshot just made)".into(),
            ));
        }
        Ok(())
    }

    /// The database section, or an error naming it when a function needs it.
    pub fn require_database(&self) -> Result<&DatabaseConfig> {
        self.database.as_ref().ok_or_else(|| {
            invalid(
                "config.database",
                "is required for this action (stack parameter DatabaseSource, or the document's database section)"
                    .into(),
            )
        })
    }

    /// Whether production is another account than staging.
    pub fn cross_account(&self) -> bool {
        self.production.account_id != self.staging.account_id
    }
}

/// Checks an execution input and splits it into its document overrides and its
/// [`RunOptions`]; needs no AWS call, so a bad input fails before any.
pub fn split_input(deployment: &Deployment, input: &Value) -> Result<(Value, RunOptions)> {
    let Value::Object(fields) = input else {
        return Err(invalid(
            "input",
            "the execution input must be a JSON object (`{}` runs with the deployed configuration)".into(),
        ));
    };
    check_no_trust_settings("input", input)?;
    if let Some(Value::Array(entries)) = fields.get("buckets") {
        for (index, entry) in entries.iter().enumerate() {
            if let Value::Object(entry) = entry {
                let field = ["target", "source", "prefix"]
                    .into_iter()
                    .find(|f| entry.contains_key(*f))
                    .unwrap_or("target");
                return Err(invalid(
                    &format!("input.buckets[{index}].{field}"),
                    format!(
                        "the mirror's bucket pairs are trust settings, fixed by the deployed stack (parameter MirrorBuckets); \
                         name deployed staging buckets to choose among them: {}",
                        deployment.targets()
                    ),
                ));
            }
        }
    }
    let (run, overrides): (Map<String, Value>, Map<String, Value>) =
        fields.clone().into_iter().partition(|(key, _)| RunOptions::FIELDS.contains(&key.as_str()));
    let run: RunOptions = parse_under("input", Value::Object(run))?;
    if let Some(targets) = &run.buckets {
        for (index, target) in targets.iter().enumerate() {
            if deployment.pair(target).is_none() {
                return Err(invalid(
                    &format!("input.buckets[{index}]"),
                    format!(
                        "`{target}` is not a deployed staging bucket (MirrorBuckets targets: {})",
                        deployment.targets()
                    ),
                ));
            }
        }
    }
    if run.label.as_ref().is_some_and(|label| label.chars().count() > 256) {
        return Err(invalid("input.label", "must be at most 256 characters".into()));
    }
    Ok((Value::Object(overrides), run))
}

/// Merges `over` into `base`: objects field by field, anything else replaced
/// whole; a `null` removes the field.
pub fn deep_merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                if value.is_null() {
                    base.remove(&key);
                } else if let Some(existing) = base.get_mut(&key) {
                    deep_merge(existing, value);
                } else {
                    base.insert(key, value);
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// Parses the merged document; an error names its field under `input.` when the
/// input set it, under `config.` otherwise.
fn parse_layered(merged: Value, overrides: &Value) -> Result<ConfigDocument> {
    serde_path_to_error::deserialize(merged).map_err(|err| {
        let segments: Vec<String> = err
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                _ => None,
            })
            .collect();
        let path = err.path().to_string();
        let root = if has_path(overrides, &segments) { "input" } else { "config" };
        let inner = err.into_inner();
        if path == "." {
            Error::InvalidInput(format!("invalid input at `{root}`: {inner}"))
        } else {
            Error::InvalidInput(format!("invalid input at `{root}.{path}`: {inner}"))
        }
    })
}

/// Whether `value` has the object keys `segments` (array indices skipped).
fn has_path(value: &Value, segments: &[String]) -> bool {
    let mut current = vec![value];
    for segment in segments {
        current = current
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().collect::<Vec<_>>(),
                other => vec![other],
            })
            .filter_map(|v| v.get(segment))
            .collect();
        if current.is_empty() {
            return false;
        }
    }
    true
}

/// What `validate` answers: the effective configuration (external id redacted),
/// the wait plan of every poll loop kind, and which document it came from.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Validated {
    /// The effective configuration.
    pub config: EnvironmentConfig,
    /// How each kind of poll loop waits and when it gives up.
    pub waits: crate::poll::WaitPlans,
    /// The stored document's version (`stack-parameters` when none is stored).
    pub version: String,
    /// Where the document is stored (`s3://...`), or null without a `ConfigBucket`.
    pub document: Option<String>,
}

pub(crate) fn invalid(path: &str, message: String) -> Error {
    Error::InvalidInput(format!("invalid input at `{path}`: {message}"))
}

/// RDS identifiers: 1–63 letters, digits or hyphens, starting with a letter, no
/// two consecutive hyphens, not ending with a hyphen.
fn check_identifier(path: &str, identifier: &str) -> Result<()> {
    let valid = !identifier.is_empty()
        && identifier.len() <= 63
        && identifier.starts_with(|c: char| c.is_ascii_alphabetic())
        && identifier.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !identifier.contains("--")
        && !identifier.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("`{identifier}` is not a valid RDS identifier (1-63 letters, digits or single hyphens, starting with a letter)"),
        ))
    }
}

/// The account id of `arn:aws:iam::<account>:role/<name>` (any partition).
pub(crate) fn role_arn_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (arn_literal, _partition, service, _region, account, resource) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (arn_literal == "arn" && service == "iam" && resource.starts_with("role/")).then_some(account)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::tests::deployment;
    use serde_json::json;

    fn stored() -> Value {
        json!({
            "database": {
                "kind": "cluster",
                "source": "prod-aurora",
                "restore": {"subnet_group": "staging-db", "security_group_ids": ["sg-1"]},
                "password": {"managed": true}
            },
            "mirror": {"staging-media": {"exclude": ["tmp/"]}}
        })
    }

    fn assemble(input: Value) -> Result<EnvironmentConfig> {
        EnvironmentConfig::assemble(&deployment(), Some(&stored()), &input)
    }

    fn error_of(input: Value) -> String {
        assemble(input).unwrap_err().to_string()
    }

    #[test]
    fn the_layers_merge_deeply() {
        let config = assemble(json!({"database": {"target": "staging-other"}})).unwrap();
        let database = config.require_database().unwrap();
        assert_eq!(database.target.as_deref(), Some("staging-other"), "the input wins");
        assert_eq!(database.restore.subnet_group.as_deref(), Some("staging-db"), "the document's stays");
        assert!(database.password.managed);
        assert_eq!(config.poll.snapshot_seconds, 30, "field defaults fill the rest");
        assert_eq!(config.retention.keep_snapshots, 3);
        assert_eq!(config.staging.account_id, "222222222222", "trust settings from the stack");
        assert_eq!(config.buckets.len(), 2);
        assert_eq!(config.buckets[0].exclude, ["tmp/"]);
        assert_eq!(config.buckets[1].prefix, "uploads/");
    }

    #[test]
    fn without_a_document_the_parameters_are_the_configuration() {
        let config = EnvironmentConfig::assemble(&deployment(), None, &json!({})).unwrap();
        let database = config.require_database().unwrap();
        assert_eq!(
            (database.source.as_str(), database.target.as_deref()),
            ("prod-aurora", Some("staging-aurora"))
        );
    }

    #[test]
    fn lists_replace_and_null_restores_the_default() {
        let config =
            assemble(json!({"database": {"restore": {"security_group_ids": ["sg-2", "sg-3"]}}})).unwrap();
        assert_eq!(config.require_database().unwrap().restore.security_group_ids, ["sg-2", "sg-3"]);
        let config = assemble(json!({"database": {"restore": {"subnet_group": null}}})).unwrap();
        assert_eq!(config.require_database().unwrap().restore.subnet_group, None);
    }

    #[test]
    fn a_typo_is_named_under_the_layer_that_made_it() {
        let message = error_of(json!({"database": {"sorce": "x"}}));
        assert!(message.contains("`input.database.sorce`"), "{message}");
        let mut document = stored();
        document["retention"] = json!({"keep": 2});
        let message =
            EnvironmentConfig::assemble(&deployment(), Some(&document), &json!({})).unwrap_err().to_string();
        assert!(message.contains("`config.retention.keep`"), "{message}");
        let message = error_of(json!({"colour": "blue"}));
        assert!(message.contains("`input.colour`"), "{message}");
    }

    #[test]
    fn trust_settings_are_refused_in_the_input_and_in_the_document() {
        for (input, path) in [
            (json!({"staging": {"account_id": "333333333333"}}), "input.staging.account_id"),
            (json!({"tag": {"key": "team", "value": "web"}}), "input.tag.key"),
            (
                json!({"production": {"role_arn": "arn:aws:iam::333333333333:role/x"}}),
                "input.production.role_arn",
            ),
            (json!({"buckets": [{"source": "prod-media", "target": "evil"}]}), "input.buckets[0].target"),
            (json!({"buckets": ["evil"]}), "input.buckets[0]"),
        ] {
            let message = error_of(input.clone());
            assert!(message.contains(&format!("`{path}`")), "{input}: {message}");
        }
        let mut document = stored();
        document["production"] = json!({"external_id": "x"});
        let message =
            EnvironmentConfig::assemble(&deployment(), Some(&document), &json!({})).unwrap_err().to_string();
        assert!(message.contains("`config.production.external_id`"), "{message}");
    }

    #[test]
    fn the_input_chooses_among_the_deployed_buckets() {
        let config =
            assemble(json!({"buckets": ["staging-files"], "dry_run": true, "label": "try"})).unwrap();
        assert_eq!(config.buckets.len(), 1);
        assert_eq!(config.buckets[0].source, "prod-files");
        assert!(config.dry_run);
        assert_eq!(config.label.as_deref(), Some("try"));
        let mut document = stored();
        document["mirror"] = json!({"staging-nope": {}});
        let message =
            EnvironmentConfig::assemble(&deployment(), Some(&document), &json!({})).unwrap_err().to_string();
        assert!(message.contains("`config.mirror.staging-nope`"), "{message}");
    }

    #[test]
    fn bad_values_name_their_field() {
        assert!(error_of(json!({"database": {"source": "prod--db"}})).contains("`config.database.source`"));
        assert!(error_of(json!({"retention": {"keep_snapshots": 0}}))
            .contains("`config.retention.keep_snapshots`"));
        assert!(error_of(json!({"database": {"kind": "table"}})).contains("`input.database.kind`"));
        assert!(error_of(json!([1])).contains("`input`"));
    }

    #[test]
    fn numbers_may_come_as_strings() {
        let config = assemble(json!({"poll": {"snapshot_seconds": "5"}})).unwrap();
        assert_eq!(config.poll.snapshot_seconds, 5);
        let message = error_of(json!({"poll": {"snapshot_seconds": "soon"}}));
        assert!(message.contains("`input.poll.snapshot_seconds`") && message.contains("soon"), "{message}");
    }

    #[test]
    fn the_external_id_is_redacted_in_answers_and_debug_output() {
        let config = assemble(json!({})).unwrap();
        let shown = format!("{config:?} {}", serde_json::to_string(&config).unwrap());
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains(REDACTED), "{shown}");
    }
}
