//! Finding staging's resources and reading their state, in batches: one
//! Resource Groups Tagging `GetResources` page per 100 tagged resources, one
//! `DescribeServices` per 10 services of a cluster (AWS's limit), one
//! `DescribeScalableTargets` per 50 services, one describe per 100 databases,
//! instances or groups. Reads only; the guard rail (every resource carries the
//! staging tag) is checked here, before any mutating call.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_ecs::types::ServiceField;
use understudy_shared::config::TagSelector;
use understudy_shared::scale::{parse_service_name, ScaleSettings};
use understudy_shared::tags::TagList;
use understudy_shared::{guard, Error, Result};

use crate::model::{Capacity, Kind, Range, Resource, State};

/// The clients scale-to-zero uses, all in staging.
#[derive(Clone, Debug)]
pub struct Clients {
    /// ECS.
    pub ecs: aws_sdk_ecs::Client,
    /// Application Auto Scaling.
    pub autoscaling_targets: aws_sdk_applicationautoscaling::Client,
    /// EC2 Auto Scaling.
    pub groups: aws_sdk_autoscaling::Client,
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// RDS.
    pub rds: aws_sdk_rds::Client,
    /// Resource Groups Tagging API.
    pub tagging: aws_sdk_resourcegroupstagging::Client,
}

impl Clients {
    /// Clients for `config`.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            ecs: aws_sdk_ecs::Client::new(config),
            autoscaling_targets: aws_sdk_applicationautoscaling::Client::new(config),
            groups: aws_sdk_autoscaling::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            rds: aws_sdk_rds::Client::new(config),
            tagging: aws_sdk_resourcegroupstagging::Client::new(config),
        }
    }
}

/// Which resources, by kind and id, and which of them were named explicitly
/// (those must exist).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Selection {
    /// `(kind, id)` of every selected resource.
    pub ids: BTreeSet<(Kind, String)>,
    /// Listed by name in the config.
    pub listed: BTreeSet<(Kind, String)>,
}

impl Selection {
    fn of(&self, kind: Kind) -> Vec<String> {
        self.ids.iter().filter(|(k, _)| *k == kind).map(|(_, id)| id.clone()).collect()
    }
}

/// The kind and id of a resource ARN from the tagging API, if it is one
/// understudy scales.
pub fn parse_arn(arn: &str) -> Option<(Kind, String)> {
    let mut parts = arn.splitn(6, ':');
    let (_, _, service, _, _, resource) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    match (service, resource.split_once(['/', ':'])?) {
        // service/<cluster>/<service>; the old short ARN format (service/<name>)
        // names no cluster and cannot be tagged anyway.
        ("ecs", ("service", rest)) => parse_service_name(rest).map(|_| (Kind::EcsService, rest.to_owned())),
        ("rds", ("db", id)) => Some((Kind::DbInstance, id.to_owned())),
        ("rds", ("cluster", id)) => Some((Kind::DbCluster, id.to_owned())),
        ("ec2", ("instance", id)) => Some((Kind::Ec2Instance, id.to_owned())),
        _ => None,
    }
}

fn tagging_type(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::EcsService => Some("ecs:service"),
        Kind::DbInstance => Some("rds:db"),
        Kind::DbCluster => Some("rds:cluster"),
        Kind::Ec2Instance => Some("ec2:instance"),
        Kind::AutoScalingGroup => None,
    }
}

