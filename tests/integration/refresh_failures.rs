//! Failures injected from outside the product: the local stack's emulator fails a
//! chosen AWS call (`POST /understudy/faults`), never an input the product reads.
//! At each stage of seed 000's refresh (before the swap, between the two renames,
//! after the swap) the run ends `FAILED` with the injected error, staging keeps a
//! usable database under the target identifier, and a re-run under a new
//! execution name converges: `SUCCEEDED`, the target restored from the re-run's
//! snapshot, no temporary or retired database left, the share revoked.

use std::time::Instant;

use restore::{retired_identifier, temporary_identifier};
use serde_json::{json, Value};
use snapshot::snapshot_identifier;
use understudy_tests::accounts::{PRODUCTION_PASSWORD, STAGING_PASSWORD};
use understudy_tests::state_machine::Outcome;
use understudy_tests::STAGING_ACCOUNT;

use crate::refresh_world::{
    states_failing_with, tag, RefreshStack, OLD_STAGING_PASSWORD, OLD_STAGING_USER, TARGET,
};

/// Seed 000's world and the refresh state machine deployed for it.
async fn seed_000() -> (RefreshStack, String) {
    let world = RefreshStack::start().await;
    world.seed_000().await;
    let arn = world.seed_000_machine("understudy-refresh").await;
    (world, arn)
}

/// Asserts the run failed with the injected fault: the execution's error is
/// `error_type` with `code` in its cause, the failure happened in `state`, and
/// the recorder shows the one call the emulator failed. Answers the records.
fn assert_failed_with_the_injected_fault(
    world: &RefreshStack,
    outcome: &Outcome,
    error_type: &str,
    code: &str,
    state: &str,
    action: &str,
    identifier: &str,
) -> Vec<Value> {
    assert_eq!(outcome.status, "FAILED", "{outcome:#?}\n{}", world.logs());
    assert_eq!(outcome.error.as_deref(), Some(error_type), "{outcome:#?}");
    let cause = outcome.cause.as_deref().unwrap_or_default();
    assert!(cause.contains(code), "the cause names the injected code {code}: {cause}");
    assert_eq!(
        states_failing_with(outcome, error_type).first().map(String::as_str),
        Some(state),
        "{outcome:#?}"
    );
    let requests = world.stack.take_requests();
    let injected: Vec<&Value> = requests.iter().filter(|r| !r["injected"].is_null()).collect();
    assert_eq!(injected.len(), 1, "exactly one call was failed by the emulator: {injected:#?}");
    assert_eq!(injected[0]["injected"], code);
    assert_eq!(injected[0]["action"], action);
    assert_eq!(injected[0]["identifier"], identifier);
    assert_eq!(injected[0]["account"], STAGING_ACCOUNT);
    requests
}

/// Asserts nothing in production is still shared with staging and only the
/// understudy snapshots of `runs` remain (the re-encrypted intermediate copies are gone).
async fn assert_share_cleaned_up(world: &RefreshStack, runs: &[&str]) {
    assert_eq!(world.snapshots_shared_with_staging().await, Vec::<String>::new(), "the share is revoked");
    let mut expected: Vec<String> = runs.iter().map(|r| snapshot_identifier(r)).collect();
    expected.sort();
    assert_eq!(world.production_snapshot_ids().await, expected, "no intermediate copy remains");
}

/// Asserts the live staging cluster is still the one seeded: same resource id,
/// staging's own master user and password, its instance, usable.
/// After an undone failure: the old cluster is live and usable under the target,
/// with only its own instance, nothing the run made is left, the share is cleaned up.
async fn assert_staging_as_before(world: &RefreshStack, resource_id: Option<&str>, run: &str) {
    assert_old_staging_is_live(world, resource_id).await;
    assert_eq!(world.cluster_ids().await, [TARGET], "no retired or temporary cluster remains");
    assert_eq!(
        world.instance_ids().await,
        [format!("{TARGET}-1")],
        "the temporary cluster's instance is gone"
    );
    assert_share_cleaned_up(world, &[run]).await;
}

async fn assert_old_staging_is_live(world: &RefreshStack, resource_id: Option<&str>) {
    let live = world.usable_cluster(TARGET).await;
    assert_eq!(live.db_cluster_resource_id(), resource_id, "the same cluster as before the run");
    assert_eq!(live.master_username(), Some(OLD_STAGING_USER));
    let members: Vec<_> =
        live.db_cluster_members().iter().filter_map(|m| m.db_instance_identifier()).collect();
    assert_eq!(members, [format!("{TARGET}-1")], "it keeps its instance");
    assert!(world.stack.password_works("cluster", TARGET, OLD_STAGING_USER, OLD_STAGING_PASSWORD));
    assert!(!world.stack.password_works("cluster", TARGET, "prod_admin", PRODUCTION_PASSWORD));
}

