//! The share function: makes understudy's production snapshot restorable by the
//! staging account, with the production client set.
//!
//! Another account can never use a snapshot encrypted with the AWS-managed
//! `aws/rds` key (its copy or restore fails with `KMSKeyNotAccessibleFault`), so
//! such a snapshot is first copied in production, re-encrypted with the
//! customer-managed key `config.database.share_kms_key_arn`, and the copy is
//! shared. Same-account setups share nothing.
//!
//! Actions:
//! - `share`: advances as far as it can: starts the re-encrypted copy if needed
//!   and answers `shared: false` while it is not available; once it is, adds the
//!   `restore` attribute for the staging account and answers `shared: true`;
//! - `status`: `{status, progress, available}` of the copy, for the wait loop;
//! - `cleanup`: revokes the share and deletes this run's intermediate copy.

use aws_sdk_kms::types::KeyManagerType;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use understudy_shared::answer::{schema_of, to_answer};
use understudy_shared::aws::{rds_client, AwsContext};
use understudy_shared::config::{DatabaseKind, EnvironmentConfig};
use understudy_shared::rds::{SnapshotRef, SnapshotStatus, SnapshotSummary, Snapshots};
use understudy_shared::request::ActionRequest;
use understudy_shared::settings::{ConfigRef, Settings};
use understudy_shared::tags::{self, tag_value};
use understudy_shared::{guard, Error, Result};

/// The function's handler, holding the AWS config built once per cold start.
pub struct ShareFunction {
    aws: AwsContext,
    settings: Settings,
}

/// `{"action": "share" | "cleanup", "run_id", "snapshot": {kind, identifier}, "config"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// The run (execution name); the intermediate copy is named and tagged after it.
    pub run_id: String,
    /// The production snapshot understudy made (the snapshot stage's output).
    pub snapshot: SnapshotRef,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// `{"action": "status", "snapshot": {kind, identifier}, "config"}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// The snapshot being copied (`share`'s answer).
    pub snapshot: SnapshotRef,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// The function's requests, by action.
#[derive(Debug)]
pub enum Request {
    /// See [`ShareRequest`].
    Share(ShareRequest),
    /// See [`StatusRequest`].
    Status(StatusRequest),
    /// See [`ShareRequest`].
    Cleanup(ShareRequest),
}

/// Every action, in the order the module doc lists them.
pub const ACTIONS: &[&str] = &["share", "status", "cleanup"];

/// The schema of each action's answer, for the state machines' contract test.
pub fn answer_schema(action: &str) -> Option<Schema> {
    Some(match action {
        "share" => schema_of::<Shared>(),
        "status" => schema_of::<SnapshotStatus>(),
        "cleanup" => schema_of::<CleanedUp>(),
        _ => return None,
    })
}

impl Request {
    /// Parses a payload; errors name the offending field.
    pub fn parse(payload: Value) -> Result<Self> {
        let request = ActionRequest::new(payload)?;
        match request.action() {
            "share" => request.fields().map(Self::Share),
            "status" => request.fields().map(Self::Status),
            "cleanup" => request.fields().map(Self::Cleanup),
            _ => Err(request.unknown_action(ACTIONS)),
        }
    }
}

/// What `share` answers.
#[derive(Debug, Serialize, PartialEq, Eq, JsonSchema)]
pub struct Shared {
    /// Cluster or instance snapshot.
    pub kind: DatabaseKind,
    /// The snapshot staging restores from (the original, or the re-encrypted copy).
    pub identifier: String,
    /// Its ARN, which staging uses to reach it.
    pub arn: String,
    /// True once staging may restore it.
    pub shared: bool,
    /// Whether it is a re-encrypted copy of the original.
    pub copied: bool,
    /// The AWS status of that snapshot.
    pub status: String,
}

/// What `cleanup` answers. Each list holds at most two identifiers (the
/// snapshot and this run's re-encrypted copy of it).
#[derive(Debug, Serialize, Default, JsonSchema)]
pub struct CleanedUp {
    /// Snapshots whose share with staging was revoked.
    pub revoked: Vec<String>,
    /// Intermediate copies deleted.
    pub deleted: Vec<String>,
}

