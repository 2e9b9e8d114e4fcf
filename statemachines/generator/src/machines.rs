//! Every state machine of the suite, built from the helpers in [`crate::asl`].

use serde_json::{json, Value};
use understudy_shared::poll::PollKind;

use understudy_shared::lifecycle::Lifecycle;

use crate::asl::{
    announce_states, clock_mark, config_payload, fail, failed_stage, lambda, machine, release_lease, report,
    run_payload, succeed, take_lease_states, when_true, with_comment, Catch, Function, GiveUp, PollLoop,
    States, Task,
};

/// One generated machine: its file stem (`statemachines/<name>.asl.json`) and definition.
#[derive(Debug, Clone)]
pub struct Machine {
    /// File stem, e.g. `refresh`.
    pub name: &'static str,
    /// The ASL definition.
    pub definition: Value,
}

/// Every machine, in the order statemachines/README.md lists them.
pub fn all() -> Vec<Machine> {
    vec![
        Machine { name: "snapshot", definition: snapshot() },
        Machine { name: "refresh", definition: refresh() },
        Machine { name: "mirror", definition: mirror() },
        Machine { name: "mirror-distributed", definition: mirror_distributed() },
        Machine { name: "sleep", definition: sleep() },
        Machine { name: "wake", definition: wake() },
        Machine { name: "restop", definition: restop() },
    ]
}

const VALIDATE: &str = "Validate the configuration";

/// The config preamble: one `begin` task. The function checks the execution
/// input (a trust setting in it is refused, naming the field, before any AWS
/// call), reads the deployed configuration document and pins its version, and
/// answers only the reference later tasks pass on (`$.config`: the input and
/// the version) and the wait plans: no configuration rides in the history.
fn preamble(function: Function, comment: &str, next: &str, failure: &str, extra: &[&str]) -> States {
    preamble_with(
        function,
        json!({"action": "begin", "input.$": "$$.Execution.Input"}),
        comment,
        next,
        failure,
        extra,
    )
}

/// [`preamble`] with `begin`'s whole `payload` given.
fn preamble_with(
    function: Function,
    payload: Value,
    comment: &str,
    next: &str,
    failure: &str,
    extra: &[&str],
) -> States {
    let mut selector = json!({"config.$": "$.Payload.config", "waits.$": "$.Payload.waits"});
    for field in extra {
        selector[format!("{field}.$")] = json!(format!("$.Payload.{field}"));
    }
    let mut states = States::new();
    states.add(
        VALIDATE,
        lambda(function, payload)
            .comment(comment)
            .selector(selector)
            .result_path("$")
            .catch(Catch::to(failure))
            .next(next)
            .build(),
    );
    states
}

const BEGIN_COMMENT: &str = "Checks the execution input (trust settings and unknown fields refused with InvalidInput naming the field) and the deployed configuration, pins the document version; before anything is made.";

const SNAPSHOT_FAILED: &str = "Snapshot failed";

/// The snapshot stage, shared by `snapshot` and `refresh`: create, wait until
/// available, prune understudy's older snapshots; then `then`. Errors go to
/// `failure`, which the caller adds.
fn snapshot_stage(then: &str, failure: &str) -> States {
    let mut states = States::new();
    states.add(
        "Create the snapshot",
        lambda(Function::Snapshot, run_payload("create", json!({})))
            .select(&["kind", "identifier", "arn", "source"])
            .result_path("$.snapshot")
            .catch(Catch::to(failure))
            .next("Start waiting for the snapshot")
            .build(),
    );
    states.extend(
        PollLoop {
            what: "for the snapshot".into(),
            kind: PollKind::Snapshot,
            check: "Check the snapshot".into(),
            choice: "Is the snapshot available?".into(),
            task: lambda(
                Function::Snapshot,
                config_payload(
                    "status",
                    json!({"snapshot": {"kind.$": "$.snapshot.kind", "identifier.$": "$.snapshot.identifier"}}),
                ),
            )
            .select(&["status", "progress", "available"])
            .result_path("$.snapshot_status")
            .catch(Catch::to(failure)),
            done: "$.snapshot_status.available".into(),
            then: "Prune older snapshots".into(),
            failure: failure.into(),
            look_first: false,
            choice_comment: None,
            gives_up_with: None,
        }
        .states(),
    );
    states.add(
        "Prune older snapshots",
        lambda(Function::Snapshot, config_payload("prune", json!({})))
            .select(&["kept", "deleted"])
            .result_path("$.pruned")
            .catch(Catch::to(failure))
            .next(then)
            .build(),
    );
    states
}

/// `snapshot`: a manual snapshot of the production database, then retention.
pub fn snapshot() -> Value {
    let mut states = preamble(Function::Snapshot, BEGIN_COMMENT, "Create the snapshot", SNAPSHOT_FAILED, &[]);
    states.extend(snapshot_stage("Report the snapshot", SNAPSHOT_FAILED));
    states
        .add(SNAPSHOT_FAILED, fail("Ends with the function's errorType (e.g. SourceNotFound) and message."));
    states.add(
        "Report the snapshot",
        report(
            "The execution's output: the snapshot and what was pruned, not the config (it holds the external id).",
            json!({"snapshot.$": "$.snapshot", "pruned.$": "$.pruned"}),
            "Snapshot is ready",
        ),
    );
    states.add("Snapshot is ready", succeed());
    machine(
        "understudy snapshot: take a manual snapshot of the production database, wait until it is available, prune understudy's older snapshots.",
        VALIDATE,
        states,
        0,
    )
}

const UNDO: &str = "Undo this run's changes";
const REFRESH_FAILED: &str = "Refresh failed";
/// The failure end's announcement, which every failure path reaches.
const ANNOUNCE_FAILURE: &str = "Announce the failure";
/// The failure path's first shared state: the run lock goes before the event.
const RELEASE_AFTER_FAILURE: &str = "Release the run lock after the failure";
/// Every machine that changes staging takes the lease here, after its config preamble.
const TAKE_LEASE: &str = "Take the run lock";
/// The refresh's first change: an interrupted swap repaired.
const REPAIR: &str = "Repair an interrupted swap";
/// The success path's release, before the event (a subscriber may start the next run).
const RELEASE: &str = "Release the run lock";
/// Post-swap failures: a sleeping staging started for the swap goes back to sleep.
const ASLEEP_BEFORE_FAILURE: &str = "Was staging asleep before the failure?";
const DATABASE_NOT_READY: &str = "The database is not ready";
const BUCKETS_NOT_COPIED: &str = "The buckets are not copied";

/// The refresh's stages, as `$.failed.stage` and the event's `stages` name them.
mod stage {
    pub const VALIDATE: &str = "validate";
    pub const GUARD_RAILS: &str = "guard-rails";
    pub const REPAIR: &str = "repair";
    pub const SNAPSHOT: &str = "snapshot";
    pub const DATABASE: &str = "database";
    pub const MIRROR_COPY: &str = "mirror-copy";
    pub const PREPARE: &str = "prepare";
    pub const SWAP: &str = "swap";
    pub const RETIRE: &str = "retire";
    pub const MIRROR_DELETE: &str = "mirror-delete";
    pub const SHARE_CLEANUP: &str = "share-cleanup";
    pub const WAKE: &str = "wake";
    pub const SLEEP: &str = "sleep";
    pub const MIGRATE: &str = "migrate";
    pub const RESTART: &str = "restart";
    pub const SMOKE: &str = "smoke";
    pub const PUBLISH: &str = "publish";
}

