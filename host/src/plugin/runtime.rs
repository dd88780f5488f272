//! The wasmtime engine, and one plugin call on one event.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime::{Store, UpdateDeadline};

use super::cache::CompileCache;
use super::error::{LoadError, PluginError};
use super::host::{CallState, Plugin, PluginPre, wire};
use crate::config::PluginLimits;
use crate::event::{Event, Outcome, Output};

/// How often the epoch ticker advances the engine's epoch. Every tick, a
/// running guest yields to tokio and one tick of its deadline is used up.
const TICK: Duration = Duration::from_millis(2);

/// A plugin compiled and linked, ready to instantiate per event.
pub struct CompiledPlugin {
    pub name: Arc<str>,
    /// Hex SHA-256 of the `.wasm` bytes.
    pub version: String,
    pre: PluginPre<CallState>,
    /// This plugin's share of the call slots: a saturated plugin leaves
    /// the rest to the others.
    calls: Arc<Semaphore>,
    /// Whether a call of this version has ever succeeded: a version that
    /// worked is one worth rolling back to.
    succeeded: std::sync::atomic::AtomicBool,
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

/// The engine shared by every plugin, with its linker and limits.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<CallState>,
    limits: PluginLimits,
    ticks: u64,
    /// `limits.wall_timeout`, or the default for this machine.
    wall_timeout: Duration,
    /// Bounds concurrent calls to what the pooling allocator was sized for;
    /// callers wait for a slot rather than fail.
    slots: Arc<Semaphore>,
    cache: Option<CompileCache>,
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
        let slots = limits.max_concurrency.max(1);
        // Each call needs one component instance. A Rust wasip2 component has
        // a handful of core instances, memories and tables; the extra
        // instances are for `check`-style validation instantiations.
        let instances = u32::try_from(slots + 8)?;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .total_stacks(instances)
            .max_memory_size(limits.memory_bytes)
            // Reuse warm pages across calls instead of faulting them in anew:
            // measured 42 µs vs 81–149 µs per fresh instance on a 1 KiB body.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(Enabled::Auto);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(wasm_err)?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasm_err)?;
        Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(wasm_err)?;

