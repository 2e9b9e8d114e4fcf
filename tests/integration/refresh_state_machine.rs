//! `statemachines/refresh.asl.json` executed by moto's engine through the real
//! snapshot, share and restore binaries, asserting the end state of the emulated
//! production and staging accounts.

use std::time::Duration;

use aws_sdk_rds::types::DbCluster;
use serde_json::{json, Value};
use understudy_tests::accounts::{
    refresh_defaults, RefreshWorld, PRODUCTION_PASSWORD, STAGING_PASSWORD, STAGING_SUBNET_GROUP,
};
use understudy_tests::state_machine::Outcome;
use understudy_tests::{Accounts, LocalStack, StateMachines, STAGING_ACCOUNT};

const TIMEOUT: Duration = Duration::from_secs(240);
const SOURCE: &str = "production-aurora";
const TARGET: &str = "staging-aurora";
const STAGING_TAGS: &[(&str, &str)] = &[("understudy:environment", "staging"), ("team", "web")];

/// Seed 000's world: an encrypted (aws/rds) Aurora Serverless v2 cluster in
/// production, a tagged staging cluster under the target name in staging.
async fn seed_000(stack: &LocalStack) -> (Accounts, RefreshWorld) {
    let accounts = Accounts::new(stack).await;
    let world = accounts.seed_refresh_world(stack).await;
    accounts.seed_production_cluster(SOURCE).await;
    accounts.seed_staging_cluster(TARGET, STAGING_TAGS).await;
    (accounts, world)
}

async fn run_refresh(accounts: &Accounts, world: &RefreshWorld, name: &str, input: Value) -> Outcome {
    let machines = StateMachines::new(&accounts.staging);
    let arn = machines
        .create(
            &format!("understudy-refresh-{name}"),
            "refresh.asl.json",
            &refresh_defaults("cluster", SOURCE, TARGET, world),
        )
        .await;
    machines.start(&arn, name, &input).await.finish(TIMEOUT).await
}

async fn staging_cluster(accounts: &Accounts, identifier: &str) -> Option<DbCluster> {
    let result = accounts.staging_rds().describe_db_clusters().db_cluster_identifier(identifier).send().await;
    result.ok().and_then(|out| out.db_clusters().first().cloned())
}

async fn staging_cluster_ids(accounts: &Accounts) -> Vec<String> {
    let out = accounts.staging_rds().describe_db_clusters().send().await.unwrap();
    let mut ids: Vec<String> =
        out.db_clusters().iter().filter_map(|c| c.db_cluster_identifier()).map(str::to_owned).collect();
    ids.sort();
    ids
}

async fn staging_instance_ids(accounts: &Accounts) -> Vec<String> {
    let out = accounts.staging_rds().describe_db_instances().send().await.unwrap();
    let mut ids: Vec<String> =
        out.db_instances().iter().filter_map(|i| i.db_instance_identifier()).map(str::to_owned).collect();
    ids.sort();
    ids
}

fn tags_of(cluster: &DbCluster) -> Vec<(String, String)> {
    cluster
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap_or("").to_owned(), t.value().unwrap_or("").to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_000_staging_cluster_is_replaced_by_a_restore_of_the_new_production_snapshot() {
    let stack = LocalStack::start();
    let (accounts, world) = seed_000(&stack).await;
    let before = staging_cluster(&accounts, TARGET).await.unwrap();

    let outcome = run_refresh(&accounts, &world, "deploy-1", json!({})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\nrestore log:\n{}", stack.function_log("restore"));
    let after = staging_cluster(&accounts, TARGET).await.expect("staging cluster under the target name");
    assert_eq!(after.master_username(), Some("prod_admin"), "restored from production's snapshot");
    assert!(after.cluster_create_time().unwrap().secs() >= before.cluster_create_time().unwrap().secs());
    assert_ne!(
        after.db_cluster_resource_id(),
        before.db_cluster_resource_id(),
        "a new cluster, not the old one"
    );
    assert_eq!(after.db_subnet_group(), Some(STAGING_SUBNET_GROUP));
    let security_groups: Vec<_> =
        after.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).collect();
    assert_eq!(security_groups, [world.security_group_id.as_str()]);
    let capacity = after.serverless_v2_scaling_configuration().expect("serverless v2 capacity");
    assert_eq!((capacity.min_capacity(), capacity.max_capacity()), (Some(0.5), Some(1.0)));
    let tags = tags_of(&after);
    assert!(tags.contains(&("understudy:environment".into(), "staging".into())), "{tags:?}");
    assert!(tags.contains(&("understudy:managed".into(), "true".into())), "{tags:?}");
    assert!(tags.contains(&("understudy:run".into(), "deploy-1".into())), "{tags:?}");
    assert!(
        stack.password_works("cluster", TARGET, "prod_admin", STAGING_PASSWORD),
        "staging's password must work"
    );
    assert!(
        !stack.password_works("cluster", TARGET, "prod_admin", PRODUCTION_PASSWORD),
        "production's must not"
    );

    assert_eq!(staging_cluster_ids(&accounts).await, [TARGET], "no temporary or retired cluster remains");
    let instances = staging_instance_ids(&accounts).await;
    assert_eq!(instances.len(), 1, "only the new cluster's instance: {instances:?}");
    assert!(!instances.contains(&format!("{TARGET}-1")), "the old instance is gone: {instances:?}");

    let snapshot = outcome.output.as_ref().unwrap()["snapshot"]["identifier"].as_str().unwrap().to_owned();
    let production = accounts.production_rds();
    let shared_with = production
        .describe_db_cluster_snapshot_attributes()
        .db_cluster_snapshot_identifier(&snapshot)
        .send()
        .await
        .unwrap();
    let restore_accounts: Vec<String> = shared_with
        .db_cluster_snapshot_attributes_result()
        .unwrap()
        .db_cluster_snapshot_attributes()
        .iter()
        .filter(|a| a.attribute_name() == Some("restore"))
        .flat_map(|a| a.attribute_values().to_vec())
        .collect();
    assert!(!restore_accounts.contains(&STAGING_ACCOUNT.to_owned()), "the share is revoked");
    let production_snapshots =
        production.describe_db_cluster_snapshots().snapshot_type("manual").send().await.unwrap();
    let ids: Vec<_> = production_snapshots
        .db_cluster_snapshots()
        .iter()
        .filter_map(|s| s.db_cluster_snapshot_identifier())
        .collect();
    assert_eq!(ids, [snapshot.as_str()], "the re-encrypted intermediate copy is gone");
    assert!(
        outcome.times_entered("Check the share copy") >= 1,
        "the aws/rds snapshot was re-encrypted first"
    );
}
