//! `POST /ingest/{source}`: turn an HTTP request into an accepted [`Event`].
//!
//! Architecture invariant: the sender gets `202` only after the store has
//! taken the event (`Store::accept_processed` or `Store::accept` returned
//! `Ok`). Every refusal is a 4xx or
//! 503 with a JSON `{"error": …}` body that says what to fix; nothing of a
//! refused request is kept.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::{Config, EventTypeRule, Source};
use crate::event::{Event, now_ms};
use crate::metrics::{Ingested, Refusal};
use crate::server::{AppState, error};
use crate::tail::Tailed;
use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::Pipeline;
use crate::store::{Accepted, Store, StoreError};
use tracing::Instrument;

/// Longest event id taken from a sender's header.
const MAX_ID_LEN: usize = 256;

/// The sender's credentials for us: never stored, so never shown by the
/// admin API, handed to a plugin, or forwarded (unless `keep_headers`).
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

#[utoipa::path(
    post,
    path = "/ingest/{source}",
    tag = "ingest",
    summary = "Accept a webhook",
    description = "Open to senders (no admin token); a source with `verify` checks the \
        sender's signature instead. The answer is 202 only once the event is stored; every \
        refusal keeps nothing. The event id comes from the source's `id_header`, else \
        `webhook-id`, else `idempotency-key`, else a new one; a repeated id (or signed \
        content) is accepted again as a duplicate, with nothing new to deliver.",
    params(
        ("source" = String, Path, description = "The source's name, as configured in `[[sources]]`"),
        ("x-event-type" = Option<String>, Header, description = "The event type, unless the source's `event_type` rule names another header or a JSON pointer into the body"),
        ("webhook-id" = Option<String>, Header, description = "The event id, unless the source's `id_header` gives one: 1 to 256 bytes (UTF-8) of printable characters, no spaces"),
        ("idempotency-key" = Option<String>, Header, description = "The event id when neither of the above is sent"),
    ),
    request_body(
        content = String,
        content_type = "*/*",
        description = "The payload, as the sender sends it: any bytes, up to `server.max_body_bytes`",
    ),
    responses(
        (status = 202, description = "Stored (or a duplicate of a stored event)", body = crate::server::IngestAccepted),
        (status = 400, description = "The event id header is malformed, or the body could not be read", body = crate::server::ErrorBody),
        (status = 401, description = "The source's signature check failed", body = crate::server::ErrorBody),
        (status = 404, description = "No source has this name", body = crate::server::ErrorBody),
        (status = 408, description = "The body did not arrive within `server.read_timeout_ms`", body = crate::server::ErrorBody),
        (status = 413, description = "The body is larger than `server.max_body_bytes`", body = crate::server::ErrorBody),
        (status = 503, description = "Busy, shutting down, the queue is full, or the store is unavailable: retry", body = crate::server::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ),
)]
pub async fn ingest(
    State(state): State<AppState>,
    Path(source_name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = tokio::time::Instant::now();
    let config = state.live.load_full();
    let Some(source) = config.source(&source_name) else {
        let outcome = Ingested::Refused(Refusal::UnknownSource);
        state.metrics.ingested("", &outcome, started.elapsed());
        return error(
            StatusCode::NOT_FOUND,
            format!("no source is named {source_name:?}"),
        );
    };
    match take(&state, &config, source, &headers, body, started).await {
        Taken::Reported(response) => response,
        Taken::Refused(refusal, response) => {
            let outcome = Ingested::Refused(refusal);
            state
                .metrics
                .ingested(&source.name, &outcome, started.elapsed());
            response
        }
    }
}

/// What became of a request.
enum Taken {
    /// Stored, or refused by the store: reported where that was decided.
    Reported(Response),
    /// Refused before the store saw it: for the caller to report.
    Refused(Refusal, Response),
}

/// Take one request for `source`.
async fn take(
    state: &AppState,
    config: &Config,
    source: &Source,
    headers: &HeaderMap,
    body: Body,
    started: tokio::time::Instant,
) -> Taken {
    let refused = Taken::Refused;
    // Over the cap, shed load before reading the body.
    let Ok(_slot) = state.ingest_slots.clone().try_acquire_owned() else {
        return refused(
            Refusal::Busy,
            busy("too many requests in progress; retry shortly"),
        );
    };
    if state.is_draining() {
        let mut r = busy("the router is shutting down; retry shortly");
        // Let the sender reconnect, perhaps to another node.
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return refused(Refusal::Draining, r);
    }

    let limit = config.server.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refused(Refusal::TooLarge, too_large(limit));
    }
    let read = tokio::time::timeout(
        config.server.read_timeout,
        axum::body::to_bytes(body, limit),
    );
    let Ok(read) = read.await else {
        return refused(
            Refusal::ReadTimeout,
            error(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time (server.read_timeout_ms)",
            ),
        );
    };
    let body = match read {
        Ok(b) => b,
        Err(e) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_big {
                return refused(Refusal::TooLarge, too_large(limit));
            }
            return refused(
                Refusal::Unreadable,
                error(StatusCode::BAD_REQUEST, "could not read the request body"),
            );
        }
    };

    let mut signed = None;
    if let Some(verifier) = &source.verify {
        let now = (now_ms() / 1000) as i64;
        let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        match verifier.verify(lookup, &body, now) {
            Ok(content) => signed = Some(content.0),
            Err(why) => {
                let message = format!("signature check failed: {why}");
                return refused(
                    Refusal::Signature(why.to_string()),
                    error(StatusCode::UNAUTHORIZED, message),
                );
            }
        }
    }
    let mut event = match build_event(source, headers, body) {
        Ok(e) => e,
        Err(message) => {
            return refused(Refusal::Malformed, error(StatusCode::BAD_REQUEST, message));
        }
    };
    let id = event.id.clone();
    // Copied only while someone watches the live tail.
    let tailed = state.tail.watched().then(|| Tailed::Event {
        id: id.clone(),
        source: source.name.clone(),
        event_type: event.event_type.clone(),
        received_at: event.received_at,
    });
    let untyped = event.event_type.is_empty() && source.event_type != EventTypeRule::Default;
    let span = crate::telemetry::event_span!("ingest", event_id = %id, source = %source.name);
    if crate::telemetry::enabled() {
        // The sender's trace goes on; what runs later joins this span.
        crate::telemetry::continue_from(&span, &event.headers);
        crate::telemetry::stamp(&span, &mut event.headers);
    }
    // On a task of its own: if the sender hangs up mid-commit, the handler
    // is dropped, but an event that commits is still run and delivered (a
    // half-done accept would leave it stored and never run), and reported:
    // logged, counted and tailed by the task, whoever still listens.
    let (store, pipeline) = (state.store.clone(), state.pipeline.clone());
    let (metrics, tail, name) = (
        state.metrics.clone(),
        state.tail.clone(),
        source.name.clone(),
    );
    let report_id = id.clone();
    let stored = async move {
        let accepted = intake(store, pipeline, event, signed).await;
        // A refusal's line names the event, though the `ingest` span is
        // made only for traces and at debug: its own span, made only then.
        let refusal_span = accepted
            .is_err()
            .then(|| tracing::info_span!("ingest", event_id = %report_id, source = %name));
        let outcome = match &accepted {
            Ok(Accepted::New) => {
                if let Some(t) = tailed {
                    tail.publish(t);
                }
                Ingested::New {
                    id: report_id,
                    untyped,
                }
            }
            Ok(Accepted::Duplicate(original)) => Ingested::Duplicate {
                id: report_id,
                original: original.clone(),
            },
            Err(StoreError::Full) => Ingested::Refused(Refusal::QueueFull),
            Err(StoreError::Unavailable(detail)) => {
                Ingested::Refused(Refusal::StorageUnavailable(detail.clone()))
            }
        };
        let report = || metrics.ingested(&name, &outcome, started.elapsed());
        match refusal_span {
            Some(span) => crate::telemetry::in_span(|| span, report),
            None => report(),
        }
        accepted
    };
    let accepted = match tokio::spawn(stored.instrument(span)).await {
        Ok(accepted) => accepted,
        // The task panicked, unreported.
        Err(e) => {
            return refused(
                Refusal::StorageUnavailable(format!("accept failed: {e}")),
                busy("storage is unavailable; retry shortly"),
            );
        }
    };
    Taken::Reported(match accepted {
        Ok(Accepted::New) => {
            (StatusCode::ACCEPTED, axum::Json(json!({ "id": id }))).into_response()
        }
        Ok(Accepted::Duplicate(original)) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "id": original, "duplicate": true })),
        )
            .into_response(),
        Err(StoreError::Full) => busy("the router's queue is full; retry shortly"),
        Err(StoreError::Unavailable(_)) => busy("storage is unavailable; retry shortly"),
    })
}

