//! Rows ↔ types.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rusqlite::{OptionalExtension, Row, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::store::{Attempt, Delivery, DeliveryRecord, EventRecord, RouteFailure, RouteOutcome};

pub fn headers_json(headers: &[(String, String)]) -> String {
    serde_json::to_string(headers).expect("string pairs serialize")
}

fn bad_json(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

/// `source, id, event_type, received_at, headers, body` → an event.
pub fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    let headers: String = r.get(4)?;
    let body: Vec<u8> = r.get(5)?;
    Ok(Event {
        source: r.get(0)?,
        id: r.get(1)?,
        event_type: r.get(2)?,
        received_at: r.get::<_, i64>(3)? as u64,
        headers: serde_json::from_str(&headers).map_err(bad_json)?,
        body: body.into(),
    })
}

/// A delivery's payload (the output event) as stored.
#[derive(Serialize, Deserialize)]
struct Payload {
    id: String,
    source: String,
    event_type: String,
    received_at: u64,
    headers: Vec<(String, String)>,
    body: String,
}

fn payload_json(e: &Event) -> String {
    serde_json::to_string(&Payload {
        id: e.id.clone(),
        source: e.source.clone(),
        event_type: e.event_type.clone(),
        received_at: e.received_at,
        headers: e.headers.clone(),
        body: STANDARD.encode(&e.body),
    })
    .expect("payload serializes")
}

pub fn payload_from_json(text: &str) -> rusqlite::Result<Event> {
    let p: Payload = serde_json::from_str(text).map_err(bad_json)?;
    let body = STANDARD.decode(p.body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Event {
        id: p.id,
        source: p.source,
        event_type: p.event_type,
        received_at: p.received_at,
        headers: p.headers,
        body: body.into(),
    })
}

/// New deliveries are due now. An id that exists already (a re-run of a
/// deterministic route) is left alone: no duplicate delivery.
pub fn insert_deliveries(
    t: &Transaction<'_>,
    event: &Event,
    deliveries: &[Delivery],
    now: i64,
) -> rusqlite::Result<()> {
    let mut stmt = t.prepare_cached(
        "INSERT INTO deliveries (id, event_source, event_id, route, target, payload, state, attempts,
                                 next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?7, ?7) ON CONFLICT (id) DO NOTHING",
    )?;
    for d in deliveries {
        stmt.execute(params![
            d.id,
            event.source,
            event.id,
            d.route,
            d.target,
            payload_json(&d.event),
            now
        ])?;
    }
    Ok(())
}

pub fn insert_failures(
    t: &Transaction<'_>,
    event: &Event,
    failures: &[RouteFailure],
    now: i64,
) -> rusqlite::Result<()> {
    let mut stmt = t.prepare_cached(
        "INSERT OR REPLACE INTO route_failures (event_source, event_id, route, plugin, reason, waiting_for, failed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for f in failures {
        stmt.execute(params![
            event.source,
            event.id,
            f.route,
            f.plugin,
            f.reason,
            f.waiting_for,
            now
        ])?;
    }
    Ok(())
}

/// `id, event_id, event_source, route, target, state, attempts, next_attempt_at,
/// last_error, created_at, updated_at` → a record.
pub fn delivery_record(r: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: r.get(0)?,
        event_id: r.get(1)?,
        source: r.get(2)?,
        route: r.get(3)?,
        target: r.get(4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt_at: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        last_error: r.get(8)?,
        created_at: r.get::<_, i64>(9)? as u64,
        updated_at: r.get::<_, i64>(10)? as u64,
        attempt_log: Vec::new(),
    })
}

/// The event `id` (from any source; the first received if several) with its
/// failed routes, deliveries and attempts.
pub fn event_record(t: &Transaction<'_>, id: &str) -> rusqlite::Result<Option<EventRecord>> {
    let found = t
        .query_row(
            "SELECT source, id, event_type, received_at, headers, body, state, routes FROM events
             WHERE id = ?1 ORDER BY received_at LIMIT 1",
            [id],
            |r| {
                Ok((
                    event_from_row(r)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            },
        )
        .optional()?;
    let Some((event, state, routes)) = found else {
        return Ok(None);
    };
    let mut stmt = t.prepare(
        "SELECT route, plugin, reason, waiting_for FROM route_failures WHERE event_source = ?1 AND event_id = ?2",
    )?;
    let failed_routes = stmt
        .query_map(params![event.source, event.id], |r| {
            Ok(RouteFailure {
                event_id: event.id.clone(),
                route: r.get(0)?,
                plugin: r.get(1)?,
                reason: r.get(2)?,
                waiting_for: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = t.prepare(
        "SELECT id, event_id, event_source, route, target, state, attempts, next_attempt_at, last_error,
                created_at, updated_at
         FROM deliveries WHERE event_source = ?1 AND event_id = ?2 ORDER BY created_at, id",
    )?;
    let mut deliveries = stmt
        .query_map(params![event.source, event.id], delivery_record)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = t.prepare(
        "SELECT started_at, duration_ms, status, error, response FROM attempts WHERE delivery_id = ?1 ORDER BY n",
    )?;
    for d in &mut deliveries {
        d.attempt_log = stmt
            .query_map([&d.id], |r| {
                Ok(Attempt {
                    started_at: r.get::<_, i64>(0)? as u64,
                    duration_ms: r.get::<_, i64>(1)? as u64,
                    status: r.get(2)?,
                    error: r.get(3)?,
                    response: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
    }
    let (body, body_base64) = match std::str::from_utf8(&event.body) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(STANDARD.encode(&event.body))),
    };
    Ok(Some(EventRecord {
        id: event.id,
        source: event.source,
        event_type: event.event_type,
        received_at: event.received_at,
        state,
        routes: routes_from_json(routes.as_deref()),
        headers: event.headers,
        body,
        body_base64,
        failed_routes,
        deliveries,
    }))
}

pub fn routes_json(routes: &[RouteOutcome]) -> String {
    serde_json::to_string(routes).expect("route outcomes serialise")
}

/// The stored outcomes; a row from before they were kept has none.
fn routes_from_json(text: Option<&str>) -> Vec<RouteOutcome> {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// After a re-run of `route` (or of every route, for the unrouted `*`):
/// its old outcome is replaced by what the re-run did.
pub fn replace_route_outcomes(
    t: &Transaction<'_>,
    event: &Event,
    route: &str,
    new: &[RouteOutcome],
) -> rusqlite::Result<()> {
    let stored: Option<String> = t
        .query_row(
            "SELECT routes FROM events WHERE source = ?1 AND id = ?2",
            params![event.source, event.id],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let mut routes = routes_from_json(stored.as_deref());
    routes.retain(|o| o.route != route && !new.iter().any(|n| n.route == o.route));
    routes.extend(new.iter().cloned());
    t.execute(
        "UPDATE events SET routes = ?3 WHERE source = ?1 AND id = ?2",
        params![event.source, event.id, routes_json(&routes)],
    )?;
    Ok(())
}
