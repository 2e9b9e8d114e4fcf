//! One error vocabulary for the whole suite. Each variant's name is the
//! `errorType` a function returns and the name a state machine's `Retry` or
//! `Catch` matches on, so the names are a public contract.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lambda_runtime::Diagnostic;

/// Result with the suite's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way an understudy function can fail. The message names the field,
/// resource or AWS call involved and never contains a secret.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The request is malformed: unknown action, unknown or missing field, bad value.
    #[error("{0}")]
    InvalidInput(String),
    /// The production database to snapshot does not exist.
    #[error("{0}")]
    SourceNotFound(String),
    /// A snapshot the request names does not exist (any more).
    #[error("{0}")]
    SnapshotNotFound(String),
    /// AWS reports the snapshot as failed; waiting longer will not help.
    #[error("{0}")]
    SnapshotFailed(String),
    /// The identifier understudy derived is taken by a snapshot it must not adopt.
    #[error("{0}")]
    SnapshotConflict(String),
    /// The request would modify something understudy may not touch.
    #[error("{0}")]
    GuardRailViolation(String),
    /// A bucket the request names does not exist (or is not visible to the caller).
    #[error("{0}")]
    BucketNotFound(String),
    /// AWS refused the caller (missing permission, role not assumable).
    #[error("{0}")]
    AccessDenied(String),
    /// The KMS key of a snapshot or database cannot be used by the caller (e.g.
    /// another account's AWS-managed `aws/rds` key).
    #[error("{0}")]
    KmsKeyNotAccessible(String),
    /// An AWS quota (e.g. manual snapshots per region) is exhausted.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A staging database the request names does not exist.
    #[error("{0}")]
    DatabaseNotFound(String),
    /// A staging resource the request lists by name (an ECS service, an EC2
    /// instance, an Auto Scaling group, a database) does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// The resource is in a state that does not allow the call yet (a database
    /// still modifying or renaming, a name not yet released); retry.
    #[error("{0}")]
    ResourceBusy(String),
    /// AWS throttled the request; retry with backoff.
    #[error("{0}")]
    Throttled(String),
    /// A transient AWS or network failure (5xx, timeout, connection reset); retry.
    #[error("{0}")]
    AwsTransient(String),
    /// Any other AWS error; not retried.
    #[error("{0}")]
    AwsRequestFailed(String),
    /// A staging database (or one of a cluster's instances) is in a status that
    /// needs an operator (`failed`, `incompatible-restore`, `storage-full`, ...):
    /// waiting longer will not help.
    #[error("{0}")]
    DatabaseFailed(String),
    /// A state machine's poll loop gave up after its `config.poll.*_timeout_minutes`.
    /// Raised by the machines themselves (never by a function), it takes the same
    /// undo path as any other failure.
    #[error("{0}")]
    WaitTimedOut(String),
    /// The smoke test's checks still failed at `config.smoke.deadline_seconds`.
    /// Raised by the machines themselves, naming the failing checks.
    #[error("{0}")]
    SmokeTestFailed(String),
    /// The refresh's migration request (`refresh.migrate`) failed or answered
    /// other than its `expect`; not retried (a migration may not be idempotent).
    #[error("{0}")]
    MigrationFailed(String),
}

impl Error {
    /// The `errorType` names the state machines retry (with backoff). Every other
    /// name is terminal and goes to a `Catch`.
    pub const RETRYABLE: &'static [&'static str] = &["Throttled", "AwsTransient", "ResourceBusy"];

    /// The `errorType` of this error: the variant's name.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "InvalidInput",
            Error::SourceNotFound(_) => "SourceNotFound",
            Error::SnapshotNotFound(_) => "SnapshotNotFound",
            Error::SnapshotFailed(_) => "SnapshotFailed",
            Error::SnapshotConflict(_) => "SnapshotConflict",
            Error::GuardRailViolation(_) => "GuardRailViolation",
            Error::BucketNotFound(_) => "BucketNotFound",
            Error::AccessDenied(_) => "AccessDenied",
            Error::KmsKeyNotAccessible(_) => "KmsKeyNotAccessible",
            Error::QuotaExceeded(_) => "QuotaExceeded",
            Error::DatabaseNotFound(_) => "DatabaseNotFound",
            Error::ResourceNotFound(_) => "ResourceNotFound",
            Error::ResourceBusy(_) => "ResourceBusy",
            Error::Throttled(_) => "Throttled",
            Error::AwsTransient(_) => "AwsTransient",
            Error::AwsRequestFailed(_) => "AwsRequestFailed",
            Error::DatabaseFailed(_) => "DatabaseFailed",
            Error::WaitTimedOut(_) => "WaitTimedOut",
            Error::SmokeTestFailed(_) => "SmokeTestFailed",
            Error::MigrationFailed(_) => "MigrationFailed",
        }
    }

    /// Whether a state machine retries this error.
    pub fn is_retryable(&self) -> bool {
        Self::RETRYABLE.contains(&self.error_type())
    }

    /// Classifies a failed AWS call that the caller did not map to a more
    /// specific variant (e.g. `DBClusterNotFoundFault` → [`Error::SourceNotFound`]).
    /// `operation` names the call, e.g. `rds:CreateDBClusterSnapshot`.
    pub fn from_sdk<E>(operation: &str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let detail = match (&code, err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.clone(),
            _ => DisplayErrorContext(&err).to_string(),
        };
        let message = format!("{operation} failed: {detail}");
        match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => return Error::AwsTransient(message),
            SdkError::ResponseError(_) => return Error::AwsTransient(message),
            _ => {}
        }
        match code.as_deref() {
            Some(c) if is_throttling_code(c) => Error::Throttled(message),
            Some(
                "AccessDenied"
                | "AccessDeniedException"
                | "UnauthorizedOperation"
                | "InvalidClientTokenId"
                | "ExpiredToken",
            ) => Error::AccessDenied(message),
            Some("KMSKeyNotAccessibleFault" | "KMSKeyNotAccessible") => Error::KmsKeyNotAccessible(message),
            Some(
                "InvalidDBClusterStateFault"
                | "InvalidDBInstanceState"
                | "InvalidDBInstanceStateFault"
                | "InvalidDBClusterSnapshotStateFault"
                | "InvalidDBSnapshotState"
                | "InvalidDBSnapshotStateFault"
                | "IncorrectInstanceState"
                | "ScalingActivityInProgress"
                | "ResourceContention"
                | "ConcurrentUpdateException",
            ) => Error::ResourceBusy(message),
            Some(c) if c.contains("QuotaExceeded") => Error::QuotaExceeded(message),
            Some("InternalFailure" | "InternalError" | "ServiceUnavailable") => Error::AwsTransient(message),
            _ if status.is_some_and(|s| s >= 500) => Error::AwsTransient(message),
            _ => Error::AwsRequestFailed(message),
        }
    }
}

