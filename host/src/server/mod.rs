//! Wiring: build every part from a [`Config`], serve HTTP, reload, shut down.
//!
//! Shutdown (SIGINT/SIGTERM) is a drain: ingest answers 503 with
//! `Retry-After` (so senders retry, perhaps on another node) and `/readyz`
//! says `draining` (so a load balancer stops sending), workers stop claiming,
//! and attempts in flight get [`SHUTDOWN_GRACE`] to finish. The listener stays
//! open for the drain, then closes. Everything else stays in the store for
//! the next start (with `memory://` it is lost; the log says how much).

mod admin;
mod app;
mod idle;
mod listener;
mod openapi;
mod overview;
mod response;
mod stats;
mod stream;
mod targets;
mod tryrun;
mod ui;

pub use app::app;
pub use listener::{HttpLimits, serve_http};
pub use openapi::IngestAccepted;
pub use response::{ErrorBody, error};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, LiveConfig, StorageConfig, StorageUrl};
use crate::dispatch::{Dispatcher, Sender};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, spawn_pipeline_workers, spawn_reruns};
use crate::plugin::{PluginRegistry, PluginRuntime};
use crate::reload::{
    Seen, spawn_config_watcher, spawn_plugin_watcher, spawn_pushed_plugins, sync_pushed,
};
use crate::store::{PgOptions, PostgresStore, Pruned, SqliteStore, Store, StoreError};
use crate::tail::Tail;

/// How long attempts in flight may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long HTTP requests still in progress after the drain may take.
const HTTP_GRACE: Duration = Duration::from_secs(5);

/// How often retention runs when its last pass found nothing. Often, so
/// each pass is small: it deletes in chunks, and reads only what it deletes.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// How soon retention runs again after a pass that deleted at least
/// [`BUSY_PASS`] rows: under heavy traffic, each pass deletes a tenth of a
/// second's worth, so the store's cost of pruning is spread evenly, not
/// paid in one burst a second that every write behind it waits through.
const PRUNE_AGAIN: Duration = Duration::from_millis(100);
/// Deliveries and events a pass must delete for the next to follow in
/// [`PRUNE_AGAIN`]. A pass 100 ms after the last reaches it at about a
/// thousand events a second, one a second after at about a hundred: below
/// a hundred every pass is a second apart, between the two the pauses
/// alternate, and a pass is never more than a few hundred rows or a tenth
/// of a second's worth. Passes of a few rows each 100 ms would be mostly
/// overhead (each is a few store jobs, and on SQLite small commits of its
/// own).
const BUSY_PASS: usize = 200;
/// Under steady traffic every pass prunes: one log line this often, with
/// the sum, not one for each pass.
const PRUNE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Shared state of the HTTP handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    /// The running config; swapped whole on reload.
    pub live: LiveConfig,
    pub store: Arc<dyn Store>,
    pub registry: Arc<PluginRegistry>,
    pub metrics: Arc<Metrics>,
    pub ingest_slots: Arc<Semaphore>,
    /// Queue counts for `/readyz` and `/metrics`, cached briefly.
    pub stats: stats::Cached<crate::store::QueueStats>,
    /// Each target's gauges for `/metrics`, cached alike.
    pub target_gauges: stats::Cached<Vec<crate::metrics::TargetGauges>>,
    /// For the admin API's re-run.
    pub pipeline: Option<Arc<Pipeline>>,
    /// `GET /api/stream`'s readers.
    pub tail: Arc<Tail>,
    /// Targets' pauses and circuits, for the admin API.
    pub circuits: Arc<crate::dispatch::Circuits>,
    draining: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(
        live: LiveConfig,
        store: Arc<dyn Store>,
        registry: Arc<PluginRegistry>,
        metrics: Arc<Metrics>,
        pipeline: Option<Arc<Pipeline>>,
        tail: Arc<Tail>,
        circuits: Arc<crate::dispatch::Circuits>,
    ) -> Self {
        let slots = live.load().server.max_concurrent_requests;
        AppState(Arc::new(Shared {
            live,
            ingest_slots: Arc::new(Semaphore::new(slots)),
            stats: stats::Cached::new(stats::STATS_MAX_AGE),
            target_gauges: stats::Cached::new(stats::STATS_MAX_AGE),
            store,
            registry,
            metrics,
            pipeline,
            tail,
            circuits,
            draining: AtomicBool::new(false),
        }))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Queue counts, at most [`stats::STATS_MAX_AGE`] old.
    pub async fn queue_stats(&self) -> Result<crate::store::QueueStats, StoreError> {
        self.stats.get(|| self.store.stats()).await
    }
}

