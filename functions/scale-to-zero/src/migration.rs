//! The refresh's migration task (`refresh.migrate_task`): a one-off ECS task in
//! staging, run once per refresh and waited for until it stops.
//!
//! `run-migration-task` checks that the cluster and the task definition carry the
//! staging tag, then calls `RunTask` with a client token derived from the run id
//! (a retried step starts no second task). `migration-task-status` answers
//! `stopped: false` while the task runs; once it has stopped, every essential
//! container must have exited 0, else `MigrationFailed` names the container, its
//! exit code and ECS's reason.

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ClusterField, ContainerOverride, LaunchType, NetworkConfiguration,
    TaskDefinitionField, TaskOverride,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use understudy_shared::config::EnvironmentConfig;
use understudy_shared::guard;
use understudy_shared::refresh::MigrationTask;
use understudy_shared::settings::ConfigRef;
use understudy_shared::{Error, Result};

use crate::discover::{ecs_tags, Clients};

/// `{"action": "run-migration-task", "run_id": "...", "config": {...}}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunMigrationRequest {
    /// The execution's name: the task's client token derives from it.
    pub run_id: String,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// `{"action": "migration-task-status", "task": {"cluster", "task_arn"}, "config": {...}}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationStatusRequest {
    /// The task `run-migration-task` started.
    pub task: StartedTask,
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// A started migration task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartedTask {
    /// Its cluster.
    pub cluster: String,
    /// Its ARN.
    pub task_arn: String,
}

/// What `migration-task-status` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct MigrationStatus {
    /// The task's `lastStatus` (`PROVISIONING`, `RUNNING`, `STOPPED`, ...).
    pub status: String,
    /// True once it has stopped with every essential container at exit code 0.
    pub stopped: bool,
}

fn configured(config: &EnvironmentConfig) -> Result<&MigrationTask> {
    config.refresh.migrate_task.as_ref().ok_or_else(|| {
        Error::InvalidInput(
            "invalid input at `config.refresh.migrate_task`: no migration task is configured".into(),
        )
    })
}

/// An idempotency token for `RunTask` (at most 64 characters) from the run id.
fn client_token(run_id: &str) -> String {
    let digest = Sha256::digest(format!("understudy-migration\n{run_id}").as_bytes());
    digest.iter().take(24).map(|b| format!("{b:02x}")).collect()
}

/// Checks the staging tag on the cluster and the task definition, then runs the task once.
pub async fn run(clients: &Clients, config: &EnvironmentConfig, run_id: &str) -> Result<StartedTask> {
    let task = configured(config)?;
    let clusters = clients
        .ecs
        .describe_clusters()
        .clusters(&task.cluster)
        .include(ClusterField::Tags)
        .send()
        .await
        .map_err(|e| Error::from_sdk("ecs:DescribeClusters", e))?;
    let cluster =
        clusters.clusters().first().filter(|c| c.status() != Some("INACTIVE")).ok_or_else(|| {
            Error::ResourceNotFound(format!(
                "config.refresh.migrate_task.cluster: ECS cluster `{}` does not exist in staging",
                task.cluster
            ))
        })?;
    guard::ensure_staging(&format!("ECS cluster {}", task.cluster), &ecs_tags(cluster.tags()), &config.tag)?;
    let definition = clients
        .ecs
        .describe_task_definition()
        .task_definition(&task.task_definition)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(|e| Error::from_sdk("ecs:DescribeTaskDefinition", e))?;
    guard::ensure_staging(
        &format!("ECS task definition {}", task.task_definition),
        &ecs_tags(definition.tags()),
        &config.tag,
    )?;
    let mut request = clients
        .ecs
        .run_task()
        .cluster(&task.cluster)
        .task_definition(&task.task_definition)
        .launch_type(LaunchType::from(task.launch_type.as_str()))
        .count(1)
        .started_by("understudy-refresh")
        .client_token(client_token(run_id));
    if !task.subnet_ids.is_empty() {
        let network = AwsVpcConfiguration::builder()
            .set_subnets(Some(task.subnet_ids.clone()))
            .set_security_groups(Some(task.security_group_ids.clone()))
            .assign_public_ip(AssignPublicIp::Disabled)
            .build()
            .map_err(|e| {
                Error::InvalidInput(format!("invalid input at `config.refresh.migrate_task.subnet_ids`: {e}"))
            })?;
        request = request
            .network_configuration(NetworkConfiguration::builder().awsvpc_configuration(network).build());
    }
    if let Some(command) = &task.command {
        let container = ContainerOverride::builder()
            .name(&command.container)
            .set_command(Some(command.command.clone()))
            .build();
        request = request.overrides(TaskOverride::builder().container_overrides(container).build());
    }
    let out = request.send().await.map_err(|e| Error::from_sdk("ecs:RunTask", e))?;
    if let Some(failure) = out.failures().first() {
        return Err(Error::MigrationFailed(format!(
            "ecs:RunTask of `{}` in `{}` placed no task: {} {}",
            task.task_definition,
            task.cluster,
            failure.reason().unwrap_or_default(),
            failure.detail().unwrap_or_default()
        )));
    }
    let arn = out.tasks().first().and_then(|t| t.task_arn()).ok_or_else(|| {
        Error::AwsRequestFailed(format!("ecs:RunTask of `{}` answered no task", task.task_definition))
    })?;
    tracing::info!(task = %arn, cluster = %task.cluster, definition = %task.task_definition, "started the migration task");
    Ok(StartedTask { cluster: task.cluster.clone(), task_arn: arn.to_owned() })
}

