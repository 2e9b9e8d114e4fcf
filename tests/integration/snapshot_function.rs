//! The snapshot function, run as its real binary behind the local invoke host,
//! against the emulated production account reached through an assumed role.

use serde_json::{json, Value};
use understudy_shared::tags;
use understudy_tests::deployment::cross_account;
use understudy_tests::{Accounts, LocalStack, StackOptions};

/// Deploys the stack to snapshot production's `source` of `kind`.
fn deploy(stack: &LocalStack, kind: &str, source: &str) {
    stack.deploy(&cross_account(kind, source, ""));
}

fn create(run_id: &str) -> Value {
    json!({"action": "create", "run_id": run_id})
}

fn tag_pairs(tags: &[aws_sdk_rds::types::Tag]) -> Vec<(String, String)> {
    tags.iter().map(|t| (t.key().unwrap_or("").to_owned(), t.value().unwrap_or("").to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_a_cluster_snapshot_twice_in_one_run_makes_one_snapshot_in_production() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    accounts.seed_production_cluster("prod-aurora").await;
    deploy(&stack, "cluster", "prod-aurora");

    let first = stack.invoke("snapshot", &create("deploy-7")).ok();
    let second = stack.invoke("snapshot", &create("deploy-7")).ok();

    assert_eq!(first["identifier"], "understudy-deploy-7");
    assert_eq!(first["created"], true);
    assert_eq!(second["identifier"], first["identifier"]);
    assert_eq!(second["created"], false, "a retried create must find the first attempt's snapshot");
    let production = accounts
        .production_rds()
        .describe_db_cluster_snapshots()
        .db_cluster_identifier("prod-aurora")
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    let snapshots = production.db_cluster_snapshots();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let tags = tag_pairs(snapshots[0].tag_list());
    assert!(tags.contains(&(tags::MANAGED.into(), "true".into())), "{tags:?}");
    assert!(tags.contains(&(tags::RUN.into(), "deploy-7".into())), "{tags:?}");
    assert!(tags.contains(&(tags::SOURCE.into(), "prod-aurora".into())), "{tags:?}");
    let staging = accounts.staging_rds().describe_db_cluster_snapshots().send().await.unwrap();
    assert!(
        staging.db_cluster_snapshots().is_empty(),
        "the snapshot must be made in production, through the assumed role, not in staging"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_an_instance_snapshot_twice_in_one_run_makes_one_snapshot() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    accounts.seed_production_instance("prod-postgres").await;
    deploy(&stack, "instance", "prod-postgres");

    let long_run = "Nightly_Refresh.".repeat(6);
    let first = stack.invoke("snapshot", &create(&long_run)).ok();
    let second = stack.invoke("snapshot", &create(&long_run)).ok();

    let identifier = first["identifier"].as_str().unwrap();
    assert!(identifier.len() <= 63 && identifier.starts_with("understudy-"), "{identifier}");
    assert_eq!(second["identifier"], identifier);
    assert_eq!(second["created"], false);
    let manual = accounts
        .production_rds()
        .describe_db_snapshots()
        .db_instance_identifier("prod-postgres")
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = manual.db_snapshots().iter().filter_map(|s| s.db_snapshot_identifier()).collect();
    assert_eq!(ids, [identifier]);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_creating_with_progress_then_available() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    accounts.seed_production_cluster("prod-aurora").await;
    deploy(&stack, "cluster", "prod-aurora");
    let made = stack.invoke("snapshot", &create("run-1")).ok();
    let status = json!({
        "action": "status",
        "snapshot": {"kind": "cluster", "identifier": made["identifier"]},
    });

    let mut seen = Vec::new();
    for _ in 0..10 {
        let answer = stack.invoke("snapshot", &status).ok();
        seen.push((answer["status"].as_str().unwrap().to_owned(), answer["available"].as_bool().unwrap()));
        if answer["available"] == true {
            assert_eq!(answer["progress"], 100);
            break;
        }
        assert!(answer["progress"].as_i64().unwrap() < 100, "{answer}");
    }
    assert_eq!(seen.first().unwrap(), &("creating".to_owned(), false), "{seen:?}");
    assert_eq!(seen.last().unwrap(), &("available".to_owned(), true), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_the_newest_managed_snapshots_and_never_touches_untagged_or_automated_ones() {
    // Snapshots complete at once here: prune (rightly) never deletes one in progress.
    let stack = LocalStack::start_with(StackOptions { slow_polls: 0, ..StackOptions::default() });
    let accounts = Accounts::new(&stack).await;
    accounts.seed_production_cluster("prod-aurora").await;
    deploy(&stack, "cluster", "prod-aurora");
    let rds = accounts.production_rds();
    rds.create_db_cluster_snapshot()
        .db_cluster_identifier("prod-aurora")
        .db_cluster_snapshot_identifier("before-migration-by-hand")
        .send()
        .await
        .unwrap();
    for run in ["run-1", "run-2", "run-3", "run-4"] {
        stack.invoke("snapshot", &create(run)).ok();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let input = json!({"retention": {"keep_snapshots": 2}});

    let pruned = stack.invoke("snapshot", &json!({"action": "prune", "config": {"input": input}})).ok();

    assert_eq!(pruned["deleted"], json!(["understudy-run-2", "understudy-run-1"]), "{pruned}");
    assert_eq!(pruned["kept"], json!(["understudy-run-4", "understudy-run-3"]), "{pruned}");
    let mut remaining: Vec<(String, String)> = rds
        .describe_db_cluster_snapshots()
        .db_cluster_identifier("prod-aurora")
        .send()
        .await
        .unwrap()
        .db_cluster_snapshots()
        .iter()
        .map(|s| {
            (s.db_cluster_snapshot_identifier().unwrap().to_owned(), s.snapshot_type().unwrap().to_owned())
        })
        .collect();
    remaining.sort();
    let automated = remaining.iter().filter(|(_, kind)| kind == "automated").count();
    assert_eq!(automated, 1, "moto's automated snapshot must survive: {remaining:?}");
    let manual: Vec<_> =
        remaining.iter().filter(|(_, kind)| kind == "manual").map(|(id, _)| id.as_str()).collect();
    assert_eq!(manual, ["before-migration-by-hand", "understudy-run-3", "understudy-run-4"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_source_is_source_not_found_and_nothing_is_made() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    deploy(&stack, "cluster", "no-such-cluster");

    let answer = stack.invoke("snapshot", &create("run-1"));

    assert_eq!(answer.status, 200, "function errors are 200 with X-Amz-Function-Error, as on AWS");
    assert_eq!(answer.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(answer.error_type(), Some("SourceNotFound"), "{:?}", answer.payload);
    assert!(answer.error_message().contains("no-such-cluster"), "{}", answer.error_message());
    let snapshots = accounts.production_rds().describe_db_cluster_snapshots().send().await.unwrap();
    assert!(snapshots.db_cluster_snapshots().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_invalid_input_naming_the_field() {
    let stack = LocalStack::start();
    deploy(&stack, "cluster", "prod-aurora");
    let input = json!({"database": {"sourse": "typo"}});
    let typo =
        stack.invoke("snapshot", &json!({"action": "create", "run_id": "r", "config": {"input": input}}));
    assert_eq!(typo.error_type(), Some("InvalidInput"));
    assert!(typo.error_message().contains("`input.database.sourse`"), "{}", typo.error_message());

    let extra = stack.invoke("snapshot", &json!({"action": "prune", "keep": 1}));
    assert_eq!(extra.error_type(), Some("InvalidInput"));
    assert!(extra.error_message().contains("`keep`"), "{}", extra.error_message());

    let unknown = stack.invoke("snapshot", &json!({"action": "snap"}));
    assert_eq!(unknown.error_type(), Some("InvalidInput"));
    assert!(unknown.error_message().contains("create"), "{}", unknown.error_message());
}
