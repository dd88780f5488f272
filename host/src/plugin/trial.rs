//! A new version on trial: when its first calls all break (trap, run out of
//! time or memory) while the version it replaced had been working, the
//! working version is put back.
//!
//! The load check instantiates a plugin but calls nothing, so a plugin that
//! panics in a static constructor (run on the first call) passes it. Without
//! a trial it would replace a good version and fail every event from then on.
//!
//! Routes that break during a trial are recorded as waiting for
//! [`trial_marker`] of the plugin, and re-run when the trial ends: on the
//! restored version after a rollback, on the new one when it passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::error::PluginError;
use super::runtime::CompiledPlugin;

/// Calls that decide a trial: the first success passes it, this many
/// breakages in a row fail it.
pub const TRIAL_CALLS: u32 = 5;

/// What routes that broke during a plugin's trial wait for.
pub fn trial_marker(plugin: &str) -> String {
    format!("{plugin}#trial")
}

/// The plugin a [`trial_marker`] names.
pub fn marked_plugin(waiting_for: &str) -> Option<&str> {
    waiting_for.strip_suffix("#trial")
}

/// Whether an error means the plugin is broken, as opposed to an answer
/// (an `Err` it returned, an output over the cap) or a missing plugin.
pub fn is_breakage(error: &PluginError) -> bool {
    matches!(
        error,
        PluginError::Trap(_)
            | PluginError::Panic(_)
            | PluginError::Timeout { .. }
            | PluginError::WallTimeout { .. }
            | PluginError::MemoryExceeded { .. }
    )
}

struct Trial {
    /// The version on trial.
    version: String,
    /// The version it replaced, to put back.
    previous: Arc<CompiledPlugin>,
    breakages: u32,
}

/// How a call ended a trial.
pub enum Verdict {
    Passed,
    /// Put `previous` back; `reason` says why.
    RolledBack {
        previous: Arc<CompiledPlugin>,
        reason: String,
    },
}

/// The trials under way, by plugin name, and the versions rolled back.
#[derive(Default)]
pub struct Trials {
    // std mutexes: held to read or update a map entry, never across an await.
    running: Mutex<HashMap<String, Trial>>,
    /// The last version of each plugin that was rolled back: calls already
    /// running on it when it was rolled back broke too, and their routes are
    /// re-run as well.
    rolled_back: Mutex<HashMap<String, String>>,
}

impl Trials {
    /// Put `version` of `name` on trial, replacing any trial under way.
    pub fn start(&self, name: &str, version: &str, previous: Arc<CompiledPlugin>) {
        self.forget_rollback(name);
        self.running.lock().expect("trials lock poisoned").insert(
            name.to_string(),
            Trial {
                version: version.to_string(),
                previous,
                breakages: 0,
            },
        );
    }

    /// End any trial of `name` without a verdict (the file was replaced or
    /// removed).
    pub fn cancel(&self, name: &str) {
        self.forget_rollback(name);
        self.running
            .lock()
            .expect("trials lock poisoned")
            .remove(name);
    }

    fn forget_rollback(&self, name: &str) {
        self.rolled_back
            .lock()
            .expect("trials lock poisoned")
            .remove(name);
    }

    pub fn is_on_trial(&self, plugin: &CompiledPlugin) -> bool {
        self.running
            .lock()
            .expect("trials lock poisoned")
            .get(&*plugin.name)
            .is_some_and(|t| t.version == plugin.version)
    }

    /// Whether a breakage of `plugin` waits for a trial's verdict: it is on
    /// trial, or it is the version just rolled back (a call that was still
    /// running on it).
    pub fn holds(&self, plugin: &CompiledPlugin) -> bool {
        self.is_on_trial(plugin)
            || self
                .rolled_back
                .lock()
                .expect("trials lock poisoned")
                .get(&*plugin.name)
                .is_some_and(|v| *v == plugin.version)
    }

    /// Count a call of `plugin`; a verdict when it ends a trial.
    pub fn record(&self, plugin: &CompiledPlugin, error: Option<&PluginError>) -> Option<Verdict> {
        let mut running = self.running.lock().expect("trials lock poisoned");
        let trial = running
            .get_mut(&*plugin.name)
            .filter(|t| t.version == plugin.version)?;
        match error {
            None => {
                running.remove(&*plugin.name);
                Some(Verdict::Passed)
            }
            Some(e) if is_breakage(e) => {
                trial.breakages += 1;
                if trial.breakages < TRIAL_CALLS {
                    return None;
                }
                let trial = running.remove(&*plugin.name).expect("just seen");
                self.rolled_back
                    .lock()
                    .expect("trials lock poisoned")
                    .insert(plugin.name.to_string(), trial.version.clone());
                Some(Verdict::RolledBack {
                    reason: format!(
                        "version {} broke on its first {TRIAL_CALLS} calls ({e}); version {} restored",
                        short(&trial.version),
                        short(&trial.previous.version),
                    ),
                    previous: trial.previous,
                })
            }
            // An answer, not a breakage: no evidence either way.
            Some(_) => None,
        }
    }
}

pub fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_name_their_plugin_and_only_breakages_count() {
        assert_eq!(marked_plugin(&trial_marker("p")), Some("p"));
        assert_eq!(marked_plugin("p"), None);
        assert!(is_breakage(&PluginError::Trap("x".into())));
        assert!(is_breakage(&PluginError::Timeout { limit_ms: 1 }));
        assert!(!is_breakage(&PluginError::Failed("bad input".into())));
        assert!(!is_breakage(&PluginError::NotLoaded("p".into())));
    }
}
