//! What the deployed stack fixes: the trust settings and the simple parameters.
//!
//! The SAM template hands its parameters to every function as environment
//! variables (`Globals.Function.Environment`), resolved by CloudFormation: an
//! empty `StagingAccountId` or `ProductionAccountId` is already this stack's
//! account there. Two kinds of settings come this way:
//!
//! - **Trust settings**, which decide *where data goes*: the staging account (who
//!   receives a shared snapshot), the staging tag (what the guard rails treat as
//!   staging), the production role and its external id (what is assumed), and the
//!   mirror's source→target bucket pairs (what the mirror may write). They come
//!   from here and nowhere else: neither the configuration document nor an
//!   execution's input may name them ([`check_no_trust_settings`]).
//! - **Simple parameters** (`DatabaseKind`, `DatabaseSource`, `DatabaseTarget`,
//!   `DatabasePasswordSecretArn`), which make the default configuration document
//!   when none is stored, and the base that a stored one is merged over.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::config::{ProductionAccount, StagingAccount, TagSelector};
use crate::{Error, Result};

/// One stack parameter and the environment variable that carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    /// The SAM template's parameter name.
    pub name: &'static str,
    /// The functions' environment variable.
    pub variable: &'static str,
}

macro_rules! parameters {
    ($($constant:ident = $name:literal, $variable:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "`, as `", $variable, "`.")]
            pub const $constant: Parameter = Parameter { name: $name, variable: $variable };
        )*
        /// Every stack parameter the functions read, in the template's order.
        pub const PARAMETERS: &[Parameter] = &[$($constant),*];
    };
}

parameters! {
    ENVIRONMENT = "EnvironmentName", "UNDERSTUDY_ENVIRONMENT";
    PRODUCTION_ACCOUNT_ID = "ProductionAccountId", "UNDERSTUDY_PRODUCTION_ACCOUNT_ID";
    PRODUCTION_REGION = "ProductionRegion", "UNDERSTUDY_PRODUCTION_REGION";
    PRODUCTION_ROLE_ARN = "ProductionRoleArn", "UNDERSTUDY_PRODUCTION_ROLE_ARN";
    PRODUCTION_EXTERNAL_ID = "ProductionExternalId", "UNDERSTUDY_PRODUCTION_EXTERNAL_ID";
    STAGING_ACCOUNT_ID = "StagingAccountId", "UNDERSTUDY_STAGING_ACCOUNT_ID";
    STAGING_REGION = "StagingRegion", "UNDERSTUDY_STAGING_REGION";
    TAG_KEY = "StagingTagKey", "UNDERSTUDY_TAG_KEY";
    TAG_VALUE = "StagingTagValue", "UNDERSTUDY_TAG_VALUE";
    MIRROR_BUCKETS = "MirrorBuckets", "UNDERSTUDY_MIRROR_BUCKETS";
    DATABASE_KIND = "DatabaseKind", "UNDERSTUDY_DATABASE_KIND";
    DATABASE_SOURCE = "DatabaseSource", "UNDERSTUDY_DATABASE_SOURCE";
    DATABASE_TARGET = "DatabaseTarget", "UNDERSTUDY_DATABASE_TARGET";
    DATABASE_PASSWORD_SECRET_ARN = "DatabasePasswordSecretArn", "UNDERSTUDY_DATABASE_PASSWORD_SECRET_ARN";
    CONFIG_BUCKET = "ConfigBucket", "UNDERSTUDY_CONFIG_BUCKET";
    CONFIG_KEY = "ConfigKey", "UNDERSTUDY_CONFIG_KEY";
    LEASE_BUCKET = "LeaseBucket", "UNDERSTUDY_LEASE_BUCKET";
}

/// The trust settings' top-level names, and the stack parameters that set them.
/// A document or an input naming one is refused.
pub const TRUST_SETTINGS: &[(&str, &[Parameter])] = &[
    ("environment", &[ENVIRONMENT]),
    ("production", &[PRODUCTION_ACCOUNT_ID, PRODUCTION_REGION, PRODUCTION_ROLE_ARN, PRODUCTION_EXTERNAL_ID]),
    ("staging", &[STAGING_ACCOUNT_ID, STAGING_REGION]),
    ("tag", &[TAG_KEY, TAG_VALUE]),
];