/// The `Pass` naming `stage` as failed, then `next`: its name.
fn note_failure(states: &mut States, stage: &str, next: &str) -> String {
    let name = format!("Note the failed {stage} stage");
    states.add(&name, failed_stage(stage, next));
    name
}

/// A restore-function status check of the database whose ref is at `database`.
fn database_status(database: &str, result_path: &str, failure: &str) -> Task {
    lambda(
        Function::Restore,
        config_payload(
            "status",
            json!({"database": {"kind.$": format!("{database}.kind"), "identifier.$": format!("{database}.identifier")}}),
        ),
    )
    .select(&["identifier", "status", "members", "available"])
    .result_path(result_path)
    .catch(Catch::to(failure))
}

/// A poll loop of the refresh, its failures (and its timeout) to `failure`.
#[allow(clippy::too_many_arguments)]
fn refresh_loop(
    what: &str,
    kind: PollKind,
    check: &str,
    choice: &str,
    task: Task,
    done: &str,
    then: &str,
    failure: &str,
) -> States {
    PollLoop {
        what: what.into(),
        kind,
        check: check.into(),
        choice: choice.into(),
        task,
        done: done.into(),
        then: then.into(),
        failure: failure.into(),
        look_first: false,
        choice_comment: None,
        gives_up_with: None,
    }
    .states()
}

/// The refresh's first branch: snapshot → share → staging copy → restore under
/// a temporary name → staging's password, ready to swap. It never fails: it
/// answers `{outcome: ready | failed, ...}` with what it made, so the undo after
/// the join sees the snapshot and the temporary database.
fn database_branch() -> Value {
    let failed = DATABASE_NOT_READY;
    let mut states = States::new();
    states.extend(snapshot_stage("Share the snapshot", "The snapshot was not taken"));
    states.add(
        "The snapshot was not taken",
        json!({
            "Type": "Pass",
            "Comment": "Nothing was shared or restored: the undo after the join has nothing of this branch to undo.",
            "Parameters": {"outcome": "failed", "stage": stage::SNAPSHOT, "error.$": "$.error", "finished.$": "$$.State.EnteredTime"},
            "End": true,
        }),
    );
    let snapshot_ref =
        json!({"snapshot": {"kind.$": "$.snapshot.kind", "identifier.$": "$.snapshot.identifier"}});
    states.add(
        "Share the snapshot",
        lambda(Function::Share, run_payload("share", snapshot_ref))
            .comment("Re-encrypts an aws/rds snapshot with the share key if needed (answers shared: false while the copy is made), then lets staging restore it.")
            .select(&["kind", "identifier", "arn", "shared", "copied"])
            .result_path("$.shared")
            .catch(Catch::to(failed))
            .next("Is the snapshot shared?")
            .build(),
    );
    states.add(
        "Is the snapshot shared?",
        when_true("$.shared.shared", "Copy the snapshot into staging", "Start waiting for the share copy"),
    );
    states.extend(refresh_loop(
        "for the share copy",
        PollKind::Snapshot,
        "Check the share copy",
        "Is the share copy available?",
        lambda(
            Function::Share,
            config_payload(
                "status",
                json!({"snapshot": {"kind.$": "$.shared.kind", "identifier.$": "$.shared.identifier"}}),
            ),
        )
        .select(&["status", "progress", "available"])
        .result_path("$.share_copy")
        .catch(Catch::to(failed)),
        "$.share_copy.available",
        "Share the snapshot",
        failed,
    ));
    states.add(
        "Copy the snapshot into staging",
        lambda(
            Function::Restore,
            run_payload(
                "copy",
                json!({"snapshot": {"kind.$": "$.shared.kind", "identifier.$": "$.shared.arn"}}),
            ),
        )
        .comment(
            "AWS restores a shared, encrypted instance snapshot only from a copy made with staging's key.",
        )
        .select(&["snapshot", "copied"])
        .result_path("$.restorable")
        .catch(Catch::to(failed))
        .next("Is a staging copy being made?")
        .build(),
    );
    states.add(
        "Is a staging copy being made?",
        when_true(
            "$.restorable.copied",
            "Start waiting for the staging copy",
            "Restore into a temporary database",
        ),
    );
    let restorable = json!({
        "snapshot": {"kind.$": "$.restorable.snapshot.kind", "identifier.$": "$.restorable.snapshot.identifier"}
    });
    states.extend(refresh_loop(
        "for the staging copy",
        PollKind::Snapshot,
        "Check the staging copy",
        "Is the staging copy available?",
        lambda(Function::Restore, config_payload("status", restorable.clone()))
            .select(&["status", "progress", "available"])
            .result_path("$.staging_copy")
            .catch(Catch::to(failed)),
        "$.staging_copy.available",
        "Restore into a temporary database",
        failed,
    ));
    states.add(
        "Restore into a temporary database",
        lambda(Function::Restore, run_payload("restore", restorable))
            .comment("Restores under <target>-new-<run> with staging's own settings (and a cluster's instances); live staging is untouched.")
            .select(&["database", "members"])
            .result_path("$.new")
            .catch(Catch::to(failed))
            .next("Start waiting for the restore")
            .build(),
    );
    states.extend(refresh_loop(
        "for the restore",
        PollKind::Database,
        "Check the restore",
        "Is the restored database available?",
        database_status("$.new.database", "$.new_status", failed),
        "$.new_status.available",
        "Give staging its own password",
        failed,
    ));
    states.add(
        "Give staging its own password",
        lambda(
            Function::Restore,
            run_payload(
                "prepare",
                json!({"database": {"kind.$": "$.new.database.kind", "identifier.$": "$.new.database.identifier"}}),
            ),
        )
        .comment("On the temporary database, before it goes live: staging's own master password, so production's never works on live staging. Post-restore SQL (PII masking) belongs here too.")
        .select(&["password"])
        .result_path("$.prepared")
        .catch(Catch::to(failed))
        .next("Start waiting for the password change")
        .build(),
    );
    states.extend(refresh_loop(
        "for the password change",
        PollKind::Database,
        "Check the prepared database",
        "Is the prepared database available?",
        database_status("$.new.database", "$.new_status", failed),
        "$.new_status.available",
        "The database is ready",
        failed,
    ));
    states.add(
        "The database is ready",
        json!({
            "Type": "Pass",
            "Comment": "The branch's answer: ready to swap, and what the swap, the undo and the share clean-up need.",
            "Parameters": {"outcome": "ready", "snapshot.$": "$.snapshot", "new.$": "$.new", "finished.$": "$$.State.EnteredTime"},
            "End": true,
        }),
    );
    states.add(
        failed,
        json!({
            "Type": "Pass",
            "Comment": "The branch's failure, with the snapshot it shared (for the clean-up); the undo after the join deletes this run's temporary database.",
            "Parameters": {"outcome": "failed", "stage": stage::DATABASE, "error.$": "$.error", "snapshot.$": "$.snapshot", "finished.$": "$$.State.EnteredTime"},
            "End": true,
        }),
    );
    json!({"StartAt": "Create the snapshot", "States": states.into_value()})
}

