//! AWS rules the emulator does not enforce, proven on mocked SDK responses
//! (`aws-smithy-mocks`): the error each fault becomes, and whether the state
//! machines retry it.

use aws_sdk_rds::error::ErrorMetadata;
use aws_sdk_rds::operation::create_db_cluster_snapshot::CreateDBClusterSnapshotError;
use aws_sdk_rds::operation::create_db_instance::CreateDbInstanceOutput;
use aws_sdk_rds::operation::describe_db_cluster_snapshots::DescribeDbClusterSnapshotsOutput;
use aws_sdk_rds::operation::describe_db_clusters::{DescribeDBClustersError, DescribeDbClustersOutput};
use aws_sdk_rds::operation::modify_db_cluster::ModifyDBClusterError;
use aws_sdk_rds::operation::restore_db_cluster_from_snapshot::{
    RestoreDBClusterFromSnapshotError, RestoreDbClusterFromSnapshotOutput,
};
use aws_sdk_rds::types::error::{
    DbClusterAlreadyExistsFault, DbClusterNotFoundFault, InvalidDbClusterStateFault,
    KmsKeyNotAccessibleFault, SnapshotQuotaExceededFault,
};
use aws_sdk_rds::types::{DbCluster, DbClusterSnapshot, Tag};
use aws_sdk_rds::Client;
use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
use serde_json::json;
use understudy_shared::config::{DatabaseKind, EnvironmentConfig};
use understudy_shared::deployment::Deployment;
use understudy_shared::rds::{SnapshotRef, Snapshots};
use understudy_shared::Error;

use crate::{temporary_identifier, Databases, Refresh, DEFAULT_STAGING_KMS_KEY};

const SNAPSHOT_ARN: &str = "arn:aws:rds:us-east-1:111111111111:cluster-snapshot:understudy-run-1-share";

fn mocked_rds(rules: &[&Rule]) -> Client {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let config = aws_sdk_rds::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_rds::config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new("AKID", "SECRET", None, None, "mock"))
        .retry_config(aws_sdk_rds::config::retry::RetryConfig::disabled())
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    Client::from_conf(config)
}

fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(format!("{code} (mocked)")).build()
}

fn refresh(rds: Client) -> Refresh {
    refresh_with_staging_key(rds, None)
}

fn refresh_with_staging_key(rds: Client, staging_kms_key_id: Option<&str>) -> Refresh {
    let deployment = Deployment::example();
    let document = json!({
        "database": {"kind": "cluster", "source": "production-aurora", "target": "staging-aurora",
                     "password": {"managed": true}, "staging_kms_key_id": staging_kms_key_id},
    });
    let config = EnvironmentConfig::assemble(&deployment, Some(&document), &json!({})).unwrap();
    Refresh::with_config(config, rds).unwrap()
}

/// Production's share key, which the shared snapshot is encrypted with.
const SHARE_KEY_ARN: &str = "arn:aws:kms:us-east-1:111111111111:key/0f0e0d0c-0000-4000-8000-000000000001";

fn shared_snapshot_listing() -> Rule {
    snapshot_listing(false)
}

fn snapshot_listing(encrypted: bool) -> Rule {
    mock!(Client::describe_db_cluster_snapshots).then_output(move || {
        DescribeDbClusterSnapshotsOutput::builder()
            .db_cluster_snapshots(
                DbClusterSnapshot::builder()
                    .db_cluster_snapshot_identifier("understudy-run-1-share")
                    .db_cluster_snapshot_arn(SNAPSHOT_ARN)
                    .engine("aurora-postgresql")
                    .status("available")
                    .snapshot_type("shared")
                    .storage_encrypted(encrypted)
                    .set_kms_key_id(encrypted.then(|| SHARE_KEY_ARN.to_owned()))
                    .build(),
            )
            .build()
    })
}

