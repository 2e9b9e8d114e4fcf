//! Deploying the local stack as `sam deploy` would: stack parameters resolved into
//! every function's environment by the template itself (`tests/local/deploy.py`),
//! and the configuration document written into the stack's `ConfigBucket` as an
//! operator would (`aws s3 cp config.json s3://<bucket>/config.json`). Every test
//! runs on this path, so the template's own defaults are what the tests exercise.

use aws_config::SdkConfig;
use serde_json::{json, Value};

use crate::accounts::{EXTERNAL_ID, PRODUCTION_ACCOUNT, PRODUCTION_ROLE_ARN, REGION};
use crate::LocalStack;

/// The local stack's `ConfigBucket`.
pub const CONFIG_BUCKET: &str = "understudy-local-configbucket";
/// The local stack's LeaseBucket, where the run lock lives (tests/local/deploy.py).
pub const LEASE_BUCKET: &str = "understudy-local-leasebucket";
/// Where the functions read the document (the template's IAM names the same key).
pub const CONFIG_KEY: &str = understudy_shared::deployment::DEFAULT_CONFIG_KEY;

impl LocalStack {
    /// Deploys the template with `parameters` (the others at their defaults), as
    /// `sam deploy --parameter-overrides` would; answers the functions' variables.
    pub fn deploy(&self, parameters: &[(&str, String)]) -> Value {
        deployed(self.try_deploy(parameters))
    }

    /// Deploys the parameter overrides of a `samconfig.toml` environment (the others at
    /// their defaults), as `sam deploy --config-env <env>` would; answers as [`deploy`](Self::deploy).
    pub fn deploy_config_env(&self, env: &str) -> Value {
        deployed(self.control("POST", "/understudy/deploy", Some(&json!({ "config_env": env }))))
    }

    /// [`deploy`](Self::deploy), answering a refusal (400 naming the parameter) instead of panicking.
    pub fn try_deploy(&self, parameters: &[(&str, String)]) -> crate::Invocation {
        let parameters: serde_json::Map<String, Value> =
            parameters.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        self.control("POST", "/understudy/deploy", Some(&json!({ "parameters": parameters })))
    }
}

fn deployed(answer: crate::Invocation) -> Value {
    assert_eq!(answer.status, 200, "deploy refused: {}", answer.payload);
    answer.payload
}

/// Writes the configuration document into the stack's bucket; answers its version.
pub async fn write_config(staging: &SdkConfig, document: &Value) -> String {
    let s3 = understudy_shared::aws::s3_client(staging);
    let put = s3
        .put_object()
        .bucket(CONFIG_BUCKET)
        .key(CONFIG_KEY)
        .content_type("application/json")
        .body(serde_json::to_vec_pretty(document).expect("documents serialize").into())
        .send()
        .await
        .expect("write the configuration document");
    put.version_id().expect("the config bucket is versioned").to_owned()
}

/// Stack parameters of a cross-account refresh of `source` (production, reached
/// through its role) into `target`, `StagingAccountId` left at the template's
/// default (empty: the stack's own account).
pub fn cross_account(kind: &str, source: &str, target: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ProductionAccountId", PRODUCTION_ACCOUNT.into()),
        ("ProductionRegion", REGION.into()),
        ("ProductionRoleArn", PRODUCTION_ROLE_ARN.into()),
        ("ProductionExternalId", EXTERNAL_ID.into()),
        ("DatabaseKind", kind.into()),
        ("DatabaseSource", source.into()),
        ("DatabaseTarget", target.into()),
    ]
}

/// The `poll` section of a test document: every loop polls each second (flat
/// waits, as often as the slow transitions need) and gives up after 2 minutes.
pub fn fast_polls() -> Value {
    let mut poll = serde_json::Map::new();
    for kind in ["snapshot", "database", "service"] {
        poll.insert(format!("{kind}_seconds"), json!(1));
        poll.insert(format!("{kind}_max_seconds"), json!(1));
        poll.insert(format!("{kind}_timeout_minutes"), json!(2));
    }
    Value::Object(poll)
}
