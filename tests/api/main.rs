//! Agentry's API, tested black-box over HTTP against a real server with its own database
//! (SQLite by default, PostgreSQL with `AGENTRY_TEST_DATABASE=postgres`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agents;
mod caches;
mod clusters;
mod compat;
mod hygiene;
mod mcp;
pub(crate) mod mcp_live;
mod metrics;
mod openai;
mod ops;
mod providers;
pub mod runtime;
mod security;
mod seeds;
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
