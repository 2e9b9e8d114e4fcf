//! `statemachines/snapshot.asl.json` executed by moto's engine, its Lambda tasks
//! reaching the real snapshot binary through the local invoke host.

use std::time::Duration;

use serde_json::json;
use understudy_tests::deployment::{cross_account, fast_polls, write_config};
use understudy_tests::state_machine::Outcome;
use understudy_tests::{Accounts, LocalStack, StackOptions, StateMachines};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Deploys the stack for `prod-aurora` (with a document that polls each second)
/// and runs the snapshot machine with `input`.
async fn run_snapshot_state_machine(stack: &LocalStack, input: serde_json::Value) -> Outcome {
    let accounts = Accounts::new(stack).await;
    stack.deploy(&cross_account("cluster", "prod-aurora", ""));
    write_config(&accounts.staging, &json!({"poll": fast_polls()})).await;
    let machines = StateMachines::new(&accounts.staging);
    let arn = machines.create("understudy-snapshot", "snapshot.asl.json", &[]).await;
    machines.start(&arn, "deploy-42", &input).await.finish(TIMEOUT).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_input_snapshots_production_with_the_deployed_defaults_after_polling() {
    let stack = LocalStack::start_with(StackOptions { slow_polls: 2, ..StackOptions::default() });
    let accounts = Accounts::new(&stack).await;
    accounts.seed_production_cluster("prod-aurora").await;

    let outcome = run_snapshot_state_machine(&stack, json!({})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", stack.function_log("snapshot"));
    assert!(
        outcome.times_entered("Check the snapshot") >= 2,
        "the wait loop must poll at least twice: {:#?}",
        outcome.events
    );
    let output = outcome.output.expect("output");
    assert_eq!(output["snapshot"]["identifier"], "understudy-deploy-42");
    assert!(!output.to_string().contains("external"), "the output must not carry the config: {output}");
    let snapshot = accounts
        .production_rds()
        .describe_db_cluster_snapshots()
        .db_cluster_snapshot_identifier("understudy-deploy-42")
        .send()
        .await
        .unwrap();
    assert_eq!(snapshot.db_cluster_snapshots()[0].status(), Some("available"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_source_fails_the_execution_with_source_not_found() {
    let stack = LocalStack::start();

    let input = json!({"database": {"kind": "cluster", "source": "no-such-cluster"}});
    let outcome = run_snapshot_state_machine(&stack, input).await;

    assert_eq!(outcome.status, "FAILED", "{outcome:#?}");
    assert_eq!(outcome.error.as_deref(), Some("SourceNotFound"), "{outcome:#?}");
    assert!(outcome.failure_errors().contains(&"SourceNotFound".to_owned()), "{:#?}", outcome.events);
    assert_eq!(outcome.times_entered("Wait for the snapshot"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typo_in_the_input_fails_before_anything_is_made() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    accounts.seed_production_cluster("prod-aurora").await;

    let outcome = run_snapshot_state_machine(&stack, json!({"retention": {"keep": 1}})).await;

    assert_eq!(outcome.status, "FAILED");
    assert_eq!(outcome.error.as_deref(), Some("InvalidInput"));
    assert!(outcome.cause.as_deref().unwrap_or("").contains("`input.retention.keep`"), "{outcome:#?}");
    assert_eq!(outcome.times_entered("Create the snapshot"), 0);
    let snapshots =
        accounts.production_rds().describe_db_cluster_snapshots().snapshot_type("manual").send().await;
    assert!(snapshots.unwrap().db_cluster_snapshots().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_panic_reaches_the_state_machine_as_an_error() {
    let stack = LocalStack::start_with(StackOptions {
        env: vec![("UNDERSTUDY_INJECT_PANIC".into(), "status".into())],
        ..StackOptions::default()
    });
    let accounts = Accounts::new(&stack).await;
    accounts.seed_production_cluster("prod-aurora").await;

    let outcome = run_snapshot_state_machine(&stack, json!({})).await;

    assert_eq!(outcome.status, "FAILED", "{outcome:#?}");
    assert_eq!(outcome.error.as_deref(), Some("Runtime.ExitError"), "{outcome:#?}");
    assert!(outcome.failure_errors().contains(&"Runtime.ExitError".to_owned()), "{:#?}", outcome.events);
}
