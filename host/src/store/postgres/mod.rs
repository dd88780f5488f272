//! [`Store`] on PostgreSQL, for several routers sharing one queue.
//!
//! - Every piece of work is claimed with `FOR UPDATE SKIP LOCKED` under a
//!   lease on the database's clock: due deliveries (with a token per claim,
//!   which `finish_attempt` must match), events waiting for their routes,
//!   and failed routes being re-run. A node that dies mid-way has its work
//!   taken over by the others once the lease runs out.
//! - Deduplication is the table's unique keys: the same event sent to two
//!   nodes at once is one row, and the second insert answers "duplicate".
//! - Commits that make work `pg_notify`; each node `LISTEN`s (`listen.rs`)
//!   and wakes its own waiters, and polls only as a fallback.
//! - New deliveries go to the table as due (there is no in-memory hand-off
//!   as in the SQLite store yet): the worker of whichever node claims first
//!   sends them.

mod connect;
mod listen;
mod schema;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::{
    Accepted, Attempt, ControlChange, Delivery, DeliveryQuery, DeliveryRecord, EventQuery,
    EventRecord, EventSummary, FailedFilter, NextStep, Processed, Pruned, QueueStats, Recorded,
    RouteFailure, SharedStarts, Store, StoreError, TargetControl, TargetCounts, codec, control,
    listing,
};
use crate::event::Event;
use crate::metrics::Commits;
use crate::store::listing::first_in_line;
use crate::store::prune_cursor::{EventKey, PruneCursor};
pub use listen::Wake;

/// How long a node may run an event's routes (or re-run a failed route)
/// before another node may take it over.
pub const PIPELINE_LEASE: Duration = Duration::from_secs(60);
/// The count of events waiting for their routes, which `queue_capacity`
/// bounds, is read again after this.
const BACKLOG_RECOUNT: Duration = Duration::from_millis(250);
/// Rows one retention statement deletes.
const PRUNE_CHUNK: i64 = 1000;
/// Events a pass leaves for the next one to check again (see
/// `PostgresStore::recheck`), at most: past that, the rescan finds them.
const RECHECK_MAX: usize = 10_000;

/// SQL: event `v` is done with, so that retention may delete it:
/// processed, with no delivery or failed route left.
macro_rules! nothing_holds {
    () => {
        "v.state = 'processed'
         AND NOT EXISTS (SELECT 1 FROM deliveries d
                         WHERE d.event_source = v.source AND d.event_id = v.id)
         AND NOT EXISTS (SELECT 1 FROM route_failures f
                         WHERE f.event_source = v.source AND f.event_id = v.id)"
    };
}

/// The connection and wake-up settings (`[storage]`).
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub pool_size: usize,
    /// Waiters look at the tables at least this often, notices or not.
    pub poll_interval: Duration,
    /// Most events waiting for their routes before `accept` says Full.
    pub capacity: usize,
    /// The lease on an event whose routes run, or a failed route being
    /// re-run ([`PIPELINE_LEASE`]).
    pub pipeline_lease: Duration,
}

pub struct PostgresStore {
    pool: Pool,
    opts: PgOptions,
    wake: Arc<Wake>,
    /// Events waiting for their routes, as last counted, plus this node's
    /// accepts since.
    backlog: Mutex<(Option<Instant>, usize)>,
    listener: tokio::task::JoinHandle<()>,
    commits: std::sync::OnceLock<Commits>,
    /// This node's retention reading of old events: each node prunes, and
    /// each reads every event once (see `PruneCursor`).
    prune_cursor: PruneCursor,
    /// Events whose deliveries this node's last pass deleted, but which
    /// stayed while their other deliveries, all finished, were still there:
    /// another node may have been deleting those at once, each statement
    /// seeing the other's, so the next pass checks them again.
    recheck: Mutex<Vec<(String, String)>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::DISK_FULL || *c == SqlState::OUT_OF_MEMORY => StoreError::Full,
        _ => match e.as_db_error() {
            Some(db) => StoreError::Unavailable(format!("PostgreSQL: {}", db.message())),
            None => StoreError::Unavailable(format!("PostgreSQL: {e}")),
        },
    }
}

fn bad_row(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("a stored row is unreadable: {e}"))
}

/// An event's own columns as an insert takes them: `source, id,
/// event_type, received_at, headers, body, signed`, in that order.
struct EventColumns<'a> {
    event: &'a Event,
    body: &'a [u8],
    received_at: i64,
    headers: String,
    signed: Option<Vec<u8>>,
}

impl<'a> EventColumns<'a> {
    fn new(event: &'a Event, signed: Option<[u8; 32]>) -> Self {
        EventColumns {
            event,
            body: event.body.as_ref(),
            received_at: event.received_at as i64,
            headers: codec::headers_json(&event.headers),
            signed: signed.map(|s| s.to_vec()),
        }
    }

    fn params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        vec![
            &self.event.source,
            &self.event.id,
            &self.event.event_type,
            &self.received_at,
            &self.headers,
            &self.body,
            &self.signed,
        ]
    }
}

/// `source, id, event_type, received_at, headers, body` from column `at` on.
fn event_at(r: &Row, at: usize) -> Result<Event, StoreError> {
    let headers: String = r.get(at + 4);
    Ok(Event {
        source: r.get(at),
        id: r.get(at + 1),
        event_type: r.get(at + 2),
        received_at: r.get::<_, i64>(at + 3) as u64,
        headers: codec::headers_from_json(&headers).map_err(bad_row)?,
        body: r.get::<_, Vec<u8>>(at + 5).into(),
    })
}

const EVENT_COLUMNS: &str = "source, id, event_type, received_at, headers, body";

const DELIVERY_RECORD: &str = "id, event_id, event_source, route, target, state, attempts,
    CASE WHEN state IN ('pending', 'retrying') THEN due_at END, last_error, created_at, updated_at";

fn delivery_record(r: &Row) -> DeliveryRecord {
    DeliveryRecord {
        id: r.get(0),
        event_id: r.get(1),
        source: r.get(2),
        route: r.get(3),
        target: r.get(4),
        state: r.get(5),
        attempts: r.get::<_, i32>(6) as u32,
        next_attempt_at: r.get::<_, Option<i64>>(7).map(|v| v as u64),
        last_error: r.get(8),
        created_at: r.get::<_, i64>(9) as u64,
        updated_at: r.get::<_, i64>(10) as u64,
        attempt_log: Vec::new(),
    }
}