/// Load the plugins in the config's folder (through the compiled-plugin
/// cache). Failures are recorded per plugin; a missing folder is an error.
pub async fn load_plugins(config: &Config) -> anyhow::Result<Arc<PluginRegistry>> {
    let runtime = Arc::new(PluginRuntime::new(
        config.plugins.limits.clone(),
        config.plugins.cache_dir.clone(),
    )?);
    let registry = Arc::new(PluginRegistry::new(runtime));
    registry
        .load_dir(&config.plugins.dir)
        .await
        .with_context(|| {
            format!(
                "cannot read the plugins folder {} (plugins.dir)",
                config.plugins.dir.display()
            )
        })?;
    Ok(registry)
}

/// The store `storage` names, opened.
pub enum Opened {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl Opened {
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Opened::Sqlite(s) => s.clone(),
            Opened::Postgres(s) => s.clone(),
        }
    }
}

/// Open the store `storage` names.
pub async fn open_store(storage: &StorageConfig) -> anyhow::Result<Opened> {
    let path = match &storage.url {
        StorageUrl::Sqlite(path) => Some(path.as_path()),
        StorageUrl::Memory => {
            tracing::warn!(
                "storage.url is memory://: events not yet delivered are lost on restart"
            );
            None
        }
        StorageUrl::Postgres(url) => {
            let opts = PgOptions {
                pool_size: storage.pool_size,
                poll_interval: storage.poll_interval,
                capacity: storage.queue_capacity,
                pipeline_lease: crate::store::PIPELINE_LEASE,
            };
            let url = String::from_utf8_lossy(url.expose());
            let store = PostgresStore::open(&url, opts).await?;
            return Ok(Opened::Postgres(Arc::new(store)));
        }
    };
    Ok(Opened::Sqlite(Arc::new(SqliteStore::open(
        path,
        storage.fsync,
        storage.queue_capacity,
    )?)))
}

/// Run the router until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let opened = open_store(&config.storage).await?;
    let store = opened.store();
    let registry = load_plugins(&config).await?;
    // Plugins pushed to the cluster's database, before any event runs.
    let mut pushed = Seen::new();
    if let Opened::Postgres(pg) = &opened {
        sync_pushed(pg, &config.plugins.dir, &registry, &mut pushed).await;
    }
    for route in &config.routes {
        for step in &route.plugins {
            if registry.get(&step.name).is_none() {
                tracing::warn!(route = %route.name, plugin = %step.name,
                    "plugin {} is not loaded: events on this route fail, and are re-run once it loads", step.name);
            }
        }
    }
    let config_path = config.path.clone();
    let plugins = config.plugins.clone();
    let memory_only = matches!(config.storage.url, StorageUrl::Memory);
    let live: LiveConfig = Arc::new(ArcSwap::from_pointee(config));
    let metrics = Arc::new(Metrics::default());
    store.observe_commits(metrics.commits());
    let pipeline = Arc::new(Pipeline::new(
        live.clone(),
        registry.clone(),
        metrics.clone(),
    ));

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    spawn_pipeline_workers(pipeline.clone(), store.clone(), cancel.clone(), &tracker);
    spawn_reruns(
        pipeline.clone(),
        store.clone(),
        &registry,
        cancel.clone(),
        &tracker,
    );
    spawn_retention(live.clone(), store.clone(), cancel.clone(), &tracker);
    if let Opened::Postgres(pg) = &opened {
        spawn_pushed_plugins(
            pg.clone(),
            plugins.dir.clone(),
            registry.clone(),
            pushed,
            cancel.clone(),
            &tracker,
        );
    }
    let tail = Arc::new(Tail::default());
    let dispatcher = Arc::new(Dispatcher::new(
        live.clone(),
        store.clone(),
        Sender::new()?,
        metrics.clone(),
        tail.clone(),
        cancel.clone(),
        tracker.clone(),
    ));
    // Paused targets stay paused across restarts: read before any worker starts.
    let circuits = dispatcher.circuits();
    circuits
        .refresh()
        .await
        .context("cannot read the targets' pauses and circuits from the store")?;
    tracker.spawn(circuits.clone().keep_refreshed(cancel.clone()));
    dispatcher.reconcile();
    if plugins.watch {
        spawn_plugin_watcher(
            &plugins.dir,
            registry.clone(),
            plugins.watch_debounce,
            plugins.settle,
            cancel.clone(),
            &tracker,
        )?;
    }
    spawn_config_watcher(
        config_path,
        live.clone(),
        dispatcher,
        cancel.clone(),
        &tracker,
    )?;

    let state = AppState::new(
        live.clone(),
        store.clone(),
        registry,
        metrics,
        Some(pipeline),
        tail,
        circuits,
    );
    let listen = live.load().server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
    let signalled = shutdown_signal();
    // Tests and scripts read this line to learn the port when listen is :0.
    tracing::info!(addr = %listener.local_addr()?, "listening");

    let limits = {
        let live = live.clone();
        move || {
            let server = &live.load().server;
            HttpLimits {
                max_connections: server.max_connections,
                max_connections_per_ip: server.max_connections_per_ip,
                max_headers: server.max_headers,
                max_header_bytes: server.max_header_bytes,
                header_timeout: server.read_timeout,
                idle_timeout: server.idle_timeout,
            }
        }
    };
    // The drain runs while the listener still serves: ingest says 503 and
    // /readyz says draining until the attempts in flight are done.
    let drain = {
        let state = state.clone();
        async move {
            signalled.await;
            tracing::info!("shutting down: ingest answers 503; finishing attempts in flight");
            state.draining.store(true, Ordering::Release);
            state.tail.close();
            cancel.cancel();
            tracker.close();
            if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    "attempts still in flight after {SHUTDOWN_GRACE:?}; stopping anyway"
                );
            }
        }
    };
    serve_http(listener, app(state), limits, drain, HTTP_GRACE).await;

    match store.stats().await {
        Ok(left)
            if memory_only
                && left.awaiting_pipeline
                    + left.pending_deliveries
                    + left.dead
                    + left.failed_routes
                    > 0 =>
        {
            tracing::warn!(
                ?left,
                "stopped with undelivered work held in memory; it is lost"
            );
        }
        Ok(_) if memory_only => tracing::info!("stopped; nothing was left undelivered"),
        Ok(left) => tracing::info!(
            ?left,
            "stopped; undelivered work stays in the store for the next start"
        ),
        Err(e) => tracing::warn!("stopped; cannot read the store's counts: {e}"),
    }
    Ok(())
}

