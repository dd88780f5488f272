//! What only a shared database must do: several nodes (stores on one
//! database) claim each piece of work once, take over a dead node's work
//! when its lease runs out, deduplicate across nodes, wake each other, and
//! migrate once when they start together. The single-store contract is in
//! `store::conformance`, run here too.

use std::collections::HashSet;

use super::*;
use crate::event::now_ms;
use crate::store::conformance::{delivery, event, pg_options, processed};

/// `n` nodes on one new database; `None` without PostgreSQL (skipped).
async fn nodes(test: &str, n: usize, opts: PgOptions) -> Option<(String, Vec<Arc<PostgresStore>>)> {
    let url = wasmhook_testpg::database(test)?;
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(Arc::new(
            PostgresStore::open(&url, opts.clone()).await.unwrap(),
        ));
    }
    Some((url, stores))
}

async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// An event with `n` deliveries to target `t`, committed at ingest.
async fn with_deliveries(store: &PostgresStore, id: &str, n: usize) {
    let e = event(id);
    let ds = (0..n)
        .map(|i| delivery(&format!("{id}-d{i}"), &e))
        .collect();
    store
        .accept_processed(e.clone(), None, processed(ds, vec![]))
        .await
        .unwrap();
}

const WAIT: Duration = Duration::from_secs(10);

/// Event `e`, processed two minutes ago, with `deliveries` (id, target,
/// state) finished then, written by a client of its own, which is returned
/// with the time.
async fn an_old_event(
    url: &str,
    deliveries: &[(&str, &str, &str)],
) -> (tokio_postgres::Client, i64) {
    let old = now_ms() as i64 - 120_000;
    let rows: Vec<String> = deliveries
        .iter()
        .map(|(id, target, state)| {
            format!("('{id}', 's', 'e', 'r', '{target}', '{{}}', '{state}', {old}, {old})")
        })
        .collect();
    let client = sql(url).await;
    client
        .batch_execute(&format!(
            "INSERT INTO events (source, id, event_type, received_at, headers, body, state, routes)
                 VALUES ('s', 'e', 't', {old}, '[]', '\\x'::bytea, 'processed', '[]');
             INSERT INTO deliveries (id, event_source, event_id, route, target, meta, state,
                                     created_at, updated_at)
                 VALUES {};",
            rows.join(", ")
        ))
        .await
        .unwrap();
    (client, old)
}

/// Until `check` says yes, asked every 10 ms; fails saying `what` after
/// [`WAIT`].
async fn until<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Until a statement like `query` (a `LIKE` pattern) waits for a lock, in
/// `watch`'s database (the tests share a server).
async fn until_waiting_for_a_lock(watch: &tokio_postgres::Client, query: &str) {
    let what = format!("a statement like {query} waits for a lock");
    until(&what, || async {
        let waiting: i64 = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE $1",
                &[&query],
            )
            .await
            .unwrap()
            .get(0);
        waiting > 0
    })
    .await;
}

