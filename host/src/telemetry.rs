//! Logs, and traces over OTLP.
//!
//! Every process logs to stderr (`--log-format`, `RUST_LOG`). A router
//! whose config sets `[telemetry] otlp_endpoint` also exports spans there,
//! over OTLP/HTTP (protobuf), in batches from a thread of their own:
//!
//! - each event is one trace: the `ingest` span (a child of the sender's
//!   `traceparent`, when it sent one), its `plugin` calls, and every
//!   `delivery` attempt, with the event id and delivery id as attributes;
//! - the trace outlives the process: ingest writes its span's context into
//!   the event's `traceparent` header, which is stored with the event and
//!   travels with its deliveries, so the pipeline and every attempt (on
//!   any node, after any restart) join the same trace;
//! - each attempt sends its own span's context to the target, as
//!   `traceparent`.
//!
//! Sampling is by trace id (`sample_ratio`), the same on every node.
//!
//! Without an endpoint nothing here runs per event: [`enabled`] is false,
//! the extra spans are not made, and no header is touched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use crate::config::TelemetryConfig;

/// Set once, with the process's subscriber (itself process-wide).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The longest the last spans' export may hold up the process's exit.
pub const SHUTDOWN_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// Whether spans are exported: only then are trace contexts read and
/// written.
pub fn enabled() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// A span around one event's or one attempt's work: `info` when spans are
/// exported, else `debug`, so that at the default log level it is not
/// made at all. The `info` spans cost the log layer (formatting their
/// fields, and bookkeeping on every poll) about 7 µs of the 144 µs of CPU
/// a delivered event took, measured in alternating runs of `cargo bench -p
/// wasmhook-e2e --bench throughput -- e2e-fsync`, while no line was logged
/// in them. So a line that reports a failure makes its own (see
/// [`in_span`]), and `RUST_LOG=debug` puts the spans back into the logs.
macro_rules! event_span {
    ($name:literal, $($fields:tt)*) => {
        if $crate::telemetry::enabled() {
            ::tracing::info_span!($name, $($fields)*)
        } else {
            ::tracing::debug_span!($name, $($fields)*)
        }
    };
}
pub(crate) use event_span;

/// Log with `log` inside the span `about` makes, unless a span is current
/// already: the line then names what it is about (in a JSON line, under
/// `span`) though the [`event_span`] it runs in was not made. For the
/// lines that say something went wrong, so the span is made only then.
pub fn in_span(about: impl FnOnce() -> tracing::Span, log: impl FnOnce()) {
    if tracing::Span::current().is_disabled() {
        about().in_scope(log)
    } else {
        log()
    }
}

/// What must outlive the process's work: the span exporter, flushed by
/// [`Telemetry::shutdown`].
#[must_use = "spans are flushed by shutdown"]
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Export the spans still buffered, then stop: at most
    /// [`SHUTDOWN_BUDGET`], after which what is left is lost.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // It waits for the exporter's thread: not on a runtime thread.
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_BUDGET))
                .await;
        if let Ok(Err(e)) = done {
            eprintln!("warning: exporting the last spans failed: {e}");
        }
    }
}

/// Install the process's subscriber: logs to stderr at `RUST_LOG` (else
/// `default_level`), and spans to `telemetry`'s OTLP endpoint, if any.
pub fn init(
    format: LogFormat,
    default_level: &str,
    telemetry: Option<&TelemetryConfig>,
) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours only for a terminal: a log file or a pipe gets plain text.
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    let provider = match telemetry.and_then(|t| t.otlp_endpoint.as_ref().map(|url| (t, url))) {
        Some((t, url)) => Some(provider(t, url)?),
        None => None,
    };
    // The router's own spans only, whatever RUST_LOG says.
    let spans = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("wasmhook"))
            // `target` is ours: the delivery's target, not the module.
            .with_target(false)
            .with_filter(Targets::new().with_target("wasmhook", tracing::Level::INFO))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .context("cannot install the log subscriber")?;
    EXPORTING.store(provider.is_some(), Ordering::Relaxed);
    Ok(Telemetry { provider })
}

