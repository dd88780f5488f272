//! The store: the durable queue between ingest, the pipeline and dispatch,
//! and the record the admin API reads.
//!
//! Life of an event, as the [`Store`] trait sees it:
//! 1. `accept_processed`: ingest ran the event's routes itself, within the
//!    request, and hands over the event with their result; one transaction
//!    holds both. `Ok` means committed (or a duplicate) and ingest may answer
//!    202; `Err` means 503. When the routes' plugins take too long, ingest
//!    hands over the bare event with `accept` instead.
//! 2. `accept`ed events: `next_event` → the pipeline runs the routes → `complete_event` commits
//!    the deliveries to make and the routes that failed (kept with the event
//!    for re-running). A route that failed for want of a plugin is listed by
//!    `failed_routes` when that plugin loads, re-run, and `record_rerun`
//!    replaces the failure with the result in one transaction.
//! 3. `claim(target)` hands dispatch due deliveries under a lease (new ones
//!    straight from memory, when the store committed them itself);
//!    `finish_attempt` records the attempt and what comes next: delivered,
//!    retry at a time, or dead.
//!
//! Invariants:
//! - An accepted event is never lost: it is committed before `accept`
//!   returns, and until its routes have run it is `received` and is fed to
//!   the pipeline again after a restart.
//! - A delivery is `pending` → `in_flight` (leased) → `delivered` |
//!   `retrying` (with a next attempt time) | `dead`. A lease that expires
//!   (the process died mid-attempt) makes the delivery due again, so delivery
//!   is at least once; its id never changes.
//! - Each target is claimed on its own: nothing queued for one target waits
//!   behind another's.

mod codec;
#[cfg(test)]
mod conformance;
mod control;
mod listing;
#[cfg(test)]
mod model;
mod postgres;
mod prune_cursor;
mod sqlite;

pub use control::{CircuitState, ControlChange, Paused, TargetControl};
pub use listing::{Before, Cursor, EventQuery, EventState, EventSummary, TargetCounts};
pub use postgres::{PIPELINE_LEASE, PgOptions, PostgresStore};
pub use sqlite::SqliteStore;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use thiserror::Error;

use crate::event::Event;

/// A delivery: one output event for one target, with a stable id.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Sent as `webhook-id`; the same across every attempt and restart.
    pub id: String,
    /// The id of the event as received (before plugins).
    pub event_id: String,
    pub route: String,
    pub target: String,
    /// The payload after plugins.
    pub event: Event,
    /// Attempts made so far.
    pub attempts: u32,
    /// The lease this copy was claimed under (its end, ms; 0 before a
    /// claim). Recording an attempt checks it: a delivery whose lease ran
    /// out and was claimed again is not overwritten by the late record.
    pub lease: u64,
    /// The target's `ordering` key: of deliveries to one target with the
    /// same key, only the first unfinished one (in commit order) is
    /// attempted. `None`: unordered.
    pub order_key: Option<String>,
    /// Once dead, this delivery holds its key's later ones back (`on_dead
    /// = "block"`) until retried or skipped.
    pub order_block: bool,
}

/// A route whose plugins failed on an event. The event is kept with it, so
/// the route can be re-run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RouteFailure {
    pub event_id: String,
    pub route: String,
    pub plugin: Option<String>,
    pub reason: String,
    /// Set when the route failed because this plugin was not loaded: the
    /// route is re-run as soon as it is.
    pub waiting_for: Option<String>,
}

/// What one route did with an event: the record `GET /api/events/{id}`
/// shows, so a drop's reason is never only in the log.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RouteOutcome {
    pub route: String,
    #[serde(flatten)]
    pub result: RouteResult,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RouteResult {
    /// The route's plugins emitted `outputs` events, delivered to `targets`;
    /// `dropped` holds any drops on the way (after a split, say).
    Emitted {
        outputs: usize,
        targets: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dropped: Vec<Dropped>,
    },
    /// A plugin dropped every event the route had: which one, and why.
    Dropped {
        plugin: String,
        reason: String,
        /// Every distinct drop, when there was more than one.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dropped: Vec<Dropped>,
    },
    /// The route failed: no deliveries; it is kept to re-run.
    Failed {
        plugin: Option<String>,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waiting_for: Option<String>,
    },
}

