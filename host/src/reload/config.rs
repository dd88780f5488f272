//! Reload `wasmhook.toml` on SIGHUP and when the file changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::debounce::{Pending, sleep_until, watch_dir};
use crate::config::{self, Config, LiveConfig};
use crate::dispatch::Dispatcher;

const DEBOUNCE: Duration = Duration::from_millis(200);

/// Start watching the config file (and SIGHUP).
pub fn spawn_config_watcher(
    path: PathBuf,
    live: LiveConfig,
    dispatcher: Arc<Dispatcher>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    // Watch the folder, not the file: editors and deploy tools replace the
    // file by renaming a new one over it, which a file watch would miss.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let (watcher, mut events) = watch_dir(&dir)
        .map_err(|e| anyhow::anyhow!("cannot watch {} for config changes: {e}", dir.display()))?;
    let file_name = path.file_name().map(|n| n.to_os_string());
    tracker.spawn(async move {
        let _watcher = watcher;
        let mut hangup = hangup_signal();
        let mut pending = Pending::default();
        loop {
            tokio::select! {
                changed = events.recv() => match changed {
                    Some(p) if p.file_name().map(|n| n.to_os_string()) == file_name => {
                        pending.schedule(path.clone(), tokio::time::Instant::now() + DEBOUNCE);
                    }
                    Some(_) => {}
                    None => return,
                },
                () = recv_hangup(&mut hangup) => {
                    tracing::info!("SIGHUP: reloading the config");
                    apply_config(&path, &live, &dispatcher);
                }
                () = sleep_until(pending.next_due()) => {
                    if !pending.take_due(tokio::time::Instant::now()).is_empty() {
                        apply_config(&path, &live, &dispatcher);
                    }
                }
                () = cancel.cancelled() => return,
            }
        }
    });
    Ok(())
}

/// Load, validate and swap in the config at `path`; on any error keep the
/// running one and say why. Returns whether the new config was applied.
pub fn apply_config(path: &Path, live: &LiveConfig, dispatcher: &Dispatcher) -> bool {
    let new = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config reload rejected, keeping the running config: {e}");
            return false;
        }
    };
    let old = live.load_full();
    warn_restart_only(&old, &new);
    let (sources, targets, routes) = (new.sources.len(), new.targets.len(), new.routes.len());
    live.store(Arc::new(new));
    dispatcher.reconcile();
    tracing::info!(sources, targets, routes, "config reloaded");
    true
}

/// Settings that are read once at start: say so when they change.
fn warn_restart_only(old: &Config, new: &Config) {
    let mut changed = Vec::new();
    if old.server.listen != new.server.listen {
        changed.push("server.listen");
    }
    if old.server.max_concurrent_requests != new.server.max_concurrent_requests {
        changed.push("server.max_concurrent_requests");
    }
    if old.storage.url != new.storage.url
        || old.storage.queue_capacity != new.storage.queue_capacity
    {
        changed.push("storage");
    }
    if old.plugins.dir != new.plugins.dir
        || old.plugins.cache_dir != new.plugins.cache_dir
        || old.plugins.watch != new.plugins.watch
        || old.plugins.limits != new.plugins.limits
    {
        changed.push("plugins");
    }
    if !changed.is_empty() {
        tracing::warn!(
            "config changes to {} take effect at the next restart",
            changed.join(", ")
        );
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn recv_hangup(h: &mut Hangup) {
    match h {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
async fn recv_hangup(_: &mut Hangup) {
    std::future::pending().await
}
