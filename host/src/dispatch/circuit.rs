//! Whether attempts to a target may start at all: its pause (an operator's,
//! or a `410 Gone`'s) and its circuit breaker.
//!
//! The breaker counts failed attempts in a row: timeouts, connection
//! errors, 408 and 5xx. Any other answer shows the target is up and resets
//! the count. After `failures` in a row the circuit opens: no attempt
//! starts, and deliveries wait unclaimed, spending no attempt. After
//! `cool_down` one probe goes (the circuit is half-open): one delivery,
//! attempted as usual. If it gets through, the circuit closes and the
//! backlog drains (within the rate limit); if not, the circuit stays open
//! and the wait before the next probe doubles, up to `max_cool_down`.
//! While failures mount, a batch holds no more attempts than the failures
//! left before the circuit opens; attempts already under way when it opens
//! finish, and deliveries claimed and not yet started are given back.
//!
//! Each target's record lives in the store, so every node sharing it (on
//! PostgreSQL) sees one circuit and one pause, and a pause outlives a
//! restart. Changes are atomic in the store: of several nodes, one takes
//! the probe. Each node keeps the last record it saw, read again every
//! [`REFRESH`]: a change made on another node takes effect here within
//! that. The hot path reads only this copy, and writes only when a count
//! changes: a healthy target's attempts cost no store access.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Circuit;
use crate::event::now_ms;
use crate::metrics::Metrics;
use crate::store::{CircuitState, Paused, Store, StoreError, TargetControl};

/// How often each node reads every target's record again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// How long to wait before asking again when the store fails.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// What an attempt's answer says about its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// It answered (2xx, 4xx other than 408 and 410, 429): it is up.
    Up,
    /// A timeout, a connection error, 408 or 5xx.
    Down,
    /// `410 Gone`: the endpoint was removed on purpose; pause the target.
    Gone(String),
}

/// May attempts to a target start now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Yes: at most this many in the next batch (the failures left before
    /// the circuit opens, when some have been counted).
    Go { most: usize },
    /// The circuit is open and its probe is due: take it, then attempt one.
    Probe,
    /// No: until this time (ms since the epoch), or a change.
    Wait(Option<u64>),
}

pub struct Circuits {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    // A std mutex: held to read or swap a record, never across an await.
    seen: Mutex<Seen>,
    changed: Notify,
}

/// The records last seen, and how many changes made here since: a
/// refresh that read the store before one of them must not undo it.
#[derive(Default)]
struct Seen {
    records: HashMap<String, TargetControl>,
    kept: u64,
}

