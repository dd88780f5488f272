//! What the dashboard's overview, plugins and targets pages show: this
//! process's live figures (`metrics`) beside the store's counts.
//!
//! `GET /api/overview`, `GET /api/targets` and `GET /api/plugins`. The
//! counts of work waiting are the whole store's (every node's, on
//! PostgreSQL); rates and latencies are this node's, since it started.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::admin::{authorized, unavailable};
use crate::metrics::{Snapshot, TargetGauges, TimedSummary};
use crate::store::CircuitState;

/// Seconds of activity the overview's chart shows.
const CHART_SECONDS: usize = 3600;

/// `GET /api/overview`: activity per second over the last hour, failure
/// rate, backlog per target, and how each plugin is doing.
pub async fn overview(State(state): State<AppState>, headers: HeaderMap) -> Response {
    authorized!(state, headers);
    let queue = match state.queue_stats().await {
        Ok(q) => q,
        Err(e) => return unavailable(e),
    };
    let counts = match state.store.target_counts().await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let series = state.metrics.activity(CHART_SECONDS);
    let delivered: u64 = series.delivered.iter().map(|&n| u64::from(n)).sum();
    let failed: u64 = series.failed.iter().map(|&n| u64::from(n)).sum();
    let events_in: u64 = series.events_in.iter().map(|&n| u64::from(n)).sum();
    let attempts = delivered + failed;
    let backlog: Vec<Value> = state
        .live
        .load()
        .targets
        .iter()
        .map(|t| {
            let c = counts.get(&t.name).cloned().unwrap_or_default();
            json!({
                "target": t.name,
                "backlog": c.pending + c.retrying,
                "in_flight": c.in_flight,
                "dead": c.dead,
            })
        })
        .collect();
    Json(json!({
        "series": series,
        "last_hour": {
            "events_in": events_in,
            "delivered": delivered,
            "failed_attempts": failed,
            "failure_rate": (attempts > 0).then(|| failed as f64 / attempts as f64),
        },
        "queue": queue,
        "targets": backlog,
        "plugins": plugins_json(&state),
    }))
    .into_response()
}

/// `GET /api/plugins`: each plugin file's status, with its calls so far.
pub async fn plugins(State(state): State<AppState>, headers: HeaderMap) -> Response {
    authorized!(state, headers);
    Json(json!({ "plugins": plugins_json(&state) })).into_response()
}

fn plugins_json(state: &AppState) -> Vec<Value> {
    let calls = state.metrics.plugin_summaries();
    state
        .registry
        .statuses()
        .into_iter()
        .map(|status| {
            let mut v = serde_json::to_value(&status).unwrap_or_default();
            let c = calls.get(&status.name).cloned().unwrap_or_default();
            v["calls"] = json!(c.total);
            v["errors"] = json!(c.failed);
            v["p50_ms"] = json!(c.p50_ms);
            v["p99_ms"] = json!(c.p99_ms);
            v
        })
        .collect()
}

/// `GET /api/targets`: every configured target, its URL with credentials
/// masked, whether it is paused or its circuit open, its work waiting, and
/// how its attempts went.
pub async fn targets(State(state): State<AppState>, headers: HeaderMap) -> Response {
    authorized!(state, headers);
    let config = state.live.load();
    let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
    match target_views(&state, &names).await {
        Ok(targets) => Json(json!({ "targets": targets })).into_response(),
        Err(e) => unavailable(e),
    }
}

