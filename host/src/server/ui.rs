//! The dashboard at `/ui/`: a small ES-module app, its files embedded in
//! the binary at compile time (nothing to install or run beside it), that
//! reads and acts through the admin API.
//!
//! Security, by construction:
//! - With no `server.admin_token`, `/ui/` does not exist (404), like `/api/`.
//! - The files hold no data. The sign-in page takes the token and keeps it
//!   in the tab's `sessionStorage`; every API call sends it as a bearer
//!   header, never in a URL or a cookie (so no request forgery either).
//! - Event bodies and headers are the sender's: the app only ever sets
//!   them as text (`textContent`), and a strict `Content-Security-Policy`
//!   (no inline script or style, no other origin) stops a script that got
//!   in anyway.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::{AppState, error};

/// `(name, content type, bytes)`.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/style.css"),
    ),
];

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

fn dashboard_on(state: &AppState) -> bool {
    state.live.load().server.admin_token.is_some()
}

/// `/ui` → `/ui/`, so relative paths resolve.
pub async fn root(State(state): State<AppState>) -> Response {
    if !dashboard_on(&state) {
        return error(StatusCode::NOT_FOUND, "no such endpoint");
    }
    Redirect::permanent("/ui/").into_response()
}

pub async fn index(State(state): State<AppState>) -> Response {
    file(&state, "index.html")
}

pub async fn asset(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    file(&state, &name)
}

fn file(state: &AppState, name: &str) -> Response {
    if !dashboard_on(state) {
        return error(StatusCode::NOT_FOUND, "no such endpoint");
    }
    let Some((_, content_type, bytes)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return error(StatusCode::NOT_FOUND, "no such file");
    };
    let mut response = (*bytes).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change with the binary: always ask, a 200 is small.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
