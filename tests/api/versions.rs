//! Agent versions: publishing, listing, reading, restoring; immutability, errors, persistence.

use agentry_test_harness::{TestApp, json};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::{assert_error, create, seed_app};

/// Publishes `agent` (id or key) with an optional JSON body, asserting 201.
async fn publish(app: &TestApp, agent: &str, body: Option<&Value>) -> Value {
    let path = format!("/api/v1/agents/{agent}/versions");
    let res = match body {
        Some(b) => app.post(&path, b).await,
        None => app.client().post(app.url(&path)).send().await.unwrap(),
    };
    let (status, json) = json(res).await;
    assert_eq!(status, 201, "publish failed: {json}");
    json
}

async fn get_agent(app: &TestApp, agent: &str) -> Value {
    let (status, body) = json(app.get(&format!("/api/v1/agents/{agent}")).await).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn numbers(list: &Value) -> Vec<u64> {
    list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn publish_twice_and_list_newest_first() {
    let app = seed_app().await;
    let a = create(
        &app,
        json!({"name": "Support Bot", "instructions": "Be kind.", "model": "gpt-4o"}),
    )
    .await;
    let id = a["id"].as_str().unwrap();

    // No body at all, then a note, by key and by id.
    let v1 = publish(&app, "support-bot", None).await;
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["agent_id"], a["id"]);
    assert_eq!(v1["note"], Value::Null);
    assert_eq!(
        v1["created_by"], a["created_by"],
        "the publisher is recorded, as the agent's creator is"
    );
    assert!(v1["created_at"].as_str().unwrap().ends_with('Z'), "{v1}");
    assert_eq!(v1["agent"], a, "the snapshot is the agent as it was");
    let res = app
        .post(
            &format!("/api/v1/agents/{id}/versions"),
            &json!({"note": "second"}),
        )
        .await;
    assert_eq!(
        res.headers().get("location").unwrap(),
        &format!("/api/v1/agents/{id}/versions/2")
    );
    let (status, v2) = json(res).await;
    assert_eq!(
        (status, &v2["version"], &v2["note"]),
        (201, &json!(2), &json!("second"))
    );
    // `{}` is accepted too, and the /v1 alias serves the same resource.
    let (status, v3) = json(
        app.post("/v1/agents/support-bot/versions", &json!({}))
            .await,
    )
    .await;
    assert_eq!((status, &v3["version"]), (201, &json!(3)), "{v3}");

    let (status, list) = json(app.get("/api/v1/agents/support-bot/versions").await).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(numbers(&list), [3, 2, 1]);
    assert_eq!(
        (&list["total"], &list["limit"], &list["offset"]),
        (&json!(3), &json!(20), &json!(0))
    );
    assert_eq!(list["versions"][1], v2);
    let (_, page) = json(
        app.get(&format!("/api/v1/agents/{id}/versions?limit=2&offset=1"))
            .await,
    )
    .await;
    assert_eq!(numbers(&page), [2, 1]);
    assert_eq!((&page["total"], &page["limit"]), (&json!(3), &json!(2)));
    let (status, body) = json(app.get("/api/v1/agents/support-bot/versions?limit=0").await).await;
    assert_eq!(
        assert_error(status, &body, 400, "VALIDATION_ERROR")["details"]["field"],
        "limit"
    );
}

#[tokio::test]
async fn get_one_version() {
    let app = seed_app().await;
    let a = create(
        &app,
        json!({"name": "Reader", "instructions": "v1", "tags": ["x"], "temperature": 0.25}),
    )
    .await;
    let published = publish(&app, "reader", Some(&json!({"note": "first cut"}))).await;
    for path in [
        "/api/v1/agents/reader/versions/1".to_owned(),
        format!("/api/v1/agents/{}/versions/1", a["id"].as_str().unwrap()),
        "/v1/agents/reader/versions/01/".to_owned(),
    ] {
        let (status, got) = json(app.get(&path).await).await;
        assert_eq!(status, 200, "{path}: {got}");
        assert_eq!(got, published, "{path}");
    }
    assert_eq!(published["note"], "first cut");
    assert_eq!(published["agent"], a);
}

#[tokio::test]
async fn a_published_snapshot_is_immutable() {
    let app = seed_app().await;
    create(
        &app,
        json!({"name": "Fixed", "instructions": "Old instructions.", "model": "gpt-4o"}),
    )
    .await;
    let v1 = publish(&app, "fixed", None).await;
    let (status, patched) = json(
        app.patch(
            "/api/v1/agents/fixed",
            &json!({"instructions": "New instructions.", "model": "claude-sonnet-4", "tags": ["new"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    let (_, got) = json(app.get("/api/v1/agents/fixed/versions/1").await).await;
    assert_eq!(got, v1);
    assert_eq!(got["agent"]["instructions"], "Old instructions.");
    assert_eq!(got["agent"]["model"], "openai-prod/gpt-4o");
    assert_eq!(got["agent"]["tags"], json!([]));
    let live = get_agent(&app, "fixed").await;
    assert_eq!(live["instructions"], "New instructions.");
    // The next version snapshots the edited definition.
    let v2 = publish(&app, "fixed", None).await;
    assert_eq!(v2["agent"], live);
}

#[tokio::test]
async fn restore_brings_back_the_definition_and_keeps_key_and_status() {
    let app = seed_app().await;
    let a = create(
        &app,
        json!({"name": "Restorable", "instructions": "Version one.", "model": "gpt-4o",
               "temperature": 0.3, "top_p": 0.9, "tags": ["one"], "description": "first"}),
    )
    .await;
    publish(&app, "restorable", Some(&json!({"note": "good one"}))).await;
    let (status, changed) = json(
        app.patch(
            "/api/v1/agents/restorable",
            &json!({"instructions": "Version two.", "model": "claude-sonnet-4", "temperature": 1.5,
                    "top_p": null, "max_tokens": 50, "tags": ["two"], "description": null,
                    "key": "restorable-v2", "status": "draft"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{changed}");

    let (status, restored) = json(
        app.post(
            "/api/v1/agents/restorable-v2/versions/1/restore",
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["id"], a["id"]);
    assert_eq!(restored["key"], "restorable-v2", "the key is kept");
    assert_eq!(restored["status"], "draft", "the status is kept");
    assert_eq!(restored["created_at"], a["created_at"]);
    for field in [
        "name",
        "instructions",
        "model",
        "provider",
        "model_name",
        "temperature",
        "top_p",
        "max_tokens",
        "config",
        "tags",
        "description",
        "tools",
        "type",
        "cluster",
    ] {
        assert_eq!(restored[field], a[field], "{field} comes back");
    }
    assert_eq!(
        get_agent(&app, "restorable-v2").await,
        restored,
        "it is stored"
    );
    // Restoring does not publish: version 1 is still the only one.
    let (_, list) = json(app.get("/api/v1/agents/restorable-v2/versions").await).await;
    assert_eq!(numbers(&list), [1]);
    let (status, body) = json(
        app.post(
            "/api/v1/agents/restorable-v2/versions/9/restore",
            &json!({}),
        )
        .await,
    )
    .await;
    assert_error(status, &body, 404, "NOT_FOUND");
}

#[tokio::test]
async fn restoring_a_name_taken_since_is_a_conflict() {
    let app = seed_app().await;
    create(&app, json!({"name": "Alpha"})).await;
    publish(&app, "alpha", None).await;
    let (status, _) = json(
        app.patch("/api/v1/agents/alpha", &json!({"name": "Beta"}))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    create(&app, json!({"name": "Alpha", "key": "other-alpha"})).await;
    let (status, body) = json(
        app.client()
            .post(app.url("/api/v1/agents/alpha/versions/1/restore"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let err = assert_error(status, &body, 409, "CONFLICT");
    assert_eq!(err["details"]["field"], "name");
    assert_eq!(
        get_agent(&app, "alpha").await["name"],
        "Beta",
        "nothing changed"
    );
}

#[tokio::test]
async fn unknown_and_malformed_versions_and_agents() {
    let app = seed_app().await;
    create(&app, json!({"name": "Lonely"})).await;
    publish(&app, "lonely", None).await;
    for path in [
        "/api/v1/agents/lonely/versions/2",
        "/api/v1/agents/lonely/versions/4294967295",
        "/api/v1/agents/lonely/versions/99999999999999999999",
    ] {
        let (status, body) = json(app.get(path).await).await;
        let err = assert_error(status, &body, 404, "NOT_FOUND");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains("lonely") && message.contains("version"),
            "{message}"
        );
        assert_eq!(err["details"]["resource"], "version", "{body}");
    }
    for bad in ["0", "-1", "abc", "1.5", "%2B1", "1e3", "%20"] {
        for (method, path) in [
            ("GET", format!("/api/v1/agents/lonely/versions/{bad}")),
            (
                "POST",
                format!("/api/v1/agents/lonely/versions/{bad}/restore"),
            ),
        ] {
            let res = if method == "GET" {
                app.get(&path).await
            } else {
                app.post(&path, &json!({})).await
            };
            let (status, body) = json(res).await;
            let err = assert_error(status, &body, 400, "VALIDATION_ERROR");
            assert_eq!(
                err["details"]["field"], "version",
                "{method} {path}: {body}"
            );
        }
    }
    let ghost_id = "agent_0193a0b2c3d47e8f9a0b1c2d3e4f5a6b";
    for agent in ["nobody", ghost_id, "Not%20A%20Key"] {
        let base = format!("/api/v1/agents/{agent}/versions");
        let (status, body) = json(app.get(&base).await).await;
        assert_error(status, &body, 404, "AGENT_NOT_FOUND");
        let (status, body) = json(app.post(&base, &json!({})).await).await;
        assert_error(status, &body, 404, "AGENT_NOT_FOUND");
        let (status, body) = json(app.get(&format!("{base}/1")).await).await;
        assert_error(status, &body, 404, "AGENT_NOT_FOUND");
        let (status, body) = json(app.post(&format!("{base}/1/restore"), &json!({})).await).await;
        assert_error(status, &body, 404, "AGENT_NOT_FOUND");
    }
    let (status, body) = json(app.delete("/api/v1/agents/lonely/versions/1").await).await;
    assert_error(status, &body, 405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn bad_publish_bodies_are_rejected_and_store_nothing() {
    let app = seed_app().await;
    create(&app, json!({"name": "Picky"})).await;
    let path = "/api/v1/agents/picky/versions";
    let cases: Vec<(Value, &str)> = vec![
        (json!({"note": "n".repeat(2001)}), "note"),
        (json!({"note": "nul \u{0} inside"}), "note"),
        (json!({"note": 42}), "note"),
        (json!({"note": "ok", "bogus": true}), "bogus"),
    ];
    for (body, field) in cases {
        let (status, got) = json(app.post(path, &body).await).await;
        let err = assert_error(status, &got, 400, "VALIDATION_ERROR");
        assert_eq!(err["details"]["field"], field, "{body}: {got}");
    }
    for (ct, raw, code, want) in [
        (
            Some("application/json"),
            "{\"note\": ",
            400,
            "INVALID_REQUEST",
        ),
        (Some("application/json"), "[1]", 400, "VALIDATION_ERROR"),
        (
            Some("text/plain"),
            "{\"note\": \"x\"}",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (None, "{\"note\": \"x\"}", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ] {
        let mut req = app.client().post(app.url(path)).body(raw);
        if let Some(ct) = ct {
            req = req.header(CONTENT_TYPE, ct);
        }
        let (status, got) = json(req.send().await.unwrap()).await;
        assert_error(status, &got, code, want);
    }
    let (_, list) = json(app.get(path).await).await;
    assert_eq!(list["total"], 0, "nothing was published: {list}");
    // The longest note is fine, and a whitespace-only body with a JSON type is no body.
    let v = publish(&app, "picky", Some(&json!({"note": "n".repeat(2000)}))).await;
    assert_eq!(v["note"].as_str().unwrap().chars().count(), 2000);
    let res = app
        .client()
        .post(app.url(path))
        .header(CONTENT_TYPE, "application/json")
        .body("  \n")
        .send()
        .await
        .unwrap();
    let (status, v2) = json(res).await;
    assert_eq!(
        (status, &v2["version"], &v2["note"]),
        (201, &json!(2), &Value::Null)
    );
}

#[tokio::test]
async fn concurrent_publishes_get_consecutive_numbers() {
    let app = seed_app().await;
    create(&app, json!({"name": "Busy"})).await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let request = app
                .client()
                .post(app.url("/api/v1/agents/busy/versions"))
                .json(&json!({"note": format!("n{i}")}));
            tokio::spawn(async move { json(request.send().await.unwrap()).await })
        })
        .collect();
    let mut got: Vec<u64> = Vec::new();
    for task in tasks {
        let (status, v) = task.await.unwrap();
        assert_eq!(status, 201, "{v}");
        got.push(v["version"].as_u64().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, [1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn deleting_the_agent_removes_its_versions() {
    let app = seed_app().await;
    let a = create(&app, json!({"name": "Doomed"})).await;
    publish(&app, "doomed", None).await;
    publish(&app, "doomed", None).await;
    let (status, _) = json(app.delete("/api/v1/agents/doomed").await).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/agents/doomed/versions".to_owned(),
        "/api/v1/agents/doomed/versions/1".to_owned(),
        format!("/api/v1/agents/{}/versions/2", a["id"].as_str().unwrap()),
    ] {
        let (status, body) = json(app.get(&path).await).await;
        assert_error(status, &body, 404, "AGENT_NOT_FOUND");
    }
    // A new agent with the same name and key starts from version 1.
    create(&app, json!({"name": "Doomed"})).await;
    let (_, list) = json(app.get("/api/v1/agents/doomed/versions").await).await;
    assert_eq!(list["total"], 0, "{list}");
    assert_eq!(publish(&app, "doomed", None).await["version"], 1);
}

#[tokio::test]
async fn versions_survive_a_restart() {
    let app = seed_app().await;
    create(
        &app,
        json!({"name": "Durable", "instructions": "keep me", "model": "gpt-4o", "temperature": 0.1}),
    )
    .await;
    let v1 = publish(&app, "durable", Some(&json!({"note": "before restart"}))).await;
    let v2 = publish(&app, "durable", None).await;
    let app = app.restart().await.unwrap();
    let (status, list) = json(app.get("/api/v1/agents/durable/versions").await).await;
    assert_eq!(status, 200);
    assert_eq!(list["versions"], json!([v2, v1]));
    let (_, got) = json(app.get("/api/v1/agents/durable/versions/1").await).await;
    assert_eq!(got, v1);
    assert_eq!(publish(&app, "durable", None).await["version"], 3);
}

#[tokio::test]
async fn the_openapi_document_describes_versions() {
    let app = TestApp::spawn().await;
    let (_, doc) = json(app.get("/openapi.json").await).await;
    let paths = &doc["paths"];
    for (path, method) in [
        ("/api/v1/agents/{agent}/versions", "post"),
        ("/api/v1/agents/{agent}/versions", "get"),
        ("/api/v1/agents/{agent}/versions/{version}", "get"),
        ("/api/v1/agents/{agent}/versions/{version}/restore", "post"),
    ] {
        assert_eq!(
            paths[path][method]["tags"],
            json!(["versions"]),
            "{method} {path}"
        );
    }
    assert!(doc["components"]["schemas"]["VersionView"].is_object());
}

#[tokio::test]
async fn the_publisher_is_recorded() {
    let app = TestApp::spawn().await;
    create(&app, json!({"name": "Bot"})).await;
    let (_, me) = json(app.get("/api/v1/auth/me").await).await;
    let by_user = publish(&app, "bot", None).await;
    assert_eq!(by_user["created_by"], me["id"], "{by_user}");
    assert!(me["id"].as_str().unwrap().starts_with("user_"), "{me}");

    let key = app.create_api_key(&["write"], None).await;
    let (_, key_me) = json(
        app.request_as(Some(&key), reqwest::Method::GET, "/api/v1/auth/me", None)
            .await,
    )
    .await;
    let (status, by_key) = json(
        app.request_as(
            Some(&key),
            reqwest::Method::POST,
            "/api/v1/agents/bot/versions",
            Some(&json!({"note": "from CI"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{by_key}");
    assert_eq!(
        by_key["created_by"],
        format!("key:{}", key_me["id"].as_str().unwrap()),
        "{by_key}"
    );
    let (_, v1) = json(app.get("/api/v1/agents/bot/versions/1").await).await;
    assert_eq!(
        v1["created_by"], me["id"],
        "stored, not only answered: {v1}"
    );
}
