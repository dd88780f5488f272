//! The on-disk format, and its versioned migrations.
//!
//! Design constraints:
//! - The version lives in `PRAGMA user_version`; each migration runs in one
//!   transaction with the version bump, so a crash mid-migration leaves the
//!   old version whole.
//! - Migrations only ever append: a released step is never edited.
//! - A database newer than this binary is refused rather than misread.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: events, deliveries, attempts, failed routes.
    r#"
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
    "#,
    // 2: what a verified sender signed, so a replay is a duplicate.
    r#"
    ALTER TABLE events ADD COLUMN signed BLOB;      -- SHA-256 of the signed content
    CREATE UNIQUE INDEX events_signed ON events (source, signed) WHERE signed IS NOT NULL;
    "#,
    // 3: what each route did with the event (dropped by whom and why, …).
    r#"
    ALTER TABLE events ADD COLUMN routes TEXT;      -- JSON [RouteOutcome, …]
    "#,
];

/// Bring the database to the newest schema this binary knows.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
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
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
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
