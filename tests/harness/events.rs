//! Reading the lifecycle events the machines publish, as a subscriber would: an
//! EventBridge rule on the bus with an SQS queue as its target (`tests/local/events.py`).

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
