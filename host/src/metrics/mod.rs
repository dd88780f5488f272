//! What the router counts, for `GET /metrics` and the dashboard.
//!
//! The exposition is `prometheus-client`'s (the OpenMetrics text format):
//! counters, histograms, and gauges read from the store at scrape time.
//! The label values (source, route, plugin, target names) come from the
//! config, so their number is bounded. Every figure is this process's,
//! since it started.
//!
//! Each outcome is one call here that both logs it and counts it (the
//! methods below, and [`Ingested`], [`Attempted`]), as Vector's `emit!`
//! does, so a log line and its counter cannot drift apart.
//!
//! Beside the exposition, the dashboard's figures: per-second activity over
//! the last hour, and call and attempt times per plugin and per target.

mod activity;
mod histogram;
mod outcomes;

pub use activity::{Happened, Series};
pub use outcomes::{Attempted, Failure, Ingested, Refusal};
use outcomes::{DISPATCH, PIPELINE};

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram as Buckets, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::event::now_ms;
use crate::store::{CircuitState, NextStep, QueueStats, TargetControl};
use activity::Activity;
use histogram::Histogram;

/// Calls of one plugin, or attempts on one target, for the dashboard.
#[derive(Debug, Default)]
struct Timed {
    ok: u64,
    failed: u64,
    took: Histogram,
}

impl Timed {
    fn record(&mut self, ok: bool, took: Duration) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        self.took.record(took);
    }

    fn summary(&self) -> TimedSummary {
        let total = self.ok + self.failed;
        TimedSummary {
            total,
            failed: self.failed,
            success_rate: (total > 0).then(|| self.ok as f64 / total as f64),
            p50_ms: self.took.quantile_ms(0.5),
            p99_ms: self.took.quantile_ms(0.99),
        }
    }
}

