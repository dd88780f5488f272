//! `wasmhook send SOURCE [FILE|-] [--type T]`: post an event to a running router.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::config::EventTypeRule;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The source to post to: `/ingest/SOURCE`.
    source: String,
    /// The body, as a file; `-` or nothing reads stdin.
    file: Option<PathBuf>,
    /// Event type. Sent in the header the source's `event_type` rule reads
    /// (from the config, when it can be read), else in `x-event-type`.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Event id, sent as `Idempotency-Key`.
    #[arg(long)]
    id: Option<String>,
    /// Extra header as `Name: value`; repeat for several.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    #[command(flatten)]
    conn: super::admin::Connection,
}

#[allow(clippy::print_stdout)]
pub async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let body = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        _ => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            buf
        }
    };
    // The config is optional here: `send` also works against a remote router.
    let config = args.conn.load_config();
    let base = args.conn.base_url(config.as_ref());
    let rule = config
        .as_ref()
        .and_then(|c| c.sources.iter().find(|s| s.name == args.source))
        .map(|s| s.event_type.clone())
        .unwrap_or(EventTypeRule::Default);

    let mut request = reqwest::Client::new()
        .post(format!("{base}/ingest/{}", args.source))
        .header("content-type", content_type(&body))
        .body(body);
    if let Some(t) = &args.event_type {
        match &rule {
            EventTypeRule::Header(h) => request = request.header(h.as_str(), t),
            EventTypeRule::Default => request = request.header("x-event-type", t),
            EventTypeRule::JsonPointer(p) => {
                anyhow::bail!(
                    "source {:?} reads the event type from the body at {p}: put it there instead of --type",
                    args.source
                )
            }
        }
    }
    if let Some(id) = &args.id {
        request = request.header("idempotency-key", id);
    }
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?} must be `Name: value`"))?;
        request = request.header(name.trim(), value.trim());
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the router at {base}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("{} {}", status.as_u16(), text.trim());
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn content_type(body: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        "application/json"
    } else {
        "application/octet-stream"
    }
}
