//! The world `sleep` and `wake` act on (seed 002's shape): eight staging ECS
//! services at 2,2,2,2,2,2,1,3 with the last autoscaled 3–6, an RDS instance,
//! a Serverless v2 cluster with one member, an EC2 instance and an Auto Scaling
//! group, all tagged staging; beside them, in the same account, what must never
//! change: a production cluster's services, an untagged service in staging's
//! cluster, a production database and a production EC2 instance.
//!
//! [`ScaleWorld::observe`] reads every one of them back, so a test compares the
//! whole account before and after.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use serde_json::{json, Value};

/// The staging tag.
pub const STAGING_TAG: (&str, &str) = ("understudy:environment", "staging");
/// What production's resources carry.
pub const PRODUCTION_TAG: (&str, &str) = ("understudy:environment", "production");

/// Staging's ECS services (`staging/<name>`) and their desired counts.
pub const STAGING_SERVICES: &[(&str, i32)] = &[
    ("gateway", 2),
    ("inventory", 2),
    ("location", 2),
    ("orders", 2),
    ("payments", 2),
    ("catalog", 2),
    ("reports", 1),
    ("api", 3),
];
/// The autoscaled staging service and its range.
pub const AUTOSCALED: (&str, i32, i32) = ("staging/api", 3, 6);
/// An untagged service in staging's cluster: never touched.
pub const UNTAGGED_SERVICE: &str = "staging/adhoc";
/// Production's services in the same account.
pub const PRODUCTION_SERVICES: &[(&str, i32)] = &[("web", 4), ("api", 3)];
/// Staging's RDS instance.
pub const STAGING_DB: &str = "staging-db";
/// Staging's Serverless v2 cluster and its member instance.
pub const STAGING_CLUSTER: &str = "staging-aurora";
/// The member instance of [`STAGING_CLUSTER`].
pub const STAGING_CLUSTER_MEMBER: &str = "staging-aurora-1";
/// Production's database in the same account.
pub const PRODUCTION_DB: &str = "production-db";
/// Staging's Auto Scaling group (min 1, desired 2, max 4).
pub const STAGING_GROUP: &str = "staging-workers";

/// Clients and the ids of what was seeded.
#[derive(Debug, Clone)]
pub struct ScaleWorld {
    /// ECS.
    pub ecs: aws_sdk_ecs::Client,
    /// Application Auto Scaling.
    pub targets: aws_sdk_applicationautoscaling::Client,
    /// Auto Scaling.
    pub groups: aws_sdk_autoscaling::Client,
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// RDS.
    pub rds: aws_sdk_rds::Client,
    /// Staging's EC2 instance.
    pub staging_instance: String,
    /// Production's EC2 instance.
    pub production_instance: String,
}

fn ecs_tag((key, value): (&str, &str)) -> aws_sdk_ecs::types::Tag {
    aws_sdk_ecs::types::Tag::builder().key(key).value(value).build()
}

fn rds_tag((key, value): (&str, &str)) -> aws_sdk_rds::types::Tag {
    aws_sdk_rds::types::Tag::builder().key(key).value(value).build()
}

impl ScaleWorld {
    /// Seeds the whole world into the account of `staging`.
    pub async fn seed(staging: &SdkConfig) -> Self {
        let world = Self::seed_services(staging).await;
        world.seed_databases().await;
        world
    }