/// One production bucket (and key prefix) that the mirror copies into one staging bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BucketPair {
    /// Production bucket (only read).
    pub source: String,
    /// Key prefix mirrored, on both sides; empty for the whole bucket.
    pub prefix: String,
    /// Staging bucket (must carry the staging tag).
    pub target: String,
}

/// Where the configuration document is stored: an object in the bucket the stack owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentLocation {
    /// The stack's `ConfigBucket`.
    pub bucket: String,
    /// The object's key (`ConfigKey`, default `config.json`).
    pub key: String,
}

impl std::fmt::Display for DocumentLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Everything the deployed stack fixes for its functions.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// `EnvironmentName`.
    pub environment: String,
    /// The production account, its region and the role assumed there.
    pub production: ProductionAccount,
    /// The staging account (the stack's own unless `StagingAccountId` names another).
    pub staging: StagingAccount,
    /// The staging tag.
    pub tag: TagSelector,
    /// `MirrorBuckets`: every bucket pair the mirror may write.
    pub mirror: Vec<BucketPair>,
    /// The `database` section the simple parameters make (none without `DatabaseSource`).
    pub database: Option<Value>,
    /// Where the configuration document is stored (none: the parameters are the whole configuration).
    pub document: Option<DocumentLocation>,
    /// The stack's `LeaseBucket`, where each environment's run lock lives
    /// ([`crate::lease`]); none outside a deployed stack.
    pub lease_bucket: Option<String>,
}

