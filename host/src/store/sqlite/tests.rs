//! The SQLite store against its contract, on in-memory and file databases.

use super::*;

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
    assert_eq!(store.accept(event("e1")).await.unwrap(), Accepted::New);
    assert_eq!(
        store.accept(event("e1")).await.unwrap(),
        Accepted::Duplicate
    );
    let e = store.next_event().await;
    store
        .complete_event(e.clone(), vec![delivery("d1", &e)], vec![])
        .await
        .unwrap();
    // A re-run of the same deterministic route makes no second delivery.
    store
        .record_rerun(e.clone(), "r", vec![delivery("d1", &e)], vec![])
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
    store.accept(event("a")).await.unwrap();
    store.accept(event("b")).await.unwrap();
    assert_eq!(store.accept(event("c")).await, Err(StoreError::Full));
    store.next_event().await;
    assert_eq!(store.accept(event("c")).await, Ok(Accepted::New));
}

#[tokio::test]
async fn reopening_resumes_unprocessed_events_and_releases_leases() {
    let dir = std::env::temp_dir().join(format!("wasmhook-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("db.sqlite");
    {
        let store = SqliteStore::open(Some(&path), true, 10).unwrap();
        store.accept(event("done")).await.unwrap();
        store.accept(event("pending")).await.unwrap();
        let e = store.next_event().await;
        store
            .complete_event(e.clone(), vec![delivery("d1", &e)], vec![])
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
    store.accept(event("e")).await.unwrap();
    let e = store.next_event().await;
    let failure = RouteFailure {
        event_id: "e".into(),
        route: "r".into(),
        plugin: Some("p".into()),
        reason: "plugin p is not loaded".into(),
        waiting_for: Some("p".into()),
    };
    store
        .complete_event(e.clone(), vec![], vec![failure])
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
        .record_rerun(e.clone(), "r", vec![delivery("d", &e)], vec![])
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
