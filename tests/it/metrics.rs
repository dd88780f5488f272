//! `GET /metrics` after a known scenario: every counter exact, the
//! histograms' counts, and the gauges.

use std::collections::BTreeMap;

use wasmhook_e2e::{Behaviour, Receiver, Router, Setup};

use crate::{WAIT, eventually_async};

/// Every sample of the exposition, by series (name and labels).
async fn scrape(router: &Router) -> BTreeMap<String, f64> {
    let (status, text) = router.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_a_known_scenario_exactly() {
    let rx = Receiver::start().await;
    rx.set("bad", Behaviour::Always(400));
    let config = format!(
        "[[sources]]\nname = \"s\"\nevent_type = {{ json_pointer = \"/type\" }}\n\n\
         [[targets]]\nname = \"ok\"\nurl = \"{}\"\n\n\
         [[targets]]\nname = \"bad\"\nurl = \"{}\"\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\n\
         plugins = [{{ name = \"filter-event-type\", config = {{ allow = \"keep\" }} }}]\n\
         targets = [\"ok\", \"bad\"]\n",
        rx.url("ok"),
        rx.url("bad")
    );
    let router = Router::with(Setup {
        config: &config,
        plugins: &["filter-event-type"],
        server_extra: "max_body_bytes = 1024",
        durable: true,
        ..Setup::default()
    })
    .await;

    // 3 kept, 2 dropped by the plugin, 1 duplicate, 1 too large, 1 for
    // no such source.
    for (id, ty) in [
        ("k1", "keep"),
        ("k2", "keep"),
        ("k3", "keep"),
        ("d1", "skip"),
        ("d2", "skip"),
        ("k1", "keep"),
    ] {
        let body = format!("{{\"type\":\"{ty}\"}}");
        let (status, _) = router.ingest("s", body, &[("webhook-id", id)]).await;
        assert_eq!(status, 202);
    }
    let (status, _) = router.ingest("s", vec![b'x'; 2048], &[]).await;
    assert_eq!(status, 413);
    let (status, _) = router.ingest("nope", "{}", &[]).await;
    assert_eq!(status, 404);

    rx.wait_for("ok", 3, WAIT).await;
    // Counted before they are recorded: once all six are finished in the
    // store, every counter below is final.
    eventually_async("every delivery finished", || async {
        let (_, body) = router.api("/api/deliveries?limit=100").await;
        let list = body["deliveries"].as_array().cloned().unwrap_or_default();
        let done = |d: &serde_json::Value| d["state"] == "delivered" || d["state"] == "dead";
        (list.len() == 6 && list.iter().all(done)).then_some(())
    })
    .await;
    let m = scrape(&router).await;
    let at = |series: &str| m.get(series).copied();
    for (series, want) in [
        ("wasmhook_events_received_total{source=\"s\"}", 5.0),
        ("wasmhook_events_duplicate_total{source=\"s\"}", 1.0),
        (
            "wasmhook_ingest_rejected_total{source=\"s\",reason=\"too_large\"}",
            1.0,
        ),
        (
            "wasmhook_ingest_rejected_total{source=\"\",reason=\"unknown_source\"}",
            1.0,
        ),
        // Every answer to a known source: 5 new, 1 duplicate, 1 refused.
        ("wasmhook_ingest_duration_seconds_count{source=\"s\"}", 7.0),
        (
            "wasmhook_plugin_calls_total{plugin=\"filter-event-type\",result=\"drop\"}",
            2.0,
        ),
        ("wasmhook_route_drops_total{route=\"r\"}", 2.0),
        (
            "wasmhook_delivery_attempts_total{target=\"ok\",result=\"delivered\"}",
            3.0,
        ),
        (
            "wasmhook_delivery_attempts_total{target=\"bad\",result=\"dead\"}",
            3.0,
        ),
        (
            "wasmhook_attempt_responses_total{target=\"ok\",class=\"2xx\"}",
            3.0,
        ),
        (
            "wasmhook_attempt_responses_total{target=\"bad\",class=\"4xx\"}",
            3.0,
        ),
        (
            "wasmhook_attempt_duration_seconds_count{target=\"bad\"}",
            3.0,
        ),
        (
            "wasmhook_delivery_latency_seconds_count{target=\"ok\"}",
            3.0,
        ),
        ("wasmhook_target_dead{target=\"bad\"}", 3.0),
        ("wasmhook_target_backlog{target=\"ok\"}", 0.0),
        ("wasmhook_target_circuit_open{target=\"bad\"}", 0.0),
        ("wasmhook_target_paused{target=\"ok\"}", 0.0),
        ("wasmhook_plugins_loaded", 1.0),
    ] {
        assert_eq!(at(series), Some(want), "{series}: {m:#?}");
    }
    // Nothing else was counted: no other outcome, no other reason.
    let total = |prefix: &str| -> f64 {
        m.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(total("wasmhook_ingest_rejected_total"), 2.0, "{m:#?}");
    assert_eq!(total("wasmhook_delivery_attempts_total"), 6.0, "{m:#?}");
    // The duplicate runs the plugin too: the routes run within the ingest
    // request, before the store finds the id taken. (Had its call outrun
    // the 100 ms inline budget, it would have been cut off uncounted: 3.)
    let emits = at("wasmhook_plugin_calls_total{plugin=\"filter-event-type\",result=\"emit\"}")
        .unwrap_or(0.0);
    assert!(emits == 4.0 || emits == 3.0, "{emits} emits: {m:#?}");
    assert_eq!(total("wasmhook_plugin_calls_total"), emits + 2.0, "{m:#?}");
    assert_eq!(
        at("wasmhook_plugin_call_duration_seconds_count{plugin=\"filter-event-type\"}"),
        Some(emits + 2.0)
    );
    assert_eq!(total("wasmhook_route_failures_total"), 0.0, "{m:#?}");
    // Only delivered attempts have a latency.
    assert_eq!(
        at("wasmhook_delivery_latency_seconds_count{target=\"bad\"}"),
        None
    );
    // The store committed the accepts, results and attempts (several
    // to a commit, on SQLite, when they come together), each commit in
    // both histograms.
    let commits = at("wasmhook_store_commit_duration_seconds_count").unwrap_or(0.0);
    assert!(commits >= 1.0, "{m:#?}");
    assert_eq!(at("wasmhook_store_commit_batch_size_count"), Some(commits));
    assert_eq!(at("wasmhook_store_up"), Some(1.0));
}
