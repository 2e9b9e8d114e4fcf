//! `statemachines/refresh.asl.json` executed by moto's engine through the real
//! snapshot, share and restore binaries, asserting the end state of the emulated
//! production and staging accounts.

use std::time::Duration;

use aws_sdk_rds::types::DbCluster;
use serde_json::{json, Value};
use understudy_tests::accounts::{
    refresh_deployment, RefreshWorld, PRODUCTION_PASSWORD, STAGING_PASSWORD, STAGING_SUBNET_GROUP,
};
use understudy_tests::deployment::write_config;
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

async fn run_refresh(
    stack: &LocalStack,
    accounts: &Accounts,
    world: &RefreshWorld,
    name: &str,
    input: Value,
) -> Outcome {
    let (parameters, document) = refresh_deployment("cluster", SOURCE, TARGET, world);
    stack.deploy(&parameters);
    write_config(&accounts.staging, &document).await;
    let machines = StateMachines::new(&accounts.staging);
    let arn = machines.create(&format!("understudy-refresh-{name}"), "refresh.asl.json", &[]).await;
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

/// Describes the staging cluster until it shows `status` (each describe is one
/// poll of the emulator's slow transitions).
async fn wait_for_status(accounts: &Accounts, identifier: &str, status: &str) {
    for _ in 0..20 {
        if staging_cluster(accounts, identifier).await.unwrap().status() == Some(status) {
            return;
        }
    }
    panic!("`{identifier}` never became {status}");
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

    let outcome = run_refresh(&stack, &accounts, &world, "deploy-1", json!({})).await;

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
    // Encrypted with staging's own key: a restore without KmsKeyId would keep the
    // key production shared the snapshot under.
    let staging_rds_key = aws_sdk_kms::Client::new(&accounts.staging)
        .describe_key()
        .key_id("alias/aws/rds")
        .send()
        .await
        .expect("staging's aws/rds key");
    let staging_rds_key = staging_rds_key.key_metadata().and_then(|m| m.arn()).expect("key ARN").to_owned();
    assert!(
        staging_rds_key.starts_with(&format!("arn:aws:kms:us-east-1:{STAGING_ACCOUNT}:key/")),
        "{staging_rds_key}"
    );
    assert_eq!(after.storage_encrypted(), Some(true));
    assert_eq!(
        after.kms_key_id(),
        Some(staging_rds_key.as_str()),
        "encrypted with staging's aws/rds key, not production's share key {}",
        world.share_key_arn
    );
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
    let instance =
        accounts.staging_rds().describe_db_instances().db_instance_identifier(&instances[0]).send().await;
    let instance = instance.unwrap().db_instances().first().cloned().unwrap();
    assert_eq!(instance.kms_key_id(), Some(staging_rds_key.as_str()), "its instance too");

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

#[tokio::test(flavor = "multi_thread")]
async fn a_sleeping_staging_is_refreshed_and_put_back_to_sleep() {
    let stack = LocalStack::start();
    let (accounts, world) = seed_000(&stack).await;
    wait_for_status(&accounts, TARGET, "available").await;
    accounts.staging_rds().stop_db_cluster().db_cluster_identifier(TARGET).send().await.unwrap();
    wait_for_status(&accounts, TARGET, "stopped").await;

    let outcome = run_refresh(&stack, &accounts, &world, "deploy-asleep", json!({})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", stack.function_log("restore"));
    assert!(
        outcome.times_entered("Check the live database") >= 1,
        "the sleeping database was started and awaited"
    );
    assert_eq!(outcome.output.as_ref().unwrap()["was_asleep"], true);
    let after = staging_cluster(&accounts, TARGET).await.unwrap();
    assert_eq!(after.master_username(), Some("prod_admin"), "restored from production's snapshot");
    assert!(matches!(after.status(), Some("stopped" | "stopping")), "back asleep: {:?}", after.status());
    assert!(
        tags_of(&after).contains(&("understudy:sleep:state".into(), "asleep".into())),
        "{:?}",
        tags_of(&after)
    );
    assert_eq!(staging_cluster_ids(&accounts).await, [TARGET]);
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_003_same_account_instance_is_replaced_the_same_way() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    let world = accounts.seed_refresh_world(&stack).await;
    let rds = accounts.staging_rds();
    accounts.seed_same_account_production_instance("app-production").await;
    accounts.seed_staging_instance("app-staging", STAGING_TAGS).await;
    // A same-account stack: ProductionAccountId left empty (the stack's own account), no role.
    let (_, mut document) = refresh_deployment("instance", "app-production", "app-staging", &world);
    document["database"]["share_kms_key_arn"] = Value::Null;
    document["database"]["restore"]["min_capacity"] = Value::Null;
    document["database"]["restore"]["max_capacity"] = Value::Null;
    stack.deploy(&[
        ("DatabaseKind", "instance".into()),
        ("DatabaseSource", "app-production".into()),
        ("DatabaseTarget", "app-staging".into()),
        ("DatabasePasswordSecretArn", world.password_secret_arn.clone()),
    ]);
    write_config(&accounts.staging, &document).await;
    let machines = StateMachines::new(&accounts.staging);
    let arn = machines.create("understudy-refresh", "refresh.asl.json", &[]).await;

    let outcome = machines.start(&arn, "release-9", &json!({})).await.finish(TIMEOUT).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", stack.function_log("restore"));
    let instances = rds.describe_db_instances().send().await.unwrap();
    let mut ids: Vec<_> =
        instances.db_instances().iter().filter_map(|i| i.db_instance_identifier()).collect();
    ids.sort();
    assert_eq!(ids, ["app-production", "app-staging"], "no temporary or retired instance remains");
    let staging =
        instances.db_instances().iter().find(|i| i.db_instance_identifier() == Some("app-staging")).unwrap();
    assert_eq!(staging.master_username(), Some("app_owner"), "restored from production's snapshot");
    assert_eq!(staging.db_subnet_group().and_then(|g| g.db_subnet_group_name()), Some(STAGING_SUBNET_GROUP));
    assert!(stack.password_works("instance", "app-staging", "app_owner", STAGING_PASSWORD));
    assert!(!stack.password_works("instance", "app-staging", "app_owner", PRODUCTION_PASSWORD));
    let production =
        instances.db_instances().iter().find(|i| i.db_instance_identifier() == Some("app-production"));
    assert!(
        stack.password_works("instance", "app-production", "app_owner", PRODUCTION_PASSWORD),
        "{production:?}"
    );
    assert_eq!(outcome.times_entered("Check the share copy"), 0, "nothing is shared within one account");
}

/// A team's first refresh: staging has no database under the target name yet.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_refresh_with_no_live_staging_database_creates_it_private_in_stagings_network() {
    use crate::refresh_world::RefreshStack;
    use understudy_tests::accounts::STAGING_SUBNET_GROUP;

    let world = RefreshStack::start().await;
    world.accounts.seed_production_cluster(SOURCE).await;
    assert_eq!(world.cluster_ids().await, Vec::<String>::new(), "staging starts with no database");
    let arn = world.seed_000_machine("understudy-refresh").await;

    let outcome = world.run(&arn, "first-refresh", &json!({})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", world.logs());
    let output = outcome.output.as_ref().expect("output");
    assert_eq!(output["database"]["identifier"], TARGET, "{output:#}");
    assert_eq!(output["was_asleep"], false);
    let live = world.usable_cluster(TARGET).await;
    assert_eq!(live.db_subnet_group(), Some(STAGING_SUBNET_GROUP), "in staging's subnet group");
    assert_eq!(live.master_username(), Some("prod_admin"), "restored from production's snapshot");
    assert_eq!(world.cluster_ids().await, [TARGET], "nothing temporary or retired is left");
    let instances = world.accounts.staging_rds().describe_db_instances().send().await.unwrap();
    assert!(!instances.db_instances().is_empty());
    for instance in instances.db_instances() {
        assert_eq!(instance.db_cluster_identifier(), Some(TARGET), "only the new cluster's instances remain");
        assert_eq!(
            instance.publicly_accessible(),
            Some(false),
            "{:?} must not be reachable from the internet",
            instance.db_instance_identifier()
        );
    }
    assert_eq!(world.snapshots_shared_with_staging().await, Vec::<String>::new(), "the share is revoked");
}

/// Without staging's network in the config, a first refresh would create the
/// database in the default VPC: it is refused before anything is made.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_refresh_without_a_subnet_group_is_refused_before_any_change() {
    use crate::refresh_world::{mutating, RefreshStack};

    let world = RefreshStack::start().await;
    world.accounts.seed_production_cluster(SOURCE).await;
    let (parameters, mut document) = world.seed_000_deployment();
    document["database"]["restore"]["subnet_group"] = Value::Null;
    world.deploy(&parameters, &document).await;
    let arn = world.state_machine("understudy-refresh").await;
    world.stack.take_requests();

    let outcome = world.run(&arn, "first-refresh-no-network", &json!({})).await;

    assert_eq!(outcome.status, "FAILED", "{outcome:#?}");
    assert_eq!(outcome.error.as_deref(), Some("InvalidInput"), "{outcome:#?}");
    assert!(outcome.cause.as_deref().unwrap_or_default().contains("config.database.restore.subnet_group"));
    let calls: Vec<Value> = mutating(&world.stack.take_requests())
        .into_iter()
        .filter(|r| r["service"] != "stepfunctions")
        .collect();
    assert_eq!(calls, Vec::<Value>::new(), "0 mutating calls on either account");
}
