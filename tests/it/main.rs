//! End-to-end tests: the real `wasmhook` binary, real plugins built from
//! source (`cargo xtask build-plugins`), and a real HTTP target on 127.0.0.1.

mod cli;
mod delivery;
mod hostile;
mod ingest;
mod plugins;

use std::time::Duration;

/// Generous: CI machines are small, and a timeout here only bounds a failure.
pub const WAIT: Duration = Duration::from_secs(20);
