//! Hostile plugins fail their own events; the router and other routes go on.

use wasmhook_e2e::{Receiver, Router, Setup, s_to_t};

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
            .metric("wasmhook_plugin_calls_total{plugin=\"hostile-panic\",result=\"panic\"}")
            .await,
        EVENTS as f64
    );
    assert_eq!(
        router
            .metric("wasmhook_plugin_calls_total{plugin=\"hostile-oom\",result=\"memory\"}")
            .await,
        EVENTS as f64
    );
    // Failures are kept.
    router
        .wait_metric_eq("wasmhook_queue_failed_routes", (3 * EVENTS) as f64, WAIT)
        .await;

    // Each failure is recorded with a clear reason, tagged with the event id.
    // (Log lines can trail the metrics: wait for the last of them.)
    crate::eventually_async("every failure in the log", || async {
        let failures = router
            .logs()
            .iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("route failed"))
            })
            .count();
        (failures >= 3 * EVENTS).then_some(())
    })
    .await;
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

#[tokio::test(flavor = "multi_thread")]
async fn the_hostile_plugin_matrix_fails_alone_with_clear_reasons() {
    let rx = Receiver::start().await;
    let runtime = ["hostile-recursion", "hostile-output", "hostile-escape"];
    let broken = ["wrong-world", "zero-byte", "random-bytes", "core-module"];
    let mut config = format!(
        "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"{}\"\n\n[[targets]]\nname = \"escape\"\nurl = \"{}\"\n\n\
         [[routes]]\nname = \"healthy\"\nsource = \"s\"\nplugins = [\"tag-route\"]\ntargets = [\"t\"]\n\n\
         [[routes]]\nname = \"unknown-target\"\nsource = \"s\"\nplugins = [{{ name = \"tag-route\", config = {{ to = \"elsewhere\" }} }}]\ntargets = [\"t\"]\n\n",
        rx.url("t"),
        rx.url("escape")
    );
    // A live listener for the escape attempt: a closed port would refuse
    // the connection whether or not the sandbox let it through.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let live = listener.local_addr().unwrap();
    for p in runtime.iter().chain(&broken) {
        let (target, plugin_config) = if *p == "hostile-escape" {
            ("escape", format!(", config = {{ connect = \"{live}\" }}"))
        } else {
            ("t", String::new())
        };
        config.push_str(&format!("[[routes]]\nname = \"{p}\"\nsource = \"s\"\nplugins = [{{ name = \"{p}\"{plugin_config} }}]\ntargets = [\"{target}\"]\n\n"));
    }
    let mut plugins: Vec<&str> = vec!["tag-route", "wrong-world"];
    plugins.extend(runtime);
    let router = Router::with(Setup {
        config: &config,
        plugins: &plugins,
        plugins_extra: "max_output_bytes = 1048576",
        ..Setup::default()
    })
    .await;
    let dir = router.plugins_dir();
    std::fs::write(dir.join("zero-byte.wasm"), b"").unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("random-bytes.wasm"), noise).unwrap();
    std::fs::write(dir.join("core-module.wasm"), b"\0asm\x01\0\0\0").unwrap();

    // Files that are not plugins are rejected with the reason, and never load.
    for (name, reason) in [
        ("wrong-world", "no export `handle`"),
        ("zero-byte", "the file is empty"),
        ("random-bytes", "not WebAssembly"),
        ("core-module", "core WebAssembly module"),
    ] {
        let status = crate::eventually_async(name, || async {
            router
                .plugin_status(name)
                .await
                .filter(|s| s["last_error"].is_string())
        })
        .await;
        assert!(
            status["last_error"].as_str().unwrap().contains(reason),
            "{name}: {status}"
        );
        assert!(status["version"].is_null(), "{name} never loads: {status}");
    }

    const EVENTS: usize = 3;
    for i in 0..EVENTS {
        assert_eq!(
            router.ingest("s", format!("{{\"i\":{i}}}"), &[]).await.0,
            202
        );
    }
    // The healthy route delivers every event; nothing else reaches `t`.
    rx.wait_for("t", EVENTS, WAIT).await;
    for (route, reason) in [
        ("hostile-recursion", "call stack exhausted"),
        (
            "hostile-output",
            "above the cap of 1048576 bytes (refused while it was being copied out)",
        ),
        (
            "unknown-target",
            "names target \"elsewhere\", which is not configured",
        ),
        ("wrong-world", "plugin wrong-world is not loaded"),
        ("zero-byte", "plugin zero-byte is not loaded"),
        ("random-bytes", "plugin random-bytes is not loaded"),
        ("core-module", "plugin core-module is not loaded"),
    ] {
        router
            .wait_metric(
                &format!("wasmhook_route_failures_total{{route=\"{route}\"}}"),
                EVENTS as f64,
                WAIT,
            )
            .await;
        router
            .wait_log(
                &format!("{route}: a failure logged with {reason:?}"),
                WAIT,
                |l| {
                    l["route"] == route
                        && l["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("route failed") && m.contains(reason))
                },
            )
            .await;
    }
    // The escape attempt ran, and got nothing: no network, no files, no environment.
    let got = rx.wait_for("escape", EVENTS, WAIT).await;
    let report = got[0].json();
    assert!(
        report["net"].as_str().unwrap().starts_with("refused"),
        "{report}"
    );
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "nothing reached the listener the plugin tried"
    );
    assert!(
        report["fs"].as_str().unwrap().starts_with("refused"),
        "{report}"
    );
    assert!(
        report["file"].as_str().unwrap().starts_with("refused"),
        "{report}"
    );
    assert_eq!(
        (report["env_vars"].as_u64(), report["args"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
    assert_eq!(rx.on("t").len(), EVENTS);
    assert_eq!(router.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_blocked_in_a_sleep_is_stopped_by_the_wall_clock() {
    let rx = Receiver::start().await;
    let config = s_to_t(&rx, "sleepy", &["hostile-sleep"]);
    // One call at a time, room for two waiting: the sleeper backs the queue up.
    let router = Router::with(Setup {
        config: &config,
        plugins: &["hostile-sleep"],
        storage_extra: "queue_capacity = 2",
        plugins_extra: "max_concurrency = 1\ntimeout_ms = 50\nwall_timeout_ms = 2000",
        ..Setup::default()
    })
    .await;
    let mut accepted = 0;
    loop {
        let (status, body) = router.ingest("s", "{}", &[]).await;
        match status {
            202 => accepted += 1,
            503 => break,
            other => panic!("unexpected {other}: {body}"),
        }
        assert!(accepted < 10, "the queue never filled");
    }
    // Full: not ready, so a load balancer sends elsewhere.
    let (status, ready) = router.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("queue full"), "{ready}");

    // Each call ends at the 2 s wall-clock bound, not after its 60 s sleep.
    router
        .wait_metric(
            "wasmhook_route_failures_total{route=\"sleepy\"}",
            accepted as f64,
            WAIT,
        )
        .await;
    // What it printed before it was cut off is in the log.
    router
        .wait_log_contains("hostile-sleep: going to sleep on", WAIT)
        .await;
    router
        .wait_log("the wall-clock failure", WAIT, |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("route failed") && m.contains("wall-clock"))
        })
        .await;
    assert!(rx.on("t").is_empty(), "nothing slept its way to the target");
    crate::eventually_async("ready again", || async {
        (router.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_prints_too_much_is_cut_not_failed() {
    let rx = Receiver::start().await;
    let config = s_to_t(&rx, "chatty", &["hostile-chatty"]);
    let router = Router::start(&config, &["hostile-chatty"], "").await;
    assert_eq!(router.ingest("s", r#"{"n":1}"#, &[]).await.0, 202);
    let got = rx.wait_for("t", 1, WAIT).await;
    assert_eq!(got[0].json()["n"], 1, "the event went through");
    router
        .wait_log("the cut", WAIT, |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("the rest was cut"))
        })
        .await;
    let logs = router.logs();
    let printed: Vec<_> = logs
        .iter()
        .filter(|l| l["plugin"] == "hostile-chatty" && l["stream"] == "stdio")
        .collect();
    assert!(
        (1..=16).contains(&printed.len()),
        "at most 16 KiB of 1 KiB lines reach the log: {}",
        printed.len()
    );
    assert!(
        printed
            .iter()
            .all(|l| l["source"] == "s" && l["event_id"].is_string()),
        "each line names its event and source: {:?}",
        printed[0]
    );
    assert_eq!(
        router
            .metric("wasmhook_route_failures_total{route=\"chatty\"}")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saturated_plugin_holds_up_no_other_route() {
    let rx = Receiver::start().await;
    let config = format!(
        "[[sources]]\nname = \"slow\"\n\n[[sources]]\nname = \"fast\"\n\n[[sources]]\nname = \"other\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\n\n[[targets]]\nname = \"direct\"\nurl = \"{}\"\n\n\
         [[targets]]\nname = \"tagged\"\nurl = \"{}\"\n\n\
         [[routes]]\nname = \"sleepy\"\nsource = \"slow\"\nplugins = [\"hostile-sleep\"]\ntargets = [\"t\"]\n\n\
         [[routes]]\nname = \"no-plugins\"\nsource = \"fast\"\ntargets = [\"direct\"]\n\n\
         [[routes]]\nname = \"other-plugin\"\nsource = \"other\"\nplugins = [\"tag-route\"]\ntargets = [\"tagged\"]\n",
        rx.url("t"),
        rx.url("direct"),
        rx.url("tagged"),
    );
    // Four call slots; every sleeper holds one for a second.
    let router = Router::with(Setup {
        config: &config,
        plugins: &["hostile-sleep", "tag-route"],
        plugins_extra: "max_concurrency = 4\ntimeout_ms = 50\nwall_timeout_ms = 1000",
        ..Setup::default()
    })
    .await;
    // Fifteen seconds of sleepers queue up, at three at a time.
    for i in 0..45 {
        assert_eq!(
            router.ingest("slow", format!("{{\"i\":{i}}}"), &[]).await.0,
            202
        );
    }
    let sent = std::time::Instant::now();
    for i in 0..3 {
        for source in ["fast", "other"] {
            let (status, _) = router.ingest(source, format!("{{\"i\":{i}}}"), &[]).await;
            assert_eq!(status, 202);
        }
    }
    rx.wait_for("direct", 3, WAIT).await;
    rx.wait_for("tagged", 3, WAIT).await;
    let took = sent.elapsed();
    assert!(
        took < std::time::Duration::from_secs(6),
        "events on other routes waited {took:?} behind the saturated plugin"
    );
}
