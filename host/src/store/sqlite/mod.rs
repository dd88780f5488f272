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
mod handoff;
mod reader;
mod rows;
mod schema;
mod writer;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::Notify;

use super::{
    Accepted, Attempt, ControlChange, Delivery, DeliveryQuery, DeliveryRecord, EventQuery,
    EventRecord, EventSummary, FailedFilter, NextStep, Processed, Pruned, QueueStats, Recorded,
    RouteFailure, Store, StoreError, TargetControl, TargetCounts, codec, control,
};
use crate::event::{Event, now_ms};
use crate::store::listing::finished;
use crate::store::prune_cursor::{EventKey, PruneCursor};
use claim::claim_due;
use handoff::{Handed, Targets};
use reader::{ReadPool, Reader};
use rows::{event_from_row, insert_deliveries, insert_failures};
use writer::Writer;

/// How long a claim waits before looking again when nothing is due.
const IDLE_RECHECK: Duration = Duration::from_secs(30);
/// Rows one retention job deletes: small jobs interleave with ingest's
/// commits rather than hold the store thread.
const PRUNE_CHUNK: usize = 100;
/// The writer's page cache (KiB): the hot ends of the tables and indexes
/// fit. Bigger is not better: SQLite walks the whole cache at nearly every
/// commit, which at 32 MiB took an eighth of the store thread. (A b-tree
/// rebalance that swaps two pages' numbers parks one under the lock-byte
/// page's number, 262,145 for 4 KiB pages; the cache then holds a key past
/// the end of the file, and each commit's truncate to the file's size
/// scans every slot. Seen with gdb on `pcache1TruncateUnsafe`.)
const CACHE_KIB: i64 = 8 * 1024;

