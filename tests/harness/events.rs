//! Reading the lifecycle events the machines publish, as a subscriber would: an
//! EventBridge rule on the bus with an SQS queue as its target (`tests/local/events.py`);
//! putting deploy events on a bus as CI would, and watching the rules deliver them.

use serde_json::{json, Value};

use crate::LocalStack;

/// A queue that a rule on the bus fills with understudy's events.
#[derive(Debug, Clone)]
pub struct EventQueue {
    url: String,
}

impl LocalStack {
    /// A rule `name` on `bus` for every event of source `understudy`, into a new queue `name`.
    pub fn subscribe_to_events(&self, name: &str, bus: &str) -> EventQueue {
        let answer = self
            .control("POST", "/understudy/events/subscribe", Some(&json!({"name": name, "bus": bus})))
            .ok();
        EventQueue { url: answer["queue_url"].as_str().expect("a queue url").to_owned() }
    }

    /// A rule `name` on `bus` with `pattern`, into a new queue `name` (a deployed
    /// rule's pattern checked against sample events, as a subscriber would see them).
    pub fn subscribe_with_pattern(&self, name: &str, bus: &str, pattern: &Value) -> EventQueue {
        let body = json!({"name": name, "bus": bus, "pattern": pattern});
        let answer = self.control("POST", "/understudy/events/subscribe", Some(&body)).ok();
        EventQueue { url: answer["queue_url"].as_str().expect("a queue url").to_owned() }
    }

    /// A new queue `name` subscribed to the SNS topic `topic`.
    pub fn subscribe_to_topic(&self, name: &str, topic: &str) -> EventQueue {
        let body = json!({"name": name, "topic": topic});
        let answer = self.control("POST", "/understudy/events/subscribe-topic", Some(&body)).ok();
        EventQueue { url: answer["queue_url"].as_str().expect("a queue url").to_owned() }
    }

    /// Puts `events` (EventBridge events as a rule target receives them, like the
    /// samples in `tests/events/`) on `bus` with `PutEvents`, as a producer would.
    pub fn put_events(&self, bus: &str, events: &[Value]) {
        let entries: Vec<Value> = events
            .iter()
            .map(|event| {
                let mut entry = json!({
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": event["detail"].to_string(),
                    "Resources": event["resources"],
                    "EventBusName": bus,
                });
                if let Some(time) = event["time"].as_str() {
                    entry["Time"] = json!(time);
                }
                entry
            })
            .collect();
        let answer = self.control("POST", "/understudy/events/put", Some(&json!({"entries": entries}))).ok();
        assert_eq!(answer["FailedEntryCount"], 0, "{answer}");
    }

    /// Every delivery of a rule to a Lambda target so far, once none is pending
    /// (waits up to `timeout` for at least `count`).
    pub fn deliveries(&self, count: usize, timeout: std::time::Duration) -> Vec<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let answer = self.control("GET", "/understudy/events/deliveries", None).ok();
            let deliveries = answer["deliveries"].as_array().cloned().unwrap_or_default();
            if deliveries.len() >= count && deliveries.iter().all(|d| d["status"] != "pending") {
                return deliveries;
            }
            assert!(std::time::Instant::now() < deadline, "{count} deliveries expected: {deliveries:#?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Every event the queue received since the last call, oldest first.
    pub fn received_events(&self, queue: &EventQueue) -> Vec<Value> {
        let answer =
            self.control("POST", "/understudy/events/receive", Some(&json!({"queue_url": queue.url}))).ok();
        answer["events"].as_array().cloned().unwrap_or_default()
    }
}

/// The `detail-type`s of `events`, in order.
pub fn detail_types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["detail-type"].as_str().unwrap_or_default().to_owned()).collect()
}

/// The event of `detail_type` (the last one, if several).
pub fn event_of<'a>(events: &'a [Value], detail_type: &str) -> &'a Value {
    events
        .iter()
        .rev()
        .find(|e| e["detail-type"] == detail_type)
        .unwrap_or_else(|| panic!("no `{detail_type}` event among {:?}", detail_types(events)))
}
