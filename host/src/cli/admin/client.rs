//! The one HTTP client of the commands that talk to a running router:
//! `send` and the admin commands. Where the router is, and its token, come
//! from flags, then `WASMHOOK_URL` / `WASMHOOK_ADMIN_TOKEN`, then the
//! config file (`server.listen`, `server.admin_token`).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::Value;

use crate::config::{self, Config};

/// How to reach the router (`send` and the admin commands).
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The router's base URL (default: from the config's server.listen,
    /// else http://127.0.0.1:8080).
    #[arg(long, env = "WASMHOOK_URL", global = true)]
    pub url: Option<String>,
    /// Config file, read for the listen address (and the admin token) when
    /// they are not given.
    #[arg(
        long,
        default_value = "wasmhook.toml",
        env = "WASMHOOK_CONFIG",
        global = true
    )]
    pub config: PathBuf,
}

impl Connection {
    /// The config, if it can be read: these commands also work against a
    /// remote router with no config here.
    pub fn load_config(&self) -> Option<Config> {
        config::load(&self.config).ok()
    }

    pub fn base_url(&self, config: Option<&Config>) -> String {
        match (&self.url, config) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(c)) => format!("http://{}", c.server.listen),
            (None, None) => "http://127.0.0.1:8080".to_string(),
        }
    }
}

/// How to reach the router's admin API: where it is, and the token.
#[derive(Debug, Clone, Args)]
pub struct AdminConnection {
    #[command(flatten)]
    pub router: Connection,
    /// The admin token (default: the config's server.admin_token).
    #[arg(
        long,
        env = "WASMHOOK_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
}

impl AdminConnection {
    /// A client for the admin API.
    pub fn client(&self) -> anyhow::Result<AdminClient> {
        let config = self.router.load_config();
        let token = match (&self.token, &config) {
            (Some(t), _) => t.clone(),
            (None, Some(c)) => match &c.server.admin_token {
                Some(t) => String::from_utf8_lossy(t.expose()).into_owned(),
                None => bail!(
                    "no admin token: pass --token or set WASMHOOK_ADMIN_TOKEN (the config at {} has no server.admin_token)",
                    self.router.config.display()
                ),
            },
            (None, None) => bail!("no admin token: pass --token or set WASMHOOK_ADMIN_TOKEN"),
        };
        Ok(AdminClient {
            base: self.router.base_url(config.as_ref()),
            token,
            http: reqwest::Client::new(),
        })
    }
}

pub struct AdminClient {
    pub base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str) -> anyhow::Result<Value> {
        self.call(self.http.post(self.url(path))).await
    }

    /// A long-lived GET (the live stream), checked like the others.
    pub async fn stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the router at {}", self.base))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            let status = response.status();
            let body = json_or_null(response).await;
            Err(refused(status, &body))
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the router at {}", self.base))?;
        let status = response.status();
        let body = json_or_null(response).await;
        if status.is_success() {
            Ok(body)
        } else {
            Err(refused(status, &body))
        }
    }
}

fn refused(status: reqwest::StatusCode, body: &Value) -> anyhow::Error {
    let message = body["error"].as_str().unwrap_or("(no message)");
    match status.as_u16() {
        401 => anyhow::anyhow!("the router refused the admin token: {message}"),
        404 if message == "no such endpoint" => anyhow::anyhow!(
            "the router has no admin API here: set server.admin_token in its config (or check --url)"
        ),
        _ => anyhow::anyhow!("{} {message}", status.as_u16()),
    }
}

async fn json_or_null(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}
