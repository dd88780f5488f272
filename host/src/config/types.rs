//! The validated, typed configuration the rest of the router reads.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::secret::Secret;
use crate::verify::Verifier;

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
    pub telemetry: TelemetryConfig,
}

/// `[telemetry]`: where spans go. Read at start; a change needs a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP traces URL (`…/v1/traces`); `None`: no spans exported.
    pub otlp_endpoint: Option<reqwest::Url>,
    pub service_name: String,
    /// Of the traces that start here, the share kept (a sender's sampled
    /// flag decides for the traces it starts).
    pub sample_ratio: f64,
    /// Each export's limit.
    pub timeout: Duration,
    /// Sent with each export (an API key for a hosted collector, say).
    pub headers: Vec<(String, Secret)>,
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
    /// Open connections from one client IP; more are closed at once.
    pub max_connections_per_ip: usize,
    /// Headers per request; more is a 431.
    pub max_headers: usize,
    /// Bytes of request head; more is a 431.
    pub max_header_bytes: usize,
    /// Deadline for a request's headers, and again for its body.
    pub read_timeout: Duration,
    /// Keep-alive idle time: after a response, the next request's head must
    /// start arriving within this.
    pub idle_timeout: Duration,
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
    /// PostgreSQL: connections this node keeps open at most.
    pub pool_size: usize,
    /// PostgreSQL: how often waiting work is looked for without a notice
    /// (`LISTEN/NOTIFY` wakes nodes at once; this is the fallback).
    pub poll_interval: Duration,
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
    pub limits: PluginLimits,
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

/// Hard limits for every plugin call: plain values, which `plugin/` turns
/// into wasmtime settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLimits {
    /// Execution time allowed per call, counted in epoch ticks while the guest runs.
    pub timeout: Duration,
    /// Wall-clock time allowed per call, time blocked in the host included:
    /// epoch ticks do not count while a guest sleeps or polls. `None`: long
    /// enough that a call within `timeout` is never cut for waiting its
    /// turn on a busy machine (see `plugin::runtime`).
    pub wall_timeout: Option<Duration>,
    /// Linear memory cap per call, in bytes.
    pub memory_bytes: usize,
    /// Cap on the total size of a call's output events, in bytes.
    pub max_output_bytes: usize,
    /// Plugin calls that may run at once; also sizes the pooling allocator.
    pub max_concurrency: usize,
    /// Plugins whose instances serve up to this many events each, then are
    /// recycled. Absent (the default): a fresh instance per event.
    pub reuse: BTreeMap<String, u32>,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            timeout: Duration::from_millis(100),
            wall_timeout: None,
            memory_bytes: 64 << 20,
            max_output_bytes: 4 << 20,
            max_concurrency: 64,
            reuse: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub event_type: EventTypeRule,
    /// Lower-case header that carries the sender's event id, if the source has one.
    pub id_header: Option<String>,
    /// How requests prove they are genuine; `None` accepts them unverified.
    pub verify: Option<Arc<Verifier>>,
    /// Lower-case headers to keep that ingest drops by default: the sender's
    /// credentials (`authorization`, `cookie`) and signature headers.
    pub keep_headers: Vec<String>,
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
    /// `url` as attempts send to it, worked out once at load.
    pub endpoint: Endpoint,
    /// Decoded `whsec_` keys; every delivery carries one signature per key.
    pub signing_keys: Vec<Secret>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_in_flight: usize,
    /// Delay before attempt 2, 3, …; the last entry repeats.
    pub retry_schedule: Vec<Duration>,
    /// At most this many attempts start, over the whole cluster.
    pub rate_limit: Option<RateLimit>,
    /// The circuit breaker; `None`: off (`circuit = false`).
    pub circuit: Option<Circuit>,
    /// Deliveries with the same key go one at a time, in order.
    pub ordering: Option<DeliveryOrder>,
}

/// Where a target's requests go: its URL as a request URI, without the
/// credentials it may carry (`https://user:pass@host/…`), which go as HTTP
/// Basic authentication instead of in the request line.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub uri: http::Uri,
    /// The `authorization` header, marked sensitive.
    pub basic_auth: Option<http::HeaderValue>,
}

impl Endpoint {
    /// Fails only for a URL the HTTP stack cannot carry (over 64 KiB).
    pub fn of(url: &reqwest::Url) -> Result<Endpoint, http::uri::InvalidUri> {
        use base64::Engine as _;
        if url.username().is_empty() && url.password().is_none() {
            return Ok(Endpoint {
                uri: url.as_str().parse()?,
                basic_auth: None,
            });
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = decode(url.username());
        let password = url.password().map(decode).unwrap_or_default();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut basic = http::HeaderValue::try_from(format!("Basic {token}"))
            .expect("base64 is a valid header value");
        basic.set_sensitive(true);
        let mut bare = url.clone();
        // Only a URL that cannot have credentials refuses these, and it has none.
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        Ok(Endpoint {
            uri: bare.as_str().parse()?,
            basic_auth: Some(basic),
        })
    }
}

/// `targets[].ordering`: for one key, a delivery is not attempted until
/// the one before it is delivered or dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOrder {
    pub key: OrderKey,
    /// `on_dead = "block"`: a dead delivery holds its key's later ones back
    /// until an operator retries or skips it.
    pub block_on_dead: bool,
}

/// Where a delivery's ordering key comes from, in the event it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKey {
    /// This (lower-case) header.
    Header(String),
    /// This JSON pointer into the body (a string, number or boolean).
    JsonPointer(String),
}

/// Keys longer than this are kept as their SHA-256: distinct keys stay
/// distinct, and the index stays small.
const MAX_KEY_BYTES: usize = 128;

impl DeliveryOrder {
    /// The key of `event` (as it goes to the target); `None`: unordered.
    pub fn key_of(&self, event: &crate::event::Event) -> Option<String> {
        let key = match &self.key {
            OrderKey::Header(name) => event
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string()),
            OrderKey::JsonPointer(pointer) => crate::event::pointer_text(&event.body, pointer),
        }
        .filter(|k| !k.is_empty())?;
        if key.len() <= MAX_KEY_BYTES {
            return Some(key);
        }
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(key.as_bytes());
        Some(format!("sha256:{}", crate::verify::encode_hex(&digest)))
    }
}

/// A target's circuit breaker: after `failures` failed attempts in a row,
/// attempts stop; one probe goes after `cool_down`, which doubles with
/// each failed probe up to `max_cool_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Circuit {
    pub failures: u32,
    pub cool_down: Duration,
    pub max_cool_down: Duration,
}

impl Default for Circuit {
    fn default() -> Self {
        Circuit {
            failures: 10,
            cool_down: Duration::from_secs(30),
            max_cool_down: Duration::from_secs(600),
        }
    }
}

/// A target's rate: one attempt may start every `every`, and up to `burst`
/// at once after a quiet spell (GCRA, as a token bucket of `burst` tokens
/// refilled one per `every`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub every: Duration,
    pub burst: u32,
}

impl RateLimit {
    /// How much earlier than its even spacing an attempt may start.
    pub fn tolerance(&self) -> Duration {
        self.every * self.burst.saturating_sub(1)
    }
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

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}
