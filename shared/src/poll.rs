//! Bounded waits: how the state machines' poll loops wait, grow their wait and
//! give up. Every loop waits `<kind>_seconds` first, doubles the wait up to
//! `<kind>_max_seconds`, and fails with `WaitTimedOut` once it has polled for
//! `<kind>_timeout_minutes`. `validate` turns those settings into a
//! [`WaitPlan`] per kind, which the machines count their polls against, and
//! refuses settings that would poll too often or overrun the execution history.

use serde::{Deserialize, Serialize};

use crate::config::{invalid, PollIntervals};
use crate::Result;

/// What a poll loop waits for: the kinds differ in how long AWS takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PollKind {
    /// Snapshots and snapshot copies (hours for a large database).
    Snapshot,
    /// Database restores, renames, starts and stops.
    Database,
    /// ECS services, Auto Scaling groups and EC2 instances becoming stable.
    Service,
    /// Rounds of the smoke test (`smoke.round_seconds`, `smoke.deadline_seconds`).
    Smoke,
}

impl PollKind {
    /// Every kind.
    pub const ALL: [PollKind; 4] =
        [PollKind::Snapshot, PollKind::Database, PollKind::Service, PollKind::Smoke];

    /// The prefix of its `config.poll` fields.
    pub fn as_str(self) -> &'static str {
        match self {
            PollKind::Snapshot => "snapshot",
            PollKind::Database => "database",
            PollKind::Service => "service",
            PollKind::Smoke => "smoke",
        }
    }

    /// The longest `<kind>_timeout_minutes` accepted. The machines'
    /// `TimeoutSeconds` backstop is built from these.
    pub fn max_timeout_minutes(self) -> u32 {
        match self {
            PollKind::Snapshot | PollKind::Database => 24 * 60,
            PollKind::Service | PollKind::Smoke => 2 * 60,
        }
    }
}

/// The shortest wait between polls: anything shorter only burns state transitions.
pub const MIN_WAIT_SECONDS: u32 = 1;
/// The longest single wait accepted for `<kind>_max_seconds`.
pub const MAX_WAIT_SECONDS: u32 = 3600;
/// At most this many polls in one loop.
pub const MAX_POLLS_PER_LOOP: u32 = 1000;
/// History events one poll costs: Wait (2), the Lambda task (5), the Choice (2)
/// and the Pass that counts the poll (2).
pub const EVENTS_PER_POLL: u32 = 11;
/// AWS's limit on a standard execution's history.
pub const HISTORY_LIMIT: u32 = 25_000;
/// What the waits of one machine may use of [`HISTORY_LIMIT`], leaving room for
/// every other state and the undo path.
pub const HISTORY_BUDGET_FOR_WAITS: u32 = 20_000;

/// A loop's wait state at its start, as `validate` answers it and the machine
/// carries it in `$.poll`: `seconds` is the next wait, `doubled` the one after
/// if it still fits under `cap`, `count` the polls so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WaitPlan {
    /// Polls made so far (0 at the start).
    pub count: u32,
    /// The next wait, in seconds.
    pub seconds: u32,
    /// Twice `seconds`: the wait after next, unless it exceeds `cap`.
    pub doubled: u32,
    /// The longest wait.
    pub cap: u32,
    /// Polls before the loop gives up with `WaitTimedOut`.
    pub max_polls: u32,
    /// The timeout the polls add up to, for the error message.
    pub timeout_minutes: u32,
}

/// The plan of every kind, as `validate` answers it (`$.waits` in the machines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WaitPlans {
    /// Snapshot loops.
    pub snapshot: WaitPlan,
    /// Database loops.
    pub database: WaitPlan,
    /// Service loops.
    pub service: WaitPlan,
    /// Smoke-test rounds.
    pub smoke: WaitPlan,
}

/// How many poll loops of each kind a machine has (the generator checks its
/// machines against this table, so the history check below stays true).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loops {
    /// Snapshot loops.
    pub snapshot: u32,
    /// Database loops.
    pub database: u32,
    /// Service loops.
    pub service: u32,
    /// Smoke-test loops.
    pub smoke: u32,
}

