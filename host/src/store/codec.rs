//! How both stores encode what they keep as text: headers, a delivery's
//! event metadata, route outcomes. One encoding, so a row means the same
//! thing in SQLite and in PostgreSQL.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::RouteOutcome;
use crate::event::Event;

pub fn headers_json(headers: &[(String, String)]) -> String {
    serde_json::to_string(headers).expect("string pairs serialize")
}

pub fn headers_from_json(text: &str) -> serde_json::Result<Vec<(String, String)>> {
    serde_json::from_str(text)
}

/// A delivery's output event but for its body, as stored (`meta`).
#[derive(Deserialize)]
struct Meta {
    id: String,
    source: String,
    event_type: String,
    received_at: u64,
    headers: Vec<(String, String)>,
}

/// What [`event_from_meta`] reads back, written without copying the event.
pub fn meta_json(e: &Event) -> String {
    #[derive(Serialize)]
    struct MetaRef<'a> {
        id: &'a str,
        source: &'a str,
        event_type: &'a str,
        received_at: u64,
        headers: &'a [(String, String)],
    }
    serde_json::to_string(&MetaRef {
        id: &e.id,
        source: &e.source,
        event_type: &e.event_type,
        received_at: e.received_at,
        headers: &e.headers,
    })
    .expect("metadata serializes")
}

/// The output event from `meta` and its body.
pub fn event_from_meta(meta: &str, body: Vec<u8>) -> serde_json::Result<Event> {
    let m: Meta = serde_json::from_str(meta)?;
    Ok(Event {
        id: m.id,
        source: m.source,
        event_type: m.event_type,
        received_at: m.received_at,
        headers: m.headers,
        body: body.into(),
    })
}

pub fn routes_json(routes: &[RouteOutcome]) -> String {
    serde_json::to_string(routes).expect("route outcomes serialise")
}

/// The stored outcomes; a row from before they were kept has none.
pub fn routes_from_json(text: Option<&str>) -> Vec<RouteOutcome> {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// After a re-run of `route` (or of every route, for the unrouted `*`):
/// its old outcome in `stored` is replaced by what the re-run did.
pub fn merge_rerun(stored: Option<&str>, route: &str, new: &[RouteOutcome]) -> String {
    let mut routes = routes_from_json(stored);
    routes.retain(|o| o.route != route && !new.iter().any(|n| n.route == o.route));
    routes.extend(new.iter().cloned());
    routes_json(&routes)
}

/// An event body as the admin API shows it: text when it is UTF-8, else
/// base64.
pub fn body_for_display(body: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(body) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(STANDARD.encode(body))),
    }
}
