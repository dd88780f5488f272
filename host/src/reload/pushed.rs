//! Plugins pushed to the shared PostgreSQL database (`wasmhook plugin
//! push`): each node writes them into its own `plugins.dir` (so they also
//! survive a restart that finds the database down) and loads them, then
//! waits for the next push. The database is the cluster's truth: a pushed
//! plugin replaces a local file of the same name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::plugin::PluginRegistry;
use crate::store::PostgresStore;

/// Versions this node has installed, by plugin name.
pub type Seen = HashMap<String, i64>;

/// Install every pushed plugin newer than `seen`.
pub async fn sync_pushed(
    store: &PostgresStore,
    dir: &Path,
    registry: &PluginRegistry,
    seen: &mut Seen,
) {
    let pushed = match store.pushed_plugins(seen).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot read the pushed plugins: {e}; trying again later");
            return;
        }
    };
    for (name, version, wasm) in pushed {
        match install(dir, &name, &wasm) {
            Ok(path) => {
                if registry.load_file(&path).await.is_ok() {
                    tracing::info!(plugin = %name, version, "pushed plugin installed");
                }
            }
            Err(e) => tracing::error!(plugin = %name, version,
                "cannot write the pushed plugin into plugins.dir: {e}"),
        }
        // A version that does not load is not retried until the next push.
        seen.insert(name, version);
    }
}

/// Write `NAME.wasm` into `dir` (through a temporary name, so the file
/// watcher never sees half a file), unless it holds these bytes already.
fn install(dir: &Path, name: &str, wasm: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{name}.wasm"));
    let same = std::fs::read(&path).is_ok_and(|old| Sha256::digest(&old) == Sha256::digest(wasm));
    if !same {
        let tmp = dir.join(format!(".{name}.wasm.pushed"));
        std::fs::write(&tmp, wasm)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

/// Keep installing pushes until `cancel`.
pub fn spawn_pushed_plugins(
    store: Arc<PostgresStore>,
    dir: PathBuf,
    registry: Arc<PluginRegistry>,
    mut seen: Seen,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = store.plugins_changed() => {}
                () = cancel.cancelled() => return,
            }
            sync_pushed(&store, &dir, &registry, &mut seen).await;
        }
    });
}
