//! `mirror-cli`: the mirror function's handler run locally against any S3
//! endpoint (`AWS_ENDPOINT_URL`, the usual credential variables), following each
//! answer's `next` until done, as the state machine does; each step gets a
//! 15-minute deadline like the deployed function. For `make bench-mirror`.
//!
//! Usage: mirror-cli '<mirror request JSON>'  → prints `{"seconds", "steps", "counts"}`
//!
//! It is its own deployment: the request's bucket pair is its one `MirrorBuckets`
//! pair, the staging tag the default one.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mirror::MirrorFunction;
use serde_json::{json, Value};
use understudy_shared::aws::{s3_client, AwsContext};
use understudy_shared::deployment::{self, Deployment};
use understudy_shared::settings::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    let request = std::env::args().nth(1).expect("usage: mirror-cli '<mirror request JSON>'");
    let mut next: Value = serde_json::from_str(&request).expect("the request is JSON");
    let aws = AwsContext::from_env().await;
    let pair = format!(
        "{}/{}={}",
        next["source"]["bucket"].as_str().expect("source.bucket"),
        next["source"]["prefix"].as_str().unwrap_or(""),
        next["target"]["bucket"].as_str().expect("target.bucket"),
    );
    let deployment = Deployment::from_lookup(|variable| {
        [
            (deployment::ENVIRONMENT, "bench"),
            (deployment::PRODUCTION_ACCOUNT_ID, "111111111111"),
            (deployment::STAGING_ACCOUNT_ID, "123456789012"),
            (deployment::TAG_KEY, "understudy:environment"),
            (deployment::TAG_VALUE, "staging"),
            (deployment::MIRROR_BUCKETS, pair.as_str()),
        ]
        .into_iter()
        .find(|(parameter, _)| parameter.variable == variable)
        .map(|(_, value)| value.to_owned())
    });
    let settings = Settings::new(deployment, s3_client(aws.base()));
    let function = MirrorFunction::with_settings(aws, settings);
    let started = Instant::now();
    let mut steps = 0;
    loop {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
        let answer = match function.handle(next, deadline).await {
            Ok(answer) => answer,
            Err(error) => {
                eprintln!("{}: {error}", error.error_type());
                return ExitCode::FAILURE;
            }
        };
        steps += 1;
        if answer["done"] == true {
            let seconds = started.elapsed().as_secs_f64();
            println!("{}", json!({"seconds": seconds, "steps": steps, "counts": answer["counts"]}));
            return ExitCode::SUCCESS;
        }
        next = answer["next"].clone();
    }
}
