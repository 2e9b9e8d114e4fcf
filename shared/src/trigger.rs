//! What started a refresh after a production deploy: the trigger function
//! writes it into the execution input as `{"trigger": {...}}`, the refresh's
//! `begin` checks it, and the lifecycle events carry it, so a team sees which
//! deploy each refresh followed.
//!
//! The execution's name is derived from the deploy ([`execution_name`]), so a
//! redelivered event, or a second event of the same deploy, starts nothing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The custom event CI sends to the staging bus after a production deploy.
pub const PRODUCTION_DEPLOYED: &str = "Production Deployed";
/// ECS's deployment event (`detail.eventName` `SERVICE_DEPLOYMENT_COMPLETED`).
pub const ECS_DEPLOYMENT: &str = "ECS Deployment State Change";
/// CodePipeline's execution event (`detail.state` `SUCCEEDED`).
pub const PIPELINE_EXECUTION: &str = "CodePipeline Pipeline Execution State Change";

/// The deploy a refresh follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The event's `detail-type`: `Production Deployed`, `ECS Deployment State
    /// Change` or `CodePipeline Pipeline Execution State Change`.
    pub event: String,
    /// The event's `source` (the `DeployEventSource` parameter, `aws.ecs`, `aws.codepipeline`).
    pub source: String,
    /// Which deployment: the custom event's `deployment` (or its `version`), the
    /// ECS deployment id, or the pipeline execution id.
    pub deployment: String,
    /// Which version was deployed, when the event says (`version` of the custom
    /// event; the pipeline's version).
    #[serde(default)]
    pub version: Option<String>,
    /// The production ECS service (ECS events).
    #[serde(default)]
    pub service: Option<String>,
    /// The pipeline (CodePipeline events).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// When the event happened (its `time`, RFC 3339).
    #[serde(default)]
    pub at: Option<String>,
}

/// Longest execution name Step Functions accepts.
pub const MAX_EXECUTION_NAME: usize = 80;

/// A Step Functions execution name for `kind` and `key`: characters that an
/// execution name may not hold become `-`; a name longer than 80 characters
/// keeps its start and ends with a hash of the whole, so it stays unique.
pub fn execution_name(kind: &str, key: &str) -> String {
    let raw = format!("{kind}-{key}");
    let clean: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
        .collect();
    if clean.len() <= MAX_EXECUTION_NAME {
        return clean;
    }
    let hash: String = Sha256::digest(raw.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hash}", &clean[..MAX_EXECUTION_NAME - hash.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_names_are_valid_deterministic_and_unique() {
        assert_eq!(execution_name("deploy", "v1.4.2"), "deploy-v1.4.2");
        assert_eq!(execution_name("ecs", "prod/web 2026"), "ecs-prod-web-2026");
        let long = "x".repeat(200);
        let name = execution_name("pipeline", &long);
        assert_eq!(name.len(), MAX_EXECUTION_NAME);
        assert_eq!(name, execution_name("pipeline", &long));
        assert_ne!(name, execution_name("pipeline", &format!("{long}y")));
    }
}
