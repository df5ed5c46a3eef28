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
    // Seed 001's spelling is one of the agent body's spellings.
    assert!(doc["components"]["schemas"]["AgentCreate"]["properties"]["llmModel"].is_object());
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

/// A TCP relay to PostgreSQL that the test can cut.
struct Relay {
    port: u16,
    task: tokio::task::JoinHandle<()>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> =
            Default::default();
        let held = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().unwrap().push(relay);
            }
        });
        Self { port, task, conns }
    }

    /// Refuses new connections and breaks the open ones.
    fn cut(&self) {
        self.task.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

#[tokio::test]
async fn ready_is_503_while_the_database_is_unreachable() {
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    if tokio::net::TcpStream::connect(pg).await.is_err()
        && std::env::var("AGENTRY_TEST_REQUIRE_POSTGRES").as_deref() != Ok("1")
    {
        eprintln!("skipped: PostgreSQL not reachable at {pg}");
        return;
    }
    let relay = Relay::start(pg).await;
    let port = relay.port;
    let app = agentry_test_harness::TestApp::builder()
        .backend(agentry_test_harness::TestBackend::Postgres)
        .configure(|c| c.database_max_connections = Some(2))
        .map_database_url(move |url| {
            url.replacen("127.0.0.1:5432", &format!("127.0.0.1:{port}"), 1)
        })
        .spawn()
        .await;
    let (status, r) = json(app.get("/ready").await).await;
    assert_eq!((status, r["status"].as_str()), (200, Some("ready")));

    relay.cut();
    let (status, r) = json(app.get("/ready").await).await;
    assert_eq!(
        (status, r["status"].as_str()),
        (503, Some("unavailable")),
        "{r}"
    );
    assert_eq!(r["checks"]["database"], "unreachable");
    let (status, h) = json(app.get("/health").await).await;
    assert_eq!(
        (status, h["status"].as_str()),
        (200, Some("healthy")),
        "the process itself is alive"
    );
    let (status, body) = json(app.get("/api/v1/agents").await).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE")),
        "a database outage is not a bad credential: {body}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_answer_and_alias() {
    let app = TestApp::spawn().await;
    let (_, doc) = json(app.get("/openapi.json").await).await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/client/v1/responses", "post"),
        ("/api/client/v1/agents/responses", "post"),
        ("/api/client/v1/responses/{id}", "get"),
        ("/api/client/v1/responses/{id}", "delete"),
        ("/api/client/v1/responses/{id}/input_items", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    let mut ids = std::collections::HashSet::new();
    let public = [
        "/health",
        "/ready",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
    ];
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if let Some(id) = op["operationId"].as_str() {
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            }
            let responses = op["responses"].as_object().unwrap();
            if !public.contains(&path.as_str()) {
                for code in ["401", "403", "429"] {
                    assert!(responses.contains_key(code), "{method} {path} lacks {code}");
                }
            }
            if op.get("requestBody").is_some() {
                assert!(responses.contains_key("415"), "{method} {path} lacks 415");
            }
            // The request middleware's answers: head limits everywhere, the connection limit
            // everywhere but the monitors' routes.
            for code in ["414", "431"] {
                assert!(responses.contains_key(code), "{method} {path} lacks {code}");
            }
            if !["/health", "/ready", "/metrics"].contains(&path.as_str()) {
                assert!(responses.contains_key("503"), "{method} {path} lacks 503");
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["name"] == "limit" || p["name"] == "offset" {
                    assert_eq!(p["schema"]["type"], "integer", "{method} {path} {p}");
                }
            }
        }
    }
    // The real answers match: a management 401 and an OpenAI-surface 401 in their formats.
    let anonymous = app
        .request_as(None, reqwest::Method::GET, "/api/v1/agents", None)
        .await;
    assert_eq!(anonymous.status(), 401);
    let (_, body) = json(anonymous).await;
    assert!(body["error"]["code"].is_string() && body["error"]["request_id"].is_string());
}
