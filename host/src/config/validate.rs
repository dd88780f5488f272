//! Raw TOML structs → the typed runtime [`Config`], with every cross-check.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use toml::Spanned;

use super::env::Text;
use super::file::{RawConfig, RawPluginStep, RawVerify};
use crate::plugin::Limits;
use crate::verify::{Encoding, Verifier};

/// A validated configuration. Relative paths are resolved against the config
/// file's folder.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub plugins: PluginsConfig,
    pub sources: Vec<Source>,
    pub targets: Vec<Target>,
    pub routes: Vec<Route>,
}

impl Config {
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub admin_token: Option<Secret>,
    pub max_concurrent_requests: usize,
    /// Open connections; more are closed at once.
    pub max_connections: usize,
    /// Headers per request; more is a 431.
    pub max_headers: usize,
    /// Bytes of request head; more is a 431.
    pub max_header_bytes: usize,
    /// Deadline for a request's headers, and again for its body.
    pub read_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub url: StorageUrl,
    /// Events stored and waiting for the pipeline before ingest answers 503.
    pub queue_capacity: usize,
    /// Sync the log to disk on every commit (survives power loss), or let the
    /// OS flush it (survives a process crash).
    pub fsync: bool,
    /// Delivered deliveries and their attempts are pruned after this.
    pub retention: Duration,
    /// Dead deliveries are kept this long for retry and replay.
    pub dead_retention: Duration,
    /// A repeated event id within this window is a duplicate.
    pub dedup_window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    Sqlite(PathBuf),
    Postgres(Secret),
    Memory,
}

#[derive(Debug, Clone)]
pub struct PluginsConfig {
    pub dir: PathBuf,
    pub limits: Limits,
    /// Compiled plugins kept across restarts; `None` when `cache_dir = ""`.
    pub cache_dir: Option<PathBuf>,
    /// Watch `dir` and hot-reload plugins.
    pub watch: bool,
    /// Quiet time after a file event before acting on it.
    pub watch_debounce: Duration,
    /// A file that fails to load is retried, not reported, until its content
    /// has been unchanged this long: it may still be being copied in.
    pub settle: Duration,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub event_type: EventTypeRule,
    /// Lower-case header that carries the sender's event id, if the source has one.
    pub id_header: Option<String>,
    /// How requests prove they are genuine; `None` accepts them unverified.
    pub verify: Option<Arc<Verifier>>,
}

/// Where an event's type comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTypeRule {
    /// No rule: the type is the `x-event-type` header when present, else empty.
    Default,
    /// This (lower-case) header.
    Header(String),
    /// This JSON pointer into the body, which must then be JSON.
    JsonPointer(String),
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub url: reqwest::Url,
    /// Decoded `whsec_` keys; every delivery carries one signature per key.
    pub signing_keys: Vec<Secret>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_in_flight: usize,
    /// Delay before attempt 2, 3, …; the last entry repeats.
    pub retry_schedule: Vec<Duration>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub source: String,
    /// Declarative pre-filter; `None` lets every type through.
    pub event_types: Option<Vec<String>>,
    pub plugins: Vec<PluginStep>,
    pub targets: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PluginStep {
    pub name: String,
    pub config: Arc<[(String, String)]>,
}

/// Bytes that must never be printed: `Debug` shows `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Svix's schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the first try.
pub const DEFAULT_RETRY_SCHEDULE: [u64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];

/// A config error: which file, line and key, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub(super) fn from_toml(path: &Path, text: &str, err: &toml::de::Error) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            line: err.span().map(|s| line_of(text, s.start)),
            key: String::new(),
            message: err.message().trim().to_string(),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Collects context for errors while validating.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn err(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            path: self.path.to_path_buf(),
            // A zero-length span at 0 is a default value: there is no line.
            line: span
                .filter(|s| !s.is_empty())
                .map(|s| line_of(self.text, s.start)),
            key: key.into(),
            message: message.into(),
        }
    }
}