/// The resources of `kinds` that `settings` selects: by the staging tag and by name.
pub async fn select(
    clients: &Clients,
    settings: &ScaleSettings,
    tag: &TagSelector,
    kinds: &[Kind],
) -> Result<Selection> {
    let mut selection = Selection::default();
    let listed = [
        (Kind::EcsService, &settings.ecs_services),
        (Kind::DbInstance, &settings.db_instances),
        (Kind::DbCluster, &settings.db_clusters),
        (Kind::Ec2Instance, &settings.ec2_instances),
        (Kind::AutoScalingGroup, &settings.auto_scaling_groups),
    ];
    for (kind, ids) in listed {
        if kinds.contains(&kind) {
            for id in ids {
                selection.listed.insert((kind, id.clone()));
                selection.ids.insert((kind, id.clone()));
            }
        }
    }
    if !settings.select_by_tag {
        return Ok(selection);
    }
    let types: Vec<&str> = kinds.iter().filter_map(|k| tagging_type(*k)).collect();
    if !types.is_empty() {
        let filter = aws_sdk_resourcegroupstagging::types::TagFilter::builder()
            .key(&tag.key)
            .values(&tag.value)
            .build();
        let mut pages = clients
            .tagging
            .get_resources()
            .tag_filters(filter)
            .set_resource_type_filters(Some(types.iter().map(|t| t.to_string()).collect()))
            .resources_per_page(100)
            .tags_per_page(500)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::from_sdk("tag:GetResources", e))?;
            for mapping in page.resource_tag_mapping_list() {
                match mapping.resource_arn().and_then(parse_arn) {
                    Some(found) if kinds.contains(&found.0) => {
                        selection.ids.insert(found);
                    }
                    Some(_) => {}
                    None => {
                        tracing::debug!(arn = ?mapping.resource_arn(), "not a resource understudy scales")
                    }
                }
            }
        }
    }
    if kinds.contains(&Kind::AutoScalingGroup) {
        let filters = [("key", &tag.key), ("value", &tag.value)].map(|(name, value)| {
            aws_sdk_autoscaling::types::Filter::builder().name(name).values(value).build()
        });
        let mut pages =
            clients.groups.describe_tags().set_filters(Some(filters.to_vec())).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::from_sdk("autoscaling:DescribeTags", e))?;
            for tag in page.tags() {
                if tag.resource_type() == Some("auto-scaling-group") {
                    if let Some(name) = tag.resource_id() {
                        selection.ids.insert((Kind::AutoScalingGroup, name.to_owned()));
                    }
                }
            }
        }
    }
    Ok(selection)
}

/// Describes every selected resource (in batches), refuses with
/// `ResourceNotFound` when a listed one does not exist and with
/// `GuardRailViolation` when one does not carry the staging tag.
pub async fn describe(clients: &Clients, selection: &Selection, tag: &TagSelector) -> Result<Vec<Resource>> {
    let resources = describe_all(clients, selection).await?;
    let found: BTreeSet<(Kind, &str)> = resources.iter().map(|r| (r.kind, r.id.as_str())).collect();
    let missing: Vec<String> = selection
        .listed
        .iter()
        .filter(|(kind, id)| !found.contains(&(*kind, id.as_str())))
        .map(|(kind, id)| format!("{} `{id}`", kind.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(Error::ResourceNotFound(format!(
            "config.scale lists resources that do not exist in staging: {}",
            missing.join(", ")
        )));
    }
    let refused: Vec<String> = resources
        .iter()
        .filter_map(|r| guard::ensure_staging(&format!("{} {}", r.kind.as_str(), r.id), &r.tags, tag).err())
        .map(|e| e.to_string())
        .collect();
    if !refused.is_empty() {
        return Err(Error::GuardRailViolation(refused.join("; ")));
    }
    Ok(resources)
}

/// Describes every selected resource that exists, in batches; reads only, no checks.
pub async fn describe_all(clients: &Clients, selection: &Selection) -> Result<Vec<Resource>> {
    let [services, instances, clusters, machines, groups] =
        [Kind::EcsService, Kind::DbInstance, Kind::DbCluster, Kind::Ec2Instance, Kind::AutoScalingGroup]
            .map(|kind| selection.of(kind));
    let (services, instances, clusters, machines, groups) = futures::try_join!(
        describe_services(clients, &services),
        describe_db_instances(clients, &instances),
        describe_db_clusters(clients, &clusters),
        describe_machines(clients, &machines),
        describe_groups(clients, &groups),
    )?;
    Ok(services.into_iter().chain(instances).chain(clusters).chain(machines).chain(groups).collect())
}

async fn describe_services(clients: &Clients, ids: &[String]) -> Result<Vec<Resource>> {
    let mut by_cluster: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in ids {
        if let Some((cluster, service)) = parse_service_name(id) {
            by_cluster.entry(cluster).or_default().push(service);
        }
    }
    let mut resources = Vec::new();
    for (cluster, names) in by_cluster {
        for chunk in names.chunks(10) {
            let output = match clients
                .ecs
                .describe_services()
                .cluster(cluster)
                .set_services(Some(chunk.iter().map(|s| s.to_string()).collect()))
                .include(ServiceField::Tags)
                .send()
                .await
            {
                Ok(output) => output,
                // Its services are then missing, which a listed service reports.
                Err(err) if err.as_service_error().is_some_and(|e| e.is_cluster_not_found_exception()) => {
                    continue
                }
                Err(err) => return Err(Error::from_sdk("ecs:DescribeServices", err)),
            };
            for service in output.services() {
                if service.status() == Some("INACTIVE") {
                    continue;
                }
                let name = service.service_name().unwrap_or_default();
                resources.push(Resource {
                    kind: Kind::EcsService,
                    id: format!("{cluster}/{name}"),
                    arn: service.service_arn().unwrap_or_default().to_owned(),
                    tags: ecs_tags(service.tags()),
                    state: State::Scalable {
                        desired: service.desired_count(),
                        running: service.running_count(),
                        pending: service.pending_count(),
                        deployments: service.deployments().len(),
                        range: None,
                    },
                });
            }
        }
    }
    let targets = scalable_targets(clients, &resources).await?;
    for resource in &mut resources {
        if let State::Scalable { range, .. } = &mut resource.state {
            *range = targets.get(&target_id(&resource.id)).copied();
        }
    }
    Ok(resources)
}

/// Application Auto Scaling's resource id of an ECS service.
pub fn target_id(service: &str) -> String {
    format!("service/{service}")
}

async fn scalable_targets(clients: &Clients, services: &[Resource]) -> Result<BTreeMap<String, Range>> {
    let mut targets = BTreeMap::new();
    let ids: Vec<String> = services.iter().map(|s| target_id(&s.id)).collect();
    for chunk in ids.chunks(50) {
        let mut pages = clients
            .autoscaling_targets
            .describe_scalable_targets()
            .service_namespace(ServiceNamespace::Ecs)
            .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
            .set_resource_ids(Some(chunk.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| Error::from_sdk("application-autoscaling:DescribeScalableTargets", e))?;
            for target in page.scalable_targets() {
                targets.insert(
                    target.resource_id().to_owned(),
                    Range { min: target.min_capacity(), max: target.max_capacity() },
                );
            }
        }
    }
    Ok(targets)
}

/// (key, value) pairs from any SDK's tag type, whose fields are all optional.
fn tag_list<'a>(tags: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> TagList {
    tags.map(|(k, v)| (k.unwrap_or_default().to_owned(), v.unwrap_or_default().to_owned())).collect()
}

