//! `GET /api/openapi.json`: the OpenAPI 3.1 description of the router's
//! HTTP API, behind the admin token like the rest of `/api/`.

use serde_json::Value;
use wasmhook_e2e::{ADMIN_TOKEN, Router, Setup};

const CONFIG: &str = "[[sources]]\nname = \"s\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_is_served_with_the_admin_token_only() {
    let router = Router::with(Setup {
        config: CONFIG,
        ..Setup::default()
    })
    .await;
    let client = reqwest::Client::new();
    let url = router.url("/api/openapi.json");

    let response = client
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let bytes = response.bytes().await.unwrap();
    let doc: Value = serde_json::from_slice(&bytes).expect("the document is JSON");
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3.1"), "openapi {version}");
    for path in [
        "/ingest/{source}",
        "/api/targets/{name}/pause",
        "/api/openapi.json",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is described");
    }
    assert!(
        doc["paths"].get("/ui/").is_none(),
        "the dashboard is a page, not the API"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );

    for token in [None, Some("wrong"), Some("")] {
        let mut request = client.get(&url);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "with {token:?}");
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("admin token"),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_admin_token_there_is_no_openapi_document() {
    let router = Router::with(Setup {
        config: CONFIG,
        no_admin_token: true,
        ..Setup::default()
    })
    .await;
    let response = reqwest::get(router.url("/api/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 404);
}
