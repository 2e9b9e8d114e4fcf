//! The smoke-test function: HTTP(S) checks, from the configuration document's
//! `smoke` section, that staging answers correctly (status, headers, JSON
//! values, body, latency, certificate), and equals production where it must
//! (`compare_with`, e.g. `X-App-Version`).
//!
//! Action:
//! - `round`: runs every check that has not passed yet, once, and answers the
//!   report so far (`previous` is the last round's answer). The state machine
//!   waits and calls again until `passed`, or fails with `SmokeTestFailed` at
//!   `smoke.deadline_seconds`. With no checks configured it answers
//!   `skipped: true, passed: true`.
//! - `migrate`: the refresh's one migration request (`refresh.migrate`, a check
//!   in the same vocabulary), sent once with `refresh.migrate_timeout_seconds`;
//!   any failure is `MigrationFailed` naming what differed (never retried: a
//!   migration need not be idempotent).
//!
//! Secret header values (`{"secret_arn"}`) are read from Secrets Manager and never
//! appear in an answer or a log line.

mod certificate;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use understudy_shared::answer::{bounded, schema_of, to_answer};
use understudy_shared::aws::AwsContext;
use understudy_shared::request::ActionRequest;
use understudy_shared::settings::{ConfigRef, Settings};
use understudy_shared::smoke::{HeaderValue, SmokeCheck, SmokeSettings};
use understudy_shared::{Error, Result};

pub use certificate::not_after;

/// Every action.
pub const ACTIONS: &[&str] = &["round", "migrate"];
/// Body bytes read from an answer at most (the rest is not looked at).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The schema of each action's answer, for the state machines' contract test.
pub fn answer_schema(action: &str) -> Option<Schema> {
    Some(match action {
        "round" => schema_of::<SmokeReport>(),
        "migrate" => schema_of::<CheckReport>(),
        _ => return None,
    })
}

/// `{"action": "round", "config": {...}, "previous": {...} | null}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundRequest {
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
    /// The previous round's answer; absent for the first round.
    #[serde(default)]
    pub previous: Option<SmokeReport>,
}

/// `{"action": "migrate", "config": {...}}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// The run's configuration reference (`begin`'s `config`).
    #[serde(default)]
    pub config: ConfigRef,
}

/// The function's requests, by action.
#[derive(Debug)]
pub enum SmokeRequest {
    /// See [`RoundRequest`].
    Round(RoundRequest),
    /// See [`MigrateRequest`].
    Migrate(MigrateRequest),
}

impl SmokeRequest {
    /// Parses a payload; errors name the offending field.
    pub fn parse(payload: Value) -> Result<Self> {
        let request = ActionRequest::new(payload)?;
        match request.action() {
            "round" => request.fields().map(Self::Round),
            "migrate" => request.fields().map(Self::Migrate),
            _ => Err(request.unknown_action(ACTIONS)),
        }
    }
}

/// What `round` answers: every check's state so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SmokeReport {
    /// No checks are configured: nothing was run.
    pub skipped: bool,
    /// Every check has passed.
    pub passed: bool,
    /// Rounds so far.
    pub rounds: u32,
    /// Names of the checks that have not passed yet.
    pub pending: Vec<String>,
    /// Checks not named in `pending` for its length.
    #[serde(default)]
    pub pending_left_out: usize,
    /// One entry per check (at most 100).
    pub checks: Vec<CheckReport>,
    /// Checks not listed.
    #[serde(default)]
    pub checks_left_out: usize,
}

/// One check's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckReport {
    /// The check's name.
    pub name: String,
    /// Whether it has passed (then it is not run again).
    pub passed: bool,
    /// Times it was run.
    pub attempts: u32,
    /// Status of the last answer (none when there was no answer).
    pub status: Option<u16>,
    /// Answer time of the last attempt, in milliseconds.
    pub latency_ms: Option<u64>,
    /// What differed in the last attempt (empty when it passed).
    pub failures: Vec<String>,
}

/// The function's handler, holding the AWS config built once per cold start.
pub struct SmokeTestFunction {
    aws: AwsContext,
    settings: Settings,
}

impl SmokeTestFunction {
    /// A handler using `aws` for its Secrets Manager calls and configuration.
    pub fn new(aws: AwsContext) -> Self {
        let settings = Settings::from_env(aws.base());
        Self { aws, settings }
    }

