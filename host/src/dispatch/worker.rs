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

use super::retry::RetryPolicy;
use super::sender::{Sender, Verdict};
use crate::config::LiveConfig;
use crate::metrics::Metrics;
use crate::queue::{AttemptResult, Delivery, Store};

/// Owns the per-target workers.
pub struct Dispatcher {
    live: LiveConfig,
    store: Arc<dyn Store>,
    sender: Sender,
    metrics: Arc<Metrics>,
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
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        Dispatcher {
            live,
            store,
            sender,
            metrics,
            cancel,
            tracker,
            workers: Mutex::default(),
        }
    }

    /// Make the running workers match the live config's targets: start new
    /// ones, stop removed ones, restart those whose `max_in_flight` changed.
    /// URL, secrets, timeout and retry policy are read per attempt, so they
    /// change without a restart. Deliveries queued for a removed target stay
    /// queued, and resume if it comes back.
    pub fn reconcile(&self) {
        let config = self.live.load_full();
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
    slots: Arc<Semaphore>,
}

impl TargetWorker {
    async fn run(self, cancel: CancellationToken, tracker: TaskTracker) {
        let this = Arc::new(self);
        loop {
            let slot = tokio::select! {
                slot = this.slots.clone().acquire_owned() => slot.expect("semaphore is never closed"),
                () = cancel.cancelled() => return,
            };
            let delivery = tokio::select! {
                d = this.store.claim(&this.name) => d,
                () = cancel.cancelled() => return,
            };
            let span = tracing::info_span!(
                "delivery",
                event_id = %delivery.event_id,
                delivery_id = %delivery.id,
                target = %this.name,
                attempt = delivery.attempts + 1,
            );
            let worker = this.clone();
            tracker.spawn(
                async move {
                    let result = worker.attempt(delivery).await;
                    if let Err(e) = result {
                        tracing::error!("could not record the attempt: {e}");
                    }
                    drop(slot);
                }
                .instrument(span),
            );
        }
    }

    async fn attempt(&self, mut delivery: Delivery) -> Result<(), crate::queue::StoreError> {
        let config = self.live.load_full();
        let Some(target) = config.target(&self.name) else {
            // Removed from the config after this delivery was claimed.
            let error = "the target is no longer in the config".to_string();
            let after = Duration::from_secs(1);
            return self
                .store
                .finish_attempt(delivery, AttemptResult::Retry { after, error })
                .await;
        };
        let policy = RetryPolicy {
            schedule: target.retry_schedule.clone(),
            max_attempts: target.max_attempts,
        };
        let started = tokio::time::Instant::now();
        let verdict = self.sender.attempt(target, &delivery).await;
        delivery.attempts += 1;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let result = match verdict {
            Verdict::Success { status } => {
                tracing::info!(status, elapsed_ms, "delivered");
                AttemptResult::Delivered { status }
            }
            Verdict::Retryable { error, retry_after } => {
                match policy.next_delay(delivery.attempts, retry_after, &mut rand::rng()) {
                    Some(after) => {
                        tracing::warn!(
                            elapsed_ms,
                            retry_in_ms = after.as_millis() as u64,
                            "attempt failed: {error}"
                        );
                        AttemptResult::Retry { after, error }
                    }
                    None => {
                        tracing::error!(
                            elapsed_ms,
                            "delivery is dead after {} attempts: {error}",
                            delivery.attempts
                        );
                        AttemptResult::Dead { error }
                    }
                }
            }
            Verdict::Permanent { error } => {
                tracing::error!(
                    elapsed_ms,
                    "delivery is dead, the target refused it: {error}"
                );
                AttemptResult::Dead { error }
            }
        };
        self.metrics.attempt(&self.name, &result);
        self.store.finish_attempt(delivery, result).await
    }
}
