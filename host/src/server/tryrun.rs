//! `POST /api/plugins/{name}/run`: run a loaded plugin on an event, in the
//! same sandbox with the same limits as a route, and store nothing. The
//! dashboard's "Try it" panel.
//!
//! The request is `{"event": {…}, "config": {"key": "value"}}` with the
//! event as `wasmhook plugin run` takes it, or `{"event_id": "…"}` to run
//! it on a stored event. The answer is the outcome, what the plugin
//! logged and printed, and how long it took.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::admin::{authorized, unavailable};
use super::error;
use crate::event::Event;
use crate::event::json::{event_from_json, outcome_json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    event: Option<Map<String, Value>>,
    event_id: Option<String>,
    #[serde(default)]
    config: Map<String, Value>,
}

pub async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<RunRequest>, JsonRejection>,
) -> Response {
    authorized!(state, headers);
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}: send {{\"event\": {{\"type\", \"headers\", \"body\", …}}, \"config\": {{…}}}} or {{\"event_id\": \"…\"}}",
                    e.body_text()
                ),
            );
        }
    };
    let Some(plugin) = state.registry.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no plugin named {name:?} is loaded"),
        );
    };
    let event = match (req.event, req.event_id) {
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "give \"event\" or \"event_id\", not both",
            );
        }
        (None, None) => {
            return error(StatusCode::BAD_REQUEST, "give \"event\" or \"event_id\"");
        }
        (Some(map), None) => match event_from_json(map) {
            Ok(e) => e,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("event: {e:#}")),
        },
        (None, Some(id)) => match state.store.event(&id).await {
            Ok(Some(record)) => Event {
                body: match (&record.body, &record.body_base64) {
                    (Some(text), _) => text.clone().into_bytes().into(),
                    (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap_or_default()
                        .into(),
                    (None, None) => Default::default(),
                },
                id: record.id,
                source: record.source,
                event_type: record.event_type,
                received_at: record.received_at,
                headers: record.headers,
            },
            Ok(None) => return error(StatusCode::NOT_FOUND, format!("no event has id {id:?}")),
            Err(e) => return unavailable(e),
        },
    };
    let mut config = Vec::with_capacity(req.config.len());
    for (k, v) in req.config {
        // As a route's `config` takes them: a list is joined with commas.
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
            _ => None,
        };
        let v = match &v {
            Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(|l| l.join(",")),
            other => scalar(other),
        };
        let Some(v) = v else {
            return error(
                StatusCode::BAD_REQUEST,
                format!("config {k:?}: values are strings, numbers, booleans or lists of them"),
            );
        };
        config.push((k, v));
    }
    let ran = state
        .registry
        .runtime()
        .try_run(&plugin, &event, config.into())
        .await;
    let mut answer = json!({
        "plugin": name,
        "version": plugin.version,
        "took_ms": ran.took.as_secs_f64() * 1e3,
        "logs": ran.logs,
        "printed": ran.printed,
    });
    match &ran.outcome {
        Ok(outcome) => {
            let out = outcome_json(outcome);
            if let Some(reason) = out.get("drop") {
                answer["outcome"] = json!("drop");
                answer["reason"] = reason.clone();
            } else {
                answer["outcome"] = json!("emit");
                answer["emit"] = out["emit"].clone();
            }
        }
        Err(e) => {
            answer["outcome"] = json!("error");
            answer["error"] = json!({ "kind": e.kind(), "message": e.to_string() });
        }
    }
    Json(answer).into_response()
}
