//! Where a function gets its configuration: the deployed stack's parameters
//! (read once per cold start) and the configuration document stored in the
//! stack's bucket (read when a run begins, then by the version the run pinned).
//!
//! The document is an S3 object (`s3://<ConfigBucket>/<ConfigKey>`) rather than
//! an SSM parameter: it has no size limit (smoke checks and masking rules grow
//! past SSM's 4 KB / 8 KB), the stack's bucket is versioned so every change is
//! kept and a run can pin the version it began with, and the S3 client is
//! already part of the suite (no new SDK crate to compile).
//!
//! A state machine carries only a [`ConfigRef`]: the execution's input and the
//! document version `begin` found. Each function assembles the configuration
//! itself ([`EnvironmentConfig::assemble`]), so no configuration, and no
//! external id, ever appears in an execution's history; and an operator who
//! updates the document mid-run changes the next run, not this one.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::config::{split_input, EnvironmentConfig, Validated};
use crate::deployment::{Deployment, DocumentLocation};
use crate::poll::WaitPlans;
use crate::{Error, Result};

/// The version a run pins when no document is stored: the stack parameters alone.
pub const NO_DOCUMENT: &str = "stack-parameters";
/// Documents larger than this are refused (a typo'd upload of the wrong file).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Prefix of a version that is an ETag (a bucket without versioning).
const ETAG_PREFIX: &str = "etag:";
/// Documents kept in memory per process, by version.
const CACHED_VERSIONS: usize = 8;

/// What every request carries instead of a configuration: the execution's
/// input and the document version the run began with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigRef {
    /// The document version `begin` pinned; absent for the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The execution's input: an override of what to do (`{}` for none).
    #[serde(default = "empty_object")]
    pub input: Value,
}

impl Default for ConfigRef {
    /// The latest document, no override.
    fn default() -> Self {
        Self { version: None, input: empty_object() }
    }
}

fn empty_object() -> Value {
    json!({})
}

/// `{"action": "begin", "input": {...}}`: a machine's first task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeginRequest {
    /// The execution's input (`$$.Execution.Input`).
    #[serde(default = "empty_object")]
    pub input: Value,
}

/// `{"action": "validate", "config": {"input": {...}, "version": "..."}}`: what an
/// operator asks before a run (every field optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    /// Which configuration: an input, and a document version (default the latest).
    #[serde(default)]
    pub config: ConfigRef,
}

/// What `begin` answers, and a state machine carries from then on.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Begun {
    /// The reference every later task passes on (`$.config`).
    pub config: ConfigRef,
    /// How each kind of poll loop waits and when it gives up (`$.waits`).
    pub waits: WaitPlans,
    /// Whether `sleep` checks the idle metric first (`scale.idle.enabled`).
    pub idle_check: bool,
    /// What the refresh machine's choices read: how staging ends, migrations, the mirror.
    pub refresh: crate::refresh::RefreshPlan,
}

/// A function's view of its configuration: the stack parameters and the stored document.
#[derive(Debug)]
pub struct Settings {
    deployment: std::result::Result<Deployment, Error>,
    s3: aws_sdk_s3::Client,
    documents: Mutex<HashMap<String, Option<Arc<Value>>>>,
}

impl Settings {
    /// The stack parameters from the process environment; the document through
    /// `aws` (the functions' own account).
    pub fn from_env(aws: &SdkConfig) -> Self {
        Self::new(Deployment::from_env(), crate::aws::s3_client(aws))
    }

    /// `deployment` (or why it is unusable: every request then fails with it).
    pub fn new(deployment: Result<Deployment>, s3: aws_sdk_s3::Client) -> Self {
        if let Err(error) = &deployment {
            tracing::error!(%error, "the deployed stack's parameters are unusable");
        }
        Self { deployment, s3, documents: Mutex::new(HashMap::new()) }
    }

    /// The stack's fixed settings.
    pub fn deployment(&self) -> Result<&Deployment> {
        self.deployment.as_ref().map_err(Clone::clone)
    }

    /// Starts a run: checks `input`, reads the latest document and pins its
    /// version, checks the whole configuration and the waits of `machines`.
    pub async fn begin(&self, input: Value, machines: &[&str]) -> Result<(Begun, EnvironmentConfig)> {
        let deployment = self.deployment()?;
        split_input(deployment, &input)?;
        let (version, document) = self.latest(deployment).await?;
        let config = EnvironmentConfig::assemble(deployment, document.as_deref(), &input)?;
        let waits = config.poll.plans(&config.smoke, machines)?;
        let begun = Begun {
            config: ConfigRef { version: Some(version), input },
            waits,
            idle_check: config.scale.idle.enabled,
            refresh: crate::refresh::RefreshPlan {
                awake: config.refresh.after == crate::refresh::After::Awake,
                migrate: config.refresh.migrate.is_some(),
                migrate_task: config.refresh.migrate_task.is_some(),
                restart: config.refresh.restart_services,
                mirror: !config.buckets.is_empty(),
            },
        };
        Ok((begun, config))
    }