impl Deployment {
    /// Reads the stack parameters from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|variable| std::env::var(variable).ok())
    }

    /// Reads the stack parameters through `lookup` (variable name to value).
    /// Errors name the stack parameter.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |parameter: Parameter| {
            lookup(parameter.variable).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
        };
        let require = |parameter: Parameter| {
            get(parameter).ok_or_else(|| {
                misdeployed(parameter, "is not set; the SAM template sets it for every function".into())
            })
        };
        let production = ProductionAccount {
            account_id: require(PRODUCTION_ACCOUNT_ID)?,
            region: get(PRODUCTION_REGION),
            role_arn: get(PRODUCTION_ROLE_ARN),
            external_id: get(PRODUCTION_EXTERNAL_ID),
        };
        let staging =
            StagingAccount { account_id: require(STAGING_ACCOUNT_ID)?, region: get(STAGING_REGION) };
        let tag = TagSelector { key: require(TAG_KEY)?, value: require(TAG_VALUE)? };
        let mirror = parse_bucket_pairs(&get(MIRROR_BUCKETS).unwrap_or_default())?;
        let database = get(DATABASE_SOURCE).map(|source| {
            let mut database =
                json!({"kind": get(DATABASE_KIND).unwrap_or_else(|| "cluster".into()), "source": source});
            if let Some(target) = get(DATABASE_TARGET) {
                database["target"] = json!(target);
            }
            if let Some(secret_arn) = get(DATABASE_PASSWORD_SECRET_ARN) {
                database["password"] = json!({"secret_arn": secret_arn});
            }
            database
        });
        let document = get(CONFIG_BUCKET).map(|bucket| DocumentLocation {
            bucket,
            key: get(CONFIG_KEY).unwrap_or_else(|| DEFAULT_CONFIG_KEY.into()),
        });
        let lease_bucket = get(LEASE_BUCKET);
        if let Some(bucket) = &lease_bucket {
            if mirror.iter().any(|pair| &pair.target == bucket || &pair.source == bucket) {
                return Err(misdeployed(
                    MIRROR_BUCKETS,
                    format!("names `{bucket}`, the stack's LeaseBucket; the run lock is never mirrored"),
                ));
            }
        }
        let deployment = Self {
            environment: require(ENVIRONMENT)?,
            production,
            staging,
            tag,
            mirror,
            database,
            document,
            lease_bucket,
        };
        deployment.check()?;
        Ok(deployment)
    }

    fn check(&self) -> Result<()> {
        check_account_id(PRODUCTION_ACCOUNT_ID, &self.production.account_id)?;
        check_account_id(STAGING_ACCOUNT_ID, &self.staging.account_id)?;
        if let Some(role_arn) = &self.production.role_arn {
            let account = crate::config::role_arn_account(role_arn).ok_or_else(|| {
                misdeployed(
                    PRODUCTION_ROLE_ARN,
                    format!("`{role_arn}` is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"),
                )
            })?;
            if account != self.production.account_id {
                return Err(misdeployed(
                    PRODUCTION_ROLE_ARN,
                    format!(
                        "the role is in account {account}, but ProductionAccountId is {}",
                        self.production.account_id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The default configuration document: what the simple parameters say.
    pub fn base_document(&self) -> Value {
        let mut document = Map::new();
        if let Some(database) = &self.database {
            document.insert("database".into(), database.clone());
        }
        Value::Object(document)
    }

    /// The deployed pair whose target is `target`.
    pub fn pair(&self, target: &str) -> Option<&BucketPair> {
        self.mirror.iter().find(|pair| pair.target == target)
    }

    /// The deployed targets, for error messages.
    pub fn targets(&self) -> String {
        if self.mirror.is_empty() {
            "none: MirrorBuckets is empty".into()
        } else {
            self.mirror.iter().map(|p| p.target.as_str()).collect::<Vec<_>>().join(", ")
        }
    }
}

/// The parameters of [`Deployment::example`].
const EXAMPLE: &[(Parameter, &str)] = &[
    (ENVIRONMENT, "staging"),
    (PRODUCTION_ACCOUNT_ID, "111111111111"),
    (PRODUCTION_ROLE_ARN, "arn:aws:iam::111111111111:role/understudy-production"),
    (PRODUCTION_EXTERNAL_ID, "s3cr3t"),
    (STAGING_ACCOUNT_ID, "222222222222"),
    (TAG_KEY, "understudy:environment"),
    (TAG_VALUE, "staging"),
    (DATABASE_SOURCE, "prod-aurora"),
    (DATABASE_TARGET, "staging-aurora"),
    (MIRROR_BUCKETS, "prod-media=staging-media, prod-files/uploads/=staging-files"),
    (CONFIG_BUCKET, "understudy-config"),
    (LEASE_BUCKET, "understudy-leases"),
];

impl Deployment {
    /// A cross-account deployment for unit tests: production 111111111111 through
    /// a role (external id `s3cr3t`), staging 222222222222, the default tag,
    /// `prod-aurora` refreshed into `staging-aurora`, two bucket pairs.
    pub fn example() -> Self {
        Self::example_with(&[]).expect("the example deployment is valid")
    }

    /// [`Deployment::example`] with some stack parameters (by name) set to other values.
    pub fn example_with(overrides: &[(&str, &str)]) -> Result<Self> {
        Self::from_lookup(|variable| {
            let parameter = PARAMETERS.iter().find(|p| p.variable == variable)?;
            overrides
                .iter()
                .find(|(name, _)| *name == parameter.name)
                .map(|(_, value)| (*value).to_owned())
                .or_else(|| EXAMPLE.iter().find(|(p, _)| p == parameter).map(|(_, v)| (*v).to_owned()))
        })
    }
}

/// The document's key when `ConfigKey` is not set.
pub const DEFAULT_CONFIG_KEY: &str = "config.json";

/// Parses `MirrorBuckets`: comma-separated `source=target` pairs, the source
/// optionally with a key prefix (`prod-media/uploads/=staging-media` mirrors
/// `uploads/` of `prod-media` into `uploads/` of `staging-media`).
pub fn parse_bucket_pairs(text: &str) -> Result<Vec<BucketPair>> {
    let mut pairs: Vec<BucketPair> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |why: &str| {
            misdeployed(MIRROR_BUCKETS, format!("`{entry}` {why}; expected source[/prefix]=target"))
        };
        let (source, target) = entry.split_once('=').ok_or_else(|| bad("has no `=`"))?;
        let (source, prefix) = source.trim().split_once('/').unwrap_or((source.trim(), ""));
        let target = target.trim();
        if source.is_empty() || target.is_empty() || target.contains('/') {
            return Err(bad("does not name two buckets"));
        }
        if source == target {
            return Err(bad("mirrors a bucket into itself"));
        }
        if pairs.iter().any(|p| p.target == target) {
            return Err(bad("names a target a second time (each staging bucket mirrors one source)"));
        }
        pairs.push(BucketPair { source: source.into(), prefix: prefix.into(), target: target.into() });
    }
    Ok(pairs)
}

/// Refuses `value` (a document at `root`, `config` or `input`) if it names a
/// trust setting, naming the first such field and the stack parameter that sets it.
pub fn check_no_trust_settings(root: &str, value: &Value) -> Result<()> {
    let Value::Object(fields) = value else { return Ok(()) };
    for (name, parameters) in TRUST_SETTINGS {
        if let Some(field) = fields.get(*name) {
            let path = first_leaf(&format!("{root}.{name}"), field);
            let names: Vec<&str> = parameters.iter().map(|p| p.name).collect();
            return Err(Error::InvalidInput(format!(
                "invalid input at `{path}`: a trust setting, fixed by the deployed stack (parameter {}); \
                 no configuration document or execution input can change it",
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// The path of the first leaf under `value` (`staging.account_id` for `{"account_id": ...}`).
fn first_leaf(path: &str, value: &Value) -> String {
    match value {
        Value::Object(fields) => match fields.iter().next() {
            Some((key, inner)) => first_leaf(&format!("{path}.{key}"), inner),
            None => path.to_owned(),
        },
        _ => path.to_owned(),
    }
}

fn misdeployed(parameter: Parameter, message: String) -> Error {
    Error::InvalidInput(format!(
        "invalid deployment: stack parameter `{}` ({}) {message}",
        parameter.name, parameter.variable
    ))
}

fn check_account_id(parameter: Parameter, account: &str) -> Result<()> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(misdeployed(parameter, format!("`{account}` is not a 12-digit AWS account id")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    fn variables() -> HashMap<&'static str, String> {
        EXAMPLE.iter().map(|(parameter, value)| (parameter.variable, (*value).to_owned())).collect()
    }

    pub(crate) fn deployment() -> Deployment {
        Deployment::example()
    }

    #[test]
    fn parameters_make_the_trust_settings_and_the_base_document() {
        let deployment = deployment();
        assert_eq!(deployment.staging.account_id, "222222222222");
        assert_eq!(deployment.production.external_id.as_deref(), Some("s3cr3t"));
        assert_eq!(
            deployment.mirror[1],
            BucketPair {
                source: "prod-files".into(),
                prefix: "uploads/".into(),
                target: "staging-files".into()
            }
        );
        assert_eq!(
            deployment.base_document(),
            json!({"database": {"kind": "cluster", "source": "prod-aurora", "target": "staging-aurora"}})
        );
        assert_eq!(deployment.document.unwrap().to_string(), "s3://understudy-config/config.json");
    }

    #[test]
    fn a_bad_parameter_is_named() {
        for (variable, value, named) in [
            (STAGING_ACCOUNT_ID.variable, "", "StagingAccountId"),
            (PRODUCTION_ACCOUNT_ID.variable, "12", "ProductionAccountId"),
            (PRODUCTION_ROLE_ARN.variable, "arn:aws:iam::999999999999:role/x", "ProductionRoleArn"),
            (MIRROR_BUCKETS.variable, "prod-media", "MirrorBuckets"),
            (MIRROR_BUCKETS.variable, "a=b,c=b", "MirrorBuckets"),
        ] {
            let mut vars = variables();
            vars.insert(variable, value.to_owned());
            let error = Deployment::from_lookup(|name| vars.get(name).cloned()).unwrap_err().to_string();
            assert!(error.contains(&format!("`{named}`")), "{variable}={value}: {error}");
        }
    }

    #[test]
    fn trust_settings_are_refused_naming_the_leaf_and_the_parameter() {
        let error = check_no_trust_settings("input", &json!({"staging": {"account_id": "333333333333"}}))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`input.staging.account_id`") && error.contains("StagingAccountId"),
            "{error}"
        );
        let error = check_no_trust_settings("config", &json!({"tag": {"key": "x"}})).unwrap_err().to_string();
        assert!(error.contains("`config.tag.key`") && error.contains("StagingTagKey"), "{error}");
        check_no_trust_settings("input", &json!({"database": {"target": "x"}})).unwrap();
    }
}
