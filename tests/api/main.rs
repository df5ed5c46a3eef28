//! Agentry's API, tested black-box over HTTP against a real server with its own database
//! (SQLite by default, PostgreSQL with `AGENTRY_TEST_DATABASE=postgres`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agents;
mod caches;
mod clusters;
mod compat;
mod document;
mod evals;
mod events;
mod files;
mod guardrails;
mod hygiene;
mod insights;
mod knowledge;
mod mcp;
pub(crate) mod mcp_live;
mod metrics;
mod openai;
mod ops;
mod optimization;
mod providers;
pub mod runtime;
mod security;
mod seeds;
mod tasks;
mod tools;
mod upstream;
mod versions;

use agentry_test_harness::TestApp;
use serde_json::Value;

/// An app with the seed documents' providers (`openai-prod`, `anthropic`) as mocks.
pub async fn seed_app() -> TestApp {
    TestApp::builder().with_seed_providers().spawn().await
}

/// Creates an agent and returns its JSON, asserting 201.
pub async fn create(app: &TestApp, body: Value) -> Value {
    let (status, json) = agentry_test_harness::json(app.post("/api/v1/agents", &body).await).await;
    assert_eq!(status, 201, "create failed: {json}");
    json
}

/// Asserts the documented error envelope and returns it.
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) -> Value {
    assert_eq!(status, want_status, "unexpected status, body: {body}");
    let err = &body["error"];
    assert_eq!(err["code"], want_code, "unexpected code, body: {body}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without message: {body}"
    );
    assert!(
        err["request_id"].as_str().is_some_and(|m| !m.is_empty()),
        "error without request_id: {body}"
    );
    err.clone()
}

/// Registers provider `up` (OpenAI kind) pointing at `fake`, asserting 201.
pub async fn upstream_provider(
    app: &TestApp,
    fake: &agentry_test_harness::fake_upstream::FakeUpstream,
) {
    let (status, p) = agentry_test_harness::json(
        app.post(
            "/api/v1/providers",
            &serde_json::json!({"id": "up", "kind": "openai", "base_url": fake.base_url(), "api_key": "k", "models": []}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{p}");
}

/// An app on PostgreSQL configured by `configure`, or `None` (saying it skips) when
/// PostgreSQL cannot be reached.
pub async fn postgres_app(
    configure: impl FnOnce(&mut agentry_test_harness::Config),
) -> Option<TestApp> {
    let app = TestApp::builder()
        .backend(agentry_test_harness::TestBackend::Postgres)
        .configure(configure)
        .try_spawn()
        .await
        .ok();
    if app.is_none() {
        eprintln!("SKIPPED: PostgreSQL is not reachable");
    }
    app
}
