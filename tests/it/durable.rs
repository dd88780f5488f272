//! Durable delivery: nothing acknowledged is ever lost.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use wasmhook_e2e::stream::Stream;
use wasmhook_e2e::{Behaviour, Receiver, Router, Setup};

use crate::WAIT;

fn route_to(targets: &[(&str, &str)], extra_target_keys: &str) -> String {
    let mut config = String::from("[[sources]]\nname = \"s\"\n\n");
    for (name, url) in targets {
        config.push_str(&format!(
            "[[targets]]\nname = \"{name}\"\nurl = \"{url}\"\nretry_schedule = [\"20ms\", \"50ms\"]\n{extra_target_keys}\n\n"
        ));
    }
    let names: Vec<String> = targets.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    config.push_str(&format!(
        "[[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [{}]\n",
        names.join(", ")
    ));
    config
}

/// A router on the durable SQLite store with `config`.
async fn durable_router(config: &str) -> Router {
    Router::with(Setup {
        config,
        durable: true,
        ..Setup::default()
    })
    .await
}

/// Wait until `n` distinct events (by their `i`) were answered 200 on `path`.
async fn wait_delivered(rx: &Receiver, path: &str, n: usize, what: &str) {
    crate::eventually_async(what, || async {
        let got: HashSet<i64> = delivered(rx, path).into_iter().collect();
        (got.len() >= n).then_some(())
    })
    .await;
}