/// An event waiting for the pipeline: only its key is held in memory, so a
/// backlog costs memory by its length, not by its bodies.
#[derive(Debug, Clone)]
struct Waiting {
    source: String,
    id: String,
}

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
    pipeline: Mutex<VecDeque<Waiting>>,
    pipeline_ready: Notify,
    targets: Arc<Targets>,
    prune_cursor: PruneCursor,
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
                // The checkpointer thread does this, off the writer's path.
                conn.pragma_update(None, "wal_autocheckpoint", 0)?;
                conn.pragma_update(None, "journal_size_limit", 64 << 20)?;
                conn
            }
            None => Connection::open_in_memory()?,
        };
        // With fsync on, a file's log is synced by the writer's syncer
        // thread after each commit, not by the commit itself (see
        // `writer`); so the commit is `NORMAL` there too.
        let synced_by_writer = fsync && path.is_some();
        conn.pragma_update(
            None,
            "synchronous",
            if fsync && !synced_by_writer {
                "FULL"
            } else {
                "NORMAL"
            },
        )?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        // Each job runs in a savepoint, which keeps the first copy of every
        // page it changes in a statement journal. Past 64 KiB SQLite spills
        // that journal to a temporary file, and then every page a job
        // touches costs two `pwrite`s (measured: three pages per event).
        // In memory it is a copy, and it is emptied as each job ends.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Plan each statement once, whatever it is bound to. Without this,
        // SQLite marks a statement whose plan could use a bound value (a
        // `LIMIT ?`, say) to be re-planned when that value is rebound, and
        // rusqlite clears a cached statement's bindings as it is put back:
        // so retention's and the claim's queries were parsed and planned
        // again on every run. The queries repeat their partial indexes'
        // predicates as literals (`listing::unfinished!`), so no plan here
        // needs a bound value to reach its index.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        schema::migrate(&mut conn)?;

        let now = now_ms() as i64;
        let released = conn.execute(
            "UPDATE deliveries SET state = 'pending', due_at = ?1 WHERE state = 'in_flight'",
            [now],
        )?;
        let mut backlog = VecDeque::new();
        {
            let mut stmt = conn.prepare(
                "SELECT source, id FROM events WHERE state = 'received' ORDER BY received_at",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(Waiting {
                    source: r.get(0)?,
                    id: r.get(1)?,
                })
            })?;
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
        let checkpoints = match path {
            Some(p) => {
                let c = Connection::open(p).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot open the store at {} to checkpoint: {e}",
                        p.display()
                    )
                })?;
                c.busy_timeout(Duration::from_secs(5))?;
                c.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
                let mut wal = p.as_os_str().to_owned();
                wal.push("-wal");
                Some((c, PathBuf::from(wal)))
            }
            None => None,
        };
        let log = match &checkpoints {
            // The log exists once the connection has read the database
            // (the migrations and the recovery above did).
            Some((_, wal)) if synced_by_writer => Some(std::fs::File::open(wal).map_err(|e| {
                anyhow::anyhow!("cannot open the store's log {}: {e}", wal.display())
            })?),
            _ => None,
        };
        let writer = Writer::start(conn, checkpoints, log);
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
            prune_cursor: PruneCursor::new(),
            targets: Arc::default(),
        })
    }

    /// The table has deliveries for `target` due at `at` (ms).
    /// Put leased deliveries back unattempted, due now; returns how many
    /// were still under the lease they were claimed with.
    async fn give_back(&self, deliveries: Vec<Delivery>) -> Result<usize, StoreError> {
        let now = now_ms() as i64;
        self.writer
            .run_idempotent(move |t| {
                let mut update = t.prepare_cached(
                    "UPDATE deliveries SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END,
                         due_at = ?2, updated_at = ?2
                     WHERE id = ?1 AND state = 'in_flight' AND due_at = ?3",
                )?;
                let mut n = 0;
                for d in &deliveries {
                    n += update.execute(params![d.id, now, d.lease as i64])?;
                }
                Ok(n)
            })
            .await
    }

    fn due_in_table(&self, target: &str, at: i64) {
        let queue = self.targets.get(target);
        queue.due_in_table(at);
        queue.notify.notify_one();
    }

    /// Insert the deliveries and failed routes of `processed` for `event`,
    /// in the job's transaction `t`; the deliveries handed to their workers
    /// once it commits.
    fn insert_result(
        targets: &Targets,
        t: &Transaction<'_>,
        event: &Event,
        processed: Processed,
        now: i64,
    ) -> rusqlite::Result<Ready> {
        let waits = key_waits(t, &processed.deliveries)?;
        let (starts, mut handed) = targets.plan(&processed.deliveries, &waits, now);
        let inserted = insert_deliveries(t, event, &processed.deliveries, &starts, now)?;
        insert_failures(t, event, &processed.failures(&event.id), now)?;
        let mut ready = Ready::default();
        for ((d, slot), new) in processed
            .deliveries
            .into_iter()
            .zip(&mut handed)
            .zip(inserted)
        {
            match (slot.take(), new) {
                (Some(mut h), true) => {
                    h.fill(d);
                    ready.handed.push(h);
                }
                // Due in the table: its worker is told after the commit.
                (None, true) => ready.due.push(d.target),
                // A row that existed already (a deterministic re-run) is
                // not ours to send: its place is given back.
                (_, false) => {}
            }
        }
        Ok(ready)
    }

    /// After the commit: queue handed deliveries for their workers, then
    /// wake each worker concerned once.
    fn hand_over(&self, ready: Ready) {
        let mut woken: Vec<Arc<handoff::TargetQueue>> = Vec::new();
        let queues = ready
            .handed
            .into_iter()
            .map(Handed::push)
            .chain(ready.due.iter().map(|t| self.targets.get(t)));
        for queue in queues {
            if !woken.iter().any(|q| Arc::ptr_eq(q, &queue)) {
                woken.push(queue);
            }
        }
        for q in woken {
            q.notify.notify_one();
        }
    }

    /// `accept`, and with `queue` false `accept_running`: the event counts
    /// against the capacity either way until `complete_event`.
    async fn accept_event(
        &self,
        event: Event,
        signed: Option<[u8; 32]>,
        queue: bool,
    ) -> Result<Accepted, StoreError> {
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
        let key = Waiting {
            source: event.source.clone(),
            id: event.id.clone(),
        };
        let duplicate_of = self
            .writer
            .run(move |t| insert_event(t, &event, signed, None))
            .await
            .inspect_err(|_| {
                self.unfinished.fetch_sub(1, Ordering::AcqRel);
            })?;
        if let Some(id) = duplicate_of {
            self.unfinished.fetch_sub(1, Ordering::AcqRel);
            return Ok(Accepted::Duplicate(id));
        }
        if queue {
            self.pipeline
                .lock()
                .expect("pipeline lock poisoned")
                .push_back(key);
            self.pipeline_ready.notify_one();
        }
        Ok(Accepted::New)
    }

    /// The event waiting for the pipeline at the front, read from the table.
    async fn load(&self, key: &Waiting) -> Result<Option<Event>, StoreError> {
        let key = key.clone();
        self.reader
            .run(move |t| {
                t.prepare_cached(
                    "SELECT source, id, event_type, received_at, headers, body FROM events
                     WHERE source = ?1 AND id = ?2",
                )?
                .query_row(params![key.source, key.id], event_from_row)
                .optional()
            })
            .await
    }
}

