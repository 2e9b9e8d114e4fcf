//! `make demo`: a staging refresh, locally, end to end. Starts the local stack,
//! seeds an emulated production account and a staging account in seed 000's
//! shape (production: an aws/rds-encrypted Aurora PostgreSQL Serverless v2
//! cluster and older understudy snapshots; staging: a tagged cluster under the
//! target name, a subnet group, a security group and a password secret), creates
//! `statemachines/refresh.asl.json` in moto's Step Functions, deploys the stack's
//! parameters and writes the configuration document into its bucket as an
//! operator would, starts the refresh with `{}` as a console user would, prints each state as it
//! runs, then what changed in both accounts. Then it puts staging to sleep and
//! wakes it through `sleep.asl.json` and `wake.asl.json`: eight ECS services in
//! seed 002's shape (one autoscaled), an EC2 instance, an Auto Scaling group and
//! the refreshed database, beside production-tagged services that must not move.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;
use understudy_tests::accounts::{refresh_deployment, PRODUCTION_PASSWORD, STAGING_PASSWORD};
use understudy_tests::deployment::{write_config, CONFIG_BUCKET, CONFIG_KEY};
use understudy_tests::https::HttpsApps;
use understudy_tests::scale::ScaleWorld;
use understudy_tests::state_machine::Outcome;
use understudy_tests::{
    Accounts, LocalStack, StackOptions, StateMachines, PRODUCTION_ACCOUNT, STAGING_ACCOUNT,
};

const SOURCE: &str = "production-aurora";
const TARGET: &str = "staging-aurora";

#[tokio::main]
async fn main() -> ExitCode {
    println!("understudy demo: refresh staging from production through the real state machine, locally\n");
    let stack = LocalStack::start_with(StackOptions { slow_polls: 0, ..StackOptions::default() });
    println!(
        "local stack (PID {}): moto {}, Lambda invoke host {}",
        stack.pid(),
        stack.moto_endpoint,
        stack.invoke_endpoint
    );
    let accounts = Accounts::new(&stack).await;

    let world = accounts.seed_refresh_world(&stack).await;
    // `sam deploy` with seed 000's parameters, then the configuration document
    // (`aws s3 cp config.json s3://<ConfigBucket>/config.json`).
    let (parameters, document) = refresh_deployment("cluster", SOURCE, TARGET, &world);
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
    println!("production {PRODUCTION_ACCOUNT}: Aurora cluster `{SOURCE}` (aws/rds-encrypted, master user prod_admin), 3 older understudy snapshots");
    println!("staging {STAGING_ACCOUNT}: Aurora cluster `{TARGET}` (master user staging_admin), tagged understudy:environment=staging");
    // From here on snapshots, copies, restores and renames take two status checks, as on AWS they take minutes.
    stack.set_slow_polls(2);

    let machines = StateMachines::new(&accounts.staging);
    let arn = machines.create("understudy-refresh", "refresh.asl.json", &[]).await;
    let name = format!(
        "demo-{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    );
    println!("\nstarting execution `{name}` of understudy-refresh with input {{}}");
    let started = Instant::now();
    let outcome = watch(&machines, &arn, &name, started).await;
    println!("\n{}", outcome.status);
    if let Some(output) = &outcome.output {
        println!("{}", serde_json::to_string_pretty(output).unwrap());
    }
    if let Some(error) = &outcome.error {
        println!("error: {error}: {}", outcome.cause.as_deref().unwrap_or(""));
    }

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
    if outcome.status != "SUCCEEDED" {
        return ExitCode::FAILURE;
    }
    if sleep_and_wake(&stack, &accounts, &machines, &document).await {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs an execution of `arn` named `name`, printing each state as it is entered.
async fn watch(machines: &StateMachines, arn: &str, name: &str, started: Instant) -> Outcome {
    let execution = machines.start(arn, name, &json!({})).await;
    execution
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
        .await
}

/// The evening sleep and the morning wake, through the real state machines.
async fn sleep_and_wake(
    stack: &LocalStack,
    accounts: &Accounts,
    machines: &StateMachines,
    document: &serde_json::Value,
) -> bool {
    stack.set_slow_polls(0);
    let world = ScaleWorld::seed_services(&accounts.staging).await;
    stack.set_slow_polls(2);
    // The morning's smoke test: a "production" and a "staging" app on 127.0.0.1,
    // staging's /health checked and its X-App-Version compared with production's.
    let apps = HttpsApps::start();
    let mut document = document.clone();
    document["smoke"] = json!({"round_seconds": 1, "deadline_seconds": 60, "checks": [
        {"name": "staging health", "url": format!("{}/health", apps.url("staging")),
         "expect": {"status": [200], "headers": {"X-Environment": {"equals": "staging"}}, "json": {"/status": "ok"}},
         "compare_with": {"base_url": apps.url("production"), "headers": ["X-App-Version"]}}
    ]});
    write_config(&accounts.staging, &document).await;
    println!(
        "\nthe wake ends with a smoke test of the staging app at {} against production's at {}",
        apps.url("staging"),
        apps.url("production")
    );
    println!("\nstaging also runs 8 ECS services (seed 002's shape, `staging/api` autoscaled 3-6), an EC2 instance and an Auto Scaling group; production's services share the account");
    let before = world.observe().await;
    let mut states = vec![before.clone()];
    for (file, name) in [("sleep.asl.json", "understudy-sleep"), ("wake.asl.json", "understudy-wake")] {
        let arn = machines.create(name, file, &[]).await;
        let execution = format!("demo-{}", file.trim_end_matches(".asl.json"));
        println!("\nstarting execution `{execution}` of {name} with input {{}}");
        let outcome = watch(machines, &arn, &execution, Instant::now()).await;
        println!("{}", outcome.status);
        if outcome.status != "SUCCEEDED" {
            println!("error: {:?}: {}", outcome.error, outcome.cause.as_deref().unwrap_or(""));
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
            let smoke = &outcome.output.as_ref().expect("output")["smoke"];
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
