//! A model-based property test of the [`Store`] contract, after Vector's
//! disk buffer tests: random sequences of accept, complete, claim, finish
//! (with stale leases too), lease expiry, retry, replay and prune, run
//! against each store and against a simple in-memory model of what must be
//! true. After every step the store's answers and counts must match the
//! model's.
//!
//! Time is kept out of the model. Target `t`'s leases are an hour (they
//! never run out during a case); target `u`'s are 1 ms, and the case waits
//! 3 ms after claiming, so they may have run out. "May": SQLite hands new
//! deliveries to a target's worker in memory with a longer lease (the
//! worker's and 20 s), so a claim of `u` may or may not get such a delivery
//! back; the model allows both, and checks everything else exactly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::conformance::{delivery, event, pg_options, processed};
use super::*;
use crate::event::{Event, now_ms};

const TARGETS: [&str; 2] = ["t", "u"];
/// Long enough for anything due to come back from a claim.
const DUE_WAIT: Duration = Duration::from_secs(5);
/// How long a claim with nothing due is given to (wrongly) return.
const IDLE_WAIT: Duration = Duration::from_millis(30);

#[derive(Debug, Clone)]
enum Op {
    /// Accept event `e{n}` for the pipeline.
    Accept(u8),
    /// Accept event `e{n}` with its routes run at ingest: one delivery per
    /// target in the mask (bit 0: `t`, bit 1: `u`).
    AcceptProcessed(u8, u8),
    /// Run the pipeline on the oldest waiting event: deliveries per mask.
    Complete(u8),
    /// Claim up to `max` of target `t` (long leases) or `u` (short ones).
    Claim { target: usize, max: u8 },
    /// Record an attempt on a copy claimed so far (the `n`-th, modulo how
    /// many; it may be stale): delivered, retry now, retry in an hour, or
    /// dead.
    Finish { copy: usize, outcome: u8 },
    /// Admin retry of a delivery made so far (the `n`-th, modulo how many).
    Retry(usize),
    /// Replay target `t`/`u`'s dead deliveries.
    Replay(usize),
    /// Retention with every cutoff now: all finished work goes.
    Prune,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6).prop_map(Op::Accept),
        (0u8..6, 0u8..4).prop_map(|(e, m)| Op::AcceptProcessed(e, m)),
        (0u8..4).prop_map(Op::Complete),
        (0usize..2, 1u8..4).prop_map(|(target, max)| Op::Claim { target, max }),
        (0usize..16, 0u8..4).prop_map(|(copy, outcome)| Op::Finish { copy, outcome }),
        (0usize..16).prop_map(Op::Retry),
        (0usize..2).prop_map(Op::Replay),
        Just(Op::Prune),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Due now: pending, or retrying now.
    Due,
    /// Retrying in an hour.
    Later,
    /// Leased under the claim with this token; `expirable`: a short lease,
    /// which may have run out.
    Leased {
        token: u64,
        expirable: bool,
    },
    Delivered,
    Dead,
}

#[derive(Debug, Clone)]
struct ModelDelivery {
    target: &'static str,
    event: String,
    state: State,
}

#[derive(Default)]
struct Model {
    /// Event id → processed?
    events: HashMap<String, bool>,
    /// Accepted for the pipeline, not yet completed, oldest first.
    waiting: Vec<String>,
    deliveries: BTreeMap<String, ModelDelivery>,
    /// Ids of every delivery ever made, for `Retry`.
    made: Vec<String>,
    /// Every copy claims returned, stale or not.
    copies: Vec<Delivery>,
}

impl Model {
    fn count(&self, target: &str, f: impl Fn(&State) -> bool) -> usize {
        self.deliveries
            .values()
            .filter(|d| d.target == target && f(&d.state))
            .count()
    }

    fn make(&mut self, e: &Event, mask: u8) -> Vec<Delivery> {
        let mut out = Vec::new();
        for (bit, target) in TARGETS.iter().enumerate() {
            if mask & (1 << bit) == 0 {
                continue;
            }
            let id = format!("{}-{target}", e.id);
            let mut d = delivery(&id, e);
            d.target = target.to_string();
            out.push(d);
            // A delivery id that exists already is not made again (a
            // pruned one is, with its event).
            if !self.deliveries.contains_key(&id) {
                self.deliveries.insert(
                    id.clone(),
                    ModelDelivery {
                        target,
                        event: e.id.clone(),
                        state: State::Due,
                    },
                );
                self.made.push(id);
            }
        }
        out
    }
}

