//! Time per plugin call, fresh instance each, on a 1 KiB JSON body: the
//! `redact` plugin in WebAssembly next to the same Rust code run natively.
//!
//! Run with `cargo xtask bench` (builds the plugins first).

use std::sync::Arc;
mod common;

use std::time::{Duration, Instant};

use wasmhook::config::PluginLimits;
use wasmhook::plugin::{PluginRegistry, PluginRuntime};
use wasmhook_sdk::Config;

const WARMUP: usize = 500;
const CALLS: usize = 5_000;

fn body_1k() -> Vec<u8> {
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        items.push(serde_json::json!({"sku": format!("SKU-{i:05}"), "qty": i % 7, "price_cents": 1999 + i}));
        let body = serde_json::json!({
            "type": "order.created",
            "user": {"email": "ann@example.com", "name": "Ann Example", "id": 42},
            "card": "4242424242424242",
            "items": items,
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        if bytes.len() >= 1024 {
            return bytes;
        }
        i += 1;
    }
}

fn report(label: &str, mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    let mean = samples.iter().sum::<Duration>().as_secs_f64() / samples.len() as f64;
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    println!(
        "{label:<34} mean {:>8.2} µs   p50 {:>8.2} µs   p99 {:>8.2} µs",
        mean * 1e6,
        p(0.5),
        p(0.99)
    );
    mean
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("target/plugins/redact.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run `cargo xtask bench`",
        wasm.display()
    );
    let body = body_1k();
    println!(
        "redact on a {} byte JSON body, fields = /user/email,/card; {CALLS} calls each",
        body.len()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let wasm_mean = rt.block_on(async {
        let runtime = Arc::new(PluginRuntime::new(PluginLimits::default(), None).unwrap());
        let registry = PluginRegistry::new(runtime.clone());
        let plugin = registry.load_file(&wasm).await.unwrap();
        let config: Arc<[(String, String)]> = Arc::from(vec![(
            "fields".to_string(),
            "/user/email,/card".to_string(),
        )]);
        let event = common::json_event(&body);
        let samples = common::time_calls(&runtime, &plugin, &event, &config, WARMUP, CALLS).await;
        report("wasm (fresh instance per call)", samples)
    });

    let cfg = Config::from_pairs([("fields", "/user/email,/card")]);
    let native_event = wasmhook_sdk::Event::new("order.created", body.clone());
    for _ in 0..WARMUP {
        std::hint::black_box(redact::handle(native_event.clone(), &cfg).unwrap());
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let ev = native_event.clone();
        let start = Instant::now();
        let out = redact::handle(ev, &cfg).unwrap();
        samples.push(start.elapsed());
        std::hint::black_box(out);
    }
    let native_mean = report("native Rust (same plugin code)", samples);
    println!(
        "overhead of the sandbox: {:.1}x the native time",
        wasm_mean / native_mean
    );
}
