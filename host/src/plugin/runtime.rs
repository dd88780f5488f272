//! The wasmtime engine, and one plugin call on one event.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError};
use wasmtime::{Store, UpdateDeadline};

use super::cache::CompileCache;
use super::error::{LoadError, PluginError};
use super::failure::{
    check_component_header, failure_summary, is_copy_budget_exhausted, load_hint, trap_summary,
};
use super::footprint::{Footprint, Toolchain};
use super::host::{CallState, LogLine, Plugin, PluginPre, from_wire, to_wire};
use super::pool::{PoolSlots, Reservation, pooling_config};
use super::warm::{Warm, WarmInstances};
use crate::config::PluginLimits;
use crate::event::{Event, Outcome};
use crate::verify::encode_hex as hex;

/// How often the epoch ticker advances the engine's epoch. Every tick, a
/// running guest yields to tokio and one tick of its deadline is used up.
const TICK: Duration = Duration::from_millis(2);

/// What one [`PluginRuntime::try_run`] did.
#[derive(Debug)]
pub struct TryRun {
    pub outcome: Result<Outcome, PluginError>,
    /// The `log` calls, in order, as the log has them (capped the same way).
    pub logs: Vec<LogLine>,
    /// What it wrote to stdout and stderr (capped).
    pub printed: String,
    pub took: Duration,
}

#[derive(Debug, Default)]
struct Captured {
    logs: Vec<LogLine>,
    printed: String,
}

/// A plugin compiled and linked, ready to instantiate per event.
pub struct CompiledPlugin {
    pub name: Arc<str>,
    /// Hex SHA-256 of the `.wasm` bytes.
    pub version: String,
    pre: PluginPre<CallState>,
    /// What one instance takes from the pool.
    pub footprint: Footprint,
    /// What built it, for errors in its author's terms.
    pub toolchain: Toolchain,
    /// This plugin's share of the call slots: a saturated plugin leaves
    /// the rest to the others.
    calls: Arc<Semaphore>,
    /// Whether a call of this version has ever succeeded: a version that
    /// worked is one worth rolling back to.
    succeeded: std::sync::atomic::AtomicBool,
    /// Instances kept between events (`plugins.reuse`).
    warm: WarmInstances,
    /// Which engine's pool its instances come from.
    reset: Reset,
}