/// The refresh's second branch: the copy phase of every bucket pair the run
/// mirrors (inline `Map`, one iteration per bucket; `hold_deletes`, so nothing
/// is deleted before the swap). Answers `{outcome, copied: [{target, next, counts}]}`.
fn mirror_copy_branch() -> Value {
    let mut states = States::new();
    states.add(
        "Is there a bucket to mirror?",
        when_true("$.refresh.mirror", "Plan the mirror", "No bucket to mirror"),
    );
    states.add(
        "No bucket to mirror",
        json!({
            "Type": "Pass",
            "Parameters": {"outcome": "ready", "copied": [], "finished.$": "$$.State.EnteredTime"},
            "End": true,
        }),
    );
    states.add(
        "Plan the mirror",
        lambda(
            Function::Mirror,
            json!({"action": "plan", "config": {"input.$": "$$.Execution.Input"}, "shards": 1, "hold_deletes": true}),
        )
        .comment("One request per bucket pair the run mirrors; hold_deletes: the copy phase never deletes, the delete phase waits for the swap.")
        .select(&["requests"])
        .result_path("$.plan")
        .catch(Catch::to(BUCKETS_NOT_COPIED))
        .next("Copy every bucket")
        .build(),
    );
    let (copy_start, copy) = copy_phase("bucket", true);
    states.add(
        "Copy every bucket",
        MirrorMap {
            comment: None,
            items_path: "$.plan.requests",
            item_selector: json!({"request.$": "$$.Map.Item.Value"}),
            concurrency: 4,
            processor: json!({"Mode": "INLINE"}),
            start_at: &copy_start,
            states: copy,
            result_path: "$.copied",
            failure: BUCKETS_NOT_COPIED,
            next: "The buckets are copied",
        }
        .build(),
    );
    states.add(
        "The buckets are copied",
        json!({
            "Type": "Pass",
            "Parameters": {"outcome": "ready", "copied.$": "$.copied", "finished.$": "$$.State.EnteredTime"},
            "End": true,
        }),
    );
    states.add(
        BUCKETS_NOT_COPIED,
        json!({
            "Type": "Pass",
            "Comment": "Nothing was deleted: the delete phase runs only after the swap.",
            "Parameters": {"outcome": "failed", "stage": stage::MIRROR_COPY, "error.$": "$.error", "finished.$": "$$.State.EnteredTime"},
            "End": true,
        }),
    );
    json!({"StartAt": "Is there a bucket to mirror?", "States": states.into_value()})
}

/// Revokes the share and deletes this run's re-encrypted copy of the snapshot the database branch took.
fn share_cleanup() -> Task {
    lambda(
        Function::Share,
        run_payload(
            "cleanup",
            json!({"snapshot": {"kind.$": "$.database.snapshot.kind", "identifier.$": "$.database.snapshot.identifier"}}),
        ),
    )
    .select(&["revoked", "deleted"])
    .result_path("$.share_cleanup")
}

/// The state after the join, rebuilt with `extra` fields (a failed branch's error).
fn after_the_join(extra: Value) -> Value {
    let mut parameters = json!({
        "config.$": "$.config",
        "waits.$": "$.waits",
        "refresh.$": "$.refresh",
        "clock.$": "$.clock",
        "live.$": "$.live",
        "database.$": "$.database",
        "mirror.$": "$.mirror",
    });
    if let (Value::Object(parameters), Value::Object(extra)) = (&mut parameters, extra) {
        parameters.extend(extra);
    }
    parameters
}

/// scale-to-zero's `status`, for a loop that waits until the services are stable.
fn services_status(failed: &str) -> Task {
    lambda(Function::ScaleToZero, config_payload("status", json!({})))
        .select(&["state", "databases_available", "services_stable", "resources"])
        .result_path("$.status")
        .catch(Catch::to(failed))
}

/// The wake stage, shared by `wake` and `refresh` (`refresh.after: awake`):
/// databases first, then services until woken, then until stable; then `then`.
fn wake_stage(then: &str, failed: &str) -> States {
    let mut states = States::new();
    states.extend(
        PollLoop {
            what: "for the databases".into(),
            kind: PollKind::Database,
            check: "Wake the databases".into(),
            choice: "Are the databases available?".into(),
            task: wake_phase(
                "databases",
                "RDS instances and Aurora clusters first: services that start before their database fail their health checks. Idempotent: called again until they are available.",
                "$.databases",
                failed,
            ),
            done: "$.databases.databases_available".into(),
            then: "Start waiting before waking the services again".into(),
            failure: failed.into(),
            look_first: true,
            choice_comment: None,
            gives_up_with: None,
        }
        .states(),
    );
    states.extend(
        PollLoop {
            what: "before waking the services again".into(),
            kind: PollKind::Service,
            check: "Wake the services".into(),
            choice: "Are the services woken?".into(),
            task: wake_phase(
                "services",
                "ECS services, Auto Scaling groups and EC2 instances, back to the capacity remembered on each; a service changed by hand while asleep is kept as set (changed-while-asleep).",
                "$.services",
                failed,
            ),
            done: "$.services.settled".into(),
            then: "Start waiting for the services".into(),
            failure: failed.into(),
            look_first: true,
            choice_comment: Some("settled is false while a resource could not be woken yet (e.g. an instance still stopping): wake it again.".into()),
            gives_up_with: None,
        }
        .states(),
    );
    states.extend(
        PollLoop {
            what: "for the services".into(),
            kind: PollKind::Service,
            check: "Check the services".into(),
            choice: "Are the services stable?".into(),
            task: services_status(failed),
            done: "$.status.services_stable".into(),
            then: then.into(),
            failure: failed.into(),
            look_first: false,
            choice_comment: Some("Stable: every ECS service runs its desired count with nothing pending, every Auto Scaling group has its desired instances InService, every EC2 instance is running.".into()),
            gives_up_with: None,
        }
        .states(),
    );
    states
}