/// The events (by their `i`) the receiver answered 200 on `path`.
fn delivered(rx: &Receiver, path: &str) -> Vec<i64> {
    rx.on(path)
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.json()["i"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_three_times_while_streaming_loses_no_acknowledged_event() {
    const EVENTS: usize = 5_000;
    const SENDERS: usize = 16;
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"{}\"\nmax_in_flight = 64\nretry_schedule = [\"20ms\"]\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\nplugins = [\"tag-route\"]\ntargets = [\"t\"]\n",
        rx.url("t")
    );
    let mut router = Router::with(Setup {
        config: &config,
        plugins: &["tag-route"],
        durable: true,
        ..Setup::default()
    })
    .await;
    let stream = Stream::start(vec![router.url("")], EVENTS, SENDERS, "crash");
    // Kill at pseudo-random points of the stream (a fixed-seed LCG keeps the
    // test reproducible), restarting after each.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut kills = 0;
    let mut pids = HashSet::from([router.pid()]);
    for _ in 0..3 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = (kills + 1) * EVENTS / 4 + (seed >> 33) as usize % (EVENTS / 8);
        stream.reached(at).await;
        router.restart().await;
        pids.insert(router.pid());
        stream.bases.lock().unwrap()[0] = router.url("");
        kills += 1;
    }
    let acked = stream.finish().await;
    assert!(
        acked.len() > EVENTS / 2,
        "most events were acknowledged: {}",
        acked.len()
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    let missing = loop {
        let got: HashSet<i64> = delivered(&rx, "t").into_iter().collect();
        let missing: Vec<i64> = acked.iter().filter(|i| !got.contains(i)).copied().collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        missing.is_empty(),
        "{} acknowledged events never arrived, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let all = delivered(&rx, "t");
    let unique: HashSet<i64> = all.iter().copied().collect();
    let dup_rate = (all.len() - unique.len()) as f64 / unique.len() as f64;
    println!(
        "crash test: {EVENTS} sent, {} acknowledged, {kills} kill -9s, {} deliveries of {} events ({:.3}% duplicates)",
        acked.len(),
        all.len(),
        unique.len(),
        dup_rate * 100.0
    );
    assert_eq!(pids.len(), 4, "three kills, four processes");
    // A duplicate is a delivery whose attempt was in flight at a kill: at
    // most max_in_flight (64) per kill. The README quotes the measured rate.
    let duplicates = all.len() - unique.len();
    assert!(
        duplicates <= kills * 64,
        "{duplicates} duplicates from {kills} kills of a target with max_in_flight = 64"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_down_for_a_while_gets_everything_with_retries_in_the_attempt_log() {
    let rx = Receiver::start().await;
    rx.set("t", Behaviour::Always(503));
    // Retries, not the circuit breaker (control.rs), which would hold
    // these attempts back for its 30 s cool-down.
    let config = route_to(&[("t", &rx.url("t"))], "max_attempts = 50\ncircuit = false");
    let router = durable_router(&config).await;
    for i in 0..5 {
        assert_eq!(
            router
                .ingest(
                    "s",
                    format!("{{\"i\":{i}}}"),
                    &[("webhook-id", &format!("down-{i}"))]
                )
                .await
                .0,
            202
        );
    }
    // Down until every event has been refused at least twice.
    crate::eventually_async("retries while down", || async {
        let refused = rx.on("t").iter().filter(|r| r.status == 503).count();
        (refused >= 10).then_some(())
    })
    .await;
    rx.set("t", Behaviour::Ok);
    wait_delivered(&rx, "t", 5, "everything delivered").await;
    let (status, event) = router.api("/api/events/down-0").await;
    assert_eq!(status, 200, "{event}");
    let delivery = &event["deliveries"][0];
    let log = delivery["attempt_log"].as_array().unwrap();
    assert!(log.len() >= 3, "{event}");
    assert!(
        log[..log.len() - 1]
            .iter()
            .all(|a| a["status"] == 503 && a["error"].as_str().unwrap().contains("HTTP 503"))
    );
    assert_eq!(log.last().unwrap()["status"], 200);
    crate::eventually_async("state delivered", || async {
        let (_, e) = router.api("/api/events/down-0").await;
        (e["deliveries"][0]["state"] == "delivered").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_always_failing_target_goes_dead_and_replay_delivers_everything() {
    let rx = Receiver::start().await;
    rx.set("t", Behaviour::Always(500));
    // 15 failures in a row: without `circuit = false` the breaker would
    // open after 10 and hold the rest back (control.rs tests that).
    let config = route_to(&[("t", &rx.url("t"))], "max_attempts = 3\ncircuit = false");
    let router = durable_router(&config).await;
    for i in 0..5 {
        assert_eq!(
            router.ingest("s", format!("{{\"i\":{i}}}"), &[]).await.0,
            202
        );
    }
    router.wait_metric("wasmhook_queue_dead", 5.0, WAIT).await;
    assert_eq!(rx.on("t").len(), 15, "3 attempts each");

    // Dead deliveries are listed, paged.
    let (status, page1) = router
        .api("/api/deliveries?state=dead&target=t&limit=3")
        .await;
    assert_eq!(status, 200, "{page1}");
    assert_eq!(page1["deliveries"].as_array().unwrap().len(), 3);
    let cursor = page1["next"].as_str().expect("a next cursor").to_string();
    let (_, page2) = router
        .api(&format!(
            "/api/deliveries?state=dead&target=t&limit=3&after={cursor}"
        ))
        .await;
    assert_eq!(page2["deliveries"].as_array().unwrap().len(), 2);
    assert!(page2["next"].is_null());
    assert!(
        page1["deliveries"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );

    rx.set("t", Behaviour::Ok);
    let (status, replay) = router.api_post("/api/targets/t/replay").await;
    assert_eq!(
        (status, replay["requeued"].as_u64()),
        (202, Some(5)),
        "{replay}"
    );
    wait_delivered(&rx, "t", 5, "all replayed").await;
    router
        .wait_metric(
            "wasmhook_delivery_attempts_total{target=\"t\",result=\"delivered\"}",
            5.0,
            WAIT,
        )
        .await;
    router
        .wait_metric_eq("wasmhook_queue_dead", 0.0, WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_event_id_is_not_delivered_twice_even_across_a_restart() {
    let rx = Receiver::start().await;
    let config = route_to(&[("t", &rx.url("t"))], "");
    let mut router = durable_router(&config).await;
    let (status, body) = router
        .ingest("s", r#"{"i":1}"#, &[("webhook-id", "dup-1")])
        .await;
    assert_eq!((status, body["id"].as_str()), (202, Some("dup-1")));
    rx.wait_for("t", 1, WAIT).await;
    let (status, body) = router
        .ingest("s", r#"{"i":1}"#, &[("webhook-id", "dup-1")])
        .await;
    assert_eq!(
        (status, body["duplicate"].as_bool()),
        (202, Some(true)),
        "{body}"
    );

    // Restart only once the delivery is recorded: a kill before that would
    // rightly deliver it again (at least once), which is not what this tests.
    router
        .wait_metric(
            "wasmhook_delivery_attempts_total{target=\"t\",result=\"delivered\"}",
            1.0,
            WAIT,
        )
        .await;
    router.restart().await;
    let (status, body) = router
        .ingest("s", r#"{"i":1}"#, &[("idempotency-key", "dup-1")])
        .await;
    assert_eq!(
        (status, body["id"].as_str(), body["duplicate"].as_bool()),
        (202, Some("dup-1"), Some(true)),
        "{body}"
    );
    // A later event is delivered; by then a duplicate would have been too.
    assert_eq!(
        router
            .ingest("s", r#"{"i":2}"#, &[("webhook-id", "dup-2")])
            .await
            .0,
        202
    );
    rx.wait_for("t", 2, WAIT).await;
    assert_eq!(
        delivered(&rx, "t").iter().filter(|i| **i == 1).count(),
        1,
        "delivered once"
    );
    let ids: HashSet<String> = rx
        .on("t")
        .iter()
        .filter_map(|r| r.header("webhook-id").map(String::from))
        .collect();
    assert_eq!(ids.len(), 2, "one delivery per distinct event");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_target_does_not_slow_another_target() {
    const N: usize = 20;
    let rx = Receiver::start().await;
    rx.set("hang", Behaviour::Hang);
    let config = format!(
        "[[sources]]\nname = \"alone\"\n\n[[sources]]\nname = \"both\"\n\n\
         [[targets]]\nname = \"fast\"\nurl = \"{}\"\n\n\
         [[targets]]\nname = \"hang\"\nurl = \"{}\"\ntimeout_ms = 60000\nmax_in_flight = 2\n\n\
         [[routes]]\nname = \"alone\"\nsource = \"alone\"\ntargets = [\"fast\"]\n\n\
         [[routes]]\nname = \"both\"\nsource = \"both\"\ntargets = [\"hang\", \"fast\"]\n",
        rx.url("fast"),
        rx.url("hang")
    );
    let router = durable_router(&config).await;
    let mut latency = HashMap::new();
    for source in ["alone", "both"] {
        let mut samples = Vec::new();
        for i in 0..N {
            let before = rx.on("fast").len();
            let sent = Instant::now();
            assert_eq!(
                router.ingest(source, format!("{{\"i\":{i}}}"), &[]).await.0,
                202
            );
            let got = rx.wait_for("fast", before + 1, WAIT).await;
            samples.push(got[before].at.duration_since(sent));
        }
        samples.sort();
        latency.insert(source, samples[N / 2]);
    }
    assert_eq!(
        rx.on("hang").len(),
        2,
        "the hanging target holds its max_in_flight, no more"
    );
    println!(
        "fast target p50 latency: alone {:?}, next to a hanging target {:?}",
        latency["alone"], latency["both"]
    );
    // Were the fast target held up by the hanging one, each delivery would
    // wait out the 60 s timeout; the bound only separates that from noise on
    // a busy machine.
    assert!(
        latency["both"] < latency["alone"] * 5 + Duration::from_secs(1),
        "a hanging target slowed another: {latency:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_with_work_in_flight_loses_nothing() {
    const N: i64 = 20;
    let rx = Receiver::start().await;
    rx.set("t", Behaviour::Slow(300));
    let config = route_to(&[("t", &rx.url("t"))], "max_in_flight = 2");
    let mut router = durable_router(&config).await;
    for i in 0..N {
        assert_eq!(
            router.ingest("s", format!("{{\"i\":{i}}}"), &[]).await.0,
            202
        );
    }
    rx.wait_for("t", 1, WAIT).await;
    assert!(router.terminate().await, "clean exit after SIGTERM");
    assert!(rx.on("t").len() < N as usize, "the shutdown came mid-way");
    router.restart().await;
    wait_delivered(
        &rx,
        "t",
        N as usize,
        "everything delivered after the restart",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_needs_the_token_and_retries_and_reruns() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"{}\"\nmax_attempts = 1\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\nplugins = [\"flaky\"]\ntargets = [\"t\"]\n",
        rx.url("t")
    );
    let router = durable_router(&config).await;
    // No token, a wrong token: refused.
    let client = reqwest::Client::new();
    let status = client
        .get(router.url("/api/events/x"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let status = client
        .get(router.url("/api/events/x"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    assert_eq!(router.api("/api/events/nope").await.0, 404);

    // A route whose plugin panics: the failure is recorded; fix the plugin, re-run.
    std::fs::copy(
        wasmhook_e2e::plugin_wasm("hostile-panic"),
        router.plugins_dir().join("flaky.wasm"),
    )
    .unwrap();
    let broken = crate::eventually_async("flaky loaded", || async {
        router
            .plugin_status("flaky")
            .await
            .filter(|s| s["version"].is_string())
    })
    .await;
    assert_eq!(
        router
            .ingest("s", r#"{"i":1}"#, &[("webhook-id", "rerun-1")])
            .await
            .0,
        202
    );
    let failed = crate::eventually_async("the failure recorded", || async {
        let (_, e) = router.api("/api/events/rerun-1").await;
        (e["failed_routes"].as_array().is_some_and(|f| !f.is_empty())).then_some(e)
    })
    .await;
    assert!(
        failed["failed_routes"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("panicked at tests/plugins/hostile-panic/src/lib.rs:6:5: hostile-panic was asked to handle rerun-1"),
        "{failed}"
    );
    assert_eq!(failed["state"], "processed");

    let tmp = router.plugins_dir().join(".flaky.tmp");
    std::fs::copy(wasmhook_e2e::plugin_wasm("versioned-v1"), &tmp).unwrap();
    std::fs::rename(&tmp, router.plugins_dir().join("flaky.wasm")).unwrap();
    crate::eventually_async("the fix loaded", || async {
        router
            .plugin_status("flaky")
            .await
            .filter(|s| s["version"] != broken["version"])
    })
    .await;
    crate::eventually_async("re-run succeeds", || async {
        let (status, body) = router.api_post("/api/events/rerun-1/rerun").await;
        (status == 202 && body["routes"][0]["ok"] == true).then_some(())
    })
    .await;
    let got = rx.wait_for("t", 1, WAIT).await;
    assert_eq!(got[0].header("x-plugin-version"), Some("v1"));

    // A dead delivery retried by hand.
    rx.set("t", Behaviour::Always(500));
    assert_eq!(
        router
            .ingest("s", r#"{"i":2}"#, &[("webhook-id", "retry-2")])
            .await
            .0,
        202
    );
    router.wait_metric("wasmhook_queue_dead", 1.0, WAIT).await;
    let (_, e) = router.api("/api/events/retry-2").await;
    let id = e["deliveries"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(e["deliveries"][0]["state"], "dead");
    rx.set("t", Behaviour::Ok);
    let (status, _) = router
        .api_post(&format!("/api/deliveries/{id}/retry"))
        .await;
    assert_eq!(status, 202);
    crate::eventually_async("retried delivery arrives", || async {
        delivered(&rx, "t").contains(&2).then_some(())
    })
    .await;
    assert_eq!(
        router.api_post("/api/deliveries/msg_nope/retry").await.0,
        404
    );
    assert_eq!(router.api_post("/api/targets/nope/replay").await.0, 404);
}
