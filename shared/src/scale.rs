//! The `scale` section of the configuration document: which of staging's
//! resources `sleep` and `wake` act on, and how.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{
    empty_as_none, flag, invalid, list_or_comma_separated, number_or_numeric_string, optional_float,
};
use crate::Result;

/// What to put to sleep and how. Resources are those carrying the staging tag
/// (`config.tag`) when `select_by_tag` is on, plus the ones listed by name; a
/// listed resource must carry the staging tag too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleSettings {
    /// Find resources by the staging tag (Resource Groups Tagging API, and Auto
    /// Scaling's DescribeTags for groups). Default true.
    #[serde(default = "yes", deserialize_with = "flag_default_true")]
    pub select_by_tag: bool,
    /// ECS services as `cluster/service`.
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    pub ecs_services: Vec<String>,
    /// RDS DB instance identifiers.
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    pub db_instances: Vec<String>,
    /// Aurora DB cluster identifiers.
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    pub db_clusters: Vec<String>,
    /// EC2 instance ids.
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    pub ec2_instances: Vec<String>,
    /// Auto Scaling group names.
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    pub auto_scaling_groups: Vec<String>,
    /// How an Aurora cluster sleeps: `stop` (default) or `min-capacity-zero`
    /// (Serverless v2 clusters go to 0 ACU and pause themselves; provisioned
    /// clusters are still stopped).
    #[serde(default, deserialize_with = "aurora_mode")]
    pub aurora: AuroraSleep,
    /// With `min-capacity-zero`: idle seconds before the cluster pauses (300 to 86400, default 300).
    #[serde(default = "default_auto_pause", deserialize_with = "number_or_numeric_string")]
    pub seconds_until_auto_pause: u32,
    /// Hibernate EC2 instances instead of stopping them (they must be enabled for it).
    #[serde(default, deserialize_with = "flag")]
    pub hibernate: bool,
    /// Resources changed at once (default 8).
    #[serde(default = "default_concurrency", deserialize_with = "number_or_numeric_string")]
    pub concurrency: u32,
    /// The idle check the `sleep` state machine can run first.
    #[serde(default)]
    pub idle: IdleCheck,
}

impl Default for ScaleSettings {
    fn default() -> Self {
        Self {
            select_by_tag: true,
            ecs_services: Vec::new(),
            db_instances: Vec::new(),
            db_clusters: Vec::new(),
            ec2_instances: Vec::new(),
            auto_scaling_groups: Vec::new(),
            aurora: AuroraSleep::Stop,
            seconds_until_auto_pause: default_auto_pause(),
            hibernate: false,
            concurrency: default_concurrency(),
            idle: IdleCheck::default(),
        }
    }
}

/// How an Aurora cluster sleeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuroraSleep {
    /// `StopDBCluster` (its instances stop with it).
    #[default]
    Stop,
    /// Serverless v2: minimum capacity 0 ACU with `SecondsUntilAutoPause`.
    MinCapacityZero,
}

/// "Idle" means: the metric's statistic over the last `minutes` is at most
/// `threshold`. No datapoints at all counts as 0 (an ALB publishes no
/// `RequestCount` for a minute without requests).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdleCheck {
    /// Whether the `sleep` state machine checks first (and stays awake when busy).
    #[serde(default, deserialize_with = "flag")]
    pub enabled: bool,
    /// CloudWatch namespace, default `AWS/ApplicationELB`.
    #[serde(default = "default_namespace", deserialize_with = "string_or_default_namespace")]
    pub namespace: String,
    /// Metric name, default `RequestCount`.
    #[serde(default = "default_metric", deserialize_with = "string_or_default_metric")]
    pub metric: String,
    /// Dimensions, as an object or `Name=value,Name=value` (e.g.
    /// `LoadBalancer=app/staging-alb/50dc6c495c0c9188`).
    #[serde(default, deserialize_with = "dimensions")]
    pub dimensions: BTreeMap<String, String>,
    /// `Sum` (default), `Average`, `Maximum`, `Minimum` or `SampleCount`.
    #[serde(default = "default_statistic", deserialize_with = "string_or_default_statistic")]
    pub statistic: String,
    /// The window, in minutes up to now (default 60).
    #[serde(default = "default_idle_minutes", deserialize_with = "number_or_numeric_string")]
    pub minutes: u32,
    /// Idle when the statistic is at most this (default 0).
    #[serde(default, deserialize_with = "float_or_zero")]
    pub threshold: f64,
}

