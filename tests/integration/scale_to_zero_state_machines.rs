//! `statemachines/sleep.asl.json`, `wake.asl.json` and `restop.asl.json`
//! executed by moto's engine, their tasks reaching the real scale-to-zero binary,
//! with slow transitions so every wait loop really waits.

use std::time::Duration;

use serde_json::{json, Value};
use understudy_tests::accounts::STAGING_ACCOUNT;
use understudy_tests::deployment::{fast_polls, write_config};
use understudy_tests::https::HttpsApps;
use understudy_tests::scale::{other_entries, ScaleWorld, PRODUCTION_DB, STAGING_DB};
use understudy_tests::state_machine::Outcome;
use understudy_tests::{Accounts, LocalStack, StackOptions, StateMachines};

const TIMEOUT: Duration = Duration::from_secs(240);

async fn run(
    stack: &LocalStack,
    machines: &StateMachines,
    file: &str,
    execution: &str,
    input: Value,
) -> Outcome {
    let name = format!("understudy-{}", file.trim_end_matches(".asl.json"));
    let arn = machines.create(&name, file, &[]).await;
    let outcome = machines.start(&arn, execution, &input).await.finish(TIMEOUT).await;
    assert_eq!(outcome.status, "SUCCEEDED", "{file}: {outcome:#?}\n{}", stack.function_log("scale-to-zero"));
    outcome
}

