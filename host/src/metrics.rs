//! Counters for `GET /metrics`, in the Prometheus text format.
//!
//! Hand-rolled on purpose: a handful of counters does not need an exporter
//! stack, and the label values (source, route, plugin, target names) come from
//! the config, so their number is bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::store::{NextStep, QueueStats};

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
];

#[derive(Debug, Default)]
pub struct Metrics {
    // A std mutex: held for one map update, never across an await.
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
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

    pub fn plugin_call(&self, plugin: &str, result: &str) {
        self.inc(
            "wasmhook_plugin_calls_total",
            &[("plugin", plugin), ("result", result)],
        );
    }

    pub fn route_failed(&self, route: &str) {
        self.inc("wasmhook_route_failures_total", &[("route", route)]);
    }

    pub fn route_dropped(&self, route: &str) {
        self.inc("wasmhook_route_drops_total", &[("route", route)]);
    }

    pub fn attempt(&self, target: &str, next: NextStep) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_escaped_labels() {
        let m = Metrics::default();
        m.event_received("github");
        m.event_received("github");
        m.plugin_call("a\"b", "ok");
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
}
