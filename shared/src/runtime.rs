//! The wiring every function's `main.rs` calls: tracing, panic behaviour, and the
//! Lambda runtime loop around a handler of JSON in, JSON or [`Error`] out.

use std::future::Future;

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

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
        let result = handler(event.payload).await;
        if let Err(error) = &result {
            tracing::warn!(error_type = error.error_type(), %error, "invocation failed");
        }
        result
    }))
    .await
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