impl CompiledPlugin {
    pub fn has_succeeded(&self) -> bool {
        self.succeeded.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn mark_succeeded(&self) {
        self.succeeded
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// How an engine's pool makes a used instance's memory fresh again.
///
/// A fresh instance per event makes the reset part of every call. Rust
/// components start with a small memory (320 KiB with the template's
/// stack) and dirty a few pages of it per call: scanning for the dirty
/// pages (`pagemap_scan`) and resetting only those is cheaper than
/// zeroing the whole memory (`redact`, `cargo bench -p wasmhook-e2e
/// --bench throughput -- e2e-fsync`, 3 alternating runs each: 144 against
/// 161 µs of router CPU per event, 10,021 against 9,056 events/s). The
/// QuickJS and CPython runtimes start with 1.5 and 12 MiB and dirty much
/// of it: each first write then faults, and they are slower that way (see
/// `pool::KEEP_RESIDENT`). So each kind has its own engine and pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Only the pages the call dirtied: small memories (Rust, and
    /// toolchains we do not recognise).
    DirtyPages,
    /// The whole kept-resident memory, without faults: the JavaScript and
    /// Python runtimes.
    Whole,
}

impl Reset {
    pub fn of(toolchain: Toolchain) -> Reset {
        match toolchain {
            Toolchain::JavaScript | Toolchain::Python => Reset::Whole,
            Toolchain::Rust | Toolchain::Unknown => Reset::DirtyPages,
        }
    }

    fn index(self) -> usize {
        match self {
            Reset::DirtyPages => 0,
            Reset::Whole => 1,
        }
    }
}

/// One wasmtime engine, with what is bound to it.
struct Flavor {
    engine: Engine,
    linker: Linker<CallState>,
    cache: Option<CompileCache>,
}

impl Flavor {
    fn new(
        slots: u32,
        limits: &PluginLimits,
        reset: Reset,
        cache_dir: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        let pool = pooling_config(slots, limits.memory_bytes, reset == Reset::DirtyPages);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(wasm_err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasm_err)?;
        Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(wasm_err)?;
        Ok(Flavor {
            cache: cache_dir.map(|dir| CompileCache::new(dir, &engine)),
            engine,
            linker,
        })
    }
}

/// The engines shared by every plugin (one per [`Reset`]), with their
/// linkers and the limits.
pub struct PluginRuntime {
    /// Indexed by [`Reset::index`].
    flavors: [Flavor; 2],
    limits: PluginLimits,
    ticks: u64,
    /// `limits.wall_timeout`, or the default for this machine.
    wall_timeout: Duration,
    /// Bounds concurrent calls to what the pooling allocator holds, by each
    /// component's real needs; callers wait for room rather than fail.
    /// Shared by both engines, each of whose pools could hold every call:
    /// so calls together never exceed either.
    pool: PoolSlots,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// `cache_dir`: where compiled plugins are kept across restarts (none: no cache).
    pub fn new(
        limits: PluginLimits,
        cache_dir: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        let slots = u32::try_from(limits.max_concurrency.max(1))?;
        let flavors = [
            Flavor::new(slots, &limits, Reset::DirtyPages, cache_dir.clone())?,
            Flavor::new(slots, &limits, Reset::Whole, cache_dir)?,
        ];
        spawn_epoch_ticker(flavors.iter().map(|f| f.engine.weak()).collect());

        let ticks = (limits.timeout.as_millis() / TICK.as_millis()).max(1) as u64;
        Ok(PluginRuntime {
            flavors,
            pool: PoolSlots::new(slots),
            ticks,
            wall_timeout: limits.wall_timeout.unwrap_or_else(|| {
                default_wall_timeout(limits.timeout, limits.max_concurrency, cores())
            }),
            limits,
        })
    }

    fn flavor(&self, reset: Reset) -> &Flavor {
        &self.flavors[reset.index()]
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Compile (or fetch from the on-disk cache) and link a plugin. CPU-heavy
    /// on a cache miss (tens to hundreds of ms): call it from a blocking thread.
    /// Returns the plugin and whether it came from the cache.
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<(CompiledPlugin, bool), LoadError> {
        let toolchain = Toolchain::of(wasm);
        check_component_header(wasm).map_err(|reason| {
            LoadError::NotAComponent(format!("{reason}; {}", toolchain.build_hint()))
        })?;
        let not_a_component = |e: wasmtime::Error| {
            let detail = format!("{e:#}");
            if detail.contains("does not fit in pooling allocator") {
                return LoadError::TooLarge(format!(
                    "{detail}; the plugin needs more than plugins.memory_limit_mb ({} MiB) allows \
                     (for plugin run: --memory-limit-mb)",
                    self.limits.memory_bytes >> 20
                ));
            }
            LoadError::NotAComponent(format!("{detail}; {}", load_hint(&detail, toolchain)))
        };
        let version = hex(&Sha256::digest(wasm));
        let reset = Reset::of(toolchain);
        let flavor = self.flavor(reset);
        let cached = flavor
            .cache
            .as_ref()
            .and_then(|c| c.get(&flavor.engine, &version));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(c) => c,
            None => {
                let c = Component::new(&flavor.engine, wasm).map_err(not_a_component)?;
                if let Some(cache) = &flavor.cache {
                    cache.put(&version, &c);
                }
                c
            }
        };
        let footprint = footprint(wasm, &component)?;
        self.pool.check_fits(&footprint)?;
        let wrong_world = |e: wasmtime::Error| {
            let detail = format!("{e:#}");
            LoadError::WrongWorld(format!("{detail}; {}", load_hint(&detail, toolchain)))
        };
        let pre = flavor
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = PluginPre::new(pre).map_err(wrong_world)?;
        Ok((
            CompiledPlugin {
                name: name.into(),
                version,
                pre,
                footprint,
                toolchain,
                calls: Arc::new(Semaphore::new(per_plugin_share(
                    self.limits.max_concurrency,
                ))),
                succeeded: Default::default(),
                warm: WarmInstances::new(
                    self.limits.reuse.get(name).copied().unwrap_or(1),
                    self.pool.kept_budget(),
                ),
                reset,
            },
            from_cache,
        ))
    }

    /// Instantiate once without calling anything: catches a plugin that traps
    /// in its start function before it is put in service.
    ///
    /// It also measures what the instance took from the pool, and raises
    /// the footprint counted from the binary to that: wasmtime adds
    /// instances of its own (adapters between nested components) that the
    /// binary does not show. Calls running meanwhile can only make the
    /// measure larger, which errs on the safe side.
    pub async fn smoke_test(&self, plugin: &mut CompiledPlugin) -> Result<(), LoadError> {
        let metrics = self.flavor(plugin.reset).engine.pooling_allocator_metrics();
        let live = || {
            metrics.as_ref().map(|m| Footprint {
                core_instances: u32::try_from(m.core_instances()).unwrap_or(u32::MAX),
                memories: u32::try_from(m.memories()).unwrap_or(u32::MAX),
                tables: u32::try_from(m.tables()).unwrap_or(u32::MAX),
            })
        };
        let probe = Event {
            id: String::from("smoke-test"),
            source: String::new(),
            event_type: String::new(),
            received_at: 0,
            headers: Vec::new(),
            body: Default::default(),
        };
        let mut slot = None;
        let instantiate = async {
            let room = self.pool.reserve(&plugin.footprint).await;
            let before = live();
            let (instance, _room) = self
                .instantiate(plugin, &probe, Arc::from([]), room, &mut slot)
                .await;
            match instance {
                Ok(_) => Ok(before.zip(live())),
                Err(e) => {
                    let state = slot.as_ref().expect("a store was made").data();
                    state.flush_stdio();
                    let reason = failure_summary(&state.stdio_text(), plugin.toolchain)
                        .unwrap_or_else(|| format!("{e:#}"));
                    Err(LoadError::Instantiate(reason))
                }
            }
        };
        let measured = tokio::time::timeout(self.wall_timeout, instantiate)
            .await
            .unwrap_or_else(|_| {
                Err(LoadError::Instantiate(format!(
                    "instantiating took longer than {} ms",
                    self.wall_timeout.as_millis()
                )))
            })?;
        if let Some((before, after)) = measured {
            let fp = &mut plugin.footprint;
            fp.core_instances = fp
                .core_instances
                .max(after.core_instances.saturating_sub(before.core_instances));
            fp.memories = fp
                .memories
                .max(after.memories.saturating_sub(before.memories));
            fp.tables = fp.tables.max(after.tables.saturating_sub(before.tables));
            self.pool.check_fits(fp)?;
        }
        Ok(())
    }

    /// Run `plugin` on `event` within the limits: in a fresh instance, or,
    /// for a plugin with `plugins.reuse`, in one kept from earlier events.
    pub async fn invoke(
        &self,
        plugin: &CompiledPlugin,
        event: &Event,
        config: Arc<[(String, String)]>,
    ) -> Result<Outcome, PluginError> {
        // This plugin's share first, then room in the pool: a call waiting
        // for its plugin's share never holds room another plugin could use.
        let _share = plugin
            .calls
            .acquire()
            .await
            .expect("semaphore is never closed");
        if let Some(warm) = plugin.warm.take()
            && let Some(result) = self.call_warm(plugin, warm, event, &config).await
        {
            return result;
        }
        let room = self.pool.reserve(&plugin.footprint).await;
        self.call_fresh(plugin, room, event, config, None).await
    }

    /// Run `plugin` once on `event`, in a fresh instance within the same
    /// limits as [`Self::invoke`], and keep what it logged and printed:
    /// the admin API's "try it". Nothing is recorded anywhere.
    pub async fn try_run(
        &self,
        plugin: &CompiledPlugin,
        event: &Event,
        config: Arc<[(String, String)]>,
    ) -> TryRun {
        let _share = plugin
            .calls
            .acquire()
            .await
            .expect("semaphore is never closed");
        let room = self.pool.reserve(&plugin.footprint).await;
        let started = tokio::time::Instant::now();
        let mut captured = Captured::default();
        let outcome = self
            .call_fresh(plugin, room, event, config, Some(&mut captured))
            .await;
        TryRun {
            outcome,
            logs: captured.logs,
            printed: captured.printed,
            took: started.elapsed(),
        }
    }

    async fn call_fresh(
        &self,
        plugin: &CompiledPlugin,
        room: Reservation,
        event: &Event,
        config: Arc<[(String, String)]>,
        capture: Option<&mut Captured>,
    ) -> Result<Outcome, PluginError> {
        let capturing = capture.is_some();
        let wire_event = to_wire(event);
        // Epoch ticks count only while guest code runs; a guest blocked in a
        // host call (a sleep, a poll) would hold its slot for as long as it
        // liked. The wall-clock bound drops the call, and with it the
        // instance, wherever it is.
        let mut slot = None;
        let call = async {
            let (instance, room) = self
                .instantiate(plugin, event, config, room, &mut slot)
                .await;
            let instance = instance?;
            let store = slot.as_mut().expect("a store was made");
            if capturing {
                store.data_mut().logs = Some(Vec::new());
            }
            let answer = instance.call_handle(&mut *store, &wire_event).await?;
            Ok((answer, instance, room))
        };
        let timed = tokio::time::timeout(self.wall_timeout, call).await;
        // What it printed is logged however the call ended.
        let Some(mut store) = slot else {
            return Err(self.wall_timeout_error());
        };
        store.data().flush_stdio();
        if let Some(c) = capture {
            c.logs = store.data_mut().logs.take().unwrap_or_default();
            c.printed = store.data().stdio_text();
        }
        let (answer, instance, room) = match timed {
            Err(_) => return Err(self.wall_timeout_error()),
            Ok(Err(trap)) => return Err(self.classify(store.data(), plugin.toolchain, &trap)),
            Ok(Ok(called)) => called,
        };
        let outcome = match answer {
            Err(message) => Err(PluginError::Failed(message)),
            Ok(outcome) => self.check_output(from_wire(outcome)),
        };
        // An instance that answered (even with an error) is sound: keep it
        // for the next event if the plugin reuses instances.
        plugin.warm.keep(Warm::new(store, instance, room));
        outcome
    }

    /// Instantiate `plugin` for `event` in a fresh store, left in `slot` so
    /// the caller can read what it printed however the call ends. When the
    /// pool is exhausted despite `room` (the footprint undercounted: a
    /// nested component), wait for a call to end and try again in a new
    /// store; the caller's wall-clock bound limits the waiting.
    async fn instantiate(
        &self,
        plugin: &CompiledPlugin,
        event: &Event,
        config: Arc<[(String, String)]>,
        mut room: Reservation,
        slot: &mut Option<Store<CallState>>,
    ) -> (wasmtime::Result<Plugin>, Reservation) {
        loop {
            let released = self.pool.released();
            let store = slot.insert(self.store(plugin, event, config.clone()));
            match plugin.pre.instantiate_async(&mut *store).await {
                Err(e) if e.is::<PoolConcurrencyLimitError>() => {
                    drop(room);
                    released.await;
                    room = self.pool.reserve(&plugin.footprint).await;
                }
                result => return (result, room),
            }
        }
    }

    /// Run one more event in a kept instance. `None` when it broke (trapped,
    /// ran out of memory): the event then gets a fresh instance, so what
    /// earlier events left behind (a leak, a corrupt global) never fails it.
    async fn call_warm(
        &self,
        plugin: &CompiledPlugin,
        mut warm: Warm,
        event: &Event,
        config: &Arc<[(String, String)]>,
    ) -> Option<Result<Outcome, PluginError>> {
        warm.store.data_mut().begin(
            event.id.clone(),
            &event.source,
            event.received_at,
            config.clone(),
            self.ticks,
        );
        warm.store
            .set_hostcall_fuel(copy_budget(self.limits.max_output_bytes));
        warm.store.set_epoch_deadline(1);
        let wire_event = to_wire(event);
        let call = warm.instance.call_handle(&mut warm.store, &wire_event);
        let timed = tokio::time::timeout(self.wall_timeout, call).await;
        warm.store.data().flush_stdio();
        let result = match timed {
            // Out of time is the event's own doing: a fresh instance would
            // spend the same again.
            Err(_) => return Some(Err(self.wall_timeout_error())),
            Ok(Err(trap)) => {
                let error = self.classify(warm.store.data(), plugin.toolchain, &trap);
                if matches!(error, PluginError::Timeout { .. }) {
                    return Some(Err(error));
                }
                tracing::debug!(plugin = %plugin.name, uses = warm.uses, "a kept instance broke ({error}); the event gets a fresh one");
                return None;
            }
            Ok(Ok(Err(message))) => Err(PluginError::Failed(message)),
            Ok(Ok(Ok(outcome))) => self.check_output(from_wire(outcome)),
        };
        warm.uses += 1;
        plugin.warm.keep(warm);
        Some(result)
    }

    fn wall_timeout_error(&self) -> PluginError {
        PluginError::WallTimeout {
            limit_ms: self.wall_timeout.as_millis() as u64,
        }
    }

    fn store(
        &self,
        plugin: &CompiledPlugin,
        event: &Event,
        config: Arc<[(String, String)]>,
    ) -> Store<CallState> {
        let state = CallState::new(
            plugin.name.clone(),
            event.id.clone(),
            event.source.clone(),
            event.received_at,
            config,
            self.limits.memory_bytes,
            self.ticks,
        );
        let mut store = Store::new(&self.flavor(plugin.reset).engine, state);
        store.limiter(|s| &mut s.memory);
        // wasmtime charges every string and list it copies out of the guest
        // (its answer, and the arguments of its calls to us) against this
        // budget while copying, and stops when it runs out. So an answer
        // over the cap is refused before it is copied, however often it
        // names the same memory: 100,000 outputs pointing at one 50 MB body
        // cost the host this budget, not terabytes.
        store.set_hostcall_fuel(copy_budget(self.limits.max_output_bytes));
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut cx| {
            let state = cx.data_mut();
            if state.ticks_left == 0 {
                state.timed_out = true;
                wasmtime::bail!("execution deadline reached");
            }
            state.ticks_left -= 1;
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }

    fn classify(
        &self,
        state: &CallState,
        toolchain: Toolchain,
        trap: &wasmtime::Error,
    ) -> PluginError {
        if state.timed_out {
            return PluginError::Timeout {
                limit_ms: self.limits.timeout.as_millis() as u64,
            };
        }
        if state.memory.exceeded {
            return PluginError::MemoryExceeded {
                limit_mb: (self.limits.memory_bytes >> 20) as u64,
            };
        }
        if is_copy_budget_exhausted(trap) {
            return PluginError::OutputOverBudget {
                limit: self.limits.max_output_bytes,
            };
        }
        let printed = state.stdio_text();
        if let Some(message) = failure_summary(&printed, toolchain) {
            return PluginError::Panic(message);
        }
        let mut reason = trap_summary(trap);
        if let Some(tail) = state.stdio_tail() {
            reason.push_str("; plugin output: ");
            reason.push_str(&tail);
        }
        PluginError::Trap(reason)
    }

    fn check_output(&self, outcome: Outcome) -> Result<Outcome, PluginError> {
        if let Outcome::Emit(outputs) = &outcome {
            let size: usize = outputs
                .iter()
                .map(|o| o.event.size_hint() + o.targets.iter().map(String::len).sum::<usize>())
                .sum();
            if size > self.limits.max_output_bytes {
                return Err(PluginError::OutputTooLarge {
                    size,
                    limit: self.limits.max_output_bytes,
                });
            }
        }
        Ok(outcome)
    }
}

/// The wall-clock bound when none is configured. A guest yields to the
/// others on every epoch tick, so with every slot busy a call that needs
/// `timeout` of CPU can take `max_concurrency / cores` times as long in wall
/// time. Twice that, at least a second, cuts only calls that blocked.
fn default_wall_timeout(timeout: Duration, max_concurrency: usize, cores: usize) -> Duration {
    let sharing = max_concurrency.div_ceil(cores.max(1)).max(1) as u32;
    (timeout * sharing * 2).max(Duration::from_secs(1))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Bytes the host may copy out of a guest in one call, counted as wasmtime
/// counts them (string bytes, and list lengths times the host element size):
/// twice the output cap, plus room for the bookkeeping of many small
/// outputs. The exact cap is checked on what was copied.
fn copy_budget(max_output_bytes: usize) -> usize {
    max_output_bytes.saturating_mul(2).saturating_add(1 << 20)
}

/// How many of `max_concurrency` call slots one plugin may hold: three
/// quarters, so one saturated plugin (a flood, calls that run to their
/// deadline) leaves a quarter of them to the other plugins together.
fn per_plugin_share(max_concurrency: usize) -> usize {
    (max_concurrency - max_concurrency / 4).max(1)
}

/// Advances the engines' epochs every [`TICK`] for as long as they live.
fn spawn_epoch_ticker(engines: Vec<wasmtime::EngineWeak>) {
    std::thread::Builder::new()
        .name("wasmhook-epoch".into())
        .spawn(move || {
            loop {
                let mut alive = false;
                for engine in engines.iter().filter_map(wasmtime::EngineWeak::upgrade) {
                    engine.increment_epoch();
                    alive = true;
                }
                if !alive {
                    return;
                }
                // This thread exists only to tick: sleeping is its job.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// The component's footprint, with wasmtime's exact count of memories and
/// tables where it has one (it knows which modules are instantiated).
fn footprint(wasm: &[u8], component: &Component) -> Result<Footprint, LoadError> {
    let mut fp = Footprint::of(wasm).map_err(|e| LoadError::NotAComponent(e.to_string()))?;
    if let Some(exact) = component.resources_required() {
        fp.memories = exact.num_memories;
        fp.tables = exact.num_tables;
    }
    Ok(fp)
}

/// wasmtime has its own error type; the router's edges speak anyhow.
fn wasm_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_wall_bound_outlasts_a_full_machine() {
        let ms = Duration::from_millis;
        assert_eq!(default_wall_timeout(ms(100), 64, 2), ms(6400));
        assert_eq!(default_wall_timeout(ms(100), 1, 2), ms(1000));
        assert_eq!(default_wall_timeout(ms(2000), 4, 8), ms(4000));
    }

    #[test]
    fn the_copy_budget_is_twice_the_cap_and_a_mebibyte() {
        assert_eq!(copy_budget(4 << 20), (9 << 20));
        assert_eq!(copy_budget(usize::MAX), usize::MAX);
    }

    #[test]
    fn only_the_js_and_python_runtimes_reset_their_whole_memory() {
        assert_eq!(Reset::of(Toolchain::Rust), Reset::DirtyPages);
        assert_eq!(Reset::of(Toolchain::Unknown), Reset::DirtyPages);
        assert_eq!(Reset::of(Toolchain::JavaScript), Reset::Whole);
        assert_eq!(Reset::of(Toolchain::Python), Reset::Whole);
        assert_ne!(Reset::DirtyPages.index(), Reset::Whole.index());
    }

    #[test]
    fn one_plugin_leaves_a_quarter_of_the_slots_to_the_others() {
        assert_eq!(per_plugin_share(1), 1);
        assert_eq!(per_plugin_share(4), 3);
        assert_eq!(per_plugin_share(64), 48);
    }
}
