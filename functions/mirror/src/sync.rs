//! The two phases of a mirror over one key range, each a streaming merge of the
//! two sorted listings, and the planner that cuts a bucket into ranges.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;
use understudy_shared::config::{EnvironmentConfig, TagSelector};
use understudy_shared::{Error, Result};

use crate::filter::KeyFilter;
use crate::plan::Boundaries;
use crate::s3::{bare_etag, Buckets, Listed, Listing, Location};
use crate::{CompareMode, MirrorRequest, MirrorResponse, Plan, PlanRequest, STEP_ACTION};

/// Most keys one `DeleteObjects` call takes.
const DELETE_BATCH: usize = 1000;
/// Most extras a whole-prefix copy step holds to delete without listing again
/// (about 1 MB for typical keys); beyond, the delete phase lists again.
const MAX_HELD_EXTRAS: usize = 10_000;
/// The longest safety margin kept before the Lambda deadline.
const MAX_MARGIN: Duration = Duration::from_secs(60);

/// Which phase a step works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Copy what is missing or different.
    #[default]
    Copy,
    /// Delete the target's extras (only after the whole copy phase succeeded).
    Delete,
}

/// Totals of a mirror range so far (in dry runs: what would have been done).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Counts {
    /// Objects copied.
    pub copied: u64,
    /// Their bytes.
    pub copied_bytes: u64,
    /// Objects found identical.
    pub unchanged: u64,
    /// Extras deleted from the target.
    pub deleted: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Source objects left out by `include`/`exclude`.
    pub skipped: u64,
}

/// Where a mirror goes on. Opaque to callers: pass back the `resume` of the
/// previous answer (or a range from `plan`) unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeToken {
    /// The phase to work on.
    #[serde(default)]
    pub phase: Phase,
    /// The range's lower bound (exclusive), where the delete phase starts.
    #[serde(default)]
    pub start: Option<String>,
    /// The last key finished (exclusive lower bound of what is left).
    #[serde(default)]
    pub after: Option<String>,
    /// The range's upper bound (inclusive); none for the end of the prefix.
    #[serde(default)]
    pub until: Option<String>,
    /// Totals so far.
    #[serde(default)]
    pub counts: Counts,
    /// Extras (target-only keys the filter covers) the copy phase has seen so
    /// far; with none, there is no delete phase.
    #[serde(default)]
    pub extras: u64,
}

/// What the merge decides for an object present on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Same size and ETag.
    Unchanged,
    /// Different size (or, in `etag` mode, different ETag).
    Copy,
    /// Same size, different ETag: read the target's recorded source ETag.
    Check,
}

/// The comparison rule (see docs/mirror.md, "The comparison rule").
pub fn judge(source: &Listed, target: &Listed, mode: CompareMode) -> Verdict {
    if source.size != target.size {
        Verdict::Copy
    } else if bare_etag(&source.etag) == bare_etag(&target.etag) {
        Verdict::Unchanged
    } else if target.modified_ms < source.modified_ms {
        // Written before the source's current version: cannot be a copy of it,
        // whatever it records.
        Verdict::Copy
    } else {
        match mode {
            CompareMode::Exact => Verdict::Check,
            CompareMode::Etag => Verdict::Copy,
        }
    }
}

enum Pair {
    SourceOnly(Listed),
    TargetOnly(Listed),
    Both(Listed, Listed),
}

impl Pair {
    fn key(&self) -> &str {
        match self {
            Pair::SourceOnly(s) | Pair::Both(s, _) => &s.key,
            Pair::TargetOnly(t) => &t.key,
        }
    }
}

async fn next_pair(source: &mut Listing, target: &mut Listing) -> Result<Option<Pair>> {
    let order = match (source.peek().await?, target.peek().await?) {
        (None, None) => return Ok(None),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(s), Some(t)) => s.key.as_str().cmp(t.key.as_str()),
    };
    let pop = |listing: &mut Listing| listing.pop().expect("peeked");
    Ok(Some(match order {
        Ordering::Less => Pair::SourceOnly(pop(source)),
        Ordering::Greater => Pair::TargetOnly(pop(target)),
        Ordering::Equal => Pair::Both(pop(source), pop(target)),
    }))
}

