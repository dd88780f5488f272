//! A headless Chromium driven over WebDriver (chromedriver + fantoccini),
//! for the dashboard's tests.
//!
//! Where the machine has no Chromium or chromedriver, [`Browser::start`]
//! says so and returns `None`, and the test passes as skipped; with
//! `WASMHOOK_REQUIRE_BROWSER=1` (CI) it fails instead, so a skip can never
//! pass for a run.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    client: Client,
    driver: Child,
}

fn on_path(names: &[&str], env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

impl Browser {
    /// A fresh headless browser, or `None` (skipped) when there is none.
    pub async fn start(test: &str) -> Option<Browser> {
        let chrome = on_path(&["chromium", "chromium-browser", "google-chrome"], "CHROME");
        let driver = on_path(&["chromedriver"], "CHROMEDRIVER");
        let (Some(chrome), Some(driver)) = (chrome, driver) else {
            let why =
                "no Chromium and chromedriver here (apt-get install -y chromium chromium-driver)";
            let required = std::env::var("WASMHOOK_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
            assert!(!required, "{test}: WASMHOOK_REQUIRE_BROWSER=1 but {why}");
            eprintln!("skipped {test}: {why}");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--no-first-run", "--disable-extensions"],
            },
            // An alert stays open, so a test can see that none was raised.
            "unhandledPromptBehavior": "ignore",
        });
        let caps = match caps {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + WAIT;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    let _ = child.kill();
                    panic!("chromedriver on {url} did not start a session: {e}")
                }
                // chromedriver is still starting.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        Some(Browser {
            client,
            driver: child,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Reload the page (the tab's session storage stays).
    pub async fn reload(&self) {
        self.client.refresh().await.unwrap();
    }

    /// Wait until an element matching `css` has text containing `needle`;
    /// that text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Ok(els) = self.client.find_all(Locator::Css(css)).await {
                for el in els {
                    if let Ok(text) = el.text().await {
                        if text.contains(needle) {
                            return text;
                        }
                        last = text;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {css:?} showed {needle:?} within {WAIT:?}; last seen: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first element matching `css`, once there is one.
    async fn find(&self, css: &str, to: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css:?} to {to}: {e}"))
    }

    /// Click the first element matching `css`, once there is one.
    pub async fn click(&self, css: &str) {
        self.find(css, "click").await.click().await.unwrap();
    }

    /// Replace the value of the field matching `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css, "fill").await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Set a field's value directly (for text with characters that typing
    /// would turn into key presses, such as JSON with newlines).
    pub async fn set_value(&self, css: &str, text: &str) {
        self.wait_text(css, "").await;
        self.client
            .execute(
                "document.querySelector(arguments[0]).value = arguments[1];",
                vec![json!(css), json!(text)],
            )
            .await
            .unwrap();
    }

    /// Wait until exactly `n` elements match `css`.
    pub async fn wait_count(&self, css: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = self.count(css).await;
            if seen == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css:?} matched {seen} elements, not {n}, for {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    pub async fn eval(&self, js: &str) -> Value {
        self.client.execute(js, vec![]).await.unwrap()
    }

    /// The text of an open alert, if a script raised one.
    pub async fn alert(&self) -> Option<String> {
        self.client.get_alert_text().await.ok()
    }

    /// Save a screenshot as `NAME.png` in `WASMHOOK_SCREENSHOTS` (a folder),
    /// when it is set; `cargo xtask screenshots` sets it to `docs/`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        if let Some(dir) = std::env::var_os("WASMHOOK_SCREENSHOTS") {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
