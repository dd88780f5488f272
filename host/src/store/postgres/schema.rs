//! The PostgreSQL schema and its versioned migrations.
//!
//! - The version is the one row of `wasmhook_schema`. Each step runs in one
//!   transaction with the version bump; one that adds an index to a table
//!   that may be large builds it first, `CONCURRENTLY` (which cannot run in
//!   a transaction), so writes to the table go on while it is built.
//! - Migrations run under an advisory lock, so nodes that start together
//!   take turns: the first migrates, the others find the work done. The
//!   others poll for it rather than wait in `pg_advisory_lock`: a session
//!   waiting in a statement holds a snapshot, which a `CONCURRENTLY` build
//!   waits out, so the two would deadlock.
//! - Each step's transaction waits at most [`LOCK_WAIT`] for a table's lock
//!   and then tries again, so that it does not hold up every query that
//!   queues behind it meanwhile.
//! - Steps only ever append; a database newer than this binary is refused.
//! - The shapes follow the SQLite store's (version 4 there), so the two
//!   mean the same thing row for row. What only a shared database needs:
//!   lease tokens, leases on events and failed routes (so exactly one node
//!   runs each), and pushed plugins.

use anyhow::{Context, bail};
use tokio_postgres::Client;

/// Held while migrating: "wasmhook" in ASCII.
pub(super) const MIGRATION_LOCK: i64 = 0x7761_736d_686f_6f6b;
/// How often a node asks again for the migration lock.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a step waits for a table's lock before it tries again.
const LOCK_WAIT: &str = "5s";
/// Tries of a step whose locks were taken each time.
const STEP_TRIES: u32 = 12;
/// Tries of a migration that a deadlock ended: a node of a version from
/// before the lock was polled, started meanwhile, waits in
/// `pg_advisory_lock`, and so holds a snapshot a `CONCURRENTLY` build
/// waits out. The lock is let go so that it passes, and taken again.
const DEADLOCK_TRIES: u32 = 5;

