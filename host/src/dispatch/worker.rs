//! One worker per target: claim due deliveries, attempt them within the
//! target's `max_in_flight`, record the outcome.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::retry::RetryPolicy;
use super::sender::{Sender, Verdict};
use crate::config::Target;
use crate::metrics::Metrics;
use crate::queue::{AttemptResult, Store};

/// Start a worker for each target. Workers stop claiming when `cancel` fires;
/// attempts already in flight are tracked by `tracker` so shutdown can wait.
pub fn spawn_target_workers(
    targets: &[Target],
    store: Arc<dyn Store>,
    sender: Sender,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    for target in targets {
        let worker = TargetWorker {
            target: Arc::new(target.clone()),
            policy: Arc::new(RetryPolicy {
                schedule: target.retry_schedule.clone(),
                max_attempts: target.max_attempts,
            }),
            store: store.clone(),
            sender: sender.clone(),
            metrics: metrics.clone(),
            slots: Arc::new(Semaphore::new(target.max_in_flight)),
        };
        let (cancel, tasks) = (cancel.clone(), tracker.clone());
        tracker.spawn(worker.run(cancel, tasks));
    }
}

struct TargetWorker {
    target: Arc<Target>,
    policy: Arc<RetryPolicy>,
    store: Arc<dyn Store>,
    sender: Sender,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
}

impl TargetWorker {
    async fn run(self, cancel: CancellationToken, tracker: TaskTracker) {
        loop {
            let slot = tokio::select! {
                slot = self.slots.clone().acquire_owned() => slot.expect("semaphore is never closed"),
                () = cancel.cancelled() => return,
            };
            let mut delivery = tokio::select! {
                d = self.store.claim(&self.target.name) => d,
                () = cancel.cancelled() => return,
            };
            let (target, policy, store, sender, metrics) = (
                self.target.clone(),
                self.policy.clone(),
                self.store.clone(),
                self.sender.clone(),
                self.metrics.clone(),
            );
            let span = tracing::info_span!(
                "delivery",
                event_id = %delivery.event_id,
                delivery_id = %delivery.id,
                target = %target.name,
                attempt = delivery.attempts + 1,
            );
            tracker.spawn(
                async move {
                    let started = tokio::time::Instant::now();
                    let verdict = sender.attempt(&target, &delivery).await;
                    delivery.attempts += 1;
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    let result = match verdict {
                        Verdict::Success { status } => {
                            tracing::info!(status, elapsed_ms, "delivered");
                            AttemptResult::Delivered { status }
                        }
                        Verdict::Retryable { error, retry_after } => {
                            match policy.next_delay(
                                delivery.attempts,
                                retry_after,
                                &mut rand::rng(),
                            ) {
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
                    metrics.attempt(&target.name, &result);
                    if let Err(e) = store.finish_attempt(delivery, result).await {
                        tracing::error!("could not record the attempt: {e}");
                    }
                    drop(slot);
                }
                .instrument(span),
            );
        }
    }
}
