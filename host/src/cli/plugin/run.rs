//! `wasmhook plugin run PLUGIN.wasm [EVENT|-]`: run a plugin once, in the
//! router's sandbox with the router's limits, and print the outcome.
//!
//! The event is a full event (`{"source", "type", "id", "headers", "body"}`)
//! or, when the file is anything else, the body alone; flags set or
//! override each field. Compiled plugins are cached per user, so a second
//! run of a Python plugin does not compile it again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::Value;

use crate::config::{PluginLimits, plugin_config_from_toml};
use crate::event::{Event, now_ms};
use crate::plugin::{PluginRegistry, PluginRuntime};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plugin's .wasm file.
    plugin: PathBuf,
    /// The event: a JSON file of the form {"source", "type", "id",
    /// "headers", "body"}, or any other file, taken as the body. `-` or
    /// nothing reads stdin.
    event: Option<PathBuf>,
    /// Take the file as the body even when it looks like a full event.
    #[arg(long, conflicts_with = "event_json")]
    raw: bool,
    /// The file must be a full event: an error, not a body, when it is not.
    #[arg(long = "event")]
    event_json: bool,
    /// Event type (overrides the event's "type").
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Source name (overrides the event's "source"; default "cli").
    #[arg(long)]
    source: Option<String>,
    /// Event id (overrides the event's "id"; default "evt_cli").
    #[arg(long)]
    id: Option<String>,
    /// Header as `Name: value`, added to the event's; repeat for several.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Plugin config as KEY=VALUE, over the config file's; repeat for several.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Plugin config as a TOML table of keys (like a route's `config = { … }`).
    #[arg(long, value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Execution time allowed, as `plugins.timeout_ms` (1–60000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    timeout_ms: u64,
    /// Linear memory allowed, as `plugins.memory_limit_mb` (1–4096).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    memory_limit_mb: u64,
    /// Where compiled plugins are kept (default: the user's cache folder).
    #[arg(long, env = "WASMHOOK_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile afresh and keep nothing.
    #[arg(long)]
    no_cache: bool,
    /// Also print what the plugin logged and printed, and how long it took.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if crate::plugin::plugin_name(&args.plugin).is_none() {
        bail!(
            "the plugin comes first and must be a .wasm file, not {} (wasmhook plugin run PLUGIN.wasm [EVENT])",
            args.plugin.display()
        );
    }
    let input = read_input(args.event.as_deref())?;
    let mut event = if args.raw {
        bare_event(input)
    } else {
        parse_event(input, args.event_json)?
    };
    if let Some(t) = args.event_type {
        event.event_type = t;
    }
    if let Some(s) = args.source {
        event.source = s;
    }
    if let Some(id) = args.id {
        event.id = id;
    }
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?} must be NAME: VALUE"))?;
        event
            .headers
            .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let config = plugin_config(args.config_file.as_deref(), &args.config)?;

    let limits = PluginLimits {
        timeout: std::time::Duration::from_millis(args.timeout_ms),
        memory_bytes: (args.memory_limit_mb as usize) << 20,
        max_concurrency: 1,
        ..PluginLimits::default()
    };
    let cache = if args.no_cache {
        None
    } else {
        args.cache_dir.or_else(user_cache_dir)
    };
    let registry = PluginRegistry::new(Arc::new(PluginRuntime::new(limits, cache)?));
    let started = std::time::Instant::now();
    // `try_load`, not `load_file`: the error is this command's answer, not
    // a log line as well.
    registry
        .try_load(&args.plugin)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load {}: {e}", args.plugin.display()))?;
    let compiled = crate::plugin::plugin_name(&args.plugin)
        .and_then(|name| registry.get(&name))
        .with_context(|| format!("{} is not a .wasm file", args.plugin.display()))?;
    let loaded = started.elapsed();
    let started = std::time::Instant::now();
    let outcome = registry
        .runtime()
        .invoke(&compiled, &event, config.into())
        .await;
    tracing::info!(
        plugin = %compiled.name,
        language = compiled.toolchain.label(),
        load_ms = loaded.as_secs_f64() * 1e3,
        call_ms = started.elapsed().as_secs_f64() * 1e3,
        core_instances = compiled.footprint.core_instances,
        memories = compiled.footprint.memories,
        "plugin ran"
    );
    match outcome {
        Ok(outcome) => {
            let text = serde_json::to_string_pretty(&crate::event::json::outcome_json(&outcome))?;
            super::print_stdout(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn read_input(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
        }
        _ => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("cannot read the event from stdin")?;
            Ok(buf)
        }
    }
}

/// The fields of a full event; a JSON object with `body` and no other keys
/// is one.
const EVENT_KEYS: &[&str] = &[
    "source",
    "type",
    "event_type",
    "id",
    "received_at",
    "headers",
    "body",
    "body_base64",
];

fn bare_event(body: Vec<u8>) -> Event {
    Event {
        id: "evt_cli".into(),
        source: "cli".into(),
        event_type: String::new(),
        received_at: now_ms(),
        headers: Vec::new(),
        body: body.into(),
    }
}