/// The KmsKeyId of the one `RestoreDBClusterFromSnapshot` a restore makes, given
/// whether the snapshot is encrypted and the configured staging key.
async fn restore_kms_key_id(encrypted: bool, staging_kms_key_id: Option<&str>) -> Option<String> {
    let listing = snapshot_listing(encrypted);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let restore = mock!(Client::restore_db_cluster_from_snapshot)
        .match_requests(move |request| {
            record.lock().unwrap().push(request.kms_key_id().map(str::to_owned));
            true
        })
        .then_output(|| RestoreDbClusterFromSnapshotOutput::builder().build());
    let instance =
        mock!(Client::create_db_instance).then_output(|| CreateDbInstanceOutput::builder().build());
    let refresh = refresh_with_staging_key(mocked_rds(&[&listing, &restore, &instance]), staging_kms_key_id);

    refresh.restore_temporary("run-1", &snapshot()).await.unwrap();

    assert_eq!(restore.num_calls(), 1);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    seen.into_iter().next().unwrap()
}

#[tokio::test]
async fn an_encrypted_snapshot_is_restored_with_stagings_own_key_never_the_one_it_was_shared_under() {
    // No KmsKeyId would keep the snapshot's key: production's share key.
    assert_eq!(restore_kms_key_id(true, None).await.as_deref(), Some(DEFAULT_STAGING_KMS_KEY));
    assert_eq!(DEFAULT_STAGING_KMS_KEY, "alias/aws/rds", "staging's AWS-managed key, resolved in staging");
    assert_eq!(
        restore_kms_key_id(true, Some("alias/staging-db")).await.as_deref(),
        Some("alias/staging-db"),
        "the configured staging key"
    );
}

#[tokio::test]
async fn an_unencrypted_snapshot_is_encrypted_only_when_a_staging_key_is_configured() {
    assert_eq!(restore_kms_key_id(false, None).await, None);
    assert_eq!(
        restore_kms_key_id(false, Some("alias/staging-db")).await.as_deref(),
        Some("alias/staging-db")
    );
}

fn snapshot() -> SnapshotRef {
    SnapshotRef { kind: DatabaseKind::Cluster, identifier: SNAPSHOT_ARN.into() }
}

