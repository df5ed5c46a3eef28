//! The OpenAI-compatible adapter: tools, structured output and the other sampling fields.

use std::sync::Arc;

use agentry_domain::llm::{
    CompletionRequest, LlmClient, PromptMessage, ResponseFormat, StreamEvent, TokenUsage, ToolCall,
    ToolChoice, ToolDefinition,
};
use agentry_domain::provider::ProviderKind;
use agentry_fake_upstream::{FakeUpstream, Scripted};
use serde_json::{Map, json};

use crate::support::{client, drain, request, settings};

fn openai(fake: &FakeUpstream) -> Arc<dyn LlmClient> {
    client(ProviderKind::OpenAi, &fake.base_url(), settings())
}

pub fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: Some("The weather in a city".into()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        strict: None,
    }
}

fn with_tools(text: &str) -> CompletionRequest {
    let mut req = request("gpt-test", text);
    req.tools = vec![weather_tool()];
    req
}

fn two_calls() -> Scripted {
    Scripted::ToolCalls(vec![
        ("get_weather".into(), r#"{"city":"Paris"}"#.into()),
        (
            "get_time".into(),
            r#"{"zone":"Europe/Paris","format":"24h"}"#.into(),
        ),
    ])
}

#[tokio::test]
async fn json_tool_calls_come_back_as_tool_calls() {
    let fake = FakeUpstream::start().await;
    fake.push(two_calls());
    let completion = openai(&fake)
        .complete(with_tools("weather?"))
        .await
        .unwrap();
    assert_eq!(completion.content, "");
    assert_eq!(completion.finish_reason.as_deref(), Some("tool_calls"));
    let names: Vec<_> = completion
        .tool_calls
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["get_weather", "get_time"]);
    assert_eq!(completion.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    assert!(completion.tool_calls[0].id.starts_with("call_"));
    assert_ne!(completion.tool_calls[0].id, completion.tool_calls[1].id);
}

#[tokio::test]
async fn streamed_tool_call_fragments_are_gathered_into_whole_calls() {
    let fake = FakeUpstream::start().await;
    fake.push(two_calls());
    let drained = drain(openai(&fake).stream(with_tools("weather?")).await.unwrap()).await;
    assert!(drained.error.is_none(), "{drained:?}");
    assert_eq!(drained.text(), "");
    assert_eq!(drained.tool_calls.len(), 2);
    assert_eq!(drained.tool_calls[0].name, "get_weather");
    assert_eq!(drained.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    assert_eq!(drained.tool_calls[1].name, "get_time");
    assert_eq!(
        drained.tool_calls[1].arguments,
        r#"{"zone":"Europe/Paris","format":"24h"}"#
    );
    assert!(drained.tool_calls[0].id.starts_with("call_"));
    match drained.done {
        Some(StreamEvent::Done {
            finish_reason,
            usage,
            ..
        }) => {
            assert_eq!(finish_reason.as_deref(), Some("tool_calls"));
            assert!(usage.is_some());
        }
        other => panic!("no Done: {other:?}"),
    }
}

#[tokio::test]
async fn tool_calls_go_through_the_resilience_layer_before_done() {
    // The first event of a stream is a ToolCall: the resilience layer must keep reading.
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::tool_call("get_weather", "{}"));
    let mut stream = openai(&fake).stream(with_tools("x")).await.unwrap();
    let first = futures_util::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, StreamEvent::ToolCall(ref c) if c.arguments == "{}"),
        "{first:?}"
    );
    let rest = drain(stream).await;
    assert!(
        matches!(rest.done, Some(StreamEvent::Done { .. })),
        "{rest:?}"
    );
}

#[tokio::test]
async fn tools_and_choices_are_sent_in_openai_shape() {
    let fake = FakeUpstream::start().await;
    let client = openai(&fake);
    let mut req = with_tools("hi");
    req.tools[0].strict = Some(true);
    req.tool_choice = Some(ToolChoice::Function("get_weather".into()));
    req.parallel_tool_calls = Some(false);
    client.complete(req.clone()).await.unwrap();
    for (choice, wire) in [
        (ToolChoice::Auto, json!("auto")),
        (ToolChoice::None, json!("none")),
        (ToolChoice::Required, json!("required")),
    ] {
        req.tool_choice = Some(choice);
        client.complete(req.clone()).await.unwrap();
        assert_eq!(fake.requests().last().unwrap().body["tool_choice"], wire);
    }

    let sent = &fake.requests()[0].body;
    assert_eq!(
        sent["tools"],
        json!([{"type": "function", "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": true,
        }}])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(sent["parallel_tool_calls"], false);
}

