//! The Anthropic adapter: tools, structured output and the translated sampling fields.

use std::sync::Arc;

use agentry_domain::llm::{
    CompletionRequest, LlmClient, PromptMessage, ResponseFormat, Role, StreamEvent, ToolCall,
    ToolChoice,
};
use agentry_domain::provider::ProviderKind;
use agentry_fake_upstream::{FakeUpstream, Scripted};
use serde_json::{Map, Value, json};

use crate::openai_tools::weather_tool;
use crate::support::{client, drain, request, settings};

fn anthropic(fake: &FakeUpstream) -> Arc<dyn LlmClient> {
    client(ProviderKind::Anthropic, &fake.origin(), settings())
}

fn with_tools(text: &str) -> CompletionRequest {
    let mut req = request("claude-test", text);
    req.tools = vec![weather_tool()];
    req
}

fn two_calls() -> Scripted {
    Scripted::ToolCalls(vec![
        ("get_weather".into(), r#"{"city":"Paris"}"#.into()),
        (
            "get_time".into(),
            r#"{"format":"24h","zone":"Europe/Paris"}"#.into(),
        ),
    ])
}

#[tokio::test]
async fn json_tool_use_blocks_come_back_as_tool_calls() {
    let fake = FakeUpstream::start().await;
    fake.push(two_calls());
    let completion = anthropic(&fake)
        .complete(with_tools("weather?"))
        .await
        .unwrap();
    assert_eq!(completion.content, "");
    assert_eq!(completion.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(completion.tool_calls.len(), 2);
    assert_eq!(completion.tool_calls[0].name, "get_weather");
    assert!(completion.tool_calls[0].id.starts_with("toolu_"));
    let args: Value = serde_json::from_str(&completion.tool_calls[1].arguments).unwrap();
    assert_eq!(args, json!({"zone": "Europe/Paris", "format": "24h"}));
}

#[tokio::test]
async fn streamed_input_json_fragments_are_gathered_into_whole_calls() {
    let fake = FakeUpstream::start().await;
    fake.push(two_calls());
    let drained = drain(
        anthropic(&fake)
            .stream(with_tools("weather?"))
            .await
            .unwrap(),
    )
    .await;
    assert!(drained.error.is_none(), "{drained:?}");
    assert_eq!(drained.text(), "");
    assert_eq!(drained.tool_calls.len(), 2);
    assert_eq!(drained.tool_calls[0].name, "get_weather");
    assert_eq!(drained.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    assert_eq!(
        drained.tool_calls[1].arguments,
        r#"{"format":"24h","zone":"Europe/Paris"}"#
    );
    assert!(drained.tool_calls[1].id.starts_with("toolu_"));
    match drained.done {
        Some(StreamEvent::Done { finish_reason, .. }) => {
            assert_eq!(finish_reason.as_deref(), Some("tool_calls"));
        }
        other => panic!("no Done: {other:?}"),
    }
}

#[tokio::test]
async fn tools_choices_and_sampling_fields_are_translated() {
    let fake = FakeUpstream::start().await;
    let client = anthropic(&fake);
    let mut bias = Map::new();
    bias.insert("1".into(), json!(5));
    let mut req = with_tools("hi");
    req.tool_choice = Some(ToolChoice::Function("get_weather".into()));
    req.parallel_tool_calls = Some(false);
    req.stop = vec!["END".into()];
    req.user = Some("user-7".into());
    req.seed = Some(1);
    req.presence_penalty = Some(0.1);
    req.frequency_penalty = Some(0.2);
    req.logit_bias = Some(bias);
    client.complete(req.clone()).await.unwrap();
    let sent = &fake.requests()[0].body;
    assert_eq!(
        sent["tools"],
        json!([{
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true})
    );
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["metadata"], json!({"user_id": "user-7"}));
    for absent in [
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "user",
        "stop",
        "parallel_tool_calls",
        "response_format",
    ] {
        assert!(sent.get(absent).is_none(), "{absent} sent");
    }

    req.parallel_tool_calls = None;
    for (choice, wire) in [
        (ToolChoice::Auto, json!({"type": "auto"})),
        (ToolChoice::Required, json!({"type": "any"})),
        (ToolChoice::None, json!({"type": "none"})),
    ] {
        req.tool_choice = Some(choice);
        client.complete(req.clone()).await.unwrap();
        assert_eq!(fake.requests().last().unwrap().body["tool_choice"], wire);
    }
    req.tool_choice = None;
    req.parallel_tool_calls = Some(false);
    client.complete(req).await.unwrap();
    assert_eq!(
        fake.requests().last().unwrap().body["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
}

#[tokio::test]
async fn tool_calls_and_results_in_the_prompt_are_sent_as_blocks() {
    let fake = FakeUpstream::start().await;
    let mut req = with_tools("weather?");
    let call = |id: &str, args: &str| ToolCall {
        id: id.into(),
        name: "get_weather".into(),
        arguments: args.into(),
    };
    req.messages.extend([
        PromptMessage::assistant_calls(
            "Let me look.",
            vec![
                call("toolu_1", r#"{"city":"Paris"}"#),
                call("toolu_2", "not json"),
            ],
        ),
        PromptMessage::tool_result("toolu_1", "sunny"),
        PromptMessage::tool_result("toolu_2", "snow"),
        PromptMessage::new(Role::User, "and tomorrow?"),
    ]);
    anthropic(&fake).complete(req).await.unwrap();
    let body = &fake.requests()[0].body;
    assert_eq!(body["system"], "be brief");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
        ]})
    );
    assert_eq!(
        messages[2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "snow"},
        ]})
    );
    assert_eq!(
        messages[3],
        json!({"role": "user", "content": "and tomorrow?"})
    );
}

