//! The `smoke` section of the configuration document: the HTTP(S) checks that
//! tell a woken or refreshed staging answers correctly, in Hurl's vocabulary
//! (a request, then what its answer must satisfy).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::invalid;
use crate::Result;

/// The checks, and how long the machine keeps running rounds of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmokeSettings {
    /// The checks; none means the smoke stage is skipped (and the report says so).
    #[serde(default)]
    pub checks: Vec<SmokeCheck>,
    /// Give up (`SmokeTestFailed`) when checks still fail after this many seconds of rounds (default 300).
    #[serde(default = "default_deadline")]
    pub deadline_seconds: u32,
    /// Seconds between rounds (default 10, at least 1).
    #[serde(default = "default_round")]
    pub round_seconds: u32,
    /// Per-request timeout, in milliseconds (default 5000).
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u32,
    /// PEM certificates of a private CA: HTTPS checks are verified against these
    /// instead of the system's roots.
    #[serde(default)]
    pub ca_bundle: Option<String>,
}

impl Default for SmokeSettings {
    fn default() -> Self {
        Self {
            checks: Vec::new(),
            deadline_seconds: default_deadline(),
            round_seconds: default_round(),
            request_timeout_ms: default_timeout(),
            ca_bundle: None,
        }
    }
}

/// One request and what its answer must satisfy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmokeCheck {
    /// Unique name, used in the report and the failure cause.
    pub name: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// HTTP method (default GET).
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers; a value is a string, or `{"secret_arn", "field"}` read from
    /// Secrets Manager (never reported or logged).
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    /// Request body: a string is sent as it is, any other JSON value as JSON.
    #[serde(default)]
    pub body: Option<Value>,
    /// What the answer must satisfy.
    #[serde(default)]
    pub expect: Expectations,
    /// The same request against production: the listed headers and JSON values must be equal.
    #[serde(default)]
    pub compare_with: Option<CompareWith>,
    /// Accept a certificate no trusted root signed (a self-signed one). Default false.
    #[serde(default)]
    pub insecure: bool,
}

/// A header value, literal or from Secrets Manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HeaderValue {
    /// The value itself.
    Literal(String),
    /// A secret's value: the whole string, or `field` of its JSON.
    Secret {
        /// ARN (or name) of the secret.
        secret_arn: String,
        /// Field of a JSON secret; absent for a plain string secret.
        #[serde(default)]
        field: Option<String>,
    },
}

/// What an answer must satisfy (each is optional but `status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Accepted status codes (default `[200]`).
    #[serde(default = "default_status")]
    pub status: Vec<u16>,
    /// Header values, by header name.
    #[serde(default)]
    pub headers: BTreeMap<String, TextMatch>,
    /// JSON values of the body, by JSON pointer (`/status`, `/items/0`).
    #[serde(default)]
    pub json: BTreeMap<String, Value>,
    /// JSON pointers that must exist in the body, whatever their value (`/token`).
    #[serde(default)]
    pub json_exists: Vec<String>,
    /// The body text.
    #[serde(default)]
    pub body: Option<TextMatch>,
    /// Longest acceptable answer time, in milliseconds.
    #[serde(default)]
    pub max_latency_ms: Option<u32>,
    /// HTTPS: the certificate must stay valid for at least this many more days.
    #[serde(default)]
    pub certificate_days: Option<u32>,
}

impl Default for Expectations {
    fn default() -> Self {
        Self {
            status: default_status(),
            headers: BTreeMap::new(),
            json: BTreeMap::new(),
            json_exists: Vec::new(),
            body: None,
            max_latency_ms: None,
            certificate_days: None,
        }
    }
}

/// Text equal to a value, containing it, or matching a regular expression.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum TextMatch {
    /// Exactly this.
    Equals(String),
    /// Contains this.
    Contains(String),
    /// Matches this regular expression (`regex-lite` syntax).
    Matches(String),
}

impl TextMatch {
    /// Whether `text` satisfies it (a bad pattern was refused by [`SmokeSettings::check`]).
    pub fn accepts(&self, text: &str) -> bool {
        match self {
            TextMatch::Equals(value) => text == value,
            TextMatch::Contains(value) => text.contains(value.as_str()),
            TextMatch::Matches(pattern) => regex_lite::Regex::new(pattern).is_ok_and(|r| r.is_match(text)),
        }
    }
}

