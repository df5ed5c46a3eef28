//! Events and WebSocket (issue 18, items 3 and 4): the event stream's authentication,
//! channels and permissions, task status and agent messages as they happen, a slow consumer,
//! WebSocket chat; on PostgreSQL, events crossing replicas.

use std::time::Duration;

use agentry_test_harness::{TestApp, TestBackend, json};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::create;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(app: &TestApp, path: &str) -> String {
    format!("ws://{}{path}", app.addr())
}

/// Connects, authenticating with a first `auth` message.
async fn connect(app: &TestApp, path: &str, token: &str) -> Socket {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(app, path))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "auth", "token": token})).await;
    let ok = next(&mut ws).await;
    assert_eq!(ok["type"], "auth.ok", "{ok}");
    ws
}

async fn send(ws: &mut Socket, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// The next JSON message (pings skipped), within 10 s.
async fn next(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .unwrap();
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => {
                return json!({"type": "closed", "reason": c.map(|c| c.reason.to_string())});
            }
            _ => {}
        }
    }
}

/// Messages until one matches `done` (at most 200).
async fn until(ws: &mut Socket, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..200 {
        let m = next(ws).await;
        let last = done(&m);
        seen.push(m);
        if last {
            return seen;
        }
    }
    panic!("no matching message in {seen:?}");
}

async fn subscribe(ws: &mut Socket, channel: &str) -> Value {
    send(ws, json!({"type": "subscribe", "channel": channel})).await;
    next(ws).await
}

async fn app() -> TestApp {
    TestApp::builder()
        .configure(|c| {
            c.task_poll_ms = 50;
        })
        .spawn()
        .await
}

