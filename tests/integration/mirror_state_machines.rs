//! `statemachines/mirror.asl.json` (the loop `refresh` runs) and
//! `statemachines/mirror-distributed.asl.json` (the Distributed Map over key
//! ranges) executed by moto's engine, their tasks reaching the real mirror binary.

use std::time::Duration;

use serde_json::{json, Value};
use understudy_tests::buckets::{list, put, put_with, PutOptions};
use understudy_tests::state_machine::Outcome;
use understudy_tests::{Accounts, LocalStack, StackOptions, StateMachines};

const TIMEOUT: Duration = Duration::from_secs(240);

/// Deploys the stack with the bucket pairs `pairs` (`MirrorBuckets`), creates
/// `file` with `shards` key ranges per bucket and runs it with `input`.
async fn run(stack: &LocalStack, file: &str, shards: u32, pairs: &str, input: Value) -> Outcome {
    stack.deploy(&[("MirrorBuckets", pairs.to_owned())]);
    let accounts = Accounts::new(stack).await;
    let machines = StateMachines::new(&accounts.staging);
    let arn =
        machines.create("understudy-mirror", file, &[("MirrorShards".into(), shards.to_string())]).await;
    // Each run of a test gets an execution name of its own.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    machines.start(&arn, &format!("deploy-7-mirror-{run}"), &input).await.finish(TIMEOUT).await
}

/// Source `production-<name>` with `objects` keys, target `staging-<name>` with a
/// stale copy of every fifth key and `extras` keys the source lacks.
async fn seed(accounts: &Accounts, name: &str, objects: usize, extras: usize) {
    let (source, target) = (format!("production-{name}"), format!("staging-{name}"));
    accounts.create_source_bucket(&source).await;
    accounts.create_target_bucket(&target, true).await;
    let (production, staging) = (accounts.production_s3(), accounts.staging_s3());
    for i in 0..objects {
        put(&production, &source, &format!("data/{i:04}.json"), format!("{{\"n\": {i}}}").as_bytes()).await;
        if i % 5 == 0 {
            put(&staging, &target, &format!("data/{i:04}.json"), format!("{{\"N\": {i}}}").as_bytes()).await;
        }
    }
    for i in 0..extras {
        put(&staging, &target, &format!("data/{i:04}.old"), b"stale").await;
    }
}

