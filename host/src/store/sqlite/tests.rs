//! The SQLite store against its contract, on in-memory and file databases.

use super::*;
use crate::store::{RouteOutcome, RouteResult};

fn processed(deliveries: Vec<Delivery>, failures: Vec<RouteFailure>) -> Processed {
    let routes = failures
        .into_iter()
        .map(|f| RouteOutcome {
            route: f.route,
            result: RouteResult::Failed {
                plugin: f.plugin,
                error: f.reason,
                waiting_for: f.waiting_for,
            },
        })
        .collect();
    Processed { deliveries, routes }
}

fn event(id: &str) -> Event {
    Event {
        id: id.into(),
        source: "s".into(),
        event_type: "t".into(),
        received_at: now_ms(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: bytes::Bytes::from_static(b"{\"n\":1}"),
    }
}

fn delivery(id: &str, e: &Event) -> Delivery {
    Delivery {
        id: id.into(),
        event_id: e.id.clone(),
        route: "r".into(),
        target: "t".into(),
        event: e.clone(),
        attempts: 0,
    }
}

#[tokio::test]
async fn duplicates_are_recognised_and_events_flow_to_claims() {
    let store = SqliteStore::open(None, false, 10).unwrap();
    assert_eq!(
        store.accept(event("e1"), None).await.unwrap(),
        Accepted::New
    );
    assert_eq!(
        store.accept(event("e1"), None).await.unwrap(),
        Accepted::Duplicate("e1".into())
    );
    let e = store.next_event().await;
    store
        .complete_event(e.clone(), processed(vec![delivery("d1", &e)], vec![]))
        .await
        .unwrap();
    // A re-run of the same deterministic route makes no second delivery.
    store
        .record_rerun(e.clone(), "r", processed(vec![delivery("d1", &e)], vec![]))
        .await
        .unwrap();
    let d = store.claim("t", Duration::from_secs(30), 1).await.remove(0);
    assert_eq!(
        (d.id.as_str(), d.event.body.as_ref()),
        ("d1", &b"{\"n\":1}"[..])
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.in_flight, stats.pending_deliveries), (1, 0));
    let attempt = Attempt {
        status: Some(200),
        ..Attempt::default()
    };
    store
        .finish_attempt(Delivery { attempts: 1, ..d }, attempt, NextStep::Delivered)
        .await
        .unwrap();
    let rec = store.event("e1").await.unwrap().unwrap();
    assert_eq!(rec.state, "processed");
    assert_eq!(rec.deliveries[0].state, "delivered");
    assert_eq!(rec.deliveries[0].attempt_log[0].status, Some(200));
}

#[tokio::test]
async fn a_full_pipeline_backlog_refuses_new_events() {
    let store = SqliteStore::open(None, false, 2).unwrap();
    store.accept(event("a"), None).await.unwrap();
    store.accept(event("b"), None).await.unwrap();
    assert_eq!(store.accept(event("c"), None).await, Err(StoreError::Full));
    // Taken by the pipeline is not done: it still counts until recorded.
    let a = store.next_event().await;
    assert_eq!(store.accept(event("c"), None).await, Err(StoreError::Full));
    store
        .complete_event(a, processed(vec![], vec![]))
        .await
        .unwrap();
    assert_eq!(store.accept(event("c"), None).await, Ok(Accepted::New));
}

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

#[tokio::test]
async fn failures_wait_for_their_plugin_and_prune_keeps_what_is_young() {
    let store = SqliteStore::open(None, false, 10).unwrap();
    store.accept(event("e"), None).await.unwrap();
    let e = store.next_event().await;
    let failure = RouteFailure {
        event_id: "e".into(),
        route: "r".into(),
        plugin: Some("p".into()),
        reason: "plugin p is not loaded".into(),
        waiting_for: Some("p".into()),
    };
    store
        .complete_event(e.clone(), processed(vec![], vec![failure]))
        .await
        .unwrap();
    assert!(
        store
            .failed_routes(FailedFilter::WaitingFor("q".into()))
            .await
            .unwrap()
            .is_empty()
    );
    let waiting = store
        .failed_routes(FailedFilter::WaitingFor("p".into()))
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    // Nothing is old enough to prune; the failed route keeps its event.
    let p = store.prune(0, 0, now_ms() + 1).await.unwrap();
    assert_eq!(p, Pruned::default());
    store
        .record_rerun(e.clone(), "r", processed(vec![delivery("d", &e)], vec![]))
        .await
        .unwrap();
    assert_eq!(store.stats().await.unwrap().failed_routes, 0);
    let d = store.claim("t", Duration::from_secs(30), 1).await.remove(0);
    store
        .finish_attempt(
            Delivery { attempts: 1, ..d },
            Attempt::default(),
            NextStep::Delivered,
        )
        .await
        .unwrap();
    let p = store.prune(now_ms() + 1, 0, now_ms() + 1).await.unwrap();
    assert_eq!(
        p,
        Pruned {
            deliveries: 1,
            events: 1
        }
    );
    assert!(store.event("e").await.unwrap().is_none());
}

