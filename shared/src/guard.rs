//! The safety rules, checked before any mutating call (reads that check tags come
//! first):
//!
//! - in staging, every mutating call goes only to resources carrying the staging
//!   tag (`config.tag`, default `understudy:environment=staging`), and never to
//!   the source of the data;
//! - in production, understudy creates, shares and deletes only snapshots it
//!   tagged `understudy:managed=true`, and modifies nothing else.
//!
//! A violation is [`Error::GuardRailViolation`], naming the resource and the rule.

use crate::config::TagSelector;
use crate::tags::{self, tag_value};
use crate::{Error, Result};

/// Refuses unless `tags` mark `resource` as made by understudy
/// (`understudy:managed=true`).
pub fn ensure_managed(resource: &str, tags: &[(String, String)]) -> Result<()> {
    match tag_value(tags, tags::MANAGED) {
        Some(tags::MANAGED_VALUE) => Ok(()),
        _ => Err(Error::GuardRailViolation(format!(
            "refusing to modify `{resource}`: it does not carry {}={}, so understudy did not make it",
            tags::MANAGED,
            tags::MANAGED_VALUE
        ))),
    }
}

/// Refuses unless `tags` carry the staging tag of `selector`.
pub fn ensure_staging(resource: &str, tags: &[(String, String)], selector: &TagSelector) -> Result<()> {
    if tag_value(tags, &selector.key) == Some(selector.value.as_str()) {
        Ok(())
    } else {
        Err(Error::GuardRailViolation(format!(
            "refusing to modify `{resource}`: it does not carry the staging tag {}={}",
            selector.key, selector.value
        )))
    }
}

/// Refuses when the resource to modify is the source of the data.
pub fn ensure_not_source(resource: &str, source: &str) -> Result<()> {
    if resource == source {
        Err(Error::GuardRailViolation(format!(
            "refusing to modify `{resource}`: it is the source understudy copies from"
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn managed_tag_must_be_exactly_true() {
        assert!(ensure_managed("s", &tags(&[("understudy:managed", "true")])).is_ok());
        for bad in [tags(&[]), tags(&[("understudy:managed", "yes")]), tags(&[("managed", "true")])] {
            let err = ensure_managed("snap-1", &bad).unwrap_err();
            assert_eq!(err.error_type(), "GuardRailViolation");
            assert!(err.to_string().contains("snap-1"));
        }
    }

    #[test]
    fn staging_tag_follows_the_selector() {
        let selector = TagSelector { key: "env".into(), value: "stage".into() };
        assert!(ensure_staging("db", &tags(&[("env", "stage")]), &selector).is_ok());
        assert!(ensure_staging("db", &tags(&[("env", "prod")]), &selector).is_err());
        assert!(ensure_staging("db", &tags(&[("understudy:environment", "staging")]), &selector).is_err());
    }

    #[test]
    fn the_source_is_never_a_target() {
        assert!(ensure_not_source("prod-db", "prod-db").is_err());
        assert!(ensure_not_source("staging-db", "prod-db").is_ok());
    }
}
