//! Agents: validation, uniqueness, partial and full updates, pagination, persistence.

use agentry_test_harness::{TestApp, json};
use serde_json::{Value, json};

use crate::{assert_error, create, seed_app};

async fn agent_count(app: &TestApp) -> u64 {
    let (_, list) = json(app.get("/api/v1/agents").await).await;
    list["total"].as_u64().unwrap()
}

#[tokio::test]
async fn every_invalid_field_is_named_and_nothing_is_stored() {
    let app = seed_app().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": "a", "temperature": 2.5}), "temperature"),
        (json!({"name": "a", "temperature": -0.1}), "temperature"),
        (
            json!({"name": "a", "config": {"temperature": 3}}),
            "config.temperature",
        ),
        (json!({"name": "a", "top_p": 1.01}), "top_p"),
        (json!({"name": "a", "topP": -1}), "top_p"),
        (json!({"name": "a", "maxTokens": 0}), "max_tokens"),
        (json!({"name": "a", "max_tokens": -3}), "max_tokens"),
        (
            json!({"name": "a", "config": {"max_tokens": 0}}),
            "config.max_tokens",
        ),
        (json!({"name": ""}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(129)}), "name"),
        (json!({"name": "a", "key": "Not A Slug"}), "key"),
        (json!({"name": "a", "key": "agent_reserved"}), "key"),
        (json!({"name": "a", "status": "deleted"}), "status"),
        (json!({"name": "a", "type": "Has Spaces"}), "type"),
        (json!({"name": "a", "tags": ["ok", "a,b"]}), "tags"),
        (json!({"name": "a", "tools": ["not-an-object"]}), "tools[0]"),
        (
            json!({"name": "a", "tools": [{"type": "http"}]}),
            "tools[0]",
        ),
        (json!({"name": "a", "cluster": "Bad Cluster"}), "cluster"),
        (
            json!({"name": "a", "preamble": "x", "content": "y"}),
            "content",
        ),
        (
            json!({"name": "a", "model": "gpt-4o", "llmModel": "gpt-4o"}),
            "llmModel",
        ),
        (
            json!({"name": "a", "description": "d".repeat(2001)}),
            "description",
        ),
        (json!({"description": "no name"}), "name"),
        (json!({"name": "***"}), "key"),
        (json!({"name": "a", "bogus": 1}), "bogus"),
        (json!({"name": 42}), "name"),
        (json!({"name": "a", "temperature": "hot"}), "temperature"),
        (json!({"name": "a", "provider": "anthropic"}), "provider"),
    ];
    for (body, field) in cases {
        let (status, res) = json(app.post("/api/v1/agents", &body).await).await;
        let err = assert_error(status, &res, 400, "VALIDATION_ERROR");
        assert_eq!(err["details"]["field"], field, "body {body} → {res}");
    }
    assert_eq!(
        agent_count(&app).await,
        0,
        "rejected input must store nothing"
    );
}

#[tokio::test]
async fn unknown_model_is_a_validation_error_listing_available_models() {
    let app = seed_app().await;
    let (status, res) = json(
        app.post("/api/v1/agents", &json!({"name": "a", "llmModel": "gpt-5"}))
            .await,
    )
    .await;
    let err = assert_error(status, &res, 400, "VALIDATION_ERROR");
    assert_eq!(err["details"]["field"], "llmModel");
    let models = err["details"]["available_models"].as_array().unwrap();
    assert!(
        models.contains(&json!("mock/echo")) && models.contains(&json!("openai-prod/gpt-4o")),
        "{res}"
    );

    for (body, field) in [
        (
            json!({"name": "a", "model_ref": {"provider_id": "openai-prod", "model_name": "gpt-5"}}),
            "model_ref",
        ),
        (json!({"name": "a", "model": "nope/echo"}), "model"),
        (
            json!({"name": "a", "config": {"model": "anthropic/gpt-4"}}),
            "config.model",
        ),
        (
            json!({"name": "a", "provider": "openai-prod", "model": "claude-sonnet-4"}),
            "model",
        ),
    ] {
        let (status, res) = json(app.post("/api/v1/agents", &body).await).await;
        let err = assert_error(status, &res, 400, "VALIDATION_ERROR");
        assert_eq!(err["details"]["field"], field, "{body} → {res}");
    }
    assert_eq!(agent_count(&app).await, 0);
}