/// One migration.
enum Step {
    /// Run in one transaction with the version bump.
    Sql(&'static str),
    /// Build index `name` with `create` (a `CREATE INDEX CONCURRENTLY`)
    /// outside any transaction, then run `then` with the version bump. A
    /// build cut off before (the node died, say) leaves the index invalid:
    /// it is dropped and built again.
    Index {
        name: &'static str,
        create: &'static str,
        then: &'static str,
    },
}

const MIGRATIONS: &[Step] = &[
    // 1
    Step::Sql(
        r#"
    -- Every lease and due time is on the database's clock, so nodes whose
    -- clocks differ still agree on when a lease ran out.
    CREATE FUNCTION wasmhook_now_ms() RETURNS bigint LANGUAGE sql VOLATILE
        AS $$ SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

    -- Each claim of a delivery takes a new token; an attempt is recorded
    -- only under the token it was claimed with.
    CREATE SEQUENCE wasmhook_leases;

    CREATE TABLE events (
        source      text    NOT NULL,
        id          text    NOT NULL,
        event_type  text    NOT NULL,
        received_at bigint  NOT NULL,
        headers     text    NOT NULL,            -- JSON [[name, value], …]
        body        bytea   NOT NULL,
        state       text    NOT NULL,            -- received | processed
        signed      bytea,                       -- SHA-256 of the signed content
        routes      text,                        -- JSON [RouteOutcome, …]
        lease_until bigint,                      -- ms; a node is running its routes
        PRIMARY KEY (id, source)
    );
    CREATE INDEX events_received ON events (received_at) WHERE state = 'received';
    CREATE UNIQUE INDEX events_signed ON events (source, signed) WHERE signed IS NOT NULL;
    CREATE INDEX events_time ON events (received_at);

    CREATE TABLE deliveries (
        id           text    PRIMARY KEY,
        event_source text    NOT NULL,
        event_id     text    NOT NULL,
        route        text    NOT NULL,
        target       text    NOT NULL,
        meta         text    NOT NULL,           -- JSON {id, source, event_type, received_at, headers}
        body         bytea,                      -- NULL: the event's own body
        state        text    NOT NULL,           -- pending | in_flight | retrying | delivered | dead
        attempts     integer NOT NULL DEFAULT 0,
        due_at       bigint,                     -- ms; next attempt, or the lease's end when in_flight
        lease        bigint,                     -- the claim's token, when in_flight
        last_error   text,
        created_at   bigint  NOT NULL,
        updated_at   bigint  NOT NULL,
        log          jsonb                       -- [Attempt, …], oldest first
    );
    CREATE INDEX deliveries_event ON deliveries (event_source, event_id);
    CREATE INDEX deliveries_due ON deliveries (target, due_at)
        WHERE state IN ('pending', 'retrying', 'in_flight');
    CREATE INDEX deliveries_dead ON deliveries (target, updated_at) WHERE state = 'dead';
    CREATE INDEX deliveries_done ON deliveries (updated_at) WHERE state IN ('delivered', 'dead');

    CREATE TABLE route_failures (
        event_source text    NOT NULL,
        event_id     text    NOT NULL,
        route        text    NOT NULL,
        plugin       text,
        reason       text    NOT NULL,
        waiting_for  text,
        failed_at    bigint  NOT NULL,
        lease_until  bigint,                     -- ms; a node is re-running it
        PRIMARY KEY (event_source, event_id, route)
    );
    CREATE INDEX route_failures_waiting ON route_failures (waiting_for) WHERE waiting_for IS NOT NULL;
    CREATE INDEX route_failures_event ON route_failures (event_id);

    -- `wasmhook plugin push`: every node loads these, newest version wins.
    CREATE TABLE plugins (
        name      text   PRIMARY KEY,
        version   bigint NOT NULL,
        sha256    text   NOT NULL,
        wasm      bytea  NOT NULL,
        pushed_at bigint NOT NULL
    );
    "#,
    ),
    // 2: the event list's filters, newest first, each read from an index.
    Step::Sql(
        r#"
    CREATE INDEX events_source_time ON events (source, received_at, id);
    CREATE INDEX events_type_time ON events (event_type, received_at, id);
    "#,
    ),
    // 3: targets' rate limits, kept here so that they hold for every node:
    // GCRA's theoretical arrival time, in µs on the database's clock (see
    // `dispatch::starts`).
    Step::Sql(
        r#"
    CREATE FUNCTION wasmhook_now_us() RETURNS bigint LANGUAGE sql VOLATILE
        AS $$ SELECT floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint $$;
    CREATE TABLE target_starts (
        target text   PRIMARY KEY,
        tat_us bigint NOT NULL
    );
    "#,
    ),
    // 4: each target's pause and circuit breaker (`store::control`), as
    // JSON text, shared by every node.
    Step::Sql(
        r#"
    CREATE TABLE target_control (
        target  text PRIMARY KEY,
        control text NOT NULL
    );
    "#,
    ),
    // 5: ordered delivery per key (`targets[].ordering`): a delivery waits
    // for the unfinished ones of its key numbered before it (`seq`, taken
    // at insert; rows from before this have none, and no key either).
    Step::Sql(
        r#"
    CREATE SEQUENCE wasmhook_delivery_seq;
    ALTER TABLE deliveries ADD COLUMN seq bigint;
    ALTER TABLE deliveries ALTER COLUMN seq SET DEFAULT nextval('wasmhook_delivery_seq');
    ALTER TABLE deliveries ADD COLUMN order_key text;
    ALTER TABLE deliveries ADD COLUMN order_block boolean NOT NULL DEFAULT false;
    CREATE INDEX deliveries_order ON deliveries (target, order_key, seq) WHERE order_key IS NOT NULL;
    "#,
    ),
    // 6: finished deliveries by state, then time: retention reads the
    // delivered ones past `retention` and the dead ones past
    // `dead_retention` as two ranges, not every dead one younger than that
    // on every pass. Built before the old one is dropped, without
    // blocking writes; the drop's exclusive lock lasts only to the commit
    // just after it.
    Step::Index {
        name: "deliveries_done_v6",
        create: "CREATE INDEX CONCURRENTLY deliveries_done_v6 ON deliveries (state, updated_at)
                 WHERE state IN ('delivered', 'dead')",
        then: "DROP INDEX deliveries_done;
               ALTER INDEX deliveries_done_v6 RENAME TO deliveries_done;",
    },
];

/// The version this binary writes.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// Bring the database up to [`VERSION`], under the migration lock.
pub async fn migrate(client: &mut Client) -> anyhow::Result<()> {
    migrate_to(client, VERSION).await
}

/// Migrate up to `target` only (tests build old databases with this).
pub async fn migrate_to(client: &mut Client, target: i32) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        take_lock(client).await?;
        // An index build must not be cut off by the role's timeouts (it
        // would start over at every start, and never end); a step's
        // transaction sets a lock timeout of its own.
        let result = match client
            .batch_execute("SET statement_timeout = 0; SET lock_timeout = 0")
            .await
        {
            Ok(()) => run(client, target).await,
            Err(e) => Err(e.into()),
        };
        let _ = client
            .batch_execute("RESET statement_timeout; RESET lock_timeout")
            .await;
        // Also released when the session ends, should this fail.
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        tries += 1;
        match result {
            Err(e) if deadlocked(&e) && tries < DEADLOCK_TRIES => {
                tracing::warn!(
                    "schema migration deadlocked with a node waiting for the migration lock (one of a version before this); letting it pass, then trying again: {e:#}"
                );
                tokio::time::sleep(LOCK_POLL * 5).await;
            }
            result => return result,
        }
    }
}

