//! Several routers on one PostgreSQL database, as a cluster runs: each
//! event is delivered once whichever node takes it in, the same event sent
//! to two nodes at once is one event, and a node killed mid-attempt has its
//! delivery sent by another. Skipped, with a line saying so, where the
//! machine has no PostgreSQL (CI requires it).

use std::collections::HashSet;
use std::time::Duration;

use wasmhook_e2e::{Behaviour, Receiver, Router, Setup, Signal};

use crate::WAIT;

fn config(rx: &Receiver, timeout_ms: u64) -> String {
    format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\ntimeout_ms = {timeout_ms}\nretry_schedule = [\"100ms\"]\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n",
        rx.url("t")
    )
}

async fn node(config: &str, url: &str) -> Router {
    Router::with(Setup {
        config,
        storage_url: url,
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_routers_on_one_database_deliver_each_event_once() {
    let Some(url) = wasmhook_testpg::database("two_routers") else {
        return;
    };
    let rx = Receiver::start().await;
    let config = config(&rx, 5000);
    let nodes = [node(&config, &url).await, node(&config, &url).await];
    for i in 0..40 {
        let id = format!("evt-{i}");
        let (status, _) = nodes[i % 2]
            .ingest("s", format!("{{\"i\":{i}}}"), &[("webhook-id", &id)])
            .await;
        assert_eq!(status, 202);
    }
    rx.wait_for("t", 40, WAIT).await;
    // Let any second copy arrive before counting.
    for n in &nodes {
        crate::eventually_async("both nodes idle", || async {
            let (_, body) = n.api("/api/deliveries?state=in_flight").await;
            body["deliveries"]
                .as_array()
                .is_some_and(|d| d.is_empty())
                .then_some(())
        })
        .await;
    }
    let got = rx.on("t");
    let ids: HashSet<_> = got
        .iter()
        .map(|r| r.json()["i"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 40, "every event delivered");
    assert_eq!(got.len(), 40, "none delivered twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_at_two_routers_at_once_is_one_event() {
    let Some(url) = wasmhook_testpg::database("same_event_two_routers") else {
        return;
    };
    let rx = Receiver::start().await;
    let config = config(&rx, 5000);
    let (a, b) = (node(&config, &url).await, node(&config, &url).await);
    for i in 0..10 {
        let id = format!("dup-{i}");
        let headers = [("webhook-id", id.as_str())];
        let body = format!("{{\"i\":{i}}}");
        let ((sa, ja), (sb, jb)) = tokio::join!(
            a.ingest("s", body.clone(), &headers),
            b.ingest("s", body, &headers)
        );
        assert_eq!((sa, sb), (202, 202));
        let duplicates = [&ja, &jb].iter().filter(|j| j["duplicate"] == true).count();
        assert_eq!(duplicates, 1, "one of the two says duplicate: {ja} {jb}");
    }
    rx.wait_for("t", 10, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.on("t").len(), 10, "each event delivered once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_router_killed_mid_attempt_has_its_delivery_sent_by_another() {
    let Some(url) = wasmhook_testpg::database("killed_router") else {
        return;
    };
    let rx = Receiver::start().await;
    rx.set("t", Behaviour::Hold);
    // The lease is the timeout (1 s) plus a 5 s margin.
    let config = config(&rx, 1000);
    let a = node(&config, &url).await;
    let (status, _) = a
        .ingest("s", "{\"i\":1}", &[("webhook-id", "kill-1")])
        .await;
    assert_eq!(status, 202);
    // A's attempt is in flight, held by the target; then A dies.
    rx.wait_for("t", 1, WAIT).await;
    a.signal(Signal::KILL);
    let b = node(&config, &url).await;
    rx.release();
    let got = rx.wait_for("t", 2, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    crate::eventually_async("delivered, recorded by B", || async {
        let (_, body) = b.api("/api/events/kill-1").await;
        (body["deliveries"][0]["state"] == "delivered").then_some(())
    })
    .await;
}

/// `wasmhook plugin push FILE --config CONFIG`: status and output.
fn push(file: &std::path::Path, config: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(wasmhook_e2e::binary())
        .args(["plugin", "push"])
        .arg(file)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_plugin_is_loaded_by_every_node_and_a_new_push_swaps_it() {
    let Some(url) = wasmhook_testpg::database("plugin_push") else {
        return;
    };
    let rx = Receiver::start().await;
    let config = crate::reload::versioned_route(&rx);
    let (a, b) = (node(&config, &url).await, node(&config, &url).await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("versioned.wasm");
    for build in ["v1", "v2"] {
        std::fs::copy(
            wasmhook_e2e::plugin_wasm(&format!("versioned-{build}")),
            &file,
        )
        .unwrap();
        let (ok, out) = push(&file, a.config_path());
        assert!(ok, "{out}");
        assert!(out.contains("pushed versioned"), "{out}");
        for n in [&a, &b] {
            crate::reload::wait_version(n, "versioned", build).await;
        }
    }
    // The route runs the pushed plugin on both nodes.
    for (i, n) in [&a, &b].into_iter().enumerate() {
        let (status, _) = n.ingest("s", format!("{{\"i\":{i}}}"), &[]).await;
        assert_eq!(status, 202);
    }
    rx.wait_for("t", 2, WAIT).await;

    // A node that starts later gets it from the database.
    let c = node(&config, &url).await;
    crate::reload::wait_version(&c, "versioned", "v2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_push_refuses_a_broken_plugin_and_a_config_without_postgres() {
    let rx = Receiver::start().await;
    let local = Router::start(&config(&rx, 1000), &[], "").await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("versioned.wasm");
    std::fs::copy(wasmhook_e2e::plugin_wasm("versioned-v1"), &good).unwrap();
    let (ok, out) = push(&good, local.config_path());
    assert!(!ok);
    assert!(out.contains("is not postgres://"), "{out}");

    let Some(url) = wasmhook_testpg::database("plugin_push_broken") else {
        return;
    };
    let a = node(&config(&rx, 1000), &url).await;
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm not really").unwrap();
    let (ok, out) = push(&broken, a.config_path());
    assert!(!ok);
    assert!(out.contains("not pushed"), "{out}");
}
