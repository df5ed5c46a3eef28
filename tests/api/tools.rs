//! Agents' own HTTP tools, run by the turn's tool loop, seen through every surface; the
//! scripted mock calls tools when a message reads `/call NAME {args}` (`/loop` calls on every
//! step), and answers `tool NAME said: …` once it has the results.

use std::sync::{Arc, Mutex};

use agentry_test_harness::{TestApp, json};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::runtime::sse_events;

/// A tiny HTTP server standing for a team's API: answers every request with `body` and
/// records each request (head and body) as text.
struct ToolServer {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl ToolServer {
    async fn start(body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + length {
                                log.lock().unwrap().push(text);
                                break;
                            }
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        Self { url, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn app_allowing_loopback(max_steps: u32) -> TestApp {
    TestApp::builder()
        .configure(|c| {
            c.tool_allowed_hosts = vec!["127.0.0.1".to_owned()];
            c.max_tool_steps = max_steps;
        })
        .spawn()
        .await
}

async fn weather_agent(app: &TestApp, url: &str) {
    let (status, agent) = json(
        app.post(
            "/api/v1/agents",
            &json!({
                "name": "Weather",
                "key": "weather",
                "model": "mock/echo",
                "instructions": "Use the weather tool.",
                "status": "active",
                "tools": [{
                    "type": "http", "name": "get_weather", "description": "Weather of a city",
                    "url": format!("{url}/weather"), "method": "GET",
                    "headers": {"X-Api-Key": "tool-secret-123"},
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
                }]
            }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    assert_eq!(
        agent["tools"][0]["headers"]["X-Api-Key"], "********",
        "header values are write-only"
    );
}

const CALL: &str = r#"/call get_weather {"city":"Paris"}"#;

#[tokio::test]
async fn an_agent_answers_through_its_http_tool_on_every_surface() {
    let tool = ToolServer::start(r#"{"temp_c":21}"#).await;
    let app = app_allowing_loopback(8).await;
    weather_agent(&app, &tool.url).await;

    // Agent chat, JSON: the answer uses the tool's result; the call is in the reply.
    let (status, reply) = json(
        app.post(
            "/api/v1/agents/weather/chat",
            &json!({"message": CALL, "session_id": "s1"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["response"], r#"tool get_weather said: {"temp_c":21}"#);
    assert_eq!(reply["tool_calls"][0]["name"], "get_weather");
    assert_eq!(reply["tool_calls"][0]["output"], r#"{"temp_c":21}"#);
    let seen = tool.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("GET /weather?city=Paris"), "{seen:?}");
    assert!(
        seen[0]
            .to_ascii_lowercase()
            .contains("x-api-key: tool-secret-123"),
        "the tool's header is sent: {seen:?}"
    );
    assert!(!reply.to_string().contains("tool-secret-123"));

    // History: question, the model's call, the tool's result, the answer.
    let (_, history) = json(
        app.get("/api/v1/agents/weather/chat/history?session_id=s1")
            .await,
    )
    .await;
    let roles: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    let call = &history["messages"][1]["tool_calls"][0];
    assert_eq!(call["name"], "get_weather");
    assert_eq!(
        history["messages"][2]["tool_call_id"], call["id"],
        "the result answers the call"
    );

    // Agent SSE: tool_call and tool_result between start and end.
    let res = app
        .post("/api/v1/agents/weather/stream", &json!({"message": CALL}))
        .await;
    let events = sse_events(&res.text().await.unwrap());
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert!(pos("start") < pos("tool_call"), "{kinds:?}");
    assert!(pos("tool_call") < pos("tool_result"), "{kinds:?}");
    assert!(pos("tool_result") < pos("end"), "{kinds:?}");
    assert_eq!(events[pos("tool_result")]["output"], r#"{"temp_c":21}"#);
    assert_eq!(
        events[pos("end")]["response"],
        r#"tool get_weather said: {"temp_c":21}"#
    );

    // Responses, JSON and streamed: the agent's call is a server-side item with its output.
    let (status, resp) = json(
        app.post("/v1/responses", &json!({"model": "weather", "input": CALL}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    let output = resp["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "mcp_call");
    assert_eq!(output[0]["name"], "get_weather");
    assert_eq!(output[0]["output"], r#"{"temp_c":21}"#);
    assert_eq!(
        output[1]["content"][0]["text"],
        r#"tool get_weather said: {"temp_c":21}"#
    );
    let res = app
        .post(
            "/v1/responses",
            &json!({"model": "weather", "input": CALL, "stream": true}),
        )
        .await;
    let events = sse_events(&res.text().await.unwrap());
    let items: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| {
            (
                e["item"]["type"].as_str().unwrap(),
                e["item"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(items, [("mcp_call", "completed"), ("message", "completed")]);
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    // Chat Completions, streamed: the agent's calls stay inside; the answer streams.
    let res = app
        .post(
            "/v1/chat/completions",
            &json!({"model": "weather", "messages": [{"role": "user", "content": CALL}], "stream": true}),
        )
        .await;
    let text = res.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let content: String = sse_events(text.trim_end().trim_end_matches("data: [DONE]"))
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, r#"tool get_weather said: {"temp_c":21}"#);
    assert_eq!(tool.requests().len(), 5, "one call per surface");
    let (_, agent) = json(app.get("/api/v1/agents/weather").await).await;
    assert!(!agent.to_string().contains("tool-secret-123"), "{agent}");
}

#[tokio::test]
async fn the_step_limit_stops_a_looping_model_with_a_clear_answer() {
    let tool = ToolServer::start(r#"{"temp_c":21}"#).await;
    let app = app_allowing_loopback(2).await;
    weather_agent(&app, &tool.url).await;
    let (status, reply) = json(
        app.post(
            "/api/v1/agents/weather/chat",
            &json!({"message": r#"/loop get_weather {"city":"Oslo"}"#}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["finish_reason"], "max_tool_steps");
    assert!(
        reply["response"]
            .as_str()
            .unwrap()
            .contains("limit of 2 tool steps"),
        "{reply}"
    );
    assert_eq!(tool.requests().len(), 2, "exactly two rounds ran");

    // On Responses the stop is an incomplete response, as OpenAI reports a tool-call limit,
    // both as JSON and in the streamed `response.completed` event.
    let looping = r#"/loop get_weather {"city":"Oslo"}"#;
    let (status, resp) = json(
        app.post(
            "/v1/responses",
            &json!({"model": "weather", "input": looping}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["status"], "incomplete", "{resp}");
    assert_eq!(
        resp["incomplete_details"]["reason"], "max_tool_calls",
        "{resp}"
    );
    let res = app
        .post(
            "/v1/responses",
            &json!({"model": "weather", "input": looping, "stream": true}),
        )
        .await;
    let events = sse_events(&res.text().await.unwrap());
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed", "{done}");
    assert_eq!(done["response"]["status"], "incomplete", "{done}");
    assert_eq!(
        done["response"]["incomplete_details"]["reason"], "max_tool_calls",
        "{done}"
    );
    let created = &events[0];
    assert_eq!(created["type"], "response.created", "{created}");
    assert_eq!(created["sequence_number"], 0, "{created}");
    assert_eq!(created["response"]["status"], "in_progress", "{created}");
    assert!(created["response"]["usage"].is_null(), "{created}");
    assert!(
        created["response"]["incomplete_details"].is_null(),
        "{created}"
    );
    assert_eq!(tool.requests().len(), 6, "two rounds for each call");
}

#[tokio::test]
async fn schema_invalid_arguments_never_reach_the_tool() {
    let tool = ToolServer::start(r#"{"temp_c":21}"#).await;
    let app = app_allowing_loopback(8).await;
    weather_agent(&app, &tool.url).await;
    let (status, reply) = json(
        app.post(
            "/api/v1/agents/weather/chat",
            &json!({"message": r#"/call get_weather {"town":"Paris"}"#}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let answer = reply["response"].as_str().unwrap();
    assert!(
        answer.contains("do not match the tool's schema") && answer.contains("city"),
        "the model is told why: {answer}"
    );
    assert!(tool.requests().is_empty(), "the tool was not called");
}

#[tokio::test]
async fn tools_may_not_reach_private_addresses_by_default() {
    let tool = ToolServer::start(r#"{"temp_c":21}"#).await;
    let app = TestApp::spawn().await;
    weather_agent(&app, &tool.url).await;
    let (status, reply) = json(
        app.post("/api/v1/agents/weather/chat", &json!({"message": CALL}))
            .await,
    )
    .await;
    assert_eq!(
        status, 200,
        "a refused tool call is a tool error, not a failed turn: {reply}"
    );
    let answer = reply["response"].as_str().unwrap();
    assert!(answer.contains("refused"), "{answer}");
    assert!(tool.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn bad_http_tools_are_refused_when_saved() {
    let app = TestApp::spawn().await;
    let (status, body) = json(
        app.post(
            "/api/v1/agents",
            &json!({"name": "Bad tool", "tools": [{"type": "http", "name": "x", "url": "file:///etc/passwd"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["field"], "tools[0].url");
}