pub(super) fn validate(path: &Path, text: &str, raw: RawConfig) -> Result<Config, ConfigError> {
    let c = Checker { path, text };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { base.join(p) }
    };

    // [server]
    let s = raw.server;
    let listen = s.listen.get_ref().0.parse::<SocketAddr>().map_err(|_| {
        c.err(
            Some(s.listen.span()),
            "server.listen",
            format!(
                "{:?} is not an IP address and port, e.g. \"127.0.0.1:8080\"",
                s.listen.get_ref().0
            ),
        )
    })?;
    if s.max_body_bytes == 0 {
        return Err(c.err(None, "server.max_body_bytes", "must be above 0"));
    }
    let server = ServerConfig {
        listen,
        max_body_bytes: s.max_body_bytes as usize,
        admin_token: s.admin_token.map(|t| Secret::new(t.0)),
        max_concurrent_requests: s.max_concurrent_requests.max(1) as usize,
        max_connections: s.max_connections.max(1) as usize,
        max_headers: s.max_headers.max(1) as usize,
        max_header_bytes: s.max_header_bytes as usize,
        read_timeout: Duration::from_millis(s.read_timeout_ms.max(1)),
    };

    // [storage]
    let url = raw.storage.url.get_ref().0.as_str();
    let storage_url = if let Some(p) = url.strip_prefix("sqlite://") {
        if p.is_empty() {
            return Err(c.err(
                Some(raw.storage.url.span()),
                "storage.url",
                "sqlite:// needs a file path, e.g. \"sqlite://data/wasmhook.db\"",
            ));
        }
        StorageUrl::Sqlite(resolve(p))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        StorageUrl::Postgres(Secret::new(url))
    } else if url == "memory://" || url == "memory" {
        StorageUrl::Memory
    } else {
        return Err(c.err(
            Some(raw.storage.url.span()),
            "storage.url",
            "must start with sqlite://, postgres:// or be memory://",
        ));
    };
    if raw.storage.queue_capacity == 0 {
        return Err(c.err(None, "storage.queue_capacity", "must be above 0"));
    }
    let duration = |d: &Spanned<Text>, key: &str| {
        parse_duration(&d.get_ref().0).map_err(|m| c.err(Some(d.span()), key, m))
    };
    let storage = StorageConfig {
        url: storage_url,
        queue_capacity: raw.storage.queue_capacity as usize,
        fsync: raw.storage.fsync,
        retention: duration(&raw.storage.retention, "storage.retention")?,
        dead_retention: duration(&raw.storage.dead_retention, "storage.dead_retention")?,
        dedup_window: duration(&raw.storage.dedup_window, "storage.dedup_window")?,
    };

    // [plugins]
    let p = raw.plugins;
    let timeout_ms = *p.timeout_ms.get_ref();
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(c.err(
            Some(p.timeout_ms.span()),
            "plugins.timeout_ms",
            "must be between 1 and 60000",
        ));
    }
    let memory_mb = *p.memory_limit_mb.get_ref();
    if !(1..=4096).contains(&memory_mb) {
        return Err(c.err(
            Some(p.memory_limit_mb.span()),
            "plugins.memory_limit_mb",
            "must be between 1 and 4096",
        ));
    }
    let concurrency = *p.max_concurrency.get_ref();
    if !(1..=1024).contains(&concurrency) {
        return Err(c.err(
            Some(p.max_concurrency.span()),
            "plugins.max_concurrency",
            "must be between 1 and 1024",
        ));
    }
    let plugins = PluginsConfig {
        dir: resolve(&p.dir.0),
        limits: Limits {
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: (memory_mb << 20) as usize,
            max_output_bytes: p.max_output_bytes.max(1) as usize,
            max_concurrency: concurrency as usize,
        },
        cache_dir: (!p.cache_dir.0.is_empty()).then(|| resolve(&p.cache_dir.0)),
        watch: p.watch,
        watch_debounce: Duration::from_millis(p.watch_debounce_ms.max(1)),
        settle: Duration::from_millis(p.settle_ms),
    };

    // [[sources]]
    let mut sources = Vec::new();
    let mut seen = HashSet::new();
    for (i, src) in raw.sources.into_iter().enumerate() {
        let key = |k: &str| format!("sources[{i}].{k}");
        let name = check_name(&c, &src.name, &key("name"), &mut seen, "source")?;
        let verify = match src.verify {
            None => None,
            Some(v) => {
                let span = v.span();
                Some(Arc::new(
                    verifier(v.into_inner()).map_err(|m| c.err(Some(span), key("verify"), m))?,
                ))
            }
        };
        let event_type = match src.event_type {
            None => EventTypeRule::Default,
            Some(rule) => {
                let span = rule.span();
                let rule = rule.into_inner();
                match (rule.header, rule.json_pointer) {
                    (Some(h), None) if !h.0.is_empty() => EventTypeRule::Header(h.0.to_ascii_lowercase()),
                    (None, Some(p)) if p.0.starts_with('/') => EventTypeRule::JsonPointer(p.0),
                    (None, Some(p)) => return Err(c.err(Some(span), key("event_type.json_pointer"),
                        format!("{:?} is not a JSON pointer: it must start with '/', e.g. \"/type\"", p.0))),
                    _ => return Err(c.err(Some(span), key("event_type"),
                        "set exactly one of `header` or `json_pointer`, e.g. { header = \"x-github-event\" }")),
                }
            }
        };
        sources.push(Source {
            name,
            event_type,
            id_header: src.id_header.map(|h| h.0.to_ascii_lowercase()),
            verify,
        });
    }

    // [[targets]]
    let mut targets = Vec::new();
    let mut seen = HashSet::new();
    for (i, t) in raw.targets.into_iter().enumerate() {
        let key = |k: &str| format!("targets[{i}].{k}");
        let name = check_name(&c, &t.name, &key("name"), &mut seen, "target")?;
        let url_text = &t.url.get_ref().0;
        let url = reqwest::Url::parse(url_text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                c.err(
                    Some(t.url.span()),
                    key("url"),
                    format!("{url_text:?} is not an http:// or https:// URL"),
                )
            })?;
        let mut signing_keys = Vec::new();
        if let Some(secrets) = t.signing_secret {
            let span = secrets.span();
            for secret in secrets.into_inner().into_vec() {
                signing_keys.push(
                    decode_whsec(&secret.0)
                        .map_err(|m| c.err(Some(span.clone()), key("signing_secret"), m))?,
                );
            }
        }
        if *t.max_attempts.get_ref() == 0 {
            return Err(c.err(
                Some(t.max_attempts.span()),
                key("max_attempts"),
                "must be at least 1",
            ));
        }
        if *t.max_in_flight.get_ref() == 0 {
            return Err(c.err(
                Some(t.max_in_flight.span()),
                key("max_in_flight"),
                "must be at least 1",
            ));
        }
        let retry_schedule = match t.retry_schedule {
            None => DEFAULT_RETRY_SCHEDULE
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(c.err(
                        Some(list.span()),
                        key("retry_schedule"),
                        "needs at least one delay, e.g. [\"5s\", \"5m\"]",
                    ));
                }
                let mut delays = Vec::new();
                for d in list.into_inner() {
                    delays.push(
                        parse_duration(&d.get_ref().0)
                            .map_err(|m| c.err(Some(d.span()), key("retry_schedule"), m))?,
                    );
                }
                delays
            }
        };
        targets.push(Target {
            name,
            url,
            signing_keys,
            timeout: Duration::from_millis(t.timeout_ms.max(1)),
            max_attempts: *t.max_attempts.get_ref(),
            max_in_flight: *t.max_in_flight.get_ref() as usize,
            retry_schedule,
        });
    }

    // [[routes]]
    let mut routes = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in raw.routes.into_iter().enumerate() {
        let key = |k: &str| format!("routes[{i}].{k}");
        let name = check_name(&c, &r.name, &key("name"), &mut seen, "route")?;
        let source = &r.source.get_ref().0;
        if !sources.iter().any(|s| &s.name == source) {
            return Err(c.err(
                Some(r.source.span()),
                key("source"),
                format!(
                    "no source is named {source:?}; configured sources: {}",
                    names(sources.iter().map(|s| &s.name))
                ),
            ));
        }
        let mut plugins = Vec::new();
        for (j, step) in r.plugins.into_iter().enumerate() {
            let span = step.span();
            let RawPluginStep {
                name: plugin_name,
                config,
            } = step.into_inner();
            if plugin_name.0.is_empty() || plugin_name.0.contains(['/', '\\']) {
                return Err(c.err(
                    Some(span),
                    key(&format!("plugins[{j}].name")),
                    "must be a plugin name: the file stem of plugins/NAME.wasm",
                ));
            }
            let config = plugin_config(config)
                .map_err(|m| c.err(Some(span.clone()), key(&format!("plugins[{j}].config")), m))?;
            plugins.push(PluginStep {
                name: plugin_name.0,
                config,
            });
        }
        let mut route_targets = Vec::new();
        for t in &r.targets {
            let t_name = &t.get_ref().0;
            if !targets.iter().any(|x| &x.name == t_name) {
                return Err(c.err(
                    Some(t.span()),
                    key("targets"),
                    format!(
                        "no target is named {t_name:?}; configured targets: {}",
                        names(targets.iter().map(|t| &t.name))
                    ),
                ));
            }
            route_targets.push(t_name.clone());
        }
        if route_targets.is_empty() && plugins.is_empty() {
            return Err(c.err(
                Some(r.name.span()),
                key("targets"),
                "a route without plugins needs at least one target, e.g. targets = [\"ci\"]",
            ));
        }
        routes.push(Route {
            name,
            source: source.clone(),
            event_types: r.event_types.map(|v| v.into_iter().map(|t| t.0).collect()),
            plugins,
            targets: route_targets,
        });
    }

    Ok(Config {
        path: path.to_path_buf(),
        server,
        storage,
        plugins,
        sources,
        targets,
        routes,
    })
}