    /// Handles one invocation.
    pub async fn handle(&self, payload: Value) -> Result<Value> {
        match SmokeRequest::parse(payload)? {
            SmokeRequest::Round(request) => {
                let config = self.settings.load(&request.config).await?;
                config.smoke.check()?;
                let secrets = aws_sdk_secretsmanager::Client::new(self.aws.base());
                to_answer(&round(&config.smoke, request.previous.unwrap_or_default(), &secrets).await?)
            }
            SmokeRequest::Migrate(request) => {
                let config = self.settings.load(&request.config).await?;
                let Some(migrate) = &config.refresh.migrate else {
                    return Err(Error::InvalidInput(
                        "invalid input at `config.refresh.migrate`: no migration request is configured"
                            .into(),
                    ));
                };
                let secrets = aws_sdk_secretsmanager::Client::new(self.aws.base());
                to_answer(
                    &migrate_once(&config.smoke, migrate, config.refresh.migrate_timeout_seconds, &secrets)
                        .await?,
                )
            }
        }
    }
}

/// Sends the migration request once and checks its answer: `MigrationFailed`
/// naming what differed, or the check's report.
pub async fn migrate_once(
    smoke: &SmokeSettings,
    migrate: &SmokeCheck,
    timeout_seconds: u32,
    secrets: &aws_sdk_secretsmanager::Client,
) -> Result<CheckReport> {
    let settings =
        SmokeSettings { request_timeout_ms: timeout_seconds.saturating_mul(1000), ..smoke.clone() };
    let clients = Clients::new(&settings)?;
    let headers = resolve_headers(migrate, secrets).await?;
    let outcome = run_check(clients.for_check(migrate), migrate, &headers).await;
    tracing::info!(migration = %migrate.name, status = ?outcome.status, latency_ms = ?outcome.latency_ms, failures = ?outcome.failures, "migration request");
    if !outcome.failures.is_empty() {
        return Err(Error::MigrationFailed(format!(
            "the migration request `{}` ({} {}) failed: {}",
            migrate.name,
            migrate.method,
            migrate.url,
            outcome.failures.join("; ")
        )));
    }
    Ok(CheckReport {
        name: migrate.name.clone(),
        passed: true,
        attempts: 1,
        status: outcome.status,
        latency_ms: outcome.latency_ms,
        failures: Vec::new(),
    })
}

/// Runs every check of `smoke` that `previous` does not show passed, concurrently.
pub async fn round(
    smoke: &SmokeSettings,
    previous: SmokeReport,
    secrets: &aws_sdk_secretsmanager::Client,
) -> Result<SmokeReport> {
    if smoke.checks.is_empty() {
        tracing::info!("no smoke checks configured: skipped");
        return Ok(SmokeReport { skipped: true, passed: true, ..SmokeReport::default() });
    }
    let clients = Clients::new(smoke)?;
    let before: BTreeMap<String, CheckReport> =
        previous.checks.into_iter().map(|c| (c.name.clone(), c)).collect();
    let mut runs = Vec::new();
    for check in &smoke.checks {
        let last = before
            .get(&check.name)
            .cloned()
            .unwrap_or_else(|| CheckReport { name: check.name.clone(), ..CheckReport::default() });
        if last.passed {
            runs.push(futures_ready(last));
            continue;
        }
        let headers = resolve_headers(check, secrets).await?;
        let client = clients.for_check(check).clone();
        runs.push(Box::pin(async move {
            let outcome = run_check(&client, check, &headers).await;
            let report = CheckReport {
                name: check.name.clone(),
                passed: outcome.failures.is_empty(),
                attempts: last.attempts + 1,
                status: outcome.status,
                latency_ms: outcome.latency_ms,
                failures: outcome.failures,
            };
            tracing::info!(check = %report.name, passed = report.passed, attempts = report.attempts, status = ?report.status, latency_ms = ?report.latency_ms, failures = ?report.failures, "smoke check");
            report
        }));
    }
    let mut checks = futures::future::join_all(runs).await;
    let pending: Vec<String> = checks.iter().filter(|c| !c.passed).map(|c| c.name.clone()).collect();
    let passed = pending.is_empty();
    // The checks that failed first, so a long list still shows them.
    checks.sort_by_key(|c| c.passed);
    let (checks, checks_left_out) = bounded(checks);
    let (pending, pending_left_out) = bounded(pending);
    Ok(SmokeReport {
        skipped: false,
        passed,
        rounds: previous.rounds + 1,
        pending,
        pending_left_out,
        checks,
        checks_left_out,
    })
}

type Run<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = CheckReport> + Send + 'a>>;

fn futures_ready<'a>(report: CheckReport) -> Run<'a> {
    Box::pin(async move { report })
}

/// One HTTP client per certificate policy: verified (system roots, or the
/// configured CA bundle instead), or accepting any certificate (`insecure`).
struct Clients {
    verified: reqwest::Client,
    insecure: reqwest::Client,
}

