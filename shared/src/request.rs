//! The request contract shared by every function: one JSON object whose
//! `"action"` field names what to do, plus that action's fields. Unknown fields
//! are refused with [`Error::InvalidInput`] naming the field's path, so a typo in
//! a console execution fails loudly instead of being ignored.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// A request split into its action name and the remaining fields.
#[derive(Debug, Clone)]
pub struct ActionRequest {
    action: String,
    fields: Map<String, Value>,
}

impl ActionRequest {
    /// Splits `payload` into its `action` and the other fields.
    pub fn new(payload: Value) -> Result<Self> {
        let Value::Object(mut fields) = payload else {
            return Err(Error::InvalidInput(format!(
                "the request must be a JSON object with an \"action\" field, got {}",
                json_kind(&payload)
            )));
        };
        let action = match fields.remove("action") {
            Some(Value::String(action)) => action,
            Some(other) => {
                return Err(Error::InvalidInput(format!(
                    "invalid input at `action`: expected a string, got {}",
                    json_kind(&other)
                )))
            }
            None => return Err(Error::InvalidInput("invalid input: missing field `action`".into())),
        };
        Ok(Self { action, fields })
    }

    /// The action's name.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// Deserializes the remaining fields into the action's input type (which
    /// should be `#[serde(deny_unknown_fields)]`). Errors name the field path.
    pub fn fields<T: DeserializeOwned>(self) -> Result<T> {
        parse_at_path(Value::Object(self.fields))
    }

    /// The error for an action this function does not know.
    pub fn unknown_action(&self, known: &[&str]) -> Error {
        Error::InvalidInput(format!(
            "invalid input at `action`: unknown action `{}`, expected one of: {}",
            self.action,
            known.join(", ")
        ))
    }
}

/// Deserializes `value` into `T`, naming the path of the offending field in the
/// error (e.g. ``invalid input at `config.database.kind`: unknown variant ...``).
pub fn parse_at_path<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            Error::InvalidInput(format!("invalid input: {inner}"))
        } else {
            Error::InvalidInput(format!("invalid input at `{path}`: {inner}"))
        }
    })
}

/// [`parse_at_path`] for a value found at `root` in the request (e.g. `config`):
/// errors name the field as `<root>.<path>`.
pub fn parse_under<T: DeserializeOwned>(root: &str, value: Value) -> Result<T> {
    parse_at_path(value).map_err(|err| match err {
        Error::InvalidInput(message) => Error::InvalidInput(
            message.replacen("invalid input at `", &format!("invalid input at `{root}."), 1).replacen(
                "invalid input: ",
                &format!("invalid input at `{root}`: "),
                1,
            ),
        ),
        other => other,
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        name: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        inner: Inner,
    }

    fn message(result: Result<impl std::fmt::Debug>) -> String {
        match result.unwrap_err() {
            Error::InvalidInput(message) => message,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn unknown_nested_field_is_named_by_its_path() {
        let request =
            ActionRequest::new(json!({"action": "go", "inner": {"name": "a", "nmae": "b"}})).unwrap();
        let message = message(request.fields::<Outer>());
        assert!(message.contains("`inner.nmae`"), "{message}");
        assert!(message.contains("unknown field"), "{message}");
    }

    #[test]
    fn missing_field_is_named_with_its_parent_path() {
        let request = ActionRequest::new(json!({"action": "go", "inner": {}})).unwrap();
        let message = message(request.fields::<Outer>());
        assert!(message.contains("`inner`") && message.contains("missing field `name`"), "{message}");
    }

    #[test]
    fn request_without_action_is_refused() {
        assert!(message(ActionRequest::new(json!({"inner": {}}))).contains("missing field `action`"));
        assert!(message(ActionRequest::new(json!({"action": 3}))).contains("`action`"));
        assert!(message(ActionRequest::new(json!([1]))).contains("JSON object"));
    }

    #[test]
    fn unknown_action_lists_the_known_ones() {
        let request = ActionRequest::new(json!({"action": "explode"})).unwrap();
        let message = request.unknown_action(&["create", "status"]).to_string();
        assert!(message.contains("`explode`") && message.contains("create, status"), "{message}");
    }
}
