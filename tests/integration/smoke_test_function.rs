//! The smoke-test function, its real binary behind the local invoke host, against
//! local HTTPS apps with generated certificates (`tests/local/https_apps.py`).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use understudy_tests::deployment::write_config;
use understudy_tests::https::{post_json, HttpsApps};
use understudy_tests::{Accounts, LocalStack};

/// The API key seed 004 sends, kept in Secrets Manager.
const API_KEY: &str = "k3y-s3cr3t-value";

fn round(stack: &LocalStack, previous: &Value) -> Value {
    stack.invoke("smoke-test", &json!({"action": "round", "previous": previous})).ok()
}

/// The checks of `report` by name.
fn by_name(report: &Value) -> BTreeMap<String, Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c.clone()))
        .collect()
}

fn health(name: &str, base: &str) -> Value {
    json!({"name": name, "url": format!("{base}/health"),
           "expect": {"status": [200], "headers": {"X-Environment": {"equals": "staging"}},
                      "json": {"/status": "ok"}}})
}

#[tokio::test(flavor = "multi_thread")]
async fn every_expectation_passes_or_fails_as_it_should_and_the_api_key_stays_secret() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    let apps = HttpsApps::start();
    let secret = aws_sdk_secretsmanager::Client::new(&accounts.staging)
        .create_secret()
        .name("staging/api-key")
        .secret_string(json!({"api_key": API_KEY}).to_string())
        .send()
        .await
        .unwrap();
    let secret_arn = secret.arn().unwrap().to_owned();
    let mut expiring = health("expiring in 5 days, 30 wanted", apps.url("expiring"));
    expiring["expect"]["certificate_days"] = json!(30);
    let mut valid_for_long = health("valid for 30 more days", apps.url("valid"));
    valid_for_long["expect"]["certificate_days"] = json!(30);
    let mut self_signed_accepted = health("self-signed, accepted", apps.url("self-signed"));
    self_signed_accepted["insecure"] = json!(true);
    let staging = apps.url("staging");
    let checks = json!([
        health("valid", apps.url("valid")),
        valid_for_long,
        expiring,
        health("expired", apps.url("expired")),
        health("wrong host", apps.url("wrong-host")),
        health("self-signed", apps.url("self-signed")),
        self_signed_accepted,
        {"name": "slow", "url": format!("{staging}/slow?ms=400"), "expect": {"max_latency_ms": 150}},
        {"name": "version parity", "url": format!("{staging}/health"),
         "compare_with": {"base_url": apps.url("production"), "headers": ["X-App-Version"], "json": ["/version"]}},
        {"name": "login", "url": format!("{staging}/login"), "method": "POST",
         "body": {"user": "smoke", "password": "not-a-secret"},
         "expect": {"status": [200], "json_exists": ["/token"], "json": {"/user": "smoke"}}},
        {"name": "api key", "url": format!("{}/api/items", apps.url("valid")),
         "headers": {"x-api-key": {"secret_arn": secret_arn, "field": "api_key"}},
         "expect": {"json": {"/items/0": 1}}},
        {"name": "wrong api key", "url": format!("{}/api/items", apps.url("valid")),
         "headers": {"x-api-key": "not-the-key"}, "expect": {"status": [403]}},
    ]);
    // Staging answers another version than production.
    let set_version = post_json(&format!("{staging}/version"), &json!({"version": "1.5.0"}));
    assert_eq!(set_version, 200);
    write_config(&accounts.staging, &json!({"smoke": {"checks": checks, "ca_bundle": apps.ca_bundle}})).await;

    let report = round(&stack, &Value::Null);

    let checks = by_name(&report);
    let passed = |name: &str| checks[name]["passed"] == true;
    for name in
        ["valid", "valid for 30 more days", "self-signed, accepted", "login", "api key", "wrong api key"]
    {
        assert!(passed(name), "{name} passes: {:#}", checks[name]);
    }
    for (name, why) in [
        ("expiring in 5 days, 30 wanted", "fewer than 30"),
        ("expired", "xpired"),
        ("wrong host", "request failed"),
        ("self-signed", "request failed"),
        ("slow", "budget"),
        ("version parity", "header X-App-Version differs from production: staging 1.5.0, production 1.4.2"),
    ] {
        assert!(!passed(name), "{name} fails: {:#}", checks[name]);
        let failures = checks[name]["failures"].to_string();
        assert!(failures.contains(why), "{name}: `{why}` in {failures}");
    }
    assert_eq!(report["passed"], false);
    assert_eq!(report["pending"].as_array().unwrap().len(), 6, "{report:#}");
    assert!(!report.to_string().contains(API_KEY), "the API key is in no report");
    assert!(!stack.function_log("smoke-test").contains(API_KEY), "nor in any log line");
    assert!(stack.function_log("smoke-test").contains("smoke check"), "the log was read");

    // Without the private CA, its certificates are not trusted (system roots).
    write_config(&accounts.staging, &json!({"smoke": {"checks": [health("valid", apps.url("valid"))]}}))
        .await;
    let untrusted = round(&stack, &Value::Null);
    assert_eq!(untrusted["passed"], false, "{untrusted:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_warming_up_passes_after_more_rounds_and_passed_checks_are_not_run_again() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;
    let apps = HttpsApps::start();
    let staging = apps.url("staging");
    assert_eq!(post_json(&format!("{staging}/flaky/reset"), &json!({})), 200);
    let checks = json!([
        {"name": "health", "url": format!("{staging}/health")},
        {"name": "warming up", "url": format!("{staging}/flaky?for=1.5")},
    ]);
    write_config(&accounts.staging, &json!({"smoke": {"checks": checks}})).await;

    let first = round(&stack, &Value::Null);
    assert_eq!(first["passed"], false, "{first:#}");
    assert_eq!(first["pending"], json!(["warming up"]));
    assert!(by_name(&first)["warming up"]["failures"].to_string().contains("503"), "{first:#}");
    std::thread::sleep(std::time::Duration::from_millis(1700));
    let second = round(&stack, &first);

    assert_eq!(second["passed"], true, "{second:#}");
    assert_eq!(second["rounds"], 2);
    let checks = by_name(&second);
    assert_eq!(checks["warming up"]["attempts"], 2);
    assert_eq!(checks["health"]["attempts"], 1, "a passed check is not run again");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_checks_the_round_is_skipped_and_a_bad_section_is_refused_by_name() {
    let stack = LocalStack::start();
    let accounts = Accounts::new(&stack).await;

    let skipped = round(&stack, &Value::Null);
    assert_eq!((skipped["skipped"].clone(), skipped["passed"].clone()), (json!(true), json!(true)));

    write_config(
        &accounts.staging,
        &json!({"smoke": {"checks": [{"name": "x", "url": "ftp://example.com"}]}}),
    )
    .await;
    let refused = stack.invoke("smoke-test", &json!({"action": "round"}));
    assert_eq!(refused.error_type(), Some("InvalidInput"));
    assert!(refused.error_message().contains("config.smoke.checks[0].url"), "{}", refused.error_message());
}
