//! Reload `wasmhook.toml` on SIGHUP and when the file changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::debounce::{Pending, sleep_until, watch_dir};
use crate::config::{
    self, Config, LiveConfig, PluginLimits, PluginsConfig, ServerConfig, StorageConfig,
};
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
    // Taken here, not in the task: a SIGHUP that comes once this returns
    // reloads, and never meets the default action (which ends the process).
    let mut hangup = hangup_signal();
    tracker.spawn(async move {
        let _watcher = watcher;
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
///
/// An empty file is refused: it parses (every key has a default), but it is
/// what a truncating write (`: > wasmhook.toml`, a failed deploy) leaves,
/// and applying it would drop every source, route and the admin API.
pub fn apply_config(path: &Path, live: &LiveConfig, dispatcher: &Dispatcher) -> bool {
    let new = match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Err(format!(
            "{} is empty; an empty config would drop every source and route",
            path.display()
        )),
        Ok(text) => config::parse(path, &text).map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    };
    let new = match new {
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

/// Say which changed settings wait for a restart.
fn warn_restart_only(old: &Config, new: &Config) {
    let changed = restart_only_changes(old, new);
    if !changed.is_empty() {
        tracing::warn!(
            "config changes to {} take effect at the next restart; the rest is live",
            changed.join(", ")
        );
    }
}

/// The settings that are read once at start and differ between `old` and
/// `new`. Everything else applies live: sources, targets, routes, and the
/// `[server]` limits and `[storage]` retention, which are read per request
/// or per pass.
///
/// The patterns are exhaustive on purpose: a new setting does not compile
/// until it is sorted into live or restart-only here.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |key: &'static str, differs: bool| {
        if differs {
            changed.push(key);
        }
    };
    let Config {
        // Live: read per request, per event or per attempt.
        path: _,
        sources: _,
        targets: _,
        routes: _,
        // Sorted below, setting by setting.
        server: _,
        storage: _,
        plugins: _,
        // Read once, when the span exporter starts.
        telemetry,
    } = old;
    check("telemetry", *telemetry != new.telemetry);
    let ServerConfig {
        listen,
        max_concurrent_requests,
        // Live: read per request or per connection.
        max_body_bytes: _,
        admin_token: _,
        max_connections: _,
        max_connections_per_ip: _,
        max_headers: _,
        max_header_bytes: _,
        read_timeout: _,
        idle_timeout: _,
    } = &old.server;
    check("server.listen", *listen != new.server.listen);
    check(
        "server.max_concurrent_requests",
        *max_concurrent_requests != new.server.max_concurrent_requests,
    );
    let StorageConfig {
        url,
        queue_capacity,
        fsync,
        // Live: read by every retention pass.
        retention: _,
        dead_retention: _,
        dedup_window: _,
        pool_size,
        poll_interval,
    } = &old.storage;
    check("storage.url", *url != new.storage.url);
    check("storage.pool_size", *pool_size != new.storage.pool_size);
    check(
        "storage.poll_interval",
        *poll_interval != new.storage.poll_interval,
    );
    check(
        "storage.queue_capacity",
        *queue_capacity != new.storage.queue_capacity,
    );
    check("storage.fsync", *fsync != new.storage.fsync);
    let PluginsConfig {
        dir,
        limits,
        cache_dir,
        watch,
        watch_debounce,
        settle,
    } = &old.plugins;
    let p = &new.plugins;
    check("plugins.dir", *dir != p.dir);
    // Each limit by name, so the warning says what changed.
    let PluginLimits {
        timeout,
        wall_timeout,
        memory_bytes,
        max_output_bytes,
        max_concurrency,
        reuse,
    } = limits;
    let l = &p.limits;
    check("plugins.timeout_ms", *timeout != l.timeout);
    check("plugins.wall_timeout_ms", *wall_timeout != l.wall_timeout);
    check("plugins.memory_limit_mb", *memory_bytes != l.memory_bytes);
    check(
        "plugins.max_output_bytes",
        *max_output_bytes != l.max_output_bytes,
    );
    check(
        "plugins.max_concurrency",
        *max_concurrency != l.max_concurrency,
    );
    check("plugins.reuse", *reuse != l.reuse);
    check("plugins.cache_dir", *cache_dir != p.cache_dir);
    check("plugins.watch", *watch != p.watch);
    check(
        "plugins.watch_debounce_ms",
        *watch_debounce != p.watch_debounce,
    );
    check("plugins.settle_ms", *settle != p.settle);
    changed
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        config::parse(Path::new("/srv/wasmhook.toml"), text).unwrap()
    }

    #[test]
    fn only_settings_read_at_start_are_reported() {
        let base = parse("");
        let live = [
            "[server]\nmax_body_bytes = 10",
            "[server]\nadmin_token = \"t\"",
            "[server]\nmax_connections = 7",
            "[server]\nmax_connections_per_ip = 7",
            "[server]\nmax_headers = 7",
            "[server]\nmax_header_bytes = 9000",
            "[server]\nread_timeout_ms = 7",
            "[server]\nidle_timeout_ms = 7",
            "[storage]\nretention = \"1h\"\ndead_retention = \"1h\"\ndedup_window = \"1h\"",
            "[[sources]]\nname = \"s\"",
        ];
        for text in live {
            assert_eq!(
                restart_only_changes(&base, &parse(text)),
                Vec::<&str>::new(),
                "{text}"
            );
        }
        for (text, key) in [
            ("[server]\nlisten = \"127.0.0.1:1\"", "server.listen"),
            (
                "[server]\nmax_concurrent_requests = 7",
                "server.max_concurrent_requests",
            ),
            ("[storage]\nurl = \"memory://\"", "storage.url"),
            ("[storage]\nqueue_capacity = 7", "storage.queue_capacity"),
            ("[storage]\nfsync = false", "storage.fsync"),
            ("[plugins]\ndir = \"elsewhere\"", "plugins.dir"),
            ("[plugins]\ntimeout_ms = 7", "plugins.timeout_ms"),
            ("[plugins]\nmemory_limit_mb = 7", "plugins.memory_limit_mb"),
            ("[plugins]\nreuse = { x = 5 }", "plugins.reuse"),
            ("[plugins]\ncache_dir = \"\"", "plugins.cache_dir"),
            ("[plugins]\nwatch = false", "plugins.watch"),
            (
                "[plugins]\nwatch_debounce_ms = 7",
                "plugins.watch_debounce_ms",
            ),
            ("[plugins]\nsettle_ms = 7", "plugins.settle_ms"),
            (
                "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"",
                "telemetry",
            ),
            ("[telemetry]\nsample_ratio = 0.5", "telemetry"),
        ] {
            assert_eq!(restart_only_changes(&base, &parse(text)), [key], "{text}");
        }
    }
}
