//! The live tail: what this node does, as it happens (events accepted,
//! delivery attempts made), for `GET /api/stream`, the dashboard's live
//! page and `wasmhook tail`.
//!
//! A bounded broadcast: a reader that falls behind by more than
//! [`TAIL_BUFFER`] items is told how many it missed, and never slows ingest
//! or dispatch down. Nothing is copied while nobody reads.

use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events a slow reader may fall behind before it misses some.
pub const TAIL_BUFFER: usize = 1024;

/// What the tail shows.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Tailed {
    /// An event accepted.
    Event {
        id: String,
        source: String,
        event_type: String,
        received_at: u64,
    },
    /// A delivery attempt made, and what comes next.
    Attempt {
        delivery_id: String,
        event_id: String,
        source: String,
        target: String,
        attempt: u32,
        status: Option<u16>,
        /// `delivered`, `retry` or `dead`.
        outcome: &'static str,
        duration_ms: u64,
        error: Option<String>,
    },
}

impl Tailed {
    /// The server-sent event's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Tailed::Event { .. } => "event",
            Tailed::Attempt { .. } => "attempt",
        }
    }

    /// The source of the event it is about.
    pub fn source(&self) -> &str {
        match self {
            Tailed::Event { source, .. } | Tailed::Attempt { source, .. } => source,
        }
    }
}

pub struct Tail {
    sender: broadcast::Sender<Tailed>,
    closed: CancellationToken,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            sender: broadcast::channel(TAIL_BUFFER).0,
            closed: CancellationToken::new(),
        }
    }
}

impl Tail {
    /// Whether anyone reads the tail now.
    pub fn watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Tell every reader.
    pub fn publish(&self, event: Tailed) {
        let _ = self.sender.send(event);
    }

    /// End every stream (the router is draining).
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// A new reader, and the token that ends it.
    pub fn subscribe(&self) -> (broadcast::Receiver<Tailed>, CancellationToken) {
        (self.sender.subscribe(), self.closed.clone())
    }
}
