//! Names of the databases a refresh run makes and retires, derived from the
//! target and the run id, so every retried step finds what an earlier attempt made.

use sha2::{Digest, Sha256};

/// Room left for the target's name: `-retired-` + 6 hex digits, and `-N` for a
/// cluster's instances, within RDS's 63 characters.
const TARGET_ROOM: usize = 46;

fn run_hash(run_id: &str) -> String {
    Sha256::digest(run_id.as_bytes()).iter().take(3).map(|b| format!("{b:02x}")).collect()
}

fn stem(target: &str) -> &str {
    let end = target.len().min(TARGET_ROOM);
    target[..end].trim_end_matches('-')
}

/// Whether `hash` looks like a [`run_hash`] (6 hex digits).
fn is_run_hash(hash: &str) -> bool {
    hash.len() == 6 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The prefix every run's temporary database of `target` shares.
fn temporary_prefix(target: &str) -> String {
    format!("{}-new-", stem(target))
}

/// Where the run restores before the swap: `<target>-new-<hash>`.
pub fn temporary_identifier(target: &str, run_id: &str) -> String {
    format!("{}{}", temporary_prefix(target), run_hash(run_id))
}

/// Where the live database goes during the swap: `<target>-retired-<hash>`.
pub fn retired_identifier(target: &str, run_id: &str) -> String {
    format!("{}{}", retired_prefix(target), run_hash(run_id))
}

/// The prefix every run's retired database of `target` shares.
pub fn retired_prefix(target: &str) -> String {
    format!("{}-retired-", stem(target))
}

/// Whether `identifier` is a retired database of `target` (any run).
pub fn is_retired_identifier(identifier: &str, target: &str) -> bool {
    identifier.strip_prefix(&retired_prefix(target)).is_some_and(is_run_hash)
}

/// The `n`th instance (from 1) of a restored cluster.
pub fn member_identifier(cluster: &str, n: u32) -> String {
    format!("{cluster}-{n}")
}

/// Whether `identifier` is named as a restore of `target` (any run's) names its
/// cluster's instances: [`member_identifier`] of a [`temporary_identifier`],
/// `<target>-new-<hash>-<n>`. The instance keeps that name when its cluster is
/// renamed to the target and later aside.
pub fn is_member_identifier(identifier: &str, target: &str) -> bool {
    let Some((hash, n)) =
        identifier.strip_prefix(&temporary_prefix(target)).and_then(|rest| rest.split_once('-'))
    else {
        return false;
    };
    is_run_hash(hash) && !n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())
}

/// The staging copy of a shared snapshot, made before an instance restore.
pub fn staging_copy_identifier(target: &str, run_id: &str) -> String {
    format!("{}-copy-{}", stem(target), run_hash(run_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_distinct_and_within_63_characters() {
        let long_target = format!("s{}", "x".repeat(62));
        for target in ["staging-aurora", long_target.as_str()] {
            for run in ["run-1", &"r".repeat(80)] {
                let names = [
                    temporary_identifier(target, run),
                    retired_identifier(target, run),
                    member_identifier(&temporary_identifier(target, run), 9),
                    staging_copy_identifier(target, run),
                ];
                for name in &names {
                    assert!(name.len() <= 63 && !name.contains("--"), "{name}");
                }
                assert_eq!(temporary_identifier(target, run), names[0]);
                assert_ne!(names[0], names[1]);
            }
        }
        assert_ne!(temporary_identifier("t", "run-1"), temporary_identifier("t", "run-2"));
    }

    #[test]
    fn retired_databases_are_recognised_by_name() {
        let retired = retired_identifier("staging-aurora", "run-1");
        assert!(is_retired_identifier(&retired, "staging-aurora"));
        assert!(!is_retired_identifier("staging-aurora", "staging-aurora"));
        assert!(!is_retired_identifier("staging-aurora-retired-by-hand", "staging-aurora"));
        assert!(!is_retired_identifier(&temporary_identifier("staging-aurora", "run-1"), "staging-aurora"));
    }

    #[test]
    fn a_restored_clusters_instances_are_recognised_by_name() {
        let long_target = format!("s{}", "x".repeat(62));
        for target in ["staging-aurora", long_target.as_str()] {
            for run in ["run-1", &"r".repeat(80)] {
                let temporary = temporary_identifier(target, run);
                for n in [1, 2, 9, 10] {
                    assert!(
                        is_member_identifier(&member_identifier(&temporary, n), target),
                        "{temporary} {n}"
                    );
                }
                assert!(!is_member_identifier(&temporary, target), "the cluster is not one of its instances");
                assert!(!is_member_identifier(&member_identifier(&temporary, 1), "other-aurora"));
            }
        }
        let target = "staging-aurora";
        for not_ours in [
            "staging-aurora-1",
            "staging-aurora-reader",
            "staging-aurora-new-1",
            "staging-aurora-new-abc123-",
            "staging-aurora-new-abc123-0",
            "staging-aurora-new-abc123-x",
            "staging-aurora-new-abc123-1-1",
            "staging-aurora-new-abc12-1",
            "staging-aurora-new-abc1234-1",
            "staging-aurora-new-abcxyz-1",
            "staging-aurora-retired-abc123-1",
            "prefix-staging-aurora-new-abc123-1",
        ] {
            assert!(!is_member_identifier(not_ours, target), "{not_ours}");
        }
    }
}