#[tokio::test]
async fn a_key_staging_cannot_use_is_kms_key_not_accessible_and_not_retried() {
    let listing = shared_snapshot_listing();
    let restore = mock!(Client::restore_db_cluster_from_snapshot).then_error(|| {
        RestoreDBClusterFromSnapshotError::KmsKeyNotAccessibleFault(
            KmsKeyNotAccessibleFault::builder().meta(meta("KMSKeyNotAccessibleFault")).build(),
        )
    });
    let refresh = refresh(mocked_rds(&[&listing, &restore]));

    let error = refresh.restore_temporary("run-1", &snapshot()).await.unwrap_err();

    assert_eq!(error.error_type(), "KmsKeyNotAccessible", "{error}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("rds:RestoreDBClusterFromSnapshot"), "{error}");
}

#[tokio::test]
async fn a_full_snapshot_quota_is_quota_exceeded_and_not_retried() {
    let create = mock!(Client::create_db_cluster_snapshot).then_error(|| {
        CreateDBClusterSnapshotError::SnapshotQuotaExceededFault(
            SnapshotQuotaExceededFault::builder().meta(meta("SnapshotQuotaExceeded")).build(),
        )
    });
    let snapshots = Snapshots::new(mocked_rds(&[&create]), DatabaseKind::Cluster);

    let error = snapshots.create("production-aurora", "understudy-run-1", &[]).await.unwrap_err();

    assert_eq!(error.error_type(), "QuotaExceeded", "{error}");
    assert!(!error.is_retryable());
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn a_cluster_that_is_busy_is_resource_busy_and_retried() {
    let rename = mock!(Client::modify_db_cluster).then_error(|| {
        ModifyDBClusterError::InvalidDbClusterStateFault(
            InvalidDbClusterStateFault::builder().meta(meta("InvalidDBClusterStateFault")).build(),
        )
    });
    let databases = Databases::new(mocked_rds(&[&rename]), DatabaseKind::Cluster);

    let error = databases.rename("staging-aurora", "staging-aurora-retired-abc123").await.unwrap_err();

    assert_eq!(error.error_type(), "ResourceBusy", "{error}");
    assert!(error.is_retryable(), "the state machines retry a busy cluster");
}

fn temporary_cluster_of(run: &'static str) -> Rule {
    mock!(Client::describe_db_clusters).then_output(move || {
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        DescribeDbClustersOutput::builder()
            .db_clusters(
                DbCluster::builder()
                    .db_cluster_identifier(temporary_identifier("staging-aurora", "run-1"))
                    .db_cluster_arn("arn:aws:rds:us-east-1:222222222222:cluster:staging-aurora-new")
                    .status("creating")
                    .tag_list(tag("understudy:environment", "staging"))
                    .tag_list(tag("understudy:managed", "true"))
                    .tag_list(tag("understudy:run", run))
                    .build(),
            )
            .build()
    })
}

fn already_exists() -> Rule {
    mock!(Client::restore_db_cluster_from_snapshot).then_error(|| {
        RestoreDBClusterFromSnapshotError::DbClusterAlreadyExistsFault(
            DbClusterAlreadyExistsFault::builder().meta(meta("DBClusterAlreadyExistsFault")).build(),
        )
    })
}

#[tokio::test]
async fn a_retried_restore_that_finds_its_own_temporary_cluster_carries_on() {
    let listing = shared_snapshot_listing();
    let restore = already_exists();
    let ours = temporary_cluster_of("run-1");
    let instance =
        mock!(Client::create_db_instance).then_output(|| CreateDbInstanceOutput::builder().build());
    let refresh = refresh(mocked_rds(&[&listing, &restore, &ours, &instance]));

    let restored = refresh.restore_temporary("run-1", &snapshot()).await.unwrap();

    let temporary = temporary_identifier("staging-aurora", "run-1");
    assert_eq!(restored.database.identifier, temporary);
    assert_eq!(restored.members, [format!("{temporary}-1")]);
    assert_eq!(instance.num_calls(), 1, "the missing instance is created");
}

#[tokio::test]
async fn a_restore_that_finds_another_runs_cluster_under_its_name_stops() {
    let listing = shared_snapshot_listing();
    let restore = already_exists();
    let theirs = temporary_cluster_of("run-0");
    let instance =
        mock!(Client::create_db_instance).then_output(|| CreateDbInstanceOutput::builder().build());
    let refresh = refresh(mocked_rds(&[&listing, &restore, &theirs, &instance]));

    let error = refresh.restore_temporary("run-1", &snapshot()).await.unwrap_err();

    assert!(matches!(error, Error::GuardRailViolation(_)), "{error}");
    assert_eq!(instance.num_calls(), 0, "nothing is added to a database this run did not make");
}

#[tokio::test]
async fn a_first_refresh_wakes_nothing_and_still_names_the_target() {
    let missing = mock!(Client::describe_db_clusters).then_error(|| {
        DescribeDBClustersError::DbClusterNotFoundFault(
            DbClusterNotFoundFault::builder().meta(meta("DBClusterNotFoundFault")).build(),
        )
    });
    let refresh = refresh(mocked_rds(&[&missing]));

    let woken = refresh.wake_live().await.unwrap();

    assert!(!woken.was_asleep && !woken.exists, "{woken:?}");
    assert_eq!(
        woken.database,
        crate::DatabaseRef { kind: DatabaseKind::Cluster, identifier: "staging-aurora".into() }
    );
    let answer = serde_json::to_value(&woken).unwrap();
    assert_eq!(
        answer["database"]["identifier"], "staging-aurora",
        "refresh.asl.json reads $.Payload.database"
    );
}