/// Names appear in URLs (`/ingest/{source}`) and logs: keep them plain.
fn check_name(
    c: &Checker<'_>,
    name: &Spanned<Text>,
    key: &str,
    seen: &mut HashSet<String>,
    what: &str,
) -> Result<String, ConfigError> {
    let n = &name.get_ref().0;
    if n.is_empty()
        || !n
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
    {
        return Err(c.err(
            Some(name.span()),
            key,
            format!("{n:?} is not a valid {what} name: use letters, digits, '-', '_' and '.'"),
        ));
    }
    if !seen.insert(n.clone()) {
        return Err(c.err(
            Some(name.span()),
            key,
            format!("another {what} is already named {n:?}"),
        ));
    }
    Ok(n.clone())
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = it.map(String::as_str).collect();
    if list.is_empty() {
        "(none)".into()
    } else {
        list.join(", ")
    }
}

/// `whsec_<base64>` → key bytes.
pub fn decode_whsec(secret: &str) -> Result<Secret, String> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("a signing secret must look like whsec_<base64>, as Standard Webhooks defines")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the part after whsec_ is not valid base64")?;
    if key.len() < 16 {
        return Err("the signing key is shorter than 16 bytes; generate a longer one".into());
    }
    Ok(Secret::new(key))
}

/// Scalars become strings; lists of scalars become comma-separated strings.
fn plugin_config(table: BTreeMap<String, toml::Value>) -> Result<Arc<[(String, String)]>, String> {
    fn scalar(k: &str, v: &toml::Value) -> Result<String, String> {
        Ok(match v {
            toml::Value::String(s) => super::env::expand(s, |n| std::env::var(n).ok())?,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            _ => {
                return Err(format!(
                    "value of {k:?} must be a string, number, boolean or a list of those"
                ));
            }
        })
    }
    table
        .iter()
        .map(|(k, v)| {
            let value = match v {
                toml::Value::Array(items) => items
                    .iter()
                    .map(|i| scalar(k, i))
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                other => scalar(k, other)?,
            };
            Ok((k.clone(), value))
        })
        .collect()
}