#[tokio::test]
async fn the_event_stream_authenticates_by_message_or_header() {
    let app = app().await;
    // A bad token: an error, then the connection is closed.
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&app, "/api/v1/ws"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "auth", "token": "not-a-token"})).await;
    let err = next(&mut ws).await;
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["code"], "UNAUTHORIZED");
    let closed = next(&mut ws).await;
    assert_eq!(closed["type"], "closed", "{closed}");
    // Something else first: closed.
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&app, "/v1/ws"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "subscribe", "channel": "system"})).await;
    assert_eq!(next(&mut ws).await["type"], "closed");
    // A bearer header on the upgrade.
    let mut request = ws_url(&app, "/api/v1/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", app.admin_token()).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(next(&mut ws).await["type"], "auth.ok");
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next(&mut ws).await["type"], "pong");
    send(&mut ws, json!({"type": "dance"})).await;
    assert_eq!(next(&mut ws).await["code"], "VALIDATION_ERROR");
    // A plain GET is not an upgrade.
    let (status, body) = json(app.get("/api/v1/ws").await).await;
    crate::assert_error(status, &body, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn task_status_reaches_subscribers_at_every_transition() {
    let app = app().await;
    create(&app, json!({"name": "Bot"})).await;
    let mut ws = connect(&app, "/api/v1/ws", &app.admin_token()).await;
    assert_eq!(subscribe(&mut ws, "tasks").await["type"], "subscribed");
    let (status, task) = json(
        app.post(
            "/api/v1/tasks",
            &json!({"title": "hello events", "agent_id": "bot"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let id = task["id"].as_str().unwrap();
    let seen = until(&mut ws, |m| m["status"] == "completed").await;
    let statuses: Vec<&str> = seen.iter().map(|m| m["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["pending", "running", "completed"], "{seen:?}");
    for m in &seen {
        assert_eq!(m["type"], "task.status");
        assert_eq!(m["task_id"], id);
        assert_eq!(m["channel"], "tasks");
    }
    let last = seen.last().unwrap();
    assert!(
        last["result"]["response"]
            .as_str()
            .unwrap()
            .contains("hello events"),
        "{last}"
    );

    // One task's channel; unsubscribing stops the flow.
    let (_, second) = json(
        app.post(
            "/api/v1/tasks",
            &json!({"title": "t2", "agent_id": "bot", "run_at": "2099-01-01T00:00:00Z"}),
        )
        .await,
    )
    .await;
    let second_id = second["id"].as_str().unwrap();
    let _ = until(&mut ws, |m| m["task_id"] == second_id).await;
    send(&mut ws, json!({"type": "unsubscribe", "channel": "tasks"})).await;
    assert_eq!(next(&mut ws).await["type"], "unsubscribed");
    let reply = subscribe(&mut ws, &format!("task.{second_id}")).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    app.post(&format!("/api/v1/tasks/{second_id}/cancel"), &json!({}))
        .await;
    let m = next(&mut ws).await;
    assert_eq!(
        (m["status"].as_str(), m["channel"].as_str()),
        (
            Some("cancelled"),
            Some(format!("task.{second_id}").as_str())
        ),
        "{m}"
    );
}

#[tokio::test]
async fn channels_are_checked_against_the_callers_rights() {
    let app = app().await;
    create(&app, json!({"name": "A"})).await;
    create(&app, json!({"name": "B"})).await;
    let (_, task_a) = json(
        app.post(
            "/api/v1/tasks",
            &json!({"title": "a's", "agent_id": "a", "run_at": "2099-01-01T00:00:00Z"}),
        )
        .await,
    )
    .await;
    let invoker = app.create_api_key(&["invoke"], None).await;
    let limited = app.create_api_key(&["read", "invoke"], Some(&["b"])).await;

    let mut ws = connect(&app, "/api/v1/ws", &invoker).await;
    for (channel, code) in [
        ("system", "FORBIDDEN"),
        ("tasks", "FORBIDDEN"),
        ("agent.a.events", "FORBIDDEN"),
        ("nonsense", "VALIDATION_ERROR"),
    ] {
        let reply = subscribe(&mut ws, channel).await;
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some(code)),
            "{channel}: {reply}"
        );
    }
    let reply = subscribe(&mut ws, &format!("task.{}", task_a["id"].as_str().unwrap())).await;
    assert_eq!(
        reply["code"], "TASK_NOT_FOUND",
        "another caller's task: {reply}"
    );

    let mut ws = connect(&app, "/api/v1/ws", &limited).await;
    assert_eq!(
        subscribe(&mut ws, "agent.a.events").await["code"],
        "AGENT_NOT_FOUND"
    );
    assert_eq!(
        subscribe(&mut ws, "agent.b.events").await["type"],
        "subscribed"
    );
    // On the shared `tasks` channel, it sees only its agents' tasks.
    assert_eq!(subscribe(&mut ws, "tasks").await["type"], "subscribed");
    app.post(
        "/api/v1/tasks",
        &json!({"title": "for a", "agent_id": "a", "run_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    app.post(
        "/api/v1/tasks",
        &json!({"title": "for b", "agent_id": "b", "run_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    let m = next(&mut ws).await;
    assert_eq!(m["type"], "task.status");
    let (_, b) = json(
        app.get(&format!("/api/v1/tasks/{}", m["task_id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(b["agent_key"], "b", "only b's task arrives: {m}");
}

#[tokio::test]
async fn agent_messages_stream_while_a_chat_runs_and_websocket_chat_works() {
    let app = app().await;
    let agent = create(&app, json!({"name": "Talker"})).await;
    let mut ws = connect(&app, "/api/v1/ws", &app.admin_token()).await;
    let reply = subscribe(&mut ws, "agent.talker.events").await;
    let channel = format!("agent.{}.events", agent["id"].as_str().unwrap());
    assert_eq!(reply["channel"], channel.as_str(), "{reply}");

    let (status, _) = json(
        app.post(
            "/api/v1/agents/talker/chat",
            &json!({"message": "one two three", "session_id": "s-1"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let seen = until(&mut ws, |m| m["done"] == true).await;
    let pieces: String = seen
        .iter()
        .filter(|m| m["done"] == false)
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(pieces, "one two three", "{seen:?}");
    let done = seen.last().unwrap();
    assert_eq!(done["type"], "agent.message");
    assert_eq!(done["message"], "one two three");
    assert_eq!(done["session_id"], "s-1");
    assert_eq!(done["agent_id"], agent["id"]);

    // WebSocket chat: start, tokens, end, like the SSE stream; the conversation continues.
    let mut chat = connect(&app, "/api/v1/agents/talker/ws", &app.admin_token()).await;
    send(
        &mut chat,
        json!({"type": "chat", "message": "hello socket", "conversation_id": "ws-1"}),
    )
    .await;
    let frames = until(&mut chat, |m| m["type"] == "end").await;
    assert_eq!(frames[0]["type"], "start", "{frames:?}");
    assert_eq!(frames[0]["conversation_id"], "ws-1");
    let tokens: String = frames
        .iter()
        .filter(|m| m["type"] == "token")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, "hello socket");
    assert_eq!(frames.last().unwrap()["response"], "hello socket");
    send(
        &mut chat,
        json!({"type": "chat", "message": "again", "conversation_id": "ws-1"}),
    )
    .await;
    until(&mut chat, |m| m["type"] == "end").await;
    let (_, history) = json(
        app.get("/api/v1/agents/talker/chat/history?session_id=ws-1")
            .await,
    )
    .await;
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        4,
        "{history}"
    );
    // Bad chat messages are answered, the socket stays.
    send(&mut chat, json!({"type": "chat"})).await;
    let err = next(&mut chat).await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("VALIDATION_ERROR")),
        "{err}"
    );
    send(&mut chat, json!({"type": "ping"})).await;
    assert_eq!(next(&mut chat).await["type"], "pong");
    // A read-only key may not chat.
    let reader = app.create_api_key(&["read"], None).await;
    let (mut denied, _) =
        tokio_tungstenite::connect_async(ws_url(&app, "/api/v1/agents/talker/ws"))
            .await
            .unwrap();
    send(&mut denied, json!({"type": "auth", "token": reader})).await;
    assert_eq!(next(&mut denied).await["type"], "auth.ok");
    assert_eq!(next(&mut denied).await["code"], "FORBIDDEN");
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_not_buffered() {
    let app = app().await;
    if app.backend() == TestBackend::Postgres {
        // The close is the WebSocket's own (the same code on both databases); over
        // PostgreSQL the burst arrives spread out, and whether it outgrows the socket
        // buffers depends on the machine.
        eprintln!("SKIPPED on PostgreSQL: the slow-consumer close is tested on SQLite");
        return;
    }
    create(&app, json!({"name": "Flood"})).await;
    let mut ws = connect(&app, "/api/v1/ws", &app.admin_token()).await;
    assert_eq!(
        subscribe(&mut ws, "agent.flood.events").await["type"],
        "subscribed"
    );
    // 60,000 words: 60,000 events in a burst while this client reads nothing.
    let message = "w ".repeat(60_000);
    let res = app
        .post("/api/v1/agents/flood/stream", &json!({"message": message}))
        .await;
    assert_eq!(res.status().as_u16(), 200);
    let body = res.text().await.unwrap();
    assert!(
        body.contains(r#""type":"end""#),
        "the chat is not held up by the slow subscriber"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Reading now: what was sent, then the close with its reason.
    let mut closed = None;
    for _ in 0..100_000 {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(c)))) => {
                closed = Some(c.map(|c| c.reason.to_string()).unwrap_or_default());
                break;
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    let reason = closed.expect("the server closed the connection");
    assert!(reason.contains("slow consumer"), "{reason}");
}

#[tokio::test]
async fn events_cross_replicas_on_postgres() {
    let Some(app) = crate::postgres_app(|c| {
        c.task_poll_ms = 50;
        c.task_workers = 1;
    })
    .await
    else {
        return;
    };
    let agent = create(&app, json!({"name": "Shared"})).await;
    let replica_b = app.replica().await.unwrap();
    let mut ws = connect(&replica_b, "/api/v1/ws", &app.admin_token()).await;
    assert_eq!(subscribe(&mut ws, "tasks").await["type"], "subscribed");
    assert_eq!(
        subscribe(&mut ws, "agent.shared.events").await["type"],
        "subscribed"
    );
    // Interest travels to replica A; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A task created on A: its status reaches B's subscriber.
    let (_, task) = json(
        app.post(
            "/api/v1/tasks",
            &json!({"title": "cross", "agent_id": "shared"}),
        )
        .await,
    )
    .await;
    let id = task["id"].as_str().unwrap();
    let seen = until(&mut ws, |m| {
        m["type"] == "task.status" && m["task_id"] == id && m["status"] == "completed"
    })
    .await;
    assert!(seen.iter().any(|m| m["status"] == "pending"), "{seen:?}");

    // A chat on A: its messages reach B.
    let (status, _) = json(
        app.post(
            "/api/v1/agents/shared/chat",
            &json!({"message": "across the wire", "session_id": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let seen = until(&mut ws, |m| {
        m["type"] == "agent.message" && m["done"] == true && m["session_id"] == "x"
    })
    .await;
    let done = seen.last().unwrap();
    assert_eq!(done["message"], "across the wire");
    assert_eq!(done["agent_id"], agent["id"]);
}

#[tokio::test]
async fn a_failing_provider_is_announced_once_a_minute_on_the_system_channel() {
    let app = app().await;
    create(&app, json!({"name": "Broken", "model": "mock/error-500"})).await;
    let mut ws = connect(&app, "/api/v1/ws", &app.admin_token()).await;
    assert_eq!(subscribe(&mut ws, "system").await["type"], "subscribed");
    for _ in 0..2 {
        let (status, _) = json(
            app.post("/api/v1/agents/broken/chat", &json!({"message": "hi"}))
                .await,
        )
        .await;
        assert_eq!(status, 502);
    }
    let m = next(&mut ws).await;
    assert_eq!(m["type"], "system.notification", "{m}");
    assert_eq!(m["level"], "warning");
    assert_eq!(m["channel"], "system");
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("provider 'mock' failed"),
        "{m}"
    );
    // The second failure within the minute is not announced again.
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next(&mut ws).await["type"], "pong");
}

#[tokio::test]
async fn eval_run_progress_reaches_its_subscribers() {
    let app = app().await;
    create(
        &app,
        json!({"name": "Slow", "key": "slow", "model": "mock/slow-300"}),
    )
    .await;
    let cases: Vec<Value> = (0..3)
        .map(|i| json!({"input": format!("case {i}"), "expected": format!("case {i}")}))
        .collect();
    let (status, set) = json(
        app.post("/api/v1/testsets", &json!({"name": "ws", "cases": cases}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{set}");
    let (status, run) = json(
        app.post(
            &format!("/api/v1/testsets/{}/runs", set["id"].as_str().unwrap()),
            &json!({"configurations": [{"agent": "slow"}], "concurrency": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap();
    let mut ws = connect(&app, "/api/v1/ws", &app.admin_token()).await;
    let ok = subscribe(&mut ws, &format!("eval_run.{id}")).await;
    assert_eq!(ok["type"], "subscribed", "{ok}");
    let seen = until(&mut ws, |m| m["status"] == "completed").await;
    let last = seen.last().unwrap();
    assert_eq!(
        (
            last["type"].clone(),
            last["done"].clone(),
            last["total"].clone()
        ),
        (json!("eval_run.status"), json!(3), json!(3)),
        "{seen:?}"
    );
    assert!(seen.iter().any(|m| m["status"] == "running"), "{seen:?}");
    let bad = subscribe(
        &mut ws,
        "eval_run.eval_run_00000000000000000000000000000000",
    )
    .await;
    assert_eq!(bad["type"], "error", "{bad}");
}
