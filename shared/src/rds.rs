//! Snapshot calls for both kinds of database (Aurora cluster snapshots and RDS DB
//! snapshots) behind one type, so the functions read the same whichever kind a
//! team runs.

use aws_sdk_rds::types::{DbClusterSnapshot, DbSnapshot, Tag};
use aws_sdk_rds::Client;

use crate::config::DatabaseKind;
use crate::tags::TagList;
use crate::{Error, Result};

/// What understudy needs to know about a snapshot of either kind.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSummary {
    /// Snapshot identifier.
    pub identifier: String,
    /// Snapshot ARN.
    pub arn: Option<String>,
    /// Identifier of the database it was taken from.
    pub source: String,
    /// AWS status (`creating`, `available`, ...).
    pub status: String,
    /// Percent complete, when AWS reports it.
    pub progress: Option<i32>,
    /// Whether the snapshot is encrypted.
    pub encrypted: bool,
    /// The KMS key (ARN) it is encrypted with.
    pub kms_key_id: Option<String>,
    /// Database engine (`aurora-postgresql`, `postgres`, ...).
    pub engine: Option<String>,
    /// Engine version.
    pub engine_version: Option<String>,
    /// `manual`, `automated`, `shared`, ...
    pub snapshot_type: String,
    /// Creation time in milliseconds since the epoch; `None` while AWS has not set it.
    pub created_at: Option<i64>,
    /// The snapshot's tags.
    pub tags: TagList,
}

/// A snapshot by kind and identifier (or ARN, for one shared by another account),
/// as requests name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRef {
    /// Cluster snapshot or DB (instance) snapshot.
    pub kind: DatabaseKind,
    /// The snapshot identifier or ARN.
    pub identifier: String,
}

/// A snapshot's progress, for a `Wait`/`Choice` loop on `available`.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct SnapshotStatus {
    /// Snapshot identifier.
    pub identifier: String,
    /// AWS status.
    pub status: String,
    /// Percent complete, 0–100.
    pub progress: i32,
    /// True once the snapshot can be copied, shared and restored.
    pub available: bool,
}

/// Snapshot calls against one RDS endpoint (one account and region), for one kind
/// of database.
pub struct Snapshots {
    rds: Client,
    kind: DatabaseKind,
}

impl Snapshots {
    /// Calls through `rds` for snapshots of `kind`.
    pub fn new(rds: Client, kind: DatabaseKind) -> Self {
        Self { rds, kind }
    }

    /// The snapshot named `identifier` (or, for one shared by another account,
    /// its ARN), if it exists.
    pub async fn find(&self, identifier: &str) -> Result<Option<SnapshotSummary>> {
        if identifier.starts_with("arn:") {
            return self.find_shared(identifier).await;
        }
        match self.kind {
            DatabaseKind::Cluster => {
                let result = self
                    .rds
                    .describe_db_cluster_snapshots()
                    .db_cluster_snapshot_identifier(identifier)
                    .send()
                    .await;
                match result {
                    Ok(out) => Ok(out.db_cluster_snapshots().first().map(cluster_summary)),
                    Err(err)
                        if err
                            .as_service_error()
                            .is_some_and(|e| e.is_db_cluster_snapshot_not_found_fault()) =>
                    {
                        Ok(None)
                    }
                    Err(err) => Err(Error::from_sdk("rds:DescribeDBClusterSnapshots", err)),
                }
            }
            DatabaseKind::Instance => {
                let result = self.rds.describe_db_snapshots().db_snapshot_identifier(identifier).send().await;
                match result {
                    Ok(out) => Ok(out.db_snapshots().first().map(instance_summary)),
                    Err(err)
                        if err.as_service_error().is_some_and(|e| e.is_db_snapshot_not_found_fault()) =>
                    {
                        Ok(None)
                    }
                    Err(err) => Err(Error::from_sdk("rds:DescribeDBSnapshots", err)),
                }
            }
        }
    }

