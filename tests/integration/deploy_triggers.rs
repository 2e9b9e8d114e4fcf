//! The deploy triggers and the alarm (issue #13) in the local stack: the
//! template's rules, deployed with their resolved patterns (tests/local/deploy.py),
//! deliver deploy events to the real trigger function (through the invoke host,
//! a fidelity patch), which starts the refresh machine in moto's engine; every
//! bad end of a suite machine reaches the alarm topic's subscribers.

use std::time::Duration;

use serde_json::{json, Value};
use understudy_tests::deployment::write_config;
use understudy_tests::events::detail_types;
use understudy_tests::{LocalStack, StackOptions, StateMachines};

use crate::refresh_world::{RefreshStack, TIMEOUT};

/// How long the rules may take to deliver.
const DELIVERY: Duration = Duration::from_secs(30);
/// Production's ECS services in the samples' shape (six services of one deploy).
const SERVICES: [&str; 6] = ["web", "api", "worker", "scheduler", "admin", "search"];

fn example(name: &str) -> Value {
    let path = understudy_tests::workspace_root().join("tests/events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn service_arn(account: &str, cluster: &str, service: &str) -> String {
    format!("arn:aws:ecs:us-east-1:{account}:service/{cluster}/{service}")
}

fn production_services() -> String {
    SERVICES.iter().map(|s| service_arn("111111111111", "production", s)).collect::<Vec<_>>().join(",")
}

/// The ECS sample event for `service` of `cluster` in `account`.
fn ecs_event(account: &str, cluster: &str, service: &str, n: usize) -> Value {
    let mut event = example("trigger-ecs-deployment.json");
    event["resources"] = json!([service_arn(account, cluster, service)]);
    event["detail"]["deploymentId"] = json!(format!("ecs-svc/{n}"));
    event["time"] = json!(format!("2026-12-01T18:3{n}:10Z"));
    event
}

/// The deployed state machine ARN for `stem` (the deployer's `understudy-local-<stem>`).
fn machine_arn(deployed: &Value, stem: &str) -> String {
    deployed["state_machines"][stem]
        .as_str()
        .unwrap_or_else(|| panic!("no {stem} in {deployed:#}"))
        .to_owned()
}

async fn create(machines: &StateMachines, deployed: &Value, stem: &str) -> String {
    let arn = machine_arn(deployed, stem);
    let name = arn.rsplit(':').next().unwrap();
    let created = machines.create(name, &format!("{stem}.asl.json"), &[]).await;
    assert_eq!(created, arn);
    created
}

/// Seed 000's world, deployed with the template's rules, and its refresh machine
/// under the deployed name.
async fn seed_000_stack() -> (RefreshStack, Value, StateMachines, String) {
    let world = RefreshStack::start().await;
    world.seed_000().await;
    let (parameters, document) = world.seed_000_deployment();
    let deployed = world.stack.deploy(&parameters);
    write_config(&world.accounts.staging, &document).await;
    let machines = StateMachines::new(&world.accounts.staging);
    let refresh = create(&machines, &deployed, "refresh").await;
    (world, deployed, machines, refresh)
}

fn answers(deliveries: &[Value]) -> Vec<String> {
    deliveries.iter().map(|d| d["answer"]["outcome"].as_str().unwrap_or("?").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_production_deployed_event_starts_one_refresh_that_succeeds_and_its_redelivery_starts_nothing() {
    let (world, _, machines, refresh) = seed_000_stack().await;
    let queue = world.stack.subscribe_to_events("understudy-lifecycle", "default");
    let deployed_event = example("trigger-production-deployed.json");

    world.stack.put_events("default", std::slice::from_ref(&deployed_event));
    let first = world.stack.deliveries(1, DELIVERY);
    assert_eq!(answers(&first), ["started"], "{first:#?}\n{}", world.stack.function_log("trigger"));
    assert_eq!(first[0]["rule"], "ProductionDeployedRule");
    assert_eq!(machines.execution_names(&refresh).await, ["deploy-github-run-9313"]);
    let execution = first[0]["answer"]["execution"].as_str().unwrap().to_owned();
    let outcome = machines_outcome(&world, &execution).await;
    assert_eq!(outcome["status"], "SUCCEEDED", "{outcome:#}\n{}", world.logs());

    world.stack.put_events("default", &[deployed_event]);
    let both = world.stack.deliveries(2, DELIVERY);
    assert_eq!(answers(&both), ["started", "already-started"], "{both:#?}");
    assert_eq!(
        machines.execution_names(&refresh).await,
        ["deploy-github-run-9313"],
        "the redelivery starts nothing"
    );

    let events = world.stack.received_events(&queue);
    assert_eq!(detail_types(&events), ["Refresh Started", "Refresh Succeeded"], "{events:#?}");
    let trigger = &events[1]["detail"]["trigger"];
    assert_eq!(trigger["event"], "Production Deployed", "{events:#?}");
    assert_eq!(trigger["deployment"], "github-run-9313");
    assert_eq!(trigger["version"], "v1.4.2");
    assert_eq!(events[1]["detail"]["label"], "Production Deployed: v1.4.2");
}

/// The execution's status and output, once it has ended.
async fn machines_outcome(world: &RefreshStack, execution: &str) -> Value {
    let sfn = aws_sdk_sfn::Client::new(&world.accounts.staging);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let described = sfn.describe_execution().execution_arn(execution).send().await.unwrap();
        if described.status().as_str() != "RUNNING" {
            return json!({"status": described.status().as_str(), "output": described.output(), "error": described.error()});
        }
        assert!(std::time::Instant::now() < deadline, "{execution} still running");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn six_ecs_deployment_events_of_one_deploy_start_one_refresh_and_a_staging_deployment_none() {
    let stack = LocalStack::start_with(StackOptions { slow_polls: 0, ..StackOptions::default() });
    let staging = understudy_tests::Accounts::new(&stack).await.staging;
    let deployed = stack.deploy(&[("ProductionServiceArns", production_services())]);
    let machines = StateMachines::new(&staging);
    let refresh = create(&machines, &deployed, "refresh").await;

    let mut events: Vec<Value> =
        SERVICES.iter().enumerate().map(|(n, s)| ecs_event("111111111111", "production", s, n)).collect();
    // Staging's own deployment (the refresh's restart_services causes one): not a production service.
    events.push(ecs_event("123456789012", "staging", "web", 7));
    stack.put_events("default", &events);

    let deliveries = stack.deliveries(SERVICES.len(), DELIVERY);
    assert_eq!(deliveries.len(), SERVICES.len(), "the staging deployment matches no rule: {deliveries:#?}");
    let mut outcomes = answers(&deliveries);
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "already-started",
            "already-started",
            "already-started",
            "already-started",
            "already-started",
            "started"
        ]
    );
    assert_eq!(machines.execution_names(&refresh).await, ["ecs-production-20261201T1830"]);

    // The function's own check, should a staging service reach it anyway.
    let ignored = stack.invoke("trigger", &ecs_event("123456789012", "staging", "web", 8)).ok();
    assert_eq!(ignored["outcome"], "ignored", "{ignored:#}");
    assert!(ignored["reason"].as_str().unwrap().contains("staging's own deployments"), "{ignored:#}");
    assert_eq!(machines.execution_names(&refresh).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_deploy_rules_pattern_matches_its_sample_event_and_nothing_else() {
    let stack = LocalStack::start_with(StackOptions { slow_polls: 0, ..StackOptions::default() });
    let deployed = stack.deploy(&[
        ("ProductionServiceArns", production_services()),
        ("ProductionPipelineName", "production-deploy".into()),
    ]);
    let rules = deployed["rules"].as_array().unwrap();
    let queues: Vec<(String, _)> = ["ProductionDeployedRule", "EcsDeploymentRule", "PipelineSucceededRule"]
        .iter()
        .map(|name| {
            let rule =
                rules.iter().find(|r| r["rule"] == *name).unwrap_or_else(|| panic!("{name}: {rules:#?}"));
            assert_eq!(rule["targets"], json!(["arn:aws:lambda:us-east-1:123456789012:function:trigger"]));
            let queue = stack.subscribe_with_pattern(&format!("pattern-{name}"), "default", &rule["pattern"]);
            ((*name).to_owned(), queue)
        })
        .collect();

    let mut failed_pipeline = example("trigger-pipeline-succeeded.json");
    failed_pipeline["detail"]["state"] = json!("FAILED");
    let mut other_pipeline = example("trigger-pipeline-succeeded.json");
    other_pipeline["detail"]["pipeline"] = json!("staging-deploy");
    let mut other_source = example("trigger-production-deployed.json");
    other_source["source"] = json!("someone.else");
    let mut ecs_started = example("trigger-ecs-deployment.json");
    ecs_started["detail"]["eventName"] = json!("SERVICE_DEPLOYMENT_IN_PROGRESS");
    stack.put_events(
        "default",
        &[
            example("trigger-production-deployed.json"),
            example("trigger-ecs-deployment.json"),
            example("trigger-pipeline-succeeded.json"),
            failed_pipeline,
            other_pipeline,
            other_source,
            ecs_started,
            ecs_event("123456789012", "staging", "web", 1),
        ],
    );

    for ((name, queue), expected) in queues.iter().zip([
        "Production Deployed",
        "ECS Deployment State Change",
        "CodePipeline Pipeline Execution State Change",
    ]) {
        let received = stack.received_events(queue);
        assert_eq!(detail_types(&received), [expected], "{name}: {received:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aborted_refresh_reaches_the_alarm_topics_subscribers() {
    let (world, deployed, machines, refresh) = seed_000_stack().await;
    let alarms = world.stack.subscribe_to_topic("alarms", deployed["alarm_topic"].as_str().unwrap());

    let running = machines.start(&refresh, "deploy-to-abort", &json!({})).await;
    running.wait_until_entered("Check the snapshot", Duration::from_secs(60)).await;
    running.stop().await;
    assert_eq!(running.finish(TIMEOUT).await.status, "ABORTED");

    let mut notifications = Vec::new();
    let deadline = std::time::Instant::now() + DELIVERY;
    while notifications.is_empty() && std::time::Instant::now() < deadline {
        notifications = world.stack.received_events(&alarms);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(notifications.len(), 1, "one alarm: {notifications:#?}");
    let event: Value =
        serde_json::from_str(notifications[0]["Message"].as_str().expect("an SNS notification")).unwrap();
    assert_eq!(event["source"], "aws.states");
    assert_eq!(event["detail-type"], "Step Functions Execution Status Change");
    assert_eq!(event["detail"]["status"], "ABORTED");
    assert_eq!(event["detail"]["executionArn"], running.arn.as_str());
}
