//! The RDS calls behind the snapshot function, for both kinds of database, and
//! the pure rule that picks which snapshots to prune.

use aws_sdk_rds::types::{DbClusterSnapshot, DbSnapshot, Tag};
use aws_sdk_rds::Client;
use understudy_shared::config::DatabaseKind;
use understudy_shared::tags::{self, tag_value, TagList};
use understudy_shared::{Error, Result};

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
    /// `manual`, `automated`, `shared`, ...
    pub snapshot_type: String,
    /// Creation time in milliseconds since the epoch; `None` while AWS has not set it.
    pub created_at: Option<i64>,
    /// The snapshot's tags.
    pub tags: TagList,
}

/// Splits understudy's manual snapshots of `source` into those to keep (the
/// newest `keep`) and those to delete. Untagged, automated, foreign-source and
/// still-in-progress snapshots are never selected for deletion.
pub fn select_for_pruning<'a>(
    snapshots: &'a [SnapshotSummary],
    source: &str,
    keep: usize,
) -> (Vec<&'a SnapshotSummary>, Vec<&'a SnapshotSummary>) {
    let mut ours: Vec<&SnapshotSummary> = snapshots
        .iter()
        .filter(|s| {
            s.snapshot_type == "manual"
                && s.source == source
                && tag_value(&s.tags, tags::MANAGED) == Some(tags::MANAGED_VALUE)
                && tag_value(&s.tags, tags::SOURCE) == Some(source)
        })
        .collect();
    // Newest first; a snapshot without a creation time is still being made, so newest.
    ours.sort_by_key(|s| std::cmp::Reverse(s.created_at.unwrap_or(i64::MAX)));
    let doomed = ours.split_off(keep.min(ours.len()));
    let (doomed, in_progress): (Vec<_>, Vec<_>) = doomed.into_iter().partition(|s| s.status == "available");
    ours.extend(in_progress);
    (ours, doomed)
}

/// Snapshot calls against one production RDS endpoint, for one kind of database.
pub struct ProductionSnapshots {
    rds: Client,
    kind: DatabaseKind,
}

impl ProductionSnapshots {
    pub fn new(rds: Client, kind: DatabaseKind) -> Self {
        Self { rds, kind }
    }

    /// The snapshot named `identifier`, if it exists.
    pub async fn find(&self, identifier: &str) -> Result<Option<SnapshotSummary>> {
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

    /// Starts a manual snapshot of `source`. `Ok(None)` when a snapshot with that
    /// identifier already exists (a concurrent attempt made it).
    pub async fn create(
        &self,
        source: &str,
        identifier: &str,
        tags: TagList,
    ) -> Result<Option<SnapshotSummary>> {
        let tags: Vec<Tag> = tags.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
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

fn tag_pairs(tags: &[Tag]) -> TagList {
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
        snapshot_type: s.snapshot_type().unwrap_or_default().to_owned(),
        created_at: s.snapshot_create_time().and_then(|t| t.to_millis().ok()),
        tags: tag_pairs(s.tag_list()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, created_at: i64, snapshot_type: &str, tags: &[(&str, &str)]) -> SnapshotSummary {
        SnapshotSummary {
            identifier: id.into(),
            arn: None,
            source: "prod".into(),
            status: "available".into(),
            progress: Some(100),
            snapshot_type: snapshot_type.into(),
            created_at: Some(created_at),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    const OURS: &[(&str, &str)] = &[("understudy:managed", "true"), ("understudy:source", "prod")];

    fn ids(list: &[&SnapshotSummary]) -> Vec<String> {
        list.iter().map(|s| s.identifier.clone()).collect()
    }

    #[test]
    fn keeps_the_newest_managed_snapshots_and_deletes_the_older_ones() {
        let all = vec![
            snapshot("u1", 100, "manual", OURS),
            snapshot("u3", 300, "manual", OURS),
            snapshot("u2", 200, "manual", OURS),
            snapshot("u4", 400, "manual", OURS),
        ];
        let (kept, doomed) = select_for_pruning(&all, "prod", 2);
        assert_eq!(ids(&kept), ["u4", "u3"]);
        assert_eq!(ids(&doomed), ["u2", "u1"]);
    }

    #[test]
    fn never_selects_untagged_automated_or_foreign_snapshots() {
        let all = vec![
            snapshot("untagged", 1, "manual", &[]),
            snapshot("automated", 2, "automated", OURS),
            snapshot(
                "false-flag",
                3,
                "manual",
                &[("understudy:managed", "false"), ("understudy:source", "prod")],
            ),
            snapshot(
                "other-source",
                4,
                "manual",
                &[("understudy:managed", "true"), ("understudy:source", "other")],
            ),
            snapshot("ours", 5, "manual", OURS),
        ];
        let (kept, doomed) = select_for_pruning(&all, "prod", 1);
        assert_eq!(ids(&kept), ["ours"]);
        assert!(doomed.is_empty());
    }

    #[test]
    fn a_snapshot_still_in_progress_is_kept() {
        let mut creating = snapshot("creating", 0, "manual", OURS);
        creating.status = "creating".into();
        creating.created_at = None;
        let all = vec![snapshot("old", 1, "manual", OURS), snapshot("older", 0, "manual", OURS), creating];
        let (kept, doomed) = select_for_pruning(&all, "prod", 1);
        assert_eq!(ids(&kept), ["creating"]);
        assert_eq!(ids(&doomed), ["old", "older"]);
    }
}