/// `refresh`: production's data into staging's database and buckets. Both are
/// prepared side by side, and live staging changes only when both are ready:
/// the database swapped in (staging is never left without one), then the
/// mirror's deletes. Then staging ends as before or awake, smoke-tested, and
/// the run is announced.
pub fn refresh() -> Value {
    let mut states = States::new();
    // Before the lease is taken there is nothing to release (and no AWS call to make).
    let before_the_lease = note_failure(&mut states, stage::VALIDATE, ANNOUNCE_FAILURE);
    let publish_failed = note_failure(&mut states, stage::PUBLISH, RELEASE_AFTER_FAILURE);
    states.extend(preamble(Function::Snapshot, BEGIN_COMMENT, TAKE_LEASE, &before_the_lease, &["refresh"]));
    states.extend(take_lease_states(TAKE_LEASE, "Announce the start", &before_the_lease));
    let repair_failed = note_failure(&mut states, stage::REPAIR, RELEASE_AFTER_FAILURE);
    states.add(
        REPAIR,
        lambda(Function::Restore, run_payload("repair", json!({"execution.$": "$$.Execution.Id"})))
            .comment("The first change: a run aborted between its two renames left no database under the target name; the only retired database of an ended run is renamed back (check has applied the guard rails to it).")
            .select(&["repaired", "database"])
            .result_path("$.repair")
            .catch(Catch::to(&repair_failed))
            .next("Was the swap repaired?")
            .build(),
    );
    states.add(
        "Was the swap repaired?",
        when_true(
            "$.repair.repaired",
            "Start waiting for the repaired database",
            "Note the start of the preparations",
        ),
    );
    states.extend(refresh_loop(
        "for the repaired database",
        PollKind::Database,
        "Check the repaired database",
        "Is the repaired database back?",
        database_status("$.repair.database", "$.repair_status", &repair_failed),
        "$.repair_status.available",
        "Note the start of the preparations",
        &repair_failed,
    ));
    states.extend(announce_states(
        Lifecycle::RefreshStarted,
        "Announce the start",
        "Publish Refresh Started",
        Catch::to(&publish_failed),
        "Check the guard rails",
    ));
    let guard_rails_failed = note_failure(&mut states, stage::GUARD_RAILS, RELEASE_AFTER_FAILURE);
    states.add(
        "Check the guard rails",
        lambda(Function::Restore, run_payload("check", json!({})))
            .comment("Read-only: refuses a live staging database that is untagged, the source or in production, before anything is made.")
            .select(&["target", "exists", "asleep"])
            .result_path("$.live")
            .catch(Catch::to(&guard_rails_failed))
            .next(REPAIR)
            .build(),
    );
    states.add(
        "Note the start of the preparations",
        json!({
            "Type": "Pass",
            "Parameters": {"preparing.$": "$$.State.EnteredTime"},
            "ResultPath": "$.clock",
            "Next": "Prepare the database and the buckets",
        }),
    );
    let prepare_failed = note_failure(&mut states, stage::PREPARE, UNDO);
    states.add(
        "Prepare the database and the buckets",
        json!({
            "Type": "Parallel",
            "Comment": "Neither branch touches live staging. Each catches its own errors and answers an outcome, so this state succeeds and the choice after it sees both branches' results (a failed Parallel's Catch would see only its input).",
            "Branches": [database_branch(), mirror_copy_branch()],
            "ResultPath": "$.branches",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": prepare_failed}],
            "Next": "Collect the preparations",
        }),
    );
    states.add(
        "Collect the preparations",
        json!({
            "Type": "Pass",
            "Parameters": {
                "config.$": "$.config",
                "waits.$": "$.waits",
                "refresh.$": "$.refresh",
                "clock": {"preparing.$": "$.clock.preparing", "joined.$": "$$.State.EnteredTime"},
                "live.$": "$.live",
                "database.$": "$.branches[0]",
                "mirror.$": "$.branches[1]",
            },
            "Next": "Are both ready?",
        }),
    );
    states.add(
        "Are both ready?",
        json!({
            "Type": "Choice",
            "Comment": "Live staging changes only when both branches are ready.",
            "Choices": [
                {"And": [
                    {"Variable": "$.database.outcome", "StringEquals": "ready"},
                    {"Variable": "$.mirror.outcome", "StringEquals": "ready"},
                ], "Next": "Wake the live database if asleep"},
                {"Variable": "$.database.outcome", "StringEquals": "failed", "Next": "Take the database's error"},
            ],
            "Default": "Take the mirror's error",
        }),
    );
    for (name, branch) in [("Take the database's error", "database"), ("Take the mirror's error", "mirror")] {
        states.add(
            name,
            json!({
                "Type": "Pass",
                "Parameters": after_the_join(json!({
                    "error.$": format!("$.{branch}.error"),
                    "failed": {"stage.$": format!("$.{branch}.stage")},
                })),
                "Next": UNDO,
            }),
        );
    }

    // The swap: the only changes to live staging's database.
    let swap_failed = note_failure(&mut states, stage::SWAP, UNDO);
    states.add(
        "Wake the live database if asleep",
        lambda(Function::Restore, run_payload("wake-live", json!({})))
            .comment("A stopped database cannot be renamed: a sleeping staging is started for the swap and, unless refresh.after is awake, put back to sleep at the end.")
            .select(&["was_asleep", "database"])
            .result_path("$.wake")
            .catch(Catch::to(&swap_failed))
            .next("Was the live database asleep?")
            .build(),
    );
    states.add(
        "Was the live database asleep?",
        when_true(
            "$.wake.was_asleep",
            "Start waiting for the live database",
            "Rename the live database aside",
        ),
    );
    states.extend(refresh_loop(
        "for the live database",
        PollKind::Database,
        "Check the live database",
        "Is the live database awake?",
        database_status("$.wake.database", "$.live_status", &swap_failed),
        "$.live_status.available",
        "Rename the live database aside",
        &swap_failed,
    ));
    states.add(
        "Rename the live database aside",
        lambda(Function::Restore, run_payload("swap", json!({"step": "aside"})))
            .comment("First rename: the live database to <target>-retired-<run>. A failure from here until the second rename completes renames it back.")
            .select(&["renamed", "database"])
            .result_path("$.aside")
            .catch(Catch::to(&swap_failed))
            .next("Was the live database renamed?")
            .build(),
    );
    states.add(
        "Was the live database renamed?",
        when_true(
            "$.aside.renamed",
            "Start waiting for the rename aside",
            "Rename the new database into place",
        ),
    );
    states.extend(refresh_loop(
        "for the rename aside",
        PollKind::Database,
        "Check the rename aside",
        "Is the rename aside done?",
        database_status("$.aside.database", "$.retired_status", &swap_failed),
        "$.retired_status.available",
        "Rename the new database into place",
        &swap_failed,
    ));
    states.add(
        "Rename the new database into place",
        lambda(Function::Restore, run_payload("swap", json!({"step": "in"})))
            .comment(
                "Second rename: the new database to the target identifier, once AWS has released the name.",
            )
            .select(&["renamed", "database"])
            .result_path("$.swapped")
            .catch(Catch::to(&swap_failed))
            .next("Start waiting for the rename into place")
            .build(),
    );
    states.extend(refresh_loop(
        "for the rename into place",
        PollKind::Database,
        "Check the rename into place",
        "Is the new database live?",
        database_status("$.swapped.database", "$.live_status", &swap_failed),
        "$.live_status.available",
        "Retire the old database",
        &swap_failed,
    ));

    // After the swap the new database stays live whatever fails.
    let retire_failed = note_failure(&mut states, stage::RETIRE, ASLEEP_BEFORE_FAILURE);
    states.add(
        "Retire the old database",
        lambda(Function::Restore, run_payload("retire", json!({"execution.$": "$$.Execution.Id"})))
            .comment("Deletes this run's retired database and those of ended runs (a running run's stays for its undo). A failure from here on leaves the new database live.")
            .select(&["deleted", "kept"])
            .result_path("$.retired")
            .catch(Catch::to(&retire_failed))
            .next("Note the swap")
            .build(),
    );
    states.add("Note the swap", clock_mark("swapped", "Delete the extras of every bucket"));
    let delete_failed = note_failure(&mut states, stage::MIRROR_DELETE, ASLEEP_BEFORE_FAILURE);
    let (delete_start, delete) = delete_phase("bucket", true);
    states.add(
        "Delete the extras of every bucket",
        MirrorMap {
            comment: Some("Only now: the database is swapped in, so staging's objects match the data that refers to them."),
            items_path: "$.mirror.copied",
            item_selector: delete_items(true),
            concurrency: 4,
            processor: json!({"Mode": "INLINE"}),
            start_at: &delete_start,
            states: delete,
            result_path: "$.mirrored",
            failure: &delete_failed,
            next: "Note the deletes",
        }
        .build(),
    );
    states.add("Note the deletes", clock_mark("deleted", "Revoke the share"));
    let cleanup_failed = note_failure(&mut states, stage::SHARE_CLEANUP, ASLEEP_BEFORE_FAILURE);
    states.add(
        "Revoke the share",
        share_cleanup()
        .comment("Revokes staging's access and deletes this run's re-encrypted copy; understudy's snapshot itself stays for retention.")
        .catch(Catch::to(&cleanup_failed))
        .next("How does staging end?")
        .build(),
    );

    // Staging's wanted state: as before, or awake.
    states.add(
        "How does staging end?",
        json!({
            "Type": "Choice",
            "Comment": "refresh.after: awake wakes a sleeping staging; as-before puts one the swap started back to sleep.",
            "Choices": [
                {"Variable": "$.refresh.awake", "BooleanEquals": true, "Next": "Start waiting for the databases"},
                {"Variable": "$.wake.was_asleep", "BooleanEquals": true, "Next": "Put staging back to sleep"},
            ],
            "Default": "Is there a migration?",
        }),
    );
    let wake_failed = note_failure(&mut states, stage::WAKE, RELEASE_AFTER_FAILURE);
    states.extend(wake_stage("Is there a migration?", &wake_failed));
    let sleep_failed = note_failure(&mut states, stage::SLEEP, RELEASE_AFTER_FAILURE);
    states.add(
        "Put staging back to sleep",
        lambda(Function::Restore, run_payload("return-to-sleep", json!({})))
            .select(&["stopped"])
            .result_path("$.slept")
            .catch(Catch::to(&sleep_failed))
            .next("Note the return to sleep")
            .build(),
    );
    states.add("Note the return to sleep", clock_mark("settled", "Skip the smoke test"));
    states.add(
        "Skip the smoke test",
        json!({
            "Type": "Pass",
            "Comment": "A sleeping staging answers no request: the event says the smoke test was skipped.",
            "Result": "staging is asleep",
            "ResultPath": "$.smoke_skipped",
            "Next": RELEASE,
        }),
    );
    let migrate_failed = note_failure(&mut states, stage::MIGRATE, RELEASE_AFTER_FAILURE);
    states.add(
        "Is there a migration?",
        json!({
            "Type": "Choice",
            "Comment": "refresh.migrate (an HTTP request) or refresh.migrate_task (an ECS task); never both.",
            "Choices": [
                {"Variable": "$.refresh.migrate", "BooleanEquals": true, "Next": "Run the migrations"},
                {"Variable": "$.refresh.migrate_task", "BooleanEquals": true, "Next": "Run the migration task"},
            ],
            "Default": "Restart the services?",
        }),
    );
    states.add(
        "Run the migration task",
        lambda(Function::ScaleToZero, run_payload("run-migration-task", json!({})))
            .comment("RunTask of refresh.migrate_task once (its client token derives from the run), after checking that the cluster and the task definition carry the staging tag.")
            .select(&["cluster", "task_arn"])
            .result_path("$.migration_task")
            .catch(Catch::to(&migrate_failed))
            .next("Start waiting for the migration task")
            .build(),
    );
    states.extend(
        PollLoop {
            what: "for the migration task".into(),
            kind: PollKind::Service,
            check: "Check the migration task".into(),
            choice: "Has the migration task exited?".into(),
            task: lambda(
                Function::ScaleToZero,
                config_payload(
                    "migration-task-status",
                    json!({"task": {"cluster.$": "$.migration_task.cluster", "task_arn.$": "$.migration_task.task_arn"}}),
                ),
            )
            .select(&["status", "stopped"])
            .result_path("$.migration_status")
            .catch(Catch::to(&migrate_failed)),
            done: "$.migration_status.stopped".into(),
            then: "Restart the services?".into(),
            failure: migrate_failed.clone(),
            look_first: false,
            choice_comment: Some("stopped: the task ended with every essential container at exit code 0 (any other exit is MigrationFailed).".into()),
            gives_up_with: None,
        }
        .states(),
    );
    states.add(
        "Run the migrations",
        lambda(Function::SmokeTest, config_payload("migrate", json!({})))
            .comment("refresh.migrate: one request, sent once (never retried: a migration need not be idempotent); MigrationFailed unless its answer satisfies expect.")
            .select(&["name", "status", "latency_ms"])
            .result_path("$.migrated")
            .catch(Catch::to(&migrate_failed))
            .next("Restart the services?")
            .build(),
    );
    let restart_failed = note_failure(&mut states, stage::RESTART, RELEASE_AFTER_FAILURE);
    states.add(
        "Restart the services?",
        when_true("$.refresh.restart", "Restart the services", "Note the settled staging"),
    );
    states.add(
        "Restart the services",
        lambda(Function::ScaleToZero, config_payload("restart", json!({})))
            .comment("refresh.restart_services: a new deployment of every awake staging service, so apps that cache database connections reconnect to the new database.")
            .select(&["restarted", "restarted_left_out", "at_zero"])
            .result_path("$.restarted")
            .catch(Catch::to(&restart_failed))
            .next("Start waiting for the restarted services")
            .build(),
    );
    states.extend(
        PollLoop {
            what: "for the restarted services".into(),
            kind: PollKind::Service,
            check: "Check the restarted services".into(),
            choice: "Are the restarted services stable?".into(),
            task: services_status(&restart_failed),
            done: "$.status.services_stable".into(),
            then: "Note the settled staging".into(),
            failure: restart_failed.clone(),
            look_first: false,
            choice_comment: Some("Stable: every new deployment has replaced its old tasks.".into()),
            gives_up_with: None,
        }
        .states(),
    );
    states.add("Note the settled staging", clock_mark("settled", SMOKE_START));
    let smoke_failed = note_failure(&mut states, stage::SMOKE, RELEASE_AFTER_FAILURE);
    states.extend(smoke_stage("Note the smoke test", &smoke_failed));
    states.add("Note the smoke test", clock_mark("verified", RELEASE));
    states.add(RELEASE, release_lease("Announce the refresh"));
    states.extend(announce_states(
        Lifecycle::RefreshSucceeded,
        "Announce the refresh",
        "Publish Refresh Succeeded",
        Catch::to(&publish_failed),
        "Report the refresh",
    ));
    states.add(
        "Report the refresh",
        report(
            "The execution output: what changed and the event's summary, without the config (it holds the external id).",
            json!({
                "snapshot.$": "$.database.snapshot",
                "database.$": "$.swapped.database",
                "retired.$": "$.retired.deleted",
                "was_asleep.$": "$.wake.was_asleep",
                "share.$": "$.share_cleanup",
                "mirrored.$": "$.mirrored",
                "summary.$": "$.announced.detail",
            }),
            "Staging is refreshed",
        ),
    );
    states.add("Staging is refreshed", succeed());

    // The failure path: undo, back to sleep, clean up the share, announce, fail with the cause.
    states.add(
        UNDO,
        lambda(Function::Restore, run_payload("undo", json!({})))
            .comment("Before the swap: deletes what this run made, live staging untouched. Between the renames: renames the live database back.")
            .select(&["renamed_back", "deleted"])
            .result_path("$.undo")
            .catch(Catch::keeping(ASLEEP_BEFORE_FAILURE, "$.undo_error"))
            .next(ASLEEP_BEFORE_FAILURE)
            .build(),
    );
    states.add(
        ASLEEP_BEFORE_FAILURE,
        json!({
            "Type": "Choice",
            "Comment": "A sleeping staging started for the swap goes back to sleep whatever failed.",
            "Choices": [{
                "And": [
                    {"Variable": "$.wake.was_asleep", "IsPresent": true},
                    {"Variable": "$.wake.was_asleep", "BooleanEquals": true},
                ],
                "Next": "Put staging back to sleep after the failure",
            }],
            "Default": "Was a snapshot shared?",
        }),
    );
    states.add(
        "Put staging back to sleep after the failure",
        lambda(Function::Restore, run_payload("return-to-sleep", json!({})))
            .select(&["stopped"])
            .result_path("$.slept")
            .catch(Catch::keeping("Was a snapshot shared?", "$.sleep_error"))
            .next("Was a snapshot shared?")
            .build(),
    );
    states.add(
        "Was a snapshot shared?",
        json!({
            "Type": "Choice",
            "Choices": [{"Variable": "$.database.snapshot", "IsPresent": true, "Next": "Clean up the share"}],
            "Default": RELEASE_AFTER_FAILURE,
        }),
    );
    states.add(
        "Clean up the share",
        share_cleanup()
            .select(&["revoked", "deleted"])
            .result_path("$.share_cleanup")
            .catch(Catch::keeping(RELEASE_AFTER_FAILURE, "$.cleanup_error"))
            .next(RELEASE_AFTER_FAILURE)
            .build(),
    );
    states.add(RELEASE_AFTER_FAILURE, release_lease(ANNOUNCE_FAILURE));
    states.extend(announce_states(
        Lifecycle::RefreshFailed,
        ANNOUNCE_FAILURE,
        "Publish Refresh Failed",
        Catch::keeping(REFRESH_FAILED, "$.announce_error"),
        REFRESH_FAILED,
    ));
    states.add(REFRESH_FAILED, fail("Ends with the failing step's errorType and message."));
    machine(
        "understudy refresh: snapshot production and restore it under a temporary name with staging's settings and password, while the mirror copies production's buckets into staging's; only when both are ready, swap the database in with two renames and delete the buckets' extras; then staging ends as before or awake (migrations, smoke test), and Refresh Succeeded is published. A failure undoes what the run made, leaves a usable staging database under the target name, and publishes Refresh Failed.",
        VALIDATE,
        states,
        2 * INLINE_MIRROR_SECONDS,
    )
}

