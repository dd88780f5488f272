//! The router's configuration: TOML on disk → validated, typed [`Config`].
//!
//! Two stages, as in ripgrep's LowArgs → HiArgs: `file` holds the serde
//! structs that mirror the TOML exactly (unknown keys are errors), and
//! `validate` turns them into the runtime types the rest of the router uses,
//! checking every cross-reference (routes → sources, targets, plugins).
//!
//! Every error names the file, the line and the key, and says what to do.
//! `${ENV_VAR}` is substituted inside string values only (never in the TOML
//! syntax around them), so a secret cannot change the config's structure.

mod env;
mod file;
mod types;
mod validate;
mod values;

pub use types::{
    Circuit, Config, ConfigError, DEFAULT_RETRY_SCHEDULE, DeliveryOrder, Endpoint, EventTypeRule,
    OrderKey, PluginLimits, PluginStep, PluginsConfig, RateLimit, Route, Secret, ServerConfig,
    Source, StorageConfig, StorageUrl, Target, TelemetryConfig,
};
pub use values::{decode_whsec, parse_duration};

use std::path::Path;
use std::sync::Arc;

/// The running configuration: read per request, swapped whole on reload.
pub type LiveConfig = Arc<arc_swap::ArcSwap<Config>>;

/// Read, parse and validate the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_path_buf(),
        line: None,
        key: String::new(),
        message: format!("cannot read the config file: {e} (pass another with --config PATH)"),
    })?;
    parse(path, &text)
}

/// A plugin's config from a TOML table of keys, as a route's `config = { … }`
/// holds it (for `wasmhook plugin run --config-file`).
pub fn plugin_config_from_toml(text: &str) -> Result<Arc<[(String, String)]>, String> {
    let table: std::collections::BTreeMap<String, toml::Value> =
        toml::from_str(text).map_err(|e| e.to_string())?;
    values::plugin_config(table)
}

/// Parse and validate config text; `path` is used for error messages and to
/// resolve relative paths (relative to the file's folder).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: file::RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
    validate::validate(path, text, raw)
}

#[cfg(test)]
mod tests;
