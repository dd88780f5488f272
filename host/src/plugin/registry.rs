//! The set of loaded plugins, by name, read-mostly and swapped atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;

use super::error::LoadError;
use super::runtime::{CompiledPlugin, PluginRuntime};
use crate::event::now_ms;

/// What `GET /api/plugins` and `wasmhook check` say about one plugin.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PluginStatus {
    pub name: String,
    pub path: PathBuf,
    /// Hex SHA-256 of the loaded `.wasm`; `None` when no version is loaded.
    pub version: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub loaded_at: Option<u64>,
    /// Why the last load failed, if it did.
    pub last_error: Option<String>,
}

/// Loaded plugins by name (the file stem of `plugins/NAME.wasm`).
///
/// Lookups are lock-free (`ArcSwap`); callers hold an `Arc<CompiledPlugin>`
/// for the length of a call, so a swap never disturbs an event in flight.
pub struct PluginRegistry {
    runtime: Arc<PluginRuntime>,
    loaded: ArcSwap<BTreeMap<String, Arc<CompiledPlugin>>>,
    // A std mutex: held only to read or write the map, never across an await.
    status: Mutex<BTreeMap<String, PluginStatus>>,
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
        }
    }

    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
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

    /// Compile, validate and install the plugin at `path`, replacing the loaded
    /// version of the same name only if the new one is good.
    pub async fn load_file(&self, path: &Path) -> Result<Arc<CompiledPlugin>, LoadError> {
        let Some(name) = plugin_name(path) else {
            return Err(LoadError::NotAComponent(format!(
                "{} is not a .wasm file",
                path.display()
            )));
        };
        let result = self.compile_file(&name, path).await;
        let mut status = self.status.lock().expect("status lock poisoned");
        let entry = status.entry(name.clone()).or_insert_with(|| PluginStatus {
            name: name.clone(),
            path: path.to_path_buf(),
            version: None,
            loaded_at: None,
            last_error: None,
        });
        match &result {
            Ok(plugin) => {
                entry.version = Some(plugin.version.clone());
                entry.loaded_at = Some(now_ms());
                entry.last_error = None;
                self.loaded.rcu(|map| {
                    let mut map = BTreeMap::clone(map);
                    map.insert(name.clone(), plugin.clone());
                    map
                });
                tracing::info!(plugin = %name, version = %&plugin.version[..12], "plugin loaded");
            }
            Err(e) => {
                entry.last_error = Some(e.to_string());
                tracing::error!(plugin = %name, path = %path.display(), "plugin rejected: {e}");
            }
        }
        result
    }

    async fn compile_file(
        &self,
        name: &str,
        path: &Path,
    ) -> Result<Arc<CompiledPlugin>, LoadError> {
        let wasm = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Read {
                path: path.display().to_string(),
                source,
            })?;
        let runtime = self.runtime.clone();
        let owned_name = name.to_string();
        let plugin = tokio::task::spawn_blocking(move || runtime.compile(&owned_name, &wasm))
            .await
            .map_err(|e| LoadError::Instantiate(format!("compiler thread failed: {e}")))??;
        self.runtime.smoke_test(&plugin).await?;
        Ok(Arc::new(plugin))
    }

    /// The loaded plugin called `name`, if any.
    pub fn get(&self, name: &str) -> Option<Arc<CompiledPlugin>> {
        self.loaded.load().get(name).cloned()
    }

    /// Status of every plugin seen, loaded or not, by name.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.status
            .lock()
            .expect("status lock poisoned")
            .values()
            .cloned()
            .collect()
    }
}

/// `plugins/NAME.wasm` → `NAME`; `None` for other files.
pub fn plugin_name(path: &Path) -> Option<String> {
    if path.extension()? != "wasm" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    (!stem.is_empty() && !stem.starts_with('.')).then(|| stem.to_string())
}