const MIRROR_FAILED: &str = "Mirror failed";
/// A mirror's continuation loop is bounded by the work left, not by a poll
/// count: these are its share of the `TimeoutSeconds` backstop.
const INLINE_MIRROR_SECONDS: u64 = 24 * 3600;
const DISTRIBUTED_MIRROR_SECONDS: u64 = 7 * 24 * 3600;
fn plan(shards: Value, hold_deletes: bool, next: &str) -> Value {
    lambda(
        Function::Mirror,
        json!({"action": "plan", "config": {"input.$": "$$.Execution.Input"}, "shards": shards, "hold_deletes": hold_deletes}),
    )
    .comment("Checks the execution input (buckets: which deployed staging buckets, dry_run; trust settings refused with InvalidInput naming the field) and turns each deployed bucket pair into the first mirror request of each key range.")
    .select(&["requests"])
    .result_path("$.plan")
    .catch(Catch::to(MIRROR_FAILED))
    .next(next)
    .build()
}

/// One mirror step of the request at `$.request`; the `Map`'s `Catch` handles errors.
fn mirror_step(comment: &str, next: &str) -> Value {
    lambda(Function::Mirror, json!("$.request"))
        .comment(comment)
        .select(&["done", "phase", "phase_done", "counts", "next"])
        .result_path("$.step")
        .next(next)
        .build()
}