/// What one task did.
enum Done {
    Copied(u64),
    Unchanged,
    Deleted(u64, u64),
}

fn record(counts: &mut Counts, done: Result<Result<Done>, tokio::task::JoinError>) -> Result<()> {
    match done.map_err(|e| Error::AwsTransient(format!("a copy task failed: {e}")))?? {
        Done::Copied(bytes) => {
            counts.copied += 1;
            counts.copied_bytes += bytes;
        }
        Done::Unchanged => counts.unchanged += 1,
        Done::Deleted(objects, bytes) => {
            counts.deleted += objects;
            counts.deleted_bytes += bytes;
        }
    }
    Ok(())
}

/// When to stop taking new work: a fifth of the time left, at most a minute,
/// before the deadline, so the copies in flight can finish.
fn stop_taking_work_at(deadline: Instant) -> Instant {
    let remaining = deadline.saturating_duration_since(Instant::now());
    deadline - (remaining / 5).min(MAX_MARGIN)
}

/// One `mirror` invocation.
pub async fn run(
    s3: aws_sdk_s3::Client,
    request: MirrorRequest,
    tag: &TagSelector,
    deadline: Instant,
) -> Result<MirrorResponse> {
    let stop_at = stop_taking_work_at(deadline);
    let filter = KeyFilter::new(&request.include, &request.exclude)?;
    let token = request.resume.clone().unwrap_or_default();
    let buckets = Arc::new(Buckets::new(s3, request.source.clone(), request.target.clone()));
    buckets.check_guard_rails(tag).await?;

    let mut counts = token.counts.clone();
    let mut extras = token.extras;
    let mut deleted_already = false;
    let stopped_after = match token.phase {
        Phase::Copy => {
            // When one invocation copies the whole prefix from the start, the whole
            // copy phase is this invocation: once its copies all succeeded it may
            // delete the extras it saw, without listing both sides again.
            let whole_phase_here = request.delete
                && !request.hold_deletes
                && token.start.is_none()
                && token.after.is_none()
                && token.until.is_none();
            let copied =
                copy_phase(&buckets, &request, &filter, &token, &mut counts, stop_at, whole_phase_here)
                    .await?;
            extras += copied.extras;
            if let (None, Some(held)) = (&copied.stopped_after, copied.held_extras) {
                delete_keys(&buckets, &request, held, &mut counts).await?;
                deleted_already = true;
            }
            copied.stopped_after
        }
        Phase::Delete if !request.delete => None,
        Phase::Delete => delete_phase(&buckets, &request, &filter, &token, &mut counts, stop_at).await?,
    };
    let resume = match (&stopped_after, token.phase) {
        (Some(last), phase) => Some(ResumeToken {
            phase,
            after: Some(last.clone()),
            counts: counts.clone(),
            extras,
            ..token.clone()
        }),
        (None, Phase::Copy) if request.delete && !deleted_already && extras > 0 => Some(ResumeToken {
            phase: Phase::Delete,
            after: token.start.clone(),
            counts: counts.clone(),
            extras,
            ..token.clone()
        }),
        (None, _) => None,
    };
    tracing::info!(
        phase = ?token.phase,
        phase_done = stopped_after.is_none(),
        dry_run = request.dry_run,
        ?counts,
        "mirror step of s3://{}/{} -> s3://{}/{}",
        request.source.bucket,
        request.source.prefix,
        request.target.bucket,
        request.target.prefix
    );
    let next = resume.as_ref().map(|resume| {
        let mut next =
            serde_json::to_value(MirrorRequest { resume: Some(resume.clone()), ..request.clone() })
                .expect("requests serialize");
        next["action"] = json!(STEP_ACTION);
        next
    });
    Ok(MirrorResponse {
        done: resume.is_none(),
        phase: token.phase,
        phase_done: stopped_after.is_none(),
        dry_run: request.dry_run,
        counts,
        resume,
        next,
    })
}

