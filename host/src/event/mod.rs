//! The event as it flows through the router: received by `ingest`, transformed
//! by `pipeline` (through plugins), queued as deliveries, sent by `dispatch`.
//!
//! These are plain data types. `plugin` converts them to and from the WIT types,
//! so nothing here depends on wasmtime.

pub mod json;

use bytes::Bytes;

/// One webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Stable id: from the sender's id header when it gave one, else generated.
    pub id: String,
    /// Name of the configured source the event came in on.
    pub source: String,
    /// From the source's `event_type` rule; empty when the source has none.
    pub event_type: String,
    /// Milliseconds since the Unix epoch.
    pub received_at: u64,
    /// Lower-case header names, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The value at JSON `pointer` in `body` as text: a string as it is, a
/// number or boolean as written; `None` for anything else, or a body that
/// is not JSON. (A source's event type, a target's ordering key.)
pub fn pointer_text(body: &[u8], pointer: &str) -> Option<String> {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    match json.pointer(pointer)? {
        serde_json::Value::String(s) => Some(s.clone()),
        v if v.is_number() || v.is_boolean() => Some(v.to_string()),
        _ => None,
    }
}

impl Event {
    /// The first value of header `name` (which must be lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Bytes this event occupies, roughly: used to enforce plugin output caps.
    pub fn size_hint(&self) -> usize {
        const OVERHEAD: usize = 64;
        OVERHEAD
            + self.id.len()
            + self.source.len()
            + self.event_type.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
            + self.body.len()
    }
}

/// What one plugin decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Drop { reason: String },
    Emit(Vec<Output>),
}

/// An event a plugin emitted, and the configured targets it names (empty: the
/// route's targets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub event: Event,
    pub targets: Vec<String>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
