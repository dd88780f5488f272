use thiserror::Error;

/// Why a plugin could not handle an event. Recorded on the event's route; the
/// event stays replayable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PluginError {
    #[error("plugin {0} is not loaded")]
    NotLoaded(String),
    #[error("plugin exceeded its {limit_ms} ms execution deadline")]
    Timeout { limit_ms: u64 },
    /// Blocked (a sleep, a poll) or starved for CPU: time passed, not code.
    #[error(
        "plugin did not finish within {limit_ms} ms of wall-clock time (plugins.wall_timeout_ms): it blocked, e.g. in a sleep"
    )]
    WallTimeout { limit_ms: u64 },
    #[error("plugin exceeded its memory cap of {limit_mb} MiB")]
    MemoryExceeded { limit_mb: u64 },
    #[error("plugin output is {size} bytes, above the cap of {limit} bytes")]
    OutputTooLarge { size: usize, limit: usize },
    /// Refused while being copied out of the plugin, before it all was.
    #[error(
        "plugin output is above the cap of {limit} bytes (refused while it was being copied out)"
    )]
    OutputOverBudget { limit: usize },
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// A panic or an uncaught exception: the message the plugin gave, and
    /// where, as its language prints it.
    #[error("plugin {0}")]
    Panic(String),
    #[error("plugin returned an error: {0}")]
    Failed(String),
}

impl PluginError {
    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::NotLoaded(_) => "not_loaded",
            PluginError::Timeout { .. } => "timeout",
            PluginError::WallTimeout { .. } => "wall_timeout",
            PluginError::MemoryExceeded { .. } => "memory",
            PluginError::OutputTooLarge { .. } | PluginError::OutputOverBudget { .. } => {
                "output_too_large"
            }
            PluginError::Trap(_) => "trap",
            PluginError::Panic(_) => "panic",
            PluginError::Failed(_) => "error",
        }
    }
}

/// Why a `.wasm` file could not be loaded as a plugin.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Holds the reason and how to build one with the file's toolchain.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("does not fit the wasmhook:plugin world: {0}")]
    WrongWorld(String),
    #[error("fails to instantiate: {0}")]
    Instantiate(String),
    #[error("does not fit the instance pool: {0}")]
    TooLarge(String),
}
