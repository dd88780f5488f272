//! Watch `plugins.dir` and load, swap or unload plugins as files change.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::debounce::{Pending, sleep_until, watch_dir};
use crate::plugin::{PluginRegistry, plugin_name};

/// Start watching `dir`. Create, modify, rename-into-place and remove of
/// `*.wasm` files are all handled; other files are ignored.
pub fn spawn_plugin_watcher(
    dir: &Path,
    registry: Arc<PluginRegistry>,
    debounce: Duration,
    settle: Duration,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    let (watcher, mut events) = watch_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot watch the plugins folder {}: {e}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "watching plugins for changes");
    tracker.spawn(async move {
        let _watcher = watcher; // dropping it stops the watch
        let mut pending = Pending::default();
        loop {
            tokio::select! {
                path = events.recv() => match path {
                    Some(path) if plugin_name(&path).is_some() => {
                        pending.schedule(path, tokio::time::Instant::now() + debounce);
                    }
                    Some(_) => {}
                    None => return,
                },
                () = sleep_until(pending.next_due()) => {
                    for path in pending.take_due(tokio::time::Instant::now()) {
                        if let Some(retry_in) = apply(&registry, &path, settle).await {
                            pending.schedule(path, tokio::time::Instant::now() + retry_in);
                        }
                    }
                }
                () = cancel.cancelled() => return,
            }
        }
    });
    Ok(())
}

/// Bring the registry in line with the file at `path`. Returns when to look
/// again if the file may still be being written.
async fn apply(registry: &PluginRegistry, path: &Path, settle: Duration) -> Option<Duration> {
    let name = plugin_name(path)?;
    if !path.exists() {
        registry.unload(&name);
        return None;
    }
    match registry.try_load(path).await {
        Ok(_) => None,
        Err(e) => match unsettled_for(path, settle) {
            Some(wait) => {
                tracing::debug!(plugin = %name, "load failed while the file is still changing ({e}); retrying in {wait:?}");
                Some(wait)
            }
            None => {
                registry.record_error(path, &e);
                None
            }
        },
    }
}

/// How much longer until the file has been unchanged for `settle`, if it has
/// not been yet.
fn unsettled_for(path: &Path, settle: Duration) -> Option<Duration> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    settle.checked_sub(age).filter(|d| !d.is_zero())
}
