//! Health, readiness, the OpenAPI document and the docs page.

use agentry_test_harness::{TestApp, json};

#[tokio::test]
async fn health_and_ready() {
    let app = TestApp::spawn().await;
    let (status, h) = json(app.get("/health").await).await;
    assert_eq!(status, 200);
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert!(h["timestamp"].as_str().unwrap().ends_with('Z'));
    let (status, r) = json(app.get("/ready").await).await;
    assert_eq!((status, r["status"].as_str()), (200, Some("ready")));
    assert_eq!(r["checks"]["database"], "ok");
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let app = TestApp::spawn().await;
    let (status, doc) = json(app.get("/openapi.json").await).await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/health", "get"),
        ("/ready", "get"),
        ("/api/v1/agents", "get"),
        ("/api/v1/agents", "post"),
        ("/api/v1/agents/{agent}", "get"),
        ("/api/v1/agents/{agent}", "patch"),
        ("/api/v1/agents/{agent}", "put"),
        ("/api/v1/agents/{agent}", "delete"),
        ("/api/v1/providers", "post"),
        ("/api/v1/providers/{provider}", "delete"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["AgentInput"]["properties"]["llmModel"].is_object());
}

#[tokio::test]
async fn docs_page_is_served_without_network() {
    let app = TestApp::spawn().await;
    let res = app.get("/docs/").await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("cdn.") && !html.contains("unpkg.com"),
        "no CDN: {html}"
    );
    let res = app.get("/docs").await;
    assert!(
        res.status().is_redirection() || res.status() == 200,
        "{}",
        res.status()
    );
    let res = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(res.status(), 200, "the bundle is vendored");
}
