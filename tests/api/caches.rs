//! The in-process caches seen from outside: a change made through one replica holds on
//! another within its sync interval (`cache_sync_ms`, 250 ms by default), and at once on the
//! replica that made it.

use std::time::{Duration, Instant};

use agentry_test_harness::{TEST_ADMIN_PASSWORD, TestApp, json};
use reqwest::Method;
use serde_json::{Value, json};

/// Calls `check` until it returns true, for at most 10 s (far above the sync interval, so
/// only a change that never arrives fails).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn status_as(app: &TestApp, token: &str, path: &str) -> u16 {
    app.request_as(Some(token), Method::GET, path, None)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_agent_edited_on_one_replica_is_served_changed_by_another() {
    let a = TestApp::spawn().await;
    let b = a.replica().await.unwrap();
    let (status, _) = json(
        a.post(
            "/api/v1/agents",
            &json!({"name": "Cached", "instructions": "first"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    // B reads it (and keeps it).
    let (_, seen) = json(b.get("/api/v1/agents/cached").await).await;
    assert_eq!(seen["instructions"], "first");
    let (status, _) = json(
        a.patch("/api/v1/agents/cached", &json!({"instructions": "second"}))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    // At once on A, which made the change.
    let (_, now_a) = json(a.get("/api/v1/agents/cached").await).await;
    assert_eq!(now_a["instructions"], "second");
    eventually("B serves the edited agent", || async {
        let (_, v) = json(b.get("/api/v1/agents/cached").await).await;
        v["instructions"] == "second"
    })
    .await;
    // A deletion reaches B too.
    assert_eq!(a.delete("/api/v1/agents/cached").await.status(), 200);
    eventually("B no longer finds the deleted agent", || async {
        b.get("/api/v1/agents/cached").await.status() == 404
    })
    .await;
}

#[tokio::test]
async fn a_logout_on_one_replica_ends_the_session_on_another() {
    let a = TestApp::spawn().await;
    let b = a.replica().await.unwrap();
    let token = a.login("admin", TEST_ADMIN_PASSWORD).await;
    assert_eq!(status_as(&b, &token, "/api/v1/agents").await, 200);
    let res = a
        .request_as(
            Some(&token),
            Method::POST,
            "/api/v1/auth/logout",
            Some(&json!({})),
        )
        .await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(status_as(&a, &token, "/api/v1/agents").await, 401);
    eventually("B refuses the logged-out token", || async {
        status_as(&b, &token, "/api/v1/agents").await == 401
    })
    .await;
}

#[tokio::test]
async fn a_key_revoked_on_one_replica_stops_working_on_another() {
    let a = TestApp::spawn().await;
    let b = a.replica().await.unwrap();
    let (status, created) = json(
        a.post(
            "/api/v1/api-keys",
            &json!({"name": "replicated", "scopes": ["read"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    // Used twice on B: the second use is served from B's cache.
    for _ in 0..2 {
        assert_eq!(status_as(&b, &key, "/api/v1/agents").await, 200);
    }
    let (status, revoked): (u16, Value) =
        json(a.delete(&format!("/api/v1/api-keys/{id}")).await).await;
    assert_eq!((status, revoked["revoked"].as_bool()), (200, Some(true)));
    assert_eq!(status_as(&a, &key, "/api/v1/agents").await, 401);
    eventually("B refuses the revoked key", || async {
        status_as(&b, &key, "/api/v1/agents").await == 401
    })
    .await;
}

#[tokio::test]
async fn a_role_change_on_one_replica_applies_on_another() {
    let a = TestApp::spawn().await;
    let b = a.replica().await.unwrap();
    let (user_id, password) = a.create_user("casey", "editor").await;
    let token = b.login("casey", &password).await;
    // An editor may create agents.
    let create = |name: &'static str| {
        let token = token.clone();
        let b = &b;
        async move {
            b.request_as(
                Some(&token),
                Method::POST,
                "/api/v1/agents",
                Some(&json!({"name": name})),
            )
            .await
            .status()
            .as_u16()
        }
    };
    assert_eq!(create("By Editor").await, 201);
    let (status, _) = json(
        a.patch(
            &format!("/api/v1/users/{user_id}"),
            &json!({"role": "viewer"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let mut n = 0;
    eventually("B treats the user as a viewer", || {
        n += 1;
        let name: &'static str = if n % 2 == 0 { "Try Even" } else { "Try Odd" };
        async move { create(name).await == 403 }
    })
    .await;
}
