//! The tag keys understudy reads and writes. They live on users' resources, so
//! they are a public contract: renaming one strands the state it holds.

/// Selects the resources of an environment (value e.g. `staging`); the key and
/// value are configurable (`config.tag`), this is the default key.
pub const ENVIRONMENT: &str = "understudy:environment";
/// `true` on everything understudy created (snapshots, copies, restored databases).
/// In production, only resources with this tag are ever modified or deleted.
pub const MANAGED: &str = "understudy:managed";
/// The run (Step Functions execution name) that created the resource.
pub const RUN: &str = "understudy:run";
/// On a retired database: the run that renamed it aside. `retire` and `repair`
/// leave it alone while that run runs (its undo renames it back).
pub const RETIRED_BY: &str = "understudy:retired-by";
/// The identifier of the database a snapshot was taken from.
pub const SOURCE: &str = "understudy:source";

/// Sleep state, remembered on the sleeping resource itself rather than in a side
/// store that can drift: `asleep` while scaled to zero by understudy.
pub const SLEEP_STATE: &str = "understudy:sleep:state";
/// When the resource was put to sleep (RFC 3339).
pub const SLEEP_SINCE: &str = "understudy:sleep:since";
/// ECS desired count, or Auto Scaling group desired capacity, before sleep.
pub const SLEEP_DESIRED: &str = "understudy:sleep:desired";
/// Application Auto Scaling / Auto Scaling group minimum before sleep.
pub const SLEEP_MIN: &str = "understudy:sleep:min";
/// Application Auto Scaling / Auto Scaling group maximum before sleep.
pub const SLEEP_MAX: &str = "understudy:sleep:max";
/// Aurora Serverless v2 minimum capacity (ACU) before a `min-capacity-zero` sleep.
pub const SLEEP_MIN_ACU: &str = "understudy:sleep:min-acu";

/// The value of [`MANAGED`] on what understudy made.
pub const MANAGED_VALUE: &str = "true";

/// A resource's tags as (key, value) pairs, in the order AWS returned them.
pub type TagList = Vec<(String, String)>;

/// The value of `key` in `tags`, if present.
pub fn tag_value<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Now, as the RFC 3339 UTC timestamp [`SLEEP_SINCE`] holds.
pub fn now_rfc3339() -> String {
    aws_smithy_types::DateTime::from(std::time::SystemTime::now())
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}
