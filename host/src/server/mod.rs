//! Wiring: build every part from a [`Config`], serve HTTP, shut down cleanly.
//!
//! Shutdown (SIGINT/SIGTERM): ingest stops accepting (503), the listener
//! closes, workers stop claiming, and attempts in flight get
//! [`SHUTDOWN_GRACE`] to finish. With the in-memory store, whatever is still
//! queued is lost at exit; the log says how much.

mod app;

pub use app::app;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Source, StorageUrl};
use crate::dispatch::{Sender, spawn_target_workers};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, spawn_pipeline_workers};
use crate::plugin::{PluginRegistry, PluginRuntime};
use crate::queue::{MemoryStore, Store};

/// How long attempts in flight may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Shared state of the HTTP handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Arc<Config>,
    sources: HashMap<String, Source>,
    pub store: Arc<dyn Store>,
    pub registry: Arc<PluginRegistry>,
    pub metrics: Arc<Metrics>,
    pub ingest_slots: Arc<Semaphore>,
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
        config: Arc<Config>,
        store: Arc<dyn Store>,
        registry: Arc<PluginRegistry>,
        metrics: Arc<Metrics>,
    ) -> Self {
        AppState(Arc::new(Shared {
            sources: config
                .sources
                .iter()
                .map(|s| (s.name.clone(), s.clone()))
                .collect(),
            ingest_slots: Arc::new(Semaphore::new(config.server.max_concurrent_requests)),
            config,
            store,
            registry,
            metrics,
            draining: AtomicBool::new(false),
        }))
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.get(name)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Load the plugins named by the config's folder. Failures are recorded per
/// plugin; a missing folder is an error.
pub async fn load_plugins(config: &Config) -> anyhow::Result<Arc<PluginRegistry>> {
    let runtime = Arc::new(PluginRuntime::new(config.plugins.limits.clone())?);
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

/// Run the router until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    match &config.storage.url {
        StorageUrl::Memory => {}
        other => tracing::warn!(
            storage = ?other,
            "this version keeps the queue in memory only: events not yet delivered are lost on restart"
        ),
    }
    let registry = load_plugins(&config).await?;
    for route in &config.routes {
        for step in &route.plugins {
            if registry.get(&step.name).is_none() {
                tracing::warn!(route = %route.name, plugin = %step.name,
                    "plugin {} is not loaded: events on this route will fail until it is", step.name);
            }
        }
    }
    let metrics = Arc::new(Metrics::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(config.storage.queue_capacity));
    let pipeline = Arc::new(Pipeline::new(&config, registry.clone(), metrics.clone()));

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    spawn_pipeline_workers(
        pipeline,
        store.clone(),
        config.plugins.limits.max_concurrency,
        cancel.clone(),
        &tracker,
    );
    spawn_target_workers(
        &config.targets,
        store.clone(),
        Sender::new()?,
        metrics.clone(),
        cancel.clone(),
        &tracker,
    );

    let state = AppState::new(config.clone(), store.clone(), registry, metrics);
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (server.listen)", config.server.listen))?;
    // Tests and scripts read this line to learn the port when listen is :0.
    tracing::info!(addr = %listener.local_addr()?, "listening");

    let shutdown_state = state.clone();
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new events; finishing attempts in flight");
            shutdown_state.draining.store(true, Ordering::Release);
        })
        .await?;

    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("attempts still in flight after {SHUTDOWN_GRACE:?}; stopping anyway");
    }
    let left = store.stats();
    if left.awaiting_pipeline + left.pending_deliveries + left.dead + left.failed_routes > 0 {
        tracing::warn!(
            ?left,
            "stopped with undelivered work held in memory; it is lost"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