#[tokio::test]
async fn prune_takes_only_finished_work_past_retention_and_then_an_id_is_new_again() {
    let store = SqliteStore::open(None, false, 10).unwrap();
    for id in ["delivered", "dead", "retrying"] {
        store.accept(event(id), None).await.unwrap();
        let e = store.next_event().await;
        store
            .complete_event(
                e.clone(),
                processed(vec![delivery(&format!("d-{id}"), &e)], vec![]),
            )
            .await
            .unwrap();
    }
    let claimed = store.claim("t", Duration::from_secs(30), 3).await;
    assert_eq!(claimed.len(), 3);
    for d in claimed {
        let next = match d.id.as_str() {
            "d-delivered" => NextStep::Delivered,
            "d-dead" => NextStep::Dead,
            _ => NextStep::Retry {
                after: Duration::from_secs(3600),
            },
        };
        store
            .finish_attempt(Delivery { attempts: 1, ..d }, Attempt::default(), next)
            .await
            .unwrap();
    }
    let before = now_ms() - 60_000;
    let after = now_ms() + 1;
    let exists = |id: &'static str| {
        let store = &store;
        async move { store.event(id).await.unwrap().is_some() }
    };

    // Nothing is older than the cutoffs yet.
    assert_eq!(
        store.prune(before, before, before).await.unwrap(),
        Pruned::default()
    );
    // Past the delivered retention: the delivered delivery, then its event.
    assert_eq!(
        store.prune(after, before, after).await.unwrap(),
        Pruned {
            deliveries: 1,
            events: 1
        }
    );
    assert!(!exists("delivered").await);
    assert!(exists("dead").await, "dead work has its own retention");
    // Past the dead retention too.
    assert_eq!(
        store.prune(after, after, after).await.unwrap(),
        Pruned {
            deliveries: 1,
            events: 1
        }
    );
    assert!(!exists("dead").await);
    // Work still to do is never pruned, whatever its age.
    assert!(exists("retrying").await);
    assert_eq!(store.stats().await.unwrap().pending_deliveries, 1);

    // Dedup lasts as long as the event is kept: a pruned id is new again.
    assert_eq!(
        store.accept(event("delivered"), None).await,
        Ok(Accepted::New)
    );
    assert_eq!(
        store.accept(event("retrying"), None).await,
        Ok(Accepted::Duplicate("retrying".into()))
    );
}

#[tokio::test]
async fn the_same_signed_content_under_another_id_is_a_duplicate() {
    let store = SqliteStore::open(None, false, 10).unwrap();
    let signed = Some([7u8; 32]);
    assert_eq!(
        store.accept(event("first"), signed).await,
        Ok(Accepted::New)
    );
    // A replay with a fresh unsigned id header.
    assert_eq!(
        store.accept(event("replayed"), signed).await,
        Ok(Accepted::Duplicate("first".into()))
    );
    // Other content is another event; unsigned events never collide on it.
    assert_eq!(
        store.accept(event("second"), Some([8u8; 32])).await,
        Ok(Accepted::New)
    );
    assert_eq!(store.accept(event("u1"), None).await, Ok(Accepted::New));
    assert_eq!(store.accept(event("u2"), None).await, Ok(Accepted::New));
    // The same id with other content is still a duplicate of that id.
    assert_eq!(
        store.accept(event("second"), Some([9u8; 32])).await,
        Ok(Accepted::Duplicate("second".into()))
    );
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

#[tokio::test]
async fn what_each_route_did_is_kept_and_a_rerun_replaces_its_own() {
    let store = SqliteStore::open(None, false, 10).unwrap();
    store.accept(event("e"), None).await.unwrap();
    let e = store.next_event().await;
    let dropped = RouteOutcome {
        route: "pushes".into(),
        result: RouteResult::Dropped {
            plugin: "filter".into(),
            reason: "type star is not allowed".into(),
            dropped: Vec::new(),
        },
    };
    let failed = RouteOutcome {
        route: "r".into(),
        result: RouteResult::Failed {
            plugin: Some("p".into()),
            error: "plugin p is not loaded".into(),
            waiting_for: Some("p".into()),
        },
    };
    let mut first = processed(vec![], vec![]);
    first.routes = vec![dropped.clone(), failed];
    store.complete_event(e.clone(), first).await.unwrap();
    let rec = store.event("e").await.unwrap().unwrap();
    assert_eq!(rec.routes[0], dropped);
    assert!(matches!(rec.routes[1].result, RouteResult::Failed { .. }));
    // The failed route is kept to re-run, the dropped one is not.
    let waiting = store
        .failed_routes(FailedFilter::WaitingFor("p".into()))
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(rec.failed_routes.len(), 1);

    let emitted = RouteOutcome {
        route: "r".into(),
        result: RouteResult::Emitted {
            outputs: 1,
            targets: vec!["t".into()],
            dropped: Vec::new(),
        },
    };
    let mut rerun = processed(vec![delivery("d", &e)], vec![]);
    rerun.routes = vec![emitted.clone()];
    store.record_rerun(e.clone(), "r", rerun).await.unwrap();
    let rec = store.event("e").await.unwrap().unwrap();
    assert_eq!(
        rec.routes,
        [dropped, emitted],
        "the re-run replaced only its route"
    );
    let json = serde_json::to_value(&rec.routes).unwrap();
    assert_eq!(json[0]["outcome"], "dropped");
    assert_eq!(json[0]["reason"], "type star is not allowed");
    assert_eq!(json[1]["outcome"], "emitted");
    assert_eq!(json[1]["targets"], serde_json::json!(["t"]));
}
