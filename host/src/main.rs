use std::process::ExitCode;

use clap::Parser;
use wasmhook::cli::{Cli, init_logging, run};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = cli.default_log_level();
    init_logging(cli.log_format, level);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
