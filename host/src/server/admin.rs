//! The admin API: events with their deliveries and attempts, dead
//! deliveries, retry, replay and re-run. Every handler checks the bearer
//! token first (see `app::authorize`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error;
use super::response::ErrorBody;
use crate::pipeline::rerun_route;
use crate::store::{
    Before, DeliveryQuery, DeliveryRecord, EventQuery, EventRecord, EventState, EventSummary,
    FailedFilter, StoreError,
};

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

/// `GET /api/events`' filters. An empty one (a form's blank field) filters
/// nothing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventListParams {
    /// Only events from this source.
    source: Option<String>,
    /// Only events of this type.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// `received` (its routes have not run yet), `processed`, or `failed`
    /// (a route failed on it, and it can be re-run).
    #[param(example = "failed")]
    state: Option<String>,
    /// Only events before this point: a time in ms since the Unix epoch,
    /// or the previous page's `next`.
    before: Option<String>,
    /// Only events received at or after this time (ms since the Unix epoch).
    since: Option<u64>,
    /// Events per page: 100 unless given, at most 1000.
    limit: Option<usize>,
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    events: Vec<EventSummary>,
    /// Pass as `before` for the next page; `null` on the last.
    next: Option<String>,
}

/// `GET /api/events?source=&type=&state=&before=&since=&limit=`: events,
/// newest first. `before` is a time (ms since the epoch) or the previous
/// page's `next`.
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "events",
    summary = "List events, newest first",
    description = "Each event has counts of its `deliveries`, `delivered`, `dead` and \
        `failed_routes`. A page is full when it has `limit` events; then `next` is set.",
    params(EventListParams),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 400, description = "An unknown parameter, or a `state` or `before` that does not parse", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry shortly", body = ErrorBody),
    ),
)]
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
            Json(EventPage { events: page, next }).into_response()
        }
        Err(e) => unavailable(e),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Ids are unique per source: name it when two sources may share one
    /// (else the first received is shown).
    source: Option<String>,
}

/// `GET /api/events/{id}[?source=S]`: the event, its failed routes,
/// deliveries and attempts.
#[utoipa::path(
    get,
    path = "/api/events/{id}",
    tag = "events",
    summary = "One event, with everything that happened to it",
    description = "Its headers and body, what each route did (`routes`), the routes that \
        failed on it, and its deliveries with every attempt.",
    params(("id" = String, Path, description = "The event's id"), EventParams),
    responses(
        (status = 200, description = "The event", body = EventRecord),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 404, description = "No event has this id", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry shortly", body = ErrorBody),
    ),
)]
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

/// `GET /api/deliveries`' filters. An empty one (a form's blank field)
/// filters nothing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `pending`, `in_flight`, `retrying`, `delivered` or `dead`.
    #[param(example = "dead")]
    state: Option<String>,
    /// Only deliveries to this target.
    target: Option<String>,
    /// Only deliveries after this id: the previous page's `next`.
    after: Option<String>,
    /// Deliveries per page: 100 unless given, at most 1000.
    limit: Option<usize>,
}

/// A page of deliveries, oldest first (by id).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    deliveries: Vec<DeliveryRecord>,
    /// Pass as `after` for the next page; `null` on the last.
    next: Option<String>,
}

/// `GET /api/deliveries?state=dead&target=…&limit=…&after=…`, paged by id:
/// pass the response's `next` as `after` for the next page.
#[utoipa::path(
    get,
    path = "/api/deliveries",
    tag = "deliveries",
    summary = "List deliveries by state and target",
    description = "Oldest first, by id. A page is full when it has `limit` deliveries; \
        then `next` is set.",
    params(ListParams),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryPage),
        (status = 400, description = "An unknown parameter, or an unknown `state`", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry shortly", body = ErrorBody),
    ),
)]
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
            Json(DeliveryPage {
                deliveries: page,
                next,
            })
            .into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// A delivery's state after a retry or a skip.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryChange {
    id: String,
    /// `pending` after a retry; `dead` after a skip.
    state: &'static str,
    /// After a skip: `false`, it no longer holds its ordering key back.
    #[serde(skip_serializing_if = "Option::is_none")]
    blocking: Option<bool>,
}

/// `POST /api/deliveries/{id}/retry`: due now, with a fresh attempt budget.
#[utoipa::path(
    post,
    path = "/api/deliveries/{id}/retry",
    tag = "deliveries",
    summary = "Retry a delivery now",
    description = "The delivery is due at once, with a fresh attempt budget.",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "Queued: `state` is `pending`", body = DeliveryChange),
        (status = 404, description = "No delivery has this id, or it is in flight", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry shortly", body = ErrorBody),
    ),
)]
pub async fn retry_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    authorized!(state, headers);
    match state.store.retry_delivery(&id).await {
        Ok(true) => (
            StatusCode::ACCEPTED,
            Json(DeliveryChange {
                id,
                state: "pending",
                blocking: None,
            }),
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
#[utoipa::path(
    post,
    path = "/api/deliveries/{id}/skip",
    tag = "deliveries",
    summary = "Let a blocking dead delivery's ordering key go on",
    description = "For a dead delivery that holds its ordering key's later deliveries back \
        (`on_dead = \"block\"`): they go. It stays dead, and can still be retried.",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "Skipped: `state` is `dead`, `blocking` is `false`", body = DeliveryChange),
        (status = 404, description = "No dead delivery with this id holds its ordering key back", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry shortly", body = ErrorBody),
    ),
)]
pub async fn skip_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    authorized!(state, headers);
    match state.store.skip_delivery(&id).await {
        Ok(true) => (
            StatusCode::OK,
            Json(DeliveryChange {
                id,
                state: "dead",
                blocking: Some(false),
            }),
        )
            .into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no dead delivery {id:?} that holds its ordering key back"),
        ),
        Err(e) => unavailable(e),
    }
}

/// What a re-run did, route by route.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rerun {
    /// The event's id.
    id: String,
    routes: Vec<RerunRoute>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RerunRoute {
    route: String,
    /// Whether the route ran this time (its deliveries are made).
    ok: bool,
    /// Why it failed again, when it did.
    reason: Option<String>,
}

/// `POST /api/events/{id}/rerun`: re-run the routes that failed on this event.
#[utoipa::path(
    post,
    path = "/api/events/{id}/rerun",
    tag = "events",
    summary = "Re-run the routes that failed on an event",
    description = "For instance after fixing a plugin. A route that fails again stays failed.",
    params(("id" = String, Path, description = "The event's id")),
    responses(
        (status = 202, description = "Re-run: each failed route, and whether it ran", body = Rerun),
        (status = 404, description = "The event has no failed routes to re-run", body = ErrorBody),
        (status = 503, description = "The pipeline is not running, or the store is unavailable", body = ErrorBody),
    ),
)]
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
        results.push(RerunRoute {
            route: failure.route,
            ok: still.is_empty(),
            reason: still.first().map(|f| f.reason.clone()),
        });
    }
    (
        StatusCode::ACCEPTED,
        Json(Rerun {
            id,
            routes: results,
        }),
    )
        .into_response()
}

/// A query parameter, where an empty one (`?source=`, as a form sends an
/// empty field) means not given.
fn given(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}