impl Circuits {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Circuits {
            store,
            metrics,
            seen: Mutex::default(),
            changed: Notify::new(),
        }
    }

    /// The last record seen for `target`.
    pub fn seen(&self, target: &str) -> TargetControl {
        self.lock().records.get(target).cloned().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().expect("circuit records lock poisoned")
    }

    /// Wake the waiting workers to look again (the config changed).
    pub fn nudge(&self) {
        self.changed.notify_waiters();
    }

    /// Resolves at the next change of any record. Create it (and `enable`
    /// it) before reading the gate, so that no change falls in between.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Keep `record` as `target`'s latest; wake the workers if it differs.
    fn keep(&self, target: &str, record: TargetControl) {
        let mut seen = self.lock();
        seen.kept += 1;
        if seen.records.get(target) != Some(&record) {
            seen.records.insert(target.to_string(), record);
            drop(seen);
            self.changed.notify_waiters();
        }
    }

    /// Read every record from the store (at start, and every [`REFRESH`]).
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let kept = self.lock().kept;
        let records = self.store.target_controls().await?;
        let mut seen = self.lock();
        if seen.kept != kept {
            // A change made here came in between: this read may predate
            // it. The next refresh reads again.
            return Ok(());
        }
        if seen.records != records {
            seen.records = records;
            drop(seen);
            self.changed.notify_waiters();
        }
        Ok(())
    }

    /// Refresh every [`REFRESH`] until cancelled.
    pub async fn keep_refreshed(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(REFRESH) => {}
                () = cancel.cancelled() => return,
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!("cannot read the targets' circuits and pauses: {e}");
            }
        }
    }

    /// May attempts to `target` start now (`now`: ms since the epoch)?
    pub fn gate(&self, target: &str, circuit: Option<Circuit>, now: u64) -> Gate {
        let seen = self.lock();
        let record = seen.records.get(target);
        let Some(record) = record else {
            return Gate::Go { most: usize::MAX };
        };
        if record.paused.is_some() {
            return Gate::Wait(None);
        }
        let Some(circuit) = circuit else {
            return Gate::Go { most: usize::MAX };
        };
        match record.circuit {
            CircuitState::Closed if record.failures == 0 => Gate::Go { most: usize::MAX },
            CircuitState::Closed => Gate::Go {
                most: circuit.failures.saturating_sub(record.failures).max(1) as usize,
            },
            CircuitState::Open | CircuitState::HalfOpen => match record.probe_at {
                Some(at) if at > now => Gate::Wait(Some(at)),
                _ => Gate::Probe,
            },
        }
    }

    /// Whether an attempt claimed for `target` may start now: not if the
    /// target was paused or its circuit opened since the claim (a probe
    /// may, while its circuit is half-open).
    pub fn may_start(&self, target: &str, circuit: Option<Circuit>, probe: bool) -> bool {
        let seen = self.lock();
        let Some(record) = seen.records.get(target) else {
            return true;
        };
        if record.paused.is_some() {
            return false;
        }
        circuit.is_none()
            || match record.circuit {
                CircuitState::Closed => true,
                CircuitState::HalfOpen => probe,
                CircuitState::Open => false,
            }
    }

    /// Take `target`'s due probe, for `lease` (after which another may go,
    /// should this one never report). `false` if another node took it, or
    /// the circuit changed meanwhile.
    pub async fn take_probe(&self, target: &str, lease: Duration) -> bool {
        let took = Arc::new(AtomicBool::new(false));
        let flag = took.clone();
        let now = now_ms();
        let change = Box::new(move |c: &mut TargetControl| {
            let due = c.paused.is_none()
                && c.circuit != CircuitState::Closed
                && c.probe_at.is_none_or(|at| at <= now);
            if due {
                c.circuit = CircuitState::HalfOpen;
                c.probe_at = Some(now + lease.as_millis() as u64);
                flag.store(true, Ordering::Release);
            }
            due
        });
        match self.apply(target, change).await {
            Ok(_) => took.load(Ordering::Acquire),
            Err(e) => {
                tracing::warn!(target = %target, "cannot take the circuit's probe: {e}");
                tokio::time::sleep(STORE_RETRY).await;
                false
            }
        }
    }

    /// Count an attempt's answer. `probe`: the attempt was the half-open
    /// circuit's probe.
    pub async fn record(
        &self,
        target: &str,
        circuit: Option<Circuit>,
        health: Health,
        probe: bool,
    ) {
        let now = now_ms();
        let change: crate::store::ControlChange = match health {
            Health::Up => {
                let quiet = self
                    .lock()
                    .records
                    .get(target)
                    .is_none_or(|r| r.circuit == CircuitState::Closed && r.failures == 0);
                if quiet {
                    return; // The hot path: nothing to write.
                }
                Box::new(|c: &mut TargetControl| {
                    let was = std::mem::take(c);
                    c.paused = was.paused.clone();
                    was != *c
                })
            }
            Health::Down => {
                let Some(circuit) = circuit else { return };
                Box::new(move |c: &mut TargetControl| {
                    c.failures = c.failures.saturating_add(1);
                    match c.circuit {
                        CircuitState::Closed if c.failures >= circuit.failures => {
                            c.circuit = CircuitState::Open;
                            c.opened_at = Some(now);
                            c.cool_down_ms = circuit.cool_down.as_millis() as u64;
                            c.probe_at = Some(now + c.cool_down_ms);
                        }
                        CircuitState::HalfOpen if probe => {
                            let max = circuit.max_cool_down.as_millis() as u64;
                            let base = circuit.cool_down.as_millis() as u64;
                            c.circuit = CircuitState::Open;
                            c.cool_down_ms = c.cool_down_ms.max(base).saturating_mul(2).min(max);
                            c.probe_at = Some(now + c.cool_down_ms);
                        }
                        _ => {}
                    }
                    true
                })
            }
            Health::Gone(why) => {
                let reason = format!("the target answered 410 Gone: {why}");
                Box::new(move |c: &mut TargetControl| {
                    if c.paused.is_some() {
                        return false;
                    }
                    c.paused = Some(Paused { reason, at: now });
                    true
                })
            }
        };
        if let Err(e) = self.apply(target, change).await {
            tracing::warn!(target = %target, "cannot record the attempt in the target's circuit: {e}");
        }
    }

    /// Change `target`'s record in the store; report and keep the result.
    async fn apply(
        &self,
        target: &str,
        change: crate::store::ControlChange,
    ) -> Result<TargetControl, StoreError> {
        let (before, after) = self.store.change_target_control(target, change).await?;
        self.metrics.control_changed(target, &before, &after);
        self.keep(target, after.clone());
        Ok(after)
    }

    /// Stop every attempt to `target` until it is resumed, on every node.
    pub async fn pause(&self, target: &str, reason: String) -> Result<TargetControl, StoreError> {
        let now = now_ms();
        self.apply(
            target,
            Box::new(move |c: &mut TargetControl| {
                if c.paused.as_ref().is_some_and(|p| p.reason == reason) {
                    return false;
                }
                c.paused = Some(Paused { reason, at: now });
                true
            }),
        )
        .await
    }

    /// Resume `target`: lift its pause and close its circuit, so that its
    /// backlog goes at once (should the target still fail, the circuit
    /// opens again after `failures`).
    pub async fn resume(&self, target: &str) -> Result<TargetControl, StoreError> {
        self.apply(
            target,
            Box::new(|c: &mut TargetControl| std::mem::take(c) != TargetControl::default()),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    const BREAKER: Circuit = Circuit {
        failures: 3,
        cool_down: Duration::from_secs(10),
        max_cool_down: Duration::from_secs(25),
    };

    fn circuits() -> Circuits {
        let store = Arc::new(SqliteStore::open(None, false, 100).unwrap());
        Circuits::new(store, Arc::new(Metrics::default()))
    }

    /// Make the probe due now, as if the cool-down had passed.
    async fn cool_down_passes(c: &Circuits) {
        c.store
            .change_target_control(
                "t",
                Box::new(|r: &mut TargetControl| {
                    r.probe_at = Some(0);
                    true
                }),
            )
            .await
            .unwrap();
        c.refresh().await.unwrap();
    }

    #[tokio::test]
    async fn failures_in_a_row_open_the_circuit_and_an_answer_resets_the_count() {
        let c = circuits();
        let go = |c: &Circuits| c.gate("t", Some(BREAKER), now_ms());
        assert_eq!(go(&c), Gate::Go { most: usize::MAX });
        c.record("t", Some(BREAKER), Health::Down, false).await;
        assert_eq!(
            go(&c),
            Gate::Go { most: 2 },
            "a batch holds only the failures left"
        );
        c.record("t", Some(BREAKER), Health::Up, false).await;
        assert_eq!(c.seen("t").failures, 0);
        for _ in 0..3 {
            c.record("t", Some(BREAKER), Health::Down, false).await;
        }
        let open = c.seen("t");
        assert_eq!(open.circuit, CircuitState::Open);
        assert_eq!(open.cool_down_ms, 10_000);
        assert!(matches!(go(&c), Gate::Wait(Some(at)) if at == open.probe_at.unwrap()));
        assert!(!c.may_start("t", Some(BREAKER), false));
        assert!(c.may_start("t", None, false), "circuit = false ignores it");
        // The store holds it: another node (a fresh copy) sees it.
        let other = Circuits::new(c.store.clone(), Arc::new(Metrics::default()));
        other.refresh().await.unwrap();
        assert_eq!(other.seen("t"), open);
    }

    #[tokio::test]
    async fn one_probe_at_a_time_and_a_failed_one_doubles_the_cool_down_up_to_the_cap() {
        let c = circuits();
        for _ in 0..3 {
            c.record("t", Some(BREAKER), Health::Down, false).await;
        }
        assert!(
            !c.take_probe("t", Duration::from_secs(5)).await,
            "not before the cool-down"
        );
        cool_down_passes(&c).await;
        assert_eq!(c.gate("t", Some(BREAKER), now_ms()), Gate::Probe);
        assert!(c.take_probe("t", Duration::from_secs(5)).await);
        assert!(
            !c.take_probe("t", Duration::from_secs(5)).await,
            "one probe at a time"
        );
        assert_eq!(c.seen("t").circuit, CircuitState::HalfOpen);
        assert!(c.may_start("t", Some(BREAKER), true));
        assert!(!c.may_start("t", Some(BREAKER), false));
        // A late failure of an attempt started before is not the probe's.
        c.record("t", Some(BREAKER), Health::Down, false).await;
        assert_eq!(c.seen("t").circuit, CircuitState::HalfOpen);

        let mut cool_downs = Vec::new();
        for _ in 0..3 {
            c.record("t", Some(BREAKER), Health::Down, true).await;
            cool_downs.push(c.seen("t").cool_down_ms);
            cool_down_passes(&c).await;
            assert!(c.take_probe("t", Duration::from_secs(5)).await);
        }
        assert_eq!(cool_downs, [20_000, 25_000, 25_000]);
        c.record("t", Some(BREAKER), Health::Up, true).await;
        assert_eq!(
            c.seen("t"),
            TargetControl::default(),
            "closed and forgotten"
        );
    }

    #[tokio::test]
    async fn a_pause_holds_every_attempt_until_resumed_and_a_410_pauses_with_its_reason() {
        let c = circuits();
        c.pause("t", "paused by an operator".into()).await.unwrap();
        assert_eq!(c.gate("t", Some(BREAKER), now_ms()), Gate::Wait(None));
        assert_eq!(
            c.gate("t", None, now_ms()),
            Gate::Wait(None),
            "with no breaker too"
        );
        assert!(!c.may_start("t", None, false));
        c.resume("t").await.unwrap();
        assert_eq!(c.gate("t", None, now_ms()), Gate::Go { most: usize::MAX });

        c.record("t", None, Health::Gone("410 Gone".into()), false)
            .await;
        let paused = c.seen("t").paused.expect("paused");
        assert!(paused.reason.contains("410"), "{}", paused.reason);
        // Resuming also closes an open circuit: the backlog goes at once.
        for _ in 0..3 {
            c.record("t", Some(BREAKER), Health::Down, false).await;
        }
        c.resume("t").await.unwrap();
        assert_eq!(c.seen("t"), TargetControl::default());
    }
}
