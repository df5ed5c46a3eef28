//! The scripted mock: tool calls, tool results and JSON mode, offline.

use agentry_domain::llm::{
    CompletionRequest, PromptMessage, ResponseFormat, Role, StreamEvent, ToolCall,
};
use agentry_provider::{MockReply, MockScript};
use serde_json::json;

use crate::openai_tools::weather_tool;
use crate::support::{drain, mock, request, settings};

fn with_tools(text: &str) -> CompletionRequest {
    let mut req = request("echo", text);
    req.tools = vec![weather_tool()];
    req
}

/// `req` after the assistant made `calls` and each got a result.
fn after_results(
    mut req: CompletionRequest,
    calls: &[ToolCall],
    results: &[&str],
) -> CompletionRequest {
    req.messages
        .push(PromptMessage::assistant_calls("", calls.to_vec()));
    for (call, result) in calls.iter().zip(results) {
        req.messages
            .push(PromptMessage::tool_result(call.id.clone(), *result));
    }
    req
}

#[tokio::test]
async fn slash_call_answers_with_tool_calls() {
    let client = mock(&MockScript::new(), settings());
    let req = with_tools(r#"/call get_weather {"city":"Paris"} ;; /call get_time"#);
    let completion = client.complete(req.clone()).await.unwrap();
    assert_eq!(completion.content, "");
    assert_eq!(completion.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        completion.tool_calls,
        vec![
            ToolCall {
                id: "call_mock_1".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into()
            },
            ToolCall {
                id: "call_mock_2".into(),
                name: "get_time".into(),
                arguments: "{}".into()
            },
        ]
    );

    let drained = drain(client.stream(req).await.unwrap()).await;
    assert_eq!(drained.tool_calls, completion.tool_calls);
    assert!(drained.deltas.is_empty());
    assert!(matches!(
        drained.done,
        Some(StreamEvent::Done { finish_reason: Some(ref r), .. }) if r == "tool_calls"
    ));
}

#[tokio::test]
async fn slash_call_without_tools_offered_is_echoed() {
    let client = mock(&MockScript::new(), settings());
    let completion = client
        .complete(request("echo", "/call get_weather {}"))
        .await
        .unwrap();
    assert_eq!(completion.content, "/call get_weather {}");
    assert!(completion.tool_calls.is_empty());
}

#[tokio::test]
async fn tool_results_are_answered_by_name() {
    let client = mock(&MockScript::new(), settings());
    let req = with_tools(r#"/call get_weather {"city":"Paris"} ;; /call get_time"#);
    let calls = client.complete(req.clone()).await.unwrap().tool_calls;
    let req = after_results(req, &calls, &["sunny", "noon"]);
    let completion = client.complete(req.clone()).await.unwrap();
    assert_eq!(
        completion.content,
        "tool get_weather said: sunny\ntool get_time said: noon"
    );
    assert!(completion.tool_calls.is_empty());
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));

    let drained = drain(client.stream(req).await.unwrap()).await;
    assert_eq!(drained.text(), completion.content);
    assert!(drained.tool_calls.is_empty());
}

#[tokio::test]
async fn slash_loop_calls_the_tool_on_every_request_of_the_turn() {
    let client = mock(&MockScript::new(), settings());
    let mut req = with_tools(r#"/loop get_weather {"city":"Oslo"}"#);
    for _ in 0..3 {
        let completion = client.complete(req.clone()).await.unwrap();
        assert_eq!(completion.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(completion.tool_calls.len(), 1);
        assert_eq!(completion.tool_calls[0].name, "get_weather");
        assert_eq!(completion.tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        req = after_results(req, &completion.tool_calls, &["rain"]);
    }
    let drained = drain(client.stream(req.clone()).await.unwrap()).await;
    assert_eq!(drained.tool_calls.len(), 1);

    // A new turn without /loop ends it.
    req.messages.push(PromptMessage::new(Role::User, "thanks"));
    let completion = client.complete(req).await.unwrap();
    assert_eq!(completion.content, "thanks");
    assert!(completion.tool_calls.is_empty());
}

#[tokio::test]
async fn json_mode_wraps_text_that_is_not_json() {
    let client = mock(&MockScript::new(), settings());
    let mut req = request("echo", "hello \"you\"");
    req.response_format = Some(ResponseFormat::JsonObject);
    let completion = client.complete(req.clone()).await.unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&completion.content).unwrap();
    assert_eq!(parsed, json!({"echo": "hello \"you\""}));

    req.response_format = Some(ResponseFormat::JsonSchema {
        name: "x".into(),
        description: None,
        schema: json!({"type": "object"}),
        strict: None,
    });
    let drained = drain(client.stream(req.clone()).await.unwrap()).await;
    let parsed: serde_json::Value = serde_json::from_str(&drained.text()).unwrap();
    assert_eq!(parsed, json!({"echo": "hello \"you\""}));

    req.messages
        .push(PromptMessage::new(Role::User, r#"{"a": 1}"#));
    let completion = client.complete(req.clone()).await.unwrap();
    assert_eq!(completion.content, r#"{"a": 1}"#);

    req.response_format = Some(ResponseFormat::Text);
    req.messages.push(PromptMessage::new(Role::User, "plain"));
    assert_eq!(client.complete(req).await.unwrap().content, "plain");
}

#[tokio::test]
async fn scripted_tool_calls_win_over_the_echo() {
    let script = MockScript::new();
    let client = mock(&script, settings());
    let call = ToolCall {
        id: "call_x".into(),
        name: "get_weather".into(),
        arguments: "{}".into(),
    };
    script.push(MockReply::ToolCalls(vec![call.clone()]));
    script.push(MockReply::ToolCalls(vec![call.clone()]));
    let completion = client.complete(request("echo", "hi")).await.unwrap();
    assert_eq!(completion.tool_calls, vec![call.clone()]);
    let drained = drain(client.stream(request("echo", "hi")).await.unwrap()).await;
    assert_eq!(drained.tool_calls, vec![call]);
}
