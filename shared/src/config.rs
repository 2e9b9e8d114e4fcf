//! The environment config document: which production account, role and database
//! staging mirrors, how staging's resources are tagged, and how often to poll.
//!
//! The deployed stack supplies defaults for every field (SAM parameters become the
//! state machines' definition substitutions), so a console execution with `{}`
//! runs. An execution's input is merged over those defaults with
//! `States.JsonMerge`, which is shallow: each top-level section of the input
//! (`production`, `database`, `poll`, ...) replaces that whole section. The
//! first task then validates the merged document and fills in field defaults, so
//! a partial section such as `{"poll": {}}` still works.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::request::parse_under;
use crate::{tags, Error, Result};

/// The whole document. Unknown fields are refused, so a typo is an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Name of the environment understudy keeps (used in names and events).
    #[serde(default = "default_environment")]
    pub environment: String,
    /// Where production lives and how to reach it.
    pub production: ProductionAccount,
    /// The staging account (the one the functions run in).
    #[serde(default)]
    pub staging: StagingAccount,
    /// The database to snapshot (and, later, restore into staging).
    #[serde(default)]
    pub database: Option<DatabaseConfig>,
    /// Buckets to mirror from production into staging.
    #[serde(default)]
    pub buckets: Vec<BucketMirror>,
    /// The tag that marks staging's resources; only those are ever modified.
    #[serde(default)]
    pub tag: TagSelector,
    /// Wait-loop intervals.
    #[serde(default)]
    pub poll: PollIntervals,
    /// How many of understudy's snapshots to keep.
    #[serde(default)]
    pub retention: Retention,
    /// What `sleep` and `wake` scale, and how (the scale-to-zero function).
    #[serde(default)]
    pub scale: crate::scale::ScaleSettings,
}

/// The production account. Without `role_arn` production is the functions' own
/// account (a same-account setup) and no role is assumed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductionAccount {
    /// 12-digit AWS account id.
    pub account_id: String,
    /// Region of the production database; defaults to the functions' region.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub region: Option<String>,
    /// Role in production that understudy assumes (`arn:aws:iam::<account_id>:role/...`).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires. Never logged.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub external_id: Option<String>,
}

impl fmt::Debug for ProductionAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProductionAccount")
            .field("account_id", &self.account_id)
            .field("region", &self.region)
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The staging account, where the functions run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StagingAccount {
    /// 12-digit AWS account id.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub account_id: Option<String>,
    /// Region of staging's resources; defaults to the functions' region.
    #[serde(default, deserialize_with = "empty_as_none")]
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

/// One production bucket (and prefix) mirrored into a staging bucket.
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
    /// Tag key, default `understudy:environment`.
    #[serde(default = "default_tag_key")]
    pub key: String,
    /// Tag value, default `staging`.
    #[serde(default = "default_environment")]
    pub value: String,
}

impl Default for TagSelector {
    fn default() -> Self {
        Self { key: default_tag_key(), value: default_environment() }
    }
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

pub(crate) fn default_environment() -> String {
    "staging".into()
}
fn default_tag_key() -> String {
    tags::ENVIRONMENT.into()
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
    /// Parses and checks a config document; errors name the field as
    /// `config.<path>`.
    pub fn from_value(value: Value) -> Result<Self> {
        let config: Self = parse_under("config", value)?;
        config.check()?;
        Ok(config)
    }

    /// Checks what types alone cannot: account id shapes, that the role lives in
    /// the production account, identifiers, intervals.
    pub fn check(&self) -> Result<()> {
        check_account_id("config.production.account_id", &self.production.account_id)?;
        if let Some(account) = &self.staging.account_id {
            check_account_id("config.staging.account_id", account)?;
        }
        if let Some(role_arn) = &self.production.role_arn {
            let account = role_arn_account(role_arn).ok_or_else(|| {
                invalid(
                    "config.production.role_arn",
                    format!("`{role_arn}` is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"),
                )
            })?;
            if account != self.production.account_id {
                return Err(invalid(
                    "config.production.role_arn",
                    format!(
                        "the role is in account {account}, but config.production.account_id is {}",
                        self.production.account_id
                    ),
                ));
            }
        }
        if let Some(database) = &self.database {
            check_identifier("config.database.source", &database.source)?;
            if let Some(target) = &database.target {
                check_identifier("config.database.target", target)?;
            }
        }
        self.scale.check()?;
        self.poll.plans(&[])?;
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
        self.database.as_ref().ok_or_else(|| invalid("config.database", "is required for this action".into()))
    }
}

/// What `validate` answers: the document with every field default filled in,
/// and the wait plan of every poll loop kind (`$.waits` in the machines).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Validated<C> {
    /// The checked document.
    pub config: C,
    /// How each kind of poll loop waits and when it gives up.
    pub waits: crate::poll::WaitPlans,
}

