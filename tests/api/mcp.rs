//! MCP servers as a resource (issue 14, item 1): CRUD, pagination, validation, conflicts,
//! write-only secrets, admin-only writes, durability. Nothing here starts a server (a new
//! server is `stopped` with no capabilities); `mcp_live.rs` runs real ones.

use agentry_test_harness::{TestApp, json};
use reqwest::Method;
use serde_json::{Value, json};

use crate::assert_error;

const ENV_SECRET: &str = "env-secret-5150515051";
const HEADER_SECRET: &str = "Bearer hdr-secret-8675309";

fn stdio_body(slug: &str) -> Value {
    json!({
        "name": "my-mcp-server",
        "slug": slug,
        "config": {"command": "python", "args": ["-m", "my_mcp_server"], "env": {"API_KEY": ENV_SECRET}}
    })
}

fn remote_body(slug: &str) -> Value {
    json!({
        "name": "Remote tools",
        "slug": slug,
        "url": "https://mcp.example.com/mcp/",
        "headers": {"Authorization": HEADER_SECRET}
    })
}

/// Sends a request and returns the status, the raw text (to look for secrets) and the JSON.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, String, Value) {
    let res = app.request(method, path, body).await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, text, value)
}

fn assert_no_secret(text: &str) {
    assert!(
        !text.contains(ENV_SECRET) && !text.contains("hdr-secret-8675309"),
        "a secret was returned: {text}"
    );
}

