//! Routes and plugin chains: from one received event to the deliveries it makes.
//!
//! For each route whose source and `event_types` match, the route's plugins
//! run in order; every output of plugin k is an input of plugin k+1. The final
//! outputs go to the targets they name, or to the route's targets.
//!
//! Invariants:
//! - Routes are independent: a failure on one route never stops another.
//! - A route is all or nothing for an event: if any plugin call fails, or an
//!   output names a target that is not configured, the route makes no
//!   deliveries for that event and is recorded as failed, with the reason.
//! - A route that failed because a plugin is not loaded is kept with its event
//!   and re-run as soon as that plugin loads (`rerun`).
//! - An event whose source has no route at all is kept as failed on the
//!   route `*` ([`UNROUTED`]); an admin re-run runs every route that matches
//!   it then.
//! - Delivery ids are derived from (event id, route, output index, output id,
//!   target), so re-running a deterministic route yields the same ids and
//!   receivers can deduplicate.

mod chain;
mod rerun;
mod worker;

pub use chain::{Pipeline, PipelineResult, UNROUTED};
pub use rerun::{rerun_if_loaded, rerun_route, rerun_waiting, spawn_reruns, waiting_for};
pub use worker::{conclude, spawn_pipeline_workers};
