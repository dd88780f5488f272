//! End-to-end events/s: ingest → plugin → signed delivery to a local target,
//! through the real binary. Run with `cargo xtask bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmhook_e2e::{Receiver, Router, Setup};

const EVENTS: usize = 5_000;
const CONCURRENCY: usize = 32;

async fn run(label: &str, plugins: &str, plugin_files: &[&str], storage: &str) {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\nsigning_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nmax_in_flight = 64\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\nplugins = [{plugins}]\ntargets = [\"t\"]\n",
        rx.url("t")
    );
    let durable = storage != "memory";
    let storage_extra = if storage == "sqlite, OS flush" {
        "fsync = false"
    } else {
        ""
    };
    let router = Arc::new(
        Router::with(Setup {
            config: &config,
            plugins: plugin_files,
            durable,
            storage_extra,
            ..Setup::default()
        })
        .await,
    );
    let body = r#"{"type":"order.created","user":{"email":"ann@example.com","name":"Ann"},"card":"4242424242424242","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"note":"benchmark payload padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding padding"}"#;

    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(EVENTS);
    for _ in 0..EVENTS {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            let (status, _) = router
                .ingest("s", body, &[("content-type", "application/json")])
                .await;
            drop(permit);
            status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 202);
    }
    let ingested = start.elapsed();
    rx.wait_for("t", EVENTS, Duration::from_secs(300)).await;
    let delivered = start.elapsed();
    println!(
        "{label:<14} {storage:<17} {EVENTS} events ({} B), {CONCURRENCY} senders: ingest {:>6.0} events/s, end to end {:>6.0} events/s",
        body.len(),
        EVENTS as f64 / ingested.as_secs_f64(),
        EVENTS as f64 / delivered.as_secs_f64(),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let redact = "{ name = \"redact\", config = { fields = \"/user/email,/card\" } }";
        for storage in ["memory", "sqlite, fsync", "sqlite, OS flush"] {
            run("no plugin", "", &[], storage).await;
            run("redact plugin", redact, &["redact"], storage).await;
        }
    });
}