/// Prune delivered and dead work, and events with nothing left, as
/// `[storage]` says. Events are kept at least `dedup_window`, so duplicates
/// are recognised that long.
fn spawn_retention(
    live: LiveConfig,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(async move {
        let mut pause = PRUNE_EVERY;
        let mut tally = PruneTally::new(Instant::now());
        loop {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = cancel.cancelled() => {
                    if let Some(p) = tally.take() {
                        say_pruned(p);
                    }
                    return;
                }
            }
            let cutoffs = RetentionCutoffs::new(&live.load().storage, crate::event::now_ms());
            let pass = store
                .prune(
                    cutoffs.delivered_before,
                    cutoffs.dead_before,
                    cutoffs.events_before,
                )
                .await;
            pause = next_pause(&pass);
            match pass {
                Ok(p) => {
                    if let Some(p) = tally.add(p, Instant::now()) {
                        say_pruned(p);
                    }
                }
                Err(e) => tracing::warn!("retention: {e}"),
            }
        }
    });
}

/// How long retention waits after `pass` before the next.
fn next_pause(pass: &Result<Pruned, StoreError>) -> Duration {
    match pass {
        Ok(p) if p.deliveries + p.events >= BUSY_PASS => PRUNE_AGAIN,
        _ => PRUNE_EVERY,
    }
}

fn say_pruned(p: Pruned) {
    tracing::info!(
        deliveries = p.deliveries,
        events = p.events,
        "retention: pruned old work"
    );
}

/// What retention pruned since it last said so.
struct PruneTally {
    since: Pruned,
    /// When the first pass of `since` ran.
    began: Instant,
}

impl PruneTally {
    fn new(now: Instant) -> Self {
        PruneTally {
            since: Pruned::default(),
            began: now,
        }
    }

    /// Add a pass's `pruned`; returns the sum to log once the pruning has
    /// stopped (a pass found nothing), or once a run of it has gone on for
    /// [`PRUNE_LOG_EVERY`].
    fn add(&mut self, pruned: Pruned, now: Instant) -> Option<Pruned> {
        if self.since == Pruned::default() {
            self.began = now;
        }
        self.since.deliveries += pruned.deliveries;
        self.since.events += pruned.events;
        let stopped = pruned == Pruned::default();
        if stopped || now.duration_since(self.began) >= PRUNE_LOG_EVERY {
            self.take()
        } else {
            None
        }
    }

    /// The sum not yet logged, if any (at shutdown, say).
    fn take(&mut self) -> Option<Pruned> {
        (self.since != Pruned::default()).then(|| std::mem::take(&mut self.since))
    }
}

/// What a retention pass at `now` may delete: work finished before these
/// times (ms since the epoch).
#[derive(Debug, PartialEq, Eq)]
struct RetentionCutoffs {
    delivered_before: u64,
    dead_before: u64,
    /// Events are kept at least `dedup_window`, so a repeated id is
    /// recognised that long, and at least as long as their deliveries.
    events_before: u64,
}

