//! [`Store`] on SQLite: one file in WAL mode (or an in-memory database for
//! `memory://`), written by one thread with group commit.
//!
//! Writes go through the one writer thread; reads (the admin API, `/metrics`,
//! `/readyz`) use a small pool of read-only connections beside it, so they
//! never wait behind a commit (`reader.rs`).
//!
//! This store assumes it is the only process using its file: at open, every
//! delivery left `in_flight` by a previous process is made due again at once
//! (rather than waiting out its lease). Several processes sharing one queue
//! is what the PostgreSQL store is for.

mod claim;
mod reader;
mod rows;
mod schema;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use super::{
    Accepted, Attempt, Delivery, DeliveryQuery, DeliveryRecord, EventRecord, FailedFilter,
    NextStep, Processed, Pruned, QueueStats, RouteFailure, Store, StoreError,
};
use crate::event::{Event, now_ms};
use claim::{Claim, claim_due};
use reader::{ReadPool, Reader};
use rows::{delivery_record, event_from_row, insert_deliveries, insert_failures};
use writer::Writer;

/// How long a claim waits before looking again when nothing is due.
const IDLE_RECHECK: Duration = Duration::from_secs(30);

pub struct SqliteStore {
    writer: Writer,
    reader: Reader,
    /// Most events accepted and not yet through the pipeline before
    /// `accept` says Full.
    capacity: usize,
    /// Events accepted whose pipeline result is not recorded yet: queued
    /// here, or taken by the pipeline and still running. Counting the
    /// running ones bounds how many the pipeline may hold at once.
    unfinished: AtomicUsize,
    // std mutexes: held for a queue or map operation, never across an await.
    pipeline: Mutex<VecDeque<Event>>,
    pipeline_ready: Notify,
    targets: Mutex<HashMap<String, Arc<Notify>>>,
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, or an in-memory one
    /// for `None`. `fsync`: sync the log on every commit (survives power
    /// loss), or leave flushing to the OS (survives a process crash).
    pub fn open(path: Option<&Path>, fsync: bool, capacity: usize) -> anyhow::Result<Self> {
        let mut conn = match path {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        anyhow::anyhow!("cannot create {} for storage.url: {e}", dir.display())
                    })?;
                }
                let conn = Connection::open(p).map_err(|e| {
                    anyhow::anyhow!("cannot open the store at {}: {e}", p.display())
                })?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn
            }
            None => Connection::open_in_memory()?,
        };
        conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        schema::migrate(&mut conn)?;

        let now = now_ms() as i64;
        let released = conn.execute(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?1, lease_until = NULL WHERE state = 'in_flight'",
            [now],
        )?;
        let mut backlog = VecDeque::new();
        {
            let mut stmt = conn.prepare(
                "SELECT source, id, event_type, received_at, headers, body FROM events
                 WHERE state = 'received' ORDER BY received_at",
            )?;
            let rows = stmt.query_map([], event_from_row)?;
            for row in rows {
                backlog.push_back(row?);
            }
        }
        if released > 0 || !backlog.is_empty() {
            tracing::info!(
                deliveries = released,
                events = backlog.len(),
                "recovered work from the last run: deliveries in flight are due again, events resume their routes"
            );
        }
        let writer = Writer::start(conn);
        let reader = match path {
            Some(p) => Reader::Pool(ReadPool::open(p).map_err(|e| {
                anyhow::anyhow!("cannot open the store at {} for reading: {e}", p.display())
            })?),
            None => Reader::Writer(writer.clone()),
        };
        Ok(SqliteStore {
            writer,
            reader,
            capacity,
            unfinished: AtomicUsize::new(backlog.len()),
            pipeline: Mutex::new(backlog),
            pipeline_ready: Notify::new(),
            targets: Mutex::default(),
        })
    }

    fn notifier(&self, target: &str) -> Arc<Notify> {
        self.targets
            .lock()
            .expect("targets lock poisoned")
            .entry(target.to_string())
            .or_default()
            .clone()
    }

    fn wake(&self, targets: impl IntoIterator<Item = String>) {
        for t in targets {
            self.notifier(&t).notify_one();
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn accept(&self, event: Event, signed: Option<[u8; 32]>) -> Result<Accepted, StoreError> {
        // Reserve a place before the commit, so concurrent accepts cannot
        // overshoot the capacity; a duplicate or a failure gives it back.
        if self
            .unfinished
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_err()
        {
            return Err(StoreError::Full);
        }
        let row = event.clone();
        let duplicate_of = self
            .writer
            .run(move |t| {
                // Either key, the (source, id) or the (source, signed) one,
                // makes a conflict: nothing is inserted.
                let inserted = t.execute(
                    "INSERT INTO events (source, id, event_type, received_at, headers, body, state, signed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'received', ?7) ON CONFLICT DO NOTHING",
                    params![
                        row.source,
                        row.id,
                        row.event_type,
                        row.received_at as i64,
                        rows::headers_json(&row.headers),
                        row.body.as_ref(),
                        signed.as_ref().map(|s| s.as_slice()),
                    ],
                )?;
                if inserted == 1 {
                    return Ok(None);
                }
                t.query_row(
                    "SELECT id FROM events WHERE source = ?1 AND (id = ?2 OR signed = ?3)
                     ORDER BY id = ?2 DESC LIMIT 1",
                    params![row.source, row.id, signed.as_ref().map(|s| s.as_slice())],
                    |r| r.get::<_, String>(0),
                )
                .map(Some)
            })
            .await
            .inspect_err(|_| {
                self.unfinished.fetch_sub(1, Ordering::AcqRel);
            })?;
        if let Some(id) = duplicate_of {
            self.unfinished.fetch_sub(1, Ordering::AcqRel);
            return Ok(Accepted::Duplicate(id));
        }
        self.pipeline
            .lock()
            .expect("pipeline lock poisoned")
            .push_back(event);
        self.pipeline_ready.notify_one();
        Ok(Accepted::New)
    }

    async fn next_event(&self) -> Event {
        loop {
            let ready = self.pipeline_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Some(e) = self
                .pipeline
                .lock()
                .expect("pipeline lock poisoned")
                .pop_front()
            {
                return e;
            }
            ready.await;
        }
    }

    async fn complete_event(&self, event: Event, processed: Processed) -> Result<(), StoreError> {
        let targets: Vec<String> = processed
            .deliveries
            .iter()
            .map(|d| d.target.clone())
            .collect();
        let routes = rows::routes_json(&processed.routes);
        self.writer
            .run(move |t| {
                let now = now_ms() as i64;
                insert_deliveries(t, &event, &processed.deliveries, now)?;
                insert_failures(t, &event, &processed.failures(&event.id), now)?;
                t.execute(
                    "UPDATE events SET state = 'processed', routes = ?3 WHERE source = ?1 AND id = ?2",
                    params![event.source, event.id, routes],
                )?;
                Ok(())
            })
            .await?;
        self.unfinished.fetch_sub(1, Ordering::AcqRel);
        self.wake(targets);
        Ok(())
    }

    async fn failed_routes(
        &self,
        filter: FailedFilter,
    ) -> Result<Vec<(Event, RouteFailure)>, StoreError> {
        self.reader
            .run(move |t| {
                let (clause, key) = match &filter {
                    FailedFilter::WaitingFor(p) => ("f.waiting_for = ?1", p.clone()),
                    FailedFilter::Event(id) => ("f.event_id = ?1", id.clone()),
                };
                let mut stmt = t.prepare(&format!(
                    "SELECT e.source, e.id, e.event_type, e.received_at, e.headers, e.body,
                            f.route, f.plugin, f.reason, f.waiting_for
                     FROM route_failures f JOIN events e ON e.source = f.event_source AND e.id = f.event_id
                     WHERE {clause} ORDER BY f.failed_at"
                ))?;
                let rows = stmt.query_map([key], |r| {
                    let event = event_from_row(r)?;
                    let failure = RouteFailure {
                        event_id: event.id.clone(),
                        route: r.get(6)?,
                        plugin: r.get(7)?,
                        reason: r.get(8)?,
                        waiting_for: r.get(9)?,
                    };
                    Ok((event, failure))
                })?;
                rows.collect()
            })
            .await
    }

    async fn record_rerun(
        &self,
        event: Event,
        route: &str,
        processed: Processed,
    ) -> Result<(), StoreError> {
        let targets: Vec<String> = processed
            .deliveries
            .iter()
            .map(|d| d.target.clone())
            .collect();
        let route = route.to_string();
        self.writer
            .run(move |t| {
                let now = now_ms() as i64;
                t.execute(
                    "DELETE FROM route_failures WHERE event_source = ?1 AND event_id = ?2 AND route = ?3",
                    params![event.source, event.id, route],
                )?;
                insert_deliveries(t, &event, &processed.deliveries, now)?;
                insert_failures(t, &event, &processed.failures(&event.id), now)?;
                rows::replace_route_outcomes(t, &event, &route, &processed.routes)
            })
            .await?;
        self.wake(targets);
        Ok(())
    }

    async fn claim(&self, target: &str, lease: Duration, max: usize) -> Vec<Delivery> {
        let notify = self.notifier(target);
        loop {
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let name = target.to_string();
            let lease_ms = lease.as_millis() as i64;
            let max = max.max(1);
            let claim = self
                .writer
                .run(move |t| claim_due(t, &name, now_ms() as i64, lease_ms, max))
                .await;
            let wait = match claim {
                Ok(Claim::Got(batch)) => return batch,
                Ok(Claim::NextAt(Some(at))) => {
                    Duration::from_millis((at - now_ms() as i64).max(0) as u64).min(IDLE_RECHECK)
                }
                Ok(Claim::NextAt(None)) => IDLE_RECHECK,
                Err(e) => {
                    tracing::error!(target, "cannot claim deliveries: {e}; retrying in 1s");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut woken => {}
            }
        }
    }

    async fn finish_attempt(
        &self,
        delivery: Delivery,
        attempt: Attempt,
        next: NextStep,
    ) -> Result<(), StoreError> {
        let target = delivery.target.clone();
        self.writer
            .run(move |t| {
                let now = now_ms() as i64;
                t.execute(
                    "INSERT OR REPLACE INTO attempts (delivery_id, n, started_at, duration_ms, status, error, response)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        delivery.id,
                        delivery.attempts,
                        attempt.started_at as i64,
                        attempt.duration_ms as i64,
                        attempt.status,
                        attempt.error,
                        attempt.response
                    ],
                )?;
                let (state, next_at) = match next {
                    NextStep::Delivered => ("delivered", None),
                    NextStep::Retry { after } => ("retrying", Some(now + after.as_millis() as i64)),
                    NextStep::Dead => ("dead", None),
                };
                t.execute(
                    "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4, lease_until = NULL,
                            last_error = ?5, updated_at = ?6 WHERE id = ?1",
                    params![delivery.id, state, delivery.attempts, next_at, attempt.error, now],
                )?;
                Ok(())
            })
            .await?;
        if let NextStep::Retry { .. } = next {
            // The target's claim loop may be sleeping on a later time.
            self.wake([target]);
        }
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        let awaiting = self.unfinished.load(Ordering::Acquire);
        let capacity = self.capacity;
        self.reader
            .run(move |t| {
                let mut stats = QueueStats { awaiting_pipeline: awaiting, capacity, ..QueueStats::default() };
                let mut stmt = t.prepare(
                    "SELECT state, COUNT(*) FROM deliveries WHERE state IN ('pending', 'retrying', 'in_flight', 'dead') GROUP BY state",
                )?;
                let mut rows = stmt.query([])?;
                while let Some(r) = rows.next()? {
                    let n = r.get::<_, i64>(1)? as usize;
                    match r.get::<_, String>(0)?.as_str() {
                        "in_flight" => stats.in_flight = n,
                        "dead" => stats.dead = n,
                        _ => stats.pending_deliveries += n,
                    }
                }
                stats.failed_routes =
                    t.query_row("SELECT COUNT(*) FROM route_failures", [], |r| r.get::<_, i64>(0))? as usize;
                Ok(stats)
            })
            .await
    }

    async fn event(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        let id = id.to_string();
        self.reader.run(move |t| rows::event_record(t, &id)).await
    }

    async fn deliveries(&self, q: DeliveryQuery) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.reader
            .run(move |t| {
                let mut stmt = t.prepare(
                    "SELECT id, event_id, event_source, route, target, state, attempts, next_attempt_at,
                            last_error, created_at, updated_at
                     FROM deliveries
                     WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR target = ?2) AND (?3 IS NULL OR id > ?3)
                     ORDER BY id LIMIT ?4",
                )?;
                let rows = stmt.query_map(params![q.state, q.target, q.after, q.limit as i64], delivery_record)?;
                rows.collect()
            })
            .await
    }

    async fn retry_delivery(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        let target: Option<String> = self
            .writer
            .run(move |t| {
                t.query_row(
                    "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?2, lease_until = NULL,
                            updated_at = ?2
                     WHERE id = ?1 AND state != 'in_flight' RETURNING target",
                    params![id, now_ms() as i64],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        let found = target.is_some();
        self.wake(target);
        Ok(found)
    }

    async fn replay_target(&self, target: &str, since: Option<u64>) -> Result<usize, StoreError> {
        let name = target.to_string();
        let n = self
            .writer
            .run(move |t| {
                t.execute(
                    "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?3, updated_at = ?3
                     WHERE target = ?1 AND state = 'dead' AND updated_at >= ?2",
                    params![name, since.unwrap_or(0) as i64, now_ms() as i64],
                )
            })
            .await?;
        if n > 0 {
            self.wake([target.to_string()]);
        }
        Ok(n)
    }

    async fn prune(
        &self,
        delivered_before: u64,
        dead_before: u64,
        events_before: u64,
    ) -> Result<Pruned, StoreError> {
        self.writer
            .run(move |t| {
                let (d, x, e) = (delivered_before as i64, dead_before as i64, events_before as i64);
                let old = "(state = 'delivered' AND updated_at < ?1) OR (state = 'dead' AND updated_at < ?2)";
                t.execute(
                    &format!("DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE {old})"),
                    params![d, x],
                )?;
                let deliveries = t.execute(&format!("DELETE FROM deliveries WHERE {old}"), params![d, x])?;
                let events = t.execute(
                    "DELETE FROM events WHERE state = 'processed' AND received_at < ?1
                       AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_source = events.source AND event_id = events.id)
                       AND NOT EXISTS (SELECT 1 FROM route_failures WHERE event_source = events.source AND event_id = events.id)",
                    [e],
                )?;
                Ok(Pruned { deliveries, events })
            })
            .await
    }
}

#[cfg(test)]
mod tests;