const INSERT_EVENT: &str =
    "INSERT INTO events (source, id, event_type, received_at, headers, body, state, signed, routes)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING";

/// Retention's chunk of deliveries: up to `?3` delivered before `?1` or
/// dead before `?2`, found as two ranges of the partial index
/// `deliveries_done` (whose predicate is repeated as it is written there),
/// deleted by one statement, which returns their events. Dead deliveries
/// younger than `?2` are not read at all.
const DELETE_FINISHED: &str = concat!(
    "DELETE FROM deliveries WHERE rowid IN (
         SELECT rowid FROM deliveries WHERE ",
    finished!(),
    " AND state = 'delivered' AND updated_at < ?1
         UNION ALL
         SELECT rowid FROM deliveries WHERE ",
    finished!(),
    " AND state = 'dead' AND updated_at < ?2 AND NOT order_block
         LIMIT ?3)
     RETURNING event_source, event_id"
);

/// The event `(?1, ?2)` if it was received before `?3` and is done with:
/// processed, with no delivery or failed route left.
const DELETE_FREED_EVENT: &str = "DELETE FROM events
     WHERE source = ?1 AND id = ?2 AND received_at < ?3 AND state = 'processed'
       AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_source = ?1 AND event_id = ?2)
       AND NOT EXISTS (SELECT 1 FROM route_failures WHERE event_source = ?1 AND event_id = ?2)";

/// The last key in `events_time` before `?1`: where a pass's reading ends.
const LAST_EVENT_BEFORE: &str = "SELECT received_at, id, source FROM events
     WHERE received_at < ?1 ORDER BY received_at DESC, id DESC, source DESC LIMIT 1";

/// Where retention's chunk of events after `(?1, ?2, ?3)` (their key in
/// `events_time`, which holds it whole) ends: the key of the `?5`th event
/// after it received before `?4`, if there is one. Read from the index.
const EVENTS_CHUNK_END: &str = "SELECT received_at, id, source FROM events
     WHERE (received_at, id, source) > (?1, ?2, ?3) AND received_at < ?4
     ORDER BY received_at, id, source LIMIT 1 OFFSET ?5";

/// Retention's chunk of events: those after `(?1, ?2, ?3)` and up to
/// `(?5, ?6, ?7)` received before `?4` that are done with (processed, no
/// delivery or failed route left), deleted by one statement.
const DELETE_OLD_EVENTS: &str = "DELETE FROM events
     WHERE (received_at, id, source) > (?1, ?2, ?3) AND (received_at, id, source) <= (?5, ?6, ?7)
       AND received_at < ?4 AND state = 'processed'
       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_source = events.source AND d.event_id = events.id)
       AND NOT EXISTS (SELECT 1 FROM route_failures f WHERE f.event_source = events.source AND f.event_id = events.id)";

/// An attempt's record, under the lease it was claimed with.
const FINISH_ATTEMPT: &str = "UPDATE deliveries SET state = ?2, attempts = ?3, due_at = ?4, last_error = ?5, updated_at = ?6,
            log = json_insert(COALESCE(log, '[]'), '$[#]', json(?7))
     WHERE id = ?1 AND state = 'in_flight' AND due_at = ?8";

