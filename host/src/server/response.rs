//! The one shape of an HTTP error, shared by ingest, the operations
//! endpoints and the admin API: a status and `{"error": "…"}` that says what
//! to do. Details that would leak internals go to the log, never here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}
