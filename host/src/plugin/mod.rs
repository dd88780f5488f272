//! Everything wasmtime: compiling plugins, and running one plugin on one event.
//!
//! This is the only module that imports wasmtime (Spin's "narrow the flexibility
//! of wasmtime to the set of features we use"). The rest of the router sees
//! [`PluginRuntime`], [`PluginRegistry`] and plain [`crate::event`] types.
//!
//! Invariants:
//! - Every call runs in a fresh instance made from a pre-instantiated component
//!   (`InstancePre`): no state survives from one event to the next.
//! - Every call is bounded: an execution deadline (epoch ticks), a memory cap
//!   (a `ResourceLimiter`), an output size cap, and a concurrency cap that keeps
//!   the pooling allocator from running out of slots.
//! - A guest can reach only `log` and its own route config. WASI is linked so
//!   that Rust's std works, but with no preopened directories, no environment,
//!   no arguments, no network and no stdin; stdout/stderr are captured into
//!   memory (bounded) and written to the log tagged with the plugin's name.
//! - Plugin work never blocks the async runtime: guests yield to tokio on every
//!   epoch tick.

mod cache;
mod determinism;
mod error;
mod failure;
mod footprint;
mod host;
mod pool;
mod registry;
mod runtime;
mod stdio;
mod trial;
mod warm;

pub use error::{LoadError, PluginError};
pub use footprint::{Footprint, Toolchain};
pub use host::LogLine;
pub use registry::{LoadReport, PluginRegistry, PluginStatus, plugin_name};
pub use runtime::{CompiledPlugin, PluginRuntime, TryRun};
pub use trial::{TRIAL_CALLS, trial_marker};
