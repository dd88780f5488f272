//! Start the real `wasmhook` binary on 127.0.0.1:0 with a temp config.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, kill_process};
use serde_json::Value;

pub use rustix::process::Signal;

/// `target/`, found from this test executable (`target/release/deps/it-…`).
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The `wasmhook` binary built alongside the tests.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.ancestors().nth(2).unwrap().join("wasmhook");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo xtask test`",
        bin.display()
    );
    bin
}

/// A plugin built by `cargo xtask build-plugins`.
pub fn plugin_wasm(name: &str) -> PathBuf {
    let path = target_dir().join("plugins").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins` (or `cargo xtask test`)",
        path.display()
    );
    path
}

/// What to start a router with. `[server]`, `[storage]` and `[plugins]` are
/// written by the harness (listening on 127.0.0.1:0, in memory, the temp
/// plugins folder); the `*_extra` strings add keys to those sections.
#[derive(Debug, Default, Clone, Copy)]
pub struct Setup<'a> {
    pub config: &'a str,
    pub plugins: &'a [&'a str],
    pub server_extra: &'a str,
    pub storage_extra: &'a str,
    /// Use the durable SQLite store in the temp folder instead of `memory://`.
    pub durable: bool,
    /// Leave `server.admin_token` unset (the admin API is then off).
    pub no_admin_token: bool,
    pub plugins_extra: &'a str,
    /// `RUST_LOG` for the router (`info` when empty).
    pub log: &'a str,
    /// `storage.url`, when the test picks it (several routers sharing one
    /// PostgreSQL database, say).
    pub storage_url: &'a str,
}

