//! AWS clients for the emulated accounts: staging is moto's default account (the
//! functions' own credentials), production a second account reached by
//! `sts:AssumeRole`, exactly as the functions reach it.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use serde_json::{json, Value};
use understudy_shared::aws::AwsContext;
use understudy_shared::config::ProductionAccount;

use crate::LocalStack;

/// Region of both emulated accounts.
pub const REGION: &str = "us-east-1";
/// moto's default account: the one the functions run in.
pub const STAGING_ACCOUNT: &str = "123456789012";
/// The emulated production account.
pub const PRODUCTION_ACCOUNT: &str = "111111111111";
/// The role understudy assumes in production.
pub const PRODUCTION_ROLE_ARN: &str = "arn:aws:iam::111111111111:role/understudy-production";
/// The external id the tests configure.
pub const EXTERNAL_ID: &str = "understudy-local-external-id";

/// Configs for both accounts of one stack.
#[derive(Debug, Clone)]
pub struct Accounts {
    /// Acts in staging (moto's default account).
    pub staging: SdkConfig,
    /// Acts in production (assumed role).
    pub production: SdkConfig,
}

impl Accounts {
    /// Clients for `stack`'s emulator.
    pub async fn new(stack: &LocalStack) -> Self {
        let staging = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&stack.moto_endpoint)
            .credentials_provider(Credentials::for_tests())
            .load()
            .await;
        let production = AwsContext::new(staging.clone())
            .production(&production_account())
            .await
            .expect("assume the production role in the emulator");
        Self { staging, production }
    }

    /// RDS in production.
    pub fn production_rds(&self) -> aws_sdk_rds::Client {
        aws_sdk_rds::Client::new(&self.production)
    }

    /// RDS in staging.
    pub fn staging_rds(&self) -> aws_sdk_rds::Client {
        aws_sdk_rds::Client::new(&self.staging)
    }

    /// Creates an Aurora PostgreSQL Serverless v2 cluster in production (seed 000's shape).
    pub async fn seed_production_cluster(&self, identifier: &str) {
        self.production_rds()
            .create_db_cluster()
            .db_cluster_identifier(identifier)
            .engine("aurora-postgresql")
            .engine_version("15.4")
            .master_username("prod_admin")
            .master_user_password("production-password-1")
            .storage_encrypted(true)
            .serverless_v2_scaling_configuration(
                aws_sdk_rds::types::ServerlessV2ScalingConfiguration::builder()
                    .min_capacity(0.5)
                    .max_capacity(4.0)
                    .build(),
            )
            .send()
            .await
            .expect("seed production cluster");
    }

    /// Creates a PostgreSQL RDS instance in production.
    pub async fn seed_production_instance(&self, identifier: &str) {
        self.production_rds()
            .create_db_instance()
            .db_instance_identifier(identifier)
            .engine("postgres")
            .db_instance_class("db.t4g.micro")
            .allocated_storage(20)
            .master_username("prod_admin")
            .master_user_password("production-password-1")
            .send()
            .await
            .expect("seed production instance");
    }

    /// Seed 003's production database: a PostgreSQL instance in the staging
    /// account itself (a same-account setup), master user `app_owner`.
    pub async fn seed_same_account_production_instance(&self, identifier: &str) {
        self.staging_rds()
            .create_db_instance()
            .db_instance_identifier(identifier)
            .engine("postgres")
            .db_instance_class("db.t4g.small")
            .allocated_storage(20)
            .master_username("app_owner")
            .master_user_password(PRODUCTION_PASSWORD)
            .send()
            .await
            .expect("seed the same-account production instance");
    }
}

/// What a refresh test seeds: production's share key and staging's password secret.
#[derive(Debug, Clone)]
pub struct RefreshWorld {
    /// Customer-managed key in production that aws/rds snapshots are re-encrypted with.
    pub share_key_arn: String,
    /// Secret in staging with staging's master password.
    pub password_secret_arn: String,
    /// Staging's database security group.
    pub security_group_id: String,
}

/// The password staging's secret holds.
pub const STAGING_PASSWORD: &str = "staging-password-2";
/// The password the production database was created with.
pub const PRODUCTION_PASSWORD: &str = "production-password-1";
/// Staging's DB subnet group.
pub const STAGING_SUBNET_GROUP: &str = "staging-db-subnets";

