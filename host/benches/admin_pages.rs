//! How fast the dashboard's pages answer with a big store: fills a SQLite
//! store with N events (default 1,000,000; each with a delivery, 1 in 100
//! of them dead, 1 in 500 with a failed route), then starts the real
//! router on it and times every admin API call the pages make, over HTTP
//! on loopback.
//!
//! `cargo xtask bench admin-pages [-- EVENTS]` (builds the router first).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmhook::event::Event;
use wasmhook::store::{
    Attempt, Delivery, NextStep, Processed, RouteOutcome, RouteResult, SqliteStore, Store,
};

const SOURCES: [&str; 3] = ["github", "stripe", "shop"];
const TYPES: usize = 8;
const TOKEN: &str = "bench-token";
const CALLS: usize = 20;

fn event(i: usize, base: u64) -> Event {
    Event {
        id: format!("evt_{i:08}"),
        source: SOURCES[i % SOURCES.len()].into(),
        event_type: format!("type{}", i % TYPES),
        received_at: base + i as u64,
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!(
            r#"{{"n":{i},"customer":{{"id":{}}},"note":"{}"}}"#,
            i % 977,
            "x".repeat(200)
        )
        .into_bytes()
        .into(),
    }
}

fn processed(i: usize, e: &Event) -> Processed {
    let delivery = Delivery {
        id: format!("dlv_{i:08}"),
        event_id: e.id.clone(),
        route: "r".into(),
        target: "ci".into(),
        event: e.clone(),
        attempts: 0,
        lease: 0,
        order_key: None,
        order_block: false,
    };
    let mut routes = vec![RouteOutcome {
        route: "r".into(),
        result: RouteResult::Emitted {
            outputs: 1,
            targets: vec!["ci".into()],
            dropped: vec![],
        },
    }];
    if i.is_multiple_of(500) {
        routes.push(RouteOutcome {
            route: "broken".into(),
            result: RouteResult::Failed {
                plugin: Some("p".into()),
                error: "trap".into(),
                waiting_for: None,
            },
        });
    }
    Processed {
        deliveries: vec![delivery],
        routes,
    }
}

async fn fill(store: Arc<SqliteStore>, n: usize) {
    let base = wasmhook::event::now_ms() - n as u64;
    let started = Instant::now();
    let workers = 64;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(workers) {
                let e = event(i, base);
                let p = processed(i, &e);
                store.accept_processed(e, None, p).await.unwrap();
            }
        }));
    }
    // Meanwhile, attempt every delivery: most are delivered, 1 in 100 die.
    let mut finished = 0;
    while finished < n {
        let batch = store.claim("ci", Duration::from_secs(600), 1000).await;
        let mut done = Vec::new();
        for d in batch {
            let n: usize = d.id[4..].parse().unwrap();
            let dead = n.is_multiple_of(100);
            let next = if dead {
                NextStep::Dead
            } else {
                NextStep::Delivered
            };
            let attempt = Attempt {
                started_at: wasmhook::event::now_ms(),
                duration_ms: 3,
                status: Some(if dead { 500 } else { 200 }),
                error: None,
                response: Some("ok".into()),
            };
            let store = store.clone();
            done.push(tokio::spawn(async move {
                store
                    .finish_attempt(Delivery { attempts: 1, ..d }, attempt, next)
                    .await
                    .unwrap()
            }));
        }
        for d in done {
            d.await.unwrap();
            finished += 1;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "filled {n} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.replace('_', "").parse().expect("EVENTS is a number"))
        .unwrap_or(1_000_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = root.join("target/release/wasmhook");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo xtask bench admin-pages`",
        binary.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wasmhook.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Arc::new(SqliteStore::open(Some(&db), false, 100_000).unwrap());
        fill(store, n).await;
    });

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("wasmhook.toml");
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"{TOKEN}\"\n\n\
             [storage]\nurl = \"sqlite://{}\"\n\n[plugins]\ndir = \"{}\"\n\n\
             [[sources]]\nname = \"github\"\n[[sources]]\nname = \"stripe\"\n[[sources]]\nname = \"shop\"\n\n\
             [[targets]]\nname = \"ci\"\nurl = \"http://127.0.0.1:9/\"\n",
            db.display(),
            dir.path().join("plugins").display()
        ),
    )
    .unwrap();
    let mut router = Command::new(&binary)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
        let started = Instant::now();
        while client
            .get(url("/readyz"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the router did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let get = |p: String| {
            let client = client.clone();
            async move {
                let t = Instant::now();
                let r = client.get(url(&p)).bearer_auth(TOKEN).send().await.unwrap();
                assert_eq!(r.status(), 200, "{p}");
                let body: serde_json::Value =
                    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                (t.elapsed(), body)
            }
        };
        let (_, first) = get("/api/events?limit=50".into()).await;
        let next = first["next"].as_str().unwrap().to_string();
        let middle = format!("evt_{:08}", n / 2);
        let (_, old) = get(format!(
            "/api/events?limit=50&before={}",
            wasmhook::event::now_ms() - n as u64 / 2
        ))
        .await;
        assert!(!old["events"].as_array().unwrap().is_empty());
        let pages: Vec<(&str, String)> = vec![
            ("overview", "/api/overview".into()),
            ("events: newest 50", "/api/events?limit=50".into()),
            (
                "events: page 2 (cursor)",
                format!("/api/events?limit=50&before={next}"),
            ),
            (
                "events: by source",
                "/api/events?limit=50&source=stripe".into(),
            ),
            ("events: by type", "/api/events?limit=50&type=type3".into()),
            (
                "events: by source and type",
                "/api/events?limit=50&source=shop&type=type5".into(),
            ),
            (
                "events: failed routes",
                "/api/events?limit=50&state=failed".into(),
            ),
            (
                "events: awaiting routes",
                "/api/events?limit=50&state=received".into(),
            ),
            (
                "events: before a time",
                format!(
                    "/api/events?limit=50&before={}",
                    wasmhook::event::now_ms() - n as u64 / 2
                ),
            ),
            ("event detail", format!("/api/events/{middle}")),
            (
                "deliveries: dead",
                "/api/deliveries?limit=50&state=dead".into(),
            ),
            (
                "deliveries: dead of a target",
                "/api/deliveries?limit=50&state=dead&target=ci".into(),
            ),
            (
                "deliveries: all of a target",
                "/api/deliveries?limit=50&target=ci".into(),
            ),
            (
                "deliveries: pending",
                "/api/deliveries?limit=50&state=pending".into(),
            ),
            ("targets", "/api/targets".into()),
            ("plugins", "/api/plugins".into()),
        ];
        println!("{n} events in the store; {CALLS} calls each, over HTTP on loopback");
        let mut worst = Duration::ZERO;
        for (name, path) in pages {
            let mut times = Vec::new();
            for _ in 0..CALLS {
                times.push(get(path.clone()).await.0);
            }
            times.sort();
            let p50 = times[CALLS / 2];
            let max = *times.last().unwrap();
            worst = worst.max(max);
            println!(
                "{name:<32} p50 {:>7.2} ms   max {:>7.2} ms",
                p50.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            );
        }
        println!("slowest call: {:.2} ms", worst.as_secs_f64() * 1e3);
    });
    let _ = router.kill();
    let _ = router.wait();
}