impl PostgresStore {
    /// Connect, migrate (under the migration lock) and start listening.
    pub async fn open(url: &str, opts: PgOptions) -> anyhow::Result<Self> {
        let (config, tls) = connect::config(url)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the PostgreSQL pool: {e}"))?;
        {
            let mut client = pool
                .get()
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL (storage.url): {e}"))?;
            schema::migrate(&mut client).await?;
        }
        let wake = Arc::new(Wake::default());
        let listener = tokio::spawn(listen::run(config, tls, wake.clone()));
        Ok(PostgresStore {
            pool,
            opts,
            wake,
            backlog: Mutex::new((None, 0)),
            listener,
            commits: std::sync::OnceLock::new(),
            prune_cursor: PruneCursor::new(),
            recheck: Mutex::new(Vec::new()),
        })
    }

    /// Run `write`, one commit, and report it to the commit metrics.
    async fn committed<T>(
        &self,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let began = Instant::now();
        let written = write.await;
        if written.is_ok()
            && let Some(commits) = self.commits.get()
        {
            commits.observe(1, began.elapsed());
        }
        written
    }

    /// `accept_processed`: the event and its routes' result in one statement.
    async fn insert_processed(
        &self,
        event: Event,
        signed: Option<[u8; 32]>,
        processed: Processed,
    ) -> Result<Accepted, StoreError> {
        let c = self.client().await?;
        let rows = ResultRows::new(&event, &processed);
        let statement = c
            .prepare_cached(result_sql(Head::Insert))
            .await
            .map_err(pg)?;
        let columns = EventColumns::new(&event, signed);
        let routes = codec::routes_json(&processed.routes);
        let mut params = columns.params();
        params.push(&routes);
        let written = write_result(&**c, &statement, &rows, &params).await?;
        match written {
            Some(targets) => {
                self.wake_targets(&targets);
                Ok(Accepted::New)
            }
            None => Ok(Accepted::Duplicate(
                self.original(&c, &event, signed).await?,
            )),
        }
    }

    /// `complete_event`: the routes' result of an event stored `received`.
    async fn record_processed(&self, event: Event, processed: Processed) -> Result<(), StoreError> {
        let c = self.client().await?;
        let rows = ResultRows::new(&event, &processed);
        let routes = codec::routes_json(&processed.routes);
        let statement = c
            .prepare_cached(result_sql(Head::Complete))
            .await
            .map_err(pg)?;
        let targets = write_result(
            &**c,
            &statement,
            &rows,
            &[&event.source, &event.id, &routes],
        )
        .await?
        // Gone (pruned by hand, say): nothing is left to record.
        .unwrap_or_default();
        {
            // One fewer waiting, until the next recount says how many.
            let mut b = self.backlog.lock().expect("backlog lock poisoned");
            b.1 = b.1.saturating_sub(1);
        }
        self.wake_targets(&targets);
        Ok(())
    }