async fn check_counts(store: &dyn Store, model: &Model, step: usize) {
    let stats = store.stats().await.unwrap();
    let count = |f: fn(&State) -> bool| model.deliveries.values().filter(|d| f(&d.state)).count();
    // SQLite may hold a due delivery leased for a worker that waits in
    // memory: due and leased are one count here.
    let live = count(|s| matches!(s, State::Due | State::Later | State::Leased { .. }));
    assert_eq!(
        stats.pending_deliveries + stats.in_flight,
        live,
        "step {step}: live deliveries"
    );
    assert_eq!(
        stats.dead,
        count(|s| *s == State::Dead),
        "step {step}: dead"
    );
    assert_eq!(
        stats.awaiting_pipeline,
        model.waiting.len(),
        "step {step}: events waiting for the pipeline"
    );
}

/// `hands_over`: the store may hand a new delivery to its target's worker
/// in memory (SQLite), where it counts as in flight before any claim; an
/// admin retry of it is then refused.
async fn run(store: Arc<dyn Store>, ops: Vec<Op>, hands_over: bool) {
    let mut m = Model::default();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Accept(n) | Op::AcceptProcessed(n, _) => {
                let e = event(&format!("e{n}"));
                let known = m.events.contains_key(&e.id);
                let got = match op {
                    Op::AcceptProcessed(_, mask) => {
                        let mut shadow = Model::default();
                        let ds = shadow.make(&e, mask);
                        let got = store
                            .accept_processed(e.clone(), None, processed(ds, vec![]))
                            .await
                            .unwrap();
                        if !known {
                            m.events.insert(e.id.clone(), true);
                            m.make(&e, mask);
                        }
                        got
                    }
                    _ => {
                        let got = store.accept(e.clone(), None).await.unwrap();
                        if !known {
                            m.events.insert(e.id.clone(), false);
                            m.waiting.push(e.id.clone());
                        }
                        got
                    }
                };
                let want = if known {
                    Accepted::Duplicate(e.id.clone())
                } else {
                    Accepted::New
                };
                assert_eq!(got, want, "step {step}: {op:?}");
            }
            Op::Complete(mask) => {
                if m.waiting.is_empty() {
                    continue;
                }
                let e = tokio::time::timeout(DUE_WAIT, store.next_event())
                    .await
                    .unwrap_or_else(|_| panic!("step {step}: an event waits, but none came"));
                let at = m
                    .waiting
                    .iter()
                    .position(|id| *id == e.id)
                    .unwrap_or_else(|| panic!("step {step}: {} was not waiting", e.id));
                m.waiting.remove(at);
                m.events.insert(e.id.clone(), true);
                let ds = m.make(&e, mask);
                store
                    .complete_event(e, processed(ds, vec![]))
                    .await
                    .unwrap();
            }
            Op::Claim { target, max } => {
                let name = TARGETS[target];
                let short = name == "u";
                let lease = if short {
                    Duration::from_millis(1)
                } else {
                    Duration::from_secs(3600)
                };
                let max = max as usize;
                let due = m.count(name, |s| *s == State::Due);
                let expired = m.count(name, |s| {
                    matches!(
                        s,
                        State::Leased {
                            expirable: true,
                            ..
                        }
                    )
                });
                let (lo, hi) = (due.min(max), (due + expired).min(max));
                let wait = if lo > 0 { DUE_WAIT } else { IDLE_WAIT };
                let got = tokio::time::timeout(wait, store.claim(name, lease, max))
                    .await
                    .unwrap_or_default();
                assert!(
                    (lo..=hi).contains(&got.len()),
                    "step {step}: {op:?} got {:?}, expected {lo} to {hi}",
                    got.iter().map(|d| &d.id).collect::<Vec<_>>()
                );
                for d in got {
                    let md = m
                        .deliveries
                        .get_mut(&d.id)
                        .unwrap_or_else(|| panic!("step {step}: claimed unknown {}", d.id));
                    assert!(
                        matches!(
                            md.state,
                            State::Due
                                | State::Leased {
                                    expirable: true,
                                    ..
                                }
                        ),
                        "step {step}: {} was {:?}, not due",
                        d.id,
                        md.state
                    );
                    assert_eq!(d.target, name);
                    md.state = State::Leased {
                        token: d.lease,
                        expirable: short,
                    };
                    m.copies.push(d);
                }
                if short {
                    // Leases from the table run out before the next step.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
            Op::Finish { copy, outcome } => {
                if m.copies.is_empty() {
                    continue;
                }
                let d = m.copies[copy % m.copies.len()].clone();
                let next = match outcome {
                    0 => NextStep::Delivered,
                    1 => NextStep::Retry {
                        after: Duration::ZERO,
                    },
                    2 => NextStep::Retry {
                        after: Duration::from_secs(3600),
                    },
                    _ => NextStep::Dead,
                };
                let got = store
                    .finish_attempt(
                        Delivery {
                            attempts: d.attempts + 1,
                            ..d.clone()
                        },
                        Attempt::default(),
                        next,
                    )
                    .await
                    .unwrap();
                let md = m.deliveries.get_mut(&d.id);
                // Recorded only under the latest claim, while it is in
                // flight (its lease running or run out, not claimed since).
                let current = md.as_ref().is_some_and(
                    |md| matches!(md.state, State::Leased { token, .. } if token == d.lease),
                );
                let want = if current {
                    Recorded::Yes
                } else {
                    Recorded::LeaseLost
                };
                assert_eq!(got, want, "step {step}: {op:?} on {}", d.id);
                if let (Some(md), true) = (md, current) {
                    md.state = match next {
                        NextStep::Delivered => State::Delivered,
                        NextStep::Retry { after } if after.is_zero() => State::Due,
                        NextStep::Retry { .. } => State::Later,
                        NextStep::Dead => State::Dead,
                    };
                }
            }
            Op::Retry(n) => {
                if m.made.is_empty() {
                    continue;
                }
                let id = m.made[n % m.made.len()].clone();
                let got = store.retry_delivery(&id).await.unwrap();
                let md = m.deliveries.get_mut(&id);
                // Not while it is in flight (even with its lease run out).
                let want = md
                    .as_ref()
                    .is_some_and(|md| !matches!(md.state, State::Leased { .. }));
                let held = hands_over && md.as_ref().is_some_and(|md| md.state == State::Due);
                // Held for its worker (SQLite), it is in flight: refused.
                if !held || got {
                    assert_eq!(got, want, "step {step}: {op:?} on {id}");
                }
                if let (Some(md), true) = (md, got) {
                    md.state = State::Due;
                }
            }
            Op::Replay(target) => {
                let name = TARGETS[target];
                let n = store.replay_target(name, None).await.unwrap();
                let mut want = 0;
                for md in m.deliveries.values_mut() {
                    if md.target == name && md.state == State::Dead {
                        md.state = State::Due;
                        want += 1;
                    }
                }
                assert_eq!(n, want, "step {step}: {op:?}");
            }
            Op::Prune => {
                let now = now_ms() + 1;
                let pruned = store.prune(now, now, now).await.unwrap();
                let before = m.deliveries.len();
                m.deliveries
                    .retain(|_, d| !matches!(d.state, State::Delivered | State::Dead));
                let gone_d = before - m.deliveries.len();
                let left: Vec<String> = m.deliveries.values().map(|d| d.event.clone()).collect();
                let before = m.events.len();
                m.events
                    .retain(|id, processed| !*processed || left.contains(id));
                let gone_e = before - m.events.len();
                m.made.retain(|id| m.deliveries.contains_key(id));
                assert_eq!(
                    pruned,
                    Pruned {
                        deliveries: gone_d,
                        events: gone_e
                    },
                    "step {step}: {op:?}"
                );
            }
        }
        check_counts(&*store, &m, step).await;
    }
}

/// Each case on a fresh store, in a runtime of its own.
fn each_case(ops: Vec<Op>, open: impl FnOnce() -> Option<Arc<dyn Store>> + Send + 'static) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        if let Some(store) = open() {
            run(store, ops, true).await;
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn sqlite_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        each_case(ops, || Some(Arc::new(SqliteStore::open(None, false, 1000).unwrap())));
    }

    #[test]
    fn postgres_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let Some(url) = wasmhook_testpg::database("postgres_matches_the_model") else {
            return Ok(());
        };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(rt.block_on(PostgresStore::open(&url, pg_options(1000))).unwrap());
        rt.block_on(run(store, ops, false));
    }
}