/// `WASMHOOK_TEST_STORE=postgres`: every router the tests start (that does
/// not pick its own `storage.url`) gets a new PostgreSQL database, so the
/// whole suite runs on that store too.
pub fn on_postgres() -> bool {
    std::env::var("WASMHOOK_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// The admin token every test router is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A running router. Killed on drop.
pub struct Router {
    child: Child,
    config_path: PathBuf,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    logs: Arc<Mutex<Vec<String>>>,
    log_level: String,
    client: reqwest::Client,
}

impl Router {
    /// Start with `plugins` (names of built plugins) in its plugins folder and
    /// `config` as the rest of the TOML; `plugins_extra` adds keys to
    /// `[plugins]` (e.g. `timeout_ms = 50`).
    pub async fn start(config: &str, plugins: &[&str], plugins_extra: &str) -> Router {
        Self::with(Setup {
            config,
            plugins,
            plugins_extra,
            ..Setup::default()
        })
        .await
    }

    pub async fn with(setup: Setup<'_>) -> Router {
        let dir = tempfile::tempdir().unwrap();
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir(&plugin_dir).unwrap();
        for p in setup.plugins {
            std::fs::copy(plugin_wasm(p), plugin_dir.join(format!("{p}.wasm"))).unwrap();
        }
        let Setup {
            config,
            server_extra,
            storage_extra,
            plugins_extra,
            durable,
            no_admin_token,
            log,
            ..
        } = setup;
        let token = if no_admin_token {
            String::new()
        } else {
            format!("admin_token = \"{ADMIN_TOKEN}\"")
        };
        let pg;
        let url = if !setup.storage_url.is_empty() {
            setup.storage_url
        } else if on_postgres() {
            pg = wasmhook_testpg::database("e2e")
                .expect("WASMHOOK_TEST_STORE=postgres needs PostgreSQL on this machine");
            &pg
        } else if durable {
            "sqlite://data/wasmhook.db"
        } else {
            "memory://"
        };
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{token}\n{server_extra}\n\n[storage]\nurl = \"{url}\"\n{storage_extra}\n\n\
             [plugins]\ndir = \"plugins\"\n{plugins_extra}\n\n{config}"
        );
        let config_path = dir.path().join("wasmhook.toml");
        std::fs::write(&config_path, toml).unwrap();
        Self::spawn(dir, &config_path, log).await
    }

    async fn spawn(dir: tempfile::TempDir, config_path: &Path, log: &str) -> Router {
        let log = if log.is_empty() { "info" } else { log }.to_string();
        let (child, addr, logs) = launch(config_path, &log).await;
        Router {
            child,
            config_path: config_path.to_path_buf(),
            addr,
            dir,
            logs,
            log_level: log,
            client: reqwest::Client::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// Stop the process (SIGKILL) and start a new one on the same folder and
    /// config. The address changes; the log starts empty.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, addr, logs) = launch(&self.config_path, &self.log_level).await;
        (self.child, self.addr, self.logs) = (child, addr, logs);
    }

    /// GET an admin API path with the admin token; returns status and JSON.
    pub async fn api(&self, path: &str) -> (u16, Value) {
        self.api_call(reqwest::Method::GET, path).await
    }

    /// POST to an admin API path with the admin token.
    pub async fn api_post(&self, path: &str) -> (u16, Value) {
        self.api_call(reqwest::Method::POST, path).await
    }

    /// POST `body` as JSON to an admin API path with the admin token.
    pub async fn api_post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.api_request(
            self.client
                .post(self.url(path))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn api_call(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        self.api_request(self.client.request(method, self.url(path)))
            .await
    }

    async fn api_request(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = request.bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The status of plugin `name` from `GET /api/plugins`, if listed.
    pub async fn plugin_status(&self, name: &str) -> Option<Value> {
        let (status, body) = self.api("/api/plugins").await;
        assert_eq!(status, 200, "{body}");
        body["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
    }

    /// Wait until the log contains `needle`. The log is read from the child's
    /// stderr by a thread, so a line can trail the effect it describes.
    pub async fn wait_log_contains(&self, needle: &str, timeout: Duration) {
        let what = format!("{needle:?} in the log");
        let check = || self.log_text().contains(needle).then_some(());
        crate::eventually_or_say(&what, timeout, check, || self.log_tail(30)).await
    }

    /// The log's last `n` lines, to say in a failed test what the router
    /// said last (a panic, say: the release build aborts on one).
    fn log_tail(&self, n: usize) -> String {
        let logs = self.logs.lock().unwrap();
        let from = logs.len().saturating_sub(n);
        format!(
            "; the router's last log lines:\n{}",
            logs[from..].join("\n")
        )
    }

    /// Wait for a log line for which `pred` holds; returns it.
    pub async fn wait_log(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        crate::eventually(what, timeout, || self.logs().into_iter().find(|l| pred(l))).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POST `body` to `/ingest/{source}` with `headers`; returns status and JSON body.
    pub async fn ingest(
        &self,
        source: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url(&format!("/ingest/{source}")))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// The value of the metric line that starts with `series` (name and labels).
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map(|v| v.parse().unwrap())
            .unwrap_or(0.0)
    }

    /// Wait until the metric reaches at least `value`.
    pub async fn wait_metric(&self, series: &str, value: f64, timeout: Duration) {
        self.wait_metric_until(series, timeout, &format!(">= {value}"), |v| v >= value)
            .await
    }

    /// Wait until the metric is exactly `value`. Queue gauges are served
    /// from a short cache and trail the counters by a moment.
    pub async fn wait_metric_eq(&self, series: &str, value: f64, timeout: Duration) {
        self.wait_metric_until(series, timeout, &format!("== {value}"), |v| v == value)
            .await
    }

    async fn wait_metric_until(
        &self,
        series: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(f64) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v = self.metric(series).await;
            if done(v) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {series} {what}; it is {v}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every log line, parsed.
    pub fn logs(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The raw log text.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Send `signal` (e.g. `Signal::HUP`) to the router process.
    pub fn signal(&self, signal: Signal) {
        kill_process(Pid::from_child(&self.child), signal).expect("the router takes signals");
    }

    /// Send SIGTERM and wait for the process to exit; returns whether it exited cleanly.
    pub async fn terminate(&mut self) -> bool {
        self.signal(Signal::TERM);
        self.wait_exit().await
    }

    /// Wait for the process to exit; returns whether it exited with status 0.
    pub async fn wait_exit(&mut self) -> bool {
        let child = &mut self.child;
        crate::eventually("the router to exit", Duration::from_secs(30), || {
            child.try_wait().unwrap()
        })
        .await
        .success()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the binary on `config_path` and wait for its "listening" line.
async fn launch(
    config_path: &Path,
    log_level: &str,
) -> (Child, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(binary())
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config_path)
        .env("RUST_LOG", log_level)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // Parse only what may be the line we wait for: under load the
            // router logs thousands of lines a second.
            if line.contains("\"listening\"")
                && let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "listening"
            {
                let _ = tx.send(v["addr"].as_str().unwrap().parse::<SocketAddr>().unwrap());
            }
            sink.lock().unwrap().push(line);
        }
    });
    let addr = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap();
    let addr = match addr {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "router did not start; its log:\n{}",
                logs.lock().unwrap().join("\n")
            );
        }
    };
    (child, addr, logs)
}
