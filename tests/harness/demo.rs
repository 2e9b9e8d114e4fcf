//! `make demo`: the main job, locally, end to end. Starts the local stack, seeds
//! an emulated production account and a staging account in seed 000's shape
//! (production: an aws/rds-encrypted Aurora PostgreSQL Serverless v2 cluster,
//! older understudy snapshots and an images bucket of a few hundred objects;
//! staging: a tagged cluster under the target name, a subnet group, a security
//! group, a password secret and an older copy of the images), a local
//! "production" and "staging" app for the smoke test, and an SQS queue a rule on
//! the bus fills with understudy's events. It deploys the stack's parameters and
//! writes the configuration document as an operator would, then runs the complete
//! refresh (`statemachines/refresh.asl.json`) with `{}` as a console user would,
//! printing each state as it runs and what changed in both accounts. Then it puts
//! staging to sleep and wakes it through `sleep.asl.json` and `wake.asl.json`:
//! eight ECS services in seed 002's shape (one autoscaled), an EC2 instance, an
//! Auto Scaling group and the refreshed database, beside production-tagged
//! services that must not move. It ends with a summary of the three runs and the
//! events published, and exits non-zero if any run failed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use understudy_tests::accounts::{refresh_deployment, PRODUCTION_PASSWORD, STAGING_PASSWORD};
use understudy_tests::buckets::{list, put};
use understudy_tests::deployment::{write_config, CONFIG_BUCKET, CONFIG_KEY};
use understudy_tests::events::EventQueue;
use understudy_tests::https::HttpsApps;
use understudy_tests::scale::ScaleWorld;
use understudy_tests::state_machine::{Outcome, DEFAULT_EVENT_BUS};
use understudy_tests::{
    Accounts, LocalStack, StackOptions, StateMachines, PRODUCTION_ACCOUNT, STAGING_ACCOUNT,
};

const SOURCE: &str = "production-aurora";
const TARGET: &str = "staging-aurora";
const IMAGES: &str = "bluemoxon-images";
const STAGING_IMAGES: &str = "bluemoxon-staging-images";
/// Production's images; staging already has the first `IDENTICAL` and `STALE` it no longer should.
const IMAGE_COUNT: usize = 300;
const IDENTICAL: usize = 60;
const STALE: usize = 25;

/// One run, for the closing table.
struct Run {
    machine: &'static str,
    outcome: Outcome,
    seconds: f64,
}

