//! One HTTP attempt of one delivery.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::signing;
use crate::config::Target;
use crate::metrics::Failure;
use crate::store::Delivery;

/// Headers never forwarded from the event to a target: hop-by-hop headers
/// (RFC 9110 §7.6.1), those the client computes, the signature headers we set
/// ourselves, and credentials meant for the router, not the target.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
    "authorization",
    "cookie",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Most of a response body worth keeping for the log.
const EXCERPT_BYTES: usize = 512;

/// What the target said, for the attempt log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub status: Option<u16>,
    /// Why no answer came, when none did.
    pub failure: Option<Failure>,
    /// The start of the response body, on one line.
    pub excerpt: Option<String>,
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Worth another try: timeout, connection error, 408, 429, 5xx.
    Retryable {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Trying again will not help: any other status.
    Permanent {
        error: String,
    },
}

/// The shared HTTP client: one connection pool for every target.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    pub fn new() -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("wasmhook/", env!("CARGO_PKG_VERSION")))
            // A redirect would send the signed payload somewhere the config
            // never named; targets must be configured with their final URL.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Sender { client })
    }

    pub async fn attempt(&self, target: &Target, delivery: &Delivery) -> (Verdict, Reply) {
        let event = &delivery.event;
        let mut headers = HeaderMap::new();
        for (name, value) in &event.headers {
            if NOT_FORWARDED.contains(&name.as_str()) {
                continue;
            }
            match (
                HeaderName::try_from(name.as_str()),
                // Bytes, not `&str`: a UTF-8 value (`Café`) is sent as received.
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                (Ok(n), Ok(v)) => {
                    headers.append(n, v);
                }
                // Only a plugin can make one (ingest stores what HTTP
                // carried): say so rather than drop it unseen.
                _ => tracing::warn!(
                    delivery_id = %delivery.id,
                    header = %name.escape_debug(),
                    "not sending a header a plugin set: its name or value is not valid in HTTP"
                ),
            }
        }
        if !headers.contains_key(http::header::CONTENT_TYPE) {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        let timestamp = now_secs();
        if crate::telemetry::enabled()
            && let Some(parent) = crate::telemetry::traceparent(&tracing::Span::current())
        {
            // The target's work joins this attempt's span.
            headers.insert(crate::telemetry::TRACEPARENT, header_value(&parent));
        }
        headers.insert("webhook-id", header_value(&delivery.id));
        headers.insert("webhook-timestamp", header_value(&timestamp.to_string()));
        if !target.signing_keys.is_empty() {
            let sig = signing::signature_header(
                target.signing_keys.iter().map(|k| k.expose()),
                &delivery.id,
                timestamp,
                &event.body,
            );
            headers.insert("webhook-signature", header_value(&sig));
        }

        let request = self
            .client
            .post(target.url.clone())
            .headers(headers)
            .timeout(target.timeout)
            .body(event.body.clone());
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let (failure, error) = if e.is_timeout() {
                    let ms = target.timeout.as_millis();
                    (Failure::Timeout, format!("timed out after {ms} ms"))
                } else if e.is_connect() {
                    let why = root_cause(&e);
                    (Failure::Connect, format!("connection failed: {why}"))
                } else {
                    let why = root_cause(&e);
                    (Failure::Other, format!("request failed: {why}"))
                };
                let reply = Reply {
                    failure: Some(failure),
                    ..Reply::default()
                };
                let verdict = Verdict::Retryable {
                    error,
                    retry_after: None,
                };
                return (verdict, reply);
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::retry::parse_retry_after(v, std::time::SystemTime::now()));
        let excerpt = body_excerpt(response).await;
        let code = status.as_u16();
        let reply = Reply {
            status: Some(code),
            failure: None,
            excerpt: (!excerpt.is_empty()).then(|| excerpt.clone()),
        };
        if status.is_success() {
            return (Verdict::Success, reply);
        }
        let error = if excerpt.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code}: {excerpt}")
        };
        let verdict = if code == 408 || code == 429 || status.is_server_error() {
            Verdict::Retryable { error, retry_after }
        } else {
            Verdict::Permanent { error }
        };
        (verdict, reply)
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn now_secs() -> i64 {
    (crate::event::now_ms() / 1000) as i64
}

/// The innermost error message: reqwest's own Display says little.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Up to [`EXCERPT_BYTES`] of the body, as text on one line.
async fn body_excerpt(mut response: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(EXCERPT_BYTES);
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
