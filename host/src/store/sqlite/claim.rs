//! Leasing due deliveries for one target from the table: the path for
//! retries, restarts and backlogs. New deliveries usually skip it, handed to
//! their worker in memory (`handoff.rs`).

use rusqlite::params;

use super::rows::event_from_meta;
use crate::store::Delivery;
use crate::store::listing::{first_in_line, unfinished};

/// Due deliveries of a target, most overdue first, from the partial index
/// `deliveries_due`: its predicate is repeated as it is written there.
pub const SELECT_DUE: &str = concat!(
    "SELECT d.id, d.event_id, d.route, d.meta, COALESCE(d.body, e.body), d.attempts, d.order_key, d.order_block
     FROM deliveries d JOIN events e ON e.source = d.event_source AND e.id = d.event_id
     WHERE d.target = ?1 AND d.due_at <= ?2 AND ",
    unfinished!("d."),
    " AND ",
    first_in_line!("rowid"),
    " ORDER BY d.due_at LIMIT ?3"
);

pub const LEASE: &str =
    "UPDATE deliveries SET state = 'in_flight', due_at = ?2, updated_at = ?3 WHERE id = ?1";

/// Lease up to `max` deliveries of `target` that are due: pending or
/// retrying with their time come, or in flight with their lease run out;
/// most overdue first. Also returns when the next one is due (ms), if any
/// is left: `Some(now)` when more are due already.
///
/// In PostgreSQL terms this is one `SELECT … FOR UPDATE SKIP LOCKED` and an
/// `UPDATE` of the same rows.
pub fn claim_due(
    t: &rusqlite::Transaction<'_>,
    target: &str,
    now: i64,
    lease_ms: i64,
    max: usize,
) -> rusqlite::Result<(Vec<Delivery>, Option<i64>)> {
    let mut select = t.prepare_cached(SELECT_DUE)?;
    let due = select
        .query_map(params![target, now, max as i64], |r| {
            Ok(Delivery {
                id: r.get(0)?,
                event_id: r.get(1)?,
                route: r.get(2)?,
                target: target.to_string(),
                event: event_from_meta(&r.get::<_, String>(3)?, r.get(4)?)?,
                attempts: r.get(5)?,
                lease: (now + lease_ms) as u64,
                order_key: r.get(6)?,
                order_block: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut lease = t.prepare_cached(LEASE)?;
    for d in &due {
        lease.execute(params![d.id, now + lease_ms, now])?;
    }
    let next = if due.len() == max {
        Some(now)
    } else {
        // Deliveries waiting for their key's turn are not due: finishing
        // the one before them wakes the claim.
        t.prepare_cached(concat!(
            "SELECT MIN(d.due_at) FROM deliveries d WHERE d.target = ?1 AND ",
            unfinished!("d."),
            " AND ",
            first_in_line!("rowid")
        ))?
        .query_row([target], |r| r.get(0))?
    };
    Ok((due, next))
}
