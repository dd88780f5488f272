//! The one shape of an HTTP error, shared by ingest, the operations
//! endpoints and the admin API: a status and `{"error": "…"}` that says what
//! to do. Details that would leak internals go to the log, never here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The body of every refusal and failure.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, and what to do about it.
    pub error: String,
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: message.into(),
    };
    (status, axum::Json(body)).into_response()
}
