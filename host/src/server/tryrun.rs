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
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::AppState;
use super::admin::{authorized, unavailable};
use super::error;
use super::response::ErrorBody;
use crate::event::json::{event_from_json, outcome_json};
use crate::event::{Event, Outcome};
use crate::plugin::LogLine;

/// What to run the plugin on: `event` or `event_id`, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// An event as `wasmhook plugin run` takes it: `source`, `type`, `id`,
    /// `received_at`, `headers` (an object, or a list of `[name, value]`
    /// pairs) and `body` (a string is its text, other JSON the body as
    /// JSON) or `body_base64`, every key optional.
    #[schema(value_type = Option<Object>)]
    event: Option<Map<String, Value>>,
    /// Or a stored event, by id.
    event_id: Option<String>,
    /// The plugin's config, as a route's `config` gives it: strings,
    /// numbers, booleans, or lists of them (joined with commas).
    #[serde(default)]
    #[schema(value_type = Object)]
    config: Map<String, Value>,
}

/// What the plugin did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TryOutcome {
    /// It emitted events: see `emit`.
    Emit,
    /// It dropped the event: see `reason`.
    Drop,
    /// It failed: see `error`.
    Error,
}

/// `POST /api/plugins/{name}/run`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TryRunAnswer {
    plugin: String,
    /// Hex SHA-256 of the loaded version.
    version: String,
    took_ms: f64,
    /// Its `log` calls, in order.
    logs: Vec<LogLine>,
    /// What it wrote to stdout and stderr (capped).
    printed: String,
    outcome: TryOutcome,
    /// The drop's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The events it emitted, as `wasmhook plugin run` prints them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<EmittedEvent>>)]
    emit: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<TryRunError>,
}

/// An event a plugin emitted, as `crate::event::json::outcome_json` writes
/// it (a test checks that the two agree).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct EmittedEvent {
    id: String,
    source: String,
    event_type: String,
    /// The configured targets it names; empty: the route's targets.
    targets: Vec<String>,
    /// `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    headers: Vec<(String, String)>,
    /// The body: JSON as JSON, other text as a string.
    #[schema(value_type = Option<Value>)]
    body: Option<Value>,
    /// The body, when it is not text.
    body_base64: Option<String>,
}

/// Why the plugin failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct TryRunError {
    /// `not_loaded`, `timeout`, `wall_timeout`, `memory`,
    /// `output_too_large`, `trap`, `panic` or `error`.
    #[schema(example = "trap")]
    kind: &'static str,
    message: String,
}

#[utoipa::path(
    post,
    path = "/api/plugins/{name}/run",
    tag = "plugins",
    operation_id = "run_plugin",
    summary = "Try a plugin on an event",
    description = "Runs the loaded plugin on an event, in the same sandbox with the same \
        limits as a route, and stores nothing. The dashboard's \"Try it\" panel.",
    params(("name" = String, Path, description = "The plugin's name (its file's stem)")),
    request_body(content = RunRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What the plugin did (its failure is an answer too: `outcome` is `error`)", body = TryRunAnswer),
        (status = 400, description = "The body is not such an object, gives both or neither of `event` and `event_id`, or a config value is not a scalar or a list of them", body = ErrorBody),
        (status = 404, description = "No plugin of this name is loaded, or no event has `event_id`", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry shortly", body = ErrorBody),
    ),
)]
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
    let mut answer = TryRunAnswer {
        plugin: name,
        version: plugin.version.clone(),
        took_ms: ran.took.as_secs_f64() * 1e3,
        logs: ran.logs,
        printed: ran.printed,
        outcome: TryOutcome::Error,
        reason: None,
        emit: None,
        error: None,
    };
    match &ran.outcome {
        Ok(Outcome::Drop { reason }) => {
            answer.outcome = TryOutcome::Drop;
            answer.reason = Some(reason.clone());
        }
        Ok(outcome @ Outcome::Emit(_)) => {
            answer.outcome = TryOutcome::Emit;
            answer.emit = Some(outcome_json(outcome)["emit"].take());
        }
        Err(e) => {
            answer.error = Some(TryRunError {
                kind: e.kind(),
                message: e.to_string(),
            });
        }
    }
    Json(answer).into_response()
}
