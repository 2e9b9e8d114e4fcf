//! The run lock: one run at a time per environment.
//!
//! A lease is one S3 object, `leases/<environment>.json` in the stack's own
//! `LeaseBucket` (never a mirrored bucket), holding the holder's execution ARN.
//! It is taken with a conditional write (`PutObject` with `If-None-Match: *`),
//! because `ListExecutions` is eventually consistent on AWS and cannot promise
//! that two runs never hold the environment together.
//!
//! - **Taking** succeeds when no lease exists, or when this execution already
//!   holds it (a retried task).
//! - **Reclaiming:** a lease whose holder is no longer `RUNNING` (it timed out,
//!   was aborted or failed with `States.Runtime`, ends that never reach their
//!   release) is overwritten with `If-Match` on the ETag read, so of two runs
//!   reclaiming the same dead lease exactly one wins.
//! - **Busy:** a lease held by a running execution; the run changes nothing and
//!   ends `{"skipped": "busy", "holder": ...}`.
//! - **Releasing** deletes the lease only when this execution holds it. Nobody
//!   else can take it in between: a running holder's lease is never reclaimed.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sfn::types::ExecutionStatus;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What the lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The holder's execution ARN.
    pub holder: String,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
}

/// What `take-lease` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct LeaseTaken {
    /// True when this execution now holds the lease; false when another running
    /// execution does (`holder`).
    pub taken: bool,
    /// The execution holding the lease: this one when taken.
    pub holder: String,
    /// The ended execution whose lease was reclaimed, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclaimed: Option<String>,
}

/// What `release-lease` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct LeaseReleased {
    /// True when this execution held the lease and it is now gone.
    pub released: bool,
    /// Who holds the lease now (none once released).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

/// Whether an execution is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// `RUNNING` (or `PENDING_REDRIVE`: a redriven execution runs again).
    Running,
    /// Any end: succeeded, failed, timed out, aborted; or no such execution.
    Ended,
}

/// Asks Step Functions whether `execution_arn` still runs. An execution that
/// does not exist (or an ARN that is not one) has ended.
pub async fn run_state(sfn: &aws_sdk_sfn::Client, execution_arn: &str) -> Result<RunState> {
    match sfn.describe_execution().execution_arn(execution_arn).send().await {
        Ok(execution) => Ok(match execution.status() {
            ExecutionStatus::Running | ExecutionStatus::PendingRedrive => RunState::Running,
            _ => RunState::Ended,
        }),
        Err(err) => {
            let code = aws_smithy_types::error::metadata::ProvideErrorMetadata::code(&err).map(str::to_owned);
            match code.as_deref() {
                Some("ExecutionDoesNotExist" | "InvalidArn") => Ok(RunState::Ended),
                _ => Err(Error::from_sdk("states:DescribeExecution", err)),
            }
        }
    }
}

/// The execution name (the run id) of an execution ARN: its last segment.
pub fn execution_name(execution_arn: &str) -> &str {
    execution_arn.rsplit(':').next().unwrap_or(execution_arn)
}

/// The ARN of execution `name` of the state machine that runs `execution_arn`.
pub fn sibling_execution(execution_arn: &str, name: &str) -> Option<String> {
    let (machine, _) = execution_arn.rsplit_once(':')?;
    machine.contains(":execution:").then(|| format!("{machine}:{name}"))
}

/// One environment's lease.
#[derive(Debug, Clone)]
pub struct Lease {
    s3: aws_sdk_s3::Client,
    sfn: aws_sdk_sfn::Client,
    bucket: String,
    key: String,
}

/// How often `take` re-reads after losing a race (another run took or
/// released the lease between its read and its write).
const RACES: usize = 4;

impl Lease {
    /// The lease of `environment` in `bucket`.
    pub fn new(s3: aws_sdk_s3::Client, sfn: aws_sdk_sfn::Client, bucket: &str, environment: &str) -> Self {
        Self { s3, sfn, bucket: bucket.to_owned(), key: key(environment) }
    }