impl Loops {
    /// Loops of `kind`.
    pub fn of(&self, kind: PollKind) -> u32 {
        match kind {
            PollKind::Snapshot => self.snapshot,
            PollKind::Database => self.database,
            PollKind::Service => self.service,
            PollKind::Smoke => self.smoke,
        }
    }
}

/// The poll loops of each machine, by machine name.
pub const MACHINE_LOOPS: &[(&str, Loops)] = &[
    ("snapshot", Loops { snapshot: 1, database: 0, service: 0, smoke: 0 }),
    ("refresh", Loops { snapshot: 3, database: 7, service: 4, smoke: 1 }),
    ("sleep", Loops { snapshot: 0, database: 1, service: 0, smoke: 0 }),
    ("wake", Loops { snapshot: 0, database: 1, service: 2, smoke: 1 }),
    ("restop", Loops { snapshot: 0, database: 1, service: 0, smoke: 0 }),
];

/// The loops of `machine` (none for a machine without waits).
pub fn machine_loops(machine: &str) -> Loops {
    MACHINE_LOOPS.iter().find(|(name, _)| *name == machine).map(|(_, loops)| *loops).unwrap_or(Loops {
        snapshot: 0,
        database: 0,
        service: 0,
        smoke: 0,
    })
}

impl PollIntervals {
    fn settings(&self, kind: PollKind) -> (u32, u32, u32) {
        match kind {
            PollKind::Snapshot => {
                (self.snapshot_seconds, self.snapshot_max_seconds, self.snapshot_timeout_minutes)
            }
            PollKind::Database => {
                (self.database_seconds, self.database_max_seconds, self.database_timeout_minutes)
            }
            PollKind::Service => {
                (self.service_seconds, self.service_max_seconds, self.service_timeout_minutes)
            }
            // Its plan comes from `config.smoke` (SmokeSettings::plan), never from here.
            PollKind::Smoke => (0, 0, 0),
        }
    }

    /// The plan of one kind; errors name the field at fault.
    pub fn plan(&self, kind: PollKind) -> Result<WaitPlan> {
        let (first, cap, timeout) = self.settings(kind);
        let field = |suffix: &str| format!("config.poll.{}_{suffix}", kind.as_str());
        if first < MIN_WAIT_SECONDS {
            return Err(invalid(
                &field("seconds"),
                format!("must be at least {MIN_WAIT_SECONDS}, got {first}"),
            ));
        }
        if cap < first || cap > MAX_WAIT_SECONDS {
            return Err(invalid(
                &field("max_seconds"),
                format!(
                    "must be between {}_seconds ({first}) and {MAX_WAIT_SECONDS}, got {cap}",
                    kind.as_str()
                ),
            ));
        }
        let longest = kind.max_timeout_minutes();
        if timeout == 0 || timeout > longest {
            return Err(invalid(&field("timeout_minutes"), format!("must be 1 to {longest}, got {timeout}")));
        }
        let max_polls = polls_within(first, cap, timeout);
        if max_polls > MAX_POLLS_PER_LOOP {
            return Err(invalid(
                &field("timeout_minutes"),
                format!(
                    "{timeout} minutes at waits of {first} s growing to {cap} s is {max_polls} polls, more than \
                     {MAX_POLLS_PER_LOOP}; raise {} or shorten the timeout",
                    field("max_seconds")
                ),
            ));
        }
        Ok(WaitPlan {
            count: 0,
            seconds: first,
            doubled: first * 2,
            cap,
            max_polls,
            timeout_minutes: timeout,
        })
    }

    /// The plans of every kind, checked against the history of every machine
    /// in `machines`.
    pub fn plans(&self, smoke: &crate::smoke::SmokeSettings, machines: &[&str]) -> Result<WaitPlans> {
        let plans = WaitPlans {
            smoke: smoke.plan(),
            snapshot: self.plan(PollKind::Snapshot)?,
            database: self.plan(PollKind::Database)?,
            service: self.plan(PollKind::Service)?,
        };
        for machine in machines {
            let loops = machine_loops(machine);
            let events: u32 =
                PollKind::ALL.iter().map(|k| loops.of(*k) * plans.of(*k).max_polls * EVENTS_PER_POLL).sum();
            if events > HISTORY_BUDGET_FOR_WAITS {
                let kind = PollKind::ALL
                    .into_iter()
                    .max_by_key(|k| loops.of(*k) * plans.of(*k).max_polls)
                    .expect("four kinds");
                return Err(invalid(
                    &format!("config.poll.{}_timeout_minutes", kind.as_str()),
                    format!(
                        "the `{machine}` machine's waits could take {events} history events, more than the \
                         {HISTORY_BUDGET_FOR_WAITS} of AWS's {HISTORY_LIMIT} they may use; shorten the timeouts or \
                         let the waits grow longer"
                    ),
                ));
            }
        }
        Ok(plans)
    }
}