#[tokio::test]
async fn model_references_resolve_in_every_spelling() {
    let app = seed_app().await;
    for (i, model) in [
        json!("openai-prod/gpt-4"),
        json!("gpt-4"),
        json!({"provider_id": "openai-prod", "model_name": "gpt-4"}),
    ]
    .into_iter()
    .enumerate()
    {
        let a = create(&app, json!({"name": format!("m{i}"), "model": model})).await;
        assert_eq!(a["model"], "openai-prod/gpt-4");
    }
    let a = create(
        &app,
        json!({"name": "seed0", "model_ref": {"provider_id": "mock", "model_name": "echo"}}),
    )
    .await;
    assert_eq!(a["model"], "mock/echo");
}

#[tokio::test]
async fn bare_model_served_by_two_providers_is_ambiguous() {
    let app = TestApp::builder()
        .provider("a", "mock", None, &["same"])
        .provider("b", "mock", None, &["same"])
        .spawn()
        .await;
    let (status, res) = json(
        app.post("/api/v1/agents", &json!({"name": "x", "model": "same"}))
            .await,
    )
    .await;
    let err = assert_error(status, &res, 400, "VALIDATION_ERROR");
    assert_eq!(err["details"]["candidates"], json!(["a/same", "b/same"]));
    let ok = create(&app, json!({"name": "x", "model": "b/same"})).await;
    assert_eq!(ok["model"], "b/same");
}

