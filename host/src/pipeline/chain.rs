use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{Config, LiveConfig, Route};
use crate::event::{Event, Outcome, Output};
use crate::metrics::Metrics;
use crate::plugin::{PluginError, PluginRegistry};
use crate::store::{Delivery, Dropped, Processed, RouteOutcome, RouteResult};
use tracing::Instrument;

/// The route name recorded for an event whose source had no route. Route
/// names cannot contain `*`, so it never clashes with a configured one.
pub const UNROUTED: &str = "*";

/// The routing table (read from the live config per event, so a config
/// reload applies to the next event) and the plugins it calls.
pub struct Pipeline {
    live: LiveConfig,
    registry: Arc<PluginRegistry>,
    metrics: Arc<Metrics>,
    /// KiB of bodies of events held in memory while their routes run past
    /// ingest: the pipeline's own, and those ingest goes on with after its
    /// budget. Bounded by [`IN_MEMORY_KIB`].
    held: Arc<tokio::sync::Semaphore>,
}

/// Body bytes of the events whose routes run past ingest that are held in
/// memory at once, in KiB. The rest wait in the store, which holds only
/// their keys.
pub const IN_MEMORY_KIB: usize = 64 * 1024;

/// Why a route failed on an event.
struct Failure {
    plugin: Option<String>,
    reason: String,
    waiting_for: Option<String>,
}

/// Everything one event produced: the store's [`Processed`].
pub type PipelineResult = Processed;

/// At most this many distinct drops are kept per route outcome.
const MAX_DROPS_KEPT: usize = 16;

impl Pipeline {
    pub fn new(live: LiveConfig, registry: Arc<PluginRegistry>, metrics: Arc<Metrics>) -> Self {
        Pipeline {
            live,
            registry,
            metrics,
            held: Arc::new(tokio::sync::Semaphore::new(IN_MEMORY_KIB)),
        }
    }

    fn kib(event: &Event) -> u32 {
        (event.body.len() / 1024 + 1).min(IN_MEMORY_KIB) as u32
    }

    /// A place in memory for `event` while its routes run, waiting for one.
    pub async fn hold(&self, event: &Event) -> tokio::sync::OwnedSemaphorePermit {
        self.held
            .clone()
            .acquire_many_owned(Self::kib(event))
            .await
            .expect("the semaphore is never closed")
    }