/// A full event if the input is one (a JSON object of event keys only,
/// with a `body`, `body_base64` or `headers`), else an event with the input
/// as body. `must`: it has to be an event (`--event`).
fn parse_event(input: Vec<u8>, must: bool) -> anyhow::Result<Event> {
    let map = match serde_json::from_slice::<Value>(&input) {
        Ok(Value::Object(map)) => map,
        Ok(_) if must => bail!("--event: the file is JSON, but not an object"),
        Ok(_) => return Ok(bare_event(input)),
        Err(e) if must => bail!("--event: the file is not valid JSON: {e}"),
        Err(e) => {
            // A file that starts like JSON but does not parse is most likely
            // a mistyped event: say so, then go on with it as the body.
            if input.trim_ascii_start().starts_with(b"{") {
                eprintln!("warning: the event file is not valid JSON ({e}); using it as the body");
            }
            return Ok(bare_event(input));
        }
    };
    let only_event_keys = map.keys().all(|k| EVENT_KEYS.contains(&k.as_str()));
    let is_event = only_event_keys
        && ["body", "body_base64", "headers"]
            .iter()
            .any(|k| map.contains_key(*k));
    if must && !is_event {
        let stray: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !EVENT_KEYS.contains(k))
            .collect();
        bail!(
            "--event: an event has the keys {} (and body, body_base64 or headers){}",
            EVENT_KEYS.join(", "),
            if stray.is_empty() {
                String::new()
            } else {
                format!("; this one also has {}", stray.join(", "))
            }
        );
    }
    if !is_event {
        return Ok(bare_event(input));
    }
    crate::event::json::event_from_json(map)
}

fn plugin_config(file: Option<&Path>, pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut config: Vec<(String, String)> = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            plugin_config_from_toml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .to_vec()
        }
        None => Vec::new(),
    };
    for kv in pairs {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--config {kv:?} must be KEY=VALUE"))?;
        config.retain(|(key, _)| key != k);
        config.push((k.to_string(), v.to_string()));
    }
    Ok(config)
}

/// `$XDG_CACHE_HOME/wasmhook/plugin-cache`, else `~/.cache/wasmhook/plugin-cache`.
fn user_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("wasmhook").join("plugin-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_event_sets_every_field() {
        let e = parse_event(
            br#"{"source":"github","type":"push","id":"evt_9","headers":{"X-GitHub-Event":"push"},"body":{"n":1}}"#
                .to_vec(),
            false,
        )
        .unwrap();
        assert_eq!(
            (e.source.as_str(), e.event_type.as_str(), e.id.as_str()),
            ("github", "push", "evt_9")
        );
        assert_eq!(
            e.headers,
            [("x-github-event".to_string(), "push".to_string())]
        );
        assert_eq!(&e.body[..], br#"{"n":1}"#);
    }

    #[test]
    fn anything_else_is_the_body_with_no_headers() {
        for input in [
            &br#"{"n":1,"body":"x"}"#[..],
            b"[1,2]",
            b"not json",
            b"{\"body\":1",
        ] {
            let e = parse_event(input.to_vec(), false).unwrap();
            assert_eq!(&e.body[..], input);
            assert!(e.headers.is_empty(), "no content-type is invented");
            assert_eq!(e.id, "evt_cli");
        }
    }

    #[test]
    fn a_text_body_stays_text_and_base64_is_decoded() {
        let e = parse_event(
            br#"{"body":"a=1&b=2","headers":[["Content-Type","x"]]}"#.to_vec(),
            false,
        )
        .unwrap();
        assert_eq!(&e.body[..], b"a=1&b=2");
        assert_eq!(e.headers[0].0, "content-type");
        let e = parse_event(br#"{"body_base64":"AAEC"}"#.to_vec(), false).unwrap();
        assert_eq!(&e.body[..], [0, 1, 2]);
        assert!(parse_event(br#"{"body":1,"headers":7}"#.to_vec(), false).is_err());
        assert!(parse_event(br#"{"body":"x","body_base64":"AAEC"}"#.to_vec(), false).is_err());
        // --event insists, and says which keys are wrong.
        let err = parse_event(br#"{"amount":1}"#.to_vec(), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("also has amount"), "{err}");
        assert!(parse_event(b"{\"body\":".to_vec(), true).is_err());
        // Headers alone make an event: its body is empty.
        let e = parse_event(br#"{"type":"ping","headers":{}}"#.to_vec(), false).unwrap();
        assert_eq!((e.event_type.as_str(), e.body.len()), ("ping", 0));
    }

    #[test]
    fn config_flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("wasmhook-run-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cfg.toml");
        std::fs::write(&file, "min = 5\nallow = [\"push\", \"ping\"]\n").unwrap();
        let cfg = plugin_config(Some(&file), &["min=7".into()]).unwrap();
        assert_eq!(
            cfg,
            [
                ("allow".to_string(), "push,ping".to_string()),
                ("min".to_string(), "7".to_string())
            ]
        );
        assert!(plugin_config(None, &["novalue".into()]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
