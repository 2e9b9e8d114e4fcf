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
    /// Or: an ECS task that runs the migrations (a one-off task of a named task
    /// definition), waited for until it stops; every essential container must exit 0.
    #[serde(default)]
    pub migrate_task: Option<MigrationTask>,
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
            migrate_task: None,
            migrate_timeout_seconds: default_migrate_timeout(),
            restart_services: false,
        }
    }
}

/// `refresh.migrate_task`: a one-off ECS task in staging. The cluster and the task
/// definition must carry the staging tag (the guard rails check both before `RunTask`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationTask {
    /// The staging ECS cluster (name or ARN).
    pub cluster: String,
    /// The task definition: `family`, `family:revision` or its ARN.
    pub task_definition: String,
    /// `FARGATE` (default), `EC2` or `EXTERNAL`.
    #[serde(default = "default_launch_type")]
    pub launch_type: String,
    /// Subnets of an `awsvpc` task (a list, or one comma-separated string).
    #[serde(default, deserialize_with = "crate::config::list_or_comma_separated")]
    pub subnet_ids: Vec<String>,
    /// Its security groups.
    #[serde(default, deserialize_with = "crate::config::list_or_comma_separated")]
    pub security_group_ids: Vec<String>,
    /// A command replacing one container's (e.g. `["alembic", "upgrade", "head"]`).
    #[serde(default)]
    pub command: Option<ContainerCommand>,
}

/// A container's command override.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerCommand {
    /// The container's name in the task definition.
    pub container: String,
    /// The command.
    pub command: Vec<String>,
}

fn default_launch_type() -> String {
    "FARGATE".into()
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
    /// `refresh.migrate_task` is set.
    pub migrate_task: bool,
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
        if let Some(task) = &self.migrate_task {
            if self.migrate.is_some() {
                return Err(crate::config::invalid(
                    "config.refresh.migrate_task",
                    "give either migrate (an HTTP request) or migrate_task (an ECS task), not both".into(),
                ));
            }
            for (field, value) in [("cluster", &task.cluster), ("task_definition", &task.task_definition)] {
                if value.trim().is_empty() {
                    return Err(crate::config::invalid(
                        &format!("config.refresh.migrate_task.{field}"),
                        "must not be empty".into(),
                    ));
                }
            }
            if !["FARGATE", "EC2", "EXTERNAL"].contains(&task.launch_type.as_str()) {
                return Err(crate::config::invalid(
                    "config.refresh.migrate_task.launch_type",
                    format!("`{}` is not FARGATE, EC2 or EXTERNAL", task.launch_type),
                ));
            }
            if task.command.as_ref().is_some_and(|c| c.container.is_empty() || c.command.is_empty()) {
                return Err(crate::config::invalid(
                    "config.refresh.migrate_task.command",
                    "needs a container name and a non-empty command".into(),
                ));
            }
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
