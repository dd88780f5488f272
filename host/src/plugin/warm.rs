//! Instances kept between events, for plugins with `plugins.reuse`.
//!
//! A fresh instance per event is the default and the isolation the router
//! promises. Some runtimes cost more to instantiate than to run (CPython:
//! about 1.5 ms against 0.1 ms), so an operator may let a plugin's instance
//! serve up to N events, one at a time. What an event leaves in the
//! instance's memory, the next sees: that is the trade, stated in README.md
//! and SECURITY.md.
//!
//! Invariants:
//! - An instance serves one event at a time: it is taken out of the list
//!   for the call and put back after.
//! - It serves at most `reuse` events, and at most [`MAX_KEPT`] are kept
//!   per plugin version, each holding its room in the pool while idle.
//! - Idle instances of all plugins together hold at most a quarter of the
//!   pool's call slots (the pool's kept budget), so they can never starve
//!   the calls of other plugins: with fewer than 4 slots nothing is kept.
//! - One that broke is never put back (the caller drops it).

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;

use super::host::{CallState, Plugin};
use super::pool::Reservation;

/// Kept instances per plugin version, at most.
const MAX_KEPT: usize = 8;

/// An instance kept for more events, with its store and pool room.
pub(super) struct Warm {
    pub store: Store<CallState>,
    pub instance: Plugin,
    /// Events it has served.
    pub uses: u32,
    /// Its room in the pool, held while it is kept, given back on drop.
    pub _room: Reservation,
    /// Its place in the pool's kept budget, while it is idle.
    idle: Option<OwnedSemaphorePermit>,
}

impl Warm {
    pub fn new(store: Store<CallState>, instance: Plugin, room: Reservation) -> Self {
        Warm {
            store,
            instance,
            uses: 1,
            _room: room,
            idle: None,
        }
    }
}

/// One plugin version's kept instances.
pub(super) struct WarmInstances {
    /// Events one instance may serve; 1: a fresh instance each time.
    reuse: u32,
    // A std mutex: held to push or pop, never across an await.
    kept: Mutex<Vec<Warm>>,
    /// Shared by every plugin: how many instances may be idle at once.
    budget: Arc<Semaphore>,
}

impl WarmInstances {
    pub fn new(reuse: u32, budget: Arc<Semaphore>) -> Self {
        WarmInstances {
            reuse: reuse.max(1),
            kept: Mutex::default(),
            budget,
        }
    }

    /// A kept instance for the next event, if reuse is on and one is idle.
    pub fn take(&self) -> Option<Warm> {
        if self.reuse == 1 {
            return None;
        }
        let mut warm = self.kept.lock().expect("warm lock poisoned").pop()?;
        warm.idle = None; // busy now: its place in the budget is free
        Some(warm)
    }

    /// Keep `warm` for another event, unless it has served its share or
    /// enough are kept already; otherwise it is dropped, room and all.
    pub fn keep(&self, mut warm: Warm) {
        if warm.uses >= self.reuse {
            return;
        }
        let Ok(idle) = self.budget.clone().try_acquire_owned() else {
            return;
        };
        warm.idle = Some(idle);
        let mut kept = self.kept.lock().expect("warm lock poisoned");
        if kept.len() < MAX_KEPT {
            kept.push(warm);
        }
    }
}
