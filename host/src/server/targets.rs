//! The admin API's calls on a target: replay its dead deliveries, pause
//! it, resume it. (`GET /api/targets`, which lists them, is in `overview`.)

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::admin::{authorized, unavailable};
use super::error;
use super::overview::TargetView;
use super::response::ErrorBody;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReplayParams {
    /// Only deliveries that died at or after this time (ms since the epoch).
    since: Option<u64>,
}

/// What a replay re-queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    target: String,
    /// Dead deliveries made pending again.
    requeued: usize,
}

/// `POST /api/targets/{name}/replay[?since=MS]`: re-queue the target's dead deliveries.
#[utoipa::path(
    post,
    path = "/api/targets/{name}/replay",
    tag = "targets",
    summary = "Re-queue a target's dead deliveries",
    params(("name" = String, Path, description = "The target's name"), ReplayParams),
    responses(
        (status = 202, description = "Re-queued", body = Replayed),
        (status = 400, description = "An unknown query parameter, or a `since` that is not a number", body = ErrorBody),
        (status = 404, description = "No target has this name", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry shortly", body = ErrorBody),
    ),
)]
pub async fn replay_target(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    params: Result<Query<ReplayParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    authorized!(state, headers);
    let Ok(Query(p)) = params else {
        return error(
            StatusCode::BAD_REQUEST,
            "query parameter: since (ms since the Unix epoch)",
        );
    };
    if state.live.load().target(&name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no target is named {name:?}"),
        );
    }
    match state.store.replay_target(&name, p.since).await {
        Ok(n) => (
            StatusCode::ACCEPTED,
            Json(Replayed {
                target: name,
                requeued: n,
            }),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

/// `POST /api/targets/{name}/pause`'s optional body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    /// Shown with the pause, after "paused by an operator: ".
    #[schema(example = "maintenance until 14:00")]
    reason: Option<String>,
}

/// `POST /api/targets/{name}/pause`, with an optional JSON body
/// `{"reason": "…"}`: no attempt to the target starts, on any node, until
/// it is resumed. Its deliveries wait, spending no attempt.
#[utoipa::path(
    post,
    path = "/api/targets/{name}/pause",
    tag = "targets",
    summary = "Pause a target",
    description = "No attempt to the target starts, on any router, until it is resumed; its \
        deliveries wait, spending no attempt. The body may be empty.",
    params(("name" = String, Path, description = "The target's name")),
    request_body(content = Option<PauseBody>, description = "Optional: why", content_type = "application/json"),
    responses(
        (status = 200, description = "Paused: the target as `GET /api/targets` shows it", body = TargetView),
        (status = 400, description = "The body is neither empty nor `{\"reason\": \"…\"}`", body = ErrorBody),
        (status = 404, description = "No target has this name", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry shortly", body = ErrorBody),
    ),
)]
pub async fn pause_target(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    authorized!(state, headers);
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<PauseBody>(&body) {
            Ok(b) => b.reason,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the body must be empty or {{\"reason\": \"…\"}}: {e}"),
                );
            }
        }
    };
    let reason = match reason.as_deref().map(str::trim) {
        Some(r) if !r.is_empty() => format!("paused by an operator: {r}"),
        _ => "paused by an operator".to_string(),
    };
    control_target(&state, &name, Some(reason)).await
}

/// `POST /api/targets/{name}/resume`: lift the target's pause (an
/// operator's, or a 410's) and close its circuit; its backlog goes at once.
#[utoipa::path(
    post,
    path = "/api/targets/{name}/resume",
    tag = "targets",
    summary = "Resume a target",
    description = "Lifts the target's pause (an operator's, or a 410's) and closes its \
        circuit; its backlog goes at once.",
    params(("name" = String, Path, description = "The target's name")),
    responses(
        (status = 200, description = "Resumed: the target as `GET /api/targets` shows it", body = TargetView),
        (status = 404, description = "No target has this name", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry shortly", body = ErrorBody),
    ),
)]
pub async fn resume_target(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    authorized!(state, headers);
    control_target(&state, &name, None).await
}

/// Pause a configured target (with this reason) or resume it (`None`),
/// and answer with its view.
async fn control_target(state: &AppState, name: &str, pause: Option<String>) -> Response {
    if state.live.load().target(name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no target is named {name:?}"),
        );
    }
    let changed = match pause {
        Some(reason) => state.circuits.pause(name, reason).await,
        None => state.circuits.resume(name).await,
    };
    if let Err(e) = changed {
        return unavailable(e);
    }
    match super::overview::target_views(state, &[name]).await {
        Ok(views) => match views.into_iter().next() {
            Some(view) => Json(view).into_response(),
            // Removed from the config by a reload meanwhile.
            None => error(
                StatusCode::NOT_FOUND,
                format!("no target is named {name:?}"),
            ),
        },
        Err(e) => unavailable(e),
    }
}
