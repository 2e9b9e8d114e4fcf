//! The refresh's guard rails, through the real state machine: a live target that
//! is untagged, tagged `production`, the source itself, in the production
//! account, or with an instance that neither carries the staging tag nor has the
//! name a restore gives a cluster's instances fails the execution with
//! `GuardRailViolation`, and the local stack's
//! request recorder (every AWS request moto serves, in any account) shows no
//! mutating call during the run. The recorder is shown to see the mutating calls
//! of a valid run, so the zero count is not vacuous.

use std::time::Instant;

use aws_sdk_rds::types::Tag;
use restore::{retired_identifier, temporary_identifier};
use serde_json::{json, Value};
use snapshot::snapshot_identifier;
use understudy_tests::state_machine::Outcome;
use understudy_tests::{PRODUCTION_ACCOUNT, STAGING_ACCOUNT};

use crate::refresh_world::{
    mutating, mutating_counts, states_failing_with, tags_of, RefreshStack, SOURCE, STAGING_TAGS, TARGET,
};

/// Runs execution `name` with the recorder cleared right before it starts, and
/// answers the outcome and every request recorded during the run.
async fn run_recorded(world: &RefreshStack, arn: &str, name: &str, input: &Value) -> (Outcome, Vec<Value>) {
    world.stack.take_requests();
    let outcome = world.run(arn, name, input).await;
    (outcome, world.stack.take_requests())
}

/// The test's own `StartExecution` is the one mutating call a run's window holds
/// that the product did not make.
fn is_the_tests_start_execution(record: &Value) -> bool {
    record["service"] == "stepfunctions" && record["action"] == "StartExecution"
}

/// Asserts the run was refused by a guard rail at `Check the guard rails`
/// (naming `resource`) and that nothing mutated anything in any account.
fn assert_refused_without_changes(
    world: &RefreshStack,
    outcome: &Outcome,
    requests: &[Value],
    resource: &str,
) {
    assert_eq!(outcome.status, "FAILED", "{outcome:#?}\n{}", world.logs());
    assert_eq!(outcome.error.as_deref(), Some("GuardRailViolation"), "{outcome:#?}");
    let cause = outcome.cause.as_deref().unwrap_or_default();
    assert!(cause.contains(resource), "the cause names `{resource}`: {cause}");
    assert_eq!(
        states_failing_with(outcome, "GuardRailViolation").first().map(String::as_str),
        Some("Check the guard rails"),
        "{outcome:#?}"
    );
    assert_eq!(outcome.times_entered("Create the snapshot"), 0, "{outcome:#?}");
    let all_mutating = mutating(requests);
    assert_eq!(
        all_mutating.iter().filter(|r| is_the_tests_start_execution(r)).count(),
        1,
        "the recorder was live during the run (it saw the test start the execution): {requests:#?}"
    );
    let product_mutating: Vec<&Value> =
        all_mutating.iter().filter(|r| !is_the_tests_start_execution(r)).collect();
    assert!(product_mutating.is_empty(), "no mutating call in any account: {product_mutating:#?}");
    eprintln!(
        "refused `{resource}`: {} requests recorded, 0 mutating from the product: {:?}",
        requests.len(),
        requests
            .iter()
            .map(|r| format!(
                "{}:{}",
                r["service"].as_str().unwrap_or("?"),
                r["action"].as_str().unwrap_or("?")
            ))
            .collect::<Vec<_>>()
    );
}

/// A stack deployed with a role in its own account as "production": every
/// database the run would touch is in the production account.
async fn deploy_production_as_the_stacks_own_account(world: &RefreshStack) -> String {
    let (mut parameters, document) = world.seed_000_deployment();
    for (name, value) in parameters.iter_mut() {
        match *name {
            "ProductionAccountId" => *value = STAGING_ACCOUNT.into(),
            "ProductionRoleArn" => {
                *value = format!("arn:aws:iam::{STAGING_ACCOUNT}:role/understudy-production")
            }
            _ => {}
        }
    }
    world.deploy(&parameters, &document).await;
    world.state_machine("understudy-refresh").await
}

fn rds_tags(pairs: &[(&str, &str)]) -> Vec<Tag> {
    pairs.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect()
}