/// An ECS resource's tags as pairs.
pub fn ecs_tags(list: &[aws_sdk_ecs::types::Tag]) -> TagList {
    tag_list(list.iter().map(|t| (t.key(), t.value())))
}

fn rds_tags(list: &[aws_sdk_rds::types::Tag]) -> TagList {
    tag_list(list.iter().map(|t| (t.key(), t.value())))
}

fn rds_filter(name: &str, ids: &[String]) -> aws_sdk_rds::types::Filter {
    aws_sdk_rds::types::Filter::builder().name(name).set_values(Some(ids.to_vec())).build()
}

async fn describe_db_instances(clients: &Clients, ids: &[String]) -> Result<Vec<Resource>> {
    let mut resources = Vec::new();
    for chunk in ids.chunks(100) {
        let mut pages = clients
            .rds
            .describe_db_instances()
            .filters(rds_filter("db-instance-id", chunk))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::from_sdk("rds:DescribeDBInstances", e))?;
            for db in page.db_instances() {
                let id = db.db_instance_identifier().unwrap_or_default().to_owned();
                let replicas = db.read_replica_db_instance_identifiers();
                let unstoppable = if let Some(cluster) = db.db_cluster_identifier() {
                    Some(format!(
                        "member of Aurora cluster `{cluster}`: it sleeps and wakes with its cluster"
                    ))
                } else if let Some(source) = db.read_replica_source_db_instance_identifier() {
                    Some(format!("read replica of `{source}`: AWS cannot stop a read replica"))
                } else if !replicas.is_empty() {
                    Some(format!(
                        "has read replicas ({}): AWS cannot stop an instance that has them",
                        replicas.join(", ")
                    ))
                } else {
                    None
                };
                resources.push(Resource {
                    kind: Kind::DbInstance,
                    arn: db.db_instance_arn().unwrap_or_default().to_owned(),
                    tags: rds_tags(db.tag_list()),
                    state: State::Database {
                        status: db.db_instance_status().unwrap_or_default().to_owned(),
                        unstoppable,
                        serverless: None,
                        engine: db.engine().unwrap_or_default().to_owned(),
                        engine_version: db.engine_version().unwrap_or_default().to_owned(),
                    },
                    id,
                });
            }
        }
    }
    Ok(resources)
}