/// The task's status; `MigrationFailed` once it stopped with a container not at 0.
pub async fn status(ecs: &aws_sdk_ecs::Client, started: &StartedTask) -> Result<MigrationStatus> {
    let out = ecs
        .describe_tasks()
        .cluster(&started.cluster)
        .tasks(&started.task_arn)
        .send()
        .await
        .map_err(|e| Error::from_sdk("ecs:DescribeTasks", e))?;
    let task = out.tasks().first().ok_or_else(|| {
        Error::ResourceNotFound(format!(
            "the migration task {} is gone (ECS keeps stopped tasks about an hour)",
            started.task_arn
        ))
    })?;
    let status = task.last_status().unwrap_or("PROVISIONING").to_owned();
    if status != "STOPPED" {
        return Ok(MigrationStatus { status, stopped: false });
    }
    let failed: Vec<String> = task
        .containers()
        .iter()
        .filter(|c| c.exit_code() != Some(0))
        .map(|c| {
            format!(
                "container `{}` exit code {}{}",
                c.name().unwrap_or_default(),
                c.exit_code().map_or("none".to_owned(), |code| code.to_string()),
                c.reason().map(|r| format!(" ({r})")).unwrap_or_default()
            )
        })
        .collect();
    if !failed.is_empty() {
        return Err(Error::MigrationFailed(format!(
            "the migration task {} stopped: {}; {}",
            started.task_arn,
            failed.join(", "),
            task.stopped_reason().unwrap_or("no reason given")
        )));
    }
    tracing::info!(task = %started.task_arn, "the migration task exited 0");
    Ok(MigrationStatus { status, stopped: true })
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::types::{Container, Task};
    use aws_sdk_ecs::Client;
    use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};

    use super::*;

    fn mocked(rules: &[&Rule]) -> Client {
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::Sequential);
        for rule in rules {
            interceptor = interceptor.with_rule(rule);
        }
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_ecs::config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKID", "SECRET", None, None, "mock",
            ))
            .http_client(create_mock_http_client())
            .interceptor(interceptor)
            .build();
        Client::from_conf(config)
    }

    fn described(status: &str, exit_codes: &[Option<i32>]) -> DescribeTasksOutput {
        let containers = exit_codes
            .iter()
            .enumerate()
            .map(|(n, code)| Container::builder().name(format!("c{n}")).set_exit_code(*code).build());
        DescribeTasksOutput::builder()
            .tasks(
                Task::builder()
                    .last_status(status)
                    .set_containers(Some(containers.collect()))
                    .stopped_reason("Essential container in task exited")
                    .build(),
            )
            .build()
    }

    fn started() -> StartedTask {
        StartedTask {
            cluster: "staging".into(),
            task_arn: "arn:aws:ecs:us-east-1:123456789012:task/staging/abc".into(),
        }
    }

    #[tokio::test]
    async fn a_running_task_is_awaited_and_a_zero_exit_ends_the_wait() {
        let running = mock!(Client::describe_tasks).then_output(|| described("RUNNING", &[None]));
        let stopped = mock!(Client::describe_tasks).then_output(|| described("STOPPED", &[Some(0), Some(0)]));
        let ecs = mocked(&[&running, &stopped]);
        assert_eq!(
            status(&ecs, &started()).await.unwrap(),
            MigrationStatus { status: "RUNNING".into(), stopped: false }
        );
        assert_eq!(
            status(&ecs, &started()).await.unwrap(),
            MigrationStatus { status: "STOPPED".into(), stopped: true }
        );
    }

    #[tokio::test]
    async fn a_non_zero_exit_is_migration_failed_naming_the_container_and_the_code() {
        let stopped = mock!(Client::describe_tasks).then_output(|| described("STOPPED", &[Some(0), Some(3)]));
        let error = status(&mocked(&[&stopped]), &started()).await.unwrap_err();
        assert_eq!(error.error_type(), "MigrationFailed");
        let message = error.to_string();
        assert!(message.contains("container `c1` exit code 3") && message.contains("exited"), "{message}");
        assert!(!message.contains("`c0`"), "{message}");
    }

    #[test]
    fn the_client_token_is_stable_per_run_and_fits_ecs() {
        assert_eq!(client_token("deploy-42"), client_token("deploy-42"));
        assert_ne!(client_token("deploy-42"), client_token("deploy-43"));
        assert!(client_token(&"x".repeat(80)).len() <= 64);
    }
}