    /// `finish_attempt`: the attempt's record, under the delivery's lease.
    async fn record_attempt(
        &self,
        delivery: Delivery,
        attempt: Attempt,
        next: NextStep,
    ) -> Result<Recorded, StoreError> {
        let logged = serde_json::to_string(&attempt).expect("an attempt serializes");
        let (state, after) = match next {
            NextStep::Delivered => ("delivered", None),
            NextStep::Retry { after } => ("retrying", Some(after.as_millis() as i64)),
            NextStep::Dead => ("dead", None),
        };
        let c = self.client().await?;
        let update = c
            .prepare_cached(
                "UPDATE deliveries SET state = $2, attempts = $3,
                     due_at = wasmhook_now_ms() + $4::bigint, lease = NULL,
                     last_error = $5, updated_at = wasmhook_now_ms(),
                     log = COALESCE(log, '[]'::jsonb) || jsonb_build_array($6::text::jsonb)
                 WHERE id = $1 AND state = 'in_flight' AND lease = $7",
            )
            .await
            .map_err(pg)?;
        let n = c
            .execute(
                &update,
                &[
                    &delivery.id,
                    &state,
                    &(delivery.attempts as i32),
                    &after,
                    &attempt.error,
                    &logged,
                    &(delivery.lease as i64),
                ],
            )
            .await
            .map_err(pg)?;
        if n == 0 {
            return Ok(Recorded::LeaseLost);
        }
        if after.is_some() {
            // The target's claim may be sleeping on a later time.
            self.wake.target(&delivery.target).notify_one();
        } else if let Some(key) = &delivery.order_key {
            // The next delivery with its key may go, on any node: wake
            // them, if one waits. The attempt is recorded already: a
            // failed wake costs a poll interval, not a second record.
            if let Err(e) = c
                .execute(
                    "SELECT pg_notify('wasmhook_due', $1) WHERE EXISTS (
                         SELECT 1 FROM deliveries
                         WHERE target = $1 AND order_key = $2 AND state IN ('pending', 'retrying'))",
                    &[&delivery.target, key],
                )
                .await
            {
                tracing::warn!(target = %delivery.target, "cannot wake the next delivery of its key: {e}");
            }
        }
        Ok(Recorded::Yes)
    }

    /// Leaves `events` for the next retention pass to check again (see
    /// `recheck`), as many as fit under [`RECHECK_MAX`].
    fn recheck_later(&self, events: impl IntoIterator<Item = (String, String)>) {
        let mut recheck = self.recheck.lock().expect("recheck");
        let room = RECHECK_MAX.saturating_sub(recheck.len());
        recheck.extend(events.into_iter().take(room));
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg(e),
            e => unavailable(format!("PostgreSQL: {e}")),
        })
    }

    /// The rows of an admin listing's statement.
    async fn listing(&self, sql: listing::Sql) -> Result<Vec<Row>, StoreError> {
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = sql
            .params
            .iter()
            .map(|p| match p {
                listing::Param::Text(s) => s as &(dyn tokio_postgres::types::ToSql + Sync),
                listing::Param::Int(i) => i,
            })
            .collect();
        self.client()
            .await?
            .query(&sql.text, &params)
            .await
            .map_err(pg)
    }

    /// Count this accept against `queue_capacity`: the events waiting for
    /// their routes across the cluster, recounted every
    /// [`BACKLOG_RECOUNT`], plus this node's accepts since.
    async fn reserve(&self) -> Result<(), StoreError> {
        let stale = {
            let b = self.backlog.lock().expect("backlog lock poisoned");
            b.0.is_none_or(|at| at.elapsed() >= BACKLOG_RECOUNT)
        };
        if stale {
            let n: i64 = self
                .client()
                .await?
                .query_one("SELECT count(*) FROM events WHERE state = 'received'", &[])
                .await
                .map_err(pg)?
                .get(0);
            *self.backlog.lock().expect("backlog lock poisoned") =
                (Some(Instant::now()), n as usize);
        }
        let mut b = self.backlog.lock().expect("backlog lock poisoned");
        if b.1 >= self.opts.capacity {
            return Err(StoreError::Full);
        }
        b.1 += 1;
        Ok(())
    }

    /// `accept`, and with `running` `accept_running`: the event is then
    /// leased to this node (for the pipeline lease), so no other node runs
    /// it unless this one dies.
    async fn accept_event(
        &self,
        event: Event,
        signed: Option<[u8; 32]>,
        running: bool,
    ) -> Result<Accepted, StoreError> {
        self.reserve().await?;
        let c = self.client().await?;
        let insert = c
            .prepare_cached(
                "WITH e AS (
                     INSERT INTO events (source, id, event_type, received_at, headers, body, state, signed,
                                         lease_until)
                     VALUES ($1, $2, $3, $4, $5, $6, 'received', $7, wasmhook_now_ms() + $8::bigint)
                     ON CONFLICT DO NOTHING RETURNING 1)
                 SELECT pg_notify(CASE WHEN $8::bigint IS NULL THEN 'wasmhook_events' ELSE 'wasmhook_running' END, '')
                 FROM e",
            )
            .await
            .map_err(pg)?;
        let lease = running.then_some(self.opts.pipeline_lease.as_millis() as i64);
        let columns = EventColumns::new(&event, signed);
        let mut params = columns.params();
        params.push(&lease);
        let inserted = c.query(&insert, &params).await.map_err(pg)?;
        if inserted.is_empty() {
            return Ok(Accepted::Duplicate(
                self.original(&c, &event, signed).await?,
            ));
        }
        if !running {
            self.wake.events.notify_one();
        }
        Ok(Accepted::New)
    }

    /// The id of the stored event `event` duplicates.
    async fn original(
        &self,
        c: &tokio_postgres::Client,
        event: &Event,
        signed: Option<[u8; 32]>,
    ) -> Result<String, StoreError> {
        let signed = signed.map(|s| s.to_vec());
        let row = c
            .query_opt(
                "SELECT id FROM events WHERE source = $1 AND (id = $2 OR signed = $3)
                 ORDER BY id = $2 DESC LIMIT 1",
                &[&event.source, &event.id, &signed],
            )
            .await
            .map_err(pg)?;
        // Gone between the two statements (pruned): it was a duplicate all
        // the same.
        Ok(row.map_or_else(|| event.id.clone(), |r| r.get(0)))
    }

    /// Wake this node's workers for `targets` (other nodes hear the
    /// `pg_notify` sent in the commit).
    fn wake_targets(&self, targets: &[String]) {
        for t in targets {
            self.wake.target(t).notify_one();
        }
    }

    /// Wait for `notify` or `wait`, whichever comes first.
    async fn nap(notify: &tokio::sync::Notify, wait: Duration) {
        tokio::select! {
            () = notify.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }

    /// Store a plugin for every node to load (`wasmhook plugin push`).
    /// Returns its new version.
    pub async fn push_plugin(&self, name: &str, wasm: &[u8]) -> Result<i64, StoreError> {
        use sha2::Digest as _;
        let sha = sha2::Sha256::digest(wasm)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let row = self
            .client()
            .await?
            .query_one(
                "WITH p AS (
                     INSERT INTO plugins (name, version, sha256, wasm, pushed_at)
                     VALUES ($1, 1, $2, $3, wasmhook_now_ms())
                     ON CONFLICT (name) DO UPDATE SET version = plugins.version + 1,
                         sha256 = excluded.sha256, wasm = excluded.wasm, pushed_at = excluded.pushed_at
                     RETURNING version)
                 SELECT version, pg_notify('wasmhook_plugins', $1) FROM p",
                &[&name, &sha, &wasm],
            )
            .await
            .map_err(pg)?;
        Ok(row.get(0))
    }

    /// Pushed plugins newer than the versions in `seen` (name → version).
    pub async fn pushed_plugins(
        &self,
        seen: &std::collections::HashMap<String, i64>,
    ) -> Result<Vec<(String, i64, Vec<u8>)>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT name, version FROM plugins ORDER BY name", &[])
            .await
            .map_err(pg)?;
        let mut out = Vec::new();
        for r in rows {
            let (name, version): (String, i64) = (r.get(0), r.get(1));
            if seen.get(&name).is_some_and(|v| *v >= version) {
                continue;
            }
            let wasm: Option<Vec<u8>> = c
                .query_opt(
                    "SELECT wasm FROM plugins WHERE name = $1 AND version = $2",
                    &[&name, &version],
                )
                .await
                .map_err(pg)?
                .map(|r| r.get(0));
            if let Some(wasm) = wasm {
                out.push((name, version, wasm));
            }
        }
        Ok(out)
    }

    /// Wait until a plugin may have been pushed (or the poll interval).
    pub async fn plugins_changed(&self) {
        Self::nap(&self.wake.plugins, self.opts.poll_interval).await
    }
}

/// How long to wait for something due in `next` ms (if anything is), but
/// never longer than `poll`.
fn until(next: Option<i64>, poll: Duration) -> Duration {
    next.map_or(poll, |ms| Duration::from_millis(ms.max(1) as u64).min(poll))
}

