//! Property tests: whatever bytes arrive, the signature-header parsers and the
//! ingest path never panic, answer a 4xx (or 202 when genuine), and store
//! nothing they refuse.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use tower::ServiceExt;
use wasmhook::config;
use wasmhook::config::PluginLimits;
use wasmhook::dispatch::Circuits;
use wasmhook::metrics::Metrics;
use wasmhook::plugin::{PluginRegistry, PluginRuntime};
use wasmhook::server::{AppState, app};
use wasmhook::store::{SqliteStore, Store};
use wasmhook::verify::{decode_hex, parse_prefixed_hex, parse_standard, parse_stripe};

const CONFIG: &str = r#"
[server]
max_body_bytes = 65536

[storage]
url = "memory://"

[[sources]]
name = "github"
verify = { scheme = "github", secret = "s3cret" }
event_type = { header = "x-github-event" }

[[sources]]
name = "stripe"
verify = { scheme = "stripe", secret = "whsec_s3cret" }

[[sources]]
name = "standard"
verify = { scheme = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }

[[sources]]
name = "json"
event_type = { json_pointer = "/type" }

[[targets]]
name = "t"
url = "http://127.0.0.1:9/"

[[routes]]
name = "r"
source = "json"
targets = ["t"]
"#;

struct Harness {
    rt: tokio::runtime::Runtime,
    state: AppState,
    store: Arc<dyn Store>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // The path only resolves relative paths; nothing here reads it.
        let config = config::parse(Path::new("wasmhook.toml"), CONFIG).unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(None, false, 100_000).unwrap());
        let runtime = Arc::new(
            PluginRuntime::new(
                PluginLimits {
                    max_concurrency: 1,
                    ..PluginLimits::default()
                },
                None,
            )
            .unwrap(),
        );
        let metrics = Arc::new(Metrics::default());
        let circuits = Arc::new(Circuits::new(store.clone(), metrics.clone()));
        let state = AppState::new(
            Arc::new(ArcSwap::from_pointee(config)),
            store.clone(),
            Arc::new(PluginRegistry::new(runtime)),
            metrics,
            None,
            Arc::default(),
            circuits,
        );
        Harness { rt, state, store }
    })
}

/// Header values as HTTP allows them (visible ASCII, spaces, tabs), sometimes huge.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~\t]{0,64}",
        "(sha256=|v0=|t=[0-9]{1,12},v1=|v1,)[0-9a-zA-Z+/=,. ]{0,128}",
        "[a-f0-9]{0,8}".prop_map(|s| s.repeat(1000)),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        Just(b"[".repeat(10_000)),
        Just(format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes()),
        Just(vec![0xff, 0xfe, b'{', 0xc3, 0x28]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn header_parsers_never_panic(s in "\\PC{0,300}") {
        let _ = parse_stripe(&s);
        let _ = parse_standard(&s);
        let _ = decode_hex(&s);
        let _ = parse_prefixed_hex(&s, "sha256=");
    }

    #[test]
    fn ingest_never_panics_and_refuses_forgeries_storing_nothing(
        source in prop_oneof![Just("github"), Just("stripe"), Just("standard"), Just("json"), Just("nope")],
        values in proptest::collection::vec(header_value(), 4),
        body in body(),
        n in any::<u64>(),
    ) {
        let h = harness();
        let id = format!("prop-{n}");
        let request = Request::post(format!("/ingest/{source}"))
            .header("x-hub-signature-256", &values[0])
            .header("stripe-signature", &values[1])
            .header("webhook-signature", &values[2])
            .header("x-github-event", &values[3])
            .header("webhook-timestamp", &values[3])
            .header("webhook-id", &id)
            .body(Body::from(body.clone()))
            .unwrap();
        let response = h.rt.block_on(app(h.state.clone()).oneshot(request)).unwrap();
        let status = response.status().as_u16();
        if source == "json" {
            // Unsigned: every body is an event, typed by /type when it has one.
            prop_assert_eq!(status, 202);
            let stored = h.rt.block_on(h.store.event(&id)).unwrap();
            let stored = stored.expect("an accepted event is stored");
            let typed = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.pointer("/type").cloned())
                .and_then(|t| match t {
                    serde_json::Value::String(s) => Some(s),
                    t if t.is_number() || t.is_boolean() => Some(t.to_string()),
                    _ => None,
                })
                .unwrap_or_default();
            prop_assert_eq!(stored.event_type, typed);
        } else {
            prop_assert!((400..500).contains(&status), "status {}", status);
            let stored = h.rt.block_on(h.store.event(&id)).unwrap();
            prop_assert!(stored.is_none(), "a refused request was stored");
        }
    }
}
