//! Staging's RDS calls, for both kinds of database (Aurora clusters with their
//! instances, and RDS instances), behind one type.

use aws_sdk_rds::types::{DbCluster, DbInstance, ServerlessV2ScalingConfiguration};
use aws_sdk_rds::Client;
use understudy_shared::config::{DatabaseKind, RestoreSettings};
use understudy_shared::rds::{rds_tags, tag_pairs, SnapshotSummary};
use understudy_shared::tags::TagList;
use understudy_shared::{Error, Result};

use crate::naming::member_identifier;

/// What a refresh needs to know about a staging database.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSummary {
    /// Identifier.
    pub identifier: String,
    /// ARN (its account is where it lives).
    pub arn: String,
    /// AWS status (`available`, `stopped`, `renaming`, ...).
    pub status: String,
    /// Tags.
    pub tags: TagList,
    /// A cluster's instances (empty for an instance).
    pub members: Vec<String>,
    /// Whether deletion protection is on.
    pub deletion_protection: bool,
}

/// How staging's own master password is set on a restored database.
pub enum MasterPassword {
    /// This password (from Secrets Manager; never logged).
    Value(String),
    /// RDS manages it in Secrets Manager.
    Managed,
}

/// Database calls against staging's RDS, for one kind of database.
pub struct Databases {
    rds: Client,
    kind: DatabaseKind,
}

fn is_code<E: aws_sdk_rds::error::ProvideErrorMetadata>(err: &E, codes: &[&str]) -> bool {
    err.code().is_some_and(|c| codes.contains(&c))
}

impl Databases {
    /// Calls through `rds` for databases of `kind`.
    pub fn new(rds: Client, kind: DatabaseKind) -> Self {
        Self { rds, kind }
    }

    /// The kind of database these calls are for.
    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// The database named `identifier`, if it exists.
    pub async fn find(&self, identifier: &str) -> Result<Option<DatabaseSummary>> {
        match self.kind {
            DatabaseKind::Cluster => {
                match self.rds.describe_db_clusters().db_cluster_identifier(identifier).send().await {
                    Ok(out) => Ok(out.db_clusters().first().map(cluster_summary)),
                    Err(err) if err.as_service_error().is_some_and(|e| e.is_db_cluster_not_found_fault()) => {
                        Ok(None)
                    }
                    Err(err) => Err(Error::from_sdk("rds:DescribeDBClusters", err)),
                }
            }
            DatabaseKind::Instance => self.find_instance(identifier).await,
        }
    }

