//! The run lock (issue #13) in moto's engine: refresh, sleep and wake take the
//! environment's lease before any change; a run that finds it held by a running
//! execution ends `skipped: busy` having changed nothing; a lease whose holder
//! was aborted is reclaimed; sleep never stops a database that the run in
//! flight made.

use std::time::Duration;

use serde_json::{json, Value};
use understudy_shared::lease::LeaseRecord;
use understudy_tests::deployment::LEASE_BUCKET;
use understudy_tests::state_machine::{Execution, Outcome};
use understudy_tests::StateMachines;

use crate::refresh_world::{RefreshStack, TARGET, TIMEOUT};

/// The environment's lease object.
const LEASE_KEY: &str = "leases/staging.json";

/// The states a run that found the environment busy enters: the read-only
/// preamble, the lease, and its report. No other task runs, so it makes no
/// change anywhere (its only write is the conditional PutObject that failed).
const BUSY_STATES: &[&str] = &[
    "Validate the configuration",
    "Take the run lock",
    "Is the environment free?",
    "Report the busy environment",
    "Skipped: the environment is busy",
];

fn entered(outcome: &Outcome) -> Vec<String> {
    outcome
        .events
        .iter()
        .filter(|e| e.kind.ends_with("StateEntered"))
        .filter_map(|e| e.state.clone())
        .collect()
}

/// The lease as stored, if any.
async fn lease(world: &RefreshStack) -> Option<LeaseRecord> {
    let object =
        world.accounts.staging_s3().get_object().bucket(LEASE_BUCKET).key(LEASE_KEY).send().await.ok()?;
    let body = object.body.collect().await.unwrap().into_bytes();
    Some(serde_json::from_slice(&body).expect("a lease record"))
}

fn assert_skipped_busy(outcome: &Outcome, holder: &str) {
    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}");
    assert_eq!(outcome.output, Some(json!({"skipped": "busy", "holder": holder})), "{outcome:#?}");
    assert_eq!(entered(outcome), BUSY_STATES, "a busy run changes nothing");
}

async fn machine(world: &RefreshStack, name: &str, file: &str) -> String {
    StateMachines::new(&world.accounts.staging).create(name, file, &[]).await
}

async fn start(world: &RefreshStack, machine: &str, name: &str) -> Execution {
    StateMachines::new(&world.accounts.staging).start(machine, name, &json!({})).await
}

