//! `HttpTools` against real servers on loopback.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentry_domain::tool::{HttpMethod, HttpTool, HttpToolClient, ToolError, ToolLimits};
use agentry_tools::{ConfigError, HttpTools, HttpToolsConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};

const SECRET: &str = "sk-test-secret-4242";

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A small HTTP/1.1 server on 127.0.0.1:0 (or another loopback address) recording what it receives.
///
/// `/ok` answers `hello`; `/big` 10,000 `a`s; `/slow` after 5 s; `/fail` 500 with a long
/// body that echoes the `x-key` header; `/redirect?to=<url>` a 302 to `<url>`;
/// `/redirect307?to=<url>` a 307.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    async fn start_on(ip: &str) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let log = Arc::clone(&log);
                        async move { Ok::<_, Infallible>(answer(req, log).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn localhost_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.addr.port())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(req: Request<Incoming>, log: Arc<Mutex<Vec<Seen>>>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(ToString::to_string)
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let seen = Seen {
        method,
        path_and_query: path_and_query.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    log.lock().unwrap().push(seen.clone());
    let path = path_and_query.split('?').next().unwrap_or_default();
    let to = path_and_query
        .split_once("?to=")
        .map(|(_, t)| t.to_owned())
        .unwrap_or_default();
    let reply = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    match path {
        "/ok" => reply(200, "hello".to_owned()),
        "/big" => reply(200, "a".repeat(10_000)),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            reply(200, "late".to_owned())
        }
        "/fail" => {
            let key = seen.header("x-key").unwrap_or_default();
            reply(500, format!("boom: bad key {key} {}", "x".repeat(2_000)))
        }
        "/redirect" | "/redirect307" => Response::builder()
            .status(if path == "/redirect" { 302 } else { 307 })
            .header("location", to)
            .body(Full::new(Bytes::new()))
            .unwrap(),
        _ => reply(404, "no such path".to_owned()),
    }
}

fn tool(url: &str, method: HttpMethod) -> HttpTool {
    HttpTool {
        name: "t".to_owned(),
        description: None,
        parameters: json!({"type": "object"}),
        url: url.to_owned(),
        method,
        headers: vec![
            ("X-Key".to_owned(), SECRET.to_owned()),
            ("X-Team".to_owned(), "blue".to_owned()),
        ],
    }
}

fn tools(allowed: &[&str]) -> HttpTools {
    HttpTools::new(HttpToolsConfig {
        allowed_hosts: allowed.iter().map(|s| (*s).to_owned()).collect(),
    })
    .unwrap()
}

fn args(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn limits() -> ToolLimits {
    ToolLimits {
        timeout: Duration::from_secs(5),
        max_response_bytes: 64 * 1024,
    }
}

/// Calls the tool and checks that no error message holds a header value.
async fn call(
    client: &HttpTools,
    tool: &HttpTool,
    arguments: Value,
    limits: ToolLimits,
) -> Result<String, ToolError> {
    let result = client.call(tool, &args(arguments), limits).await;
    if let Err(e) = &result {
        let text = format!("{e} {e:?}");
        assert!(!text.contains(SECRET), "secret in error: {text}");
    }
    result
}

fn assert_refused(result: Result<String, ToolError>) {
    match result {
        Err(ToolError::Refused(m)) => assert!(
            m.contains("is a private/loopback address not in tool_allowed_hosts"),
            "{m}"
        ),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn get_sends_arguments_as_query_and_the_tools_headers() {
    let server = Server::start().await;
    let client = tools(&["127.0.0.1"]);
    let t = tool(&server.url("/ok?fixed=1"), HttpMethod::Get);
    let out = call(
        &client,
        &t,
        json!({"q": "a b", "n": 3, "tags": ["x", "y"], "o": {"k": true}}),
        limits(),
    )
    .await
    .unwrap();
    assert_eq!(out, "hello");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "GET");
    assert!(
        r.path_and_query.starts_with("/ok?fixed=1&"),
        "{}",
        r.path_and_query
    );
    for part in ["q=a+b", "n=3", "tags=x", "tags=y", "o=%7B%22k%22%3Atrue%7D"] {
        assert!(
            r.path_and_query.contains(part),
            "{part} in {}",
            r.path_and_query
        );
    }
    assert_eq!(r.header("x-key"), Some(SECRET));
    assert_eq!(r.header("x-team"), Some("blue"));
    assert_eq!(r.header("accept"), Some("application/json, text/*;q=0.9"));
    assert_eq!(r.header("user-agent"), Some(agentry_tools::USER_AGENT));
    assert!(agentry_tools::USER_AGENT.starts_with("agentry-tools/"));
    assert_eq!(r.body, "");
}

#[tokio::test]
async fn delete_sends_a_query_and_post_put_patch_a_json_body() {
    let server = Server::start().await;
    let client = tools(&["127.0.0.1"]);
    call(
        &client,
        &tool(&server.url("/ok"), HttpMethod::Delete),
        json!({"id": 7}),
        limits(),
    )
    .await
    .unwrap();
    for method in [HttpMethod::Post, HttpMethod::Put, HttpMethod::Patch] {
        call(
            &client,
            &tool(&server.url("/ok"), method),
            json!({"name": "Ada", "n": [1, 2]}),
            limits(),
        )
        .await
        .unwrap();
    }
    let seen = server.seen();
    assert_eq!(seen[0].method, "DELETE");
    assert_eq!(seen[0].path_and_query, "/ok?id=7");
    for (r, m) in seen[1..].iter().zip(["POST", "PUT", "PATCH"]) {
        assert_eq!(r.method, m);
        assert_eq!(r.path_and_query, "/ok");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-key"), Some(SECRET));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body, json!({"name": "Ada", "n": [1, 2]}));
    }
}

#[tokio::test]
async fn loopback_is_refused_by_default_and_nothing_is_sent() {
    let server = Server::start().await;
    let result = call(
        &tools(&[]),
        &tool(&server.url("/ok"), HttpMethod::Get),
        json!({}),
        limits(),
    )
    .await;
    assert_refused(result);
    // A range that holds the address allows it too.
    let ok = call(
        &tools(&["127.0.0.0/8"]),
        &tool(&server.url("/ok"), HttpMethod::Get),
        json!({}),
        limits(),
    )
    .await;
    assert_eq!(ok.unwrap(), "hello");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn localhost_is_refused_after_resolution_unless_listed_by_name() {
    let server = Server::start().await;
    let t = tool(&server.localhost_url("/ok"), HttpMethod::Get);
    assert_refused(call(&tools(&[]), &t, json!({}), limits()).await);
    assert!(server.seen().is_empty());
    assert_eq!(
        call(&tools(&["localhost"]), &t, json!({}), limits())
            .await
            .unwrap(),
        "hello"
    );
    // Listing the address it resolves to allows it as well.
    assert_eq!(
        call(&tools(&["127.0.0.1"]), &t, json!({}), limits())
            .await
            .unwrap(),
        "hello"
    );
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn forbidden_ip_literals_are_refused_without_traffic() {
    let server = Server::start().await;
    let port = server.addr.port();
    let client = tools(&[]);
    let quick = ToolLimits {
        timeout: Duration::from_secs(3),
        ..limits()
    };
    for url in [
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.1.2.3/".to_owned(),
        "http://192.168.0.1:8080/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://0.0.0.0/".to_owned(),
        format!("http://[::1]:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
        format!("http://[::ffff:7f00:1]:{port}/ok"),
        format!("http://2130706433:{port}/ok"),
        format!("http://0x7f.1:{port}/ok"),
        "https://[fd00::1]/".to_owned(),
    ] {
        let started = Instant::now();
        let result = call(&client, &tool(&url, HttpMethod::Get), json!({}), quick).await;
        assert_refused(result);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{url} took a network round"
        );
    }
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn non_http_schemes_are_refused() {
    let result = call(
        &tools(&[]),
        &tool("ftp://example.com/x", HttpMethod::Get),
        json!({}),
        limits(),
    )
    .await;
    assert!(matches!(result, Err(ToolError::Refused(_))), "{result:?}");
}

#[tokio::test]
async fn a_redirect_to_a_forbidden_literal_is_refused() {
    let server = Server::start().await;
    let t = tool(
        &server.url("/redirect?to=http://10.0.0.1/"),
        HttpMethod::Get,
    );
    let started = Instant::now();
    assert_refused(call(&tools(&["127.0.0.1"]), &t, json!({}), limits()).await);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_redirect_to_a_name_resolving_to_a_forbidden_address_is_refused() {
    // The server is on 127.0.0.2, the only address allowed; `localhost` is 127.0.0.1.
    let server = Server::start_on("127.0.0.2").await;
    let target = server.localhost_url("/ok");
    let t = tool(
        &server.url(&format!("/redirect?to={target}")),
        HttpMethod::Get,
    );
    assert_refused(call(&tools(&["127.0.0.2/32"]), &t, json!({}), limits()).await);
    assert_eq!(
        server.seen().len(),
        1,
        "only the first hop reached the server"
    );
}

#[tokio::test]
async fn allowed_redirects_are_followed_and_headers_stay_on_their_origin() {
    let a = Server::start().await;
    let b = Server::start().await;
    let client = tools(&["127.0.0.1", "localhost"]);
    // Same origin: the headers go along.
    let same = tool(
        &a.url(&format!("/redirect?to={}", a.url("/ok"))),
        HttpMethod::Get,
    );
    assert_eq!(
        call(&client, &same, json!({}), limits()).await.unwrap(),
        "hello"
    );
    let seen = a.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("x-key"), Some(SECRET));
    // Another origin: they do not.
    let other = tool(
        &a.url(&format!("/redirect?to={}", b.localhost_url("/ok"))),
        HttpMethod::Get,
    );
    assert_eq!(
        call(&client, &other, json!({}), limits()).await.unwrap(),
        "hello"
    );
    let seen = b.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-key"), None);
    assert_eq!(seen[0].header("x-team"), None);
    assert_eq!(
        seen[0].header("user-agent"),
        Some(agentry_tools::USER_AGENT)
    );
}

#[tokio::test]
async fn a_302_after_post_becomes_a_get_and_a_307_keeps_the_body() {
    let server = Server::start().await;
    let client = tools(&["127.0.0.1"]);
    let target = server.url("/ok");
    for (path, method, body) in [
        ("/redirect", "GET", ""),
        ("/redirect307", "POST", "{\"a\":1}"),
    ] {
        let t = tool(
            &server.url(&format!("{path}?to={target}")),
            HttpMethod::Post,
        );
        call(&client, &t, json!({"a": 1}), limits()).await.unwrap();
        let seen = server.seen();
        let last = seen.last().unwrap();
        assert_eq!((last.method.as_str(), last.body.as_str()), (method, body));
    }
}

#[tokio::test]
async fn redirect_loops_stop_after_five_hops() {
    let server = Server::start().await;
    let mut url = server.url("/ok");
    for _ in 0..6 {
        url = server.url(&format!("/redirect?to={url}"));
    }
    // Six redirects before `/ok`: one too many. (Nested `to=` are not escaped: the server
    // takes everything after the first `?to=`.)
    let result = call(
        &tools(&["127.0.0.1"]),
        &tool(&url, HttpMethod::Get),
        json!({}),
        limits(),
    )
    .await;
    assert!(
        matches!(&result, Err(ToolError::Failed(m)) if m.contains("too many redirects")),
        "{result:?}"
    );
    assert_eq!(server.seen().len(), 6);
}

#[tokio::test]
async fn a_long_response_is_cut_with_a_note() {
    let server = Server::start().await;
    let capped = ToolLimits {
        max_response_bytes: 1_000,
        ..limits()
    };
    let out = call(
        &tools(&["127.0.0.1"]),
        &tool(&server.url("/big"), HttpMethod::Get),
        json!({}),
        capped,
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        format!(
            "{}\n[truncated: response exceeded 1000 bytes]",
            "a".repeat(1_000)
        )
    );
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let server = Server::start().await;
    let quick = ToolLimits {
        timeout: Duration::from_millis(300),
        ..limits()
    };
    let started = Instant::now();
    let result = call(
        &tools(&["127.0.0.1"]),
        &tool(&server.url("/slow"), HttpMethod::Get),
        json!({}),
        quick,
    )
    .await;
    assert_eq!(result, Err(ToolError::Timeout(Duration::from_millis(300))));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_error_status_carries_the_start_of_the_body_without_secrets() {
    let server = Server::start().await;
    let result = call(
        &tools(&["127.0.0.1"]),
        &tool(&server.url("/fail"), HttpMethod::Get),
        json!({}),
        limits(),
    )
    .await;
    let Err(ToolError::Status { status, body }) = result else {
        panic!("expected Status, got {result:?}");
    };
    assert_eq!(status, 500);
    assert!(body.starts_with("boom: bad key ******** xxx"), "{body}");
    assert!(body.chars().count() <= agentry_tools::STATUS_BODY_CHARS + 1);
    assert!(body.ends_with('…'));
    let missing = call(
        &tools(&["127.0.0.1"]),
        &tool(&server.url("/nope"), HttpMethod::Get),
        json!({}),
        limits(),
    )
    .await;
    assert_eq!(
        missing,
        Err(ToolError::Status {
            status: 404,
            body: "no such path".to_owned()
        })
    );
}

#[tokio::test]
async fn connection_failures_and_bad_headers_name_no_secret() {
    // A port nobody listens on (bound, then closed).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = tools(&["127.0.0.1"]);
    let t = tool(&format!("http://127.0.0.1:{port}/"), HttpMethod::Get);
    let result = call(&client, &t, json!({}), limits()).await;
    assert!(matches!(result, Err(ToolError::Failed(_))), "{result:?}");
    let mut bad = tool("http://127.0.0.1:1/", HttpMethod::Get);
    bad.headers
        .push(("X-Other".to_owned(), format!("\u{1}{SECRET}")));
    let result = call(&client, &bad, json!({}), limits()).await;
    assert!(
        matches!(&result, Err(ToolError::Failed(m)) if m.contains("X-Other")),
        "{result:?}"
    );
}

#[test]
fn a_malformed_allow_list_entry_is_a_constructor_error() {
    let err = HttpTools::new(HttpToolsConfig {
        allowed_hosts: vec!["127.0.0.1".to_owned(), "10.0.0.0/40".to_owned()],
    })
    .unwrap_err();
    assert!(
        matches!(err, ConfigError::AllowedHost { index: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tool_allowed_hosts[1]"), "{err}");
}
