use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::wasmhook::plugin::types as wire;
use crate::Result;

/// One webhook event, as a plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Stable id. Output events that keep it keep receivers' deduplication working.
    pub id: String,
    /// Name of the configured source the event came in on.
    pub source: String,
    /// Event type from the source's `event_type` rule, e.g. `push`.
    pub event_type: String,
    /// When the router received it, in milliseconds since the Unix epoch.
    pub received_at: u64,
    /// Request headers (lower-case names), in the order received.
    pub headers: Vec<(String, String)>,
    /// Raw body: usually JSON, but not always.
    pub body: Vec<u8>,
}

impl Event {
    /// An event for tests: the given type and body, id `evt_test`, source `test`.
    pub fn new(event_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Event {
            id: "evt_test".into(),
            source: "test".into(),
            event_type: event_type.into(),
            received_at: 0,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Builder: this event with header `name` set to `value` (replacing it).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_header(name, value);
        self
    }

    /// Builder: this event with another id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Builder: this event from another source.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Builder: this event with another body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Builder: this event received at `ms` since the Unix epoch.
    pub fn with_received_at(mut self, ms: u64) -> Self {
        self.received_at = ms;
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Set header `name`, replacing every existing value.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.remove_header(name);
        self.headers.push((name.to_ascii_lowercase(), value.into()));
    }

    /// Remove every value of header `name` (case-insensitive).
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The body as UTF-8 text, if it is.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// Parse the body as JSON into `T` (e.g. `serde_json::Value` or your own struct).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| crate::Error::msg(format!("the event body is not the JSON expected: {e}")))
    }

    /// Replace the body with `value` serialised as JSON, and set
    /// `content-type: application/json`.
    pub fn set_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.body = serde_json::to_vec(value)?;
        self.set_header("content-type", "application/json");
        Ok(())
    }

    /// [`Event::set_json`], by value, for chaining.
    pub fn with_json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self> {
        self.set_json(value)?;
        Ok(self)
    }
}

impl From<wire::Event> for Event {
    fn from(e: wire::Event) -> Self {
        Event {
            id: e.id,
            source: e.source,
            event_type: e.event_type,
            received_at: e.received_at,
            headers: e.headers,
            body: e.body,
        }
    }
}

impl From<Event> for wire::Event {
    fn from(e: Event) -> Self {
        wire::Event {
            id: e.id,
            source: e.source,
            event_type: e.event_type,
            received_at: e.received_at,
            headers: e.headers,
            body: e.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn headers_are_case_insensitive_and_replaced() {
        let mut ev = Event::new("push", "");
        ev.headers.push(("X-GitHub-Event".into(), "push".into()));
        assert_eq!(ev.header("x-github-event"), Some("push"));
        ev.set_header("X-GITHUB-EVENT", "ping");
        assert_eq!(
            ev.headers,
            [("x-github-event".to_string(), "ping".to_string())]
        );
        ev.remove_header("x-github-event");
        assert!(ev.header("x-github-event").is_none());
    }

    #[test]
    fn the_builder_sets_every_field() {
        let ev = Event::new("push", "{}")
            .with_id("evt_1")
            .with_source("github")
            .with_header("X-GitHub-Event", "push")
            .with_body("[]")
            .with_received_at(7);
        assert_eq!((ev.id.as_str(), ev.source.as_str()), ("evt_1", "github"));
        assert_eq!(ev.header("x-github-event"), Some("push"));
        assert_eq!((ev.body_str(), ev.received_at), (Some("[]"), 7));
    }

    #[test]
    fn json_round_trip_sets_content_type() {
        let ev = Event::new("t", r#"{"a":1}"#);
        let v: Value = ev.json().unwrap();
        assert_eq!(v, json!({"a": 1}));
        let ev = ev.with_json(&json!({"b": [1, 2]})).unwrap();
        assert_eq!(ev.body_str(), Some(r#"{"b":[1,2]}"#));
        assert_eq!(ev.header("content-type"), Some("application/json"));
    }

    #[test]
    fn json_error_is_a_plugin_error_with_the_parser_message() {
        let ev = Event::new("t", "not json");
        let err = ev.json::<Value>().unwrap_err().to_string();
        assert!(
            err.starts_with("the event body is not the JSON expected: expected"),
            "{err}"
        );
    }
}
