//! The set of loaded plugins, by name, read-mostly and swapped atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use super::error::{LoadError, PluginError};
use super::footprint::Footprint;
use super::runtime::{CompiledPlugin, PluginRuntime};
use super::trial::{Trials, Verdict, is_breakage, marked_plugin, short, trial_marker};
use crate::event::now_ms;
use crate::verify::encode_hex as hex;

/// What `GET /api/plugins` and `wasmhook check` say about one plugin.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PluginStatus {
    pub name: String,
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// Hex SHA-256 of the loaded `.wasm`; `None` when no version is loaded.
    pub version: Option<String>,
    /// When the loaded version was loaded, in milliseconds since the Unix epoch.
    pub loaded_at: Option<u64>,
    /// Whether the loaded version came from the compiled-plugin cache.
    pub from_cache: bool,
    /// Why the last load of this file failed, if it did. The loaded version
    /// (if any) is still the one serving.
    pub last_error: Option<String>,
    /// Set when a new version broke on its first calls and the version it
    /// had replaced was put back: says which and why. Cleared by the next
    /// version that loads.
    pub rolled_back: Option<String>,
    /// What built the loaded version (`Rust`, `JavaScript`, `Python`, or
    /// `unknown`), from its producers section.
    pub language: Option<&'static str>,
    /// What one instance of the loaded version takes from the instance pool.
    pub footprint: Option<Footprint>,
}

/// What a successful load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadReport {
    /// A new version is serving; `previous` is the version it replaced.
    Loaded {
        version: String,
        previous: Option<String>,
        from_cache: bool,
    },
    /// The file holds the version already serving: nothing to do.
    Unchanged,
}

/// Loaded plugins by name (the file stem of `plugins/NAME.wasm`).
///
/// Lookups are lock-free (`ArcSwap`); callers hold an `Arc<CompiledPlugin>`
/// for the length of a call, so a swap never disturbs an event in flight: it
/// finishes on the version it started with.
pub struct PluginRegistry {
    runtime: Arc<PluginRuntime>,
    loaded: ArcSwap<BTreeMap<String, Arc<CompiledPlugin>>>,
    // A std mutex: held only to read or write the map, never across an await.
    status: Mutex<BTreeMap<String, PluginStatus>>,
    /// Names of plugins as they become loaded, for re-running what waited
    /// on them (and trial markers, when a trial ends).
    loads: broadcast::Sender<String>,
    /// New versions on trial, with the versions they replaced.
    trials: Trials,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("loaded", &self.loaded.load().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PluginRegistry {
    pub fn new(runtime: Arc<PluginRuntime>) -> Self {
        PluginRegistry {
            runtime,
            loaded: ArcSwap::default(),
            status: Mutex::default(),
            loads: broadcast::channel(256).0,
            trials: Trials::default(),
        }
    }

    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

    /// Names of plugins as they load (initially and on every reload).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.loads.subscribe()
    }

    /// Load every `*.wasm` in `dir`. A file that fails to load is recorded in
    /// its status and logged; the others still load. A missing folder is an error.
    pub async fn load_dir(&self, dir: &Path) -> std::io::Result<()> {
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if plugin_name(&path).is_some() {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            // The error is recorded and logged by `load_file`.
            let _ = self.load_file(&path).await;
        }
        Ok(())
    }

    /// Load the plugin at `path`, recording a failure in its status.
    pub async fn load_file(&self, path: &Path) -> Result<Arc<CompiledPlugin>, LoadError> {
        let name = name_of(path)?;
        match self.try_load(path).await {
            Ok(_) => Ok(self.get(&name).expect("just loaded")),
            Err(e) => {
                self.record_error(path, &e);
                Err(e)
            }
        }
    }

    /// Compile, validate and install the plugin at `path`, replacing the loaded
    /// version of the same name only if the new one is good. A failure changes
    /// nothing, not even the status: the caller decides whether to report it
    /// (a file still being copied in fails too, and is no error).
    pub async fn try_load(&self, path: &Path) -> Result<LoadReport, LoadError> {
        let name = name_of(path)?;
        let wasm = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Read {
                path: path.display().to_string(),
                source,
            })?;
        let serving = self.get(&name);
        let previous = serving.as_ref().map(|p| p.version.clone());
        if previous.as_deref() == Some(hex(&Sha256::digest(&wasm)).as_str()) {
            // The file holds the serving version again (a bad file was put
            // back right): an error about the bad one is stale now.
            if let Some(status) = self
                .status
                .lock()
                .expect("status lock poisoned")
                .get_mut(&name)
                .filter(|s| s.last_error.is_some())
            {
                status.last_error = None;
                tracing::info!(plugin = %name, "plugin file restored to the loaded version");
            }
            return Ok(LoadReport::Unchanged);
        }
        let runtime = self.runtime.clone();
        let owned_name = name.clone();
        let (mut plugin, from_cache) =
            tokio::task::spawn_blocking(move || runtime.compile(&owned_name, &wasm))
                .await
                .map_err(|e| LoadError::Instantiate(format!("compiler thread failed: {e}")))??;
        self.runtime.smoke_test(&mut plugin).await?;
        let plugin = Arc::new(plugin);
        let version = plugin.version.clone();
        self.loaded.rcu(|map| {
            let mut map = BTreeMap::clone(map);
            map.insert(name.clone(), plugin.clone());
            map
        });
        self.status.lock().expect("status lock poisoned").insert(
            name.clone(),
            PluginStatus {
                name: name.clone(),
                path: path.to_path_buf(),
                version: Some(version.clone()),
                loaded_at: Some(now_ms()),
                from_cache,
                last_error: None,
                rolled_back: None,
                language: Some(plugin.toolchain.label()),
                footprint: Some(plugin.footprint),
            },
        );
        // A version that replaces a working one is on trial until a call
        // succeeds; one that breaks on every call is rolled back.
        match serving.filter(|p| p.has_succeeded()) {
            Some(working) => self.trials.start(&name, &version, working),
            None => self.trials.cancel(&name),
        }
        match &previous {
            None => {
                tracing::info!(plugin = %name, version = %short(&version), from_cache, "plugin loaded")
            }
            Some(old) => {
                tracing::info!(plugin = %name, version = %short(&version), previous = %short(old), from_cache, "plugin swapped")
            }
        }
        // Nobody listening is fine: nothing waits on this plugin.
        let _ = self.loads.send(name);
        Ok(LoadReport::Loaded {
            version,
            previous,
            from_cache,
        })
    }

