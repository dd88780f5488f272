//! `wasmhook plugin run` and `wasmhook plugin new`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::PluginLimits;
use crate::event::{Event, Outcome, now_ms};
use crate::plugin::{PluginRegistry, PluginRuntime};

#[allow(clippy::print_stdout)]
pub async fn run(
    plugin: &Path,
    event_path: &Path,
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
    let registry =
        PluginRegistry::new(Arc::new(PluginRuntime::new(PluginLimits::default(), None)?));
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

/// Scaffold a plugin crate: a filter to start from, with its unit tests.
#[allow(clippy::print_stdout)]
pub fn new(name: &str, dir: Option<std::path::PathBuf>) -> anyhow::Result<ExitCode> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        anyhow::bail!(
            "{name:?} is not a plugin name: use lower-case letters, digits and '-', starting with a letter"
        );
    }
    let dir = dir.unwrap_or_else(|| std::path::PathBuf::from(name));
    if dir.exists() {
        anyhow::bail!(
            "{} already exists; pick another name or --dir",
            dir.display()
        );
    }
    // Inside a wasmhook checkout, depend on its SDK by path; elsewhere, by version.
    let sdk = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk"));
    let sdk_dep = match sdk.canonicalize() {
        Ok(p) => format!("wasmhook-sdk = {{ path = {:?} }}", p.display().to_string()),
        Err(_) => format!("wasmhook-sdk = \"{}\"", env!("CARGO_PKG_VERSION")),
    };
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        CARGO_TOML
            .replace("{name}", name)
            .replace("{sdk_dep}", &sdk_dep),
    )?;
    std::fs::write(dir.join("src/lib.rs"), LIB_RS)?;
    let crate_file = name.replace('-', "_");
    println!(
        "created plugin {name} in {dir}\n\n  cd {dir}\n  cargo test                                   # the logic, natively\n  \
         cargo build --release --target wasm32-wasip2  # the plugin\n  \
         cp target/wasm32-wasip2/release/{crate_file}.wasm <router>/plugins/{name}.wasm",
        dir = dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
{sdk_dep}

# Small, fast plugins. `strip = "debuginfo"` keeps function names in traps.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = "debuginfo"
panic = "abort"

# A crate of its own, even when created inside another workspace.
[workspace]
"#;

const LIB_RS: &str = r#"//! A wasmhook plugin. Config: `allow` = comma-separated event types to keep.

use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(ev: Event, cfg: &Config) -> Result<Outcome> {
    if cfg.list("allow").contains(&ev.event_type) {
        Ok(Outcome::keep(ev))
    } else {
        Ok(Outcome::drop(format!("event type {:?} is not allowed", ev.event_type)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_allowed_types_and_drops_the_rest() {
        let cfg = Config::from_pairs([("allow", "push")]);
        assert!(handle(Event::new("push", "{}"), &cfg).unwrap().is_emit());
        assert!(handle(Event::new("star", "{}"), &cfg).unwrap().is_drop());
    }
}
"#;
