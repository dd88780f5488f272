//! `wasmhook plugin push FILE.wasm`: store a plugin in the shared
//! PostgreSQL database. Every node of the cluster writes it into its own
//! `plugins.dir` and loads it, and swaps it again when a newer version is
//! pushed: one place to deploy a plugin to a cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use crate::config::{self, StorageUrl};
use crate::plugin::{PluginRegistry, PluginRuntime};
use crate::store::{PIPELINE_LEASE, PgOptions, PostgresStore};

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The plugin; its name is the file stem (`redact.wasm` is `redact`).
    pub plugin: PathBuf,
    /// The router's config, for `storage.url` and the plugin limits.
    #[arg(long, default_value = "wasmhook.toml", env = "WASMHOOK_CONFIG")]
    pub config: PathBuf,
}

pub async fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let Some(name) = crate::plugin::plugin_name(&args.plugin) else {
        bail!(
            "{} is not a .wasm file (wasmhook plugin push FILE.wasm)",
            args.plugin.display()
        );
    };
    let config = config::load(&args.config)?;
    let StorageUrl::Postgres(url) = &config.storage.url else {
        bail!(
            "plugin push stores the plugin in the cluster's PostgreSQL database, but storage.url in {} is not postgres://…; \
             for a single router, copy the file into plugins.dir ({}) instead",
            args.config.display(),
            config.plugins.dir.display()
        );
    };
    // A plugin no node could load is refused here, not on every node.
    let registry = PluginRegistry::new(Arc::new(PluginRuntime::new(
        config.plugins.limits.clone(),
        config.plugins.cache_dir.clone(),
    )?));
    registry
        .try_load(&args.plugin)
        .await
        .map_err(|e| anyhow::anyhow!("not pushed: {} does not load: {e}", args.plugin.display()))?;
    let wasm = std::fs::read(&args.plugin)
        .with_context(|| format!("cannot read {}", args.plugin.display()))?;
    let store = PostgresStore::open(
        &String::from_utf8_lossy(url.expose()),
        PgOptions {
            pool_size: 1,
            poll_interval: config.storage.poll_interval,
            capacity: config.storage.queue_capacity,
            pipeline_lease: PIPELINE_LEASE,
        },
    )
    .await?;
    let version = store
        .push_plugin(&name, &wasm)
        .await
        .map_err(|e| anyhow::anyhow!("cannot store the plugin: {e}"))?;
    super::print_stdout(&format!(
        "pushed {name} (version {version}, {} bytes): every node loads it now",
        wasm.len()
    ))?;
    Ok(ExitCode::SUCCESS)
}