/// Creates an Aurora cluster with one instance in the functions' own account
/// (staging, 123456789012), master user `owner`.
async fn seed_cluster_in_own_account(
    world: &RefreshStack,
    identifier: &str,
    owner: &str,
    tags: &[(&str, &str)],
) {
    let rds = world.accounts.staging_rds();
    rds.create_db_cluster()
        .db_cluster_identifier(identifier)
        .engine("aurora-postgresql")
        .engine_version("15.4")
        .master_username(owner)
        .master_user_password("some-password-1")
        .storage_encrypted(true)
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .expect("seed a cluster");
    rds.create_db_instance()
        .db_instance_identifier(format!("{identifier}-1"))
        .db_cluster_identifier(identifier)
        .engine("aurora-postgresql")
        .db_instance_class("db.serverless")
        .send()
        .await
        .expect("seed its instance");
}

/// Adds the instance `identifier`, tagged `tags`, to staging's cluster `cluster`.
async fn add_instance(world: &RefreshStack, cluster: &str, identifier: &str, tags: &[(&str, &str)]) {
    world
        .accounts
        .staging_rds()
        .create_db_instance()
        .db_instance_identifier(identifier)
        .db_cluster_identifier(cluster)
        .engine("aurora-postgresql")
        .db_instance_class("db.serverless")
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .expect("add an instance");
}

/// Adds `tags` to staging's instance `identifier`.
async fn tag_instance(world: &RefreshStack, identifier: &str, tags: &[(&str, &str)]) {
    let rds = world.accounts.staging_rds();
    let instance = rds.describe_db_instances().db_instance_identifier(identifier).send().await.unwrap();
    let arn = instance.db_instances()[0].db_instance_arn().unwrap().to_owned();
    rds.add_tags_to_resource().resource_name(arn).set_tags(Some(rds_tags(tags))).send().await.unwrap();
}

