//! The mirror function: makes a staging bucket (and prefix) an exact copy of a
//! production bucket (and prefix), server-side, in memory that does not grow
//! with the bucket, resuming across invocations.
//!
//! Actions:
//! - `mirror`: one step of one phase over one key range. The copy phase merges
//!   the two sorted listings and copies what is missing or different; the delete
//!   phase (run only after the whole copy phase succeeded) merges them again and
//!   deletes the target's extras in batches of 1000. Before the Lambda deadline
//!   it stops taking work and returns a resume token; `next` is the request to
//!   send next (null when done).
//! - `plan`: turns the run's bucket pairs (the deployed `MirrorBuckets`, or
//!   those the execution input's `buckets` chose) into the first `mirror`
//!   request of each key range (`shards` ranges per bucket), for the state
//!   machines' `Map` states.
//!
//! A `mirror` request names its buckets, but only a deployed pair is mirrored
//! (`GuardRailViolation` otherwise), and the target must carry the stack's
//! staging tag.

mod filter;
mod plan;
pub mod s3;
mod sync;

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;
use understudy_shared::answer::{schema_of, to_answer, MAX_ANSWER_BYTES};
use understudy_shared::aws::{s3_client, AwsContext};
use understudy_shared::deployment::Deployment;
use understudy_shared::request::ActionRequest;
use understudy_shared::settings::{ConfigRef, Settings};
use understudy_shared::{Error, Result};

pub use filter::KeyFilter;
pub use plan::Boundaries;
pub use s3::{Location, SOURCE_ETAG_KEY};
pub use sync::{Counts, Phase, ResumeToken};

/// The action of every request a mirror answer hands on (`plan`'s `requests`,
/// `mirror`'s `next`): the state machines forward them as they are.
pub const STEP_ACTION: &str = "mirror";

/// Every action, in the order the module doc lists them.
pub const ACTIONS: &[&str] = &["mirror", "plan"];

/// The schema of each action's answer, for the state machines' contract test.
pub fn answer_schema(action: &str) -> Option<Schema> {
    Some(match action {
        "mirror" => schema_of::<MirrorResponse>(),
        "plan" => schema_of::<Plan>(),
        _ => return None,
    })
}

/// Default number of copies (or delete batches) in flight.
pub const DEFAULT_CONCURRENCY: usize = 128;
/// Default size above which a single-part object is copied in parts (AWS's
/// `CopyObject` limit).
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = s3::MAX_COPY_OBJECT_BYTES;
/// Default part size for those copies.
pub const DEFAULT_PART_SIZE: u64 = 512 * 1024 * 1024;

/// How an object that exists on both sides is judged unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompareMode {
    /// Sizes equal and content identity equal: the ETags are equal, or (when
    /// they differ, as under SSE-KMS) the target records the source's ETag in
    /// `x-amz-meta-understudy-source-etag` (one `HeadObject` to read it).
    #[default]
    Exact,
    /// Sizes and ETags equal; no `HeadObject`. Exact for buckets without SSE-KMS,
    /// recopies SSE-KMS objects every run.
    Etag,
}

/// `{"action": "mirror", "source": {...}, "target": {...}, ...}`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorRequest {
    /// The production bucket and prefix (only read).
    pub source: Location,
    /// The staging bucket and prefix.
    pub target: Location,
    /// Only keys (relative to the prefix) matching one of these prefixes or globs.
    #[serde(default)]
    pub include: Vec<String>,
    /// Keys matching one of these are neither copied nor deleted.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Delete the target's extras after the copy phase (default true).
    #[serde(default = "yes")]
    pub delete: bool,
    /// The copy phase never deletes, even when one invocation did all of it: the
    /// delete phase is the answer's `next`, sent when the caller decides (a
    /// refresh, once the database is swapped in; the fanned-out mirror, once
    /// every range is copied). Default false.
    #[serde(default)]
    pub hold_deletes: bool,
    /// Count what would be copied and deleted, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// See [`CompareMode`].
    #[serde(default)]
    pub compare: CompareMode,
    /// Copies (or delete batches) in flight (1-1024).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Single-part objects above this many bytes are copied in parts.
    #[serde(default = "default_threshold")]
    pub multipart_threshold_bytes: u64,
    /// Part size of those copies (5 MiB - 5 GiB).
    #[serde(default = "default_part_size")]
    pub part_size_bytes: u64,
    /// Where to go on: the `resume` of the previous answer (or a range from
    /// `plan`); absent to start the copy phase of the whole prefix.
    #[serde(default)]
    pub resume: Option<ResumeToken>,
}

