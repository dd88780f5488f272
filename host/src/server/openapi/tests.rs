//! The document is valid OpenAPI 3.1; it describes every route the app
//! serves (but the dashboard's files), and each as it answers.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::DOCUMENT;
use crate::config::{self, PluginLimits};
use crate::dispatch::Circuits;
use crate::event::{Event, Outcome, Output};
use crate::metrics::{Metrics, Series};
use crate::plugin::{PluginRegistry, PluginRuntime};
use crate::server::AppState;
use crate::server::app::{app, undocumented};
use crate::store::{SqliteStore, Store};

const TOKEN: &str = "t0ken";

fn document() -> Value {
    serde_json::from_slice(&DOCUMENT).expect("the document is JSON")
}

/// `(path, method, operation)` for every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                ops.push((path.clone(), method.to_string(), op.clone()));
            }
        }
    }
    ops
}

/// What a local `$ref` points at.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{r} is not local"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{r} does not resolve"));
            resolve(doc, target)
        }
        None => value,
    }
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                refs.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

/// The `{names}` in a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('{')
        .skip(1)
        .map(|rest| rest.split_once('}').expect("a closed brace").0.to_string())
        .collect()
}

/// An object schema's property names and required ones (following `$ref`
/// and merging `allOf`); `None` for a schema that is not a plain object.
fn object_keys(doc: &Value, schema: &Value) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
    let schema = resolve(doc, schema);
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        let (mut all, mut required) = (BTreeSet::new(), BTreeSet::new());
        for part in parts {
            let (a, r) = object_keys(doc, part)?;
            all.extend(a);
            required.extend(r);
        }
        return Some((all, required));
    }
    let properties = schema.get("properties")?.as_object()?;
    let required = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Some((properties.keys().cloned().collect(), required))
}

fn schema_keys(doc: &Value, name: &str) -> BTreeSet<String> {
    let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
    object_keys(doc, &schema).expect("an object schema").0
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_document_is_openapi_3_1_and_every_ref_resolves() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3.1."), "openapi is {version}");
    assert_eq!(doc["info"]["title"], "wasmhook");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 20, "the bodies are described by reference");
    for r in &refs {
        assert!(r.starts_with("#/components/"), "{r}");
        resolve(&doc, &json!({ "$ref": r }));
    }
}

#[test]
fn every_path_parameter_is_declared_and_every_operation_described() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let at = format!("{method} {path}");
        let declared: Vec<&Value> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == "path")
            .collect();
        let names: BTreeSet<String> = declared
            .iter()
            .map(|p| p["name"].as_str().expect("a name").to_string())
            .collect();
        assert_eq!(names, template_params(&path), "{at}: path parameters");
        assert!(
            declared.iter().all(|p| p["required"] == true),
            "{at}: path parameters are required"
        );
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_string()), "{at}: operationId {id} repeats");
        assert!(op["summary"].is_string(), "{at}: summary");
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{at}: tag"
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{at}: responses");
        for (status, response) in responses {
            let response = resolve(&doc, response);
            assert!(response["description"].is_string(), "{at} {status}");
        }
    }
}

#[test]
fn the_admin_api_and_only_it_needs_the_bearer_token() {
    let doc = document();
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["type"],
        "http"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    for (path, method, op) in operations(&doc) {
        let at = format!("{method} {path}");
        if path.starts_with("/api/") {
            assert_eq!(op["security"], json!([{ "admin_token": [] }]), "{at}");
            for status in ["401", "404"] {
                assert!(op["responses"][status].is_object(), "{at}: {status}");
            }
        } else {
            assert!(op.get("security").is_none(), "{at} is open");
        }
    }
    assert!(
        doc.get("security").is_none(),
        "no document-wide requirement"
    );
}

#[test]
fn mirrored_schemas_match_what_is_serialized() {
    let doc = document();
    // Kept out of the metrics module, so checked here.
    let series = serde_json::to_value(Series::default()).unwrap();
    assert_eq!(schema_keys(&doc, "ActivitySeries"), keys(&series));
    let event = |body: &[u8]| Event {
        id: "e".into(),
        source: "s".into(),
        event_type: "t".into(),
        received_at: 1,
        headers: vec![("a".into(), "b".into())],
        body: body.to_vec().into(),
    };
    let documented = schema_keys(&doc, "EmittedEvent");
    for body in [&b"{}"[..], b"text", &[0xff, 0]] {
        let emitted = crate::event::json::outcome_json(&Outcome::Emit(vec![Output {
            event: event(body),
            targets: Vec::new(),
        }]));
        let emitted = keys(&emitted["emit"][0]);
        assert!(emitted.is_subset(&documented), "{emitted:?}");
    }
}

const CONFIG: &str = r#"
[server]
admin_token = "t0ken"

[storage]
url = "memory://"

[[sources]]
name = "src"

[[targets]]
name = "t"
url = "http://127.0.0.1:9/"