impl WaitPlans {
    /// The plan of `kind`.
    pub fn of(&self, kind: PollKind) -> WaitPlan {
        match kind {
            PollKind::Snapshot => self.snapshot,
            PollKind::Database => self.database,
            PollKind::Service => self.service,
            PollKind::Smoke => self.smoke,
        }
    }
}

/// Polls a loop makes before `timeout_minutes` have passed, waiting `first`
/// seconds, then twice as long each time up to `cap`.
pub fn polls_within(first: u32, cap: u32, timeout_minutes: u32) -> u32 {
    let budget = u64::from(timeout_minutes) * 60;
    let (mut waited, mut wait, mut polls) = (0u64, u64::from(first.max(1)), 0u32);
    while waited < budget {
        waited += wait;
        polls += 1;
        wait = (wait * 2).min(u64::from(cap.max(first)));
    }
    polls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intervals(first: u32, cap: u32, timeout: u32) -> PollIntervals {
        PollIntervals {
            database_seconds: first,
            database_max_seconds: cap,
            database_timeout_minutes: timeout,
            ..PollIntervals::default()
        }
    }

    #[test]
    fn a_growing_wait_polls_a_twenty_minute_snapshot_about_a_dozen_times() {
        assert_eq!(polls_within(30, 300, 20), 7);
        assert_eq!(polls_within(30, 30, 20), 40);
        assert_eq!(polls_within(1, 1, 1), 60);
    }

    #[test]
    fn the_defaults_fit_every_machine_and_a_long_snapshot() {
        let plans = PollIntervals::default()
            .plans(
                &crate::smoke::SmokeSettings::default(),
                &["snapshot", "refresh", "sleep", "wake", "restop"],
            )
            .unwrap();
        assert_eq!(plans.database, PollIntervals::default().plan(PollKind::Database).unwrap());
        assert!(plans.snapshot.timeout_minutes >= 12 * 60, "a large database's snapshot takes hours");
        assert_eq!((plans.snapshot.count, plans.snapshot.seconds, plans.snapshot.doubled), (0, 30, 60));
    }

    #[test]
    fn intervals_below_the_floor_or_loops_of_too_many_polls_are_refused_naming_the_field() {
        let error = intervals(0, 300, 60).plan(PollKind::Database).unwrap_err().to_string();
        assert!(error.contains("config.poll.database_seconds"), "{error}");
        let error = intervals(30, 10, 60).plan(PollKind::Database).unwrap_err().to_string();
        assert!(error.contains("config.poll.database_max_seconds"), "{error}");
        let error = intervals(1, 1, 60).plan(PollKind::Database).unwrap_err().to_string();
        assert!(
            error.contains("config.poll.database_timeout_minutes") && error.contains("3600 polls"),
            "{error}"
        );
        let error = intervals(30, 300, 0).plan(PollKind::Database).unwrap_err().to_string();
        assert!(error.contains("config.poll.database_timeout_minutes"), "{error}");
    }

    #[test]
    fn waits_that_would_overrun_a_machines_history_are_refused() {
        // 5 database loops of 600 polls each: 33,000 events.
        let poll = intervals(2, 2, 20);
        assert_eq!(poll.plan(PollKind::Database).unwrap().max_polls, 600);
        let error =
            poll.plans(&crate::smoke::SmokeSettings::default(), &["refresh"]).unwrap_err().to_string();
        assert!(error.contains("`refresh` machine") && error.contains("database_timeout_minutes"), "{error}");
        assert!(
            poll.plans(&crate::smoke::SmokeSettings::default(), &["sleep"]).is_ok(),
            "one loop of 600 polls fits"
        );
    }
}