/// For each of `deliveries`, whether it waits for an earlier delivery with
/// its ordering key: one still unfinished in the table, or one before it
/// in this same list.
fn key_waits(t: &Transaction<'_>, deliveries: &[Delivery]) -> rusqlite::Result<Vec<bool>> {
    let mut waits = Vec::with_capacity(deliveries.len());
    for (i, d) in deliveries.iter().enumerate() {
        let Some(key) = &d.order_key else {
            waits.push(false);
            continue;
        };
        let earlier_here = deliveries[..i]
            .iter()
            .any(|e| e.target == d.target && e.order_key.as_ref() == Some(key));
        waits.push(
            earlier_here
                || t.prepare_cached(rows::KEY_WAITING)?
                    .query_row(params![d.target, key], |r| r.get(0))?,
        );
    }
    Ok(waits)
}

/// Insert a received event, `processed` (with what its routes did) or
/// `received`; `Some(original id)` when it is a duplicate instead.
fn insert_event(
    t: &Transaction<'_>,
    event: &Event,
    signed: Option<[u8; 32]>,
    routes: Option<&str>,
) -> rusqlite::Result<Option<String>> {
    // Either key, the (source, id) or the (source, signed) one, makes a
    // conflict: nothing is inserted.
    let inserted = t.prepare_cached(INSERT_EVENT)?.execute(params![
        event.source,
        event.id,
        event.event_type,
        event.received_at as i64,
        codec::headers_json(&event.headers),
        event.body.as_ref(),
        if routes.is_some() {
            "processed"
        } else {
            "received"
        },
        signed.as_ref().map(|s| s.as_slice()),
        routes,
    ])?;
    if inserted == 1 {
        return Ok(None);
    }
    t.prepare_cached(
        "SELECT id FROM events WHERE source = ?1 AND (id = ?2 OR signed = ?3)
         ORDER BY id = ?2 DESC LIMIT 1",
    )?
    .query_row(
        params![
            event.source,
            event.id,
            signed.as_ref().map(|s| s.as_slice())
        ],
        |r| r.get::<_, String>(0),
    )
    .map(Some)
}

/// What a committed result hands on: deliveries for their workers'
/// memory, and the targets that got deliveries due in the table.
#[derive(Default)]
struct Ready {
    handed: Vec<Handed>,
    due: Vec<String>,
}

#[async_trait]
impl Store for SqliteStore {
    fn observe_commits(&self, commits: crate::metrics::Commits) {
        self.writer.observe_commits(commits);
    }

    async fn accept(&self, event: Event, signed: Option<[u8; 32]>) -> Result<Accepted, StoreError> {
        self.accept_event(event, signed, true).await
    }

    async fn accept_running(
        &self,
        event: Event,
        signed: Option<[u8; 32]>,
    ) -> Result<Accepted, StoreError> {
        self.accept_event(event, signed, false).await
    }

    async fn accept_processed(
        &self,
        event: Event,
        signed: Option<[u8; 32]>,
        processed: Processed,
    ) -> Result<Accepted, StoreError> {
        let routes = codec::routes_json(&processed.routes);
        let targets = self.targets.clone();
        let outcome = self
            .writer
            .run(move |t| {
                if let Some(original) = insert_event(t, &event, signed, Some(&routes))? {
                    return Ok(Err(original));
                }
                Self::insert_result(&targets, t, &event, processed, now_ms() as i64).map(Ok)
            })
            .await?;
        match outcome {
            Ok(ready) => {
                self.hand_over(ready);
                Ok(Accepted::New)
            }
            Err(original) => Ok(Accepted::Duplicate(original)),
        }
    }