#[tokio::test]
async fn names_and_keys_are_unique() {
    let app = seed_app().await;
    let first = create(&app, json!({"name": "Support Bot"})).await;
    assert_eq!(first["key"], "support-bot");

    let (status, res) = json(
        app.post(
            "/api/v1/agents",
            &json!({"name": "Support Bot", "key": "other"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 409, "CONFLICT")["details"]["field"],
        "name"
    );
    let (status, res) = json(
        app.post(
            "/api/v1/agents",
            &json!({"name": "Another", "key": "support-bot"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 409, "CONFLICT")["details"]["field"],
        "key"
    );
    let (status, res) = json(
        app.post("/api/v1/agents", &json!({"name": "support bot"}))
            .await,
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 409, "CONFLICT")["details"]["field"],
        "key",
        "derived keys collide too"
    );

    let second = create(&app, json!({"name": "Second"})).await;
    let path = format!("/api/v1/agents/{}", second["id"].as_str().unwrap());
    let (status, res) = json(app.patch(&path, &json!({"name": "Support Bot"})).await).await;
    assert_error(status, &res, 409, "CONFLICT");
    let (_, unchanged) = json(app.get(&path).await).await;
    assert_eq!(
        unchanged["name"], "Second",
        "a refused update changes nothing"
    );
    assert_eq!(agent_count(&app).await, 2);
}

#[tokio::test]
async fn patch_changes_only_given_fields_and_null_clears() {
    let app = seed_app().await;
    let a = create(&app, json!({"name": "p", "description": "d", "temperature": 0.5, "top_p": 0.9, "maxTokens": 100, "tags": ["x"]})).await;
    let path = format!("/api/v1/agents/{}", a["key"].as_str().unwrap());
    let (status, p) = json(
        app.patch(
            &path,
            &json!({"description": null, "temperature": null, "status": "draft"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["description"], Value::Null);
    assert_eq!(p["temperature"], Value::Null);
    assert_eq!(p["top_p"], 0.9);
    assert_eq!(p["max_tokens"], 100);
    assert_eq!(p["status"], "draft");
    assert_eq!(p["tags"], json!(["x"]));

    let (status, p) = json(app.patch(&path, &json!({"key": "renamed-key"})).await).await;
    assert_eq!((status, &p["key"]), (200, &json!("renamed-key")));
    let (status, _) = json(app.get("/api/v1/agents/renamed-key").await).await;
    assert_eq!(status, 200);

    let (status, res) = json(app.patch(&path, &json!({"temperature": 1})).await).await;
    assert_eq!(status, 404, "the old key no longer names the agent: {res}");
    let (status, res) = json(
        app.patch("/api/v1/agents/renamed-key", &json!({"temperature": 9}))
            .await,
    )
    .await;
    assert_error(status, &res, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn missing_agents_are_404_and_deletes_are_idempotent() {
    let app = seed_app().await;
    for path in [
        "/api/v1/agents/agent_0193a0b2c3d47e8f9a0b1c2d3e4f5a6b",
        "/api/v1/agents/no-such-key",
        "/api/v1/agents/NOT%20A%20KEY",
    ] {
        let (status, res) = json(app.get(path).await).await;
        let err = assert_error(status, &res, 404, "AGENT_NOT_FOUND");
        assert_eq!(err["message"], "Agent not found");
        let (status, res) = json(app.patch(path, &json!({"description": "x"})).await).await;
        assert_error(status, &res, 404, "AGENT_NOT_FOUND");
        let (status, res) = json(app.put(path, &json!({"name": "x"})).await).await;
        assert_error(status, &res, 404, "AGENT_NOT_FOUND");
    }
    let a = create(&app, json!({"name": "gone"})).await;
    let path = format!("/api/v1/agents/{}", a["id"].as_str().unwrap());
    let (_, first) = json(app.delete(&path).await).await;
    assert_eq!(
        (first["success"].clone(), first["deleted"].clone()),
        (json!(true), json!(true))
    );
    let (status, second) = json(app.delete(&path).await).await;
    assert_eq!(
        (status, second["success"].clone(), second["deleted"].clone()),
        (200, json!(true), json!(false))
    );
}

#[tokio::test]
async fn list_paginates_newest_first_and_filters() {
    let app = seed_app().await;
    for i in 0..25 {
        let tags = if i % 2 == 0 {
            json!(["even", "all"])
        } else {
            json!(["odd", "all"])
        };
        let status = if i % 5 == 0 { "draft" } else { "active" };
        create(&app, json!({"name": format!("agent {i:02}"), "tags": tags, "status": status, "type": if i < 3 { "task" } else { "chat" }})).await;
    }
    let (_, page1) = json(app.get("/api/v1/agents").await).await;
    assert_eq!(
        (
            page1["total"].as_u64(),
            page1["limit"].as_u64(),
            page1["offset"].as_u64()
        ),
        (Some(25), Some(20), Some(0))
    );
    assert_eq!(page1["agents"].as_array().unwrap().len(), 20);
    assert_eq!(page1["agents"][0]["name"], "agent 24");
    let (_, page2) = json(app.get("/api/v1/agents?limit=10&offset=20").await).await;
    let names: Vec<&str> = page2["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["agent 04", "agent 03", "agent 02", "agent 01", "agent 00"]
    );

    let total = |q: &'static str| {
        let app = &app;
        async move {
            json(app.get(&format!("/api/v1/agents?{q}")).await).await.1["total"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(total("tags=even").await, 13);
    assert_eq!(total("tags=even,all").await, 13);
    assert_eq!(
        total("tags=even,odd").await,
        0,
        "tags filter requires every tag"
    );
    assert_eq!(total("status=draft").await, 5);
    assert_eq!(total("status=draft&tags=odd").await, 2);
    assert_eq!(total("type=task").await, 3);
    assert_eq!(total("cluster=none-here").await, 0);
    assert_eq!(
        total("offset=1000").await,
        25,
        "an offset past the end is an empty page with the total"
    );

    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("status=running", "status"),
    ] {
        let (status, res) = json(app.get(&format!("/api/v1/agents?{q}")).await).await;
        assert_eq!(
            assert_error(status, &res, 400, "VALIDATION_ERROR")["details"]["field"],
            field,
            "{q}"
        );
    }
}

#[tokio::test]
async fn agents_survive_a_restart() {
    let app = seed_app().await;
    let a = create(&app, json!({"name": "durable", "content": "keep me", "llmModel": "gpt-4o", "tags": ["t"], "temperature": 0.3})).await;
    let app = app.restart().await.unwrap();
    let (status, got) = json(
        app.get(&format!("/api/v1/agents/{}", a["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got, a, "every field survives a restart");
}
