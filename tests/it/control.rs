//! Delivery control against a scripted target: the circuit breaker, a
//! pause and its resume, and a `410 Gone`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmhook_e2e::{Behaviour, Receiver, Router, Setup};

use crate::{WAIT, eventually_async};

fn config(rx: &Receiver, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\nretry_schedule = [\"100ms\"]\n{extra}\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n",
        rx.url("t")
    )
}

async fn target(router: &Router) -> Value {
    let (status, body) = router.api("/api/targets").await;
    assert_eq!(status, 200, "{body}");
    body["targets"][0].clone()
}

/// Wait until `GET /api/targets` shows the target in `state`; returns it.
async fn target_in(router: &Router, state: &str) -> Value {
    eventually_async(&format!("the target to be {state}"), || async {
        let t = target(router).await;
        (t["state"] == state).then_some(t)
    })
    .await
}

async fn send(router: &Router, n: usize) {
    for i in 0..n {
        let (status, _) = router
            .ingest(
                "s",
                format!("{{\"n\":{i}}}"),
                &[("webhook-id", &format!("e{i}"))],
            )
            .await;
        assert_eq!(status, 202);
    }
}

/// No request reaches the target for a while: long enough that a worker
/// that ignored the pause would have sent something (it attempts within
/// milliseconds when free).
async fn nothing_arrives(rx: &Receiver, path: &str, before: usize) {
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        rx.on(path).len(),
        before,
        "attempted while the target was paused"
    );
}

