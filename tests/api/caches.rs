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

/// Asks agent `cached` on `app` through the Responses API, continuing `previous` when given.
async fn respond(app: &TestApp, input: &str, previous: Option<&str>) -> (u16, Value) {
    let mut body = json!({"model": "cached", "input": input});
    if let Some(p) = previous {
        body["previous_response_id"] = json!(p);
    }
    json(app.post("/v1/responses", &body).await).await
}

/// The user texts of a response's conversation up to its question, oldest first.
async fn inputs_of(app: &TestApp, id: &str) -> Vec<String> {
    let (status, items) = json(
        app.get(&format!("/v1/responses/{id}/input_items?order=asc"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{items}");
    items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            item["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn an_answer_continued_on_another_replica_is_not_continued_from_a_stale_cache() {
    let a = TestApp::spawn().await;
    let b = a.replica().await.unwrap();
    let (status, _) = json(a.post("/api/v1/agents", &json!({"name": "Cached"})).await).await;
    assert_eq!(status, 201);
    // A stores the first turn and keeps its tail.
    let (status, first) = respond(&a, "one", None).await;
    assert_eq!(status, 200, "{first}");
    let first_id = first["id"].as_str().unwrap();
    let line = first["conversation"]["id"].as_str().unwrap().to_owned();
    // B continues it (reading the database): the answer is no longer the newest.
    let (status, there) = respond(&b, "elsewhere", Some(first_id)).await;
    assert_eq!(status, 200, "{there}");
    assert_eq!(there["conversation"]["id"], line.as_str());
    // A's tail still names the first answer as the newest; the store refuses the append, and
    // the turn becomes a branch holding the line up to the first answer.
    let (status, here) = respond(&a, "here", Some(first_id)).await;
    assert_eq!(status, 200, "{here}");
    assert_ne!(here["conversation"]["id"], line.as_str());
    let there_id = there["id"].as_str().unwrap();
    let here_id = here["id"].as_str().unwrap();
    assert_eq!(inputs_of(&a, there_id).await, ["one", "elsewhere"]);
    assert_eq!(inputs_of(&a, here_id).await, ["one", "here"]);
    // And a chain on A goes on from its own answers.
    let (status, next) = respond(&a, "more", Some(here_id)).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["conversation"]["id"], here["conversation"]["id"]);
    assert_eq!(
        inputs_of(&a, next["id"].as_str().unwrap()).await,
        ["one", "here", "more"]
    );
}

#[tokio::test]
async fn a_response_deleted_on_one_replica_cannot_be_continued_on_another() {
    let a = TestApp::spawn().await;
    let b = a.replica().await.unwrap();
    let (status, _) = json(a.post("/api/v1/agents", &json!({"name": "Cached"})).await).await;
    assert_eq!(status, 201);
    let (_, first) = respond(&a, "one", None).await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    let (status, deleted) = json(b.delete(&format!("/v1/responses/{first_id}")).await).await;
    assert_eq!(status, 200, "{deleted}");
    // A kept the conversation's tail when it stored the turn; the deletion empties it
    // within a sync interval, after which A refuses before it calls the model: a streamed
    // request is answered 404, not a stream that fails at its end.
    eventually("A refuses the deleted response", || async {
        let res = a
            .post(
                "/v1/responses",
                &json!({"model": "cached", "input": "two", "stream": true,
                        "previous_response_id": first_id}),
            )
            .await;
        res.status() == 404
    })
    .await;
}
