//! The complete refresh (issue #12) in moto's engine: the database and the
//! buckets prepared side by side, live staging changed only when both are ready,
//! then staging verified by the smoke test and the run announced on EventBridge,
//! read from an SQS queue a rule on the bus targets.

use serde_json::{json, Value};
use understudy_tests::accounts::{EXTERNAL_ID, PRODUCTION_PASSWORD, STAGING_PASSWORD};
use understudy_tests::buckets::{list, put};
use understudy_tests::events::{detail_types, event_of, EventQueue};
use understudy_tests::https::{post_json, HttpsApps};
use understudy_tests::scale::ScaleWorld;
use understudy_tests::state_machine::{Outcome, DEFAULT_EVENT_BUS};

use crate::refresh_world::{RefreshStack, STAGING_TAGS, TARGET};

const IMAGES: &str = "prod-images";
const STAGING_IMAGES: &str = "staging-images";
/// Objects in production's images bucket.
const IMAGE_COUNT: usize = 24;
/// Of those, already in staging and identical.
const IDENTICAL: usize = 4;
/// Stale objects only staging has: the mirror deletes them after the swap.
const STALE: usize = 3;

/// Production's images and staging's copy of an older state.
async fn seed_images(world: &RefreshStack) {
    world.accounts.create_source_bucket(IMAGES).await;
    world.accounts.create_target_bucket(STAGING_IMAGES, true).await;
    let (production, staging) = (world.accounts.production_s3(), world.accounts.staging_s3());
    for n in 0..IMAGE_COUNT {
        let body = format!("image {n} of production").into_bytes();
        put(&production, IMAGES, &format!("books/{n:03}.jpg"), &body).await;
        if n < IDENTICAL {
            put(&staging, STAGING_IMAGES, &format!("books/{n:03}.jpg"), &body).await;
        }
    }
    for n in 0..STALE {
        put(&staging, STAGING_IMAGES, &format!("books/stale-{n}.jpg"), b"deleted in production").await;
    }
}

async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    list(s3, bucket, "").await.into_iter().map(|o| o.key).collect()
}

/// Seed 000's stack with its images bucket pair, and `smoke` as the smoke section.
async fn deploy_seed_000(world: &RefreshStack, smoke: Value, refresh: Value) {
    let (mut parameters, mut document) = world.seed_000_deployment();
    parameters.push(("MirrorBuckets", format!("{IMAGES}={STAGING_IMAGES}")));
    document["smoke"] = smoke;
    document["refresh"] = refresh;
    world.deploy(&parameters, &document).await;
}

/// Staging's health compared with production's version, a round a second for 4 seconds.
fn version_parity(apps: &HttpsApps) -> Value {
    json!({
        "checks": [{
            "name": "version parity",
            "url": format!("{}/health", apps.url("staging")),
            "expect": {"json": {"/status": "ok"}},
            "compare_with": {"base_url": apps.url("production"), "headers": ["X-App-Version"]},
        }],
        "round_seconds": 1,
        "deadline_seconds": 4,
    })
}

async fn run(world: &RefreshStack, name: &str, input: &Value) -> Outcome {
    let arn = world.state_machine(&format!("understudy-refresh-{name}")).await;
    world.run(&arn, name, input).await
}

