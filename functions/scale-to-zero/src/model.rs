//! What sleep and wake decide, as pure functions of what was observed: a
//! [`Resource`] (kind, id, tags, current state) goes in, a [`Plan`] (the
//! mutating calls to make, in order, and the report entry) comes out. No AWS
//! here, so every rule is unit-tested.
//!
//! The memory of what `wake` restores is the resource's own `understudy:sleep:*`
//! tags, written before the resource is scaled down and removed after it is
//! scaled back up. An interrupted sleep or wake therefore converges when run
//! again, and a remembered count is never overwritten with 0.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{json, Value};
use understudy_shared::scale::{AuroraSleep, ScaleSettings};
use understudy_shared::tags::{self, tag_value, TagList};
use understudy_shared::{Error, Result};

/// The kinds of resource understudy puts to sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An ECS service (`cluster/service`).
    EcsService,
    /// An Auto Scaling group.
    AutoScalingGroup,
    /// An EC2 instance.
    Ec2Instance,
    /// An RDS DB instance (not an Aurora member).
    DbInstance,
    /// An Aurora DB cluster.
    DbCluster,
}

impl Kind {
    /// Databases wake first (services need them) and sleep last.
    pub fn is_database(self) -> bool {
        matches!(self, Kind::DbInstance | Kind::DbCluster)
    }

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::EcsService => "ecs-service",
            Kind::AutoScalingGroup => "auto-scaling-group",
            Kind::Ec2Instance => "ec2-instance",
            Kind::DbInstance => "db-instance",
            Kind::DbCluster => "db-cluster",
        }
    }
}

/// A minimum and maximum: Application Auto Scaling's for an ECS service, the
/// group's own for an Auto Scaling group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Range {
    /// Minimum capacity.
    pub min: i32,
    /// Maximum capacity.
    pub max: i32,
}

/// An Aurora Serverless v2 capacity range, in ACU.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Capacity {
    /// Minimum ACU.
    pub min: f64,
    /// Maximum ACU.
    pub max: f64,
}

/// What was observed of a resource.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// An ECS service or an Auto Scaling group.
    Scalable {
        /// Desired count (capacity).
        desired: i32,
        /// Running tasks, or InService instances.
        running: i32,
        /// Pending tasks, or instances not yet InService.
        pending: i32,
        /// An ECS service's deployments (a rollout in progress has more than one); 1 for a group.
        deployments: usize,
        /// Application Auto Scaling's range (services, when registered) or the group's.
        range: Option<Range>,
    },
    /// An RDS instance or Aurora cluster.
    Database {
        /// `available`, `stopped`, `starting`, ...
        status: String,
        /// Why it can never be stopped (an Aurora member, a read replica, ...).
        unstoppable: Option<String>,
        /// Serverless v2 capacity, when the cluster has it.
        serverless: Option<Capacity>,
        /// Engine (`aurora-postgresql`, ...).
        engine: String,
        /// Engine version.
        engine_version: String,
    },
    /// An EC2 instance: `running`, `stopped`, `pending`, ...
    Machine {
        /// The instance state name.
        state: String,
    },
}

/// One resource as observed.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// Its kind.
    pub kind: Kind,
    /// `cluster/service`, identifier, instance id or group name.
    pub id: String,
    /// Its ARN (tags are written through it where the API wants one).
    pub arn: String,
    /// Its tags.
    pub tags: TagList,
    /// What it is doing.
    pub state: State,
}

/// A mutating call to make.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Write these `understudy:sleep:*` tags (the memory).
    Remember(TagList),
    /// Remove every `understudy:sleep:*` tag.
    Forget,
    /// ECS `UpdateService` desired count.
    Desired(i32),
    /// ECS `UpdateService` with `forceNewDeployment` (a refresh's `restart_services`).
    NewDeployment,
    /// Application Auto Scaling `RegisterScalableTarget` range.
    AutoScaling(Range),
    /// Auto Scaling group `UpdateAutoScalingGroup`.
    Group {
        /// Min size.
        min: i32,
        /// Desired capacity.
        desired: i32,
        /// Max size.
        max: i32,
    },
    /// Stop the database.
    StopDatabase,
    /// Start the database.
    StartDatabase,
    /// `ModifyDBCluster` Serverless v2 range (and auto-pause delay when min is 0).
    ServerlessCapacity {
        /// Minimum ACU.
        min: f64,
        /// Maximum ACU.
        max: f64,
        /// SecondsUntilAutoPause, with min 0.
        auto_pause: Option<u32>,
    },
    /// Stop (or hibernate) the instance.
    StopMachine {
        /// Hibernate instead of a plain stop.
        hibernate: bool,
    },
    /// Start the instance.
    StartMachine,
}

/// What happened to a resource, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Put to sleep now.
    Slept,
    /// Woken now.
    Woke,
    /// Asleep already; nothing done.
    AlreadyAsleep,
    /// Awake already; nothing done (beyond clearing stale sleep tags).
    AlreadyAwake,
    /// On its way (stopping, starting); see `reason`.
    InProgress,
    /// Not understudy's to change; see `reason`.
    Skipped,
    /// Changed by hand while asleep: kept as set, not overwritten; see `reason`.
    ChangedWhileAsleep,
    /// A call failed; see `reason`.
    Failed,
}

impl Outcome {
    /// The name used in reports and counts.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Slept => "slept",
            Outcome::Woke => "woke",
            Outcome::AlreadyAsleep => "already-asleep",
            Outcome::AlreadyAwake => "already-awake",
            Outcome::InProgress => "in-progress",
            Outcome::Skipped => "skipped",
            Outcome::ChangedWhileAsleep => "changed-while-asleep",
            Outcome::Failed => "failed",
        }
    }
}