fn go_on(next: &str) -> Value {
    json!({
        "Type": "Pass",
        "Comment": "The next request carries the resume token.",
        "Parameters": {"request.$": "$.step.next"},
        "Next": next,
    })
}

/// The copy phase of one unit of a `Map` (`bucket` or `range`): steps until
/// the phase is done, then hands on the delete-phase request (`next`, null when
/// there is nothing to delete) and the counts, and the target bucket when
/// `with_target`. Answers the start state and the states.
fn copy_phase(unit: &str, with_target: bool) -> (String, States) {
    let step = format!("Copy a {unit} step");
    let (choice, again, copied) = (
        format!("Is the {unit} copied?"),
        format!("Go on copying the {unit} where the step stopped"),
        format!("{} copied", capitalized(unit)),
    );
    let mut states = States::new();
    states.add(&step, mirror_step(&format!("The copy phase of one {unit}; nothing is deleted."), &choice));
    states.add(&choice, when_true("$.step.phase_done", &copied, &again));
    states.add(&again, go_on(&step));
    let mut handed_on = json!({"next.$": "$.step.next", "counts.$": "$.step.counts"});
    if with_target {
        handed_on["target.$"] = json!("$.request.target.bucket");
    }
    states.add(
        &copied,
        json!({
            "Type": "Pass",
            "Comment": format!("Hands on the {unit}'s delete-phase request (null when there is nothing to delete)."),
            "Parameters": handed_on,
            "End": true,
        }),
    );
    (step, states)
}

/// The delete phase of one unit that [`copy_phase`] handed on (items from [`delete_items`]).
fn delete_phase(unit: &str, with_target: bool) -> (String, States) {
    let (anything, without, step, choice, again, mirrored) = (
        format!("Anything to delete in the {unit}?"),
        format!("{} mirrored without deleting", capitalized(unit)),
        format!("Delete a {unit} step"),
        format!("Is the {unit} mirrored?"),
        format!("Go on deleting in the {unit} where the step stopped"),
        format!("{} mirrored", capitalized(unit)),
    );
    let ended = |counts: &str| {
        let mut parameters = json!({"counts.$": counts});
        if with_target {
            parameters["target.$"] = json!("$.target");
        }
        json!({"Type": "Pass", "Parameters": parameters, "End": true})
    };
    let mut states = States::new();
    states.add(
        &anything,
        json!({
            "Type": "Choice",
            "Choices": [{"Variable": "$.request", "IsNull": true, "Next": without}],
            "Default": step,
        }),
    );
    states.add(&without, ended("$.counts"));
    states.add(&step, mirror_step(&format!("The delete phase of one {unit}: its extras."), &choice));
    states.add(&choice, when_true("$.step.done", &mirrored, &again));
    states.add(&again, go_on(&step));
    states.add(&mirrored, ended("$.step.counts"));
    (anything, states)
}

/// The delete `Map`'s items: what [`copy_phase`] handed on.
fn delete_items(with_target: bool) -> Value {
    let mut items = json!({"request.$": "$$.Map.Item.Value.next", "counts.$": "$$.Map.Item.Value.counts"});
    if with_target {
        items["target.$"] = json!("$$.Map.Item.Value.target");
    }
    items
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// A `Map` over mirror requests, its failures to `failure`.
struct MirrorMap<'a> {
    comment: Option<&'static str>,
    items_path: &'static str,
    item_selector: Value,
    concurrency: u32,
    processor: Value,
    start_at: &'a str,
    states: States,
    result_path: &'static str,
    failure: &'a str,
    next: &'static str,
}