/// Asserts staging's cluster `identifier` is as before the run.
async fn assert_unchanged(world: &RefreshStack, identifier: &str, resource_id: Option<&str>) {
    let cluster = world.cluster(identifier).await.expect("still there");
    assert_eq!(cluster.db_cluster_resource_id(), resource_id);
    assert_eq!(cluster.status(), Some("available"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untagged_target_is_refused_without_any_change_and_once_tagged_the_recorder_sees_the_refresh() {
    let started = Instant::now();
    let world = RefreshStack::start().await;
    world.accounts.seed_production_cluster(SOURCE).await;
    world.accounts.seed_staging_cluster(TARGET, &[("team", "web")]).await;
    let before = world.cluster(TARGET).await.unwrap();
    let arn = world.seed_000_machine("understudy-refresh").await;

    let (outcome, requests) = run_recorded(&world, &arn, "deploy-untagged", &json!({})).await;

    assert_refused_without_changes(&world, &outcome, &requests, TARGET);
    assert!(outcome.cause.as_deref().unwrap_or_default().contains("staging tag"), "{outcome:#?}");
    assert!(
        requests.iter().any(|r| r["action"] == "DescribeDBClusters" && r["identifier"] == TARGET),
        "the recorder saw the guard rail's read of the target: {requests:#?}"
    );
    assert_unchanged(&world, TARGET, before.db_cluster_resource_id()).await;
    assert_eq!(tags_of(&before), tags_of(&world.cluster(TARGET).await.unwrap()));
    assert_eq!(world.production_snapshot_ids().await, Vec::<String>::new(), "no snapshot was taken");

    // The same world, with the staging tag on the target and its instance (deleted
    // with it at the end): the refresh runs, and the same recorder counts its
    // mutating calls.
    world
        .accounts
        .staging_rds()
        .add_tags_to_resource()
        .resource_name(before.db_cluster_arn().unwrap())
        .set_tags(Some(rds_tags(STAGING_TAGS)))
        .send()
        .await
        .unwrap();
    tag_instance(&world, &format!("{TARGET}-1"), STAGING_TAGS).await;
    let run = "deploy-tagged";
    let (outcome, requests) = run_recorded(&world, &arn, run, &json!({})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", world.logs());
    let counts = mutating_counts(&requests);
    let mut table = format!(
        "mutating calls of the valid seed-000 refresh `{run}` ({} requests in all):\n",
        requests.len()
    );
    for (call, count) in &counts {
        table.push_str(&format!("  {count:>3}  {call}\n"));
    }
    eprintln!("{table}");
    let count =
        |account: &str, action: &str| counts.get(&format!("{account} rds:{action}")).copied().unwrap_or(0);
    for (account, action, at_least) in [
        (PRODUCTION_ACCOUNT, "CreateDBClusterSnapshot", 1),
        (PRODUCTION_ACCOUNT, "CopyDBClusterSnapshot", 1),
        (PRODUCTION_ACCOUNT, "ModifyDBClusterSnapshotAttribute", 2),
        (PRODUCTION_ACCOUNT, "DeleteDBClusterSnapshot", 1),
        (STAGING_ACCOUNT, "RestoreDBClusterFromSnapshot", 1),
        (STAGING_ACCOUNT, "CreateDBInstance", 1),
        (STAGING_ACCOUNT, "ModifyDBCluster", 3),
        (STAGING_ACCOUNT, "DeleteDBInstance", 1),
        (STAGING_ACCOUNT, "DeleteDBCluster", 1),
    ] {
        assert!(count(account, action) >= at_least, "expected {at_least}+ {account} rds:{action}\n{table}");
    }

    // What the valid run modified is exactly what the guard rails allow.
    let temporary = temporary_identifier(TARGET, run);
    let retired = retired_identifier(TARGET, run);
    let staging_databases =
        [TARGET.to_owned(), format!("{TARGET}-1"), temporary.clone(), format!("{temporary}-1"), retired];
    let snapshot = snapshot_identifier(run);
    for record in mutating(&requests).iter().filter(|r| !is_the_tests_start_execution(r)) {
        let identifier = record["identifier"].as_str().unwrap_or_default();
        if record["account"] == STAGING_ACCOUNT {
            // Tag calls name the database by its ARN (the rename aside's understudy:retired-by).
            let identifier = identifier
                .strip_prefix(&format!("arn:aws:rds:us-east-1:{STAGING_ACCOUNT}:cluster:"))
                .unwrap_or(identifier);
            assert!(
                staging_databases.iter().any(|d| d == identifier),
                "staging call outside the refresh: {record}"
            );
        } else {
            assert_eq!(record["account"], PRODUCTION_ACCOUNT, "{record}");
            let own_snapshot = identifier.starts_with(&snapshot);
            let the_snapshot_call = record["action"] == "CreateDBClusterSnapshot" && identifier == SOURCE;
            assert!(
                own_snapshot || the_snapshot_call,
                "production call outside this run's snapshots: {record}"
            );
        }
    }
    eprintln!("untagged-then-tagged scenario took {:.1} s", started.elapsed().as_secs_f32());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_tagged_production_is_refused_without_any_change() {
    let world = RefreshStack::start().await;
    world.accounts.seed_production_cluster(SOURCE).await;
    world.accounts.seed_staging_cluster(TARGET, &[("understudy:environment", "production")]).await;
    let before = world.cluster(TARGET).await.unwrap();
    let arn = world.seed_000_machine("understudy-refresh").await;

    let (outcome, requests) = run_recorded(&world, &arn, "deploy-tagged-production", &json!({})).await;

    assert_refused_without_changes(&world, &outcome, &requests, TARGET);
    assert_unchanged(&world, TARGET, before.db_cluster_resource_id()).await;
    assert_eq!(world.production_snapshot_ids().await, Vec::<String>::new(), "no snapshot was taken");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_equal_to_the_source_in_a_same_account_setup_is_refused_without_any_change() {
    let world = RefreshStack::start().await;
    // Seed 003's kind of setup: production is the functions' own account, no role.
    let database = "app-aurora";
    seed_cluster_in_own_account(&world, database, "app_owner", STAGING_TAGS).await;
    let before = world.cluster(database).await.unwrap();
    let (_, mut document) = world.seed_000_deployment();
    document["database"]["share_kms_key_arn"] = Value::Null;
    let parameters = [
        ("DatabaseSource", database.to_owned()),
        ("DatabaseTarget", database.to_owned()),
        ("DatabasePasswordSecretArn", world.world.password_secret_arn.clone()),
    ];
    world.deploy(&parameters, &document).await;
    let arn = world.state_machine("understudy-refresh").await;

    let (outcome, requests) = run_recorded(&world, &arn, "deploy-onto-itself", &json!({})).await;

    assert_refused_without_changes(&world, &outcome, &requests, database);
    assert!(outcome.cause.as_deref().unwrap_or_default().contains("source"), "{outcome:#?}");
    assert_unchanged(&world, database, before.db_cluster_resource_id()).await;
    let snapshots = world
        .accounts
        .staging_rds()
        .describe_db_cluster_snapshots()
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    assert!(snapshots.db_cluster_snapshots().is_empty(), "no snapshot was taken");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_in_the_production_account_is_refused_without_any_change() {
    let world = RefreshStack::start().await;
    // The config says production is the functions' own account, reached through a
    // role: so the staging-tagged target there is a production database.
    seed_cluster_in_own_account(&world, SOURCE, "prod_admin", &[]).await;
    world.accounts.seed_staging_cluster(TARGET, STAGING_TAGS).await;
    let before = world.cluster(TARGET).await.unwrap();
    let arn = deploy_production_as_the_stacks_own_account(&world).await;
    let input = json!({});

    let (outcome, requests) = run_recorded(&world, &arn, "deploy-into-production", &input).await;

    assert_refused_without_changes(&world, &outcome, &requests, TARGET);
    assert!(outcome.cause.as_deref().unwrap_or_default().contains("production account"), "{outcome:#?}");
    assert_unchanged(&world, TARGET, before.db_cluster_resource_id()).await;
    assert_unchanged(&world, SOURCE, world.cluster(SOURCE).await.unwrap().db_cluster_resource_id()).await;
    let snapshots = world
        .accounts
        .staging_rds()
        .describe_db_cluster_snapshots()
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    assert!(snapshots.db_cluster_snapshots().is_empty(), "no snapshot was taken");
}

/// The same misconfiguration before staging's first refresh: no live target yet,
/// so nothing to look at, but everything the run would create in "staging" lands
/// in the production account, where understudy may only create snapshots.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_refresh_into_the_production_account_is_refused_without_any_change() {
    let world = RefreshStack::start().await;
    seed_cluster_in_own_account(&world, SOURCE, "prod_admin", &[]).await;
    let arn = deploy_production_as_the_stacks_own_account(&world).await;
    let input = json!({});

    let (outcome, requests) = run_recorded(&world, &arn, "first-deploy-into-production", &input).await;

    let clusters = world.cluster_ids().await;
    let states: Vec<_> =
        outcome.events.iter().filter(|e| e.error.is_some()).map(|e| (&e.state, &e.error)).collect();
    assert_eq!(clusters, [SOURCE], "nothing was created in the production account; failures: {states:?}");
    assert_refused_without_changes(&world, &outcome, &requests, STAGING_ACCOUNT);
}

/// The restore function may delete an instance only when it carries the staging
/// tag or has the name a restore gives a cluster's instances (the IAM policy's
/// rule): a live cluster with an instance someone added by hand, tagged with the
/// cluster's tags but the staging tag, would fail at `retire`, after the swap. The
/// check refuses it before anything is made.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_cluster_with_an_instance_that_lacks_the_staging_tag_is_refused_at_the_check_without_any_change(
) {
    let world = RefreshStack::start().await;
    world.accounts.seed_production_cluster(SOURCE).await;
    world.accounts.seed_staging_cluster(TARGET, STAGING_TAGS).await;
    let reader = format!("{TARGET}-reader");
    add_instance(&world, TARGET, &reader, &[("team", "web")]).await;
    let before = world.usable_cluster(TARGET).await;
    let instances_before = world.instance_ids().await;
    assert_eq!(instances_before, [format!("{TARGET}-1"), reader.clone()]);
    let arn = world.seed_000_machine("understudy-refresh").await;

    let (outcome, requests) = run_recorded(&world, &arn, "deploy-untagged-reader", &json!({})).await;

    assert_refused_without_changes(&world, &outcome, &requests, &reader);
    let cause = outcome.cause.as_deref().unwrap_or_default();
    assert!(cause.contains("staging tag") && cause.contains("tag the instance"), "{cause}");
    assert!(!cause.contains(&format!("`{TARGET}-1`")), "the tagged instance is not the one refused: {cause}");
    assert_unchanged(&world, TARGET, before.db_cluster_resource_id()).await;
    assert_eq!(world.cluster_ids().await, [TARGET], "nothing was restored");
    assert_eq!(world.instance_ids().await, instances_before, "nothing was created or deleted");
    assert_eq!(world.production_snapshot_ids().await, Vec::<String>::new(), "no snapshot was taken");

    // Tagged as the cause says, the same world refreshes, and the instance goes
    // with the retired cluster.
    tag_instance(&world, &reader, STAGING_TAGS).await;
    let outcome = world.run(&arn, "deploy-tagged-reader", &json!({})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", world.logs());
    assert_eq!(world.cluster_ids().await, [TARGET]);
    let instances = world.instance_ids().await;
    assert!(
        instances.iter().all(|i| !instances_before.contains(i)),
        "the old instances are gone: {instances:?}"
    );
}

/// `retire` and `undo` delete a cluster's instances with it: each instance is
/// checked before the step's first change, by the same rule.
#[tokio::test(flavor = "multi_thread")]
async fn retire_and_undo_refuse_a_cluster_with_an_instance_that_lacks_the_staging_tag_before_any_change() {
    let world = RefreshStack::start().await;
    let (parameters, document) = world.seed_000_deployment();
    world.deploy(&parameters, &document).await;
    // A retired cluster of an ended run (no understudy:retired-by: from before runs
    // tagged them), whose instance `<retired>-1` carries no tag at all.
    let retired = retired_identifier(TARGET, "deploy-earlier");
    seed_cluster_in_own_account(&world, &retired, "staging_admin", STAGING_TAGS).await;
    let run = "deploy-failed";
    // This run's temporary cluster, with its instance and one added by hand.
    let temporary = temporary_identifier(TARGET, run);
    let run_tags = [STAGING_TAGS[0], ("understudy:managed", "true"), ("understudy:run", run)];
    seed_cluster_in_own_account(&world, &temporary, "prod_admin", &run_tags).await;
    tag_instance(&world, &format!("{temporary}-1"), &run_tags).await;
    let by_hand = format!("{TARGET}-by-hand");
    add_instance(&world, &temporary, &by_hand, &[("team", "web")]).await;
    world.usable_cluster(&retired).await;
    world.usable_cluster(&temporary).await;
    let instances_before = world.instance_ids().await;
    let request = |action: &str| json!({"action": action, "run_id": run, "config": {}});

    for (action, refused) in [("retire", format!("{retired}-1")), ("undo", by_hand.clone())] {
        world.stack.take_requests();
        let answer = world.stack.invoke("restore", &request(action));
        let changes = mutating(&world.stack.take_requests());

        assert_eq!(answer.error_type(), Some("GuardRailViolation"), "{action}: {answer:?}");
        let message = answer.error_message();
        assert!(
            message.contains(&format!("`{refused}`")) && message.contains("tag the instance"),
            "{message}"
        );
        assert_eq!(changes, Vec::<Value>::new(), "{action}: no change before the refusal");
        assert_eq!(world.cluster_ids().await, [temporary.clone(), retired.clone()]);
        assert_eq!(world.instance_ids().await, instances_before);
    }

    // Once tagged, each step deletes its cluster and the instances.
    tag_instance(&world, &format!("{retired}-1"), STAGING_TAGS).await;
    tag_instance(&world, &by_hand, STAGING_TAGS).await;
    assert_eq!(world.stack.invoke("restore", &request("retire")).ok()["deleted"], json!([retired]));
    assert_eq!(world.stack.invoke("restore", &request("undo")).ok()["deleted"], json!([temporary]));
    let mut left = world.cluster_ids().await;
    for _ in 0..10 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        left = world.cluster_ids().await;
    }
    assert_eq!(left, Vec::<String>::new());
}
