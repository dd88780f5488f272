//! wasmhook: a WebAssembly-pluggable webhook router.
//!
//! Data flows one way: `ingest` → `store` → `pipeline` (routes + plugins) →
//! `store` (deliveries) → `dispatch` (signed HTTP). `plugin` owns everything
//! wasmtime; `config` turns TOML into typed settings; `server` wires it all.
//! See ARCHITECTURE.md for the map and the invariants.

pub mod cli;
pub mod config;
pub mod dispatch;
pub mod event;
pub mod ingest;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod reload;
pub mod secret;
pub mod server;
pub mod store;
pub mod tail;
pub mod telemetry;
pub mod verify;