/// What a copy step saw besides its counts.
struct CopyStep {
    /// The last key handled when it stopped for the deadline; `None` when the
    /// range is finished.
    stopped_after: Option<String>,
    /// Extras seen (target-only keys the filter covers).
    extras: u64,
    /// Those extras (key, size), when asked to hold them and they were few enough.
    held_extras: Option<Vec<(String, u64)>>,
}

/// Copies what is missing or different, in key order, `concurrency` at a time.
async fn copy_phase(
    buckets: &Arc<Buckets>,
    request: &MirrorRequest,
    filter: &KeyFilter,
    token: &ResumeToken,
    counts: &mut Counts,
    stop_at: Instant,
    hold_extras: bool,
) -> Result<CopyStep> {
    let mut source = buckets.listing(false, token.after.as_deref(), token.until.as_deref());
    let mut target = buckets.listing(true, token.after.as_deref(), token.until.as_deref());
    let mut tasks: JoinSet<Result<Done>> = JoinSet::new();
    let mut last: Option<String> = None;
    let mut extras = 0;
    let mut held: Option<Vec<(String, u64)>> = hold_extras.then(Vec::new);
    let stopped = loop {
        while let Some(done) = tasks.try_join_next() {
            record(counts, done)?;
        }
        // At least one key per invocation, so a resumed mirror always progresses.
        if last.is_some() && Instant::now() >= stop_at {
            break last;
        }
        if tasks.len() >= request.concurrency {
            record(counts, tasks.join_next().await.expect("tasks are running"))?;
            continue;
        }
        let Some(pair) = next_pair(&mut source, &mut target).await? else { break None };
        let key = pair.key().to_owned();
        let (object, check) = match pair {
            // Extras wait until every copy succeeded.
            Pair::TargetOnly(extra) => {
                if filter.covers(&extra.key) {
                    extras += 1;
                    match &mut held {
                        Some(keys) if keys.len() < MAX_HELD_EXTRAS => keys.push((extra.key, extra.size)),
                        _ => held = None,
                    }
                }
                (None, false)
            }
            Pair::SourceOnly(_) | Pair::Both(..) if !filter.covers(&key) => {
                counts.skipped += 1;
                (None, false)
            }
            Pair::SourceOnly(object) => (Some(object), false),
            Pair::Both(object, existing) => match judge(&object, &existing, request.compare) {
                Verdict::Unchanged => {
                    counts.unchanged += 1;
                    (None, false)
                }
                Verdict::Copy => (Some(object), false),
                Verdict::Check => (Some(object), true),
            },
        };
        if let Some(object) = object {
            if request.dry_run && !check {
                counts.copied += 1;
                counts.copied_bytes += object.size;
            } else {
                let buckets = Arc::clone(buckets);
                let (dry_run, threshold, part_size) =
                    (request.dry_run, request.multipart_threshold_bytes, request.part_size_bytes);
                tasks.spawn(async move {
                    if check {
                        let recorded = buckets.recorded_source_etag(&object.key).await?;
                        if recorded.as_deref() == Some(bare_etag(&object.etag)) {
                            return Ok(Done::Unchanged);
                        }
                    }
                    if !dry_run {
                        buckets.copy(&object, threshold, part_size).await?;
                    }
                    Ok(Done::Copied(object.size))
                });
            }
        }
        last = Some(key);
    };
    while let Some(done) = tasks.join_next().await {
        record(counts, done)?;
    }
    Ok(CopyStep { held_extras: held.filter(|_| stopped.is_none()), stopped_after: stopped, extras })
}