fn yes() -> bool {
    true
}
fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}
fn default_threshold() -> u64 {
    DEFAULT_MULTIPART_THRESHOLD
}
fn default_part_size() -> u64 {
    DEFAULT_PART_SIZE
}

impl MirrorRequest {
    fn check(&self) -> Result<()> {
        let invalid = |path: &str, message: String| {
            Err(Error::InvalidInput(format!("invalid input at `{path}`: {message}")))
        };
        if self.source.bucket.is_empty() {
            return invalid("source.bucket", "must not be empty".into());
        }
        if self.target.bucket.is_empty() {
            return invalid("target.bucket", "must not be empty".into());
        }
        if !(1..=1024).contains(&self.concurrency) {
            return invalid("concurrency", format!("must be 1-1024, got {}", self.concurrency));
        }
        if !(s3::MIN_PART_BYTES..=s3::MAX_COPY_OBJECT_BYTES).contains(&self.part_size_bytes) {
            return invalid("part_size_bytes", "must be between 5 MiB and 5 GiB (S3's part limits)".into());
        }
        if self.multipart_threshold_bytes < s3::MIN_PART_BYTES {
            return invalid("multipart_threshold_bytes", "must be at least 5 MiB".into());
        }
        if let Some(token) = &self.resume {
            if let (Some(after), Some(until)) = (&token.after, &token.until) {
                if after >= until {
                    return invalid(
                        "resume",
                        format!("`after` ({after}) must sort before `until` ({until})"),
                    );
                }
            }
        }
        KeyFilter::new(&self.include, &self.exclude).map(|_| ())
    }
}

/// `{"action": "plan", "config": {"input": {...}}, "shards": 8}`: the deployed
/// bucket pairs (`MirrorBuckets`) the input chose, with the document's filters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The run's configuration reference: the execution input (`buckets`,
    /// `dry_run`) and the document version.
    #[serde(default)]
    pub config: ConfigRef,
    /// Key ranges per bucket (1 = no listing, one range). A numeric string is
    /// accepted too (definition substitutions are strings).
    #[serde(default = "one", deserialize_with = "number_or_numeric_string")]
    pub shards: usize,
    /// Passed on (see [`MirrorRequest`]); default the function's.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Passed on (see [`MirrorRequest::hold_deletes`]).
    #[serde(default)]
    pub hold_deletes: bool,
}

fn one() -> usize {
    1
}

fn number_or_numeric_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(usize),
        String(String),
    }
    match NumberOrString::deserialize(deserializer)? {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected a whole number, got `{s}`"))),
    }
}

/// The function's requests, by action.
#[derive(Debug)]
pub enum MirrorFunctionRequest {
    /// See [`MirrorRequest`].
    Mirror(Box<MirrorRequest>),
    /// See [`PlanRequest`].
    Plan(PlanRequest),
}

impl MirrorFunctionRequest {
    /// Parses a payload; errors name the offending field.
    pub fn parse(payload: Value) -> Result<Self> {
        let request = ActionRequest::new(payload)?;
        match request.action() {
            "mirror" => {
                let mirror: MirrorRequest = request.fields()?;
                mirror.check()?;
                Ok(Self::Mirror(Box::new(mirror)))
            }
            "plan" => {
                let plan: PlanRequest = request.fields()?;
                if !(1..=1000).contains(&plan.shards) {
                    return Err(Error::InvalidInput(format!(
                        "invalid input at `shards`: must be 1-1000, got {}",
                        plan.shards
                    )));
                }
                Ok(Self::Plan(plan))
            }
            _ => Err(request.unknown_action(ACTIONS)),
        }
    }
}

/// What `mirror` answers. Its size does not grow with the bucket: `next` is the
/// request (as large as the one received) with a new resume token.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MirrorResponse {
    /// True when both phases of this range are finished.
    pub done: bool,
    /// The phase this invocation worked on.
    pub phase: Phase,
    /// True when that phase is finished for this range.
    pub phase_done: bool,
    /// Whether nothing was changed (counts are what would have been done).
    pub dry_run: bool,
    /// Totals for this range so far (all invocations).
    pub counts: Counts,
    /// Where the next invocation goes on; null when done.
    pub resume: Option<ResumeToken>,
    /// The complete request for the next invocation; null when done.
    pub next: Option<Value>,
}