/// The name of the re-encrypted copy of `identifier` (at most 63 characters).
pub fn share_copy_identifier(identifier: &str) -> String {
    const SUFFIX: &str = "-share";
    let mut head = identifier.to_owned();
    head.truncate(63 - SUFFIX.len());
    format!("{}{SUFFIX}", head.trim_end_matches('-'))
}

impl ShareFunction {
    /// A handler using `aws` for every call.
    pub fn new(aws: AwsContext) -> Self {
        let settings = Settings::from_env(aws.base());
        Self { aws, settings }
    }

    /// Handles one invocation.
    pub async fn handle(&self, payload: Value) -> Result<Value> {
        match Request::parse(payload)? {
            Request::Share(request) => to_answer(&self.share(request).await?),
            Request::Status(request) => to_answer(&self.status(request).await?),
            Request::Cleanup(request) => to_answer(&self.cleanup(request).await?),
        }
    }

    async fn production(&self, config: &EnvironmentConfig) -> Result<aws_config::SdkConfig> {
        self.aws.production(&config.production).await
    }

    async fn share(&self, request: ShareRequest) -> Result<Shared> {
        let config = self.settings.load(&request.config).await?;
        let database = config.require_database()?;
        let kind = request.snapshot.kind;
        let production = self.production(&config).await?;
        let snapshots = Snapshots::new(rds_client(&production), kind);
        let original = find_managed(&snapshots, &request.snapshot.identifier).await?;
        let Some(staging_account) = cross_account_target(&config)? else {
            tracing::info!("same-account setup: nothing to share");
            return Ok(shared(kind, &original, true, false));
        };

        let (candidate, copied) = if self.uses_aws_managed_key(&production, &original).await? {
            let key = database.share_kms_key_arn.as_deref().ok_or_else(|| {
                Error::InvalidInput(format!(
                    "invalid input at `config.database.share_kms_key_arn`: snapshot `{}` is encrypted with the \
                     AWS-managed aws/rds key, which another account can never use; name a customer-managed key in \
                     production (full ARN) that staging may use",
                    original.identifier
                ))
            })?;
            (self.reencrypted_copy(&snapshots, &original, key, &request.run_id).await?, true)
        } else {
            (original, false)
        };
        if candidate.status != "available" {
            return Ok(shared(kind, &candidate, false, copied));
        }
        guard::ensure_managed(&candidate.identifier, &candidate.tags)?;
        let accounts = snapshots.restore_accounts(&candidate.identifier).await?;
        if !accounts.iter().any(|a| a == staging_account) {
            snapshots.set_restore_access(&candidate.identifier, staging_account, true).await?;
            tracing::info!(snapshot = %candidate.identifier, account = %staging_account, "shared with staging");
        }
        Ok(shared(kind, &candidate, true, copied))
    }

    async fn uses_aws_managed_key(
        &self,
        production: &aws_config::SdkConfig,
        snapshot: &SnapshotSummary,
    ) -> Result<bool> {
        let Some(key) = snapshot.kms_key_id.as_deref().filter(|_| snapshot.encrypted) else {
            return Ok(false);
        };
        let described = aws_sdk_kms::Client::new(production)
            .describe_key()
            .key_id(key)
            .send()
            .await
            .map_err(|e| Error::from_sdk("kms:DescribeKey", e))?;
        Ok(described.key_metadata().and_then(|m| m.key_manager()) == Some(&KeyManagerType::Aws))
    }

    /// This run's copy of `original` re-encrypted with `key`, started if needed.
    async fn reencrypted_copy(
        &self,
        snapshots: &Snapshots,
        original: &SnapshotSummary,
        key: &str,
        run_id: &str,
    ) -> Result<SnapshotSummary> {
        let identifier = share_copy_identifier(&original.identifier);
        if let Some(existing) = snapshots.find(&identifier).await? {
            return ensure_this_runs(existing, run_id);
        }
        if original.status != "available" {
            return Err(Error::ResourceBusy(format!(
                "snapshot `{}` is not available yet",
                original.identifier
            )));
        }
        let tags = vec![
            (tags::MANAGED.to_owned(), tags::MANAGED_VALUE.to_owned()),
            (tags::RUN.to_owned(), run_id.to_owned()),
            (tags::SOURCE.to_owned(), original.source.clone()),
        ];
        match snapshots.copy(&original.identifier, &identifier, Some(key), &tags).await? {
            Some(copy) => {
                tracing::info!(copy = %identifier, "re-encrypting the aws/rds snapshot with the share key");
                Ok(copy)
            }
            None => {
                let existing = snapshots.find(&identifier).await?.ok_or_else(|| {
                    Error::AwsTransient(format!(
                        "copy `{identifier}` was reported as existing but cannot be read yet"
                    ))
                })?;
                ensure_this_runs(existing, run_id)
            }
        }
    }

