//! Tests of the turn with scripted ports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use super::test_support::{
    Harness, Script, call, continuing, delta, done, live, mock_model, tool_call,
};
use super::*;
use crate::agent::AgentStatus;
use crate::auth::{Principal, PrincipalKind, Scope};
use crate::conversation::{MessageStatus, RunStatus};
use crate::llm::{
    PromptMessage, ProviderError, ResponseFormat, Role, TokenUsage, ToolChoice, ToolDefinition,
};
use crate::tool::ToolError;

// ---------------------------------------------------------------------------------------
// Helpers

fn streamed(message: &str) -> TurnRequest {
    TurnRequest {
        stream: true,
        ..TurnRequest::user(message)
    }
}

fn run_memory() -> Memory {
    Memory::Run {
        run_id: None,
        log_meta: Map::new(),
        log_now: false,
    }
}

fn run_request(message: &str) -> TurnRequest {
    TurnRequest::new(vec![PromptMessage::new(Role::User, message)], run_memory())
}

fn served(key: &str) -> TurnTarget {
    TurnTarget::ServedAgent {
        key: key.to_owned(),
        version: None,
    }
}

fn api_key(agents: Option<Vec<&str>>) -> Principal {
    Principal {
        id: "key_1".to_owned(),
        name: "test key".to_owned(),
        kind: PrincipalKind::ApiKey { owner: None },
        role: None,
        scopes: vec![Scope::Write],
        agents: agents.map(|a| a.into_iter().map(str::to_owned).collect()),
        rate_limit_per_minute: None,
    }
}

fn unavailable() -> ProviderError {
    ProviderError::Unavailable("connection reset".to_owned())
}

fn lookup_tool() -> Value {
    json!({
        "type": "http",
        "name": "lookup",
        "url": "https://tools.example.com/lookup",
        "parameters": {
            "type": "object",
            "properties": {"id": {"type": "string"}},
            "required": ["id"]
        }
    })
}

fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".to_owned(),
        description: Some("The weather in a city".to_owned()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        strict: None,
    }
}

async fn events(turn: Turn) -> Vec<TurnEvent> {
    turn.collect().await
}

/// The shape of the events: `Started`, `Text(…)`, `Call(name, server)`, `Result(name)`,
/// `Finished`, `Failed`.
fn shape(events: &[TurnEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            TurnEvent::Started => "Started".to_owned(),
            TurnEvent::TextDelta(t) => format!("Text({t})"),
            TurnEvent::ToolCall { call, server } => format!("Call({}, {server})", call.name),
            TurnEvent::ToolResult { name, is_error, .. } => {
                format!("Result({name}, error: {is_error})")
            }
            TurnEvent::Finished(_) => "Finished".to_owned(),
            TurnEvent::Failed(_) => "Failed".to_owned(),
        })
        .collect()
}

fn outcome(events: &[TurnEvent]) -> &TurnOutcome {
    match events.last() {
        Some(TurnEvent::Finished(o)) => o,
        other => panic!("the turn did not finish: {other:?}"),
    }
}

fn roles(messages: &[crate::conversation::Message]) -> Vec<Role> {
    messages.iter().map(|m| m.role).collect()
}

// ---------------------------------------------------------------------------------------
// 1. A streamed conversation turn

#[tokio::test]
async fn a_streamed_turn_yields_its_text_and_stores_the_exchange() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "Be brief.", vec![]).await;
    h.llm
        .answer(vec![delta("Hel"), delta("lo!"), done("stop", 7, 3)]);

    let turn = h
        .runtime
        .start_turn(None, live("a"), streamed("Hi"))
        .await
        .unwrap();
    let conversation_id = turn.start().conversation.as_ref().unwrap().id.clone();
    let answer_id = turn.start().answer_id.clone();
    let events = events(turn).await;

    assert_eq!(
        shape(&events),
        ["Started", "Text(Hel)", "Text(lo!)", "Finished"]
    );
    let out = outcome(&events);
    assert_eq!(out.text, "Hello!");
    assert_eq!(out.usage, Some(TokenUsage::new(7, 3)));
    assert_eq!(out.finish_reason.as_deref(), Some("stop"));
    assert_eq!(out.model, mock_model());
    assert!(out.tool_calls.is_empty() && out.steps.is_empty() && out.run.is_none());
    let chat = out.chat.as_ref().unwrap();
    assert_eq!(chat.answer.id, answer_id);
    assert_eq!(chat.conversation.id, conversation_id);

    let stored = h.mem.messages_of(&conversation_id);
    assert_eq!(roles(&stored), [Role::User, Role::Assistant]);
    assert_eq!(stored[0].content, "Hi");
    assert_eq!(stored[1].content, "Hello!");
    assert_eq!(stored[1].id, answer_id);
    assert_eq!(stored[1].status, MessageStatus::Complete);
    assert_eq!(stored[1].usage, Some(TokenUsage::new(7, 3)));
    assert_eq!(stored[1].model, Some(mock_model()));
    assert_eq!(h.mem.conversation_count(), 1);

    // The model got the instructions then the message, streamed.
    let requests = h.llm.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].messages,
        [
            PromptMessage::new(Role::System, "Be brief."),
            PromptMessage::new(Role::User, "Hi"),
        ]
    );
    assert_eq!(requests[0].model, "echo");
}

#[tokio::test]
async fn a_whole_answer_is_one_text_event_and_finish_drives_the_turn() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    h.llm
        .answer(vec![delta("Hel"), delta("lo"), done("stop", 1, 2)]);

    let turn = h
        .runtime
        .start_turn(None, live("a"), TurnRequest::user("Hi"))
        .await
        .unwrap();
    let events = events(turn).await;
    assert_eq!(shape(&events), ["Started", "Text(Hello)", "Finished"]);

    h.llm.answer(vec![delta("Again"), done("stop", 1, 1)]);
    let out = h
        .runtime
        .start_turn(None, live("a"), TurnRequest::user("Hi"))
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!(out.text, "Again");
    let stored = h.mem.messages_of(&out.chat.unwrap().conversation.id);
    assert_eq!(stored.len(), 2);
    // No system message when the agent has no instructions.
    assert_eq!(h.llm.requests()[0].messages.len(), 1);
}