/// The events the queue received, none of them holding a secret.
fn events_without_secrets(world: &RefreshStack, queue: &EventQueue) -> Vec<Value> {
    let events = world.stack.received_events(queue);
    let text = serde_json::to_string(&events).unwrap();
    for secret in [EXTERNAL_ID, STAGING_PASSWORD, PRODUCTION_PASSWORD] {
        assert!(!text.contains(secret), "an event holds a secret: {text}");
    }
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_000_full_refresh_mirrors_the_images_checks_the_version_and_announces_the_summary() {
    let world = RefreshStack::start().await;
    world.seed_000().await;
    seed_images(&world).await;
    let apps = HttpsApps::start();
    deploy_seed_000(&world, version_parity(&apps), json!({})).await;
    let queue = world.stack.subscribe_to_events("understudy-lifecycle", DEFAULT_EVENT_BUS);
    let before = world.usable_cluster(TARGET).await;

    let outcome = run(&world, "deploy-42", &json!({"label": "v1.4.2"})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", world.logs());
    let after = world.usable_cluster(TARGET).await;
    assert_eq!(after.master_username(), Some("prod_admin"), "restored from production's snapshot");
    assert_ne!(after.db_cluster_resource_id(), before.db_cluster_resource_id());
    assert_eq!(world.cluster_ids().await, [TARGET], "no temporary or retired cluster remains");
    let (production, staging) = (world.accounts.production_s3(), world.accounts.staging_s3());
    assert_eq!(
        keys(&staging, STAGING_IMAGES).await,
        keys(&production, IMAGES).await,
        "staging mirrors production"
    );
    assert!(
        outcome.times_entered("Prepare the database and the buckets") == 1
            && outcome.times_entered("Delete a bucket step") >= 1,
        "{outcome:#?}"
    );

    let events = events_without_secrets(&world, &queue);
    assert_eq!(detail_types(&events), ["Refresh Started", "Refresh Succeeded"], "{events:#?}");
    let succeeded = event_of(&events, "Refresh Succeeded");
    assert_eq!(succeeded["source"], "understudy");
    let detail = &succeeded["detail"];
    let output = outcome.output.as_ref().unwrap();
    assert_eq!(detail["environment"], "staging");
    assert_eq!(detail["outcome"], "succeeded");
    assert_eq!(detail["label"], "v1.4.2");
    assert!(detail["execution"].as_str().unwrap().ends_with(":deploy-42"), "{detail:#}");
    assert_eq!(detail["event_id"].as_str().unwrap().len(), 32);
    assert_ne!(detail["event_id"], event_of(&events, "Refresh Started")["detail"]["event_id"]);
    assert_eq!(detail["snapshot"], output["snapshot"]["identifier"]);
    assert_eq!(detail["database"], TARGET);
    assert_eq!(detail["staging"], "awake");
    let mirror = &detail["mirror"];
    assert_eq!(mirror["copied"], (IMAGE_COUNT - IDENTICAL) as u64, "{mirror:#}");
    assert_eq!(mirror["deleted"], STALE as u64, "{mirror:#}");
    assert_eq!(mirror["deleted_bytes"], (STALE * b"deleted in production".len()) as u64);
    assert_eq!(mirror["buckets"][0]["unchanged"], IDENTICAL as u64);
    assert_eq!(detail["smoke"]["passed"], true, "{detail:#}");
    assert_eq!(detail["smoke"]["checks_passed"], json!(["version parity"]));
    let stages: Vec<&str> =
        detail["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        ["validate", "database", "mirror-copy", "swap", "mirror-delete", "wake-or-sleep", "smoke"],
        "{detail:#}"
    );
    assert!(detail["duration_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(output["summary"], *detail, "the execution's output carries the same summary");
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_003_same_account_instance_and_two_buckets_are_refreshed_and_smoke_tested() {
    let world = RefreshStack::start().await;
    world.accounts.seed_same_account_production_instance("app-production").await;
    world.accounts.seed_staging_instance("app-staging", STAGING_TAGS).await;
    // Both buckets of each pair live in the one account.
    let s3 = world.accounts.staging_s3();
    for (source, target) in [("app-uploads", "app-staging-uploads"), ("app-assets", "app-staging-assets")] {
        s3.create_bucket().bucket(source).send().await.unwrap();
        world.accounts.create_target_bucket(target, true).await;
        for n in 0..5 {
            put(&s3, source, &format!("{n}.bin"), format!("{source} {n}").as_bytes()).await;
        }
        put(&s3, target, "left-over.bin", b"only in staging").await;
    }
    let apps = HttpsApps::start();
    let staging_app = apps.url("staging");
    let (_, mut document) = world.seed_000_deployment();
    document["database"]["share_kms_key_arn"] = Value::Null;
    document["database"]["restore"]["min_capacity"] = Value::Null;
    document["database"]["restore"]["max_capacity"] = Value::Null;
    document["smoke"] = json!({
        "checks": [
            {"name": "health", "url": format!("{staging_app}/health"), "expect": {"json": {"/status": "ok"}}},
            {"name": "login", "url": format!("{staging_app}/login"), "method": "POST",
             "body": {"user": "smoke", "password": "not-a-secret"},
             "expect": {"json": {"/user": "smoke"}, "json_exists": ["/token"]}},
        ],
        "round_seconds": 1,
        "deadline_seconds": 4,
    });
    world
        .deploy(
            &[
                ("DatabaseKind", "instance".into()),
                ("DatabaseSource", "app-production".into()),
                ("DatabaseTarget", "app-staging".into()),
                ("DatabasePasswordSecretArn", world.world.password_secret_arn.clone()),
                ("MirrorBuckets", "app-uploads=app-staging-uploads,app-assets=app-staging-assets".into()),
            ],
            &document,
        )
        .await;
    let queue = world.stack.subscribe_to_events("understudy-lifecycle", DEFAULT_EVENT_BUS);

    let outcome = run(&world, "release-9", &json!({})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", world.logs());
    assert_eq!(
        world.instance_ids().await,
        ["app-production", "app-staging"],
        "no temporary instance remains"
    );
    for (source, target) in [("app-uploads", "app-staging-uploads"), ("app-assets", "app-staging-assets")] {
        assert_eq!(keys(&s3, target).await, keys(&s3, source).await, "{target} mirrors {source}");
    }
    let events = events_without_secrets(&world, &queue);
    let detail = &event_of(&events, "Refresh Succeeded")["detail"];
    assert_eq!(detail["mirror"]["copied"], 10, "{detail:#}");
    assert_eq!(detail["mirror"]["deleted"], 2, "{detail:#}");
    assert_eq!(detail["smoke"]["checks_passed"], json!(["health", "login"]), "{detail:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_branch_that_fails_changes_nothing_of_live_staging_and_names_the_step() {
    let world = RefreshStack::start().await;
    world.seed_000().await;
    seed_images(&world).await;
    deploy_seed_000(&world, json!({}), json!({})).await;
    let queue = world.stack.subscribe_to_events("understudy-lifecycle", DEFAULT_EVENT_BUS);
    let before = world.usable_cluster(TARGET).await;
    let staging_before = keys(&world.accounts.staging_s3(), STAGING_IMAGES).await;
    // The third object copied cannot be read (its source denies it), every retry too.
    world.stack.inject_fault(&json!({
        "service": "s3", "action": "CopyObject", "code": "AccessDenied",
        "identifier": STAGING_IMAGES, "nth": 3, "times": 1000,
    }));

    let outcome = run(&world, "deploy-43", &json!({})).await;
    world.stack.clear_faults();

    assert_eq!(outcome.status, "FAILED", "{outcome:#?}");
    assert_eq!(outcome.error.as_deref(), Some("AccessDenied"), "{outcome:#?}");
    assert_eq!(outcome.times_entered("Rename the live database aside"), 0, "the swap never started");
    assert_eq!(outcome.times_entered("Delete a bucket step"), 0, "no delete phase ran");
    let after = world.usable_cluster(TARGET).await;
    assert_eq!(
        after.db_cluster_resource_id(),
        before.db_cluster_resource_id(),
        "live staging's database unchanged"
    );
    assert_eq!(world.cluster_ids().await, [TARGET], "the temporary database is gone");
    let staging_after = keys(&world.accounts.staging_s3(), STAGING_IMAGES).await;
    for key in &staging_before {
        assert!(staging_after.contains(key), "`{key}` was deleted from staging");
    }

    let events = events_without_secrets(&world, &queue);
    assert_eq!(detail_types(&events), ["Refresh Started", "Refresh Failed"], "{events:#?}");
    let error = &event_of(&events, "Refresh Failed")["detail"]["error"];
    assert_eq!(error["error"], "AccessDenied", "{error:#}");
    assert_eq!(error["step"], "mirror-copy", "{error:#}");
    assert!(error["cause"].as_str().unwrap().contains(IMAGES), "{error:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_mismatch_fails_the_smoke_test_after_the_swap_and_keeps_the_new_database() {
    let world = RefreshStack::start().await;
    world.seed_000().await;
    seed_images(&world).await;
    let apps = HttpsApps::start();
    assert_eq!(post_json(&format!("{}/version", apps.url("staging")), &json!({"version": "1.3.9"})), 200);
    deploy_seed_000(&world, version_parity(&apps), json!({})).await;
    let queue = world.stack.subscribe_to_events("understudy-lifecycle", DEFAULT_EVENT_BUS);

    let outcome = run(&world, "deploy-44", &json!({})).await;

    assert_eq!(outcome.status, "FAILED", "{outcome:#?}");
    assert_eq!(outcome.error.as_deref(), Some("SmokeTestFailed"), "{outcome:#?}");
    assert!(outcome.cause.as_deref().unwrap_or_default().contains("version parity"), "{outcome:#?}");
    let live = world.usable_cluster(TARGET).await;
    assert_eq!(live.master_username(), Some("prod_admin"), "the new database stays in place");
    assert_eq!(outcome.times_entered("Undo this run's changes"), 0, "nothing is undone after the swap");

    let events = events_without_secrets(&world, &queue);
    assert_eq!(detail_types(&events), ["Refresh Started", "Refresh Failed"], "{events:#?}");
    let detail = &event_of(&events, "Refresh Failed")["detail"];
    assert_eq!(detail["error"]["error"], "SmokeTestFailed", "{detail:#}");
    assert_eq!(detail["error"]["step"], "smoke", "{detail:#}");
    assert!(detail["error"]["cause"].as_str().unwrap().contains("version parity"), "{detail:#}");
    let failing = &detail["smoke"]["checks_failing"][0];
    assert_eq!(failing["name"], "version parity", "{detail:#}");
    assert!(failing["failures"].to_string().contains("staging 1.3.9, production 1.4.2"), "{detail:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_after_awake_wakes_a_sleeping_staging_runs_the_migrations_restarts_and_smoke_tests_it() {
    let world = RefreshStack::start().await;
    world.seed_000().await;
    seed_images(&world).await;
    let services = ScaleWorld::seed_services(&world.accounts.staging).await;
    let deployment_of = |service: &'static str| {
        let ecs = services.ecs.clone();
        async move {
            let described =
                ecs.describe_services().cluster("staging").services(service).send().await.unwrap();
            let service = &described.services()[0];
            (service.desired_count(), service.deployments()[0].id().unwrap_or_default().to_owned())
        }
    };
    let (desired, deployment) = deployment_of("catalog").await;
    let apps = HttpsApps::start();
    let smoke = version_parity(&apps);
    let migrate = json!({
        "after": "awake",
        "restart_services": true,
        "migrate": {"name": "run-migrations", "url": format!("{}/run-migrations", apps.url("staging")),
                    "method": "POST", "expect": {"json_exists": ["/migrations"]}},
    });
    deploy_seed_000(&world, smoke, json!({})).await;
    world.usable_cluster(TARGET).await;
    // Put staging to sleep as the sleep machine does.
    for _ in 0..30 {
        let answer = world.stack.invoke("scale-to-zero", &json!({"action": "sleep"})).ok();
        if answer["settled"] == true {
            break;
        }
    }
    let asleep = world.cluster(TARGET).await.unwrap();
    assert!(matches!(asleep.status(), Some("stopped" | "stopping")), "{:?}", asleep.status());

    let outcome = run(&world, "deploy-45", &json!({"refresh": migrate})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", world.logs());
    assert!(outcome.times_entered("Wake the databases") >= 1, "{outcome:#?}");
    assert_eq!(outcome.times_entered("Run the migrations"), 1, "{outcome:#?}");
    assert_eq!(outcome.times_entered("Put staging back to sleep"), 0, "{outcome:#?}");
    assert_eq!(outcome.times_entered("Restart the services"), 1, "{outcome:#?}");
    let (desired_after, deployment_after) = deployment_of("catalog").await;
    assert_eq!(desired_after, desired, "the service is awake again, at its remembered count");
    assert_ne!(deployment_after, deployment, "and runs a new deployment");
    let live = world.usable_cluster(TARGET).await;
    assert_eq!(live.master_username(), Some("prod_admin"));
    assert_eq!(live.status(), Some("available"), "staging ends awake");
    let summary = &outcome.output.as_ref().unwrap()["summary"];
    assert_eq!(summary["staging"], "awake", "{summary:#}");
    assert_eq!(summary["smoke"]["passed"], true, "{summary:#}");
    let migrations = world.stack.invoke(
        "smoke-test",
        &json!({"action": "migrate", "config": {"input": {"refresh": {"migrate": {
            "name": "count", "url": format!("{}/migrations", apps.url("staging")),
            "expect": {"json": {"/migrations": 1}}}}}}}),
    );
    assert_eq!(migrations.error_type(), None, "the migrations ran once: {}", migrations.payload);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_task_runs_once_after_the_swap_and_only_from_a_staging_tagged_task_definition() {
    use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode, Tag};
    let world = RefreshStack::start().await;
    world.seed_000().await;
    seed_images(&world).await;
    let ecs = aws_sdk_ecs::Client::new(&world.accounts.staging);
    let staging_tag = Tag::builder().key("understudy:environment").value("staging").build();
    ecs.create_cluster().cluster_name("staging-jobs").tags(staging_tag.clone()).send().await.unwrap();
    let definition = ecs
        .register_task_definition()
        .family("app-migrate")
        .requires_compatibilities(Compatibility::Fargate)
        .network_mode(NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        // Container-level cpu and memory too: moto sums them to place the task.
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("app:1.4.2")
                .essential(true)
                .cpu(256)
                .memory(512)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let definition_arn = definition.task_definition().unwrap().task_definition_arn().unwrap().to_owned();
    let network = world.stack.seed_staging_network("staging-jobs-subnets");
    let task = json!({
        "migrate_task": {
            "cluster": "staging-jobs",
            "task_definition": "app-migrate",
            "subnet_ids": network["subnet_ids"],
            "security_group_ids": [network["security_group_id"]],
            "command": {"container": "app", "command": ["alembic", "upgrade", "head"]},
        },
    });
    deploy_seed_000(&world, json!({}), task).await;
    let run_tasks = |requests: Vec<Value>| requests.iter().filter(|r| r["action"] == "RunTask").count();

    // The task definition does not carry the staging tag: refused before RunTask, after the swap.
    world.stack.take_requests();
    let refused = run(&world, "deploy-46", &json!({})).await;
    assert_eq!(refused.status, "FAILED", "{refused:#?}");
    assert_eq!(refused.error.as_deref(), Some("GuardRailViolation"), "{refused:#?}");
    assert!(refused.cause.as_deref().unwrap_or_default().contains("app-migrate"), "{refused:#?}");
    assert_eq!(run_tasks(world.stack.take_requests()), 0, "no task was started");
    assert_eq!(
        world.usable_cluster(TARGET).await.master_username(),
        Some("prod_admin"),
        "the new database stays"
    );

    ecs.tag_resource().resource_arn(&definition_arn).tags(staging_tag).send().await.unwrap();
    let outcome = run(&world, "deploy-47", &json!({})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", world.stack.function_log("scale-to-zero"));
    assert_eq!(run_tasks(world.stack.take_requests()), 1, "one task, started once");
    assert!(outcome.times_entered("Check the migration task") >= 1, "{outcome:#?}");
    let tasks = ecs.list_tasks().cluster("staging-jobs").send().await.unwrap();
    let described = ecs
        .describe_tasks()
        .cluster("staging-jobs")
        .set_tasks(Some(tasks.task_arns().to_vec()))
        .send()
        .await
        .unwrap();
    let overrides = described.tasks()[0].overrides().unwrap().container_overrides()[0].command().to_vec();
    assert_eq!(overrides, ["alembic", "upgrade", "head"]);
}
