//! The queue between ingest, the pipeline and dispatch: the seam the durable
//! store plugs into.
//!
//! Life of an event, as the [`Store`] trait sees it:
//! 1. `accept`: ingest hands over a received event. `Ok` means the event is
//!    held and ingest may answer 202; `Err(Full | Unavailable)` means 503.
//! 2. `next_event` → pipeline runs the routes → `complete_event` with the
//!    deliveries to make and the routes that failed (kept for re-running).
//!    A route that failed because a plugin was not loaded is handed back by
//!    `take_failed` when that plugin loads, re-run, and `record_rerun`.
//! 3. `claim(target)` hands dispatch a due delivery; `finish_attempt` records
//!    the attempt and what comes next: delivered, retry at a time, or dead.
//!
//! Invariant: an accepted event is never discarded silently. Until it is
//! delivered it is in exactly one place: awaiting the pipeline, held as a
//! failed route, due or scheduled in a target queue, in flight, or dead.
//!
//! Today's implementation is [`MemoryStore`]: bounded, and lost on restart.
//! The durable store implements the same trait; a Postgres one claims with
//! `FOR UPDATE SKIP LOCKED` behind the same `claim`.

mod memory;

pub use memory::MemoryStore;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use thiserror::Error;

use crate::event::Event;

/// A delivery: one output event for one target, with a stable id.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Sent as `webhook-id`; the same across every attempt.
    pub id: String,
    /// The id of the event as received (before plugins).
    pub event_id: String,
    pub route: String,
    pub target: String,
    /// The payload after plugins.
    pub event: Event,
    /// Attempts made so far.
    pub attempts: u32,
}

/// A route whose plugins failed on an event. The event is kept with it, so
/// the route can be re-run.
#[derive(Debug, Clone, Serialize)]
pub struct RouteFailure {
    pub event_id: String,
    pub route: String,
    pub plugin: Option<String>,
    pub reason: String,
    /// Set when the route failed because this plugin was not loaded: the
    /// route is re-run as soon as it is.
    pub waiting_for: Option<String>,
}

/// What happened to one attempt, and what to do next.
#[derive(Debug, Clone)]
pub enum AttemptResult {
    Delivered {
        status: u16,
    },
    /// Try again after `after`.
    Retry {
        after: Duration,
        error: String,
    },
    /// No more attempts: the delivery is dead, kept for retry or replay.
    Dead {
        error: String,
    },
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Too much work held already: ask the sender to retry later.
    #[error("the router's queue is full")]
    Full,
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
}

/// Counts for `/readyz` and metrics.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct QueueStats {
    pub awaiting_pipeline: usize,
    pub pending_deliveries: usize,
    pub in_flight: usize,
    pub dead: usize,
    pub failed_routes: usize,
    pub capacity: usize,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Take responsibility for a received event.
    async fn accept(&self, event: Event) -> Result<(), StoreError>;
    /// The next event for the pipeline; waits until there is one.
    async fn next_event(&self) -> Event;
    /// The pipeline's result for an event that came from `next_event`.
    async fn complete_event(
        &self,
        event: Event,
        deliveries: Vec<Delivery>,
        failures: Vec<RouteFailure>,
    ) -> Result<(), StoreError>;
    /// Remove and return the failed routes waiting for `plugin` to load.
    async fn take_failed(&self, plugin: &str) -> Vec<(Event, RouteFailure)>;
    /// The result of re-running failed routes of an event (from `take_failed`).
    async fn record_rerun(
        &self,
        event: Event,
        deliveries: Vec<Delivery>,
        failures: Vec<RouteFailure>,
    ) -> Result<(), StoreError>;
    /// Wait for a due delivery to `target` and mark it in flight.
    async fn claim(&self, target: &str) -> Delivery;
    /// Record the end of an attempt on a claimed delivery.
    async fn finish_attempt(
        &self,
        delivery: Delivery,
        result: AttemptResult,
    ) -> Result<(), StoreError>;
    fn stats(&self) -> QueueStats;
}
