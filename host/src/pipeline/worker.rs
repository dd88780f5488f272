//! Pulls accepted events from the store and runs them through the pipeline.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::chain::{Pipeline, PipelineResult};
use crate::event::Event;
use crate::store::{Store, until_recorded};

/// Takes the events the store queued for the pipeline (those whose routes
/// did not run within the ingest request, and those a restart resumes).
///
/// The store bounds how many there are (an event counts against
/// `queue_capacity` until its result is recorded), plugin calls are bounded
/// per plugin and in all by the plugin runtime, and the bodies held in
/// memory by [`super::chain::IN_MEMORY_KIB`] (shared with ingest). Within that, an event waits only for the
/// plugins its own routes need: a saturated plugin never holds up a route
/// without plugins, nor a route whose plugins have room.
pub fn spawn_pipeline_workers(
    pipeline: Arc<Pipeline>,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let tasks = tracker.clone();
    tracker.spawn(async move {
        loop {
            let event = tokio::select! {
                e = store.next_event() => e,
                () = cancel.cancelled() => return,
            };
            let held = tokio::select! {
                p = pipeline.hold(&event) => p,
                () = cancel.cancelled() => return,
            };
            let (pipeline, store, cancel) = (pipeline.clone(), store.clone(), cancel.clone());
            let span = crate::telemetry::event_span!(
                "pipeline",
                event_id = %event.id,
                source = %event.source
            );
            if crate::telemetry::enabled() {
                crate::telemetry::continue_from(&span, &event.headers);
            }
            tasks.spawn(
                async move {
                    let result = tokio::select! {
                        r = pipeline.process(&event) => r,
                        // Not recorded: the event stays `received` and
                        // resumes at the next start.
                        () = cancel.cancelled() => return,
                    };
                    conclude(&pipeline, store.as_ref(), event, result, Some(&cancel)).await;
                    drop(held);
                }
                .instrument(span),
            );
        }
    });
}

/// After the routes of an event the store holds `received` have run:
/// record the result (retrying while the store fails), then re-run what
/// waits for a plugin that loaded meanwhile. Stops early only if `cancel`
/// fires (shutdown); the event then stays `received` and resumes at the
/// next start. `None`: record whatever happens (the caller cannot stop).
pub async fn conclude(
    pipeline: &Pipeline,
    store: &dyn Store,
    event: Event,
    result: PipelineResult,
    cancel: Option<&CancellationToken>,
) {
    let waiting = super::waiting_for(&result);
    tracing::debug!(
        deliveries = result.deliveries.len(),
        routes = result.routes.len(),
        "pipeline done"
    );
    if record(store, event, result, cancel).await {
        super::rerun_if_loaded(pipeline, store, &waiting).await;
    }
}

/// Record an event's pipeline result, retrying while the store fails.
/// Returns `false` only when shutting down first; the event then stays
/// `received` and resumes at the next start.
async fn record(
    store: &dyn Store,
    event: Event,
    result: PipelineResult,
    cancel: Option<&CancellationToken>,
) -> bool {
    let recorded = until_recorded("the pipeline result of event", &event.id, cancel, || {
        store.complete_event(event.clone(), result.clone())
    })
    .await
    .is_some();
    if !recorded {
        tracing::warn!(
            event_id = %event.id,
            "shutting down with the pipeline result unrecorded: the event resumes at the next start"
        );
    }
    recorded
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::{Accepted, SqliteStore};

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failing_store_is_retried_until_the_result_is_recorded() {
        let dir = std::env::temp_dir().join(format!("wasmhook-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("db.sqlite");
        let store = SqliteStore::open(Some(&path), false, 10).unwrap();
        let event = Event {
            id: "e".into(),
            source: "s".into(),
            event_type: String::new(),
            received_at: 0,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(b"{}"),
        };
        assert_eq!(store.accept(event.clone(), None).await, Ok(Accepted::New));
        let event = store.next_event().await;

        // The store refuses to record, as with a full disk, until the
        // trigger goes away.
        let side = rusqlite::Connection::open(&path).unwrap();
        side.busy_timeout(Duration::from_secs(5)).unwrap();
        side.execute_batch(
            "CREATE TRIGGER refuse BEFORE UPDATE ON events BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;",
        )
        .unwrap();
        let cancel = CancellationToken::new();
        let recording = {
            let store: Arc<dyn Store> = Arc::new(store);
            let cancel = cancel.clone();
            let task_store = store.clone();
            let task = tokio::spawn(async move {
                record(
                    task_store.as_ref(),
                    event,
                    PipelineResult::default(),
                    Some(&cancel),
                )
                .await
            });
            (store, task)
        };
        let (store, task) = recording;
        // Let it fail a few times (100 + 200 + 400 ms of backoff), then heal.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!task.is_finished(), "it keeps trying while the store fails");
        assert_eq!(store.event("e").await.unwrap().unwrap().state, "received");
        side.execute_batch("DROP TRIGGER refuse").unwrap();
        assert!(task.await.unwrap(), "recorded once the store recovered");
        assert_eq!(store.event("e").await.unwrap().unwrap().state, "processed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