fn schema_request() -> CompletionRequest {
    let mut req = request("claude-test", "give me a number");
    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "answer".into(),
        description: Some("The answer".into()),
        schema: json!({"type": "object", "properties": {"n": {"type": "integer"}}}),
        strict: Some(true),
    });
    req
}

#[tokio::test]
async fn json_schema_is_a_forced_tool_whose_input_is_the_text() {
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::tool_call("answer", r#"{"n":42}"#));
    let completion = anthropic(&fake).complete(schema_request()).await.unwrap();
    assert_eq!(completion.content, r#"{"n":42}"#);
    assert!(completion.tool_calls.is_empty());
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));

    let sent = &fake.requests()[0].body;
    assert_eq!(
        sent["tools"],
        json!([{"name": "answer", "description": "The answer",
                "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "answer"})
    );
    assert!(sent.get("response_format").is_none());
}

#[tokio::test]
async fn streamed_json_schema_answer_is_one_delta_of_text() {
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::tool_call("answer", r#"{"n":42,"why":"because"}"#));
    let drained = drain(anthropic(&fake).stream(schema_request()).await.unwrap()).await;
    assert!(drained.error.is_none(), "{drained:?}");
    assert_eq!(
        drained.deltas,
        vec![r#"{"n":42,"why":"because"}"#.to_owned()]
    );
    assert!(drained.tool_calls.is_empty());
    match drained.done {
        Some(StreamEvent::Done { finish_reason, .. }) => {
            assert_eq!(finish_reason.as_deref(), Some("stop"));
        }
        other => panic!("no Done: {other:?}"),
    }
}

#[tokio::test]
async fn json_object_asks_in_the_system_prompt() {
    let fake = FakeUpstream::start().await;
    let mut req = request("claude-test", "hi");
    req.response_format = Some(ResponseFormat::JsonObject);
    anthropic(&fake).complete(req).await.unwrap();
    let sent = &fake.requests()[0].body;
    assert_eq!(
        sent["system"],
        "be brief\n\nRespond with a single JSON object and nothing else."
    );
    assert!(sent.get("tools").is_none());
    assert!(sent.get("tool_choice").is_none());
}
