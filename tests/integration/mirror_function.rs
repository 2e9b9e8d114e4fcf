//! The mirror binary against moto over HTTP: the source bucket lives in the
//! production account (with the bucket policy granting staging read access), the
//! target in staging, and the function signs every call with staging's own
//! credentials, so each copy is one server-side `CopyObject` across accounts.

use std::collections::HashMap;

use serde_json::{json, Value};
use understudy_tests::buckets::{
    body, list, mirror_until_done, object_tags, put, put_multipart, put_with, ListedObject, PutOptions,
};
use understudy_tests::{Accounts, LocalStack, StackOptions};

const SOURCE: &str = "production-assets";
const TARGET: &str = "staging-assets";
const MIB: usize = 1024 * 1024;

/// The stack's one bucket pair: `SOURCE` into `TARGET`.
const PAIRS: &str = "production-assets=staging-assets";

async fn world(stack: &LocalStack) -> Accounts {
    stack.deploy(&[("MirrorBuckets", PAIRS.into())]);
    let accounts = Accounts::new(stack).await;
    accounts.create_source_bucket(SOURCE).await;
    accounts.create_target_bucket(TARGET, true).await;
    accounts
}

fn request(extra: Value) -> Value {
    let mut request = json!({"action": "mirror", "source": {"bucket": SOURCE}, "target": {"bucket": TARGET}});
    for (key, value) in extra.as_object().unwrap() {
        request[key] = value.clone();
    }
    request
}

/// Keys, sizes and ETags of both buckets.
async fn both_sides(accounts: &Accounts) -> (Vec<ListedObject>, Vec<ListedObject>) {
    (list(&accounts.production_s3(), SOURCE, "").await, list(&accounts.staging_s3(), TARGET, "").await)
}

async fn assert_identical(accounts: &Accounts) {
    let (source, target) = both_sides(accounts).await;
    assert_eq!(source, target, "the target must list exactly what the source lists");
    for object in &source {
        assert_eq!(
            body(&accounts.production_s3(), SOURCE, &object.key).await,
            body(&accounts.staging_s3(), TARGET, &object.key).await,
            "bytes of `{}`",
            object.key
        );
    }
}