/// Production's counterpart of a check: same path, method, headers and body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompareWith {
    /// Production's base URL (`https://app.example.com`); the check's path and query are appended.
    pub base_url: String,
    /// Headers whose values must be equal (e.g. `X-App-Version`).
    #[serde(default)]
    pub headers: Vec<String>,
    /// JSON pointers whose values must be equal.
    #[serde(default)]
    pub json: Vec<String>,
}

impl SmokeSettings {
    /// What types cannot say: unique names, URLs, methods, patterns, pointers, bounds.
    pub fn check(&self) -> Result<()> {
        if self.round_seconds == 0 {
            return Err(invalid("config.smoke.round_seconds", "must be at least 1".into()));
        }
        if self.deadline_seconds < self.round_seconds {
            return Err(invalid(
                "config.smoke.deadline_seconds",
                format!("must be at least round_seconds ({})", self.round_seconds),
            ));
        }
        if self.deadline_seconds / self.round_seconds > crate::poll::MAX_POLLS_PER_LOOP {
            return Err(invalid(
                "config.smoke.deadline_seconds",
                format!("makes more than {} rounds; raise round_seconds", crate::poll::MAX_POLLS_PER_LOOP),
            ));
        }
        if !(100..=60_000).contains(&self.request_timeout_ms) {
            return Err(invalid("config.smoke.request_timeout_ms", "must be 100-60000".into()));
        }
        for (index, check) in self.checks.iter().enumerate() {
            let path = format!("config.smoke.checks[{index}]");
            if check.name.trim().is_empty() || self.checks[..index].iter().any(|c| c.name == check.name) {
                return Err(invalid(
                    &format!("{path}.name"),
                    format!("`{}` must be non-empty and unique", check.name),
                ));
            }
            check.check_at(&path)?;
        }
        Ok(())
    }
}

impl SmokeCheck {
    /// What types cannot say about one request: its URLs, method, statuses,
    /// patterns and pointers; errors name the field under `path`.
    pub fn check_at(&self, path: &str) -> Result<()> {
        let check = self;
        let at = |field: &str| format!("{path}.{field}");
        for (field, url) in [
            ("url", Some(check.url.as_str())),
            ("compare_with.base_url", check.compare_with.as_ref().map(|c| c.base_url.as_str())),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(&at(field), format!("`{url}` is not an http:// or https:// URL")));
                }
            }
        }
        if !check.method.chars().all(|c| c.is_ascii_uppercase()) || check.method.is_empty() {
            return Err(invalid(
                &at("method"),
                format!("`{}` is not an HTTP method (GET, POST, ...)", check.method),
            ));
        }
        if check.expect.status.is_empty() || check.expect.status.iter().any(|s| !(100..=599).contains(s)) {
            return Err(invalid(&at("expect.status"), "must list status codes 100-599".into()));
        }
        let patterns = check.expect.headers.values().chain(check.expect.body.as_ref());
        for pattern in patterns {
            if let TextMatch::Matches(pattern) = pattern {
                regex_lite::Regex::new(pattern).map_err(|err| {
                    invalid(&at("expect"), format!("bad regular expression `{pattern}`: {err}"))
                })?;
            }
        }
        let pointers = check
            .expect
            .json
            .keys()
            .chain(&check.expect.json_exists)
            .chain(check.compare_with.iter().flat_map(|c| &c.json));
        for pointer in pointers {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(invalid(
                    &at("expect"),
                    format!("`{pointer}` is not a JSON pointer (`/field/0`)"),
                ));
            }
        }
        Ok(())
    }
}

impl SmokeSettings {
    /// The smoke loop's plan: a round every `round_seconds` (no growth), until
    /// `deadline_seconds` have passed.
    pub fn plan(&self) -> crate::poll::WaitPlan {
        let round = self.round_seconds.max(1);
        crate::poll::WaitPlan {
            count: 0,
            seconds: round,
            doubled: round * 2,
            cap: round,
            max_polls: (self.deadline_seconds / round).max(1),
            timeout_minutes: self.deadline_seconds.div_ceil(60),
        }
    }
}

fn default_deadline() -> u32 {
    300
}
fn default_round() -> u32 {
    10
}
fn default_timeout() -> u32 {
    5000
}
fn default_method() -> String {
    "GET".into()
}
fn default_status() -> Vec<u16> {
    vec![200]
}