[[routes]]
name = "r"
source = "src"
targets = ["t"]
"#;

/// An app on a memory store, with the admin API on unless `admin_off`.
fn test_app(dir: &std::path::Path, admin_off: bool) -> Router {
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    let text = if admin_off {
        CONFIG.replace("admin_token = \"t0ken\"", "")
    } else {
        CONFIG.to_string()
    };
    let config = config::parse(&dir.join("wasmhook.toml"), &text).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(None, false, 1000).unwrap());
    let limits = PluginLimits {
        max_concurrency: 1,
        ..PluginLimits::default()
    };
    let runtime = Arc::new(PluginRuntime::new(limits, None).unwrap());
    let metrics = Arc::new(Metrics::default());
    let circuits = Arc::new(Circuits::new(store.clone(), metrics.clone()));
    app(AppState::new(
        Arc::new(ArcSwap::from_pointee(config)),
        store,
        Arc::new(PluginRegistry::new(runtime)),
        metrics,
        None,
        Arc::default(),
        circuits,
    ))
}

/// A path from its template: the configured source and target, else `x`.
fn concrete(path: &str) -> String {
    let mut out = path.to_string();
    for name in template_params(path) {
        let value = match name.as_str() {
            "source" => "src",
            "name" if path.starts_with("/api/targets/") => "t",
            _ => "x",
        };
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

async fn ask(app: &Router, method: &str, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method.to_uppercase().as_str())
        .uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from("")).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t == "application/json");
    // The live tail never ends: only JSON bodies are read.
    let body = if json {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    } else {
        Value::Null
    };
    (status, body)
}

fn is_fallback(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND && body["error"] == "no such endpoint")
}

/// Each documented operation is served, answers one of its documented
/// statuses with a body its schema describes, and is guarded as the
/// document says.
#[tokio::test]
async fn every_documented_route_is_served_as_described() {
    let dir = tempfile::tempdir().unwrap();
    let on = test_app(dir.path(), false);
    let off = test_app(&dir.path().join("off"), true);
    let doc = document();
    let ops = operations(&doc);
    assert!(ops.len() >= 19, "{} operations", ops.len());
    for (path, method, op) in ops {
        let uri = concrete(&path);
        let at = format!("{method} {uri}");
        let (status, body) = ask(&on, &method, &uri, Some(TOKEN)).await;
        assert!(!is_fallback(status, &body), "{at} is not served: {status}");
        let response = op["responses"]
            .get(status.as_str())
            .unwrap_or_else(|| panic!("{at} answered {status}, which is not documented"));
        let schema = &resolve(&doc, response)["content"]["application/json"]["schema"];
        if !body.is_null()
            && !schema.is_null()
            && let Some((documented, required)) = object_keys(&doc, schema)
        {
            let sent = keys(&body);
            assert!(
                sent.is_subset(&documented),
                "{at}: {sent:?} ⊄ {documented:?}"
            );
            assert!(required.is_subset(&sent), "{at}: {required:?} ⊄ {sent:?}");
        }

        let (status, _) = ask(&on, &method, &uri, None).await;
        let (status_off, body_off) = ask(&off, &method, &uri, Some(TOKEN)).await;
        if path.starts_with("/api/") {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{at} without the token");
            assert_eq!(status_off, StatusCode::NOT_FOUND, "{at} with the API off");
        } else {
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{at} is open");
            assert!(!is_fallback(status_off, &body_off), "{at} with the API off");
        }
    }
}

/// The other direction: nothing is served that the document leaves out,
/// but the dashboard's files. Routes are only added in `app.rs`, and there
/// only through `documented()` (each with its description) and the one
/// loop over `undocumented()`.
#[tokio::test]
async fn nothing_is_served_undocumented_but_the_dashboard() {
    let app_rs = include_str!("../app.rs");
    let mod_rs = include_str!("../mod.rs");
    for adds_routes in [
        ".route(",
        ".route_service(",
        ".nest(",
        ".nest_service(",
        ".merge(",
    ] {
        let expected = usize::from(adds_routes == ".route(");
        assert_eq!(
            app_rs.matches(adds_routes).count(),
            expected,
            "app.rs adds a route with `{adds_routes}` outside `documented()` and `undocumented()`: \
             register it with `.routes(routes!(handler))` and give the handler `#[utoipa::path]`"
        );
        assert_eq!(
            mod_rs.matches(adds_routes).count(),
            0,
            "mod.rs: {adds_routes}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let on = test_app(dir.path(), false);
    let doc = document();
    for (path, _) in undocumented() {
        assert!(path.starts_with("/ui"), "{path} belongs in the document");
        assert!(doc["paths"].get(path).is_none(), "{path}");
        let (status, body) = ask(&on, "get", &concrete(path), None).await;
        assert!(!is_fallback(status, &body), "{path} is served");
    }
}