impl Run {
    fn transitions(&self) -> usize {
        self.outcome.events.iter().filter(|e| e.kind.ends_with("StateEntered")).count()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    println!("understudy demo: the complete refresh, then sleep and wake, through the real state machines, locally\n");
    let stack = LocalStack::start_with(StackOptions { slow_polls: 0, ..StackOptions::default() });
    println!(
        "local stack (PID {}): moto {}, Lambda invoke host {}",
        stack.pid(),
        stack.moto_endpoint,
        stack.invoke_endpoint
    );
    let accounts = Accounts::new(&stack).await;
    let world = accounts.seed_refresh_world(&stack).await;
    seed_images(&accounts).await;
    // The smoke test's "production" and "staging" apps on 127.0.0.1: staging's
    // /health checked, its X-App-Version compared with production's.
    let apps = HttpsApps::start();
    let queue = stack.subscribe_to_events("understudy-lifecycle", DEFAULT_EVENT_BUS);

    // `sam deploy` with seed 000's parameters, then the configuration document
    // (`aws s3 cp config.json s3://<ConfigBucket>/config.json`).
    let (mut parameters, mut document) = refresh_deployment("cluster", SOURCE, TARGET, &world);
    parameters.push(("MirrorBuckets", format!("{IMAGES}={STAGING_IMAGES}")));
    document["smoke"] = json!({"round_seconds": 1, "deadline_seconds": 60, "checks": [
        {"name": "staging health", "url": format!("{}/health", apps.url("staging")),
         "expect": {"status": [200], "headers": {"X-Environment": {"equals": "staging"}}, "json": {"/status": "ok"}},
         "compare_with": {"base_url": apps.url("production"), "headers": ["X-App-Version"]}}
    ]});
    stack.deploy(&parameters);
    write_config(&accounts.staging, &document).await;
    println!(
        "deployed with {}; configuration document s3://{CONFIG_BUCKET}/{CONFIG_KEY}:\n{}",
        parameters.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "),
        serde_json::to_string_pretty(&document).unwrap()
    );
    accounts.seed_production_cluster(SOURCE).await;
    for run in ["nightly-1", "nightly-2", "nightly-3"] {
        let payload = json!({"action": "create", "run_id": run});
        stack.invoke("snapshot", &payload).ok();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    accounts.seed_staging_cluster(TARGET, &[("understudy:environment", "staging")]).await;
    let before = describe(&accounts, TARGET).await.expect("seeded staging cluster");
    println!("production {PRODUCTION_ACCOUNT}: Aurora cluster `{SOURCE}` (aws/rds-encrypted, master user prod_admin), 3 older understudy snapshots, bucket `{IMAGES}` ({IMAGE_COUNT} images)");
    println!("staging {STAGING_ACCOUNT}: Aurora cluster `{TARGET}` (master user staging_admin), tagged understudy:environment=staging; bucket `{STAGING_IMAGES}` ({IDENTICAL} of the images, {STALE} stale ones)");
    println!(
        "smoke test: staging's app at {} against production's at {}",
        apps.url("staging"),
        apps.url("production")
    );
    // From here on snapshots, copies, restores and renames take two status checks, as on AWS they take minutes.
    stack.set_slow_polls(2);

    let machines = StateMachines::new(&accounts.staging);
    let arn = machines.create("understudy-refresh", "refresh.asl.json", &[]).await;
    let name = format!(
        "demo-{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    );
    println!("\nstarting execution `{name}` of understudy-refresh with input {{}}");
    let refresh = watch(&machines, &arn, &name).await;
    report(&refresh.outcome);
    let mut runs = vec![refresh];

    println!("\nstaging `{TARGET}` before → after:");
    if let Some(after) = describe(&accounts, TARGET).await {
        println!(
            "  master user      {} → {}",
            before.master_username().unwrap_or(""),
            after.master_username().unwrap_or("")
        );
        println!(
            "  resource id      {} → {}",
            before.db_cluster_resource_id().unwrap_or(""),
            after.db_cluster_resource_id().unwrap_or("")
        );
        let capacity = after.serverless_v2_scaling_configuration();
        println!(
            "  capacity (ACU)   {}-{}, subnet group {}",
            capacity.and_then(|c| c.min_capacity()).unwrap_or_default(),
            capacity.and_then(|c| c.max_capacity()).unwrap_or_default(),
            after.db_subnet_group().unwrap_or("")
        );
        let username = after.master_username().unwrap_or("");
        println!(
            "  staging's password works: {}",
            stack.password_works("cluster", TARGET, username, STAGING_PASSWORD)
        );
        println!(
            "  production's password works: {}",
            stack.password_works("cluster", TARGET, username, PRODUCTION_PASSWORD)
        );
    }
    let clusters = accounts.staging_rds().describe_db_clusters().send().await.expect("list staging clusters");
    let ids: Vec<_> = clusters.db_clusters().iter().filter_map(|c| c.db_cluster_identifier()).collect();
    println!("  staging clusters now: {ids:?}");
    let production_images = list(&accounts.production_s3(), IMAGES, "").await;
    let staging_images = list(&accounts.staging_s3(), STAGING_IMAGES, "").await;
    let same = production_images.iter().map(|o| &o.key).eq(staging_images.iter().map(|o| &o.key));
    println!("  `{STAGING_IMAGES}`: {} objects, the same keys as `{IMAGES}`: {same}", staging_images.len());
    let snapshots = accounts
        .production_rds()
        .describe_db_cluster_snapshots()
        .db_cluster_identifier(SOURCE)
        .snapshot_type("manual")
        .send()
        .await
        .expect("list production snapshots");
    println!("\nproduction's manual snapshots of `{SOURCE}` now:");
    for snapshot in snapshots.db_cluster_snapshots() {
        println!(
            "  {} ({})",
            snapshot.db_cluster_snapshot_identifier().unwrap_or(""),
            snapshot.status().unwrap_or("")
        );
    }
    let mut ok = runs[0].outcome.status == "SUCCEEDED" && same;
    if ok {
        ok = sleep_and_wake(&stack, &accounts, &machines, &mut runs).await;
    }
    ok &= summary_table(&runs, &stack, &queue);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Production's images bucket, and staging's older copy of it.
async fn seed_images(accounts: &Accounts) {
    accounts.create_source_bucket(IMAGES).await;
    accounts.create_target_bucket(STAGING_IMAGES, true).await;
    let (production, staging) = (accounts.production_s3(), accounts.staging_s3());
    for n in 0..IMAGE_COUNT {
        let body = format!("book cover {n}: {}", "jpeg bytes ".repeat(20 + n % 50)).into_bytes();
        let key = format!("books/{n:04}/cover.jpg");
        put(&production, IMAGES, &key, &body).await;
        if n < IDENTICAL {
            put(&staging, STAGING_IMAGES, &key, &body).await;
        }
    }
    for n in 0..STALE {
        put(&staging, STAGING_IMAGES, &format!("books/removed-{n:02}/cover.jpg"), b"gone from production")
            .await;
    }
}

/// Runs an execution of `arn` named `name`, printing each state as it is entered.
async fn watch(machines: &StateMachines, arn: &str, name: &str) -> Run {
    let started = Instant::now();
    let execution = machines.start(arn, name, &json!({})).await;
    let outcome = execution
        .watch(Duration::from_secs(300), |event| {
            let at = started.elapsed().as_secs_f32();
            let state = event.state.as_deref().unwrap_or("");
            if event.kind.ends_with("StateEntered") {
                println!("  [{at:5.1}s] {state}");
            } else if let Some(error) = &event.error {
                println!(
                    "  [{at:5.1}s]   {} in `{state}`: {error}: {}",
                    event.kind,
                    event.cause.as_deref().unwrap_or("")
                );
            }
        })
        .await;
    let machine = arn.rsplit(':').next().unwrap_or_default().trim_start_matches("understudy-");
    let machine = match machine {
        "refresh" => "refresh",
        "sleep" => "sleep",
        _ => "wake",
    };
    Run { machine, outcome, seconds: started.elapsed().as_secs_f64() }
}

fn report(outcome: &Outcome) {
    println!("\n{}", outcome.status);
    if let Some(output) = &outcome.output {
        println!("{}", serde_json::to_string_pretty(output).unwrap());
    }
    if let Some(error) = &outcome.error {
        println!("error: {error}: {}", outcome.cause.as_deref().unwrap_or(""));
    }
}

/// The evening sleep and the morning wake, through the real state machines.
async fn sleep_and_wake(
    stack: &LocalStack,
    accounts: &Accounts,
    machines: &StateMachines,
    runs: &mut Vec<Run>,
) -> bool {
    stack.set_slow_polls(0);
    let world = ScaleWorld::seed_services(&accounts.staging).await;
    stack.set_slow_polls(2);
    println!("\nstaging also runs 8 ECS services (seed 002's shape, `staging/api` autoscaled 3-6), an EC2 instance and an Auto Scaling group; production's services share the account");
    let before = world.observe().await;
    let mut states = vec![before.clone()];
    for (file, name) in [("sleep.asl.json", "understudy-sleep"), ("wake.asl.json", "understudy-wake")] {
        let arn = machines.create(name, file, &[]).await;
        let execution = format!("demo-{}", file.trim_end_matches(".asl.json"));
        println!("\nstarting execution `{execution}` of {name} with input {{}}");
        let run = watch(machines, &arn, &execution).await;
        println!("{}", run.outcome.status);
        let succeeded = run.outcome.status == "SUCCEEDED";
        if !succeeded {
            println!("error: {:?}: {}", run.outcome.error, run.outcome.cause.as_deref().unwrap_or(""));
        }
        let smoke = run.outcome.output.as_ref().map(|o| o["smoke"].clone()).unwrap_or_default();
        runs.push(run);
        if !succeeded {
            return false;
        }
        if file == "sleep.asl.json" {
            // Hours pass before anyone wakes staging: tasks drain, databases stop.
            for _ in 0..10 {
                let status = stack.invoke("scale-to-zero", &json!({"action": "status", "config": {}})).ok();
                if status["services_stable"] == true {
                    break;
                }
            }
        }
        if file == "wake.asl.json" {
            println!(
                "smoke test: passed {} after {} round(s): {}",
                smoke["passed"], smoke["rounds"], smoke["checks"]
            );
            if smoke["passed"] != true {
                return false;
            }
        }
        states.push(world.observe().await);
    }
    println!("\n{:<40} {:>16} {:>16} {:>16}", "resource", "before", "asleep", "awake");
    for key in before.keys() {
        let row: Vec<String> = states.iter().map(|s| summary(&s[key])).collect();
        println!("{key:<40} {:>16} {:>16} {:>16}", row[0], row[1], row[2]);
    }
    let restored = states[2] == before;
    println!("\nwake restored every count, range, size, status and tag exactly: {restored}");
    restored
}

/// The closing table: each run's end, time, state transitions and objects; the
/// events the queue received. True when every run succeeded and announced itself.
fn summary_table(runs: &[Run], stack: &LocalStack, queue: &EventQueue) -> bool {
    let events = stack.received_events(queue);
    println!(
        "\n{:<10} {:<10} {:>9} {:>12} {:>8} {:>8} {:>10}",
        "run", "status", "seconds", "transitions", "copied", "deleted", "smoke"
    );
    for run in runs {
        let summary = run.outcome.output.as_ref().map(|o| o["summary"].clone()).unwrap_or_default();
        let mirror = &summary["mirror"];
        let smoke = match run.machine {
            "wake" => {
                run.outcome.output.as_ref().map(|o| o["smoke"]["passed"].to_string()).unwrap_or_default()
            }
            _ => summary["smoke"]["passed"].to_string(),
        };
        let count = |field: &str| mirror[field].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<10} {:<10} {:>9.1} {:>12} {:>8} {:>8} {:>10}",
            run.machine,
            run.outcome.status,
            run.seconds,
            run.transitions(),
            count("copied"),
            count("deleted"),
            if smoke == "null" { "-".to_owned() } else { smoke }
        );
    }
    println!("\nevents published on the `{DEFAULT_EVENT_BUS}` bus (source understudy), as a rule's SQS target received them:");
    for event in &events {
        let detail = &event["detail"];
        println!(
            "  {:<20} {} {}s{}",
            event["detail-type"].as_str().unwrap_or_default(),
            detail["event_id"].as_str().unwrap_or_default(),
            detail["duration_seconds"],
            detail["error"]
                .as_object()
                .map(|e| format!(" error {}", Value::Object(e.clone())))
                .unwrap_or_default()
        );
    }
    let wanted = ["Refresh Started", "Refresh Succeeded", "Environment Slept", "Environment Woke"];
    let received: Vec<&str> = events.iter().filter_map(|e| e["detail-type"].as_str()).collect();
    let all_succeeded = runs.len() == 3 && runs.iter().all(|r| r.outcome.status == "SUCCEEDED");
    println!(
        "\n{} runs, {} succeeded; {} events published",
        runs.len(),
        runs.iter().filter(|r| r.outcome.status == "SUCCEEDED").count(),
        events.len()
    );
    all_succeeded && received == wanted
}

/// A short form of an observed resource: desired count and range, or status.
fn summary(state: &serde_json::Value) -> String {
    let asleep = if state["tags"].get("understudy:sleep:state").is_some() { " (zz)" } else { "" };
    let text = if let Some(status) = state.get("status").and_then(|s| s.as_str()) {
        status.to_owned()
    } else if let Some(instance) = state.get("state").and_then(|s| s.as_str()) {
        instance.to_owned()
    } else if state.get("min").is_some() {
        format!("{}/{}/{}", state["min"], state["desired"], state["max"])
    } else if let Some(range) = state["range"].as_array() {
        format!("{} ({}-{})", state["desired"], range[0], range[1])
    } else {
        state["desired"].to_string()
    };
    format!("{text}{asleep}")
}

async fn describe(accounts: &Accounts, identifier: &str) -> Option<aws_sdk_rds::types::DbCluster> {
    let out =
        accounts.staging_rds().describe_db_clusters().db_cluster_identifier(identifier).send().await.ok()?;
    out.db_clusters().first().cloned()
}
