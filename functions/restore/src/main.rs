//! Wiring only: tracing, AWS config once per cold start, the runtime loop.

use restore::RestoreFunction;
use understudy_shared::aws::AwsContext;
use understudy_shared::runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    runtime::init_tracing();
    let function = RestoreFunction::new(AwsContext::from_env().await);
    runtime::serve(|payload| function.handle(payload)).await
}
