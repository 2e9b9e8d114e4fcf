//! The `refresh` section of the configuration document: how staging ends after
//! a refresh has swapped the new database in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::smoke::SmokeCheck;
use crate::Result;

/// What a refresh does after the swap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshSettings {
    /// How staging ends: `as-before` (default: a sleeping staging is put back to
    /// sleep, an awake one stays awake) or `awake` (a sleeping staging is woken).
    #[serde(default)]
    pub after: After,
    /// One HTTP request that runs the migrations on an awake staging (seed 002's
    /// `run-migrations` endpoint), in the smoke checks' vocabulary; its answer
    /// must satisfy `expect` (default status 200). Sent once, before the smoke test.
    #[serde(default)]
    pub migrate: Option<SmokeCheck>,
    /// How long the migration request may take, in seconds (default 300, at most 840:
    /// the smoke-test function's 15-minute limit, less a margin).
    #[serde(default = "default_migrate_timeout")]
    pub migrate_timeout_seconds: u32,
    /// After the migrations, give every awake ECS service the `scale` section
    /// selects a new deployment and wait until it is stable (apps that cache
    /// database connections). Default false.
    #[serde(default)]
    pub restart_services: bool,
}

/// The longest `migrate_timeout_seconds` accepted.
pub const MAX_MIGRATE_TIMEOUT_SECONDS: u32 = 840;

fn default_migrate_timeout() -> u32 {
    300
}

impl Default for RefreshSettings {
    fn default() -> Self {
        Self {
            after: After::default(),
            migrate: None,
            migrate_timeout_seconds: default_migrate_timeout(),
            restart_services: false,
        }
    }
}

/// How staging ends after a refresh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum After {
    /// As it was before the run: asleep stays asleep (the smoke test is skipped), awake stays awake.
    #[default]
    AsBefore,
    /// Awake: a sleeping staging is woken (databases, then services), then smoke-tested.
    Awake,
}

/// What a refresh machine decides from the configuration, answered by `begin`
/// (the machine's `Choice` states read it; no configuration rides along).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RefreshPlan {
    /// `refresh.after` is `awake`.
    pub awake: bool,
    /// `refresh.migrate` is set.
    pub migrate: bool,
    /// `refresh.restart_services`.
    pub restart: bool,
    /// The run mirrors at least one bucket pair.
    pub mirror: bool,
}

impl RefreshSettings {
    /// Checks what types alone cannot.
    pub fn check(&self) -> Result<()> {
        if let Some(migrate) = &self.migrate {
            migrate.check_at("config.refresh.migrate")?;
        }
        if !(1..=MAX_MIGRATE_TIMEOUT_SECONDS).contains(&self.migrate_timeout_seconds) {
            return Err(crate::config::invalid(
                "config.refresh.migrate_timeout_seconds",
                format!("must be 1-{MAX_MIGRATE_TIMEOUT_SECONDS}"),
            ));
        }
        Ok(())
    }
}