/// One line of a sleep or wake report.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Entry {
    /// Resource kind.
    pub kind: Kind,
    /// Resource id.
    pub id: String,
    /// What happened.
    pub outcome: Outcome,
    /// The state before.
    pub before: Value,
    /// The state after (what was asked of AWS).
    pub after: Value,
    /// Why, when it was skipped, in progress, kept or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// False while the resource still needs another pass (a database that cannot
    /// be stopped or started until its current transition ends).
    #[serde(skip)]
    pub settled: bool,
}

/// The calls to make and the report entry once they succeed.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Mutating calls, in order (at most 3).
    pub changes: Vec<Change>,
    /// The report entry.
    pub entry: Entry,
}

/// The sleep memory read back from a resource's tags.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    /// `understudy:sleep:state=asleep`.
    pub asleep: bool,
    /// `understudy:sleep:desired`.
    pub desired: Option<i32>,
    /// `understudy:sleep:min`.
    pub min: Option<i32>,
    /// `understudy:sleep:max`.
    pub max: Option<i32>,
    /// `understudy:sleep:min-acu`.
    pub min_acu: Option<f64>,
}

impl Memory {
    /// Reads the memory from `tags` (unparsable numbers count as absent).
    pub fn of(tags: &[(String, String)]) -> Self {
        let number = |key| tag_value(tags, key).and_then(|v| v.parse().ok());
        Self {
            asleep: tag_value(tags, tags::SLEEP_STATE) == Some(ASLEEP),
            desired: number(tags::SLEEP_DESIRED),
            min: number(tags::SLEEP_MIN),
            max: number(tags::SLEEP_MAX),
            min_acu: tag_value(tags, tags::SLEEP_MIN_ACU).and_then(|v| v.parse().ok()),
        }
    }

    fn range(&self) -> Option<Range> {
        Some(Range { min: self.min?, max: self.max? })
    }
}

/// The value of `understudy:sleep:state` on a sleeping resource.
pub const ASLEEP: &str = "asleep";

/// Every `understudy:sleep:*` key, removed by [`Change::Forget`].
pub const SLEEP_KEYS: &[&str] = &[
    tags::SLEEP_STATE,
    tags::SLEEP_SINCE,
    tags::SLEEP_DESIRED,
    tags::SLEEP_MIN,
    tags::SLEEP_MAX,
    tags::SLEEP_MIN_ACU,
];

/// Database statuses that end by themselves, after which a stop or start is
/// possible: worth waiting for.
fn is_transient(status: &str) -> bool {
    matches!(
        status,
        "starting"
            | "stopping"
            | "modifying"
            | "backing-up"
            | "creating"
            | "rebooting"
            | "renaming"
            | "upgrading"
            | "maintenance"
            | "resetting-master-credentials"
    ) || status.starts_with("configuring-")
}

