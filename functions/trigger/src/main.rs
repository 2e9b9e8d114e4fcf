//! Wiring only: tracing, AWS config once per cold start, the runtime loop.

// The runtime loop around an async handler nests deep futures; a cold build can
// exceed the default query depth computing their layout (seen on a fresh clone).
#![recursion_limit = "256"]

use trigger::TriggerFunction;
use understudy_shared::aws::AwsContext;
use understudy_shared::runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    runtime::init_tracing();
    let function = TriggerFunction::new(AwsContext::from_env().await);
    runtime::serve(|payload| function.handle(payload)).await
}