#[tokio::test]
async fn mcp_servers_crud_stdio_and_remote() {
    let app = TestApp::spawn().await;
    let (status, text, stdio) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&stdio_body("my-server")),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert_no_secret(&text);
    let id = stdio["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("mcp_"), "{stdio}");
    assert_eq!(stdio["name"], "my-mcp-server");
    assert_eq!(stdio["slug"], "my-server");
    assert_eq!(stdio["status"], "stopped");
    assert_eq!(stdio["transport"], "stdio");
    assert_eq!(stdio["url"], Value::Null);
    assert_eq!(stdio["capabilities"], json!([]));
    assert_eq!(
        stdio["config"],
        json!({"command": "python", "args": ["-m", "my_mcp_server"], "env": {"API_KEY": "********"}})
    );
    assert!(stdio["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, text, remote) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&remote_body("remote")),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert_no_secret(&text);
    assert_eq!(remote["transport"], "http");
    assert_eq!(remote["url"], "https://mcp.example.com/mcp/");
    assert_eq!(remote["headers"], json!({"Authorization": "********"}));
    assert!(remote.get("config").is_none(), "{remote}");

    // By id and by slug, and through the /v1 alias (with a trailing slash, as seed 002 writes it).
    for path in [
        format!("/api/v1/mcp-servers/{id}"),
        "/api/v1/mcp-servers/my-server".to_owned(),
        format!("/v1/mcp-servers/{id}"),
    ] {
        let (status, text, got) = call(&app, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert_no_secret(&text);
        assert_eq!(got, stdio, "{path}");
    }
    let (status, text, list) = call(&app, Method::GET, "/v1/mcp-servers/", None).await;
    assert_eq!(status, 200, "{text}");
    assert_no_secret(&text);
    assert_eq!(list["total"], 2);
    assert_eq!(list["limit"], 20);
    assert_eq!(list["offset"], 0);
    let slugs: Vec<&str> = list["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["remote", "my-server"], "newest first");
    for s in list["servers"].as_array().unwrap() {
        for field in [
            "id",
            "name",
            "slug",
            "status",
            "url",
            "capabilities",
            "created_at",
        ] {
            assert!(s.get(field).is_some(), "{field} missing from {s}");
        }
    }

    // PUT replaces the definition: stdio becomes remote, the slug changes.
    let (status, text, put) = call(
        &app,
        Method::PUT,
        &format!("/api/v1/mcp-servers/{id}"),
        Some(&json!({"name": "Moved", "slug": "moved", "url": "http://127.0.0.1:3001/mcp"})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(put["id"], id.as_str());
    assert_eq!(put["slug"], "moved");
    assert_eq!(put["transport"], "http");
    assert_eq!(put["headers"], json!({}));
    assert_eq!(put["created_at"], stdio["created_at"], "created_at is kept");
    let (status, _, gone) = call(&app, Method::GET, "/api/v1/mcp-servers/my-server", None).await;
    assert_error(status, &gone, 404, "MCP_SERVER_NOT_FOUND");

    // DELETE is idempotent, by id or slug.
    let (status, _, res) = call(&app, Method::DELETE, "/api/v1/mcp-servers/moved", None).await;
    assert_eq!(
        (status, res["deleted"].clone()),
        (200, json!(true)),
        "{res}"
    );
    let (status, _, res) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/mcp-servers/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (status, res["deleted"].clone()),
        (200, json!(false)),
        "{res}"
    );
    let (status, _, res) = call(&app, Method::DELETE, "/api/v1/mcp-servers/Not A Slug", None).await;
    assert_eq!(
        (status, res["deleted"].clone()),
        (200, json!(false)),
        "{res}"
    );
    let (status, _, res) = call(
        &app,
        Method::GET,
        &format!("/api/v1/mcp-servers/{id}"),
        None,
    )
    .await;
    let err = assert_error(status, &res, 404, "MCP_SERVER_NOT_FOUND");
    assert_eq!(err["message"], "MCP server not found");
    let (_, _, list) = call(&app, Method::GET, "/api/v1/mcp-servers", None).await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn mcp_server_slugs_are_unique_and_derived_from_the_name() {
    let app = TestApp::spawn().await;
    let (status, _, first) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&stdio_body("dup")),
    )
    .await;
    assert_eq!(status, 201);
    let (status, text, dup) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&remote_body("dup")),
    )
    .await;
    assert_no_secret(&text);
    let err = assert_error(status, &dup, 409, "CONFLICT");
    assert_eq!(err["details"]["field"], "slug");

    let (status, _, other) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&remote_body("other")),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _, res) = call(
        &app,
        Method::PUT,
        "/api/v1/mcp-servers/other",
        Some(&json!({"name": "x", "slug": "dup", "url": "https://x.example"})),
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 409, "CONFLICT")["details"]["field"],
        "slug"
    );
    let (_, _, kept) = call(&app, Method::GET, "/api/v1/mcp-servers/other", None).await;
    assert_eq!(kept, other, "a refused PUT changes nothing");
    assert_eq!(first["slug"], "dup");

    // Without a slug: derived from the name on create, kept on PUT.
    let (status, _, derived) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&json!({"name": "File Operations", "config": {"command": "mcp-files"}})),
    )
    .await;
    assert_eq!(status, 201, "{derived}");
    assert_eq!(derived["slug"], "file-operations");
    assert_eq!(
        derived["config"],
        json!({"command": "mcp-files", "args": [], "env": {}})
    );
    let (status, _, put) = call(
        &app,
        Method::PUT,
        "/api/v1/mcp-servers/file-operations",
        Some(&json!({"name": "Renamed", "config": {"command": "mcp-files", "args": ["--ro"]}})),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(
        (put["slug"].clone(), put["name"].clone()),
        (json!("file-operations"), json!("Renamed"))
    );
}

