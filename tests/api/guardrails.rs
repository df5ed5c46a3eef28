//! Guardrails (issue 15, item 4): rules saved with the agent, applied by the turn on every
//! surface — agent chat (JSON, SSE), Responses (JSON, stream), Chat Completions (JSON, stream).

use agentry_test_harness::fake_upstream::FakeUpstream;
use agentry_test_harness::{TestApp, json};
use serde_json::{Value, json};

use crate::runtime::sse_events;
use crate::{assert_error, create, upstream_provider};

async fn text_of(app: &TestApp, path: &str, body: &Value) -> (u16, String) {
    let res = app.post(path, body).await;
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

#[tokio::test]
async fn guardrails_are_saved_versioned_and_validated() {
    let app = TestApp::spawn().await;
    let rules = json!({
        "input": [{"type": "pii", "kinds": ["email"], "action": "redact", "name": "no-mail"}],
        "output": [{"type": "judge", "model": "mock/echo", "question": "Is it rude?", "action": "flag"}],
        "refusal_message": "Sorry."
    });
    let agent = create(&app, json!({"name": "Guarded", "guardrails": rules})).await;
    assert_eq!(agent["guardrails"]["input"][0]["type"], "pii");
    assert_eq!(agent["guardrails"]["input"][0]["kinds"], json!(["email"]));
    assert_eq!(agent["guardrails"]["output"][0]["on_error"], "allow");
    assert_eq!(agent["guardrails"]["refusal_message"], "Sorry.");
    // Published versions keep them; clearing the agent's does not change the version.
    let (status, _) = json(
        app.post("/api/v1/agents/guarded/versions", &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 201);
    let (status, patched) = json(
        app.patch("/api/v1/agents/guarded", &json!({"guardrails": null}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["guardrails"], json!({"input": [], "output": []}));
    let (_, v1) = json(app.get("/api/v1/agents/guarded/versions/1").await).await;
    let snapshot = if v1["agent"].is_object() {
        &v1["agent"]
    } else {
        &v1
    };
    assert_eq!(
        snapshot["guardrails"]["input"][0]["name"], "no-mail",
        "{v1}"
    );

    // Bad rules are 400 naming the field, and change nothing.
    for (body, field) in [
        (
            json!({"input": [{"type": "regex", "pattern": "(unclosed"}]}),
            "guardrails.input[0].pattern",
        ),
        (
            json!({"output": [{"type": "pii", "kinds": ["ssn"]}]}),
            "guardrails.output[0].kinds[0]",
        ),
        (
            json!({"output": [{"type": "json_schema", "schema": {"type": "object"}, "action": "redact"}]}),
            "guardrails.output[0].action",
        ),
        (
            json!({"output": [{"type": "judge", "model": "nope/none", "question": "?"}]}),
            "guardrails.output[0].model",
        ),
        (
            json!({"input": [{"type": "max_length", "max_chars": 10, "terms": []}]}),
            "guardrails.input[0].terms",
        ),
        (json!([]), "guardrails"),
    ] {
        let (status, err) = json(
            app.patch("/api/v1/agents/guarded", &json!({"guardrails": body}))
                .await,
        )
        .await;
        let err = assert_error(status, &err, 400, "VALIDATION_ERROR");
        assert_eq!(err["details"]["field"], field, "{err}");
    }
    let (_, now) = json(app.get("/api/v1/agents/guarded").await).await;
    assert_eq!(now["guardrails"], json!({"input": [], "output": []}));
}

#[tokio::test]
async fn a_blocked_input_is_refused_on_every_surface_before_the_provider() {
    let fake = FakeUpstream::start().await;
    let app = TestApp::spawn().await;
    upstream_provider(&app, &fake).await;
    create(
        &app,
        json!({"name": "strict", "model": "up/fake-echo", "guardrails": {"input": [
            {"type": "blocked_terms", "terms": ["drop table"], "name": "no-sql"},
            {"type": "max_length", "max_chars": 50},
        ]}}),
    )
    .await;
    let bad = "please DROP TABLE users";
    let (status, err) = json(
        app.post("/api/v1/agents/strict/chat", &json!({"message": bad}))
            .await,
    )
    .await;
    let err = assert_error(status, &err, 400, "GUARDRAIL_VIOLATION");
    assert_eq!(err["details"]["rule"], "blocked_terms");
    assert_eq!(err["details"]["name"], "no-sql");
    assert_eq!(err["details"]["stage"], "input");
    assert_eq!(err["details"]["field"], "message");
    assert!(
        !err.to_string().to_lowercase().contains("drop table"),
        "the match is not echoed: {err}"
    );
    // Streaming: still an ordinary JSON error (nothing was sent yet).
    let (status, err) = json(
        app.post(
            "/api/v1/agents/strict/chat",
            &json!({"message": bad, "stream": true}),
        )
        .await,
    )
    .await;
    assert_error(status, &err, 400, "GUARDRAIL_VIOLATION");
    // The OpenAI surface answers in OpenAI's format.
    for (path, body) in [
        ("/v1/responses", json!({"model": "strict", "input": bad})),
        (
            "/v1/responses",
            json!({"model": "strict", "input": bad, "stream": true}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "strict", "messages": [{"role": "user", "content": bad}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "strict", "stream": true, "messages": [{"role": "user", "content": "x".repeat(51)}]}),
        ),
    ] {
        let (status, err) = json(app.post(path, &body).await).await;
        assert_eq!(status, 400, "{path}: {err}");
        assert_eq!(err["error"]["code"], "guardrail_violation", "{path}: {err}");
        assert_eq!(
            err["error"]["type"], "invalid_request_error",
            "{path}: {err}"
        );
    }
    assert_eq!(
        fake.request_count(),
        0,
        "a blocked input never reaches the provider"
    );
    let (_, history) = json(app.get("/api/v1/agents/strict/chat/history").await).await;
    assert_eq!(history["messages"], json!([]), "{history}");
}

const PII: [&str; 4] = [
    "jane.doe@example.com",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
];

#[tokio::test]
async fn personal_data_never_reaches_the_upstream_when_redaction_is_on() {
    let fake = FakeUpstream::start().await;
    let app = TestApp::spawn().await;
    upstream_provider(&app, &fake).await;
    create(
        &app,
        json!({"name": "private", "model": "up/fake-echo",
        "guardrails": {"input": [{"type": "pii", "action": "redact"}]}}),
    )
    .await;
    let message = format!(
        "Mail {} or call {}. Card {}, IBAN {}.",
        PII[0], PII[1], PII[2], PII[3]
    );
    let (status, r) = json(
        app.post(
            "/api/v1/agents/private/chat",
            &json!({"message": message, "session_id": "s1"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["message"],
        "Mail [EMAIL] or call [PHONE]. Card [CARD], IBAN [IBAN]."
    );
    assert_eq!(r["metadata"]["guardrails"][0]["rule"], "pii");
    assert_eq!(
        r["metadata"]["guardrails"][0]["detail"],
        "1 card, 1 email, 1 iban, 1 phone"
    );
    let (status, _) = text_of(
        &app,
        "/api/v1/agents/private/chat",
        &json!({"message": message, "session_id": "s1", "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, r) = json(
        app.post(
            "/v1/responses",
            &json!({"model": "private", "input": message}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let (status, _) = text_of(&app, "/v1/responses", &json!({"model": "private", "input": [{"role": "user", "content": message}], "stream": true})).await;
    assert_eq!(status, 200);
    let (status, r) = json(
        app.post(
            "/v1/chat/completions",
            &json!({"model": "private", "messages": [
                {"role": "user", "content": message},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": format!("again: {}", PII[0])},
            ]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let (status, _) = text_of(&app, "/v1/chat/completions", &json!({"model": "private", "stream": true, "messages": [{"role": "user", "content": message}]})).await;
    assert_eq!(status, 200);

    let requests = fake.requests();
    assert_eq!(requests.len(), 6);
    for req in &requests {
        let body = req.body.to_string();
        for secret in PII {
            assert!(
                !body.contains(secret),
                "{secret} reached the upstream: {body}"
            );
        }
        assert!(body.contains("[EMAIL]"), "{body}");
    }
    // Stored redacted too: the history holds no personal data.
    let (_, history) = json(
        app.get("/api/v1/agents/private/chat/history?session_id=s1")
            .await,
    )
    .await;
    let stored = history.to_string();
    assert!(PII.iter().all(|p| !stored.contains(p)), "{stored}");
    assert_eq!(history["messages"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_blocked_output_is_a_refusal_on_every_surface() {
    let app = TestApp::spawn().await;
    // mock/echo answers with the message: the output rules see what the caller wrote.
    create(
        &app,
        json!({"name": "careful", "model": "mock/echo", "guardrails": {
        "output": [{"type": "blocked_terms", "terms": ["forbidden"]}],
        "refusal_message": "I can't help with that."}}),
    )
    .await;
    let said = "This is forbidden knowledge.";

    let (status, r) = json(
        app.post(
            "/api/v1/agents/careful/chat",
            &json!({"message": said, "session_id": "r"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["message"], "I can't help with that.");
    assert_eq!(r["refusal"], "I can't help with that.");
    assert_eq!(r["finish_reason"], "content_filter");
    assert_eq!(r["metadata"]["guardrails"][0]["stage"], "output");
    assert_eq!(r["metadata"]["guardrails"][0]["action"], "block");
    // Recorded on the stored turn.
    let (_, history) = json(
        app.get("/api/v1/agents/careful/chat/history?session_id=r")
            .await,
    )
    .await;
    assert_eq!(history["messages"][1]["content"], "I can't help with that.");

    let (status, body) = text_of(
        &app,
        "/api/v1/agents/careful/chat",
        &json!({"message": said, "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    let events = sse_events(&body);
    assert!(!body.contains("forbidden"), "{body}");
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["start", "refusal", "end"], "{body}");
    assert_eq!(events[1]["content"], "I can't help with that.");
    assert_eq!(events[2]["response"], "I can't help with that.");

    let (status, r) = json(
        app.post("/v1/responses", &json!({"model": "careful", "input": said}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["output"][0]["content"][0],
        json!({"type": "refusal", "refusal": "I can't help with that."})
    );
    // Read back later, it is still a refusal.
    let (status, again) = json(
        app.get(&format!("/v1/responses/{}", r["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["output"], r["output"], "{again}");
    let (status, body) = text_of(
        &app,
        "/v1/responses",
        &json!({"model": "careful", "input": said, "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!body.contains("forbidden"), "{body}");
    let events = sse_events(&body);
    let done = events
        .iter()
        .find(|e| e["type"] == "response.refusal.done")
        .unwrap();
    assert_eq!(done["refusal"], "I can't help with that.");
    let completed = events
        .iter()
        .find(|e| e["type"] == "response.completed")
        .unwrap();
    assert_eq!(
        completed["response"]["output"][0]["content"][0]["type"],
        "refusal"
    );

    let (status, r) = json(
        app.post(
            "/v1/chat/completions",
            &json!({"model": "careful", "messages": [{"role": "user", "content": said}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(
        r["choices"][0]["message"]["refusal"],
        "I can't help with that."
    );
    assert_eq!(r["choices"][0]["finish_reason"], "content_filter");
    let (status, body) = text_of(&app, "/v1/chat/completions", &json!({"model": "careful", "stream": true, "messages": [{"role": "user", "content": said}]})).await;
    assert_eq!(status, 200);
    assert!(!body.contains("forbidden"), "{body}");
    assert!(
        body.contains(r#""refusal":"I can't help with that.""#),
        "{body}"
    );
    assert!(
        body.contains(r#""finish_reason":"content_filter""#),
        "{body}"
    );
}

#[tokio::test]
async fn streamed_output_is_redacted_and_flagged_before_it_is_sent() {
    let app = TestApp::spawn().await;
    create(
        &app,
        json!({"name": "scrub", "model": "mock/echo", "guardrails": {"output": [
            {"type": "pii", "kinds": ["email", "card"], "action": "redact"},
            {"type": "regex", "pattern": "(?i)refund", "action": "flag", "name": "refunds"},
            {"type": "max_length", "max_chars": 80, "action": "redact"},
        ]}}),
    )
    .await;
    let said = "Refund to jane.doe@example.com now. Card 4111 1111 1111 1111 please. And a very long tail that goes on and on past the limit.";
    let (status, body) = text_of(
        &app,
        "/api/v1/agents/scrub/chat",
        &json!({"message": said, "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    let events = sse_events(&body);
    let tokens: String = events
        .iter()
        .filter(|e| e["type"] == "token")
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert!(
        !body.contains("jane.doe") && !body.contains("4111"),
        "{body}"
    );
    // The rules run in order: the length limit counts the redacted text.
    assert_eq!(
        tokens,
        "Refund to [EMAIL] now. Card [CARD] please. And a very long tail that goes on and"
    );
    assert_eq!(tokens.chars().count(), 80);
    let end = events.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["response"], tokens);
    let rules: Vec<&str> = end["metadata"]["guardrails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["pii", "regex", "max_length"]);
}

#[tokio::test]
async fn json_schema_and_judge_rules_decide_on_the_whole_answer() {
    let app = TestApp::spawn().await;
    create(
        &app,
        json!({"name": "jsonly", "model": "mock/echo", "guardrails": {"output": [
            {"type": "json_schema", "schema": {"type": "object", "required": ["ok"]}},
        ]}}),
    )
    .await;
    let (_, r) = json(
        app.post(
            "/api/v1/agents/jsonly/chat",
            &json!({"message": "{\"ok\": true}"}),
        )
        .await,
    )
    .await;
    assert_eq!(r["message"], "{\"ok\": true}");
    let (status, body) = text_of(
        &app,
        "/api/v1/agents/jsonly/chat",
        &json!({"message": "{\"ok\": true} plus prose.", "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("prose"),
        "nothing of an invalid answer is sent: {body}"
    );
    assert!(body.contains(r#""type":"refusal""#), "{body}");

    // A judge: the scripted mock answers the agent's call, then the judge's.
    create(&app, json!({"name": "judged", "model": "mock/echo", "guardrails": {"output": [
        {"type": "judge", "model": "mock/echo", "question": "Is the text rude?", "timeout_ms": 2000},
    ]}}))
    .await;
    app.mock_script().push_text("You are a fool.");
    app.mock_script().push_text("Yes");
    let (_, r) = json(
        app.post("/api/v1/agents/judged/chat", &json!({"message": "hi"}))
            .await,
    )
    .await;
    assert_eq!(r["finish_reason"], "content_filter", "{r}");
    assert_eq!(r["metadata"]["guardrails"][0]["rule"], "judge");
    app.mock_script().push_text("Hello friend.");
    app.mock_script().push_text("no");
    let (_, r) = json(
        app.post("/api/v1/agents/judged/chat", &json!({"message": "hi"}))
            .await,
    )
    .await;
    assert_eq!(r["message"], "Hello friend.", "{r}");

    // A judge that does not answer in time: fail open lets the answer through, fail closed
    // refuses it.
    for (key, on_error, refused) in [("open", "allow", false), ("closed", "block", true)] {
        create(&app, json!({"name": key, "model": "mock/echo", "guardrails": {"output": [
            {"type": "judge", "model": "mock/slow-3000", "question": "Is it rude?", "timeout_ms": 200, "on_error": on_error},
        ]}}))
        .await;
        let (status, r) = json(
            app.post(
                &format!("/api/v1/agents/{key}/chat"),
                &json!({"message": "Good morning."}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(
            r["finish_reason"] == "content_filter",
            refused,
            "{key}: {r}"
        );
    }
}
