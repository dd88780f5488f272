//! Several routers on one PostgreSQL database, as a cluster runs: each
//! event is delivered once whichever node takes it in, the same event sent
//! to two nodes at once is one event, and a node killed mid-attempt has its
//! delivery sent by another. Skipped, with a line saying so, where the
//! machine has no PostgreSQL (CI requires it).

use std::collections::HashSet;
use std::time::Duration;

use wasmhook_e2e::stream::Stream;
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
    // A router on its own store (also when the suite runs on PostgreSQL).
    let local = node(&config(&rx, 1000), "memory://").await;
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

/// Two routers on one database, a stream of events sent to both, and one of
/// them killed (`kill -9`) three times during it. The first two times it
/// is restarted at once; the third time only once the survivor has
/// delivered everything, which it can only do by taking over the dead
/// node's leased deliveries.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_one_node_three_times_loses_no_acknowledged_event() {
    const EVENTS: usize = 2_000;
    const SENDERS: usize = 16;
    const MAX_IN_FLIGHT: usize = 16;
    let Some(url) = wasmhook_testpg::database("two_node_crash") else {
        return;
    };
    let rx = Receiver::start().await;
    // Slow answers keep attempts in flight when a node dies.
    rx.set("t", Behaviour::Slow(20));
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\ntimeout_ms = 3000\nmax_in_flight = {MAX_IN_FLIGHT}\nretry_schedule = [\"50ms\"]\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n",
        rx.url("t")
    );
    let mut victim = node(&config, &url).await;
    let survivor = node(&config, &url).await;
    let stream = Stream::start(
        vec![victim.url(""), survivor.url("")],
        EVENTS,
        SENDERS,
        "c2",
    );
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut pids = HashSet::from([victim.pid()]);
    for kill in 1..=3 {
        stream.reached(kill * EVENTS / 4).await;
        if kill < 3 {
            victim.restart().await;
            pids.insert(victim.pid());
            stream.bases.lock().unwrap()[0] = victim.url("");
        } else {
            victim.signal(Signal::KILL);
        }
    }
    let acked = stream.finish().await;
    assert!(
        acked.len() > EVENTS / 2,
        "most acknowledged: {}",
        acked.len()
    );

    // With the victim dead, the survivor delivers everything: its own, and
    // the victim's once their leases run out (timeout 3 s + 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left: i64 = db
            .query_one(
                "SELECT count(*) FROM deliveries WHERE state <> 'delivered'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let got: HashSet<i64> = rx
            .on("t")
            .iter()
            .map(|r| r.json()["i"].as_i64().unwrap())
            .collect();
        if left == 0 && acked.iter().all(|i| got.contains(i)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} deliveries not delivered, {} acknowledged events missing",
            acked.iter().filter(|i| !got.contains(i)).count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it restarts a third time, into a cluster with nothing left to do.
    victim.restart().await;
    pids.insert(victim.pid());
    assert_eq!(pids.len(), 4, "three kills, four processes");

    let all: Vec<i64> = rx
        .on("t")
        .iter()
        .map(|r| r.json()["i"].as_i64().unwrap())
        .collect();
    let unique: HashSet<i64> = all.iter().copied().collect();
    let duplicates = all.len() - unique.len();
    println!(
        "two-node crash test: {EVENTS} sent, {} acknowledged, 3 kill -9s, {} deliveries of {} events ({:.2}% duplicates)",
        acked.len(),
        all.len(),
        unique.len(),
        duplicates as f64 * 100.0 / unique.len() as f64
    );
    // A duplicate is an attempt in flight on the victim when it died: at
    // most its max_in_flight per kill.
    assert!(
        duplicates <= 3 * MAX_IN_FLIGHT,
        "{duplicates} duplicates from 3 kills with max_in_flight = {MAX_IN_FLIGHT}"
    );
}

/// `rate_limit` holds for the cluster, not per node: two nodes, 100 events
/// each, at `"50/s"` together take at least 3.8 s to reach the target.
#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_holds_across_nodes() {
    let Some(url) = wasmhook_testpg::database("cluster_rate") else {
        return;
    };
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\nrate_limit = \"50/s\"\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n",
        rx.url("t")
    );
    let nodes = [node(&config, &url).await, node(&config, &url).await];
    // All at once, so that only the rate spaces them out.
    let sent = futures_util::future::join_all(
        (0..200).map(|i| nodes[i % 2].ingest("s", format!("{{\"i\":{i}}}"), &[])),
    )
    .await;
    assert!(sent.iter().all(|(status, _)| *status == 202));
    let got = rx.wait_for("t", 200, Duration::from_secs(30)).await;
    let took = got[199].at - got[0].at;
    assert!(
        took >= Duration::from_millis(3800),
        "200 deliveries in {took:?}"
    );
    // The rate and a burst of one, and a little for the nodes: a
    // reservation is on the database's clock, its start timed on the
    // node's, a round trip apart.
    let most = crate::most_in_a_second(&got);
    assert!(most <= 54, "{most} deliveries within a second");
}

