//! Plugins in Rust, JavaScript and Python, made as an author makes them:
//! `wasmhook plugin new` outside any checkout, the template's own tests,
//! `wasmhook plugin build`, then served by the router: as scaffolded, hot
//! swapped under a stream, in a burst, and failing readably.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use wasmhook_e2e::templates::{Lang, Project, check, project, wasmhook};
use wasmhook_e2e::{Receiver, Router};

use crate::WAIT;

/// Loading a Python plugin compiles 18 MB of CPython: seconds, more on a
/// busy machine. Only a failure waits this long.
const LOAD_WAIT: Duration = Duration::from_secs(120);

fn no_op_template_builds_and_keeps_the_sample(lang: Lang) {
    let p = project(lang);
    // Nothing in the project points back at this checkout.
    let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for file in project_files(&p.dir) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains(&checkout),
            "{} names the checkout",
            file.display()
        );
    }
    let tests = p.run_native_tests();
    check(&tests, &format!("the {lang:?} template's own tests"));

    let wasm = p.noop();
    let out = wasmhook(&p.dir)
        .args(["plugin", "run"])
        .arg(&wasm)
        .arg("events/sample.json")
        .output()
        .unwrap();
    check(&out, "wasmhook plugin run on the sample event");
    assert!(
        out.stderr.is_empty(),
        "only the outcome is printed without -v: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sample: Value =
        serde_json::from_str(&std::fs::read_to_string(p.dir.join("events/sample.json")).unwrap())
            .unwrap();
    let emitted = outcome["emit"].as_array().expect("the no-op emits");
    assert_eq!(emitted.len(), 1, "{outcome}");
    assert_eq!(emitted[0]["body"], sample["body"], "kept unchanged");
    assert_eq!(emitted[0]["event_type"], sample["type"]);
    assert_eq!(emitted[0]["id"], sample["id"]);
    assert_eq!(emitted[0]["source"], sample["source"]);
}

/// The project's own files: what `plugin new` wrote and the author edits.
fn project_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if ["node_modules", "target", "dist", "__pycache__", ".venv"].contains(&name.as_str()) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn the_rust_template_is_a_no_op_that_builds_anywhere() {
    no_op_template_builds_and_keeps_the_sample(Lang::Rust);
}

#[test]
fn the_js_template_is_a_no_op_that_builds_anywhere() {
    no_op_template_builds_and_keeps_the_sample(Lang::Js);
}

#[test]
fn the_python_template_is_a_no_op_that_builds_anywhere() {
    no_op_template_builds_and_keeps_the_sample(Lang::Python);
}

/// A route per language, each through its threshold plugin with `min = 5`.
fn threshold_config(rx: &Receiver, langs: &[Lang]) -> String {
    let mut config = format!(
        "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"{}\"\nretry_schedule = [\"10ms\"]\n\n",
        rx.url("t")
    );
    for lang in langs {
        let name = lang.plugin_name();
        config.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\nsource = \"s\"\n\
             plugins = [{{ name = \"{name}\", config = {{ min = 5 }} }}]\ntargets = [\"t\"]\n\n"
        ));
    }
    config
}

/// Start a router with `wasm` as each language's plugin, and wait until
/// every one has loaded.
async fn start_with(rx: &Receiver, plugins: &[(Lang, std::path::PathBuf)], extra: &str) -> Router {
    let langs: Vec<Lang> = plugins.iter().map(|(l, _)| *l).collect();
    let router = Router::start(&threshold_config(rx, &langs), &[], extra).await;
    for (lang, wasm) in plugins {
        deploy(wasm, &router, *lang);
    }
    for (lang, _) in plugins {
        wait_loaded(&router, *lang).await;
    }
    router
}

