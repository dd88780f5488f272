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
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::admin::{authorized, unavailable};
use super::response::ErrorBody;
use crate::metrics::{Series, Snapshot, TargetGauges, TimedSummary};
use crate::plugin::PluginStatus;
use crate::store::{CircuitState, Paused, QueueStats};

/// Seconds of activity the overview's chart shows.
const CHART_SECONDS: usize = 3600;

/// `GET /api/overview`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// This node's activity per second over the last hour.
    #[schema(value_type = ActivitySeries)]
    series: Series,
    last_hour: LastHour,
    /// As `/readyz` shows it.
    queue: QueueStats,
    targets: Vec<TargetBacklog>,
    /// As `GET /api/plugins` shows them.
    plugins: Vec<PluginView>,
}

/// What `crate::metrics::Series` serializes to (the metrics module keeps no
/// OpenAPI types; a test checks that the two agree).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ActivitySeries {
    /// The second (since the epoch) the series ends at, exclusive.
    end: u64,
    step_seconds: u64,
    /// Per step, oldest first.
    events_in: Vec<u32>,
    delivered: Vec<u32>,
    /// Attempts that did not deliver (to be retried, or dead).
    failed: Vec<u32>,
}

/// This node's sums over the last hour.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastHour {
    events_in: u64,
    delivered: u64,
    failed_attempts: u64,
    /// Failed attempts over all attempts; `null` before any attempt.
    failure_rate: Option<f64>,
}

/// A target's work waiting, for the overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetBacklog {
    target: String,
    /// Pending and retrying deliveries.
    backlog: u64,
    in_flight: u64,
    dead: u64,
}

/// `GET /api/overview`: activity per second over the last hour, failure
/// rate, backlog per target, and how each plugin is doing.
#[utoipa::path(
    get,
    path = "/api/overview",
    tag = "admin",
    summary = "What the dashboard's overview shows",
    description = "Activity per second over the last hour and its sums (this node's), the \
        queue (the whole store's), the backlog per target, and every plugin.",
    responses(
        (status = 200, description = "The overview", body = Overview),
        (status = 503, description = "The store is unavailable; retry shortly", body = ErrorBody),
    ),
)]
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
    let targets = state
        .live
        .load()
        .targets
        .iter()
        .map(|t| {
            let c = counts.get(&t.name).cloned().unwrap_or_default();
            TargetBacklog {
                target: t.name.clone(),
                backlog: c.pending + c.retrying,
                in_flight: c.in_flight,
                dead: c.dead,
            }
        })
        .collect();
    Json(Overview {
        series,
        last_hour: LastHour {
            events_in,
            delivered,
            failed_attempts: failed,
            failure_rate: (attempts > 0).then(|| failed as f64 / attempts as f64),
        },
        queue,
        targets,
        plugins: plugin_views(&state),
    })
    .into_response()
}

/// A plugin file's status, with this node's calls to it since it started.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginView {
    #[serde(flatten)]
    status: PluginStatus,
    calls: u64,
    /// Calls that failed (a trap, a timeout, an error).
    errors: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// `GET /api/plugins`' answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    plugins: Vec<PluginView>,
}

/// `GET /api/plugins`: each plugin file's status, with its calls so far.
#[utoipa::path(
    get,
    path = "/api/plugins",
    tag = "plugins",
    summary = "List plugin files",
    description = "Every plugin file: its loaded version, where it came from, why its last \
        load failed or was rolled back, what built it, its footprint, and this node's calls.",
    responses((status = 200, description = "The plugins", body = PluginList)),
)]
pub async fn plugins(State(state): State<AppState>, headers: HeaderMap) -> Response {
    authorized!(state, headers);
    Json(PluginList {
        plugins: plugin_views(&state),
    })
    .into_response()
}

fn plugin_views(state: &AppState) -> Vec<PluginView> {
    let calls = state.metrics.plugin_summaries();
    state
        .registry
        .statuses()
        .into_iter()
        .map(|status| {
            let c = calls.get(&status.name).cloned().unwrap_or_default();
            PluginView {
                status,
                calls: c.total,
                errors: c.failed,
                p50_ms: c.p50_ms,
                p99_ms: c.p99_ms,
            }
        })
        .collect()
}

/// `GET /api/targets`' answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetList {
    targets: Vec<TargetView>,
}

