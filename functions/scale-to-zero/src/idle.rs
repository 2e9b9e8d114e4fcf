//! `check-idle`: is staging idle? A CloudWatch metric (default the load
//! balancer's `RequestCount`) over the last N minutes, against a threshold.
//!
//! The metric is read behind the narrow [`Metrics`] trait: the local emulator
//! does not serve CloudWatch's RPC v2 CBOR protocol, so the CloudWatch
//! implementation is tested on mocked SDK responses, and the decision on a fake.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use schemars::JsonSchema;
use serde::Serialize;
use understudy_shared::scale::IdleCheck;
use understudy_shared::{Error, Result};

/// Reads one metric's per-minute datapoints.
pub trait Metrics {
    /// The `check.statistic` of `check.metric` per minute between `start` and `end`.
    fn datapoints(
        &self,
        check: &IdleCheck,
        start: SystemTime,
        end: SystemTime,
    ) -> impl Future<Output = Result<Vec<f64>>> + Send;
}

/// [`Metrics`] from CloudWatch `GetMetricData`.
#[derive(Clone, Debug)]
pub struct CloudWatch(pub aws_sdk_cloudwatch::Client);

impl Metrics for CloudWatch {
    async fn datapoints(&self, check: &IdleCheck, start: SystemTime, end: SystemTime) -> Result<Vec<f64>> {
        let metric = Metric::builder()
            .namespace(&check.namespace)
            .metric_name(&check.metric)
            .set_dimensions(Some(
                check
                    .dimensions
                    .iter()
                    .map(|(name, value)| Dimension::builder().name(name).value(value).build())
                    .collect(),
            ))
            .build();
        let query = MetricDataQuery::builder()
            .id("idle")
            .metric_stat(MetricStat::builder().metric(metric).period(60).stat(&check.statistic).build())
            .return_data(true)
            .build();
        let mut values = Vec::new();
        let mut pages = self
            .0
            .get_metric_data()
            .metric_data_queries(query)
            .start_time(DateTime::from(start))
            .end_time(DateTime::from(end))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::from_sdk("cloudwatch:GetMetricData", e))?;
            for result in page.metric_data_results() {
                values.extend_from_slice(result.values());
            }
        }
        Ok(values)
    }
}

/// The statistic over the whole window from per-minute datapoints. No
/// datapoints is 0: CloudWatch publishes no `RequestCount` for a minute
/// without requests. `Average` is the mean of the per-minute averages.
pub fn aggregate(statistic: &str, values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    match statistic {
        "Maximum" => values.iter().copied().fold(f64::MIN, f64::max),
        "Minimum" => values.iter().copied().fold(f64::MAX, f64::min),
        "Average" => values.iter().sum::<f64>() / values.len() as f64,
        _ => values.iter().sum(),
    }
}

/// Whether staging has been idle for `check.minutes` up to `now`.
pub async fn check_idle(metrics: &impl Metrics, check: &IdleCheck, now: SystemTime) -> Result<IdleReport> {
    let start = now - Duration::from_secs(u64::from(check.minutes) * 60);
    let values = metrics.datapoints(check, start, now).await?;
    let value = aggregate(&check.statistic, &values);
    let idle = value <= check.threshold;
    tracing::info!(idle, value, datapoints = values.len(), metric = %check.metric, "idle check");
    Ok(IdleReport {
        idle,
        value,
        datapoints: values.len(),
        namespace: check.namespace.clone(),
        metric: check.metric.clone(),
        dimensions: check.dimensions.clone(),
        statistic: check.statistic.clone(),
        minutes: check.minutes,
        threshold: check.threshold,
    })
}

