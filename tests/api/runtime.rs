//! Runs, chat, streaming, history and conversations, end to end through the mock provider.

use std::time::Duration;

use agentry_test_harness::{TestApp, json};
use serde_json::{Value, json};

use crate::{assert_error, create, seed_app};

/// Parses an SSE body into its `data:` JSON events (keep-alive comments skipped).
pub fn sse_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("bad SSE data {d}: {e}")))
        .collect()
}

async fn sse(app: &TestApp, path: &str, body: &Value) -> (u16, String, Vec<Value>) {
    let res = app.post(path, body).await;
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    let events = if ct.starts_with("text/event-stream") {
        sse_events(&text)
    } else {
        Vec::new()
    };
    (status, ct, events)
}

#[tokio::test]
async fn seed_000_run_exact_schema_and_log() {
    let app = seed_app().await;
    let body = json!({"run_id":"eval_123e4567-e89b-12d3-a456-426614174000","preamble":"You are a helpful customer support assistant.","prompt":"I need help with returning a product I bought last week","model_ref":{"provider_id":"openai-prod","model_name":"gpt-4"},"log_meta":{"user_id":"user_456","session_id":"session_789","component":"customer-support"}});
    let (status, run) = json(app.post("/api/v1/runs", &body).await).await;
    assert_eq!(status, 200, "{run}");
    let mut keys: Vec<&String> = run.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["response", "run_id", "token_usage"],
        "exactly the documented fields"
    );
    assert_eq!(run["run_id"], "eval_123e4567-e89b-12d3-a456-426614174000");
    assert_eq!(
        run["response"], "I need help with returning a product I bought last week",
        "the mock echoes"
    );
    let usage = &run["token_usage"];
    assert!(
        usage["prompt_tokens"].as_u64().unwrap() > 0
            && usage["completion_tokens"].as_u64().unwrap() > 0
    );
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );

    let (status, logged) = json(
        app.get("/api/v1/runs/eval_123e4567-e89b-12d3-a456-426614174000")
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(logged["status"], "succeeded");
    assert_eq!(logged["model"], "openai-prod/gpt-4");
    assert_eq!(logged["log_meta"]["component"], "customer-support");

    create_runs(&app).await;
    let count = |q: &'static str| {
        let app = &app;
        async move {
            json(app.get(&format!("/api/v1/runs?{q}")).await).await.1["total"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(count("").await, 4);
    assert_eq!(count("user_id=user_456").await, 2);
    assert_eq!(count("session_id=session_789").await, 1);
    assert_eq!(count("component=customer-support").await, 2);
    assert_eq!(count("user_id=user_456&component=billing").await, 1);
    let (_, first) = json(app.get("/api/v1/runs?limit=1").await).await;
    assert_eq!(
        first["runs"][0]["log_meta"]["component"], "billing",
        "newest first"
    );

    let (status, dup) = json(app.post("/api/v1/runs", &body).await).await;
    assert_eq!(
        assert_error(status, &dup, 409, "CONFLICT")["details"]["field"],
        "run_id"
    );
}

async fn create_runs(app: &TestApp) {
    for meta in [
        json!({"user_id":"other","component":"customer-support"}),
        json!({}),
        json!({"user_id":"user_456","component":"billing"}),
    ] {
        let (status, r) = json(app.post("/api/v1/runs", &json!({"prompt":"hi","model_ref":{"provider_id":"mock","model_name":"echo"},"log_meta":meta})).await).await;
        assert_eq!(status, 200, "{r}");
        assert!(r["run_id"].as_str().unwrap().starts_with("run_"));
    }
}

#[tokio::test]
async fn seed_000_run_errors() {
    let app = seed_app().await;
    let (status, res) = json(app.post("/api/v1/runs", &json!({"run_id":"r1","preamble":"p","model_ref":{"provider_id":"openai-prod","model_name":"gpt-4"}})).await).await;
    let err = assert_error(status, &res, 400, "INVALID_REQUEST");
    assert_eq!(err["message"], "Missing required field: prompt");
    assert_eq!(
        err["details"],
        json!({"field":"prompt","reason":"Prompt field is required and cannot be empty"})
    );
    let (status, res) = json(
        app.post(
            "/api/v1/runs",
            &json!({"prompt":"  ","model_ref":{"provider_id":"openai-prod","model_name":"gpt-4"}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 400, "INVALID_REQUEST")["details"]["field"],
        "prompt"
    );
    let (status, res) = json(app.post("/api/v1/runs", &json!({"prompt":"x","model_ref":{"provider_id":"openai-prod","model_name":"gpt-4"},"temperature":5})).await).await;
    assert_eq!(
        assert_error(status, &res, 400, "INVALID_REQUEST")["details"]["field"],
        "temperature"
    );
    let (status, res) = json(
        app.post(
            "/api/v1/runs",
            &json!({"prompt":"a\u{0}b","model":"mock/echo"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 400, "INVALID_REQUEST")["details"]["field"],
        "prompt"
    );
    let (status, res) = json(app.post("/api/v1/runs", &json!({"prompt":"x"})).await).await;
    assert_eq!(
        assert_error(status, &res, 400, "INVALID_REQUEST")["details"]["field"],
        "model_ref"
    );
    let (status, res) = json(
        app.post(
            "/api/v1/runs",
            &json!({"prompt":"x","model_ref":{"provider_id":"openai-prod"}}),
        )
        .await,
    )
    .await;
    assert_error(status, &res, 400, "INVALID_REQUEST");

    let (status, res) = json(
        app.post(
            "/api/v1/runs",
            &json!({"prompt":"x","model_ref":{"provider_id":"openai-prod","model_name":"gpt-5"}}),
        )
        .await,
    )
    .await;
    let err = assert_error(status, &res, 404, "MODEL_NOT_FOUND");
    assert_eq!(err["message"], "The specified model was not found");
    assert_eq!(err["details"]["provider_id"], "openai-prod");
    assert_eq!(err["details"]["model_name"], "gpt-5");
    // As seed 000's example: the named provider's models first, by their bare names; then
    // the others, qualified.
    let available = err["details"]["available_models"].as_array().unwrap();
    assert_eq!(
        available[..3],
        [json!("gpt-4"), json!("gpt-4o"), json!("gpt-3.5-turbo")],
        "{err}"
    );
    assert!(
        available[3..].contains(&json!("mock/echo"))
            && available[3..].contains(&json!("anthropic/claude-sonnet-4"))
            && !available.contains(&json!("openai-prod/gpt-4")),
        "{err}"
    );
    // An unknown provider: every model, qualified.
    let (status, res) = json(
        app.post(
            "/api/v1/runs",
            &json!({"prompt":"x","model_ref":{"provider_id":"nope","model_name":"gpt-4"}}),
        )
        .await,
    )
    .await;
    let err = assert_error(status, &res, 404, "MODEL_NOT_FOUND");
    let available = err["details"]["available_models"].as_array().unwrap();
    assert!(
        available.contains(&json!("openai-prod/gpt-4")) && available.contains(&json!("mock/echo")),
        "{err}"
    );

    let (_, runs) = json(app.get("/api/v1/runs").await).await;
    assert_eq!(runs["total"], 0, "rejected runs are not logged");
    let (status, res) = json(app.get("/api/v1/runs/nope").await).await;
    assert_error(status, &res, 404, "NOT_FOUND");
}

#[tokio::test]
async fn provider_failures_are_502_and_logged() {
    let app = TestApp::builder()
        .provider("flaky", "mock", None, &["error-500", "error-401"])
        .spawn()
        .await;
    let (status, res) = json(
        app.post(
            "/api/v1/runs",
            &json!({"run_id":"f1","prompt":"x","model":"flaky/error-500"}),
        )
        .await,
    )
    .await;
    let err = assert_error(status, &res, 502, "PROVIDER_ERROR");
    assert_eq!(err["details"]["upstream_status"], 500);
    assert_eq!(err["details"]["provider_id"], "flaky");
    let (_, logged) = json(app.get("/api/v1/runs/f1").await).await;
    assert_eq!(logged["status"], "failed");
    assert!(logged["error"].as_str().unwrap().contains("500"));

    create(&app, json!({"name": "broken", "model": "flaky/error-401"})).await;
    let (status, res) = json(
        app.post(
            "/api/v1/agents/broken/chat",
            &json!({"message": "hi", "session_id": "s1"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 502, "PROVIDER_ERROR")["details"]["upstream_status"],
        401
    );
    let (status, res) = json(
        app.post(
            "/api/v1/agents/broken/stream",
            &json!({"message": "hi", "session_id": "s1"}),
        )
        .await,
    )
    .await;
    assert_error(status, &res, 502, "PROVIDER_ERROR");
    let (_, history) = json(app.get("/api/v1/agents/broken/chat/history").await).await;
    assert_eq!(
        history["messages"],
        json!([]),
        "a failed turn stores nothing"
    );
}

#[tokio::test]
async fn seed_002_chat_and_history() {
    let app = seed_app().await;
    let agent = create(&app, json!({"name":"my-agent","type":"chat","config":{"model":"gpt-4","temperature":0.7,"max_tokens":2000}})).await;
    let id = agent["id"].as_str().unwrap();
    let (status, reply) = json(app.post(&format!("/v1/agents/{id}/chat"), &json!({"message":"Hello, how can you help me?","session_id":"session-123","stream":false})).await).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(reply["message"], "Hello, how can you help me?");
    assert_eq!(reply["session_id"], "session-123");
    assert_eq!(reply["metadata"]["model"], "gpt-4");
    assert!(reply["metadata"]["tokens_used"].as_u64().unwrap() > 0);
    assert!(reply["timestamp"].as_str().unwrap().ends_with('Z'));

    let (status, second) = json(
        app.post(
            &format!("/v1/agents/{id}/chat"),
            &json!({"message":"And then?","session_id":"session-123"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{second}");
    json(
        app.post(
            &format!("/v1/agents/{id}/chat"),
            &json!({"message":"other session","session_id":"session-999"}),
        )
        .await,
    )
    .await;

    let (status, h) = json(
        app.get(&format!(
            "/v1/agents/{id}/chat/history?session_id=session-123"
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200, "{h}");
    let msgs = h["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(msgs[0]["content"], "Hello, how can you help me?");
    assert_eq!(msgs[3]["content"], "And then?");
    assert_eq!(msgs[1]["model"], "openai-prod/gpt-4");
    assert!(msgs[1]["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(msgs[1]["latency_ms"].is_u64());
    assert_eq!(h["has_more"], false);

    let (_, all) = json(app.get(&format!("/v1/agents/{id}/chat/history")).await).await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 6);
    let (_, page) = json(
        app.get(&format!("/v1/agents/{id}/chat/history?limit=2"))
            .await,
    )
    .await;
    assert_eq!(page["has_more"], true);
    assert_eq!(
        page["messages"][1]["content"], "other session",
        "the newest messages, oldest first"
    );
    let before = page["messages"][0]["created_at"].as_str().unwrap();
    let (_, older) = json(
        app.get(&format!(
            "/v1/agents/{id}/chat/history?limit=10&before={}",
            before.replace('+', "%2B")
        ))
        .await,
    )
    .await;
    assert_eq!(older["messages"].as_array().unwrap().len(), 4);
    assert_eq!(older["has_more"], false);

    for q in ["limit=0", "limit=201", "before=yesterday", "limit=x"] {
        let (status, res) = json(app.get(&format!("/v1/agents/{id}/chat/history?{q}")).await).await;
        assert_error(status, &res, 400, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn seed_004_chat_continues_a_conversation() {
    let app = seed_app().await;
    create(&app, json!({"name":"assistant","provider":"anthropic","model":"claude-sonnet-4","system_prompt":"You are a helpful assistant."})).await;
    let body = json!({"message":"Hello, I need help with my billing account.","conversation_id":"conv-456","context":{"user_id":"user-789","session_id":"session-101"}});
    let (status, r) = json(app.post("/api/v1/agents/assistant/chat", &body).await).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["response"], "Hello, I need help with my billing account.");
    assert_eq!(r["conversation_id"], "conv-456");
    assert!(r["agent_id"].as_str().unwrap().starts_with("agent_"));
    assert!(r["tokens_used"].as_u64().unwrap() > 0);
    assert!(r["response_time_ms"].is_u64());

    for m in [
        "Hello! How can you help me?",
        "I need help with data analysis",
    ] {
        let (status, _) = json(
            app.post(
                "/api/v1/agents/assistant/chat",
                &json!({"message": m, "conversation_id": "conv-001"}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200);
    }
    let (_, convs) = json(app.get("/api/v1/conversations?agent_id=assistant").await).await;
    assert_eq!(convs["total"], 2);
    let c001 = convs["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["session_id"] == "conv-001")
        .unwrap()
        .clone();
    assert_eq!(c001["message_count"], 4);
    let c456 = convs["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["session_id"] == "conv-456")
        .unwrap()
        .clone();
    assert_eq!(c456["context"]["user_id"], "user-789");

    let path = format!("/api/v1/conversations/{}", c001["id"].as_str().unwrap());
    let (status, detail) = json(app.get(&path).await).await;
    assert_eq!(status, 200);
    assert_eq!(detail["messages"].as_array().unwrap().len(), 4);
    let (_, del) = json(app.delete(&path).await).await;
    assert_eq!(del["deleted"], true);
    let (status, res) = json(app.get(&path).await).await;
    assert_error(status, &res, 404, "NOT_FOUND");
    let (_, del) = json(app.delete(&path).await).await;
    assert_eq!(del["deleted"], false);
}

#[tokio::test]
async fn seed_streaming_examples() {
    let app = seed_app().await;
    create(&app, json!({"name": "storyteller", "model": "gpt-4o"})).await;
    let (status, ct, events) = sse(
        &app,
        "/v1/agents/storyteller/chat",
        &json!({"message":"Tell me a story","session_id":"session-123","stream":true}),
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "text/event-stream"));
    assert_eq!(events.first().unwrap()["type"], "start");
    assert_eq!(events.first().unwrap()["session_id"], "session-123");
    let tokens: String = events
        .iter()
        .filter(|e| e["type"] == "token")
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, "Tell me a story");
    assert!(
        events.iter().filter(|e| e["type"] == "token").count() >= 4,
        "token by token"
    );
    let end = events.last().unwrap();
    assert_eq!(end["type"], "end");
    assert!(end["message_id"].as_str().unwrap().starts_with("msg_"));
    assert!(end["metadata"]["tokens_used"].as_u64().unwrap() > 0);
    assert_eq!(end["response"], "Tell me a story");

    let (status, _, events) = sse(
        &app,
        "/api/v1/agents/storyteller/stream",
        &json!({"message":"Can you help me analyze this data?","conversation_id":"conv-789"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        events[0],
        json!({"type":"start","session_id":"conv-789","conversation_id":"conv-789","message_id":events[0]["message_id"],"agent_id":events[0]["agent_id"]})
    );
    let end = events.last().unwrap();
    assert_eq!(end["response"], "Can you help me analyze this data?");
    assert!(end["tokens_used"].as_u64().unwrap() > 0);
    let (_, h) = json(
        app.get("/api/v1/agents/storyteller/chat/history?conversation_id=conv-789")
            .await,
    )
    .await;
    assert_eq!(
        h["messages"][1]["content"],
        "Can you help me analyze this data?"
    );
    assert_eq!(h["messages"][1]["status"], "complete");
    assert_eq!(h["messages"][1]["id"], end["message_id"]);
}

#[tokio::test]
async fn chat_input_errors() {
    let app = seed_app().await;
    create(&app, json!({"name": "a"})).await;
    create(&app, json!({"name": "old", "status": "archived"})).await;
    let (status, res) = json(
        app.post("/api/v1/agents/missing/chat", &json!({"message":"hi"}))
            .await,
    )
    .await;
    assert_error(status, &res, 404, "AGENT_NOT_FOUND");
    for (body, field) in [
        (json!({"message": "  "}), "message"),
        (json!({}), "message"),
        (
            json!({"message": "x", "session_id": "bad id"}),
            "session_id",
        ),
        (
            json!({"message": "x", "session_id": "a", "conversation_id": "b"}),
            "conversation_id",
        ),
        // A bad key is reported under the spelling the caller used (seed 004's here).
        (
            json!({"message": "x", "conversation_id": "bad id"}),
            "conversation_id",
        ),
        (
            json!({"message": "x", "session_id": "bad id", "conversation_id": "bad id"}),
            "session_id",
        ),
        (json!({"message": "x", "extra": 1}), "extra"),
        (json!({"message": "nul \u{0} inside"}), "message"),
    ] {
        for path in ["/api/v1/agents/a/chat", "/api/v1/agents/a/stream"] {
            let (status, res) = json(app.post(path, &body).await).await;
            assert_eq!(
                assert_error(status, &res, 400, "VALIDATION_ERROR")["details"]["field"],
                field,
                "{path} {body}"
            );
        }
    }
    let (status, res) = json(
        app.post("/api/v1/agents/old/chat", &json!({"message":"hi"}))
            .await,
    )
    .await;
    assert_error(status, &res, 409, "CONFLICT");
    let (_, convs) = json(app.get("/api/v1/conversations").await).await;
    assert_eq!(convs["total"], 0, "rejected turns open no conversation");
}

#[tokio::test]
async fn a_client_leaving_mid_stream_keeps_the_partial_answer() {
    let app = TestApp::builder()
        .provider("slowpoke", "mock", None, &["slow-150"])
        .spawn()
        .await;
    create(&app, json!({"name": "slow", "model": "slowpoke/slow-150"})).await;
    let words = "one two three four five six seven eight nine ten eleven twelve";
    let mut res = app
        .post(
            "/api/v1/agents/slow/stream",
            &json!({"message": words, "session_id": "cut"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let mut seen = String::new();
    while !seen.contains("\"token\"") {
        let chunk = res.chunk().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(res);
    let mut stored = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, h) = json(
            app.get("/api/v1/agents/slow/chat/history?session_id=cut")
                .await,
        )
        .await;
        if h["messages"].as_array().is_some_and(|m| m.len() == 2) {
            stored = h;
            break;
        }
    }
    let answer = &stored["messages"][1];
    assert_eq!(answer["status"], "incomplete", "{stored}");
    let text = answer["content"].as_str().unwrap();
    assert!(
        !text.is_empty() && words.starts_with(text) && text.len() < words.len(),
        "partial text: {text:?}"
    );
}

#[tokio::test]
async fn an_upstream_cut_mid_stream_ends_with_an_error_event() {
    let app = TestApp::builder()
        .provider("cutter", "mock", None, &["cut"])
        .spawn()
        .await;
    create(&app, json!({"name": "cutter", "model": "cutter/cut"})).await;
    let (status, _, events) = sse(
        &app,
        "/api/v1/agents/cutter/stream",
        &json!({"message": "a b c d e f g h", "session_id": "s"}),
    )
    .await;
    assert_eq!(status, 200);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error", "{events:?}");
    assert_eq!(last["error"]["code"], "PROVIDER_ERROR");
    let (_, h) = json(
        app.get("/api/v1/agents/cutter/chat/history?session_id=s")
            .await,
    )
    .await;
    assert_eq!(h["messages"][1]["status"], "incomplete");
}

#[tokio::test]
async fn history_survives_a_restart_and_is_sent_upstream() {
    let app = seed_app().await;
    create(
        &app,
        json!({"name": "mem", "model": "gpt-4o", "instructions": "Be brief."}),
    )
    .await;
    json(
        app.post(
            "/api/v1/agents/mem/chat",
            &json!({"message": "first", "session_id": "s"}),
        )
        .await,
    )
    .await;
    let app = app.restart().await.unwrap();
    let (status, _) = json(
        app.post(
            "/api/v1/agents/mem/chat",
            &json!({"message": "second", "session_id": "s"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let (_, h) = json(
        app.get("/api/v1/agents/mem/chat/history?session_id=s")
            .await,
    )
    .await;
    let contents: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["first", "first", "second", "second"]);
}

#[tokio::test]
async fn deleting_an_agent_deletes_its_conversations() {
    let app = seed_app().await;
    create(&app, json!({"name": "temp"})).await;
    json(
        app.post("/api/v1/agents/temp/chat", &json!({"message": "hi"}))
            .await,
    )
    .await;
    let (_, convs) = json(app.get("/api/v1/conversations").await).await;
    assert_eq!(convs["total"], 1);
    app.delete("/api/v1/agents/temp").await;
    let (_, convs) = json(app.get("/api/v1/conversations").await).await;
    assert_eq!(convs["total"], 0);
}

#[tokio::test]
async fn a_fallback_model_answers_when_the_main_one_fails() {
    let app = TestApp::builder()
        .configure(|c| c.provider_max_retries = 0)
        .provider("flaky", "mock", None, &["error-503", "error-400"])
        .spawn()
        .await;
    let a = create(
        &app,
        json!({"name": "resilient", "model": "flaky/error-503", "fallback_model": "mock/echo"}),
    )
    .await;
    assert_eq!(a["fallback_model"], "mock/echo");

    let (status, r) = json(
        app.post(
            "/api/v1/agents/resilient/chat",
            &json!({"message": "still here", "session_id": "s"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["response"], "still here");
    let (status, _, events) = sse(
        &app,
        "/api/v1/agents/resilient/stream",
        &json!({"message": "streamed too", "session_id": "s"}),
    )
    .await;
    assert_eq!(
        (status, events.last().unwrap()["response"].as_str()),
        (200, Some("streamed too"))
    );
    let (_, h) = json(
        app.get("/api/v1/agents/resilient/chat/history?session_id=s")
            .await,
    )
    .await;
    assert_eq!(
        h["messages"][1]["model"], "mock/echo",
        "the answer records the model that gave it"
    );
    assert_eq!(h["messages"][3]["model"], "mock/echo");
    let (status, r) = json(
        app.post(
            "/v1/chat/completions",
            &json!({"model": "resilient", "messages": [{"role": "user", "content": "gateway"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, r["choices"][0]["message"]["content"].as_str()),
        (200, Some("gateway"))
    );

    create(
        &app,
        json!({"name": "no-fallback", "model": "flaky/error-503"}),
    )
    .await;
    let (status, res) = json(
        app.post("/api/v1/agents/no-fallback/chat", &json!({"message": "x"}))
            .await,
    )
    .await;
    assert_error(status, &res, 502, "PROVIDER_ERROR");
    create(
        &app,
        json!({"name": "bad-request", "model": "flaky/error-400", "fallback_model": "mock/echo"}),
    )
    .await;
    let (status, res) = json(
        app.post("/api/v1/agents/bad-request/chat", &json!({"message": "x"}))
            .await,
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 502, "PROVIDER_ERROR")["details"]["upstream_status"],
        400,
        "an invalid request is not retried elsewhere"
    );

    let (status, res) = json(
        app.patch(
            "/api/v1/agents/resilient",
            &json!({"fallback_model": "nope/none"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 400, "VALIDATION_ERROR")["details"]["field"],
        "fallback_model"
    );
    let (status, p) = json(
        app.patch("/api/v1/agents/resilient", &json!({"fallback_model": null}))
            .await,
    )
    .await;
    assert_eq!((status, &p["fallback_model"]), (200, &Value::Null));
    let (status, _) = json(
        app.post("/api/v1/agents/resilient/chat", &json!({"message": "x"}))
            .await,
    )
    .await;
    assert_eq!(status, 502, "without its fallback the agent fails again");
}

#[tokio::test]
async fn parallel_turns_in_one_session_keep_each_answer_after_its_question() {
    let app = TestApp::builder()
        .configure(|c| {
            c.rate_limit_burst = 1000;
            c.rate_limit_concurrency = 100;
        })
        .spawn()
        .await;
    create(&app, json!({"name": "Para", "model": "mock/slow-50"})).await;
    let turns = (0..10).map(|n| {
        let app = &app;
        async move {
            let (status, r) = json(
                app.post(
                    "/api/v1/agents/para/chat",
                    &json!({"message": format!("question {n}"), "session_id": "shared"}),
                )
                .await,
            )
            .await;
            assert_eq!(status, 200, "{r}");
        }
    });
    futures_util::future::join_all(turns).await;
    let (status, history) = json(
        app.get("/api/v1/agents/para/chat/history?session_id=shared&limit=50")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{history}");
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 20, "{history}");
    for pair in messages.chunks(2) {
        assert_eq!(pair[0]["role"], "user", "{history}");
        assert_eq!(pair[1]["role"], "assistant", "{history}");
        let question = pair[0]["content"].as_str().unwrap();
        assert!(
            pair[1]["content"].as_str().unwrap().contains(question),
            "each answer right after its own question: {history}"
        );
    }
}