/// Staging's temporary clusters (`<target>-new-<run>`) and their status and tags.
async fn temporary_clusters(world: &RefreshStack) -> Vec<(String, String, Vec<(String, String)>)> {
    let prefix = format!("{TARGET}-new-");
    let clusters = world.accounts.staging_rds().describe_db_clusters().send().await.unwrap();
    clusters
        .db_clusters()
        .iter()
        .filter(|c| c.db_cluster_identifier().is_some_and(|id| id.starts_with(&prefix)))
        .map(|c| {
            (
                c.db_cluster_identifier().unwrap().to_owned(),
                c.status().unwrap_or_default().to_owned(),
                crate::refresh_world::tags_of(c),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_refreshes_started_together_one_changes_staging_the_other_ends_skipped_busy() {
    let world = RefreshStack::start().await;
    world.seed_000().await;
    let refresh = world.seed_000_machine("understudy-refresh-together").await;
    let before = world.usable_cluster(TARGET).await;

    let (first, second) =
        (start(&world, &refresh, "deploy-a").await, start(&world, &refresh, "deploy-b").await);
    let (first, second) = (first.finish(TIMEOUT).await, second.finish(TIMEOUT).await);

    let skipped: Vec<&Outcome> = [&first, &second]
        .into_iter()
        .filter(|o| o.output.as_ref().is_some_and(|out| out.get("skipped").is_some()))
        .collect();
    assert_eq!(skipped.len(), 1, "exactly one run is skipped: {first:#?}\n{second:#?}\n{}", world.logs());
    let (winner, winner_name) =
        if skipped[0].output == second.output { (&first, "deploy-a") } else { (&second, "deploy-b") };
    assert_eq!(winner.status, "SUCCEEDED", "{winner:#?}\n{}", world.logs());
    let holder = skipped[0].output.as_ref().unwrap()["holder"].as_str().unwrap().to_owned();
    assert!(holder.ends_with(&format!(":{winner_name}")), "the busy run names the refreshing one: {holder}");
    assert_skipped_busy(skipped[0], &holder);

    let after = world.usable_cluster(TARGET).await;
    assert_ne!(
        after.db_cluster_resource_id(),
        before.db_cluster_resource_id(),
        "the winner refreshed staging"
    );
    assert_eq!(world.cluster_ids().await, [TARGET], "one refresh's databases, none left over");
    assert_eq!(
        world.production_snapshot_ids().await.len(),
        1,
        "one snapshot taken: {:?}",
        world.production_snapshot_ids().await
    );
    assert_eq!(lease(&world).await, None, "the winner released the lease");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sleep_started_during_a_refresh_is_skipped_and_the_temporary_database_untouched() {
    let world = RefreshStack::start().await;
    world.seed_000().await;
    let refresh = world.seed_000_machine("understudy-refresh-sleep").await;
    let sleep = machine(&world, "understudy-sleep-during-refresh", "sleep.asl.json").await;

    let refreshing = start(&world, &refresh, "deploy-c").await;
    refreshing.wait_until_entered("Check the restore", Duration::from_secs(120)).await;
    let temporary = temporary_clusters(&world).await;
    assert_eq!(temporary.len(), 1, "the refresh is restoring: {temporary:?}");
    let sleeping = start(&world, &sleep, "nightly").await.finish(TIMEOUT).await;

    assert_skipped_busy(&sleeping, &refreshing.arn);
    let during = temporary_clusters(&world).await;
    for (id, status, tags) in &during {
        assert_ne!(status, "stopped", "{id}");
        assert!(!tags.iter().any(|(k, _)| k.starts_with("understudy:sleep:")), "{id} untouched: {tags:?}");
    }
    let refreshed = refreshing.finish(TIMEOUT).await;
    assert_eq!(refreshed.status, "SUCCEEDED", "{refreshed:#?}\n{}", world.logs());
    assert_eq!(world.usable_cluster(TARGET).await.status(), Some("available"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lease_of_an_aborted_run_is_reclaimed_by_the_next_run_and_sleep_spares_an_in_flight_runs_database(
) {
    let world = RefreshStack::start().await;
    world.seed_000().await;
    let refresh = world.seed_000_machine("understudy-refresh-aborted").await;
    let sleep = machine(&world, "understudy-sleep-after-abort", "sleep.asl.json").await;

    // While a refresh holds the lease, scale-to-zero's sleep skips what that run made.
    let aborted = start(&world, &refresh, "deploy-d").await;
    aborted.wait_until_entered("Check the restore", Duration::from_secs(120)).await;
    assert_eq!(lease(&world).await.map(|l| l.holder), Some(aborted.arn.clone()));
    let (temporary, _, _) = temporary_clusters(&world).await.pop().expect("a temporary cluster");
    let direct = world.stack.invoke("scale-to-zero", &json!({"action": "sleep", "config": {}})).ok();
    let entry = direct["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == temporary.as_str())
        .unwrap_or_else(|| panic!("{temporary} not in {direct:#}"))
        .clone();
    assert_eq!(entry["outcome"], "skipped", "{entry:#}");
    assert!(entry["reason"].as_str().unwrap_or("").contains("run in flight"), "{entry:#}");

    // Aborted, the run never reaches its release: the lease stays, naming it.
    aborted.stop().await;
    let ended = aborted.finish(TIMEOUT).await;
    assert_eq!(ended.status, "ABORTED");
    assert_eq!(lease(&world).await.map(|l| l.holder), Some(aborted.arn.clone()));

    let slept = start(&world, &sleep, "after-the-abort").await.finish(TIMEOUT).await;
    assert_eq!(slept.status, "SUCCEEDED", "{slept:#?}\n{}", world.stack.function_log("scale-to-zero"));
    assert!(slept.output.as_ref().is_some_and(|o| o.get("skipped").is_none()), "{slept:#?}");
    let reclaimed = slept.events.iter().flat_map(|e| e.data.iter()).any(|d| {
        serde_json::from_str::<Value>(d).is_ok_and(|v| v["Payload"]["reclaimed"] == aborted.arn.as_str())
    });
    assert!(reclaimed, "the sleep reclaimed the aborted run's lease: {slept:#?}");
    assert_eq!(lease(&world).await, None, "and released it");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_aborted_between_the_renames_is_repaired_by_the_next_and_retire_spares_a_running_runs_database(
) {
    let world = RefreshStack::start().await;
    world.seed_000().await;
    let refresh = world.seed_000_machine("understudy-refresh-repair").await;

    let aborted = start(&world, &refresh, "deploy-e").await;
    aborted.wait_until_entered("Check the rename aside", Duration::from_secs(180)).await;
    let retired = world
        .cluster_ids()
        .await
        .into_iter()
        .find(|id| id.starts_with(&format!("{TARGET}-retired-")))
        .expect("the live cluster renamed aside");

    // While its run runs, a retired database is that run's: another run's retire keeps it.
    let (machine, _) = aborted.arn.rsplit_once(':').unwrap();
    let other =
        json!({"action": "retire", "run_id": "other", "execution": format!("{machine}:other"), "config": {}});
    let retire = world.stack.invoke("restore", &other).ok();
    assert_eq!(retire["kept"], json!([retired]), "{retire:#}");
    assert_eq!(retire["deleted"], json!([]), "{retire:#}");

    aborted.stop().await;
    assert_eq!(aborted.finish(TIMEOUT).await.status, "ABORTED");
    assert!(world.cluster(TARGET).await.is_none(), "the abort left no database under the target name");
    world.usable_cluster(&retired).await;

    let repaired = world.run(&refresh, "deploy-f", &json!({})).await;
    assert_eq!(repaired.status, "SUCCEEDED", "{repaired:#?}\n{}", world.logs());
    assert_eq!(repaired.times_entered("Start waiting for the repaired database"), 1, "{repaired:#?}");
    let after = world.usable_cluster(TARGET).await;
    assert_eq!(after.master_username(), Some("prod_admin"), "and then refreshed");
    let ids = world.cluster_ids().await;
    assert!(
        !ids.iter().any(|id| id.contains("-retired-")),
        "the repaired database was retired in turn: {ids:?}"
    );
}