    /// The instance named `identifier` (also a cluster's member), if it exists.
    pub async fn find_instance(&self, identifier: &str) -> Result<Option<DatabaseSummary>> {
        match self.rds.describe_db_instances().db_instance_identifier(identifier).send().await {
            Ok(out) => Ok(out.db_instances().first().map(instance_summary)),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_db_instance_not_found_fault()) => {
                Ok(None)
            }
            Err(err) => Err(Error::from_sdk("rds:DescribeDBInstances", err)),
        }
    }

    /// Every database whose identifier starts with `prefix`.
    pub async fn list_with_prefix(&self, prefix: &str) -> Result<Vec<DatabaseSummary>> {
        let mut found = Vec::new();
        match self.kind {
            DatabaseKind::Cluster => {
                let mut pages = self.rds.describe_db_clusters().into_paginator().send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| Error::from_sdk("rds:DescribeDBClusters", e))?;
                    found.extend(page.db_clusters().iter().map(cluster_summary));
                }
            }
            DatabaseKind::Instance => {
                let mut pages = self.rds.describe_db_instances().into_paginator().send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| Error::from_sdk("rds:DescribeDBInstances", e))?;
                    found.extend(page.db_instances().iter().map(instance_summary));
                }
            }
        }
        found.retain(|db| db.identifier.starts_with(prefix));
        Ok(found)
    }

    /// Restores `snapshot` as `identifier` with staging's `settings`. `Ok(false)`
    /// when `identifier` already exists (the caller decides whether it is its own).
    /// A cluster is encrypted with `kms_key_id` when given (AWS keeps the
    /// snapshot's key otherwise); an instance restore takes no key, it keeps the
    /// snapshot's.
    pub async fn restore(
        &self,
        identifier: &str,
        snapshot: &SnapshotSummary,
        snapshot_reference: &str,
        settings: &RestoreSettings,
        kms_key_id: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<bool> {
        let security_groups =
            (!settings.security_group_ids.is_empty()).then(|| settings.security_group_ids.clone());
        match self.kind {
            DatabaseKind::Cluster => {
                let capacity =
                    (settings.min_capacity.is_some() || settings.max_capacity.is_some()).then(|| {
                        ServerlessV2ScalingConfiguration::builder()
                            .set_min_capacity(settings.min_capacity)
                            .set_max_capacity(settings.max_capacity)
                            .build()
                    });
                let result = self
                    .rds
                    .restore_db_cluster_from_snapshot()
                    .db_cluster_identifier(identifier)
                    .snapshot_identifier(snapshot_reference)
                    .engine(snapshot.engine.clone().unwrap_or_else(|| "aurora-postgresql".into()))
                    .set_engine_version(
                        settings.engine_version.clone().or_else(|| snapshot.engine_version.clone()),
                    )
                    .set_db_subnet_group_name(settings.subnet_group.clone())
                    .set_vpc_security_group_ids(security_groups)
                    .set_db_cluster_parameter_group_name(settings.cluster_parameter_group.clone())
                    .set_serverless_v2_scaling_configuration(capacity)
                    .deletion_protection(settings.deletion_protection)
                    .set_kms_key_id(kms_key_id.map(str::to_owned))
                    .set_tags(Some(rds_tags(tags)))
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(true),
                    Err(err)
                        if err.as_service_error().is_some_and(|e| e.is_db_cluster_already_exists_fault()) =>
                    {
                        Ok(false)
                    }
                    Err(err) => Err(Error::from_sdk("rds:RestoreDBClusterFromSnapshot", err)),
                }
            }
            DatabaseKind::Instance => {
                let result = self
                    .rds
                    .restore_db_instance_from_db_snapshot()
                    .db_instance_identifier(identifier)
                    .db_snapshot_identifier(snapshot_reference)
                    .set_db_instance_class(settings.instance_class.clone())
                    .set_db_subnet_group_name(settings.subnet_group.clone())
                    .set_vpc_security_group_ids(security_groups)
                    .set_db_parameter_group_name(settings.parameter_group.clone())
                    // Never reachable from the internet, whatever the subnets' routes
                    // (AWS's default is public in a VPC with an internet gateway).
                    .publicly_accessible(false)
                    .deletion_protection(settings.deletion_protection)
                    .set_tags(Some(rds_tags(tags)))
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(true),
                    Err(err)
                        if err
                            .as_service_error()
                            .is_some_and(|e| e.is_db_instance_already_exists_fault()) =>
                    {
                        Ok(false)
                    }
                    Err(err) => Err(Error::from_sdk("rds:RestoreDBInstanceFromDBSnapshot", err)),
                }
            }
        }
    }

    /// Creates the instances a restored cluster needs (`-1`, `-2`, ...); those
    /// that already exist are kept.
    pub async fn create_members(
        &self,
        cluster: &str,
        engine: &str,
        settings: &RestoreSettings,
        tags: &[(String, String)],
    ) -> Result<Vec<String>> {
        let mut members = Vec::new();
        for n in 1..=settings.instances.unwrap_or(1) {
            let identifier = member_identifier(cluster, n);
            let result = self
                .rds
                .create_db_instance()
                .db_instance_identifier(&identifier)
                .db_cluster_identifier(cluster)
                .engine(engine)
                .db_instance_class(settings.instance_class.clone().unwrap_or_else(|| "db.serverless".into()))
                .set_db_parameter_group_name(settings.parameter_group.clone())
                .publicly_accessible(false)
                .set_tags(Some(rds_tags(tags)))
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(err)
                    if err.as_service_error().is_some_and(|e| e.is_db_instance_already_exists_fault()) => {}
                Err(err) => return Err(Error::from_sdk("rds:CreateDBInstance", err)),
            }
            members.push(identifier);
        }
        Ok(members)
    }

    /// Sets staging's master password on `identifier`, applied immediately.
    pub async fn set_master_password(&self, identifier: &str, password: MasterPassword) -> Result<()> {
        let (value, managed) = match password {
            MasterPassword::Value(value) => (Some(value), None),
            MasterPassword::Managed => (None, Some(true)),
        };
        match self.kind {
            DatabaseKind::Cluster => self
                .rds
                .modify_db_cluster()
                .db_cluster_identifier(identifier)
                .set_master_user_password(value)
                .set_manage_master_user_password(managed)
                .apply_immediately(true)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::from_sdk("rds:ModifyDBCluster", e)),
            DatabaseKind::Instance => self
                .rds
                .modify_db_instance()
                .db_instance_identifier(identifier)
                .set_master_user_password(value)
                .set_manage_master_user_password(managed)
                .apply_immediately(true)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::from_sdk("rds:ModifyDBInstance", e)),
        }
    }

    /// Renames `from` to `to`, applied immediately. A name still taken (AWS
    /// releases the old name of a database being renamed only when the rename
    /// completes) is `ResourceBusy`, so the state machine retries.
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let busy = |operation: &str, detail: String| {
            Error::ResourceBusy(format!("{operation}: cannot rename `{from}` to `{to}` yet: {detail}"))
        };
        match self.kind {
            DatabaseKind::Cluster => {
                let result = self
                    .rds
                    .modify_db_cluster()
                    .db_cluster_identifier(from)
                    .new_db_cluster_identifier(to)
                    .apply_immediately(true)
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(err)
                        if err.as_service_error().is_some_and(|e| e.is_db_cluster_already_exists_fault()) =>
                    {
                        Err(busy("rds:ModifyDBCluster", "the name is still taken".into()))
                    }
                    Err(err) => Err(Error::from_sdk("rds:ModifyDBCluster", err)),
                }
            }
            DatabaseKind::Instance => {
                let result = self
                    .rds
                    .modify_db_instance()
                    .db_instance_identifier(from)
                    .new_db_instance_identifier(to)
                    .apply_immediately(true)
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(err)
                        if err
                            .as_service_error()
                            .is_some_and(|e| is_code(e, &["DBInstanceAlreadyExists"])) =>
                    {
                        Err(busy("rds:ModifyDBInstance", "the name is still taken".into()))
                    }
                    Err(err) => Err(Error::from_sdk("rds:ModifyDBInstance", err)),
                }
            }
        }
    }

    /// Starts a stopped database.
    pub async fn start(&self, identifier: &str) -> Result<()> {
        match self.kind {
            DatabaseKind::Cluster => self
                .rds
                .start_db_cluster()
                .db_cluster_identifier(identifier)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::from_sdk("rds:StartDBCluster", e)),
            DatabaseKind::Instance => self
                .rds
                .start_db_instance()
                .db_instance_identifier(identifier)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::from_sdk("rds:StartDBInstance", e)),
        }
    }

    /// Stops an available database.
    pub async fn stop(&self, identifier: &str) -> Result<()> {
        match self.kind {
            DatabaseKind::Cluster => self
                .rds
                .stop_db_cluster()
                .db_cluster_identifier(identifier)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::from_sdk("rds:StopDBCluster", e)),
            DatabaseKind::Instance => self
                .rds
                .stop_db_instance()
                .db_instance_identifier(identifier)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::from_sdk("rds:StopDBInstance", e)),
        }
    }

    /// Turns deletion protection off.
    pub async fn disable_deletion_protection(&self, identifier: &str) -> Result<()> {
        match self.kind {
            DatabaseKind::Cluster => self
                .rds
                .modify_db_cluster()
                .db_cluster_identifier(identifier)
                .deletion_protection(false)
                .apply_immediately(true)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::from_sdk("rds:ModifyDBCluster", e)),
            DatabaseKind::Instance => self
                .rds
                .modify_db_instance()
                .db_instance_identifier(identifier)
                .deletion_protection(false)
                .apply_immediately(true)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Error::from_sdk("rds:ModifyDBInstance", e)),
        }
    }

    /// Deletes `database`: a cluster's instances first, then the cluster (AWS
    /// refuses to delete a cluster that still has instances). A final snapshot
    /// is taken under `final_snapshot` when given.
    pub async fn delete(&self, database: &DatabaseSummary, final_snapshot: Option<&str>) -> Result<()> {
        for member in &database.members {
            self.delete_instance(member, None).await?;
        }
        match self.kind {
            DatabaseKind::Instance => self.delete_instance(&database.identifier, final_snapshot).await,
            DatabaseKind::Cluster => {
                let result = self
                    .rds
                    .delete_db_cluster()
                    .db_cluster_identifier(&database.identifier)
                    .skip_final_snapshot(final_snapshot.is_none())
                    .set_final_db_snapshot_identifier(final_snapshot.map(str::to_owned))
                    .send()
                    .await;
                match result {
                    Err(err)
                        if !err.as_service_error().is_some_and(|e| e.is_db_cluster_not_found_fault()) =>
                    {
                        Err(Error::from_sdk("rds:DeleteDBCluster", err))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    async fn delete_instance(&self, identifier: &str, final_snapshot: Option<&str>) -> Result<()> {
        let result = self
            .rds
            .delete_db_instance()
            .db_instance_identifier(identifier)
            .skip_final_snapshot(final_snapshot.is_none())
            .set_final_db_snapshot_identifier(final_snapshot.map(str::to_owned))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_db_instance_not_found_fault()) => Ok(()),
            Err(err) => {
                // Already on its way out: that is what we asked for.
                if let Some(instance) = self.find_instance(identifier).await? {
                    if instance.status == "deleting" {
                        return Ok(());
                    }
                }
                Err(Error::from_sdk("rds:DeleteDBInstance", err))
            }
        }
    }

    /// Adds `tags` to the database with `arn`.
    pub async fn add_tags(&self, arn: &str, tags: &[(String, String)]) -> Result<()> {
        self.rds
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(rds_tags(tags)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Error::from_sdk("rds:AddTagsToResource", e))
    }
}

fn cluster_summary(c: &DbCluster) -> DatabaseSummary {
    DatabaseSummary {
        identifier: c.db_cluster_identifier().unwrap_or_default().to_owned(),
        arn: c.db_cluster_arn().unwrap_or_default().to_owned(),
        status: c.status().unwrap_or_default().to_owned(),
        tags: tag_pairs(c.tag_list()),
        members: c
            .db_cluster_members()
            .iter()
            .filter_map(|m| m.db_instance_identifier())
            .map(str::to_owned)
            .collect(),
        deletion_protection: c.deletion_protection().unwrap_or(false),
    }
}

fn instance_summary(i: &DbInstance) -> DatabaseSummary {
    DatabaseSummary {
        identifier: i.db_instance_identifier().unwrap_or_default().to_owned(),
        arn: i.db_instance_arn().unwrap_or_default().to_owned(),
        status: i.db_instance_status().unwrap_or_default().to_owned(),
        tags: tag_pairs(i.tag_list()),
        members: Vec::new(),
        deletion_protection: i.deletion_protection().unwrap_or(false),
    }
}
