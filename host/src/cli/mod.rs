//! Command-line interface: `wasmhook serve | check | send | listen | plugin …`,
//! and the admin commands (`events`, `deliveries`, `targets`, `plugins`,
//! `tail`) that talk to a running router.

mod admin;
mod check;
mod listen;
mod plugin;
mod send;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use plugin::PluginCommand;

use crate::{config, telemetry};

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
    /// Events in a running router (admin API).
    Events {
        #[command(subcommand)]
        command: admin::EventsCommand,
        #[command(flatten)]
        conn: admin::AdminConnection,
    },
    /// Deliveries in a running router: list, retry (admin API).
    Deliveries {
        #[command(subcommand)]
        command: admin::DeliveriesCommand,
        #[command(flatten)]
        conn: admin::AdminConnection,
    },
    /// Targets of a running router: list, replay (admin API).
    Targets {
        #[command(subcommand)]
        command: admin::TargetsCommand,
        #[command(flatten)]
        conn: admin::AdminConnection,
    },
    /// Plugins loaded in a running router (admin API).
    Plugins {
        #[command(subcommand)]
        command: admin::PluginsCommand,
        #[command(flatten)]
        conn: admin::AdminConnection,
    },
    /// Print events live as a running router accepts them.
    Tail {
        #[command(flatten)]
        args: admin::TailArgs,
        #[command(flatten)]
        conn: admin::AdminConnection,
    },
}

impl Cli {
    /// The log level when `RUST_LOG` is not set: a router logs what it
    /// does, but `plugin run` prints only the outcome unless `-v`, and the
    /// other plugin tools only what goes wrong.
    pub fn default_log_level(&self) -> &'static str {
        match &self.command {
            Command::Plugin(PluginCommand::Run(args)) if args.verbose => "info",
            Command::Plugin(_)
            | Command::Events { .. }
            | Command::Deliveries { .. }
            | Command::Targets { .. }
            | Command::Plugins { .. }
            | Command::Tail { .. } => "warn",
            _ => "info",
        }
    }
}

/// Run the command, logging as `--log-format` and `RUST_LOG` say.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let level = cli.default_log_level();
    if let Command::Serve { config } = cli.command {
        // The config first: its [telemetry] says where spans go. (Loading
        // logs nothing; its error is the command's.)
        let config = config::load(&config)?;
        let telemetry = telemetry::init(cli.log_format, level, Some(&config.telemetry))?;
        let served = crate::server::serve(config).await;
        telemetry.shutdown().await;
        served?;
        return Ok(ExitCode::SUCCESS);
    }
    let _logs = telemetry::init(cli.log_format, level, None)?;
    match cli.command {
        Command::Serve { .. } => unreachable!("handled above"),
        Command::Check { config } => check::check(&config).await,
        Command::Send(args) => send::send(args).await,
        Command::Listen(args) => listen::listen(args).await,
        Command::Plugin(command) => plugin::run(command).await,
        Command::Events { command, conn } => admin::events(&conn, command).await,
        Command::Deliveries { command, conn } => admin::deliveries(&conn, command).await,
        Command::Targets { command, conn } => admin::targets(&conn, command).await,
        Command::Plugins { command, conn } => admin::plugins(&conn, command).await,
        Command::Tail { args, conn } => admin::tail(&conn, args).await,
    }
}
