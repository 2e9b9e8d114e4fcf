//! What every function's answers have in common. Each action answers a named
//! type; its JSON Schema, as the type serializes, is what the state machines'
//! answer-contract test (tests/integration/answer_contracts.rs) checks every
//! `$.Payload.<field>` read against: on AWS a missing JSONPath is
//! `States.Runtime`, which no `Catch` catches.
//!
//! Answers must also stay far below Step Functions' 256 KiB limit (a larger one
//! is `States.DataLimitExceeded`, which nothing catches either), so a list that
//! grows with the environment is cut to [`MAX_LISTED`] entries with a count of
//! the ones left out.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde::Serialize;
use serde_json::Value;

/// The most entries an answer lists of anything that grows with the environment.
pub const MAX_LISTED: usize = 100;

/// The largest answer a function sends on purpose: half of Step Functions'
/// 256 KiB, leaving room for the state data it lands in.
pub const MAX_ANSWER_BYTES: usize = 128 * 1024;

/// The JSON Schema of `T` as it serializes: a field is `required` when it is
/// always written (an `Option` without `skip_serializing_if` is required and may
/// be null), and a `skip_serializing_if` field is not.
pub fn schema_of<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12().for_serialize().into_generator().into_root_schema_for::<T>()
}

/// An answer as the Lambda returns it.
pub fn to_answer<T: Serialize>(answer: &T) -> crate::Result<Value> {
    Ok(serde_json::to_value(answer).expect("answers serialize"))
}

/// The first [`MAX_LISTED`] of `items`, and how many were left out.
pub fn bounded<T>(mut items: Vec<T>) -> (Vec<T>, usize) {
    let left_out = items.len().saturating_sub(MAX_LISTED);
    items.truncate(MAX_LISTED);
    (items, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, JsonSchema)]
    #[allow(dead_code)]
    struct Example {
        always: String,
        maybe_null: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        maybe_absent: Option<String>,
    }

    #[test]
    fn options_are_nullable_and_skipped_fields_are_not_required() {
        let schema = schema_of::<Example>().to_value();
        let required: Vec<&str> =
            schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(required.contains(&"always") && required.contains(&"maybe_null"), "{schema:#}");
        assert!(!required.contains(&"maybe_absent"), "{schema:#}");
        assert!(schema["properties"]["maybe_null"].to_string().contains("null"), "{schema:#}");
    }

    #[test]
    fn long_lists_are_cut_with_a_count() {
        assert_eq!(bounded((0..250).collect()), ((0..100).collect::<Vec<_>>(), 150));
        assert_eq!(bounded(vec![1, 2]), (vec![1, 2], 0));
    }
}