    /// A snapshot another account shared with this one, by ARN: listed with
    /// `SnapshotType=shared`, which is how AWS shows them to the receiving account.
    async fn find_shared(&self, arn: &str) -> Result<Option<SnapshotSummary>> {
        let mut found = Vec::new();
        match self.kind {
            DatabaseKind::Cluster => {
                let mut pages = self
                    .rds
                    .describe_db_cluster_snapshots()
                    .snapshot_type("shared")
                    .include_shared(true)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| Error::from_sdk("rds:DescribeDBClusterSnapshots", e))?;
                    found.extend(page.db_cluster_snapshots().iter().map(cluster_summary));
                }
            }
            DatabaseKind::Instance => {
                let mut pages = self
                    .rds
                    .describe_db_snapshots()
                    .snapshot_type("shared")
                    .include_shared(true)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| Error::from_sdk("rds:DescribeDBSnapshots", e))?;
                    found.extend(page.db_snapshots().iter().map(instance_summary));
                }
            }
        }
        Ok(found.into_iter().find(|s| s.arn.as_deref() == Some(arn)))
    }

    /// The status of `identifier`; a missing snapshot is `SnapshotNotFound`, a
    /// failed one `SnapshotFailed` (waiting longer would not help).
    pub async fn status(&self, identifier: &str) -> Result<SnapshotStatus> {
        let snapshot = self.find(identifier).await?.ok_or_else(|| {
            Error::SnapshotNotFound(format!("{} snapshot `{identifier}` does not exist", self.kind))
        })?;
        if matches!(snapshot.status.as_str(), "failed" | "error" | "deleting") {
            return Err(Error::SnapshotFailed(format!(
                "snapshot `{identifier}` is `{}`; it will not become available",
                snapshot.status
            )));
        }
        let available = snapshot.status == "available";
        Ok(SnapshotStatus {
            identifier: identifier.to_owned(),
            progress: if available { 100 } else { snapshot.progress.unwrap_or(0) },
            available,
            status: snapshot.status,
        })
    }

    /// Starts a manual snapshot of `source`. `Ok(None)` when a snapshot with that
    /// identifier already exists (a concurrent attempt made it).
    pub async fn create(
        &self,
        source: &str,
        identifier: &str,
        tags: &[(String, String)],
    ) -> Result<Option<SnapshotSummary>> {
        let tags = rds_tags(tags);
        let not_found =
            || Error::SourceNotFound(format!("production {} `{source}` does not exist", self.kind));
        match self.kind {
            DatabaseKind::Cluster => {
                let result = self
                    .rds
                    .create_db_cluster_snapshot()
                    .db_cluster_identifier(source)
                    .db_cluster_snapshot_identifier(identifier)
                    .set_tags(Some(tags))
                    .send()
                    .await;
                match result {
                    Ok(out) => Ok(out.db_cluster_snapshot().map(cluster_summary)),
                    Err(err) => match err.as_service_error() {
                        Some(e) if e.is_db_cluster_not_found_fault() => Err(not_found()),
                        Some(e) if e.is_db_cluster_snapshot_already_exists_fault() => Ok(None),
                        _ => Err(Error::from_sdk("rds:CreateDBClusterSnapshot", err)),
                    },
                }
            }
            DatabaseKind::Instance => {
                let result = self
                    .rds
                    .create_db_snapshot()
                    .db_instance_identifier(source)
                    .db_snapshot_identifier(identifier)
                    .set_tags(Some(tags))
                    .send()
                    .await;
                match result {
                    Ok(out) => Ok(out.db_snapshot().map(instance_summary)),
                    Err(err) => match err.as_service_error() {
                        Some(e) if e.is_db_instance_not_found_fault() => Err(not_found()),
                        Some(e) if e.is_db_snapshot_already_exists_fault() => Ok(None),
                        _ => Err(Error::from_sdk("rds:CreateDBSnapshot", err)),
                    },
                }
            }
        }
    }

    /// Every manual snapshot of `source` (any creator), with tags.
    pub async fn list_manual(&self, source: &str) -> Result<Vec<SnapshotSummary>> {
        let mut all = Vec::new();
        match self.kind {
            DatabaseKind::Cluster => {
                let mut pages = self
                    .rds
                    .describe_db_cluster_snapshots()
                    .db_cluster_identifier(source)
                    .snapshot_type("manual")
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| Error::from_sdk("rds:DescribeDBClusterSnapshots", e))?;
                    all.extend(page.db_cluster_snapshots().iter().map(cluster_summary));
                }
            }
            DatabaseKind::Instance => {
                let mut pages = self
                    .rds
                    .describe_db_snapshots()
                    .db_instance_identifier(source)
                    .snapshot_type("manual")
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| Error::from_sdk("rds:DescribeDBSnapshots", e))?;
                    all.extend(page.db_snapshots().iter().map(instance_summary));
                }
            }
        }
        Ok(all)
    }

    /// Deletes a snapshot; one that is already gone counts as deleted.
    pub async fn delete(&self, identifier: &str) -> Result<()> {
        match self.kind {
            DatabaseKind::Cluster => {
                let result = self
                    .rds
                    .delete_db_cluster_snapshot()
                    .db_cluster_snapshot_identifier(identifier)
                    .send()
                    .await;
                match result {
                    Err(err)
                        if !err
                            .as_service_error()
                            .is_some_and(|e| e.is_db_cluster_snapshot_not_found_fault()) =>
                    {
                        Err(Error::from_sdk("rds:DeleteDBClusterSnapshot", err))
                    }
                    _ => Ok(()),
                }
            }
            DatabaseKind::Instance => {
                let result = self.rds.delete_db_snapshot().db_snapshot_identifier(identifier).send().await;
                match result {
                    Err(err)
                        if !err.as_service_error().is_some_and(|e| e.is_db_snapshot_not_found_fault()) =>
                    {
                        Err(Error::from_sdk("rds:DeleteDBSnapshot", err))
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// Tags as (key, value) pairs.
pub fn tag_pairs(tags: &[Tag]) -> TagList {
    tags.iter()
        .map(|t| (t.key().unwrap_or_default().to_owned(), t.value().unwrap_or_default().to_owned()))
        .collect()
}

fn cluster_summary(s: &DbClusterSnapshot) -> SnapshotSummary {
    SnapshotSummary {
        identifier: s.db_cluster_snapshot_identifier().unwrap_or_default().to_owned(),
        arn: s.db_cluster_snapshot_arn().map(str::to_owned),
        source: s.db_cluster_identifier().unwrap_or_default().to_owned(),
        status: s.status().unwrap_or_default().to_owned(),
        progress: s.percent_progress(),
        encrypted: s.storage_encrypted().unwrap_or(false),
        kms_key_id: s.kms_key_id().map(str::to_owned),
        engine: s.engine().map(str::to_owned),
        engine_version: s.engine_version().map(str::to_owned),
        snapshot_type: s.snapshot_type().unwrap_or_default().to_owned(),
        created_at: s.snapshot_create_time().and_then(|t| t.to_millis().ok()),
        tags: tag_pairs(s.tag_list()),
    }
}

fn instance_summary(s: &DbSnapshot) -> SnapshotSummary {
    SnapshotSummary {
        identifier: s.db_snapshot_identifier().unwrap_or_default().to_owned(),
        arn: s.db_snapshot_arn().map(str::to_owned),
        source: s.db_instance_identifier().unwrap_or_default().to_owned(),
        status: s.status().unwrap_or_default().to_owned(),
        progress: s.percent_progress(),
        encrypted: s.encrypted().unwrap_or(false),
        kms_key_id: s.kms_key_id().map(str::to_owned),
        engine: s.engine().map(str::to_owned),
        engine_version: s.engine_version().map(str::to_owned),
        snapshot_type: s.snapshot_type().unwrap_or_default().to_owned(),
        created_at: s.snapshot_create_time().and_then(|t| t.to_millis().ok()),
        tags: tag_pairs(s.tag_list()),
    }
}

/// Tags in the SDK's shape.
pub fn rds_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

impl Snapshots {
    /// Copies `source` (identifier or, for a shared snapshot, ARN) to
    /// `identifier`, encrypted with `kms_key_id` when given, tagged `tags`.
    /// `Ok(None)` when `identifier` already exists.
    pub async fn copy(
        &self,
        source: &str,
        identifier: &str,
        kms_key_id: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<Option<SnapshotSummary>> {
        let tags = rds_tags(tags);
        match self.kind {
            DatabaseKind::Cluster => {
                let result = self
                    .rds
                    .copy_db_cluster_snapshot()
                    .source_db_cluster_snapshot_identifier(source)
                    .target_db_cluster_snapshot_identifier(identifier)
                    .set_kms_key_id(kms_key_id.map(str::to_owned))
                    .set_tags(Some(tags))
                    .send()
                    .await;
                match result {
                    Ok(out) => Ok(out.db_cluster_snapshot().map(cluster_summary)),
                    Err(err) => match err.as_service_error() {
                        Some(e) if e.is_db_cluster_snapshot_already_exists_fault() => Ok(None),
                        Some(e) if e.is_db_cluster_snapshot_not_found_fault() => {
                            Err(Error::SnapshotNotFound(format!("cluster snapshot `{source}` does not exist or is not shared with this account")))
                        }
                        _ => Err(Error::from_sdk("rds:CopyDBClusterSnapshot", err)),
                    },
                }
            }
            DatabaseKind::Instance => {
                let result = self
                    .rds
                    .copy_db_snapshot()
                    .source_db_snapshot_identifier(source)
                    .target_db_snapshot_identifier(identifier)
                    .set_kms_key_id(kms_key_id.map(str::to_owned))
                    .set_tags(Some(tags))
                    .send()
                    .await;
                match result {
                    Ok(out) => Ok(out.db_snapshot().map(instance_summary)),
                    Err(err) => match err.as_service_error() {
                        Some(e) if e.is_db_snapshot_already_exists_fault() => Ok(None),
                        Some(e) if e.is_db_snapshot_not_found_fault() => {
                            Err(Error::SnapshotNotFound(format!(
                                "DB snapshot `{source}` does not exist or is not shared with this account"
                            )))
                        }
                        _ => Err(Error::from_sdk("rds:CopyDBSnapshot", err)),
                    },
                }
            }
        }
    }

    /// The accounts that may restore `identifier` (its `restore` attribute).
    pub async fn restore_accounts(&self, identifier: &str) -> Result<Vec<String>> {
        let attributes: Vec<(String, Vec<String>)> = match self.kind {
            DatabaseKind::Cluster => {
                let out = self
                    .rds
                    .describe_db_cluster_snapshot_attributes()
                    .db_cluster_snapshot_identifier(identifier)
                    .send()
                    .await
                    .map_err(|e| Error::from_sdk("rds:DescribeDBClusterSnapshotAttributes", e))?;
                out.db_cluster_snapshot_attributes_result()
                    .map(|r| r.db_cluster_snapshot_attributes())
                    .unwrap_or_default()
                    .iter()
                    .map(|a| {
                        (a.attribute_name().unwrap_or_default().to_owned(), a.attribute_values().to_vec())
                    })
                    .collect()
            }
            DatabaseKind::Instance => {
                let out = self
                    .rds
                    .describe_db_snapshot_attributes()
                    .db_snapshot_identifier(identifier)
                    .send()
                    .await
                    .map_err(|e| Error::from_sdk("rds:DescribeDBSnapshotAttributes", e))?;
                out.db_snapshot_attributes_result()
                    .map(|r| r.db_snapshot_attributes())
                    .unwrap_or_default()
                    .iter()
                    .map(|a| {
                        (a.attribute_name().unwrap_or_default().to_owned(), a.attribute_values().to_vec())
                    })
                    .collect()
            }
        };
        Ok(attributes
            .into_iter()
            .filter(|(name, _)| name == "restore")
            .flat_map(|(_, values)| values)
            .collect())
    }

    /// Adds (`grant`) or removes the `restore` attribute for `account`.
    pub async fn set_restore_access(&self, identifier: &str, account: &str, grant: bool) -> Result<()> {
        let values = Some(vec![account.to_owned()]);
        let (to_add, to_remove) = if grant { (values, None) } else { (None, values) };
        match self.kind {
            DatabaseKind::Cluster => self
                .rds
                .modify_db_cluster_snapshot_attribute()
                .db_cluster_snapshot_identifier(identifier)
                .attribute_name("restore")
                .set_values_to_add(to_add)
                .set_values_to_remove(to_remove)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::from_sdk("rds:ModifyDBClusterSnapshotAttribute", e)),
            DatabaseKind::Instance => self
                .rds
                .modify_db_snapshot_attribute()
                .db_snapshot_identifier(identifier)
                .attribute_name("restore")
                .set_values_to_add(to_add)
                .set_values_to_remove(to_remove)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::from_sdk("rds:ModifyDBSnapshotAttribute", e)),
        }
    }
}

/// The account id in an ARN (`arn:partition:service:region:account:...`).
pub fn arn_account(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    (parts.next() == Some("arn")).then_some(())?;
    parts.nth(3).filter(|a| !a.is_empty())
}