/// Deletes `keys` (relative, with sizes) in batches, `concurrency` batches at a time.
async fn delete_keys(
    buckets: &Arc<Buckets>,
    request: &MirrorRequest,
    keys: Vec<(String, u64)>,
    counts: &mut Counts,
) -> Result<()> {
    let mut tasks: JoinSet<Result<Done>> = JoinSet::new();
    for batch in keys.chunks(DELETE_BATCH) {
        let bytes: u64 = batch.iter().map(|(_, size)| size).sum();
        if request.dry_run {
            counts.deleted += batch.len() as u64;
            counts.deleted_bytes += bytes;
            continue;
        }
        if tasks.len() >= request.concurrency {
            record(counts, tasks.join_next().await.expect("tasks are running"))?;
        }
        let keys: Vec<String> = batch.iter().map(|(key, _)| key.clone()).collect();
        let buckets = Arc::clone(buckets);
        tasks.spawn(async move {
            buckets.delete_batch(&keys).await?;
            Ok(Done::Deleted(keys.len() as u64, bytes))
        });
    }
    while let Some(done) = tasks.join_next().await {
        record(counts, done)?;
    }
    Ok(())
}

/// Deletes the target's extras (covered by the filter, absent from the source)
/// in batches of at most 1000. Same return as [`copy_phase`].
async fn delete_phase(
    buckets: &Arc<Buckets>,
    request: &MirrorRequest,
    filter: &KeyFilter,
    token: &ResumeToken,
    counts: &mut Counts,
    stop_at: Instant,
) -> Result<Option<String>> {
    let mut source = buckets.listing(false, token.after.as_deref(), token.until.as_deref());
    let mut target = buckets.listing(true, token.after.as_deref(), token.until.as_deref());
    let mut tasks: JoinSet<Result<Done>> = JoinSet::new();
    let mut batch: Vec<String> = Vec::new();
    let mut batch_bytes = 0;
    let mut last: Option<String> = None;
    let flush =
        |tasks: &mut JoinSet<Result<Done>>, counts: &mut Counts, batch: &mut Vec<String>, bytes: &mut u64| {
            if batch.is_empty() {
                return;
            }
            let keys = std::mem::take(batch);
            let (objects, batch_bytes) = (keys.len() as u64, std::mem::take(bytes));
            if request.dry_run {
                counts.deleted += objects;
                counts.deleted_bytes += batch_bytes;
            } else {
                let buckets = Arc::clone(buckets);
                tasks.spawn(async move {
                    buckets.delete_batch(&keys).await?;
                    Ok(Done::Deleted(objects, batch_bytes))
                });
            }
        };
    let stopped = loop {
        while let Some(done) = tasks.try_join_next() {
            record(counts, done)?;
        }
        if last.is_some() && Instant::now() >= stop_at {
            break last;
        }
        if tasks.len() >= request.concurrency {
            record(counts, tasks.join_next().await.expect("tasks are running"))?;
            continue;
        }
        let Some(pair) = next_pair(&mut source, &mut target).await? else { break None };
        if let Pair::TargetOnly(extra) = &pair {
            if filter.covers(&extra.key) {
                batch.push(extra.key.clone());
                batch_bytes += extra.size;
                if batch.len() == DELETE_BATCH {
                    flush(&mut tasks, counts, &mut batch, &mut batch_bytes);
                }
            }
        }
        last = Some(pair.key().to_owned());
    };
    flush(&mut tasks, counts, &mut batch, &mut batch_bytes);
    while let Some(done) = tasks.join_next().await {
        record(counts, done)?;
    }
    Ok(stopped)
}