/// One rule of the suite's `Retry` list: the state machines retry these error
/// names with exponential backoff and full jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryRule {
    /// The `errorType`s (or Lambda service error names) the rule matches.
    pub errors: &'static [&'static str],
    /// Seconds before the first retry.
    pub interval_seconds: u32,
    /// Attempts after the first one.
    pub max_attempts: u32,
    /// Factor by which each interval grows.
    pub backoff_rate: f64,
}

/// Errors of the Lambda service itself (not of the function): always worth a retry.
pub const LAMBDA_SERVICE_ERRORS: &[&str] = &[
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

/// The one `Retry` list every Lambda task of every state machine carries: the
/// Lambda service's own errors, then [`Error::RETRYABLE`]. Every other name is
/// terminal and goes to the task's `Catch`.
pub const RETRY_POLICY: &[RetryRule] = &[
    RetryRule { errors: LAMBDA_SERVICE_ERRORS, interval_seconds: 2, max_attempts: 6, backoff_rate: 2.0 },
    RetryRule {
        errors: &["Throttled", "AwsTransient"],
        interval_seconds: 5,
        max_attempts: 5,
        backoff_rate: 2.0,
    },
    RetryRule { errors: &["ResourceBusy"], interval_seconds: 10, max_attempts: 8, backoff_rate: 1.5 },
];

/// What an `events:putEvents` task retries: an entry EventBridge did not take
/// (`EventBridge.FailedEntry`, throttling or an internal failure per entry) and
/// the service's own transient errors. Anything else goes to the task's `Catch`.
pub const PUBLISH_RETRY: RetryRule = RetryRule {
    errors: &["EventBridge.FailedEntry", "EventBridge.InternalException", "EventBridge.ThrottlingException"],
    interval_seconds: 2,
    max_attempts: 5,
    backoff_rate: 2.0,
};

fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "RequestThrottled"
            | "BandwidthLimitExceeded"
    )
}

impl From<Error> for Diagnostic {
    fn from(error: Error) -> Self {
        Diagnostic { error_type: error.error_type().to_owned(), error_message: error.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_carries_the_variant_name_as_error_type() {
        let diagnostic: Diagnostic = Error::SourceNotFound("no cluster `x`".into()).into();
        assert_eq!(diagnostic.error_type, "SourceNotFound");
        assert_eq!(diagnostic.error_message, "no cluster `x`");
    }

    #[test]
    fn the_retry_policy_retries_exactly_the_retryable_names_and_the_lambda_service_errors() {
        let mut retried: Vec<&str> = RETRY_POLICY.iter().flat_map(|r| r.errors.iter().copied()).collect();
        retried.sort();
        let mut expected: Vec<&str> = LAMBDA_SERVICE_ERRORS.iter().chain(Error::RETRYABLE).copied().collect();
        expected.sort();
        assert_eq!(retried, expected);
    }

    #[test]
    fn only_throttling_and_transient_errors_are_retryable() {
        assert!(Error::Throttled(String::new()).is_retryable());
        assert!(Error::AwsTransient(String::new()).is_retryable());
        assert!(!Error::GuardRailViolation(String::new()).is_retryable());
        assert!(!Error::InvalidInput(String::new()).is_retryable());
    }
}