fn counts(answers: &[Value]) -> Value {
    answers.last().unwrap()["counts"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_target_becomes_an_exact_copy_and_a_second_run_copies_nothing() {
    let stack = LocalStack::start();
    let accounts = world(&stack).await;
    let production = accounts.production_s3();
    for i in 0..40 {
        put(&production, SOURCE, &format!("photos/{i:03}.jpg"), format!("photo {i}").as_bytes()).await;
    }
    put(&production, SOURCE, "empty", b"").await;

    let first = mirror_until_done(&stack, &request(json!({})), 10);

    assert_eq!(counts(&first)["copied"], 41, "{first:#?}");
    assert_eq!(first.len(), 1, "no extras, so no delete phase: {first:#?}");
    assert_identical(&accounts).await;
    let second = mirror_until_done(&stack, &request(json!({})), 10);
    assert_eq!(counts(&second)["copied"], 0, "{second:#?}");
    assert_eq!(counts(&second)["unchanged"], 41);
    assert_eq!(counts(&second)["deleted"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_same_size_change_is_repaired() {
    let stack = LocalStack::start();
    let accounts = world(&stack).await;
    put(&accounts.production_s3(), SOURCE, "config.json", b"{\"version\": 2}").await;
    put(&accounts.staging_s3(), TARGET, "config.json", b"{\"version\": 1}").await;
    put(&accounts.production_s3(), SOURCE, "same.txt", b"same").await;
    put(&accounts.staging_s3(), TARGET, "same.txt", b"same").await;

    let answers = mirror_until_done(&stack, &request(json!({})), 10);

    assert_eq!(counts(&answers)["copied"], 1, "{answers:#?}");
    assert_eq!(counts(&answers)["unchanged"], 1);
    assert_eq!(body(&accounts.staging_s3(), TARGET, "config.json").await, b"{\"version\": 2}");
    assert_identical(&accounts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn extras_are_deleted_but_excluded_keys_are_neither_copied_nor_deleted() {
    let stack = LocalStack::start();
    let accounts = world(&stack).await;
    let (production, staging) = (accounts.production_s3(), accounts.staging_s3());
    put(&production, SOURCE, "keep/a.txt", b"a").await;
    put(&production, SOURCE, "tmp/scratch", b"not for staging").await;
    put(&production, SOURCE, "logs/app.log", b"log line").await;
    put(&staging, TARGET, "gone/old.txt", b"extra").await;
    put(&staging, TARGET, "tmp/staging-only", b"staging's own").await;
    put(&staging, TARGET, "logs/staging.log", b"staging's own log").await;

    let answers = mirror_until_done(&stack, &request(json!({"exclude": ["tmp/", "**.log"]})), 10);

    assert_eq!(counts(&answers)["copied"], 1, "{answers:#?}");
    assert_eq!(counts(&answers)["skipped"], 2);
    assert_eq!(counts(&answers)["deleted"], 1);
    assert_eq!(answers.len(), 1, "one step copied the whole prefix, then deleted the extras it held");
    let keys: Vec<String> = list(&staging, TARGET, "").await.into_iter().map(|o| o.key).collect();
    assert_eq!(keys, ["keep/a.txt", "logs/staging.log", "tmp/staging-only"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_reports_and_changes_nothing() {
    let stack = LocalStack::start();
    let accounts = world(&stack).await;
    put(&accounts.production_s3(), SOURCE, "new", b"new").await;
    put(&accounts.production_s3(), SOURCE, "changed", b"v2").await;
    put(&accounts.staging_s3(), TARGET, "changed", b"v1").await;
    put(&accounts.staging_s3(), TARGET, "extra", b"x").await;
    let before = both_sides(&accounts).await;

    let answers = mirror_until_done(&stack, &request(json!({"dry_run": true})), 10);

    assert_eq!(both_sides(&accounts).await, before, "a dry run must not write");
    let counts = counts(&answers);
    assert_eq!((counts["copied"].as_u64(), counts["deleted"].as_u64()), (Some(2), Some(1)), "{answers:#?}");
    assert_eq!(answers.last().unwrap()["dry_run"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn awkward_keys_and_empty_objects_round_trip() {
    let stack = LocalStack::start();
    let accounts = world(&stack).await;
    let long_key = format!("long/{}", "k".repeat(1024 - 5));
    assert_eq!(long_key.len(), 1024);
    let keys = [
        "with space.txt",
        "ünïcödé/名前.txt",
        "plus+sign",
        "percent%20literal",
        "double//slash",
        "trailing/",
        "question?mark&amp=1",
        "tilde~and'quote",
        long_key.as_str(),
    ];
    for key in keys {
        put(&accounts.production_s3(), SOURCE, key, key.as_bytes()).await;
    }
    put(&accounts.production_s3(), SOURCE, "zero-bytes", b"").await;
    // Same awkward keys as extras on the target side, to exercise delete batches.
    put(&accounts.staging_s3(), TARGET, "extra with space+plus%", b"x").await;

    let answers = mirror_until_done(&stack, &request(json!({})), 10);

    assert_eq!(counts(&answers)["copied"], keys.len() + 1, "{answers:#?}");
    assert_eq!(counts(&answers)["deleted"], 1);
    assert_identical(&accounts).await;
    let again = mirror_until_done(&stack, &request(json!({})), 10);
    assert_eq!(counts(&again)["copied"], 0, "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_content_type_tags_and_storage_class_are_kept() {
    let stack = LocalStack::start();
    let accounts = world(&stack).await;
    let options = PutOptions {
        content_type: Some("image/png".into()),
        cache_control: Some("max-age=60".into()),
        metadata: HashMap::from([("owner".into(), "team-a".into()), ("checksum".into(), "abc".into())]),
        tags: vec![("class".into(), "public".into()), ("team".into(), "a".into())],
        storage_class: Some("STANDARD_IA".into()),
    };
    put_with(&accounts.production_s3(), SOURCE, "logo.png", b"\x89PNG....", &options).await;

    mirror_until_done(&stack, &request(json!({})), 10);

    let staging = accounts.staging_s3();
    let head = staging.head_object().bucket(TARGET).key("logo.png").send().await.unwrap();
    assert_eq!(head.content_type(), Some("image/png"));
    assert_eq!(head.cache_control(), Some("max-age=60"));
    assert_eq!(head.metadata().unwrap(), &options.metadata);
    assert_eq!(head.storage_class().map(|c| c.as_str()), Some("STANDARD_IA"));
    assert_eq!(object_tags(&staging, TARGET, "logo.png").await, options.tags);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_multipart_path_is_byte_identical_and_a_second_run_copies_nothing() {
    let stack = LocalStack::start();
    let accounts = world(&stack).await;
    let production = accounts.production_s3();
    let options = PutOptions {
        content_type: Some("application/x-tar".into()),
        metadata: HashMap::from([("origin".into(), "backup-job".into())]),
        tags: vec![("retention".into(), "30d".into())],
        ..PutOptions::default()
    };
    // A multipart source (5 + 5 + 1 MiB) and a 12 MiB single-part one above the threshold.
    let parts: Vec<Vec<u8>> =
        [5 * MIB, 5 * MIB, MIB].iter().enumerate().map(|(i, &n)| vec![b'a' + i as u8; n]).collect();
    put_multipart(&production, SOURCE, "backups/multipart.tar", &parts, &options).await;
    let big: Vec<u8> = (0..12 * MIB).map(|i| (i % 251) as u8).collect();
    put_with(&production, SOURCE, "backups/big.bin", &big, &options).await;
    put(&production, SOURCE, "small.txt", b"small").await;
    let settings = json!({"multipart_threshold_bytes": 6 * MIB, "part_size_bytes": 5 * MIB});

    let first = mirror_until_done(&stack, &request(settings.clone()), 10);

    assert_eq!(counts(&first)["copied"], 3, "{first:#?}");
    let staging = accounts.staging_s3();
    for key in ["backups/multipart.tar", "backups/big.bin"] {
        assert_eq!(body(&production, SOURCE, key).await, body(&staging, TARGET, key).await, "{key}");
        let head = staging.head_object().bucket(TARGET).key(key).send().await.unwrap();
        assert_eq!(head.content_type(), Some("application/x-tar"), "{key}");
        assert_eq!(head.metadata().unwrap()["origin"], "backup-job", "{key}");
        assert_eq!(object_tags(&staging, TARGET, key).await, options.tags, "{key}");
    }
    let (source, target) = both_sides(&accounts).await;
    let etag =
        |objects: &[ListedObject], key: &str| objects.iter().find(|o| o.key == key).unwrap().etag.clone();
    assert_eq!(
        etag(&source, "backups/multipart.tar"),
        etag(&target, "backups/multipart.tar"),
        "the copy keeps the source's part layout, so the ETags match"
    );
    assert!(etag(&source, "backups/multipart.tar").ends_with("-3\""));
    let big_head = staging.head_object().bucket(TARGET).key("backups/big.bin").send().await.unwrap();
    assert_eq!(
        big_head.metadata().unwrap()[mirror::SOURCE_ETAG_KEY],
        etag(&source, "backups/big.bin").trim_matches('"'),
        "a single-part source copied in parts records the source ETag"
    );

    let second = mirror_until_done(&stack, &request(settings), 10);
    assert_eq!(counts(&second)["copied"], 0, "{second:#?}");
    assert_eq!(counts(&second)["unchanged"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tiny_deadline_forces_many_invocations_that_converge() {
    let stack = LocalStack::start_with(StackOptions {
        env: vec![("UNDERSTUDY_DEADLINE_MS".into(), "600".into())],
        ..StackOptions::default()
    });
    let accounts = world(&stack).await;
    let (production, staging) = (accounts.production_s3(), accounts.staging_s3());
    for i in 0..200 {
        put(&production, SOURCE, &format!("k/{i:04}"), format!("value {i}").as_bytes()).await;
    }
    for i in (0..200).step_by(7) {
        put(&staging, TARGET, &format!("k/{i:04}"), format!("VALUE {i}").as_bytes()).await;
    }
    for i in 0..120 {
        put(&staging, TARGET, &format!("k/{i:04}-extra"), b"extra").await;
    }

    let answers = mirror_until_done(&stack, &request(json!({"concurrency": 1})), 200);

    let copy_steps = answers.iter().filter(|a| a["phase"] == "copy").count();
    let delete_steps = answers.iter().filter(|a| a["phase"] == "delete").count();
    assert!(copy_steps >= 3 && delete_steps >= 1, "{copy_steps} copy and {delete_steps} delete steps");
    let counts = counts(&answers);
    assert_eq!((counts["copied"].as_u64(), counts["deleted"].as_u64()), (Some(200), Some(120)), "{counts}");
    assert_identical(&accounts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_in_the_copy_phase_deletes_nothing() {
    let stack = LocalStack::start();
    let accounts = world(&stack).await;
    let (production, staging) = (accounts.production_s3(), accounts.staging_s3());
    for i in 0..20 {
        put(&production, SOURCE, &format!("a/{i:02}"), b"fine").await;
    }
    // An archived object cannot be copied until restored: S3 refuses the copy.
    let archived = PutOptions { storage_class: Some("GLACIER".into()), ..PutOptions::default() };
    put_with(&production, SOURCE, "m/archived", b"cold", &archived).await;
    for i in 0..20 {
        put(&production, SOURCE, &format!("z/{i:02}"), b"fine").await;
    }
    put(&staging, TARGET, "b/extra", b"extra").await;

    let invocation = stack.invoke("mirror", &request(json!({})));

    assert_eq!(invocation.error_type(), Some("AwsRequestFailed"), "{invocation:?}");
    assert!(invocation.error_message().contains("m/archived"), "{}", invocation.error_message());
    let keys: Vec<String> = list(&staging, TARGET, "").await.into_iter().map(|o| o.key).collect();
    assert!(keys.contains(&"b/extra".to_owned()), "nothing may be deleted after an error: {keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untagged_target_or_the_source_itself_is_refused() {
    let stack = LocalStack::start();
    let accounts = world(&stack).await;
    accounts.create_target_bucket("untagged-bucket", false).await;
    accounts.create_target_bucket("staging-elsewhere", true).await;
    put(&accounts.production_s3(), SOURCE, "a", b"a").await;
    // A deployed pair whose target lacks the staging tag.
    stack.deploy(&[("MirrorBuckets", format!("{PAIRS},{SOURCE}=untagged-bucket"))]);

    let untagged = stack.invoke("mirror", &request(json!({"target": {"bucket": "untagged-bucket"}})));
    let itself = stack.invoke("mirror", &request(json!({"target": {"bucket": SOURCE, "prefix": "copy/"}})));
    let undeployed = stack.invoke("mirror", &request(json!({"target": {"bucket": "staging-elsewhere"}})));
    let other_prefix = stack.invoke(
        "mirror",
        &request(json!({"source": {"bucket": SOURCE, "prefix": "a/"}, "target": {"bucket": TARGET, "prefix": "b/"}})),
    );

    assert_eq!(untagged.error_type(), Some("GuardRailViolation"), "{untagged:?}");
    assert!(untagged.error_message().contains("untagged-bucket"));
    assert_eq!(itself.error_type(), Some("GuardRailViolation"), "{itself:?}");
    for refused in [&undeployed, &other_prefix] {
        assert_eq!(refused.error_type(), Some("GuardRailViolation"), "{refused:?}");
        assert!(refused.error_message().contains("MirrorBuckets"), "{refused:?}");
    }
    assert!(list(&accounts.staging_s3(), "staging-elsewhere", "").await.is_empty());
    assert!(list(&accounts.staging_s3(), "untagged-bucket", "").await.is_empty());
    assert_eq!(list(&accounts.production_s3(), SOURCE, "").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_buckets_and_bad_input_fail_by_name() {
    let stack = LocalStack::start();
    let _accounts = world(&stack).await;
    stack.deploy(&[("MirrorBuckets", format!("{PAIRS},no-such-bucket=staging-missing"))]);

    let missing = stack.invoke(
        "mirror",
        &request(json!({"source": {"bucket": "no-such-bucket"}, "target": {"bucket": "staging-missing"}})),
    );
    let typo = stack.invoke("mirror", &request(json!({"dryrun": true})));

    assert_eq!(missing.error_type(), Some("BucketNotFound"), "{missing:?}");
    assert_eq!(typo.error_type(), Some("InvalidInput"), "{typo:?}");
    assert!(typo.error_message().contains("dryrun"));
}

#[tokio::test(flavor = "multi_thread")]
async fn planned_ranges_mirror_the_whole_bucket_between_them() {
    let stack = LocalStack::start();
    let accounts = world(&stack).await;
    let (production, staging) = (accounts.production_s3(), accounts.staging_s3());
    for i in 0..200 {
        put(&production, SOURCE, &format!("r/{i:04}"), format!("v{i}").as_bytes()).await;
    }
    for i in 0..30 {
        put(&staging, TARGET, &format!("r/{i:04}x"), b"extra").await;
    }
    put(&staging, TARGET, "zzz-after-everything", b"extra").await;
    let plan = stack
        .invoke("mirror", &json!({"action": "plan", "config": {"input": {"buckets": [TARGET]}}, "shards": 4}))
        .ok();
    let requests = plan["requests"].as_array().unwrap().clone();
    assert_eq!(requests.len(), 4, "{plan:#}");

    // Every range's copy phase first, then every range's delete phase (a range
    // whose copy phase saw no extras has none: its `next` is null).
    let mut finished = Vec::new();
    let mut deletes = Vec::new();
    for request in &requests {
        let answer = stack.invoke("mirror", request).ok();
        assert_eq!(answer["phase_done"], true, "{answer:#}");
        assert!(
            answer["done"] == false || answer["next"].is_null(),
            "a range's deletes wait for every range's copies: {answer:#}"
        );
        if answer["next"].is_null() {
            finished.push(answer);
        } else {
            deletes.push(answer["next"].clone());
        }
    }
    assert!(!deletes.is_empty());
    for request in &deletes {
        let answer = stack.invoke("mirror", request).ok();
        assert_eq!(answer["done"], true, "{answer:#}");
        finished.push(answer);
    }
    let total = |field: &str| finished.iter().map(|a| a["counts"][field].as_u64().unwrap()).sum::<u64>();
    let (copied, deleted) = (total("copied"), total("deleted"));
    assert_eq!((copied, deleted), (200, 31));
    assert_identical(&accounts).await;
}

#[test]
fn every_mirror_event_parses() {
    let dir = understudy_tests::workspace_root().join("tests/events");
    let mut parsed = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("mirror-") && name.ends_with(".json") {
            let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            mirror::MirrorFunctionRequest::parse(event).unwrap_or_else(|e| panic!("{name}: {e}"));
            parsed += 1;
        }
    }
    assert!(parsed >= 3, "{parsed} mirror events");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_copies_are_retried_with_backoff_until_the_mirror_converges() {
    let stack = LocalStack::start_with(StackOptions {
        env: vec![("UNDERSTUDY_S3_SLOWDOWN_EVERY".into(), "3".into())],
        ..StackOptions::default()
    });
    let accounts = world(&stack).await;
    for i in 0..30 {
        put(&accounts.production_s3(), SOURCE, &format!("t/{i:02}"), format!("throttled {i}").as_bytes())
            .await;
    }

    let answers = mirror_until_done(&stack, &request(json!({})), 10);

    assert_eq!(counts(&answers)["copied"], 30, "{answers:#?}");
    assert_identical(&accounts).await;
    let launcher_log = std::fs::read_to_string(stack.log_dir.join("stack.log")).unwrap_or_default();
    assert!(
        launcher_log.contains("injected SlowDown #10"),
        "a third of the copies were throttled: {launcher_log}"
    );
}