/// A plugin's drop, with how many events it dropped for that reason.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Dropped {
    pub plugin: String,
    pub reason: String,
    pub count: usize,
}

/// What the pipeline made of an event: deliveries to make, and what every
/// route did. The routes that failed are kept for re-running.
#[derive(Debug, Clone, Default)]
pub struct Processed {
    pub deliveries: Vec<Delivery>,
    pub routes: Vec<RouteOutcome>,
}

impl Processed {
    /// The routes that failed on event `event_id`, as kept for re-running.
    pub fn failures(&self, event_id: &str) -> Vec<RouteFailure> {
        self.routes
            .iter()
            .filter_map(|o| match &o.result {
                RouteResult::Failed {
                    plugin,
                    error,
                    waiting_for,
                } => Some(RouteFailure {
                    event_id: event_id.to_string(),
                    route: o.route.clone(),
                    plugin: plugin.clone(),
                    reason: error.clone(),
                    waiting_for: waiting_for.clone(),
                }),
                _ => None,
            })
            .collect()
    }
}

/// What `accept` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    New,
    /// The source already sent this event (the same id, or the same signed
    /// content): nothing new is made. Holds the stored event's id.
    Duplicate(String),
}

/// One attempt, as recorded.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Attempt {
    /// Milliseconds since the Unix epoch.
    pub started_at: u64,
    pub duration_ms: u64,
    /// The HTTP status, when the target answered.
    pub status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The start of the response body (capped).
    pub response: Option<String>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    Retry { after: Duration },
    Dead,
}

/// What recording an attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Yes,
    /// The delivery's lease was lost meanwhile (it ran out, and the delivery
    /// was claimed again, maybe by another node): nothing was written, and
    /// the newer claim's attempt counts.
    LeaseLost,
}

/// Which failed routes to list for re-running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedFilter {
    /// Those waiting for this plugin to load.
    WaitingFor(String),
    /// Every failed route of this event (an admin re-run).
    Event(String),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Too much work waiting, or the disk is full: ask the sender to retry later.
    #[error("the router's queue is full")]
    Full,
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
}

/// Counts for `/readyz` and metrics.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct QueueStats {
    /// Events accepted whose routes have not all run yet (queued or running).
    pub awaiting_pipeline: usize,
    pub pending_deliveries: usize,
    pub in_flight: usize,
    pub dead: usize,
    pub failed_routes: usize,
    pub capacity: usize,
}

/// One delivery as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DeliveryRecord {
    pub id: String,
    pub event_id: String,
    pub source: String,
    pub route: String,
    pub target: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: Option<u64>,
    pub last_error: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
    /// Filled in by `event`, empty in listings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempt_log: Vec<Attempt>,
}

/// An event with everything that happened to it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventRecord {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub received_at: u64,
    /// `received` until its routes have run, then `processed`.
    pub state: String,
    /// `[name, value]` pairs, as received.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// The body as text when it is UTF-8 …
    pub body: Option<String>,
    /// … else base64.
    pub body_base64: Option<String>,
    /// What each route did, in the order they ran (empty until processed).
    pub routes: Vec<RouteOutcome>,
    pub failed_routes: Vec<RouteFailure>,
    pub deliveries: Vec<DeliveryRecord>,
}

impl EventRecord {
    /// The record of `event` as stored, with what happened to it.
    pub fn new(
        event: Event,
        state: String,
        routes: Option<&str>,
        failed_routes: Vec<RouteFailure>,
        deliveries: Vec<DeliveryRecord>,
    ) -> Self {
        let (body, body_base64) = codec::body_for_display(&event.body);
        EventRecord {
            id: event.id,
            source: event.source,
            event_type: event.event_type,
            received_at: event.received_at,
            state,
            headers: event.headers,
            body,
            body_base64,
            routes: codec::routes_from_json(routes),
            failed_routes,
            deliveries,
        }
    }
}

