//! Snapshot identifiers derived from the run id, so that a retried `create` finds
//! the snapshot its first attempt made.

use sha2::{Digest, Sha256};

/// RDS's limit for cluster snapshot identifiers (DB snapshots allow more; one
/// rule for both keeps names portable).
pub const MAX_IDENTIFIER_LEN: usize = 63;
const PREFIX: &str = "understudy-";
const HASH_LEN: usize = 8;

/// `understudy-<run id>`, lowercased, with every character RDS does not allow
/// turned into a single hyphen. When that changed the run id or the result is
/// longer than 63 characters, the name is shortened and suffixed with 8 hex
/// digits of the run id's SHA-256, so distinct run ids keep distinct names.
pub fn snapshot_identifier(run_id: &str) -> String {
    let mut cleaned = String::with_capacity(run_id.len());
    for c in run_id.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            cleaned.push(c);
        } else if !cleaned.ends_with('-') {
            cleaned.push('-');
        }
    }
    let cleaned = cleaned.trim_matches('-');
    let plain = format!("{PREFIX}{cleaned}");
    if cleaned == run_id && plain.len() <= MAX_IDENTIFIER_LEN {
        return plain;
    }
    let digest = Sha256::digest(run_id.as_bytes());
    let hash: String = digest.iter().take(HASH_LEN / 2).map(|b| format!("{b:02x}")).collect();
    let room = MAX_IDENTIFIER_LEN - HASH_LEN - 1;
    let mut head = plain;
    head.truncate(room);
    format!("{}-{hash}", head.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_valid_rds_identifier(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= MAX_IDENTIFIER_LEN
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !id.contains("--")
            && !id.ends_with('-')
    }

    #[test]
    fn a_clean_short_run_id_is_kept_readable() {
        assert_eq!(snapshot_identifier("nightly-42"), "understudy-nightly-42");
        let uuid = "3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f";
        assert_eq!(snapshot_identifier(uuid), format!("understudy-{uuid}"));
    }

    #[test]
    fn the_same_run_id_always_gives_the_same_identifier() {
        let run = "Refresh_After Deploy.2026-11-22T01:00:00Z";
        assert_eq!(snapshot_identifier(run), snapshot_identifier(run));
    }

    #[test]
    fn every_identifier_is_a_valid_rds_identifier_of_at_most_63_characters() {
        let long = "x".repeat(80);
        let runs = [
            "a",
            "A",
            "-",
            "___",
            "Refresh_After Deploy.2026-11-22T01:00:00Z",
            long.as_str(),
            "0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789",
            "ünïcödé-run",
            "ends-with-hyphen-",
        ];
        for run in runs {
            let id = snapshot_identifier(run);
            assert!(is_valid_rds_identifier(&id), "{run:?} -> {id:?}");
        }
        assert_eq!(snapshot_identifier(&long).len(), MAX_IDENTIFIER_LEN);
    }

    #[test]
    fn run_ids_that_clean_to_the_same_text_still_differ() {
        let variants = ["deploy_1", "deploy-1", "Deploy-1", "deploy.1", "deploy 1"];
        let ids: std::collections::HashSet<_> = variants.iter().map(|r| snapshot_identifier(r)).collect();
        assert_eq!(ids.len(), variants.len(), "{ids:?}");
    }

    #[test]
    fn long_run_ids_sharing_a_prefix_still_differ() {
        let a = format!("{}-a", "p".repeat(70));
        let b = format!("{}-b", "p".repeat(70));
        assert_ne!(snapshot_identifier(&a), snapshot_identifier(&b));
    }
}