impl<C> Validated<C> {
    /// `config` with the plans of `poll`, checked against the history of each of `machines`.
    pub fn new(config: C, poll: &PollIntervals, machines: &[&str]) -> Result<Self> {
        Ok(Self { waits: poll.plans(machines)?, config })
    }
}

pub(crate) fn invalid(path: &str, message: String) -> Error {
    Error::InvalidInput(format!("invalid input at `{path}`: {message}"))
}

fn check_account_id(path: &str, account: &str) -> Result<()> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid(path, format!("`{account}` is not a 12-digit AWS account id")))
    }
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
fn role_arn_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (arn_literal, _partition, service, _region, account, resource) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (arn_literal == "arn" && service == "iam" && resource.starts_with("role/")).then_some(account)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({
            "production": {
                "account_id": "111111111111",
                "role_arn": "arn:aws:iam::111111111111:role/understudy-production",
                "external_id": "s3cr3t"
            },
            "database": {"kind": "cluster", "source": "prod-aurora"}
        })
    }

    fn error_of(value: Value) -> String {
        EnvironmentConfig::from_value(value).unwrap_err().to_string()
    }

    #[test]
    fn minimal_document_gets_every_default() {
        let config = EnvironmentConfig::from_value(minimal()).unwrap();
        assert_eq!(config.environment, "staging");
        assert_eq!(config.tag, TagSelector { key: "understudy:environment".into(), value: "staging".into() });
        assert_eq!(config.poll.snapshot_seconds, 30);
        assert_eq!(config.retention.keep_snapshots, 3);
        assert_eq!(config.require_database().unwrap().kind, DatabaseKind::Cluster);
    }

    #[test]
    fn a_typo_is_refused_naming_the_config_path() {
        let mut value = minimal();
        value["database"]["sorce"] = json!("x");
        let message = error_of(value);
        assert!(message.contains("`config.database.sorce`"), "{message}");
    }

    #[test]
    fn role_in_another_account_than_production_is_refused() {
        let mut value = minimal();
        value["production"]["role_arn"] = json!("arn:aws:iam::222222222222:role/x");
        let message = error_of(value);
        assert!(
            message.contains("`config.production.role_arn`") && message.contains("222222222222"),
            "{message}"
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut value = minimal();
        value["production"]["account_id"] = json!("1234");
        assert!(error_of(value).contains("`config.production.account_id`"));
        let mut value = minimal();
        value["database"]["source"] = json!("prod--db");
        assert!(error_of(value).contains("`config.database.source`"));
        let mut value = minimal();
        value["retention"] = json!({"keep_snapshots": 0});
        assert!(error_of(value).contains("`config.retention.keep_snapshots`"));
        let mut value = minimal();
        value["database"]["kind"] = json!("table");
        assert!(error_of(value).contains("`config.database.kind`"));
    }

    #[test]
    fn empty_optional_fields_from_unset_parameters_mean_unset() {
        let mut value = minimal();
        value["production"]["role_arn"] = json!("");
        value["production"]["region"] = json!("");
        value["staging"] = json!({"account_id": "", "region": ""});
        value["database"]["target"] = json!("");
        let config = EnvironmentConfig::from_value(value).unwrap();
        assert_eq!(config.production.role_arn, None);
        assert_eq!(config.staging.account_id, None);
        assert_eq!(config.require_database().unwrap().target, None);
    }

    #[test]
    fn numbers_may_come_as_strings_from_definition_substitutions() {
        let mut value = minimal();
        value["poll"] = json!({"snapshot_seconds": "5"});
        value["retention"] = json!({"keep_snapshots": 2});
        let config = EnvironmentConfig::from_value(value).unwrap();
        assert_eq!((config.poll.snapshot_seconds, config.retention.keep_snapshots), (5, 2));
        let mut value = minimal();
        value["poll"] = json!({"snapshot_seconds": "soon"});
        let message = error_of(value);
        assert!(message.contains("`config.poll.snapshot_seconds`") && message.contains("soon"), "{message}");
    }

    #[test]
    fn external_id_is_not_in_debug_output() {
        let config = EnvironmentConfig::from_value(minimal()).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }
}
