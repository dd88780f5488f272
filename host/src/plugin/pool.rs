//! The instance pool: wasmtime's pooling allocator, and the accounting that
//! keeps calls from running it dry.
//!
//! The pooling allocator has fixed totals of component instances, core
//! instances, memories and tables, and fails an instantiation that finds
//! one exhausted. Components differ by 5×: a Rust plugin has 3 core
//! instances, a Python one 14. So a call reserves what its component really
//! needs (its [`Footprint`], counted at load) before it instantiates, and
//! waits when that is not free. Calls never fail for want of a slot.
//!
//! Invariant: the permits are never more than the pool holds, less a
//! reserve for the undercount of exotic components (a nested component
//! instantiated twice counts once); an instantiation that still hits a
//! limit is retried by the caller once another call has ended, within the
//! call's wall-clock bound.

use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use wasmtime::{Enabled, PoolingAllocationConfig};

use super::error::LoadError;
use super::footprint::Footprint;

/// Pool room per call slot: enough for any plugin our templates build
/// (componentize-py: 14 core instances), so `max_concurrency` calls of any
/// language fit at once.
const CORE_INSTANCES_PER_SLOT: u32 = 16;
const MEMORIES_PER_SLOT: u32 = 4;
const TABLES_PER_SLOT: u32 = 16;
/// Component instances kept beyond the permits: slack for an undercounted
/// footprint.
const RESERVE: u32 = 8;

/// Bytes of each linear memory kept mapped and reset in place between
/// calls, rather than unmapped and faulted back in: enough for the 12 MiB
/// heap image of CPython.
///
/// How the kept bytes are reset depends on the engine (see
/// `runtime::Reset`). `pagemap_scan` resets only the pages a call dirtied;
/// it finds them by write-protecting every page, so each first write of a
/// call faults and flushes the TLB of every core. Measured with `cargo
/// bench --bench languages` on 2 cores, fresh instance per call, 3
/// alternating runs each: Python 1.5–2.5 ms off against 2.2–3.1 ms on
/// (bursts 1.6–1.8 against 3.6–4.9 ms), JavaScript 0.20–0.27 against
/// 0.28–0.31 ms. So it is off for their engine, and on for the one that
/// runs Rust components, whose small memories it resets for less than
/// zeroing them costs.
const KEEP_RESIDENT: usize = 16 << 20;

/// The pooling allocator's configuration for `slots` concurrent calls;
/// `dirty_pages`: reset only the pages a call wrote (`pagemap_scan`, where
/// the kernel has it).
pub fn pooling_config(
    slots: u32,
    memory_bytes: usize,
    dirty_pages: bool,
) -> PoolingAllocationConfig {
    let instances = slots + RESERVE;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances * CORE_INSTANCES_PER_SLOT)
        .total_memories(instances * MEMORIES_PER_SLOT)
        .total_tables(instances * TABLES_PER_SLOT)
        .total_stacks(instances)
        .max_memory_size(memory_bytes)
        .linear_memory_keep_resident(KEEP_RESIDENT.min(memory_bytes))
        .table_keep_resident(64 << 10)
        .pagemap_scan(if dirty_pages {
            Enabled::Auto
        } else {
            Enabled::No
        });
    pool
}

/// Permits for what the pool holds; a call takes its footprint's worth.
#[derive(Debug)]
pub struct PoolSlots {
    slots: u32,
    calls: Arc<Semaphore>,
    core_instances: Arc<Semaphore>,
    memories: Arc<Semaphore>,
    tables: Arc<Semaphore>,
    /// Signalled whenever a call gives its resources back, for a call that
    /// found the pool exhausted despite its permits.
    released: Arc<Notify>,
    /// Instances kept idle between events (`plugins.reuse`) may hold at
    /// most a quarter of the call slots, so they never starve other calls.
    kept: Arc<Semaphore>,
}

/// A call's share of the pool, given back on drop.
#[derive(Debug)]
pub struct Reservation {
    _permits: [OwnedSemaphorePermit; 4],
    released: Arc<Notify>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.released.notify_waiters();
    }
}

impl PoolSlots {
    pub fn new(slots: u32) -> Self {
        let permits = |per: u32| Arc::new(Semaphore::new((slots * per) as usize));
        PoolSlots {
            slots,
            calls: permits(1),
            core_instances: permits(CORE_INSTANCES_PER_SLOT),
            memories: permits(MEMORIES_PER_SLOT),
            tables: permits(TABLES_PER_SLOT),
            released: Arc::new(Notify::new()),
            kept: Arc::new(Semaphore::new((slots / 4) as usize)),
        }
    }

    /// Refuse, at load, a component that could never fit.
    pub fn check_fits(&self, fp: &Footprint) -> Result<(), LoadError> {
        for (what, need, per_slot) in [
            ("core instances", fp.core_instances, CORE_INSTANCES_PER_SLOT),
            ("memories", fp.memories, MEMORIES_PER_SLOT),
            ("tables", fp.tables, TABLES_PER_SLOT),
        ] {
            let have = self.slots * per_slot;
            if need > have {
                return Err(LoadError::TooLarge(format!(
                    "one instance needs {need} {what}, more than the pool's {have}; \
                     raise plugins.max_concurrency, which sizes the pool"
                )));
            }
        }
        Ok(())
    }

    /// Wait until the pool has room for one instance of `fp`, and hold it.
    /// Permits are always taken in the same order, so waiters cannot
    /// deadlock one another.
    pub async fn reserve(&self, fp: &Footprint) -> Reservation {
        let take = |s: &Arc<Semaphore>, n: u32| {
            let s = s.clone();
            async move {
                s.acquire_many_owned(n)
                    .await
                    .expect("pool semaphores are never closed")
            }
        };
        let calls = take(&self.calls, 1).await;
        let core = take(&self.core_instances, fp.core_instances).await;
        let memories = take(&self.memories, fp.memories).await;
        let tables = take(&self.tables, fp.tables).await;
        Reservation {
            _permits: [calls, core, memories, tables],
            released: self.released.clone(),
        }
    }

    /// The budget of idle kept instances, shared by every plugin.
    pub fn kept_budget(&self) -> Arc<Semaphore> {
        self.kept.clone()
    }

    /// Resolves the next time a call gives its resources back.
    pub fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.released.notified()
    }
}