/// `plan`: the first `mirror` request of each key range of each bucket.
pub async fn plan(
    s3: aws_sdk_s3::Client,
    request: PlanRequest,
    config: &EnvironmentConfig,
    deadline: Instant,
) -> Result<Plan> {
    let stop_at = stop_taking_work_at(deadline);
    let mut requests = Vec::new();
    for bucket in &config.buckets {
        let source = Location { bucket: bucket.source.clone(), prefix: bucket.prefix.clone() };
        let target = Location { bucket: bucket.target.clone(), prefix: bucket.prefix.clone() };
        let mut mirror = MirrorRequest {
            source: source.clone(),
            target: target.clone(),
            include: bucket.include.clone(),
            exclude: bucket.exclude.clone(),
            delete: true,
            hold_deletes: request.hold_deletes,
            dry_run: config.dry_run,
            compare: CompareMode::default(),
            concurrency: request.concurrency.unwrap_or(crate::DEFAULT_CONCURRENCY),
            multipart_threshold_bytes: crate::DEFAULT_MULTIPART_THRESHOLD,
            part_size_bytes: crate::DEFAULT_PART_SIZE,
            resume: None,
        };
        mirror.check().map_err(|err| match err {
            Error::InvalidInput(message) => Error::InvalidInput(message.replacen(
                "invalid input at `",
                &format!("invalid input at `config.mirror.{}.", bucket.target),
                1,
            )),
            other => other,
        })?;
        let bounds = if request.shards > 1 {
            let mut planner = Boundaries::new(request.shards);
            let mut listing = Buckets::new(s3.clone(), source, target).listing(false, None, None);
            // A plan cut short by the deadline is still valid: its last range is larger.
            while Instant::now() < stop_at {
                let Some(object) = listing.peek().await? else { break };
                planner.observe(&object.key);
                listing.pop();
            }
            planner.finish()
        } else {
            Vec::new()
        };
        let mut start: Option<String> = None;
        for until in bounds.into_iter().map(Some).chain(std::iter::once(None)) {
            mirror.resume = Some(ResumeToken {
                phase: Phase::Copy,
                start: start.clone(),
                after: start.clone(),
                until: until.clone(),
                counts: Counts::default(),
                extras: 0,
            });
            let mut value = serde_json::to_value(&mirror).expect("requests serialize");
            value["action"] = json!(STEP_ACTION);
            requests.push(value);
            start = until;
        }
    }
    let plan = Plan { count: requests.len(), requests };
    plan.check_size()?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(size: u64, etag: &str) -> Listed {
        Listed { key: "k".into(), size, etag: etag.into(), storage_class: None, modified_ms: 10 }
    }

    #[test]
    fn same_size_with_another_etag_is_checked_not_trusted() {
        let source = listed(3, "\"aaa\"");
        assert_eq!(judge(&source, &listed(3, "\"aaa\""), CompareMode::Exact), Verdict::Unchanged);
        assert_eq!(judge(&source, &listed(3, "aaa"), CompareMode::Exact), Verdict::Unchanged);
        assert_eq!(judge(&source, &listed(4, "\"aaa\""), CompareMode::Exact), Verdict::Copy);
        assert_eq!(judge(&source, &listed(3, "\"bbb\""), CompareMode::Exact), Verdict::Check);
        assert_eq!(judge(&source, &listed(3, "\"bbb\""), CompareMode::Etag), Verdict::Copy);
        let older = Listed { modified_ms: 9, ..listed(3, "\"bbb\"") };
        assert_eq!(
            judge(&source, &older, CompareMode::Exact),
            Verdict::Copy,
            "older than the source: no check"
        );
    }

    #[test]
    fn the_margin_is_a_fifth_of_the_time_left_at_most_a_minute() {
        let now = Instant::now();
        let stop = stop_taking_work_at(now + Duration::from_secs(10));
        assert!(stop <= now + Duration::from_secs(8) + Duration::from_millis(50));
        let stop = stop_taking_work_at(now + Duration::from_secs(900));
        assert!(stop >= now + Duration::from_secs(839));
    }

    #[test]
    fn tokens_round_trip_and_refuse_unknown_fields() {
        let token = ResumeToken { phase: Phase::Delete, after: Some("a b".into()), ..ResumeToken::default() };
        let value = serde_json::to_value(&token).unwrap();
        assert_eq!(serde_json::from_value::<ResumeToken>(value).unwrap(), token);
        assert!(serde_json::from_value::<ResumeToken>(json!({"phase": "copy", "aftr": "x"})).is_err());
    }
}
