//! Re-running routes that failed because a plugin was not loaded, as soon as
//! it is (a plugin file removed and added back, or added after the events).

use std::sync::Arc;
use tracing::Instrument;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::chain::{Pipeline, PipelineResult};
use crate::plugin::{PluginRegistry, trial_marker};
use crate::store::{FailedFilter, RouteResult, Store};

/// Listen for plugin loads and re-run what waited for each.
pub fn spawn_reruns(
    pipeline: Arc<Pipeline>,
    store: Arc<dyn Store>,
    registry: &PluginRegistry,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let mut loads = registry.subscribe();
    let statuses = registry.statuses();
    tracker.spawn(async move {
        // Anything that failed before we subscribed, for plugins loaded since.
        // Routes that waited for a trial when the last process stopped: no
        // trial survives a restart, so they can run.
        for s in statuses.iter().filter(|s| s.version.is_some()) {
            rerun_waiting(&pipeline, store.as_ref(), &s.name).await;
            rerun_waiting(&pipeline, store.as_ref(), &trial_marker(&s.name)).await;
        }
        loop {
            let name = tokio::select! {
                r = loads.recv() => r,
                () = cancel.cancelled() => return,
            };
            match name {
                Ok(name) => rerun_waiting(&pipeline, store.as_ref(), &name).await,
                Err(RecvError::Lagged(_)) => {
                    tracing::warn!("missed plugin load notices; re-checking every failed route later loads will cover");
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// The plugins `result`'s failed routes wait for, each once.
pub fn waiting_for(result: &PipelineResult) -> Vec<String> {
    let mut waiting: Vec<String> = result
        .routes
        .iter()
        .filter_map(|o| match &o.result {
            RouteResult::Failed { waiting_for, .. } => waiting_for.clone(),
            _ => None,
        })
        .collect();
    waiting.sort();
    waiting.dedup();
    waiting
}

/// After a result whose routes waited for `waiting` is recorded: a plugin
/// may have loaded between the route's lookup and the record, and its load
/// notice then found nothing to re-run. Re-run for those loaded now.
pub async fn rerun_if_loaded(pipeline: &Pipeline, store: &dyn Store, waiting: &[String]) {
    for plugin in waiting.iter().filter(|p| pipeline.is_ready(p)) {
        rerun_waiting(pipeline, store, plugin).await;
    }
}

/// Re-run every failed route that waits for `plugin`.
pub async fn rerun_waiting(pipeline: &Pipeline, store: &dyn Store, plugin: &str) {
    let waiting = match store
        .failed_routes(FailedFilter::WaitingFor(plugin.to_string()))
        .await
    {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(
                plugin,
                "cannot list the routes waiting for this plugin: {e}"
            );
            return;
        }
    };
    if waiting.is_empty() {
        return;
    }
    tracing::info!(
        plugin,
        routes = waiting.len(),
        "plugin is loaded: re-running the routes that waited for it"
    );
    for (event, failure) in waiting {
        rerun_route(pipeline, store, event, &failure.route).await;
    }
}

/// Re-run one failed route of an event and record the result in place of
/// the failure. Returns the new failures (empty when the route now works).
pub async fn rerun_route(
    pipeline: &Pipeline,
    store: &dyn Store,
    event: crate::event::Event,
    route: &str,
) -> Vec<crate::store::RouteFailure> {
    let span = if crate::telemetry::enabled() {
        // The event's trace, however long after.
        let span = tracing::info_span!("rerun", event_id = %event.id, route);
        crate::telemetry::continue_from(&span, &event.headers);
        span
    } else {
        tracing::Span::none()
    };
    let result = pipeline.rerun(&event, route).instrument(span).await;
    let failures = result.failures(&event.id);
    if let Err(e) = store.record_rerun(event, route, result).await {
        tracing::error!(route, "could not record a re-run: {e}");
    }
    failures
}