#[tokio::test]
async fn mcp_servers_paginate() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        let (status, _, _) = call(
            &app,
            Method::POST,
            "/api/v1/mcp-servers",
            Some(&stdio_body(&format!("s{i}"))),
        )
        .await;
        assert_eq!(status, 201);
    }
    let page = |v: &Value| -> Vec<String> {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["slug"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, _, p1) = call(&app, Method::GET, "/api/v1/mcp-servers?limit=2", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (page(&p1), p1["total"].clone(), p1["limit"].clone()),
        (vec!["s4".into(), "s3".into()], json!(5), json!(2))
    );
    let (_, _, p3) = call(
        &app,
        Method::GET,
        "/api/v1/mcp-servers?limit=2&offset=4",
        None,
    )
    .await;
    assert_eq!(
        (page(&p3), p3["offset"].clone()),
        (vec!["s0".to_owned()], json!(4))
    );
    let (_, _, past) = call(&app, Method::GET, "/api/v1/mcp-servers?offset=50", None).await;
    assert_eq!((page(&past).len(), past["total"].clone()), (0, json!(5)));
    for bad in ["limit=0", "limit=101", "limit=x", "offset=-1"] {
        let (status, _, res) = call(
            &app,
            Method::GET,
            &format!("/api/v1/mcp-servers?{bad}"),
            None,
        )
        .await;
        assert_error(status, &res, 400, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn mcp_server_input_is_validated() {
    let app = TestApp::spawn().await;
    for (body, field) in [
        (
            json!({"slug": "x", "config": {"command": "python"}}),
            "name",
        ),
        (
            json!({"name": "  ", "config": {"command": "python"}}),
            "name",
        ),
        (
            json!({"name": "x", "slug": "Bad Slug", "config": {"command": "python"}}),
            "slug",
        ),
        (
            json!({"name": "x", "slug": "mcp_x", "config": {"command": "python"}}),
            "slug",
        ),
        (json!({"name": "x"}), "config"),
        (
            json!({"name": "x", "config": {"command": "python"}, "url": "https://x.example"}),
            "url",
        ),
        (
            json!({"name": "x", "config": {"command": ""}}),
            "config.command",
        ),
        (
            json!({"name": "x", "config": {"args": ["a"]}}),
            "config.command",
        ),
        (
            json!({"name": "x", "config": {"command": "a", "env": {"BAD-NAME": "v"}}}),
            "config.env.BAD-NAME",
        ),
        (
            json!({"name": "x", "config": {"command": "a"}, "headers": {"X": "v"}}),
            "headers",
        ),
        (
            json!({"name": "x", "url": "ftp://files.example/mcp"}),
            "url",
        ),
        (json!({"name": "x", "url": "file:///etc/passwd"}), "url"),
        (json!({"name": "x", "url": "https://"}), "url"),
        (
            json!({"name": "x", "url": "https://x.example", "headers": {"X-Key": "a\nb"}}),
            "headers.X-Key",
        ),
        (
            json!({"name": "x", "url": "https://x.example", "headers": {"Bad Header": "v"}}),
            "headers.Bad Header",
        ),
        (
            json!({"name": "x", "url": "https://x.example", "headers": {"X-Key": "********"}}),
            "headers.X-Key",
        ),
        (
            json!({"name": "x", "config": {"command": "a", "env": {"K": "********"}}}),
            "config.env.K",
        ),
    ] {
        let (status, _, res) = call(&app, Method::POST, "/api/v1/mcp-servers", Some(&body)).await;
        let err = assert_error(status, &res, 400, "VALIDATION_ERROR");
        assert_eq!(err["details"]["field"], field, "{body}: {res}");
    }
    let (status, _, res) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&json!({"name": "x", "config": {"command": "a"}, "surprise": 1})),
    )
    .await;
    assert_error(status, &res, 400, "VALIDATION_ERROR");
    let (_, _, list) = call(&app, Method::GET, "/api/v1/mcp-servers", None).await;
    assert_eq!(list["total"], 0, "nothing was stored");

    // PUT validates the same way, and answers 404 for an unknown server.
    let (status, _, res) = call(
        &app,
        Method::PUT,
        "/api/v1/mcp-servers/ghost",
        Some(&json!({"name": "x", "config": {"command": "a"}})),
    )
    .await;
    assert_error(status, &res, 404, "MCP_SERVER_NOT_FOUND");
    call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&stdio_body("real")),
    )
    .await;
    let (status, _, res) = call(
        &app,
        Method::PUT,
        "/api/v1/mcp-servers/real",
        Some(&json!({"name": "x"})),
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 400, "VALIDATION_ERROR")["details"]["field"],
        "config"
    );
}

