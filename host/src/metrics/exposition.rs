//! The `/metrics` exposition: every series, its labels, its buckets, and
//! its name and help in the registry.

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram as Buckets, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::QueueStats;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BySource {
    pub(super) source: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ByReason {
    pub(super) source: Name,
    pub(super) reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ByPlugin {
    pub(super) plugin: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ByPluginResult {
    pub(super) plugin: Name,
    pub(super) result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ByRoute {
    pub(super) route: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ByTarget {
    pub(super) target: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ByTargetResult {
    pub(super) target: Name,
    pub(super) result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ByTargetClass {
    pub(super) target: Name,
    pub(super) class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ByTargetState {
    pub(super) target: Name,
    pub(super) state: &'static str,
}

/// A name (of a source, route, plugin or target) as a label value,
/// escaped as the text format requires: the crate writes values as given.
/// Shared: the label sets of one call hold one copy.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(super) struct Name(Arc<str>);

impl Name {
    pub(super) fn of(name: &str) -> Self {
        Name(name.into())
    }
}

impl EncodeLabelValue for Name {
    fn encode(&self, out: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => out.write_str("\\\\")?,
                '"' => out.write_str("\\\"")?,
                '\n' => out.write_str("\\n")?,
                c => out.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Reads one of the queue's counts.
type QueueCount = fn(&QueueStats) -> usize;

type Timings<L> = Family<L, Buckets, fn() -> Buckets>;

fn timings<L: Clone + std::hash::Hash + Eq>(make: fn() -> Buckets) -> Timings<L> {
    Family::new_with_constructor(make)
}

/// Seconds, from 100 µs to about 3.7 hours (13,422 s) in doublings:
/// plugin calls and commits at the low end, a delivery that waited out
/// hours of retries at the top.
fn seconds() -> Buckets {
    Buckets::new(exponential_buckets(0.0001, 2.0, 28))
}

/// Jobs in one store commit: 1 to 512 (the writer's largest batch).
fn batch_sizes() -> Buckets {
    Buckets::new(exponential_buckets(1.0, 2.0, 10))
}

/// Every series `GET /metrics` serves.
pub(super) struct Exposed {
    pub(super) received: Family<BySource, Counter>,
    pub(super) duplicates: Family<BySource, Counter>,
    pub(super) rejected: Family<ByReason, Counter>,
    pub(super) untyped: Family<BySource, Counter>,
    pub(super) unrouted: Family<BySource, Counter>,
    pub(super) ingest_seconds: Timings<BySource>,
    pub(super) plugin_calls: Family<ByPluginResult, Counter>,
    pub(super) plugin_seconds: Timings<ByPlugin>,
    pub(super) route_failures: Family<ByRoute, Counter>,
    pub(super) route_drops: Family<ByRoute, Counter>,
    pub(super) attempts: Family<ByTargetResult, Counter>,
    pub(super) attempt_classes: Family<ByTargetClass, Counter>,
    pub(super) attempt_seconds: Timings<ByTarget>,
    pub(super) delivery_seconds: Timings<ByTarget>,
    pub(super) circuit_changes: Family<ByTargetState, Counter>,
    pub(super) pauses: Family<ByTarget, Counter>,
    pub(super) commit_seconds: Buckets,
    pub(super) commit_jobs: Buckets,
    // Gauges, set from a [`Snapshot`] at each scrape.
    pub(super) queue: [(Gauge, QueueCount); 6],
    pub(super) backlog: Family<ByTarget, Gauge>,
    pub(super) target_in_flight: Family<ByTarget, Gauge>,
    pub(super) target_dead: Family<ByTarget, Gauge>,
    pub(super) target_paused: Family<ByTarget, Gauge>,
    pub(super) circuit_open: Family<ByTarget, Gauge>,
    pub(super) plugins_loaded: Gauge,
    pub(super) store_up: Gauge,
}

impl Exposed {
    pub(super) fn registered(r: &mut Registry) -> Self {
        let s = Exposed {
            received: Family::default(),
            duplicates: Family::default(),
            rejected: Family::default(),
            untyped: Family::default(),
            unrouted: Family::default(),
            ingest_seconds: timings(seconds),
            plugin_calls: Family::default(),
            plugin_seconds: timings(seconds),
            route_failures: Family::default(),
            route_drops: Family::default(),
            attempts: Family::default(),
            attempt_classes: Family::default(),
            attempt_seconds: timings(seconds),
            delivery_seconds: timings(seconds),
            circuit_changes: Family::default(),
            pauses: Family::default(),
            commit_seconds: seconds(),
            commit_jobs: batch_sizes(),
            queue: [
                (Gauge::default(), |q| q.awaiting_pipeline),
                (Gauge::default(), |q| q.pending_deliveries),
                (Gauge::default(), |q| q.in_flight),
                (Gauge::default(), |q| q.dead),
                (Gauge::default(), |q| q.failed_routes),
                (Gauge::default(), |q| q.capacity),
            ],
            backlog: Family::default(),
            target_in_flight: Family::default(),
            target_dead: Family::default(),
            target_paused: Family::default(),
            circuit_open: Family::default(),
            plugins_loaded: Gauge::default(),
            store_up: Gauge::default(),
        };
        // Counters first: the exposition adds `_total` to their names.
        let all: [(&str, &str, &dyn Reg); 25] = [
            (
                "wasmhook_events_received",
                "Events accepted by ingest (answered 202, new)",
                &s.received,
            ),
            (
                "wasmhook_events_duplicate",
                "Requests for an event already accepted (answered 202 with duplicate: true; nothing new to deliver)",
                &s.duplicates,
            ),
            (
                "wasmhook_ingest_rejected",
                "Ingest requests refused, by reason (unknown_source, busy, draining, too_large, read_timeout, unreadable, signature, malformed, queue_full, storage_unavailable)",
                &s.rejected,
            ),
            (
                "wasmhook_events_untyped",
                "Events accepted without an event type: the source's event_type rule found none",
                &s.untyped,
            ),
            (
                "wasmhook_events_unrouted",
                "Events whose source had no route: kept as failed, to re-run once the config is fixed",
                &s.unrouted,
            ),
            (
                "wasmhook_plugin_calls",
                "Plugin calls, by plugin and result (emit, drop, or the error's kind: timeout, wall_timeout, memory, output_too_large, trap, panic, error, not_loaded)",
                &s.plugin_calls,
            ),
            (
                "wasmhook_route_failures",
                "Events that failed on a route (kept for re-running)",
                &s.route_failures,
            ),
            (
                "wasmhook_route_drops",
                "Events a plugin dropped on a route",
                &s.route_drops,
            ),
            (
                "wasmhook_delivery_attempts",
                "Delivery attempts, by target and what came next (delivered, retry, dead)",
                &s.attempts,
            ),
            (
                "wasmhook_attempt_responses",
                "Delivery attempts, by target and answer: 2xx, 3xx, 4xx, 5xx, or timeout, connect, error when none came",
                &s.attempt_classes,
            ),
            (
                "wasmhook_circuit_changes",
                "Targets' circuit breakers changing state (open, half_open, closed), by target and new state",
                &s.circuit_changes,
            ),
            (
                "wasmhook_target_pauses",
                "Targets paused (by an operator, or by a 410 Gone)",
                &s.pauses,
            ),
            // Histograms.
            (
                "wasmhook_ingest_duration_seconds",
                "Time to answer an ingest request, by source (every answer, refusals included)",
                &s.ingest_seconds,
            ),
            (
                "wasmhook_plugin_call_duration_seconds",
                "Time of one plugin call, by plugin",
                &s.plugin_seconds,
            ),
            (
                "wasmhook_attempt_duration_seconds",
                "Time of one delivery attempt, by target",
                &s.attempt_seconds,
            ),
            (
                "wasmhook_delivery_latency_seconds",
                "From the event's acceptance to its delivery, by target (delivered attempts only)",
                &s.delivery_seconds,
            ),
            (
                "wasmhook_store_commit_duration_seconds",
                "Time of one store commit, from its first statement until it is durable",
                &s.commit_seconds,
            ),
            (
                "wasmhook_store_commit_batch_size",
                "Store operations in one commit (SQLite groups them; PostgreSQL commits each alone)",
                &s.commit_jobs,
            ),
            // Gauges.
            (
                "wasmhook_target_backlog",
                "Deliveries to a target that are pending or waiting to retry",
                &s.backlog,
            ),
            (
                "wasmhook_target_in_flight",
                "Attempts to a target under way",
                &s.target_in_flight,
            ),
            (
                "wasmhook_target_dead",
                "Dead deliveries to a target, kept for retry",
                &s.target_dead,
            ),
            (
                "wasmhook_target_paused",
                "1 when the target is paused",
                &s.target_paused,
            ),
            (
                "wasmhook_target_circuit_open",
                "1 when the target's circuit is open or half open (no attempts but probes)",
                &s.circuit_open,
            ),
            (
                "wasmhook_plugins_loaded",
                "Plugins with a version loaded and serving",
                &s.plugins_loaded,
            ),
            (
                "wasmhook_store_up",
                "1 when the last scrape could read the store; 0 when not (the store's gauges then keep their last values)",
                &s.store_up,
            ),
        ];
        for (name, help, metric) in all {
            metric.register(r, name, help);
        }
        let queue = [
            (
                "wasmhook_queue_awaiting_pipeline",
                "Events waiting for the pipeline",
            ),
            (
                "wasmhook_queue_pending_deliveries",
                "Deliveries due or scheduled for retry",
            ),
            ("wasmhook_queue_in_flight", "Delivery attempts under way"),
            ("wasmhook_queue_dead", "Dead deliveries kept for retry"),
            (
                "wasmhook_queue_failed_routes",
                "Failed (event, route) pairs kept for re-running",
            ),
            (
                "wasmhook_queue_capacity",
                "Items the queue holds before ingest answers 503",
            ),
        ];
        for ((name, help), (gauge, _)) in queue.into_iter().zip(&s.queue) {
            r.register(name, help, gauge.clone());
        }
        s
    }
}

/// A metric that can go in the registry (each is a handle to shared state).
trait Reg {
    fn register(&self, r: &mut Registry, name: &str, help: &str);
}

impl<M> Reg for M
where
    M: prometheus_client::registry::Metric + Clone,
{
    fn register(&self, r: &mut Registry, name: &str, help: &str) {
        r.register(name, help, self.clone());
    }
}
