//! Configuration from the deployed stack (issue #10): the template's own
//! parameters resolved into the functions' environment, the document in the
//! stack's bucket, the execution input only a small override that can name no
//! trust setting, and no configuration in any execution's history.

use serde_json::{json, Value};
use understudy_shared::config::REDACTED;
use understudy_tests::accounts::{EXTERNAL_ID, STAGING_SUBNET_GROUP};
use understudy_tests::buckets::{list, put};
use understudy_tests::deployment::{write_config, CONFIG_BUCKET, CONFIG_KEY};
use understudy_tests::state_machine::{configuration_leaks, Event};
use understudy_tests::{StateMachines, STAGING_ACCOUNT};

use crate::refresh_world::{is_announcement, tag, RefreshStack, SOURCE, TARGET};

/// The one bucket pair of these stacks.
const MEDIA_PAIR: (&str, &str) = ("production-media", "staging-media");

/// Seed 000's world with its image bucket (seed 000 syncs `bluemoxon-images`
/// into `bluemoxon-staging-images`): three objects in production, a stale one in staging.
async fn seed_000_with_media(world: &RefreshStack) {
    world.seed_000().await;
    let (source, target) = MEDIA_PAIR;
    world.accounts.create_source_bucket(source).await;
    world.accounts.create_target_bucket(target, true).await;
    for key in ["books/1.jpg", "books/2.jpg", "covers/3.png"] {
        put(&world.accounts.production_s3(), source, key, key.as_bytes()).await;
    }
    put(&world.accounts.staging_s3(), target, "books/deleted-in-production.jpg", b"stale").await;
}