/// Until a retention statement deleting deliveries waits for a row lock.
async fn until_retention_waits_for_a_lock(watch: &tokio_postgres::Client) {
    until_waiting_for_a_lock(watch, "%DELETE FROM deliveries%").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_claim_every_delivery_exactly_once() {
    let Some((_, n)) = nodes("two_nodes_claim", 2, pg_options(100)).await else {
        return;
    };
    with_deliveries(&n[0], "e", 300).await;
    let claimers: Vec<_> = (0..6)
        .map(|i| {
            let store = n[i % 2].clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                // Until a claim finds nothing for a while: all taken.
                while let Ok(batch) = tokio::time::timeout(
                    Duration::from_millis(300),
                    store.claim("t", Duration::from_secs(60), 7),
                )
                .await
                {
                    got.extend(batch.into_iter().map(|d| d.id));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 300, "every delivery claimed");
    assert_eq!(unique.len(), 300, "none claimed twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_nodes_deliveries_are_taken_over_when_its_lease_runs_out() {
    let Some((_, n)) = nodes("takeover", 2, pg_options(100)).await else {
        return;
    };
    with_deliveries(&n[0], "e", 1).await;
    // Node 0 claims and then hangs (or dies) mid-attempt.
    let first = n[0]
        .claim("t", Duration::from_millis(300), 1)
        .await
        .remove(0);
    // Node 1's worker is waiting already: it takes the delivery once the
    // lease has run out, on the database's clock.
    let second = tokio::time::timeout(WAIT, n[1].claim("t", Duration::from_secs(60), 1))
        .await
        .expect("node 1 took the delivery over")
        .remove(0);
    assert_eq!(second.id, first.id);
    assert_ne!(second.lease, first.lease, "a new claim has a new token");
    // Node 0 wakes up and records its attempt: the lease is gone.
    assert_eq!(
        n[0].finish_attempt(
            Delivery {
                attempts: 1,
                ..first
            },
            Attempt::default(),
            NextStep::Dead
        )
        .await,
        Ok(Recorded::LeaseLost)
    );
    assert_eq!(
        n[1].finish_attempt(
            Delivery {
                attempts: 1,
                ..second
            },
            Attempt::default(),
            NextStep::Delivered
        )
        .await,
        Ok(Recorded::Yes)
    );
    let rec = n[1].event("e").await.unwrap().unwrap();
    assert_eq!(rec.deliveries[0].state, "delivered");
    assert_eq!(rec.deliveries[0].attempt_log.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_at_two_nodes_at_once_is_one_event() {
    let Some((_, n)) = nodes("same_event", 2, pg_options(1000)).await else {
        return;
    };
    for round in 0..20 {
        let id = format!("e{round}");
        let (a, b) = (n[0].clone(), n[1].clone());
        let (ea, eb) = (event(&id), event(&id));
        let d = delivery(&format!("{id}-d"), &ea);
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move {
                a.accept_processed(ea, None, processed(vec![d], vec![]))
                    .await
            }),
            tokio::spawn(async move { b.accept(eb, None).await }),
        );
        let results = [ra.unwrap().unwrap(), rb.unwrap().unwrap()];
        let new = results.iter().filter(|r| **r == Accepted::New).count();
        assert_eq!(new, 1, "round {round}: {results:?}");
        assert!(results.contains(&Accepted::Duplicate(id.clone())));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_waiting_for_its_routes_runs_on_one_node_and_moves_on_if_that_node_dies() {
    let opts = PgOptions {
        pipeline_lease: Duration::from_millis(500),
        ..pg_options(100)
    };
    let Some((_, n)) = nodes("pipeline_claims", 2, opts).await else {
        return;
    };
    // Node 1's pipeline is waiting; the event arrives at node 0: the notice
    // wakes node 1 at once (its poll is 30 s).
    let waiting = {
        let b = n[1].clone();
        tokio::spawn(async move { b.next_event().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    n[0].accept(event("e"), None).await.unwrap();
    let taken = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(taken.id, "e");
    // While node 1 holds it, node 0 does not get it …
    assert!(
        tokio::time::timeout(Duration::from_millis(200), n[0].next_event())
            .await
            .is_err()
    );
    // … but node 1 dies without completing it: once the lease runs out,
    // node 0 runs it.
    let again = tokio::time::timeout(WAIT, n[0].next_event())
        .await
        .expect("taken over");
    assert_eq!(again.id, "e");
    n[0].complete_event(again, processed(vec![delivery("d", &taken)], vec![]))
        .await
        .unwrap();
    assert_eq!(n[1].stats().await.unwrap().awaiting_pipeline, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_delivery_wakes_a_worker_on_another_node() {
    let Some((_, n)) = nodes("wakes", 2, pg_options(100)).await else {
        return;
    };
    let waiting = {
        let b = n[1].clone();
        tokio::spawn(async move { b.claim("t", Duration::from_secs(60), 1).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    with_deliveries(&n[0], "e", 1).await;
    let got = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("the notice woke node 1 (its poll is 30 s)")
        .unwrap();
    assert_eq!(got[0].id, "e-d0");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_routes_are_re_run_by_one_node() {
    let Some((_, n)) = nodes("reruns", 2, pg_options(100)).await else {
        return;
    };
    for i in 0..10 {
        let e = event(&format!("e{i}"));
        let failure = RouteFailure {
            event_id: e.id.clone(),
            route: "r".into(),
            plugin: Some("p".into()),
            reason: "plugin p is not loaded".into(),
            waiting_for: Some("p".into()),
        };
        n[0].accept_processed(e, None, processed(vec![], vec![failure]))
            .await
            .unwrap();
    }
    // Both nodes load plugin p at once and ask what to re-run.
    let (a, b) = tokio::join!(
        n[0].failed_routes(FailedFilter::WaitingFor("p".into())),
        n[1].failed_routes(FailedFilter::WaitingFor("p".into())),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 10, "each failure went to one node");
    let ids: HashSet<_> = a.iter().chain(&b).map(|(e, _)| e.id.clone()).collect();
    assert_eq!(ids.len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_starting_together_migrate_once_and_a_newer_database_is_refused() {
    let Some(url) = wasmhook_testpg::database("migrations") else {
        return;
    };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::open(&url, pg_options(10)).await.map(|_| ()) })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    let client = sql(&url).await;
    let v: i32 = client
        .query_one("SELECT version FROM wasmhook_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, schema::VERSION);
    let rows = client
        .query("SELECT * FROM wasmhook_schema", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);

    client
        .execute("UPDATE wasmhook_schema SET version = version + 1", &[])
        .await
        .unwrap();
    let err = PostgresStore::open(&url, pg_options(10))
        .await
        .err()
        .expect("a newer database is refused")
        .to_string();
    assert!(err.contains("newer than this wasmhook"), "{err}");
}

/// A delivered delivery's row, numbered `n`, for raw inserts.
fn delivered_row(n: u32) -> String {
    format!(
        "INSERT INTO deliveries (id, event_source, event_id, route, target, meta, state,
                                 created_at, updated_at)
             VALUES ('d{n}', 's', 'e', 'r', 't', '{{}}', 'delivered', 1, 1)"
    )
}

/// A database at schema 5 with `n` delivered deliveries, and a client.
async fn at_version_5(test: &str, n: u32) -> Option<(String, tokio_postgres::Client)> {
    let url = wasmhook_testpg::database(test)?;
    let mut client = sql(&url).await;
    schema::migrate_to(&mut client, 5).await.unwrap();
    for i in 0..n {
        client.batch_execute(&delivered_row(i)).await.unwrap();
    }
    Some((url, client))
}

/// Schema 6 is in place: the version, and one valid `deliveries_done` on
/// `(state, updated_at)`.
async fn assert_version_6(client: &tokio_postgres::Client) {
    let v: i32 = client
        .query_one("SELECT version FROM wasmhook_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 6);
    let indexes: Vec<(String, bool, String)> = client
        .query(
            "SELECT c.relname::text, i.indisvalid, pg_get_indexdef(i.indexrelid)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE c.relname LIKE 'deliveries_done%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    let (name, valid, def) = &indexes[0];
    assert_eq!(name, "deliveries_done");
    assert!(valid, "{def}");
    assert!(
        def.contains("(state, updated_at)") && !def.contains("UNIQUE"),
        "{def}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn migration_6_builds_its_index_while_writes_go_on() {
    let Some((url, mut migrator)) = at_version_5("migration_6_writes", 1).await else {
        return;
    };
    // A writer's transaction is open as the migration starts: the build
    // waits for it, and while it waits other writes must go on.
    let mut open = sql(&url).await;
    let writer = open.transaction().await.unwrap();
    writer.batch_execute(&delivered_row(1)).await.unwrap();
    let migrating = tokio::spawn(async move {
        schema::migrate_to(&mut migrator, 6)
            .await
            .map(|()| migrator)
    });
    let other = sql(&url).await;
    until_waiting_for_a_lock(&other, "CREATE INDEX%").await;
    // A build that took the table's share lock would queue this insert
    // behind it until the open transaction ends.
    other
        .batch_execute(&format!("SET lock_timeout = '2s'; {}", delivered_row(2)))
        .await
        .expect("a write goes on while the index is built");
    writer.commit().await.unwrap();
    let migrator = migrating.await.unwrap().unwrap();
    assert_version_6(&migrator).await;
    let rows: i64 = migrator
        .query_one("SELECT count(*) FROM deliveries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_waiting_for_the_migration_lock_does_not_deadlock_the_index_build() {
    let Some((url, mut first)) = at_version_5("migration_6_two_nodes", 1).await else {
        return;
    };
    // The open transaction holds the first node's build, so the second
    // node comes while it runs.
    let mut open = sql(&url).await;
    let writer = open.transaction().await.unwrap();
    writer.batch_execute(&delivered_row(1)).await.unwrap();
    let first = tokio::spawn(async move { schema::migrate_to(&mut first, 6).await });
    let watch = sql(&url).await;
    until_waiting_for_a_lock(&watch, "CREATE INDEX%").await;
    let mut second = sql(&url).await;
    let pid: i32 = second
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let second = tokio::spawn(async move { schema::migrate_to(&mut second, 6).await });
    // The second node has asked for the lock: waiting in
    // `pg_advisory_lock` it would hold a snapshot the build waits out,
    // and one of the two would die of a deadlock.
    until("the second node asks for the lock", || async {
        let query: String = watch
            .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .get(0);
        query.contains("advisory_lock")
    })
    .await;
    writer.commit().await.unwrap();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert_version_6(&watch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_deadlocked_by_an_older_node_lets_it_pass_and_tries_again() {
    let Some((url, mut first)) = at_version_5("migration_6_old_node", 1).await else {
        return;
    };
    // The older node's session looks for deadlocks 50 ms into its wait
    // (and finds none then); the migrating one after the default 1 s, so
    // it is the one PostgreSQL ends.
    let watch = sql(&url).await;
    watch
        .batch_execute(
            "DO $$ BEGIN
                 EXECUTE format('ALTER DATABASE %I SET deadlock_timeout = ''50ms''', current_database());
             END $$",
        )
        .await
        .unwrap();
    let mut open = sql(&url).await;
    let writer = open.transaction().await.unwrap();
    writer.batch_execute(&delivered_row(1)).await.unwrap();
    let first = tokio::spawn(async move { schema::migrate_to(&mut first, 6).await });
    until_waiting_for_a_lock(&watch, "CREATE INDEX%").await;
    // A node of a version before the lock was polled waits for it in
    // `pg_advisory_lock`, then lets it go.
    let older = sql(&url).await;
    let pid: i32 = older
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let older = tokio::spawn(async move {
        older
            .execute("SELECT pg_advisory_lock($1)", &[&schema::MIGRATION_LOCK])
            .await?;
        older
            .execute("SELECT pg_advisory_unlock($1)", &[&schema::MIGRATION_LOCK])
            .await
    });
    until(
        "the older node has waited past its deadlock check",
        || async {
            let waited: i64 = watch
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                 WHERE pid = $1 AND wait_event_type = 'Lock'
                   AND clock_timestamp() - query_start > interval '200 ms'",
                    &[&pid],
                )
                .await
                .unwrap()
                .get(0);
            waited > 0
        },
    )
    .await;
    // The build goes on, and comes to wait out the older node's snapshot.
    writer.commit().await.unwrap();
    first.await.unwrap().unwrap();
    older.await.unwrap().unwrap();
    assert_version_6(&watch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn migration_6_builds_again_an_index_whose_build_was_cut_off() {
    let Some((_url, mut client)) = at_version_5("migration_6_cut_off", 2).await else {
        return;
    };
    // A build cut off leaves an invalid index of the new name: made here
    // by a unique build that fails on the two rows.
    let cut_off = client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY deliveries_done_v6 ON deliveries (state)")
        .await;
    assert!(cut_off.is_err());
    schema::migrate_to(&mut client, 6).await.unwrap();
    assert_version_6(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_is_a_clear_error_at_start() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://u@127.0.0.1:{port}/db?sslmode=disable");
    let err = PostgresStore::open(&url, pg_options(10))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
}

/// Two nodes share a target's start book: their reservations follow one
/// another on the database's clock, a refund gives starts back, a hold
/// moves the book forward.
#[tokio::test]
async fn nodes_share_a_targets_start_book() {
    let Some((_, stores)) = nodes("start_book", 2, pg_options(100)).await else {
        return;
    };
    let (a, b) = (
        stores[0].shared_starts().unwrap(),
        stores[1].shared_starts().unwrap(),
    );
    let every = 20_000;
    let (base, now) = a.reserve_starts("t", 3, every).await.unwrap();
    assert_eq!(base, now, "a new book starts now");
    let (next, _) = b.reserve_starts("t", 2, every).await.unwrap();
    assert_eq!(next, base + 3 * every, "the other node's starts come after");
    b.refund_starts("t", 2, every, next + 2 * every)
        .await
        .unwrap();
    let (again, _) = a.reserve_starts("t", 1, every).await.unwrap();
    assert_eq!(again, next);
    // Not given back over a reservation made since.
    b.refund_starts("t", 1, every, again).await.unwrap();
    let (after, _) = a.reserve_starts("t", 1, every).await.unwrap();
    assert_eq!(after, again + every);
    let (other, now) = a.reserve_starts("u", 1, every).await.unwrap();
    assert_eq!(other, now, "each target has a book of its own");
    b.hold_starts("t", 60_000_000).await.unwrap();
    let (held, now) = a.reserve_starts("t", 1, every).await.unwrap();
    assert!(held >= now + 59_000_000, "{held} vs {now}");
}

/// Events that dead deliveries hold are read by one retention pass of a
/// node, not by every pass while they wait (30 days by default); each goes
/// with its last delivery. One whose failed route is re-run to no delivery
/// goes at the next pass; one freed by no store call, at the next rescan.
#[tokio::test(flavor = "multi_thread")]
async fn retention_reads_a_held_event_once_and_deletes_it_with_its_last_delivery() {
    let Some((url, n)) = nodes("retention_reads_once", 1, pg_options(10)).await else {
        return;
    };
    let store = &n[0];
    // Two chunks and some, old enough for the reading to pass them
    // (`prune_cursor::SETTLE_MS`), several to a millisecond.
    let held = PRUNE_CHUNK * 2 + 17;
    let old = now_ms() as i64 - 120_000;
    sql(&url)
        .await
        .batch_execute(&format!(
            "INSERT INTO events (source, id, event_type, received_at, headers, body, state, routes)
                 SELECT 's', 'e' || i, 't', {old} + i / 7, '[]', '\\x'::bytea, 'processed', '[]'
                 FROM generate_series(1, {held}) i;
             INSERT INTO deliveries (id, event_source, event_id, route, target, meta, state,
                                     created_at, updated_at)
                 SELECT 'd' || i, 's', 'e' || i, 'r', 't', '{{}}', 'dead', {old}, {old}
                 FROM generate_series(1, {held}) i;"
        ))
        .await
        .unwrap();
    let failing = |id: &str, age: u64| {
        let e = event(id);
        let e = Event {
            received_at: e.received_at - age,
            ..e
        };
        let failure = RouteFailure {
            event_id: e.id.clone(),
            route: "r".into(),
            plugin: Some("p".into()),
            reason: "plugin p failed".into(),
            waiting_for: None,
        };
        (e, failure)
    };
    // `orphan` is received well before `failed`, so a pass that reads
    // again from `failed` does not reach it.
    let (failed, _) = failing("failed", 60_000);
    for (e, f) in [failing("failed", 60_000), failing("orphan", 90_000)] {
        store
            .accept_processed(e, None, processed(vec![], vec![f]))
            .await
            .unwrap();
    }
    let clear_failures = async {
        sql(&url)
            .await
            .batch_execute("DELETE FROM route_failures")
            .await
            .unwrap();
    };
    crate::store::conformance::held_events_go_with_their_last_delivery(
        &**store,
        &store.prune_cursor,
        held as usize,
        failed,
        clear_failures,
    )
    .await;
}

/// A dead delivery retried while retention deletes it (its row locked by
/// the retry when the delete reaches it) is not deleted, and neither is
/// its event: the delete checks the row as the retry left it.
#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_a_delivery_retried_while_it_runs() {
    let Some((url, n)) = nodes("retention_retry_race", 1, pg_options(10)).await else {
        return;
    };
    let store = n[0].clone();
    let (mut retry, _) = an_old_event(&url, &[("d", "t", "dead")]).await;
    // The retry holds the row, uncommitted, while retention reaches it.
    let t = retry.transaction().await.unwrap();
    t.execute(
        "UPDATE deliveries SET state = 'pending', updated_at = wasmhook_now_ms() WHERE id = 'd'",
        &[],
    )
    .await
    .unwrap();
    let later = now_ms() + 1;
    let prune = tokio::spawn(async move { store.prune(later, later, later).await });
    let watch = sql(&url).await;
    // Until retention's delete waits for the retry's lock.
    until_retention_waits_for_a_lock(&watch).await;
    t.commit().await.unwrap();
    assert_eq!(prune.await.unwrap().unwrap(), Pruned::default());
    assert!(n[0].event("e").await.unwrap().is_some(), "the event stays");
    let state: String = watch
        .query_one("SELECT state FROM deliveries WHERE id = 'd'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "pending");
}

/// Two nodes deleting the last two deliveries of an event at once: each
/// statement sees the other's delivery still there, so neither deletes the
/// event. The node left with it checks it again at its next pass, and it
/// goes then, not at the rescan ten minutes on (the reading has passed it).
#[tokio::test(flavor = "multi_thread")]
async fn an_event_freed_by_two_nodes_at_once_goes_at_the_next_pass() {
    let Some((url, n)) = nodes("retention_two_nodes_free", 1, pg_options(10)).await else {
        return;
    };
    let store = n[0].clone();
    let (mut other, old) =
        an_old_event(&url, &[("d1", "a", "delivered"), ("d2", "b", "delivered")]).await;
    // A pass while its deliveries are younger than retention: the reading
    // of old events passes the event, which stays.
    let later = now_ms() + 1;
    let p = store.prune(old as u64 - 1, 0, later).await.unwrap();
    assert_eq!(p, Pruned::default());
    // The other node's statement has deleted `d2`, and not committed yet.
    let t = other.transaction().await.unwrap();
    t.execute("DELETE FROM deliveries WHERE id = 'd2'", &[])
        .await
        .unwrap();
    let racing = store.clone();
    let prune = tokio::spawn(async move { racing.prune(later, 0, later).await });
    let watch = sql(&url).await;
    // Until this node's delete waits for the other's lock on `d2`.
    until_retention_waits_for_a_lock(&watch).await;
    t.commit().await.unwrap();
    let p = prune.await.unwrap().unwrap();
    assert_eq!((p.deliveries, p.events), (1, 0), "the race, as it happens");
    assert!(n[0].event("e").await.unwrap().is_some());
    // The next pass deletes it.
    let p = n[0].prune(later, 0, later).await.unwrap();
    assert_eq!((p.deliveries, p.events), (0, 1));
    assert!(n[0].event("e").await.unwrap().is_none());
    // And checks it only once.
    assert_eq!(
        n[0].prune(later, 0, later).await.unwrap(),
        Pruned::default()
    );
    assert!(n[0].recheck.lock().unwrap().is_empty());
}

/// What a pass checks again it deletes only as retention would: an event
/// still received, too young, with a failed route or with an unfinished
/// delivery stays. And a chunk leaves for a second look only an event that
/// it would have deleted but for other finished deliveries.
#[tokio::test(flavor = "multi_thread")]
async fn the_recheck_deletes_only_what_retention_would() {
    let Some((url, n)) = nodes("retention_recheck_keeps", 1, pg_options(10)).await else {
        return;
    };
    let store = &n[0];
    let old = now_ms() as i64 - 120_000;
    let now = now_ms() as i64;
    let later = now_ms() + 1;
    sql(&url)
        .await
        .batch_execute(&format!(
            "INSERT INTO events (source, id, event_type, received_at, headers, body, state, routes)
                 VALUES ('s', 'freed', 't', {old}, '[]', '\\x'::bytea, 'processed', '[]'),
                        ('s', 'received', 't', {old}, '[]', '\\x'::bytea, 'received', '[]'),
                        ('s', 'young', 't', {now}, '[]', '\\x'::bytea, 'processed', '[]'),
                        ('s', 'failing', 't', {old}, '[]', '\\x'::bytea, 'processed', '[]'),
                        ('s', 'held', 't', {old}, '[]', '\\x'::bytea, 'processed', '[]');
             INSERT INTO route_failures (event_source, event_id, route, reason, failed_at)
                 VALUES ('s', 'failing', 'r', 'plugin p failed', {old});
             INSERT INTO deliveries (id, event_source, event_id, route, target, meta, state,
                                     created_at, updated_at)
                 VALUES ('dh', 's', 'held', 'r', 't', '{{}}', 'pending', {old}, {old});"
        ))
        .await
        .unwrap();
    // The reading passes them all first (but `young`, too young), and
    // `freed` goes: nothing holds it.
    let p = store.prune(0, 0, (now - 1) as u64).await.unwrap();
    assert_eq!((p.deliveries, p.events), (0, 1));
    sql(&url)
        .await
        .batch_execute(&format!(
            "INSERT INTO events (source, id, event_type, received_at, headers, body, state, routes)
                 VALUES ('s', 'freed', 't', {old}, '[]', '\\x'::bytea, 'processed', '[]')"
        ))
        .await
        .unwrap();
    *store.recheck.lock().unwrap() = ["freed", "received", "young", "failing", "held"]
        .map(|id| ("s".to_string(), id.to_string()))
        .to_vec();
    // `young` is not older than the cutoff.
    let p = store.prune(0, 0, (now - 1) as u64).await.unwrap();
    assert_eq!((p.deliveries, p.events), (0, 1), "only `freed` goes");
    for id in ["received", "young", "failing", "held"] {
        assert!(store.event(id).await.unwrap().is_some(), "{id} stays");
    }
    assert!(store.recheck.lock().unwrap().is_empty(), "checked once");
    // Chunks that take every delivery of an event that stays for a reason
    // of its own leave nothing to check again.
    sql(&url)
        .await
        .batch_execute(&format!(
            "INSERT INTO deliveries (id, event_source, event_id, route, target, meta, state,
                                     created_at, updated_at)
                 VALUES ('dy', 's', 'young', 'r', 't', '{{}}', 'delivered', {old}, {old}),
                        ('df', 's', 'failing', 'r', 't', '{{}}', 'delivered', {old}, {old});"
        ))
        .await
        .unwrap();
    let p = store.prune(later, 0, (now - 1) as u64).await.unwrap();
    assert_eq!((p.deliveries, p.events), (2, 0));
    assert!(
        store.recheck.lock().unwrap().is_empty(),
        "nothing to check again"
    );
}