    /// A place in memory for `event` if there is one now.
    pub fn try_hold(&self, event: &Event) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.held
            .clone()
            .try_acquire_many_owned(Self::kib(event))
            .ok()
    }

    /// Run every matching route on a newly received event.
    ///
    /// A source with no route at all is a config mistake (a route deleted,
    /// a name misspelt), not a filter: the event is kept as failed on
    /// [`UNROUTED`], so it can be re-run once the config is fixed.
    pub async fn process(&self, event: &Event) -> PipelineResult {
        let config = self.live.load_full();
        let mut result = PipelineResult::default();
        if !config.routes.iter().any(|r| r.source == event.source) {
            let reason = format!(
                "no route matched: no route is configured for source {:?}; fix the config, then re-run the event",
                event.source
            );
            self.metrics
                .event_unrouted(&event.id, &event.source, &reason);
            result.routes.push(failed(UNROUTED, None, reason, None));
            return result;
        }
        for route in config.routes.iter().filter(|r| matches(r, event)) {
            self.run_into(&config, route, event, &mut result).await;
        }
        result
    }

    /// Run one route again on an event it failed on ([`UNROUTED`]: every
    /// route that matches it now).
    pub async fn rerun(&self, event: &Event, route_name: &str) -> PipelineResult {
        if route_name == UNROUTED {
            return self.process(event).await;
        }
        let config = self.live.load_full();
        let mut result = PipelineResult::default();
        match config.routes.iter().find(|r| r.name == route_name) {
            Some(route) => self.run_into(&config, route, event, &mut result).await,
            None => result.routes.push(failed(
                route_name,
                None,
                format!("route {route_name:?} is no longer in the config"),
                None,
            )),
        }
        result
    }

    /// Whether routes waiting for `waiting_for` (a plugin, or the end of a
    /// plugin's trial) can run now.
    pub fn is_ready(&self, waiting_for: &str) -> bool {
        self.registry.is_ready(waiting_for)
    }

    async fn run_into(
        &self,
        config: &Config,
        route: &Route,
        event: &Event,
        result: &mut PipelineResult,
    ) {
        match self.run_route(config, route, event).await {
            Ok((deliveries, outcome)) => {
                result.deliveries.extend(deliveries);
                result.routes.push(RouteOutcome {
                    route: route.name.clone(),
                    result: outcome,
                });
            }
            Err(f) => {
                self.metrics.route_failed(
                    (&event.id, &event.source),
                    &route.name,
                    f.plugin.as_deref(),
                    &f.reason,
                );
                result
                    .routes
                    .push(failed(&route.name, f.plugin, f.reason, f.waiting_for));
            }
        }
    }

    /// The deliveries this route makes for `event` and what it did, or why
    /// it failed.
    async fn run_route(
        &self,
        config: &Config,
        route: &Route,
        event: &Event,
    ) -> Result<(Vec<Delivery>, RouteResult), Failure> {
        let mut drops: Vec<Dropped> = Vec::new();
        let mut current = vec![Output {
            event: event.clone(),
            targets: Vec::new(),
        }];
        for step in &route.plugins {
            let fail = |e: PluginError, waiting_for: Option<String>| Failure {
                plugin: Some(step.name.clone()),
                waiting_for: waiting_for
                    .or_else(|| matches!(e, PluginError::NotLoaded(_)).then(|| step.name.clone())),
                reason: e.to_string(),
            };
            let plugin = self
                .registry
                .get(&step.name)
                .ok_or_else(|| fail(PluginError::NotLoaded(step.name.clone()), None))?;
            let mut next = Vec::new();
            for input in current {
                let started = tokio::time::Instant::now();
                let call =
                    self.registry
                        .runtime()
                        .invoke(&plugin, &input.event, step.config.clone());
                let outcome = if crate::telemetry::enabled() {
                    let span =
                        tracing::info_span!("plugin", plugin = %step.name, route = %route.name);
                    call.instrument(span).await
                } else {
                    call.await
                };
                // A new version on trial is rolled back if it breaks on its
                // first calls; routes it broke wait for the verdict.
                let took = started.elapsed();
                let held = self.registry.record_call(&plugin, outcome.as_ref().err());
                match outcome {
                    Ok(Outcome::Drop { reason }) => {
                        self.metrics
                            .plugin_dropped(&route.name, &step.name, &reason, took);
                        note_drop(&mut drops, &step.name, reason);
                    }
                    Ok(Outcome::Emit(outputs)) => {
                        self.metrics.plugin_emitted(&step.name, took);
                        // An output that names no targets keeps what an
                        // earlier plugin in the chain named.
                        next.extend(outputs.into_iter().map(|mut o| {
                            if o.targets.is_empty() {
                                o.targets = input.targets.clone();
                            }
                            o
                        }));
                    }
                    Err(e) => {
                        self.metrics.plugin_failed(&step.name, e.kind(), took);
                        return Err(fail(e, held));
                    }
                }
            }
            current = next;
        }

        if current.is_empty()
            && let Some(first) = drops.first().cloned()
        {
            let dropped = if drops.len() > 1 { drops } else { Vec::new() };
            return Ok((
                Vec::new(),
                RouteResult::Dropped {
                    plugin: first.plugin,
                    reason: first.reason,
                    dropped,
                },
            ));
        }
        let outputs = current.len();
        let mut deliveries = Vec::new();
        for (index, mut output) in current.into_iter().enumerate() {
            crate::telemetry::keep_trace(&event.headers, &mut output.event.headers);
            let targets = if output.targets.is_empty() {
                &route.targets
            } else {
                &output.targets
            };
            if targets.is_empty() {
                return Err(Failure {
                    plugin: None,
                    reason: format!(
                        "output {:?} names no target and the route has none",
                        output.event.id
                    ),
                    waiting_for: None,
                });
            }
            for target in targets {
                let Some(target_config) = config.target(target) else {
                    return Err(Failure {
                        plugin: route.plugins.last().map(|p| p.name.clone()),
                        reason: format!(
                            "an output names target {target:?}, which is not configured"
                        ),
                        waiting_for: None,
                    });
                };
                let order = target_config.ordering.as_ref();
                deliveries.push(Delivery {
                    id: delivery_id(event, &route.name, index, &output.event.id, target),
                    event_id: event.id.clone(),
                    route: route.name.clone(),
                    target: target.clone(),
                    event: output.event.clone(),
                    attempts: 0,
                    lease: 0,
                    order_key: order.and_then(|o| o.key_of(&output.event)),
                    order_block: order.is_some_and(|o| o.block_on_dead),
                });
            }
        }
        let mut targets: Vec<String> = Vec::new();
        for d in &deliveries {
            if !targets.contains(&d.target) {
                targets.push(d.target.clone());
            }
        }
        Ok((
            deliveries,
            RouteResult::Emitted {
                outputs,
                targets,
                dropped: drops,
            },
        ))
    }
}