async fn dead(router: &Router) -> usize {
    let (_, body) = router.api("/api/deliveries?state=dead").await;
    body["deliveries"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_down_target_opens_its_circuit_and_gets_only_probes_until_it_is_back() {
    let rx = Receiver::start().await;
    let router = Router::start(
        &config(
            &rx,
            "max_in_flight = 4\nmax_attempts = 5\n\
             circuit = { failures = 3, cool_down = \"500ms\", max_cool_down = \"1s\" }",
        ),
        &[],
        "",
    )
    .await;
    let down_for = Duration::from_secs(3);
    rx.set(
        "t",
        Behaviour::FailUntil {
            until: Instant::now() + down_for,
            status: 503,
        },
    );
    send(&router, 20).await;

    let open = target_in(&router, "open").await;
    assert_eq!(open["circuit"], "open");
    assert!(open["failures"].as_u64().unwrap() >= 3, "{open}");
    assert!(open["opened_at"].as_u64().is_some(), "{open}");
    assert!(open["next_probe_at"].as_u64().is_some(), "{open}");
    assert!(open["backlog"].as_u64().unwrap() > 0, "{open}");

    eventually_async("every event delivered", || async {
        (rx.on("t").iter().filter(|r| r.status == 200).count() >= 20).then_some(())
    })
    .await;
    let got = rx.on("t");
    let delivered: HashSet<_> = got
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert_eq!(delivered.len(), 20, "each delivery delivered");
    // Before it opens, at most `failures` plus what was already in flight
    // (max_in_flight - 1) fail close together; after, one probe at a time,
    // each a cool-down (500 ms to 1 s) after the last. Without the breaker,
    // 20 deliveries retried every 100 ms fail about 100 times in 3 s, and
    // die after 5 attempts.
    let failed: Vec<_> = got.iter().filter(|r| r.status == 503).collect();
    let close_together = failed
        .windows(2)
        .filter(|w| w[1].at - w[0].at < Duration::from_millis(400))
        .count();
    assert!(
        close_together <= 5 && failed.len() <= 6 + 7,
        "{} failed attempts, {close_together} close together: {:?}",
        failed.len(),
        failed
            .iter()
            .map(|r| r.at - failed[0].at)
            .collect::<Vec<_>>()
    );
    assert_eq!(dead(&router).await, 0, "waiting spent no attempts");

    let closed = target_in(&router, "active").await;
    assert_eq!(closed["circuit"], "closed");
    assert_eq!(closed["failures"], 0);
    assert!(closed["opened_at"].is_null());
    router.wait_log_contains("circuit opened after", WAIT).await;
    router
        .wait_metric(
            "wasmhook_circuit_changes_total{target=\"t\",state=\"open\"}",
            1.0,
            WAIT,
        )
        .await;
    router
        .wait_metric_eq(
            "wasmhook_circuit_changes_total{target=\"t\",state=\"closed\"}",
            1.0,
            WAIT,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_circuit_false_a_failing_target_is_attempted_on_schedule() {
    let rx = Receiver::start().await;
    // The default breaker would open after 10 failures and wait 30 s.
    rx.set("t", Behaviour::FailFirst { n: 12, status: 503 });
    let router = Router::start(
        &config(&rx, "max_attempts = 20\ncircuit = false").replace("[\"100ms\"]", "[\"10ms\"]"),
        &[],
        "",
    )
    .await;
    assert_eq!(target(&router).await["circuit"], "off");
    send(&router, 1).await;
    let got = rx.wait_for("t", 13, WAIT).await;
    assert_eq!(got[12].status, 200);
    assert_eq!(target(&router).await["state"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_target_gets_nothing_until_it_is_resumed_even_across_a_restart() {
    let rx = Receiver::start().await;
    let config = config(&rx, "");
    let mut router = Router::with(Setup {
        config: &config,
        durable: true,
        ..Setup::default()
    })
    .await;

    let (status, paused) = router
        .api_post_json(
            "/api/targets/t/pause",
            &json!({ "reason": "maintenance window" }),
        )
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["state"], "paused");
    assert!(
        paused["paused"]["reason"]
            .as_str()
            .unwrap()
            .contains("maintenance window"),
        "{paused}"
    );
    assert_eq!(router.api_post("/api/targets/nope/pause").await.0, 404);
    assert_eq!(
        router
            .api_post_json("/api/targets/t/pause", &json!({ "why": 1 }))
            .await
            .0,
        400
    );

    send(&router, 5).await;
    eventually_async("the backlog to show", || async {
        (target(&router).await["backlog"] == 5).then_some(())
    })
    .await;
    nothing_arrives(&rx, "t", 0).await;

    router.restart().await;
    assert_eq!(target(&router).await["state"], "paused");
    nothing_arrives(&rx, "t", 0).await;

    let (status, resumed) = router.api_post("/api/targets/t/resume").await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["state"], "active");
    assert!(resumed["paused"].is_null());
    let got = rx.wait_for("t", 5, WAIT).await;
    assert!(got.iter().all(|r| r.status == 200));
    let deliveries = eventually_async("the deliveries recorded", || async {
        let (_, body) = router.api("/api/deliveries?target=t").await;
        let list = body["deliveries"].as_array().cloned().unwrap_or_default();
        (list.len() == 5 && list.iter().all(|d| d["state"] == "delivered")).then_some(list)
    })
    .await;
    for d in deliveries {
        assert_eq!(d["attempts"], 1, "waiting spent no attempt: {d}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_410_pauses_the_target_and_says_why() {
    let rx = Receiver::start().await;
    rx.set("t", Behaviour::Always(410));
    let router = Router::start(&config(&rx, ""), &[], "").await;
    send(&router, 1).await;
    rx.wait_for("t", 1, WAIT).await;
    let paused = target_in(&router, "paused").await;
    let reason = paused["paused"]["reason"].as_str().unwrap();
    assert!(reason.contains("410"), "{reason}");
    // The record is stored before the change is logged and counted, so wait for both.
    router.wait_log_contains("target paused", WAIT).await;
    router
        .wait_metric_eq("wasmhook_target_pauses_total{target=\"t\"}", 1.0, WAIT)
        .await;

    let (status, _) = router
        .ingest("s", "{\"n\":1}", &[("webhook-id", "e1")])
        .await;
    assert_eq!(status, 202);
    nothing_arrives(&rx, "t", 1).await;

    // The endpoint is back (or the URL fixed): resume, and both go.
    rx.set("t", Behaviour::Ok);
    assert_eq!(router.api_post("/api/targets/t/resume").await.0, 200);
    eventually_async("both events delivered", || async {
        (rx.on("t").iter().filter(|r| r.status == 200).count() == 2).then_some(())
    })
    .await;
    assert_eq!(
        dead(&router).await,
        0,
        "the 410'd delivery waited, not died"
    );
}

fn customer(r: &wasmhook_e2e::Received) -> (String, i64) {
    let v = r.json();
    (
        v["customer"].as_str().unwrap_or_default().to_string(),
        v["n"].as_i64().unwrap(),
    )
}

async fn send_orders(router: &Router, orders: &[(&str, i64)]) {
    for (c, n) in orders {
        let body = format!("{{\"customer\":\"{c}\",\"n\":{n}}}");
        let (status, _) = router
            .ingest("s", body, &[("webhook-id", &format!("{c}{n}"))])
            .await;
        assert_eq!(status, 202);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_for_one_key_go_in_order_while_other_keys_flow() {
    let rx = Receiver::start().await;
    // Customer A's first delivery fails twice; the rest go through.
    rx.set(
        "t",
        Behaviour::FailMatching {
            needle: "\"customer\":\"A\",\"n\":1}",
            n: 2,
            status: 503,
        },
    );
    let config = config(&rx, "ordering = { key = { json_pointer = \"/customer\" } }")
        .replace("[\"100ms\"]", "[\"300ms\"]");
    let router = Router::start(&config, &[], "").await;
    send_orders(&router, &[("A", 1)]).await;
    rx.wait_for("t", 1, WAIT).await;
    send_orders(&router, &[("A", 2), ("A", 3), ("B", 1), ("B", 2)]).await;
    eventually_async("every order delivered", || async {
        (rx.on("t").iter().filter(|r| r.status == 200).count() == 5).then_some(())
    })
    .await;
    let got = rx.on("t");
    let ok: Vec<_> = got.iter().filter(|r| r.status == 200).collect();
    let a_first = ok
        .iter()
        .find(|r| customer(r) == ("A".into(), 1))
        .unwrap()
        .at;
    let a_order: Vec<i64> = ok
        .iter()
        .map(|r| customer(r))
        .filter(|(c, _)| c == "A")
        .map(|(_, n)| n)
        .collect();
    assert_eq!(a_order, [1, 2, 3], "A's arrive in order");
    assert!(
        got.iter()
            .filter(|r| customer(r).0 == "A" && customer(r).1 > 1)
            .all(|r| r.at > a_first),
        "A's later orders were attempted before A's first was delivered"
    );
    assert!(
        ok.iter()
            .filter(|r| customer(r).0 == "B")
            .all(|r| r.at < a_first),
        "B's waited behind A's"
    );
    assert_eq!(got.len(), 7, "A's first failed twice, nothing else failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_delivery_holds_its_key_back_only_with_on_dead_block_until_skipped() {
    let rx = Receiver::start().await;
    let first = Behaviour::FailMatching {
        needle: "\"n\":1}",
        n: 1,
        status: 503,
    };
    rx.set("block", first);
    rx.set("release", first);
    let target = |name: &str, on_dead: &str| {
        format!(
            "[[targets]]\nname = \"{name}\"\nurl = \"{}\"\nmax_attempts = 1\n\
             ordering = {{ key = {{ json_pointer = \"/customer\" }}{on_dead} }}\n\n",
            rx.url(name)
        )
    };
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n{}{}\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"block\", \"release\"]\n",
        target("block", ", on_dead = \"block\""),
        target("release", ""),
    );
    let router = Router::start(&config, &[], "").await;
    send_orders(&router, &[("A", 1)]).await;
    let dead = eventually_async("A's first dead at both targets", || async {
        let (_, body) = router.api("/api/deliveries?state=dead").await;
        let list = body["deliveries"].as_array().cloned().unwrap_or_default();
        (list.len() == 2).then_some(list)
    })
    .await;
    send_orders(&router, &[("A", 2)]).await;
    // The default lets the next one go; "block" holds it.
    let released = rx.wait_for("release", 2, WAIT).await;
    assert_eq!(customer(&released[1]), ("A".into(), 2));
    nothing_arrives(&rx, "block", 1).await;

    let blocking = dead.iter().find(|d| d["target"] == "block").unwrap();
    let other = dead.iter().find(|d| d["target"] == "release").unwrap();
    let skip = |d: &Value| format!("/api/deliveries/{}/skip", d["id"].as_str().unwrap());
    assert_eq!(
        router.api_post(&skip(other)).await.0,
        404,
        "it holds nothing back"
    );
    let (status, body) = router.api_post(&skip(blocking)).await;
    assert_eq!(status, 200, "{body}");
    let got = rx.wait_for("block", 2, WAIT).await;
    assert_eq!(customer(&got[1]), ("A".into(), 2));
    assert_eq!(got[1].status, 200);
}