impl RetentionCutoffs {
    fn new(storage: &StorageConfig, now: u64) -> Self {
        let ago = |d: Duration| now.saturating_sub(d.as_millis() as u64);
        RetentionCutoffs {
            delivered_before: ago(storage.retention),
            dead_before: ago(storage.dead_retention),
            events_before: ago(storage.retention.max(storage.dedup_window)),
        }
    }
}

/// Takes SIGINT and SIGTERM from now on (not from the first poll: one that
/// came before would meet the default action, which ends the process with
/// no drain); the future resolves at the first. (Elsewhere, Ctrl-C, taken
/// at the first poll.)
#[cfg(unix)]
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn next(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let (term, int) = (
        signal(SignalKind::terminate()).ok(),
        signal(SignalKind::interrupt()).ok(),
    );
    async move {
        tokio::select! {
            () = next(term) => {}
            () = next(int) => {}
        }
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_logs_a_run_of_passes_once_a_minute_and_when_it_stops() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let p = |deliveries, events| Pruned { deliveries, events };
        let mut tally = PruneTally::new(t0);
        assert_eq!(
            tally.add(p(0, 0), at(0)),
            None,
            "nothing pruned, nothing said"
        );
        // A burst: said as the first pass that finds nothing runs.
        assert_eq!(tally.add(p(3, 1), at(5)), None);
        assert_eq!(tally.add(p(2, 2), at(6)), None);
        assert_eq!(tally.add(p(0, 0), at(7)), Some(p(5, 3)));
        assert_eq!(tally.add(p(0, 0), at(8)), None);
        // Steady pruning: said a minute after the run began, then the rest
        // when it stops.
        assert_eq!(tally.add(p(1, 1), at(100)), None);
        assert_eq!(tally.add(p(1, 1), at(159)), None);
        assert_eq!(tally.add(p(1, 1), at(160)), Some(p(3, 3)));
        assert_eq!(tally.add(p(1, 0), at(200)), None);
        assert_eq!(tally.add(p(1, 0), at(219)), None);
        assert_eq!(tally.add(p(0, 0), at(220)), Some(p(2, 0)));
        assert_eq!(tally.add(p(0, 0), at(221)), None);
        // At shutdown: what a run has not said yet.
        assert_eq!(tally.add(p(4, 4), at(300)), None);
        assert_eq!(tally.take(), Some(p(4, 4)));
        assert_eq!(tally.take(), None);
    }

    #[test]
    fn retention_runs_again_soon_only_after_a_busy_pass() {
        let pass = |deliveries, events| Ok(Pruned { deliveries, events });
        assert_eq!(next_pause(&pass(0, 0)), PRUNE_EVERY);
        assert_eq!(next_pause(&pass(1, 1)), PRUNE_EVERY, "a trickle");
        assert_eq!(next_pause(&pass(BUSY_PASS - 1, 0)), PRUNE_EVERY);
        assert_eq!(next_pause(&pass(BUSY_PASS / 2, BUSY_PASS / 2)), PRUNE_AGAIN);
        assert_eq!(next_pause(&pass(0, BUSY_PASS)), PRUNE_AGAIN);
        let failed = Err(StoreError::Unavailable("disk full".into()));
        assert_eq!(next_pause(&failed), PRUNE_EVERY);
    }

    #[test]
    fn retention_keeps_events_for_the_dedup_window_at_least() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        let storage = |retention, dead_retention, dedup_window| StorageConfig {
            url: StorageUrl::Memory,
            queue_capacity: 1,
            fsync: false,
            retention,
            dead_retention,
            dedup_window,
            pool_size: 1,
            poll_interval: Duration::from_secs(1),
        };
        let now = 1_000 * 3_600_000;
        let at = |hours_ago: u64| now - hours_ago * 3_600_000;
        assert_eq!(
            RetentionCutoffs::new(&storage(h(72), h(720), h(24)), now),
            RetentionCutoffs {
                delivered_before: at(72),
                dead_before: at(720),
                events_before: at(72),
            }
        );
        // A dedup window longer than retention keeps events longer.
        assert_eq!(
            RetentionCutoffs::new(&storage(h(1), h(2), h(48)), now).events_before,
            at(48)
        );
        // Longer than the epoch: nothing is old enough.
        assert_eq!(
            RetentionCutoffs::new(&storage(h(2000), h(2000), h(2000)), now),
            RetentionCutoffs {
                delivered_before: 0,
                dead_before: 0,
                events_before: 0,
            }
        );
    }
}