/// That `route` failed: the store keeps it for re-running, and shows it.
fn failed(
    route: &str,
    plugin: Option<String>,
    error: String,
    waiting_for: Option<String>,
) -> RouteOutcome {
    RouteOutcome {
        route: route.to_string(),
        result: RouteResult::Failed {
            plugin,
            error,
            waiting_for,
        },
    }
}

/// Count a drop, merging repeats of the same plugin and reason.
fn note_drop(drops: &mut Vec<Dropped>, plugin: &str, reason: String) {
    if let Some(d) = drops
        .iter_mut()
        .find(|d| d.plugin == plugin && d.reason == reason)
    {
        d.count += 1;
    } else if drops.len() < MAX_DROPS_KEPT {
        drops.push(Dropped {
            plugin: plugin.to_string(),
            reason,
            count: 1,
        });
    }
}

fn matches(route: &Route, event: &Event) -> bool {
    route.source == event.source
        && route
            .event_types
            .as_ref()
            .is_none_or(|types| types.contains(&event.event_type))
}

/// `msg_` + 26 hex digits of SHA-256 over the parts that identify a delivery.
/// `msg_`, the event's arrival (ms, 11 hex digits: good to the year 2527),
/// then 15 hex digits of a hash of what makes the delivery: stable across
/// re-runs, and in time order, so the store appends to its indexes rather
/// than writing all over them.
fn delivery_id(event: &Event, route: &str, index: usize, output_id: &str, target: &str) -> String {
    use std::fmt::Write as _;
    let mut h = Sha256::new();
    for part in [&event.id, route, &index.to_string(), output_id, target] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut id = format!("msg_{:011x}", event.received_at & 0xfff_ffff_ffff);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let _ = write!(id, "{}", &hex[..15]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_stable_distinct_and_in_time_order() {
        let event = |id: &str, received_at| Event {
            id: id.into(),
            source: "s".into(),
            event_type: String::new(),
            received_at,
            headers: Vec::new(),
            body: bytes::Bytes::new(),
        };
        let e = event("evt_1", 1_764_633_600_000);
        let a = delivery_id(&e, "r", 0, "evt_1", "ci");
        assert_eq!(a, delivery_id(&e, "r", 0, "evt_1", "ci"));
        assert!(a.starts_with("msg_") && a.len() == 30, "{a}");
        assert!(a[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, delivery_id(&e, "r", 0, "evt_1", "audit"));
        assert_ne!(a, delivery_id(&e, "r", 1, "evt_1", "ci"));
        assert_ne!(a, delivery_id(&e, "r2", 0, "evt_1", "ci"));
        let later = delivery_id(&event("evt_0", 1_764_633_600_001), "r", 0, "evt_0", "ci");
        assert!(later > a, "a later event's deliveries sort after");
    }
}