#[tokio::test]
async fn a_conversation_continues_with_its_history() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    h.llm.answer(vec![delta("One"), done("stop", 1, 1)]);
    h.llm.answer(vec![delta("Two"), done("stop", 1, 1)]);
    let session = |message: &str| TurnRequest {
        memory: Memory::Conversation {
            session_key: Some("s-1".to_owned()),
            conversation_id: None,
            from_answer: None,
            context: Map::new(),
            store: true,
        },
        ..TurnRequest::user(message)
    };
    let first = h
        .runtime
        .start_turn(None, live("a"), session("first"))
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    let second = h
        .runtime
        .start_turn(None, live("a"), session("second"))
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    let id = first.chat.unwrap().conversation.id;
    assert_eq!(second.chat.unwrap().conversation.id, id);
    assert_eq!(
        h.llm.requests()[1].messages,
        [
            PromptMessage::new(Role::User, "first"),
            PromptMessage::new(Role::Assistant, "One"),
            PromptMessage::new(Role::User, "second"),
        ]
    );
    assert_eq!(h.mem.messages_of(&id).len(), 4);
    assert_eq!(h.mem.conversations.lock().unwrap()[&id].message_count, 4);
}

// ---------------------------------------------------------------------------------------
// 2. A consumer that goes away

#[tokio::test]
async fn a_turn_dropped_after_text_cancels_the_model_and_stores_what_was_said() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    h.llm.push(Script::Events {
        events: vec![delta("Once upon")],
        hang: true,
    });

    let mut turn = h
        .runtime
        .start_turn(None, live("a"), streamed("Tell"))
        .await
        .unwrap();
    let conversation_id = turn.start().conversation.as_ref().unwrap().id.clone();
    let answer_id = turn.start().answer_id.clone();
    assert!(matches!(turn.next().await, Some(TurnEvent::Started)));
    assert!(matches!(turn.next().await, Some(TurnEvent::TextDelta(t)) if t == "Once upon"));
    assert_eq!(h.llm.cut(), 0);
    drop(turn);
    assert_eq!(
        h.llm.cut(),
        1,
        "the model's stream is dropped with the turn"
    );

    assert!(
        h.eventually(|m| m.messages_of(&conversation_id).len() == 2)
            .await,
        "the cut turn is recorded in the background"
    );
    let stored = h.mem.messages_of(&conversation_id);
    assert_eq!(stored[0].content, "Tell");
    assert_eq!(stored[1].id, answer_id);
    assert_eq!(stored[1].content, "Once upon");
    assert_eq!(stored[1].status, MessageStatus::Incomplete);
}

#[tokio::test]
async fn a_turn_dropped_before_any_text_stores_nothing() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    for _ in 0..2 {
        h.llm.push(Script::Events {
            events: vec![],
            hang: true,
        });
    }

    // Dropped after `Started`.
    let mut turn = h
        .runtime
        .start_turn(None, live("a"), streamed("Hi"))
        .await
        .unwrap();
    assert!(matches!(turn.next().await, Some(TurnEvent::Started)));
    drop(turn);
    // Dropped without being polled at all.
    drop(
        h.runtime
            .start_turn(None, live("a"), streamed("Hi"))
            .await
            .unwrap(),
    );

    assert_eq!(h.llm.cut(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(h.mem.all_messages().is_empty());
    assert_eq!(h.mem.conversation_count(), 0);
}

#[tokio::test]
async fn a_run_turn_dropped_mid_way_is_logged_failed_with_its_text() {
    let h = Harness::new();
    h.llm.push(Script::Events {
        events: vec![delta("partial")],
        hang: true,
    });
    let target = TurnTarget::Model(ModelSpec {
        provider_id: None,
        model: "mock/echo".to_owned(),
        field: "model".to_owned(),
    });
    let req = TurnRequest {
        stream: true,
        ..run_request("Hi")
    };
    let mut turn = h.runtime.start_turn(None, target, req).await.unwrap();
    let run_id = turn.start().run_id.clone().unwrap();
    turn.next().await;
    turn.next().await;
    drop(turn);
    assert!(h.eventually(|m| m.runs().len() == 1).await);
    let run = h.runtime.get_run(&run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.response.as_deref(), Some("partial"));
    assert_eq!(run.error.as_deref(), Some("client disconnected"));
    assert_eq!(run.prompt, "Hi");
}

// ---------------------------------------------------------------------------------------
// 3. Provider failures

#[tokio::test]
async fn a_provider_failing_mid_stream_fails_the_turn_and_keeps_the_text_incomplete() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    h.llm.answer(vec![delta("Half an"), Err(unavailable())]);

    let turn = h
        .runtime
        .start_turn(None, live("a"), streamed("Hi"))
        .await
        .unwrap();
    let conversation_id = turn.start().conversation.as_ref().unwrap().id.clone();
    let events = events(turn).await;
    assert_eq!(shape(&events), ["Started", "Text(Half an)", "Failed"]);
    assert!(matches!(
        events.last(),
        Some(TurnEvent::Failed(Error::Provider { provider_id, error: ProviderError::Unavailable(_) }))
            if provider_id == "mock"
    ));

    let stored = h.mem.messages_of(&conversation_id);
    assert_eq!(roles(&stored), [Role::User, Role::Assistant]);
    assert_eq!(stored[1].content, "Half an");
    assert_eq!(stored[1].status, MessageStatus::Incomplete);
}