impl MirrorMap<'_> {
    fn build(self) -> Value {
        let mut state = json!({
            "Type": "Map",
            "ItemsPath": self.items_path,
            "ItemSelector": self.item_selector,
            "MaxConcurrency": self.concurrency,
            "ItemProcessor": {"ProcessorConfig": self.processor, "StartAt": self.start_at, "States": self.states.into_value()},
            "ResultPath": self.result_path,
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": self.failure}],
            "Next": self.next,
        });
        if let Some(comment) = self.comment {
            state = with_comment(state, comment);
        }
        state
    }
}

fn mirror_ends(states: &mut States, report_comment: &str, output: Value) {
    states.add("Report the mirror", report(report_comment, output, "Buckets are mirrored"));
    states.add("Buckets are mirrored", succeed());
    states.add(
        MIRROR_FAILED,
        fail("Ends with the function's errorType (e.g. GuardRailViolation) and message. Nothing is deleted after an error."),
    );
}

/// `mirror`: every configured bucket pair, one inline `Map` iteration each.
pub fn mirror() -> Value {
    let mut states = States::new();
    states.add("Plan one range per bucket", plan(json!(1), false, "Mirror each bucket"));
    let mut each = States::new();
    each.add(
        "Mirror a step",
        mirror_step(
            "Copy phase until done, then delete phase until done (the function moves on to the delete phase only after the copy phase finished without error).",
            "Is the bucket mirrored?",
        ),
    );
    each.add(
        "Is the bucket mirrored?",
        when_true("$.step.done", "Bucket mirrored", "Go on where the step stopped"),
    );
    each.add("Go on where the step stopped", go_on("Mirror a step"));
    each.add(
        "Bucket mirrored",
        json!({
            "Type": "Pass",
            "Parameters": {"source.$": "$.request.source", "target.$": "$.request.target", "counts.$": "$.step.counts"},
            "End": true,
        }),
    );
    states.add(
        "Mirror each bucket",
        MirrorMap {
            comment: None,
            items_path: "$.plan.requests",
            item_selector: json!({"request.$": "$$.Map.Item.Value"}),
            concurrency: 4,
            processor: json!({"Mode": "INLINE"}),
            start_at: "Mirror a step",
            states: each,
            result_path: "$.mirrored",
            failure: MIRROR_FAILED,
            next: "Report the mirror",
        }
        .build(),
    );
    mirror_ends(
        &mut states,
        "The execution's output: what each bucket's mirror did.",
        json!({"buckets.$": "$.mirrored"}),
    );
    machine(
        "understudy mirror: make each deployed staging bucket (MirrorBuckets, or those the input chose) an exact copy of its production bucket. Per bucket, the copy phase runs until done, then the delete phase until done; each step stops before the Lambda deadline and hands on a resume token.",
        "Plan one range per bucket",
        states,
        INLINE_MIRROR_SECONDS,
    )
}

/// `mirror-distributed`: key ranges over Distributed Maps, deletes only after
/// every range's copy phase succeeded.
pub fn mirror_distributed() -> Value {
    let distributed = json!({"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"});
    let mut states = States::new();
    states.add("Plan key ranges", plan(json!("${MirrorShards}"), true, "Copy every range"));
    let (copy_start, copy) = copy_phase("range", false);
    states.add(
        "Copy every range",
        MirrorMap {
            comment: Some("ItemsPath over the planned ranges (moto's engine rejects ItemBatcher; this runs the same on AWS)."),
            items_path: "$.plan.requests",
            item_selector: json!({"request.$": "$$.Map.Item.Value"}),
            concurrency: 16,
            processor: distributed.clone(),
            start_at: &copy_start,
            states: copy,
            result_path: "$.copied",
            failure: MIRROR_FAILED,
            next: "Delete the extras of every range",
        }
        .build(),
    );
    let (delete_start, delete) = delete_phase("range", false);
    states.add(
        "Delete the extras of every range",
        MirrorMap {
            comment: None,
            items_path: "$.copied",
            item_selector: delete_items(false),
            concurrency: 16,
            processor: distributed,
            start_at: &delete_start,
            states: delete,
            result_path: "$.mirrored",
            failure: MIRROR_FAILED,
            next: "Report the mirror",
        }
        .build(),
    );
    mirror_ends(
        &mut states,
        "The execution's output: the counts of every key range.",
        json!({"ranges.$": "$.mirrored"}),
    );
    machine(
        "understudy mirror, fanned out for very large buckets: a planning step cuts each bucket into key ranges, a Distributed Map copies every range, and only when every range's copy phase has succeeded a second Distributed Map deletes the extras of every range.",
        "Plan key ranges",
        states,
        DISTRIBUTED_MIRROR_SECONDS,
    )
}

fn scale_failed() -> Value {
    fail("Ends with the function's errorType (e.g. GuardRailViolation) and message.")
}

/// `sleep`: optionally only when idle, then everything selected scaled to zero.
pub fn sleep() -> Value {
    let failed = "Sleep failed";
    let announce_failure = "Announce the failed sleep";
    let mut states =
        preamble(Function::ScaleToZero, BEGIN_COMMENT, TAKE_LEASE, announce_failure, &["idle_check"]);
    states.extend(take_lease_states(TAKE_LEASE, "Is the idle check on?", announce_failure));
    states.add(
        "Is the idle check on?",
        when_true("$.idle_check", "Check whether staging is idle", "Start waiting for staging to settle"),
    );
    states.add(
        "Check whether staging is idle",
        lambda(Function::ScaleToZero, config_payload("check-idle", json!({})))
            .comment("Reads the metric's statistic over the last config.scale.idle.minutes (CloudWatch GetMetricData); no datapoints counts as 0.")
            .select(&["idle", "value", "datapoints", "namespace", "metric", "statistic", "minutes", "threshold"])
            .result_path("$.idle")
            .catch(Catch::to(RELEASE_AFTER_FAILURE))
            .next("Is staging idle?")
            .build(),
    );
    states.add(
        "Is staging idle?",
        with_comment(
            when_true(
                "$.idle.idle",
                "Start waiting for staging to settle",
                "Release the run lock of the busy staging",
            ),
            "Only an idle staging is put to sleep.",
        ),
    );
    states.add("Release the run lock of the busy staging", release_lease("Report staying awake"));
    states.add(
        "Report staying awake",
        report(
            "The execution's output: the idle check's figures.",
            json!({"idle.$": "$.idle"}),
            "Busy: staying awake",
        ),
    );
    states.add("Busy: staying awake", succeed());
    states.extend(
        PollLoop {
            what: "for staging to settle".into(),
            kind: PollKind::Database,
            check: "Put staging to sleep".into(),
            choice: "Is staging settled?".into(),
            task: lambda(Function::ScaleToZero, config_payload("sleep", json!({})))
                .comment("Idempotent: what is already asleep is left alone and its remembered capacity is never overwritten; settled is false while a resource cannot be put to sleep yet (a database starting or modifying).")
                .select(&["state", "settled", "counts", "resources"])
                .result_path("$.sleep")
                .catch(Catch::to(RELEASE_AFTER_FAILURE)),
            done: "$.sleep.settled".into(),
            then: RELEASE.into(),
            failure: RELEASE_AFTER_FAILURE.into(),
            look_first: true,
            choice_comment: None,
            gives_up_with: None,
        }
        .states(),
    );
    states.add(
        "Report the sleep",
        report(
            "The execution's output: what each resource did, not the config.",
            json!({"sleep.$": "$.sleep"}),
            "Staging is asleep",
        ),
    );
    states.add("Staging is asleep", succeed());
    states.add(RELEASE, release_lease("Announce the sleep"));
    states.extend(announce_states(
        Lifecycle::EnvironmentSlept,
        "Announce the sleep",
        "Publish Environment Slept",
        Catch::to(RELEASE_AFTER_FAILURE),
        "Report the sleep",
    ));
    states.add(RELEASE_AFTER_FAILURE, release_lease(announce_failure));
    states.extend(announce_states(
        Lifecycle::SleepFailed,
        announce_failure,
        "Publish Sleep Failed",
        Catch::keeping(failed, "$.announce_error"),
        failed,
    ));
    states.add(failed, scale_failed());
    machine(
        "understudy sleep: optionally check that staging is idle, then scale it to zero (ECS services, Auto Scaling groups, EC2 instances, RDS and Aurora databases), remembering on each resource what wake restores. Calls sleep again until every resource has settled, then publishes Environment Slept (Sleep Failed on any failure).",
        VALIDATE,
        states,
        0,
    )
}

