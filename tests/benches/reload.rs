//! Hot-reload latency: from the rename of a plugin into `plugins/` to the
//! first event served by it, for each example plugin, on a cache miss (first
//! compile) and on a cache hit (the same file back after an unload).
//! Events stream in throughout (one every 2 ms). Run with `cargo xtask bench`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmhook_e2e::{Receiver, Router, Setup, plugin_wasm};

const WAIT: Duration = Duration::from_secs(60);

struct Case {
    plugin: &'static str,
    config: &'static str,
    event_type: &'static str,
    body: &'static str,
}

const CASES: &[Case] = &[
    Case {
        plugin: "filter-event-type",
        config: "{ allow = \"bench\" }",
        event_type: "bench",
        body: r#"{"n":1}"#,
    },
    Case {
        plugin: "redact",
        config: "{ fields = \"/card\" }",
        event_type: "bench",
        body: r#"{"card":"4242","n":1}"#,
    },
    Case {
        plugin: "github-to-slack",
        config: "{}",
        event_type: "push",
        body: r#"{"ref":"refs/heads/main","pusher":{"name":"o"},"repository":{"full_name":"o/r"},"commits":[]}"#,
    },
    Case {
        plugin: "split-batch",
        config: "{}",
        event_type: "bench",
        body: r#"[{"n":1},{"n":2}]"#,
    },
];

async fn measure(router: &Router, rx: &Receiver, case: &Case, delivered_before: usize) -> Duration {
    let dir = router.plugins_dir();
    let tmp = dir.join(format!(".{}.tmp", case.plugin));
    std::fs::copy(plugin_wasm(case.plugin), &tmp).unwrap();
    let start = Instant::now();
    std::fs::rename(&tmp, dir.join(format!("{}.wasm", case.plugin))).unwrap();
    rx.wait_for("t", delivered_before + 1, WAIT).await;
    start.elapsed()
}

async fn unload(router: &Router, case: &Case) {
    std::fs::remove_file(router.plugins_dir().join(format!("{}.wasm", case.plugin))).unwrap();
    let deadline = Instant::now() + WAIT;
    while router.plugin_status(case.plugin).await.is_some() {
        assert!(Instant::now() < deadline, "plugin never unloaded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("rename into place → first event served (watch_debounce_ms = 100, events every 2 ms)");
        for case in CASES {
            let rx = Receiver::start().await;
            let config = format!(
                "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"{}\"\n\n\
                 [[routes]]\nname = \"r\"\nsource = \"s\"\nplugins = [{{ name = \"{}\", config = {} }}]\ntargets = [\"t\"]\n",
                rx.url("t"),
                case.plugin,
                case.config
            );
            let router = Arc::new(Router::with(Setup { config: &config, ..Setup::default() }).await);
            let streaming = Arc::new(AtomicBool::new(true));
            let stream = {
                let (router, streaming) = (router.clone(), streaming.clone());
                let (ty, body) = (case.event_type, case.body);
                tokio::spawn(async move {
                    while streaming.load(Ordering::Relaxed) {
                        router.ingest("s", body, &[("x-event-type", ty), ("content-type", "application/json")]).await;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            };
            let miss = measure(&router, &rx, case, 0).await;
            unload(&router, case).await;
            let before = rx.on("t").len();
            let hit = measure(&router, &rx, case, before).await;
            streaming.store(false, Ordering::Relaxed);
            stream.await.unwrap();
            let from_cache = router.plugin_status(case.plugin).await.unwrap()["from_cache"] == true;
            println!(
                "{:<18} cache miss {:>6.1} ms   cache hit {:>6.1} ms{}",
                case.plugin,
                miss.as_secs_f64() * 1e3,
                hit.as_secs_f64() * 1e3,
                if from_cache { "" } else { "   (second load did not come from the cache!)" }
            );
        }
    });
}