async fn describe_db_clusters(clients: &Clients, ids: &[String]) -> Result<Vec<Resource>> {
    let mut resources = Vec::new();
    for chunk in ids.chunks(100) {
        let mut pages = clients
            .rds
            .describe_db_clusters()
            .filters(rds_filter("db-cluster-id", chunk))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::from_sdk("rds:DescribeDBClusters", e))?;
            for cluster in page.db_clusters() {
                let unstoppable = (cluster.engine_mode() == Some("serverless"))
                    .then(|| "Aurora Serverless v1: it pauses by itself and cannot be stopped".to_owned());
                let serverless = cluster
                    .serverless_v2_scaling_configuration()
                    .and_then(|c| Some(Capacity { min: c.min_capacity()?, max: c.max_capacity()? }));
                resources.push(Resource {
                    kind: Kind::DbCluster,
                    id: cluster.db_cluster_identifier().unwrap_or_default().to_owned(),
                    arn: cluster.db_cluster_arn().unwrap_or_default().to_owned(),
                    tags: rds_tags(cluster.tag_list()),
                    state: State::Database {
                        status: cluster.status().unwrap_or_default().to_owned(),
                        unstoppable,
                        serverless,
                        engine: cluster.engine().unwrap_or_default().to_owned(),
                        engine_version: cluster.engine_version().unwrap_or_default().to_owned(),
                    },
                });
            }
        }
    }
    Ok(resources)
}

async fn describe_machines(clients: &Clients, ids: &[String]) -> Result<Vec<Resource>> {
    let mut resources = Vec::new();
    for chunk in ids.chunks(100) {
        // A filter, not InstanceIds: an id that no longer exists is simply absent
        // instead of failing the whole call.
        let filter = aws_sdk_ec2::types::Filter::builder()
            .name("instance-id")
            .set_values(Some(chunk.to_vec()))
            .build();
        let mut pages = clients.ec2.describe_instances().filters(filter).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::from_sdk("ec2:DescribeInstances", e))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                let id = instance.instance_id().unwrap_or_default().to_owned();
                let state = instance.state().and_then(|s| s.name()).map(|n| n.as_str()).unwrap_or_default();
                if state == "terminated" {
                    continue;
                }
                resources.push(Resource {
                    kind: Kind::Ec2Instance,
                    arn: id.clone(),
                    tags: tag_list(instance.tags().iter().map(|t| (t.key(), t.value()))),
                    state: State::Machine { state: state.to_owned() },
                    id,
                });
            }
        }
    }
    Ok(resources)
}

async fn describe_groups(clients: &Clients, names: &[String]) -> Result<Vec<Resource>> {
    let mut resources = Vec::new();
    for chunk in names.chunks(50) {
        let mut pages = clients
            .groups
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(chunk.to_vec()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::from_sdk("autoscaling:DescribeAutoScalingGroups", e))?;
            for group in page.auto_scaling_groups() {
                let in_service = group
                    .instances()
                    .iter()
                    .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
                    .count() as i32;
                let total = group.instances().len() as i32;
                resources.push(Resource {
                    kind: Kind::AutoScalingGroup,
                    id: group.auto_scaling_group_name().unwrap_or_default().to_owned(),
                    arn: group.auto_scaling_group_arn().unwrap_or_default().to_owned(),
                    tags: tag_list(group.tags().iter().map(|t| (t.key(), t.value()))),
                    state: State::Scalable {
                        desired: group.desired_capacity().unwrap_or_default(),
                        running: in_service,
                        pending: total - in_service,
                        deployments: 1,
                        range: Some(Range {
                            min: group.min_size().unwrap_or_default(),
                            max: group.max_size().unwrap_or_default(),
                        }),
                    },
                });
            }
        }
    }
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_arns_name_kind_and_id() {
        let cases = [
            (
                "arn:aws:ecs:us-east-1:123456789012:service/staging/api",
                Some((Kind::EcsService, "staging/api")),
            ),
            ("arn:aws:ecs:us-east-1:123456789012:service/api", None),
            ("arn:aws:rds:us-east-1:123456789012:db:staging-db", Some((Kind::DbInstance, "staging-db"))),
            (
                "arn:aws:rds:us-east-1:123456789012:cluster:staging-aurora",
                Some((Kind::DbCluster, "staging-aurora")),
            ),
            ("arn:aws:ec2:us-east-1:123456789012:instance/i-0abc", Some((Kind::Ec2Instance, "i-0abc"))),
            ("arn:aws:rds:us-east-1:123456789012:snapshot:s", None),
            ("arn:aws:ec2:us-east-1:123456789012:volume/vol-1", None),
            ("not-an-arn", None),
        ];
        for (arn, expected) in cases {
            assert_eq!(parse_arn(arn), expected.map(|(k, id)| (k, id.to_owned())), "{arn}");
        }
    }
}
