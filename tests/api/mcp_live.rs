//! MCP servers for real (issue 14, items 2 to 5): third-party servers from their own packages
//! — the Python `mcp-server-time` (stdio) and `@modelcontextprotocol/server-everything`
//! (stdio and streamable HTTP) — started, listed, used by agents, killed, restarted,
//! stopped. `scripts/mcp-servers.sh` installs them outside the source tree and exports their
//! paths; without them these tests skip loudly, unless `AGENTRY_TEST_REQUIRE_MCP=1` (set by
//! `.ci/run`) makes a missing package a failure.

use std::path::PathBuf;
use std::time::Duration;

use agentry_test_harness::{TestApp, capture_logs, json};
use reqwest::Method;
use serde_json::{Value, json};

use crate::assert_error;

const ENV_SECRET: &str = "mcp-env-secret-31337";
const HEADER_SECRET: &str = "mcp-header-secret-4242";

/// The `mcp-server-time` executable, or `None` (skipping loudly) when it is not installed.
pub(crate) fn time_server() -> Option<String> {
    let path = std::env::var("AGENTRY_TEST_MCP_TIME").ok().or_else(|| {
        let default = home().join(".cache/agentry-mcp-venv/bin/mcp-server-time");
        default.exists().then(|| default.display().to_string())
    });
    present("mcp-server-time (pip)", path)
}

/// The `server-everything` entry point (`dist/index.js`), or `None` (skipping loudly).
fn everything_server() -> Option<String> {
    let path = std::env::var("AGENTRY_TEST_MCP_EVERYTHING").ok().or_else(|| {
        let default = home().join(
            ".cache/agentry-mcp-node/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
        );
        default.exists().then(|| default.display().to_string())
    });
    present("@modelcontextprotocol/server-everything (npm)", path)
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_default())
}

fn present(what: &str, path: Option<String>) -> Option<String> {
    match path.filter(|p| std::path::Path::new(p).exists()) {
        Some(p) => Some(p),
        None if std::env::var("AGENTRY_TEST_REQUIRE_MCP").as_deref() == Ok("1") => {
            panic!(
                "{what} is required (AGENTRY_TEST_REQUIRE_MCP=1) but not installed: run scripts/mcp-servers.sh"
            )
        }
        None => {
            eprintln!(
                "\n!!! SKIPPED: {what} is not installed; run scripts/mcp-servers.sh to test MCP servers for real !!!\n"
            );
            None
        }
    }
}

/// An app whose crashed MCP servers restart quickly and stop within a second per step.
async fn app() -> TestApp {
    TestApp::builder()
        .configure(|c| {
            c.mcp_backoff_base_ms = 100;
            c.mcp_stop_grace_secs = 1;
            c.mcp_start_timeout_secs = 30;
        })
        .spawn()
        .await
}