/// What `plan` answers: the first `mirror` request of each key range, for a
/// `Map` state's `ItemsPath`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Plan {
    /// How many requests.
    pub count: usize,
    /// The requests (each a complete `mirror` request).
    pub requests: Vec<Value>,
}

impl Plan {
    /// The requests are the state machine's `Map` items, so they cannot be cut
    /// short: a plan too large for a Step Functions answer is refused instead
    /// (`InvalidInput`, which the machines catch, rather than
    /// `States.DataLimitExceeded`, which nothing catches).
    fn check_size(&self) -> Result<()> {
        let bytes = serde_json::to_vec(self).expect("plans serialize").len();
        if bytes > MAX_ANSWER_BYTES {
            return Err(Error::InvalidInput(format!(
                "invalid input at `shards`: {} key ranges make a plan of {} KiB, above the {} KiB one answer may \
                 carry; use fewer shards or fewer buckets per run",
                self.count,
                bytes / 1024,
                MAX_ANSWER_BYTES / 1024
            )));
        }
        Ok(())
    }
}

/// The function's handler, holding the AWS config built once per cold start.
pub struct MirrorFunction {
    aws: AwsContext,
    settings: Settings,
}

impl MirrorFunction {
    /// A handler using `aws` (staging's own credentials) for every call.
    pub fn new(aws: AwsContext) -> Self {
        let settings = Settings::from_env(aws.base());
        Self::with_settings(aws, settings)
    }

    /// A handler with `settings` made elsewhere (the benchmark's command line deploys itself).
    pub fn with_settings(aws: AwsContext, settings: Settings) -> Self {
        Self { aws, settings }
    }

    fn client(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::retry::RetryConfig;
        let base = s3_client(self.aws.base());
        // SlowDown and 5xx are retried with exponential backoff and jitter by the SDK.
        let retry = RetryConfig::standard()
            .with_max_attempts(8)
            .with_initial_backoff(std::time::Duration::from_millis(100))
            .with_max_backoff(std::time::Duration::from_secs(20));
        aws_sdk_s3::Client::from_conf(base.config().to_builder().retry_config(retry).build())
    }

    /// Handles one invocation that must end before `deadline`.
    pub async fn handle(&self, payload: Value, deadline: Instant) -> Result<Value> {
        match MirrorFunctionRequest::parse(payload)? {
            MirrorFunctionRequest::Mirror(request) => {
                let deployment = self.settings.deployment()?;
                ensure_deployed_pair(deployment, &request)?;
                to_answer(&sync::run(self.client(), *request, &deployment.tag, deadline).await?)
            }
            MirrorFunctionRequest::Plan(request) => {
                let config = self.settings.load(&request.config).await?;
                if config.buckets.is_empty() {
                    return Err(Error::InvalidInput(
                        "invalid input at `config.buckets`: nothing to mirror: the stack's MirrorBuckets names no bucket pair"
                            .into(),
                    ));
                }
                to_answer(&sync::plan(self.client(), request, &config, deadline).await?)
            }
        }
    }
}

/// A `mirror` request may only write a staging bucket of a deployed pair, from
/// that pair's source and prefix: the pairs are trust settings (`MirrorBuckets`),
/// whatever a request says.
fn ensure_deployed_pair(deployment: &Deployment, request: &MirrorRequest) -> Result<()> {
    let deployed = deployment.pair(&request.target.bucket).is_some_and(|pair| {
        pair.source == request.source.bucket
            && pair.prefix == request.source.prefix
            && pair.prefix == request.target.prefix
    });
    if deployed {
        Ok(())
    } else {
        Err(Error::GuardRailViolation(format!(
            "refusing to mirror s3://{}/{} into s3://{}/{}: not a bucket pair of the deployed stack \
             (MirrorBuckets targets: {})",
            request.source.bucket,
            request.source.prefix,
            request.target.bucket,
            request.target.prefix,
            deployment.targets()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_too_large_for_one_answer_is_refused() {
        let request = serde_json::json!({"action": STEP_ACTION, "source": {"bucket": "b", "prefix": "p/"}});
        let small = Plan { count: 8, requests: vec![request.clone(); 8] };
        assert!(small.check_size().is_ok());
        let large = Plan { count: 4000, requests: vec![request; 4000] };
        let message = large.check_size().unwrap_err().to_string();
        assert!(message.contains("`shards`") && message.contains("KiB"), "{message}");
    }
}
