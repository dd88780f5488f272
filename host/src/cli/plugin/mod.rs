//! `wasmhook plugin new | build | run | push`: a plugin author's loop, in
//! any of the three languages, with no wasmhook checkout; `push` deploys to
//! a cluster.
//!
//! `new` scaffolds from templates compiled into the binary (`templates.rs`),
//! `build` turns a project of any language into a `.wasm` and can deploy it
//! atomically into a router's plugins folder, and `run` runs a `.wasm` once
//! in the router's own sandbox.

mod build;
mod new;
mod push;
mod run;
mod templates;

use clap::{Subcommand, ValueEnum};

pub use build::BuildArgs;
pub use new::NewArgs;
pub use push::PushArgs;
pub use run::RunArgs;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plugin once on an event, in the router's sandbox, and print the
    /// outcome as JSON. Exits 1 when the plugin fails or panics.
    Run(RunArgs),
    /// Scaffold a plugin project in ./NAME (Rust, JavaScript or Python),
    /// with its SDK vendored: it builds anywhere.
    New(NewArgs),
    /// Build the plugin project in DIR, whatever its language. The last line
    /// printed is the path of the .wasm.
    Build(BuildArgs),
    /// Store a plugin in the shared PostgreSQL database: every node of the
    /// cluster loads it, and swaps it when a newer version is pushed.
    Push(PushArgs),
}

/// The languages a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    #[value(alias = "javascript")]
    Js,
    #[value(alias = "py")]
    Python,
}

impl Lang {
    pub fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Js => "JavaScript",
            Lang::Python => "Python",
        }
    }
}

/// Print `text` and a newline on stdout. A reader that went away (`| head`)
/// is not an error: there is no one left to tell.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

pub async fn run(command: PluginCommand) -> anyhow::Result<std::process::ExitCode> {
    match command {
        PluginCommand::Run(args) => run::run(args).await,
        PluginCommand::New(args) => new::new(args),
        PluginCommand::Build(args) => build::build(args),
        PluginCommand::Push(args) => push::push(args).await,
    }
}