    /// The configuration of a run that began with `reference`.
    pub async fn load(&self, reference: &ConfigRef) -> Result<EnvironmentConfig> {
        let deployment = self.deployment()?;
        split_input(deployment, &reference.input)?;
        let document = match &reference.version {
            None => self.latest(deployment).await?.1,
            Some(version) => self.pinned(deployment, version).await?,
        };
        EnvironmentConfig::assemble(deployment, document.as_deref(), &reference.input)
    }

    /// What an operator sees before a run: the effective configuration, its waits
    /// checked against `machines`, and where it came from.
    pub async fn validate(&self, reference: &ConfigRef, machines: &[&str]) -> Result<Validated> {
        let deployment = self.deployment()?;
        split_input(deployment, &reference.input)?;
        let (version, document) = match &reference.version {
            None => self.latest(deployment).await?,
            Some(version) => (version.clone(), self.pinned(deployment, version).await?),
        };
        let config = EnvironmentConfig::assemble(deployment, document.as_deref(), &reference.input)?;
        let waits = config.poll.plans(&config.smoke, machines)?;
        Ok(Validated {
            config,
            waits,
            version,
            document: deployment.document.as_ref().map(ToString::to_string),
        })
    }

    async fn latest(&self, deployment: &Deployment) -> Result<(String, Option<Arc<Value>>)> {
        let Some(location) = &deployment.document else { return Ok((NO_DOCUMENT.into(), None)) };
        let Some((version, document)) = self.fetch(location, None).await? else {
            return Ok((NO_DOCUMENT.into(), None));
        };
        let document = Some(Arc::new(document));
        self.remember(&version, document.clone()).await;
        Ok((version, document))
    }

    async fn pinned(&self, deployment: &Deployment, version: &str) -> Result<Option<Arc<Value>>> {
        if version == NO_DOCUMENT {
            return Ok(None);
        }
        if let Some(document) = self.documents.lock().await.get(version) {
            return Ok(document.clone());
        }
        let location = deployment.document.as_ref().ok_or_else(|| {
            Error::InvalidInput(format!(
                "invalid input at `config.version`: `{version}` names a stored document, but this stack has no ConfigBucket"
            ))
        })?;
        let (_, document) = self.fetch(location, Some(version)).await?.ok_or_else(|| {
            Error::InvalidInput(format!(
                "invalid input at `config.version`: version `{version}` of {location} does not exist"
            ))
        })?;
        let document = Some(Arc::new(document));
        self.remember(version, document.clone()).await;
        Ok(document)
    }

    async fn remember(&self, version: &str, document: Option<Arc<Value>>) {
        let mut documents = self.documents.lock().await;
        if documents.len() >= CACHED_VERSIONS {
            documents.clear();
        }
        documents.insert(version.to_owned(), document);
    }

    /// The document (`None` when none is stored) and its version.
    async fn fetch(
        &self,
        location: &DocumentLocation,
        version: Option<&str>,
    ) -> Result<Option<(String, Value)>> {
        let mut request = self.s3.get_object().bucket(&location.bucket).key(&location.key);
        request = match version {
            Some(etag) if etag.starts_with(ETAG_PREFIX) => request.if_match(&etag[ETAG_PREFIX.len()..]),
            Some(version) => request.version_id(version),
            None => request,
        };
        let output = match request.send().await {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) && version.is_none() => {
                return Ok(None)
            }
            Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                return Err(Error::InvalidInput(format!(
                    "invalid input at `config.version`: {location} changed during the run (its bucket keeps no versions)"
                )))
            }
            Err(err) => {
                let error = Error::from_sdk(&format!("s3:GetObject {location}"), err);
                return Err(error);
            }
        };
        let version = match (output.version_id(), output.e_tag()) {
            (Some(version), _) if version != "null" => version.to_owned(),
            (_, Some(etag)) => format!("{ETAG_PREFIX}{etag}"),
            _ => {
                return Err(Error::AwsRequestFailed(format!(
                    "s3:GetObject {location} answered neither a version nor an ETag"
                )))
            }
        };
        let body = output
            .body
            .collect()
            .await
            .map_err(|err| Error::AwsTransient(format!("reading {location}: {err}")))?
            .into_bytes();
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(Error::InvalidInput(format!(
                "invalid input at `config`: {location} is {} bytes, more than the {MAX_DOCUMENT_BYTES} a configuration document may have",
                body.len()
            )));
        }
        let document = serde_json::from_slice(&body).map_err(|err| {
            Error::InvalidInput(format!(
                "invalid input at `config`: {location} is not a JSON document: {err}"
            ))
        })?;
        tracing::info!(document = %location, %version, "read the configuration document");
        Ok(Some((version, document)))
    }
}