    /// `s3://bucket/key`, for messages.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Takes the lease for `execution` (see the module doc).
    pub async fn take(&self, execution: &str) -> Result<LeaseTaken> {
        let taken = |reclaimed| LeaseTaken { taken: true, holder: execution.to_owned(), reclaimed };
        for _ in 0..RACES {
            if self.write(execution, Condition::Absent).await? {
                tracing::info!(lease = %self.location(), "took the lease");
                return Ok(taken(None));
            }
            let Some((record, etag)) = self.read().await? else { continue };
            if record.holder == execution {
                return Ok(taken(None));
            }
            if run_state(&self.sfn, &record.holder).await? == RunState::Running {
                tracing::info!(lease = %self.location(), holder = %record.holder, "the environment is busy");
                return Ok(LeaseTaken { taken: false, holder: record.holder, reclaimed: None });
            }
            if self.write(execution, Condition::Matches(&etag)).await? {
                tracing::warn!(lease = %self.location(), ended = %record.holder, "reclaimed the lease of an ended run");
                return Ok(taken(Some(record.holder)));
            }
        }
        Err(Error::ResourceBusy(format!(
            "{} changed hands {RACES} times while being taken; try again",
            self.location()
        )))
    }

    /// Releases the lease if `execution` holds it.
    pub async fn release(&self, execution: &str) -> Result<LeaseReleased> {
        let Some((record, _)) = self.read().await? else {
            return Ok(LeaseReleased { released: false, holder: None });
        };
        if record.holder != execution {
            return Ok(LeaseReleased { released: false, holder: Some(record.holder) });
        }
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|err| Error::from_sdk("s3:DeleteObject", err))?;
        tracing::info!(lease = %self.location(), "released the lease");
        Ok(LeaseReleased { released: true, holder: None })
    }

    /// The execution holding the lease while it runs; none when the lease is
    /// free or its holder has ended.
    pub async fn running_holder(&self) -> Result<Option<String>> {
        let Some((record, _)) = self.read().await? else { return Ok(None) };
        Ok((run_state(&self.sfn, &record.holder).await? == RunState::Running).then_some(record.holder))
    }

    /// The lease and its ETag, if one exists.
    async fn read(&self) -> Result<Option<(LeaseRecord, String)>> {
        let object = match self.s3.get_object().bucket(&self.bucket).key(&self.key).send().await {
            Ok(object) => object,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(err) => return Err(Error::from_sdk("s3:GetObject", err)),
        };
        let etag = object.e_tag().unwrap_or_default().to_owned();
        let body = object
            .body
            .collect()
            .await
            .map_err(|err| Error::AwsTransient(format!("reading {}: {err}", self.location())))?;
        let record: LeaseRecord = serde_json::from_slice(&body.into_bytes()).map_err(|err| {
            Error::AwsRequestFailed(format!(
                "{} is not a lease understudy wrote ({err}); delete it if no run is in flight",
                self.location()
            ))
        })?;
        Ok(Some((record, etag)))
    }

    /// A conditional write of this execution's lease: false when the condition
    /// failed (another run wrote or deleted the lease first).
    async fn write(&self, execution: &str, condition: Condition<'_>) -> Result<bool> {
        let record = LeaseRecord { holder: execution.to_owned(), taken_at: crate::tags::now_rfc3339() };
        let body = serde_json::to_vec(&record).expect("a lease serializes");
        let request = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        let request = match condition {
            Condition::Absent => request.if_none_match("*"),
            Condition::Matches(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(err) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                let code =
                    aws_smithy_types::error::metadata::ProvideErrorMetadata::code(&err).map(str::to_owned);
                // 412 PreconditionFailed: the condition did not hold. 409
                // ConditionalRequestConflict: a concurrent conditional write won.
                // 404 NoSuchKey: an If-Match on a lease released meanwhile.
                if matches!(status, Some(412 | 409))
                    || matches!(code.as_deref(), Some("PreconditionFailed" | "ConditionalRequestConflict"))
                    || (matches!(condition, Condition::Matches(_)) && status == Some(404))
                {
                    Ok(false)
                } else {
                    Err(Error::from_sdk("s3:PutObject", err))
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Condition<'a> {
    Absent,
    Matches(&'a str),
}

/// The lease object's key for `environment`.
pub fn key(environment: &str) -> String {
    format!("leases/{environment}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_id_is_the_execution_arns_last_segment() {
        assert_eq!(
            execution_name("arn:aws:states:us-east-1:123456789012:execution:understudy-refresh:deploy-v1"),
            "deploy-v1"
        );
        assert_eq!(key("staging"), "leases/staging.json");
        assert_eq!(
            sibling_execution("arn:aws:states:us-east-1:123456789012:execution:refresh:deploy-1", "deploy-2")
                .as_deref(),
            Some("arn:aws:states:us-east-1:123456789012:execution:refresh:deploy-2")
        );
        assert_eq!(sibling_execution("not-an-arn", "deploy-2"), None);
    }
}