impl Clients {
    fn new(smoke: &SmokeSettings) -> Result<Self> {
        let timeout = Duration::from_millis(u64::from(smoke.request_timeout_ms));
        let builder = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .tls_info(true)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("understudy-smoke-test/", env!("CARGO_PKG_VERSION")))
        };
        let mut verified = builder();
        if let Some(bundle) = &smoke.ca_bundle {
            let certificates = reqwest::Certificate::from_pem_bundle(bundle.as_bytes()).map_err(|err| {
                Error::InvalidInput(format!(
                    "invalid input at `config.smoke.ca_bundle`: not PEM certificates: {err}"
                ))
            })?;
            if certificates.is_empty() {
                return Err(Error::InvalidInput(
                    "invalid input at `config.smoke.ca_bundle`: holds no PEM certificate".into(),
                ));
            }
            verified = verified.tls_certs_only(certificates);
        }
        let build = |builder: reqwest::ClientBuilder| {
            builder
                .build()
                .map_err(|err| Error::AwsRequestFailed(format!("cannot build the HTTP client: {err}")))
        };
        Ok(Self {
            verified: build(verified)?,
            insecure: build(builder().tls_danger_accept_invalid_certs(true))?,
        })
    }

    fn for_check(&self, check: &SmokeCheck) -> &reqwest::Client {
        if check.insecure {
            &self.insecure
        } else {
            &self.verified
        }
    }
}

/// The check's request headers, secrets read. The values never leave this function's memory.
async fn resolve_headers(
    check: &SmokeCheck,
    secrets: &aws_sdk_secretsmanager::Client,
) -> Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    for (name, value) in &check.headers {
        let value = match value {
            HeaderValue::Literal(value) => value.clone(),
            HeaderValue::Secret { secret_arn, field } => {
                let secret = secrets.get_secret_value().secret_id(secret_arn).send().await.map_err(|e| {
                    Error::from_sdk(&format!("secretsmanager:GetSecretValue {secret_arn}"), e)
                })?;
                let text = secret.secret_string().unwrap_or_default();
                match field {
                    None => text.to_owned(),
                    Some(field) => serde_json::from_str::<Value>(text)
                        .ok()
                        .and_then(|v| v.get(field).and_then(Value::as_str).map(str::to_owned))
                        .ok_or_else(|| {
                            Error::InvalidInput(format!(
                                "invalid input at `config.smoke.checks.{}.headers.{name}`: secret {secret_arn} has no string field `{field}`",
                                check.name
                            ))
                        })?,
                }
            }
        };
        headers.push((name.clone(), value));
    }
    Ok(headers)
}

/// One answer, as the expectations read it.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
    latency: Duration,
    certificate_not_after: Option<SystemTime>,
}

#[derive(Default)]
struct Outcome {
    status: Option<u16>,
    latency_ms: Option<u64>,
    failures: Vec<String>,
}

async fn send(
    client: &reqwest::Client,
    check: &SmokeCheck,
    url: &str,
    headers: &[(String, String)],
) -> std::result::Result<Answer, String> {
    let method = reqwest::Method::from_bytes(check.method.as_bytes()).map_err(|e| format!("method: {e}"))?;
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request = match &check.body {
        None => request,
        Some(Value::String(text)) => request.body(text.clone()),
        Some(json) => {
            request.header(reqwest::header::CONTENT_TYPE, "application/json").body(json.to_string())
        }
    };
    let started = Instant::now();
    let response = request.send().await.map_err(|err| describe(&err))?;
    let status = response.status().as_u16();
    let response_headers = response.headers().clone();
    let certificate_not_after = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .and_then(certificate::not_after);
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(|err| describe(&err))? {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_BODY_BYTES {
            body.truncate(MAX_BODY_BYTES);
            break;
        }
    }
    Ok(Answer {
        status,
        headers: response_headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        latency: started.elapsed(),
        certificate_not_after,
    })
}

/// An error and its causes in one line (a TLS failure says why the certificate was refused).
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() { "timed out".to_owned() } else { "request failed".to_owned() };
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

async fn run_check(client: &reqwest::Client, check: &SmokeCheck, headers: &[(String, String)]) -> Outcome {
    let answer = match send(client, check, &check.url, headers).await {
        Ok(answer) => answer,
        Err(failure) => return Outcome { failures: vec![failure], ..Outcome::default() },
    };
    let mut failures = expectations(check, &answer);
    if let Some(compare) = &check.compare_with {
        match production_url(&check.url, &compare.base_url) {
            None => failures
                .push(format!("compare_with: cannot combine `{}` with the check's URL", compare.base_url)),
            Some(url) => match send(client, check, &url, headers).await {
                Err(failure) => failures.push(format!("production: {failure}")),
                Ok(production) => failures.extend(differences(compare, &answer, &production)),
            },
        }
    }
    Outcome { status: Some(answer.status), latency_ms: Some(answer.latency.as_millis() as u64), failures }
}

