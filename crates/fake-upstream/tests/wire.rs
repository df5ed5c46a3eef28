//! The fake's wire formats, checked with real clients: async-openai for OpenAI, raw reqwest
//! plus the documented event shapes for Anthropic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use agentry_fake_upstream::{FakeUpstream, Scripted};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    ChatCompletionStreamOptions, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
    FinishReason,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// A real async-openai client without its built-in retries.
fn openai(fake: &FakeUpstream) -> Client<OpenAIConfig> {
    let config = OpenAIConfig::new()
        .with_api_base(fake.base_url())
        .with_api_key("sk-test");
    Client::with_config(config).with_http_service(ReqwestService::new(reqwest::Client::new()))
}

fn request(model: &str, text: &str, stream: bool) -> CreateChatCompletionRequest {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model(model).messages([
        ChatCompletionRequestSystemMessageArgs::default()
            .content("be brief")
            .build()
            .unwrap()
            .into(),
        ChatCompletionRequestUserMessageArgs::default()
            .content(text)
            .build()
            .unwrap()
            .into(),
    ]);
    if stream {
        args.stream(true)
            .stream_options(ChatCompletionStreamOptions {
                include_usage: Some(true),
                include_obfuscation: None,
            });
    }
    args.build().unwrap()
}

#[tokio::test]
async fn openai_json_parses_with_async_openai() {
    let fake = FakeUpstream::start().await;
    let response = openai(&fake)
        .chat()
        .create(request("fake-echo", "hello big  world", false))
        .await
        .unwrap();
    let choice = &response.choices[0];
    assert_eq!(choice.message.content.as_deref(), Some("hello big  world"));
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    let usage = response.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (5, 3, 8)
    );
    assert_eq!(response.model, "fake-echo");

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(sent.body["messages"][1]["content"], "hello big  world");
}

#[tokio::test]
async fn openai_stream_parses_with_async_openai() {
    let fake = FakeUpstream::start().await;
    let mut stream = openai(&fake)
        .chat()
        .create_stream(request("fake-echo", " one two three ", true))
        .await
        .unwrap();
    let (mut text, mut usage, mut finish) = (String::new(), None, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for choice in &chunk.choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or(""));
            finish = finish.or(choice.finish_reason);
        }
        usage = usage.or(chunk.usage);
    }
    assert_eq!(text, " one two three ");
    assert_eq!(finish, Some(FinishReason::Stop));
    assert_eq!(usage.unwrap().completion_tokens, 3);
}

#[tokio::test]
async fn openai_max_tokens_truncates_with_length() {
    let fake = FakeUpstream::start().await;
    let mut req = request("fake-echo", "a b c d", false);
    req.max_completion_tokens = Some(2);
    let response = openai(&fake).chat().create(req).await.unwrap();
    assert_eq!(response.choices[0].message.content.as_deref(), Some("a b "));
    assert_eq!(
        response.choices[0].finish_reason,
        Some(FinishReason::Length)
    );
}

#[tokio::test]
async fn openai_models_list() {
    let fake = FakeUpstream::start().await;
    let models = openai(&fake).models().list().await.unwrap();
    assert!(models.data.iter().any(|m| m.id == "fake-echo"));
}

#[tokio::test]
async fn openai_errors_carry_status_and_message() {
    let fake = FakeUpstream::start().await;
    let error = openai(&fake)
        .chat()
        .create(request("fake-error-401", "hi", false))
        .await
        .unwrap_err();
    let OpenAIError::ApiError(api) = error else {
        panic!("{error:?}")
    };
    assert_eq!(api.status_code.as_u16(), 401);
    assert_eq!(api.api_error.code.as_deref(), Some("invalid_api_key"));

    let raw = reqwest::Client::new()
        .post(format!("{}/chat/completions", fake.base_url()))
        .json(&json!({"model": "fake-error-429", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 429);
    assert_eq!(raw.headers()["retry-after"], "1");
    let body: Value = raw.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Rate limit")
    );
}

#[tokio::test]
async fn openai_cut_stream_breaks_without_done() {
    let fake = FakeUpstream::start().await;
    let mut stream = openai(&fake)
        .chat()
        .create_stream(request("fake-cut", "one two three four", true))
        .await
        .unwrap();
    let (mut text, mut broke) = (String::new(), false);
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                assert!(chunk.choices.iter().all(|c| c.finish_reason.is_none()));
                for choice in &chunk.choices {
                    text.push_str(choice.delta.content.as_deref().unwrap_or(""));
                }
            }
            Err(_) => broke = true,
        }
    }
    assert_eq!(text, "one two ");
    assert!(broke, "the cut must surface as a stream error");
}

