//! Counters for `GET /metrics`, in the Prometheus text format, and the
//! live figures the dashboard shows: per-second activity over the last
//! hour, and call and attempt times per plugin and per target.
//!
//! Hand-rolled on purpose: a handful of counters does not need an exporter
//! stack, and the label values (source, route, plugin, target names) come from
//! the config, so their number is bounded. Every figure here is this
//! process's, since it started.

mod activity;
mod histogram;

pub use activity::{Happened, Series};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::event::now_ms;
use crate::store::{NextStep, QueueStats};
use activity::Activity;
use histogram::Histogram;

/// Calls of one plugin, or attempts on one target.
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

const HELP: &[(&str, &str)] = &[
    (
        "wasmhook_events_received_total",
        "Events accepted by ingest (answered 202).",
    ),
    (
        "wasmhook_events_untyped_total",
        "Events accepted without an event type: the source's event_type rule found none.",
    ),
    (
        "wasmhook_events_unrouted_total",
        "Events whose source had no route: kept as failed, to re-run once the config is fixed.",
    ),
    (
        "wasmhook_ingest_rejected_total",
        "Ingest requests refused, by reason.",
    ),
    (
        "wasmhook_plugin_calls_total",
        "Plugin calls, by plugin and result.",
    ),
    (
        "wasmhook_route_failures_total",
        "Events that failed on a route (kept for re-running).",
    ),
    (
        "wasmhook_route_drops_total",
        "Events a plugin dropped on a route.",
    ),
    (
        "wasmhook_delivery_attempts_total",
        "Delivery attempts, by target and result.",
    ),
    (
        "wasmhook_circuit_changes_total",
        "Targets' circuit breakers changing state (open, half_open, closed), by target and new state.",
    ),
    (
        "wasmhook_target_pauses_total",
        "Targets paused (by an operator, or by a 410 Gone).",
    ),
];

#[derive(Debug, Default)]
pub struct Metrics {
    // std mutexes: each is held for one update or one read, never across
    // an await.
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    plugins: Mutex<BTreeMap<String, Timed>>,
    targets: Mutex<BTreeMap<String, Timed>>,
    activity: Mutex<Activity>,
}

impl Metrics {
    fn inc(&self, name: &'static str, labels: &[(&str, &str)]) {
        let mut rendered = String::new();
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                rendered.push(',');
            }
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(rendered, "{k}=\"{v}\"");
        }
        *self
            .counters
            .lock()
            .expect("metrics lock poisoned")
            .entry((name, rendered))
            .or_default() += 1;
    }

    pub fn event_received(&self, source: &str) {
        self.inc("wasmhook_events_received_total", &[("source", source)]);
        self.happened(Happened::EventIn);
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

    pub fn event_untyped(&self, source: &str) {
        self.inc("wasmhook_events_untyped_total", &[("source", source)]);
    }

    pub fn event_unrouted(&self, source: &str) {
        self.inc("wasmhook_events_unrouted_total", &[("source", source)]);
    }

    pub fn ingest_rejected(&self, source: &str, reason: &str) {
        self.inc(
            "wasmhook_ingest_rejected_total",
            &[("source", source), ("reason", reason)],
        );
    }

    /// A finished call: `result` is `emit`, `drop` or the error's kind.
    pub fn plugin_call(&self, plugin: &str, result: &str, took: Duration) {
        self.inc(
            "wasmhook_plugin_calls_total",
            &[("plugin", plugin), ("result", result)],
        );
        let ok = matches!(result, "emit" | "drop");
        record_timed(&self.plugins, plugin, ok, took);
    }

    pub fn route_failed(&self, route: &str) {
        self.inc("wasmhook_route_failures_total", &[("route", route)]);
    }

    pub fn route_dropped(&self, route: &str) {
        self.inc("wasmhook_route_drops_total", &[("route", route)]);
    }

    pub fn attempt(&self, target: &str, next: NextStep, took: Duration) {
        let delivered = next == NextStep::Delivered;
        record_timed(&self.targets, target, delivered, took);
        self.happened(if delivered {
            Happened::Delivered
        } else {
            Happened::Failed
        });
        let r = match next {
            NextStep::Delivered => "delivered",
            NextStep::Retry { .. } => "retry",
            NextStep::Dead => "dead",
        };
        self.inc(
            "wasmhook_delivery_attempts_total",
            &[("target", target), ("result", r)],
        );
    }

    pub fn circuit_changed(&self, target: &str, to: crate::store::CircuitState) {
        self.inc(
            "wasmhook_circuit_changes_total",
            &[("target", target), ("state", to.as_str())],
        );
    }

    pub fn target_paused(&self, target: &str) {
        self.inc("wasmhook_target_pauses_total", &[("target", target)]);
    }

    /// The Prometheus text exposition of every counter plus the queue gauges.
    pub fn render(&self, stats: &QueueStats) -> String {
        let counters = self.counters.lock().expect("metrics lock poisoned");
        let mut out = String::new();
        for (name, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((_, labels), value) in counters
                .range((*name, String::new())..)
                .take_while(|((n, _), _)| n == name)
            {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        for (name, value, help) in [
            (
                "wasmhook_queue_awaiting_pipeline",
                stats.awaiting_pipeline,
                "Events waiting for the pipeline.",
            ),
            (
                "wasmhook_queue_pending_deliveries",
                stats.pending_deliveries,
                "Deliveries due or scheduled for retry.",
            ),
            (
                "wasmhook_queue_in_flight",
                stats.in_flight,
                "Delivery attempts under way.",
            ),
            (
                "wasmhook_queue_dead",
                stats.dead,
                "Dead deliveries kept for retry.",
            ),
            (
                "wasmhook_queue_failed_routes",
                stats.failed_routes,
                "Failed (event, route) pairs kept for re-running.",
            ),
            (
                "wasmhook_queue_capacity",
                stats.capacity,
                "Items the queue holds before ingest answers 503.",
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
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
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_escaped_labels() {
        let m = Metrics::default();
        m.event_received("github");
        m.event_received("github");
        m.plugin_call("a\"b", "ok", Duration::from_millis(1));
        let text = m.render(&QueueStats::default());
        assert!(
            text.contains("wasmhook_events_received_total{source=\"github\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("wasmhook_plugin_calls_total{plugin=\"a\\\"b\",result=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE wasmhook_queue_dead gauge\nwasmhook_queue_dead 0\n"));
    }

    #[test]
    fn calls_and_attempts_are_summed_per_name() {
        let m = Metrics::default();
        m.plugin_call("redact", "emit", Duration::from_millis(2));
        m.plugin_call("redact", "drop", Duration::from_millis(2));
        m.plugin_call("redact", "timeout", Duration::from_millis(100));
        m.attempt("ci", NextStep::Delivered, Duration::from_millis(5));
        m.attempt("ci", NextStep::Dead, Duration::from_millis(5));
        let p = &m.plugin_summaries()["redact"];
        assert_eq!((p.total, p.failed), (3, 1));
        assert!(p.p99_ms.unwrap() >= 100.0, "{p:?}");
        let t = &m.target_summaries()["ci"];
        assert_eq!(t.success_rate, Some(0.5));
        let last = m.activity(2);
        assert_eq!(last.delivered.len(), 2);
    }
}
