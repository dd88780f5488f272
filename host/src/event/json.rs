//! Events and outcomes as JSON, the way people write and read them: the
//! shape `wasmhook plugin run` takes and prints, and the admin API's "try
//! it" (`POST /api/plugins/{name}/run`) takes and answers.
//!
//! An event is `{"source", "type", "id", "received_at", "headers", "body"}`,
//! every key optional: `headers` an object or a list of `[name, value]`
//! pairs; `body` a string (its text) or any other JSON (the body as JSON),
//! or `body_base64` for bytes.

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{Event, Outcome, now_ms};

/// An event from its JSON object; what is missing gets a default (source
/// `cli`, id `evt_cli`, received now).
pub fn event_from_json(map: Map<String, Value>) -> anyhow::Result<Event> {
    let text = |key: &str| -> anyhow::Result<Option<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => bail!("the event's {key:?} must be a string, not {other}"),
        }
    };
    let body = match (map.get("body"), map.get("body_base64")) {
        (Some(_), Some(_)) => bail!("the event has both \"body\" and \"body_base64\": give one"),
        (_, Some(Value::String(b64))) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .context("the event's \"body_base64\" is not valid base64")?,
        (_, Some(_)) => bail!("the event's \"body_base64\" must be a string"),
        // A string is the body's text; anything else is the body as JSON.
        (Some(Value::String(s)), None) => s.clone().into_bytes(),
        (Some(v), None) => serde_json::to_vec(v)?,
        (None, None) => Vec::new(),
    };
    let headers = match map.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| Ok((k.to_ascii_lowercase(), header_value(k, v)?)))
            .collect::<anyhow::Result<_>>()?,
        Some(Value::Array(pairs)) => pairs
            .iter()
            .map(|p| match p.as_array().map(Vec::as_slice) {
                Some([Value::String(k), v]) => Ok((k.to_ascii_lowercase(), header_value(k, v)?)),
                _ => bail!(
                    "the event's \"headers\" must be an object or a list of [name, value] pairs"
                ),
            })
            .collect::<anyhow::Result<_>>()?,
        Some(_) => {
            bail!("the event's \"headers\" must be an object or a list of [name, value] pairs")
        }
    };
    let received_at = match map.get("received_at") {
        None | Some(Value::Null) => now_ms(),
        Some(v) => v
            .as_u64()
            .context("the event's \"received_at\" must be milliseconds since the epoch")?,
    };
    Ok(Event {
        id: text("id")?.unwrap_or_else(|| "evt_cli".into()),
        source: text("source")?.unwrap_or_else(|| "cli".into()),
        event_type: text("type")?.or(text("event_type")?).unwrap_or_default(),
        received_at,
        headers,
        body: body.into(),
    })
}

fn header_value(name: &str, v: &Value) -> anyhow::Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => bail!("header {name:?} must have a string value"),
    }
}

/// An outcome as JSON: `{"drop": reason}` or `{"emit": [event, …]}`.
pub fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Drop { reason } => json!({ "drop": reason }),
        Outcome::Emit(outputs) => json!({
            "emit": outputs.iter().map(|o| {
                let mut out = json!({
                    "id": o.event.id,
                    "source": o.event.source,
                    "event_type": o.event.event_type,
                    "targets": o.targets,
                    "headers": o.event.headers,
                });
                let (key, body) = body_json(&o.event.body);
                out[key] = body;
                out
            }).collect::<Vec<_>>()
        }),
    }
}

/// The body as the input format reads it back: JSON (but a JSON string)
/// as `body`, other text as `body` (a string is the text), bytes as
/// `body_base64`.
fn body_json(body: &[u8]) -> (&'static str, Value) {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if !v.is_string() => ("body", v),
        _ => match std::str::from_utf8(body) {
            Ok(text) => ("body", Value::String(text.to_string())),
            Err(_) => (
                "body_base64",
                Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_bodies_read_back_as_the_same_bytes() {
        assert_eq!(body_json(br#"{"a":1}"#), ("body", json!({"a": 1})));
        // A JSON string body is printed as its text, quotes and all.
        assert_eq!(body_json(br#""hi""#), ("body", json!("\"hi\"")));
        assert_eq!(body_json(b"plain"), ("body", json!("plain")));
        assert_eq!(body_json(&[0xff, 0]), ("body_base64", json!("/wA=")));
    }
}