/// Asserts the target is the database restored by run `run` (new resource id,
/// production's master user, staging's password) and is usable.
async fn assert_restored_by(world: &RefreshStack, run: &str, old_resource_id: Option<&str>) {
    let live = world.usable_cluster(TARGET).await;
    assert_ne!(live.db_cluster_resource_id(), old_resource_id, "a new cluster, not the seeded one");
    assert_eq!(live.master_username(), Some("prod_admin"), "restored from production's snapshot");
    assert_eq!(tag(&live, "understudy:run").as_deref(), Some(run), "made by run {run}");
    assert_eq!(tag(&live, "understudy:environment").as_deref(), Some("staging"));
    assert!(
        world.stack.password_works("cluster", TARGET, "prod_admin", STAGING_PASSWORD),
        "staging's password works"
    );
    assert!(
        !world.stack.password_works("cluster", TARGET, "prod_admin", PRODUCTION_PASSWORD),
        "production's does not"
    );
}

/// Re-runs the refresh as `rerun` and asserts it converges: the target restored
/// from the re-run's snapshot, only the target (and its instance) left in
/// staging, nothing shared, no intermediate copy.
async fn assert_rerun_converges(world: &RefreshStack, arn: &str, failed_run: &str, rerun: &str) {
    let old_resource_id =
        world.cluster(TARGET).await.and_then(|c| c.db_cluster_resource_id().map(str::to_owned));
    let started = Instant::now();
    let outcome = world.run(arn, rerun, &json!({})).await;
    eprintln!("re-run `{rerun}` took {:.1} s", started.elapsed().as_secs_f32());
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", world.logs());
    let output = outcome.output.as_ref().expect("output");
    assert_eq!(
        output["snapshot"]["identifier"],
        snapshot_identifier(rerun),
        "restored from the re-run's snapshot"
    );
    assert_restored_by(world, rerun, old_resource_id.as_deref()).await;
    assert_eq!(world.cluster_ids().await, [TARGET], "no temporary or retired cluster remains");
    let live = world.usable_cluster(TARGET).await;
    let mut members: Vec<String> = live
        .db_cluster_members()
        .iter()
        .filter_map(|m| m.db_instance_identifier())
        .map(str::to_owned)
        .collect();
    members.sort();
    assert_eq!(world.instance_ids().await, members, "only the new cluster's instances remain");
    assert_share_cleaned_up(world, &[failed_run, rerun]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_failing_before_the_swap_leaves_live_staging_untouched_and_a_rerun_converges() {
    let started = Instant::now();
    let (world, arn) = seed_000().await;
    let before = world.cluster(TARGET).await.expect("seeded staging cluster");
    let (run, rerun) = ("deploy-restore-fails", "deploy-restore-fails-rerun");
    let code = "InsufficientDBClusterCapacityFault";
    let temporary = temporary_identifier(TARGET, run);
    world.stack.inject_fault(&json!({
        "service": "rds", "action": "RestoreDBClusterFromSnapshot", "account": STAGING_ACCOUNT,
        "identifier": temporary, "code": code, "status": 400,
        "message": "Cannot satisfy the requested capacity (injected)"
    }));
    world.stack.take_requests();

    let outcome = world.run(&arn, run, &json!({})).await;

    let requests = assert_failed_with_the_injected_fault(
        &world,
        &outcome,
        "AwsRequestFailed",
        code,
        "Restore into a temporary database",
        "RestoreDBClusterFromSnapshot",
        &temporary,
    );
    assert_eq!(outcome.times_entered("Undo this run's changes"), 1, "{outcome:#?}");
    assert_eq!(outcome.times_entered("Clean up the share"), 1, "{outcome:#?}");
    assert_eq!(outcome.times_entered("Rename the live database aside"), 0, "the swap never started");
    let renames_or_deletes: Vec<&Value> = requests
        .iter()
        .filter(|r| r["account"] == STAGING_ACCOUNT && r["mutating"] == true)
        .filter(|r| r["identifier"].as_str().is_some_and(|id| id.starts_with(TARGET)))
        .collect();
    assert!(
        renames_or_deletes.iter().all(|r| r["action"] == "RestoreDBClusterFromSnapshot"),
        "nothing but the failed restore was attempted on staging's databases: {renames_or_deletes:#?}"
    );
    assert_staging_as_before(&world, before.db_cluster_resource_id(), run).await;

    assert_rerun_converges(&world, &arn, run, rerun).await;
    eprintln!("before-the-swap scenario took {:.1} s", started.elapsed().as_secs_f32());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_rename_failing_between_the_renames_is_undone_and_a_rerun_converges() {
    let started = Instant::now();
    let (world, arn) = seed_000().await;
    let before = world.cluster(TARGET).await.expect("seeded staging cluster");
    let (run, rerun) = ("deploy-rename-fails", "deploy-rename-fails-rerun");
    let code = "InvalidParameterCombination";
    let temporary = temporary_identifier(TARGET, run);
    let retired = retired_identifier(TARGET, run);
    // `prepare` modifies the temporary cluster first (its password); the second
    // ModifyDBCluster on it is the rename into place.
    world.stack.inject_fault(&json!({
        "service": "rds", "action": "ModifyDBCluster", "account": STAGING_ACCOUNT,
        "identifier": temporary, "nth": 2, "code": code, "status": 400,
        "message": "The rename cannot be applied (injected)"
    }));
    world.stack.take_requests();

    let outcome = world.run(&arn, run, &json!({})).await;

    let requests = assert_failed_with_the_injected_fault(
        &world,
        &outcome,
        "AwsRequestFailed",
        code,
        "Rename the new database into place",
        "ModifyDBCluster",
        &temporary,
    );
    assert_eq!(outcome.times_entered("Rename the live database aside"), 1, "{outcome:#?}");
    assert_eq!(outcome.times_entered("Undo this run's changes"), 1, "{outcome:#?}");
    assert!(
        !outcome
            .events
            .iter()
            .any(|e| e.kind.ends_with("Failed") && e.state.as_deref() == Some("Undo this run's changes")),
        "the undo itself succeeded: {outcome:#?}"
    );
    let modified: Vec<(&str, u64)> = requests
        .iter()
        .filter(|r| r["action"] == "ModifyDBCluster")
        .map(|r| (r["identifier"].as_str().unwrap_or(""), r["status"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(
        modified,
        [(temporary.as_str(), 200), (TARGET, 200), (temporary.as_str(), 400), (retired.as_str(), 200)],
        "prepare, rename aside, the failed rename into place, the undo's rename back"
    );
    assert_staging_as_before(&world, before.db_cluster_resource_id(), run).await;

    assert_rerun_converges(&world, &arn, run, rerun).await;
    eprintln!("between-the-renames scenario took {:.1} s", started.elapsed().as_secs_f32());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_while_waiting_for_the_rename_aside_is_undone_and_a_rerun_converges() {
    let started = Instant::now();
    let (world, arn) = seed_000().await;
    let before = world.cluster(TARGET).await.expect("seeded staging cluster");
    let (run, rerun) = ("deploy-wait-fails", "deploy-wait-fails-rerun");
    let code = "AccessDenied";
    let retired = retired_identifier(TARGET, run);
    // The first look at the retired name is the wait loop's, while the live
    // database is renamed aside and the target name is free.
    world.stack.inject_fault(&json!({
        "service": "rds", "action": "DescribeDBClusters", "account": STAGING_ACCOUNT,
        "identifier": retired, "code": code, "status": 403,
        "message": "not authorized to perform rds:DescribeDBClusters (injected)"
    }));
    world.stack.take_requests();

    let outcome = world.run(&arn, run, &json!({})).await;

    let requests = assert_failed_with_the_injected_fault(
        &world,
        &outcome,
        "AccessDenied",
        code,
        "Check the rename aside",
        "DescribeDBClusters",
        &retired,
    );
    assert_eq!(outcome.times_entered("Rename the new database into place"), 0, "{outcome:#?}");
    assert!(outcome.times_entered("Undo this run's changes") >= 1, "{outcome:#?}");
    let renamed_back = requests.iter().any(|r| {
        r["action"] == "ModifyDBCluster" && r["identifier"] == retired.as_str() && r["status"] == 200
    });
    assert!(renamed_back, "the undo renamed the retired database back: {requests:#?}");
    assert_staging_as_before(&world, before.db_cluster_resource_id(), run).await;

    assert_rerun_converges(&world, &arn, run, rerun).await;
    eprintln!("waiting-for-the-rename-aside scenario took {:.1} s", started.elapsed().as_secs_f32());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retire_failing_after_the_swap_leaves_the_new_database_live_and_a_rerun_retires_the_old_one() {
    let started = Instant::now();
    let (world, arn) = seed_000().await;
    let before = world.cluster(TARGET).await.expect("seeded staging cluster");
    let (run, rerun) = ("deploy-retire-fails", "deploy-retire-fails-rerun");
    let code = "AccessDenied";
    let retired = retired_identifier(TARGET, run);
    world.stack.inject_fault(&json!({
        "service": "rds", "action": "DeleteDBCluster", "account": STAGING_ACCOUNT,
        "identifier": retired, "code": code, "status": 403,
        "message": "not authorized to perform rds:DeleteDBCluster (injected)"
    }));
    world.stack.take_requests();

    let outcome = world.run(&arn, run, &json!({})).await;

    assert_failed_with_the_injected_fault(
        &world,
        &outcome,
        "AccessDenied",
        code,
        "Retire the old database",
        "DeleteDBCluster",
        &retired,
    );
    assert_eq!(outcome.times_entered("Undo this run's changes"), 0, "after the swap nothing is undone");
    assert_eq!(outcome.times_entered("Clean up the share"), 1, "{outcome:#?}");
    assert_restored_by(&world, run, before.db_cluster_resource_id()).await;
    assert_eq!(
        world.cluster_ids().await,
        [TARGET.to_owned(), retired.clone()],
        "the new database is live, the retired one waits for the next run"
    );
    let old = world.cluster(&retired).await.expect("the retired cluster");
    assert_eq!(
        old.db_cluster_resource_id(),
        before.db_cluster_resource_id(),
        "the retired one is the old cluster"
    );
    assert_eq!(old.master_username(), Some(OLD_STAGING_USER));
    assert_share_cleaned_up(&world, &[run]).await;

    let outcome_rerun_started = Instant::now();
    assert_rerun_converges(&world, &arn, run, rerun).await;
    let requests = world.stack.take_requests();
    let deleted: Vec<&str> = requests
        .iter()
        .filter(|r| r["action"] == "DeleteDBCluster" && r["status"] == 200)
        .filter_map(|r| r["identifier"].as_str())
        .collect();
    assert!(deleted.contains(&retired.as_str()), "the re-run's retire deleted the leftover: {deleted:?}");
    assert!(
        deleted.contains(&retired_identifier(TARGET, rerun).as_str()),
        "and its own retired one: {deleted:?}"
    );
    eprintln!(
        "after-the-swap scenario took {:.1} s (re-run and checks {:.1} s)",
        started.elapsed().as_secs_f32(),
        outcome_rerun_started.elapsed().as_secs_f32()
    );
}

/// A failure after the run woke a sleeping staging, before the swap: the issue
/// asks that "a failure before the swap ... leaves live staging untouched", so the
/// live database must be asleep again when the run ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_failure_after_waking_a_sleeping_staging_puts_it_back_to_sleep() {
    let (world, arn) = seed_000().await;
    let rds = world.accounts.staging_rds();
    let before = world.usable_cluster(TARGET).await;
    // Asleep as scale-to-zero leaves it: stopped, with the sleep-state tag.
    rds.stop_db_cluster().db_cluster_identifier(TARGET).send().await.unwrap();
    rds.add_tags_to_resource()
        .resource_name(before.db_cluster_arn().unwrap())
        .tags(aws_sdk_rds::types::Tag::builder().key("understudy:sleep:state").value("asleep").build())
        .send()
        .await
        .unwrap();
    let mut status = None;
    for _ in 0..10 {
        status = world.cluster(TARGET).await.and_then(|c| c.status().map(str::to_owned));
        if status.as_deref() == Some("stopped") {
            break;
        }
    }
    assert_eq!(status.as_deref(), Some("stopped"));
    let run = "deploy-asleep-rename-fails";
    let code = "InvalidParameterCombination";
    world.stack.inject_fault(&json!({
        "service": "rds", "action": "ModifyDBCluster", "account": STAGING_ACCOUNT,
        "identifier": TARGET, "code": code, "status": 400,
        "message": "The rename cannot be applied (injected)"
    }));
    world.stack.take_requests();

    let outcome = world.run(&arn, run, &json!({})).await;

    assert_failed_with_the_injected_fault(
        &world,
        &outcome,
        "AwsRequestFailed",
        code,
        "Rename the live database aside",
        "ModifyDBCluster",
        TARGET,
    );
    assert!(outcome.times_entered("Check the live database") >= 1, "the run woke staging: {outcome:#?}");
    assert_eq!(world.cluster_ids().await, [TARGET], "no temporary cluster");
    let live = world.cluster(TARGET).await.expect("live staging");
    assert_eq!(live.db_cluster_resource_id(), before.db_cluster_resource_id(), "the same cluster");
    assert!(
        matches!(live.status(), Some("stopped" | "stopping")),
        "live staging was asleep before the run and must be asleep after its failure, found {:?}",
        live.status()
    );
}

/// Deploys seed 000's stack with database waits that grow from 1 s to
/// `cap_seconds` and give up after `timeout_minutes`; creates the machine.
async fn with_database_waits(world: &RefreshStack, cap_seconds: u32, timeout_minutes: u32) -> String {
    let (parameters, mut document) = world.seed_000_deployment();
    document["poll"]["database_max_seconds"] = json!(cap_seconds);
    document["poll"]["database_timeout_minutes"] = json!(timeout_minutes);
    world.deploy(&parameters, &document).await;
    world.state_machine("understudy-refresh").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_held_in_a_transitional_status_past_its_bound_times_out_and_is_undone() {
    let world = RefreshStack::start().await;
    world.seed_000().await;
    let before = world.cluster(TARGET).await.expect("seeded staging cluster");
    let arn = with_database_waits(&world, 8, 1).await;
    let run = "deploy-restore-never-ends";
    // AWS can keep a restore `creating` for hours; here it never ends.
    world.stack.override_database_status(STAGING_ACCOUNT, "cluster", &format!("{TARGET}-new-"), "creating");

    let outcome = world.run(&arn, run, &json!({})).await;
    world.stack.clear_database_status_overrides();

    assert_eq!(outcome.status, "FAILED", "{outcome:#?}\n{}", world.logs());
    assert_eq!(outcome.error.as_deref(), Some("WaitTimedOut"), "{outcome:#?}");
    let cause = outcome.cause.as_deref().unwrap_or_default();
    assert!(
        cause.contains("for the restore")
            && cause.contains("1 minutes")
            && cause.contains("database_timeout_minutes"),
        "the cause says what was awaited and for how long: {cause}"
    );
    // Waits of 1, 2, 4, 8, 8, ... seconds: the polls a minute allows, no more.
    let polls = understudy_shared::poll::polls_within(1, 8, 1) as usize;
    assert_eq!(outcome.times_entered("Check the restore"), polls + 1, "{outcome:#?}");
    assert_eq!(outcome.times_entered("Wait longer for the restore"), 3, "the wait doubled to its cap");
    assert_eq!(outcome.times_entered("Undo this run's changes"), 1, "the same undo as any failure");
    assert_eq!(outcome.times_entered("Rename the live database aside"), 0, "live staging was never touched");
    assert_staging_as_before(&world, before.db_cluster_resource_id(), run).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_member_that_needs_an_operator_fails_at_once_and_is_undone() {
    let (world, arn) = seed_000().await;
    let before = world.cluster(TARGET).await.expect("seeded staging cluster");
    let run = "deploy-member-incompatible";
    let member = format!("{}-1", temporary_identifier(TARGET, run));
    world.stack.override_database_status(STAGING_ACCOUNT, "instance", &member, "incompatible-parameters");

    let outcome = world.run(&arn, run, &json!({})).await;
    world.stack.clear_database_status_overrides();

    assert_eq!(outcome.status, "FAILED", "{outcome:#?}\n{}", world.logs());
    assert_eq!(outcome.error.as_deref(), Some("DatabaseFailed"), "{outcome:#?}");
    let cause = outcome.cause.as_deref().unwrap_or_default();
    assert!(cause.contains(&member) && cause.contains("incompatible-parameters"), "{cause}");
    assert_eq!(
        states_failing_with(&outcome, "DatabaseFailed").first().map(String::as_str),
        Some("Check the restore"),
        "failed at the first look, not after polling: {outcome:#?}"
    );
    assert_eq!(outcome.times_entered("Check the restore"), 1, "{outcome:#?}");
    assert_eq!(outcome.times_entered("Undo this run's changes"), 1);
    assert_staging_as_before(&world, before.db_cluster_resource_id(), run).await;
}