fn wake_phase(phase: &str, comment: &str, result_path: &str, failed: &str) -> Task {
    lambda(Function::ScaleToZero, config_payload("wake", json!({"phase": phase})))
        .comment(comment)
        .select(&["phase", "state", "settled", "databases_available", "counts", "resources"])
        .result_path(result_path)
        .catch(Catch::to(failed))
}

/// `wake`: databases first, then services, until stable, then the smoke test.
pub fn wake() -> Value {
    let failed = "Wake failed";
    let announce_failure = "Announce the failed wake";
    let mut states = preamble(Function::ScaleToZero, BEGIN_COMMENT, TAKE_LEASE, announce_failure, &[]);
    states.extend(take_lease_states(TAKE_LEASE, "Start waiting for the databases", announce_failure));
    states.extend(wake_stage(SMOKE_START, RELEASE_AFTER_FAILURE));
    states.extend(smoke_stage(RELEASE, RELEASE_AFTER_FAILURE));
    states.add(RELEASE, release_lease("Announce the wake"));
    states.extend(announce_states(
        Lifecycle::EnvironmentWoke,
        "Announce the wake",
        "Publish Environment Woke",
        Catch::to(RELEASE_AFTER_FAILURE),
        "Report the wake",
    ));
    states.add(
        "Report the wake",
        report(
            "The execution's output: what each phase did, the final status and the smoke test's report, not the config.",
            json!({"databases.$": "$.databases", "services.$": "$.services", "status.$": "$.status", "smoke.$": "$.smoke"}),
            "Staging is awake",
        ),
    );
    states.add("Staging is awake", succeed());
    states.add(RELEASE_AFTER_FAILURE, release_lease(announce_failure));
    states.extend(announce_states(
        Lifecycle::WakeFailed,
        announce_failure,
        "Publish Wake Failed",
        Catch::keeping(failed, "$.announce_error"),
        failed,
    ));
    states.add(failed, scale_failed());
    machine(
        "understudy wake: start staging's databases and wait until they are available, then scale the services back to what each one remembers, wait until they are stable, run the smoke test until it passes, and publish Environment Woke (Wake Failed on any failure).",
        VALIDATE,
        states,
        0,
    )
}

const SMOKE_START: &str = "Begin the smoke test";
/// The error a smoke test ends with at its deadline.
pub const SMOKE_TEST_FAILED: &str = "SmokeTestFailed";

/// The smoke stage, shared by `wake` and `refresh`: rounds of the
/// smoke-test function's checks, `smoke.round_seconds` apart, until every check
/// passed (then `then`) or `smoke.deadline_seconds` passed (`SmokeTestFailed`
/// naming the failing checks, to `failure`). With no checks configured the
/// first round answers `skipped` and the stage ends at once.
fn smoke_stage(then: &str, failure: &str) -> States {
    let mut states = States::new();
    let rounds = PollLoop {
        what: "for the smoke test".into(),
        kind: PollKind::Smoke,
        check: "Run the smoke checks".into(),
        choice: "Do the smoke checks pass?".into(),
        task: lambda(Function::SmokeTest, config_payload("round", json!({"previous.$": "$.smoke"})))
            .comment("One round: every check not passed yet, once, with a short per-request timeout; answers the report so far.")
            .select(&["skipped", "passed", "rounds", "pending", "pending_left_out", "checks", "checks_left_out"])
            .result_path("$.smoke")
            .catch(Catch::to(failure)),
        done: "$.smoke.passed".into(),
        then: then.into(),
        failure: failure.into(),
        look_first: true,
        choice_comment: Some("passed: every check passed (or none is configured: skipped).".into()),
        gives_up_with: Some(GiveUp {
            error: SMOKE_TEST_FAILED.into(),
            cause: "States.Format('Smoke checks still failing after {} rounds (config.smoke.deadline_seconds): {}', $.smoke.rounds, States.JsonToString($.smoke.pending))".into(),
        }),
    };
    states.add(
        SMOKE_START,
        json!({
            "Type": "Pass",
            "Comment": "No report yet: the first round runs every check.",
            "Result": {},
            "ResultPath": "$.smoke",
            "Next": rounds.start(),
        }),
    );
    states.extend(rounds.states());
    states
}

/// `restop`: a database AWS restarted after 7 days stopped is stopped again.
pub fn restop() -> Value {
    let failed = "Restop failed";
    let mut states = preamble_with(
        Function::ScaleToZero,
        json!({"action": "begin", "input": {}}),
        "The execution input is the EventBridge event, not an override: the run takes the deployed configuration as it is (and pins its version); the restop task reads the event from the execution input.",
        "Start waiting for the database",
        failed,
        &[],
    );
    states.extend(
        PollLoop {
            what: "for the database".into(),
            kind: PollKind::Database,
            check: "Stop the restarted database".into(),
            choice: "Is it done?".into(),
            task: lambda(
                Function::ScaleToZero,
                config_payload("restop", json!({"event.$": "$$.Execution.Input"})),
            )
            .comment("Stops the database once it is available (waiting while it starts) if it carries the staging tag and understudy:sleep:state=asleep; otherwise ignored.")
            .select(&["outcome", "done", "database", "status", "reason"])
            .result_path("$.restop")
            .catch(Catch::to(failed)),
            done: "$.restop.done".into(),
            then: "Report the restop".into(),
            failure: failed.into(),
            look_first: true,
            choice_comment: None,
            gives_up_with: None,
        }
        .states(),
    );
    states.add(
        "Report the restop",
        report(
            "The execution's output: what was done with the database, not the config.",
            json!({"restop.$": "$.restop"}),
            "Restop is done",
        ),
    );
    states.add("Restop is done", succeed());
    states.add(failed, fail("Ends with the function's errorType (e.g. AccessDenied) and message."));
    machine(
        "understudy restop: started by the RDS events RDS-EVENT-0154 (instance) and RDS-EVENT-0153 (cluster), sent when AWS starts a database that has been stopped for 7 days. A database understudy put to sleep is stopped again once available; any other database is left alone.",
        VALIDATE,
        states,
        0,
    )
}
