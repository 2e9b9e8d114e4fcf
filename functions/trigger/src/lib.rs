//! The trigger function: the target of the deploy rules on the staging bus. It
//! starts the `refresh` machine with `{"trigger": {...}}` (which event, which
//! version, which deployment) for three kinds of event:
//!
//! - **`Production Deployed`**, the custom event CI sends, from the source the
//!   `DeployEventSource` stack parameter names; `detail`: `{"version",
//!   "deployment"?}`. One refresh per `deployment` (default: per `version`);
//! - **ECS `SERVICE_DEPLOYMENT_COMPLETED`** of a production service that
//!   `ProductionServiceArns` names. A deploy of six services sends six events:
//!   they start one refresh, named from the cluster and the time window
//!   (`DeployCoalesceMinutes`) the event falls in. A service not in the list
//!   (staging's own, which the refresh's `restart_services` redeploys) starts
//!   nothing, so a refresh cannot trigger itself;
//! - **CodePipeline `SUCCEEDED`** of the pipeline `ProductionPipelineName`
//!   names; one refresh per pipeline execution.
//!
//! The execution is named from the deploy, so a redelivered event, or a second
//! event of the same deploy, starts nothing: `ExecutionAlreadyExists` is
//! success. Anything else is answered `ignored` with the reason, never an error,
//! so EventBridge does not retry it.

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{json, Value};
use understudy_shared::aws::AwsContext;
use understudy_shared::request::parse_under;
use understudy_shared::trigger::{
    execution_name, Trigger, ECS_DEPLOYMENT, PIPELINE_EXECUTION, PRODUCTION_DEPLOYED,
};
use understudy_shared::{Error, Result};

/// The refresh machine the trigger starts (`RefreshStateMachine`).
pub const REFRESH_STATE_MACHINE_ARN: &str = "UNDERSTUDY_REFRESH_STATE_MACHINE_ARN";
/// `DeployEventSource`: the `source` of the custom `Production Deployed` event.
pub const DEPLOY_EVENT_SOURCE: &str = "UNDERSTUDY_DEPLOY_EVENT_SOURCE";
/// `ProductionServiceArns`: comma-separated production ECS service ARNs.
pub const PRODUCTION_SERVICES: &str = "UNDERSTUDY_PRODUCTION_SERVICES";
/// `ProductionPipelineName`: the production pipeline.
pub const PRODUCTION_PIPELINE: &str = "UNDERSTUDY_PRODUCTION_PIPELINE";
/// `DeployCoalesceMinutes`: ECS events of one cluster within this window start one refresh.
pub const COALESCE_MINUTES: &str = "UNDERSTUDY_DEPLOY_COALESCE_MINUTES";
/// The default of [`COALESCE_MINUTES`].
pub const DEFAULT_COALESCE_MINUTES: u32 = 15;

/// What the deployed stack tells the trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerSettings {
    /// The refresh machine's ARN.
    pub refresh: String,
    /// The custom event's source.
    pub source: Option<String>,
    /// Production's ECS services.
    pub services: Vec<String>,
    /// Production's pipeline.
    pub pipeline: Option<String>,
    /// The ECS coalescing window.
    pub coalesce_minutes: u32,
}

impl TriggerSettings {
    /// Reads the settings through `lookup` (variable name to value); errors name the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let refresh = get(REFRESH_STATE_MACHINE_ARN).ok_or_else(|| {
            Error::InvalidInput(format!("{REFRESH_STATE_MACHINE_ARN} is not set; the SAM template sets it"))
        })?;
        let services = get(PRODUCTION_SERVICES)
            .map(|list| list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let coalesce_minutes = match get(COALESCE_MINUTES) {
            None => DEFAULT_COALESCE_MINUTES,
            Some(text) => text.parse().ok().filter(|m| (1..=1440).contains(m)).ok_or_else(|| {
                Error::InvalidInput(format!("{COALESCE_MINUTES} must be 1 to 1440 minutes, got `{text}`"))
            })?,
        };
        Ok(Self {
            refresh,
            source: get(DEPLOY_EVENT_SOURCE),
            services,
            pipeline: get(PRODUCTION_PIPELINE),
            coalesce_minutes,
        })
    }
}