    async fn status(&self, request: StatusRequest) -> Result<SnapshotStatus> {
        let config = self.settings.load(&request.config).await?;
        let production = self.production(&config).await?;
        Snapshots::new(rds_client(&production), request.snapshot.kind)
            .status(&request.snapshot.identifier)
            .await
    }

    async fn cleanup(&self, request: ShareRequest) -> Result<CleanedUp> {
        let config = self.settings.load(&request.config).await?;
        let mut done = CleanedUp::default();
        let Some(staging_account) = cross_account_target(&config)? else {
            return Ok(done);
        };
        let production = self.production(&config).await?;
        let snapshots = Snapshots::new(rds_client(&production), request.snapshot.kind);
        let copy_identifier = share_copy_identifier(&request.snapshot.identifier);
        for identifier in [request.snapshot.identifier.as_str(), copy_identifier.as_str()] {
            let Some(snapshot) = snapshots.find(identifier).await? else { continue };
            guard::ensure_managed(identifier, &snapshot.tags)?;
            if snapshots.restore_accounts(identifier).await?.iter().any(|a| a == staging_account) {
                snapshots.set_restore_access(identifier, staging_account, false).await?;
                done.revoked.push(identifier.to_owned());
            }
            let intermediate = identifier == copy_identifier;
            if intermediate && tag_value(&snapshot.tags, tags::RUN) == Some(request.run_id.as_str()) {
                snapshots.delete(identifier).await?;
                done.deleted.push(identifier.to_owned());
            }
        }
        tracing::info!(revoked = ?done.revoked, deleted = ?done.deleted, "share cleaned up");
        Ok(done)
    }
}

/// The staging account to share with (the deployed stack's; empty
/// `StagingAccountId` is the stack's own account), or `None` in a same-account setup.
fn cross_account_target(config: &EnvironmentConfig) -> Result<Option<&str>> {
    Ok(config.cross_account().then_some(config.staging.account_id.as_str()))
}

async fn find_managed(snapshots: &Snapshots, identifier: &str) -> Result<SnapshotSummary> {
    let snapshot = snapshots.find(identifier).await?.ok_or_else(|| {
        Error::SnapshotNotFound(format!("snapshot `{identifier}` does not exist in production"))
    })?;
    guard::ensure_managed(identifier, &snapshot.tags)?;
    Ok(snapshot)
}

fn ensure_this_runs(snapshot: SnapshotSummary, run_id: &str) -> Result<SnapshotSummary> {
    guard::ensure_managed(&snapshot.identifier, &snapshot.tags)?;
    if tag_value(&snapshot.tags, tags::RUN) != Some(run_id) {
        return Err(Error::SnapshotConflict(format!(
            "snapshot `{}` exists but was made by another run; it is left untouched",
            snapshot.identifier
        )));
    }
    Ok(snapshot)
}

fn shared(kind: DatabaseKind, snapshot: &SnapshotSummary, shared: bool, copied: bool) -> Shared {
    Shared {
        kind,
        identifier: snapshot.identifier.clone(),
        arn: snapshot.arn.clone().unwrap_or_default(),
        shared,
        copied,
        status: snapshot.status.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_copy_name_fits_63_characters() {
        assert_eq!(share_copy_identifier("understudy-run-1"), "understudy-run-1-share");
        let long = format!("understudy-{}", "a".repeat(52));
        assert_eq!(long.len(), 63);
        let copy = share_copy_identifier(&long);
        assert!(copy.len() <= 63 && copy.ends_with("-share") && !copy.contains("--"), "{copy}");
    }
}