#[tokio::test]
async fn mcp_secrets_are_write_only_and_survive_a_masked_put() {
    let app = TestApp::spawn().await;
    call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&stdio_body("env-server")),
    )
    .await;
    call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&remote_body("hdr-server")),
    )
    .await;

    // A client reads each server and writes it back as read: the masks keep the secrets.
    let (_, _, stdio) = call(&app, Method::GET, "/api/v1/mcp-servers/env-server", None).await;
    let mut config = stdio["config"].clone();
    config["env"]["EXTRA"] = json!("plain-new-value");
    let (status, text, put) = call(
        &app,
        Method::PUT,
        "/api/v1/mcp-servers/env-server",
        Some(&json!({"name": stdio["name"], "config": config})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_no_secret(&text);
    assert!(!text.contains("plain-new-value"), "{text}");
    assert_eq!(
        put["config"]["env"],
        json!({"API_KEY": "********", "EXTRA": "********"})
    );

    let (_, _, remote) = call(&app, Method::GET, "/api/v1/mcp-servers/hdr-server", None).await;
    let (status, text, _) = call(
        &app,
        Method::PUT,
        "/api/v1/mcp-servers/hdr-server",
        Some(&json!({"name": remote["name"], "url": remote["url"], "headers": remote["headers"]})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_no_secret(&text);

    for path in [
        "/api/v1/mcp-servers",
        "/api/v1/mcp-servers/env-server",
        "/api/v1/mcp-servers/hdr-server",
    ] {
        let (status, text, _) = call(&app, Method::GET, path, None).await;
        assert_eq!(status, 200);
        assert_no_secret(&text);
        assert!(text.contains("********"), "{text}");
    }

    // The kept values are the stored ones, not the mask: a mask for a name that was never
    // stored is refused, and so is a mask carried from one transport to the other.
    let (status, _, res) = call(
        &app,
        Method::PUT,
        "/api/v1/mcp-servers/env-server",
        Some(&json!({"name": "x", "config": {"command": "python", "env": {"API_KEY": "********", "NEW": "********"}}})),
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 400, "VALIDATION_ERROR")["details"]["field"],
        "config.env.NEW"
    );
    let (status, _, res) = call(
        &app,
        Method::PUT,
        "/api/v1/mcp-servers/env-server",
        Some(&json!({"name": "x", "url": "https://x.example", "headers": {"API_KEY": "********"}})),
    )
    .await;
    assert_eq!(
        assert_error(status, &res, 400, "VALIDATION_ERROR")["details"]["field"],
        "headers.API_KEY"
    );
}

#[tokio::test]
async fn mcp_secrets_never_reach_the_logs() {
    let Some(logs) = agentry_test_harness::capture_logs() else {
        panic!("another subscriber was installed first");
    };
    let app = TestApp::spawn().await;
    call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&stdio_body("logged")),
    )
    .await;
    call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&remote_body("logged-remote")),
    )
    .await;
    // A conflict and a validation error carry the body's secrets too.
    call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&stdio_body("logged")),
    )
    .await;
    let mut bad = remote_body("bad");
    bad["url"] = json!("ftp://x");
    call(&app, Method::POST, "/api/v1/mcp-servers", Some(&bad)).await;
    call(
        &app,
        Method::PUT,
        "/api/v1/mcp-servers/logged",
        Some(&stdio_body("logged")),
    )
    .await;
    let captured = logs.contents();
    assert!(!captured.is_empty(), "nothing was captured");
    assert_no_secret(&captured);
}