/// What the trigger did with an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerOutcome {
    /// A refresh was started.
    Started,
    /// This deploy's refresh exists already (a redelivery, or another event of the deploy).
    AlreadyStarted,
    /// Not a production deploy this stack follows.
    Ignored,
}

/// The trigger's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct TriggerAnswer {
    /// What was done.
    pub outcome: TriggerOutcome,
    /// The refresh's execution name (none when ignored).
    pub name: Option<String>,
    /// The refresh's execution ARN (none when ignored).
    pub execution: Option<String>,
    /// The deploy it follows (none when ignored).
    pub trigger: Option<Trigger>,
    /// Why, when ignored.
    pub reason: Option<String>,
}

impl TriggerAnswer {
    fn ignored(reason: String) -> Self {
        tracing::info!(%reason, "ignored");
        Self {
            outcome: TriggerOutcome::Ignored,
            name: None,
            execution: None,
            trigger: None,
            reason: Some(reason),
        }
    }
}

/// A deploy event as EventBridge delivers it.
pub type DeployEvent = CloudWatchEvent<Value>;

/// Which refresh `event` asks for: its execution name and trigger, or why none.
pub fn refresh_for(
    settings: &TriggerSettings,
    event: &DeployEvent,
) -> std::result::Result<(String, Trigger), String> {
    let detail_type = event.detail_type.as_deref().unwrap_or_default();
    let source = event.source.as_deref().unwrap_or_default();
    let detail = event.detail.clone().unwrap_or(Value::Null);
    let text = |field: &str| detail.get(field).and_then(Value::as_str).map(str::to_owned);
    let at = Some(event.time.to_rfc3339_opts(chrono_seconds(), true));
    let base = |deployment: String| Trigger {
        event: detail_type.to_owned(),
        source: source.to_owned(),
        deployment,
        version: None,
        service: None,
        pipeline: None,
        at: at.clone(),
    };
    match detail_type {
        PRODUCTION_DEPLOYED => {
            if settings.source.as_deref() != Some(source) {
                return Err(format!(
                    "a `{PRODUCTION_DEPLOYED}` event from `{source}`, but DeployEventSource is `{}`",
                    settings.source.as_deref().unwrap_or("")
                ));
            }
            let version = text("version").filter(|v| !v.is_empty());
            let deployment =
                text("deployment").filter(|d| !d.is_empty()).or_else(|| version.clone()).ok_or_else(
                    || format!("a `{PRODUCTION_DEPLOYED}` event needs detail.version or detail.deployment"),
                )?;
            Ok((execution_name("deploy", &deployment), Trigger { version, ..base(deployment) }))
        }
        ECS_DEPLOYMENT => {
            if text("eventName").as_deref() != Some("SERVICE_DEPLOYMENT_COMPLETED") {
                return Err(format!(
                    "an ECS deployment event `{}`, not SERVICE_DEPLOYMENT_COMPLETED",
                    text("eventName").unwrap_or_default()
                ));
            }
            if settings.services.is_empty() {
                return Err("an ECS deployment event, but ProductionServiceArns is empty".into());
            }
            let Some(service) = event.resources.iter().find(|r| settings.services.contains(r)) else {
                return Err(format!(
                    "the deployment of {}, not one of ProductionServiceArns (staging's own deployments start nothing)",
                    event.resources.join(", ")
                ));
            };
            let cluster = service.split('/').nth(1).unwrap_or("cluster");
            let window = window_start(event, settings.coalesce_minutes);
            let deployment = text("deploymentId").unwrap_or_else(|| window.clone());
            Ok((
                execution_name("ecs", &format!("{cluster}-{window}")),
                Trigger { service: Some(service.clone()), ..base(deployment) },
            ))
        }
        PIPELINE_EXECUTION => {
            if text("state").as_deref() != Some("SUCCEEDED") {
                return Err(format!(
                    "a pipeline execution `{}`, not SUCCEEDED",
                    text("state").unwrap_or_default()
                ));
            }
            let pipeline = text("pipeline").unwrap_or_default();
            if settings.pipeline.as_deref() != Some(pipeline.as_str()) {
                return Err(format!(
                    "pipeline `{pipeline}`, but ProductionPipelineName is `{}`",
                    settings.pipeline.as_deref().unwrap_or("")
                ));
            }
            let execution = text("execution-id").ok_or("a pipeline event without detail.execution-id")?;
            let version =
                detail.get("version").map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
            Ok((
                execution_name("pipeline", &execution),
                Trigger { version, pipeline: Some(pipeline), ..base(execution) },
            ))
        }
        other => Err(format!("an event `{other}` from `{source}`, not a deploy this stack follows")),
    }
}

