//! Traces over OTLP: a local OTLP/HTTP endpoint receives the router's
//! spans, and one event is one trace from ingest through its plugin to its
//! attempt, continuing the sender's `traceparent` and sending one on.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use wasmhook_e2e::{Receiver, Router, Setup};

use crate::{WAIT, eventually_async};

/// An OTLP/HTTP traces endpoint on 127.0.0.1 that keeps every span.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    async fn start() -> Collector {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { url, spans }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(State(spans): State<Arc<Mutex<Vec<Span>>>>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut kept = spans.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            kept.extend(scope.spans);
        }
    }
    // An empty ExportTraceServiceResponse.
    Vec::new()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?;
    match value.value.as_ref()? {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const SENDER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread")]
async fn one_event_is_one_trace_from_the_senders_span_to_the_attempt() {
    let collector = Collector::start().await;
    let rx = Receiver::start().await;
    let config = format!(
        "[telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"wasmhook-test\"\n\n\
         [[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\n\
         plugins = [{{ name = \"redact\", config = {{ fields = \"/secret\" }} }}]\ntargets = [\"t\"]\n",
        collector.url,
        rx.url("t")
    );
    let mut router = Router::with(Setup {
        config: &config,
        plugins: &["redact"],
        ..Setup::default()
    })
    .await;

    let sent = format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01");
    let (status, _) = router
        .ingest(
            "s",
            r#"{"secret":1}"#,
            &[("webhook-id", "traced"), ("traceparent", &sent)],
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = router
        .ingest("s", r#"{"n":2}"#, &[("webhook-id", "untraced")])
        .await;
    assert_eq!(status, 202);
    let got = rx.wait_for("t", 2, WAIT).await;

    // The spans are exported in batches; the rest go at shutdown.
    assert!(router.terminate().await, "a clean exit");
    let spans = eventually_async("the spans of both events", || async {
        let spans = collector.spans();
        let deliveries = spans.iter().filter(|s| s.name == "delivery").count();
        (deliveries >= 2).then_some(spans)
    })
    .await;
    let by_event = |id: &str, name: &str| -> Span {
        spans
            .iter()
            .find(|s| s.name == name && attribute(s, "event_id").as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no {name} span for {id} in {spans:#?}"))
            .clone()
    };

    // The traced event continues the sender's trace.
    let ingest = by_event("traced", "ingest");
    assert_eq!(hex(&ingest.trace_id), SENDER_TRACE);
    assert_eq!(hex(&ingest.parent_span_id), SENDER_SPAN);
    assert_eq!(attribute(&ingest, "source").as_deref(), Some("s"));
    let plugin = spans
        .iter()
        .find(|s| s.name == "plugin" && s.trace_id == ingest.trace_id)
        .unwrap_or_else(|| panic!("no plugin span in the trace: {spans:#?}"));
    assert_eq!(attribute(plugin, "plugin").as_deref(), Some("redact"));
    assert_eq!(
        plugin.parent_span_id, ingest.span_id,
        "the call is under ingest"
    );
    let delivery = by_event("traced", "delivery");
    assert_eq!(delivery.trace_id, ingest.trace_id);
    assert_eq!(delivery.parent_span_id, ingest.span_id);
    assert_eq!(attribute(&delivery, "target").as_deref(), Some("t"));
    assert!(attribute(&delivery, "delivery_id").is_some_and(|id| id.starts_with("msg_")));
    assert_eq!(
        attribute(&delivery, "http.response.status_code").as_deref(),
        Some("200")
    );
    // The target got the attempt's own span as its parent.
    let traced = got
        .iter()
        .find(|r| r.body.as_ref() == br#"{}"#)
        .expect("the redacted event");
    assert_eq!(
        traced.header("traceparent"),
        Some(format!("00-{SENDER_TRACE}-{}-01", hex(&delivery.span_id)).as_str())
    );

    // An event sent without one starts a trace of its own at ingest.
    let ingest = by_event("untraced", "ingest");
    assert!(ingest.parent_span_id.is_empty(), "a root span");
    assert_ne!(hex(&ingest.trace_id), SENDER_TRACE);
    let delivery = by_event("untraced", "delivery");
    assert_eq!(delivery.trace_id, ingest.trace_id);
    assert_eq!(delivery.parent_span_id, ingest.span_id);
    let untraced = got.iter().find(|r| r.body.as_ref() != br#"{}"#).unwrap();
    assert!(
        untraced
            .header("traceparent")
            .is_some_and(|t| t.contains(&hex(&ingest.trace_id))),
        "{:?}",
        untraced.header("traceparent")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_endpoint_a_senders_traceparent_passes_through_untouched() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"{}\"\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n",
        rx.url("t")
    );
    let router = Router::start(&config, &[], "").await;
    let sent = format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01");
    let (status, _) = router
        .ingest("s", "{}", &[("traceparent", sent.as_str())])
        .await;
    assert_eq!(status, 202);
    let got = rx.wait_for("t", 1, WAIT).await;
    assert_eq!(got[0].header("traceparent"), Some(sent.as_str()));
}