#[tokio::test]
async fn a_provider_failing_before_any_text_stores_no_conversation() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    h.llm.answer(vec![Err(unavailable())]);
    let turn = h
        .runtime
        .start_turn(None, live("a"), streamed("Hi"))
        .await
        .unwrap();
    let result = turn.finish().await;
    assert!(matches!(result, Err(Error::Provider { .. })));
    assert!(h.mem.all_messages().is_empty());
    assert_eq!(h.mem.conversation_count(), 0);
}

#[tokio::test]
async fn a_provider_failing_at_start_is_returned_and_stores_nothing() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    h.llm.push(Script::FailAtStart(ProviderError::Upstream {
        status: 503,
        message: "overloaded".to_owned(),
    }));
    let err = h
        .runtime
        .start_turn(None, live("a"), streamed("Hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Provider { provider_id, error: ProviderError::Upstream { status: 503, .. } } if provider_id == "mock"),
        "{err:?}"
    );
    assert!(h.mem.all_messages().is_empty());
    assert_eq!(h.mem.conversation_count(), 0);
    assert!(h.mem.runs().is_empty());
}

#[tokio::test]
async fn a_run_failing_at_start_is_logged_failed() {
    let h = Harness::new();
    h.llm.push(Script::FailAtStart(unavailable()));
    let err = h
        .runtime
        .start_turn(
            None,
            TurnTarget::Model(ModelSpec {
                provider_id: None,
                model: "mock/echo".to_owned(),
                field: "model".to_owned(),
            }),
            run_request("Hi"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Provider { .. }));
    let runs = h.mem.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[0].response, None);
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap()
            .contains("connection reset")
    );
    assert_eq!(runs[0].prompt, "Hi");
}

#[tokio::test]
async fn a_run_failing_mid_stream_is_logged_failed_with_its_text() {
    let h = Harness::new();
    h.llm.answer(vec![delta("so far"), Err(unavailable())]);
    let target = TurnTarget::Model(ModelSpec {
        provider_id: None,
        model: "mock/echo".to_owned(),
        field: "model".to_owned(),
    });
    let req = TurnRequest {
        stream: true,
        ..run_request("Hi")
    };
    let turn = h.runtime.start_turn(None, target, req).await.unwrap();
    let run_id = turn.start().run_id.clone().unwrap();
    assert!(matches!(turn.finish().await, Err(Error::Provider { .. })));
    let run = h.runtime.get_run(&run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.response.as_deref(), Some("so far"));
    assert!(run.error.unwrap().contains("connection reset"));
}

#[tokio::test]
async fn a_fallback_model_answers_when_the_first_fails_at_start() {
    let h = Harness::new();
    let mut agent = h.agent("a", AgentStatus::Active, "", vec![]).await;
    // The fallback is the same mock model; the scripted client answers both routes.
    agent.fallback_model = Some(mock_model());
    crate::ports::AgentStore::update_agent(h.mem.as_ref(), &agent)
        .await
        .unwrap();
    h.llm.push(Script::FailAtStart(unavailable()));
    h.llm
        .answer(vec![delta("from the fallback"), done("stop", 1, 1)]);
    let out = h
        .runtime
        .start_turn(None, live("a"), streamed("Hi"))
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!(out.text, "from the fallback");
    assert_eq!(h.llm.requests().len(), 2);

    // An invalid request is not retried elsewhere.
    h.llm
        .push(Script::FailAtStart(ProviderError::InvalidRequest {
            status: 400,
            message: "bad".to_owned(),
        }));
    let err = h
        .runtime
        .start_turn(None, live("a"), streamed("Hi"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Provider {
            error: ProviderError::InvalidRequest { .. },
            ..
        }
    ));
    assert_eq!(h.llm.requests().len(), 3);
}

// ---------------------------------------------------------------------------------------
// 4. Run turns

#[tokio::test]
async fn a_run_turn_on_a_model_is_logged_succeeded() {
    let h = Harness::new();
    h.llm.answer(vec![delta("4"), done("stop", 5, 1)]);
    let mut meta = Map::new();
    meta.insert("user_id".to_owned(), json!("u1"));
    let req = TurnRequest {
        instructions: Some("Answer with a number.".to_owned()),
        ..TurnRequest::new(
            vec![PromptMessage::new(Role::User, "2+2?")],
            Memory::Run {
                run_id: Some("eval-1".to_owned()),
                log_meta: meta.clone(),
                log_now: false,
            },
        )
    };
    let target = TurnTarget::Model(ModelSpec {
        provider_id: Some("mock".to_owned()),
        model: "echo".to_owned(),
        field: "model".to_owned(),
    });
    let out = h
        .runtime
        .start_turn(None, target, req)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert!(out.chat.is_none());
    let run = out.run.unwrap();
    assert_eq!(run.id, "eval-1");
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.response.as_deref(), Some("4"));
    assert_eq!(run.usage, Some(TokenUsage::new(5, 1)));
    assert_eq!(run.preamble, "Answer with a number.");
    assert_eq!(run.prompt, "2+2?");
    assert_eq!(run.log_meta, meta);
    assert_eq!(h.runtime.get_run("eval-1").await.unwrap(), run);
    assert!(h.mem.conversation_count() == 0 && h.mem.all_messages().is_empty());
}

#[tokio::test]
async fn a_run_turn_on_an_agent_uses_its_instructions() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "You are A.", vec![])
        .await;
    h.llm.answer(vec![delta("yes"), done("stop", 1, 1)]);
    let target = TurnTarget::AgentOrModel {
        name: "a".to_owned(),
        version: None,
    };
    let out = h
        .runtime
        .start_turn(None, target, run_request("ok?"))
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    let run = out.run.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.preamble, "You are A.");
    assert_eq!(run.response.as_deref(), Some("yes"));
    assert_eq!(h.mem.runs().len(), 1);
    assert_eq!(
        h.llm.requests()[0].messages[0],
        PromptMessage::new(Role::System, "You are A.")
    );
}

