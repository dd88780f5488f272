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
mod exposition;
mod histogram;
mod outcomes;

pub use activity::{Happened, Series};
pub use outcomes::{Attempted, Failure, Ingested, Refusal, delivery_line_span};
use outcomes::{DISPATCH, PIPELINE};

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram as Buckets;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::event::now_ms;
use crate::store::{CircuitState, NextStep, QueueStats, TargetControl};
use activity::Activity;
use exposition::{
    ByPlugin, ByPluginResult, ByReason, ByRoute, BySource, ByTarget, ByTargetClass, ByTargetResult,
    ByTargetState, Exposed, Name,
};
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
        // One copy of the name per call; the label sets share it.
        let by_source = BySource {
            source: Name::of(source),
        };
        match outcome {
            Ingested::New { untyped, .. } => {
                s.received.get_or_create(&by_source).inc();
                if *untyped {
                    s.untyped.get_or_create(&by_source).inc();
                }
                self.happened(Happened::EventIn);
            }
            Ingested::Duplicate { .. } => {
                s.duplicates.get_or_create(&by_source).inc();
            }
            Ingested::Refused(why) => {
                s.rejected
                    .get_or_create(&ByReason {
                        source: by_source.source.clone(),
                        reason: why.reason(),
                    })
                    .inc();
            }
        }
        s.ingest_seconds
            .get_or_create(&by_source)
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
    pub fn event_unrouted(&self, event_id: &str, source: &str, reason: &str) {
        crate::telemetry::in_span(
            || event_line_span(event_id, source),
            || tracing::warn!(target: PIPELINE, "{reason}"),
        );
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
        let by_plugin = ByPlugin {
            plugin: Name::of(plugin),
        };
        s.plugin_calls
            .get_or_create(&ByPluginResult {
                plugin: by_plugin.plugin.clone(),
                result,
            })
            .inc();
        s.plugin_seconds
            .get_or_create(&by_plugin)
            .observe(took.as_secs_f64());
        record_timed(&self.plugins, plugin, ok, took);
    }

    /// A route that failed on an event (kept for re-running): logs why and
    /// counts it.
    pub fn route_failed(
        &self,
        (event_id, source): (&str, &str),
        route: &str,
        plugin: Option<&str>,
        reason: &str,
    ) {
        crate::telemetry::in_span(
            || event_line_span(event_id, source),
            || tracing::warn!(target: PIPELINE, route = %route, plugin = plugin.unwrap_or(""), "route failed: {reason}"),
        );
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
        let by_target = ByTarget {
            target: Name::of(a.target),
        };
        s.attempts
            .get_or_create(&ByTargetResult {
                target: by_target.target.clone(),
                result: a.result(),
            })
            .inc();
        s.attempt_classes
            .get_or_create(&ByTargetClass {
                target: by_target.target.clone(),
                class: a.class(),
            })
            .inc();
        s.attempt_seconds
            .get_or_create(&by_target)
            .observe(a.took.as_secs_f64());
        if delivered {
            let waited = now_ms().saturating_sub(a.received_at);
            s.delivery_seconds
                .get_or_create(&by_target)
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

/// The span a pipeline line about an event is logged in, when the one it
/// ran in (`ingest`, `pipeline`) was not made.
fn event_line_span(event_id: &str, source: &str) -> tracing::Span {
    tracing::info_span!("event", event_id = %event_id, source = %source)
}
