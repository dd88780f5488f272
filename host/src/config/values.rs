//! Parsing of single config values: durations, secrets, plugin config
//! tables and `verify` tables. Each returns a message for the caller to
//! attach to a file, line and key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use super::file::RawVerify;
use super::types::{RateLimit, Secret};
use crate::verify::{Encoding, Verifier};

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
pub(super) fn plugin_config(
    table: BTreeMap<String, toml::Value>,
) -> Result<Arc<[(String, String)]>, String> {
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
/// A value too large to count in milliseconds is an error, not a wrap.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let example = "write e.g. \"500ms\", \"5s\", \"5m\", \"2h\" or \"30d\"";
    if num.is_empty() {
        return Err(format!("{text:?} is not a duration: {example}"));
    }
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("{text:?} has no unit: {example}")),
        _ => return Err(format!("{text:?} has an unknown unit {unit:?}: {example}")),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(ms_per_unit))
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long a duration"))
}

/// `"50/s"` (or `/m`, `/h`) and a burst → a [`RateLimit`].
pub fn parse_rate(text: &str, burst: Option<i64>) -> Result<RateLimit, String> {
    let example = "write e.g. \"50/s\", \"600/m\" or \"1000/h\"";
    let (count, unit) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not a rate: {example}"))?;
    let per: Duration = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => return Err(format!("{text:?} has an unknown unit {other:?}: {example}")),
    };
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} needs a whole number of attempts above 0: {example}"))?;
    let every = per / count;
    if every < Duration::from_micros(10) {
        return Err(format!(
            "{text:?} is more than 100,000 attempts a second: leave rate_limit out for no limit"
        ));
    }
    let burst = match burst {
        None => 1,
        Some(b) if (1..=100_000).contains(&b) => b as u32,
        Some(b) => return Err(format!("burst = {b}: it must be from 1 to 100000")),
    };
    Ok(RateLimit { every, burst })
}

/// `verify = { … }` → a verifier, or what is wrong with it.
pub(super) fn verifier(raw: RawVerify) -> Result<Verifier, String> {
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