#[tokio::test]
async fn scripted_queue_is_consumed_in_order_then_model_behaviour() {
    let fake = FakeUpstream::start().await;
    fake.push_n(Scripted::Error(503), 2);
    fake.push(Scripted::Text("scripted".into()));
    let client = openai(&fake);
    for _ in 0..2 {
        let error = client
            .chat()
            .create(request("fake-echo", "hi", false))
            .await
            .unwrap_err();
        assert!(matches!(error, OpenAIError::ApiError(ref e) if e.status_code.as_u16() == 503));
    }
    let scripted = client
        .chat()
        .create(request("fake-echo", "hi", false))
        .await
        .unwrap();
    assert_eq!(
        scripted.choices[0].message.content.as_deref(),
        Some("scripted")
    );
    let echo = client
        .chat()
        .create(request("fake-echo", "hi", false))
        .await
        .unwrap();
    assert_eq!(echo.choices[0].message.content.as_deref(), Some("hi"));
    assert_eq!(fake.request_count(), 4);
}

#[tokio::test]
async fn latency_and_slow_models_delay_the_answer() {
    let fake = FakeUpstream::start()
        .await
        .with_latency(Duration::from_millis(60));
    let started = Instant::now();
    openai(&fake)
        .chat()
        .create(request("fake-echo", "hi", false))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(60));
    fake.set_latency(Duration::ZERO);
    let started = Instant::now();
    openai(&fake)
        .chat()
        .create(request("fake-slow-80", "hi", false))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(80));
}

async fn anthropic(fake: &FakeUpstream, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/messages", fake.origin()))
        .header("x-api-key", "ak-test")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn anthropic_json_and_errors() {
    let fake = FakeUpstream::start().await;
    let body = json!({"model": "fake-echo", "max_tokens": 10, "system": "be brief",
        "messages": [{"role": "user", "content": "hello there"}]});
    let answer: Value = anthropic(&fake, body).await.json().await.unwrap();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"][0]["text"], "hello there");
    assert_eq!(answer["stop_reason"], "end_turn");
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": 4, "output_tokens": 2})
    );
    assert_eq!(fake.requests()[0].header("x-api-key"), Some("ak-test"));

    let missing = json!({"model": "fake-echo", "messages": [{"role": "user", "content": "x"}]});
    let response = anthropic(&fake, missing).await;
    assert_eq!(response.status().as_u16(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");

    let overloaded = json!({"model": "fake-error-529", "max_tokens": 5, "messages": []});
    let response = anthropic(&fake, overloaded).await;
    assert_eq!(response.status().as_u16(), 529);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn anthropic_sse_event_sequence() {
    let fake = FakeUpstream::start().await;
    let body = json!({"model": "fake-echo", "max_tokens": 10, "stream": true,
        "messages": [{"role": "user", "content": "hello there"}]});
    let text = anthropic(&fake, body).await.text().await.unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        events,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let datas: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(datas[0]["message"]["usage"]["input_tokens"], 2);
    assert_eq!(
        datas[3]["delta"],
        json!({"type": "text_delta", "text": "hello "})
    );
    assert_eq!(datas[6]["delta"]["stop_reason"], "end_turn");
    assert_eq!(datas[6]["usage"]["output_tokens"], 2);
}