fn header_text(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// What differs from the check's expectations (empty: passed).
fn expectations(check: &SmokeCheck, answer: &Answer) -> Vec<String> {
    let expect = &check.expect;
    let mut failures = Vec::new();
    if !expect.status.contains(&answer.status) {
        failures.push(format!("status {} is not one of {:?}", answer.status, expect.status));
    }
    for (name, wanted) in &expect.headers {
        match header_text(&answer.headers, name) {
            None => failures.push(format!("header {name} is missing")),
            Some(value) if !wanted.accepts(&value) => {
                failures.push(format!("header {name} is `{value}`, expected {wanted:?}"))
            }
            Some(_) => {}
        }
    }
    let needs_json = !expect.json.is_empty() || !expect.json_exists.is_empty();
    let json: Option<Value> = if needs_json { serde_json::from_str(&answer.body).ok() } else { None };
    if needs_json && json.is_none() {
        failures.push("the body is not JSON".into());
    }
    if let Some(json) = &json {
        for (pointer, wanted) in &expect.json {
            match json.pointer(pointer) {
                None => failures.push(format!("JSON {pointer} is missing")),
                Some(value) if value != wanted => {
                    failures.push(format!("JSON {pointer} is {value}, expected {wanted}"))
                }
                Some(_) => {}
            }
        }
        for pointer in &expect.json_exists {
            if json.pointer(pointer).is_none() {
                failures.push(format!("JSON {pointer} is missing"));
            }
        }
    }
    if let Some(wanted) = &expect.body {
        if !wanted.accepts(&answer.body) {
            let shown: String = answer.body.chars().take(80).collect();
            failures.push(format!("body `{shown}` does not satisfy {wanted:?}"));
        }
    }
    if let Some(budget) = expect.max_latency_ms {
        let took = answer.latency.as_millis();
        if took > u128::from(budget) {
            failures.push(format!("took {took} ms, over the {budget} ms budget"));
        }
    }
    if let Some(days) = expect.certificate_days {
        match answer.certificate_not_after {
            None => failures.push("no certificate to check (not HTTPS?)".into()),
            Some(not_after) => {
                let left = not_after.duration_since(SystemTime::now()).unwrap_or_default().as_secs() / 86_400;
                if left < u64::from(days) {
                    failures.push(format!("the certificate expires in {left} days, fewer than {days}"));
                }
            }
        }
    }
    failures
}

/// Production's URL: `base` with the check URL's path and query.
fn production_url(check_url: &str, base: &str) -> Option<String> {
    let url = reqwest::Url::parse(check_url).ok()?;
    let base = reqwest::Url::parse(base).ok()?;
    let mut joined = base.clone();
    let prefix = base.path().trim_end_matches('/');
    joined.set_path(&format!("{prefix}{}", url.path()));
    joined.set_query(url.query());
    Some(joined.to_string())
}

/// The compared headers and JSON values that differ between staging and production.
fn differences(
    compare: &understudy_shared::smoke::CompareWith,
    staging: &Answer,
    production: &Answer,
) -> Vec<String> {
    let mut failures = Vec::new();
    for name in &compare.headers {
        let (ours, theirs) = (header_text(&staging.headers, name), header_text(&production.headers, name));
        if ours != theirs {
            failures.push(format!(
                "header {name} differs from production: staging {}, production {}",
                ours.as_deref().unwrap_or("(none)"),
                theirs.as_deref().unwrap_or("(none)")
            ));
        }
    }
    if !compare.json.is_empty() {
        let parse = |body: &str| serde_json::from_str::<Value>(body).ok();
        let (ours, theirs) = (parse(&staging.body), parse(&production.body));
        for pointer in &compare.json {
            let value = |json: &Option<Value>| json.as_ref().and_then(|j| j.pointer(pointer)).cloned();
            let (a, b) = (value(&ours), value(&theirs));
            if a != b {
                failures.push(format!(
                    "JSON {pointer} differs from production: staging {}, production {}",
                    a.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into()),
                    b.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into())
                ));
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_url_keeps_the_path_and_query() {
        assert_eq!(
            production_url("https://staging.example.com/health?deep=1", "https://app.example.com").as_deref(),
            Some("https://app.example.com/health?deep=1")
        );
        assert_eq!(
            production_url("http://127.0.0.1:8080/v1/health", "https://app.example.com/api/").as_deref(),
            Some("https://app.example.com/api/v1/health")
        );
    }
}
