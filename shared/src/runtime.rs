//! The wiring every function's `main.rs` calls: tracing, panic behaviour, and the
//! Lambda runtime loop around a handler of JSON in, JSON or [`Error`] out.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use tokio::time::Instant;

use crate::Error;

/// Sets up tracing: JSON lines when `AWS_LAMBDA_LOG_FORMAT=JSON` (Lambda's
/// advanced logging controls), plain text otherwise; level from
/// `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`, default INFO.
pub fn init_tracing() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// Runs the Lambda runtime loop, calling `handler` with each event's payload.
///
/// A panic aborts the process, as the release profile's `panic = "abort"` does
/// on AWS (where Lambda reports it as `Runtime.ExitError`), so debug builds run
/// locally behave like the deployed ones instead of turning panics into errors.
pub async fn serve<H, F>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: Fn(Value) -> F,
    F: Future<Output = Result<Value, Error>>,
{
    serve_with_deadline(|payload, _deadline| handler(payload)).await
}

/// Like [`serve`], for handlers that watch the clock: `handler` also gets the
/// invocation's deadline (Lambda's `Lambda-Runtime-Deadline-Ms`), so it can stop
/// taking new work in time and return a resume token instead of being killed.
pub async fn serve_with_deadline<H, F>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: Fn(Value, Instant) -> F,
    F: Future<Output = Result<Value, Error>>,
{
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let action = event.payload.get("action").and_then(Value::as_str).unwrap_or("").to_owned();
        tracing::info!(request_id = %event.context.request_id, %action, "invocation");
        inject_fault(&action);
        let deadline = test_deadline(deadline_instant(event.context.deadline));
        let result = handler(event.payload, deadline).await;
        if let Err(error) = &result {
            tracing::warn!(error_type = error.error_type(), %error, "invocation failed");
        }
        result
    }))
    .await
}

/// The runtime's deadline (milliseconds since the epoch) as a monotonic instant.
fn deadline_instant(deadline_ms: u64) -> Instant {
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let remaining = deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
    Instant::now() + remaining
}

/// Test hook, compiled only into debug builds: `UNDERSTUDY_DEADLINE_MS=<ms>`
/// pretends each invocation's deadline is that many milliseconds away (when that
/// is sooner than the real one), so tests can force resume tokens cheaply.
#[cfg(debug_assertions)]
fn test_deadline(deadline: Instant) -> Instant {
    match std::env::var("UNDERSTUDY_DEADLINE_MS").ok().and_then(|ms| ms.parse().ok()) {
        Some(ms) => deadline.min(Instant::now() + Duration::from_millis(ms)),
        None => deadline,
    }
}

#[cfg(not(debug_assertions))]
fn test_deadline(deadline: Instant) -> Instant {
    deadline
}

/// Test hook, compiled only into debug builds: `UNDERSTUDY_INJECT_PANIC=<action>`
/// makes the handler panic on that action, so tests can prove a crash reaches the
/// state machine as an error. Release (deployed) binaries ignore it.
#[cfg(debug_assertions)]
fn inject_fault(action: &str) {
    if std::env::var("UNDERSTUDY_INJECT_PANIC").is_ok_and(|wanted| wanted == action) {
        panic!("injected panic on action `{action}` (UNDERSTUDY_INJECT_PANIC)");
    }
}

#[cfg(not(debug_assertions))]
fn inject_fault(_action: &str) {}