/// Polls until the instance shows `status` (each describe is a poll the slow
/// transitions count).
async fn wait_for_status(accounts: &Accounts, identifier: &str, status: &str) {
    for _ in 0..50 {
        if db_status(accounts, identifier).await == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{identifier} never became {status}");
}

/// A stack whose seeding is instant, then with slow transitions (2 polls) for the test.
async fn seeded_stack() -> (LocalStack, Accounts, ScaleWorld) {
    let stack = LocalStack::start_with(StackOptions { slow_polls: 0, ..StackOptions::default() });
    let accounts = Accounts::new(&stack).await;
    let world = ScaleWorld::seed(&accounts.staging).await;
    // The template's defaults, with a document that polls each second.
    write_config(&accounts.staging, &json!({"poll": fast_polls()})).await;
    stack.set_slow_polls(2);
    (stack, accounts, world)
}

async fn db_status(accounts: &Accounts, identifier: &str) -> String {
    let described = accounts
        .staging_rds()
        .describe_db_instances()
        .db_instance_identifier(identifier)
        .send()
        .await
        .unwrap();
    described.db_instances()[0].db_instance_status().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sleep_then_wake_end_to_end_waits_for_databases_then_stable_services() {
    let (stack, accounts, world) = seeded_stack().await;
    let machines = StateMachines::new(&accounts.staging);
    let before = world.observe().await;

    let slept = run(&stack, &machines, "sleep.asl.json", "evening-1", json!({})).await;

    let output = slept.output.clone().expect("output");
    assert_eq!(output["sleep"]["state"], "asleep", "{output:#}");
    assert_eq!(slept.times_entered("Check whether staging is idle"), 0, "the idle check is off by default");
    let asleep = world.observe().await;
    assert_eq!(other_entries(&asleep), other_entries(&before), "nothing but staging may change");
    assert!(
        asleep
            .iter()
            .filter(|(k, _)| k.starts_with("ecs-service:staging/") && *k != "ecs-service:staging/adhoc")
            .all(|(_, v)| v["desired"] == 0),
        "{asleep:#?}"
    );

    // Hours pass: the services finish draining before anyone wakes them.
    for _ in 0..10 {
        let status = stack.invoke("scale-to-zero", &json!({"action": "status", "config": {}})).ok();
        if status["services_stable"] == true {
            break;
        }
    }

    // The morning's smoke test: staging's app answers, at production's version.
    let apps = HttpsApps::start();
    let smoke = json!({"round_seconds": 1, "deadline_seconds": 30, "checks": [
        {"name": "staging health", "url": format!("{}/health", apps.url("staging")),
         "expect": {"headers": {"X-Environment": {"equals": "staging"}}},
         "compare_with": {"base_url": apps.url("production"), "headers": ["X-App-Version"]}}
    ]});
    write_config(&accounts.staging, &json!({"poll": fast_polls(), "smoke": smoke})).await;

    let woken = run(&stack, &machines, "wake.asl.json", "morning-1", json!({})).await;

    let smoke = &woken.output.as_ref().expect("output")["smoke"];
    assert_eq!((smoke["passed"].clone(), smoke["skipped"].clone()), (json!(true), json!(false)), "{smoke:#}");
    assert_eq!(smoke["checks"][0]["name"], "staging health");
    let smoke_started = woken.events.iter().position(|e| e.state.as_deref() == Some("Run the smoke checks"));
    let services_stable = woken.events.iter().rposition(|e| e.state.as_deref() == Some("Check the services"));
    assert!(services_stable < smoke_started, "the smoke test runs once the services are stable");
    assert!(woken.times_entered("Wait for the databases") >= 1, "{:#?}", woken.events);
    assert!(
        woken.times_entered("Check the services") >= 2,
        "services polled until stable: {:#?}",
        woken.events
    );
    let first_service_wake =
        woken.events.iter().position(|e| e.state.as_deref() == Some("Wake the services"));
    let last_database_wake =
        woken.events.iter().rposition(|e| e.state.as_deref() == Some("Wake the databases"));
    assert!(last_database_wake < first_service_wake, "databases before services");
    assert_eq!(db_status(&accounts, STAGING_DB).await, "available");
    assert_eq!(world.observe().await, before, "every count, group size, range and tag back exactly");
}

/// The sleep-only walkthrough (README, "Deploy"): samconfig.toml's `sleep-only`
/// environment names no production parameter, and the template's conditions leave
/// every production part out; sleep and wake still keep staging exactly as it was.
#[tokio::test(flavor = "multi_thread")]
async fn the_sleep_only_config_env_deploys_no_production_part_and_still_sleeps_and_wakes_staging() {
    let (stack, accounts, world) = seeded_stack().await;
    let deployed = stack.deploy_config_env("sleep-only");

    let variables = &deployed["variables"];
    for name in [
        "UNDERSTUDY_PRODUCTION_ROLE_ARN",
        "UNDERSTUDY_PRODUCTION_EXTERNAL_ID",
        "UNDERSTUDY_DATABASE_SOURCE",
        "UNDERSTUDY_DATABASE_TARGET",
        "UNDERSTUDY_MIRROR_BUCKETS",
    ] {
        assert_eq!(variables[name], "", "{name}: {deployed:#}");
    }
    assert_eq!(variables["UNDERSTUDY_PRODUCTION_ACCOUNT_ID"], STAGING_ACCOUNT, "{deployed:#}");
    // Nothing that snapshots, shares, restores, mirrors or starts a refresh is created.
    let functions: Vec<&str> =
        deployed["functions"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(functions, ["scale-to-zero", "smoke-test"], "{deployed:#}");
    let mut machines: Vec<&String> = deployed["state_machines"].as_object().unwrap().keys().collect();
    machines.sort();
    assert_eq!(machines, ["restop", "sleep", "wake"], "{deployed:#}");
    let rules: Vec<&str> =
        deployed["rules"].as_array().unwrap().iter().filter_map(|r| r["rule"].as_str()).collect();
    assert_eq!(
        rules,
        ["AlarmRule"],
        "only the alarm rule (RestopRule targets a state machine): {deployed:#}"
    );
    for left_out in ["trigger", "restore", "snapshot"] {
        let answer = stack.invoke(left_out, &json!({}));
        assert_eq!(answer.status, 404, "{left_out} does not exist in a sleep-only stack: {answer:?}");
    }

    let machines = StateMachines::new(&accounts.staging);
    let before = world.observe().await;
    let slept = run(&stack, &machines, "sleep.asl.json", "sleep-only-evening", json!({})).await;
    assert_eq!(slept.output.as_ref().expect("output")["sleep"]["state"], "asleep");
    let asleep = world.observe().await;
    assert_eq!(other_entries(&asleep), other_entries(&before), "nothing but staging may change");
    assert_ne!(asleep, before, "staging went to sleep");
    for _ in 0..10 {
        let status = stack.invoke("scale-to-zero", &json!({"action": "status", "config": {}})).ok();
        if status["services_stable"] == true {
            break;
        }
    }
    let woken = run(&stack, &machines, "wake.asl.json", "sleep-only-morning", json!({})).await;
    assert_eq!(woken.output.as_ref().expect("output")["smoke"]["skipped"], true);
    assert_eq!(world.observe().await, before, "every count, group size, range and tag back exactly");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wake_whose_service_never_answers_fails_with_smoke_test_failed_naming_the_check() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    let apps = HttpsApps::start();
    let smoke = json!({"round_seconds": 1, "deadline_seconds": 3, "checks": [
        {"name": "health", "url": format!("{}/health", apps.url("staging"))},
        {"name": "api warming up", "url": format!("{}/flaky?for=600", apps.url("staging"))}
    ]});
    write_config(&accounts.staging, &json!({"poll": fast_polls(), "smoke": smoke})).await;
    let machines = StateMachines::new(&accounts.staging);
    let arn = machines.create("understudy-wake", "wake.asl.json", &[]).await;

    let outcome = machines.start(&arn, "morning-unready", &json!({})).await.finish(TIMEOUT).await;

    assert_eq!(outcome.status, "FAILED", "{outcome:#?}");
    assert_eq!(outcome.error.as_deref(), Some("SmokeTestFailed"), "{outcome:#?}");
    let cause = outcome.cause.clone().unwrap_or_default();
    assert!(cause.contains("api warming up") && !cause.contains("\"health\""), "{cause}");
    assert!(
        outcome.times_entered("Run the smoke checks") >= 3,
        "rounds until the deadline: {:#?}",
        outcome.events
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_smoke_checks_the_wake_says_the_smoke_test_was_skipped() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    write_config(&accounts.staging, &json!({"poll": fast_polls()})).await;
    let machines = StateMachines::new(&accounts.staging);

    let woken = run(&stack, &machines, "wake.asl.json", "morning-nothing", json!({})).await;

    let smoke = &woken.output.as_ref().expect("output")["smoke"];
    assert_eq!(smoke["skipped"], true, "{smoke:#}");
    assert_eq!(woken.times_entered("Run the smoke checks"), 1);
}

fn restart_event(identifier: &str) -> Value {
    json!({
        "version": "0", "id": "c1f2e3d4-0000-4000-8000-000000000154",
        "detail-type": "RDS DB Instance Event", "source": "aws.rds", "account": "123456789012",
        "time": "2026-11-22T03:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:rds:us-east-1:123456789012:db:{identifier}")],
        "detail": {
            "EventCategories": ["notification"], "SourceType": "DB_INSTANCE",
            "SourceArn": format!("arn:aws:rds:us-east-1:123456789012:db:{identifier}"),
            "Date": "2026-11-22T03:00:00.000Z",
            "Message": "DB instance is being started due to it exceeding the maximum allowed time being stopped.",
            "SourceIdentifier": identifier, "EventID": "RDS-EVENT-0154"
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seven_day_restart_is_stopped_again_while_asleep_and_ignored_while_awake() {
    let (stack, accounts, _world) = seeded_stack().await;
    let machines = StateMachines::new(&accounts.staging);
    let config = json!({"scale": {"select_by_tag": false, "db_instances": [STAGING_DB]}});
    let sleep = stack.invoke("scale-to-zero", &json!({"action": "sleep", "config": {"input": config}}));
    assert!(sleep.function_error.is_none(), "{sleep:?}");
    wait_for_status(&accounts, STAGING_DB, "stopped").await;
    // AWS starts it after 7 days stopped: `starting` for a few polls.
    accounts.staging_rds().start_db_instance().db_instance_identifier(STAGING_DB).send().await.unwrap();

    let restopped = run(&stack, &machines, "restop.asl.json", "restart-1", restart_event(STAGING_DB)).await;

    assert!(restopped.times_entered("Wait for the database") >= 1, "{:#?}", restopped.events);
    let output = restopped.output.expect("output");
    assert_eq!(output["restop"]["outcome"], "stopped", "{output:#}");
    let status = db_status(&accounts, STAGING_DB).await;
    assert!(status == "stopping" || status == "stopped", "{status}");

    // Awake (wake removes the sleep tag): the same event leaves it running.
    wait_for_status(&accounts, STAGING_DB, "stopped").await;
    let wake = stack.invoke("scale-to-zero", &json!({"action": "wake", "config": {"input": config}}));
    assert!(wake.function_error.is_none(), "{wake:?}");
    wait_for_status(&accounts, STAGING_DB, "available").await;
    let ignored = run(&stack, &machines, "restop.asl.json", "restart-2", restart_event(STAGING_DB)).await;
    assert_eq!(ignored.output.unwrap()["restop"]["outcome"], "ignored");
    assert_eq!(db_status(&accounts, STAGING_DB).await, "available");

    // Production's database: not understudy's to stop.
    let production =
        run(&stack, &machines, "restop.asl.json", "restart-3", restart_event(PRODUCTION_DB)).await;
    assert_eq!(production.output.unwrap()["restop"]["outcome"], "ignored");
    assert_eq!(db_status(&accounts, PRODUCTION_DB).await, "available");
}

/// moto does not serve CloudWatch's CBOR protocol, so the idle check's answer is
/// tested on mocked responses (functions/scale-to-zero/src/idle.rs); here the
/// branch itself: with the check on, the machine asks CloudWatch first, and a
/// check that fails leaves staging awake.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_idle_check_on_a_failed_check_leaves_staging_awake() {
    let (stack, accounts, world) = seeded_stack().await;
    let machines = StateMachines::new(&accounts.staging);
    let before = world.observe().await;
    stack.inject_fault(&json!({"service": "cloudwatch", "action": "GetMetricData", "code": "AccessDenied",
                               "status": 403, "times": 5}));
    let arn = machines.create("understudy-sleep", "sleep.asl.json", &[]).await;
    let input = json!({"scale": {"idle": {"enabled": true, "dimensions": "LoadBalancer=app/staging-alb/50dc6c495c0c9188"}}});

    let outcome = machines.start(&arn, "evening-idle", &input).await.finish(TIMEOUT).await;

    assert_eq!(outcome.status, "FAILED", "{outcome:#?}");
    assert_eq!(
        outcome.error.as_deref(),
        Some("AccessDenied"),
        "{outcome:#?}\n{}",
        stack.function_log("scale-to-zero")
    );
    assert_eq!(outcome.times_entered("Check whether staging is idle"), 1);
    assert_eq!(outcome.times_entered("Put staging to sleep"), 0);
    assert_eq!(world.observe().await, before, "nothing slept");
}
