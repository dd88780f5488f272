//! `GET /api/stream`: a live tail of events as this node accepts them, as
//! server-sent events (`event: event`, `data:` the event's summary).
//!
//! A bounded broadcast: a reader that falls behind by more than
//! [`TAIL_BUFFER`] events is told how many it missed (`event: lagged`),
//! and never slows ingest down. Streams end when the router drains.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::admin::authorized;
use super::error;

/// Events a slow reader may fall behind before it misses some.
pub const TAIL_BUFFER: usize = 1024;

/// An accepted event, as the tail shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Tailed {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub received_at: u64,
}

pub struct Tail {
    sender: broadcast::Sender<Tailed>,
    closed: CancellationToken,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            sender: broadcast::channel(TAIL_BUFFER).0,
            closed: CancellationToken::new(),
        }
    }
}

impl Tail {
    /// Whether anyone reads the tail now.
    pub fn watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Tell every reader.
    pub fn publish(&self, event: Tailed) {
        let _ = self.sender.send(event);
    }

    /// End every stream (the router is draining).
    pub fn close(&self) {
        self.closed.cancel();
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Only events from this source.
    source: Option<String>,
}

pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    authorized!(state, headers);
    let Ok(Query(p)) = params else {
        return error(StatusCode::BAD_REQUEST, "query parameter: source");
    };
    let receiver = state.tail.sender.subscribe();
    let closed = state.tail.closed.clone();
    let events = futures_util::stream::unfold(
        (receiver, closed, p.source),
        |(mut receiver, closed, source)| async move {
            loop {
                let next = tokio::select! {
                    () = closed.cancelled() => return None,
                    next = receiver.recv() => next,
                };
                let sse = match next {
                    Ok(e) if source.as_ref().is_some_and(|s| *s != e.source) => continue,
                    Ok(e) => SseEvent::default()
                        .event("event")
                        .id(e.id.clone())
                        .json_data(&e)
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
