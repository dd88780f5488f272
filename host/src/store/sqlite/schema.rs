//! The on-disk format, and its versioned migrations.
//!
//! Design constraints:
//! - The version lives in `PRAGMA user_version`; each migration runs in one
//!   transaction with the version bump, so a crash mid-migration leaves the
//!   old version whole.
//! - Migrations only ever append: a released step is never edited.
//! - A database newer than this binary is refused rather than misread.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rusqlite::{Connection, Transaction, params};

/// One step: SQL, or SQL with a conversion only Rust can do.
enum Migration {
    Sql(&'static str),
    Rust(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

use Migration::{Rust, Sql};

const MIGRATIONS: &[Migration] = &[
    // 1: events, deliveries, attempts, failed routes.
    Sql(r#"
    CREATE TABLE events (
        source      TEXT    NOT NULL,
        id          TEXT    NOT NULL,
        event_type  TEXT    NOT NULL,
        received_at INTEGER NOT NULL,
        headers     TEXT    NOT NULL,            -- JSON [[name, value], …]
        body        BLOB    NOT NULL,
        state       TEXT    NOT NULL,            -- received | processed
        PRIMARY KEY (source, id)
    ) WITHOUT ROWID;
    CREATE INDEX events_received ON events (received_at) WHERE state = 'received';
    CREATE INDEX events_id ON events (id);

    CREATE TABLE deliveries (
        id              TEXT    PRIMARY KEY,
        event_source    TEXT    NOT NULL,
        event_id        TEXT    NOT NULL,
        route           TEXT    NOT NULL,
        target          TEXT    NOT NULL,
        payload         TEXT    NOT NULL,        -- JSON of the output event, body base64
        state           TEXT    NOT NULL,        -- pending | in_flight | retrying | delivered | dead
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,                 -- ms; when pending or retrying
        lease_until     INTEGER,                 -- ms; when in_flight
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE INDEX deliveries_due ON deliveries (target, next_attempt_at)
        WHERE state IN ('pending', 'retrying');
    CREATE INDEX deliveries_leased ON deliveries (target, lease_until) WHERE state = 'in_flight';
    CREATE INDEX deliveries_state ON deliveries (state, target, id);
    CREATE INDEX deliveries_event ON deliveries (event_source, event_id);

    CREATE TABLE attempts (
        delivery_id TEXT    NOT NULL,
        n           INTEGER NOT NULL,
        started_at  INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        status      INTEGER,
        error       TEXT,
        response    TEXT,
        PRIMARY KEY (delivery_id, n)
    ) WITHOUT ROWID;

    CREATE TABLE route_failures (
        event_source TEXT    NOT NULL,
        event_id     TEXT    NOT NULL,
        route        TEXT    NOT NULL,
        plugin       TEXT,
        reason       TEXT    NOT NULL,
        waiting_for  TEXT,
        failed_at    INTEGER NOT NULL,
        PRIMARY KEY (event_source, event_id, route)
    ) WITHOUT ROWID;
    CREATE INDEX route_failures_waiting ON route_failures (waiting_for) WHERE waiting_for IS NOT NULL;
    "#),
    // 2: what a verified sender signed, so a replay is a duplicate.
    Sql(r#"
    ALTER TABLE events ADD COLUMN signed BLOB;      -- SHA-256 of the signed content
    CREATE UNIQUE INDEX events_signed ON events (source, signed) WHERE signed IS NOT NULL;
    "#),
    // 3: what each route did with the event (dropped by whom and why, …).
    Sql(r#"
    ALTER TABLE events ADD COLUMN routes TEXT;      -- JSON [RouteOutcome, …]
    "#),
    // 4: the hot path's shape (see `v4_lean_deliveries`).
    Rust(v4_lean_deliveries),
    // 5: the event list's filters, newest first, each read from an index
    // (the primary key `(id, source)` completes each entry, so the order
    // ties break in the index too).
    Sql(r#"
    CREATE INDEX events_source_time ON events (source, received_at);
    CREATE INDEX events_type_time ON events (event_type, received_at);
    "#),
    // 6: the partial indexes of deliveries without `IN` lists (see
    // `listing::unfinished!`, which queries repeat to be served by them):
    // every insert and update checks their predicates.
    Sql(r#"
    DROP INDEX deliveries_due;
    DROP INDEX deliveries_done;
    CREATE INDEX deliveries_due ON deliveries (target, due_at)
        WHERE (state = 'pending' OR state = 'retrying' OR state = 'in_flight');
    CREATE INDEX deliveries_done ON deliveries (updated_at)
        WHERE (state = 'delivered' OR state = 'dead');
    "#),
    // 7: `events` gets a rowid. Without one, the table is an index b-tree,
    // whose cells hold at most about a quarter of a page: a 1 KiB body
    // spilled into an overflow page of its own, so every event wrote a
    // 4 KiB page to the WAL (and again at checkpoint) for a few hundred
    // bytes. With a rowid, rows sit in their leaf pages. The key becomes a
    // unique index; the time indexes name `id` (and `source`), which the
    // primary key used to add to their entries, so listings still break
    // ties in index order.
    Sql(r#"
    CREATE TABLE events_v7 (
        source      TEXT    NOT NULL,
        id          TEXT    NOT NULL,
        event_type  TEXT    NOT NULL,
        received_at INTEGER NOT NULL,
        headers     TEXT    NOT NULL,            -- JSON [[name, value], …]
        body        BLOB    NOT NULL,
        state       TEXT    NOT NULL,            -- received | processed
        signed      BLOB,                        -- SHA-256 of the signed content
        routes      TEXT,                        -- JSON [RouteOutcome, …]
        PRIMARY KEY (id, source)
    );
    INSERT INTO events_v7 (source, id, event_type, received_at, headers, body, state, signed, routes)
        SELECT source, id, event_type, received_at, headers, body, state, signed, routes
        FROM events ORDER BY received_at, id, source;
    DROP TABLE events;
    ALTER TABLE events_v7 RENAME TO events;
    CREATE INDEX events_received ON events (received_at) WHERE state = 'received';
    CREATE UNIQUE INDEX events_signed ON events (source, signed) WHERE signed IS NOT NULL;
    CREATE INDEX events_time ON events (received_at, id, source);
    CREATE INDEX events_source_time ON events (source, received_at, id);
    CREATE INDEX events_type_time ON events (event_type, received_at, id, source);
    "#),
    // 8: each target's pause and circuit breaker (`store::control`), as
    // JSON: one small row per target that has ever had one.
    Sql(r#"
    CREATE TABLE target_control (
        target  TEXT PRIMARY KEY,
        control TEXT NOT NULL
    );
    "#),
    // 9: ordered delivery per key (`targets[].ordering`): a delivery waits
    // for the unfinished ones of its key committed before it (by rowid).
    Sql(r#"
    ALTER TABLE deliveries ADD COLUMN order_key TEXT;
    ALTER TABLE deliveries ADD COLUMN order_block INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX deliveries_order ON deliveries (target, order_key) WHERE order_key IS NOT NULL;
    "#),
    // 10: finished deliveries by state, then time: retention reads the
    // delivered ones past `retention` and the dead ones past
    // `dead_retention` as two ranges, not every dead one younger than that
    // on every pass.
    Sql(r#"
    DROP INDEX deliveries_done;
    CREATE INDEX deliveries_done ON deliveries (state, updated_at)
        WHERE (state = 'delivered' OR state = 'dead');
    "#),
];

/// The hot path's shape. Both tables are rebuilt:
/// - `events` is keyed `(id, source)`, which also serves lookups by id, so
///   the separate index on `id` goes.
/// - `deliveries` keeps its rowid (its rows hold bodies, too big for a
///   table without one: measured slower). The output event is small JSON
///   metadata plus a BLOB body (NULL when it is the received event's body,
///   as for a route without plugins), not JSON with the body in base64. One
///   time column, `due_at`, serves both the next attempt (pending, retrying)
///   and the lease's end (in flight), so one index finds every delivery a
///   claim may take; the indexes only listings used go.
/// - A delivery's attempts are a JSON list in its row (`log`), which every
///   attempt rewrites anyway, not rows of a table of their own: one write
///   and one delete fewer per delivery.
/// - Small indexes come for dead deliveries (listing, replay), for finished
///   ones by time and for events by time: retention reads what it deletes.
fn v4_lean_deliveries(t: &Transaction<'_>) -> rusqlite::Result<()> {
    t.execute_batch(
        "CREATE TABLE events_v4 (
             source      TEXT    NOT NULL,
             id          TEXT    NOT NULL,
             event_type  TEXT    NOT NULL,
             received_at INTEGER NOT NULL,
             headers     TEXT    NOT NULL,            -- JSON [[name, value], …]
             body        BLOB    NOT NULL,
             state       TEXT    NOT NULL,            -- received | processed
             signed      BLOB,                        -- SHA-256 of the signed content
             routes      TEXT,                        -- JSON [RouteOutcome, …]
             PRIMARY KEY (id, source)
         ) WITHOUT ROWID;
         INSERT INTO events_v4 SELECT source, id, event_type, received_at, headers, body, state, signed, routes
             FROM events;
         DROP TABLE events;
         ALTER TABLE events_v4 RENAME TO events;
         CREATE INDEX events_received ON events (received_at) WHERE state = 'received';
         CREATE UNIQUE INDEX events_signed ON events (source, signed) WHERE signed IS NOT NULL;
         CREATE INDEX events_time ON events (received_at);

         CREATE TABLE deliveries_v4 (
             id           TEXT    PRIMARY KEY,
             event_source TEXT    NOT NULL,
             event_id     TEXT    NOT NULL,
             route        TEXT    NOT NULL,
             target       TEXT    NOT NULL,
             meta         TEXT    NOT NULL,           -- JSON {id, source, event_type, received_at, headers}
             body         BLOB,                       -- NULL: the event's own body
             state        TEXT    NOT NULL,           -- pending | in_flight | retrying | delivered | dead
             attempts     INTEGER NOT NULL DEFAULT 0,
             due_at       INTEGER,                    -- ms; next attempt, or the lease's end when in_flight
             last_error   TEXT,
             created_at   INTEGER NOT NULL,
             updated_at   INTEGER NOT NULL,
             log          TEXT                        -- JSON [Attempt, …], oldest first
         );",
    )?;
    {
        #[derive(serde::Deserialize)]
        struct Old {
            id: String,
            source: String,
            event_type: String,
            received_at: u64,
            headers: Vec<(String, String)>,
            body: String,
        }
        let mut read = t.prepare(
            "SELECT id, event_source, event_id, route, target, payload, state, attempts,
                    CASE WHEN state = 'in_flight' THEN lease_until ELSE next_attempt_at END,
                    last_error, created_at, updated_at,
                    (SELECT json_group_array(json_object('started_at', started_at, 'duration_ms', duration_ms,
                                                         'status', status, 'error', error, 'response', response))
                     FROM (SELECT * FROM attempts a WHERE a.delivery_id = deliveries.id ORDER BY n))
             FROM deliveries",
        )?;
        let mut write = t.prepare(
            "INSERT INTO deliveries_v4 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        let mut rows = read.query([])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let payload: String = r.get(5)?;
            let bad = |e: String| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                    Some(format!("delivery {id} has an unreadable payload: {e}")),
                )
            };
            let old: Old = serde_json::from_str(&payload).map_err(|e| bad(e.to_string()))?;
            let body = STANDARD.decode(&old.body).map_err(|e| bad(e.to_string()))?;
            let event = crate::event::Event {
                id: old.id,
                source: old.source,
                event_type: old.event_type,
                received_at: old.received_at,
                headers: old.headers,
                body: bytes::Bytes::new(),
            };
            write.execute(params![
                id,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                crate::store::codec::meta_json(&event),
                body,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<i64>>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, i64>(10)?,
                r.get::<_, i64>(11)?,
                r.get::<_, Option<String>>(12)?,
            ])?;
        }
    }
    t.execute_batch(
        "DROP TABLE deliveries;
         DROP TABLE attempts;
         ALTER TABLE deliveries_v4 RENAME TO deliveries;
         CREATE INDEX deliveries_event ON deliveries (event_source, event_id);
         CREATE INDEX deliveries_due ON deliveries (target, due_at)
             WHERE state IN ('pending', 'retrying', 'in_flight');
         CREATE INDEX deliveries_dead ON deliveries (target, updated_at) WHERE state = 'dead';
         CREATE INDEX deliveries_done ON deliveries (updated_at) WHERE state IN ('delivered', 'dead');",
    )
}

/// Bring the database to the newest schema this binary knows.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Bring the database to schema `version` (tests make old databases).
pub fn migrate_to(conn: &mut Connection, version: usize) -> rusqlite::Result<()> {
    let current = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "the database is at schema version {current}, newer than this wasmhook ({}): upgrade wasmhook",
                MIGRATIONS.len()
            )),
        ));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().take(version).skip(current) {
        let tx = conn.transaction()?;
        match step {
            Sql(sql) => tx.execute_batch(sql)?,
            Rust(f) => f(&tx)?,
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_a_newer_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(
            migrate(&mut conn)
                .unwrap_err()
                .to_string()
                .contains("newer than this wasmhook")
        );
    }
}
