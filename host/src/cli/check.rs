//! `wasmhook check`: validate the config and every plugin the routes use.

use std::path::Path;
use std::process::ExitCode;

use crate::config;

#[allow(clippy::print_stdout)]
pub async fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let registry = crate::server::load_plugins(&config).await?;
    // Every file seen has a status, loaded or not: one list answers both
    // "did it fail?" and "is it there at all?".
    let statuses = registry.statuses();
    let mut problems = Vec::new();
    for status in &statuses {
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
            if !statuses.iter().any(|s| s.name == step.name) {
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
            statuses.len(),
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