impl Accounts {
    /// Production's share key (customer-managed) and staging's subnet group and
    /// password secret.
    pub async fn seed_refresh_world(&self, stack: &LocalStack) -> RefreshWorld {
        let network = stack.seed_staging_network(STAGING_SUBNET_GROUP);
        let key = aws_sdk_kms::Client::new(&self.production)
            .create_key()
            .description("understudy share key")
            .send()
            .await
            .expect("create the share key");
        let share_key_arn = key.key_metadata().and_then(|m| m.arn()).expect("key ARN").to_owned();
        let secret = aws_sdk_secretsmanager::Client::new(&self.staging)
            .create_secret()
            .name("staging/database-master")
            .secret_string(json!({"username": "staging_admin", "password": STAGING_PASSWORD}).to_string())
            .send()
            .await
            .expect("create staging's password secret");
        RefreshWorld {
            share_key_arn,
            password_secret_arn: secret.arn().expect("secret ARN").to_owned(),
            security_group_id: network["security_group_id"].as_str().expect("security group").to_owned(),
        }
    }

    /// Creates the live staging Aurora cluster `identifier` with one instance,
    /// tagged with `tags` (e.g. the staging tag).
    pub async fn seed_staging_cluster(&self, identifier: &str, tags: &[(&str, &str)]) {
        let rds = self.staging_rds();
        let tags: Vec<_> =
            tags.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(*k).value(*v).build()).collect();
        rds.create_db_cluster()
            .db_cluster_identifier(identifier)
            .engine("aurora-postgresql")
            .engine_version("15.4")
            .master_username("staging_admin")
            .master_user_password("old-staging-password")
            .set_tags(Some(tags.clone()))
            .send()
            .await
            .expect("seed staging cluster");
        rds.create_db_instance()
            .db_instance_identifier(format!("{identifier}-1"))
            .db_cluster_identifier(identifier)
            .engine("aurora-postgresql")
            .db_instance_class("db.serverless")
            .set_tags(Some(tags))
            .send()
            .await
            .expect("seed staging cluster instance");
    }

    /// Creates an RDS PostgreSQL instance `identifier` in the functions' own
    /// account, tagged with `tags`.
    pub async fn seed_staging_instance(&self, identifier: &str, tags: &[(&str, &str)]) {
        let tags: Vec<_> =
            tags.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(*k).value(*v).build()).collect();
        self.staging_rds()
            .create_db_instance()
            .db_instance_identifier(identifier)
            .engine("postgres")
            .db_instance_class("db.t4g.micro")
            .allocated_storage(20)
            .master_username("staging_admin")
            .master_user_password("old-staging-password")
            .set_tags(Some(tags))
            .send()
            .await
            .expect("seed staging instance");
    }
}

/// The production section of the config the tests use.
pub fn production_account() -> ProductionAccount {
    ProductionAccount {
        account_id: PRODUCTION_ACCOUNT.into(),
        region: Some(REGION.into()),
        role_arn: Some(PRODUCTION_ROLE_ARN.into()),
        external_id: Some(EXTERNAL_ID.into()),
    }
}

/// The stack parameters and configuration document of a stack deployed for seed
/// 000's shape: a cross-account refresh of `source` into `target` with staging's
/// subnet group, security group, 0.5-1 ACU and password secret, polling each second.
pub fn refresh_deployment(
    kind: &str,
    source: &str,
    target: &str,
    world: &RefreshWorld,
) -> (Vec<(&'static str, String)>, Value) {
    let mut parameters = crate::deployment::cross_account(kind, source, target);
    parameters.push(("DatabasePasswordSecretArn", world.password_secret_arn.clone()));
    let document = json!({
        "database": {
            "share_kms_key_arn": world.share_key_arn,
            "restore": {
                "subnet_group": STAGING_SUBNET_GROUP,
                "security_group_ids": [world.security_group_id],
                "min_capacity": 0.5,
                "max_capacity": 1
            }
        },
        "poll": crate::deployment::fast_polls(),
    });
    (parameters, document)
}