#[tokio::test]
async fn only_admins_change_mcp_servers() {
    let app = TestApp::spawn().await;
    call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&stdio_body("guarded")),
    )
    .await;
    let (_, pw) = app.create_user("ed", "editor").await;
    let editor = app.login("ed", &pw).await;
    let (_, pw) = app.create_user("vera", "viewer").await;
    let viewer = app.login("vera", &pw).await;
    let invoke_key = app.create_api_key(&["invoke"], None).await;
    let read_key = app.create_api_key(&["read"], None).await;

    for token in [&editor, &viewer, &invoke_key, &read_key] {
        for (method, path, body) in [
            (
                Method::POST,
                "/api/v1/mcp-servers",
                Some(stdio_body("sneaky")),
            ),
            (Method::POST, "/v1/mcp-servers", Some(stdio_body("sneaky"))),
            (
                Method::PUT,
                "/api/v1/mcp-servers/guarded",
                Some(stdio_body("guarded")),
            ),
            (Method::DELETE, "/api/v1/mcp-servers/guarded", None),
        ] {
            let res = app
                .request_as(Some(token), method.clone(), path, body.as_ref())
                .await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            assert_error(status, &body, 403, "FORBIDDEN");
        }
    }
    // Readers read (secrets masked); an invoke-only key does not.
    for token in [&editor, &viewer, &read_key] {
        let res = app
            .request_as(
                Some(token),
                Method::GET,
                "/api/v1/mcp-servers/guarded",
                None,
            )
            .await;
        assert_eq!(res.status(), 200);
        assert_no_secret(&res.text().await.unwrap());
    }
    let res = app
        .request_as(Some(&invoke_key), Method::GET, "/api/v1/mcp-servers", None)
        .await;
    assert_eq!(res.status(), 403);
    let res = app
        .request_as(None, Method::GET, "/api/v1/mcp-servers", None)
        .await;
    assert_eq!(res.status(), 401);
    let (_, _, list) = call(&app, Method::GET, "/api/v1/mcp-servers", None).await;
    assert_eq!(list["total"], 1, "nothing was created or deleted");
}

#[tokio::test]
async fn mcp_servers_survive_a_restart() {
    let app = TestApp::spawn().await;
    let (_, _, stdio) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&stdio_body("durable")),
    )
    .await;
    let (_, _, remote) = call(
        &app,
        Method::POST,
        "/api/v1/mcp-servers",
        Some(&remote_body("durable-remote")),
    )
    .await;
    let app = app.restart().await.unwrap();
    let (status, _, got) = call(&app, Method::GET, "/api/v1/mcp-servers/durable", None).await;
    assert_eq!(status, 200);
    assert_eq!(got, stdio, "every field survives a restart");
    let (_, _, got) = call(
        &app,
        Method::GET,
        "/api/v1/mcp-servers/durable-remote",
        None,
    )
    .await;
    assert_eq!(got, remote);
    // The stored secrets survived too: writing the masks back is accepted.
    let (status, text, _) = call(
        &app,
        Method::PUT,
        "/api/v1/mcp-servers/durable-remote",
        Some(&json!({"name": "r", "url": "https://mcp.example.com/mcp/", "headers": {"Authorization": "********"}})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn mcp_server_routes_are_in_the_openapi_document() {
    let app = TestApp::spawn().await;
    let (status, doc) = json(app.get("/openapi.json").await).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/mcp-servers", "get"),
        ("/api/v1/mcp-servers", "post"),
        ("/api/v1/mcp-servers/{server}", "get"),
        ("/api/v1/mcp-servers/{server}", "put"),
        ("/api/v1/mcp-servers/{server}", "delete"),
        ("/api/v1/mcp-servers/{server}/start", "post"),
        ("/api/v1/mcp-servers/{server}/stop", "post"),
        ("/api/v1/mcp-servers/{server}/restart", "post"),
        ("/api/v1/mcp-servers/{server}/logs", "get"),
        ("/api/v1/mcp-servers/{server}/tools", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["McpServerInputBody"]["properties"]["config"].is_object(),
        "{schemas}"
    );
    assert!(schemas["McpServerList"]["properties"]["servers"].is_object());
    assert!(schemas["McpLogs"]["properties"]["lines"].is_object());
    assert!(schemas["McpTools"]["properties"]["tools"].is_object());
}
