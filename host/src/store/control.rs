//! A target's delivery control, kept in the store so that every node sees
//! the same: whether an operator (or a `410 Gone`) paused it, and its
//! circuit breaker. `dispatch::circuit` decides; the store only keeps the
//! record and changes it atomically.

use serde::{Deserialize, Serialize};

/// The circuit breaker's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Attempts flow.
    #[default]
    Closed,
    /// Attempts stop; one probe goes at `probe_at`.
    Open,
    /// A probe is under way (until `probe_at`, when another may go).
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// Why and when a target was paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Paused {
    pub reason: String,
    /// ms since the epoch.
    pub at: u64,
}

/// One target's control record. A target with none is the default:
/// running, circuit closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetControl {
    pub paused: Option<Paused>,
    pub circuit: CircuitState,
    /// Failed attempts in a row (reset by any answer that shows the
    /// target is up).
    pub failures: u32,
    /// When the circuit last opened (ms since the epoch), while it is open.
    pub opened_at: Option<u64>,
    /// Open: when the next probe may go. Half-open: when the probe under
    /// way is given up for lost, and another may go (ms).
    pub probe_at: Option<u64>,
    /// The wait before the next probe; it doubles with each failed one.
    pub cool_down_ms: u64,
}

/// A change to one target's record: sees the current record (the default
/// if there is none), and returns whether it changed it.
pub type ControlChange = Box<dyn FnOnce(&mut TargetControl) -> bool + Send>;

/// The stored form: JSON, so that keys can be added without a migration.
pub fn encode(control: &TargetControl) -> String {
    serde_json::to_string(control).expect("a target's control record serialises")
}

/// A record this binary cannot read (written by a newer one, say) reads
/// as the default, logged: delivery must not stop over it.
pub fn decode(target: &str, text: &str) -> TargetControl {
    serde_json::from_str(text).unwrap_or_else(|e| {
        tracing::warn!(target = %target, "the target's stored control record is unreadable ({e}): taken as running, circuit closed");
        TargetControl::default()
    })
}
