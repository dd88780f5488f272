//! The HTTP surface: ingest, operations endpoints and the admin API.
//!
//! Every route but the dashboard's files is registered together with its
//! OpenAPI description, from the handler's `#[utoipa::path]` (`routes!`), so
//! `GET /api/openapi.json` cannot leave a route out or describe one that is
//! not served. The dashboard's files are the one explicit exception
//! ([`undocumented`]); a test holds this file to that.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Json, Router};
use serde::Serialize;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, admin, error, openapi, overview, stream, targets, tryrun, ui};
use crate::store::QueueStats;

/// The router's HTTP app. Tests call it with `oneshot`, no socket needed.
///
/// `/healthz`, `/readyz` and `/metrics` are open: orchestrators and scrapers
/// call them without credentials, and they reveal counts, never payloads or
/// secrets. `/api/…` needs `Authorization: Bearer <server.admin_token>`, and
/// does not exist (404) when no token is configured.
pub fn app(state: AppState) -> Router {
    let (mut router, _) = documented().split_for_parts();
    // The one place a route is added without its description.
    for (path, method_router) in undocumented() {
        router = router.route(path, method_router);
    }
    router
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

/// The routes left out of the OpenAPI document: the dashboard's files,
/// which are a web page, not an API.
pub(super) fn undocumented() -> [(&'static str, MethodRouter<AppState>); 3] {
    [
        ("/ui", get(ui::root)),
        ("/ui/", get(ui::index)),
        ("/ui/{file}", get(ui::asset)),
    ]
}

/// Every route the OpenAPI document describes, each added with its
/// description in one step.
pub(super) fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(crate::ingest::ingest))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(overview::overview))
        .routes(routes!(overview::plugins))
        .routes(routes!(tryrun::run))
        .routes(routes!(overview::targets))
        .routes(routes!(stream::stream))
        .routes(routes!(admin::events))
        .routes(routes!(admin::event))
        .routes(routes!(admin::rerun_event))
        .routes(routes!(admin::deliveries))
        .routes(routes!(admin::retry_delivery))
        .routes(routes!(admin::skip_delivery))
        .routes(routes!(targets::replay_target))
        .routes(routes!(targets::pause_target))
        .routes(routes!(targets::resume_target))
}

/// `/healthz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness: the process is up",
    description = "Open (no token). Says nothing about the store: see `/readyz`.",
    responses((status = 200, description = "The process is up", body = Health)),
)]
async fn healthz() -> Response {
    Json(Health { status: "ok" }).into_response()
}

/// Whether `/readyz` says to send traffic here.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ReadyStatus {
    Ready,
    /// Shutting down: ingest answers 503.
    Draining,
    /// Ingest answers 503 until the pipeline catches up.
    #[serde(rename = "queue full")]
    QueueFull,
    #[serde(rename = "storage unavailable")]
    StorageUnavailable,
}

/// `/readyz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    status: ReadyStatus,
    /// The store's counts, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<QueueStats>,
}

impl Readiness {
    fn new(status: ReadyStatus, queue: Option<QueueStats>) -> Json<Self> {
        Json(Readiness { status, queue })
    }
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: whether ingest takes events now",
    description = "Open (no token). A load balancer should send elsewhere while this answers 503.",
    responses(
        (status = 200, description = "Ready, with the queue's counts", body = Readiness),
        (status = 503, description = "Draining, the queue is full, or the store cannot be read", body = Readiness),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Readiness::new(ReadyStatus::Draining, None),
        )
            .into_response();
    }
    match state.queue_stats().await {
        // Ingest answers 503 now: a load balancer should send elsewhere.
        Ok(stats) if stats.awaiting_pipeline >= stats.capacity => (
            StatusCode::SERVICE_UNAVAILABLE,
            Readiness::new(ReadyStatus::QueueFull, Some(stats)),
        )
            .into_response(),
        Ok(stats) => Readiness::new(ReadyStatus::Ready, Some(stats)).into_response(),
        Err(e) => {
            tracing::error!("readyz: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Readiness::new(ReadyStatus::StorageUnavailable, None),
            )
                .into_response()
        }
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "Open (no token). The OpenMetrics text format (Prometheus scrapes it as is): \
        counters, histograms, and gauges read from the store. When the store cannot be read \
        the counters and histograms still render, and the gauges read 0.",
    responses((status = 200, description = "The metrics", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")),
)]
async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&overview::gauges(&state).await);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

/// Why an admin request was refused.
pub(super) enum Denied {
    /// No admin token configured: the admin API does not exist.
    Off,
    Unauthorized,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Off => error(StatusCode::NOT_FOUND, "no such endpoint"),
            Denied::Unauthorized => error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong admin token: send Authorization: Bearer <server.admin_token>",
            ),
        }
    }
}

/// Constant-time bearer token check for the admin API.
pub(super) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Denied> {
    let config = state.live.load();
    let Some(token) = &config.server.admin_token else {
        return Err(Denied::Off);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !given.is_empty() && bool::from(given.as_bytes().ct_eq(token.expose())) {
        Ok(())
    } else {
        Err(Denied::Unauthorized)
    }
}
