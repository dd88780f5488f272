//! `wasmhook listen [--port P] [--secret whsec_…]`: a local target that prints
//! every delivery and verifies its Standard Webhooks signature.

use std::process::ExitCode;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use clap::Args;

use crate::config::{Secret, decode_whsec};
use crate::dispatch::signing;
use crate::event::now_ms;

/// Deliveries older or newer than this are refused, as Standard Webhooks advises.
const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// The target's signing secret; when set, unsigned or badly signed
    /// deliveries are answered 401 (so the router retries them).
    #[arg(long, env = "WASMHOOK_LISTEN_SECRET")]
    secret: Option<String>,
}

pub async fn listen(args: ListenArgs) -> anyhow::Result<ExitCode> {
    let key = match &args.secret {
        Some(s) => Some(decode_whsec(s).map_err(|m| anyhow::anyhow!("--secret: {m}"))?),
        None => None,
    };
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let key = key.clone();
        async move { receive(key.as_ref(), &uri, &headers, &body) }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    eprintln!(
        "listening on http://{} (Ctrl-C to stop)",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// Headers `listen` does not print: transport and signing, the same on
/// every delivery.
const QUIET_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "accept",
    "accept-encoding",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

#[allow(clippy::print_stdout)]
fn receive(
    key: Option<&Secret>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, &'static str) {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let id = get("webhook-id");
    let verdict = match key {
        None => "unverified (no --secret)".to_string(),
        Some(key) => match check(
            key,
            id,
            get("webhook-timestamp"),
            body,
            get("webhook-signature"),
        ) {
            Ok(()) => "signature ok".to_string(),
            Err(why) => format!("SIGNATURE REJECTED: {why}"),
        },
    };
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    // The headers a plugin may have set; not the ones every request has.
    let shown: String = headers
        .iter()
        .filter(|(n, _)| !QUIET_HEADERS.contains(&n.as_str()))
        .map(|(n, v)| format!("    {n}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    println!("--> POST {uri}  webhook-id={id}  {verdict}\n{shown}{text}\n");
    if verdict.starts_with("SIGNATURE REJECTED") {
        (StatusCode::UNAUTHORIZED, "bad signature")
    } else {
        (StatusCode::OK, "ok")
    }
}

fn check(
    key: &Secret,
    id: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
) -> Result<(), String> {
    if id.is_empty() || signature.is_empty() {
        return Err("missing webhook-id or webhook-signature".into());
    }
    let ts: i64 = timestamp.parse().map_err(|_| "bad webhook-timestamp")?;
    let now = (now_ms() / 1000) as i64;
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(format!("timestamp is {}s away from now", now - ts));
    }
    if signing::verify(key.expose(), id, ts, body, signature) {
        Ok(())
    } else {
        Err("no signature matches the secret".into())
    }
}
