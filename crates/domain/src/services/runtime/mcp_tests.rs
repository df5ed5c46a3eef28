//! MCP servers in the turn and under supervision, over a fake connector.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::test_support::{FakeMcp, Harness, delta, done, lock, tool_call};
use super::*;
use crate::agent::AgentStatus;
use crate::error::Error;
use crate::llm::PromptMessage;
use crate::mcp::{McpServerInput, McpServerName, McpServerRef, McpSlug, McpStatus, McpTransport};
use crate::services::{McpLogSource, McpServerView};

fn live(key: &str) -> TurnTarget {
    TurnTarget::LiveAgent(AgentRef::parse(key).unwrap())
}

async fn register(h: &Harness, slug: &str) -> McpServerView {
    h.mcp_servers
        .create(McpServerInput {
            name: McpServerName::parse(slug).unwrap(),
            slug: Some(McpSlug::parse(slug).unwrap()),
            transport: McpTransport::stdio("fake-server", vec![], BTreeMap::new()).unwrap(),
        })
        .await
        .unwrap()
}

fn by_slug(slug: &str) -> McpServerRef {
    McpServerRef::Slug(McpSlug::parse(slug).unwrap())
}

async fn status_becomes(h: &Harness, slug: &str, want: McpStatus) -> bool {
    for _ in 0..200 {
        if h.mcp_servers
            .get(&by_slug(slug))
            .await
            .unwrap()
            .server
            .status
            == want
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

async fn run(h: &Harness, agent: &str, input: &str) -> Vec<TurnEvent> {
    h.runtime
        .start_turn(None, live(agent), TurnRequest::user(input))
        .await
        .unwrap()
        .collect()
        .await
}

fn results(events: &[TurnEvent]) -> Vec<(String, String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            TurnEvent::ToolResult {
                name,
                output,
                is_error,
                ..
            } => Some((name.clone(), output.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_bound_servers_tools_are_offered_and_run_starting_it_on_first_use() {
    let h = Harness::new();
    *lock(&h.mcp.tools) = vec![
        FakeMcp::tool("get_time"),
        FakeMcp::tool("set_time"),
        FakeMcp::tool("dotted.name"),
    ];
    register(&h, "clock").await;
    h.agent(
        "a",
        AgentStatus::Active,
        "",
        vec![
            json!({"type": "mcp", "server": "clock", "allowed_tools": ["get_time", "dotted.name"]}),
        ],
    )
    .await;
    assert_eq!(
        h.mcp_servers
            .get(&by_slug("clock"))
            .await
            .unwrap()
            .server
            .status,
        McpStatus::Stopped
    );
    h.llm.answer(vec![
        tool_call("call_1", "get_time", r#"{"zone": "UTC"}"#),
        done("tool_calls", 1, 1),
    ]);
    h.llm.answer(vec![delta("It is noon."), done("stop", 1, 1)]);

    let events = run(&h, "a", "Time?").await;
    let requests = h.llm.requests();
    let offered: Vec<&str> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        offered,
        ["get_time", "clock_dotted_name"],
        "allowed tools only; a name a function cannot have is prefixed and cleaned"
    );
    assert_eq!(
        results(&events),
        [(
            "get_time".to_owned(),
            r#"get_time got {"zone":"UTC"}"#.to_owned(),
            false
        )]
    );
    assert_eq!(
        requests[1].messages.last(),
        Some(&PromptMessage::tool_result(
            "call_1",
            r#"get_time got {"zone":"UTC"}"#
        ))
    );
    assert_eq!(h.mcp.connects.load(Ordering::SeqCst), 1);
    let view = h.mcp_servers.get(&by_slug("clock")).await.unwrap();
    assert_eq!(view.server.status, McpStatus::Running);
    assert_eq!(view.runtime.pid, Some(4242));
    assert_eq!(
        view.server.catalog.tools.len(),
        3,
        "the handshake's tools are stored"
    );
    assert_eq!(view.server.catalog.capabilities, ["tools"]);

    // The offered (cleaned) name runs the server's own tool.
    h.llm.answer(vec![
        tool_call("call_2", "clock_dotted_name", "{}"),
        done("tool_calls", 1, 1),
    ]);
    h.llm.answer(vec![delta("ok"), done("stop", 1, 1)]);
    run(&h, "a", "again").await;
    assert_eq!(lock(&h.mcp.calls).last().unwrap().0, "dotted.name");
    assert_eq!(
        h.mcp.connects.load(Ordering::SeqCst),
        1,
        "still one process"
    );
}

#[tokio::test]
async fn names_taken_by_http_tools_or_other_servers_are_prefixed() {
    let h = Harness::new();
    *lock(&h.mcp.tools) = vec![FakeMcp::tool("lookup")];
    register(&h, "one").await;
    register(&h, "two").await;
    h.agent(
        "a",
        AgentStatus::Active,
        "",
        vec![
            json!({"type": "http", "name": "lookup", "url": "https://x.example/l"}),
            json!({"type": "mcp", "server": "one"}),
            json!({"type": "mcp", "server": "two"}),
        ],
    )
    .await;
    h.llm.answer(vec![delta("hi"), done("stop", 1, 1)]);
    run(&h, "a", "hi").await;
    let offered: Vec<String> = h.llm.requests()[0]
        .tools
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(offered, ["lookup", "one_lookup", "two_lookup"]);
}

#[tokio::test]
async fn a_tool_error_and_an_unreachable_server_are_results_the_model_reads() {
    let h = Harness::new();
    *lock(&h.mcp.tools) = vec![FakeMcp::tool("broken")];
    register(&h, "srv").await;
    h.agent(
        "a",
        AgentStatus::Active,
        "",
        vec![json!({"type": "mcp", "server": "srv"})],
    )
    .await;
    h.llm.answer(vec![
        tool_call("call_1", "broken", "{}"),
        done("tool_calls", 1, 1),
    ]);
    h.llm.answer(vec![delta("sorry"), done("stop", 1, 1)]);
    let events = run(&h, "a", "go").await;
    let r = results(&events);
    assert!(r[0].2, "isError is an error result");
    let said: Value = serde_json::from_str(&r[0].1).unwrap();
    assert_eq!(said["error"], "broken got {}");

    // The server dies and cannot come back: the call fails as a tool error, the turn goes on.
    h.mcp.failing_starts.store(100, Ordering::SeqCst);
    h.mcp.kill();
    assert!(status_becomes(&h, "srv", McpStatus::Crashed).await);
    h.llm.answer(vec![
        tool_call("call_2", "broken", "{}"),
        done("tool_calls", 1, 1),
    ]);
    h.llm.answer(vec![delta("it is down"), done("stop", 1, 1)]);
    let events = run(&h, "a", "again").await;
    let r = results(&events);
    assert!(r[0].2);
    let said: Value = serde_json::from_str(&r[0].1).unwrap();
    let message = said["error"].as_str().unwrap();
    assert!(message.contains("MCP server 'srv'"), "{message}");
    assert!(
        h.llm.requests()[2].tools.iter().any(|t| t.name == "broken"),
        "the stored tool list is still offered while the server is down"
    );
}

#[tokio::test]
async fn a_crashed_server_is_restarted_with_backoff_and_works_again() {
    let h = Harness::new();
    *lock(&h.mcp.tools) = vec![FakeMcp::tool("t")];
    let view = register(&h, "srv").await;
    let started = h.mcp_servers.start(&by_slug("srv")).await.unwrap();
    assert_eq!(started.server.status, McpStatus::Running);

    h.mcp.kill();
    assert!(status_becomes(&h, "srv", McpStatus::Crashed).await);
    assert!(status_becomes(&h, "srv", McpStatus::Running).await);
    assert_eq!(h.mcp.connects.load(Ordering::SeqCst), 2);
    let state = h.mcp_servers.get(&by_slug("srv")).await.unwrap().runtime;
    assert_eq!(state.restarts, 1);

    let logs = h.mcp_servers.logs(&by_slug("srv"), 100).await.unwrap();
    let events: Vec<&str> = logs
        .iter()
        .filter(|l| l.source == McpLogSource::Event)
        .map(|l| l.message.as_str())
        .collect();
    assert!(events[0].starts_with("starting (fake-server"), "{events:?}");
    assert!(events[1].starts_with("running (pid 4242"), "{events:?}");
    assert!(
        events[2].starts_with("crashed: exited: killed by signal 9; restarting in 20 ms"),
        "{events:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.source == McpLogSource::Stderr && l.message.contains("hello on stderr"))
    );
    let tail = h.mcp_servers.logs(&by_slug("srv"), 2).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1], *logs.last().unwrap());

    // The next call works.
    let conn = h
        .mcp_servers
        .supervisor()
        .connection(&view.server, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        conn.call_tool("t", Default::default(), Default::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn failed_starts_are_retried_up_to_the_limit_then_the_server_stays_crashed() {
    let h = Harness::new();
    register(&h, "srv").await;
    h.mcp.failing_starts.store(100, Ordering::SeqCst);
    let view = h.mcp_servers.start(&by_slug("srv")).await.unwrap();
    assert_eq!(view.server.status, McpStatus::Crashed);
    assert_eq!(
        view.runtime.last_error.as_deref(),
        Some("could not start: spawn failed: no such command")
    );
    // 1 start + 2 restarts (fast settings), then it gives up.
    for _ in 0..200 {
        let logs = h.mcp_servers.logs(&by_slug("srv"), 100).await.unwrap();
        if logs
            .iter()
            .any(|l| l.message.contains("gave up after 2 restarts"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.mcp.connects.load(Ordering::SeqCst), 3);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(h.mcp.connects.load(Ordering::SeqCst), 3, "no more restarts");
    assert_eq!(
        h.mcp_servers
            .get(&by_slug("srv"))
            .await
            .unwrap()
            .server
            .status,
        McpStatus::Crashed
    );
    // A start by hand tries again.
    h.mcp.failing_starts.store(0, Ordering::SeqCst);
    let view = h.mcp_servers.start(&by_slug("srv")).await.unwrap();
    assert_eq!(view.server.status, McpStatus::Running);
    assert_eq!(view.runtime.last_error, None);
}

#[tokio::test]
async fn a_stopped_server_is_closed_and_not_restarted() {
    let h = Harness::new();
    register(&h, "srv").await;
    h.mcp_servers.start(&by_slug("srv")).await.unwrap();
    let view = h.mcp_servers.stop(&by_slug("srv")).await.unwrap();
    assert_eq!(view.server.status, McpStatus::Stopped);
    assert_eq!(h.mcp.closes.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        h.mcp.connects.load(Ordering::SeqCst),
        1,
        "no restart after a stop"
    );
    // Stopping again is a no-op; restart starts it again.
    h.mcp_servers.stop(&by_slug("srv")).await.unwrap();
    let view = h.mcp_servers.restart(&by_slug("srv")).await.unwrap();
    assert_eq!(view.server.status, McpStatus::Running);
    assert_eq!(h.mcp.connects.load(Ordering::SeqCst), 2);
    // Shutdown stops everything.
    h.mcp_servers.supervisor().stop_all().await;
    assert_eq!(h.mcp.closes.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_agent_bound_to_a_deleted_server_is_refused_clearly() {
    let h = Harness::new();
    register(&h, "gone").await;
    h.agent(
        "a",
        AgentStatus::Active,
        "",
        vec![json!({"type": "mcp", "server": "gone"})],
    )
    .await;
    assert!(h.mcp_servers.delete(&by_slug("gone")).await.unwrap());
    let err = h
        .runtime
        .start_turn(None, live("a"), TurnRequest::user("hi"))
        .await
        .err()
        .unwrap();
    match err {
        Error::Invalid(i) => {
            assert_eq!(i.field, "model");
            assert!(i.reason.contains("MCP server 'gone'"), "{}", i.reason);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(h.llm.requests().is_empty());
}

#[tokio::test]
async fn a_changed_tool_list_is_read_again_and_stored() {
    let h = Harness::new();
    *lock(&h.mcp.tools) = vec![FakeMcp::tool("old")];
    register(&h, "srv").await;
    h.mcp_servers.start(&by_slug("srv")).await.unwrap();
    h.mcp
        .change_tools(vec![FakeMcp::tool("new"), FakeMcp::tool("newer")]);
    let mut names = Vec::new();
    for _ in 0..200 {
        let (_, tools) = h.mcp_servers.tools(&by_slug("srv")).await.unwrap();
        names = tools.into_iter().map(|t| t.name).collect::<Vec<_>>();
        if names.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(names, ["new", "newer"]);
    for _ in 0..200 {
        if h.mcp_servers
            .definition(&by_slug("srv"))
            .await
            .unwrap()
            .catalog
            .tools
            .len()
            == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        h.mcp_servers
            .definition(&by_slug("srv"))
            .await
            .unwrap()
            .catalog
            .tools
            .len(),
        2,
        "the new list is stored"
    );
    let logs = h.mcp_servers.logs(&by_slug("srv"), 10).await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.message == "tool list changed: 2 tools")
    );
}

#[tokio::test]
async fn crashes_and_restarts_are_system_notifications() {
    use crate::event::EventBus;
    let h = Harness::new();
    register(&h, "srv").await;
    let mut events = h.events.subscribe();
    h.mcp_servers.start(&by_slug("srv")).await.unwrap();
    h.mcp.kill();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.kind(), "system.notification");
        seen.push((
            e.payload["level"].as_str().unwrap().to_owned(),
            e.payload["message"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(seen[0].0, "warning");
    assert!(
        seen[0].1.starts_with("MCP server 'srv' crashed"),
        "{seen:?}"
    );
    assert_eq!(
        seen[1],
        ("info".to_owned(), "MCP server 'srv' restarted".to_owned())
    );
}