fn chrono_seconds() -> chrono::SecondsFormat {
    chrono::SecondsFormat::Secs
}

/// The start of the coalescing window the event falls in, `YYYYMMDDTHHMM` (UTC).
fn window_start(event: &DeployEvent, minutes: u32) -> String {
    let seconds = i64::from(minutes) * 60;
    let start = event.time.timestamp().div_euclid(seconds) * seconds;
    chrono::DateTime::from_timestamp(start, 0)
        .map(|t| t.format("%Y%m%dT%H%M").to_string())
        .unwrap_or_default()
}

/// The function's handler.
pub struct TriggerFunction {
    sfn: aws_sdk_sfn::Client,
    settings: Result<TriggerSettings>,
}

impl TriggerFunction {
    /// A handler using `aws` and the process environment.
    pub fn new(aws: AwsContext) -> Self {
        let settings = TriggerSettings::from_lookup(|name| std::env::var(name).ok());
        Self { sfn: aws_sdk_sfn::Client::new(aws.base()), settings }
    }

    /// Handles one event.
    pub async fn handle(&self, payload: Value) -> Result<Value> {
        let settings = self.settings.as_ref().map_err(Clone::clone)?;
        let event: DeployEvent = parse_under("event", payload)?;
        let answer = match refresh_for(settings, &event) {
            Err(reason) => TriggerAnswer::ignored(reason),
            Ok((name, trigger)) => self.start(settings, name, trigger).await?,
        };
        understudy_shared::answer::to_answer(&answer)
    }

    async fn start(
        &self,
        settings: &TriggerSettings,
        name: String,
        trigger: Trigger,
    ) -> Result<TriggerAnswer> {
        let input = json!({"trigger": trigger, "label": label(&trigger)});
        let started = self
            .sfn
            .start_execution()
            .state_machine_arn(&settings.refresh)
            .name(&name)
            .input(input.to_string())
            .send()
            .await;
        let execution = execution_arn(&settings.refresh, &name);
        let outcome = match started {
            Ok(_) => TriggerOutcome::Started,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_execution_already_exists()) => {
                TriggerOutcome::AlreadyStarted
            }
            Err(err) => return Err(Error::from_sdk("states:StartExecution", err)),
        };
        tracing::info!(%name, ?outcome, deployment = %trigger.deployment, "refresh");
        Ok(TriggerAnswer {
            outcome,
            name: Some(name),
            execution: Some(execution),
            trigger: Some(trigger),
            reason: None,
        })
    }
}

/// The run's label: what was deployed, for the lifecycle events.
fn label(trigger: &Trigger) -> String {
    let what = trigger.version.as_deref().unwrap_or(&trigger.deployment);
    let label = format!("{}: {what}", trigger.event);
    label.chars().take(256).collect()
}