/// `"250ms"`, `"5s"`, `"5m"`, `"2h"`, `"30d"`, or `"0s"` for immediately.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("{text:?} is not a duration like \"500ms\", \"5s\", \"5m\", \"2h\" or \"30d\"")
    })?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => {
            return Err(format!(
                "{text:?} has no unit: write e.g. \"500ms\", \"5s\", \"5m\" or \"2h\""
            ));
        }
    };
    Ok(Duration::from_millis(ms))
}

/// `verify = { … }` → a verifier, or what is wrong with it.
fn verifier(raw: RawVerify) -> Result<Verifier, String> {
    const SCHEMES: &str = "github, stripe, slack, shopify, standard-webhooks, hmac";
    let scheme = raw.scheme.0.as_str();
    let secrets: Vec<String> = raw.secret.into_vec().into_iter().map(|t| t.0).collect();
    if secrets.is_empty() || secrets.iter().any(String::is_empty) {
        return Err("`secret` must be a non-empty string, or a list of them while rotating".into());
    }
    let raw_secrets = || {
        secrets
            .iter()
            .map(|s| Secret::new(s.as_bytes()))
            .collect::<Vec<_>>()
    };
    let tolerance_secs = raw.tolerance_secs.unwrap_or(300) as i64;
    let hmac_only = raw.header.is_some()
        || raw.encoding.is_some()
        || raw.prefix.is_some()
        || raw.timestamp_header.is_some();
    if hmac_only && scheme != "hmac" {
        return Err(format!(
            "`header`, `encoding`, `prefix` and `timestamp_header` are for scheme = \"hmac\", not {scheme:?}"
        ));
    }
    Ok(match scheme {
        "github" => Verifier::GitHub { secrets: raw_secrets() },
        "stripe" => Verifier::Stripe { secrets: raw_secrets(), tolerance_secs },
        "slack" => Verifier::Slack { secrets: raw_secrets(), tolerance_secs },
        "shopify" => Verifier::Shopify { secrets: raw_secrets() },
        "standard-webhooks" => Verifier::StandardWebhooks {
            keys: secrets.iter().map(|s| decode_whsec(s)).collect::<Result<_, _>>()?,
            tolerance_secs,
        },
        "hmac" => Verifier::Hmac {
            secrets: raw_secrets(),
            header: raw
                .header
                .map(|h| h.0.to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .ok_or("scheme = \"hmac\" needs `header`, the request header that carries the signature")?,
            encoding: match raw.encoding.as_ref().map(|e| e.0.as_str()).unwrap_or("hex") {
                "hex" => Encoding::Hex,
                "base64" => Encoding::Base64,
                other => return Err(format!("`encoding` must be \"hex\" or \"base64\", not {other:?}")),
            },
            prefix: raw.prefix.map(|p| p.0).unwrap_or_default(),
            timestamp_header: raw.timestamp_header.map(|h| h.0.to_ascii_lowercase()),
            tolerance_secs,
        },
        other => return Err(format!("unknown scheme {other:?}; use one of {SCHEMES}")),
    })
}