    async fn next_event(&self) -> Event {
        loop {
            let ready = self.pipeline_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let front = self
                .pipeline
                .lock()
                .expect("pipeline lock poisoned")
                .front()
                .cloned();
            let Some(key) = front else {
                ready.await;
                continue;
            };
            match self.load(&key).await {
                Ok(found) => {
                    self.pipeline
                        .lock()
                        .expect("pipeline lock poisoned")
                        .pop_front();
                    match found {
                        Some(event) => return event,
                        // Not there: nothing to run (it cannot be pruned
                        // while received, so this is a database edited by
                        // hand). It no longer counts as waiting.
                        None => {
                            tracing::warn!(event_id = %key.id, source = %key.source,
                                "an event waiting for the pipeline is no longer in the store; skipped");
                            self.unfinished.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(event_id = %key.id,
                        "cannot read an event waiting for the pipeline: {e}; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn complete_event(&self, event: Event, processed: Processed) -> Result<(), StoreError> {
        let routes = codec::routes_json(&processed.routes);
        let targets = self.targets.clone();
        let received_at = event.received_at;
        let commit = self.writer.run(move |t| {
            let now = now_ms() as i64;
            let ready = Self::insert_result(&targets, t, &event, processed, now)?;
            t.prepare_cached(
                "UPDATE events SET state = 'processed', routes = ?3 WHERE source = ?1 AND id = ?2",
            )?
            .execute(params![event.source, event.id, routes])?;
            Ok(ready)
        });
        let ready = self.prune_cursor.again_after(received_at, commit).await?;
        self.unfinished.fetch_sub(1, Ordering::AcqRel);
        self.hand_over(ready);
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
        let route = route.to_string();
        let targets = self.targets.clone();
        let received_at = event.received_at;
        let commit = self.writer.run(move |t| {
            let now = now_ms() as i64;
            t.execute(
                "DELETE FROM route_failures WHERE event_source = ?1 AND event_id = ?2 AND route = ?3",
                params![event.source, event.id, route],
            )?;
            let outcomes = processed.routes.clone();
            let ready = Self::insert_result(&targets, t, &event, processed, now)?;
            rows::replace_route_outcomes(t, &event, &route, &outcomes)?;
            Ok(ready)
        });
        let ready = self.prune_cursor.again_after(received_at, commit).await?;
        self.hand_over(ready);
        Ok(())
    }

    async fn claim(&self, target: &str, lease: Duration, max: usize) -> Vec<Delivery> {
        let queue = self.targets.get(target);
        let max = max.max(1);
        loop {
            let woken = queue.notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = now_ms() as i64;
            let mut got = queue.take(max, lease, now);
            if got.len() < max && queue.table_due(now) {
                let name = target.to_string();
                let lease_ms = lease.as_millis() as i64;
                let want = max - got.len();
                let seen = queue.clone();
                let claimed = self
                    .writer
                    .run(move |t| {
                        let (due, next) = claim_due(t, &name, now_ms() as i64, lease_ms, want)?;
                        // On the store thread, in order with every insert.
                        seen.table_seen(next);
                        Ok(due)
                    })
                    .await;
                match claimed {
                    Ok(due) => got.extend(due),
                    Err(e) => {
                        tracing::error!(target, "cannot claim deliveries: {e}; retrying in 1s");
                        // Whatever the table holds is still due (the failed
                        // job may have noted otherwise before its commit).
                        queue.due_in_table(now);
                        if got.is_empty() {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    }
                }
            }
            if !got.is_empty() {
                return got;
            }
            let wait = match queue.table_next() {
                Some(at) => Duration::from_millis((at - now_ms() as i64).max(0) as u64),
                None => IDLE_RECHECK,
            };
            tokio::select! {
                () = tokio::time::sleep(wait.min(IDLE_RECHECK)) => {
                    // Nothing told us, but look at the table anyway: it
                    // is the truth, and this bounds any missed notice.
                    queue.due_in_table(now_ms() as i64);
                }
                () = &mut woken => {}
            }
        }
    }

    async fn finish_attempt(
        &self,
        delivery: Delivery,
        attempt: Attempt,
        next: NextStep,
    ) -> Result<Recorded, StoreError> {
        let target = delivery.target.clone();
        // The next delivery with its key may go once this one is done.
        let frees_key = !matches!(next, NextStep::Retry { .. });
        let logged = serde_json::to_string(&attempt).expect("an attempt serializes");
        // One statement: it is all or nothing without a savepoint, and the
        // lease check makes running it twice harmless.
        let due = self
            .writer
            .run_idempotent(move |t| {
                let now = now_ms() as i64;
                let (state, due_at) = match next {
                    NextStep::Delivered => ("delivered", None),
                    NextStep::Retry { after } => ("retrying", Some(now + after.as_millis() as i64)),
                    NextStep::Dead => ("dead", None),
                };
                // Only under the lease it was claimed with: a record that
                // comes after the lease ran out and the delivery was claimed
                // again (a long store outage) changes nothing.
                let n = t.prepare_cached(FINISH_ATTEMPT)?.execute(params![
                    delivery.id,
                    state,
                    delivery.attempts,
                    due_at,
                    attempt.error,
                    now,
                    logged,
                    delivery.lease as i64
                ])?;
                if n == 0 {
                    return Ok(Err(Recorded::LeaseLost));
                }
                // Only when one waits: a wake sends the target's next
                // deliveries through the table rather than memory.
                let successor = match &delivery.order_key {
                    Some(key) if frees_key => t
                        .prepare_cached(rows::KEY_SUCCESSOR)?
                        .query_row(params![delivery.target, key], |r| r.get(0))?,
                    _ => false,
                };
                Ok(Ok((due_at, successor)))
            })
            .await?;
        match due {
            Err(lost) => Ok(lost),
            Ok((due, successor)) => {
                if let Some(at) = due {
                    // The target's claim may be sleeping on a later time.
                    self.due_in_table(&target, at);
                }
                if successor {
                    self.due_in_table(&target, now_ms() as i64);
                }
                Ok(Recorded::Yes)
            }
        }
    }

    async fn release(&self, delivery: Delivery) -> Result<Recorded, StoreError> {
        let target = delivery.target.clone();
        let n = self.give_back(vec![delivery]).await?;
        if n == 0 {
            return Ok(Recorded::LeaseLost);
        }
        self.due_in_table(&target, now_ms() as i64);
        Ok(Recorded::Yes)
    }

    async fn hold(&self, target: &str) -> Result<(), StoreError> {
        let queue = self.targets.get(target);
        let waiting = queue.hold();
        if waiting.is_empty() {
            return Ok(());
        }
        let given_back = self.give_back(waiting).await;
        // Given back or not, they are due in the table (at the latest when
        // their leases end).
        self.due_in_table(target, now_ms() as i64);
        given_back.map(drop)
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

    async fn event_in(
        &self,
        source: Option<&str>,
        id: &str,
    ) -> Result<Option<EventRecord>, StoreError> {
        let (source, id) = (source.map(str::to_string), id.to_string());
        self.reader
            .run(move |t| rows::event_record(t, source.as_deref(), &id))
            .await
    }

    async fn events(&self, q: EventQuery) -> Result<Vec<EventSummary>, StoreError> {
        self.reader.run(move |t| rows::event_summaries(t, &q)).await
    }

    async fn deliveries(&self, q: DeliveryQuery) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.reader
            .run(move |t| rows::delivery_records(t, &q))
            .await
    }

    async fn target_counts(&self) -> Result<BTreeMap<String, TargetCounts>, StoreError> {
        self.reader.run(rows::target_counts).await
    }

    async fn target_controls(
        &self,
    ) -> Result<std::collections::HashMap<String, TargetControl>, StoreError> {
        self.reader
            .run(|t| {
                let mut stmt = t.prepare_cached("SELECT target, control FROM target_control")?;
                stmt.query_map([], |r| {
                    let target: String = r.get(0)?;
                    let control = control::decode(&target, &r.get::<_, String>(1)?);
                    Ok((target, control))
                })?
                .collect()
            })
            .await
    }

    async fn change_target_control(
        &self,
        target: &str,
        change: ControlChange,
    ) -> Result<(TargetControl, TargetControl), StoreError> {
        let target = target.to_string();
        self.writer
            .run(move |t| {
                let mut control = t
                    .prepare_cached("SELECT control FROM target_control WHERE target = ?1")?
                    .query_row([&target], |r| r.get::<_, String>(0))
                    .optional()?
                    .map(|text| control::decode(&target, &text))
                    .unwrap_or_default();
                let before = control.clone();
                if change(&mut control) {
                    t.prepare_cached(
                        "INSERT INTO target_control (target, control) VALUES (?1, ?2)
                         ON CONFLICT (target) DO UPDATE SET control = excluded.control",
                    )?
                    .execute(params![target, control::encode(&control)])?;
                }
                Ok((before, control))
            })
            .await
    }

    async fn retry_delivery(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        let target: Option<String> = self
            .writer
            .run(move |t| {
                t.query_row(
                    "UPDATE deliveries SET state = 'pending', attempts = 0, due_at = ?2, updated_at = ?2
                     WHERE id = ?1 AND state != 'in_flight' RETURNING target",
                    params![id, now_ms() as i64],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        let found = target.is_some();
        if let Some(target) = target {
            self.due_in_table(&target, now_ms() as i64);
        }
        Ok(found)
    }

    async fn skip_delivery(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        let target: Option<String> = self
            .writer
            .run(move |t| {
                t.query_row(
                    "UPDATE deliveries SET order_block = 0, updated_at = ?2
                     WHERE id = ?1 AND state = 'dead' AND order_block RETURNING target",
                    params![id, now_ms() as i64],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        if let Some(target) = &target {
            self.due_in_table(target, now_ms() as i64);
        }
        Ok(target.is_some())
    }

    async fn replay_target(&self, target: &str, since: Option<u64>) -> Result<usize, StoreError> {
        let name = target.to_string();
        let n = self
            .writer
            .run(move |t| {
                t.execute(
                    "UPDATE deliveries SET state = 'pending', attempts = 0, due_at = ?3, updated_at = ?3
                     WHERE target = ?1 AND state = 'dead' AND updated_at >= ?2",
                    params![name, since.unwrap_or(0) as i64, now_ms() as i64],
                )
            })
            .await?;
        if n > 0 {
            self.due_in_table(target, now_ms() as i64);
        }
        Ok(n)
    }

    async fn prune(
        &self,
        delivered_before: u64,
        dead_before: u64,
        events_before: u64,
    ) -> Result<Pruned, StoreError> {
        let (d, x, e) = (
            delivered_before as i64,
            dead_before as i64,
            events_before as i64,
        );
        let mut pruned = Pruned::default();
        // In chunks, each one statement and its own job: ingest commits
        // between them. An event leaves with its last delivery, if it is
        // old enough. No savepoint (it would copy every page a chunk
        // touches): a chunk that fails halfway leaves only what the next
        // pass deletes, or for an event freed by a delivery that went, the
        // rescan from the first.
        loop {
            let (n, events) = self
                .writer
                .run_idempotent(move |t| {
                    let mut freed: Vec<(String, String)> = t
                        .prepare_cached(DELETE_FINISHED)?
                        .query_map(params![d, x, PRUNE_CHUNK as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    let n = freed.len();
                    freed.sort_unstable();
                    freed.dedup();
                    let mut event = t.prepare_cached(DELETE_FREED_EVENT)?;
                    let mut events = 0;
                    for (source, id) in &freed {
                        events += event.execute(params![source, id, e])?;
                    }
                    Ok((n, events))
                })
                .await?;
            pruned.deliveries += n;
            pruned.events += events;
            if n < PRUNE_CHUNK {
                break;
            }
        }
        // Events that came of age since the last pass, oldest first, a
        // chunk of keys at a time: those with deliveries or failed routes
        // left stay (see `PruneCursor`).
        let mut after = self.prune_cursor.start();
        let mut read = None;
        loop {
            let from = after.clone();
            let (n, end, last) = self
                .writer
                .run_idempotent(move |t| {
                    let end: Option<EventKey> = t
                        .prepare_cached(EVENTS_CHUNK_END)?
                        .query_row(
                            params![from.0, from.1, from.2, e, PRUNE_CHUNK as i64 - 1],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .optional()?;
                    // Fewer than a chunk left: the last runs to the cutoff,
                    // and the reading ends at the last key before it.
                    let (to, last) = match &end {
                        Some(end) => (end.clone(), None),
                        None => (
                            (i64::MAX, String::new(), String::new()),
                            t.prepare_cached(LAST_EVENT_BEFORE)?
                                .query_row([e], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                                .optional()?,
                        ),
                    };
                    let n = t
                        .prepare_cached(DELETE_OLD_EVENTS)?
                        .execute(params![from.0, from.1, from.2, e, to.0, to.1, to.2])?;
                    Ok((n, end, last))
                })
                .await?;
            pruned.events += n;
            match end {
                Some(end) => {
                    after = end.clone();
                    read = Some(end);
                }
                None => {
                    read = last.or(read);
                    break;
                }
            }
        }
        self.prune_cursor.read_to(read);
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests;