/// A page of `GET /api/deliveries`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    pub state: Option<String>,
    pub target: Option<String>,
    /// Ids after this one (the cursor of the previous page).
    pub after: Option<String>,
    pub limit: usize,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: usize,
    pub events: usize,
}

/// First wait before running a failed store operation again; it doubles up
/// to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Run `record` until the store takes it, waiting longer after each failure
/// (a full disk, a locked file): what it records was already acknowledged
/// or sent, so giving up would strand it until a restart. `what` and
/// `of` (an id) name it in the log. Returns what the store said, or `None` only if `cancel`
/// fires first.
pub async fn until_recorded<T, F, Fut>(
    what: &str,
    of: &str,
    cancel: Option<&tokio_util::sync::CancellationToken>,
    mut record: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut wait = RETRY_FIRST;
    loop {
        let e = match record().await {
            Ok(done) => return Some(done),
            Err(e) => e,
        };
        tracing::error!("could not record {what} {of}: {e}; retrying in {wait:?}");
        let cancelled = async {
            match cancel {
                Some(c) => c.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancelled => return None,
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// A target's start book (`dispatch::starts`: GCRA's theoretical arrival
/// time, `tat`) kept in a shared database, so that its rate holds for
/// every node.
#[async_trait]
pub trait SharedStarts: Send + Sync {
    /// Set `tat = max(tat, now) + n × every` for `target` (creating it at
    /// `now`), on the database's clock; returns `(tat before, now)` in µs,
    /// the first being at least `now`.
    async fn reserve_starts(
        &self,
        target: &str,
        n: u32,
        every_us: i64,
    ) -> Result<(i64, i64), StoreError>;
    /// Set `tat = tat - n × every` if `tat` is still `end`: starts reserved
    /// and not used, with none reserved after them.
    async fn refund_starts(
        &self,
        target: &str,
        n: u32,
        every_us: i64,
        end: i64,
    ) -> Result<(), StoreError>;
    /// `tat - tolerance - now` in µs (≤ 0 when a start may come now).
    async fn next_start(&self, target: &str, tolerance_us: i64) -> Result<i64, StoreError>;
    /// Set `tat = max(tat, now + ahead)`.
    async fn hold_starts(&self, target: &str, ahead_us: i64) -> Result<(), StoreError>;
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Take responsibility for a received event. `signed`: the digest of
    /// what a verified sender signed; an event with the same one within the
    /// dedup window is a duplicate, whatever its id.
    async fn accept(&self, event: Event, signed: Option<[u8; 32]>) -> Result<Accepted, StoreError>;
    /// As `accept`, for an event whose routes this process is running
    /// already (ingest ran out of its budget midway and goes on): it is not
    /// handed to the pipeline, and the caller records its result with
    /// `complete_event`. Should the process die first, the event is run
    /// again like any other accepted one (at the next start, or by another
    /// node once its lease runs out).
    async fn accept_running(
        &self,
        event: Event,
        signed: Option<[u8; 32]>,
    ) -> Result<Accepted, StoreError>;
    /// Take responsibility for an event whose routes already ran, within
    /// the ingest request: the event, its deliveries and its failed routes
    /// commit in one transaction, and `Ok` means all are durable. The event
    /// never waits for the pipeline, so it does not count against the
    /// capacity. A duplicate stores nothing.
    async fn accept_processed(
        &self,
        event: Event,
        signed: Option<[u8; 32]>,
        processed: Processed,
    ) -> Result<Accepted, StoreError>;
    /// The next event for the pipeline; waits until there is one.
    async fn next_event(&self) -> Event;
    /// The pipeline's result for an event that came from `next_event`.
    /// Until it is recorded, the event counts against the capacity.
    async fn complete_event(&self, event: Event, processed: Processed) -> Result<(), StoreError>;
    /// Failed routes (with their events) to re-run. They stay recorded until
    /// `record_rerun` replaces them, so a crash mid-re-run loses nothing.
    async fn failed_routes(
        &self,
        filter: FailedFilter,
    ) -> Result<Vec<(Event, RouteFailure)>, StoreError>;
    /// The result of re-running `route` on `event`: replaces its failure,
    /// and its outcome.
    async fn record_rerun(
        &self,
        event: Event,
        route: &str,
        processed: Processed,
    ) -> Result<(), StoreError>;
    /// Where targets' rates are kept when they must hold for several nodes
    /// together; `None`: in each process (one process owns this store).
    fn shared_starts(&self) -> Option<std::sync::Arc<dyn SharedStarts>> {
        None
    }
    /// Report commits to `commits` from now on: on SQLite every group
    /// commit (every write goes through one); on PostgreSQL each write of
    /// the hot path (accepting an event, recording its result or an
    /// attempt), from asking for a connection to the commit.
    fn observe_commits(&self, commits: crate::metrics::Commits);
    /// Every target's control record (pause, circuit) that has one.
    async fn target_controls(
        &self,
    ) -> Result<std::collections::HashMap<String, TargetControl>, StoreError>;
    /// Apply `change` to `target`'s control record atomically (for every
    /// node sharing the store), writing it only if `change` says it
    /// changed it; returns the record before and after.
    async fn change_target_control(
        &self,
        target: &str,
        change: ControlChange,
    ) -> Result<(TargetControl, TargetControl), StoreError>;
    /// Wait until deliveries to `target` are due, and lease up to `max` of
    /// them (at least one) for `lease`, most overdue first.
    async fn claim(&self, target: &str, lease: Duration, max: usize) -> Vec<Delivery>;
    /// Record an attempt on a claimed delivery and what comes next. If its
    /// lease was lost meanwhile (it ran out, and the delivery was claimed
    /// again), nothing is recorded: the newer claim's attempt counts.
    async fn finish_attempt(
        &self,
        delivery: Delivery,
        attempt: Attempt,
        next: NextStep,
    ) -> Result<Recorded, StoreError>;
    /// Give a claimed delivery back unattempted (its target's circuit
    /// opened, or it was paused, before the attempt started): due at once,
    /// as it was, with no attempt recorded. Under its lease, as
    /// `finish_attempt`.
    async fn release(&self, delivery: Delivery) -> Result<Recorded, StoreError>;
    /// `target`'s worker stops claiming for a while (the target is paused,
    /// or its circuit open): deliveries this process would hand it in
    /// memory wait in the table instead, and those waiting in memory go
    /// back to it, so that they show as waiting. Its next claim ends this.
    async fn hold(&self, _target: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn stats(&self) -> Result<QueueStats, StoreError>;

    // The admin API.
    /// The event with this id: from `source`, or, with none given, the
    /// first received of any source (ids are unique per source).
    async fn event_in(
        &self,
        source: Option<&str>,
        id: &str,
    ) -> Result<Option<EventRecord>, StoreError>;
    async fn event(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        self.event_in(None, id).await
    }
    /// A page of events, newest first (`GET /api/events`).
    async fn events(&self, query: EventQuery) -> Result<Vec<EventSummary>, StoreError>;
    async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Every target with deliveries not yet delivered, by state.
    async fn target_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<String, TargetCounts>, StoreError>;
    /// Make one delivery due now with a fresh attempt budget. `false` if
    /// unknown or in flight.
    async fn retry_delivery(&self, id: &str) -> Result<bool, StoreError>;
    /// Let the deliveries after a dead one with its ordering key go, when it
    /// holds them back (`on_dead = "block"`); it stays dead. `false` if
    /// there is no such delivery.
    async fn skip_delivery(&self, id: &str) -> Result<bool, StoreError>;
    /// Make the dead deliveries of `target` due again (those that died at or
    /// after `since`, ms). Returns how many.
    async fn replay_target(&self, target: &str, since: Option<u64>) -> Result<usize, StoreError>;
    /// Delete delivered work older than `delivered_before`, dead work older
    /// than `dead_before`, and events older than `events_before` that have
    /// nothing left (all ms since the epoch).
    async fn prune(
        &self,
        delivered_before: u64,
        dead_before: u64,
        events_before: u64,
    ) -> Result<Pruned, StoreError>;
}