/// A pause made on one node holds on every node (each reads the targets'
/// records every second), and so does an open circuit: its failures are
/// counted in the database, and one node at a time takes its probe.
#[tokio::test(flavor = "multi_thread")]
async fn a_pause_and_an_open_circuit_hold_across_nodes() {
    let Some(url) = wasmhook_testpg::database("cluster_circuit") else {
        return;
    };
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\nmax_in_flight = 2\nmax_attempts = 20\n\
         retry_schedule = [\"100ms\"]\n\
         circuit = {{ failures = 3, cool_down = \"400ms\", max_cool_down = \"400ms\" }}\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n",
        rx.url("t")
    );
    let nodes = [node(&config, &url).await, node(&config, &url).await];
    let (status, _) = nodes[0].api_post("/api/targets/t/pause").await;
    assert_eq!(status, 200);
    assert_eq!(
        nodes[1].api("/api/targets").await.1["targets"][0]["state"],
        "paused",
        "the other node's API reads the database"
    );
    // The other node's workers learn of it within a second.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    for i in 0..10 {
        let (status, _) = nodes[i % 2]
            .ingest("s", format!("{{\"i\":{i}}}"), &[])
            .await;
        assert_eq!(status, 202);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(rx.on("t").is_empty(), "a node attempted a paused target");
    // The target goes down; resumed, the nodes open the circuit together.
    rx.set(
        "t",
        Behaviour::FailUntil {
            until: std::time::Instant::now() + Duration::from_secs(2),
            status: 503,
        },
    );
    assert_eq!(nodes[1].api_post("/api/targets/t/resume").await.0, 200);
    crate::eventually_async("every event delivered", || async {
        (rx.on("t").iter().filter(|r| r.status == 200).count() >= 10).then_some(())
    })
    .await;
    let failed: Vec<_> = rx.on("t").into_iter().filter(|r| r.status == 503).collect();
    // Before it opens: at most the failures and what each node had in
    // flight; after, one probe at a time, 400 ms apart, for both nodes.
    let close_together = failed
        .windows(2)
        .filter(|w| w[1].at - w[0].at < Duration::from_millis(300))
        .count();
    assert!(
        close_together <= 3 + 2 * 2,
        "{} failed attempts, {close_together} close together",
        failed.len()
    );
}

/// Ordering holds across nodes: one key's events, taken in by the two
/// nodes in turn, reach the target one at a time and in the order they
/// were accepted, while the other key's flow beside them.
#[tokio::test(flavor = "multi_thread")]
async fn ordering_by_key_holds_across_nodes() {
    let Some(url) = wasmhook_testpg::database("cluster_ordering") else {
        return;
    };
    let rx = Receiver::start().await;
    // Each answer takes 30 ms: without ordering, the nodes would send a
    // key's deliveries side by side.
    rx.set("t", Behaviour::Slow(30));
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\n\
         ordering = {{ key = {{ json_pointer = \"/customer\" }} }}\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n",
        rx.url("t")
    );
    let nodes = [node(&config, &url).await, node(&config, &url).await];
    for n in 0..10 {
        for (i, c) in ["A", "B"].iter().enumerate() {
            let (status, _) = nodes[(n + i) % 2]
                .ingest("s", format!("{{\"customer\":\"{c}\",\"n\":{n}}}"), &[])
                .await;
            assert_eq!(status, 202);
        }
    }
    let got = rx.wait_for("t", 20, WAIT).await;
    for c in ["A", "B"] {
        let mine: Vec<_> = got.iter().filter(|r| r.json()["customer"] == c).collect();
        let order: Vec<i64> = mine
            .iter()
            .map(|r| r.json()["n"].as_i64().unwrap())
            .collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>(), "{c}'s in order");
        for w in mine.windows(2) {
            assert!(
                w[1].at - w[0].at >= Duration::from_millis(25),
                "{c}'s deliveries overlapped"
            );
        }
    }
}