    /// Seeds the ECS services, EC2 instances and the Auto Scaling group only.
    pub async fn seed_services(staging: &SdkConfig) -> Self {
        let ecs = aws_sdk_ecs::Client::new(staging);
        let targets = aws_sdk_applicationautoscaling::Client::new(staging);
        let groups = aws_sdk_autoscaling::Client::new(staging);
        let ec2 = aws_sdk_ec2::Client::new(staging);
        let rds = aws_sdk_rds::Client::new(staging);
        for cluster in ["staging", "production"] {
            ecs.create_cluster().cluster_name(cluster).send().await.expect("create ECS cluster");
        }
        let services = STAGING_SERVICES
            .iter()
            .map(|(name, count)| ("staging", *name, *count, Some(STAGING_TAG)))
            .chain([("staging", "adhoc", 1, None)])
            .chain(
                PRODUCTION_SERVICES
                    .iter()
                    .map(|(name, count)| ("production", *name, *count, Some(PRODUCTION_TAG))),
            );
        for (cluster, name, count, tag) in services {
            ecs.create_service()
                .cluster(cluster)
                .service_name(name)
                .desired_count(count)
                .set_tags(tag.map(|t| vec![ecs_tag(t)]))
                .send()
                .await
                .expect("create ECS service");
        }
        for (resource, min, max) in [AUTOSCALED, ("production/api", 3, 10)] {
            targets
                .register_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .resource_id(format!("service/{resource}"))
                .min_capacity(min)
                .max_capacity(max)
                .send()
                .await
                .expect("register scalable target");
        }
        let mut instances = Vec::new();
        for tag in [STAGING_TAG, PRODUCTION_TAG] {
            let run = ec2
                .run_instances()
                .image_id("ami-12c6146b")
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .tag_specifications(
                    aws_sdk_ec2::types::TagSpecification::builder()
                        .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                        .tags(aws_sdk_ec2::types::Tag::builder().key(tag.0).value(tag.1).build())
                        .build(),
                )
                .send()
                .await
                .expect("run EC2 instance");
            instances.push(run.instances()[0].instance_id().unwrap().to_owned());
        }
        groups
            .create_launch_configuration()
            .launch_configuration_name("staging-workers")
            .image_id("ami-12c6146b")
            .instance_type("t3.micro")
            .send()
            .await
            .expect("create launch configuration");
        groups
            .create_auto_scaling_group()
            .auto_scaling_group_name(STAGING_GROUP)
            .launch_configuration_name("staging-workers")
            .min_size(1)
            .desired_capacity(2)
            .max_size(4)
            .availability_zones("us-east-1a")
            .tags(
                aws_sdk_autoscaling::types::Tag::builder()
                    .resource_id(STAGING_GROUP)
                    .resource_type("auto-scaling-group")
                    .key(STAGING_TAG.0)
                    .value(STAGING_TAG.1)
                    .propagate_at_launch(false)
                    .build(),
            )
            .send()
            .await
            .expect("create Auto Scaling group");
        let production_instance = instances.pop().unwrap();
        let staging_instance = instances.pop().unwrap();
        Self { ecs, targets, groups, ec2, rds, staging_instance, production_instance }
    }

    /// Seeds the RDS instances and the Serverless v2 cluster with its member.
    pub async fn seed_databases(&self) {
        let rds = &self.rds;
        for (identifier, tag) in [(STAGING_DB, STAGING_TAG), (PRODUCTION_DB, PRODUCTION_TAG)] {
            rds.create_db_instance()
                .db_instance_identifier(identifier)
                .engine("postgres")
                .engine_version("16.4")
                .db_instance_class("db.t4g.micro")
                .allocated_storage(20)
                .master_username("app")
                .master_user_password("staging-password-1")
                .tags(rds_tag(tag))
                .send()
                .await
                .expect("create RDS instance");
        }
        self.seed_serverless_cluster(STAGING_CLUSTER, "16.4").await;
        rds.create_db_instance()
            .db_instance_identifier(STAGING_CLUSTER_MEMBER)
            .db_cluster_identifier(STAGING_CLUSTER)
            .engine("aurora-postgresql")
            .db_instance_class("db.serverless")
            .tags(rds_tag(STAGING_TAG))
            .send()
            .await
            .expect("create Aurora member");
    }

    /// Creates a staging-tagged Aurora PostgreSQL Serverless v2 cluster (0.5-2 ACU)
    /// of `engine_version`, without instances.
    pub async fn seed_serverless_cluster(&self, identifier: &str, engine_version: &str) {
        self.rds
            .create_db_cluster()
            .db_cluster_identifier(identifier)
            .engine("aurora-postgresql")
            .engine_version(engine_version)
            .master_username("app")
            .master_user_password("staging-password-1")
            .serverless_v2_scaling_configuration(
                aws_sdk_rds::types::ServerlessV2ScalingConfiguration::builder()
                    .min_capacity(0.5)
                    .max_capacity(2.0)
                    .build(),
            )
            .tags(rds_tag(STAGING_TAG))
            .send()
            .await
            .expect("create Aurora cluster");
    }