/// Put `wasm` in the router's plugins folder the way `plugin build
/// --deploy` does: a temp file, then a rename.
fn deploy(wasm: &std::path::Path, router: &Router, lang: Lang) {
    let dir = router.plugins_dir();
    let tmp = dir.join(format!(".{}.tmp", lang.plugin_name()));
    std::fs::copy(wasm, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{}.wasm", lang.plugin_name()))).unwrap();
}

async fn wait_loaded(router: &Router, lang: Lang) -> Value {
    let name = lang.plugin_name();
    let deadline = tokio::time::Instant::now() + LOAD_WAIT;
    loop {
        if let Some(s) = router.plugin_status(name).await {
            assert!(s["last_error"].is_null(), "{name} failed to load: {s}");
            if s["version"].is_string() {
                return s;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn hot_swap_under_a_stream(lang: Lang) {
    let p: &Project = project(lang);
    let v1 = p.threshold("1");
    let rx = Receiver::start().await;
    let router = Arc::new(start_with(&rx, &[(lang, v1)], "").await);
    // v2 is built and hot-deployed the author's way, mid-stream, by
    // `wasmhook plugin build --deploy` on its own thread.
    let mut deploying = None;

    // A steady stream, every event a keeper: a third before the swap, then
    // on while v2 compiles and goes live, then a third more.
    let senders = Arc::new(Semaphore::new(8));
    let mut sent = Vec::new();
    let mut deployed_at = None;
    let mut served_at = None;
    let deadline = tokio::time::Instant::now() + LOAD_WAIT;
    let mut i = 0usize;
    while served_at.is_none_or(|s| i < s + 100) {
        if i == 100 {
            let plugins = router.plugins_dir();
            deploying = Some(std::thread::spawn(move || {
                p.deploy_threshold("2", &plugins)
            }));
            deployed_at = Some(i);
        }
        if deployed_at.is_some() && served_at.is_none() && i.is_multiple_of(8) {
            if rx
                .on("t")
                .iter()
                .any(|r| r.header("x-plugin-version") == Some("2"))
            {
                served_at = Some(i);
            }
            assert!(tokio::time::Instant::now() < deadline, "v2 never served");
            // Pace the stream while v2 compiles: events, not a flood.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let permit = senders.clone().acquire_owned().await.unwrap();
        let router = router.clone();
        let n = i;
        sent.push(tokio::spawn(async move {
            let (status, _) = router
                .ingest(
                    "s",
                    json!({ "n": 10, "i": n }).to_string(),
                    &[("webhook-id", &format!("evt-{n}"))],
                )
                .await;
            drop(permit);
            assert_eq!(status, 202);
        }));
        i += 1;
    }
    for s in sent {
        s.await.unwrap();
    }
    let deployed = deploying.unwrap().join().unwrap();
    assert_eq!(
        deployed,
        router
            .plugins_dir()
            .join(format!("{}.wasm", lang.plugin_name()))
            .canonicalize()
            .unwrap()
    );
    let got = rx.wait_for("t", i, WAIT).await;
    let mut versions: HashMap<i64, Vec<String>> = HashMap::new();
    for r in &got {
        versions
            .entry(r.json()["i"].as_i64().unwrap())
            .or_default()
            .push(r.header("x-plugin-version").expect("tagged").to_string());
    }
    assert_eq!(versions.len(), i, "every event delivered");
    assert_eq!(got.len(), i, "each exactly once");
    let on_v2 = versions
        .values()
        .filter(|v| v == &&["2".to_string()])
        .count();
    assert!(
        on_v2 >= 100 && on_v2 < i,
        "the swap happened mid-stream: {on_v2} of {i} on v2"
    );
    let route = format!(
        "wasmhook_route_failures_total{{route=\"{}\"}}",
        lang.plugin_name()
    );
    assert_eq!(router.metric(&route).await, 0.0, "zero failed events");
    router.wait_log_contains("plugin swapped", WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_js_plugin_hot_swaps_under_a_stream_with_no_failures() {
    hot_swap_under_a_stream(Lang::Js).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_plugin_hot_swaps_under_a_stream_with_no_failures() {
    hot_swap_under_a_stream(Lang::Python).await;
}

/// The pool is sized from each component's real needs: 1,000 events from 16
/// senders through a Rust, a JS and a Python plugin at once fail none (a
/// pool counted in Rust-sized calls ran out of core instances for Python).
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_1000_events_from_16_senders_fails_none_in_any_language() {
    const EVENTS: usize = 1_000;
    let plugins: Vec<(Lang, std::path::PathBuf)> = Lang::ALL
        .iter()
        .map(|l| (*l, project(*l).threshold("1")))
        .collect();
    let rx = Receiver::start().await;
    let router = Arc::new(start_with(&rx, &plugins, "").await);
    let mut footprints = HashMap::new();
    for lang in Lang::ALL {
        let s = router.plugin_status(lang.plugin_name()).await.unwrap();
        footprints.insert(lang, s["footprint"]["core_instances"].as_u64().unwrap());
        let want = match lang {
            Lang::Rust => "Rust",
            Lang::Js => "JavaScript",
            Lang::Python => "Python",
        };
        assert_eq!(s["language"], want, "{s}");
    }
    assert!(
        footprints[&Lang::Python] > footprints[&Lang::Rust]
            && footprints[&Lang::Js] > footprints[&Lang::Rust],
        "the pool counts each component's own instances: {footprints:?}"
    );

    let senders = Arc::new(Semaphore::new(16));
    let mut sent = Vec::new();
    for n in 0..EVENTS {
        let permit = senders.clone().acquire_owned().await.unwrap();
        let router = router.clone();
        sent.push(tokio::spawn(async move {
            let (status, _) = router
                .ingest("s", json!({ "n": 10, "i": n }).to_string(), &[])
                .await;
            drop(permit);
            assert_eq!(status, 202);
        }));
    }
    for s in sent {
        s.await.unwrap();
    }
    let got = rx.wait_for("t", 3 * EVENTS, LOAD_WAIT).await;
    assert_eq!(
        got.len(),
        3 * EVENTS,
        "every event through every language, once"
    );
    for lang in Lang::ALL {
        let route = format!(
            "wasmhook_route_failures_total{{route=\"{}\"}}",
            lang.plugin_name()
        );
        assert_eq!(
            router.metric(&route).await,
            0.0,
            "{lang:?}: zero failed events"
        );
    }
}

/// What each plugin did is on the event: a drop names the plugin and its
/// reason; an error reads as the author's message and line, in their
/// language, not a wasm stack.
#[tokio::test(flavor = "multi_thread")]
async fn drops_and_errors_are_recorded_on_the_event_readably_in_every_language() {
    let plugins: Vec<(Lang, std::path::PathBuf)> = Lang::ALL
        .iter()
        .map(|l| (*l, project(*l).threshold("1")))
        .collect();
    let rx = Receiver::start().await;
    let router = start_with(&rx, &plugins, "").await;

    let (_, small) = router
        .ingest("s", r#"{"n": 1}"#, &[("webhook-id", "small")])
        .await;
    let (_, bad) = router
        .ingest("s", r#"{"m": 1}"#, &[("webhook-id", "bad")])
        .await;
    let (_, big) = router
        .ingest("s", r#"{"n": 9}"#, &[("webhook-id", "big")])
        .await;
    rx.wait_for("t", 3, WAIT).await;
    let routes = |id: Value| {
        let router = &router;
        async move {
            let path = format!("/api/events/{}", id.as_str().unwrap());
            crate::eventually_async("the event's routes", || async {
                let (_, ev) = router.api(&path).await;
                let routes = ev["routes"].as_array()?.clone();
                (routes.len() == 3).then_some(routes)
            })
            .await
        }
    };
    for r in routes(small["id"].clone()).await {
        assert_eq!(r["outcome"], "dropped", "{r}");
        assert_eq!(r["plugin"], r["route"], "the plugin that dropped it: {r}");
        assert_eq!(r["reason"], "n=1 is below min=5", "{r}");
    }
    for r in routes(big["id"].clone()).await {
        assert_eq!(r["outcome"], "emitted", "{r}");
        assert_eq!(
            (r["outputs"].clone(), r["targets"].clone()),
            (json!(1), json!(["t"])),
            "{r}"
        );
    }
    for r in routes(bad["id"].clone()).await {
        assert_eq!(r["outcome"], "failed", "{r}");
        let error = r["error"].as_str().unwrap();
        assert!(error.contains("every event needs a numeric n"), "{error}");
        assert!(
            !error.contains("wasm") && !error.contains("RUST_BACKTRACE"),
            "{error}"
        );
        let place = match r["route"].as_str().unwrap() {
            "tpl-js" => "(at src/plugin.js:",
            "tpl-python" => "(at plugin.py:",
            _ => "every event needs a numeric n",
        };
        assert!(error.contains(place), "{error}");
    }
}

/// A JS component built without `--backend-qjs-disable-async` is refused at
/// load with what to do in jco's terms, not cargo's.
#[test]
fn a_js_component_built_with_the_wrong_jco_flags_is_refused_in_jco_terms() {
    let p = project(Lang::Js);
    p.noop(); // npm install has run
    let wasm = p.dir.with_extension("async.wasm");
    p.with_project(|dir| {
        let out = std::process::Command::new("npx")
            .args([
                "jco",
                "componentize",
                "src/entry.js",
                "--cwd",
                ".",
                "--wit",
                "wit",
            ])
            .args(["--world-name", "plugin", "--backend", "qjs", "-o"])
            .arg(&wasm)
            .current_dir(dir)
            .output()
            .unwrap();
        check(&out, "jco componentize without --backend-qjs-disable-async");
    });
    let out = wasmhook(&p.dir)
        .args(["plugin", "run", "--no-cache"])
        .arg(&wasm)
        .arg("events/sample.json")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--backend-qjs-disable-async"), "{stderr}");
    assert!(
        !stderr.contains("cargo"),
        "no Rust advice for a JS plugin: {stderr}"
    );
}

/// The JS and Python SDKs pass their own tests (the Rust SDK's run with
/// `cargo test`).
#[test]
fn the_js_and_python_sdks_pass_their_own_tests() {
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    let out = std::process::Command::new("node")
        .args(["--test", "test/"])
        .current_dir(sdk.join("js"))
        .output()
        .unwrap();
    check(&out, "node --test plugin-sdk/js/test/");
    // The Python SDK's tests generate componentize-py's bindings for the
    // WIT, so they run with the tools `cargo xtask test` installs.
    let out = wasmhook_e2e::templates::tools_command("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(sdk.join("python"))
        .output()
        .unwrap();
    check(&out, "pytest plugin-sdk/python/tests");
}
