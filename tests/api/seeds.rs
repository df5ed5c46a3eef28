//! Every agent request example of the seed documents, at its documented path.

use agentry_test_harness::json;
use serde_json::json;

use crate::{create, seed_app};

#[tokio::test]
async fn seed_000_create_list_get_agent() {
    let app = seed_app().await;
    let body = json!({"name":"technical-support-agent","description":"Agent specialized in technical support queries","preamble":"You are a knowledgeable technical support specialist. Provide clear, step-by-step solutions to technical problems."});
    let created = create(&app, body).await;
    assert!(created["id"].as_str().unwrap().starts_with("agent_"));
    assert_eq!(created["name"], "technical-support-agent");
    assert_eq!(
        created["description"],
        "Agent specialized in technical support queries"
    );
    assert!(
        created["instructions"]
            .as_str()
            .unwrap()
            .starts_with("You are a knowledgeable")
    );
    assert_eq!(
        created["model"], "mock/echo",
        "agents saved without a model get the default model"
    );
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, list) = json(app.get("/api/v1/agents").await).await;
    assert_eq!(status, 200);
    assert_eq!(list["agents"][0]["id"], created["id"]);
    assert_eq!(list["total"], 1);

    let id = created["id"].as_str().unwrap();
    let (status, got) = json(app.get(&format!("/api/v1/agents/{id}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(got, created);
}

#[tokio::test]
async fn seed_001_agents_crud_with_camel_case_input() {
    let app = seed_app().await;
    let created = create(
        &app,
        json!({"name":"Customer Support","content":"You are a helpful customer support agent...","llmModel":"gpt-4o","description":"Main support chatbot","tags":["support","production"]}),
    )
    .await;
    assert_eq!(created["status"], "active");
    assert_eq!(created["model"], "openai-prod/gpt-4o");
    assert_eq!(
        created["instructions"],
        "You are a helpful customer support agent..."
    );
    assert_eq!(created["key"], "customer-support");
    assert_eq!(created["tags"], json!(["support", "production"]));
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, list) = json(
        app.get("/api/v1/agents?limit=20&offset=0&tags=support&status=active")
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["limit"], 20);

    let (status, patched) = json(
        app.patch(
            &format!("/api/v1/agents/{id}"),
            &json!({"content":"Updated system prompt...","tags":["support","v2"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(patched["instructions"], "Updated system prompt...");
    assert_eq!(patched["tags"], json!(["support", "v2"]));
    assert_eq!(
        patched["name"], "Customer Support",
        "PATCH keeps what it is not given"
    );
    assert_eq!(patched["model"], "openai-prod/gpt-4o");
    assert!(patched["updated_at"].as_str().unwrap() >= created["updated_at"].as_str().unwrap());

    let (_, by_tag) = json(app.get("/api/v1/agents?tags=production").await).await;
    assert_eq!(by_tag["total"], 0, "the old tag is gone after the patch");

    let (status, deleted) = json(app.delete(&format!("/api/v1/agents/{id}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["success"], true);
    assert_eq!(deleted["message"], "Agent deleted");
    let (status, _) = json(app.get(&format!("/api/v1/agents/{id}")).await).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn seed_002_agents_at_v1_alias_with_config_object() {
    let app = seed_app().await;
    let (status, created) = json(
        app.post("/v1/agents/", &json!({"name":"my-agent","description":"Agent description","type":"chat","config":{"model":"gpt-4","temperature":0.7,"max_tokens":2000}}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["type"], "chat");
    assert_eq!(created["status"], "active");
    assert_eq!(
        created["config"],
        json!({"model":"openai-prod/gpt-4","temperature":0.7,"top_p":null,"max_tokens":2000})
    );
    assert_eq!(created["temperature"], 0.7);
    assert_eq!(created["max_tokens"], 2000);

    // The SDK example of the same document.
    let (status, sdk) = json(
        app.post(
            "/v1/agents/",
            &json!({"name":"test-agent","type":"chat","config":{"model":"gpt-4"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{sdk}");

    let (status, list) = json(
        app.get("/v1/agents/?limit=20&offset=0&type=chat&status=active")
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 2);
    assert_eq!(list["agents"][0]["name"], "test-agent", "newest first");

    let id = created["id"].as_str().unwrap();
    let (status, got) = json(app.get(&format!("/v1/agents/{id}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(got["id"], created["id"]);

    let (status, put) = json(
        app.put(
            &format!("/v1/agents/{id}"),
            &json!({"name":"my-agent","type":"assistant","config":{"model":"gpt-4o"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["type"], "assistant");
    assert_eq!(put["model"], "openai-prod/gpt-4o");
    assert_eq!(
        put["temperature"],
        serde_json::Value::Null,
        "PUT resets what it is not given"
    );
    assert_eq!(put["description"], serde_json::Value::Null);
    assert_eq!(put["key"], created["key"], "PUT keeps the key unless given");
    assert_eq!(put["created_at"], created["created_at"]);

    let (status, deleted) = json(app.delete(&format!("/v1/agents/{id}")).await).await;
    assert_eq!((status, &deleted["success"]), (200, &json!(true)));
}

#[tokio::test]
async fn seed_004_agents_by_key_and_cluster_filter() {
    let app = seed_app().await;
    let a = create(&app, json!({"name":"assistant","provider":"anthropic","model":"claude-sonnet-4","system_prompt":"You are a helpful assistant.","tools":[],"cluster":"my-cluster"})).await;
    assert_eq!(a["model"], "anthropic/claude-sonnet-4");
    assert_eq!(a["provider"], "anthropic");
    assert_eq!(a["model_name"], "claude-sonnet-4");
    create(&app, json!({"name":"intent-classifier","model":"anthropic/claude-sonnet-4","cluster":"customer-support","tools":[{"type":"http","name":"customer_db","url":"https://api.example.com/customers"}]})).await;

    let (status, got) = json(app.get("/api/v1/agents/assistant").await).await;
    assert_eq!(status, 200, "agents are addressable by key");
    assert_eq!(got["id"], a["id"]);

    let (_, list) = json(app.get("/api/v1/agents?cluster=customer-support").await).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["agents"][0]["tools"][0]["name"], "customer_db");
    assert_eq!(
        list["agents"][0]["tools"][0]["url"],
        "https://api.example.com/customers"
    );
}
