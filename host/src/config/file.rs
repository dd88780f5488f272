//! The TOML file as written: serde structs with `deny_unknown_fields`, and the
//! documented defaults. No cross-checks here; see `validate`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use super::env::Text;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub plugins: RawPlugins,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<Spanned<Text>>,
    pub service_name: Option<Spanned<Text>>,
    pub sample_ratio: Option<Spanned<f64>>,
    pub timeout: Option<Spanned<Text>>,
    pub headers: BTreeMap<String, Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: Spanned<Text>,
    pub max_body_bytes: Spanned<u64>,
    pub admin_token: Option<Text>,
    pub max_concurrent_requests: u32,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    pub max_headers: u32,
    pub max_header_bytes: u32,
    pub read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: Spanned::new(0..0, Text("127.0.0.1:8080".into())),
            max_body_bytes: Spanned::new(0..0, 1 << 20),
            admin_token: None,
            max_concurrent_requests: 1024,
            max_connections: 4096,
            max_connections_per_ip: 512,
            max_headers: 100,
            max_header_bytes: 16384,
            read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    pub url: Spanned<Text>,
    pub queue_capacity: Spanned<u32>,
    pub fsync: bool,
    pub retention: Spanned<Text>,
    pub dead_retention: Spanned<Text>,
    pub dedup_window: Spanned<Text>,
    pub pool_size: Spanned<u32>,
    pub poll_interval: Spanned<Text>,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            url: Spanned::new(0..0, Text("sqlite://data/wasmhook.db".into())),
            queue_capacity: Spanned::new(0..0, 10_000),
            fsync: true,
            retention: Spanned::new(0..0, Text("72h".into())),
            dead_retention: Spanned::new(0..0, Text("30d".into())),
            dedup_window: Spanned::new(0..0, Text("24h".into())),
            pool_size: Spanned::new(0..0, 16),
            poll_interval: Spanned::new(0..0, Text("5s".into())),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPlugins {
    pub dir: Text,
    pub timeout_ms: Spanned<u64>,
    /// Default: chosen by the plugin runtime from `timeout_ms`,
    /// `max_concurrency` and the cores (see `PluginLimits::wall_timeout`).
    pub wall_timeout_ms: Option<Spanned<u64>>,
    pub memory_limit_mb: Spanned<u64>,
    pub max_output_bytes: u64,
    pub max_concurrency: Spanned<u32>,
    pub cache_dir: Text,
    pub watch: bool,
    pub watch_debounce_ms: u64,
    pub settle_ms: u64,
    /// Plugin name → events one instance may serve before it is recycled.
    pub reuse: Spanned<BTreeMap<String, i64>>,
}