impl Default for IdleCheck {
    fn default() -> Self {
        Self {
            enabled: false,
            namespace: default_namespace(),
            metric: default_metric(),
            dimensions: BTreeMap::new(),
            statistic: default_statistic(),
            minutes: default_idle_minutes(),
            threshold: 0.0,
        }
    }
}

/// The statistics CloudWatch answers for `GetMetricData` stat names.
pub const STATISTICS: &[&str] = &["Sum", "Average", "Maximum", "Minimum", "SampleCount"];

impl ScaleSettings {
    /// Checks what types alone cannot; errors name the field as `config.scale.<field>`.
    pub fn check(&self) -> Result<()> {
        if !(300..=86_400).contains(&self.seconds_until_auto_pause) {
            return Err(invalid(
                "config.scale.seconds_until_auto_pause",
                format!("{} is outside 300 to 86400 (AWS's range)", self.seconds_until_auto_pause),
            ));
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err(invalid(
                "config.scale.concurrency",
                format!("{} is outside 1 to 64", self.concurrency),
            ));
        }
        for service in &self.ecs_services {
            if parse_service_name(service).is_none() {
                return Err(invalid(
                    "config.scale.ecs_services",
                    format!("`{service}` is not `cluster/service`"),
                ));
            }
        }
        if !self.select_by_tag
            && self.ecs_services.is_empty()
            && self.db_instances.is_empty()
            && self.db_clusters.is_empty()
            && self.ec2_instances.is_empty()
            && self.auto_scaling_groups.is_empty()
        {
            return Err(invalid(
                "config.scale.select_by_tag",
                "is false and no resource is listed by name, so there is nothing to scale".into(),
            ));
        }
        let idle = &self.idle;
        if idle.minutes == 0 || idle.minutes > 1440 {
            return Err(invalid(
                "config.scale.idle.minutes",
                format!("{} is outside 1 to 1440", idle.minutes),
            ));
        }
        if !STATISTICS.contains(&idle.statistic.as_str()) {
            return Err(invalid(
                "config.scale.idle.statistic",
                format!("`{}` is not one of {}", idle.statistic, STATISTICS.join(", ")),
            ));
        }
        if idle.enabled && idle.namespace == default_namespace() && idle.dimensions.is_empty() {
            return Err(invalid(
                "config.scale.idle.dimensions",
                "is required for the idle check: name the load balancer, e.g. LoadBalancer=app/staging-alb/50dc6c495c0c9188"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `cluster/service` split in two (the cluster may be an ARN's last part only).
pub fn parse_service_name(name: &str) -> Option<(&str, &str)> {
    let (cluster, service) = name.split_once('/')?;
    (!cluster.is_empty() && !service.is_empty() && !service.contains('/')).then_some((cluster, service))
}

fn yes() -> bool {
    true
}
fn flag_default_true<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(s) if s.is_empty() => Ok(true),
        other => flag(other).map_err(serde::de::Error::custom),
    }
}
fn default_auto_pause() -> u32 {
    300
}
fn default_concurrency() -> u32 {
    8
}
fn default_namespace() -> String {
    "AWS/ApplicationELB".into()
}
fn default_metric() -> String {
    "RequestCount".into()
}
fn default_statistic() -> String {
    "Sum".into()
}
fn default_idle_minutes() -> u32 {
    60
}

fn aurora_mode<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<AuroraSleep, D::Error> {
    match empty_as_none(deserializer)?.as_deref() {
        None | Some("stop") => Ok(AuroraSleep::Stop),
        Some("min-capacity-zero") => Ok(AuroraSleep::MinCapacityZero),
        Some(other) => Err(serde::de::Error::custom(format!(
            "unknown mode `{other}`, expected `stop` or `min-capacity-zero`"
        ))),
    }
}

fn string_or(default: fn() -> String) -> impl Fn(Option<String>) -> String {
    move |value| value.unwrap_or_else(default)
}
fn string_or_default_namespace<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    empty_as_none(d).map(string_or(default_namespace))
}
fn string_or_default_metric<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    empty_as_none(d).map(string_or(default_metric))
}
fn string_or_default_statistic<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    empty_as_none(d).map(string_or(default_statistic))
}
fn float_or_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    optional_float(d).map(|v| v.unwrap_or(0.0))
}

