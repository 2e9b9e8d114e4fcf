//! `restop`: AWS starts a database that has been stopped for 7 days
//! (RDS-EVENT-0154 for an instance, RDS-EVENT-0153 for a cluster). If
//! understudy put it to sleep (it still carries `understudy:sleep:state=asleep`,
//! which `wake` removes), it is stopped again once it is `available` (a
//! database cannot be stopped while `starting`); otherwise it is left alone.

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use understudy_shared::request::parse_under;
use understudy_shared::Result;

use crate::model::{Kind, Memory, Resource, State};

/// The `detail` of an RDS event delivered by EventBridge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RdsEventDetail {
    /// `RDS-EVENT-0154`, ...
    #[serde(rename = "EventID", default)]
    pub event_id: String,
    /// The database's identifier.
    #[serde(default)]
    pub source_identifier: String,
    /// `DB_INSTANCE` or `CLUSTER`.
    #[serde(default)]
    pub source_type: String,
    /// The database's ARN.
    #[serde(default)]
    pub source_arn: Option<String>,
    /// AWS's message.
    #[serde(default)]
    pub message: Option<String>,
}

/// An RDS event as EventBridge delivers it.
pub type RdsEvent = CloudWatchEvent<RdsEventDetail>;

/// The instance event: started after 7 days stopped.
pub const INSTANCE_RESTARTED: &str = "RDS-EVENT-0154";
/// The cluster event: started after 7 days stopped.
pub const CLUSTER_RESTARTED: &str = "RDS-EVENT-0153";

/// What `restop` answers.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct RestopAnswer {
    /// What was done.
    pub outcome: RestopOutcome,
    /// False while the database is waited for (it cannot be stopped yet).
    pub done: bool,
    /// The database; null when the event names none that exists.
    pub database: Option<RestopDatabase>,
    /// Its status as observed (`stopping` once stopped again); null when ignored.
    pub status: Option<String>,
    /// Why.
    pub reason: String,
}

/// What `restop` did about an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestopOutcome {
    /// Not understudy's to stop, or not a 7-day restart.
    Ignored,
    /// Already stopped or stopping.
    AlreadyStopped,
    /// Not available yet: call again later.
    Waiting,
    /// Stopped again now.
    Stopped,
}

/// The database an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RestopDatabase {
    /// `db-instance` or `db-cluster`.
    pub kind: Kind,
    /// Its identifier.
    pub identifier: String,
}

/// Parses `event`, naming the bad field as `event.<path>`.
pub fn parse_event(event: Value) -> Result<RdsEvent> {
    parse_under("event", event)
}

/// Which database an event is about, if it is a 7-day restart.
pub fn restarted_database(event: &RdsEvent) -> Option<(Kind, &str)> {
    let detail = event.detail.as_ref()?;
    let kind = match detail.event_id.as_str() {
        INSTANCE_RESTARTED => Kind::DbInstance,
        CLUSTER_RESTARTED => Kind::DbCluster,
        _ => return None,
    };
    (!detail.source_identifier.is_empty()).then_some((kind, detail.source_identifier.as_str()))
}

/// What to do about the database, as observed (`None`: it does not exist).
/// `Ok(None)` means stop it now; otherwise the report to return.
pub fn decide(
    database: Option<&Resource>,
    staging: &understudy_shared::config::TagSelector,
) -> Option<RestopAnswer> {
    let Some(database) = database else {
        return Some(ignored(None, "the database no longer exists"));
    };
    let reference = RestopDatabase { kind: database.kind, identifier: database.id.clone() };
    if understudy_shared::guard::ensure_staging(&database.id, &database.tags, staging).is_err() {
        return Some(ignored(
            Some(reference),
            &format!(
                "not a staging database (no {}={} tag): not understudy's to stop",
                staging.key, staging.value
            ),
        ));
    }
    if !Memory::of(&database.tags).asleep {
        return Some(ignored(
            Some(reference),
            "staging is awake (no understudy:sleep:state=asleep tag): left running",
        ));
    }
    let State::Database { status, .. } = &database.state else {
        return Some(ignored(Some(reference), "not a database"));
    };
    match status.as_str() {
        "available" => None,
        "stopped" | "stopping" => Some(RestopAnswer {
            outcome: RestopOutcome::AlreadyStopped,
            done: true,
            database: Some(reference),
            status: Some(status.clone()),
            reason: "already stopped or stopping".into(),
        }),
        other => Some(RestopAnswer {
            outcome: RestopOutcome::Waiting,
            done: false,
            database: Some(reference),
            status: Some(other.to_owned()),
            reason: format!("cannot be stopped while `{other}`: waiting until it is available"),
        }),
    }
}