#[tokio::test]
async fn parallel_tool_calls_is_not_sent_without_tools() {
    let fake = FakeUpstream::start().await;
    let mut req = request("gpt-test", "hi");
    req.parallel_tool_calls = Some(true);
    openai(&fake).complete(req).await.unwrap();
    let sent = &fake.requests()[0].body;
    for field in [
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "user",
    ] {
        assert!(sent.get(field).is_none(), "{field} sent");
    }
}

#[tokio::test]
async fn tool_calls_and_results_in_the_prompt_are_sent_in_openai_shape() {
    let fake = FakeUpstream::start().await;
    let mut req = with_tools("weather?");
    let call = |id: &str, name: &str, args: &str| ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
    };
    req.messages.extend([
        PromptMessage::assistant_calls(
            "",
            vec![
                call("call_1", "get_weather", r#"{"city":"Paris"}"#),
                call("call_2", "get_weather", r#"{"city":"Oslo"}"#),
            ],
        ),
        PromptMessage::tool_result("call_1", "sunny"),
        PromptMessage::tool_result("call_2", "snow"),
        PromptMessage::assistant_calls("Checking.", vec![call("call_3", "get_time", "{}")]),
        PromptMessage::tool_result("call_3", "noon"),
    ]);
    openai(&fake).complete(req).await.unwrap();
    let messages = &fake.requests()[0].body["messages"];
    assert_eq!(
        messages[2],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
        ]})
    );
    assert_eq!(
        messages[3],
        json!({"role": "tool", "content": "sunny", "tool_call_id": "call_1"})
    );
    assert_eq!(
        messages[4],
        json!({"role": "tool", "content": "snow", "tool_call_id": "call_2"})
    );
    assert_eq!(messages[5]["content"], "Checking.");
    assert_eq!(messages[5]["tool_calls"][0]["id"], "call_3");
    assert_eq!(messages[6]["tool_call_id"], "call_3");
}

#[tokio::test]
async fn response_format_and_sampling_fields_are_sent() {
    let fake = FakeUpstream::start().await;
    let client = openai(&fake);
    let mut bias = Map::new();
    bias.insert("50256".into(), json!(-100));
    let mut req = request("gpt-test", "hi");
    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "answer".into(),
        description: Some("The answer".into()),
        schema: json!({"type": "object", "properties": {"a": {"type": "integer"}}}),
        strict: Some(true),
    });
    req.stop = vec!["END".into(), "\n\n".into()];
    req.seed = Some(42);
    req.presence_penalty = Some(0.5);
    req.frequency_penalty = Some(-0.5);
    req.logit_bias = Some(bias);
    req.user = Some("user-7".into());
    client.complete(req.clone()).await.unwrap();
    drain(client.stream(req.clone()).await.unwrap()).await;
    for sent in fake.requests() {
        let body = &sent.body;
        assert_eq!(
            body["response_format"],
            json!({"type": "json_schema", "json_schema": {
                "name": "answer",
                "description": "The answer",
                "schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
                "strict": true,
            }})
        );
        assert_eq!(body["stop"], json!(["END", "\n\n"]));
        assert_eq!(body["seed"], 42);
        assert_eq!(body["presence_penalty"], 0.5);
        assert_eq!(body["frequency_penalty"], -0.5);
        assert_eq!(body["logit_bias"], json!({"50256": -100}));
        assert_eq!(body["user"], "user-7");
    }
    req.response_format = Some(ResponseFormat::JsonObject);
    client.complete(req.clone()).await.unwrap();
    req.response_format = Some(ResponseFormat::Text);
    client.complete(req).await.unwrap();
    let requests = fake.requests();
    assert_eq!(
        requests[2].body["response_format"],
        json!({"type": "json_object"})
    );
    assert_eq!(requests[3].body["response_format"], json!({"type": "text"}));
}

#[tokio::test]
async fn text_streams_still_work_with_tools_offered() {
    let fake = FakeUpstream::start().await;
    let drained = drain(openai(&fake).stream(with_tools("just text")).await.unwrap()).await;
    assert_eq!(drained.text(), "just text");
    assert!(drained.tool_calls.is_empty());
    assert_eq!(
        drained.done,
        Some(StreamEvent::Done {
            usage: Some(TokenUsage::new(4, 2)),
            finish_reason: Some("stop".into()),
            model: "gpt-test".into(),
        })
    );
}