impl Default for RawPlugins {
    fn default() -> Self {
        RawPlugins {
            dir: Text("plugins".into()),
            timeout_ms: Spanned::new(0..0, 100),
            wall_timeout_ms: None,
            memory_limit_mb: Spanned::new(0..0, 64),
            max_output_bytes: 4 << 20,
            max_concurrency: Spanned::new(0..0, 64),
            cache_dir: Text("data/plugin-cache".into()),
            watch: true,
            watch_debounce_ms: 100,
            settle_ms: 2000,
            reuse: Spanned::new(0..0, BTreeMap::new()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub name: Spanned<Text>,
    #[serde(default)]
    pub event_type: Option<Spanned<RawEventType>>,
    /// Header that carries the sender's event id (e.g. `x-github-delivery`).
    #[serde(default)]
    pub id_header: Option<Text>,
    #[serde(default)]
    pub verify: Option<Spanned<RawVerify>>,
    /// Sender credentials to keep (e.g. `authorization`); dropped otherwise.
    #[serde(default)]
    pub keep_headers: Option<Vec<Text>>,
}

/// `verify = { scheme = "github", secret = "…" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    pub scheme: Text,
    /// One secret, or several while rotating.
    pub secret: OneOrMany,
    pub tolerance_secs: Option<u64>,
    /// `hmac` only: the header, its encoding, a prefix, a timestamp header.
    pub header: Option<Text>,
    pub encoding: Option<Text>,
    pub prefix: Option<Text>,
    pub timestamp_header: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEventType {
    pub header: Option<Text>,
    pub json_pointer: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: Spanned<Text>,
    pub url: Spanned<Text>,
    #[serde(default)]
    pub signing_secret: Option<Spanned<OneOrMany>>,
    #[serde(default = "default_target_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: Spanned<u32>,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: Spanned<u32>,
    #[serde(default)]
    pub retry_schedule: Option<Spanned<Vec<Spanned<Text>>>>,
    #[serde(default)]
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    #[serde(default)]
    pub circuit: Option<Spanned<RawCircuit>>,
    #[serde(default)]
    pub ordering: Option<Spanned<RawOrdering>>,
}

/// `ordering = { key = { json_pointer = "/customer/id" }, on_dead = "block" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrdering {
    pub key: RawEventType,
    pub on_dead: Option<Text>,
}

/// `circuit = false`, `true`, or `{ failures = 10, cool_down = "30s",
/// max_cool_down = "10m" }` (each key optional).
#[derive(Debug)]
pub enum RawCircuit {
    Switch(bool),
    Table {
        failures: Option<i64>,
        cool_down: Option<Text>,
        max_cool_down: Option<Text>,
    },
}

impl<'de> Deserialize<'de> for RawCircuit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            failures: Option<i64>,
            cool_down: Option<Text>,
            max_cool_down: Option<Text>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCircuit;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "false, or a table such as { failures = 10, cool_down = \"30s\", max_cool_down = \"10m\" }",
                )
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawCircuit, E> {
                Ok(RawCircuit::Switch(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawCircuit, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawCircuit::Table {
                    failures: t.failures,
                    cool_down: t.cool_down,
                    max_cool_down: t.max_cool_down,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `rate_limit = "50/s"`, or `{ rate = "50/s", burst = 10 }`.
#[derive(Debug)]
pub struct RawRateLimit {
    pub rate: Text,
    pub burst: Option<i64>,
}

impl<'de> Deserialize<'de> for RawRateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            rate: Text,
            burst: Option<i64>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRateLimit;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a rate such as \"50/s\", or { rate = \"50/s\", burst = 10 }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRateLimit, E> {
                let rate = Text::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(RawRateLimit { rate, burst: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRateLimit, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawRateLimit {
                    rate: t.rate,
                    burst: t.burst,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn default_target_timeout() -> u64 {
    10_000
}
fn default_max_attempts() -> Spanned<u32> {
    Spanned::new(0..0, 8)
}
fn default_max_in_flight() -> Spanned<u32> {
    Spanned::new(0..0, 32)
}

/// A string, or a list of strings (e.g. several signing secrets during rotation).
#[derive(Debug)]
pub enum OneOrMany {
    One(Text),
    Many(Vec<Text>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Text::deserialize(de::value::StrDeserializer::<E>::new(v)).map(OneOrMany::One)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<OneOrMany, A::Error> {
                Vec::<Text>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(OneOrMany::Many)
            }
        }
        d.deserialize_any(V)
    }
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<Text> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Spanned<Text>,
    pub source: Spanned<Text>,
    #[serde(default)]
    pub event_types: Option<Vec<Text>>,
    #[serde(default)]
    pub plugins: Vec<Spanned<RawPluginStep>>,
    #[serde(default)]
    pub targets: Vec<Spanned<Text>>,
}

/// `"name"` or `{ name = "…", config = { … } }`.
#[derive(Debug)]
pub struct RawPluginStep {
    pub name: Text,
    pub config: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginTable {
    name: Text,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

impl<'de> Deserialize<'de> for RawPluginStep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StepVisitor;
        impl<'de> Visitor<'de> for StepVisitor {
            type Value = RawPluginStep;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"a plugin name, or { name = "…", config = { … } }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPluginStep, E> {
                let name = Text::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(RawPluginStep {
                    name,
                    config: BTreeMap::new(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawPluginStep, A::Error> {
                let t = RawPluginTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawPluginStep {
                    name: t.name,
                    config: t.config,
                })
            }
        }
        d.deserialize_any(StepVisitor)
    }
}