/// The gauges `/metrics` shows, read now. Counters still render when the
/// store cannot be read; the gauges it feeds then read 0.
pub async fn gauges(state: &AppState) -> Snapshot {
    let (queue, counts, controls) = tokio::join!(
        state.queue_stats(),
        state.store.target_counts(),
        state.store.target_controls()
    );
    let (counts, controls) = (counts.unwrap_or_default(), controls.unwrap_or_default());
    let config = state.live.load();
    let targets = config
        .targets
        .iter()
        .map(|t| {
            let c = counts.get(&t.name).cloned().unwrap_or_default();
            let control = controls.get(&t.name).cloned().unwrap_or_default();
            TargetGauges {
                name: t.name.clone(),
                backlog: c.pending + c.retrying,
                in_flight: c.in_flight,
                dead: c.dead,
                paused: control.paused.is_some(),
                circuit: t.circuit.map(|_| control.circuit),
            }
        })
        .collect();
    let plugins_loaded = state
        .registry
        .statuses()
        .iter()
        .filter(|p| p.version.is_some())
        .count();
    Snapshot {
        queue: queue.unwrap_or_default(),
        targets,
        plugins_loaded,
    }
}

/// What the admin API shows of each of the targets `names` (configured
/// ones; others are left out).
pub async fn target_views(
    state: &AppState,
    names: &[&str],
) -> Result<Vec<Value>, crate::store::StoreError> {
    let counts = state.store.target_counts().await?;
    // The store's records, not this node's copy: another node's change
    // shows at once.
    let controls = state.store.target_controls().await?;
    let attempts = state.metrics.target_summaries();
    let config = state.live.load();
    Ok(names
        .iter()
        .filter_map(|name| config.target(name))
        .map(|t| {
            let c = counts.get(&t.name).cloned().unwrap_or_default();
            let a: TimedSummary = attempts.get(&t.name).cloned().unwrap_or_default();
            let control = controls.get(&t.name).cloned().unwrap_or_default();
            let circuit = t.circuit.map(|_| control.circuit);
            let open = circuit.is_some_and(|c| c != CircuitState::Closed);
            let state = match (&control.paused, circuit) {
                (Some(_), _) => "paused",
                (None, Some(CircuitState::Open)) => "open",
                (None, Some(CircuitState::HalfOpen)) => "half_open",
                (None, _) => "active",
            };
            json!({
                "name": t.name,
                "url": masked_url(&t.url),
                "state": state,
                "paused": control.paused.as_ref().map(|p| json!({ "reason": p.reason, "at": p.at })),
                "circuit": circuit.map_or("off", CircuitState::as_str),
                "failures": control.failures,
                "opened_at": if open { control.opened_at } else { None },
                "next_probe_at": if open { control.probe_at } else { None },
                "cool_down_ms": if open { Some(control.cool_down_ms) } else { None },
                "circuit_config": t.circuit.map(|c| json!({
                    "failures": c.failures,
                    "cool_down_ms": c.cool_down.as_millis() as u64,
                    "max_cool_down_ms": c.max_cool_down.as_millis() as u64,
                })),
                "signed": !t.signing_keys.is_empty(),
                "max_in_flight": t.max_in_flight,
                "in_flight": c.in_flight,
                "pending": c.pending,
                "retrying": c.retrying,
                "backlog": c.pending + c.retrying,
                "dead": c.dead,
                "attempts": a.total,
                "failed_attempts": a.failed,
                "success_rate": a.success_rate,
                "p50_ms": a.p50_ms,
                "p99_ms": a.p99_ms,
            })
        })
        .collect())
}

/// The URL as an operator may see it: the user name, the password and
/// every query value (where API keys and tokens go) replaced by `***`.
/// The path is kept: it names the endpoint (a secret in the path, as in
/// some chat webhooks, shows; the dashboard's users hold the admin token,
/// which reads every event anyway).
fn masked_url(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    if !url.username().is_empty() {
        let _ = url.set_username("***");
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), "***")));
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_masked() {
        let url = |s: &str| masked_url(&reqwest::Url::parse(s).unwrap());
        assert_eq!(
            url("https://bob:hunter2@example.test/hook?token=abc&v=2"),
            "https://***:***@example.test/hook?token=***&v=***"
        );
        assert_eq!(url("http://127.0.0.1:9/x"), "http://127.0.0.1:9/x");
        assert_eq!(
            url("https://tok3n@example.test/"),
            "https://***@example.test/"
        );
    }
}
