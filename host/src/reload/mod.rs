//! Hot reload: plugins and the config file change on disk while the router
//! serves, and it picks them up without a restart.
//!
//! Invariants:
//! - Never worse than before: a new plugin or config that fails validation
//!   is rejected whole, logged, and the running version keeps serving.
//! - Loading happens off the hot path (compile on a blocking thread), and
//!   the swap is one atomic pointer store; events in flight keep the
//!   version they started with.
//! - A file still being written is not an error: a failed load is retried
//!   until the file's content has been unchanged for `plugins.settle_ms`,
//!   and only then reported.

mod config;
mod debounce;
mod plugins;
mod pushed;

pub use config::{apply_config, spawn_config_watcher};
pub use plugins::spawn_plugin_watcher;
pub use pushed::{Seen, spawn_pushed_plugins, sync_pushed};
