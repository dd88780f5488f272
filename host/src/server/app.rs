//! The HTTP surface: ingest, operations endpoints and the admin API.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error;
use super::{AppState, admin, overview, stream, tryrun, ui};
use crate::ingest::ingest;

/// The router's HTTP app. Tests call it with `oneshot`, no socket needed.
///
/// `/healthz`, `/readyz` and `/metrics` are open: orchestrators and scrapers
/// call them without credentials, and they reveal counts, never payloads or
/// secrets. `/api/…` needs `Authorization: Bearer <server.admin_token>`, and
/// does not exist (404) when no token is configured.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/ingest/{source}", post(ingest))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/overview", get(overview::overview))
        .route("/api/plugins", get(overview::plugins))
        .route("/api/plugins/{name}/run", post(tryrun::run))
        .route("/api/targets", get(overview::targets))
        .route("/api/stream", get(stream::stream))
        .route("/api/events", get(admin::events))
        .route("/api/events/{id}", get(admin::event))
        .route("/api/events/{id}/rerun", post(admin::rerun_event))
        .route("/api/deliveries", get(admin::deliveries))
        .route("/api/deliveries/{id}/retry", post(admin::retry_delivery))
        .route("/api/deliveries/{id}/skip", post(admin::skip_delivery))
        .route("/api/targets/{name}/replay", post(admin::replay_target))
        .route("/api/targets/{name}/pause", post(admin::pause_target))
        .route("/api/targets/{name}/resume", post(admin::resume_target))
        .route("/ui", get(ui::root))
        .route("/ui/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
            .into_response();
    }
    match state.queue_stats().await {
        // Ingest answers 503 now: a load balancer should send elsewhere.
        Ok(stats) if stats.awaiting_pipeline >= stats.capacity => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "queue full", "queue": stats })),
        )
            .into_response(),
        Ok(stats) => Json(json!({ "status": "ready", "queue": stats })).into_response(),
        Err(e) => {
            tracing::error!("readyz: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "storage unavailable" })),
            )
                .into_response()
        }
    }
}

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