fn remember(since: &str, extra: &[(&str, String)]) -> Change {
    let mut pairs = vec![
        (tags::SLEEP_STATE.to_owned(), ASLEEP.to_owned()),
        (tags::SLEEP_SINCE.to_owned(), since.to_owned()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    Change::Remember(pairs)
}

fn entry(
    resource: &Resource,
    outcome: Outcome,
    before: Value,
    after: Value,
    reason: Option<String>,
) -> Entry {
    Entry { kind: resource.kind, id: resource.id.clone(), outcome, before, after, reason, settled: true }
}

fn plan(changes: Vec<Change>, entry: Entry) -> Plan {
    debug_assert!(changes.len() <= 3, "at most 3 mutating calls per resource");
    Plan { changes, entry }
}

fn unsettled(mut plan: Plan) -> Plan {
    plan.entry.settled = false;
    plan
}

fn scalable_view(desired: i32, range: Option<Range>) -> Value {
    match range {
        Some(r) => json!({"desired": desired, "min": r.min, "max": r.max}),
        None => json!({"desired": desired}),
    }
}

/// Whether the Aurora engine version can scale a Serverless v2 cluster to 0 ACU
/// (AWS: Aurora PostgreSQL 13.15, 14.12, 15.7, 16.3 and higher, 17; Aurora
/// MySQL 3.08.0 and higher).
pub fn supports_zero_acu(engine: &str, version: &str) -> bool {
    let numbers = |s: &str| -> Vec<u32> { s.split('.').map_while(|p| p.parse().ok()).collect() };
    match engine {
        "aurora-postgresql" => {
            let v = numbers(version);
            let (major, minor) = (v.first().copied().unwrap_or(0), v.get(1).copied().unwrap_or(0));
            match major {
                13 => minor >= 15,
                14 => minor >= 12,
                15 => minor >= 7,
                16 => minor >= 3,
                m => m >= 17,
            }
        }
        "aurora-mysql" => {
            // `8.0.mysql_aurora.3.08.0`: the Aurora version follows the marker.
            let Some((_, aurora)) = version.split_once("mysql_aurora.") else { return false };
            numbers(aurora) >= vec![3, 8, 0]
        }
        _ => false,
    }
}

/// The plan that puts `resource` to sleep (`now` is RFC 3339). Errors only for
/// a request that cannot be honoured as configured (a Serverless v2 cluster
/// whose engine version cannot go to 0 ACU), before any call is made.
pub fn plan_sleep(resource: &Resource, settings: &ScaleSettings, now: &str) -> Result<Plan> {
    let memory = Memory::of(&resource.tags);
    Ok(match &resource.state {
        State::Scalable { desired, range, .. } => sleep_scalable(resource, &memory, *desired, *range, now),
        State::Database { status, unstoppable, serverless, engine, engine_version } => {
            if let Some(reason) = unstoppable {
                return Ok(plan(
                    vec![],
                    entry(
                        resource,
                        Outcome::Skipped,
                        json!({"status": status}),
                        json!({"status": status}),
                        Some(reason.clone()),
                    ),
                ));
            }
            match (resource.kind, settings.aurora, serverless) {
                (Kind::DbCluster, AuroraSleep::MinCapacityZero, Some(capacity)) => {
                    if !supports_zero_acu(engine, engine_version) {
                        return Err(Error::InvalidInput(format!(
                            "invalid input at `config.scale.aurora`: min-capacity-zero needs an engine version that can scale to 0 ACU (Aurora PostgreSQL 13.15, 14.12, 15.7, 16.3 or higher; Aurora MySQL 3.08.0 or higher), but cluster `{}` runs {engine} {engine_version}; upgrade it or use `stop`",
                            resource.id
                        )));
                    }
                    sleep_serverless(
                        resource,
                        &memory,
                        status,
                        *capacity,
                        settings.seconds_until_auto_pause,
                        now,
                    )
                }
                _ => sleep_database(resource, &memory, status, now),
            }
        }
        State::Machine { state } => sleep_machine(resource, &memory, state, settings.hibernate, now),
    })
}

fn sleep_scalable(
    resource: &Resource,
    memory: &Memory,
    desired: i32,
    range: Option<Range>,
    now: &str,
) -> Plan {
    let before = scalable_view(desired, range);
    let zero = Range { min: 0, max: 0 };
    let at_zero = desired == 0 && range.is_none_or(|r| r == zero);
    if memory.asleep && at_zero {
        return plan(vec![], entry(resource, Outcome::AlreadyAsleep, before.clone(), before, None));
    }
    if !memory.asleep && desired == 0 && range.is_none_or(|r| r.max == 0) {
        return plan(
            vec![],
            entry(
                resource,
                Outcome::Skipped,
                before.clone(),
                before,
                Some("already at 0, not by understudy: nothing to remember, and wake leaves it at 0".into()),
            ),
        );
    }
    // What to remember: the current values, except that a value already at 0 on a
    // resource understudy put to sleep keeps its memory (never overwritten with 0).
    let remembered_desired =
        if memory.asleep && desired == 0 { memory.desired.unwrap_or(0) } else { desired };
    let remembered_range = match range {
        Some(r) if memory.asleep && r == zero => memory.range().or(Some(r)),
        other => other,
    };
    let mut extra = vec![(tags::SLEEP_DESIRED, remembered_desired.to_string())];
    if let Some(r) = remembered_range {
        extra.push((tags::SLEEP_MIN, r.min.to_string()));
        extra.push((tags::SLEEP_MAX, r.max.to_string()));
    }
    let reason = memory.asleep.then(|| {
        format!(
            "was put to sleep before but is at {before} now (changed by hand, or an interrupted sleep): remembering {}",
            scalable_view(remembered_desired, remembered_range)
        )
    });
    let mut changes = vec![remember(now, &extra)];
    match resource.kind {
        Kind::AutoScalingGroup => changes.push(Change::Group { min: 0, desired: 0, max: 0 }),
        _ => {
            if range.is_some_and(|r| r != zero) {
                changes.push(Change::AutoScaling(zero));
            }
            if desired != 0 {
                changes.push(Change::Desired(0));
            }
        }
    }
    let after = scalable_view(0, range.map(|_| zero));
    plan(changes, entry(resource, Outcome::Slept, before, after, reason))
}

fn sleep_database(resource: &Resource, memory: &Memory, status: &str, now: &str) -> Plan {
    let before = json!({"status": status});
    let stopped = json!({"status": "stopped"});
    match (memory.asleep, status) {
        (true, "stopped") => {
            plan(vec![], entry(resource, Outcome::AlreadyAsleep, before.clone(), before, None))
        }
        (true, "stopping") => plan(
            vec![],
            entry(resource, Outcome::InProgress, before, stopped, Some("already stopping".into())),
        ),
        (true, "available") => plan(
            vec![Change::StopDatabase],
            entry(
                resource,
                Outcome::Slept,
                before,
                stopped,
                Some("was running again (started by hand or by AWS after 7 days): stopped".into()),
            ),
        ),
        (false, "available") => plan(
            vec![remember(now, &[]), Change::StopDatabase],
            entry(resource, Outcome::Slept, before, stopped, None),
        ),
        (false, "stopped" | "stopping") => plan(
            vec![],
            entry(
                resource,
                Outcome::Skipped,
                before.clone(),
                before,
                Some(format!("{status}, not by understudy: left as it is, and wake will not start it")),
            ),
        ),
        (_, other) if is_transient(other) => unsettled(plan(
            vec![],
            entry(
                resource,
                Outcome::InProgress,
                before.clone(),
                before,
                Some(format!(
                    "cannot be stopped while `{other}`: it is stopped on a later pass, once available"
                )),
            ),
        )),
        (_, other) => plan(
            vec![],
            entry(
                resource,
                Outcome::Skipped,
                before.clone(),
                before,
                Some(format!("cannot be stopped while `{other}`")),
            ),
        ),
    }
}

fn sleep_serverless(
    resource: &Resource,
    memory: &Memory,
    status: &str,
    capacity: Capacity,
    auto_pause: u32,
    now: &str,
) -> Plan {
    let before = json!({"status": status, "min_capacity": capacity.min, "max_capacity": capacity.max});
    let after = json!({"status": status, "min_capacity": 0.0, "max_capacity": capacity.max, "seconds_until_auto_pause": auto_pause});
    if memory.asleep && capacity.min == 0.0 {
        return plan(vec![], entry(resource, Outcome::AlreadyAsleep, before.clone(), before, None));
    }
    if status != "available" {
        let reason = format!("cannot change its capacity while `{status}`");
        return if is_transient(status) {
            unsettled(plan(
                vec![],
                entry(resource, Outcome::InProgress, before.clone(), before, Some(reason)),
            ))
        } else {
            plan(vec![], entry(resource, Outcome::Skipped, before.clone(), before, Some(reason)))
        };
    }
    if !memory.asleep && capacity.min == 0.0 {
        return plan(
            vec![],
            entry(
                resource,
                Outcome::Skipped,
                before.clone(),
                before,
                Some("minimum capacity already 0 ACU, not by understudy: nothing to remember".into()),
            ),
        );
    }
    let change = Change::ServerlessCapacity { min: 0.0, max: capacity.max, auto_pause: Some(auto_pause) };
    plan(
        vec![remember(now, &[(tags::SLEEP_MIN_ACU, capacity.min.to_string())]), change],
        entry(resource, Outcome::Slept, before, after, None),
    )
}

fn sleep_machine(resource: &Resource, memory: &Memory, state: &str, hibernate: bool, now: &str) -> Plan {
    let before = json!({"state": state});
    let stopped = json!({"state": "stopped"});
    let stop = Change::StopMachine { hibernate };
    match (memory.asleep, state) {
        (true, "stopped") => {
            plan(vec![], entry(resource, Outcome::AlreadyAsleep, before.clone(), before, None))
        }
        (true, "stopping") => plan(
            vec![],
            entry(resource, Outcome::InProgress, before, stopped, Some("already stopping".into())),
        ),
        (true, "running") => plan(
            vec![stop],
            entry(
                resource,
                Outcome::Slept,
                before,
                stopped,
                Some("was running again (started by hand): stopped".into()),
            ),
        ),
        (false, "running") => {
            plan(vec![remember(now, &[]), stop], entry(resource, Outcome::Slept, before, stopped, None))
        }
        (_, "pending") => unsettled(plan(
            vec![],
            entry(
                resource,
                Outcome::InProgress,
                before.clone(),
                before,
                Some("cannot be stopped while pending".into()),
            ),
        )),
        (_, other) => plan(
            vec![],
            entry(
                resource,
                Outcome::Skipped,
                before.clone(),
                before,
                Some(format!("{other}, not by understudy: left as it is, and wake will not start it")),
            ),
        ),
    }
}

/// The plan that wakes `resource` as it was before sleep.
pub fn plan_wake(resource: &Resource) -> Plan {
    let memory = Memory::of(&resource.tags);
    match &resource.state {
        State::Scalable { desired, range, .. } => wake_scalable(resource, &memory, *desired, *range),
        State::Database { status, unstoppable, serverless, .. } => {
            match (unstoppable, memory.min_acu, serverless) {
                (Some(reason), ..) => plan(
                    vec![],
                    entry(
                        resource,
                        Outcome::Skipped,
                        json!({"status": status}),
                        json!({"status": status}),
                        Some(reason.clone()),
                    ),
                ),
                (None, Some(min_acu), Some(capacity)) if memory.asleep => {
                    wake_serverless(resource, status, min_acu, *capacity)
                }
                _ => wake_database(resource, &memory, status),
            }
        }
        State::Machine { state } => wake_machine(resource, &memory, state),
    }
}

fn wake_scalable(resource: &Resource, memory: &Memory, desired: i32, range: Option<Range>) -> Plan {
    let before = scalable_view(desired, range);
    if !memory.asleep {
        return plan(vec![], entry(resource, Outcome::AlreadyAwake, before.clone(), before, None));
    }
    let Some(remembered) = memory.desired else {
        return plan(
            vec![Change::Forget],
            entry(
                resource,
                Outcome::Skipped,
                before.clone(),
                before,
                Some(format!("its {} tag is missing or not a number: left as it is", tags::SLEEP_DESIRED)),
            ),
        );
    };
    let zero = Range { min: 0, max: 0 };
    let mut kept = Vec::new();
    let mut changes = Vec::new();
    let (after_desired, after_range);
    if resource.kind == Kind::AutoScalingGroup {
        // The group's min, desired and max move together: any of them off 0 means
        // someone resized the group while it slept.
        match (range, memory.range()) {
            (Some(current), _) if desired != 0 || current != zero => {
                kept.push(format!(
                    "resized to {before} while asleep (remembered {})",
                    scalable_view(remembered, memory.range())
                ));
                (after_desired, after_range) = (desired, Some(current));
            }
            (_, Some(r)) => {
                changes.push(Change::Group { min: r.min, desired: remembered, max: r.max });
                (after_desired, after_range) = (remembered, Some(r));
            }
            (current, None) => {
                kept.push(format!(
                    "its {}/{} tags are missing: left as it is",
                    tags::SLEEP_MIN,
                    tags::SLEEP_MAX
                ));
                (after_desired, after_range) = (desired, current);
            }
        }
    } else {
        after_range = match (range, memory.range()) {
            (Some(current), Some(r)) if current == zero => {
                changes.push(Change::AutoScaling(r));
                Some(r)
            }
            (Some(current), Some(r)) => {
                kept.push(format!(
                    "autoscaling range set to {}-{} while asleep (remembered {}-{}): kept",
                    current.min, current.max, r.min, r.max
                ));
                Some(current)
            }
            (None, Some(r)) => {
                kept.push(format!(
                    "no longer registered with Application Auto Scaling (remembered {}-{}): not registered again",
                    r.min, r.max
                ));
                None
            }
            (current, None) => current,
        };
        after_desired = if desired == 0 {
            if remembered != 0 {
                changes.push(Change::Desired(remembered));
            }
            remembered
        } else {
            kept.push(format!(
                "desired count set to {desired} while asleep (remembered {remembered}): kept {desired}"
            ));
            desired
        };
    }
    changes.push(Change::Forget);
    let after = scalable_view(after_desired, after_range);
    let (outcome, reason) = if kept.is_empty() {
        (Outcome::Woke, None)
    } else {
        (Outcome::ChangedWhileAsleep, Some(kept.join("; ")))
    };
    plan(changes, entry(resource, outcome, before, after, reason))
}

fn wake_database(resource: &Resource, memory: &Memory, status: &str) -> Plan {
    let before = json!({"status": status});
    let available = json!({"status": "available"});
    match (memory.asleep, status) {
        (true, "stopped") => plan(
            vec![Change::StartDatabase, Change::Forget],
            entry(resource, Outcome::Woke, before, available, None),
        ),
        (true, "available") => plan(
            vec![Change::Forget],
            entry(
                resource,
                Outcome::AlreadyAwake,
                before.clone(),
                before,
                Some("already running (started by hand, or by AWS after 7 days stopped)".into()),
            ),
        ),
        (true, "starting") => plan(
            vec![Change::Forget],
            entry(resource, Outcome::InProgress, before, available, Some("already starting".into())),
        ),
        (true, other) if is_transient(other) => unsettled(plan(
            vec![],
            entry(
                resource,
                Outcome::InProgress,
                before.clone(),
                before,
                Some(format!("cannot be started while `{other}`: it is started on a later pass")),
            ),
        )),
        (false, "stopped") => plan(
            vec![],
            entry(
                resource,
                Outcome::Skipped,
                before.clone(),
                before,
                Some("stopped, not by understudy: left stopped".into()),
            ),
        ),
        (true, other) => plan(
            vec![],
            entry(
                resource,
                Outcome::Skipped,
                before.clone(),
                before,
                Some(format!("cannot be started while `{other}`")),
            ),
        ),
        (false, "available") => {
            plan(vec![], entry(resource, Outcome::AlreadyAwake, before.clone(), before, None))
        }
        (false, other) if is_transient(other) => unsettled(plan(
            vec![],
            entry(
                resource,
                Outcome::InProgress,
                before.clone(),
                before,
                Some(format!("`{other}`: waiting until it is available")),
            ),
        )),
        (false, other) => plan(
            vec![],
            entry(
                resource,
                Outcome::Skipped,
                before.clone(),
                before,
                Some(format!("`{other}`: not understudy's to start")),
            ),
        ),
    }
}

fn wake_serverless(resource: &Resource, status: &str, min_acu: f64, capacity: Capacity) -> Plan {
    let before = json!({"status": status, "min_capacity": capacity.min, "max_capacity": capacity.max});
    if capacity.min != 0.0 {
        return plan(
            vec![Change::Forget],
            entry(
                resource,
                Outcome::ChangedWhileAsleep,
                before.clone(),
                before,
                Some(format!(
                    "minimum capacity set to {} ACU while asleep (remembered {min_acu}): kept",
                    capacity.min
                )),
            ),
        );
    }
    if status != "available" {
        return unsettled(plan(
            vec![],
            entry(
                resource,
                Outcome::InProgress,
                before.clone(),
                before,
                Some(format!("cannot change its capacity while `{status}`")),
            ),
        ));
    }
    let max = capacity.max.max(min_acu);
    plan(
        vec![Change::ServerlessCapacity { min: min_acu, max, auto_pause: None }, Change::Forget],
        entry(
            resource,
            Outcome::Woke,
            before,
            json!({"status": status, "min_capacity": min_acu, "max_capacity": max}),
            None,
        ),
    )
}

fn wake_machine(resource: &Resource, memory: &Memory, state: &str) -> Plan {
    let before = json!({"state": state});
    let running = json!({"state": "running"});
    match (memory.asleep, state) {
        (true, "stopped") => plan(
            vec![Change::StartMachine, Change::Forget],
            entry(resource, Outcome::Woke, before, running, None),
        ),
        (true, "running" | "pending") => plan(
            vec![Change::Forget],
            entry(
                resource,
                Outcome::AlreadyAwake,
                before.clone(),
                before,
                Some("already running or starting".into()),
            ),
        ),
        (true, "stopping") => unsettled(plan(
            vec![],
            entry(
                resource,
                Outcome::InProgress,
                before.clone(),
                before,
                Some("cannot be started while stopping: it is started on a later pass".into()),
            ),
        )),
        (true, other) => plan(
            vec![Change::Forget],
            entry(
                resource,
                Outcome::Skipped,
                before.clone(),
                before,
                Some(format!("{other}: cannot be started")),
            ),
        ),
        (false, "stopped") => plan(
            vec![],
            entry(
                resource,
                Outcome::Skipped,
                before.clone(),
                before,
                Some("stopped, not by understudy: left stopped".into()),
            ),
        ),
        (false, _) => plan(vec![], entry(resource, Outcome::AlreadyAwake, before.clone(), before, None)),
    }
}

/// A resource's state as `status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// Put to sleep by understudy and at zero / stopped.
    Asleep,
    /// Running.
    Awake,
    /// At zero or stopped, not by understudy (not counted either way).
    Off,
    /// Stopping, starting, or tasks still starting or draining.
    Changing,
    /// Never put to sleep (an Aurora member, a read replica, ...).
    Skipped,
}

/// The status of one resource: its condition, and whether it is ready (an
/// available database, a stable service).
pub fn condition(resource: &Resource) -> (Condition, bool) {
    let memory = Memory::of(&resource.tags);
    match &resource.state {
        State::Scalable { desired, running, pending, deployments, .. } => {
            let at_zero = *desired == 0;
            // A rollout (a new deployment beside the old one) is not stable yet,
            // though the old tasks may already make up the desired count.
            let stable = running == desired && *pending == 0 && *deployments <= 1;
            let condition = match (at_zero, memory.asleep, stable) {
                (true, true, true) => Condition::Asleep,
                (true, false, true) => Condition::Off,
                (false, _, true) => Condition::Awake,
                (_, _, false) => Condition::Changing,
            };
            (condition, stable)
        }
        State::Database { status, unstoppable, serverless, .. } => {
            if unstoppable.is_some() {
                return (Condition::Skipped, true);
            }
            let paused_by_us =
                memory.asleep && serverless.is_some_and(|c| c.min == 0.0) && memory.min_acu.is_some();
            let condition = match status.as_str() {
                "available" if paused_by_us => Condition::Asleep,
                "available" => Condition::Awake,
                "stopped" if memory.asleep => Condition::Asleep,
                "stopped" => Condition::Off,
                s if is_transient(s) => Condition::Changing,
                _ => Condition::Skipped,
            };
            (condition, status == "available")
        }
        State::Machine { state } => {
            let condition = match state.as_str() {
                "running" => Condition::Awake,
                "stopped" if memory.asleep => Condition::Asleep,
                "stopped" => Condition::Off,
                "pending" | "stopping" => Condition::Changing,
                _ => Condition::Skipped,
            };
            (condition, state == "running")
        }
    }
}

/// The environment as a whole: `asleep` or `awake` when every counted resource
/// is, `empty` when none is counted, `mixed` otherwise.
pub fn environment_state(conditions: impl IntoIterator<Item = Condition>) -> &'static str {
    let (mut asleep, mut awake, mut other) = (0, 0, 0);
    for condition in conditions {
        match condition {
            Condition::Asleep => asleep += 1,
            Condition::Awake => awake += 1,
            Condition::Changing => other += 1,
            Condition::Off | Condition::Skipped => {}
        }
    }
    match (asleep, awake, other) {
        (0, 0, 0) => "empty",
        (_, 0, 0) => "asleep",
        (0, _, 0) => "awake",
        _ => "mixed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-22T20:00:00Z";

    fn tags(pairs: &[(&str, &str)]) -> TagList {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn service(desired: i32, range: Option<(i32, i32)>, extra: &[(&str, &str)]) -> Resource {
        let mut all = tags(&[("understudy:environment", "staging")]);
        all.extend(tags(extra));
        Resource {
            kind: Kind::EcsService,
            id: "staging/api".into(),
            arn: "arn:aws:ecs:us-east-1:123456789012:service/staging/api".into(),
            tags: all,
            state: State::Scalable {
                desired,
                running: desired,
                pending: 0,
                deployments: 1,
                range: range.map(|(min, max)| Range { min, max }),
            },
        }
    }

    fn database(kind: Kind, status: &str, extra: &[(&str, &str)]) -> Resource {
        Resource {
            kind,
            id: "staging-db".into(),
            arn: "arn:aws:rds:us-east-1:123456789012:db:staging-db".into(),
            tags: tags(extra),
            state: State::Database {
                status: status.into(),
                unstoppable: None,
                serverless: None,
                engine: "postgres".into(),
                engine_version: "16.4".into(),
            },
        }
    }

    fn remembered(change: &Change) -> Vec<(String, String)> {
        match change {
            Change::Remember(pairs) => pairs.clone(),
            other => panic!("expected Remember, got {other:?}"),
        }
    }

    fn settings() -> ScaleSettings {
        ScaleSettings::default()
    }

    #[test]
    fn an_autoscaled_service_remembers_count_and_range_then_goes_to_zero() {
        let plan = plan_sleep(&service(3, Some((3, 6)), &[]), &settings(), NOW).unwrap();
        assert_eq!(plan.changes.len(), 3);
        let memory = remembered(&plan.changes[0]);
        assert!(memory.contains(&("understudy:sleep:desired".into(), "3".into())));
        assert!(memory.contains(&("understudy:sleep:min".into(), "3".into())));
        assert!(memory.contains(&("understudy:sleep:max".into(), "6".into())));
        assert!(memory.contains(&("understudy:sleep:since".into(), NOW.into())));
        assert_eq!(plan.changes[1], Change::AutoScaling(Range { min: 0, max: 0 }));
        assert_eq!(plan.changes[2], Change::Desired(0));
        assert_eq!(plan.entry.outcome, Outcome::Slept);
    }

    #[test]
    fn a_second_sleep_is_a_no_op_and_keeps_the_memory() {
        let asleep = service(
            0,
            Some((0, 0)),
            &[
                ("understudy:sleep:state", "asleep"),
                ("understudy:sleep:desired", "3"),
                ("understudy:sleep:min", "3"),
                ("understudy:sleep:max", "6"),
            ],
        );
        let plan = plan_sleep(&asleep, &settings(), NOW).unwrap();
        assert!(plan.changes.is_empty());
        assert_eq!(plan.entry.outcome, Outcome::AlreadyAsleep);
    }

    #[test]
    fn an_interrupted_sleep_finishes_without_writing_zero_into_memory() {
        // Tags written, range set to 0/0, desired count not yet: memory of the range is kept.
        let half = service(
            3,
            Some((0, 0)),
            &[
                ("understudy:sleep:state", "asleep"),
                ("understudy:sleep:desired", "3"),
                ("understudy:sleep:min", "3"),
                ("understudy:sleep:max", "6"),
            ],
        );
        let plan = plan_sleep(&half, &settings(), NOW).unwrap();
        let memory = remembered(&plan.changes[0]);
        assert!(memory.contains(&("understudy:sleep:min".into(), "3".into())), "{memory:?}");
        assert!(memory.contains(&("understudy:sleep:max".into(), "6".into())), "{memory:?}");
        assert!(memory.contains(&("understudy:sleep:desired".into(), "3".into())), "{memory:?}");
        assert_eq!(plan.changes[1..], [Change::Desired(0)]);
    }

    #[test]
    fn a_service_already_at_zero_is_not_claimed() {
        let plan = plan_sleep(&service(0, None, &[]), &settings(), NOW).unwrap();
        assert!(plan.changes.is_empty());
        assert_eq!(plan.entry.outcome, Outcome::Skipped);
        let woken = plan_wake(&service(0, None, &[]));
        assert!(woken.changes.is_empty());
    }

    #[test]
    fn wake_restores_exactly_what_was_remembered() {
        let asleep = service(
            0,
            Some((0, 0)),
            &[
                ("understudy:sleep:state", "asleep"),
                ("understudy:sleep:desired", "3"),
                ("understudy:sleep:min", "3"),
                ("understudy:sleep:max", "6"),
            ],
        );
        let plan = plan_wake(&asleep);
        assert_eq!(
            plan.changes,
            [Change::AutoScaling(Range { min: 3, max: 6 }), Change::Desired(3), Change::Forget]
        );
        assert_eq!(plan.entry.outcome, Outcome::Woke);
    }

    #[test]
    fn a_count_set_by_hand_while_asleep_is_kept_and_reported() {
        let changed =
            service(4, None, &[("understudy:sleep:state", "asleep"), ("understudy:sleep:desired", "2")]);
        let plan = plan_wake(&changed);
        assert_eq!(plan.changes, [Change::Forget]);
        assert_eq!(plan.entry.outcome, Outcome::ChangedWhileAsleep);
        let reason = plan.entry.reason.unwrap();
        assert!(reason.contains("set to 4") && reason.contains("remembered 2"), "{reason}");
    }

    #[test]
    fn a_group_resized_while_asleep_is_kept() {
        let mut group = service(
            0,
            Some((1, 2)),
            &[
                ("understudy:sleep:state", "asleep"),
                ("understudy:sleep:desired", "2"),
                ("understudy:sleep:min", "1"),
                ("understudy:sleep:max", "4"),
            ],
        );
        group.kind = Kind::AutoScalingGroup;
        let plan = plan_wake(&group);
        assert_eq!(plan.changes, [Change::Forget]);
        assert_eq!(plan.entry.outcome, Outcome::ChangedWhileAsleep);
        if let State::Scalable { range, .. } = &mut group.state {
            *range = Some(Range { min: 0, max: 0 });
        }
        assert_eq!(plan_wake(&group).changes, [Change::Group { min: 1, desired: 2, max: 4 }, Change::Forget]);
        assert_eq!(plan_sleep(&group, &settings(), NOW).unwrap().entry.outcome, Outcome::AlreadyAsleep);
    }

    #[test]
    fn databases_stop_once_and_wait_out_transitions() {
        let plan = plan_sleep(&database(Kind::DbInstance, "available", &[]), &settings(), NOW).unwrap();
        assert!(matches!(plan.changes[..], [Change::Remember(_), Change::StopDatabase]));
        let asleep = [("understudy:sleep:state", "asleep")];
        let plan = plan_sleep(&database(Kind::DbInstance, "stopped", &asleep), &settings(), NOW).unwrap();
        assert_eq!((plan.changes.len(), plan.entry.outcome), (0, Outcome::AlreadyAsleep));
        let plan = plan_sleep(&database(Kind::DbInstance, "starting", &asleep), &settings(), NOW).unwrap();
        assert_eq!((plan.entry.outcome, plan.entry.settled), (Outcome::InProgress, false));
        let plan = plan_sleep(&database(Kind::DbInstance, "stopping", &asleep), &settings(), NOW).unwrap();
        assert_eq!((plan.entry.outcome, plan.entry.settled), (Outcome::InProgress, true));
        // A database restarted by AWS after 7 days is stopped again; memory is already there.
        let plan = plan_sleep(&database(Kind::DbCluster, "available", &asleep), &settings(), NOW).unwrap();
        assert_eq!(plan.changes, [Change::StopDatabase]);
        // Stopped by someone else: not claimed, and wake leaves it stopped.
        let plan = plan_sleep(&database(Kind::DbInstance, "stopped", &[]), &settings(), NOW).unwrap();
        assert_eq!((plan.changes.len(), plan.entry.outcome), (0, Outcome::Skipped));
        assert!(plan_wake(&database(Kind::DbInstance, "stopped", &[])).changes.is_empty());
    }

    #[test]
    fn waking_a_database_starts_it_before_forgetting() {
        let asleep = [("understudy:sleep:state", "asleep")];
        let plan = plan_wake(&database(Kind::DbInstance, "stopped", &asleep));
        assert_eq!(plan.changes, [Change::StartDatabase, Change::Forget]);
        let plan = plan_wake(&database(Kind::DbInstance, "stopping", &asleep));
        assert_eq!((plan.changes.len(), plan.entry.settled), (0, false));
    }

    #[test]
    fn aurora_members_and_replicas_are_skipped_with_the_reason() {
        let mut member = database(Kind::DbInstance, "available", &[]);
        if let State::Database { unstoppable, .. } = &mut member.state {
            *unstoppable = Some("member of Aurora cluster `staging-aurora`: sleeps with its cluster".into());
        }
        let plan = plan_sleep(&member, &settings(), NOW).unwrap();
        assert_eq!(plan.entry.outcome, Outcome::Skipped);
        assert!(plan.entry.reason.unwrap().contains("staging-aurora"));
        assert_eq!(condition(&member).0, Condition::Skipped);
    }

    fn serverless(version: &str, min: f64, extra: &[(&str, &str)]) -> Resource {
        let mut cluster = database(Kind::DbCluster, "available", extra);
        cluster.state = State::Database {
            status: "available".into(),
            unstoppable: None,
            serverless: Some(Capacity { min, max: 4.0 }),
            engine: "aurora-postgresql".into(),
            engine_version: version.into(),
        };
        cluster
    }

    #[test]
    fn a_service_rolling_out_a_new_deployment_is_not_stable_until_the_old_one_is_gone() {
        let mut rolling = service(2, None, &[]);
        assert_eq!(condition(&rolling), (Condition::Awake, true));
        if let State::Scalable { deployments, .. } = &mut rolling.state {
            *deployments = 2;
        }
        assert_eq!(
            condition(&rolling),
            (Condition::Changing, false),
            "the old tasks still make up the count"
        );
    }

    #[test]
    fn min_capacity_zero_remembers_the_minimum_and_restores_it() {
        let zero = ScaleSettings { aurora: AuroraSleep::MinCapacityZero, ..ScaleSettings::default() };
        let plan = plan_sleep(&serverless("16.4", 0.5, &[]), &zero, NOW).unwrap();
        assert!(remembered(&plan.changes[0]).contains(&("understudy:sleep:min-acu".into(), "0.5".into())));
        assert_eq!(plan.changes[1], Change::ServerlessCapacity { min: 0.0, max: 4.0, auto_pause: Some(300) });
        let asleep = serverless(
            "16.4",
            0.0,
            &[("understudy:sleep:state", "asleep"), ("understudy:sleep:min-acu", "0.5")],
        );
        assert_eq!(condition(&asleep).0, Condition::Asleep);
        assert_eq!(plan_sleep(&asleep, &zero, NOW).unwrap().entry.outcome, Outcome::AlreadyAsleep);
        // Wake follows the memory, whatever the config says now.
        assert_eq!(
            plan_wake(&asleep).changes,
            [Change::ServerlessCapacity { min: 0.5, max: 4.0, auto_pause: None }, Change::Forget]
        );
    }

    #[test]
    fn min_capacity_zero_is_refused_on_engine_versions_without_it() {
        let zero = ScaleSettings { aurora: AuroraSleep::MinCapacityZero, ..ScaleSettings::default() };
        let err = plan_sleep(&serverless("15.4", 0.5, &[]), &zero, NOW).unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        let message = err.to_string();
        assert!(
            message.contains("staging-db")
                && message.contains("15.4")
                && message.contains("config.scale.aurora")
        );
    }

    #[test]
    fn zero_acu_support_follows_aws_version_list() {
        for (engine, version, ok) in [
            ("aurora-postgresql", "16.3", true),
            ("aurora-postgresql", "16.2", false),
            ("aurora-postgresql", "15.7", true),
            ("aurora-postgresql", "14.11", false),
            ("aurora-postgresql", "13.15", true),
            ("aurora-postgresql", "17.4", true),
            ("aurora-postgresql", "12.22", false),
            ("aurora-mysql", "8.0.mysql_aurora.3.08.0", true),
            ("aurora-mysql", "8.0.mysql_aurora.3.07.1", false),
            ("aurora-mysql", "8.0.mysql_aurora.3.10.0", true),
            ("aurora-mysql", "5.7.mysql_aurora.2.12.0", false),
            ("postgres", "16.4", false),
        ] {
            assert_eq!(supports_zero_acu(engine, version), ok, "{engine} {version}");
        }
    }

    #[test]
    fn environment_state_ignores_what_understudy_does_not_manage() {
        use Condition::*;
        assert_eq!(environment_state([Asleep, Asleep, Off, Skipped]), "asleep");
        assert_eq!(environment_state([Awake, Off]), "awake");
        assert_eq!(environment_state([Asleep, Awake]), "mixed");
        assert_eq!(environment_state([Asleep, Changing]), "mixed");
        assert_eq!(environment_state([Off]), "empty");
    }

    #[test]
    fn no_plan_makes_more_than_three_mutating_calls() {
        let asleep = [
            ("understudy:sleep:state", "asleep"),
            ("understudy:sleep:desired", "2"),
            ("understudy:sleep:min", "2"),
            ("understudy:sleep:max", "5"),
        ];
        for resource in [
            service(2, Some((2, 5)), &[]),
            service(0, Some((0, 0)), &asleep),
            service(5, Some((0, 0)), &asleep),
        ] {
            assert!(plan_sleep(&resource, &settings(), NOW).unwrap().changes.len() <= 3);
            assert!(plan_wake(&resource).changes.len() <= 3);
        }
    }
}