/// The report of an event that is not acted on.
pub fn ignored(database: Option<RestopDatabase>, reason: &str) -> RestopAnswer {
    RestopAnswer {
        outcome: RestopOutcome::Ignored,
        done: true,
        database,
        status: None,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use understudy_shared::config::TagSelector;

    use super::*;

    /// `decide`'s answer as the state machine sees it.
    fn decide(database: Option<&Resource>, staging: &TagSelector) -> Option<Value> {
        super::decide(database, staging).map(|answer| serde_json::to_value(answer).unwrap())
    }

    fn event(id: &str, source: &str) -> Value {
        json!({
            "version": "0", "id": "68f6e973-1a0c-d37b-f2f2-94a7f62ffd4e",
            "detail-type": "RDS DB Instance Event", "source": "aws.rds", "account": "123456789012",
            "time": "2026-11-22T03:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:rds:us-east-1:123456789012:db:staging-db"],
            "detail": {"EventCategories": ["notification"], "SourceType": "DB_INSTANCE",
                       "SourceArn": "arn:aws:rds:us-east-1:123456789012:db:staging-db",
                       "Date": "2026-11-22T03:00:00.000Z",
                       "Message": "DB instance is being started due to it exceeding the maximum allowed time being stopped.",
                       "SourceIdentifier": source, "EventID": id}
        })
    }

    fn db(status: &str, tags: &[(&str, &str)]) -> Resource {
        Resource {
            kind: Kind::DbInstance,
            id: "staging-db".into(),
            arn: "arn:aws:rds:us-east-1:123456789012:db:staging-db".into(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            state: State::Database {
                status: status.into(),
                unstoppable: None,
                serverless: None,
                engine: "postgres".into(),
                engine_version: "16.4".into(),
            },
        }
    }

    #[test]
    fn only_the_seven_day_restarts_name_a_database() {
        let parsed = parse_event(event("RDS-EVENT-0154", "staging-db")).unwrap();
        assert_eq!(restarted_database(&parsed), Some((Kind::DbInstance, "staging-db")));
        let parsed = parse_event(event("RDS-EVENT-0153", "staging-aurora")).unwrap();
        assert_eq!(restarted_database(&parsed), Some((Kind::DbCluster, "staging-aurora")));
        let parsed = parse_event(event("RDS-EVENT-0088", "staging-db")).unwrap();
        assert_eq!(restarted_database(&parsed), None);
        let err = parse_event(json!({"detail": {}})).unwrap_err().to_string();
        assert!(err.contains("`event`"), "{err}");
    }

    #[test]
    fn a_sleeping_staging_database_is_stopped_once_available() {
        let staging = understudy_shared::deployment::Deployment::example().tag;
        let asleep = [("understudy:environment", "staging"), ("understudy:sleep:state", "asleep")];
        assert_eq!(decide(Some(&db("available", &asleep)), &staging), None);
        let waiting = decide(Some(&db("starting", &asleep)), &staging).unwrap();
        assert_eq!((waiting["outcome"].as_str(), waiting["done"].as_bool()), (Some("waiting"), Some(false)));
        let awake =
            decide(Some(&db("available", &[("understudy:environment", "staging")])), &staging).unwrap();
        assert_eq!(awake["outcome"], "ignored");
        let production =
            decide(Some(&db("available", &[("understudy:sleep:state", "asleep")])), &staging).unwrap();
        assert_eq!(production["outcome"], "ignored");
        assert_eq!(decide(None, &staging).unwrap()["done"], true);
    }
}
