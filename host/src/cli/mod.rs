//! Command-line interface: `wasmhook serve | check | send | listen | plugin …`.

mod check;
mod listen;
mod plugin;
mod send;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config;

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
    /// Post an event to a running router.
    Send(send::SendArgs),
    /// Run a local target that prints deliveries and verifies their signatures.
    Listen(listen::ListenArgs),
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
        /// The event's body, as a file (- for stdin).
        event: PathBuf,
        /// Event type to give the plugin.
        #[arg(long = "type", default_value = "")]
        event_type: String,
        /// Plugin config as KEY=VALUE; repeat for several.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// Scaffold a plugin crate in ./NAME.
    New {
        /// Plugin name: the crate name and the .wasm file stem.
        name: String,
        /// Folder to create the crate in (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
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
        Command::Check { config } => check::check(&config).await,
        Command::Send(args) => send::send(args).await,
        Command::Listen(args) => listen::listen(args).await,
        Command::Plugin(PluginCommand::Run {
            plugin,
            event,
            event_type,
            config,
        }) => plugin::run(&plugin, &event, event_type, &config).await,
        Command::Plugin(PluginCommand::New { name, dir }) => plugin::new(&name, dir),
    }
}
