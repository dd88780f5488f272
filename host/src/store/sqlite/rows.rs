//! Rows ↔ types.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::event::Event;
use crate::store::{
    Delivery, DeliveryQuery, DeliveryRecord, EventRecord, RouteFailure, RouteOutcome, codec,
    listing,
};

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
        headers: codec::headers_from_json(&headers).map_err(bad_json)?,
        body: body.into(),
    })
}

/// The output event from `meta` and its body.
pub fn event_from_meta(meta: &str, body: Vec<u8>) -> rusqlite::Result<Event> {
    codec::event_from_meta(meta, body).map_err(bad_json)
}

pub const INSERT_DELIVERY: &str = "INSERT INTO deliveries (id, event_source, event_id, route, target, meta, body, state, attempts,
                             due_at, created_at, updated_at, order_key, order_block)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?10, ?11, ?12) ON CONFLICT (id) DO NOTHING";

/// Whether a delivery to `?1` with the ordering key `?2` waits for its turn.
pub const KEY_SUCCESSOR: &str = "SELECT EXISTS (SELECT 1 FROM deliveries
     WHERE target = ?1 AND order_key = ?2 AND (state = 'pending' OR state = 'retrying'))";

/// Whether a delivery to `?1` with the ordering key `?2` holds that key
/// back: a new one with that key then waits for it.
pub const KEY_WAITING: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM deliveries WHERE target = ?1 AND order_key = ?2 AND ",
    crate::store::listing::holds_key!(""),
    ")"
);

/// Where a new delivery starts: due now in the table, or already leased
/// until `lease_until` (ms) because it is handed to its target's worker in
/// memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Due,
    Leased { lease_until: i64 },
}

/// Insert new deliveries, each as `start` says. An id that exists already
/// (a re-run of a deterministic route) is left alone: no duplicate
/// delivery. Returns, per delivery, whether it was inserted.
pub fn insert_deliveries(
    t: &Transaction<'_>,
    event: &Event,
    deliveries: &[Delivery],
    start: &[Start],
    now: i64,
) -> rusqlite::Result<Vec<bool>> {
    let mut stmt = t.prepare_cached(INSERT_DELIVERY)?;
    let mut inserted = Vec::with_capacity(deliveries.len());
    for (d, start) in deliveries.iter().zip(start) {
        // The received body is stored once, with the event.
        let body = (d.event.body != event.body).then_some(d.event.body.as_ref());
        let (state, due_at) = match *start {
            Start::Due => ("pending", now),
            Start::Leased { lease_until } => ("in_flight", lease_until),
        };
        let n = stmt.execute(params![
            d.id,
            event.source,
            event.id,
            d.route,
            d.target,
            codec::meta_json(&d.event),
            body,
            state,
            due_at,
            now,
            d.order_key,
            d.order_block
        ])?;
        inserted.push(n == 1);
    }
    Ok(inserted)
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

/// The columns [`delivery_record`] reads, in its order.
pub const DELIVERY_RECORD: &str = "id, event_id, event_source, route, target, state, attempts,
    CASE WHEN state IN ('pending', 'retrying') THEN due_at END, last_error, created_at, updated_at";

/// [`DELIVERY_RECORD`]'s columns → a record.
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
pub fn event_record(
    t: &Transaction<'_>,
    source: Option<&str>,
    id: &str,
) -> rusqlite::Result<Option<EventRecord>> {
    let found = t
        .query_row(
            "SELECT source, id, event_type, received_at, headers, body, state, routes FROM events
             WHERE id = ?1 AND (?2 IS NULL OR source = ?2) ORDER BY received_at, source LIMIT 1",
            params![id, source],
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
    let mut stmt = t.prepare(&format!(
        "SELECT {DELIVERY_RECORD} FROM deliveries WHERE event_source = ?1 AND event_id = ?2 ORDER BY created_at, id"
    ))?;
    let mut deliveries = stmt
        .query_map(params![event.source, event.id], delivery_record)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = t.prepare("SELECT log FROM deliveries WHERE id = ?1")?;
    for d in &mut deliveries {
        let log: Option<String> = stmt.query_row([&d.id], |r| r.get(0))?;
        d.attempt_log = match log {
            Some(text) => serde_json::from_str(&text).map_err(bad_json)?,
            None => Vec::new(),
        };
    }
    Ok(Some(EventRecord::new(
        event,
        state,
        routes.as_deref(),
        failed_routes,
        deliveries,
    )))
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
    t.execute(
        "UPDATE events SET routes = ?3 WHERE source = ?1 AND id = ?2",
        params![
            event.source,
            event.id,
            codec::merge_rerun(stored.as_deref(), route, new)
        ],
    )?;
    Ok(())
}

impl rusqlite::ToSql for listing::Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            listing::Param::Text(s) => s.to_sql(),
            listing::Param::Int(i) => i.to_sql(),
        }
    }
}

/// A page of `GET /api/events`.
pub fn event_summaries(
    t: &Transaction<'_>,
    q: &listing::EventQuery,
) -> rusqlite::Result<Vec<listing::EventSummary>> {
    let sql = listing::events(q, listing::Dialect::Sqlite);
    let mut stmt = t.prepare_cached(&sql.text)?;
    let count = |r: &Row<'_>, i| r.get::<_, i64>(i).map(|n| n as u64);
    let rows = stmt.query_map(rusqlite::params_from_iter(&sql.params), |r| {
        Ok(listing::EventSummary {
            id: r.get(0)?,
            source: r.get(1)?,
            event_type: r.get(2)?,
            received_at: r.get::<_, i64>(3)? as u64,
            state: r.get(4)?,
            deliveries: count(r, 5)?,
            delivered: count(r, 6)?,
            dead: count(r, 7)?,
            failed_routes: count(r, 8)?,
        })
    })?;
    rows.collect()
}

/// A page of `GET /api/deliveries`.
pub fn delivery_records(
    t: &Transaction<'_>,
    q: &DeliveryQuery,
) -> rusqlite::Result<Vec<DeliveryRecord>> {
    let sql = listing::deliveries(q, DELIVERY_RECORD, listing::Dialect::Sqlite);
    let mut stmt = t.prepare_cached(&sql.text)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(&sql.params), delivery_record)?;
    rows.collect()
}

/// Each target's deliveries not yet delivered, by state.
pub fn target_counts(
    t: &Transaction<'_>,
) -> rusqlite::Result<BTreeMap<String, listing::TargetCounts>> {
    let mut stmt = t.prepare_cached(listing::TARGET_COUNTS)?;
    let mut rows = stmt.query([])?;
    let mut counts = BTreeMap::<String, listing::TargetCounts>::new();
    while let Some(r) = rows.next()? {
        let state: String = r.get(1)?;
        let n = r.get::<_, i64>(2)? as u64;
        listing::add_target_count(counts.entry(r.get(0)?).or_default(), &state, n);
    }
    Ok(counts)
}