/// Sends a request as the admin; returns the status and JSON, and checks no secret is in it.
async fn call(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let res = app.request(method, path, body).await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_no_secret(&text);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn assert_no_secret(text: &str) {
    assert!(
        !text.contains(ENV_SECRET) && !text.contains(HEADER_SECRET),
        "a secret was returned or logged: {text}"
    );
}

/// Polls the server until `status` (at most 30 s); returns its last view.
async fn wait_status(app: &TestApp, slug: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (_, view) = call(
            app,
            Method::GET,
            &format!("/api/v1/mcp-servers/{slug}"),
            None,
        )
        .await;
        if view["status"] == status {
            return view;
        }
        last = view;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server {slug} never became {status}: {last}");
}

fn process_alive(pid: u64) -> bool {
    // A zombie is not alive: its state in /proc/<pid>/stat is `Z`.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2) != Some("Z"))
}

fn kill9(pid: u64) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn chat(app: &TestApp, agent: &str, message: &str, session: &str) -> Value {
    let (status, reply) = call(
        app,
        Method::POST,
        &format!("/api/v1/agents/{agent}/chat"),
        Some(&json!({"message": message, "session_id": session})),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    reply
}

#[tokio::test]
async fn the_time_server_runs_serves_an_agent_survives_kill_9_and_stops() {
    let Some(command) = time_server() else { return };
    let logs = capture_logs();
    let app = app().await;

    let (status, created) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&json!({"name": "Time", "slug": "time",
            "config": {"command": command, "args": ["--local-timezone", "UTC"], "env": {"PROBE_TOKEN": ENV_SECRET}}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "stopped");

    // Start: the answer waits for the handshake.
    let (status, started) = call(&app, Method::POST, "/api/v1/mcp-servers/time/start", None).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["status"], "running", "{started}");
    assert_eq!(started["last_error"], Value::Null);
    assert!(
        started["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("tools")),
        "{started}"
    );
    let pid = started["pid"].as_u64().unwrap();
    assert!(process_alive(pid));
    // Starting again leaves the same process.
    let (_, again) = call(&app, Method::POST, "/api/v1/mcp-servers/time/start", None).await;
    assert_eq!(again["pid"], pid);

    let (status, tools) = call(&app, Method::GET, "/api/v1/mcp-servers/time/tools", None).await;
    assert_eq!(status, 200, "{tools}");
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"get_current_time") && names.contains(&"convert_time"),
        "{names:?}"
    );
    let get_time = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "get_current_time")
        .unwrap();
    assert_eq!(get_time["input_schema"]["type"], "object");
    assert!(
        get_time["input_schema"]["properties"]["timezone"].is_object(),
        "{get_time}"
    );

    // An agent bound to the server: the mock model calls the real tool.
    let (status, agent) = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        Some(&json!({"name": "Clock", "tools": [{"type": "mcp", "server": "time", "allowed_tools": ["get_current_time"]}]})),
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    let reply = chat(
        &app,
        "clock",
        r#"/call get_current_time {"timezone":"Europe/Paris"}"#,
        "s1",
    )
    .await;
    let answer = reply["response"].as_str().unwrap();
    assert!(
        answer.starts_with("tool get_current_time said: "),
        "{answer}"
    );
    let said: Value =
        serde_json::from_str(answer.trim_start_matches("tool get_current_time said: ")).unwrap();
    assert_eq!(
        said["timezone"], "Europe/Paris",
        "the real tool's result: {said}"
    );
    assert!(
        said["datetime"].as_str().unwrap().starts_with("20"),
        "{said}"
    );
    assert_eq!(reply["tool_calls"][0]["name"], "get_current_time");

    // The history holds the call and the result.
    let (_, history) = call(
        &app,
        Method::GET,
        "/api/v1/agents/clock/chat/history?session_id=s1",
        None,
    )
    .await;
    let roles: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    assert!(
        history["messages"][2]["content"]
            .as_str()
            .unwrap()
            .contains("Europe/Paris")
    );

    // A bad argument is a tool error the model reads, not a failed turn.
    let reply = chat(
        &app,
        "clock",
        r#"/call get_current_time {"timezone":"Mars/Olympus"}"#,
        "s2",
    )
    .await;
    let output: Value =
        serde_json::from_str(reply["tool_calls"][0]["output"].as_str().unwrap()).unwrap();
    assert!(
        output["error"].as_str().unwrap().contains("Mars/Olympus"),
        "{reply}"
    );

    // kill -9 of the child: crashed, restarted automatically, the next call works.
    // (The restart follows within 100 ms: the crash itself is checked in the log below.)
    kill9(pid);
    let mut back = Value::Null;
    for _ in 0..300 {
        back = call(&app, Method::GET, "/api/v1/mcp-servers/time", None)
            .await
            .1;
        if back["status"] == "running" && back["pid"] != pid {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(back["status"], "running", "restarted after kill -9: {back}");
    let new_pid = back["pid"].as_u64().unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(back["restarts"], 1);
    let reply = chat(
        &app,
        "clock",
        r#"/call get_current_time {"timezone":"UTC"}"#,
        "s3",
    )
    .await;
    assert!(
        reply["response"]
            .as_str()
            .unwrap()
            .contains(r#""timezone": "UTC""#),
        "{reply}"
    );

    // The log: lifecycle events (the crash among them) in order.
    let (status, log) = call(
        &app,
        Method::GET,
        "/api/v1/mcp-servers/time/logs?tail=50",
        None,
    )
    .await;
    assert_eq!(status, 200, "{log}");
    let events: Vec<String> = log["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["source"] == "event")
        .map(|l| {
            format!(
                "{} {}",
                l["level"].as_str().unwrap(),
                l["message"].as_str().unwrap()
            )
        })
        .collect();
    let position = |prefix: &str| {
        events
            .iter()
            .position(|e| e.starts_with(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' in {events:?}"))
    };
    assert!(position("info starting") < position("info running"));
    assert!(
        position("warning crashed: exited: was killed by signal 9; restarting in 100 ms")
            > position("info running"),
        "{events:?}"
    );
    let (_, tail) = call(
        &app,
        Method::GET,
        "/api/v1/mcp-servers/time/logs?tail=1",
        None,
    )
    .await;
    assert_eq!(tail["lines"].as_array().unwrap().len(), 1);
    let (status, bad) = call(
        &app,
        Method::GET,
        "/api/v1/mcp-servers/time/logs?tail=0",
        None,
    )
    .await;
    assert_error(status, &bad, 400, "VALIDATION_ERROR");

    // Stop: the process is gone and nothing restarts it.
    let (status, stopped) = call(&app, Method::POST, "/api/v1/mcp-servers/time/stop", None).await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["status"], "stopped");
    assert_eq!(stopped["pid"], Value::Null);
    assert!(!process_alive(new_pid), "the child is gone after stop");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, view) = call(&app, Method::GET, "/api/v1/mcp-servers/time", None).await;
    assert_eq!(view["status"], "stopped");
    assert!(
        view["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("tools")),
        "the handshake's capabilities stay stored"
    );
    let (_, tools) = call(&app, Method::GET, "/api/v1/mcp-servers/time/tools", None).await;
    assert_eq!(tools["status"], "stopped");
    assert!(
        !tools["tools"].as_array().unwrap().is_empty(),
        "stored tools are listed while stopped"
    );

    // Restart by hand starts a new process; an agent's use starts a stopped server.
    let (_, restarted) = call(&app, Method::POST, "/api/v1/mcp-servers/time/restart", None).await;
    assert_eq!(restarted["status"], "running");
    call(&app, Method::POST, "/api/v1/mcp-servers/time/stop", None).await;
    let reply = chat(
        &app,
        "clock",
        r#"/call get_current_time {"timezone":"UTC"}"#,
        "s4",
    )
    .await;
    assert!(
        reply["response"]
            .as_str()
            .unwrap()
            .contains(r#""timezone": "UTC""#),
        "{reply}"
    );
    let running = wait_status(&app, "time", "running").await;

    // Deleting stops it first; the agent bound to it now answers a clear error.
    let (status, deleted) = call(&app, Method::DELETE, "/api/v1/mcp-servers/time", None).await;
    assert_eq!(status, 200, "{deleted}");
    assert!(
        !process_alive(running["pid"].as_u64().unwrap()),
        "deleting stops the process"
    );
    let (status, err) = call(
        &app,
        Method::POST,
        "/api/v1/agents/clock/chat",
        Some(&json!({"message": "hi"})),
    )
    .await;
    let err = assert_error(status, &err, 400, "VALIDATION_ERROR");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("MCP server 'time'"),
        "{err}"
    );

    if let Some(logs) = logs {
        assert_no_secret(&logs.contents());
    }
}

#[tokio::test]
async fn server_everything_over_stdio_and_streamable_http() {
    let Some(entry) = everything_server() else {
        return;
    };
    let logs = capture_logs();
    let app = app().await;

    // stdio.
    let (status, created) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&json!({"name": "Everything", "slug": "everything",
            "config": {"command": "node", "args": [entry, "stdio"], "env": {"PROBE_TOKEN": ENV_SECRET}}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (_, started) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers/everything/start",
        None,
    )
    .await;
    assert_eq!(started["status"], "running", "{started}");
    let stdio_pid = started["pid"].as_u64().unwrap();
    let caps = started["capabilities"].as_array().unwrap();
    for c in ["tools", "resources", "prompts"] {
        assert!(caps.contains(&json!(c)), "{caps:?}");
    }
    let (_, tools) = call(
        &app,
        Method::GET,
        "/api/v1/mcp-servers/everything/tools",
        None,
    )
    .await;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"get-sum"),
        "{names:?}"
    );
    let (_, log) = call(
        &app,
        Method::GET,
        "/api/v1/mcp-servers/everything/logs",
        None,
    )
    .await;
    assert!(
        log["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["source"] == "stderr"),
        "the server's standard error is in its log: {log}"
    );

    // Streamable HTTP: the same package serving on a free port, reached with a secret header.
    let port = free_port();
    let mut http_server = tokio::process::Command::new("node")
        .args([entry.as_str(), "streamableHttp"])
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_port(port).await;
    let (status, remote) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&json!({"name": "Everything remote", "slug": "remote",
            "url": format!("http://127.0.0.1:{port}/mcp"),
            "headers": {"Authorization": format!("Bearer {HEADER_SECRET}")}})),
    )
    .await;
    assert_eq!(status, 201, "{remote}");
    let (_, started) = call(&app, Method::POST, "/api/v1/mcp-servers/remote/start", None).await;
    assert_eq!(started["status"], "running", "{started}");
    assert_eq!(started["pid"], Value::Null);
    assert_eq!(started["url"], format!("http://127.0.0.1:{port}/mcp"));

    // One agent bound to both: the same tool names on two servers get prefixed.
    let (status, agent) = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        Some(&json!({"name": "Both", "tools": [
            {"type": "mcp", "server": "everything", "allowed_tools": ["echo", "get-sum"]},
            {"type": "mcp", "server": "remote", "allowed_tools": ["echo"]}
        ]})),
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    let reply = chat(&app, "both", r#"/call get-sum {"a": 2, "b": 40}"#, "e1").await;
    assert!(
        reply["response"].as_str().unwrap().contains("42"),
        "{reply}"
    );
    let reply = chat(
        &app,
        "both",
        r#"/call remote_echo {"message": "over http"}"#,
        "e2",
    )
    .await;
    let answer = reply["response"].as_str().unwrap();
    assert!(
        answer.starts_with("tool remote_echo said: ") && answer.contains("over http"),
        "{answer}"
    );

    // The remote server goes away: the next call is a tool error, the server reported down.
    http_server.kill().await.unwrap();
    let _ = http_server.wait().await;
    let reply = chat(
        &app,
        "both",
        r#"/call remote_echo {"message": "anyone?"}"#,
        "e3",
    )
    .await;
    let output: Value =
        serde_json::from_str(reply["tool_calls"][0]["output"].as_str().unwrap()).unwrap();
    let error = output["error"].as_str().unwrap();
    assert!(error.starts_with("MCP server 'remote': "), "{reply}");
    assert!(
        !error.contains("rmcp::"),
        "no Rust type names in what the model reads: {error}"
    );

    let (status, _) = call(&app, Method::POST, "/api/v1/mcp-servers/remote/stop", None).await;
    assert_eq!(status, 200);

    // Agentry's own shutdown stops the stdio server still running; the next process knows
    // what the handshake stored but runs nothing until asked.
    assert!(process_alive(stdio_pid));
    let app = app.restart().await.unwrap();
    assert!(
        !process_alive(stdio_pid),
        "MCP processes do not outlive the server"
    );
    let (_, view) = call(&app, Method::GET, "/api/v1/mcp-servers/everything", None).await;
    assert_eq!(view["status"], "stopped", "{view}");
    assert!(view["tool_count"].as_u64().unwrap() > 0, "{view}");
    if let Some(logs) = logs {
        assert_no_secret(&logs.contents());
    }
}

#[tokio::test]
async fn only_admins_run_mcp_servers_and_read_their_logs() {
    let app = app().await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&json!({"name": "S", "slug": "s", "config": {"command": "true"}})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, viewer) = app.create_user("viewer1", "viewer").await;
    let viewer = app.login("viewer1", &viewer).await;
    let reader = app.create_api_key(&["read"], None).await;
    let invoker = app.create_api_key(&["invoke"], None).await;
    for token in [&viewer, &reader, &invoker] {
        for path in [
            "/api/v1/mcp-servers/s/start",
            "/api/v1/mcp-servers/s/stop",
            "/api/v1/mcp-servers/s/restart",
        ] {
            let res = app.request_as(Some(token), Method::POST, path, None).await;
            let (status, body) = json(res).await;
            assert_error(status, &body, 403, "FORBIDDEN");
        }
        let (status, body) = json(
            app.request_as(
                Some(token),
                Method::POST,
                "/api/v1/mcp-servers",
                Some(&json!({"name": "x", "config": {"command": "sh"}})),
            )
            .await,
        )
        .await;
        assert_error(status, &body, 403, "FORBIDDEN");
        let (status, body) = json(
            app.request_as(Some(token), Method::GET, "/api/v1/mcp-servers/s/logs", None)
                .await,
        )
        .await;
        assert_error(status, &body, 403, "FORBIDDEN");
    }
    // Readers see the server and its tools.
    for token in [&viewer, &reader] {
        let (status, _) = json(
            app.request_as(
                Some(token),
                Method::GET,
                "/api/v1/mcp-servers/s/tools",
                None,
            )
            .await,
        )
        .await;
        assert_eq!(status, 200);
    }
    // A server whose command exits at once: crashed with the reason, never running.
    let (status, started) = call(&app, Method::POST, "/api/v1/mcp-servers/s/start", None).await;
    assert_eq!(status, 200);
    assert_eq!(started["status"], "crashed", "{started}");
    assert!(
        started["last_error"]
            .as_str()
            .unwrap()
            .contains("handshake"),
        "{started}"
    );
    let (_, stopped) = call(&app, Method::POST, "/api/v1/mcp-servers/s/stop", None).await;
    assert_eq!(stopped["status"], "stopped");
    // Unknown servers.
    for path in [
        "/api/v1/mcp-servers/nope/start",
        "/api/v1/mcp-servers/nope/stop",
        "/api/v1/mcp-servers/nope/restart",
    ] {
        let (status, body) = call(&app, Method::POST, path, None).await;
        assert_error(status, &body, 404, "MCP_SERVER_NOT_FOUND");
    }
    for path in [
        "/api/v1/mcp-servers/nope/logs",
        "/api/v1/mcp-servers/nope/tools",
    ] {
        let (status, body) = call(&app, Method::GET, path, None).await;
        assert_error(status, &body, 404, "MCP_SERVER_NOT_FOUND");
    }
}

#[tokio::test]
async fn agents_must_bind_registered_servers() {
    let app = app().await;
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        Some(&json!({"name": "A", "tools": [{"type": "mcp", "server": "missing"}]})),
    )
    .await;
    let err = assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(err["details"]["field"], "tools[0].server", "{err}");
    for (tools, field) in [
        (json!([{"type": "mcp"}]), "tools[0].server"),
        (
            json!([{"type": "mcp", "server": "Bad Slug"}]),
            "tools[0].server",
        ),
        (
            json!([{"type": "mcp", "server": "s", "allowed_tools": "echo"}]),
            "tools[0].allowed_tools",
        ),
        (
            json!([{"type": "mcp", "server": "s", "allowed_tools": [""]}]),
            "tools[0].allowed_tools",
        ),
        (
            json!([{"type": "mcp", "server": "s"}, {"type": "mcp", "server": "s"}]),
            "tools[1].server",
        ),
    ] {
        let (status, body) = call(
            &app,
            Method::POST,
            "/api/v1/agents",
            Some(&json!({"name": "A", "tools": tools})),
        )
        .await;
        let err = assert_error(status, &body, 400, "VALIDATION_ERROR");
        assert_eq!(err["details"]["field"], field, "{tools}: {err}");
    }
    // Registered: saved as given.
    call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&json!({"name": "S", "slug": "s", "config": {"command": "true"}})),
    )
    .await;
    let (status, agent) = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        Some(&json!({"name": "A", "tools": [{"type": "mcp", "server": "s", "allowed_tools": ["x"]}]})),
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    assert_eq!(
        agent["tools"],
        json!([{"type": "mcp", "server": "s", "allowed_tools": ["x"]}])
    );
    // PATCH checks too.
    let (status, body) = call(
        &app,
        Method::PATCH,
        "/api/v1/agents/a",
        Some(&json!({"tools": [{"type": "mcp", "server": "gone"}]})),
    )
    .await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}
