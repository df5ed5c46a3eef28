//! The ugly cases: malformed bodies, wrong methods and content types, request ids.

use agentry_test_harness::{TestApp, json};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

use crate::assert_error;

#[tokio::test]
async fn request_ids_are_generated_or_kept() {
    let app = TestApp::spawn().await;
    let res = app.get("/health").await;
    let id = res
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("req_"), "{id}");
    let res = app
        .client()
        .get(app.url("/api/v1/agents/nope"))
        .header("X-Request-Id", "my-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers().get("x-request-id").unwrap(), "my-trace-42");
    let (_, body) = json(res).await;
    assert_eq!(
        body["error"]["request_id"], "my-trace-42",
        "the error body carries the same id"
    );
    let res = app
        .client()
        .get(app.url("/health"))
        .header("X-Request-Id", "x".repeat(300))
        .send()
        .await
        .unwrap();
    assert_ne!(
        res.headers().get("x-request-id").unwrap().len(),
        300,
        "an unreasonable id is replaced"
    );
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_json_errors() {
    let app = TestApp::spawn().await;
    for path in ["/nope", "/api/v1/nope", "/v1/agents/x/y/z", "/api"] {
        let (status, body) = json(app.get(path).await).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
    let (status, body) = json(app.delete("/api/v1/agents").await).await;
    assert_error(status, &body, 405, "METHOD_NOT_ALLOWED");
    let (status, body) = json(app.post("/health", &json!({})).await).await;
    assert!(status == 404 || status == 405, "{status}");
    assert!(body["error"]["code"].is_string());
}

#[tokio::test]
async fn bodies_must_be_json_objects_of_the_right_shape() {
    let app = TestApp::spawn().await;
    let raw = |ct: Option<&'static str>, body: &'static [u8]| {
        let mut req = app.client().post(app.url("/api/v1/agents")).body(body);
        if let Some(ct) = ct {
            req = req.header(CONTENT_TYPE, ct);
        }
        async move { json(req.send().await.unwrap()).await }
    };
    let (s, b) = raw(Some("text/plain"), b"{\"name\":\"a\"}").await;
    assert_error(s, &b, 415, "UNSUPPORTED_MEDIA_TYPE");
    let (s, b) = raw(None, b"{\"name\":\"a\"}").await;
    assert_error(s, &b, 415, "UNSUPPORTED_MEDIA_TYPE");
    let (s, b) = raw(Some("application/json"), b"{\"name\": ").await;
    let err = assert_error(s, &b, 400, "INVALID_REQUEST");
    assert!(
        err["message"].as_str().unwrap().contains("EOF"),
        "the parser's message is passed on: {b}"
    );
    let (s, b) = raw(Some("application/json"), b"").await;
    assert_error(s, &b, 400, "INVALID_REQUEST");
    let (s, b) = raw(Some("application/json"), b"[1,2]").await;
    assert_error(s, &b, 400, "VALIDATION_ERROR");
    let (s, b) = raw(Some("application/json"), b"null").await;
    assert_error(s, &b, 400, "VALIDATION_ERROR");
    let (s, b) = raw(
        Some("application/json; charset=utf-8"),
        b"{\"name\":\"\xff\xfe\"}",
    )
    .await;
    assert_error(s, &b, 400, "INVALID_REQUEST");
    let (s, b) = raw(
        Some("application/json"),
        b"{\"name\":\"a\",\"temperature\":1e400}",
    )
    .await;
    assert!(s == 400, "{s} {b}");
    let deep: &'static [u8] = Box::leak(
        format!(
            "{{\"name\":\"a\",\"tools\":[{}{}]}}",
            "[".repeat(5000),
            "]".repeat(5000)
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let (s, b) = raw(Some("application/json"), deep).await;
    assert!(s == 400, "deep nesting is refused cleanly: {s} {b}");
    let (_, list) = json(app.get("/api/v1/agents").await).await;
    assert_eq!(list["total"], 0);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::builder()
        .configure(|c| c.json_limit_bytes = 1024)
        .spawn()
        .await;
    let big = json!({"name": "a", "instructions": "x".repeat(2048)});
    let (status, body) = json(app.post("/api/v1/agents", &big).await).await;
    let err = assert_error(status, &body, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(err["details"]["limit_bytes"], 1024);
    let (status, _) = json(app.post("/api/v1/agents", &json!({"name": "small"})).await).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn trailing_slashes_and_odd_paths_are_handled() {
    let app = TestApp::spawn().await;
    let (status, _) = json(app.get("/api/v1/agents/").await).await;
    assert_eq!(status, 200);
    let (status, _) = json(app.get("/health/").await).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/agents/%FF%FE",
        "/api/v1/agents/..%2F..%2Fetc",
        "/api/v1/agents/%00",
        "/api/v1/agents/a%20b",
    ] {
        let (status, body) = json(app.get(path).await).await;
        assert!(status == 404 || status == 400, "{path}: {status} {body}");
        assert!(body["error"]["code"].is_string());
    }
}

/// PostgreSQL cannot store NUL in text: it is refused at the boundary, on every backend alike,
/// with a 400 in the surface's format, and nothing is stored.
#[tokio::test]
async fn nul_characters_are_refused_at_the_boundary() {
    let app = TestApp::spawn().await;
    let (status, _) = json(
        app.post("/api/v1/agents", &json!({"name": "Support Bot"}))
            .await,
    )
    .await;
    assert_eq!(status, 201);
    for path in [
        "/api/v1/runs/a%00b",
        "/api/v1/conversations/a%00b",
        "/api/v1/runs?user_id=a%00b",
        "/api/v1/runs?session_id=x%00",
        "/api/v1/runs?component=%00",
        "/api/v1/agents/support-bot/chat/history?session_id=a%00",
        "/api/v1/agents/support-bot/chat/history?conversation_id=%00x",
    ] {
        let (status, body) = json(app.get(path).await).await;
        assert_error(status, &body, 400, "INVALID_REQUEST");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("NUL"),
            "{path}: {body}"
        );
    }
    let (status, body) = json(app.get("/v1/responses/resp_a%00b").await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["type"], "invalid_request_error",
        "OpenAI's format: {body}"
    );
    for (path, body, field) in [
        (
            "/api/v1/runs",
            json!({"prompt": "hi", "model": "mock/echo", "log_meta": {"k": "a\u{0}b"}}),
            "log_meta.k",
        ),
        (
            "/api/v1/agents/support-bot/chat",
            json!({"message": "hi", "session_id": "s\u{0}"}),
            "session_id",
        ),
        ("/api/v1/agents", json!({"name": "Nul\u{0}Bot"}), "name"),
    ] {
        let (status, e) = json(app.post(path, &body).await).await;
        assert_eq!(status, 400, "{path}: {e}");
        assert_eq!(e["error"]["details"]["field"], field, "{path}: {e}");
        assert!(e.to_string().contains("NUL"), "{path}: {e}");
    }
    let (status, e) = json(
        app.post(
            "/v1/responses",
            &json!({"model": "support-bot", "input": "hi", "conversation": "conv_\u{0}"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, e["error"]["type"].as_str()),
        (400, Some("invalid_request_error")),
        "{e}"
    );
    // Nothing was stored.
    let (_, agents) = json(app.get("/api/v1/agents").await).await;
    assert_eq!(agents["total"], 1, "{agents}");
    let (_, convs) = json(app.get("/api/v1/conversations").await).await;
    assert_eq!(convs["total"], 0, "{convs}");
    // A backslash followed by the letters u0000 is ordinary text.
    let (status, r) = json(
        app.post(
            "/api/v1/agents/support-bot/chat",
            &json!({"message": "C:\\u0000 is a path"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
}

/// A client that trickles a body holds its connection no longer than the body deadline: it
/// gets 408 in the error envelope and the connection is closed.
#[tokio::test]
async fn slow_request_bodies_are_cut_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::builder()
        .configure(|c| c.request_body_timeout_secs = 1)
        .spawn()
        .await;
    let mut conn = tokio::net::TcpStream::connect(app.addr()).await.unwrap();
    conn.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100000\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            // Keep trickling (one byte every 300 ms) while the server has not answered.
            let mut buf = [0u8; 4096];
            tokio::select! {
                n = conn.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                () = tokio::time::sleep(std::time::Duration::from_millis(300)) => {
                    if conn.write_all(b" ").await.is_err() {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection was still open after 10 s");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(900),
        "{elapsed:?}"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"REQUEST_TIMEOUT\""), "{text}");
    // The server still answers others.
    assert_eq!(app.get("/health").await.status(), 200);
}

/// Sends one raw HTTP/1.1 request on a new connection and reads until the server closes it:
/// the status line, the lowercased header section, and the body.
async fn raw_request(app: &TestApp, request: &[u8]) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(app.addr()).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut buf),
    )
    .await
    .expect("the server answered and closed the connection")
    .unwrap();
    parse_raw(&buf)
}

fn parse_raw(buf: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// Request heads over the server's own limits (16 KiB of path and query, 64 header lines,
/// 64 KiB of headers) get 414 and 431 in the error envelope of their surface, with the
/// request id; what is under them is served. Past actix-http's hard limits (a URI over 65,534
/// bytes, a 128 KiB head) the answer stays actix-http's bare one (decision 59).
#[tokio::test]
async fn oversized_request_heads_get_the_error_envelope() {
    let app = TestApp::spawn().await;
    let get = |target: &str, extra: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n").into_bytes()
    };
    // 10,000 query parameters: 40 KB of URI.
    let params = "a=1&".repeat(10_000);
    let (status, head, body) =
        raw_request(&app, &get(&format!("/api/v1/agents?{params}"), "")).await;
    let body: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{head}{body}"));
    let err = assert_error(status, &body, 414, "URI_TOO_LONG");
    assert_eq!(err["details"]["limit_bytes"], 16 * 1024, "{body}");
    assert!(head.contains("x-request-id: req_"), "{head}");
    // On the OpenAI surface, in OpenAI's format.
    let (status, _, body) = raw_request(&app, &get(&format!("/v1/models?{params}"), "")).await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 414, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["code"], "uri_too_long", "{body}");
    // 70 header lines, and one 70 KiB header.
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "b".repeat(70 * 1024));
    for extra in [&many, &big] {
        let (status, head, body) = raw_request(&app, &get("/health", extra)).await;
        let body: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{head}{body}"));
        let err = assert_error(status, &body, 431, "HEADERS_TOO_LARGE");
        assert_eq!(err["details"]["limit_headers"], 64, "{body}");
        assert!(head.contains("x-request-id: req_"), "{head}");
    }
    // Just under the limits: 60 header lines of 1 KiB, and a 15 KiB query, are served.
    let under: String = (0..60)
        .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(1000)))
        .collect();
    let (status, head, _) = raw_request(&app, &get("/health", &under)).await;
    assert_eq!(status, 200, "{head}");
    let (status, head, _) =
        raw_request(&app, &get(&format!("/health?{}", "a=1&".repeat(3_800)), "")).await;
    assert_eq!(status, 200, "{head}");
    // Past actix-http's own limits the answer is its bare one, and the server goes on.
    let (status, _, _) = raw_request(
        &app,
        &get(&format!("/health?{}", "a=1&".repeat(17_000)), ""),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(app.get("/health").await.status(), 200);
}

/// Past `max_connections` a new connection's requests are answered 503 in the error envelope
/// with `Retry-After`, and the connection is closed, instead of waiting unanswered in the
/// listen backlog; `/health` still answers there. Once connections close (their counters are
/// dropped with them) requests are served again.
#[tokio::test]
async fn connections_past_the_cap_are_told_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::builder()
        .configure(|c| {
            c.workers = Some(1);
            c.max_connections = Some(1);
        })
        .spawn()
        .await;
    // One connection served and held (whatever the harness's own client holds besides).
    let mut holder = tokio::net::TcpStream::connect(app.addr()).await.unwrap();
    holder
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = holder.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    holder.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    // The next connection, past the cap: 503 and closed, keep-alive asked or not.
    let (status, head, body) = raw_request(
        &app,
        b"GET /api/v1/agents HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    let body: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{head}{body}"));
    let err = assert_error(status, &body, 503, "SERVICE_UNAVAILABLE");
    assert_eq!(err["details"]["retry_after_seconds"], 1, "{body}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    // Monitors still get their answer.
    let (status, head, _) = raw_request(
        &app,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{head}");
    // Once the held connections close, requests are served again (401: it got past the cap).
    drop(holder);
    let mut last = 0;
    for _ in 0..100 {
        let (status, _, _) = raw_request(
            &app,
            b"GET /api/v1/agents HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        last = status;
        if status != 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(last, 401, "connections were never counted out");
}

#[tokio::test]
async fn trailing_data_after_a_json_body_is_refused() {
    let app = TestApp::spawn().await;
    let raw = |path: &'static str, body: &'static str| {
        app.client()
            .post(app.url(path))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };
    for body in [
        r#"{"name":"x"} xyz"#,
        r#"{"name":"x"}{"name":"y"}"#,
        r#"{"name":"x"},"#,
    ] {
        let (s, b) = json(raw("/api/v1/agents", body).await.unwrap()).await;
        let err = assert_error(s, &b, 400, "INVALID_REQUEST");
        assert!(
            err["message"].as_str().unwrap().contains("trailing"),
            "{body}: {b}"
        );
    }
    let (_, list) = json(app.get("/api/v1/agents").await).await;
    assert_eq!(list["total"], 0, "nothing was created");
    // Trailing whitespace is fine.
    let (s, b) = json(
        raw("/api/v1/agents", "{\"name\":\"x\"} \r\n\t")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    // The OpenAI surface refuses it in OpenAI's format.
    let (s, b) = json(
        raw(
            "/v1/chat/completions",
            r#"{"model":"x","messages":[{"role":"user","content":"hi"}]} xyz"#,
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["type"], "invalid_request_error", "{b}");
}

#[tokio::test]
async fn unsupported_methods_on_existing_routes_are_405_with_allow() {
    let app = TestApp::spawn().await;
    create_agent(&app).await;
    for (method, path, allow) in [
        (Method::TRACE, "/api/v1/agents/bot/chat", "POST"),
        (Method::GET, "/api/v1/agents/bot/chat", "POST"),
        (Method::DELETE, "/v1/agents/bot/stream", "POST"),
        (Method::TRACE, "/api/v1/auth/me", "GET"),
        (Method::PUT, "/api/v1/auth/login", "POST"),
        (Method::TRACE, "/api/v1/conversations", "GET"),
        (Method::TRACE, "/health", "GET"),
        (Method::DELETE, "/api/v1/agents", "GET, POST"),
        (
            Method::TRACE,
            "/api/v1/agents/bot",
            "GET, PATCH, PUT, DELETE",
        ),
    ] {
        let res = app.request(method.clone(), path, None).await;
        let allowed = header_set(&res, "allow");
        let (s, b) = json(res).await;
        assert_error(s, &b, 405, "METHOD_NOT_ALLOWED");
        assert_eq!(allowed, set(allow), "{method} {path}");
    }
    // On the OpenAI surface, in OpenAI's format.
    let res = app
        .request(Method::TRACE, "/v1/chat/completions", None)
        .await;
    let allowed = header_set(&res, "allow");
    let (s, b) = json(res).await;
    assert_eq!(s, 405, "{b}");
    assert_eq!(b["error"]["type"], "invalid_request_error", "{b}");
    assert_eq!(b["error"]["code"], "method_not_allowed", "{b}");
    assert_eq!(allowed, set("POST"));
}

async fn create_agent(app: &TestApp) {
    let (s, b) = json(app.post("/api/v1/agents", &json!({"name": "Bot"})).await).await;
    assert_eq!(s, 201, "{b}");
}

fn set(list: &str) -> std::collections::BTreeSet<String> {
    list.split(',')
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect()
}

fn header_set(res: &reqwest::Response, name: &str) -> std::collections::BTreeSet<String> {
    set(res
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default())
}

#[tokio::test]
async fn refresh_without_a_body_names_refresh_token() {
    let app = TestApp::spawn().await;
    let send = |path: &'static str, content_type: Option<&'static str>, body: &'static str| {
        let mut req = app.anonymous_client().post(app.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        req.send()
    };
    // Login and refresh alike: no body names the first required field.
    for (path, field) in [
        ("/api/v1/auth/refresh", "refresh_token"),
        ("/api/v1/auth/login", "username"),
    ] {
        for (ct, body) in [
            (None, ""),
            (Some("application/json"), ""),
            (Some("application/json"), "{}"),
        ] {
            let (s, b) = json(send(path, ct, body).await.unwrap()).await;
            let err = assert_error(s, &b, 400, "VALIDATION_ERROR");
            assert_eq!(
                err["details"]["field"], field,
                "{path} {ct:?} {body:?}: {b}"
            );
        }
        // A body that is not JSON is still refused for its content type.
        let (s, b) = json(send(path, Some("text/plain"), "x").await.unwrap()).await;
        assert_error(s, &b, 415, "UNSUPPORTED_MEDIA_TYPE");
    }
}