async fn assert_mirrored(accounts: &Accounts, name: &str) {
    let source = list(&accounts.production_s3(), &format!("production-{name}"), "").await;
    let target = list(&accounts.staging_s3(), &format!("staging-{name}"), "").await;
    assert_eq!(source, target, "bucket pair `{name}`");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mirror_loop_copies_then_deletes_every_bucket_across_many_steps() {
    let stack = LocalStack::start_with(StackOptions {
        env: vec![("UNDERSTUDY_DEADLINE_MS".into(), "400".into())],
        ..StackOptions::default()
    });
    let accounts = Accounts::new(&stack).await;
    seed(&accounts, "assets", 300, 40).await;
    seed(&accounts, "reports", 10, 3).await;
    let pairs = "production-assets=staging-assets,production-reports/data/=staging-reports";

    let outcome = run(&stack, "mirror.asl.json", 1, pairs, json!({})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", stack.function_log("mirror"));
    let steps = outcome.times_entered("Mirror a step");
    assert!(steps >= 4, "the loop must go round ({steps} steps): {:#?}", outcome.events);
    let log = stack.function_log("mirror");
    assert!(log.contains("phase=Delete"), "a resumed copy phase is followed by a delete phase");
    assert_mirrored(&accounts, "assets").await;
    assert_mirrored(&accounts, "reports").await;
    let output = outcome.output.unwrap();
    assert_eq!(output["buckets"][0]["counts"]["copied"], 300, "{output:#}");
    assert_eq!(output["buckets"][0]["counts"]["deleted"], 40, "{output:#}");
    assert_eq!(output["buckets"][1]["counts"]["deleted"], 3, "{output:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_in_the_copy_phase_fails_the_execution_before_any_delete() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    seed(&accounts, "assets", 20, 5).await;
    let archived = PutOptions { storage_class: Some("GLACIER".into()), ..PutOptions::default() };
    put_with(&accounts.production_s3(), "production-assets", "data/0007.cold", b"cold", &archived).await;
    let outcome = run(&stack, "mirror.asl.json", 1, "production-assets=staging-assets", json!({})).await;

    assert_eq!(outcome.status, "FAILED", "{outcome:#?}");
    assert_eq!(outcome.error.as_deref(), Some("AwsRequestFailed"), "{outcome:#?}");
    let extras = list(&accounts.staging_s3(), "staging-assets", "").await;
    assert_eq!(extras.iter().filter(|o| o.key.ends_with(".old")).count(), 5, "no extra may be deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untagged_target_fails_the_execution_with_guard_rail_violation() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    accounts.create_source_bucket("production-assets").await;
    accounts.create_target_bucket("not-staging", false).await;
    put(&accounts.production_s3(), "production-assets", "a", b"a").await;
    let outcome = run(&stack, "mirror.asl.json", 1, "production-assets=not-staging", json!({})).await;

    assert_eq!(outcome.status, "FAILED", "{outcome:#?}");
    assert_eq!(outcome.error.as_deref(), Some("GuardRailViolation"), "{outcome:#?}");
    assert!(list(&accounts.staging_s3(), "not-staging", "").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_distributed_map_mirrors_key_ranges_and_deletes_only_after_every_copy() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    seed(&accounts, "archive", 200, 30).await;
    put(&accounts.staging_s3(), "staging-archive", "zzz/after-the-last-source-key", b"extra").await;
    let outcome =
        run(&stack, "mirror-distributed.asl.json", 4, "production-archive=staging-archive", json!({})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", stack.function_log("mirror"));
    assert_mirrored(&accounts, "archive").await;
    let ranges = outcome.output.clone().unwrap()["ranges"].as_array().unwrap().clone();
    assert_eq!(ranges.len(), 4, "{ranges:#?}");
    let total = |field: &str| ranges.iter().map(|r| r["counts"][field].as_u64().unwrap()).sum::<u64>();
    assert_eq!((total("copied"), total("deleted")), (200, 31));
    // The Distributed Map's children have their own histories; the function's log
    // shows the order of the steps: every range's copy phase before any delete.
    let log = stack.function_log("mirror");
    let steps: Vec<&str> = log.lines().filter(|l| l.contains("mirror step")).collect();
    let first_delete = steps.iter().position(|l| l.contains("phase=Delete")).expect("delete steps ran");
    assert!(
        steps[..first_delete].iter().filter(|l| l.contains("phase_done=true")).count() == 4,
        "{steps:#?}"
    );
    assert!(!steps[first_delete..].iter().any(|l| l.contains("phase=Copy")), "{steps:#?}");
    assert_eq!(outcome.times_entered("Copy every range"), 1);
    assert_eq!(outcome.times_entered("Delete the extras of every range"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_input_chooses_among_the_deployed_buckets_and_cannot_add_one() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    seed(&accounts, "assets", 10, 2).await;
    seed(&accounts, "reports", 10, 2).await;
    let pairs = "production-assets=staging-assets,production-reports=staging-reports";
    let reports_before = list(&accounts.staging_s3(), "staging-reports", "").await;

    let outcome = run(&stack, "mirror.asl.json", 1, pairs, json!({"buckets": ["staging-assets"]})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", stack.function_log("mirror"));
    assert_mirrored(&accounts, "assets").await;
    assert_eq!(list(&accounts.staging_s3(), "staging-reports", "").await, reports_before, "not chosen");

    accounts.create_target_bucket("staging-other", true).await;
    stack.take_requests();
    let input = json!({"buckets": [{"source": "production-assets", "target": "staging-other"}]});
    let refused = run(&stack, "mirror.asl.json", 1, pairs, input).await;
    assert_eq!(refused.status, "FAILED", "{refused:#?}");
    assert_eq!(refused.error.as_deref(), Some("InvalidInput"), "{refused:#?}");
    let cause = refused.cause.unwrap_or_default();
    assert!(cause.contains("`input.buckets[0].target`") && cause.contains("MirrorBuckets"), "{cause}");
    let calls: Vec<Value> = stack
        .take_requests()
        .into_iter()
        .filter(|r| r["service"] != "stepfunctions" && r["service"] != "sts")
        .collect();
    assert_eq!(calls, Vec::<Value>::new(), "refused before any call");
    assert!(list(&accounts.staging_s3(), "staging-other", "").await.is_empty());
}