/// How long ingest waits for an event's routes before answering. Within
/// it, the event and its deliveries commit in one transaction and the
/// deliveries go straight to their targets' workers; past it (a slow
/// plugin, or every plugin slot busy), the bare event is stored `received`
/// and answered, and the routes go on in the background and record their
/// result when done (no plugin runs twice for it), within the pipeline's
/// memory bound for bodies (past it, the pipeline runs them again from the
/// start instead). If the process dies first, the event's routes run again
/// from the start, like any event accepted and not yet processed.
pub const INLINE_BUDGET: Duration = Duration::from_millis(100);

/// Hand `event` to the store, with its routes' result when they run
/// within [`INLINE_BUDGET`], else before they finish.
async fn intake(
    store: Arc<dyn Store>,
    pipeline: Option<Arc<Pipeline>>,
    event: Event,
    signed: Option<[u8; 32]>,
) -> Result<Accepted, StoreError> {
    let Some(pipeline) = pipeline else {
        return store.accept(event, signed).await;
    };
    // Shared with the routes, not copied: the usual path (done within the
    // budget) gets it back whole, and only the slow one copies it.
    let event = Arc::new(event);
    let mut running = {
        let (pipeline, event) = (pipeline.clone(), event.clone());
        Box::pin(async move { pipeline.process(&event).await })
    };
    let result = tokio::select! {
        r = &mut running => r,
        () = tokio::time::sleep(INLINE_BUDGET) => {
            // The bare event is committed `received` first, so nothing is
            // lost; then the routes go on where they are (no plugin runs
            // twice) and record their result when they finish. Without room
            // in memory for that, the pipeline runs them again instead.
            let Some(held) = pipeline.try_hold(&event) else {
                tracing::debug!("routes still running after {INLINE_BUDGET:?}: left to the pipeline");
                return store.accept(Event::clone(&event), signed).await;
            };
            tracing::debug!("routes still running after {INLINE_BUDGET:?}: answered, and they go on");
            let accepted = store.accept_running(Event::clone(&event), signed).await?;
            if accepted == Accepted::New {
                let span = tracing::Span::current();
                tokio::spawn(
                    async move {
                        let result = running.await;
                        let event = Arc::unwrap_or_clone(event);
                        crate::pipeline::conclude(&pipeline, store.as_ref(), event, result, None).await;
                        drop(held);
                    }
                    .instrument(span),
                );
            }
            return Ok(accepted);
        }
    };
    // The routes are done and dropped theirs: this is the only reference.
    drop(running);
    let event = Arc::unwrap_or_clone(event);
    let waiting = crate::pipeline::waiting_for(&result);
    let accepted = store.accept_processed(event, signed, result).await?;
    if accepted == Accepted::New && !waiting.is_empty() {
        crate::pipeline::rerun_if_loaded(&pipeline, store.as_ref(), &waiting).await;
    }
    Ok(accepted)
}

