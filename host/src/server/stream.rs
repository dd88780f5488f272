//! `GET /api/stream`: the live tail ([`crate::tail`]) as server-sent
//! events: `event: event` for each event this node accepts, `event:
//! attempt` for each delivery attempt it makes, `event: lagged` when the
//! reader fell behind. Streams end when the router drains.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast;

use super::AppState;
use super::admin::authorized;
use super::error;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Only events from this source.
    source: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/stream",
    tag = "admin",
    summary = "The live tail, as server-sent events",
    description = "`event: event` with `{\"id\", \"source\", \"event_type\", \"received_at\"}` \
        for each event this node accepts; `event: attempt` with `{\"delivery_id\", \"event_id\", \
        \"source\", \"target\", \"attempt\", \"status\", \"outcome\", \"duration_ms\", \"error\"}` \
        (`outcome` is `delivered`, `retry` or `dead`) for each attempt it makes; `event: lagged` \
        with `{\"missed\": n}` when the reader fell more than 1024 behind. A comment every 15 s \
        keeps the connection open; the stream ends when the router drains.",
    params(StreamParams),
    responses(
        (status = 200, description = "The stream", body = String, content_type = "text/event-stream"),
        (status = 400, description = "An unknown query parameter", body = super::response::ErrorBody),
    ),
)]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    authorized!(state, headers);
    let Ok(Query(p)) = params else {
        return error(StatusCode::BAD_REQUEST, "query parameter: source");
    };
    let (receiver, closed) = state.tail.subscribe();
    let events = futures_util::stream::unfold(
        (receiver, closed, p.source),
        |(mut receiver, closed, source)| async move {
            loop {
                let next = tokio::select! {
                    () = closed.cancelled() => return None,
                    next = receiver.recv() => next,
                };
                let sse = match next {
                    Ok(t) if source.as_ref().is_some_and(|s| s != t.source()) => continue,
                    Ok(t) => SseEvent::default()
                        .event(t.kind())
                        .json_data(&t)
                        .unwrap_or_default(),
                    Err(broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{n}}}")),
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                return Some((Ok::<_, Infallible>(sse), (receiver, closed, source)));
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
