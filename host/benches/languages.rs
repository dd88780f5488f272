//! The cost of a plugin per language: the same threshold filter built from
//! the Rust, JavaScript and Python templates (`tests/template-variants/`),
//! each call in a fresh instance, on a 1 KiB JSON body.
//!
//! For each: the first load (compiling, no cache), a cache hit, the time per
//! call one at a time, and a burst of 1,000 calls from 16 concurrent callers
//! (time per event, and how many failed); then the same with
//! `plugins.reuse = 100`, an instance serving up to 100 events. Run with
//! `cargo xtask bench`, which builds the plugins into
//! `target/plugins/tpl-*.wasm` first.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmhook::config::PluginLimits;
use wasmhook::plugin::{PluginRegistry, PluginRuntime};

const WARMUP: usize = 200;
const CALLS: usize = 2_000;
const BURST: usize = 1_000;
const SENDERS: usize = 16;

fn body_1k() -> Vec<u8> {
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        items.push(serde_json::json!({"sku": format!("SKU-{i:05}"), "qty": i % 7}));
        let body = serde_json::json!({"type": "order.created", "n": 10, "items": items});
        let bytes = serde_json::to_vec(&body).unwrap();
        if bytes.len() >= 1024 {
            return bytes;
        }
        i += 1;
    }
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e3
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = body_1k();
    println!(
        "threshold filter from each template, on a {} byte JSON body, fresh instance per call",
        body.len()
    );
    println!(
        "{:<11} {:>9} {:>9} {:>10} {:>9} {:>9} {:>14} {:>7}",
        "language", "compile", "cached", "mean", "p50", "p99", "burst/event", "failed"
    );
    // `cargo bench --bench languages -- js python` runs just those.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for lang in ["rust", "js", "python"] {
        if !only.is_empty() && !only.iter().any(|o| o == lang) {
            continue;
        }
        let wasm = root.join(format!("target/plugins/tpl-{lang}.wasm"));
        assert!(
            wasm.exists(),
            "{} is missing: run `cargo xtask bench`",
            wasm.display()
        );
        rt.block_on(bench(lang, &wasm, &body, 1));
        rt.block_on(bench(lang, &wasm, &body, 100));
    }
}

async fn bench(lang: &str, wasm: &std::path::Path, body: &[u8], reuse: u32) {
    let cache = std::env::temp_dir().join(format!("wasmhook-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let mut limits = PluginLimits::default();
    limits.reuse.insert(format!("tpl-{lang}"), reuse);
    let load = |cache: std::path::PathBuf| async {
        let runtime = Arc::new(PluginRuntime::new(limits.clone(), Some(cache)).unwrap());
        let registry = PluginRegistry::new(runtime.clone());
        let start = Instant::now();
        let plugin = registry.load_file(wasm).await.unwrap();
        (runtime, plugin, start.elapsed())
    };
    let (_, _, compile) = load(cache.clone()).await;
    let (runtime, plugin, cached) = load(cache.clone()).await;
    let _ = std::fs::remove_dir_all(&cache);

    let config: Arc<[(String, String)]> = Arc::from(vec![("min".to_string(), "5".to_string())]);
    let event = common::json_event(body);
    let mut samples = common::time_calls(&runtime, &plugin, &event, &config, WARMUP, CALLS).await;
    samples.sort();
    let mean = samples.iter().sum::<Duration>().as_secs_f64() / samples.len() as f64 * 1e3;

    // A burst: 16 callers share 1,000 events, as 16 senders would.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..SENDERS {
        let (runtime, plugin, event, config, next) = (
            runtime.clone(),
            plugin.clone(),
            event.clone(),
            config.clone(),
            next.clone(),
        );
        callers.push(tokio::spawn(async move {
            let mut failed = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < BURST {
                if runtime
                    .invoke(&plugin, &event, config.clone())
                    .await
                    .is_err()
                {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for c in callers {
        failed += c.await.unwrap();
    }
    let burst = start.elapsed().as_secs_f64() * 1e3 / BURST as f64;
    let label = if reuse > 1 {
        format!("{lang} ×{reuse}")
    } else {
        lang.to_string()
    };
    println!(
        "{label:<11} {:>7.0}ms {:>7.0}ms {:>8.3}ms {:>7.3}ms {:>7.3}ms {:>12.3}ms {:>7}",
        compile.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3,
        mean,
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        burst,
        failed
    );
}