/// The event for a request on `source`, or why the request is malformed.
///
/// Only the event id can make a request malformed. A missing event type (no
/// header, a body that is not JSON or lacks the field) gives the type `""`:
/// a router never refuses a sender's event for want of a routing field,
/// because the sender would retry it forever or drop it. Routes with
/// `event_types` skip such an event; routes without see it.
pub fn build_event(
    source: &Source,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Result<Event, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| header_text(v.as_bytes()).trim().to_string())
    };
    let event_type = match &source.event_type {
        EventTypeRule::Default => header("x-event-type"),
        EventTypeRule::Header(name) => header(name),
        EventTypeRule::JsonPointer(pointer) => crate::event::pointer_text(&body, pointer),
    }
    .unwrap_or_default();

    let id = source
        .id_header
        .as_deref()
        .and_then(header)
        .or_else(|| header("webhook-id"))
        .or_else(|| header("idempotency-key"))
        .filter(|v| !v.is_empty());
    let id = match id {
        Some(id)
            if id.len() <= MAX_ID_LEN
                && !id.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            id
        }
        Some(_) => {
            return Err(format!(
                "the event id header must be 1 to {MAX_ID_LEN} bytes of printable characters, without spaces"
            ));
        }
        None => format!("evt_{}", uuid::Uuid::now_v7().simple()),
    };

    // The sender's credentials and signature are its proof to us, not to
    // the targets.
    let signature_headers = source
        .verify
        .as_ref()
        .map(|v| v.signature_headers())
        .unwrap_or_default();
    let dropped = |name: &str| {
        (CREDENTIAL_HEADERS.contains(&name) || signature_headers.contains(&name))
            && !source.keep_headers.iter().any(|k| k == name)
    };
    let headers = headers
        .iter()
        .filter(|(n, _)| !dropped(n.as_str()))
        .map(|(n, v)| (n.as_str().to_string(), header_text(v.as_bytes())))
        .collect();
    Ok(Event {
        id,
        source: source.name.clone(),
        event_type,
        received_at: now_ms(),
        headers,
        body,
    })
}

