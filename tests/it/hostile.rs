//! Hostile plugins fail their own events; the router and other routes go on.

use wasmhook_e2e::{Receiver, Router};

use crate::WAIT;

#[tokio::test(flavor = "multi_thread")]
async fn loop_panic_and_oom_plugins_fail_their_events_while_another_route_delivers() {
    let rx = Receiver::start().await;
    let mut config = format!(
        "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"{}\"\n\n\
         [[routes]]\nname = \"healthy\"\nsource = \"s\"\nplugins = [\"tag-route\"]\ntargets = [\"t\"]\n\n",
        rx.url("t")
    );
    let hostile = ["hostile-loop", "hostile-panic", "hostile-oom"];
    for h in hostile {
        config.push_str(&format!(
            "[[routes]]\nname = \"{h}\"\nsource = \"s\"\nplugins = [\"{h}\"]\ntargets = [\"t\"]\n\n"
        ));
    }
    let router = Router::start(
        &config,
        &["tag-route", "hostile-loop", "hostile-panic", "hostile-oom"],
        "timeout_ms = 50\nmemory_limit_mb = 16",
    )
    .await;

    const EVENTS: usize = 5;
    for i in 0..EVENTS {
        let (status, _) = router.ingest("s", format!("{{\"i\":{i}}}"), &[]).await;
        assert_eq!(status, 202);
    }
    let got = rx.wait_for("t", EVENTS, WAIT).await;
    assert_eq!(got.len(), EVENTS, "only the healthy route delivers");
    for h in hostile {
        router
            .wait_metric(
                &format!("wasmhook_route_failures_total{{route=\"{h}\"}}"),
                EVENTS as f64,
                WAIT,
            )
            .await;
    }
    assert_eq!(
        router
            .metric("wasmhook_plugin_calls_total{plugin=\"hostile-loop\",result=\"timeout\"}")
            .await,
        EVENTS as f64
    );
    assert_eq!(
        router
            .metric("wasmhook_plugin_calls_total{plugin=\"hostile-panic\",result=\"trap\"}")
            .await,
        EVENTS as f64
    );
    assert_eq!(
        router
            .metric("wasmhook_plugin_calls_total{plugin=\"hostile-oom\",result=\"memory\"}")
            .await,
        EVENTS as f64
    );
    assert_eq!(
        router.metric("wasmhook_queue_failed_routes").await,
        (3 * EVENTS) as f64,
        "failures are kept"
    );

    // Each failure is recorded with a clear reason, tagged with the event id.
    let logs = router.logs();
    let reasons = |route: &str| -> Vec<String> {
        logs.iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("route failed"))
                    && l["route"] == route
            })
            .map(|l| l["message"].as_str().unwrap().to_string())
            .collect()
    };
    for (route, expected) in [
        ("hostile-loop", "exceeded its 50 ms execution deadline"),
        ("hostile-panic", "hostile-panic was asked to handle"),
        ("hostile-oom", "exceeded its memory cap of 16 MiB"),
    ] {
        let r = reasons(route);
        assert_eq!(r.len(), EVENTS, "one recorded failure per event on {route}");
        assert!(r.iter().all(|m| m.contains(expected)), "{route}: {r:?}");
    }
    assert!(logs.iter().any(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("route failed"))
            && l["span"]["event_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("evt_"))
    }));

    // Still serving.
    assert_eq!(router.get("/healthz").await.0, 200);
    assert_eq!(router.ingest("s", "{}", &[]).await.0, 202);
    rx.wait_for("t", EVENTS + 1, WAIT).await;
}
