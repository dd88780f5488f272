//! One worker per target: claim due deliveries, attempt them within the
//! target's `max_in_flight`, record the outcome. The [`Dispatcher`] starts and
//! stops workers as targets come and go with config reloads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::circuit::{Circuits, Gate, Health};
use super::retry::RetryPolicy;
use super::sender::{Reply, Sender, Verdict};
use super::starts::Starts;
use crate::config::LiveConfig;
use crate::event::now_ms;
use crate::metrics::{Attempted, Metrics, delivery_line_span};
use crate::store::{Attempt, Delivery, NextStep, Recorded, Store, until_recorded};
use crate::tail::{Tail, Tailed};

/// A lease outlasts the attempt's timeout by this: time to record the
/// attempt. It is also how long after a node's death (on top of the
/// timeout) another node takes its deliveries over.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How far ahead a rate-limited worker claims: deliveries that may start
/// within this, all at once, each then waiting for its start.
const RATE_HORIZON: Duration = Duration::from_millis(100);

/// Sleep until `at`, not at all when it has come: the timer wheel would
/// round even a past instant up to its next millisecond tick.
async fn wait_until(at: tokio::time::Instant) {
    if at > tokio::time::Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

/// Owns the per-target workers.
pub struct Dispatcher {
    live: LiveConfig,
    store: Arc<dyn Store>,
    sender: Sender,
    metrics: Arc<Metrics>,
    tail: Arc<Tail>,
    starts: Arc<Starts>,
    circuits: Arc<Circuits>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    // A std mutex: held only while starting or stopping workers, never across an await.
    workers: Mutex<HashMap<String, Worker>>,
}

struct Worker {
    cancel: CancellationToken,
    max_in_flight: usize,
}

impl Dispatcher {
    pub fn new(
        live: LiveConfig,
        store: Arc<dyn Store>,
        sender: Sender,
        metrics: Arc<Metrics>,
        tail: Arc<Tail>,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        Dispatcher {
            live,
            starts: Arc::new(Starts::new(store.shared_starts())),
            circuits: Arc::new(Circuits::new(store.clone(), metrics.clone())),
            store,
            sender,
            metrics,
            tail,
            cancel,
            tracker,
            workers: Mutex::default(),
        }
    }

    /// Targets' pauses and circuits, as the workers see them.
    pub fn circuits(&self) -> Arc<Circuits> {
        self.circuits.clone()
    }

    /// Make the running workers match the live config's targets: start new
    /// ones, stop removed ones, restart those whose `max_in_flight` changed.
    /// URL, secrets, timeout and retry policy are read per attempt, so they
    /// change without a restart. Deliveries queued for a removed target stay
    /// queued, and resume if it comes back.
    pub fn reconcile(&self) {
        let config = self.live.load_full();
        // A worker waiting on a circuit looks again: `circuit` may have
        // changed (or been turned off).
        self.circuits.nudge();
        let mut workers = self.workers.lock().expect("workers lock poisoned");
        workers.retain(|name, w| {
            let keep = config
                .target(name)
                .is_some_and(|t| t.max_in_flight == w.max_in_flight);
            if !keep {
                w.cancel.cancel();
                tracing::info!(target = %name, "target worker stopped");
            }
            keep
        });
        for target in &config.targets {
            if workers.contains_key(&target.name) {
                continue;
            }
            let cancel = self.cancel.child_token();
            let worker = TargetWorker {
                name: target.name.clone(),
                live: self.live.clone(),
                store: self.store.clone(),
                sender: self.sender.clone(),
                metrics: self.metrics.clone(),
                tail: self.tail.clone(),
                starts: self.starts.clone(),
                circuits: self.circuits.clone(),
                slots: Arc::new(Semaphore::new(target.max_in_flight)),
            };
            self.tracker
                .spawn(worker.run(cancel.clone(), self.tracker.clone()));
            workers.insert(
                target.name.clone(),
                Worker {
                    cancel,
                    max_in_flight: target.max_in_flight,
                },
            );
        }
    }
}

struct TargetWorker {
    name: String,
    live: LiveConfig,
    store: Arc<dyn Store>,
    sender: Sender,
    metrics: Arc<Metrics>,
    tail: Arc<Tail>,
    starts: Arc<Starts>,
    circuits: Arc<Circuits>,
    slots: Arc<Semaphore>,
}

impl TargetWorker {
    async fn run(self, cancel: CancellationToken, tracker: TaskTracker) {
        let this = Arc::new(self);
        loop {
            // Wait for one free slot, then take every other free one, and
            // claim that many deliveries in one go (one store transaction).
            let first = tokio::select! {
                slot = this.slots.clone().acquire_owned() => slot.expect("semaphore is never closed"),
                () = cancel.cancelled() => return,
            };
            // Paused, or the circuit open: wait for the probe's time or a
            // change, holding no slot.
            let changed = this.circuits.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let circuit = this.circuit();
            let (most, probe) = match this.circuits.gate(&this.name, circuit, now_ms()) {
                Gate::Go { most } => (most, false),
                Gate::Probe => {
                    if !this.circuits.take_probe(&this.name, this.lease()).await {
                        continue;
                    }
                    (1, true)
                }
                Gate::Wait(until) => {
                    drop(first);
                    if let Err(e) = this.store.hold(&this.name).await {
                        tracing::warn!(
                            "cannot give back the deliveries waiting for this target: {e}"
                        );
                    }
                    let due = until.map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
                    tokio::select! {
                        () = changed => {}
                        () = async { match due {
                            Some(due) => tokio::time::sleep(due).await,
                            None => std::future::pending().await,
                        } } => {}
                        () = cancel.cancelled() => return,
                    }
                    continue;
                }
            };
            let rate = this.rate_limit();
            // With a rate, only what may start within a short horizon (or
            // a burst): the rest would only wait, holding their leases.
            let most = rate.map_or(most, |r| {
                (r.burst as usize)
                    .max((RATE_HORIZON.as_nanos() / r.every.as_nanos().max(1)) as usize)
                    .min(most)
            });
            let mut slots = vec![first];
            while slots.len() < most {
                match this.slots.clone().try_acquire_owned() {
                    Ok(slot) => slots.push(slot),
                    Err(_) => break,
                }
            }
            let (batch, starts) = if rate.is_some_and(|r| r.every <= RATE_HORIZON) {
                // A fast rate: wait out a pause, claim, then reserve as
                // many starts as deliveries came (none reserved for
                // nothing), each within about the horizon.
                let ready = this.starts.ready_at(&this.name, rate).await;
                let Some(batch) = this.claim_at(ready, slots.len(), &cancel).await else {
                    return;
                };
                let starts = this.starts.reserve(&this.name, batch.len(), rate).await;
                (batch, starts)
            } else {
                // A slow rate, or none (then only a pause can hold the
                // target): reserve first and wait for the first start, so
                // that deliveries waiting for their turn stay unclaimed, not
                // leased; give back what finds no delivery.
                let starts = this.starts.reserve(&this.name, slots.len(), rate).await;
                let Some(batch) = this.claim_at(starts.at[0], slots.len(), &cancel).await else {
                    return;
                };
                if batch.len() < slots.len() {
                    this.starts
                        .refund(&this.name, &starts, slots.len() - batch.len(), rate)
                        .await;
                }
                (batch, starts)
            };
            // More slots than deliveries: the spare ones are dropped (freed) here.
            for ((delivery, slot), start) in batch.into_iter().zip(slots).zip(starts.at) {
                let span = crate::telemetry::event_span!(
                    "delivery",
                    event_id = %delivery.event_id,
                    delivery_id = %delivery.id,
                    target = %this.name,
                    attempt = delivery.attempts + 1,
                    http.response.status_code = tracing::field::Empty,
                );
                if crate::telemetry::enabled() {
                    crate::telemetry::continue_from(&span, &delivery.event.headers);
                }
                let worker = this.clone();
                tracker.spawn(
                    async move {
                        wait_until(start).await;
                        worker.attempt(delivery, probe).await;
                        drop(slot);
                    }
                    .instrument(span),
                );
            }
        }
    }

    /// Wait until `at`, then claim up to `max` deliveries; `None` once
    /// cancelled.
    async fn claim_at(
        &self,
        at: tokio::time::Instant,
        max: usize,
        cancel: &CancellationToken,
    ) -> Option<Vec<Delivery>> {
        tokio::select! {
            () = wait_until(at) => {}
            () = cancel.cancelled() => return None,
        }
        tokio::select! {
            d = self.store.claim(&self.name, self.lease(), max) => Some(d),
            () = cancel.cancelled() => None,
        }
    }

    fn circuit(&self) -> Option<crate::config::Circuit> {
        self.live.load().target(&self.name).and_then(|t| t.circuit)
    }

    fn rate_limit(&self) -> Option<crate::config::RateLimit> {
        self.live
            .load()
            .target(&self.name)
            .and_then(|t| t.rate_limit)
    }

    /// How long a claimed delivery is ours: the attempt's timeout and a margin
    /// for recording it. If the process dies mid-attempt, the delivery is due
    /// again after this (at once, for SQLite, when the router restarts; for
    /// PostgreSQL, another node takes it when it runs out).
    fn lease(&self) -> Duration {
        let timeout = self
            .live
            .load()
            .target(&self.name)
            .map(|t| t.timeout)
            .unwrap_or_default();
        timeout + LEASE_MARGIN
    }

    /// Make one attempt and record it; or, if the target was paused or
    /// its circuit opened since the claim, give the delivery back.
    async fn attempt(&self, delivery: Delivery, probe: bool) {
        let circuit = self.circuit();
        if !self.circuits.may_start(&self.name, circuit, probe) {
            let id = delivery.id.clone();
            let released = until_recorded("giving back delivery", &id, None, || {
                self.store.release(delivery.clone())
            })
            .await;
            tracing::debug!(delivery_id = %id, ?released, "not attempted: the target is paused or its circuit is open");
            return;
        }
        let (delivery, attempt, next, health) = self.try_once(delivery).await;
        self.record(delivery, attempt, next).await;
        // After the attempt's own record: waiting on the shared circuit
        // row must not eat into the delivery's lease.
        if let Some(health) = health {
            self.circuits
                .record(&self.name, circuit, health, probe)
                .await;
        }
    }

    /// Record an attempt, retrying with backoff while the store fails: the
    /// delivery stays leased meanwhile, so it is not lost. If the outage
    /// outlasts the lease (or the process stops first), the delivery is
    /// claimed and attempted again (at least once), and this late record is
    /// then refused by the store rather than overwriting the newer claim.
    async fn record(&self, delivery: Delivery, attempt: Attempt, next: NextStep) {
        let id = delivery.id.clone();
        let recorded = until_recorded("the attempt of delivery", &id, None, || {
            self.store
                .finish_attempt(delivery.clone(), attempt.clone(), next)
        })
        .await;
        if recorded == Some(Recorded::LeaseLost) {
            tracing::warn!(delivery_id = %id, target = %self.name,
                "the attempt's lease was lost (it ran out, and the delivery was claimed again): not recorded");
        }
    }

    async fn try_once(
        &self,
        mut delivery: Delivery,
    ) -> (Delivery, Attempt, NextStep, Option<Health>) {
        let config = self.live.load_full();
        let Some(target) = config.target(&self.name) else {
            // Removed from the config after this delivery was claimed: put it
            // back, without using up an attempt.
            let attempt = Attempt {
                started_at: now_ms(),
                error: Some("the target is no longer in the config".into()),
                ..Attempt::default()
            };
            let next = NextStep::Retry {
                after: Duration::from_secs(1),
            };
            return (delivery, attempt, next, None);
        };
        let policy = RetryPolicy {
            schedule: &target.retry_schedule,
            max_attempts: target.max_attempts,
        };
        let started_at = now_ms();
        let started = tokio::time::Instant::now();
        let (verdict, reply) = self.sender.attempt(target, &delivery).await;
        delivery.attempts += 1;
        let took = started.elapsed();
        let elapsed_ms = took.as_millis() as u64;
        if let (
            Some(429),
            Verdict::Retryable {
                retry_after: Some(wait),
                ..
            },
        ) = (reply.status, &verdict)
        {
            // The target asks to be left alone: all of it, not only this
            // delivery.
            let paused = self
                .starts
                .pause(&self.name, *wait, target.rate_limit)
                .await;
            let span = || {
                delivery_line_span(
                    &delivery.event_id,
                    &delivery.id,
                    &self.name,
                    delivery.attempts,
                )
            };
            crate::telemetry::in_span(span, || {
                tracing::warn!(
                    pause_ms = paused.as_millis() as u64,
                    "the target answered 429 with Retry-After: no attempt to it starts until then"
                )
            });
        }
        // For the exported span only: the log lines say the status, and
        // a recorded field costs the log layer a reformat of the span's.
        if let Some(code) = reply.status
            && crate::telemetry::enabled()
        {
            tracing::Span::current().record("http.response.status_code", code);
        }
        let health = health(&verdict, &reply);
        let gone = matches!(health, Health::Gone(_));
        let refused = matches!(verdict, Verdict::Permanent { .. }) && !gone;
        let (next, error) = match verdict {
            Verdict::Success => (NextStep::Delivered, None),
            // Gone: the target is paused, and the delivery waits for it
            // like any other, rather than dying.
            Verdict::Permanent { error } if gone => {
                match policy.next_delay(delivery.attempts, None, &mut rand::rng()) {
                    Some(after) => (NextStep::Retry { after }, Some(error)),
                    None => (NextStep::Dead, Some(error)),
                }
            }
            Verdict::Retryable { error, retry_after } => {
                match policy.next_delay(delivery.attempts, retry_after, &mut rand::rng()) {
                    Some(after) => (NextStep::Retry { after }, Some(error)),
                    None => (NextStep::Dead, Some(error)),
                }
            }
            Verdict::Permanent { error } => (NextStep::Dead, Some(error)),
        };
        self.metrics.attempted(&Attempted {
            target: &self.name,
            delivery_id: &delivery.id,
            event_id: &delivery.event_id,
            attempts: delivery.attempts,
            status: reply.status,
            failure: reply.failure,
            next,
            refused,
            error: error.as_deref(),
            took,
            received_at: delivery.event.received_at,
        });
        if self.tail.watched() {
            self.tail.publish(Tailed::Attempt {
                delivery_id: delivery.id.clone(),
                event_id: delivery.event_id.clone(),
                source: delivery.event.source.clone(),
                target: self.name.clone(),
                attempt: delivery.attempts,
                status: reply.status,
                outcome: match next {
                    NextStep::Delivered => "delivered",
                    NextStep::Retry { .. } => "retry",
                    NextStep::Dead => "dead",
                },
                duration_ms: elapsed_ms,
                error: error.clone(),
            });
        }
        let attempt = Attempt {
            started_at,
            duration_ms: elapsed_ms,
            status: reply.status,
            error,
            response: reply.excerpt,
        };
        (delivery, attempt, next, Some(health))
    }
}

/// What an attempt's answer says about the target's health.
fn health(verdict: &Verdict, reply: &Reply) -> Health {
    match (verdict, reply.status) {
        (Verdict::Permanent { error }, Some(410)) => Health::Gone(error.clone()),
        (Verdict::Retryable { .. }, Some(429)) => Health::Up,
        (Verdict::Retryable { .. }, _) => Health::Down,
        (Verdict::Success | Verdict::Permanent { .. }, _) => Health::Up,
    }
}