        let ticks = (limits.timeout.as_millis() / TICK.as_millis()).max(1) as u64;
        Ok(PluginRuntime {
            cache: cache_dir.map(|dir| CompileCache::new(dir, &engine)),
            engine,
            linker,
            slots: Arc::new(Semaphore::new(slots)),
            ticks,
            wall_timeout: limits.wall_timeout.unwrap_or_else(|| {
                default_wall_timeout(limits.timeout, limits.max_concurrency, cores())
            }),
            limits,
        })
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Compile (or fetch from the on-disk cache) and link a plugin. CPU-heavy
    /// on a cache miss (tens to hundreds of ms): call it from a blocking thread.
    /// Returns the plugin and whether it came from the cache.
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<(CompiledPlugin, bool), LoadError> {
        check_component_header(wasm)?;
        let version = hex(&Sha256::digest(wasm));
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&self.engine, &version));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, wasm)
                    .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
                if let Some(cache) = &self.cache {
                    cache.put(&version, &c);
                }
                c
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let pre = PluginPre::new(pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        Ok((
            CompiledPlugin {
                name: name.into(),
                version,
                pre,
                calls: Arc::new(Semaphore::new(per_plugin_share(
                    self.limits.max_concurrency,
                ))),
                succeeded: Default::default(),
            },
            from_cache,
        ))
    }

    /// Instantiate once without calling anything: catches a plugin that traps
    /// in its start function before it is put in service.
    pub async fn smoke_test(&self, plugin: &CompiledPlugin) -> Result<(), LoadError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("semaphore is never closed");
        let mut store = self.store(plugin, String::from("smoke-test"), 0, Arc::from([]));
        plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map(drop)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))
    }

    /// Run `plugin` on `event` in a fresh instance, within the limits.
    pub async fn invoke(
        &self,
        plugin: &CompiledPlugin,
        event: &Event,
        config: Arc<[(String, String)]>,
    ) -> Result<Outcome, PluginError> {
        // This plugin's share first, then a slot: a call waiting for its
        // plugin's share never holds a slot another plugin could use.
        let _share = plugin
            .calls
            .acquire()
            .await
            .expect("semaphore is never closed");
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("semaphore is never closed");
        let mut store = self.store(plugin, event.id.clone(), event.received_at, config);
        // Epoch ticks count only while guest code runs; a guest blocked in a
        // host call (a sleep, a poll) would hold its slot for as long as it
        // liked. The wall-clock bound drops the call, and with it the
        // instance, wherever it is.
        let call = async {
            match plugin.pre.instantiate_async(&mut store).await {
                Ok(instance) => instance.call_handle(&mut store, &to_wire(event)).await,
                Err(e) => Err(e),
            }
        };
        let result = tokio::time::timeout(self.wall_timeout, call).await;
        let state = store.data();
        state.flush_stdio();
        let Ok(result) = result else {
            return Err(PluginError::WallTimeout {
                limit_ms: self.wall_timeout.as_millis() as u64,
            });
        };
        match result {
            Err(trap) => Err(self.classify(state, &trap)),
            Ok(Err(message)) => Err(PluginError::Failed(message)),
            Ok(Ok(outcome)) => self.check_output(from_wire(outcome)),
        }
    }

    fn store(
        &self,
        plugin: &CompiledPlugin,
        event_id: String,
        received_at: u64,
        config: Arc<[(String, String)]>,
    ) -> Store<CallState> {
        let state = CallState::new(
            plugin.name.clone(),
            event_id,
            received_at,
            config,
            self.limits.memory_bytes,
            self.ticks,
        );
        let mut store = Store::new(&self.engine, state);
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

    fn classify(&self, state: &CallState, trap: &wasmtime::Error) -> PluginError {
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

/// Whether wasmtime stopped copying out of the guest because the budget of
/// [`copy_budget`] ran out. Its error type is private; its message is not.
fn is_copy_budget_exhausted(error: &wasmtime::Error) -> bool {
    format!("{error:#}").contains("fuel allocated for hostcalls has been exhausted")
}

/// How many of `max_concurrency` call slots one plugin may hold: three
/// quarters, so one saturated plugin (a flood, calls that run to their
/// deadline) leaves a quarter of them to the other plugins together.
fn per_plugin_share(max_concurrency: usize) -> usize {
    (max_concurrency - max_concurrency / 4).max(1)
}

/// Advances the epoch every [`TICK`] for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasmhook-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                // This thread exists only to tick: sleeping is its job.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// A clear error for the common wrong files, before wasmtime's parser speaks.
fn check_component_header(wasm: &[u8]) -> Result<(), LoadError> {
    if wasm.is_empty() {
        return Err(LoadError::NotAComponent("the file is empty".into()));
    }
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(LoadError::NotAComponent(
            "the file is not WebAssembly (no \\0asm header)".into(),
        ));
    }
    if wasm[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::NotAComponent(
            "this is a core WebAssembly module, not a component".into(),
        ));
    }
    Ok(())
}

/// The trap's message and the innermost guest frames, on one line.
fn trap_summary(trap: &wasmtime::Error) -> String {
    let mut summary = trap
        .downcast_ref::<wasmtime::Trap>()
        .map(|t| t.to_string())
        .unwrap_or_else(|| trap.to_string());
    if let Some(bt) = trap.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames: Vec<String> = bt
            .frames()
            .iter()
            .take(3)
            .map(|f| f.func_name().unwrap_or("?").to_string())
            .collect();
        if !frames.is_empty() {
            summary.push_str(" at ");
            summary.push_str(&frames.join(" <- "));
        }
    }
    summary
}

/// wasmtime has its own error type; the router's edges speak anyhow.
fn wasm_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_wire(event: &Event) -> wire::Event {
    wire::Event {
        id: event.id.clone(),
        source: event.source.clone(),
        event_type: event.event_type.clone(),
        received_at: event.received_at,
        headers: event.headers.clone(),
        body: event.body.to_vec(),
    }
}

fn from_wire(outcome: wire::Outcome) -> Outcome {
    match outcome {
        wire::Outcome::Drop(reason) => Outcome::Drop { reason },
        wire::Outcome::Emit(outputs) => Outcome::Emit(
            outputs
                .into_iter()
                .map(|o| Output {
                    event: Event {
                        id: o.event.id,
                        source: o.event.source,
                        event_type: o.event.event_type,
                        received_at: o.event.received_at,
                        headers: o.event.headers,
                        body: o.event.body.into(),
                    },
                    targets: o.targets,
                })
                .collect(),
        ),
    }
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
    fn one_plugin_leaves_a_quarter_of_the_slots_to_the_others() {
        assert_eq!(per_plugin_share(1), 1);
        assert_eq!(per_plugin_share(4), 3);
        assert_eq!(per_plugin_share(64), 48);
    }
}
