//! Command-line interface: `wasmhook serve | check | plugin run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config;
use crate::event::{Event, Outcome, now_ms};
use crate::plugin::{Limits, PluginRegistry, PluginRuntime};

#[derive(Debug, Parser)]
#[command(
    name = "wasmhook",
    version,
    about = "A WebAssembly-pluggable webhook router"
)]
pub struct Cli {
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "WASMHOOK_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the router.
    Serve {
        #[arg(long, default_value = "wasmhook.toml", env = "WASMHOOK_CONFIG")]
        config: PathBuf,
    },
    /// Validate the config and every plugin the routes use; non-zero on error.
    Check {
        #[arg(long, default_value = "wasmhook.toml", env = "WASMHOOK_CONFIG")]
        config: PathBuf,
    },
    /// Plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plugin once on an event and print the outcome as JSON.
    Run {
        /// The plugin's .wasm file.
        plugin: PathBuf,
        /// The event's body (use - for stdin).
        event: PathBuf,
        /// Event type to give the plugin.
        #[arg(long = "type", default_value = "")]
        event_type: String,
        /// Plugin config as KEY=VALUE; repeat for several.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            let config = config::load(&config)?;
            crate::server::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => check(&config).await,
        Command::Plugin(PluginCommand::Run {
            plugin,
            event,
            event_type,
            config,
        }) => plugin_run(&plugin, &event, event_type, &config).await,
    }
}

#[allow(clippy::print_stdout)]
async fn check(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let registry = crate::server::load_plugins(&config).await?;
    let mut problems = Vec::new();
    for status in registry.statuses() {
        if let Some(err) = &status.last_error {
            problems.push(format!(
                "plugin {} ({}): {err}",
                status.name,
                status.path.display()
            ));
        }
    }
    for route in &config.routes {
        for step in &route.plugins {
            if registry.get(&step.name).is_none()
                && !registry.statuses().iter().any(|s| s.name == step.name)
            {
                problems.push(format!(
                    "route {:?} uses plugin {:?}, but {} has no {}.wasm",
                    route.name,
                    step.name,
                    config.plugins.dir.display(),
                    step.name
                ));
            }
        }
    }
    if problems.is_empty() {
        println!(
            "ok: {} sources, {} targets, {} routes, {} plugins loaded from {}",
            config.sources.len(),
            config.targets.len(),
            config.routes.len(),
            registry.statuses().len(),
            config.plugins.dir.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}

#[allow(clippy::print_stdout)]
async fn plugin_run(
    plugin: &std::path::Path,
    event_path: &std::path::Path,
    event_type: String,
    config: &[String],
) -> anyhow::Result<ExitCode> {
    let body = if event_path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(event_path)
            .with_context(|| format!("cannot read {}", event_path.display()))?
    };
    let pairs: Vec<(String, String)> = config
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--config {kv:?} must be KEY=VALUE"))
        })
        .collect::<anyhow::Result<_>>()?;
    let registry = PluginRegistry::new(Arc::new(PluginRuntime::new(Limits::default())?));
    let compiled = registry.load_file(plugin).await?;
    let event = Event {
        id: "evt_cli".into(),
        source: "cli".into(),
        event_type,
        received_at: now_ms(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into(),
    };
    match registry
        .runtime()
        .invoke(&compiled, &event, pairs.into())
        .await
    {
        Ok(outcome) => {
            println!("{}", serde_json::to_string_pretty(&outcome_json(&outcome))?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn outcome_json(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Drop { reason } => serde_json::json!({ "drop": reason }),
        Outcome::Emit(outputs) => serde_json::json!({
            "emit": outputs.iter().map(|o| {
                let body = match serde_json::from_slice::<serde_json::Value>(&o.event.body) {
                    Ok(v) => v,
                    Err(_) => serde_json::Value::String(String::from_utf8_lossy(&o.event.body).into_owned()),
                };
                serde_json::json!({
                    "id": o.event.id,
                    "event_type": o.event.event_type,
                    "targets": o.targets,
                    "headers": o.event.headers,
                    "body": body,
                })
            }).collect::<Vec<_>>()
        }),
    }
}
