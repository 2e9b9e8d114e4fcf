//! Invoking a function through the local Lambda Invoke API host, over HTTP, as
//! the AWS Lambda `Invoke` API is called.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

use crate::LocalStack;

/// What the Invoke API answered.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// HTTP status (200 for both success and function errors, as on AWS).
    pub status: u16,
    /// `X-Amz-Function-Error`, set when the function failed.
    pub function_error: Option<String>,
    /// The payload: the function's result, or `{"errorType", "errorMessage"}`.
    pub payload: Value,
}

impl Invocation {
    /// The `errorType` of a failed invocation.
    pub fn error_type(&self) -> Option<&str> {
        self.function_error.as_ref().and(self.payload.get("errorType")).and_then(Value::as_str)
    }

    /// The `errorMessage` of a failed invocation.
    pub fn error_message(&self) -> &str {
        self.payload.get("errorMessage").and_then(Value::as_str).unwrap_or("")
    }

    /// The payload of a successful invocation; panics with the error otherwise.
    pub fn ok(self) -> Value {
        assert!(
            self.status == 200 && self.function_error.is_none(),
            "invocation failed: {} {:?} {}",
            self.status,
            self.function_error,
            self.payload
        );
        self.payload
    }
}

impl LocalStack {
    /// `POST /2015-03-31/functions/{function}/invocations` with `payload`.
    pub fn invoke(&self, function: &str, payload: &Value) -> Invocation {
        self.post(&format!("/2015-03-31/functions/{function}/invocations"), payload)
    }

    /// Sets for how many polls transitions started from now on are held.
    pub fn set_slow_polls(&self, polls: u32) {
        let answer = self.post("/understudy/slow-polls", &serde_json::json!({ "polls": polls }));
        assert_eq!(answer.status, 200, "{answer:?}");
    }

    /// Whether `username`/`password` opens staging's database `identifier`
    /// (the emulator compares with what it stores; a test-only endpoint).
    pub fn password_works(&self, kind: &str, identifier: &str, username: &str, password: &str) -> bool {
        let answer = self.post(
            "/understudy/rds/check-password",
            &serde_json::json!({"kind": kind, "identifier": identifier, "username": username, "password": password}),
        );
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.payload["ok"] == true
    }

    /// Makes the emulator show `status` (`incompatible-parameters`, `failed`, ...) for
    /// every database of `account` whose identifier starts with `identifier_prefix`,
    /// existing now or created later: in DescribeDBInstances for `kind` "instance"
    /// (clusters' member instances included), in DescribeDBClusters for "cluster".
    /// Only describe answers change; a test-only endpoint (see `tests/local/stack.py`).
    pub fn override_database_status(&self, account: &str, kind: &str, identifier_prefix: &str, status: &str) {
        let body = serde_json::json!({
            "account": account,
            "kind": kind,
            "identifier_prefix": identifier_prefix,
            "status": status
        });
        let answer = self.post("/understudy/rds/status-override", &body);
        assert_eq!(answer.status, 200, "{answer:?}");
    }

    /// Clears every database status override: describe calls show the real status again.
    pub fn clear_database_status_overrides(&self) {
        let answer = self.request("DELETE", "/understudy/rds/status-override", None);
        assert_eq!(answer.status, 200, "{answer:?}");
    }

    /// Creates staging's VPC, subnets, security group and DB subnet group
    /// (answers their ids), through a test-fixture endpoint of the stack.
    pub fn seed_staging_network(&self, subnet_group: &str) -> Value {
        let answer =
            self.post("/understudy/seed/network", &serde_json::json!({ "subnet_group": subnet_group }));
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.payload
    }

    /// Makes the emulator fail a chosen AWS call (see `tests/local/stack.py`).
    pub fn inject_fault(&self, fault: &Value) {
        let answer = self.post("/understudy/faults", fault);
        assert_eq!(answer.status, 200, "{answer:?}");
    }

    /// Clears every pending injected fault.
    pub fn clear_faults(&self) {
        self.request("DELETE", "/understudy/faults", None);
    }

    /// Every AWS request the emulator received since the last call, then forgets them.
    pub fn take_requests(&self) -> Vec<Value> {
        let answer = self.request("GET", "/understudy/requests", None);
        self.request("DELETE", "/understudy/requests", None);
        answer.payload["requests"].as_array().cloned().unwrap_or_default()
    }

    /// A request to one of the invoke host's `/understudy/*` endpoints.
    pub(crate) fn control(&self, method: &str, path: &str, payload: Option<&Value>) -> Invocation {
        self.request(method, path, payload)
    }

    /// A JSON POST to the invoke host, answered by one HTTP/1.1 response.
    fn post(&self, path: &str, payload: &Value) -> Invocation {
        self.request("POST", path, Some(payload))
    }

    fn request(&self, method: &str, path: &str, payload: Option<&Value>) -> Invocation {
        let authority = self.invoke_endpoint.trim_start_matches("http://").trim_end_matches('/');
        let body = payload.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = TcpStream::connect(authority).expect("connect to the invoke host");
        stream.write_all(request.as_bytes()).expect("send the invocation");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("read the invocation's answer");
        let response = String::from_utf8(response).expect("UTF-8 answer");
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP answer with headers");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("HTTP status line");
        let function_error = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("x-amz-function-error"))
            .map(|(_, value)| value.trim().to_owned());
        let payload = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
        Invocation { status, function_error, payload }
    }
}
