//! Pulls accepted events from the store and runs them through the pipeline.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::chain::Pipeline;
use crate::store::Store;

/// Runs up to `concurrency` events through the pipeline at once.
pub fn spawn_pipeline_workers(
    pipeline: Arc<Pipeline>,
    store: Arc<dyn Store>,
    concurrency: usize,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let tasks = tracker.clone();
    tracker.spawn(async move {
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        loop {
            let slot = tokio::select! {
                s = slots.clone().acquire_owned() => s.expect("semaphore is never closed"),
                () = cancel.cancelled() => return,
            };
            let event = tokio::select! {
                e = store.next_event() => e,
                () = cancel.cancelled() => return,
            };
            let (pipeline, store) = (pipeline.clone(), store.clone());
            let span =
                tracing::info_span!("pipeline", event_id = %event.id, source = %event.source);
            tasks.spawn(
                async move {
                    let result = pipeline.process(&event).await;
                    // A plugin may have loaded between our lookup and now; its
                    // load notice would then have found nothing to re-run.
                    let mut waiting: Vec<String> = result
                        .failures
                        .iter()
                        .filter_map(|f| f.waiting_for.clone())
                        .collect();
                    waiting.sort();
                    waiting.dedup();
                    tracing::debug!(
                        deliveries = result.deliveries.len(),
                        failures = result.failures.len(),
                        "pipeline done"
                    );
                    if let Err(e) = store
                        .complete_event(event, result.deliveries, result.failures)
                        .await
                    {
                        tracing::error!("could not record the pipeline result: {e}");
                    }
                    for plugin in waiting.iter().filter(|p| pipeline.is_loaded(p)) {
                        super::rerun_waiting(&pipeline, store.as_ref(), plugin).await;
                    }
                    drop(slot);
                }
                .instrument(span),
            );
        }
    });
}
