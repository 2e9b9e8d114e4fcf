//! Making a plan's mutating calls. Only ever reached for resources that
//! [`crate::discover::describe`] checked carry the staging tag.

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use understudy_shared::scale::parse_service_name;
use understudy_shared::tags::tag_value;
use understudy_shared::{Error, Result};

use crate::discover::{target_id, Clients};
use crate::model::{Change, Kind, Resource, SLEEP_KEYS};

/// ECS `UpdateService` of the service `cluster/service`, with what `set` adds.
async fn update_service(
    clients: &Clients,
    id: &str,
    set: impl FnOnce(
        aws_sdk_ecs::operation::update_service::builders::UpdateServiceFluentBuilder,
    ) -> aws_sdk_ecs::operation::update_service::builders::UpdateServiceFluentBuilder,
) -> Result<()> {
    let (cluster, service) = service_parts(id)?;
    set(clients.ecs.update_service().cluster(cluster).service(service))
        .send()
        .await
        .map_err(|e| Error::from_sdk("ecs:UpdateService", e))?;
    Ok(())
}

/// Makes `change` on `resource`.
pub async fn apply(clients: &Clients, resource: &Resource, change: &Change) -> Result<()> {
    let id = resource.id.as_str();
    match change {
        Change::Remember(pairs) => remember(clients, resource, pairs).await,
        Change::Forget => {
            let keys: Vec<String> = SLEEP_KEYS
                .iter()
                .filter(|k| tag_value(&resource.tags, k).is_some())
                .map(|k| k.to_string())
                .collect();
            if keys.is_empty() {
                return Ok(());
            }
            forget(clients, resource, keys).await
        }
        Change::Desired(count) => update_service(clients, id, |call| call.desired_count(*count)).await,
        Change::NewDeployment => update_service(clients, id, |call| call.force_new_deployment(true)).await,
        Change::AutoScaling(range) => {
            clients
                .autoscaling_targets
                .register_scalable_target()
                .service_namespace(ServiceNamespace::Ecs)
                .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
                .resource_id(target_id(id))
                .min_capacity(range.min)
                .max_capacity(range.max)
                .send()
                .await
                .map_err(|e| Error::from_sdk("application-autoscaling:RegisterScalableTarget", e))?;
            Ok(())
        }
        Change::Group { min, desired, max } => {
            clients
                .groups
                .update_auto_scaling_group()
                .auto_scaling_group_name(id)
                .min_size(*min)
                .desired_capacity(*desired)
                .max_size(*max)
                .send()
                .await
                .map_err(|e| Error::from_sdk("autoscaling:UpdateAutoScalingGroup", e))?;
            Ok(())
        }
        Change::StopDatabase => match resource.kind {
            Kind::DbCluster => clients
                .rds
                .stop_db_cluster()
                .db_cluster_identifier(id)
                .send()
                .await
                .map(drop)
                .map_err(|e| Error::from_sdk("rds:StopDBCluster", e)),
            _ => clients
                .rds
                .stop_db_instance()
                .db_instance_identifier(id)
                .send()
                .await
                .map(drop)
                .map_err(|e| Error::from_sdk("rds:StopDBInstance", e)),
        },
        Change::StartDatabase => match resource.kind {
            Kind::DbCluster => clients
                .rds
                .start_db_cluster()
                .db_cluster_identifier(id)
                .send()
                .await
                .map(drop)
                .map_err(|e| Error::from_sdk("rds:StartDBCluster", e)),
            _ => clients
                .rds
                .start_db_instance()
                .db_instance_identifier(id)
                .send()
                .await
                .map(drop)
                .map_err(|e| Error::from_sdk("rds:StartDBInstance", e)),
        },
        Change::ServerlessCapacity { min, max, auto_pause } => {
            let scaling = aws_sdk_rds::types::ServerlessV2ScalingConfiguration::builder()
                .min_capacity(*min)
                .max_capacity(*max)
                .set_seconds_until_auto_pause(auto_pause.map(|s| s as i32))
                .build();
            clients
                .rds
                .modify_db_cluster()
                .db_cluster_identifier(id)
                .serverless_v2_scaling_configuration(scaling)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| Error::from_sdk("rds:ModifyDBCluster", e))?;
            Ok(())
        }
        Change::StopMachine { hibernate } => {
            clients
                .ec2
                .stop_instances()
                .instance_ids(id)
                .set_hibernate(hibernate.then_some(true))
                .send()
                .await
                .map_err(|e| Error::from_sdk("ec2:StopInstances", e))?;
            Ok(())
        }
        Change::StartMachine => {
            clients
                .ec2
                .start_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| Error::from_sdk("ec2:StartInstances", e))?;
            Ok(())
        }
    }
}