/// How a result statement finds its event row (the CTE `e`, which yields
/// `source, id`): parameters `$12` on are the head's.
#[derive(Clone, Copy)]
enum Head {
    /// `accept_processed`: insert the event, processed; a duplicate inserts
    /// nothing, and then nothing else is either.
    Insert,
    /// `complete_event`: mark the received event processed.
    Complete,
    /// `record_rerun`: the event as it is.
    Existing,
}

impl Head {
    fn sql(self) -> &'static str {
        match self {
            Head::Insert => {
                "INSERT INTO events (source, id, event_type, received_at, headers, body, state, signed, routes)
                 VALUES ($12, $13, $14, $15, $16, $17, 'processed', $18, $19) ON CONFLICT DO NOTHING
                 RETURNING source, id"
            }
            Head::Complete => {
                "UPDATE events SET state = 'processed', routes = $14, lease_until = NULL
                 WHERE source = $12 AND id = $13 RETURNING source, id"
            }
            Head::Existing => "SELECT source, id FROM events WHERE source = $12 AND id = $13",
        }
    }
}

/// One statement for a pipeline result: the event row (`head`), its
/// deliveries and failed routes (as arrays, `$1`–`$11`), and a `pg_notify`
/// per target that got deliveries. One round trip, and atomic without a
/// transaction. Yields one row: whether the event row was there (0 or 1),
/// and the targets notified.
fn result_sql(head: Head) -> &'static str {
    // Built once per head: this is on every event's path.
    static SQL: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| {
        [Head::Insert, Head::Complete, Head::Existing].map(build_result_sql)
    });
    &SQL[head as usize]
}

fn build_result_sql(head: Head) -> String {
    format!(
        "WITH e AS ({head}),
         d AS (
             INSERT INTO deliveries (id, event_source, event_id, route, target, meta, body, state,
                                     attempts, due_at, created_at, updated_at, order_key, order_block)
             SELECT x.id, e.source, e.id, x.route, x.target, x.meta, x.body, 'pending', 0, n, n, n,
                    x.order_key, x.order_block
             FROM e, wasmhook_now_ms() n,
                  unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $10::text[], $11::bool[])
                      WITH ORDINALITY AS x(id, route, target, meta, body, order_key, order_block, i)
             ORDER BY x.i
             ON CONFLICT (id) DO NOTHING RETURNING target),
         f AS (
             INSERT INTO route_failures (event_source, event_id, route, plugin, reason, waiting_for, failed_at)
             SELECT e.source, e.id, y.route, y.plugin, y.reason, y.waiting_for, wasmhook_now_ms()
             FROM e, unnest($6::text[], $7::text[], $8::text[], $9::text[]) AS y(route, plugin, reason, waiting_for)
             ON CONFLICT (event_source, event_id, route) DO UPDATE SET plugin = excluded.plugin,
                 reason = excluded.reason, waiting_for = excluded.waiting_for,
                 failed_at = excluded.failed_at, lease_until = NULL
             RETURNING 1),
         t AS (SELECT DISTINCT target FROM d)
         SELECT (SELECT count(*) FROM e),
                ARRAY(SELECT target FROM t WHERE pg_notify('wasmhook_due', target) IS NOT NULL),
                (SELECT count(*) FROM f)",
        head = head.sql()
    )
}

/// `processed` as the arrays [`result_sql`] takes.
struct ResultRows {
    ids: Vec<String>,
    routes: Vec<String>,
    targets: Vec<String>,
    metas: Vec<String>,
    bodies: Vec<Option<Vec<u8>>>,
    failed_routes: Vec<String>,
    plugins: Vec<Option<String>>,
    reasons: Vec<String>,
    waiting_for: Vec<Option<String>>,
    order_keys: Vec<Option<String>>,
    order_blocks: Vec<bool>,
}

impl ResultRows {
    fn new(event: &Event, processed: &Processed) -> Self {
        let d = &processed.deliveries;
        let failures = processed.failures(&event.id);
        ResultRows {
            ids: d.iter().map(|d| d.id.clone()).collect(),
            routes: d.iter().map(|d| d.route.clone()).collect(),
            targets: d.iter().map(|d| d.target.clone()).collect(),
            metas: d.iter().map(|d| codec::meta_json(&d.event)).collect(),
            // The received body is stored once, with the event.
            bodies: d
                .iter()
                .map(|d| (d.event.body != event.body).then(|| d.event.body.to_vec()))
                .collect(),
            failed_routes: failures.iter().map(|f| f.route.clone()).collect(),
            plugins: failures.iter().map(|f| f.plugin.clone()).collect(),
            reasons: failures.iter().map(|f| f.reason.clone()).collect(),
            waiting_for: failures.into_iter().map(|f| f.waiting_for).collect(),
            order_keys: d.iter().map(|d| d.order_key.clone()).collect(),
            order_blocks: d.iter().map(|d| d.order_block).collect(),
        }
    }

    fn params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        vec![
            &self.ids,
            &self.routes,
            &self.targets,
            &self.metas,
            &self.bodies,
            &self.failed_routes,
            &self.plugins,
            &self.reasons,
            &self.waiting_for,
            &self.order_keys,
            &self.order_blocks,
        ]
    }
}

/// Run a result statement (`statement`, prepared from [`result_sql`]);
/// `Some(targets notified)`, or `None` when the event row was not there (a
/// duplicate, for [`Head::Insert`]).
async fn write_result(
    c: &impl tokio_postgres::GenericClient,
    statement: &tokio_postgres::Statement,
    rows: &ResultRows,
    head_params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<Vec<String>>, StoreError> {
    let mut params = rows.params();
    params.extend_from_slice(head_params);
    let r = c.query_one(statement, &params).await.map_err(pg)?;
    Ok((r.get::<_, i64>(0) > 0).then(|| r.get(1)))
}

/// Targets' start books in the database (`dispatch::starts`): one row per
/// target with a rate, each change one statement on the database's clock.
struct PgStarts {
    pool: Pool,
}

impl PgStarts {
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let c = self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg(e),
            e => unavailable(format!("PostgreSQL: {e}")),
        })?;
        let stmt = c.prepare_cached(sql).await.map_err(pg)?;
        c.query(&stmt, params).await.map_err(pg)
    }
}

