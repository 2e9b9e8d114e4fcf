//! The pure rule that picks which of understudy's snapshots to prune.

use understudy_shared::rds::SnapshotSummary;
use understudy_shared::tags::{self, tag_value};

/// Splits understudy's manual snapshots of `source` into those to keep (the
/// newest `keep`) and those to delete. Untagged, automated, foreign-source and
/// still-in-progress snapshots are never selected for deletion.
pub fn select_for_pruning<'a>(
    snapshots: &'a [SnapshotSummary],
    source: &str,
    keep: usize,
) -> (Vec<&'a SnapshotSummary>, Vec<&'a SnapshotSummary>) {
    let mut ours: Vec<&SnapshotSummary> = snapshots
        .iter()
        .filter(|s| {
            s.snapshot_type == "manual"
                && s.source == source
                && tag_value(&s.tags, tags::MANAGED) == Some(tags::MANAGED_VALUE)
                && tag_value(&s.tags, tags::SOURCE) == Some(source)
        })
        .collect();
    // Newest first; a snapshot without a creation time is still being made, so newest.
    ours.sort_by_key(|s| std::cmp::Reverse(s.created_at.unwrap_or(i64::MAX)));
    let doomed = ours.split_off(keep.min(ours.len()));
    let (doomed, in_progress): (Vec<_>, Vec<_>) = doomed.into_iter().partition(|s| s.status == "available");
    ours.extend(in_progress);
    (ours, doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, created_at: i64, snapshot_type: &str, tags: &[(&str, &str)]) -> SnapshotSummary {
        SnapshotSummary {
            identifier: id.into(),
            arn: None,
            source: "prod".into(),
            status: "available".into(),
            progress: Some(100),
            encrypted: false,
            kms_key_id: None,
            engine: None,
            engine_version: None,
            snapshot_type: snapshot_type.into(),
            created_at: Some(created_at),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    const OURS: &[(&str, &str)] = &[("understudy:managed", "true"), ("understudy:source", "prod")];

    fn ids(list: &[&SnapshotSummary]) -> Vec<String> {
        list.iter().map(|s| s.identifier.clone()).collect()
    }

    #[test]
    fn keeps_the_newest_managed_snapshots_and_deletes_the_older_ones() {
        let all = vec![
            snapshot("u1", 100, "manual", OURS),
            snapshot("u3", 300, "manual", OURS),
            snapshot("u2", 200, "manual", OURS),
            snapshot("u4", 400, "manual", OURS),
        ];
        let (kept, doomed) = select_for_pruning(&all, "prod", 2);
        assert_eq!(ids(&kept), ["u4", "u3"]);
        assert_eq!(ids(&doomed), ["u2", "u1"]);
    }

    #[test]
    fn never_selects_untagged_automated_or_foreign_snapshots() {
        let all = vec![
            snapshot("untagged", 1, "manual", &[]),
            snapshot("automated", 2, "automated", OURS),
            snapshot(
                "false-flag",
                3,
                "manual",
                &[("understudy:managed", "false"), ("understudy:source", "prod")],
            ),
            snapshot(
                "other-source",
                4,
                "manual",
                &[("understudy:managed", "true"), ("understudy:source", "other")],
            ),
            snapshot("ours", 5, "manual", OURS),
        ];
        let (kept, doomed) = select_for_pruning(&all, "prod", 1);
        assert_eq!(ids(&kept), ["ours"]);
        assert!(doomed.is_empty());
    }

    #[test]
    fn a_snapshot_still_in_progress_is_kept() {
        let mut creating = snapshot("creating", 0, "manual", OURS);
        creating.status = "creating".into();
        creating.created_at = None;
        let all = vec![snapshot("old", 1, "manual", OURS), snapshot("older", 0, "manual", OURS), creating];
        let (kept, doomed) = select_for_pruning(&all, "prod", 1);
        assert_eq!(ids(&kept), ["creating"]);
        assert_eq!(ids(&doomed), ["old", "older"]);
    }
}