/// `GET /api/targets`: every configured target, its URL with credentials
/// masked, whether it is paused or its circuit open, its work waiting, and
/// how its attempts went.
#[utoipa::path(
    get,
    path = "/api/targets",
    tag = "targets",
    summary = "List targets",
    description = "Every configured target: its URL with credentials masked, whether it is \
        paused or its circuit open, its work waiting (the whole store's), and how this \
        node's attempts went.",
    responses(
        (status = 200, description = "The targets", body = TargetList),
        (status = 503, description = "The store is unavailable; retry shortly", body = ErrorBody),
    ),
)]
pub async fn targets(State(state): State<AppState>, headers: HeaderMap) -> Response {
    authorized!(state, headers);
    let config = state.live.load();
    let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
    match target_views(&state, &names).await {
        Ok(targets) => Json(TargetList { targets }).into_response(),
        Err(e) => unavailable(e),
    }
}

/// The gauges `/metrics` shows: read from the store at most four times a
/// second, however often it is scraped. A count the store could not give
/// is `None` (the exposition then keeps the last one, and says the store is
/// down).
pub async fn gauges(state: &AppState) -> Snapshot {
    let (queue, targets) = tokio::join!(
        state.queue_stats(),
        state.target_gauges.get(|| target_gauges(state))
    );
    let plugins_loaded = state
        .registry
        .statuses()
        .iter()
        .filter(|p| p.version.is_some())
        .count();
    Snapshot {
        queue: queue.ok(),
        targets: targets.ok(),
        plugins_loaded,
    }
}

async fn target_gauges(state: &AppState) -> Result<Vec<TargetGauges>, crate::store::StoreError> {
    let (counts, controls) =
        tokio::try_join!(state.store.target_counts(), state.store.target_controls())?;
    let config = state.live.load();
    Ok(config
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
        .collect())
}

/// Whether attempts to a target go.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    Active,
    /// By an operator or a `410 Gone`: see `paused`.
    Paused,
    /// The circuit is open: attempts wait for the next probe.
    Open,
    /// A probe is under way.
    HalfOpen,
}

/// A target as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetView {
    name: String,
    /// The user name, the password and every query value masked as `***`.
    url: String,
    state: TargetState,
    /// Why and when it was paused; `null` when it is not.
    paused: Option<Paused>,
    /// `closed`, `open`, `half_open`, or `off` (`circuit = false`).
    #[schema(example = "closed")]
    circuit: &'static str,
    /// Failed attempts in a row.
    failures: u32,
    /// While the circuit is open (else `null`): when it opened (ms since the epoch).
    opened_at: Option<u64>,
    /// While the circuit is open: when the next probe may go (ms since the epoch).
    next_probe_at: Option<u64>,
    /// While the circuit is open: the wait before the next probe.
    cool_down_ms: Option<u64>,
    /// The target's circuit settings; `null` with `circuit = false`.
    circuit_config: Option<CircuitConfig>,
    /// Whether deliveries are signed.
    signed: bool,
    max_in_flight: usize,
    in_flight: u64,
    pending: u64,
    retrying: u64,
    /// `pending` + `retrying`.
    backlog: u64,
    dead: u64,
    /// This node's attempts since it started.
    attempts: u64,
    failed_attempts: u64,
    /// `null` before any attempt.
    success_rate: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// A target's circuit breaker settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct CircuitConfig {
    /// Failed attempts in a row that open it.
    failures: u32,
    cool_down_ms: u64,
    max_cool_down_ms: u64,
}

/// What the admin API shows of each of the targets `names` (configured
/// ones; others are left out).
pub async fn target_views(
    state: &AppState,
    names: &[&str],
) -> Result<Vec<TargetView>, crate::store::StoreError> {
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
                (Some(_), _) => TargetState::Paused,
                (None, Some(CircuitState::Open)) => TargetState::Open,
                (None, Some(CircuitState::HalfOpen)) => TargetState::HalfOpen,
                (None, _) => TargetState::Active,
            };
            TargetView {
                name: t.name.clone(),
                url: masked_url(&t.url),
                state,
                paused: control.paused,
                circuit: circuit.map_or("off", CircuitState::as_str),
                failures: control.failures,
                opened_at: if open { control.opened_at } else { None },
                next_probe_at: if open { control.probe_at } else { None },
                cool_down_ms: if open {
                    Some(control.cool_down_ms)
                } else {
                    None
                },
                circuit_config: t.circuit.map(|c| CircuitConfig {
                    failures: c.failures,
                    cool_down_ms: c.cool_down.as_millis() as u64,
                    max_cool_down_ms: c.max_cool_down.as_millis() as u64,
                }),
                signed: !t.signing_keys.is_empty(),
                max_in_flight: t.max_in_flight,
                in_flight: c.in_flight,
                pending: c.pending,
                retrying: c.retrying,
                backlog: c.pending + c.retrying,
                dead: c.dead,
                attempts: a.total,
                failed_attempts: a.failed,
                success_rate: a.success_rate,
                p50_ms: a.p50_ms,
                p99_ms: a.p99_ms,
            }
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