/// How one plugin's calls, or one target's attempts, went.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TimedSummary {
    pub total: u64,
    /// Plugin calls that failed (a trap, a timeout, an error); attempts
    /// that did not deliver.
    pub failed: u64,
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BySource {
    source: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByReason {
    source: Name,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByPlugin {
    plugin: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByPluginResult {
    plugin: Name,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByRoute {
    route: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByTarget {
    target: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByTargetResult {
    target: Name,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByTargetClass {
    target: Name,
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByTargetState {
    target: Name,
    state: &'static str,
}

/// A name (of a source, route, plugin or target) as a label value,
/// escaped as the text format requires: the crate writes values as given.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Name(String);

impl Name {
    fn of(name: &str) -> Self {
        Name(name.to_string())
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

/// What one scrape reads from outside this module: the store's counts and
/// the loaded plugins. `None`: the store could not be read; those gauges
/// keep their last values, and `wasmhook_store_up` reads 0.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub queue: Option<QueueStats>,
    pub targets: Option<Vec<TargetGauges>>,
    pub plugins_loaded: usize,
}

/// One configured target's gauges.
#[derive(Debug, Clone, Default)]
pub struct TargetGauges {
    pub name: String,
    /// Deliveries pending or waiting to retry.
    pub backlog: u64,
    pub in_flight: u64,
    pub dead: u64,
    pub paused: bool,
    /// `None` when the target has no circuit breaker.
    pub circuit: Option<CircuitState>,
}

/// Every series `GET /metrics` serves.
struct Exposed {
    received: Family<BySource, Counter>,
    duplicates: Family<BySource, Counter>,
    rejected: Family<ByReason, Counter>,
    untyped: Family<BySource, Counter>,
    unrouted: Family<BySource, Counter>,
    ingest_seconds: Timings<BySource>,
    plugin_calls: Family<ByPluginResult, Counter>,
    plugin_seconds: Timings<ByPlugin>,
    route_failures: Family<ByRoute, Counter>,
    route_drops: Family<ByRoute, Counter>,
    attempts: Family<ByTargetResult, Counter>,
    attempt_classes: Family<ByTargetClass, Counter>,
    attempt_seconds: Timings<ByTarget>,
    delivery_seconds: Timings<ByTarget>,
    circuit_changes: Family<ByTargetState, Counter>,
    pauses: Family<ByTarget, Counter>,
    commit_seconds: Buckets,
    commit_jobs: Buckets,
    // Gauges, set from a [`Snapshot`] at each scrape.
    queue: [(Gauge, QueueCount); 6],
    backlog: Family<ByTarget, Gauge>,
    target_in_flight: Family<ByTarget, Gauge>,
    target_dead: Family<ByTarget, Gauge>,
    target_paused: Family<ByTarget, Gauge>,
    circuit_open: Family<ByTarget, Gauge>,
    plugins_loaded: Gauge,
    store_up: Gauge,
}

impl Exposed {
    fn registered(r: &mut Registry) -> Self {
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

pub struct Metrics {
    registry: Registry,
    series: Exposed,
    // std mutexes: each is held for one update or one read, never across
    // an await.
    plugins: Mutex<BTreeMap<String, Timed>>,
    targets: Mutex<BTreeMap<String, Timed>>,
    activity: Mutex<Activity>,
    rendering: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let series = Exposed::registered(&mut registry);
        Metrics {
            registry,
            series,
            plugins: Mutex::default(),
            targets: Mutex::default(),
            activity: Mutex::default(),
            rendering: Mutex::default(),
        }
    }
}

impl Metrics {
    /// An ingest request answered: logs and counts it, with how long it took.
    pub fn ingested(&self, source: &str, outcome: &Ingested, took: Duration) {
        outcome.log(source);
        let s = &self.series;
        let by_source = || BySource {
            source: Name::of(source),
        };
        match outcome {
            Ingested::New { untyped, .. } => {
                s.received.get_or_create(&by_source()).inc();
                if *untyped {
                    s.untyped.get_or_create(&by_source()).inc();
                }
                self.happened(Happened::EventIn);
            }
            Ingested::Duplicate { .. } => {
                s.duplicates.get_or_create(&by_source()).inc();
            }
            Ingested::Refused(why) => {
                s.rejected
                    .get_or_create(&ByReason {
                        source: Name::of(source),
                        reason: why.reason(),
                    })
                    .inc();
            }
        }
        s.ingest_seconds
            .get_or_create(&by_source())
            .observe(took.as_secs_f64());
    }

    fn happened(&self, what: Happened) {
        self.activity
            .lock()
            .expect("metrics lock poisoned")
            .record(now_ms() / 1000, what);
    }

    /// The last `seconds` of activity (at most an hour).
    pub fn activity(&self, seconds: usize) -> Series {
        self.activity
            .lock()
            .expect("metrics lock poisoned")
            .series(now_ms() / 1000, seconds)
    }

    /// Each plugin's calls so far.
    pub fn plugin_summaries(&self) -> BTreeMap<String, TimedSummary> {
        summaries(&self.plugins)
    }

    /// Each target's attempts so far.
    pub fn target_summaries(&self) -> BTreeMap<String, TimedSummary> {
        summaries(&self.targets)
    }

    /// An event whose source has no route: logs `reason` and counts it.
    pub fn event_unrouted(&self, source: &str, reason: &str) {
        tracing::warn!(target: PIPELINE, "{reason}");
        self.series
            .unrouted
            .get_or_create(&BySource {
                source: Name::of(source),
            })
            .inc();
    }

    /// A plugin call that emitted its outputs. (A drop is
    /// [`Metrics::plugin_dropped`], a failure [`Metrics::plugin_failed`].)
    pub fn plugin_emitted(&self, plugin: &str, took: Duration) {
        self.count_call(plugin, "emit", true, took);
    }

    /// A plugin that dropped the event on a route: logs the reason (at
    /// debug: drops are a plugin's ordinary work) and counts the call and
    /// the drop.
    pub fn plugin_dropped(&self, route: &str, plugin: &str, reason: &str, took: Duration) {
        tracing::debug!(target: PIPELINE, route = %route, plugin = %plugin, "dropped: {reason}");
        self.count_call(plugin, "drop", true, took);
        self.series
            .route_drops
            .get_or_create(&ByRoute {
                route: Name::of(route),
            })
            .inc();
    }

    /// A plugin call that failed, by the error's kind (logged with the
    /// route's failure, [`Metrics::route_failed`]).
    pub fn plugin_failed(&self, plugin: &str, kind: &'static str, took: Duration) {
        self.count_call(plugin, kind, false, took);
    }

    fn count_call(&self, plugin: &str, result: &'static str, ok: bool, took: Duration) {
        let s = &self.series;
        s.plugin_calls
            .get_or_create(&ByPluginResult {
                plugin: Name::of(plugin),
                result,
            })
            .inc();
        s.plugin_seconds
            .get_or_create(&ByPlugin {
                plugin: Name::of(plugin),
            })
            .observe(took.as_secs_f64());
        record_timed(&self.plugins, plugin, ok, took);
    }

    /// A route that failed on an event (kept for re-running): logs why and
    /// counts it.
    pub fn route_failed(&self, route: &str, plugin: Option<&str>, reason: &str) {
        tracing::warn!(target: PIPELINE, route = %route, plugin = plugin.unwrap_or(""), "route failed: {reason}");
        self.series
            .route_failures
            .get_or_create(&ByRoute {
                route: Name::of(route),
            })
            .inc();
    }

    /// A delivery attempt made: logs and counts it.
    pub fn attempted(&self, a: &Attempted<'_>) {
        a.log();
        let s = &self.series;
        let delivered = a.next == NextStep::Delivered;
        record_timed(&self.targets, a.target, delivered, a.took);
        self.happened(if delivered {
            Happened::Delivered
        } else {
            Happened::Failed
        });
        let by_target = || ByTarget {
            target: Name::of(a.target),
        };
        s.attempts
            .get_or_create(&ByTargetResult {
                target: Name::of(a.target),
                result: a.result(),
            })
            .inc();
        s.attempt_classes
            .get_or_create(&ByTargetClass {
                target: Name::of(a.target),
                class: a.class(),
            })
            .inc();
        s.attempt_seconds
            .get_or_create(&by_target())
            .observe(a.took.as_secs_f64());
        if delivered {
            let waited = now_ms().saturating_sub(a.received_at);
            s.delivery_seconds
                .get_or_create(&by_target())
                .observe(waited as f64 / 1000.0);
        }
    }

    /// A target's pause or circuit changed from `before` to `after` (as
    /// the store saw them: of several nodes, the one that made a change
    /// reports it): logs and counts it.
    pub fn control_changed(&self, target: &str, before: &TargetControl, after: &TargetControl) {
        let by_target = || ByTarget {
            target: Name::of(target),
        };
        match (&before.paused, &after.paused) {
            (None, Some(paused)) => {
                tracing::warn!(target: DISPATCH, target = %target, "target paused: {}; POST /api/targets/{target}/resume to resume", paused.reason);
                self.series.pauses.get_or_create(&by_target()).inc();
            }
            (Some(_), None) => tracing::info!(target: DISPATCH, target = %target, "target resumed"),
            _ => {}
        }
        if before.circuit == after.circuit && before.probe_at == after.probe_at {
            return;
        }
        let in_s = |c: &TargetControl| c.cool_down_ms as f64 / 1000.0;
        match (before.circuit, after.circuit) {
            (CircuitState::Closed, CircuitState::Open) => tracing::warn!(
                target: DISPATCH,
                target = %target,
                "circuit opened after {} failed attempts in a row: attempts stop; a probe goes in {}s",
                after.failures,
                in_s(after)
            ),
            (_, CircuitState::Open) => tracing::warn!(
                target: DISPATCH,
                target = %target,
                "the probe failed: the circuit stays open; the next probe goes in {}s",
                in_s(after)
            ),
            (_, CircuitState::HalfOpen) => tracing::info!(
                target: DISPATCH,
                target = %target,
                "circuit half-open: one delivery goes as a probe"
            ),
            (_, CircuitState::Closed) => tracing::info!(
                target: DISPATCH,
                target = %target,
                "circuit closed: deliveries resume"
            ),
        }
        if before.circuit != after.circuit {
            self.series
                .circuit_changes
                .get_or_create(&ByTargetState {
                    target: Name::of(target),
                    state: after.circuit.as_str(),
                })
                .inc();
        }
    }

    /// What the store's commits report: handed to the store when it opens.
    pub fn commits(&self) -> Commits {
        Commits {
            seconds: self.series.commit_seconds.clone(),
            jobs: self.series.commit_jobs.clone(),
        }
    }

    /// The exposition, in the OpenMetrics text format: every counter and
    /// histogram, and the gauges from `now`.
    pub fn render(&self, now: &Snapshot) -> String {
        // One scrape at a time: each sets the gauges, then encodes them.
        let _one = self.rendering.lock().expect("metrics lock poisoned");
        let s = &self.series;
        if let Some(queue) = &now.queue {
            for (gauge, read) in &s.queue {
                gauge.set(read(queue) as i64);
            }
        }
        if let Some(targets) = &now.targets {
            // Targets removed from the config drop out of the gauges.
            for family in [
                &s.backlog,
                &s.target_in_flight,
                &s.target_dead,
                &s.target_paused,
                &s.circuit_open,
            ] {
                family.clear();
            }
            for t in targets {
                let by = ByTarget {
                    target: Name::of(&t.name),
                };
                s.backlog.get_or_create(&by).set(t.backlog as i64);
                s.target_in_flight
                    .get_or_create(&by)
                    .set(t.in_flight as i64);
                s.target_dead.get_or_create(&by).set(t.dead as i64);
                s.target_paused.get_or_create(&by).set(i64::from(t.paused));
                let open = t.circuit.is_some_and(|c| c != CircuitState::Closed);
                s.circuit_open.get_or_create(&by).set(i64::from(open));
            }
        }
        let up = now.queue.is_some() && now.targets.is_some();
        s.store_up.set(i64::from(up));
        s.plugins_loaded.set(now.plugins_loaded as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The store's side of the metrics: how long each commit took and how many
/// operations it carried. Cheap to clone; each clone feeds the same series.
#[derive(Clone, Debug)]
pub struct Commits {
    seconds: Buckets,
    jobs: Buckets,
}

impl Commits {
    /// A commit of `jobs` operations, `took` from its first statement until
    /// it was durable.
    pub fn observe(&self, jobs: usize, took: Duration) {
        self.seconds.observe(took.as_secs_f64());
        self.jobs.observe(jobs as f64);
    }
}

fn record_timed(map: &Mutex<BTreeMap<String, Timed>>, name: &str, ok: bool, took: Duration) {
    let mut map = map.lock().expect("metrics lock poisoned");
    // Names come from the config: the map stays small. No allocation
    // once a name is in.
    match map.get_mut(name) {
        Some(t) => t.record(ok, took),
        None => map.entry(name.to_string()).or_default().record(ok, took),
    }
}

fn summaries(map: &Mutex<BTreeMap<String, Timed>>) -> BTreeMap<String, TimedSummary> {
    map.lock()
        .expect("metrics lock poisoned")
        .iter()
        .map(|(name, t)| (name.clone(), t.summary()))
        .collect()
}

#[cfg(test)]
mod tests;