#[async_trait]
impl SharedStarts for PgStarts {
    async fn reserve_starts(
        &self,
        target: &str,
        n: u32,
        every_us: i64,
    ) -> Result<(i64, i64), StoreError> {
        let rows = self
            .execute(
                "WITH clock AS (SELECT wasmhook_now_us() AS now, $2::bigint * $3::bigint AS span)
                 INSERT INTO target_starts AS s (target, tat_us)
                 SELECT $1, clock.now + clock.span FROM clock
                 ON CONFLICT (target) DO UPDATE
                     SET tat_us = GREATEST(s.tat_us + (SELECT span FROM clock), EXCLUDED.tat_us)
                 RETURNING s.tat_us - (SELECT span FROM clock), (SELECT now FROM clock)",
                &[&target, &i64::from(n), &every_us],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| unavailable("PostgreSQL: no row reserved"))?;
        Ok((row.get(0), row.get(1)))
    }

    async fn refund_starts(
        &self,
        target: &str,
        n: u32,
        every_us: i64,
        end: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE target_starts SET tat_us = tat_us - $2::bigint * $3::bigint
             WHERE target = $1 AND tat_us = $4",
            &[&target, &i64::from(n), &every_us, &end],
        )
        .await
        .map(drop)
    }

    async fn next_start(&self, target: &str, tolerance_us: i64) -> Result<i64, StoreError> {
        let rows = self
            .execute(
                "SELECT tat_us - $2::bigint - wasmhook_now_us() FROM target_starts WHERE target = $1",
                &[&target, &tolerance_us],
            )
            .await?;
        Ok(rows.first().map_or(0, |r| r.get(0)))
    }

    async fn hold_starts(&self, target: &str, ahead_us: i64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO target_starts AS s (target, tat_us) VALUES ($1, wasmhook_now_us() + $2::bigint)
             ON CONFLICT (target) DO UPDATE SET tat_us = GREATEST(s.tat_us, EXCLUDED.tat_us)",
            &[&target, &ahead_us],
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn observe_commits(&self, commits: Commits) {
        let _ = self.commits.set(commits);
    }

    fn shared_starts(&self) -> Option<Arc<dyn SharedStarts>> {
        Some(Arc::new(PgStarts {
            pool: self.pool.clone(),
        }))
    }

    async fn accept(&self, event: Event, signed: Option<[u8; 32]>) -> Result<Accepted, StoreError> {
        self.committed(self.accept_event(event, signed, false))
            .await
    }

    async fn accept_running(
        &self,
        event: Event,
        signed: Option<[u8; 32]>,
    ) -> Result<Accepted, StoreError> {
        self.committed(self.accept_event(event, signed, true)).await
    }

    async fn accept_processed(
        &self,
        event: Event,
        signed: Option<[u8; 32]>,
        processed: Processed,
    ) -> Result<Accepted, StoreError> {
        self.committed(self.insert_processed(event, signed, processed))
            .await
    }

    async fn next_event(&self) -> Event {
        loop {
            let woken = self.wake.events.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let claimed = async {
                let c = self.client().await?;
                let claim = c
                    .prepare_cached(&format!(
                        "UPDATE events SET lease_until = wasmhook_now_ms() + $1
                         WHERE (id, source) = (
                             SELECT id, source FROM events
                             WHERE state = 'received' AND (lease_until IS NULL OR lease_until <= wasmhook_now_ms())
                             ORDER BY received_at, source LIMIT 1 FOR UPDATE SKIP LOCKED)
                         RETURNING {EVENT_COLUMNS}"
                    ))
                    .await
                    .map_err(pg)?;
                let lease = self.opts.pipeline_lease.as_millis() as i64;
                if let Some(r) = c.query_opt(&claim, &[&lease]).await.map_err(pg)? {
                    return event_at(&r, 0).map(Ok);
                }
                // None free: when does a lease held by a node run out?
                let next: Option<i64> = c
                    .query_one(
                        "SELECT MIN(lease_until) - wasmhook_now_ms() FROM events WHERE state = 'received'",
                        &[],
                    )
                    .await
                    .map_err(pg)?
                    .get(0);
                Ok(Err(next))
            }
            .await;
            match claimed {
                Ok(Ok(event)) => return event,
                Ok(Err(next)) => {
                    let wait = until(next, self.opts.poll_interval);
                    tokio::select! {
                        () = &mut woken => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Err(e) => {
                    tracing::error!("cannot claim an event for the pipeline: {e}; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn complete_event(&self, event: Event, processed: Processed) -> Result<(), StoreError> {
        let received_at = event.received_at;
        let commit = self.committed(self.record_processed(event, processed));
        self.prune_cursor.again_after(received_at, commit).await
    }

    async fn failed_routes(
        &self,
        filter: FailedFilter,
    ) -> Result<Vec<(Event, RouteFailure)>, StoreError> {
        let (clause, key) = match &filter {
            FailedFilter::WaitingFor(p) => ("waiting_for = $1", p.clone()),
            FailedFilter::Event(id) => ("event_id = $1", id.clone()),
        };
        let c = self.client().await?;
        // Leased, so that of the nodes loading the same plugin, one re-runs
        // each route.
        let rows = c
            .query(
                &format!(
                    "WITH p AS (
                         SELECT event_source, event_id, route FROM route_failures
                         WHERE {clause} AND (lease_until IS NULL OR lease_until <= wasmhook_now_ms())
                         FOR UPDATE SKIP LOCKED)
                     UPDATE route_failures f SET lease_until = wasmhook_now_ms() + $2
                     FROM p, events e
                     WHERE f.event_source = p.event_source AND f.event_id = p.event_id AND f.route = p.route
                       AND e.source = f.event_source AND e.id = f.event_id
                     RETURNING e.source, e.id, e.event_type, e.received_at, e.headers, e.body,
                               f.route, f.plugin, f.reason, f.waiting_for, f.failed_at"
                ),
                &[&key, &(self.opts.pipeline_lease.as_millis() as i64)],
            )
            .await
            .map_err(pg)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let event = event_at(r, 0)?;
            let failure = RouteFailure {
                event_id: event.id.clone(),
                route: r.get(6),
                plugin: r.get(7),
                reason: r.get(8),
                waiting_for: r.get(9),
            };
            out.push((r.get::<_, i64>(10), event, failure));
        }
        out.sort_by_key(|(at, ..)| *at);
        Ok(out.into_iter().map(|(_, e, f)| (e, f)).collect())
    }

    async fn record_rerun(
        &self,
        event: Event,
        route: &str,
        processed: Processed,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let t = c.transaction().await.map_err(pg)?;
        t.execute(
            "DELETE FROM route_failures WHERE event_source = $1 AND event_id = $2 AND route = $3",
            &[&event.source, &event.id, &route],
        )
        .await
        .map_err(pg)?;
        let rows = ResultRows::new(&event, &processed);
        let statement = t
            .prepare_cached(result_sql(Head::Existing))
            .await
            .map_err(pg)?;
        let targets = write_result(&*t, &statement, &rows, &[&event.source, &event.id])
            .await?
            .unwrap_or_default();
        let stored: Option<String> = t
            .query_opt(
                "SELECT routes FROM events WHERE source = $1 AND id = $2 FOR UPDATE",
                &[&event.source, &event.id],
            )
            .await
            .map_err(pg)?
            .and_then(|r| r.get(0));
        t.execute(
            "UPDATE events SET routes = $3 WHERE source = $1 AND id = $2",
            &[
                &event.source,
                &event.id,
                &codec::merge_rerun(stored.as_deref(), route, &processed.routes),
            ],
        )
        .await
        .map_err(pg)?;
        self.prune_cursor
            .again_after(event.received_at, t.commit())
            .await
            .map_err(pg)?;
        self.wake_targets(&targets);
        Ok(())
    }

    async fn claim(&self, target: &str, lease: Duration, max: usize) -> Vec<Delivery> {
        let notify = self.wake.target(target);
        let max = max.max(1) as i64;
        let lease_ms = lease.as_millis() as i64;
        loop {
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let claimed = async {
                let c = self.client().await?;
                // One round trip: the claimed rows, or when there are none,
                // one row saying how long until something is due (on the
                // database's clock).
                let claim = c
                    .prepare_cached(concat!(
                        "WITH due AS (
                             SELECT id FROM deliveries d
                             WHERE target = $1 AND state IN ('pending', 'retrying', 'in_flight')
                               AND due_at <= wasmhook_now_ms() AND ",
                        first_in_line!("seq"),
                        "
                             ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED),
                         claimed AS (
                             UPDATE deliveries d SET state = 'in_flight', due_at = wasmhook_now_ms() + $3,
                                 lease = nextval('wasmhook_leases'), updated_at = wasmhook_now_ms()
                             FROM due WHERE d.id = due.id
                             RETURNING d.id, d.event_id, d.route, d.meta,
                                 COALESCE(d.body, (SELECT e.body FROM events e
                                                   WHERE e.source = d.event_source AND e.id = d.event_id)) AS body,
                                 d.attempts, d.lease, d.order_key, d.order_block)
                         SELECT id, event_id, route, meta, body, attempts, lease, NULL::bigint, order_key, order_block
                         FROM claimed
                         UNION ALL
                         SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                (SELECT MIN(due_at) - wasmhook_now_ms() FROM deliveries d
                                 WHERE target = $1 AND state IN ('pending', 'retrying', 'in_flight') AND ",
                        first_in_line!("seq"),
                        "),
                                NULL, NULL
                         WHERE NOT EXISTS (SELECT 1 FROM claimed)",
                    ))
                    .await
                    .map_err(pg)?;
                let rows = c
                    .query(&claim, &[&target, &max, &lease_ms])
                    .await
                    .map_err(pg)?;
                let mut got = Vec::with_capacity(rows.len());
                let mut next = None;
                for r in &rows {
                    let Some(id) = r.get::<_, Option<String>>(0) else {
                        next = r.get::<_, Option<i64>>(7);
                        continue;
                    };
                    let body: Option<Vec<u8>> = r.get(4);
                    got.push(Delivery {
                        id,
                        event_id: r.get(1),
                        route: r.get(2),
                        target: target.to_string(),
                        event: codec::event_from_meta(r.get(3), body.unwrap_or_default())
                            .map_err(bad_row)?,
                        attempts: r.get::<_, i32>(5) as u32,
                        lease: r.get::<_, i64>(6) as u64,
                        order_key: r.get(8),
                        order_block: r.get(9),
                    });
                }
                Ok::<_, StoreError>((got, next))
            }
            .await;
            let wait = match claimed {
                Ok((got, _)) if !got.is_empty() => return got,
                Ok((_, next)) => until(next, self.opts.poll_interval),
                Err(e) => {
                    tracing::error!(target, "cannot claim deliveries: {e}; retrying in 1s");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn finish_attempt(
        &self,
        delivery: Delivery,
        attempt: Attempt,
        next: NextStep,
    ) -> Result<Recorded, StoreError> {
        self.committed(self.record_attempt(delivery, attempt, next))
            .await
    }

    async fn skip_delivery(&self, id: &str) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "WITH d AS (
                     UPDATE deliveries SET order_block = false, updated_at = wasmhook_now_ms()
                     WHERE id = $1 AND state = 'dead' AND order_block RETURNING target)
                 SELECT target, pg_notify('wasmhook_due', target) FROM d",
                &[&id],
            )
            .await
            .map_err(pg)?;
        Ok(row.is_some())
    }

    async fn release(&self, delivery: Delivery) -> Result<Recorded, StoreError> {
        let c = self.client().await?;
        let update = c
            .prepare_cached(
                "UPDATE deliveries SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'retrying' END,
                     due_at = wasmhook_now_ms(), lease = NULL, updated_at = wasmhook_now_ms()
                 WHERE id = $1 AND state = 'in_flight' AND lease = $2",
            )
            .await
            .map_err(pg)?;
        let n = c
            .execute(&update, &[&delivery.id, &(delivery.lease as i64)])
            .await
            .map_err(pg)?;
        if n == 0 {
            return Ok(Recorded::LeaseLost);
        }
        self.wake.target(&delivery.target).notify_one();
        Ok(Recorded::Yes)
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        let r = self
            .client()
            .await?
            .query_one(
                "SELECT (SELECT count(*) FROM events WHERE state = 'received'),
                        count(*) FILTER (WHERE state IN ('pending', 'retrying')),
                        count(*) FILTER (WHERE state = 'in_flight'),
                        count(*) FILTER (WHERE state = 'dead'),
                        (SELECT count(*) FROM route_failures)
                 FROM deliveries WHERE state IN ('pending', 'retrying', 'in_flight', 'dead')",
                &[],
            )
            .await
            .map_err(pg)?;
        let n = |i: usize| r.get::<_, i64>(i) as usize;
        Ok(QueueStats {
            awaiting_pipeline: n(0),
            pending_deliveries: n(1),
            in_flight: n(2),
            dead: n(3),
            failed_routes: n(4),
            capacity: self.opts.capacity,
        })
    }

    async fn event_in(
        &self,
        source: Option<&str>,
        id: &str,
    ) -> Result<Option<EventRecord>, StoreError> {
        let c = self.client().await?;
        let Some(r) = c
            .query_opt(
                &format!(
                    "SELECT {EVENT_COLUMNS}, state, routes FROM events
                     WHERE id = $1 AND ($2::text IS NULL OR source = $2)
                     ORDER BY received_at, source LIMIT 1"
                ),
                &[&id, &source],
            )
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let event = event_at(&r, 0)?;
        let state: String = r.get(6);
        let routes: Option<String> = r.get(7);
        let failed_routes = c
            .query(
                "SELECT route, plugin, reason, waiting_for FROM route_failures
                 WHERE event_source = $1 AND event_id = $2 ORDER BY failed_at, route",
                &[&event.source, &event.id],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| RouteFailure {
                event_id: event.id.clone(),
                route: r.get(0),
                plugin: r.get(1),
                reason: r.get(2),
                waiting_for: r.get(3),
            })
            .collect();
        let mut deliveries = Vec::new();
        for r in c
            .query(
                &format!(
                    "SELECT {DELIVERY_RECORD}, log::text FROM deliveries
                     WHERE event_source = $1 AND event_id = $2 ORDER BY created_at, id"
                ),
                &[&event.source, &event.id],
            )
            .await
            .map_err(pg)?
        {
            let mut d = delivery_record(&r);
            if let Some(log) = r.get::<_, Option<String>>(11) {
                d.attempt_log = serde_json::from_str(&log).map_err(bad_row)?;
            }
            deliveries.push(d);
        }
        Ok(Some(EventRecord::new(
            event,
            state,
            routes.as_deref(),
            failed_routes,
            deliveries,
        )))
    }

    async fn events(&self, q: EventQuery) -> Result<Vec<EventSummary>, StoreError> {
        let rows = self
            .listing(listing::events(&q, listing::Dialect::Postgres))
            .await?;
        let count = |r: &Row, i| r.get::<_, i64>(i) as u64;
        Ok(rows
            .iter()
            .map(|r| EventSummary {
                id: r.get(0),
                source: r.get(1),
                event_type: r.get(2),
                received_at: r.get::<_, i64>(3) as u64,
                state: r.get(4),
                deliveries: count(r, 5),
                delivered: count(r, 6),
                dead: count(r, 7),
                failed_routes: count(r, 8),
            })
            .collect())
    }

    async fn deliveries(&self, q: DeliveryQuery) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = self
            .listing(listing::deliveries(
                &q,
                DELIVERY_RECORD,
                listing::Dialect::Postgres,
            ))
            .await?;
        Ok(rows.iter().map(delivery_record).collect())
    }

    async fn target_counts(&self) -> Result<BTreeMap<String, TargetCounts>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(listing::TARGET_COUNTS, &[])
            .await
            .map_err(pg)?;
        let mut counts = BTreeMap::<String, TargetCounts>::new();
        for r in &rows {
            let state: String = r.get(1);
            let n = r.get::<_, i64>(2) as u64;
            listing::add_target_count(counts.entry(r.get(0)).or_default(), &state, n);
        }
        Ok(counts)
    }

    async fn target_controls(
        &self,
    ) -> Result<std::collections::HashMap<String, TargetControl>, StoreError> {
        let rows = self
            .client()
            .await?
            .query("SELECT target, control FROM target_control", &[])
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| {
                let target: String = r.get(0);
                let control = control::decode(&target, r.get(1));
                (target, control)
            })
            .collect())
    }

    async fn change_target_control(
        &self,
        target: &str,
        change: ControlChange,
    ) -> Result<(TargetControl, TargetControl), StoreError> {
        let mut c = self.client().await?;
        let t = c.transaction().await.map_err(pg)?;
        // The row exists (and is then locked) before it is read: two nodes
        // changing one target take turns.
        t.execute(
            "INSERT INTO target_control (target, control) VALUES ($1, '{}') ON CONFLICT DO NOTHING",
            &[&target],
        )
        .await
        .map_err(pg)?;
        let row = t
            .query_one(
                "SELECT control FROM target_control WHERE target = $1 FOR UPDATE",
                &[&target],
            )
            .await
            .map_err(pg)?;
        let mut control = control::decode(target, row.get(0));
        let before = control.clone();
        if change(&mut control) {
            t.execute(
                "UPDATE target_control SET control = $2 WHERE target = $1",
                &[&target, &control::encode(&control)],
            )
            .await
            .map_err(pg)?;
        }
        t.commit().await.map_err(pg)?;
        Ok((before, control))
    }

    async fn retry_delivery(&self, id: &str) -> Result<bool, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "WITH d AS (
                     UPDATE deliveries SET state = 'pending', attempts = 0, due_at = wasmhook_now_ms(),
                         lease = NULL, updated_at = wasmhook_now_ms()
                     WHERE id = $1 AND state != 'in_flight' RETURNING target)
                 SELECT target, pg_notify('wasmhook_due', target) FROM d",
                &[&id],
            )
            .await
            .map_err(pg)?;
        if let Some(r) = &row {
            self.wake.target(r.get(0)).notify_one();
        }
        Ok(row.is_some())
    }

    async fn replay_target(&self, target: &str, since: Option<u64>) -> Result<usize, StoreError> {
        let r = self
            .client()
            .await?
            .query_one(
                "WITH d AS (
                     UPDATE deliveries SET state = 'pending', attempts = 0, due_at = wasmhook_now_ms(),
                         updated_at = wasmhook_now_ms()
                     WHERE target = $1 AND state = 'dead' AND updated_at >= $2 RETURNING 1),
                 n AS (SELECT count(*) AS n FROM d)
                 SELECT n, CASE WHEN n > 0 THEN pg_notify('wasmhook_due', $1) END::text FROM n",
                &[&target, &(since.unwrap_or(0) as i64)],
            )
            .await
            .map_err(pg)?;
        let n = r.get::<_, i64>(0) as usize;
        if n > 0 {
            self.wake.target(target).notify_one();
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
        let c = self.client().await?;
        let mut pruned = Pruned::default();
        // Those the last pass left for a second look (see `recheck`).
        let again = std::mem::take(&mut *self.recheck.lock().expect("recheck"));
        if !again.is_empty() {
            let (sources, ids): (Vec<_>, Vec<_>) = again.iter().cloned().unzip();
            match c
                .execute(
                    concat!(
                        "DELETE FROM events v
                         WHERE (v.source, v.id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
                           AND v.received_at < $3 AND ",
                        nothing_holds!()
                    ),
                    &[&sources, &ids, &e],
                )
                .await
            {
                Ok(n) => pruned.events += n as usize,
                Err(err) => {
                    self.recheck_later(again);
                    return Err(pg(err));
                }
            }
        }
        // In chunks, each its own statement: short locks, short
        // transactions. An event leaves with its last delivery, if it is
        // old enough. (The statement's snapshot still sees the deliveries it
        // deletes, so those are left out of the check.)
        loop {
            let r = c
                .query_one(
                    "WITH d AS (
                         DELETE FROM deliveries WHERE id IN (
                             SELECT id FROM (
                                 (SELECT id FROM deliveries
                                  WHERE state = 'delivered' AND updated_at < $1 LIMIT $3)
                                 UNION ALL
                                 (SELECT id FROM deliveries
                                  WHERE state = 'dead' AND updated_at < $2 AND NOT order_block LIMIT $3)
                             ) finished LIMIT $3)
                           -- Again here: a row changed since the snapshot
                           -- (retried, replayed) is checked on this alone.
                           AND ((state = 'delivered' AND updated_at < $1)
                                OR (state = 'dead' AND updated_at < $2 AND NOT order_block))
                         RETURNING id, event_source, event_id),
                     gone AS (
                         DELETE FROM events v
                         WHERE (v.source, v.id) IN (SELECT event_source, event_id FROM d)
                           AND v.received_at < $4 AND v.state = 'processed'
                           AND NOT EXISTS (SELECT 1 FROM deliveries x
                                           WHERE x.event_source = v.source AND x.event_id = v.id
                                             AND NOT EXISTS (SELECT 1 FROM d WHERE d.id = x.id))
                           AND NOT EXISTS (SELECT 1 FROM route_failures f
                                           WHERE f.event_source = v.source AND f.event_id = v.id)
                         RETURNING v.source, v.id),
                     -- Those that stay though old enough and done with, while
                     -- every other delivery of theirs is finished: another
                     -- node may be deleting those.
                     kept AS (
                         SELECT DISTINCT d.event_source, d.event_id FROM d
                         WHERE NOT EXISTS (SELECT 1 FROM gone g
                                           WHERE g.source = d.event_source AND g.id = d.event_id)
                           AND EXISTS (SELECT 1 FROM events v
                                       WHERE v.source = d.event_source AND v.id = d.event_id
                                         AND v.received_at < $4 AND v.state = 'processed')
                           AND NOT EXISTS (SELECT 1 FROM route_failures f
                                           WHERE f.event_source = d.event_source AND f.event_id = d.event_id)
                           AND NOT EXISTS (SELECT 1 FROM deliveries x
                                           WHERE x.event_source = d.event_source AND x.event_id = d.event_id
                                             AND x.state <> 'delivered' AND x.state <> 'dead'))
                     SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM gone), k.sources, k.ids
                     FROM (SELECT COALESCE(array_agg(event_source), '{}') sources,
                                  COALESCE(array_agg(event_id), '{}') ids
                           FROM kept) k",
                    &[&d, &x, &PRUNE_CHUNK, &e],
                )
                .await
                .map_err(pg)?;
            let (n, events) = (r.get::<_, i64>(0), r.get::<_, i64>(1));
            pruned.deliveries += n as usize;
            pruned.events += events as usize;
            self.recheck_later(
                r.get::<_, Vec<String>>(2)
                    .into_iter()
                    .zip(r.get::<_, Vec<String>>(3)),
            );
            if n < PRUNE_CHUNK {
                break;
            }
        }
        // Events that came of age since this node's last pass, oldest
        // first, a chunk of keys at a time: those with deliveries or failed
        // routes left stay (see `PruneCursor`).
        let mut after = self.prune_cursor.start();
        let mut read = None;
        loop {
            let r = c
                .query_one(
                    concat!(
                        "WITH c AS (
                         SELECT received_at, id, source FROM events
                         WHERE received_at >= $1 AND (received_at, id, source) > ($1, $2, $3)
                           AND received_at < $4
                         ORDER BY received_at, id, source LIMIT $5),
                     gone AS (
                         DELETE FROM events v USING c
                         WHERE v.id = c.id AND v.source = c.source AND ",
                        nothing_holds!(),
                        "
                         RETURNING 1),
                     last AS (
                         SELECT received_at, id, source FROM c
                         ORDER BY received_at DESC, id DESC, source DESC LIMIT 1)
                     SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM c),
                            last.received_at, last.id, last.source
                     FROM (SELECT) one LEFT JOIN last ON true"
                    ),
                    &[&after.0, &after.1, &after.2, &e, &PRUNE_CHUNK],
                )
                .await
                .map_err(pg)?;
            pruned.events += r.get::<_, i64>(0) as usize;
            let read_now: i64 = r.get(1);
            if let Some(at) = r.get::<_, Option<i64>>(2) {
                let last: EventKey = (at, r.get(3), r.get(4));
                after = last.clone();
                read = Some(last);
            }
            if read_now < PRUNE_CHUNK {
                break;
            }
        }
        self.prune_cursor.read_to(read);
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests;