/// An object of strings, or `Name=value,Name=value` (empty: none).
fn dimensions<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MapOrString {
        Map(BTreeMap<String, String>),
        String(String),
    }
    match MapOrString::deserialize(deserializer)? {
        MapOrString::Map(map) => Ok(map.into_iter().filter(|(_, v)| !v.is_empty()).collect()),
        MapOrString::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| match part.split_once('=') {
                Some((name, value)) if !name.trim().is_empty() && !value.trim().is_empty() => {
                    Ok((name.trim().to_owned(), value.trim().to_owned()))
                }
                _ => Err(serde::de::Error::custom(format!("`{part}` is not Name=value"))),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvironmentConfig;
    use crate::deployment::tests::deployment;
    use serde_json::json;

    #[derive(Debug)]
    struct Document {
        scale: ScaleSettings,
    }

    impl Document {
        fn from_value(value: Value) -> Result<Self> {
            let config = EnvironmentConfig::assemble(&deployment(), Some(&value), &json!({}))?;
            Ok(Self { scale: config.scale })
        }
    }

    fn error_of(value: Value) -> String {
        Document::from_value(value).unwrap_err().to_string()
    }

    #[test]
    fn empty_document_selects_by_tag_with_every_default() {
        let config = EnvironmentConfig::assemble(&deployment(), None, &json!({})).unwrap();
        assert!(config.scale.select_by_tag);
        assert_eq!(config.scale.aurora, AuroraSleep::Stop);
        assert_eq!(config.scale.idle.metric, "RequestCount");
        assert_eq!(config.poll.service_seconds, 15);
        assert!(error_of(json!({"sacle": {}})).contains("sacle"));
    }

    #[test]
    fn deployed_defaults_as_strings_parse() {
        let document = Document::from_value(json!({"scale": {
            "select_by_tag": "", "ecs_services": "staging/api, staging/web", "db_clusters": "",
            "aurora": "min-capacity-zero", "seconds_until_auto_pause": "600", "hibernate": "false",
            "concurrency": "", "idle": {"enabled": "true", "dimensions": "LoadBalancer=app/alb/1",
            "minutes": "30", "threshold": "5", "namespace": "", "metric": "", "statistic": ""}
        }}));
        // concurrency "" is not a number: named by its path.
        assert!(document.unwrap_err().to_string().contains("config.scale.concurrency"));
        let document = Document::from_value(json!({"scale": {
            "select_by_tag": "", "ecs_services": "staging/api, staging/web", "db_clusters": "",
            "aurora": "min-capacity-zero", "seconds_until_auto_pause": "600", "hibernate": "false",
            "idle": {"enabled": "true", "dimensions": "LoadBalancer=app/alb/1",
            "minutes": "30", "threshold": "5", "namespace": "", "metric": "", "statistic": ""}
        }}))
        .unwrap();
        let scale = document.scale;
        assert!(scale.select_by_tag);
        assert_eq!(scale.ecs_services, ["staging/api", "staging/web"]);
        assert!(scale.db_clusters.is_empty());
        assert_eq!(scale.aurora, AuroraSleep::MinCapacityZero);
        assert_eq!(scale.seconds_until_auto_pause, 600);
        assert!(scale.idle.enabled);
        assert_eq!(scale.idle.dimensions.get("LoadBalancer").map(String::as_str), Some("app/alb/1"));
        assert_eq!((scale.idle.minutes, scale.idle.threshold), (30, 5.0));
        assert_eq!(scale.idle.namespace, "AWS/ApplicationELB");
    }

    #[test]
    fn bad_values_are_named_by_their_path() {
        assert!(error_of(json!({"scale": {"aurora": "pause"}})).contains("config.scale.aurora"));
        assert!(error_of(json!({"scale": {"seconds_until_auto_pause": 60}}))
            .contains("config.scale.seconds_until_auto_pause"));
        assert!(error_of(json!({"scale": {"ecs_services": ["api"]}})).contains("config.scale.ecs_services"));
        assert!(error_of(json!({"scale": {"idle": {"statistic": "p99"}}}))
            .contains("config.scale.idle.statistic"));
        assert!(error_of(json!({"scale": {"idle": {"dimensions": "LoadBalancer"}}}))
            .contains("config.scale.idle.dimensions"));
        assert!(
            error_of(json!({"scale": {"idle": {"enabled": true}}})).contains("config.scale.idle.dimensions")
        );
        assert!(error_of(json!({"scale": {"select_by_tag": false}})).contains("nothing to scale"));
        assert!(error_of(json!({"poll": {"service_seconds": 0}})).contains("config.poll.service_seconds"));
    }

    #[test]
    fn service_names_are_cluster_slash_service() {
        assert_eq!(parse_service_name("staging/api"), Some(("staging", "api")));
        for bad in ["api", "/api", "staging/", "a/b/c"] {
            assert_eq!(parse_service_name(bad), None, "{bad}");
        }
    }
}
