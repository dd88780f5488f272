//! What every [`Store`] must do, run against each of them: SQLite (in
//! memory) and PostgreSQL (a throwaway server, see `wasmhook-testpg`; skipped
//! with a line saying so where the machine has none).

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::event::{Event, now_ms};

pub fn processed(deliveries: Vec<Delivery>, failures: Vec<RouteFailure>) -> Processed {
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

pub fn event(id: &str) -> Event {
    Event {
        id: id.into(),
        source: "s".into(),
        event_type: "t".into(),
        received_at: now_ms(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: bytes::Bytes::from_static(b"{\"n\":1}"),
    }
}

pub fn delivery(id: &str, e: &Event) -> Delivery {
    Delivery {
        id: id.into(),
        event_id: e.id.clone(),
        route: "r".into(),
        target: "t".into(),
        event: e.clone(),
        attempts: 0,
        lease: 0,
        order_key: None,
        order_block: false,
    }
}

async fn duplicates_are_recognised_and_events_flow_to_claims(store: Arc<dyn Store>) {
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

async fn a_full_pipeline_backlog_refuses_new_events(store: Arc<dyn Store>) {
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

async fn failures_wait_for_their_plugin_and_prune_keeps_what_is_young(store: Arc<dyn Store>) {
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

async fn prune_takes_only_finished_work_past_retention_and_then_an_id_is_new_again(
    store: Arc<dyn Store>,
) {
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

async fn the_same_signed_content_under_another_id_is_a_duplicate(store: Arc<dyn Store>) {
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

async fn what_each_route_did_is_kept_and_a_rerun_replaces_its_own(store: Arc<dyn Store>) {
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

/// Event `e` with one delivery, `d`, to target `t`, through the pipeline.
async fn one_delivery(store: &Arc<dyn Store>) {
    store.accept(event("e"), None).await.unwrap();
    let e = store.next_event().await;
    store
        .complete_event(e.clone(), processed(vec![delivery("d", &e)], vec![]))
        .await
        .unwrap();
}

async fn a_record_that_comes_after_its_lease_was_lost_changes_nothing(store: Arc<dyn Store>) {
    one_delivery(&store).await;
    // A lease that runs out at once: the delivery is claimed again, as
    // after a store outage longer than the lease.
    let first = store.claim("t", Duration::ZERO, 1).await.remove(0);
    let mut second = store.claim("t", Duration::ZERO, 1).await.remove(0);
    while second.lease == first.lease {
        second = store.claim("t", Duration::ZERO, 1).await.remove(0);
    }
    let late = Attempt {
        error: Some("late".into()),
        ..Attempt::default()
    };
    assert_eq!(
        store
            .finish_attempt(
                Delivery {
                    attempts: 1,
                    ..first
                },
                late,
                NextStep::Dead,
            )
            .await,
        Ok(Recorded::LeaseLost)
    );
    let rec = store.event("e").await.unwrap().unwrap();
    assert_eq!(
        rec.deliveries[0].state, "in_flight",
        "the late record was refused"
    );
    store
        .finish_attempt(
            Delivery {
                attempts: 1,
                ..second
            },
            Attempt::default(),
            NextStep::Delivered,
        )
        .await
        .unwrap();
    let rec = store.event("e").await.unwrap().unwrap();
    assert_eq!(rec.deliveries[0].state, "delivered");
    assert_eq!(
        rec.deliveries[0].attempt_log.len(),
        1,
        "only the current lease's attempt"
    );
}

async fn an_event_accepted_running_is_not_run_again_by_the_pipeline(store: Arc<dyn Store>) {
    let e = event("slow");
    assert_eq!(
        store.accept_running(e.clone(), None).await,
        Ok(Accepted::New)
    );
    assert_eq!(
        store.accept_running(e.clone(), None).await,
        Ok(Accepted::Duplicate("slow".into()))
    );
    // It counts as waiting, but the pipeline is not given it.
    assert_eq!(store.stats().await.unwrap().awaiting_pipeline, 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), store.next_event())
            .await
            .is_err(),
        "the pipeline got an event its ingest is still running"
    );
    store
        .complete_event(e.clone(), processed(vec![delivery("d", &e)], vec![]))
        .await
        .unwrap();
    assert_eq!(store.stats().await.unwrap().awaiting_pipeline, 0);
    assert_eq!(
        store.event("slow").await.unwrap().unwrap().state,
        "processed"
    );
    let d = store.claim("t", Duration::from_secs(30), 1).await;
    assert_eq!(d[0].id, "d");
}

async fn events_list_newest_first_by_filter_and_page_without_gaps(store: Arc<dyn Store>) {
    // Seven events; several share a millisecond, so the cursor's tie-break counts.
    let spec = [
        ("a1", "github", "push", 1000),
        ("a2", "github", "issues", 1000),
        ("a3", "stripe", "charge", 1000),
        ("a4", "github", "push", 2000),
        ("a5", "stripe", "charge", 3000),
        ("a6", "github", "push", 3000),
        ("a7", "github", "push", 4000),
    ];
    for (id, source, ty, at) in spec {
        let e = Event {
            source: source.into(),
            event_type: ty.into(),
            received_at: at,
            ..event(id)
        };
        let failures = if id == "a4" {
            vec![RouteFailure {
                event_id: id.into(),
                route: "r".into(),
                plugin: Some("p".into()),
                reason: "boom".into(),
                waiting_for: None,
            }]
        } else {
            vec![]
        };
        let deliveries = if id == "a6" {
            vec![delivery("d6", &e)]
        } else {
            vec![]
        };
        store
            .accept_processed(e, None, processed(deliveries, failures))
            .await
            .unwrap();
    }
    let ids = |page: &[EventSummary]| page.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    let list = |q: EventQuery| {
        let store = store.clone();
        async move { store.events(q).await.unwrap() }
    };
    let all = list(EventQuery {
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(ids(&all), ["a7", "a6", "a5", "a4", "a3", "a2", "a1"]);
    assert_eq!(
        (all[1].deliveries, all[1].delivered, all[1].dead),
        (1, 0, 0)
    );
    assert_eq!(all[3].failed_routes, 1);

    // Pages of two, by cursor, make up the whole list, with no gap or repeat.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = list(EventQuery {
            before: before.clone(),
            limit: 2,
            ..EventQuery::default()
        })
        .await;
        paged.extend(ids(&page));
        match page.last() {
            Some(last) if page.len() == 2 => before = Some(Before::Cursor(last.cursor())),
            _ => break,
        }
    }
    assert_eq!(paged, ids(&all));

    let github = list(EventQuery {
        source: Some("github".into()),
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(ids(&github), ["a7", "a6", "a4", "a2", "a1"]);
    let pushes = list(EventQuery {
        source: Some("github".into()),
        event_type: Some("push".into()),
        before: Some(Before::Time(4000)),
        since: Some(2000),
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(ids(&pushes), ["a6", "a4"]);
    let failed = list(EventQuery {
        state: Some(EventState::Failed),
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(ids(&failed), ["a4"]);
    let received = list(EventQuery {
        state: Some(EventState::Received),
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert!(received.is_empty());
    store.accept(event("fresh"), None).await.unwrap();
    let received = list(EventQuery {
        state: Some(EventState::Received),
        limit: 100,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(ids(&received), ["fresh"]);

    // The target's pending delivery is counted; a state filter on
    // deliveries reads only that state.
    let counts = store.target_counts().await.unwrap();
    assert_eq!(counts.get("t").map(|c| c.pending), Some(1));
    let dead = DeliveryQuery {
        state: Some("dead".into()),
        limit: 10,
        ..DeliveryQuery::default()
    };
    assert!(store.deliveries(dead).await.unwrap().is_empty());
    let pending = DeliveryQuery {
        state: Some("pending".into()),
        target: Some("t".into()),
        limit: 10,
        ..DeliveryQuery::default()
    };
    assert_eq!(store.deliveries(pending).await.unwrap()[0].id, "d6");
}

async fn a_delivery_given_back_is_due_again_with_no_attempt_spent(store: Arc<dyn Store>) {
    one_delivery(&store).await;
    store.hold("t").await.unwrap();
    let claimed = store.claim("t", Duration::from_secs(60), 1).await.remove(0);
    assert_eq!(store.release(claimed.clone()).await, Ok(Recorded::Yes));
    let rec = store.event("e").await.unwrap().unwrap();
    assert_eq!(rec.deliveries[0].state, "pending");
    assert_eq!(rec.deliveries[0].attempts, 0);
    assert!(rec.deliveries[0].attempt_log.is_empty());
    assert_eq!(
        store.release(claimed).await,
        Ok(Recorded::LeaseLost),
        "a stale lease gives nothing back"
    );
    let again = store.claim("t", Duration::from_secs(60), 1).await;
    assert_eq!(again[0].id, "d");
}

async fn a_targets_control_record_changes_atomically_and_is_read_back(store: Arc<dyn Store>) {
    assert!(store.target_controls().await.unwrap().is_empty());
    let (before, unchanged) = store
        .change_target_control("t", Box::new(|_| false))
        .await
        .unwrap();
    assert_eq!((before, unchanged), Default::default());
    // Concurrent increments: none is lost.
    let bumps = (0..20).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .change_target_control(
                    "t",
                    Box::new(|c: &mut TargetControl| {
                        c.failures += 1;
                        true
                    }),
                )
                .await
                .unwrap()
        })
    });
    let mut seen_before: Vec<u32> = Vec::new();
    for b in bumps {
        let (before, after) = b.await.unwrap();
        assert_eq!(after.failures, before.failures + 1);
        seen_before.push(before.failures);
    }
    seen_before.sort_unstable();
    assert_eq!(
        seen_before,
        (0..20).collect::<Vec<_>>(),
        "each saw the one before"
    );
    let (_, paused) = store
        .change_target_control(
            "u",
            Box::new(|c: &mut TargetControl| {
                c.paused = Some(Paused {
                    reason: "maintenance".into(),
                    at: 7,
                });
                true
            }),
        )
        .await
        .unwrap();
    let all = store.target_controls().await.unwrap();
    assert_eq!(all["t"].failures, 20);
    assert_eq!(all["u"], paused);
}

async fn deliveries_with_one_ordering_key_go_one_at_a_time_in_commit_order(store: Arc<dyn Store>) {
    let keyed = |id: &str, e: &Event, key: Option<&str>, block: bool| Delivery {
        order_key: key.map(String::from),
        order_block: block,
        ..delivery(id, e)
    };
    let ids = |d: &[Delivery]| {
        let mut ids: Vec<String> = d.iter().map(|d| d.id.clone()).collect();
        ids.sort();
        ids
    };
    let lease = Duration::from_secs(60);
    let finish = |d: Delivery, next: NextStep| {
        let store = store.clone();
        async move {
            let d = Delivery {
                attempts: d.attempts + 1,
                ..d
            };
            assert_eq!(
                store.finish_attempt(d, Attempt::default(), next).await,
                Ok(Recorded::Yes)
            );
        }
    };
    let nothing_due = |store: Arc<dyn Store>| async move {
        tokio::time::timeout(Duration::from_millis(300), store.claim("t", lease, 10))
            .await
            .is_err()
    };
    store.accept(event("e"), None).await.unwrap();
    let e = store.next_event().await;
    let d = vec![
        keyed("a1", &e, Some("A"), false),
        keyed("a2", &e, Some("A"), false),
        keyed("b1", &e, Some("B"), false),
        keyed("u1", &e, None, false),
    ];
    store
        .complete_event(e.clone(), processed(d, vec![]))
        .await
        .unwrap();
    let first = store.claim("t", lease, 10).await;
    assert_eq!(
        ids(&first),
        ["a1", "b1", "u1"],
        "one per key, and the unordered"
    );
    let mut first = first.into_iter();
    let a1 = first.next().unwrap();
    for other in first {
        finish(other, NextStep::Delivered).await;
    }
    // Retrying, a1 still holds a2 back.
    finish(
        a1,
        NextStep::Retry {
            after: Duration::ZERO,
        },
    )
    .await;
    let again = store.claim("t", lease, 10).await;
    assert_eq!(ids(&again), ["a1"]);
    finish(again.into_iter().next().unwrap(), NextStep::Delivered).await;
    let next = store.claim("t", lease, 10).await;
    assert_eq!(ids(&next), ["a2"]);
    finish(next.into_iter().next().unwrap(), NextStep::Dead).await;

    // on_dead = "block": a dead c1 holds c2 back until skipped.
    store.accept(event("f"), None).await.unwrap();
    let f = store.next_event().await;
    let d = vec![
        keyed("c1", &f, Some("C"), true),
        keyed("c2", &f, Some("C"), true),
    ];
    store.complete_event(f, processed(d, vec![])).await.unwrap();
    let c1 = store.claim("t", lease, 10).await;
    assert_eq!(ids(&c1), ["c1"]);
    finish(c1.into_iter().next().unwrap(), NextStep::Dead).await;
    assert!(
        nothing_due(store.clone()).await,
        "c2 waits behind the dead c1"
    );
    // Retention keeps a dead delivery that holds its key back.
    let later = now_ms() + 1;
    store.prune(later, later, 0).await.unwrap();
    assert!(nothing_due(store.clone()).await, "pruning c1 released c2");
    assert!(
        !store.skip_delivery("a2").await.unwrap(),
        "a2 holds nothing back"
    );
    assert!(store.skip_delivery("c1").await.unwrap());
    assert!(!store.skip_delivery("c1").await.unwrap(), "skipped once");
    assert_eq!(ids(&store.claim("t", lease, 10).await), ["c2"]);
}

/// Each test, once per store, with the store's pipeline capacity.
macro_rules! for_each_store {
    ($($name:ident($capacity:expr)),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name(super::sqlite($capacity)).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    if let Some(store) = super::postgres(stringify!($name), $capacity).await {
                        super::$name(store).await
                    }
                }
            )*
        }
    };
}

fn sqlite(capacity: usize) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(None, false, capacity).unwrap())
}

/// What both stores' retention must do once `held` old events, each with
/// a dead delivery, and the events `failed` and `orphan` (each with a
/// failed route, `orphan` received well before `failed`) are stored: read
/// every held event once; delete `failed` at the next pass once its route
/// is re-run to nothing, each held event with its delivery, and `orphan`
/// (whose failure `clear_failures` deletes behind the store's back) only
/// at the rescan from the first.
pub async fn held_events_go_with_their_last_delivery(
    store: &dyn Store,
    cursor: &prune_cursor::PruneCursor,
    held: usize,
    failed: Event,
    clear_failures: impl Future<Output = ()>,
) {
    let later = now_ms() + 1;
    // Dead work is young: everything is held, and read once.
    assert_eq!(
        store.prune(later, 0, later).await.unwrap(),
        Pruned::default()
    );
    assert_eq!(cursor.after().1, "failed", "the pass read every old event");
    // One failed route is re-run to no delivery; the other's row goes by
    // hand: nothing holds either event now.
    store
        .record_rerun(failed, "r", processed(vec![], vec![]))
        .await
        .unwrap();
    clear_failures.await;
    let one = Pruned {
        deliveries: 0,
        events: 1,
    };
    assert_eq!(store.prune(later, 0, later).await.unwrap(), one);
    assert!(store.event("failed").await.unwrap().is_none());
    // Dead work comes of age: each event goes with its delivery.
    assert_eq!(
        store.prune(later, later, later).await.unwrap(),
        Pruned {
            deliveries: held,
            events: held
        }
    );
    assert!(store.event("orphan").await.unwrap().is_some());
    // The other waits for the rescan from the first.
    cursor.rescan_due();
    assert_eq!(store.prune(later, later, later).await.unwrap(), one);
    assert!(store.event("orphan").await.unwrap().is_none());
}

/// Options for test stores. The poll is long, so a test that passes shows
/// that notices woke the waiters.
pub fn pg_options(capacity: usize) -> PgOptions {
    PgOptions {
        pool_size: 8,
        poll_interval: Duration::from_secs(30),
        capacity,
        pipeline_lease: PIPELINE_LEASE,
    }
}

/// A PostgreSQL store on a new database; `None` when there is no
/// PostgreSQL here (the test then passes as skipped, and says so).
pub async fn postgres(test: &str, capacity: usize) -> Option<Arc<dyn Store>> {
    let url = wasmhook_testpg::database(test)?;
    Some(Arc::new(
        PostgresStore::open(&url, pg_options(capacity))
            .await
            .unwrap(),
    ))
}

for_each_store!(
    events_list_newest_first_by_filter_and_page_without_gaps(10),
    an_event_accepted_running_is_not_run_again_by_the_pipeline(10),
    duplicates_are_recognised_and_events_flow_to_claims(10),
    a_full_pipeline_backlog_refuses_new_events(2),
    failures_wait_for_their_plugin_and_prune_keeps_what_is_young(10),
    prune_takes_only_finished_work_past_retention_and_then_an_id_is_new_again(10),
    the_same_signed_content_under_another_id_is_a_duplicate(10),
    what_each_route_did_is_kept_and_a_rerun_replaces_its_own(10),
    a_record_that_comes_after_its_lease_was_lost_changes_nothing(10),
    a_delivery_given_back_is_due_again_with_no_attempt_spent(10),
    a_targets_control_record_changes_atomically_and_is_read_back(10),
    deliveries_with_one_ordering_key_go_one_at_a_time_in_commit_order(10),
);
