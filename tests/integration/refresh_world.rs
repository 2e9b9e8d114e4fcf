//! Shared setup for the refresh tests that drive `statemachines/refresh.asl.json`
//! through the local stack and then look at the emulated accounts: seed 000's
//! world, the state machine with the deployed defaults, and readers for the end
//! state (clusters, instances, production's snapshots and their shares, the
//! stack's request recorder).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_rds::types::DbCluster;
use serde_json::Value;
use understudy_tests::accounts::{refresh_deployment, RefreshWorld};
use understudy_tests::deployment::{write_config, LEASE_BUCKET};
use understudy_tests::state_machine::Outcome;
use understudy_tests::{Accounts, LocalStack, StackOptions, StateMachines, STAGING_ACCOUNT};

/// How long one refresh execution may take.
pub const TIMEOUT: Duration = Duration::from_secs(240);
/// Production's Aurora cluster (seed 000).
pub const SOURCE: &str = "production-aurora";
/// Staging's cluster that a refresh replaces.
pub const TARGET: &str = "staging-aurora";
/// The tags the live staging cluster carries.
pub const STAGING_TAGS: &[(&str, &str)] = &[("understudy:environment", "staging"), ("team", "web")];
/// The master user and password the live staging cluster was created with.
pub const OLD_STAGING_USER: &str = "staging_admin";
/// See [`OLD_STAGING_USER`].
pub const OLD_STAGING_PASSWORD: &str = "old-staging-password";

/// One local stack with both emulated accounts and the refresh prerequisites
/// (production's share key, staging's network and password secret).
pub struct RefreshStack {
    /// The stack (stopped when dropped).
    pub stack: LocalStack,
    /// Clients for production and staging.
    pub accounts: Accounts,
    /// What the refresh needs besides the databases.
    pub world: RefreshWorld,
}

impl RefreshStack {
    /// A stack whose transitions stay visible for one poll: the wait loops run,
    /// but quickly.
    pub async fn start() -> Self {
        let stack = LocalStack::start_with(StackOptions { slow_polls: 1, ..StackOptions::default() });
        let accounts = Accounts::new(&stack).await;
        let world = accounts.seed_refresh_world(&stack).await;
        Self { stack, accounts, world }
    }

    /// Seed 000's databases: an encrypted (aws/rds) Aurora Serverless v2 cluster in
    /// production, the live staging cluster (with one instance) under the target name.
    pub async fn seed_000(&self) {
        self.accounts.seed_production_cluster(SOURCE).await;
        self.accounts.seed_staging_cluster(TARGET, STAGING_TAGS).await;
    }