fn service_parts(id: &str) -> Result<(&str, &str)> {
    parse_service_name(id).ok_or_else(|| Error::InvalidInput(format!("`{id}` is not `cluster/service`")))
}

async fn remember(clients: &Clients, resource: &Resource, pairs: &[(String, String)]) -> Result<()> {
    match resource.kind {
        Kind::EcsService => {
            let tags = pairs.iter().map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build());
            clients
                .ecs
                .tag_resource()
                .resource_arn(&resource.arn)
                .set_tags(Some(tags.collect()))
                .send()
                .await
                .map_err(|e| Error::from_sdk("ecs:TagResource", e))?;
        }
        Kind::AutoScalingGroup => {
            let tags = pairs.iter().map(|(k, v)| {
                aws_sdk_autoscaling::types::Tag::builder()
                    .resource_id(&resource.id)
                    .resource_type("auto-scaling-group")
                    .key(k)
                    .value(v)
                    .propagate_at_launch(false)
                    .build()
            });
            clients
                .groups
                .create_or_update_tags()
                .set_tags(Some(tags.collect()))
                .send()
                .await
                .map_err(|e| Error::from_sdk("autoscaling:CreateOrUpdateTags", e))?;
        }
        Kind::Ec2Instance => {
            let tags = pairs.iter().map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build());
            clients
                .ec2
                .create_tags()
                .resources(&resource.id)
                .set_tags(Some(tags.collect()))
                .send()
                .await
                .map_err(|e| Error::from_sdk("ec2:CreateTags", e))?;
        }
        Kind::DbInstance | Kind::DbCluster => {
            let tags = pairs.iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build());
            clients
                .rds
                .add_tags_to_resource()
                .resource_name(&resource.arn)
                .set_tags(Some(tags.collect()))
                .send()
                .await
                .map_err(|e| Error::from_sdk("rds:AddTagsToResource", e))?;
        }
    }
    Ok(())
}

async fn forget(clients: &Clients, resource: &Resource, keys: Vec<String>) -> Result<()> {
    match resource.kind {
        Kind::EcsService => {
            clients
                .ecs
                .untag_resource()
                .resource_arn(&resource.arn)
                .set_tag_keys(Some(keys))
                .send()
                .await
                .map_err(|e| Error::from_sdk("ecs:UntagResource", e))?;
        }
        Kind::AutoScalingGroup => {
            let tags = keys.iter().map(|k| {
                aws_sdk_autoscaling::types::Tag::builder()
                    .resource_id(&resource.id)
                    .resource_type("auto-scaling-group")
                    .key(k)
                    .build()
            });
            clients
                .groups
                .delete_tags()
                .set_tags(Some(tags.collect()))
                .send()
                .await
                .map_err(|e| Error::from_sdk("autoscaling:DeleteTags", e))?;
        }
        Kind::Ec2Instance => {
            let tags = keys.iter().map(|k| aws_sdk_ec2::types::Tag::builder().key(k).build());
            clients
                .ec2
                .delete_tags()
                .resources(&resource.id)
                .set_tags(Some(tags.collect()))
                .send()
                .await
                .map_err(|e| Error::from_sdk("ec2:DeleteTags", e))?;
        }
        Kind::DbInstance | Kind::DbCluster => {
            clients
                .rds
                .remove_tags_from_resource()
                .resource_name(&resource.arn)
                .set_tag_keys(Some(keys))
                .send()
                .await
                .map_err(|e| Error::from_sdk("rds:RemoveTagsFromResource", e))?;
        }
    }
    Ok(())
}