#[tokio::test]
async fn a_one_shot_run_is_logged_before_it_returns() {
    let h = Harness::new();
    h.llm.answer(vec![delta("Bonjour"), done("stop", 3, 1)]);
    let run = h
        .runtime
        .run(RunRequest {
            run_id: None,
            preamble: "Translate to French.".to_owned(),
            prompt: "Hello".to_owned(),
            model: ModelSpec {
                provider_id: None,
                model: "echo".to_owned(),
                field: "llmModel".to_owned(),
            },
            params: Params {
                temperature: Some(0.2),
                ..Params::default()
            },
            log_meta: Map::new(),
        })
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.response.as_deref(), Some("Bonjour"));
    assert_eq!(h.mem.runs(), std::slice::from_ref(&run));
    let request = &h.llm.requests()[0];
    assert_eq!(request.temperature, Some(0.2));
    assert_eq!(
        request.messages,
        [
            PromptMessage::new(Role::System, "Translate to French."),
            PromptMessage::new(Role::User, "Hello"),
        ]
    );
}

#[tokio::test]
async fn a_one_shot_run_with_a_taken_id_is_a_conflict_and_a_failing_one_is_logged() {
    let h = Harness::new();
    let req = |id: &str| RunRequest {
        run_id: Some(id.to_owned()),
        preamble: String::new(),
        prompt: "Hello".to_owned(),
        model: ModelSpec {
            provider_id: None,
            model: "mock/echo".to_owned(),
            field: "model".to_owned(),
        },
        params: Params::default(),
        log_meta: Map::new(),
    };
    h.llm.answer(vec![delta("one"), done("stop", 1, 1)]);
    h.runtime.run(req("r-1")).await.unwrap();
    h.llm.answer(vec![delta("two"), done("stop", 1, 1)]);
    assert!(matches!(
        h.runtime.run(req("r-1")).await,
        Err(Error::Conflict { .. })
    ));

    h.llm.push(Script::FailAtStart(unavailable()));
    assert!(matches!(
        h.runtime.run(req("r-2")).await,
        Err(Error::Provider { .. })
    ));
    let failed = h.runtime.get_run("r-2").await.unwrap();
    assert_eq!(failed.status, RunStatus::Failed);

    let blank = RunRequest {
        prompt: "  ".to_owned(),
        ..req("r-3")
    };
    assert!(matches!(
        h.runtime.run(blank).await,
        Err(Error::Invalid(i)) if i.field == "prompt"
    ));
}

// ---------------------------------------------------------------------------------------
// 5. Access rules