    /// The stack parameters and configuration document of a stack deployed for seed 000.
    pub fn seed_000_deployment(&self) -> (Vec<(&'static str, String)>, Value) {
        refresh_deployment("cluster", SOURCE, TARGET, &self.world)
    }

    /// Deploys the stack with `parameters` and writes `document` into its bucket.
    pub async fn deploy(&self, parameters: &[(&'static str, String)], document: &Value) {
        self.stack.deploy(parameters);
        write_config(&self.accounts.staging, document).await;
    }

    /// Deploys the stack for seed 000 and creates the refresh state machine `name`.
    pub async fn seed_000_machine(&self, name: &str) -> String {
        let (parameters, document) = self.seed_000_deployment();
        self.deploy(&parameters, &document).await;
        self.state_machine(name).await
    }

    /// Creates the refresh state machine `name`.
    pub async fn state_machine(&self, name: &str) -> String {
        StateMachines::new(&self.accounts.staging).create(name, "refresh.asl.json", &[]).await
    }

    /// Runs execution `name` of `state_machine` with `input` to its end.
    pub async fn run(&self, state_machine: &str, name: &str, input: &Value) -> Outcome {
        let machines = StateMachines::new(&self.accounts.staging);
        machines.start(state_machine, name, input).await.finish(TIMEOUT).await
    }

    /// The functions' logs, for failure messages.
    pub fn logs(&self) -> String {
        ["snapshot", "share", "restore"]
            .iter()
            .map(|f| format!("--- {f}.log ---\n{}", self.stack.function_log(f)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Staging's cluster `identifier`, if it exists.
    pub async fn cluster(&self, identifier: &str) -> Option<DbCluster> {
        let result =
            self.accounts.staging_rds().describe_db_clusters().db_cluster_identifier(identifier).send().await;
        result.ok().and_then(|out| out.db_clusters().first().cloned())
    }

    /// Staging's cluster `identifier` once it and its instances are `available`
    /// (a rename shows `renaming` for a poll); panics if it never gets there.
    pub async fn usable_cluster(&self, identifier: &str) -> DbCluster {
        for _ in 0..20 {
            let cluster =
                self.cluster(identifier).await.unwrap_or_else(|| panic!("no cluster `{identifier}`"));
            let mut available =
                cluster.status() == Some("available") && !cluster.db_cluster_members().is_empty();
            for member in cluster.db_cluster_members() {
                let id = member.db_instance_identifier().unwrap_or_default();
                let out = self
                    .accounts
                    .staging_rds()
                    .describe_db_instances()
                    .db_instance_identifier(id)
                    .send()
                    .await;
                let status = out.ok().and_then(|o| {
                    o.db_instances().first().and_then(|i| i.db_instance_status().map(str::to_owned))
                });
                available &= status.as_deref() == Some("available");
            }
            if available {
                return cluster;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "cluster `{identifier}` never became available with its instances: {:?}",
            self.cluster(identifier).await
        )
    }

    /// Identifiers of every cluster in staging, sorted.
    pub async fn cluster_ids(&self) -> Vec<String> {
        let out = self.accounts.staging_rds().describe_db_clusters().send().await.unwrap();
        let mut ids: Vec<String> =
            out.db_clusters().iter().filter_map(|c| c.db_cluster_identifier()).map(str::to_owned).collect();
        ids.sort();
        ids
    }

    /// Identifiers of every instance in staging, sorted.
    pub async fn instance_ids(&self) -> Vec<String> {
        let out = self.accounts.staging_rds().describe_db_instances().send().await.unwrap();
        let mut ids: Vec<String> =
            out.db_instances().iter().filter_map(|i| i.db_instance_identifier()).map(str::to_owned).collect();
        ids.sort();
        ids
    }

    /// Identifiers of production's manual cluster snapshots, sorted.
    pub async fn production_snapshot_ids(&self) -> Vec<String> {
        let out = self
            .accounts
            .production_rds()
            .describe_db_cluster_snapshots()
            .snapshot_type("manual")
            .send()
            .await
            .unwrap();
        let mut ids: Vec<String> = out
            .db_cluster_snapshots()
            .iter()
            .filter_map(|s| s.db_cluster_snapshot_identifier())
            .map(str::to_owned)
            .collect();
        ids.sort();
        ids
    }

    /// Production's manual cluster snapshots that staging may restore.
    pub async fn snapshots_shared_with_staging(&self) -> Vec<String> {
        let production = self.accounts.production_rds();
        let mut shared = Vec::new();
        for snapshot in self.production_snapshot_ids().await {
            let out = production
                .describe_db_cluster_snapshot_attributes()
                .db_cluster_snapshot_identifier(&snapshot)
                .send()
                .await
                .unwrap();
            let restore_accounts: Vec<String> = out
                .db_cluster_snapshot_attributes_result()
                .map(|r| r.db_cluster_snapshot_attributes().to_vec())
                .unwrap_or_default()
                .iter()
                .filter(|a| a.attribute_name() == Some("restore"))
                .flat_map(|a| a.attribute_values().to_vec())
                .collect();
            if restore_accounts.iter().any(|a| a == STAGING_ACCOUNT || a == "all") {
                shared.push(snapshot);
            }
        }
        shared
    }
}

/// A cluster's tags as pairs.
pub fn tags_of(cluster: &DbCluster) -> Vec<(String, String)> {
    cluster
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap_or("").to_owned(), t.value().unwrap_or("").to_owned()))
        .collect()
}

/// A cluster's value for tag `key`.
pub fn tag(cluster: &DbCluster, key: &str) -> Option<String> {
    tags_of(cluster).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Whether a recorded request is a lifecycle event the machine published
/// (`events:PutEvents`: an announcement, not a change to a resource).
pub fn is_announcement(record: &Value) -> bool {
    record["service"] == "events" && record["action"] == "PutEvents"
}

/// Whether a recorded request is the run lock's (the stack's LeaseBucket): a
/// run's own bookkeeping, not a change to either account's resources.
pub fn is_run_lock(record: &Value) -> bool {
    record["service"] == "s3" && record["identifier"] == LEASE_BUCKET
}

/// The mutating records of the request recorder, but the lifecycle events and the run lock.
pub fn mutating(requests: &[Value]) -> Vec<Value> {
    requests
        .iter()
        .filter(|r| r["mutating"] == true && !is_announcement(r) && !is_run_lock(r))
        .cloned()
        .collect()
}

/// Mutating calls counted per `account service:action`.
pub fn mutating_counts(requests: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in mutating(requests) {
        let key = format!(
            "{} {}:{}",
            record["account"].as_str().unwrap_or("?"),
            record["service"].as_str().unwrap_or("?"),
            record["action"].as_str().unwrap_or("?")
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// The state of the failure events whose error is `error`, in history order.
pub fn states_failing_with(outcome: &Outcome, error: &str) -> Vec<String> {
    outcome
        .events
        .iter()
        .filter(|e| e.kind.ends_with("Failed") && e.error.as_deref() == Some(error))
        .filter_map(|e| e.state.clone())
        .collect()
}