    /// Record and log why the file at `path` could not be loaded. The loaded
    /// version, if any, keeps serving.
    pub fn record_error(&self, path: &Path, error: &LoadError) {
        let Ok(name) = name_of(path) else { return };
        let kept = self.get(&name).map(|p| short(&p.version).to_string());
        let mut status = self.status.lock().expect("status lock poisoned");
        let entry = status.entry(name.clone()).or_insert_with(|| PluginStatus {
            name: name.clone(),
            path: path.to_path_buf(),
            version: None,
            loaded_at: None,
            from_cache: false,
            last_error: None,
            rolled_back: None,
            language: None,
            footprint: None,
        });
        entry.last_error = Some(error.to_string());
        match kept {
            Some(v) => {
                tracing::error!(plugin = %name, path = %path.display(), kept_version = %v, "plugin rejected, keeping the loaded version: {error}")
            }
            None => {
                tracing::error!(plugin = %name, path = %path.display(), "plugin rejected: {error}")
            }
        }
    }

    /// Unload `name` (its file is gone). Events in flight finish on it; new
    /// events on routes that need it fail as "not loaded" and are kept.
    pub fn unload(&self, name: &str) -> bool {
        self.trials.cancel(name);
        let mut removed = false;
        self.loaded.rcu(|map| {
            let mut map = BTreeMap::clone(map);
            removed = map.remove(name).is_some();
            map
        });
        let had_status = self
            .status
            .lock()
            .expect("status lock poisoned")
            .remove(name)
            .is_some();
        if removed || had_status {
            tracing::info!(plugin = %name, "plugin unloaded: its file was removed");
        }
        removed
    }

    /// Count a finished call of `plugin` towards its trial, if it is on one,
    /// and act on the verdict. Returns what a route that failed with `result`
    /// should wait for, if anything: the end of the trial.
    pub fn record_call(
        &self,
        plugin: &CompiledPlugin,
        error: Option<&PluginError>,
    ) -> Option<String> {
        if error.is_none() {
            plugin.mark_succeeded();
        }
        let held = error.is_some_and(is_breakage) && self.trials.holds(plugin);
        let name = plugin.name.to_string();
        match self.trials.record(plugin, error) {
            None => {}
            Some(Verdict::Passed) => {
                tracing::info!(plugin = %name, version = %short(&plugin.version), "plugin passed its trial");
                let _ = self.loads.send(trial_marker(&name));
            }
            Some(Verdict::RolledBack { previous, reason }) => {
                self.roll_back(&name, previous, &reason)
            }
        }
        held.then(|| trial_marker(&name))
    }

    fn roll_back(&self, name: &str, previous: Arc<CompiledPlugin>, reason: &str) {
        let mut restored = false;
        self.loaded.rcu(|map| {
            let mut map = BTreeMap::clone(map);
            // Only if the version on trial is still the one serving.
            restored = map.get(name).is_some_and(|p| p.version != previous.version);
            if restored {
                map.insert(name.to_string(), previous.clone());
            }
            map
        });
        if !restored {
            return;
        }
        if let Some(status) = self
            .status
            .lock()
            .expect("status lock poisoned")
            .get_mut(name)
        {
            status.version = Some(previous.version.clone());
            status.loaded_at = Some(now_ms());
            status.last_error = Some(format!("rolled back: {reason}"));
            status.rolled_back = Some(reason.to_string());
            status.language = Some(previous.toolchain.label());
            status.footprint = Some(previous.footprint);
        }
        tracing::error!(plugin = %name, "plugin rolled back: {reason}");
        let _ = self.loads.send(trial_marker(name));
    }

    /// Whether routes waiting for `waiting_for` (a plugin name, or a trial
    /// marker) can run now.
    pub fn is_ready(&self, waiting_for: &str) -> bool {
        match marked_plugin(waiting_for) {
            Some(name) => self.get(name).is_some_and(|p| !self.trials.is_on_trial(&p)),
            None => self.get(waiting_for).is_some(),
        }
    }

    /// The loaded plugin called `name`, if any.
    pub fn get(&self, name: &str) -> Option<Arc<CompiledPlugin>> {
        self.loaded.load().get(name).cloned()
    }

    /// Status of every plugin file seen, loaded or not, by name.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.status
            .lock()
            .expect("status lock poisoned")
            .values()
            .cloned()
            .collect()
    }
}

/// `plugins/NAME.wasm` → `NAME`; `None` for other files (and hidden ones).
pub fn plugin_name(path: &Path) -> Option<String> {
    if path.extension()? != "wasm" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    (!stem.is_empty() && !stem.starts_with('.')).then(|| stem.to_string())
}

fn name_of(path: &Path) -> Result<String, LoadError> {
    plugin_name(path)
        .ok_or_else(|| LoadError::NotAComponent(format!("{} is not a .wasm file", path.display())))
}
