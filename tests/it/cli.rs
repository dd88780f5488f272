//! The commands around the router: `send`, `listen`, `plugin run`, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};

use wasmhook_e2e::{Behaviour, Receiver, Router, Setup, Signal, plugin_wasm};

use crate::WAIT;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn wasmhook() -> Command {
    Command::new(wasmhook_e2e::binary())
}

/// Spawn a long-running command with piped output, and wait for its first
/// line on stderr, which must say `ready` (it is listening, or watching).
/// Returns the child and the rest of its stderr, kept open so that it does
/// not die writing to a closed pipe.
fn started(command: &mut Command, ready: &str) -> (Child, BufReader<ChildStderr>) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains(ready), "{line}");
    (child, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn send_posts_with_the_sources_type_header_and_listen_verifies_the_signature() {
    // `listen` on a free port: bind :0 first to find one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut listen, _stderr) = started(
        wasmhook().args(["listen", "--port", &port.to_string(), "--secret", SECRET]),
        "listening on",
    );

    let config = format!(
        "[[sources]]\nname = \"gh\"\nevent_type = {{ header = \"x-github-event\" }}\n\n\
         [[targets]]\nname = \"local\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsigning_secret = \"{SECRET}\"\n\n\
         [[routes]]\nname = \"r\"\nsource = \"gh\"\nevent_types = [\"push\"]\ntargets = [\"local\"]\n"
    );
    let router = Router::start(&config, &[], "").await;
    let config_path = router.dir.path().join("wasmhook.toml");
    let event = router.dir.path().join("event.json");
    std::fs::write(&event, r#"{"hello":"listen"}"#).unwrap();
    let out = wasmhook()
        .args(["send", "gh"])
        .arg(&event)
        .args([
            "--type",
            "push",
            "--id",
            "evt-send-1",
            "--url",
            &router.url(""),
            "--config",
        ])
        .arg(&config_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("202 ") && stdout.contains("evt-send-1"),
        "{stdout}"
    );

    router
        .wait_metric(
            "wasmhook_delivery_attempts_total{target=\"local\",result=\"delivered\"}",
            1.0,
            WAIT,
        )
        .await;
    let _ = listen.kill();
    let _ = listen.wait();
    let mut printed = String::new();
    std::io::Read::read_to_string(listen.stdout.as_mut().unwrap(), &mut printed).unwrap();
    assert!(
        printed.contains("POST /hook") && printed.contains("signature ok"),
        "{printed}"
    );
    assert!(printed.contains("\"hello\": \"listen\""), "{printed}");
}

#[test]
fn plugin_run_prints_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("e.json");
    std::fs::write(&event, r#"{"user":{"email":"a@b.c","name":"Ann"}}"#).unwrap();
    let out = wasmhook()
        .args(["plugin", "run"])
        .arg(plugin_wasm("redact"))
        .arg(&event)
        .args(["--config", "fields=/user/email"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["emit"][0]["body"],
        serde_json::json!({"user": {"name": "Ann"}})
    );

    let out = wasmhook()
        .args(["plugin", "run"])
        .arg(plugin_wasm("hostile-panic"))
        .arg(&event)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The panic's message and place, not a wasm stack and a backtrace hint.
    assert!(
        stderr.contains(
            "plugin panicked at tests/plugins/hostile-panic/src/lib.rs:6:5: hostile-panic was asked to handle evt_cli"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("RUST_BACKTRACE") && !stderr.contains("wasm trap"),
        "{stderr}"
    );
}

/// `plugin run` takes a full event, sets fields and config from flags and a
/// file, prints only the outcome unless `-v`, and caches what it compiles.
#[test]
fn plugin_run_takes_a_full_event_flags_and_a_config_file_and_caches() {
    let dir = tempfile::tempdir().unwrap();
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"source":"github","type":"push","id":"evt_7","headers":{"X-GitHub-Event":"push"},"body":{"ref":"main"}}"#,
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "tag = \"from-file\"\nto = [\"a\", \"b\"]\n").unwrap();
    let cache = dir.path().join("cache");
    let run = |extra: &[&str]| {
        wasmhook()
            .args(["plugin", "run"])
            .arg(plugin_wasm("tag-route"))
            .arg(&event)
            .arg("--config-file")
            .arg(&config)
            .arg("--cache-dir")
            .arg(&cache)
            .args(extra)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let out = run(&[
        "--config",
        "tag=from-flag",
        "-H",
        "X-Extra: 1",
        "--type",
        "release",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "quiet without -v: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &v["emit"][0];
    assert_eq!(e["id"], "evt_7");
    assert_eq!(e["source"], "github");
    assert_eq!(e["event_type"], "release", "--type overrides the event's");
    assert_eq!(
        e["targets"],
        serde_json::json!(["a", "b"]),
        "from the config file"
    );
    assert_eq!(e["body"], serde_json::json!({"ref": "main"}));
    let headers: Vec<(String, String)> = serde_json::from_value(e["headers"].clone()).unwrap();
    assert!(
        headers.contains(&("x-tag".into(), "from-flag".into())),
        "flags beat the file"
    );
    assert!(headers.contains(&("x-github-event".into(), "push".into())));
    assert!(headers.contains(&("x-extra".into(), "1".into())));
    assert!(
        !headers.iter().any(|(k, _)| k == "content-type"),
        "no header is invented: {headers:?}"
    );
    // The second run loads the compiled plugin from the cache; -v says so,
    // and shows what the plugin logged.
    let out = run(&["-v"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("from_cache=true"), "{stderr}");
    assert!(
        stderr.contains("tagging evt_7") && stderr.contains("plugin ran"),
        "{stderr}"
    );
}

#[test]
fn plugin_build_names_what_is_missing_and_plugin_new_refuses_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = wasmhook()
        .args(["plugin", "build"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no plugin project") && stderr.contains("wasmhook plugin new"),
        "{stderr}"
    );

    let out = wasmhook()
        .args(["plugin", "new", "Bad_Name"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a plugin name"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );

    // A project whose tools are missing says how to get them, and prints
    // no path.
    for (lang, missing) in [
        ("python", "pip install componentize-py==0.25.1"),
        ("js", "Node.js is not installed"),
    ] {
        let project = dir.path().join(lang);
        let out = wasmhook()
            .args(["plugin", "new", "p", "--lang", lang, "--dir"])
            .arg(&project)
            .output()
            .unwrap();
        assert!(out.status.success());
        let out = wasmhook()
            .args(["plugin", "build"])
            .arg(&project)
            .env("PATH", "/nonexistent")
            .env_remove("VIRTUAL_ENV")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(missing), "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "no path is printed for a failed build"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_refusing_ingest_until_attempts_in_flight_finish() {
    let rx = Receiver::start().await;
    rx.set("t", Behaviour::Hold);
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"{}\"\n\n[[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n",
        rx.url("t")
    );
    let mut router = Router::with(Setup {
        config: &config,
        // The line per delivered attempt is at debug (at 10,000 events/s,
        // a line per event at info costs a fifth of the router's time).
        log: "info,wasmhook::dispatch=debug",
        ..Setup::default()
    })
    .await;
    assert_eq!(router.ingest("s", "{}", &[]).await.0, 202);
    // An attempt is in flight, held by the target.
    rx.wait_for("t", 1, WAIT).await;

    router.signal(Signal::TERM);
    router.wait_log_contains("shutting down", WAIT).await;
    // Draining: senders are told to come back, load balancers to go away.
    let resp = reqwest::Client::new()
        .post(router.url("/ingest/s"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(
        resp.text().await.unwrap().contains("shutting down"),
        "the 503 says why"
    );
    let (status, ready) = router.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(ready.contains("draining"), "{ready}");
    assert_eq!(
        router
            .metric("wasmhook_ingest_rejected_total{source=\"s\",reason=\"draining\"}")
            .await,
        1.0
    );

    // The attempt in flight finishes, then the process exits cleanly.
    rx.release();
    assert!(router.wait_exit().await, "exit status 0 after SIGTERM");
    // Its last words: the held attempt was recorded before the exit. (In
    // memory, the router checks that nothing is lost; a database keeps
    // whatever is left.)
    let last_words = if wasmhook_e2e::on_postgres() {
        "stopped; undelivered work stays in the store"
    } else {
        "stopped; nothing was left undelivered"
    };
    router.wait_log_contains(last_words, WAIT).await;
    assert!(router.logs().iter().any(|l| l["message"] == "delivered"));
}

/// `wasmhook events | deliveries | targets | plugins | tail` against a
/// running router: tables for people, `--json` for scripts, and the token
/// from the environment, a flag or the config file.
#[tokio::test(flavor = "multi_thread")]
async fn admin_commands_list_show_retry_replay_and_tail() {
    let rx = Receiver::start().await;
    rx.set("t", Behaviour::Always(500));
    let config = format!(
        "[[sources]]\nname = \"s\"\n\n[[targets]]\nname = \"t\"\nurl = \"{}\"\nmax_attempts = 1\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\ntargets = [\"t\"]\n",
        rx.url("t")
    );
    let router = Router::start(&config, &[], "").await;
    let admin = |args: &[&str]| {
        let out = wasmhook()
            .args(args)
            .env("WASMHOOK_URL", router.url(""))
            .env("WASMHOOK_ADMIN_TOKEN", wasmhook_e2e::ADMIN_TOKEN)
            .env("WASMHOOK_CONFIG", "/nonexistent/wasmhook.toml")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stdout, stderr)
    };
    let (status, answer) = router.ingest("s", r#"{"n":1}"#, &[]).await;
    assert_eq!(status, 202);
    let id = answer["id"].as_str().unwrap().to_string();
    router.wait_metric("wasmhook_queue_dead", 1.0, WAIT).await;

    let (ok, table, err) = admin(&["events", "list"]);
    assert!(ok, "{err}");
    assert!(table.starts_with("RECEIVED (UTC)"), "{table}");
    assert!(table.contains(&id), "{table}");
    let (ok, json, _) = admin(&["events", "list", "--json", "--source", "s"]);
    assert!(ok);
    let page: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(page["events"][0]["id"], id.as_str());
    assert_eq!(page["events"][0]["dead"], 1);

    let (ok, shown, _) = admin(&["events", "show", &id]);
    assert!(ok);
    assert!(
        shown.contains("dead") && shown.contains("\"n\": 1"),
        "{shown}"
    );

    let (_, dead, _) = admin(&["deliveries", "list", "--state", "dead", "--json"]);
    let dead: serde_json::Value = serde_json::from_str(&dead).unwrap();
    let delivery = dead["deliveries"][0]["id"].as_str().unwrap().to_string();
    rx.set("t", Behaviour::Ok);
    let (ok, said, err) = admin(&["deliveries", "retry", &delivery]);
    assert!(ok && said.contains("due again"), "{said}{err}");
    rx.wait_for("t", 2, WAIT).await;

    let (ok, targets, _) = admin(&["targets", "list"]);
    assert!(
        ok && targets.contains("NAME") && targets.contains(&rx.url("t")),
        "{targets}"
    );
    let (ok, replayed, _) = admin(&["targets", "replay", "t", "--since", "1h"]);
    assert!(ok && replayed.contains("re-queued 0"), "{replayed}");
    let (ok, listed, _) = admin(&["plugins", "list", "--json"]);
    assert!(ok && listed.contains("\"plugins\""), "{listed}");

    // Mistakes say what to do, with a failing exit.
    let (ok, _, err) = admin(&["events", "show", "evt_nope"]);
    assert!(!ok && err.contains("no event has id"), "{err}");
    let (ok, _, err) = admin(&["deliveries", "list", "--state", "lost"]);
    assert!(!ok && err.contains("state must be one of"), "{err}");
    let out = wasmhook()
        .args([
            "events",
            "list",
            "--url",
            &router.url(""),
            "--token",
            "wrong",
        ])
        .env("WASMHOOK_CONFIG", "/nonexistent/wasmhook.toml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the admin token"));
    // With no token anywhere, it says where one comes from.
    let out = wasmhook()
        .args(["events", "list", "--url", &router.url("")])
        .env_remove("WASMHOOK_ADMIN_TOKEN")
        .env("WASMHOOK_CONFIG", "/nonexistent/wasmhook.toml")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("WASMHOOK_ADMIN_TOKEN"));

    // The token comes from the router's own config file too.
    let out = wasmhook()
        .args(["events", "list", "--url", &router.url(""), "--config"])
        .arg(router.config_path())
        .env_remove("WASMHOOK_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `tail` prints each new event as it comes.
    let (mut tail, _stderr) = started(
        wasmhook()
            .args(["tail", "--json"])
            .env("WASMHOOK_URL", router.url(""))
            .env("WASMHOOK_ADMIN_TOKEN", wasmhook_e2e::ADMIN_TOKEN)
            .env("WASMHOOK_CONFIG", "/nonexistent/wasmhook.toml"),
        "watching",
    );
    let (_, answer) = router.ingest("s", r#"{"n":2}"#, &[]).await;
    let fresh = answer["id"].as_str().unwrap().to_string();
    let stdout = tail.stdout.take().unwrap();
    let (lines, got) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line);
        }
    });
    // The event, and its delivery's attempt, in either order.
    let mut tailed = Vec::new();
    while tailed.len() < 2 {
        let line = got.recv_timeout(WAIT).expect("tail printed a line");
        tailed.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(
        tailed.iter().any(|t| t["id"] == fresh.as_str()),
        "{tailed:?}"
    );
    assert!(
        tailed
            .iter()
            .any(|t| t["event_id"] == fresh.as_str() && t["outcome"] == "delivered"),
        "{tailed:?}"
    );
}