fn provider(t: &TelemetryConfig, url: &reqwest::Url) -> anyhow::Result<SdkTracerProvider> {
    let headers: HashMap<String, String> = t
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v.expose()).into_owned()))
        .collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.as_str())
        .with_headers(headers)
        .with_timeout(t.timeout)
        .build()
        .with_context(|| format!("cannot export spans to {url} (telemetry.otlp_endpoint)"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(t.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // By trace id, whoever started the trace: every span of a trace
        // (on any node) gets the same verdict, and a sender's sampled
        // flag cannot make the router export every one of its events.
        .with_sampler(Sampler::TraceIdRatioBased(t.sample_ratio))
        .with_resource(resource)
        .build())
}

/// Make `span` a child of the trace context in `headers` (W3C
/// `traceparent`), if there is a valid one. Call before the span is
/// entered.
pub fn continue_from(span: &tracing::Span, headers: &[(String, String)]) {
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(parent);
}

/// Write `span`'s trace context into `headers` as `traceparent` (replacing
/// any), so what reads them later joins its trace.
pub fn stamp(span: &tracing::Span, headers: &mut Vec<(String, String)>) {
    let mut written = HeadersMut(headers);
    TraceContextPropagator::new().inject_context(&span.context(), &mut written);
}

/// With spans exported, an output keeps its event's trace: a plugin that
/// dropped the `traceparent` header (or built its headers anew) does not
/// cut the deliveries off from it. One the plugin set itself stays.
pub fn keep_trace(event: &[(String, String)], output: &mut Vec<(String, String)>) {
    if !enabled() || Headers(output).get(TRACEPARENT).is_some() {
        return;
    }
    if let Some(parent) = Headers(event).get(TRACEPARENT) {
        output.push((TRACEPARENT.to_string(), parent.to_string()));
    }
}

/// A `traceparent` for `span`, to send on: `None` when it has no trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut headers = Vec::new();
    stamp(span, &mut headers);
    headers
        .into_iter()
        .find_map(|(k, v)| (k == TRACEPARENT).then_some(v))
}

pub const TRACEPARENT: &str = "traceparent";

/// An event's headers, for the propagator to read. Names are lower-case
/// as ingest stores them, but a plugin may write its own in any case.
struct Headers<'a>(&'a [(String, String)]);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find_map(|(k, v)| k.eq_ignore_ascii_case(key).then_some(v.as_str()))
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

struct HeadersMut<'a>(&'a mut Vec<(String, String)>);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        let key = key.to_ascii_lowercase();
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
        // An empty `tracestate` is no header at all.
        if !value.is_empty() {
            self.0.push((key, value));
        }
    }
}

/// The trace id of `cx`, in hex.
#[cfg(test)]
fn trace_of(cx: &opentelemetry::Context) -> String {
    use opentelemetry::trace::TraceContextExt as _;
    cx.span().span_context().trace_id().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_senders_traceparent_is_read_and_a_new_one_replaces_it() {
        let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("traceparent".to_string(), sent.to_string()),
        ];
        let cx = TraceContextPropagator::new().extract(&Headers(&headers));
        assert_eq!(trace_of(&cx), "4bf92f3577b34da6a3ce929d0e0e4736");

        let mut out = headers.clone();
        TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(&mut out));
        let written: Vec<_> = out.iter().filter(|(k, _)| k == "traceparent").collect();
        assert_eq!(written.len(), 1, "one traceparent: {out:?}");
        assert_eq!(out.len(), 2, "no empty tracestate: {out:?}");
        assert_eq!(written[0].1, sent);
        assert_eq!(out[0].0, "content-type", "other headers kept in order");
    }

    #[test]
    fn a_plugins_header_in_any_case_is_read_and_replaced() {
        let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = vec![("Traceparent".to_string(), sent.to_string())];
        let cx = TraceContextPropagator::new().extract(&Headers(&headers));
        assert_eq!(trace_of(&cx), "4bf92f3577b34da6a3ce929d0e0e4736");
        TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(&mut headers));
        assert_eq!(headers, [("traceparent".to_string(), sent.to_string())]);
    }

    #[test]
    fn a_malformed_traceparent_is_no_parent() {
        let headers = vec![("traceparent".to_string(), "00-nothex-01".to_string())];
        let cx = TraceContextPropagator::new().extract(&Headers(&headers));
        assert_eq!(trace_of(&cx), "00000000000000000000000000000000");
    }
}
