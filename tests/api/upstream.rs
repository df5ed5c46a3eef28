//! Through real wire formats: Agentry → provider adapters → a fake OpenAI / Anthropic
//! upstream speaking their JSON and SSE.

use std::time::Duration;

use agentry_test_harness::fake_upstream::{FakeUpstream, Scripted};
use agentry_test_harness::{TestApp, json};
use serde_json::json;

use crate::runtime::sse_events;
use crate::{assert_error, create};

const KEY: &str = "sk-upstream-secret-123";

/// An app whose provider `up` (kind `kind`) points at the fake, created through the API
/// with a key; retries fast.
async fn app_with(fake: &FakeUpstream, kind: &str) -> TestApp {
    app_timed(fake, kind, 2, 2).await
}

/// As [`app_with`], with the provider call's timeout and retries given.
async fn app_timed(fake: &FakeUpstream, kind: &str, timeout_secs: u64, retries: u32) -> TestApp {
    let app = TestApp::builder()
        .configure(move |c| {
            c.provider_timeout_secs = timeout_secs;
            c.provider_max_retries = retries;
        })
        .spawn()
        .await;
    let base = if kind == "anthropic" {
        fake.origin()
    } else {
        fake.base_url()
    };
    let (status, p) = json(
        app.post(
            "/api/v1/providers",
            &json!({"id": "up", "kind": kind, "base_url": base, "api_key": KEY, "models": []}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{p}");
    create(&app, json!({"name": "bot", "model": "up/fake-echo", "instructions": "Be kind.", "temperature": 0.2, "max_tokens": 64})).await;
    app
}

#[tokio::test]
async fn openai_chat_sends_instructions_history_and_parameters() {
    let fake = FakeUpstream::start().await;
    let app = app_with(&fake, "openai").await;
    for m in ["hello there", "and again"] {
        let (status, r) = json(
            app.post(
                "/api/v1/agents/bot/chat",
                &json!({"message": m, "session_id": "s"}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["response"], m);
        assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        assert_eq!(r["finish_reason"], "stop");
    }
    let reqs = fake.requests();
    let last = reqs.last().unwrap();
    assert_eq!(last.path, "/v1/chat/completions");
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(last.body["model"], "fake-echo");
    assert_eq!(last.body["temperature"], 0.2);
    let roles: Vec<&str> = last.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user"],
        "{}",
        last.body
    );
    assert_eq!(last.body["messages"][0]["content"], "Be kind.");
}

#[tokio::test]
async fn openai_streaming_end_to_end() {
    let fake = FakeUpstream::start().await;
    let app = app_with(&fake, "openai").await;
    let res = app
        .post(
            "/api/v1/agents/bot/stream",
            &json!({"message": "stream me some words", "session_id": "s"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let events = sse_events(&res.text().await.unwrap());
    let tokens: String = events
        .iter()
        .filter(|e| e["type"] == "token")
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, "stream me some words");
    let end = events.last().unwrap();
    assert_eq!(end["type"], "end");
    assert!(
        end["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "usage arrives with the stream: {end}"
    );
    assert_eq!(fake.requests().last().unwrap().body["stream"], true);
}

#[tokio::test]
async fn upstream_5xx_is_retried_and_429_honours_retry_after() {
    let fake = FakeUpstream::start().await;
    let app = app_with(&fake, "openai").await;
    fake.push(Scripted::Error(503));
    fake.push(Scripted::Error(429));
    let before = fake.request_count();
    let (status, r) = json(
        app.post("/api/v1/agents/bot/chat", &json!({"message": "retry me"}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        fake.request_count() - before,
        3,
        "two failures, then success"
    );
}

#[tokio::test]
async fn upstream_failures_become_provider_errors_without_secrets() {
    let fake = FakeUpstream::start().await;
    let app = app_with(&fake, "openai").await;
    for (status_code, retried) in [(401u16, false), (400, false), (500, true)] {
        fake.push_n(
            Scripted::ErrorMessage(status_code, format!("upstream says {status_code}")),
            3,
        );
        let before = fake.request_count();
        let res = app
            .post("/api/v1/agents/bot/chat", &json!({"message": "x"}))
            .await;
        let text = res.text().await.unwrap();
        assert!(!text.contains(KEY), "the key never leaks: {text}");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        let err = assert_error(502, &body, 502, "PROVIDER_ERROR");
        assert_eq!(err["details"]["upstream_status"], status_code);
        assert!(
            err["details"]["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("upstream says {status_code}")),
            "{err}"
        );
        assert_eq!(fake.request_count() - before, if retried { 3 } else { 1 });
        while fake.request_count() < before + 3 {
            let _ = app
                .post(
                    "/api/v1/runs",
                    &json!({"prompt": "drain", "model": "up/fake-echo"}),
                )
                .await;
        }
    }
}

#[tokio::test]
async fn a_slow_upstream_times_out() {
    let fake = FakeUpstream::start().await;
    let app = TestApp::builder()
        .configure(|c| {
            c.provider_timeout_secs = 1;
            c.provider_max_retries = 0;
        })
        .provider("up", "openai", Some(&fake.base_url()), &["fake-slow-3000"])
        .spawn()
        .await;
    let (status, res) = json(
        app.post(
            "/api/v1/runs",
            &json!({"prompt": "x", "model": "up/fake-slow-3000"}),
        )
        .await,
    )
    .await;
    let err = assert_error(status, &res, 502, "PROVIDER_ERROR");
    assert!(
        err["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("in time"),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_upstream_call() {
    let fake = FakeUpstream::start().await;
    let app = TestApp::builder()
        .provider("up", "openai", Some(&fake.base_url()), &["fake-slow-300"])
        .spawn()
        .await;
    create(&app, json!({"name": "slow", "model": "up/fake-slow-300"})).await;
    let mut res = app
        .post(
            "/api/v1/agents/slow/stream",
            &json!({"message": "a b c d e f g h i j k l m n o p q r s t"}),
        )
        .await;
    let mut seen = String::new();
    while !seen.contains("\"token\"") {
        seen.push_str(&String::from_utf8_lossy(
            &res.chunk().await.unwrap().unwrap(),
        ));
    }
    assert!(fake.open_connections() >= 1);
    drop(res);
    let mut open = usize::MAX;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        open = fake.open_connections();
        if open == 0 {
            break;
        }
    }
    assert_eq!(
        open, 0,
        "the upstream connection is closed long before the 20-word answer would end (6 s)"
    );
}

#[tokio::test]
async fn anthropic_chat_stream_and_run() {
    let fake = FakeUpstream::start().await;
    let app = app_with(&fake, "anthropic").await;
    let (status, r) = json(
        app.post(
            "/api/v1/agents/bot/chat",
            &json!({"message": "hi claude", "session_id": "a"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["response"], "hi claude");
    let req = fake.requests().last().unwrap().clone();
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert!(req.header("anthropic-version").is_some());
    assert_eq!(req.body["system"], "Be kind.");
    assert_eq!(req.body["max_tokens"], 64);

    let res = app
        .post(
            "/api/v1/agents/bot/chat",
            &json!({"message": "now stream", "session_id": "a", "stream": true}),
        )
        .await;
    let events = sse_events(&res.text().await.unwrap());
    assert_eq!(events.last().unwrap()["response"], "now stream");
    assert!(
        events.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let (status, run) = json(
        app.post(
            "/api/v1/runs",
            &json!({"prompt": "run it", "preamble": "sys", "model": "up/fake-echo"}),
        )
        .await,
    )
    .await;
    assert_eq!((status, run["response"].as_str()), (200, Some("run it")));

    fake.push_n(Scripted::Error(529), 3);
    let (status, res) = json(
        app.post(
            "/api/v1/runs",
            &json!({"prompt": "overloaded", "model": "up/fake-echo"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 502, "PROVIDER_ERROR")["details"]["upstream_status"],
        529
    );
}

/// The place schema the structured-output tests ask for.
fn place_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": false
    })
}

/// The text of a streamed Chat Completions answer.
fn streamed_content(body: &str) -> String {
    body.split("\n\n")
        .filter_map(|frame| frame.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn structured_output_is_passed_to_openai_compatible_upstreams() {
    let fake = FakeUpstream::start().await;
    let app = app_with(&fake, "openai").await;
    let answer = r#"{"city":"Paris"}"#;

    fake.push(Scripted::Text(answer.into()));
    let (status, r) = json(
        app.post(
            "/v1/chat/completions",
            &json!({
                "model": "bot",
                "messages": [{"role": "user", "content": "Where is the Louvre?"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": place_schema(), "strict": true}},
                "seed": 7,
                "stop": ["\n\n"]
            }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], answer);
    let sent = fake.requests().last().unwrap().body.clone();
    assert_eq!(sent["response_format"]["type"], "json_schema", "{sent}");
    assert_eq!(sent["response_format"]["json_schema"]["name"], "place");
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"],
        place_schema()
    );
    assert_eq!(sent["response_format"]["json_schema"]["strict"], true);
    assert_eq!(
        (sent["seed"].clone(), sent["stop"].clone()),
        (json!(7), json!(["\n\n"]))
    );
    assert_eq!(
        sent["messages"][0]["content"], "Be kind.",
        "the agent's instructions still lead"
    );

    fake.push(Scripted::Text(answer.into()));
    let (status, r) = json(
        app.post(
            "/v1/responses",
            &json!({
                "model": "bot",
                "input": "Where is the Louvre?",
                "text": {"format": {"type": "json_schema", "name": "place", "schema": place_schema(), "strict": true}}
            }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["output"][0]["content"][0]["text"], answer, "{r}");
    assert_eq!(
        r["text"]["format"]["type"], "json_schema",
        "the format used is reported: {r}"
    );
    let sent = fake.requests().last().unwrap().body.clone();
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"],
        place_schema(),
        "{sent}"
    );

    fake.push(Scripted::Text(answer.into()));
    let (status, _) = json(
        app.post(
            "/v1/chat/completions",
            &json!({
                "model": "bot",
                "messages": [{"role": "user", "content": "Any JSON"}],
                "response_format": {"type": "json_object"}
            }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let sent = fake.requests().last().unwrap().body.clone();
    assert_eq!(sent["response_format"], json!({"type": "json_object"}));
}

#[tokio::test]
async fn structured_output_reaches_anthropic_as_a_forced_tool() {
    let fake = FakeUpstream::start().await;
    let app = app_with(&fake, "anthropic").await;
    let answer = json!({"city": "Paris"});
    let format =
        json!({"type": "json_schema", "json_schema": {"name": "place", "schema": place_schema()}});

    fake.push(Scripted::tool_call("place", answer.to_string()));
    let (status, r) = json(
        app.post(
            "/v1/chat/completions",
            &json!({
                "model": "bot",
                "messages": [{"role": "user", "content": "Where is the Louvre?"}],
                "response_format": format
            }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let content = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(content).unwrap(),
        answer,
        "the forced tool's input is the answer's text: {r}"
    );
    assert_eq!(
        r["choices"][0]["finish_reason"], "stop",
        "not a tool call: {r}"
    );
    assert!(r["choices"][0]["message"]["tool_calls"].is_null(), "{r}");
    let sent = fake.requests().last().unwrap().body.clone();
    assert_eq!(fake.requests().last().unwrap().path, "/v1/messages");
    let tool = sent["tools"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (tool["name"].clone(), tool["input_schema"].clone()),
        (json!("place"), place_schema()),
        "{sent}"
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "place"}),
        "{sent}"
    );

    // Streamed: the tool input arrives in fragments and is streamed as text.
    fake.push(Scripted::tool_call("place", answer.to_string()));
    let res = app
        .post(
            "/v1/chat/completions",
            &json!({
                "model": "bot",
                "stream": true,
                "messages": [{"role": "user", "content": "Where is the Louvre?"}],
                "response_format": format
            }),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    let streamed = streamed_content(&body);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&streamed).unwrap(),
        answer,
        "{body}"
    );
    assert!(!body.contains("\"tool_calls\""), "{body}");

    // JSON mode: asked for in the system prompt (Anthropic has no such switch).
    let (status, _) = json(
        app.post(
            "/v1/chat/completions",
            &json!({
                "model": "bot",
                "messages": [{"role": "user", "content": "{\"ok\": true}"}],
                "response_format": {"type": "json_object"}
            }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let sent = fake.requests().last().unwrap().body.clone();
    let system = sent["system"].as_str().unwrap();
    assert!(system.starts_with("Be kind."), "{system}");
    assert!(system.contains("single JSON object"), "{system}");
}

/// An app on the fake whose provider calls wait long enough for a slow upstream.
async fn patient_app(fake: &FakeUpstream) -> TestApp {
    app_timed(fake, "openai", 20, 0).await
}

#[tokio::test]
async fn a_slow_upstream_gets_sse_headers_and_keep_alives_before_its_answer() {
    let fake = FakeUpstream::start().await;
    let app = patient_app(&fake).await;
    let wait = Duration::from_millis(2_600);
    for (path, body) in [
        ("/api/v1/agents/bot/stream", json!({"message": "x"})),
        (
            "/v1/chat/completions",
            json!({"model": "bot", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        ),
        (
            "/v1/responses",
            json!({"model": "bot", "stream": true, "input": "x"}),
        ),
    ] {
        fake.push(Scripted::Stalled(
            wait,
            Box::new(Scripted::Text("late".into())),
        ));
        let started = std::time::Instant::now();
        let res = app.post(path, &body).await;
        let headers_after = started.elapsed();
        assert_eq!(res.status(), 200, "{path}");
        assert!(
            headers_after < wait,
            "{path}: the headers waited for the upstream ({headers_after:?})"
        );
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let text = res.text().await.unwrap();
        assert!(
            text.starts_with(": waiting for the model"),
            "{path}: {text}"
        );
        assert!(text.contains("late"), "{path}: the answer follows: {text}");
    }
    // A failure after the headers is the surface's in-stream error.
    fake.push(Scripted::Stalled(wait, Box::new(Scripted::Error(500))));
    let res = app
        .post(
            "/v1/chat/completions",
            &json!({"model": "bot", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("\"error\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    for (path, body, event) in [
        (
            "/api/v1/agents/bot/stream",
            json!({"message": "x"}),
            "\"type\":\"error\"",
        ),
        (
            "/v1/responses",
            json!({"model": "bot", "stream": true, "input": "x"}),
            "event: error",
        ),
    ] {
        fake.push(Scripted::Stalled(wait, Box::new(Scripted::Error(500))));
        let res = app.post(path, &body).await;
        assert_eq!(res.status(), 200, "{path}");
        let text = res.text().await.unwrap();
        assert!(
            text.starts_with(": waiting for the model"),
            "{path}: {text}"
        );
        assert!(text.contains(event), "{path}: {text}");
        if path.starts_with("/api/") {
            assert!(
                text.contains("\"request_id\":\"req_"),
                "the error names its request: {text}"
            );
        }
    }
    // A fast failure is still an HTTP error, as for a call that is not streamed.
    fake.push(Scripted::Error(500));
    let (status, body) = json(
        app.post(
            "/v1/chat/completions",
            &json!({"model": "bot", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 502, "{body}");
}