    /// Every seeded resource's state, keyed `kind:id`: desired counts, ranges,
    /// statuses and tags (sorted), so two observations compare whole.
    pub async fn observe(&self) -> BTreeMap<String, Value> {
        let mut world = BTreeMap::new();
        let targets = self
            .targets
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .send()
            .await
            .expect("describe scalable targets");
        let ranges: BTreeMap<String, (i32, i32)> = targets
            .scalable_targets()
            .iter()
            .map(|t| (t.resource_id().to_owned(), (t.min_capacity(), t.max_capacity())))
            .collect();
        for cluster in ["staging", "production"] {
            let names: Vec<String> = if cluster == "staging" {
                STAGING_SERVICES.iter().map(|(n, _)| n.to_string()).chain(["adhoc".to_owned()]).collect()
            } else {
                PRODUCTION_SERVICES.iter().map(|(n, _)| n.to_string()).collect()
            };
            let described = self
                .ecs
                .describe_services()
                .cluster(cluster)
                .set_services(Some(names))
                .include(aws_sdk_ecs::types::ServiceField::Tags)
                .send()
                .await
                .expect("describe services");
            for service in described.services() {
                let id = format!("{cluster}/{}", service.service_name().unwrap());
                let tags: BTreeMap<&str, &str> =
                    service.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
                let range = ranges.get(&format!("service/{id}"));
                world.insert(
                    format!("ecs-service:{id}"),
                    json!({"desired": service.desired_count(), "range": range, "tags": tags}),
                );
            }
        }
        let instances = self.rds.describe_db_instances().send().await.expect("describe DB instances");
        for db in instances.db_instances() {
            let tags: BTreeMap<&str, &str> =
                db.tag_list().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
            world.insert(
                format!("db-instance:{}", db.db_instance_identifier().unwrap()),
                json!({"status": db.db_instance_status(), "tags": tags}),
            );
        }
        let clusters = self.rds.describe_db_clusters().send().await.expect("describe DB clusters");
        for cluster in clusters.db_clusters() {
            let tags: BTreeMap<&str, &str> =
                cluster.tag_list().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
            let capacity =
                cluster.serverless_v2_scaling_configuration().map(|c| (c.min_capacity(), c.max_capacity()));
            world.insert(
                format!("db-cluster:{}", cluster.db_cluster_identifier().unwrap()),
                json!({"status": cluster.status(), "capacity": capacity, "tags": tags}),
            );
        }
        let reservations = self
            .ec2
            .describe_instances()
            .instance_ids(&self.staging_instance)
            .instance_ids(&self.production_instance)
            .send()
            .await
            .expect("describe EC2 instances");
        for instance in reservations.reservations().iter().flat_map(|r| r.instances()) {
            let tags: BTreeMap<&str, &str> =
                instance.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
            let role = if instance.instance_id() == Some(self.staging_instance.as_str()) {
                "staging"
            } else {
                "production"
            };
            world.insert(
                format!("ec2-instance:{role}"),
                json!({"state": instance.state().and_then(|s| s.name()).map(|n| n.as_str()), "tags": tags}),
            );
        }
        let described = self
            .groups
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(STAGING_GROUP)
            .send()
            .await
            .expect("describe Auto Scaling groups");
        for group in described.auto_scaling_groups() {
            let tags: BTreeMap<&str, &str> =
                group.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
            world.insert(
                format!("auto-scaling-group:{}", group.auto_scaling_group_name().unwrap()),
                json!({"min": group.min_size(), "desired": group.desired_capacity(), "max": group.max_size(), "tags": tags}),
            );
        }
        world
    }

    /// Sets a service's desired count, as someone would by hand.
    pub async fn set_desired_by_hand(&self, service: &str, count: i32) {
        let (cluster, name) = service.split_once('/').unwrap();
        self.ecs
            .update_service()
            .cluster(cluster)
            .service(name)
            .desired_count(count)
            .send()
            .await
            .expect("update service");
    }
}

/// The entries of `world` whose key contains `marker` (e.g. `staging`).
pub fn staging_entries(world: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    world
        .iter()
        .filter(|(_, v)| v["tags"][STAGING_TAG.0] == STAGING_TAG.1)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The entries of `world` that are not staging's (production's and untagged ones).
pub fn other_entries(world: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    world
        .iter()
        .filter(|(_, v)| v["tags"][STAGING_TAG.0] != STAGING_TAG.1)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
