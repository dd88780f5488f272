//! Outcomes that are both logged and counted, by one call
//! ([`super::Metrics::ingested`], [`super::Metrics::attempted`]): each
//! knows its log line and its labels.

use std::time::Duration;

use crate::store::NextStep;

// Each line keeps the target of the part of the router it is about, so
// `RUST_LOG=wasmhook::dispatch=debug` still shows every attempt.
pub(super) const INGEST: &str = "wasmhook::ingest";
pub(super) const DISPATCH: &str = "wasmhook::dispatch";
pub(super) const PIPELINE: &str = "wasmhook::pipeline";

/// How an ingest request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// 202: stored, and new.
    New { id: String, untyped: bool },
    /// 202 with `duplicate: true`: `original` was accepted before (under
    /// the same id, or with the same signed content under another).
    Duplicate { id: String, original: String },
    /// A 4xx or 503; nothing was kept.
    Refused(Refusal),
}

/// Why ingest refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    UnknownSource,
    /// Over `server.max_concurrent_ingest`.
    Busy,
    /// Shutting down.
    Draining,
    TooLarge,
    ReadTimeout,
    /// The body could not be read (the connection broke).
    Unreadable,
    Signature(String),
    Malformed,
    QueueFull,
    StorageUnavailable(String),
}

impl Refusal {
    /// The `reason` label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::UnknownSource => "unknown_source",
            Refusal::Busy => "busy",
            Refusal::Draining => "draining",
            Refusal::TooLarge => "too_large",
            Refusal::ReadTimeout => "read_timeout",
            Refusal::Unreadable => "unreadable",
            Refusal::Signature(_) => "signature",
            Refusal::Malformed => "malformed",
            Refusal::QueueFull => "queue_full",
            Refusal::StorageUnavailable(_) => "storage_unavailable",
        }
    }
}

impl Ingested {
    pub(super) fn log(&self, source: &str) {
        match self {
            Ingested::New { id, untyped: true } => tracing::debug!(
                target: INGEST,
                source,
                event_id = %id,
                "event accepted without an event type: the source's event_type rule found none, so routes with event_types skip it"
            ),
            Ingested::New { id, untyped: false } => {
                tracing::debug!(target: INGEST, source, event_id = %id, "event accepted");
            }
            Ingested::Duplicate { id, original } if id == original => tracing::debug!(
                target: INGEST,
                source,
                event_id = %id,
                "duplicate event id: accepted again, nothing new to deliver"
            ),
            Ingested::Duplicate { id, original } => tracing::warn!(
                target: INGEST,
                source,
                event_id = %id,
                original = %original,
                "replayed request: the same signed content as an earlier event, under another id; nothing new to deliver"
            ),
            Ingested::Refused(Refusal::Signature(why)) => {
                tracing::warn!(target: INGEST, source, "request refused: {why}");
            }
            Ingested::Refused(Refusal::QueueFull) => {
                tracing::warn!(target: INGEST, source, "queue full; answered 503");
            }
            Ingested::Refused(Refusal::StorageUnavailable(detail)) => {
                tracing::error!(target: INGEST, source, "storage unavailable: {detail}");
            }
            // The sender is told; under a flood of these, a line each
            // would cost more than the refusal.
            Ingested::Refused(why) => {
                tracing::debug!(target: INGEST, source, reason = why.reason(), "request refused");
            }
        }
    }
}

/// Why an attempt got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Connect,
    /// Any other failure of the request (a broken connection, a protocol
    /// error).
    Other,
}

/// An attempt's `delivery` span, for a line logged outside it (see
/// [`crate::telemetry::in_span`]).
pub fn delivery_line_span(
    event_id: &str,
    delivery_id: &str,
    target: &str,
    attempt: u32,
) -> tracing::Span {
    tracing::info_span!(
        "delivery",
        event_id = %event_id,
        delivery_id = %delivery_id,
        target = %target,
        attempt,
    )
}

/// One delivery attempt, made.
#[derive(Debug, Clone)]
pub struct Attempted<'a> {
    pub target: &'a str,
    pub delivery_id: &'a str,
    pub event_id: &'a str,
    /// Attempts so far, this one included.
    pub attempts: u32,
    pub status: Option<u16>,
    /// Set when no answer came.
    pub failure: Option<Failure>,
    pub next: NextStep,
    /// The target refused it for good (a 4xx other than 408, 410 and 429).
    pub refused: bool,
    pub error: Option<&'a str>,
    pub took: Duration,
    /// When the event was accepted (ms since the epoch): a delivered
    /// attempt's latency is measured from it.
    pub received_at: u64,
}

impl Attempted<'_> {
    fn span(&self) -> tracing::Span {
        delivery_line_span(self.event_id, self.delivery_id, self.target, self.attempts)
    }

    /// The `result` label: what comes next.
    pub fn result(&self) -> &'static str {
        match self.next {
            NextStep::Delivered => "delivered",
            NextStep::Retry { .. } => "retry",
            NextStep::Dead => "dead",
        }
    }

    /// The `class` label: the answer's status class, or why none came.
    pub fn class(&self) -> &'static str {
        match (self.status, self.failure) {
            (Some(200..=299), _) => "2xx",
            (Some(300..=399), _) => "3xx",
            (Some(400..=499), _) => "4xx",
            (Some(500..=599), _) => "5xx",
            (Some(_), _) => "other",
            (None, Some(Failure::Timeout)) => "timeout",
            (None, Some(Failure::Connect)) => "connect",
            (None, _) => "error",
        }
    }

    pub(super) fn log(&self) {
        let elapsed_ms = self.took.as_millis() as u64;
        let error = self.error.unwrap_or("");
        let log = || match self.next {
            NextStep::Delivered => {
                tracing::debug!(target: DISPATCH, status = self.status, elapsed_ms, "delivered")
            }
            NextStep::Retry { after } => tracing::warn!(
                target: DISPATCH,
                elapsed_ms,
                retry_in_ms = after.as_millis() as u64,
                "attempt failed: {error}"
            ),
            NextStep::Dead if self.refused => tracing::error!(
                target: DISPATCH,
                elapsed_ms,
                "delivery is dead, the target refused it: {error}"
            ),
            NextStep::Dead => tracing::error!(
                target: DISPATCH,
                elapsed_ms,
                "delivery is dead after {} attempts: {error}",
                self.attempts
            ),
        };
        match self.next {
            // A `debug` line: where it is logged, the attempt's own span is
            // made too; and making one for nothing would cost every attempt.
            NextStep::Delivered => log(),
            _ => crate::telemetry::in_span(|| self.span(), log),
        }
    }
}