/// Take the migration lock, asking every [`LOCK_POLL`].
async fn take_lock(client: &Client) -> anyhow::Result<()> {
    for polls in 1.. {
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .context("cannot take the migration lock")?
            .get(0);
        if taken {
            break;
        }
        if polls == 50 {
            tracing::info!("waiting for another node's schema migration to finish");
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
    Ok(())
}

fn deadlocked(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .any(|e| e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED))
}

async fn run(client: &mut Client, target: i32) -> anyhow::Result<()> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS wasmhook_schema (version integer NOT NULL)")
        .await
        .context("cannot create the schema version table")?;
    let row = client
        .query_opt("SELECT version FROM wasmhook_schema", &[])
        .await?;
    let current: i32 = match row {
        Some(r) => r.get(0),
        None => {
            client
                .execute("INSERT INTO wasmhook_schema (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    if current > VERSION {
        bail!(
            "the database's schema is version {current}, newer than this wasmhook (version {VERSION}): \
             run a newer wasmhook, or point storage.url at another database"
        );
    }
    for (n, step) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(current as usize)
        .take((target - current).max(0) as usize)
    {
        let version = n as i32 + 1;
        let sql = match step {
            Step::Sql(sql) => sql,
            Step::Index { name, create, then } => {
                build_index(client, name, create)
                    .await
                    .with_context(|| format!("schema migration {version} failed"))?;
                then
            }
        };
        let mut tries = 0;
        while let Err(e) = run_step(client, version, sql).await {
            tries += 1;
            let waited = e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE);
            if !waited || tries == STEP_TRIES {
                return Err(e).with_context(|| format!("schema migration {version} failed"));
            }
            tracing::warn!(
                version,
                "schema migration waited {LOCK_WAIT} for a table that other queries hold; trying again"
            );
        }
        tracing::info!(version, "migrated the PostgreSQL schema");
    }
    Ok(())
}

/// Step `version`'s `sql` and the version bump, in one transaction.
async fn run_step(
    client: &mut Client,
    version: i32,
    sql: &str,
) -> Result<(), tokio_postgres::Error> {
    let t = client.transaction().await?;
    t.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
        .await?;
    t.batch_execute(sql).await?;
    t.execute("UPDATE wasmhook_schema SET version = $1", &[&version])
        .await?;
    t.commit().await
}

/// Build index `name` with `create` unless a valid one is there already;
/// an invalid one (a build that was cut off) is dropped first.
async fn build_index(client: &Client, name: &str, create: &str) -> anyhow::Result<()> {
    let valid: Option<bool> = client
        .query_opt(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)::oid",
            &[&name],
        )
        .await?
        .map(|r| r.get(0));
    match valid {
        Some(true) => return Ok(()),
        Some(false) => {
            tracing::warn!(
                index = name,
                "dropping an index whose build was cut off, to build it again"
            );
            client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY {name}"))
                .await?;
        }
        None => {}
    }
    tracing::info!(
        index = name,
        "building an index CONCURRENTLY: writes go on; it waits for transactions open now to end"
    );
    client.batch_execute(create).await?;
    Ok(())
}