/// What `check-idle` answers: the decision and what it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct IdleReport {
    /// Whether staging has been idle over the window.
    pub idle: bool,
    /// The statistic over the window.
    pub value: f64,
    /// How many per-minute datapoints CloudWatch had.
    pub datapoints: usize,
    /// CloudWatch namespace.
    pub namespace: String,
    /// Metric name.
    pub metric: String,
    /// Its dimensions.
    pub dimensions: BTreeMap<String, String>,
    /// The statistic.
    pub statistic: String,
    /// The window, in minutes up to now.
    pub minutes: u32,
    /// Idle when `value` is at most this.
    pub threshold: f64,
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use aws_sdk_cloudwatch::operation::get_metric_data::{GetMetricDataError, GetMetricDataOutput};
    use aws_sdk_cloudwatch::types::MetricDataResult;
    use aws_sdk_cloudwatch::Client;
    use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};

    use serde_json::Value;

    use super::*;

    /// `check_idle`'s answer as the state machine sees it.
    async fn check_idle(metrics: &impl Metrics, check: &IdleCheck, now: SystemTime) -> Result<Value> {
        super::check_idle(metrics, check, now).await.map(|report| serde_json::to_value(report).unwrap())
    }

    fn check() -> IdleCheck {
        IdleCheck {
            enabled: true,
            dimensions: [("LoadBalancer".to_owned(), "app/staging-alb/50dc6c495c0c9188".to_owned())].into(),
            ..IdleCheck::default()
        }
    }

    fn mocked(rules: &[&Rule]) -> CloudWatch {
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::Sequential);
        for rule in rules {
            interceptor = interceptor.with_rule(rule);
        }
        let config = aws_sdk_cloudwatch::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKID", "SECRET", None, None, "mock",
            ))
            .retry_config(aws_sdk_cloudwatch::config::retry::RetryConfig::disabled())
            .http_client(create_mock_http_client())
            .interceptor(interceptor)
            .build();
        CloudWatch(Client::from_conf(config))
    }

    fn page(values: &[f64], next: Option<&str>) -> GetMetricDataOutput {
        GetMetricDataOutput::builder()
            .metric_data_results(
                MetricDataResult::builder().id("idle").set_values(Some(values.to_vec())).build(),
            )
            .set_next_token(next.map(str::to_owned))
            .build()
    }

    #[tokio::test]
    async fn requests_over_the_window_make_staging_busy() {
        let first = mock!(Client::get_metric_data)
            .match_requests(|request| {
                let query = &request.metric_data_queries()[0];
                let stat = query.metric_stat().unwrap();
                let metric = stat.metric().unwrap();
                metric.namespace() == Some("AWS/ApplicationELB")
                    && metric.metric_name() == Some("RequestCount")
                    && metric.dimensions()[0].value() == Some("app/staging-alb/50dc6c495c0c9188")
                    && stat.stat() == Some("Sum")
                    && stat.period() == Some(60)
                    && request.end_time().unwrap().secs() - request.start_time().unwrap().secs() == 3600
            })
            .then_output(|| page(&[3.0, 0.0], Some("more")));
        let second = mock!(Client::get_metric_data).then_output(|| page(&[2.0], None));
        let report = check_idle(&mocked(&[&first, &second]), &check(), SystemTime::now()).await.unwrap();
        assert_eq!(report["idle"], false);
        assert_eq!(report["value"], 5.0);
        assert_eq!(report["datapoints"], 3);
    }

    #[tokio::test]
    async fn no_datapoints_is_idle() {
        let empty = mock!(Client::get_metric_data).then_output(|| page(&[], None));
        let report = check_idle(&mocked(&[&empty]), &check(), SystemTime::now()).await.unwrap();
        assert_eq!((report["idle"].as_bool(), report["value"].as_f64()), (Some(true), Some(0.0)));
    }

    #[tokio::test]
    async fn throttling_is_retryable() {
        let throttled = mock!(Client::get_metric_data).then_error(|| {
            GetMetricDataError::generic(
                aws_sdk_cloudwatch::error::ErrorMetadata::builder()
                    .code("Throttling")
                    .message("Rate exceeded")
                    .build(),
            )
        });
        let err = check_idle(&mocked(&[&throttled]), &check(), SystemTime::now()).await.unwrap_err();
        assert_eq!(err.error_type(), "Throttled");
    }

    /// A fake for the decision alone: records the window asked for.
    struct Fake {
        values: Vec<f64>,
        window: Mutex<Option<Duration>>,
    }

    impl Metrics for Fake {
        async fn datapoints(&self, _: &IdleCheck, start: SystemTime, end: SystemTime) -> Result<Vec<f64>> {
            *self.window.lock().unwrap() = end.duration_since(start).ok();
            Ok(self.values.clone())
        }
    }

    #[tokio::test]
    async fn the_threshold_and_window_come_from_the_config() {
        let fake = Fake { values: vec![1.0, 2.0, 1.0], window: Mutex::new(None) };
        let quiet = IdleCheck { threshold: 4.0, minutes: 15, ..check() };
        assert_eq!(check_idle(&fake, &quiet, SystemTime::now()).await.unwrap()["idle"], true);
        assert_eq!(*fake.window.lock().unwrap(), Some(Duration::from_secs(900)));
        let strict = IdleCheck { threshold: 3.9, ..quiet };
        assert_eq!(check_idle(&fake, &strict, SystemTime::now()).await.unwrap()["idle"], false);
    }

    #[test]
    fn statistics_aggregate_over_the_window() {
        let values = [1.0, 4.0, 2.0];
        assert_eq!(aggregate("Sum", &values), 7.0);
        assert_eq!(aggregate("SampleCount", &values), 7.0);
        assert_eq!(aggregate("Maximum", &values), 4.0);
        assert_eq!(aggregate("Minimum", &values), 1.0);
        assert!((aggregate("Average", &values) - 7.0 / 3.0).abs() < 1e-9);
        assert_eq!(aggregate("Maximum", &[]), 0.0);
    }
}
