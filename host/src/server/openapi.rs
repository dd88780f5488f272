//! `GET /api/openapi.json`: the OpenAPI 3.1 description of ingest, the
//! operations endpoints and the admin API.
//!
//! Made from the code, so it cannot drift from the handlers: each route's
//! description is its handler's `#[utoipa::path]`, registered with the
//! route itself (`app::documented`), and the bodies' schemas are derived
//! from the types the handlers serialize. What every `/api/…` route shares
//! (the bearer token, its 401, and the 404 while the admin API is off) is
//! added here, once, for all of them; the tests ask every route to prove it.
//!
//! The document is built and serialized once per process.

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{OpenApi as _, PartialSchema as _, ToSchema};

use super::AppState;
use super::admin::authorized;
use super::app::documented;

/// The name of the admin API's security scheme in the document.
const ADMIN_TOKEN: &str = "admin_token";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "wasmhook",
        description = "A WebAssembly-pluggable webhook router: ingest, the operations \
            endpoints and the admin API. `/api/…` needs `Authorization: Bearer \
            <server.admin_token>`, and does not exist (404) when no token is configured.",
    ),
    tags(
        (name = "ingest", description = "Webhooks in, from senders"),
        (name = "operations", description = "Health, readiness and metrics, open to orchestrators and scrapers"),
        (name = "events", description = "Events received, what each route did, re-runs"),
        (name = "deliveries", description = "Deliveries to targets, with their attempts"),
        (name = "targets", description = "Targets: their state, pause, resume, replay"),
        (name = "plugins", description = "Plugin files, and trying one on an event"),
        (name = "admin", description = "The dashboard's overview, the live tail, and this document"),
    ),
)]
struct ApiDoc;

/// What ingest answers when it has stored the event (the ingest module
/// writes it with `json!`; a test checks the two agree).
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestAccepted {
    /// The event's id: the stored one's, for a duplicate.
    id: String,
    /// Present, `true`, when the source had already sent this event (the
    /// same id, or the same signed content): nothing new is delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
}

/// The document as served, serialized once.
static DOCUMENT: LazyLock<Vec<u8>> =
    LazyLock::new(|| serde_json::to_vec(&document()).expect("an OpenAPI document serializes"));

/// The OpenAPI document of every documented route.
pub(super) fn document() -> OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(documented().into_openapi());
    admin_auth(&mut doc);
    doc
}

#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "admin",
    summary = "This document",
    description = "The OpenAPI 3.1 description of ingest, the operations endpoints and the \
        admin API, generated from the router's own code.",
    responses((status = 200, description = "The document", body = Object, content_type = "application/json")),
)]
pub async fn openapi_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    authorized!(state, headers);
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_slice(),
    )
        .into_response()
}

/// Every `/api/…` handler starts with `authorized!` (a test asks each
/// without the token): it needs the bearer token, answers 401 without it,
/// and 404 while no token is configured.
fn admin_auth(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        ADMIN_TOKEN,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("`server.admin_token`"))
                .build(),
        ),
    );
    let error_body = super::response::ErrorBody::name();
    components
        .schemas
        .entry(error_body.to_string())
        .or_insert_with(super::response::ErrorBody::schema);
    let refusal = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(error_body.clone())))
                        .build(),
                )
                .build(),
        )
    };
    const OFF: &str = "The admin API is off: no `server.admin_token` is configured";
    for (_, item) in doc
        .paths
        .paths
        .iter_mut()
        .filter(|(path, _)| path.starts_with("/api/"))
    {
        for op in operations(item) {
            op.security = Some(vec![SecurityRequirement::new(
                ADMIN_TOKEN,
                Vec::<String>::new(),
            )]);
            let responses = &mut op.responses.responses;
            responses.insert(
                "401".into(),
                refusal("The bearer token is missing or wrong"),
            );
            match responses.get_mut("404") {
                Some(RefOr::T(found)) => {
                    found.description = format!("{}; or: {OFF}", found.description);
                }
                _ => {
                    responses.insert("404".into(), refusal(OFF));
                }
            }
        }
    }
}

/// A path's operations, whichever methods it has.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

#[cfg(test)]
mod tests;
