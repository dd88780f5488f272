//! Leasing due deliveries for one target.

use rusqlite::params;

use super::rows::payload_from_json;
use crate::store::Delivery;

/// What a claim found.
pub enum Claim {
    Got(Vec<Delivery>),
    /// Nothing due; the earliest time something will be (ms), if anything.
    NextAt(Option<i64>),
}

/// Lease up to `max` due deliveries for `target`, most overdue first (then
/// any whose lease expired).
pub fn claim_due(
    t: &rusqlite::Transaction<'_>,
    target: &str,
    now: i64,
    lease_ms: i64,
    max: usize,
) -> rusqlite::Result<Claim> {
    type Row = (String, String, String, String, u32);
    let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Row> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    };
    let mut due: Vec<Row> = t
        .prepare_cached(
            "SELECT id, event_id, route, payload, attempts FROM deliveries
             WHERE target = ?1 AND state IN ('pending', 'retrying') AND next_attempt_at <= ?2
             ORDER BY next_attempt_at LIMIT ?3",
        )?
        .query_map(params![target, now, max as i64], read)?
        .collect::<rusqlite::Result<_>>()?;
    if due.len() < max {
        let expired: Vec<Row> = t
            .prepare_cached(
                "SELECT id, event_id, route, payload, attempts FROM deliveries
                 WHERE target = ?1 AND state = 'in_flight' AND lease_until <= ?2 LIMIT ?3",
            )?
            .query_map(params![target, now, (max - due.len()) as i64], read)?
            .collect::<rusqlite::Result<_>>()?;
        due.extend(expired);
    }
    if due.is_empty() {
        let next: Option<i64> = t.query_row(
            "SELECT MIN(at) FROM (
                SELECT MIN(next_attempt_at) AS at FROM deliveries WHERE target = ?1 AND state IN ('pending', 'retrying')
                UNION ALL
                SELECT MIN(lease_until) FROM deliveries WHERE target = ?1 AND state = 'in_flight')",
            [target],
            |r| r.get(0),
        )?;
        return Ok(Claim::NextAt(next));
    }
    let mut lease = t.prepare_cached(
        "UPDATE deliveries SET state = 'in_flight', lease_until = ?2, updated_at = ?3 WHERE id = ?1",
    )?;
    let mut batch = Vec::with_capacity(due.len());
    for (id, event_id, route, payload, attempts) in due {
        lease.execute(params![id, now + lease_ms, now])?;
        batch.push(Delivery {
            id,
            event_id,
            route,
            target: target.to_string(),
            event: payload_from_json(&payload)?,
            attempts,
        });
    }
    Ok(Claim::Got(batch))
}
