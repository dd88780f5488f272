//! Hot reload: plugins and config change on disk while the router serves.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmhook_e2e::{Receiver, Router, Setup, Signal, plugin_wasm};

use crate::WAIT;

pub(crate) fn versioned_route(rx: &Receiver) -> String {
    format!(
        "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"{}\"\nmax_in_flight = 64\nretry_schedule = [\"20ms\"]\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\nplugins = [\"versioned\"]\ntargets = [\"t\"]\n",
        rx.url("t")
    )
}

/// The atomic deploy: copy next to the target, then rename into place.
fn deploy(plugin: &str, dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(plugin_wasm(plugin), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).unwrap();
}

async fn start_with_v1(rx: &Receiver, plugins_extra: &str) -> Router {
    let config = versioned_route(rx);
    let router = Router::with(Setup {
        config: &config,
        plugins_extra,
        ..Setup::default()
    })
    .await;
    deploy("versioned-v1", &router.plugins_dir(), "versioned");
    wait_version(&router, "versioned", "v1").await;
    router
}

/// Wait until `GET /api/plugins` shows `name` at the version of `build`.
pub(crate) async fn wait_version(router: &Router, name: &str, build: &str) -> serde_json::Value {
    let want = sha256_hex(&std::fs::read(plugin_wasm(&format!("versioned-{build}"))).unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(s) = router.plugin_status(name).await
            && s["version"] == want.as_str()
        {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "plugin {name} never reached {build}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `GET /api/plugins` shows plugin `name` with a status for
/// which `pred` holds; returns it.
async fn wait_status(
    router: &Router,
    name: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    crate::eventually_async(what, || async {
        router.plugin_status(name).await.filter(|s| pred(s))
    })
    .await
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn swapping_a_plugin_under_load_loses_nothing_and_each_event_sees_one_version() {
    const EVENTS: usize = 2_400;
    let rx = Receiver::start().await;
    let router = Arc::new(start_with_v1(&rx, "").await);
    let plugins_dir = router.plugins_dir();

    // Events stream throughout: a third before the swap, then on while the
    // new version compiles and goes live (until it serves), then the rest.
    let slots = Arc::new(Semaphore::new(16));
    let mut sent = Vec::with_capacity(EVENTS);
    let mut i = 0;
    let mut swapped = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while i < EVENTS || !swapped {
        if i == EVENTS / 3 {
            deploy("versioned-v2", &plugins_dir, "versioned");
        }
        if i > EVENTS / 3 && !swapped && i % 16 == 0 {
            swapped = rx
                .on("t")
                .iter()
                .any(|r| r.header("x-plugin-version") == Some("v2"));
            assert!(tokio::time::Instant::now() < deadline, "v2 never served");
        }
        let permit = slots.clone().acquire_owned().await.unwrap();
        let router = router.clone();
        let n = i;
        sent.push(tokio::spawn(async move {
            let id = format!("evt-{n}");
            let (status, _) = router
                .ingest("s", format!("{{\"i\":{n}}}"), &[("webhook-id", &id)])
                .await;
            drop(permit);
            assert_eq!(status, 202);
        }));
        i += 1;
    }
    let total = i;
    for s in sent {
        s.await.unwrap();
    }
    let got = rx.wait_for("t", total, WAIT).await;
    let mut by_event: HashMap<i64, Vec<String>> = HashMap::new();
    for r in &got {
        let v = r
            .header("x-plugin-version")
            .expect("every output is tagged")
            .to_string();
        by_event
            .entry(r.json()["i"].as_i64().unwrap())
            .or_default()
            .push(v);
    }
    assert_eq!(by_event.len(), total, "every event delivered");
    assert_eq!(got.len(), total, "exactly once each");
    assert!(
        by_event
            .values()
            .all(|v| v.len() == 1 && (v[0] == "v1" || v[0] == "v2")),
        "one version per event"
    );
    let v2 = by_event.values().filter(|v| v[0] == "v2").count();
    assert!(
        v2 > 0 && v2 < EVENTS,
        "the swap happened mid-stream: {v2} of {EVENTS} on v2"
    );
    assert_eq!(
        router
            .metric("wasmhook_route_failures_total{route=\"r\"}")
            .await,
        0.0,
        "zero failed events"
    );
    router.wait_log_contains("plugin swapped", WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_file_never_replaces_a_working_plugin_and_a_fix_loads() {
    let rx = Receiver::start().await;
    let router = start_with_v1(&rx, "settle_ms = 300").await;
    let path = router.plugins_dir().join("versioned.wasm");

    // Garbage over the working plugin.
    std::fs::write(&path, b"this is not webassembly").unwrap();
    let status = wait_status(
        &router,
        "versioned",
        "the error in the plugin status",
        |s| s["last_error"].is_string(),
    )
    .await;
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("not WebAssembly"),
        "{status}"
    );
    assert!(
        status["version"].is_string(),
        "the old version is still loaded: {status}"
    );
    assert_eq!(router.ingest("s", r#"{"i":1}"#, &[]).await.0, 202);
    assert_eq!(
        rx.wait_for("t", 1, WAIT).await[0].header("x-plugin-version"),
        Some("v1")
    );

    // A core module (not a component) is rejected the same way.
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    crate::eventually_async("the core-module error", || async {
        router.plugin_status("versioned").await.filter(|s| {
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("core WebAssembly module"))
        })
    })
    .await;

    // The fix loads and clears the error.
    deploy("versioned-v2", &router.plugins_dir(), "versioned");
    let status = wait_version(&router, "versioned", "v2").await;
    assert!(status["last_error"].is_null(), "{status}");
    assert_eq!(router.ingest("s", r#"{"i":2}"#, &[]).await.0, 202);
    assert_eq!(
        rx.wait_for("t", 2, WAIT).await[1].header("x-plugin-version"),
        Some("v2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_copy_loads_once_when_complete_with_no_error() {
    let rx = Receiver::start().await;
    let config = versioned_route(&rx);
    // Debounce 50 ms, pauses 250 ms: each chunk is seen as a change on its own.
    let router = Router::with(Setup {
        config: &config,
        plugins_extra: "watch_debounce_ms = 50\nsettle_ms = 1500",
        ..Setup::default()
    })
    .await;
    let bytes = std::fs::read(plugin_wasm("versioned-v1")).unwrap();
    let path = router.plugins_dir().join("versioned.wasm");
    let chunks: Vec<&[u8]> = bytes.chunks(bytes.len() / 4 + 1).collect();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        for (i, chunk) in chunks.iter().enumerate() {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            if i + 1 < chunks.len() {
                // The scenario under test is a writer that pauses.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let status = wait_version(&router, "versioned", "v1").await;
    assert!(status["last_error"].is_null(), "{status}");
    router.wait_log_contains("plugin loaded", WAIT).await;
    let loads = router
        .logs()
        .iter()
        .filter(|l| l["message"] == "plugin loaded" && l["plugin"] == "versioned")
        .count();
    assert_eq!(loads, 1, "loaded exactly once");
    assert!(
        !router.log_text().contains("plugin rejected"),
        "{}",
        router.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_for_a_removed_plugin_are_kept_and_delivered_when_it_returns() {
    let rx = Receiver::start().await;
    let router = start_with_v1(&rx, "").await;
    std::fs::remove_file(router.plugins_dir().join("versioned.wasm")).unwrap();
    crate::eventually_async("the plugin to unload", || async {
        router
            .plugin_status("versioned")
            .await
            .is_none()
            .then_some(())
    })
    .await;

    for i in 0..5 {
        assert_eq!(
            router.ingest("s", format!("{{\"i\":{i}}}"), &[]).await.0,
            202
        );
    }
    router
        .wait_metric("wasmhook_route_failures_total{route=\"r\"}", 5.0, WAIT)
        .await;
    // Kept, not dropped.
    router
        .wait_metric_eq("wasmhook_queue_failed_routes", 5.0, WAIT)
        .await;
    router
        .wait_log_contains("plugin versioned is not loaded", WAIT)
        .await;
    assert!(rx.on("t").is_empty());

    deploy("versioned-v2", &router.plugins_dir(), "versioned");
    let got = rx.wait_for("t", 5, WAIT).await;
    assert!(
        got.iter()
            .all(|r| r.header("x-plugin-version") == Some("v2"))
    );
    router
        .wait_metric_eq("wasmhook_queue_failed_routes", 0.0, WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_loads_plugins_from_the_compiled_cache() {
    let rx = Receiver::start().await;
    let mut router = start_with_v1(&rx, "").await;
    let first = router.plugin_status("versioned").await.unwrap();
    assert_eq!(first["from_cache"], false, "first load compiles: {first}");

    router.restart().await;
    let again = router.plugin_status("versioned").await.unwrap();
    assert_eq!(
        again["from_cache"], true,
        "restart loads from the cache: {again}"
    );
    assert_eq!(again["version"], first["version"]);
    router
        .wait_log("a load from the cache", WAIT, |l| {
            l["message"] == "plugin loaded" && l["from_cache"] == true
        })
        .await;

    // A corrupt entry is ignored and rebuilt, never trusted.
    let cache = router.dir.path().join("data/plugin-cache");
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    router.restart().await;
    let rebuilt = router.plugin_status("versioned").await.unwrap();
    assert_eq!(rebuilt["from_cache"], false, "{rebuilt}");
    router
        .wait_log_contains("ignoring a bad compiled-plugin cache entry", WAIT)
        .await;
    assert_eq!(router.ingest("s", "{}", &[]).await.0, 202);
    rx.wait_for("t", 1, WAIT).await;
}

/// Source `s`, routed to target `a`.
fn routed_to_a(rx: &Receiver) -> String {
    format!(
        "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"a\"\nurl = \"{}\"\n\n[[routes]]\nname = \"to-a\"\nsource = \"s\"\ntargets = [\"a\"]\n",
        rx.url("a")
    )
}

/// `config` plus a target `b` and a route from `s` to it.
fn with_route_to_b(config: &str, rx: &Receiver) -> String {
    format!(
        "{config}\n[[targets]]\nname = \"b\"\nurl = \"{}\"\n\n[[routes]]\nname = \"to-b\"\nsource = \"s\"\ntargets = [\"b\"]\n",
        rx.url("b")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_the_config_adds_routes_and_targets_and_a_bad_edit_keeps_the_old_one() {
    let rx = Receiver::start().await;
    let router = Router::start(&routed_to_a(&rx), &[], "").await;
    let original = std::fs::read_to_string(router.config_path()).unwrap();

    // Add a target and a route; write it the way deploy tools do (rename).
    let added = with_route_to_b(&original, &rx);
    let tmp = router.dir.path().join("wasmhook.toml.new");
    std::fs::write(&tmp, &added).unwrap();
    std::fs::rename(&tmp, router.config_path()).unwrap();
    router
        .wait_log("config reloaded", WAIT, |l| {
            l["message"] == "config reloaded" && l["routes"] == 2
        })
        .await;
    assert_eq!(router.ingest("s", r#"{"n":1}"#, &[]).await.0, 202);
    rx.wait_for("a", 1, WAIT).await;
    rx.wait_for("b", 1, WAIT).await;

    // A bad edit (unknown target) is rejected; the running config stays.
    std::fs::write(
        router.config_path(),
        added.replace("targets = [\"b\"]", "targets = [\"nope\"]"),
    )
    .unwrap();
    router
        .wait_log("the rejection", WAIT, |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("config reload rejected") && m.contains("nope"))
        })
        .await;
    assert_eq!(router.ingest("s", r#"{"n":2}"#, &[]).await.0, 202);
    rx.wait_for("a", 2, WAIT).await;
    rx.wait_for("b", 2, WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_config_the_watcher_cannot_see() {
    // The config is a symlink into a folder the router does not watch, as
    // Kubernetes mounts a ConfigMap: edits behind it reach the router only
    // through SIGHUP.
    let rx = Receiver::start().await;
    let router = Router::start(&routed_to_a(&rx), &[], "").await;
    let original = std::fs::read_to_string(router.config_path()).unwrap();
    let real_dir = router.dir.path().join("mounted");
    std::fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("wasmhook.toml");
    std::fs::write(&real, &original).unwrap();
    let link = router.dir.path().join("wasmhook.toml.link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    std::fs::rename(&link, router.config_path()).unwrap();
    // Swapping in the symlink is itself a change the watcher sees.
    router
        .wait_log("the reload of the symlink", WAIT, |l| {
            l["message"] == "config reloaded"
        })
        .await;

    // An edit behind the link: a second target and route.
    let added = with_route_to_b(&original, &rx);
    std::fs::write(&real, &added).unwrap();
    assert_eq!(
        router
            .ingest("s", r#"{"n":1}"#, &[("webhook-id", "before-hup")])
            .await
            .0,
        202
    );
    rx.wait_for("a", 1, WAIT).await;
    let (_, event) = crate::eventually_async("the event processed", || async {
        let (status, event) = router.api("/api/events/before-hup").await;
        (status == 200 && event["state"] == "processed").then_some(((), event))
    })
    .await;
    assert_eq!(
        event["deliveries"].as_array().unwrap().len(),
        1,
        "the edit is not live before SIGHUP: {event}"
    );

    router.signal(Signal::HUP);
    router
        .wait_log("the SIGHUP reload", WAIT, |l| {
            l["message"] == "config reloaded" && l["routes"] == 2
        })
        .await;
    assert!(router.log_text().contains("SIGHUP: reloading the config"));
    assert_eq!(router.ingest("s", r#"{"n":2}"#, &[]).await.0, 202);
    let got = rx.wait_for("b", 1, WAIT).await;
    assert_eq!(got[0].json()["n"], 2, "the new route is live");
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_the_config_and_plugins_reloads_nothing_and_a_broken_file_is_reported_once() {
    let rx = Receiver::start().await;
    // Short debounce and settle: a loop, if there were one, spins fast.
    let router = start_with_v1(&rx, "watch_debounce_ms = 20\nsettle_ms = 50").await;
    let broken = router.plugins_dir().join("broken.wasm");
    std::fs::write(&broken, b"not webassembly").unwrap();
    wait_status(&router, "broken", "the broken file's error", |s| {
        s["last_error"].is_string()
    })
    .await;
    let rejections = || {
        router
            .logs()
            .iter()
            .filter(|l| {
                l["plugin"] == "broken"
                    && l["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("plugin rejected"))
            })
            .count()
    };
    let reloads = || {
        router
            .logs()
            .iter()
            .filter(|l| l["message"] == "config reloaded")
            .count()
    };
    assert_eq!(rejections(), 1);

    // What `cat`, `wasmhook check` and a backup job do: open and read.
    for _ in 0..5 {
        std::fs::read(router.config_path()).unwrap();
        std::fs::read(&broken).unwrap();
        std::fs::read(router.plugins_dir().join("versioned.wasm")).unwrap();
    }
    // Proving that nothing happens takes a quiet period: 20 debounce windows,
    // and 5 of the config watcher's.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(reloads(), 0, "{}", router.log_text());
    assert_eq!(rejections(), 1, "{}", router.log_text());

    // A real change is still seen, and reported once.
    std::fs::write(&broken, b"still not webassembly").unwrap();
    crate::eventually_async("a second rejection", || async {
        (rejections() == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rejections(), 2, "once per change: {}", router.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_token_rotates_with_a_config_edit_and_no_restart() {
    let router = Router::start("[[sources]]\nname = \"s\"\n", &[], "").await;
    let with_token = |token: &'static str| {
        let url = router.url("/api/plugins");
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(with_token(wasmhook_e2e::ADMIN_TOKEN).await, 200);
    let config = std::fs::read_to_string(router.config_path()).unwrap();
    let rotated = config.replace(wasmhook_e2e::ADMIN_TOKEN, "the-rotated-token");
    assert_ne!(config, rotated);
    std::fs::write(router.config_path(), rotated).unwrap();
    router
        .wait_log("the reload", WAIT, |l| l["message"] == "config reloaded")
        .await;
    assert_eq!(with_token(wasmhook_e2e::ADMIN_TOKEN).await, 401);
    assert_eq!(with_token("the-rotated-token").await, 200);
    assert!(
        !router
            .log_text()
            .contains("take effect at the next restart"),
        "the token is live, not restart-only: {}",
        router.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_config_is_refused_and_unrouted_events_wait_for_the_fix() {
    let rx = Receiver::start().await;
    let router = Router::start(&routed_to_a(&rx), &[], "").await;
    let original = std::fs::read_to_string(router.config_path()).unwrap();

    // A truncated file is refused; the running config keeps serving.
    std::fs::write(router.config_path(), "  \n").unwrap();
    router
        .wait_log("the refusal", WAIT, |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("config reload rejected") && m.contains("is empty"))
        })
        .await;
    assert_eq!(router.ingest("s", r#"{"n":1}"#, &[]).await.0, 202);
    rx.wait_for("a", 1, WAIT).await;
    assert_eq!(
        router.api("/api/plugins").await.0,
        200,
        "the admin API stays"
    );

    // The route deleted, the source kept: an event is accepted and kept.
    let route = "[[routes]]\nname = \"to-a\"\nsource = \"s\"\ntargets = [\"a\"]\n";
    assert!(original.contains(route));
    std::fs::write(router.config_path(), original.replace(route, "")).unwrap();
    router
        .wait_log("the reload without routes", WAIT, |l| {
            l["message"] == "config reloaded" && l["routes"] == 0
        })
        .await;
    assert_eq!(
        router
            .ingest("s", r#"{"n":2}"#, &[("webhook-id", "unrouted-1")])
            .await
            .0,
        202
    );
    let (_, event) = crate::eventually_async("the unrouted event recorded", || async {
        let (_, event) = router.api("/api/events/unrouted-1").await;
        (event["state"] == "processed").then_some(((), event))
    })
    .await;
    let failed = &event["failed_routes"][0];
    assert_eq!(failed["route"], "*", "{event}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("no route matched"),
        "{event}"
    );
    assert_eq!(
        router
            .metric("wasmhook_events_unrouted_total{source=\"s\"}")
            .await,
        1.0
    );

    // The config fixed, a re-run delivers it.
    std::fs::write(router.config_path(), &original).unwrap();
    router
        .wait_log("the fixed reload", WAIT, |l| {
            l["message"] == "config reloaded" && l["routes"] == 1
        })
        .await;
    let (status, rerun) = router.api_post("/api/events/unrouted-1/rerun").await;
    assert_eq!(status, 202, "{rerun}");
    assert_eq!(rerun["routes"][0]["ok"], true, "{rerun}");
    let got = rx.wait_for("a", 2, WAIT).await;
    assert_eq!(got[1].json()["n"], 2);
    let (_, event) = router.api("/api/events/unrouted-1").await;
    assert_eq!(event["failed_routes"], serde_json::json!([]), "{event}");
}

#[tokio::test(flavor = "multi_thread")]
async fn putting_the_loaded_version_back_clears_the_error() {
    let rx = Receiver::start().await;
    let router = start_with_v1(&rx, "settle_ms = 100").await;
    let path = router.plugins_dir().join("versioned.wasm");
    std::fs::write(&path, b"garbage").unwrap();
    wait_status(&router, "versioned", "the error", |s| {
        s["last_error"].is_string()
    })
    .await;
    deploy("versioned-v1", &router.plugins_dir(), "versioned");
    let status = wait_status(&router, "versioned", "the error cleared", |s| {
        s["last_error"].is_null()
    })
    .await;
    assert_eq!(
        status["from_cache"], false,
        "still the first load: {status}"
    );
    router
        .wait_log_contains("plugin file restored to the loaded version", WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_that_breaks_on_every_call_is_rolled_back_and_its_events_rerun() {
    let rx = Receiver::start().await;
    let router = Router::start(&wasmhook_e2e::s_to_t(&rx, "r", &["p"]), &[], "").await;
    let version_of = |plugin: &str| sha256_hex(&std::fs::read(plugin_wasm(plugin)).unwrap());
    let serving = |want: String| {
        wait_status(&router, "p", "the version to serve", move |s| {
            s["version"] == want.as_str()
        })
    };
    // A working version, proven by an event.
    deploy("tag-route", &router.plugins_dir(), "p");
    serving(version_of("tag-route")).await;
    assert_eq!(router.ingest("s", r#"{"i":0}"#, &[]).await.0, 202);
    rx.wait_for("t", 1, WAIT).await;

    // A version that panics on every call replaces it, and goes on trial.
    deploy("hostile-panic", &router.plugins_dir(), "p");
    serving(version_of("hostile-panic")).await;
    for i in 1..=6 {
        let (status, _) = router.ingest("s", format!("{{\"i\":{i}}}"), &[]).await;
        assert_eq!(status, 202);
    }
    // Rolled back after its first calls broke; every event is delivered by
    // the restored version.
    let got = rx.wait_for("t", 7, WAIT).await;
    let mut seen: Vec<i64> = got
        .iter()
        .map(|r| r.json()["i"].as_i64().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, (0..=6).collect::<Vec<_>>());
    let status = serving(version_of("tag-route")).await;
    assert!(
        status["rolled_back"]
            .as_str()
            .is_some_and(|r| r.contains("broke on its first 5 calls")),
        "{status}"
    );
    router.wait_log_contains("plugin rolled back", WAIT).await;
    router
        .wait_metric_eq("wasmhook_queue_failed_routes", 0.0, WAIT)
        .await;
}
