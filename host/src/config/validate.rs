//! Raw TOML structs → the typed runtime [`Config`], with every cross-check.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::env::Text;
use super::file::{RawCircuit, RawConfig, RawOrdering, RawPluginStep, RawTelemetry};
use super::types::*;
use super::values::{decode_whsec, parse_duration, parse_rate, plugin_config, verifier};

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
    if *s.max_body_bytes.get_ref() == 0 {
        return Err(c.err(
            Some(s.max_body_bytes.span()),
            "server.max_body_bytes",
            "must be above 0",
        ));
    }
    if s.admin_token
        .as_ref()
        .is_some_and(|t| t.0.trim().is_empty())
    {
        // `"${WASMHOOK_ADMIN_TOKEN}"` with the variable set but empty would
        // otherwise open the admin API to a request with no token at all.
        return Err(c.err(
            None,
            "server.admin_token",
            "is empty (is its environment variable set but empty?): give a token, or remove the key to turn the admin API and the dashboard off",
        ));
    }
    let server = ServerConfig {
        listen,
        max_body_bytes: *s.max_body_bytes.get_ref() as usize,
        admin_token: s.admin_token.map(|t| Secret::new(t.0)),
        max_concurrent_requests: s.max_concurrent_requests.max(1) as usize,
        max_connections: s.max_connections.max(1) as usize,
        max_connections_per_ip: s.max_connections_per_ip.max(1) as usize,
        max_headers: s.max_headers.max(1) as usize,
        max_header_bytes: s.max_header_bytes as usize,
        read_timeout: Duration::from_millis(s.read_timeout_ms.max(1)),
        idle_timeout: Duration::from_millis(s.idle_timeout_ms.max(1)),
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
    if *raw.storage.queue_capacity.get_ref() == 0 {
        return Err(c.err(
            Some(raw.storage.queue_capacity.span()),
            "storage.queue_capacity",
            "must be above 0",
        ));
    }
    let duration = |d: &Spanned<Text>, key: &str| {
        parse_duration(&d.get_ref().0).map_err(|m| c.err(Some(d.span()), key, m))
    };
    let storage = StorageConfig {
        url: storage_url,
        queue_capacity: *raw.storage.queue_capacity.get_ref() as usize,
        fsync: raw.storage.fsync,
        retention: duration(&raw.storage.retention, "storage.retention")?,
        dead_retention: duration(&raw.storage.dead_retention, "storage.dead_retention")?,
        dedup_window: duration(&raw.storage.dedup_window, "storage.dedup_window")?,
        pool_size: *raw.storage.pool_size.get_ref() as usize,
        poll_interval: duration(&raw.storage.poll_interval, "storage.poll_interval")?,
    };
    if storage.pool_size == 0 {
        return Err(c.err(
            Some(raw.storage.pool_size.span()),
            "storage.pool_size",
            "must be above 0",
        ));
    }
    if storage.poll_interval.is_zero() {
        return Err(c.err(
            Some(raw.storage.poll_interval.span()),
            "storage.poll_interval",
            "must be above 0, e.g. \"5s\"",
        ));
    }

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
    let wall_timeout_ms = match &p.wall_timeout_ms {
        None => None,
        Some(w) if (timeout_ms..=600_000).contains(w.get_ref()) => Some(*w.get_ref()),
        Some(w) => {
            return Err(c.err(
                Some(w.span()),
                "plugins.wall_timeout_ms",
                format!("must be between plugins.timeout_ms ({timeout_ms}) and 600000"),
            ));
        }
    };
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
    let mut reuse = BTreeMap::new();
    for (name, n) in p.reuse.get_ref() {
        let key = format!("plugins.reuse.{name}");
        if name.is_empty() || name.contains(['/', '\\']) {
            return Err(c.err(
                Some(p.reuse.span()),
                key.clone(),
                "must be a plugin name: the file stem of plugins/NAME.wasm",
            ));
        }
        let Some(n) = u32::try_from(*n)
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
        else {
            return Err(c.err(
                Some(p.reuse.span()),
                key,
                "must be between 1 and 1000000 events per instance (1: a fresh instance per event)",
            ));
        };
        reuse.insert(name.clone(), n);
    }
    let plugins = PluginsConfig {
        dir: resolve(&p.dir.0),
        limits: PluginLimits {
            timeout: Duration::from_millis(timeout_ms),
            wall_timeout: wall_timeout_ms.map(Duration::from_millis),
            memory_bytes: (memory_mb << 20) as usize,
            max_output_bytes: p.max_output_bytes.max(1) as usize,
            max_concurrency: concurrency as usize,
            reuse,
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
            keep_headers: src
                .keep_headers
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.0.to_ascii_lowercase())
                .collect(),
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
        let endpoint = Endpoint::of(&url).map_err(|e| {
            c.err(
                Some(t.url.span()),
                key("url"),
                // Not quoted: it may hold credentials, and this is logged.
                format!("the URL cannot be sent to over HTTP: {e}"),
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
        let rate_limit = match t.rate_limit {
            None => None,
            Some(r) => {
                let span = r.span();
                let r = r.into_inner();
                Some(
                    parse_rate(&r.rate.0, r.burst)
                        .map_err(|m| c.err(Some(span), key("rate_limit"), m))?,
                )
            }
        };
        let circuit = match t.circuit {
            None => Some(Circuit::default()),
            Some(raw) => {
                let span = raw.span();
                circuit(raw.into_inner()).map_err(|m| c.err(Some(span), key("circuit"), m))?
            }
        };
        let ordering = match t.ordering {
            None => None,
            Some(raw) => {
                let span = raw.span();
                Some(
                    ordering(raw.into_inner())
                        .map_err(|m| c.err(Some(span), key("ordering"), m))?,
                )
            }
        };
        targets.push(Target {
            name,
            url,
            endpoint,
            signing_keys,
            timeout: Duration::from_millis(t.timeout_ms.max(1)),
            max_attempts: *t.max_attempts.get_ref(),
            max_in_flight: *t.max_in_flight.get_ref() as usize,
            retry_schedule,
            rate_limit,
            circuit,
            ordering,
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

    let telemetry = telemetry(&c, raw.telemetry)?;
    Ok(Config {
        path: path.to_path_buf(),
        server,
        storage,
        plugins,
        sources,
        targets,
        routes,
        telemetry,
    })
}

/// `[telemetry]`. `otlp_endpoint` is the collector's base URL, as in
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: `/v1/traces` is added to its path (unless
/// it ends so already). Empty means none, so it can come from an unset
/// variable's default.
fn telemetry(c: &Checker<'_>, t: RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
    let otlp_endpoint = match &t.otlp_endpoint {
        Some(url) if !url.get_ref().0.is_empty() => {
            let bad = |m: &str| c.err(Some(url.span()), "telemetry.otlp_endpoint", m);
            let mut parsed = reqwest::Url::parse(&url.get_ref().0).map_err(|e| {
                bad(&format!(
                    "not a URL ({e}): use the collector's OTLP/HTTP address, e.g. \"http://127.0.0.1:4318\""
                ))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad(
                    "must be http:// or https:// (OTLP over HTTP, protobuf), e.g. \"http://127.0.0.1:4318\"",
                ));
            }
            let base = parsed.path().trim_end_matches('/').to_string();
            if base.ends_with("/v1/traces") {
                parsed.set_path(&base);
            } else {
                parsed.set_path(&format!("{base}/v1/traces"));
            }
            Some(parsed)
        }
        _ => None,
    };
    let service_name = match &t.service_name {
        Some(name) if name.get_ref().0.trim().is_empty() => {
            return Err(c.err(
                Some(name.span()),
                "telemetry.service_name",
                "must not be empty",
            ));
        }
        Some(name) => name.get_ref().0.clone(),
        None => "wasmhook".to_string(),
    };
    let sample_ratio = match &t.sample_ratio {
        Some(r) if !(0.0..=1.0).contains(r.get_ref()) => {
            return Err(c.err(
                Some(r.span()),
                "telemetry.sample_ratio",
                "must be between 0 and 1 (1: every trace)",
            ));
        }
        Some(r) => *r.get_ref(),
        None => 1.0,
    };
    let timeout = match &t.timeout {
        Some(d) => parse_duration(&d.get_ref().0)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                c.err(
                    Some(d.span()),
                    "telemetry.timeout",
                    "must be a duration above 0, e.g. \"10s\"",
                )
            })?,
        None => Duration::from_secs(10),
    };
    let mut headers = Vec::new();
    for (name, value) in t.headers {
        let key = format!("telemetry.headers.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(c.err(None, key, "not a valid HTTP header name"));
        }
        // The exporter URL-decodes values: a `%` would be sent changed.
        if http::HeaderValue::from_str(&value.0).is_err() || value.0.contains('%') {
            return Err(c.err(
                None,
                key,
                "not a valid header value: visible ASCII only, no line breaks (a trailing newline from a file?) and no '%'",
            ));
        }
        headers.push((name.to_ascii_lowercase(), Secret::new(value.0)));
    }
    Ok(TelemetryConfig {
        otlp_endpoint,
        service_name,
        sample_ratio,
        timeout,
        headers,
    })
}

/// Names appear in URLs (`/ingest/{source}`) and logs: keep them plain.
/// `ordering = { key = { … }, on_dead = … }` → how a target's deliveries
/// are ordered.
fn ordering(raw: RawOrdering) -> Result<DeliveryOrder, String> {
    let key = match (raw.key.header, raw.key.json_pointer) {
        (Some(h), None) if !h.0.trim().is_empty() => {
            OrderKey::Header(h.0.trim().to_ascii_lowercase())
        }
        (None, Some(p)) if p.0.starts_with('/') => OrderKey::JsonPointer(p.0),
        (None, Some(p)) => {
            return Err(format!(
                "key.json_pointer {:?} is not a JSON pointer: it must start with '/', e.g. \"/customer/id\"",
                p.0
            ));
        }
        _ => {
            return Err(
                "key: set exactly one of `header` or `json_pointer`, e.g. key = { json_pointer = \"/customer/id\" }"
                    .into(),
            );
        }
    };
    let block_on_dead = match raw.on_dead.as_ref().map(|t| t.0.as_str()) {
        None | Some("release") => false,
        Some("block") => true,
        Some(other) => {
            return Err(format!(
                "on_dead = {other:?}: it is \"release\" (the default: a dead delivery lets the next one go) or \"block\""
            ));
        }
    };
    Ok(DeliveryOrder { key, block_on_dead })
}

/// `circuit = …` → the breaker, `None` when turned off.
fn circuit(raw: RawCircuit) -> Result<Option<Circuit>, String> {
    let (failures, cool_down, max_cool_down) = match raw {
        RawCircuit::Switch(false) => return Ok(None),
        RawCircuit::Switch(true) => return Ok(Some(Circuit::default())),
        RawCircuit::Table {
            failures,
            cool_down,
            max_cool_down,
        } => (failures, cool_down, max_cool_down),
    };
    let default = Circuit::default();
    let failures = match failures {
        None => default.failures,
        Some(n) if (1..=1_000_000).contains(&n) => n as u32,
        Some(n) => {
            return Err(format!(
                "failures = {n}: it must be between 1 and 1000000 (failed attempts in a row that open the circuit); \
                 write circuit = false to turn the breaker off"
            ));
        }
    };
    let duration = |what: &str, text: Option<Text>| -> Result<Option<Duration>, String> {
        let Some(text) = text else { return Ok(None) };
        let d = parse_duration(&text.0).map_err(|e| format!("{what}: {e}"))?;
        if d.is_zero() {
            return Err(format!("{what} must be more than 0"));
        }
        Ok(Some(d))
    };
    let cool_down = duration("cool_down", cool_down)?.unwrap_or(default.cool_down);
    let max_cool_down = match duration("max_cool_down", max_cool_down)? {
        Some(max) if max < cool_down => {
            return Err(format!(
                "max_cool_down ({max:?}) is shorter than cool_down ({cool_down:?}): the wait before a probe only grows"
            ));
        }
        Some(max) => max,
        None => default.max_cool_down.max(cool_down),
    };
    Ok(Some(Circuit {
        failures,
        cool_down,
        max_cool_down,
    }))
}

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