/// Seed 000's parameters plus the media pair; `StagingAccountId` is not given.
fn parameters(world: &RefreshStack) -> Vec<(&'static str, String)> {
    let (mut parameters, _) = world.seed_000_deployment();
    parameters.push(("MirrorBuckets", format!("{}={}", MEDIA_PAIR.0, MEDIA_PAIR.1)));
    parameters
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_and_a_mirror_started_with_empty_inputs_run_on_the_templates_own_defaults() {
    let world = RefreshStack::start().await;
    seed_000_with_media(&world).await;
    let parameters = parameters(&world);
    assert!(parameters.iter().all(|(name, _)| *name != "StagingAccountId"), "the template's default");
    let deployed = world.stack.deploy(&parameters);
    assert_eq!(
        deployed["variables"]["UNDERSTUDY_STAGING_ACCOUNT_ID"], STAGING_ACCOUNT,
        "an empty StagingAccountId is the stack's own account: {deployed:#}"
    );
    let (_, document) = world.seed_000_deployment();
    write_config(&world.accounts.staging, &document).await;
    let before = world.cluster(TARGET).await.expect("seeded staging cluster");
    let machines = StateMachines::new(&world.accounts.staging);

    let refresh = world.state_machine("understudy-refresh").await;
    let outcome = world.run(&refresh, "deploy-1", &json!({})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", world.logs());
    let after = world.usable_cluster(TARGET).await;
    assert_ne!(after.db_cluster_resource_id(), before.db_cluster_resource_id(), "replaced");
    assert_eq!(after.master_username(), Some("prod_admin"), "restored from production's snapshot");
    assert_eq!(tag(&after, "understudy:run").as_deref(), Some("deploy-1"));
    assert_eq!(world.snapshots_shared_with_staging().await, Vec::<String>::new(), "the share is revoked");

    let mirror = machines.create("understudy-mirror", "mirror.asl.json", &[]).await;
    let mirrored = machines
        .start(&mirror, "deploy-1-mirror", &json!({}))
        .await
        .finish(crate::refresh_world::TIMEOUT)
        .await;

    assert_eq!(mirrored.status, "SUCCEEDED", "{mirrored:#?}\n{}", world.stack.function_log("mirror"));
    let (source, target) = MEDIA_PAIR;
    assert_eq!(
        list(&world.accounts.production_s3(), source, "").await,
        list(&world.accounts.staging_s3(), target, "").await,
        "the deployed pair is mirrored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_naming_only_the_target_keeps_the_deployed_network() {
    let world = RefreshStack::start().await;
    world.accounts.seed_production_cluster(SOURCE).await;
    let arn = world.seed_000_machine("understudy-refresh").await;
    let other = "staging-aurora-preview";

    let outcome = world.run(&arn, "preview-1", &json!({"database": {"target": other}})).await;

    assert_eq!(outcome.status, "SUCCEEDED", "{outcome:#?}\n{}", world.logs());
    let created = world.usable_cluster(other).await;
    assert_eq!(created.db_subnet_group(), Some(STAGING_SUBNET_GROUP), "the document's subnet group is kept");
    let groups: Vec<_> =
        created.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).collect();
    assert_eq!(groups, [world.world.security_group_id.as_str()], "and its security groups");
    let capacity = created.serverless_v2_scaling_configuration().expect("serverless v2 capacity");
    assert_eq!((capacity.min_capacity(), capacity.max_capacity()), (Some(0.5), Some(1.0)));
    assert_eq!(world.cluster_ids().await, [other], "the deployed target was never made");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trust_setting_in_the_input_fails_before_any_call() {
    let world = RefreshStack::start().await;
    seed_000_with_media(&world).await;
    world.stack.deploy(&parameters(&world));
    let (_, document) = world.seed_000_deployment();
    write_config(&world.accounts.staging, &document).await;
    let arn = world.state_machine("understudy-refresh").await;

    for (run, input, field) in [
        ("other-account", json!({"staging": {"account_id": "444444444444"}}), "input.staging.account_id"),
        ("other-tag", json!({"tag": {"key": "team", "value": "web"}}), "input.tag.key"),
        (
            "other-role",
            json!({"production": {"role_arn": "arn:aws:iam::111111111111:role/admin"}}),
            "input.production.role_arn",
        ),
        (
            "other-bucket",
            json!({"buckets": [{"source": MEDIA_PAIR.0, "target": "attacker-bucket"}]}),
            "input.buckets[0].target",
        ),
    ] {
        world.stack.take_requests();
        let outcome = world.run(&arn, run, &input).await;
        // Step Functions' own calls: its API, and the Refresh Failed event it publishes.
        let calls: Vec<Value> = world
            .stack
            .take_requests()
            .into_iter()
            .filter(|r| r["service"] != "stepfunctions" && !is_announcement(r))
            .collect();

        assert_eq!(outcome.status, "FAILED", "{run}: {outcome:#?}");
        assert_eq!(outcome.error.as_deref(), Some("InvalidInput"), "{run}: {outcome:#?}");
        let cause = outcome.cause.clone().unwrap_or_default();
        assert!(cause.contains(&format!("`{field}`")), "{run}: the cause names {field}: {cause}");
        assert_eq!(calls, Vec::<Value>::new(), "{run}: 0 AWS calls besides Step Functions'");
        assert_eq!(outcome.times_entered("Publish Refresh Failed"), 1, "{run}: the failure is announced");
        assert_eq!(outcome.times_entered("Check the guard rails"), 0, "{run}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_shows_the_effective_configuration_with_the_external_id_redacted() {
    let world = RefreshStack::start().await;
    world.stack.deploy(&parameters(&world));
    let (_, document) = world.seed_000_deployment();
    let version = write_config(&world.accounts.staging, &document).await;

    let answer = world
        .stack
        .invoke(
            "snapshot",
            &json!({"action": "validate", "config": {"input": {"database": {"target": "x-1"}}}}),
        )
        .ok();

    assert!(!answer.to_string().contains(EXTERNAL_ID), "{answer:#}");
    assert_eq!(answer["config"]["production"]["external_id"], REDACTED);
    assert_eq!(answer["version"], version.as_str());
    assert_eq!(answer["document"], format!("s3://{CONFIG_BUCKET}/{CONFIG_KEY}"));
    let database = &answer["config"]["database"];
    assert_eq!(database["target"], "x-1", "the input's override");
    assert_eq!(database["restore"]["subnet_group"], STAGING_SUBNET_GROUP, "the document's");
    assert_eq!(database["source"], SOURCE, "the stack parameter's");
    assert_eq!(answer["config"]["staging"]["account_id"], STAGING_ACCOUNT);
    assert_eq!(answer["config"]["buckets"][0]["target"], MEDIA_PAIR.1);

    let refused = world
        .stack
        .invoke("snapshot", &json!({"action": "validate", "config": {"input": {"tag": {"value": "prod"}}}}));
    assert_eq!(refused.error_type(), Some("InvalidInput"));
    assert!(refused.error_message().contains("`input.tag.value`"), "{}", refused.error_message());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_keeps_the_document_version_it_began_with() {
    let world = RefreshStack::start().await;
    world.stack.deploy(&parameters(&world));
    let (_, document) = world.seed_000_deployment();
    let first = write_config(&world.accounts.staging, &document).await;
    let begun = world.stack.invoke("snapshot", &json!({"action": "begin", "input": {}})).ok();
    assert_eq!(begun["config"]["version"], first.as_str());
    let mut changed = document.clone();
    changed["retention"] = json!({"keep_snapshots": 9});
    write_config(&world.accounts.staging, &changed).await;

    let pinned = json!({"action": "validate", "config": begun["config"]});
    let answer = world.stack.invoke("snapshot", &pinned).ok();
    assert_eq!(answer["config"]["retention"]["keep_snapshots"], 3, "the run's version: {answer:#}");
    let latest = world.stack.invoke("snapshot", &json!({"action": "validate"})).ok();
    assert_eq!(latest["config"]["retention"]["keep_snapshots"], 9, "the next run's");
}

#[test]
fn the_history_check_finds_the_external_id_and_a_configuration_document() {
    let event = |data: Value| Event {
        kind: "TaskStateExited".into(),
        state: Some("Validate the configuration".into()),
        error: None,
        cause: None,
        data: vec![data.to_string()],
    };
    let input = json!({"database": {"target": "x"}});
    let clean = [event(json!({"config": {"version": "v1", "input": input}, "waits": {}}))];
    assert_eq!(configuration_leaks(&clean, &input), Vec::<String>::new());
    let leaked_id = [event(json!({"note": EXTERNAL_ID}))];
    assert_eq!(configuration_leaks(&leaked_id, &input).len(), 1);
    let leaked_document = [event(json!({"config": {"production": {"account_id": "111111111111"}}}))];
    assert_eq!(configuration_leaks(&leaked_document, &input).len(), 1);
    let leaked_tag = [event(json!({"tag": {"key": "understudy:environment", "value": "staging"}}))];
    assert_eq!(configuration_leaks(&leaked_tag, &input).len(), 1);
}
