//! Authentication, authorisation and rate limits, attacked from outside: forged and stale
//! tokens, refresh-token reuse, role and scope escalation, agent allowlists, brute force,
//! rate limits, the development switch, and secrets in the logs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentry_test_harness::{TEST_ADMIN_PASSWORD, TEST_USER_PASSWORD, TestApp, json};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::assert_error;

const JWT_SECRET: &str = "security-tests-jwt-secret-0123456789abcdef";

async fn call(
    app: &TestApp,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    json(app.request_as(token, method, path, body).await).await
}

async fn get(app: &TestApp, token: Option<&str>, path: &str) -> (u16, Value) {
    call(app, token, Method::GET, path, None).await
}

async fn post(app: &TestApp, token: Option<&str>, path: &str, body: &Value) -> (u16, Value) {
    call(app, token, Method::POST, path, Some(body)).await
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims of a JWT, read without checking it.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn assert_openai_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    let err = &body["error"];
    assert_eq!(err["code"], want_code, "{body}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(err["type"].is_string(), "{body}");
    assert!(err.get("param").is_some(), "{body}");
}

#[tokio::test]
async fn public_routes_are_open_and_the_rest_needs_a_credential() {
    let app = TestApp::spawn().await;
    for path in ["/health", "/ready", "/openapi.json"] {
        let res = app.request_as(None, Method::GET, path, None).await;
        assert_eq!(res.status(), 200, "{path}");
    }
    assert_eq!(
        app.request_as(None, Method::GET, "/docs/", None)
            .await
            .status(),
        200
    );
    for (method, path) in [
        (Method::GET, "/api/v1/agents"),
        (Method::POST, "/api/v1/agents"),
        (Method::GET, "/v1/agents"),
        (Method::GET, "/api/v1/runs"),
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/auth/me"),
        (Method::POST, "/api/v1/auth/logout"),
        (Method::GET, "/api/v1/no-such-route"),
    ] {
        let res = app
            .request_as(None, method.clone(), path, Some(&json!({})))
            .await;
        assert_eq!(
            res.headers().get("www-authenticate").unwrap(),
            "Bearer",
            "{method} {path}"
        );
        let (status, body) = json(res).await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
    }
    // A malformed header and a garbage token.
    let res = app
        .anonymous_client()
        .get(app.url("/api/v1/agents"))
        .header("Authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = get(&app, Some("not-a-token"), "/api/v1/agents").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    // The OpenAI-compatible surface answers in OpenAI's format.
    for path in [
        "/v1/models",
        "/v1/chat/completions",
        "/api/client/v1/agents",
    ] {
        let (status, body) = get(&app, None, path).await;
        assert_openai_error(status, &body, 401, "invalid_api_key");
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    // A stale token does not block a login.
    let (status, _) = post(
        &app,
        Some("stale.token.here"),
        "/api/v1/auth/login",
        &json!({"username": "admin", "password": TEST_ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn login_me_refresh_and_logout() {
    let app = TestApp::spawn().await;
    let tokens = app.login_tokens("admin", TEST_ADMIN_PASSWORD).await;
    assert_eq!(tokens["token_type"], "bearer");
    assert!(tokens["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(tokens["user"]["username"], "admin");
    assert_eq!(tokens["user"]["role"], "admin");
    assert!(tokens["user"]["id"].as_str().unwrap().starts_with("user_"));
    assert!(tokens["user"].get("password_hash").is_none());
    let access = tokens["access_token"].as_str().unwrap();
    let claims = claims_of(access);
    for claim in ["iss", "aud", "exp", "iat", "jti", "sub", "sid"] {
        assert!(claims.get(claim).is_some(), "{claim} in {claims}");
    }
    // Usernames are case-insensitive; seed 002's /v1 alias works.
    let (status, again) = post(
        &app,
        None,
        "/v1/auth/login",
        &json!({"username": "ADMIN", "password": TEST_ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{again}");

    let (status, me) = get(&app, Some(access), "/api/v1/auth/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["type"].as_str(), me["username"].as_str()),
        (Some("user"), Some("admin"))
    );
    let (status, _) = get(&app, Some(access), "/v1/auth/me").await;
    assert_eq!(status, 200);

    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, next) = post(
        &app,
        None,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(status, 200, "{next}");
    assert_ne!(next["refresh_token"], refresh, "rotated");
    let next_access = next["access_token"].as_str().unwrap();
    assert_eq!(get(&app, Some(next_access), "/api/v1/agents").await.0, 200);

    let (status, out) = post(&app, Some(next_access), "/api/v1/auth/logout", &json!({})).await;
    assert_eq!(
        (status, out["success"].as_bool()),
        (200, Some(true)),
        "{out}"
    );
    // The access tokens of the session stop working at once, the refresh token too.
    for token in [access, next_access] {
        let (status, body) = get(&app, Some(token), "/api/v1/agents").await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
    }
    let (status, body) = post(
        &app,
        None,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": next["refresh_token"]}),
    )
    .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    // The other login's session is untouched.
    let (status, _) = get(&app, again["access_token"].as_str(), "/api/v1/agents").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn logout_holds_on_every_replica() {
    // Two servers on one database, like two replicas behind a load balancer.
    let app = TestApp::spawn().await;
    let token = app.login("admin", TEST_ADMIN_PASSWORD).await;
    let replica = app.restart().await.unwrap();
    assert_eq!(
        get(&replica, Some(&token), "/api/v1/agents").await.0,
        200,
        "the signing key is shared"
    );
    let (status, _) = post(&replica, Some(&token), "/api/v1/auth/logout", &json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = get(&replica, Some(&token), "/api/v1/agents").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn refresh_token_reuse_revokes_the_whole_family() {
    let app = TestApp::spawn().await;
    let first = app.login_tokens("admin", TEST_ADMIN_PASSWORD).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let (status, second) = post(
        &app,
        None,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": r1}),
    )
    .await;
    assert_eq!(status, 200);
    let r2 = second["refresh_token"].as_str().unwrap();
    let a2 = second["access_token"].as_str().unwrap();
    assert_eq!(get(&app, Some(a2), "/api/v1/agents").await.0, 200);

    // An attacker replays the first (already used) refresh token.
    let (status, body) = post(
        &app,
        None,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": r1}),
    )
    .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    // The whole family is gone: the newest refresh token and the live access token too.
    let (status, body) = post(
        &app,
        None,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": r2}),
    )
    .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = get(&app, Some(a2), "/api/v1/agents").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    // Unknown and malformed tokens.
    for bad in [
        json!({"refresh_token": "nope"}),
        json!({"refresh_token": ""}),
    ] {
        let (status, body) = post(&app, None, "/api/v1/auth/refresh", &bad).await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
    }
    let (status, body) = post(&app, None, "/api/v1/auth/refresh", &json!({})).await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn forged_and_stale_access_tokens_are_refused() {
    let app = TestApp::builder()
        .configure(|c| c.jwt_secret = Some(JWT_SECRET.to_owned().into()))
        .spawn()
        .await;
    let token = app.admin_token();
    let claims = claims_of(&token);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        change(&mut c);
        c
    };
    // Sanity: a token we sign with the right key and claims works, so the refusals below are
    // about the one thing each changes.
    let fresh = sign(&with(&|c| c["exp"] = json!(now() + 600)), JWT_SECRET);
    assert_eq!(get(&app, Some(&fresh), "/api/v1/agents").await.0, 200);

    let header_none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut tampered: Vec<char> = token.chars().collect();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == 'A' { 'B' } else { 'A' };
    let payload_swapped = {
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            with(&|c| c["sub"] = json!("user_00000000000000000000000000000000")).to_string(),
        );
        format!("{}.{forged}.{}", parts[0], parts[2])
    };
    let cases = [
        ("alg none", format!("{header_none}.{body}.")),
        ("alg none, no signature", format!("{header_none}.{body}")),
        ("tampered signature", tampered.into_iter().collect()),
        ("payload swapped", payload_swapped),
        (
            "expired",
            sign(&with(&|c| c["exp"] = json!(now() - 3600)), JWT_SECRET),
        ),
        (
            "wrong issuer",
            sign(&with(&|c| c["iss"] = json!("someone-else")), JWT_SECRET),
        ),
        (
            "wrong audience",
            sign(&with(&|c| c["aud"] = json!("another-api")), JWT_SECRET),
        ),
        (
            "no expiry",
            sign(
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
                JWT_SECRET,
            ),
        ),
        (
            "wrong key",
            sign(&claims, "another-secret-another-secret-another-secret"),
        ),
        (
            "unknown session",
            sign(&with(&|c| c["sid"] = json!("ses_forged")), JWT_SECRET),
        ),
        (
            "HS512",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS512),
                &claims,
                &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
            )
            .unwrap(),
        ),
    ];
    for (what, forged) in cases {
        let (status, body) = get(&app, Some(&forged), "/api/v1/agents").await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_error(status, &body, 401, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn failed_logins_do_not_tell_and_are_slowed_down() {
    let app = TestApp::spawn().await;
    app.create_user("victim", "editor").await;
    let attempt = |username: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let res = app
                .request_as(
                    None,
                    Method::POST,
                    "/api/v1/auth/login",
                    Some(&json!({"username": username, "password": password})),
                )
                .await;
            let retry = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let (status, body) = json(res).await;
            (status, body, retry)
        }
    };
    let (s1, wrong_password, _) = attempt("victim", "not-the-password").await;
    let (s2, unknown_user, _) = attempt("nobody-here", "not-the-password").await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(
        wrong_password["error"]["message"], unknown_user["error"]["message"],
        "an unknown user and a wrong password look the same"
    );
    for _ in 0..4 {
        let (status, _, _) = attempt("victim", "not-the-password").await;
        assert_eq!(status, 401);
    }
    // Five failures: even the right password must now wait.
    let (status, body, retry) = attempt("victim", TEST_USER_PASSWORD).await;
    let err = assert_error(status, &body, 429, "RATE_LIMITED");
    let secs = err["details"]["retry_after_seconds"].as_u64().unwrap();
    assert!(secs >= 1, "{body}");
    assert_eq!(retry.unwrap(), secs.to_string());
    // Other users are not locked out by it.
    let (status, _, _) = attempt("admin", TEST_ADMIN_PASSWORD).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn roles_cannot_escalate() {
    let app = TestApp::spawn().await;
    app.post("/api/v1/agents", &json!({"name": "Bot"})).await;
    let (viewer_id, pw) = app.create_user("vera", "viewer").await;
    let viewer = app.login("vera", &pw).await;
    let (_, pw) = app.create_user("ed", "editor").await;
    let editor = app.login("ed", &pw).await;
    let v = Some(viewer.as_str());
    let e = Some(editor.as_str());

    // Viewers read, and nothing else.
    assert_eq!(get(&app, v, "/api/v1/agents").await.0, 200);
    assert_eq!(get(&app, v, "/api/v1/agents/bot/chat/history").await.0, 200);
    assert_eq!(get(&app, v, "/api/v1/providers").await.0, 200);
    for (method, path, body) in [
        (Method::POST, "/api/v1/agents", json!({"name": "Mine"})),
        (
            Method::PATCH,
            "/api/v1/agents/bot",
            json!({"description": "x"}),
        ),
        (Method::DELETE, "/api/v1/agents/bot", json!({})),
        (
            Method::POST,
            "/api/v1/agents/bot/chat",
            json!({"message": "hi"}),
        ),
        (
            Method::POST,
            "/api/v1/agents/bot/stream",
            json!({"message": "hi"}),
        ),
        (
            Method::POST,
            "/api/v1/runs",
            json!({"prompt": "hi", "model": "mock/echo"}),
        ),
        (
            Method::PATCH,
            &format!("/api/v1/users/{viewer_id}"),
            json!({"role": "admin"}),
        ),
        (Method::GET, "/api/v1/users", json!({})),
        (
            Method::POST,
            "/api/v1/api-keys",
            json!({"name": "k", "scopes": ["admin"]}),
        ),
    ] {
        let (status, body) = call(&app, v, method, path, Some(&body)).await;
        assert_error(status, &body, 403, "FORBIDDEN");
    }
    // Spelling a path differently does not dodge the table.
    for path in [
        "/api/v1/%75sers",
        "/v1/%75sers",
        "/api/v1/users/",
        "/api/v1/api%2Dkeys",
    ] {
        let (status, body) = get(&app, v, path).await;
        assert!(status == 403 || status == 404, "{path}: {status} {body}");
        assert_ne!(status, 200, "{path}");
    }

    // Editors write and call agents, but do not manage users, keys or providers.
    let (status, agent) = post(&app, e, "/api/v1/agents", &json!({"name": "Editor Bot"})).await;
    assert_eq!(status, 201, "{agent}");
    let (_, me) = get(&app, e, "/api/v1/auth/me").await;
    assert_eq!(agent["created_by"], me["id"], "the creator is recorded");
    assert_eq!(
        post(
            &app,
            e,
            "/api/v1/agents/bot/chat",
            &json!({"message": "hi"})
        )
        .await
        .0,
        200
    );
    for (method, path, body) in [
        (Method::GET, "/api/v1/users", json!({})),
        (
            Method::POST,
            "/api/v1/users",
            json!({"username": "x", "password": "12345678", "role": "admin"}),
        ),
        (
            Method::PATCH,
            &format!("/api/v1/users/{viewer_id}"),
            json!({"role": "editor"}),
        ),
        (Method::GET, "/api/v1/api-keys", json!({})),
        (
            Method::POST,
            "/api/v1/api-keys",
            json!({"name": "k", "scopes": ["read"]}),
        ),
        (
            Method::POST,
            "/api/v1/providers",
            json!({"id": "p", "kind": "mock"}),
        ),
        (Method::DELETE, "/v1/providers/mock", json!({})),
    ] {
        let (status, body) = call(&app, e, method, path, Some(&body)).await;
        assert_error(status, &body, 403, "FORBIDDEN");
    }
    // A user whose role is lowered loses the rights at once (the stored role counts).
    let res = app
        .patch("/api/v1/users/ed", &json!({"role": "viewer"}))
        .await;
    assert_eq!(res.status(), 200);
    let (status, body) = post(&app, e, "/api/v1/agents", &json!({"name": "Too late"})).await;
    assert_error(status, &body, 403, "FORBIDDEN");
}

#[tokio::test]
async fn api_key_scopes_are_enforced() {
    let app = TestApp::spawn().await;
    app.post("/api/v1/agents", &json!({"name": "Bot"})).await;
    let read = app.create_api_key(&["read"], None).await;
    let invoke = app.create_api_key(&["invoke"], None).await;
    let write = app.create_api_key(&["write"], None).await;
    let admin = app.create_api_key(&["admin"], None).await;
    assert!(read.starts_with("agk_") && read.len() > 40, "{read}");

    let r = Some(read.as_str());
    assert_eq!(get(&app, r, "/api/v1/agents").await.0, 200);
    let (status, body) = post(&app, r, "/api/v1/agents", &json!({"name": "X"})).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = post(
        &app,
        r,
        "/api/v1/agents/bot/chat",
        &json!({"message": "hi"}),
    )
    .await;
    assert_error(status, &body, 403, "FORBIDDEN");

    let i = Some(invoke.as_str());
    assert_eq!(
        post(
            &app,
            i,
            "/api/v1/agents/bot/chat",
            &json!({"message": "hi"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            &app,
            i,
            "/api/v1/runs",
            &json!({"prompt": "hi", "model": "mock/echo"})
        )
        .await
        .0,
        200
    );
    for (method, path, body) in [
        (Method::GET, "/api/v1/agents", json!({})),
        (Method::POST, "/api/v1/agents", json!({"name": "X"})),
        (Method::GET, "/api/v1/users", json!({})),
        (
            Method::POST,
            "/api/v1/api-keys",
            json!({"name": "k", "scopes": ["admin"]}),
        ),
        (
            Method::POST,
            "/api/v1/providers",
            json!({"id": "p", "kind": "mock"}),
        ),
    ] {
        let (status, body) = call(&app, i, method, path, Some(&body)).await;
        assert_error(status, &body, 403, "FORBIDDEN");
    }
    // On the OpenAI surface a refusal is in OpenAI's format.
    let (status, body) = get(&app, r, "/v1/models").await;
    assert_openai_error(status, &body, 403, "permission_denied");

    let w = Some(write.as_str());
    let (status, agent) = post(&app, w, "/api/v1/agents", &json!({"name": "Key Bot"})).await;
    assert_eq!(status, 201, "{agent}");
    let key_id = agent["created_by"].as_str().unwrap();
    assert!(key_id.starts_with("key:key_"), "{agent}");
    let (status, body) = get(&app, w, "/api/v1/users").await;
    assert_error(status, &body, 403, "FORBIDDEN");

    let a = Some(admin.as_str());
    assert_eq!(get(&app, a, "/api/v1/users").await.0, 200);
    let (status, me) = get(&app, a, "/api/v1/auth/me").await;
    assert_eq!(
        (status, me["type"].as_str()),
        (200, Some("api_key")),
        "{me}"
    );
    assert_eq!(me["scopes"], json!(["admin"]));
    // A key is not a session: it cannot log out (it is revoked instead).
    let (status, body) = post(&app, a, "/api/v1/auth/logout", &json!({})).await;
    assert_error(status, &body, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_by_prefix_and_revocable() {
    let app = TestApp::spawn().await;
    let (status, created) = json(
        app.post(
            "/api/v1/api-keys",
            &json!({"name": "widget", "scopes": ["invoke", "read"], "agents": ["bot"], "rate_limit_per_minute": 50}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["prefix"], format!("agk_{}", &secret[4..12]));
    assert_eq!(created["scopes"], json!(["read", "invoke"]));
    assert_eq!(created["agents"], json!(["bot"]));
    assert_eq!(created["status"], "active");

    let res = app.get("/api/v1/api-keys").await;
    let text = res.text().await.unwrap();
    assert!(!text.contains(&secret), "lists never show the secret");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["total"], 1);
    assert!(list["api_keys"][0].get("key").is_none());
    assert_eq!(list["api_keys"][0]["prefix"], created["prefix"]);
    let (status, one) = json(app.get(&format!("/api/v1/api-keys/{id}")).await).await;
    assert_eq!(status, 200);
    assert!(one.get("key").is_none() && !one.to_string().contains(&secret));

    // Using it records last_used_at.
    assert_eq!(get(&app, Some(&secret), "/api/v1/agents").await.0, 200);
    let (_, one) = json(app.get(&format!("/api/v1/api-keys/{id}")).await).await;
    assert!(one["last_used_at"].is_string(), "{one}");

    let (status, revoked) = json(app.delete(&format!("/api/v1/api-keys/{id}")).await).await;
    assert_eq!((status, revoked["revoked"].as_bool()), (200, Some(true)));
    let (status, body) = get(&app, Some(&secret), "/api/v1/agents").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, again) = json(app.delete(&format!("/api/v1/api-keys/{id}")).await).await;
    assert_eq!((status, again["revoked"].as_bool()), (200, Some(false)));
    let (_, one) = json(app.get(&format!("/api/v1/api-keys/{id}")).await).await;
    assert_eq!(one["status"], "revoked");

    // Bad input.
    for (body, field) in [
        (json!({"name": "k", "scopes": []}), "scopes"),
        (json!({"name": "k", "scopes": ["root"]}), "scopes"),
        (json!({"name": "", "scopes": ["read"]}), "name"),
        (
            json!({"name": "k", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "k", "scopes": ["read"], "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"name": "k", "scopes": ["read"], "agents": ["Not A Key"]}),
            "agents",
        ),
        (
            json!({"name": "k", "scopes": ["read"], "agents": []}),
            "agents",
        ),
    ] {
        let (status, err) = json(app.post("/api/v1/api-keys", &body).await).await;
        let e = assert_error(status, &err, 400, "VALIDATION_ERROR");
        assert_eq!(e["details"]["field"], field, "{err}");
    }
    let (status, err) = json(app.get("/api/v1/api-keys/key_nope").await).await;
    assert_error(status, &err, 404, "NOT_FOUND");
}

#[tokio::test]
async fn expired_keys_stop_working() {
    let app = TestApp::spawn().await;
    let soon = SystemTime::now() + Duration::from_secs(2);
    let secs = soon.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let expires = chrono_like_rfc3339(secs);
    let (status, created) = json(
        app.post(
            "/api/v1/api-keys",
            &json!({"name": "short-lived", "scopes": ["read"], "expires_at": expires}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap();
    assert_eq!(get(&app, Some(key), "/api/v1/agents").await.0, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, body) = get(&app, Some(key), "/api/v1/agents").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
}

/// `secs` since the epoch as RFC 3339 UTC (no chrono in this crate).
fn chrono_like_rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[tokio::test]
async fn agent_allowlists_are_enforced() {
    let app = TestApp::spawn().await;
    app.post("/api/v1/agents", &json!({"name": "Support Bot"}))
        .await;
    let (_, other) = json(
        app.post("/api/v1/agents", &json!({"name": "Other Bot"}))
            .await,
    )
    .await;
    let limited = app
        .create_api_key(&["invoke"], Some(&["support-bot"]))
        .await;
    let k = Some(limited.as_str());
    let (status, reply) = post(
        &app,
        k,
        "/api/v1/agents/support-bot/chat",
        &json!({"message": "hi"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    for path in [
        "/api/v1/agents/other-bot/chat".to_owned(),
        "/api/v1/agents/other-bot/stream".to_owned(),
        format!("/v1/agents/{}/chat", other["id"].as_str().unwrap()),
    ] {
        let (status, body) = post(&app, k, &path, &json!({"message": "hi"})).await;
        assert_error(status, &body, 403, "FORBIDDEN");
    }
    // One-shot runs have no agent: a key limited to agents cannot use them.
    let (status, body) = post(
        &app,
        k,
        "/api/v1/runs",
        &json!({"prompt": "hi", "model": "mock/echo"}),
    )
    .await;
    assert_error(status, &body, 403, "FORBIDDEN");
    // Unlimited keys call any agent.
    let any = app.create_api_key(&["invoke"], None).await;
    assert_eq!(
        post(
            &app,
            Some(&any),
            "/api/v1/agents/other-bot/chat",
            &json!({"message": "hi"})
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn non_admins_cannot_reach_other_users_or_their_keys() {
    let app = TestApp::spawn().await;
    let (status, created) = json(
        app.post(
            "/api/v1/api-keys",
            &json!({"name": "admin's", "scopes": ["read"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();
    let secret = created["key"].as_str().unwrap();
    let (admin_id, _) = {
        let (_, me) = json(app.get("/api/v1/auth/me").await).await;
        (me["id"].as_str().unwrap().to_owned(), ())
    };
    let (_, pw) = app.create_user("eve", "editor").await;
    let eve = app.login("eve", &pw).await;
    let e = Some(eve.as_str());
    for (method, path) in [
        (Method::GET, format!("/api/v1/api-keys/{id}")),
        (Method::DELETE, format!("/api/v1/api-keys/{id}")),
        (Method::GET, "/api/v1/api-keys".to_owned()),
        (Method::GET, "/api/v1/users".to_owned()),
        (Method::GET, format!("/api/v1/users/{admin_id}")),
        (Method::PATCH, format!("/api/v1/users/{admin_id}")),
        (Method::DELETE, format!("/api/v1/users/{admin_id}")),
    ] {
        let (status, body) = call(
            &app,
            e,
            method,
            &path,
            Some(&json!({"password": "hijacked-password"})),
        )
        .await;
        assert_error(status, &body, 403, "FORBIDDEN");
    }
    // Nothing happened to the key or the admin.
    assert_eq!(get(&app, Some(secret), "/api/v1/agents").await.0, 200);
    app.login("admin", TEST_ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn users_are_managed_by_admins() {
    let app = TestApp::spawn().await;
    let (status, user) = json(
        app.post(
            "/api/v1/users",
            &json!({"username": "Alice", "password": "alice-password", "email": "alice@example.com", "role": "editor"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["username"], "alice");
    assert!(!user.to_string().contains("alice-password") && user.get("password_hash").is_none());
    let id = user["id"].as_str().unwrap().to_owned();
    let (status, dup) = json(
        app.post(
            "/api/v1/users",
            &json!({"username": "ALICE", "password": "another-password"}),
        )
        .await,
    )
    .await;
    let e = assert_error(status, &dup, 409, "CONFLICT");
    assert_eq!(e["details"]["field"], "username");
    for (body, field) in [
        (json!({"username": "bob", "password": "short"}), "password"),
        (
            json!({"username": "b o b", "password": "long-enough"}),
            "username",
        ),
        (
            json!({"username": "bob", "password": "long-enough", "role": "root"}),
            "role",
        ),
        (
            json!({"username": "bob", "password": "long-enough", "email": "nope"}),
            "email",
        ),
    ] {
        let (status, err) = json(app.post("/api/v1/users", &body).await).await;
        let e = assert_error(status, &err, 400, "VALIDATION_ERROR");
        assert_eq!(e["details"]["field"], field);
    }
    let (status, list) = json(app.get("/api/v1/users?limit=10").await).await;
    assert_eq!((status, list["total"].as_u64()), (200, Some(2)));
    assert!(!list.to_string().contains("argon2"), "no hashes: {list}");
    let (status, by_name) = json(app.get("/api/v1/users/alice").await).await;
    assert_eq!((status, by_name["id"].as_str()), (200, Some(id.as_str())));

    // A new password ends the user's sessions.
    let alice = app.login("alice", "alice-password").await;
    let (status, changed) = json(
        app.patch(
            &format!("/api/v1/users/{id}"),
            &json!({"password": "new-alice-password", "email": null, "role": "viewer"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["role"].as_str(), changed["email"].is_null()),
        (Some("viewer"), true)
    );
    let (status, body) = get(&app, Some(&alice), "/api/v1/agents").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    app.login("alice", "new-alice-password").await;

    // The last admin can be neither demoted nor deleted.
    let (status, body) = json(
        app.patch("/api/v1/users/admin", &json!({"role": "editor"}))
            .await,
    )
    .await;
    assert_error(status, &body, 409, "CONFLICT");
    let (status, body) = json(app.delete("/api/v1/users/admin").await).await;
    assert_error(status, &body, 409, "CONFLICT");

    let (status, deleted) = json(app.delete(&format!("/api/v1/users/{id}")).await).await;
    assert_eq!((status, deleted["deleted"].as_bool()), (200, Some(true)));
    let (status, _) = json(app.get(&format!("/api/v1/users/{id}")).await).await;
    assert_eq!(status, 404);
    let (status, deleted) = json(app.delete(&format!("/api/v1/users/{id}")).await).await;
    assert_eq!((status, deleted["deleted"].as_bool()), (200, Some(false)));
}

#[tokio::test]
async fn deleting_a_user_ends_its_sessions_and_keys() {
    let app = TestApp::spawn().await;
    let (id, pw) = app.create_user("temp-admin", "admin").await;
    let token = app.login("temp-admin", &pw).await;
    let (status, created) = post(
        &app,
        Some(&token),
        "/api/v1/api-keys",
        &json!({"name": "k", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(status, 201);
    let key = created["key"].as_str().unwrap();
    assert_eq!(get(&app, Some(key), "/api/v1/agents").await.0, 200);
    assert_eq!(
        app.delete(&format!("/api/v1/users/{id}")).await.status(),
        200
    );
    for credential in [token.as_str(), key] {
        let (status, body) = get(&app, Some(credential), "/api/v1/agents").await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn rate_limits_send_headers_and_refuse_with_429() {
    let app = TestApp::builder()
        .configure(|c| {
            c.rate_limit_per_minute = 3;
            c.rate_limit_burst = 3;
        })
        .spawn()
        .await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let res = app.get("/api/v1/agents").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers().get("x-ratelimit-limit").unwrap(), "3");
        assert!(res.headers().get("x-ratelimit-reset").is_some());
        remaining.push(
            res.headers()
                .get("x-ratelimit-remaining")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let res = app.get("/api/v1/agents").await;
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, body) = json(res).await;
    let err = assert_error(status, &body, 429, "RATE_LIMITED");
    assert_eq!(err["details"]["retry_after_seconds"], retry);
    assert!((1..=20).contains(&retry), "{retry}");
    let res = app.get("/api/v1/agents").await;
    assert_eq!(res.headers().get("x-ratelimit-remaining").unwrap(), "0");
    assert_eq!(res.headers().get("x-ratelimit-limit").unwrap(), "3");
    assert_eq!(err["details"]["limit"], "3 requests per minute");
    // The OpenAI surface answers in its own format.
    let (status, body) = json(app.get("/v1/models").await).await;
    assert_openai_error(status, &body, 429, "rate_limit_exceeded");
    // Health, readiness and metrics are exempt.
    for _ in 0..10 {
        let res = app.get("/health").await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("x-ratelimit-limit").is_none());
        assert_eq!(app.get("/ready").await.status(), 200);
    }
    // Each client has its own budget: anonymous callers count by address, so a login works…
    let (status, tokens) = post(
        &app,
        None,
        "/api/v1/auth/login",
        &json!({"username": "admin", "password": TEST_ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    // …but a user's budget is per user, whatever the session.
    let (status, body) = get(&app, tokens["access_token"].as_str(), "/api/v1/agents").await;
    assert_error(status, &body, 429, "RATE_LIMITED");
}

#[tokio::test]
async fn api_keys_can_have_their_own_rate() {
    let app = TestApp::spawn().await;
    let (status, created) = json(
        app.post(
            "/api/v1/api-keys",
            &json!({"name": "slow", "scopes": ["read"], "rate_limit_per_minute": 2}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let key = created["key"].as_str().unwrap();
    for _ in 0..2 {
        let res = app
            .request_as(Some(key), Method::GET, "/api/v1/agents", None)
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers().get("x-ratelimit-limit").unwrap(), "2");
    }
    let (status, body) = get(&app, Some(key), "/api/v1/agents").await;
    let err = assert_error(status, &body, 429, "RATE_LIMITED");
    assert_eq!(err["details"]["limit"], "2 requests per minute");
    // The admin's own budget is untouched.
    assert_eq!(app.get("/api/v1/agents").await.status(), 200);
}

#[tokio::test]
async fn requests_in_flight_are_limited_per_client() {
    let app = TestApp::builder()
        .provider("slowp", "mock", None, &[])
        .configure(|c| c.rate_limit_concurrency = 1)
        .spawn()
        .await;
    let slow = json!({"prompt": "hi", "model": "slowp/slow-1500"});
    let (first, second) = tokio::join!(app.post("/api/v1/runs", &slow), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.get("/api/v1/agents").await
    });
    assert_eq!(first.status(), 200);
    let (status, body) = json(second).await;
    let err = assert_error(status, &body, 429, "RATE_LIMITED");
    assert_eq!(err["details"]["limit"], "1 concurrent requests");
    assert_eq!(app.get("/api/v1/agents").await.status(), 200, "free again");
}

#[tokio::test]
async fn auth_disabled_is_for_loopback_only() {
    let refused = TestApp::builder()
        .configure(|c| {
            c.auth_disabled = true;
            c.addr = "0.0.0.0:0".parse().unwrap();
        })
        .try_spawn()
        .await;
    let err = refused.err().expect("must refuse to start").to_string();
    assert!(
        err.contains("auth_disabled") && err.contains("loopback"),
        "{err}"
    );

    let app = TestApp::builder()
        .configure(|c| c.auth_disabled = true)
        .spawn()
        .await;
    let (status, me) = get(&app, None, "/api/v1/auth/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["id"].as_str(), me["role"].as_str()),
        (Some("anonymous-dev"), Some("admin"))
    );
    let (status, agent) = post(&app, None, "/api/v1/agents", &json!({"name": "Dev Bot"})).await;
    assert_eq!(status, 201);
    assert_eq!(agent["created_by"], "anonymous-dev");
    assert_eq!(get(&app, None, "/api/v1/users").await.0, 200);
}

#[tokio::test]
async fn the_openapi_document_describes_auth() {
    let app = TestApp::spawn().await;
    let (_, doc) = json(app.get("/openapi.json").await).await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/me", "get"),
        ("/api/v1/users", "get"),
        ("/api/v1/users", "post"),
        ("/api/v1/users/{user}", "patch"),
        ("/api/v1/users/{user}", "delete"),
        ("/api/v1/api-keys", "post"),
        ("/api/v1/api-keys", "get"),
        ("/api/v1/api-keys/{id}", "get"),
        ("/api/v1/api-keys/{id}", "delete"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path}"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["security"].is_array(), "a default security requirement");
    assert_eq!(
        doc["paths"]["/api/v1/auth/login"]["post"]["security"],
        json!([{}]),
        "login is public"
    );
}

#[tokio::test]
async fn logs_never_contain_secrets() {
    let Some(logs) = agentry_test_harness::capture_logs() else {
        panic!("another subscriber was installed first");
    };
    let provider_key = "sk-provider-secret-4242424242";
    let wrong_password = "wrong-password-31337";
    let app = TestApp::builder()
        .configure(|c| c.jwt_secret = Some(JWT_SECRET.to_owned().into()))
        .spawn()
        .await;
    let (_, user_pw) = app.create_user("logged", "editor").await;
    let tokens = app.login_tokens("logged", &user_pw).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (_, next) = post(
        &app,
        None,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": refresh}),
    )
    .await;
    let next_refresh = next["refresh_token"].as_str().unwrap().to_owned();
    // Reuse (logged as a warning, without the token), failed logins, a provider key, a key.
    post(
        &app,
        None,
        "/api/v1/auth/refresh",
        &json!({"refresh_token": refresh}),
    )
    .await;
    post(
        &app,
        None,
        "/api/v1/auth/login",
        &json!({"username": "logged", "password": wrong_password}),
    )
    .await;
    post(
        &app,
        None,
        "/api/v1/auth/login",
        &json!({"username": wrong_password, "password": wrong_password}),
    )
    .await;
    let (status, _) = json(
        app.post(
            "/api/v1/providers",
            &json!({"id": "leaky", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": provider_key, "models": ["m"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let key = app.create_api_key(&["invoke", "read"], None).await;
    get(&app, Some(&key), "/api/v1/agents").await;
    get(&app, Some(&access), "/api/v1/agents").await;
    get(&app, Some("agk_wrong-key-value-123456"), "/api/v1/agents").await;
    // A failing provider call (the upstream is not there).
    app.post(
        "/api/v1/agents",
        &json!({"name": "Leaky", "model": "leaky/m"}),
    )
    .await;
    app.post("/api/v1/agents/leaky/chat", &json!({"message": "hi"}))
        .await;
    drop(app);

    let text = logs.contents();
    assert!(
        text.contains("login succeeded"),
        "the logs were captured: {text}"
    );
    assert!(text.contains("login failed"));
    for (what, secret) in [
        ("admin password", TEST_ADMIN_PASSWORD),
        ("user password", user_pw.as_str()),
        ("wrong password", wrong_password),
        ("access token", access.as_str()),
        ("access token signature", access.rsplit('.').next().unwrap()),
        ("refresh token", refresh.as_str()),
        ("rotated refresh token", next_refresh.as_str()),
        ("API key", key.as_str()),
        ("API key body", &key[4..]),
        ("provider key", provider_key),
        ("JWT signing key", JWT_SECRET),
    ] {
        assert!(!text.contains(secret), "the {what} appears in the logs");
    }
}

#[tokio::test]
async fn allowlists_and_owners_hold_on_reads_continuations_and_deletes() {
    let app = TestApp::spawn().await;
    for name in ["Agent A", "Agent B"] {
        let (status, body) = json(app.post("/api/v1/agents", &json!({"name": name})).await).await;
        assert_eq!(status, 201, "{body}");
    }
    let key_a = app.create_api_key(&["invoke"], Some(&["agent-a"])).await;
    let key_a2 = app.create_api_key(&["invoke"], Some(&["agent-a"])).await;
    let key_b = app.create_api_key(&["invoke"], Some(&["agent-b"])).await;
    let key_b2 = app.create_api_key(&["invoke"], Some(&["agent-b"])).await;
    let reader_a = app.create_api_key(&["read"], Some(&["agent-a"])).await;
    let (status, r) = post(
        &app,
        Some(&key_b),
        "/v1/responses",
        &json!({"model": "agent-b", "input": "the secret of b"}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let id_b = r["id"].as_str().unwrap().to_owned();
    let (status, r) = post(
        &app,
        Some(&key_a),
        "/api/v1/agents/agent-a/chat",
        &json!({"message": "hello a", "session_id": "shared"}),
    )
    .await;
    assert_eq!(status, 200, "{r}");

    // Another agent's key, and another key of the same agent, see nothing of b's response.
    for key in [&key_a, &key_b2] {
        for path in [
            format!("/v1/responses/{id_b}"),
            format!("/v1/responses/{id_b}/input_items"),
        ] {
            let (status, body) = get(&app, Some(key), &path).await;
            assert_openai_error(status, &body, 404, "not_found");
        }
        let (status, body) = call(
            &app,
            Some(key),
            Method::DELETE,
            &format!("/v1/responses/{id_b}"),
            None,
        )
        .await;
        assert_openai_error(status, &body, 404, "not_found");
    }
    let (status, body) = post(
        &app,
        Some(&key_b2),
        "/v1/responses",
        &json!({"model": "agent-b", "input": "and?", "previous_response_id": id_b}),
    )
    .await;
    assert_eq!(status, 404, "not continued by another key: {body}");
    // Its owner and an admin still read it: nothing was deleted.
    let (status, body) = get(&app, Some(&key_b), &format!("/v1/responses/{id_b}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("the secret of b"), "{body}");
    let (status, _) = json(app.get(&format!("/v1/responses/{id_b}")).await).await;
    assert_eq!(status, 200);

    // The allowlist holds on the management API's reads too.
    let (status, list) = get(&app, Some(&reader_a), "/api/v1/agents").await;
    assert_eq!(status, 200, "{list}");
    let keys: Vec<&str> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert_eq!((keys, list["total"].as_u64()), (vec!["agent-a"], Some(1)));
    let (_, convs) = json(app.get("/api/v1/conversations?agent_id=agent-b").await).await;
    let conv_b = convs["conversations"][0]["id"].as_str().unwrap().to_owned();
    for path in [
        "/api/v1/agents/agent-b".to_owned(),
        "/api/v1/agents/agent-b/chat/history".to_owned(),
        format!("/api/v1/conversations/{conv_b}"),
        "/api/v1/conversations?agent_id=agent-b".to_owned(),
    ] {
        let (status, body) = get(&app, Some(&reader_a), &path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(
            body["error"]["code"]
                .as_str()
                .is_some_and(|c| c.ends_with("NOT_FOUND")),
            "{path}: {body}"
        );
    }
    let (status, convs) = get(&app, Some(&reader_a), "/api/v1/conversations").await;
    assert_eq!(status, 200, "{convs}");
    assert_eq!(convs["total"], 1, "only agent-a's conversation: {convs}");
    // …and on the client API's agents.
    let (status, agents) = get(&app, Some(&key_a), "/api/client/v1/agents").await;
    assert_eq!(status, 200, "{agents}");
    assert_eq!(agents["agents"].as_array().unwrap().len(), 1, "{agents}");
    assert_eq!(agents["agents"][0]["key"], "agent-a", "{agents}");
    let (status, body) = get(&app, Some(&key_a), "/api/client/v1/agents/agent-b").await;
    assert_openai_error(status, &body, 404, "agent_not_found");

    // A session id in use by another invoke-only key is not joined.
    let (status, body) = post(
        &app,
        Some(&key_a2),
        "/api/v1/agents/agent-a/chat",
        &json!({"message": "let me in", "session_id": "shared"}),
    )
    .await;
    assert_error(status, &body, 409, "CONFLICT");
    let (status, _) = post(
        &app,
        Some(&key_a),
        "/api/v1/agents/agent-a/chat",
        &json!({"message": "still mine", "session_id": "shared"}),
    )
    .await;
    assert_eq!(status, 200);
}

/// Issue 18, item 5: a key's per-minute limit holds for the deployment, not per replica.
/// Two replicas on one PostgreSQL database, a key limited to 60 a minute (bursts of 60, so
/// each replica alone would admit all 60), 40 requests a second spread over both for 4 s:
/// about 60 succeed (the documented bound: what the other replica admits in one sync
/// interval, here 100 ms, on top), where separate counters would admit 120.
#[tokio::test]
async fn a_keys_limit_holds_across_replicas() {
    let Some(app) = crate::postgres_app(|c| {
        c.rate_limit_burst = 60;
        c.rate_limit_sync_ms = 100;
    })
    .await
    else {
        return;
    };
    let replica = app.replica().await.unwrap();
    let (status, created) = json(
        app.post(
            "/api/v1/api-keys",
            &json!({"name": "shared", "scopes": ["read"], "rate_limit_per_minute": 60}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let key = created["key"].as_str().unwrap().to_owned();
    // Stay inside one minute window.
    let second = chrono::Utc::now().timestamp() % 60;
    if second > 50 {
        tokio::time::sleep(Duration::from_secs(u64::try_from(61 - second).unwrap())).await;
    }
    let mut ok = 0;
    let mut limited = 0;
    for n in 0..160 {
        let on = if n % 2 == 0 { &app } else { &replica };
        let res = on
            .request_as(Some(&key), Method::GET, "/api/v1/agents", None)
            .await;
        match res.status().as_u16() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected {other}"),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eprintln!("admitted {ok} of 160 (limit 60 a minute over two replicas)");
    assert!(
        (60..=75).contains(&ok),
        "{ok} admitted, {limited} refused: the limit holds for the deployment"
    );
}
