//! AWS configuration and clients, built once per cold start.
//!
//! Loading an `SdkConfig` (credentials chain, region, endpoint) is the expensive
//! step, so a function builds one [`AwsContext`] in `main` and derives cheap
//! clients from it per invocation. `AWS_ENDPOINT_URL` is honoured (the SDK reads
//! it), which is how the functions reach the local emulator.
//!
//! Production is reached through `sts:AssumeRole` into the role named in the
//! config, with its external id; the resulting config is cached per role for the
//! life of the process, and the credentials provider refreshes itself.

use std::collections::HashMap;

use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::Mutex;

use crate::config::{ProductionAccount, StagingAccount};
use crate::{Error, Result};

/// The session name production's CloudTrail shows for understudy's calls.
pub const SESSION_NAME: &str = "understudy";

/// The functions' own AWS config plus the production-side configs assumed from it.
#[derive(Debug)]
pub struct AwsContext {
    base: SdkConfig,
    production: Mutex<HashMap<ProductionKey, SdkConfig>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ProductionKey {
    role_arn: Option<String>,
    external_id: Option<String>,
    region: Option<String>,
}

impl AwsContext {
    /// Loads the config from the Lambda environment (credentials, region,
    /// `AWS_ENDPOINT_URL`).
    pub async fn from_env() -> Self {
        Self::new(aws_config::defaults(BehaviorVersion::latest()).load().await)
    }

    /// Wraps an already loaded config (tests point it at the emulator).
    pub fn new(base: SdkConfig) -> Self {
        Self { base, production: Mutex::new(HashMap::new()) }
    }

    /// The functions' own config, as loaded.
    pub fn base(&self) -> &SdkConfig {
        &self.base
    }

    /// The functions' own config, in staging's region when the config names one.
    pub fn staging(&self, staging: &StagingAccount) -> SdkConfig {
        with_region(&self.base, staging.region.as_deref())
    }

    /// A config acting in production: the assumed role's credentials when
    /// `role_arn` is set (checked now, so a bad role fails here with a clear
    /// error), otherwise the functions' own credentials (same-account setups).
    pub async fn production(&self, account: &ProductionAccount) -> Result<SdkConfig> {
        let key = ProductionKey {
            role_arn: account.role_arn.clone(),
            external_id: account.external_id.clone(),
            region: account.region.clone(),
        };
        let mut cache = self.production.lock().await;
        if let Some(config) = cache.get(&key) {
            return Ok(config.clone());
        }
        let config = match &account.role_arn {
            None => with_region(&self.base, account.region.as_deref()),
            Some(role_arn) => self.assume(role_arn, account).await?,
        };
        cache.insert(key, config.clone());
        Ok(config)
    }

    async fn assume(&self, role_arn: &str, account: &ProductionAccount) -> Result<SdkConfig> {
        let mut builder =
            AssumeRoleProvider::builder(role_arn).session_name(SESSION_NAME).configure(&self.base);
        if let Some(external_id) = &account.external_id {
            builder = builder.external_id(external_id);
        }
        let provider = builder.build().await;
        provider.provide_credentials().await.map_err(|err| {
            Error::AccessDenied(format!(
                "could not assume config.production.role_arn `{role_arn}`: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&err)
            ))
        })?;
        let base = with_region(&self.base, account.region.as_deref());
        Ok(base.into_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build())
    }
}

fn with_region(config: &SdkConfig, region: Option<&str>) -> SdkConfig {
    match region {
        Some(region) => config.to_builder().region(Region::new(region.to_owned())).build(),
        None => config.clone(),
    }
}

/// An RDS client for `config`.
pub fn rds_client(config: &SdkConfig) -> aws_sdk_rds::Client {
    aws_sdk_rds::Client::new(config)
}

/// An S3 client for `config`, path-style when an endpoint is set: an emulator on
/// `127.0.0.1` has no per-bucket host names.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let s3_config =
        aws_sdk_s3::config::Builder::from(config).force_path_style(config.endpoint_url().is_some()).build();
    aws_sdk_s3::Client::from_conf(s3_config)
}