/// A header value as text, losing nothing: UTF-8 when it is (`Café`), else
/// each byte as the Latin-1 character of that value, as HTTP/1.1 once read
/// them.
fn header_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than server.max_body_bytes = {limit}"),
    )
}

fn busy(message: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(rule: EventTypeRule) -> Source {
        Source {
            name: "s".into(),
            event_type: rule,
            id_header: Some("x-delivery".into()),
            verify: None,
            keep_headers: Vec::new(),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn event_type_from_header_or_pointer_and_empty_when_absent() {
        let s = source(EventTypeRule::Header("x-github-event".into()));
        let e = build_event(&s, &headers(&[("x-github-event", "push")]), "{}".into()).unwrap();
        assert_eq!(e.event_type, "push");
        let e = build_event(&s, &headers(&[]), "{}".into()).unwrap();
        assert_eq!(e.event_type, "", "a missing header is no reason to refuse");

        let s = source(EventTypeRule::JsonPointer("/type".into()));
        let e = build_event(&s, &headers(&[]), r#"{"type":"invoice.paid"}"#.into()).unwrap();
        assert_eq!(e.event_type, "invoice.paid");
        let e = build_event(&s, &headers(&[]), r#"{"type":7}"#.into()).unwrap();
        assert_eq!(e.event_type, "7");
        for body in ["nope", "{}", r#"[{"type":"a"}]"#, r#"{"type":null}"#, ""] {
            let e = build_event(&s, &headers(&[]), body.into()).unwrap();
            assert_eq!(e.event_type, "", "{body:?}");
            assert_eq!(e.body, body, "the body is kept as sent");
        }
    }

    #[test]
    fn the_sources_signature_headers_are_not_stored() {
        use crate::config::Secret;
        use crate::verify::{Encoding, Verifier};
        let secrets = vec![Secret::new("s")];
        let all = [
            ("x-hub-signature-256", "sha256=00"),
            ("x-hub-signature", "sha1=00"),
            ("stripe-signature", "t=1,v1=00"),
            ("x-slack-signature", "v0=00"),
            ("x-shopify-hmac-sha256", "AA=="),
            ("webhook-signature", "v1,AA=="),
            ("x-partner-sig", "00"),
            ("x-slack-request-timestamp", "1"),
            ("content-type", "application/json"),
        ];
        let cases: [(Verifier, &[&str]); 6] = [
            (
                Verifier::GitHub {
                    secrets: secrets.clone(),
                },
                &["x-hub-signature-256", "x-hub-signature"],
            ),
            (
                Verifier::Stripe {
                    secrets: secrets.clone(),
                    tolerance_secs: 300,
                },
                &["stripe-signature"],
            ),
            (
                Verifier::Slack {
                    secrets: secrets.clone(),
                    tolerance_secs: 300,
                },
                &["x-slack-signature"],
            ),
            (
                Verifier::Shopify {
                    secrets: secrets.clone(),
                },
                &["x-shopify-hmac-sha256"],
            ),
            (
                Verifier::StandardWebhooks {
                    keys: secrets.clone(),
                    tolerance_secs: 300,
                },
                &["webhook-signature"],
            ),
            (
                Verifier::Hmac {
                    secrets: secrets.clone(),
                    header: "x-partner-sig".into(),
                    encoding: Encoding::Hex,
                    prefix: String::new(),
                    timestamp_header: None,
                    tolerance_secs: 300,
                },
                &["x-partner-sig"],
            ),
        ];
        for (verifier, stripped) in cases {
            let mut s = source(EventTypeRule::Default);
            s.verify = Some(Arc::new(verifier));
            let e = build_event(&s, &headers(&all), "{}".into()).unwrap();
            let kept: Vec<&str> = e.headers.iter().map(|(n, _)| n.as_str()).collect();
            for (name, _) in all {
                assert_eq!(
                    kept.contains(&name),
                    !stripped.contains(&name),
                    "{name} with {stripped:?}"
                );
            }
        }
        // Without `verify`, nothing is the source's proof: all headers stay.
        let e = build_event(&source(EventTypeRule::Default), &headers(&all), "{}".into()).unwrap();
        assert_eq!(e.headers.len(), all.len());
    }

    #[test]
    fn non_ascii_headers_and_ids_are_kept_as_sent() {
        use axum::http::HeaderValue;
        let mut h = HeaderMap::new();
        h.insert(
            "x-name",
            HeaderValue::from_bytes("Café".as_bytes()).unwrap(),
        );
        h.insert("x-latin1", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        h.insert(
            "idempotency-key",
            HeaderValue::from_bytes("commande-née-1".as_bytes()).unwrap(),
        );
        let e = build_event(&source(EventTypeRule::Default), &h, "{}".into()).unwrap();
        assert_eq!(e.id, "commande-née-1", "retries deduplicate on it");
        let value = |name: &str| {
            e.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("x-name"), Some("Café"));
        assert_eq!(value("x-latin1"), Some("café"));
    }

    #[test]
    fn sender_credentials_are_dropped_unless_kept() {
        let sent = headers(&[
            ("authorization", "Bearer sender-token"),
            ("proxy-authorization", "Basic eA=="),
            ("cookie", "session=1"),
            ("x-request-id", "r1"),
        ]);
        let names =
            |e: &Event| -> Vec<String> { e.headers.iter().map(|(n, _)| n.clone()).collect() };
        let e = build_event(&source(EventTypeRule::Default), &sent, "{}".into()).unwrap();
        assert_eq!(names(&e), ["x-request-id"]);
        let mut keeping = source(EventTypeRule::Default);
        keeping.keep_headers = vec!["authorization".into()];
        let e = build_event(&keeping, &sent, "{}".into()).unwrap();
        assert_eq!(names(&e), ["authorization", "x-request-id"]);
    }

    #[test]
    fn id_comes_from_the_source_header_then_webhook_id_then_idempotency_key() {
        let s = source(EventTypeRule::Default);
        let both = headers(&[
            ("x-delivery", "d1"),
            ("webhook-id", "w1"),
            ("idempotency-key", "k1"),
        ]);
        assert_eq!(build_event(&s, &both, "".into()).unwrap().id, "d1");
        let two = headers(&[("webhook-id", "w1"), ("idempotency-key", "k1")]);
        assert_eq!(build_event(&s, &two, "".into()).unwrap().id, "w1");
        assert_eq!(
            build_event(&s, &headers(&[("idempotency-key", "k1")]), "".into())
                .unwrap()
                .id,
            "k1"
        );
        let generated = build_event(&s, &headers(&[]), "".into()).unwrap().id;
        assert!(
            generated.starts_with("evt_") && generated.len() == 36,
            "{generated}"
        );
        assert!(build_event(&s, &headers(&[("webhook-id", "a b")]), "".into()).is_err());
    }
}