/// The ARN of execution `name` of `state_machine`.
pub fn execution_arn(state_machine: &str, name: &str) -> String {
    format!("{}:{name}", state_machine.replacen(":stateMachine:", ":execution:", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TriggerSettings {
        TriggerSettings {
            refresh: "arn:aws:states:us-east-1:123456789012:stateMachine:refresh".into(),
            source: Some("acme.ci".into()),
            services: vec!["arn:aws:ecs:us-east-1:111111111111:service/prod/web".into()],
            pipeline: Some("deploy-prod".into()),
            coalesce_minutes: 15,
        }
    }

    fn event(value: Value) -> DeployEvent {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn six_ecs_events_of_one_deploy_name_one_refresh_and_a_staging_deployment_none() {
        let names: Vec<String> = (0..6)
            .map(|n| {
                let e = event(json!({
                    "detail-type": ECS_DEPLOYMENT, "source": "aws.ecs", "time": format!("2026-12-01T18:3{n}:00Z"),
                    "resources": ["arn:aws:ecs:us-east-1:111111111111:service/prod/web"],
                    "detail": {"eventName": "SERVICE_DEPLOYMENT_COMPLETED", "deploymentId": format!("ecs-svc/{n}")},
                }));
                refresh_for(&settings(), &e).unwrap().0
            })
            .collect();
        assert!(names.iter().all(|n| n == "ecs-prod-20261201T1830"), "{names:?}");
        let staging = event(json!({
            "detail-type": ECS_DEPLOYMENT, "source": "aws.ecs", "time": "2026-12-01T18:30:00Z",
            "resources": ["arn:aws:ecs:us-east-1:222222222222:service/staging/web"],
            "detail": {"eventName": "SERVICE_DEPLOYMENT_COMPLETED"},
        }));
        assert!(refresh_for(&settings(), &staging).unwrap_err().contains("staging's own"));
    }

    #[test]
    fn the_custom_event_needs_the_deployed_source_and_a_version() {
        let deployed = |source: &str, detail: Value| {
            refresh_for(
                &settings(),
                &event(
                    json!({"detail-type": PRODUCTION_DEPLOYED, "source": source, "time": "2026-12-01T18:30:00Z", "resources": [], "detail": detail}),
                ),
            )
        };
        let (name, trigger) =
            deployed("acme.ci", json!({"version": "v1.4.2", "deployment": "gh-77"})).unwrap();
        assert_eq!(name, "deploy-gh-77");
        assert_eq!(trigger.version.as_deref(), Some("v1.4.2"));
        assert!(deployed("someone.else", json!({"version": "v1"}))
            .unwrap_err()
            .contains("DeployEventSource"));
        assert!(deployed("acme.ci", json!({})).unwrap_err().contains("detail.version"));
    }

    #[test]
    fn the_example_events_each_start_a_refresh_named_after_their_deploy() {
        let settings = TriggerSettings {
            source: Some("understudy.ci".into()),
            services: vec!["arn:aws:ecs:us-east-1:111111111111:service/production/web".into()],
            pipeline: Some("production-deploy".into()),
            ..settings()
        };
        for (example, name) in [
            (
                include_str!("../../../tests/events/trigger-production-deployed.json"),
                "deploy-github-run-9313",
            ),
            (
                include_str!("../../../tests/events/trigger-ecs-deployment.json"),
                "ecs-production-20261201T1830",
            ),
            (
                include_str!("../../../tests/events/trigger-pipeline-succeeded.json"),
                "pipeline-01234567-0123-0123-0123-012345678901",
            ),
        ] {
            let event: DeployEvent = serde_json::from_str(example).unwrap();
            assert_eq!(refresh_for(&settings, &event).unwrap().0, name);
        }
    }

    #[test]
    fn execution_arns_follow_the_state_machines() {
        assert_eq!(
            execution_arn("arn:aws:states:us-east-1:123456789012:stateMachine:refresh", "deploy-1"),
            "arn:aws:states:us-east-1:123456789012:execution:refresh:deploy-1"
        );
    }
}
