//! The scale-to-zero function invoked over HTTP through the local invoke host,
//! against moto: the end state of the whole account is compared before and after.

use serde_json::{json, Value};
use understudy_tests::scale::{
    other_entries, staging_entries, ScaleWorld, AUTOSCALED, STAGING_CLUSTER, STAGING_CLUSTER_MEMBER,
    STAGING_DB, STAGING_SERVICES, UNTAGGED_SERVICE,
};
use understudy_tests::{Accounts, LocalStack, StackOptions};

fn instant_stack() -> LocalStack {
    LocalStack::start_with(StackOptions { slow_polls: 0, ..StackOptions::default() })
}

fn call(stack: &LocalStack, request: Value) -> Value {
    let answer = stack.invoke("scale-to-zero", &request);
    assert!(answer.function_error.is_none(), "{answer:?}\n{}", stack.function_log("scale-to-zero"));
    answer.payload
}

fn entry<'a>(report: &'a Value, kind: &str, id: &str) -> &'a Value {
    report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind && e["id"] == id)
        .unwrap_or_else(|| panic!("no {kind} {id} in {report:#}"))
}

fn mutating_identifiers(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r["mutating"] == true)
        .map(|r| format!("{} {} {}", r["service"], r["action"], r["identifier"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sleep_scales_only_staging_to_zero_and_wake_restores_it_exactly() {
    let stack = instant_stack();
    let accounts = Accounts::new(&stack).await;
    let world = ScaleWorld::seed(&accounts.staging).await;
    let before = world.observe().await;
    assert_eq!(staging_entries(&before).len(), 13, "{before:#?}");

    let report = call(&stack, json!({"action": "sleep", "config": {}}));

    assert_eq!(report["state"], "asleep", "{report:#}");
    assert_eq!(report["settled"], true);
    assert_eq!(report["counts"]["slept"], 12, "{report:#}");
    let member = entry(&report, "db-instance", STAGING_CLUSTER_MEMBER);
    assert_eq!(member["outcome"], "skipped");
    assert!(member["reason"].as_str().unwrap().contains(STAGING_CLUSTER), "{member}");
    let asleep = world.observe().await;
    assert_eq!(other_entries(&asleep), other_entries(&before), "nothing but staging may change");
    for (name, count) in STAGING_SERVICES {
        let service = &asleep[&format!("ecs-service:staging/{name}")];
        assert_eq!(service["desired"], 0, "{name}: {service}");
        assert_eq!(service["tags"]["understudy:sleep:state"], "asleep");
        assert_eq!(service["tags"]["understudy:sleep:desired"], count.to_string(), "{name}: {service}");
    }
    let autoscaled = &asleep[&format!("ecs-service:{}", AUTOSCALED.0)];
    assert_eq!(autoscaled["range"], json!([0, 0]));
    assert_eq!(autoscaled["tags"]["understudy:sleep:min"], "3");
    assert_eq!(autoscaled["tags"]["understudy:sleep:max"], "6");
    assert_eq!(asleep[&format!("db-instance:{STAGING_DB}")]["status"], "stopped");
    assert_eq!(asleep[&format!("db-cluster:{STAGING_CLUSTER}")]["status"], "stopped");
    assert_eq!(asleep["ec2-instance:staging"]["state"], "stopped");
    let group = &asleep["auto-scaling-group:staging-workers"];
    assert_eq!((&group["min"], &group["desired"], &group["max"]), (&json!(0), &json!(0), &json!(0)));
    assert_eq!(
        (
            &group["tags"]["understudy:sleep:min"],
            &group["tags"]["understudy:sleep:desired"],
            &group["tags"]["understudy:sleep:max"]
        ),
        (&json!("1"), &json!("2"), &json!("4"))
    );
    let status = call(&stack, json!({"action": "status", "config": {}}));
    assert_eq!(status["state"], "asleep", "{status:#}");

    // A second sleep is a no-op: no mutating call, the memory unchanged.
    stack.take_requests();
    let again = call(&stack, json!({"action": "sleep", "config": {}}));
    assert_eq!(again["counts"].get("slept"), None, "{again:#}");
    assert_eq!(again["counts"]["already-asleep"], 12, "{again:#}");
    assert_eq!(mutating_identifiers(&stack.take_requests()), Vec::<String>::new());
    assert_eq!(world.observe().await, asleep, "a second sleep must not touch the memory");

    let woken = call(&stack, json!({"action": "wake", "config": {}}));

    assert_eq!(woken["counts"]["woke"], 12, "{woken:#}");
    let after = world.observe().await;
    assert_eq!(after, before, "every count, group size, range and tag back exactly");
    let status = call(&stack, json!({"action": "status", "config": {}}));
    assert_eq!(status["state"], "awake", "{status:#}");
    assert_eq!(status["databases_available"], true, "{status:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_changed_by_hand_while_asleep_is_kept_and_reported_on_wake() {
    let stack = instant_stack();
    let accounts = Accounts::new(&stack).await;
    let world = ScaleWorld::seed(&accounts.staging).await;
    let before = world.observe().await;
    call(&stack, json!({"action": "sleep", "config": {}}));
    world.set_desired_by_hand("staging/orders", 5).await;

    let woken = call(&stack, json!({"action": "wake", "config": {}}));

    let orders = entry(&woken, "ecs-service", "staging/orders");
    assert_eq!(orders["outcome"], "changed-while-asleep", "{orders}");
    let reason = orders["reason"].as_str().unwrap();
    assert!(reason.contains("set to 5") && reason.contains("remembered 2"), "{reason}");
    let after = world.observe().await;
    assert_eq!(after["ecs-service:staging/orders"]["desired"], 5, "kept as set by hand");
    let mut expected = before.clone();
    expected.get_mut("ecs-service:staging/orders").unwrap()["desired"] = json!(5);
    assert_eq!(after, expected, "everything else back exactly, no sleep tags left");
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_resources_must_exist_and_carry_the_staging_tag_before_anything_changes() {
    let stack = instant_stack();
    let accounts = Accounts::new(&stack).await;
    let world = ScaleWorld::seed(&accounts.staging).await;
    let before = world.observe().await;
    stack.take_requests();

    for (listed, error) in [
        (json!({"ecs_services": ["production/web"]}), "GuardRailViolation"),
        (json!({"ecs_services": [UNTAGGED_SERVICE]}), "GuardRailViolation"),
        (json!({"db_instances": ["production-db"]}), "GuardRailViolation"),
        (json!({"ecs_services": ["staging/no-such-service"]}), "ResourceNotFound"),
    ] {
        let answer = stack
            .invoke("scale-to-zero", &json!({"action": "sleep", "config": {"input": {"scale": listed}}}));
        assert_eq!(answer.error_type(), Some(error), "{listed}: {answer:?}");
    }
    let bad = stack.invoke(
        "scale-to-zero",
        &json!({"action": "sleep", "config": {"input": {"scale": {"aurora": "pause"}}}}),
    );
    assert_eq!(bad.error_type(), Some("InvalidInput"));
    assert!(bad.error_message().contains("input.scale.aurora"), "{bad:?}");

    assert_eq!(
        mutating_identifiers(&stack.take_requests()),
        Vec::<String>::new(),
        "refused before any mutating call"
    );
    assert_eq!(world.observe().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn min_capacity_zero_sleeps_a_serverless_cluster_at_zero_acu_and_refuses_old_engines() {
    let stack = instant_stack();
    let accounts = Accounts::new(&stack).await;
    let world = ScaleWorld::seed(&accounts.staging).await;
    let config = json!({"scale": {"select_by_tag": false, "db_clusters": [STAGING_CLUSTER],
                                  "aurora": "min-capacity-zero", "seconds_until_auto_pause": 600}});

    let report = call(&stack, json!({"action": "sleep", "config": {"input": config}}));

    assert_eq!(entry(&report, "db-cluster", STAGING_CLUSTER)["outcome"], "slept", "{report:#}");
    let cluster = accounts
        .staging_rds()
        .describe_db_clusters()
        .db_cluster_identifier(STAGING_CLUSTER)
        .send()
        .await
        .unwrap();
    let cluster = &cluster.db_clusters()[0];
    let scaling = cluster.serverless_v2_scaling_configuration().unwrap();
    assert_eq!((scaling.min_capacity(), scaling.max_capacity()), (Some(0.0), Some(2.0)));
    assert_eq!(scaling.seconds_until_auto_pause(), Some(600));
    assert_eq!(cluster.status(), Some("available"), "it pauses itself; it is not stopped");
    let status = call(&stack, json!({"action": "status", "config": {"input": config}}));
    assert_eq!(status["state"], "asleep", "{status:#}");

    call(&stack, json!({"action": "wake", "config": {"input": config}}));
    let observed = world.observe().await;
    assert_eq!(observed[&format!("db-cluster:{STAGING_CLUSTER}")]["capacity"], json!([0.5, 2.0]));
    assert!(observed[&format!("db-cluster:{STAGING_CLUSTER}")]["tags"]
        .get("understudy:sleep:min-acu")
        .is_none());

    // An engine version without 0 ACU: refused, naming the cluster and version.
    world.seed_serverless_cluster("staging-old", "15.4").await;
    stack.take_requests();
    let refused = stack.invoke(
        "scale-to-zero",
        &json!({"action": "sleep", "config": {"input": {"scale": {"aurora": "min-capacity-zero"}}}}),
    );
    assert_eq!(refused.error_type(), Some("InvalidInput"), "{refused:?}");
    assert!(
        refused.error_message().contains("staging-old") && refused.error_message().contains("15.4"),
        "{refused:?}"
    );
    assert_eq!(mutating_identifiers(&stack.take_requests()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_calls_are_retried_with_backoff_and_a_failed_resource_is_reported_by_name() {
    let stack = instant_stack();
    let accounts = Accounts::new(&stack).await;
    let world = ScaleWorld::seed(&accounts.staging).await;
    stack.take_requests();
    // Three throttled UpdateService calls in a row: the SDK's backoff rides them out.
    stack.inject_fault(
        &json!({"service": "ecs", "action": "UpdateService", "code": "ThrottlingException", "times": 3}),
    );
    stack.inject_fault(
        &json!({"service": "rds", "action": "DescribeDBInstances", "code": "Throttling", "times": 1}),
    );

    let report = call(&stack, json!({"action": "sleep", "config": {}}));

    assert_eq!(report["counts"]["slept"], 12, "{report:#}");
    let requests = stack.take_requests();
    let throttled = requests.iter().filter(|r| r["injected"].is_string()).count();
    assert_eq!(throttled, 4, "every injected fault was met and retried");
    let asleep = world.observe().await;
    assert!(STAGING_SERVICES
        .iter()
        .all(|(name, _)| asleep[&format!("ecs-service:staging/{name}")]["desired"] == 0));

    // A call that keeps failing: the others still wake, the answer names the failed one,
    // and its error is the retryable one so the state machine tries again.
    stack.inject_fault(&json!({"service": "ecs", "action": "UpdateService", "identifier": "orders",
                               "code": "ThrottlingException", "times": 20}));
    let answer = stack.invoke("scale-to-zero", &json!({"action": "wake", "config": {}}));
    assert_eq!(answer.error_type(), Some("Throttled"), "{answer:?}");
    assert!(answer.error_message().contains("ecs-service `staging/orders`"), "{answer:?}");
    let partly = world.observe().await;
    assert_eq!(partly["ecs-service:staging/orders"]["desired"], 0);
    assert_eq!(partly["ecs-service:staging/gateway"]["desired"], 2);
    stack.clear_faults();
    let retried = call(&stack, json!({"action": "wake", "config": {}}));
    assert_eq!(entry(&retried, "ecs-service", "staging/orders")["outcome"], "woke", "{retried:#}");
    assert_eq!(world.observe().await["ecs-service:staging/orders"]["desired"], 2);
}
