//! `make demo`: the snapshot flow, locally, end to end. Starts the local stack,
//! seeds an emulated production account (seed 000's shape: an encrypted Aurora
//! PostgreSQL Serverless v2 cluster, plus three older understudy snapshots),
//! creates `statemachines/snapshot.asl.json` in moto's Step Functions with the
//! deployed defaults, starts it with `{}` as a console user would, and prints
//! each state as it runs and the result.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;
use understudy_tests::accounts::{config_for, deployed_defaults};
use understudy_tests::{Accounts, LocalStack, StackOptions, StateMachines, PRODUCTION_ACCOUNT};

const SOURCE: &str = "production-aurora";

#[tokio::main]
async fn main() -> ExitCode {
    println!("understudy demo: snapshot production through the real state machine, locally\n");
    let stack = LocalStack::start_with(StackOptions { slow_polls: 0, ..StackOptions::default() });
    println!(
        "local stack (PID {}): moto {}, Lambda invoke host {}",
        stack.pid(),
        stack.moto_endpoint,
        stack.invoke_endpoint
    );
    let accounts = Accounts::new(&stack).await;

    accounts.seed_production_cluster(SOURCE).await;
    for run in ["nightly-1", "nightly-2", "nightly-3"] {
        let payload = json!({"action": "create", "run_id": run, "config": config_for("cluster", SOURCE)});
        stack.invoke("snapshot", &payload).ok();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "seeded production account {PRODUCTION_ACCOUNT}: Aurora cluster `{SOURCE}` and 3 older understudy snapshots"
    );
    // From here on a snapshot stays `creating` for two status checks, as on AWS it takes minutes.
    stack.set_slow_polls(2);

    let machines = StateMachines::new(&accounts.staging);
    let arn = machines
        .create("understudy-snapshot", "snapshot.asl.json", &deployed_defaults("cluster", SOURCE, 2))
        .await;
    let name = format!(
        "demo-{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    );
    println!("\nstarting execution `{name}` of understudy-snapshot with input {{}}");
    let started = Instant::now();
    let execution = machines.start(&arn, &name, &json!({})).await;
    let outcome = execution
        .watch(Duration::from_secs(180), |event| {
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

    println!("\n{}", outcome.status);
    if let Some(output) = &outcome.output {
        println!("{}", serde_json::to_string_pretty(output).unwrap());
    }
    if let Some(error) = &outcome.error {
        println!("error: {error}: {}", outcome.cause.as_deref().unwrap_or(""));
    }
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
    if outcome.status == "SUCCEEDED" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
