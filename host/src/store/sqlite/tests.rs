//! The SQLite store against its contract, on in-memory and file databases.

use super::*;
use crate::store::conformance::{delivery, event, processed};

#[tokio::test]
async fn reopening_resumes_unprocessed_events_and_releases_leases() {
    let dir = std::env::temp_dir().join(format!("wasmhook-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("db.sqlite");
    {
        let store = SqliteStore::open(Some(&path), true, 10).unwrap();
        store.accept(event("done"), None).await.unwrap();
        store.accept(event("pending"), None).await.unwrap();
        let e = store.next_event().await;
        store
            .complete_event(e.clone(), processed(vec![delivery("d1", &e)], vec![]))
            .await
            .unwrap();
        let _leased = store.claim("t", Duration::from_secs(3600), 8).await;
    }
    let store = SqliteStore::open(Some(&path), true, 10).unwrap();
    assert_eq!(
        store.next_event().await.id,
        "pending",
        "an unprocessed event resumes"
    );
    let d = store.claim("t", Duration::from_secs(30), 1).await.remove(0);
    assert_eq!(
        d.id, "d1",
        "a delivery in flight when the process died is due again"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_do_not_wait_for_the_writer() {
    let dir = std::env::temp_dir().join(format!("wasmhook-readers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SqliteStore::open(Some(&dir.join("db.sqlite")), true, 10).unwrap();
    store.accept(event("e"), None).await.unwrap();

    // Hold the writer thread inside a transaction until the reads are done.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, writer_busy) = tokio::sync::oneshot::channel();
    let writer = store.writer.clone();
    let holding = tokio::spawn(async move {
        writer
            .run(move |_| {
                let _ = entered.send(());
                let _ = held.recv();
                Ok(())
            })
            .await
    });
    writer_busy.await.unwrap();

    let reads = async {
        let stats = store.stats().await.unwrap();
        let record = store
            .event("e")
            .await
            .unwrap()
            .expect("the committed event");
        let page = store
            .deliveries(DeliveryQuery {
                limit: 10,
                ..DeliveryQuery::default()
            })
            .await
            .unwrap();
        (stats, record, page)
    };
    let (stats, record, page) = tokio::time::timeout(Duration::from_secs(10), reads)
        .await
        .expect("reads finish while the writer is busy");
    assert_eq!(stats.awaiting_pipeline, 1);
    assert_eq!(record.state, "received");
    assert!(page.is_empty());

    release.send(()).unwrap();
    holding.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_abandoned_midway_gives_its_connection_back() {
    let dir = std::env::temp_dir().join(format!("wasmhook-abandon-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SqliteStore::open(Some(&dir.join("db.sqlite")), false, 10).unwrap();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, reading) = tokio::sync::oneshot::channel();
    let read = store.reader.run(move |_| {
        let _ = entered.send(());
        let _ = held.recv();
        Ok(())
    });
    // The caller goes away (a client hung up) while the read runs.
    tokio::select! {
        _ = read => panic!("the read cannot finish before it is released"),
        _ = reading => {}
    }
    release.send(()).unwrap();
    // Every connection serves again, all at once.
    for _ in 0..3 {
        let (a, b, c) = tokio::join!(store.stats(), store.stats(), store.stats());
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A target worker waiting in `claim`, as dispatch runs it.
fn claiming(store: &Arc<SqliteStore>, max: usize) -> tokio::task::JoinHandle<Vec<Delivery>> {
    let store = store.clone();
    tokio::spawn(async move { store.claim("t", Duration::from_secs(30), max).await })
}

/// Until target `t`'s worker has claimed once and found the table empty.
async fn worker_waits(store: &SqliteStore) {
    let queue = store.targets.get("t");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !queue.is_waiting() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never claimed"
        );
        // Another thread (the store's) answers the claim: look again soon.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The state of delivery `id` in the table.
async fn state_of(store: &SqliteStore, id: &str) -> String {
    let id = id.to_string();
    store
        .writer
        .run(move |t| {
            t.query_row("SELECT state FROM deliveries WHERE id = ?1", [id], |r| {
                r.get(0)
            })
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_processed_at_ingest_commits_whole_and_its_delivery_skips_the_table() {
    let store = Arc::new(SqliteStore::open(None, false, 10).unwrap());
    // The worker's first claim finds the table empty and waits.
    let worker = claiming(&store, 4);
    worker_waits(&store).await;
    let e = event("e");
    let mut body_changed = delivery("d-out", &e);
    body_changed.event.body = bytes::Bytes::from_static(b"{\"n\":2}");
    let result = processed(vec![delivery("d-same", &e), body_changed], vec![]);
    assert_eq!(
        store
            .accept_processed(e.clone(), None, result.clone())
            .await,
        Ok(Accepted::New)
    );
    let mut got = tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the waiting claim is handed the deliveries")
        .unwrap();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    let bodies: Vec<&[u8]> = got.iter().map(|d| d.event.body.as_ref()).collect();
    assert_eq!(bodies, [&b"{\"n\":2}"[..], &b"{\"n\":1}"[..]]);
    // Leased in the table, with the hand-over's longer lease: they never
    // went through a claim query, and one cannot take them again.
    assert_eq!(state_of(&store, "d-same").await, "in_flight");
    let due_at: i64 = store
        .writer
        .run(|t| {
            t.query_row(
                "SELECT due_at FROM deliveries WHERE id = 'd-same'",
                [],
                |r| r.get(0),
            )
        })
        .await
        .unwrap();
    let handed_lease = (Duration::from_secs(30) + handoff::HANDOFF_WAIT).as_millis() as i64;
    assert!(due_at > now_ms() as i64 + handed_lease - 5_000, "{due_at}");
    let rec = store.event("e").await.unwrap().unwrap();
    assert_eq!(rec.state, "processed");
    assert_eq!(store.stats().await.unwrap().awaiting_pipeline, 0);

    // The same event again: nothing new, nothing handed over.
    assert_eq!(
        store.accept_processed(e, None, result).await,
        Ok(Accepted::Duplicate("e".into()))
    );
    let again = claiming(&store, 4);
    let idle = tokio::time::timeout(Duration::from_millis(200), again).await;
    assert!(idle.is_err(), "a duplicate makes no delivery");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handed_delivery_is_in_the_table_when_the_process_dies_before_its_attempt() {
    let dir = std::env::temp_dir().join(format!("wasmhook-handoff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("db.sqlite");
    {
        let store = Arc::new(SqliteStore::open(Some(&path), true, 10).unwrap());
        let worker = claiming(&store, 1);
        worker_waits(&store).await;
        let e = event("e");
        let result = processed(vec![delivery("d", &e), delivery("d2", &e)], vec![]);
        store.accept_processed(e, None, result).await.unwrap();
        // One is taken, the other waits in memory; then the process dies.
        assert_eq!(worker.await.unwrap().len(), 1);
    }
    let store = SqliteStore::open(Some(&path), true, 10).unwrap();
    let mut ids: Vec<String> = store
        .claim("t", Duration::from_secs(30), 4)
        .await
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["d", "d2"], "both are due again after a restart");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_that_comes_due_goes_before_new_deliveries() {
    let store = Arc::new(SqliteStore::open(None, false, 10).unwrap());
    let worker = claiming(&store, 1);
    worker_waits(&store).await;
    let first = event("first");
    store
        .accept_processed(
            first.clone(),
            None,
            processed(vec![delivery("d1", &first)], vec![]),
        )
        .await
        .unwrap();
    let d1 = worker.await.unwrap().remove(0);
    // It failed, and is due again at once.
    store
        .finish_attempt(
            Delivery { attempts: 1, ..d1 },
            Attempt::default(),
            NextStep::Retry {
                after: Duration::ZERO,
            },
        )
        .await
        .unwrap();
    let second = event("second");
    store
        .accept_processed(
            second.clone(),
            None,
            processed(vec![delivery("d2", &second)], vec![]),
        )
        .await
        .unwrap();
    assert_eq!(
        state_of(&store, "d2").await,
        "pending",
        "a new delivery waits behind a due retry, in the table"
    );
    let order: Vec<String> = store
        .claim("t", Duration::from_secs(30), 1)
        .await
        .into_iter()
        .chain(store.claim("t", Duration::from_secs(30), 1).await)
        .map(|d| d.id)
        .collect();
    assert_eq!(order, ["d1", "d2"]);
}

#[tokio::test]
async fn a_database_from_before_lean_deliveries_keeps_its_deliveries() {
    let dir = std::env::temp_dir().join(format!("wasmhook-v3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db.sqlite");
    {
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate_to(&mut conn, 3).unwrap();
        conn.execute_batch(
            r#"INSERT INTO events (source, id, event_type, received_at, headers, body, state)
                 VALUES ('s', 'e', 't', 1, '[]', X'7B7D', 'processed');
               INSERT INTO deliveries (id, event_source, event_id, route, target, payload, state, attempts,
                                       next_attempt_at, created_at, updated_at)
                 VALUES ('d', 's', 'e', 'r', 't',
                         '{"id":"out","source":"s","event_type":"x","received_at":1,"headers":[["h","v"]],"body":"aGVsbG8="}',
                         'retrying', 2, 0, 1, 1);
               INSERT INTO attempts (delivery_id, n, started_at, duration_ms, status, error, response)
                 VALUES ('d', 2, 20, 4, 503, 'second', NULL), ('d', 1, 10, 3, NULL, 'first', 'r');"#,
        )
        .unwrap();
    }
    let store = SqliteStore::open(Some(&path), true, 10).unwrap();
    let log = &store.event("e").await.unwrap().unwrap().deliveries[0].attempt_log;
    let errors: Vec<_> = log
        .iter()
        .map(|a| (a.started_at, a.status, a.error.as_deref()))
        .collect();
    assert_eq!(
        errors,
        [(10, None, Some("first")), (20, Some(503), Some("second"))]
    );
    let d = store.claim("t", Duration::from_secs(30), 1).await.remove(0);
    assert_eq!(
        (
            d.id.as_str(),
            d.attempts,
            d.event.id.as_str(),
            d.event.event_type.as_str()
        ),
        ("d", 2, "out", "x")
    );
    assert_eq!(d.event.body.as_ref(), b"hello");
    assert_eq!(d.event.headers, [("h".to_string(), "v".to_string())]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stores `n` events `e{i}`, received `age_ms` ago, each with one delivery
/// `d{i}` in `state`.
async fn store_with_deliveries(store: &SqliteStore, n: usize, state: &'static str, age_ms: u64) {
    store
        .writer
        .run(move |t| {
            for i in 0..n {
                let e = event(&format!("e{i}"));
                let e = Event {
                    received_at: e.received_at - age_ms,
                    ..e
                };
                insert_event(t, &e, None, Some("[]"))?;
                let d = delivery(&format!("d{i}"), &e);
                insert_deliveries(t, &e, &[d], &[rows::Start::Due], 0)?;
            }
            t.execute("UPDATE deliveries SET state = ?1", [state])?;
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn retention_prunes_in_chunks_until_nothing_old_is_left() {
    let store = SqliteStore::open(None, false, 10).unwrap();
    let n = PRUNE_CHUNK * 2 + 17;
    store_with_deliveries(&store, n, "delivered", 0).await;
    let p = store.prune(now_ms() + 1, 0, now_ms() + 1).await.unwrap();
    assert_eq!(
        p,
        Pruned {
            deliveries: n,
            events: n
        }
    );
    assert_eq!(
        store.prune(now_ms() + 1, 0, now_ms() + 1).await.unwrap(),
        Pruned::default()
    );
}

/// Events that dead deliveries hold are read by one retention pass, not by
/// every pass while they wait (30 days by default); each goes with its last
/// delivery. One whose failed route is re-run to no delivery goes at the
/// next pass; one freed by no store call, at the next rescan from the first.
#[tokio::test]
async fn retention_reads_a_held_event_once_and_deletes_it_with_its_last_delivery() {
    let store = SqliteStore::open(None, false, 10).unwrap();
    let n = PRUNE_CHUNK * 2 + 17;
    // Old enough for retention to read past them (`prune_cursor::SETTLE_MS`).
    store_with_deliveries(&store, n, "dead", 120_000).await;
    let failed = event("failed");
    let failed = Event {
        received_at: failed.received_at - 60_000,
        ..failed
    };
    // Received well before `failed`, so a pass that reads again from
    // `failed` does not reach it.
    let orphan = Event {
        received_at: failed.received_at - 30_000,
        ..event("orphan")
    };
    let with_failures = [failed.clone(), orphan.clone()];
    store
        .writer
        .run(move |t| {
            for e in &with_failures {
                insert_event(t, e, None, Some("[]"))?;
                t.execute(
                    "INSERT INTO route_failures (event_source, event_id, route, reason, failed_at)
                     VALUES (?1, ?2, 'r', 'plugin failed', 0)",
                    params![e.source, e.id],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let clear_failures = async {
        store
            .writer
            .run(|t| t.execute("DELETE FROM route_failures", []))
            .await
            .unwrap();
    };
    crate::store::conformance::held_events_go_with_their_last_delivery(
        &store,
        &store.prune_cursor,
        n,
        failed,
        clear_failures,
    )
    .await;
}

/// Every insert and update of a delivery checks the partial indexes'
/// predicates, and an `IN` list there builds a temporary b-tree each time
/// (see `listing::unfinished!`): none of the hot path's writes may. And the
/// claim and retention must still read their partial indexes, whose
/// predicates they repeat, not scan the table.
#[test]
fn the_hot_path_builds_no_temporary_tables_and_reads_its_partial_indexes() {
    let mut conn = Connection::open_in_memory().unwrap();
    schema::migrate(&mut conn).unwrap();
    let explain = |sql: &str, column: usize| -> Vec<String> {
        // Unbound parameters are NULL: enough to plan the statement.
        let mut stmt = conn.prepare(sql).unwrap();
        let mut rows = stmt.raw_query();
        let mut got = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            got.push(row.get(column).unwrap());
        }
        got
    };
    for sql in [
        INSERT_EVENT,
        rows::INSERT_DELIVERY,
        FINISH_ATTEMPT,
        claim::LEASE,
    ] {
        let ops = explain(&format!("EXPLAIN {sql}"), 1);
        assert!(
            !ops.iter().any(|op| op == "OpenEphemeral"),
            "builds a temporary b-tree: {sql}"
        );
    }
    for (sql, index) in [
        (claim::SELECT_DUE, "deliveries_due"),
        (DELETE_FINISHED, "deliveries_done"),
        (DELETE_OLD_EVENTS, "events_time"),
    ] {
        // One range read of the index: without the predicate repeated,
        // retention still reaches it, but as two reads (`MULTI-INDEX OR`).
        let plan = explain(&format!("EXPLAIN QUERY PLAN {sql}"), 3);
        assert!(
            plan.iter()
                .any(|step| step.contains(&format!("USING INDEX {index}")))
                && !plan.iter().any(|step| step.contains("MULTI-INDEX")),
            "not one read of {index}: {plan:?}"
        );
    }
    // Retention reads delivered and dead deliveries as a range each, by
    // state then time: not every dead one younger than `dead_retention`.
    let plan = explain(&format!("EXPLAIN QUERY PLAN {DELETE_FINISHED}"), 3);
    let ranges = plan
        .iter()
        .filter(|step| step.contains("INDEX deliveries_done (state=? AND updated_at<?)"))
        .count();
    assert_eq!(ranges, 2, "{plan:?}");
}

/// The writer plans a statement once, whatever it is bound to: retention's
/// and the claim's, bound to new values on every run, are not parsed and
/// planned again each time (rusqlite clears a cached statement's bindings
/// as it is put back, which re-plans one whose plan could use them).
#[tokio::test]
async fn the_writer_plans_its_statements_once_whatever_they_are_bound_to() {
    let store = SqliteStore::open(None, false, 10).unwrap();
    let replanned = store
        .writer
        .run(|t| {
            let statements = [
                DELETE_FINISHED,
                DELETE_FREED_EVENT,
                EVENTS_CHUNK_END,
                LAST_EVENT_BEFORE,
                DELETE_OLD_EVENTS,
                claim::SELECT_DUE,
            ];
            for round in 0..3_i64 {
                for sql in statements {
                    let mut stmt = t.prepare_cached(sql)?;
                    for i in 1..=stmt.parameter_count() {
                        stmt.raw_bind_parameter(i, round + 2)?;
                    }
                    let mut rows = stmt.raw_query();
                    while rows.next()?.is_some() {}
                }
            }
            let mut replanned = Vec::new();
            for sql in statements {
                let stmt = t.prepare_cached(sql)?;
                let n = stmt.get_status(rusqlite::StatementStatus::RePrepare);
                if n > 0 {
                    replanned.push((n, sql));
                }
            }
            Ok(replanned)
        })
        .await
        .unwrap();
    assert!(replanned.is_empty(), "planned again: {replanned:?}");
}

/// Each event listing (all, by source, by type; first page and after a
/// cursor) walks one index in its order, sorting nothing: the time indexes
/// name `id` and `source`, which break ties.
#[test]
fn event_listings_are_read_in_index_order() {
    use crate::store::listing::{self, Before, Cursor, Dialect, EventQuery};
    let mut conn = Connection::open_in_memory().unwrap();
    schema::migrate(&mut conn).unwrap();
    let cursor = Some(Before::Cursor(Cursor {
        received_at: 1,
        source: "s".into(),
        id: "e".into(),
    }));
    for (query, index) in [
        (EventQuery::default(), "events_time"),
        (
            EventQuery {
                source: Some("s".into()),
                before: cursor.clone(),
                ..EventQuery::default()
            },
            "events_source_time",
        ),
        (
            EventQuery {
                event_type: Some("t".into()),
                before: cursor,
                ..EventQuery::default()
            },
            "events_type_time",
        ),
    ] {
        let sql = listing::events(&EventQuery { limit: 50, ..query }, Dialect::Sqlite).text;
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let mut rows = stmt.raw_query();
        let mut plan = Vec::<String>::new();
        while let Some(row) = rows.next().unwrap() {
            plan.push(row.get(3).unwrap());
        }
        assert!(
            plan.iter().any(|s| s.contains(index))
                && !plan.iter().any(|s| s.contains("TEMP B-TREE")),
            "not read in the order of {index}: {plan:?}"
        );
    }
}

/// A 1 KiB event stays in its table's leaf pages. (Without a rowid, the
/// table was an index b-tree, and each such row spilled into an overflow
/// page of its own: a page per event written to the WAL, then again to the
/// database.)
#[tokio::test]
async fn a_kib_event_fits_in_its_tables_pages() {
    let store = SqliteStore::open(None, false, 10).unwrap();
    let pages = || {
        store
            .writer
            .run(|t| t.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0)))
    };
    let before = pages().await.unwrap();
    let n = 400;
    store
        .writer
        .run(move |t| {
            for i in 0..n {
                let mut e = event(&format!("e{i:04}"));
                e.body = vec![b'x'; 1024].into();
                insert_event(t, &e, None, Some("[]"))?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let per_event = (pages().await.unwrap() - before) as f64 / n as f64;
    // Three rows of about 1.2 KiB a 4 KiB page, and the indexes' entries.
    assert!(per_event < 0.5, "{per_event:.2} pages per event");
}

/// A job's savepoint journal stays in memory: spilled to a temporary file
/// (past 64 KiB), every page a job changes cost two more `pwrite`s.
#[tokio::test]
async fn the_savepoint_journal_stays_in_memory() {
    let dir = std::env::temp_dir().join(format!("wasmhook-temp-store-{}", std::process::id()));
    let store = SqliteStore::open(Some(&dir.join("db")), false, 10).unwrap();
    let temp_store = store
        .writer
        .run(|t| t.query_row("PRAGMA temp_store", [], |r| r.get::<_, i64>(0)))
        .await
        .unwrap();
    assert_eq!(temp_store, 2, "PRAGMA temp_store is not MEMORY");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
