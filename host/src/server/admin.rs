//! The admin API: events with their deliveries and attempts, dead
//! deliveries, retry, replay and re-run. Every handler checks the bearer
//! token first (see `app::authorize`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error;
use crate::pipeline::rerun_route;
use crate::store::{Before, DeliveryQuery, EventQuery, EventState, FailedFilter, StoreError};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Storage failures reach the client as a plain 503; details go to the log.
pub(super) fn unavailable(e: StoreError) -> Response {
    tracing::error!("admin API: {e}");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage is unavailable; retry shortly",
    )
}

/// Return the refusal unless the request carries the admin token.
macro_rules! authorized {
    ($state:expr, $headers:expr) => {
        if let Err(denied) = $crate::server::app::authorize(&$state, &$headers) {
            return axum::response::IntoResponse::into_response(denied);
        }
    };
}
pub(super) use authorized;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventListParams {
    source: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    state: Option<String>,
    before: Option<String>,
    since: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/events?source=&type=&state=&before=&since=&limit=`: events,
/// newest first. `before` is a time (ms since the epoch) or the previous
/// page's `next`.
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<EventListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    authorized!(state, headers);
    let Ok(Query(p)) = params else {
        return error(
            StatusCode::BAD_REQUEST,
            "query parameters: source, type, state, before, since, limit",
        );
    };
    let event_state = match p.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match EventState::parse(s) {
            Some(s) => Some(s),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("state must be one of {}", EventState::NAMES.join(", ")),
                );
            }
        },
    };
    let before = match p.before.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(b) => match Before::parse(b) {
            Some(b) => Some(b),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "before must be a time in ms since the Unix epoch, or a page's \"next\"",
                );
            }
        },
    };
    let limit = p.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    // An empty parameter (a form's blank field) filters nothing.
    let query = EventQuery {
        source: given(p.source),
        event_type: given(p.event_type),
        state: event_state,
        before,
        since: p.since,
        limit,
    };
    match state.store.events(query).await {
        Ok(page) => {
            let next = (page.len() == limit)
                .then(|| page.last().map(|e| e.cursor().render()))
                .flatten();
            Json(json!({ "events": page, "next": next })).into_response()
        }
        Err(e) => unavailable(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Ids are unique per source: name it when two sources may share one.
    source: Option<String>,
}

/// `GET /api/events/{id}[?source=S]`: the event, its failed routes,
/// deliveries and attempts.
pub async fn event(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    authorized!(state, headers);
    let Ok(Query(p)) = params else {
        return error(StatusCode::BAD_REQUEST, "query parameter: source");
    };
    let source = p.source.filter(|s| !s.is_empty());
    match state.store.event_in(source.as_deref(), &id).await {
        Ok(Some(record)) => Json(record).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no event has id {id:?}")),
        Err(e) => unavailable(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    state: Option<String>,
    target: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/deliveries?state=dead&target=…&limit=…&after=…`, paged by id:
/// pass the response's `next` as `after` for the next page.
pub async fn deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    authorized!(state, headers);
    let Ok(Query(p)) = params else {
        return error(
            StatusCode::BAD_REQUEST,
            "query parameters: state, target, after, limit",
        );
    };
    const STATES: [&str; 5] = ["pending", "in_flight", "retrying", "delivered", "dead"];
    // An empty parameter (a form's blank field) filters nothing.
    let (state_filter, target, after) = (given(p.state), given(p.target), given(p.after));
    if let Some(s) = &state_filter
        && !STATES.contains(&s.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("state must be one of {}", STATES.join(", ")),
        );
    }
    let limit = p.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let query = DeliveryQuery {
        state: state_filter,
        target,
        after,
        limit,
    };
    match state.store.deliveries(query).await {
        Ok(page) => {
            let next = (page.len() == limit)
                .then(|| page.last().map(|d| d.id.clone()))
                .flatten();
            Json(json!({ "deliveries": page, "next": next })).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// `POST /api/deliveries/{id}/retry`: due now, with a fresh attempt budget.
pub async fn retry_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    authorized!(state, headers);
    match state.store.retry_delivery(&id).await {
        Ok(true) => (
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "state": "pending" })),
        )
            .into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no delivery {id:?} that is not in flight"),
        ),
        Err(e) => unavailable(e),
    }
}

/// `POST /api/deliveries/{id}/skip`: a dead delivery that holds its
/// ordering key's later deliveries back (`on_dead = "block"`) lets them go;
/// it stays dead, and can still be retried.
pub async fn skip_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    authorized!(state, headers);
    match state.store.skip_delivery(&id).await {
        Ok(true) => (
            StatusCode::OK,
            Json(json!({ "id": id, "state": "dead", "blocking": false })),
        )
            .into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no dead delivery {id:?} that holds its ordering key back"),
        ),
        Err(e) => unavailable(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayParams {
    /// Only deliveries that died at or after this time (ms since the epoch).
    since: Option<u64>,
}

/// `POST /api/targets/{name}/replay[?since=MS]`: re-queue the target's dead deliveries.
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
            Json(json!({ "target": name, "requeued": n })),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

/// `POST /api/targets/{name}/pause`, with an optional JSON body
/// `{"reason": "…"}`: no attempt to the target starts, on any node, until
/// it is resumed. Its deliveries wait, spending no attempt.
pub async fn pause_target(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    authorized!(state, headers);
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PauseBody {
        reason: Option<String>,
    }
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

/// `POST /api/events/{id}/rerun`: re-run the routes that failed on this event.
pub async fn rerun_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    authorized!(state, headers);
    let Some(pipeline) = &state.pipeline else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is not running",
        );
    };
    let failed = match state
        .store
        .failed_routes(FailedFilter::Event(id.clone()))
        .await
    {
        Ok(f) => f,
        Err(e) => return unavailable(e),
    };
    if failed.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            format!("event {id:?} has no failed routes to re-run"),
        );
    }
    let mut results = Vec::new();
    for (event, failure) in failed {
        let still = rerun_route(pipeline, state.store.as_ref(), event, &failure.route).await;
        results.push(json!({
            "route": failure.route,
            "ok": still.is_empty(),
            "reason": still.first().map(|f| f.reason.clone()),
        }));
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "routes": results })),
    )
        .into_response()
}

/// A query parameter, where an empty one (`?source=`, as a form sends an
/// empty field) means not given.
fn given(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}