#[tokio::test]
async fn a_key_may_call_only_the_agents_it_lists() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    h.agent("b", AgentStatus::Active, "", vec![]).await;
    let key = api_key(Some(vec!["a"]));
    for target in [served("b"), live("b")] {
        let err = h
            .runtime
            .start_turn(Some(&key), target, TurnRequest::user("Hi"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    }
    h.llm.answer(vec![delta("ok"), done("stop", 1, 1)]);
    assert!(
        h.runtime
            .start_turn(Some(&key), served("a"), TurnRequest::user("Hi"))
            .await
            .is_ok()
    );
    assert_eq!(h.llm.requests().len(), 1);
}

#[tokio::test]
async fn a_draft_agent_is_not_served() {
    let h = Harness::new();
    h.agent("d", AgentStatus::Draft, "", vec![]).await;
    let err = h
        .runtime
        .start_turn(None, served("d"), TurnRequest::user("Hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(i) if i.field == "model" && i.extra.get("code") == Some(&json!("agent_not_active"))),
        "{err:?}"
    );
    // Its live definition may be chatted with (the management API's chat).
    h.llm
        .answer(vec![delta("draft answer"), done("stop", 1, 1)]);
    assert!(
        h.runtime
            .start_turn(None, live("d"), TurnRequest::user("Hi"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_archived_agent_refuses_a_live_chat() {
    let h = Harness::new();
    h.agent("old", AgentStatus::Archived, "", vec![]).await;
    let err = h
        .runtime
        .start_turn(None, live("old"), TurnRequest::user("Hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert!(h.llm.requests().is_empty());
}

#[tokio::test]
async fn unknown_agents_and_versions_are_not_found() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    let pinned = TurnTarget::ServedAgent {
        key: "a".to_owned(),
        version: Some(3),
    };
    let err = h
        .runtime
        .start_turn(None, pinned, TurnRequest::user("Hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotFound {
                entity: "version",
                ..
            }
        ),
        "{err:?}"
    );
    let err = h
        .runtime
        .start_turn(None, served("nobody"), TurnRequest::user("Hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotFound {
                entity: "agent",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_published_version_is_served_over_the_live_definition() {
    let h = Harness::new();
    let mut agent = h
        .agent("a", AgentStatus::Active, "Published words.", vec![])
        .await;
    h.versions
        .publish(&AgentRef::parse("a").unwrap(), None, None)
        .await
        .unwrap();
    agent.instructions = "Unpublished edit.".to_owned();
    crate::ports::AgentStore::update_agent(h.mem.as_ref(), &agent)
        .await
        .unwrap();

    h.llm.answer(vec![delta("v1"), done("stop", 1, 1)]);
    h.llm.answer(vec![delta("live"), done("stop", 1, 1)]);
    h.llm.answer(vec![delta("pinned"), done("stop", 1, 1)]);

    let turn = h
        .runtime
        .start_turn(None, served("a"), TurnRequest::user("Hi"))
        .await
        .unwrap();
    assert_eq!(turn.start().version, Some(1));
    let out = turn.finish().await.unwrap();
    let chat = out.chat.unwrap();
    assert_eq!(chat.version, Some(1));
    assert_eq!(chat.answer.agent_version, Some(1));
    // The management chat talks to the live definition.
    let live_turn = h
        .runtime
        .start_turn(None, live("a"), TurnRequest::user("Hi"))
        .await
        .unwrap();
    assert_eq!(live_turn.start().version, None);
    live_turn.finish().await.unwrap();
    let pinned = TurnTarget::ServedAgent {
        key: "a".to_owned(),
        version: Some(1),
    };
    h.runtime
        .start_turn(None, pinned, TurnRequest::user("Hi"))
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();

    let systems: Vec<String> = h
        .llm
        .requests()
        .iter()
        .map(|r| r.messages[0].content.clone())
        .collect();
    assert_eq!(
        systems,
        ["Published words.", "Unpublished edit.", "Published words."]
    );
}

#[tokio::test]
async fn a_model_named_directly_needs_a_trusted_caller() {
    let h = Harness::new();
    let direct = || TurnTarget::AgentOrModel {
        name: "mock/echo".to_owned(),
        version: None,
    };
    let key = api_key(Some(vec!["a"]));
    let err = h
        .runtime
        .start_turn(Some(&key), direct(), run_request("Hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    assert!(h.llm.requests().is_empty());

    h.llm.answer(vec![delta("echo"), done("stop", 1, 1)]);
    let turn = h
        .runtime
        .start_turn(None, direct(), run_request("Hi"))
        .await
        .unwrap();
    assert!(turn.start().agent.is_none());
    assert_eq!(turn.start().model, mock_model());
    let out = turn.finish().await.unwrap();
    assert_eq!(out.run.unwrap().model, mock_model());

    // A key with `write` and no allowlist may too.
    h.llm.answer(vec![delta("echo"), done("stop", 1, 1)]);
    assert!(
        h.runtime
            .start_turn(Some(&api_key(None)), direct(), run_request("Hi"))
            .await
            .is_ok()
    );
    // A conversation needs an agent.
    let err = h
        .runtime
        .start_turn(None, direct(), TurnRequest::user("Hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(i) if i.field == "model"),
        "{err:?}"
    );
}

#[tokio::test]
async fn blank_input_is_invalid() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    let err = h
        .runtime
        .start_turn(None, live("a"), TurnRequest::user("   "))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(i) if i.field == "message"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Server-side tools

#[tokio::test]
async fn an_agents_http_tool_is_run_and_its_result_fed_back() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "Use tools.", vec![lookup_tool()])
        .await;
    h.llm.answer(vec![
        delta("Let me look."),
        tool_call("call_1", "lookup", r#"{"id": "42"}"#),
        done("tool_calls", 10, 5),
    ]);
    h.llm.answer(vec![
        delta("Ada, "),
        delta("born 1815."),
        done("stop", 20, 3),
    ]);
    h.tools.answer(Ok(r#"{"name": "Ada"}"#.to_owned()));

    let turn = h
        .runtime
        .start_turn(None, live("a"), streamed("Who is 42?"))
        .await
        .unwrap();
    let conversation_id = turn.start().conversation.as_ref().unwrap().id.clone();
    let events = events(turn).await;
    assert_eq!(
        shape(&events),
        [
            "Started",
            "Text(Let me look.)",
            "Call(lookup, true)",
            "Result(lookup, error: false)",
            "Text(Ada, )",
            "Text(born 1815.)",
            "Finished"
        ]
    );
    assert!(events.iter().any(|e| matches!(e,
        TurnEvent::ToolResult { call_id, output, .. } if call_id == "call_1" && output == r#"{"name": "Ada"}"#)));

    // The tool got the parsed arguments.
    let calls = h.tools.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "lookup");
    assert_eq!(Value::Object(calls[0].1.clone()), json!({"id": "42"}));

    // The second model call holds the call and its result.
    let requests = h.llm.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].tools.len(), 1);
    assert_eq!(requests[0].tools[0].name, "lookup");
    assert_eq!(
        requests[1].messages,
        [
            PromptMessage::new(Role::System, "Use tools."),
            PromptMessage::new(Role::User, "Who is 42?"),
            PromptMessage::assistant_calls(
                "Let me look.",
                vec![call("call_1", "lookup", r#"{"id": "42"}"#)]
            ),
            PromptMessage::tool_result("call_1", r#"{"name": "Ada"}"#),
        ]
    );

    let out = outcome(&events);
    assert_eq!(out.text, "Ada, born 1815.");
    assert_eq!(
        out.usage,
        Some(TokenUsage::new(30, 8)),
        "usage of both calls"
    );
    assert_eq!(out.finish_reason.as_deref(), Some("stop"));
    assert_eq!(out.steps.len(), 2);
    assert!(out.tool_calls.is_empty());
    assert_eq!(out.chat.as_ref().unwrap().steps.len(), 2);

    let stored = h.mem.messages_of(&conversation_id);
    assert_eq!(
        roles(&stored),
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    assert_eq!(stored[1].content, "Let me look.");
    assert_eq!(
        stored[1].tool_calls,
        [call("call_1", "lookup", r#"{"id": "42"}"#)]
    );
    assert_eq!(stored[2].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(stored[2].content, r#"{"name": "Ada"}"#);
    assert_eq!(stored[3].content, "Ada, born 1815.");
    assert!(stored[3].tool_calls.is_empty());
    assert_eq!(stored[3].status, MessageStatus::Complete);
}

#[tokio::test]
async fn arguments_that_break_the_schema_are_answered_with_an_error_not_sent() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![lookup_tool()])
        .await;
    h.llm.answer(vec![
        tool_call("call_1", "lookup", r#"{"name": "Ada"}"#),
        tool_call("call_2", "lookup", "not json"),
        done("tool_calls", 1, 1),
    ]);
    h.llm.answer(vec![delta("Sorry."), done("stop", 1, 1)]);

    let events = events(
        h.runtime
            .start_turn(None, live("a"), streamed("Who?"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        shape(&events),
        [
            "Started",
            "Call(lookup, true)",
            "Call(lookup, true)",
            "Result(lookup, error: true)",
            "Result(lookup, error: true)",
            "Text(Sorry.)",
            "Finished"
        ]
    );
    assert!(h.tools.calls().is_empty(), "the tool is not called");

    let requests = h.llm.requests();
    let results: Vec<&PromptMessage> = requests[1]
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .collect();
    assert_eq!(results.len(), 2);
    let first: Value = serde_json::from_str(&results[0].content).unwrap();
    let message = first["error"].as_str().unwrap();
    assert!(message.contains("schema"), "{message}");
    assert_eq!(results[0].tool_call_id.as_deref(), Some("call_1"));
    let second: Value = serde_json::from_str(&results[1].content).unwrap();
    assert!(second["error"].as_str().unwrap().contains("JSON"));
    assert_eq!(results[1].tool_call_id.as_deref(), Some("call_2"));
    assert_eq!(outcome(&events).text, "Sorry.");
}

#[tokio::test]
async fn a_model_that_keeps_calling_tools_is_stopped_after_the_step_limit() {
    let h = Harness::with(RuntimeSettings {
        max_tool_steps: 2,
        ..RuntimeSettings::default()
    });
    h.agent("a", AgentStatus::Active, "", vec![lookup_tool()])
        .await;
    for i in 0..5 {
        h.llm.answer(vec![
            tool_call(&format!("call_{i}"), "lookup", r#"{"id": "1"}"#),
            done("tool_calls", 1, 1),
        ]);
    }
    let turn = h
        .runtime
        .start_turn(None, live("a"), streamed("Loop"))
        .await
        .unwrap();
    let conversation_id = turn.start().conversation.as_ref().unwrap().id.clone();
    let events = events(turn).await;
    let out = outcome(&events);
    assert_eq!(out.finish_reason.as_deref(), Some("max_tool_steps"));
    assert!(out.text.starts_with("Stopped"), "{}", out.text);
    assert!(out.text.contains('2'));
    assert_eq!(h.tools.calls().len(), 2, "exactly two tool rounds");
    assert_eq!(h.llm.requests().len(), 3);
    assert_eq!(h.llm.left(), 2);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, TurnEvent::ToolResult { .. }))
            .count(),
        2
    );
    assert!(matches!(
        &events[events.len() - 2],
        TurnEvent::TextDelta(t) if t.starts_with("Stopped")
    ));
    let stored = h.mem.messages_of(&conversation_id);
    assert_eq!(
        roles(&stored),
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant,
            Role::Tool,
            Role::Assistant
        ]
    );
    assert!(stored[5].content.starts_with("Stopped"));
    assert!(stored[5].tool_calls.is_empty());
    assert_eq!(out.usage, Some(TokenUsage::new(3, 3)));
}

#[tokio::test]
async fn a_failing_tool_is_an_error_result_for_the_model() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![lookup_tool()])
        .await;
    h.tools.answer(Err(ToolError::Status {
        status: 500,
        body: "database down".to_owned(),
    }));
    h.llm.answer(vec![
        tool_call("call_1", "lookup", r#"{"id": "42"}"#),
        done("tool_calls", 1, 1),
    ]);
    h.llm
        .answer(vec![delta("The lookup failed."), done("stop", 1, 1)]);
    let events = events(
        h.runtime
            .start_turn(None, live("a"), TurnRequest::user("Who?"))
            .await
            .unwrap(),
    )
    .await;
    let result = events
        .iter()
        .find_map(|e| match e {
            TurnEvent::ToolResult {
                output, is_error, ..
            } => Some((output.clone(), *is_error)),
            _ => None,
        })
        .unwrap();
    assert!(result.1);
    let error: Value = serde_json::from_str(&result.0).unwrap();
    assert!(error["error"].as_str().unwrap().contains("500"));
    assert_eq!(h.tools.calls().len(), 1);
    assert_eq!(outcome(&events).text, "The lookup failed.");
    assert_eq!(
        h.llm.requests()[1].messages.last().unwrap(),
        &PromptMessage::tool_result("call_1", result.0)
    );
}

#[tokio::test]
async fn a_call_of_an_unknown_tool_is_answered_with_an_error() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![lookup_tool()])
        .await;
    h.llm.answer(vec![
        tool_call("call_1", "delete_everything", "{}"),
        done("tool_calls", 1, 1),
    ]);
    h.llm.answer(vec![delta("I cannot."), done("stop", 1, 1)]);
    let events = events(
        h.runtime
            .start_turn(None, live("a"), TurnRequest::user("Do it"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        shape(&events),
        [
            "Started",
            "Call(delete_everything, true)",
            "Result(delete_everything, error: true)",
            "Text(I cannot.)",
            "Finished"
        ]
    );
    assert!(h.tools.calls().is_empty());
    let last = h.llm.requests()[1].messages.last().unwrap().clone();
    assert!(last.content.contains("unknown tool"), "{}", last.content);
}

#[tokio::test]
async fn a_failure_after_a_tool_step_keeps_the_step_incomplete() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![lookup_tool()])
        .await;
    h.llm.answer(vec![
        tool_call("call_1", "lookup", r#"{"id": "42"}"#),
        done("tool_calls", 1, 1),
    ]);
    h.llm.push(Script::FailAtStart(unavailable()));
    let turn = h
        .runtime
        .start_turn(None, live("a"), streamed("Who?"))
        .await
        .unwrap();
    let conversation_id = turn.start().conversation.as_ref().unwrap().id.clone();
    let events = events(turn).await;
    assert_eq!(
        shape(&events),
        [
            "Started",
            "Call(lookup, true)",
            "Result(lookup, error: false)",
            "Failed"
        ]
    );
    let stored = h.mem.messages_of(&conversation_id);
    assert_eq!(
        roles(&stored),
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    assert_eq!(stored[3].status, MessageStatus::Incomplete);
}

#[tokio::test]
async fn a_turn_cut_while_its_tool_runs_leaves_a_valid_history() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![lookup_tool()])
        .await;
    h.tools
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    h.llm.answer(vec![
        tool_call("call_1", "lookup", r#"{"id": "42"}"#),
        done("tool_calls", 1, 1),
    ]);
    let mut turn = h
        .runtime
        .start_turn(None, live("a"), streamed("Who?"))
        .await
        .unwrap();
    let conversation_id = turn.start().conversation.as_ref().unwrap().id.clone();
    assert!(matches!(turn.next().await, Some(TurnEvent::Started)));
    assert!(matches!(
        turn.next().await,
        Some(TurnEvent::ToolCall { .. })
    ));
    // The tool never answers; the consumer goes away while it runs.
    let waited = tokio::time::timeout(std::time::Duration::from_millis(50), turn.next()).await;
    assert!(waited.is_err());
    assert_eq!(h.tools.calls().len(), 1);
    drop(turn);
    assert!(
        h.eventually(|m| !m.messages_of(&conversation_id).is_empty())
            .await
    );

    // The conversation goes on: every tool call in the history it sends has its result.
    h.llm.answer(vec![delta("ok"), done("stop", 1, 1)]);
    let next = TurnRequest {
        memory: Memory::Conversation {
            session_key: None,
            conversation_id: Some(conversation_id),
            from_answer: None,
            context: Map::new(),
            store: true,
        },
        ..TurnRequest::user("Still there?")
    };
    h.runtime
        .start_turn(None, live("a"), next)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    let messages = &h.llm.requests()[1].messages;
    for (i, m) in messages.iter().enumerate() {
        for c in &m.tool_calls {
            assert!(
                messages[i + 1..]
                    .iter()
                    .take_while(|n| n.role == Role::Tool)
                    .any(|n| n.tool_call_id.as_deref() == Some(c.id.as_str())),
                "call {} has no result right after it: {messages:#?}",
                c.id
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7. Client-side tools

#[tokio::test]
async fn a_call_of_a_callers_tool_ends_the_turn_and_the_next_turn_continues_it() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "Help.", vec![lookup_tool()])
        .await;
    h.llm.answer(vec![
        tool_call("call_w", "get_weather", r#"{"city": "Paris"}"#),
        done("tool_calls", 4, 2),
    ]);
    let options = CallOptions {
        client_tools: vec![weather_tool()],
        ..CallOptions::default()
    };
    let req = TurnRequest {
        options: options.clone(),
        ..streamed("Weather in Paris?")
    };
    let turn = h.runtime.start_turn(None, live("a"), req).await.unwrap();
    let conversation_id = turn.start().conversation.as_ref().unwrap().id.clone();
    let events = events(turn).await;
    assert_eq!(
        shape(&events),
        ["Started", "Call(get_weather, false)", "Finished"]
    );
    let out = outcome(&events);
    let weather_call = call("call_w", "get_weather", r#"{"city": "Paris"}"#);
    assert_eq!(out.tool_calls, std::slice::from_ref(&weather_call));
    assert_eq!(out.finish_reason.as_deref(), Some("tool_calls"));
    assert!(
        h.tools.calls().is_empty(),
        "the caller's tool is not run here"
    );
    assert_eq!(
        out.chat.as_ref().unwrap().answer.tool_calls,
        std::slice::from_ref(&weather_call)
    );
    let stored = h.mem.messages_of(&conversation_id);
    assert_eq!(roles(&stored), [Role::User, Role::Assistant]);
    assert_eq!(stored[1].tool_calls, std::slice::from_ref(&weather_call));
    assert_eq!(stored[1].status, MessageStatus::Complete);

    // The caller runs it and continues the conversation with the result.
    h.llm.answer(vec![delta("Sunny."), done("stop", 9, 2)]);
    let next = TurnRequest {
        input: vec![PromptMessage::tool_result("call_w", "sunny, 24C")],
        memory: Memory::Conversation {
            session_key: None,
            conversation_id: Some(conversation_id.clone()),
            from_answer: None,
            context: Map::new(),
            store: true,
        },
        options,
        ..TurnRequest::user("unused")
    };
    let out = h
        .runtime
        .start_turn(None, live("a"), next)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!(out.text, "Sunny.");
    assert_eq!(
        h.llm.requests()[1].messages,
        [
            PromptMessage::new(Role::System, "Help."),
            PromptMessage::new(Role::User, "Weather in Paris?"),
            PromptMessage::assistant_calls("", vec![weather_call]),
            PromptMessage::tool_result("call_w", "sunny, 24C"),
        ]
    );
    let stored = h.mem.messages_of(&conversation_id);
    assert_eq!(
        roles(&stored),
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    assert_eq!(stored[3].content, "Sunny.");
}

#[tokio::test]
async fn a_conversation_of_another_agent_is_not_found() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    h.agent("b", AgentStatus::Active, "", vec![]).await;
    h.llm.answer(vec![delta("hi"), done("stop", 1, 1)]);
    let out = h
        .runtime
        .start_turn(None, live("a"), TurnRequest::user("Hi"))
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    let id = out.chat.unwrap().conversation.id;
    let req = TurnRequest {
        memory: Memory::Conversation {
            session_key: None,
            conversation_id: Some(id),
            from_answer: None,
            context: Map::new(),
            store: true,
        },
        ..TurnRequest::user("Hi")
    };
    let err = h
        .runtime
        .start_turn(None, live("b"), req)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotFound {
                entity: "conversation",
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 8. Options reach the model

#[tokio::test]
async fn options_reach_the_model() {
    let h = Harness::new();
    let mut agent = h
        .agent("a", AgentStatus::Active, "", vec![lookup_tool()])
        .await;
    agent.temperature = Some(crate::agent::Temperature::parse(0.3).unwrap());
    crate::ports::AgentStore::update_agent(h.mem.as_ref(), &agent)
        .await
        .unwrap();
    h.llm.answer(vec![delta("{}"), done("stop", 1, 1)]);
    let same_name = ToolDefinition {
        name: "lookup".to_owned(),
        description: Some("the caller's own lookup".to_owned()),
        parameters: json!({"type": "object"}),
        strict: None,
    };
    let req = TurnRequest {
        params: Params {
            max_tokens: Some(100),
            ..Params::default()
        },
        options: CallOptions {
            client_tools: vec![same_name, weather_tool()],
            tool_choice: Some(ToolChoice::Function("get_weather".to_owned())),
            parallel_tool_calls: Some(false),
            response_format: Some(ResponseFormat::JsonObject),
            stop: vec!["END".to_owned()],
            seed: Some(7),
            user: Some("end-user-1".to_owned()),
            ..CallOptions::default()
        },
        ..TurnRequest::user("Hi")
    };
    h.runtime
        .start_turn(None, live("a"), req)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    let r = &h.llm.requests()[0];
    let names: Vec<&str> = r.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["lookup", "get_weather"],
        "the agent's first, deduplicated"
    );
    assert_eq!(
        r.tools[0].description, None,
        "the agent's own definition wins"
    );
    assert_eq!(
        r.tool_choice,
        Some(ToolChoice::Function("get_weather".to_owned()))
    );
    assert_eq!(r.parallel_tool_calls, Some(false));
    assert_eq!(r.response_format, Some(ResponseFormat::JsonObject));
    assert_eq!(r.stop, ["END"]);
    assert_eq!(r.seed, Some(7));
    assert_eq!(r.user.as_deref(), Some("end-user-1"));
    assert_eq!(r.temperature, Some(0.3), "the agent's parameter");
    assert_eq!(r.max_tokens, Some(100), "the caller's parameter");
}

#[tokio::test]
async fn tool_choice_is_dropped_when_no_tool_is_offered() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![]).await;
    h.llm.answer(vec![delta("ok"), done("stop", 1, 1)]);
    let req = TurnRequest {
        options: CallOptions {
            tool_choice: Some(ToolChoice::Required),
            parallel_tool_calls: Some(true),
            ..CallOptions::default()
        },
        ..TurnRequest::user("Hi")
    };
    h.runtime
        .start_turn(None, live("a"), req)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    let r = &h.llm.requests()[0];
    assert!(r.tools.is_empty());
    assert_eq!(r.tool_choice, None);
    assert_eq!(r.parallel_tool_calls, None);
}

#[tokio::test]
async fn bad_options_are_invalid_before_the_model_is_called() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "", vec![lookup_tool()])
        .await;
    let with = |options: CallOptions| TurnRequest {
        options,
        ..TurnRequest::user("Hi")
    };
    let cases = [
        (
            with(CallOptions {
                tool_choice: Some(ToolChoice::Function("nope".to_owned())),
                ..CallOptions::default()
            }),
            "tool_choice",
        ),
        (
            with(CallOptions {
                stop: ["a", "b", "c", "d", "e"].map(str::to_owned).to_vec(),
                ..CallOptions::default()
            }),
            "stop",
        ),
        (
            with(CallOptions {
                client_tools: vec![ToolDefinition {
                    name: "bad name".to_owned(),
                    ..weather_tool()
                }],
                ..CallOptions::default()
            }),
            "tools[0].name",
        ),
        (
            with(CallOptions {
                response_format: Some(ResponseFormat::JsonSchema {
                    name: String::new(),
                    description: None,
                    schema: json!({"type": "object"}),
                    strict: None,
                }),
                ..CallOptions::default()
            }),
            "response_format.json_schema.name",
        ),
    ];
    for (req, field) in cases {
        let err = h
            .runtime
            .start_turn(None, live("a"), req)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(i) if i.field == field),
            "{field}: {err:?}"
        );
    }
    // Four stop sequences are fine.
    h.llm.answer(vec![delta("ok"), done("stop", 1, 1)]);
    let four = with(CallOptions {
        stop: ["a", "b", "c", "d"].map(str::to_owned).to_vec(),
        ..CallOptions::default()
    });
    assert!(h.runtime.start_turn(None, live("a"), four).await.is_ok());
    assert_eq!(h.llm.requests().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Continuing from an answer

fn from(answer: &str) -> TurnRequest {
    continuing(answer, "next", true)
}

#[tokio::test]
async fn two_turns_continuing_one_answer_do_not_merge() {
    let h = Harness::new();
    h.agent("a", AgentStatus::Active, "Help.", vec![]).await;
    for _ in 0..3 {
        h.llm.answer(vec![delta("ok"), done("stop", 1, 1)]);
    }
    let first = h
        .runtime
        .start_turn(None, live("a"), TurnRequest::user("first"))
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    let line = first.chat.unwrap();
    // Both start while the first answer is the latest of its conversation…
    let left = h
        .runtime
        .start_turn(None, live("a"), from(&line.answer.id))
        .await
        .unwrap();
    let right = h
        .runtime
        .start_turn(None, live("a"), from(&line.answer.id))
        .await
        .unwrap();
    // …the first one stored continues the line, the other becomes a branch.
    let left = left.finish().await.unwrap().chat.unwrap();
    let right = right.finish().await.unwrap().chat.unwrap();
    assert_eq!(left.conversation.id, line.conversation.id);
    assert_ne!(right.conversation.id, line.conversation.id);
    assert_eq!(
        h.mem.messages_of(&line.conversation.id).len(),
        4,
        "first, ok, next, ok"
    );
    let branch = h.mem.messages_of(&right.conversation.id);
    let texts: Vec<&str> = branch.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        texts,
        ["first", "ok", "next", "ok"],
        "a copy of the line, then the turn"
    );
    assert!(
        branch
            .iter()
            .all(|m| m.conversation_id == right.conversation.id),
        "every message moved into the branch"
    );
    assert_eq!(right.answer.conversation_id, right.conversation.id);
    // An earlier answer branches at once.
    h.llm.answer(vec![delta("ok"), done("stop", 1, 1)]);
    let again = h
        .runtime
        .start_turn(None, live("a"), from(&line.answer.id))
        .await
        .unwrap();
    assert_ne!(
        again.start().conversation.as_ref().unwrap().id,
        line.conversation.id
    );
    again.finish().await.unwrap();
}
