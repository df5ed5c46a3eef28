//! Providers as data: write-only keys, config providers read-only, references checked.

use agentry_test_harness::{TestApp, json};
use serde_json::json;

use crate::{assert_error, create};

#[tokio::test]
async fn providers_crud_never_returns_the_key() {
    let app = TestApp::spawn().await;
    let (status, list) = json(app.get("/api/v1/providers").await).await;
    assert_eq!(status, 200);
    assert_eq!(list["providers"][0]["id"], "mock");
    assert_eq!(list["providers"][0]["models"], json!(["echo"]));
    assert_eq!(list["providers"][0]["source"], "builtin");

    let body = json!({"id":"local","kind":"openai","base_url":"http://127.0.0.1:9000/v1","api_key":"sk-very-secret","models":["m1"]});
    let res = app.post("/api/v1/providers", &body).await;
    let text = res.text().await.unwrap();
    assert!(
        !text.contains("sk-very-secret"),
        "the key is never returned: {text}"
    );
    let created: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["api_key_set"], true);
    assert_eq!(created["source"], "api");

    for path in ["/api/v1/providers", "/api/v1/providers/local"] {
        let text = app.get(path).await.text().await.unwrap();
        assert!(!text.contains("sk-very-secret"), "{path}: {text}");
        assert!(text.contains("\"local\""), "{text}");
    }

    let (status, dup) = json(app.post("/api/v1/providers", &body).await).await;
    assert_eq!(
        assert_error(status, &dup, 409, "CONFLICT")["details"]["field"],
        "id"
    );

    let (status, p) = json(
        app.patch(
            "/api/v1/providers/local",
            &json!({"models":["m1","m2"],"api_key":null}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["models"], json!(["m1", "m2"]));
    assert_eq!(p["api_key_set"], false);

    let a = create(&app, json!({"name": "uses-local", "model": "m2"})).await;
    assert_eq!(
        a["model"], "local/m2",
        "a bare name resolves against API-created providers"
    );
    let (status, res) = json(app.delete("/api/v1/providers/local").await).await;
    let err = assert_error(status, &res, 409, "CONFLICT");
    assert_eq!(err["details"]["agents"], json!(["uses-local"]));

    app.delete("/api/v1/agents/uses-local").await;
    let (status, res) = json(app.delete("/api/v1/providers/local").await).await;
    assert_eq!((status, res["deleted"].clone()), (200, json!(true)));
    let (status, res) = json(app.delete("/api/v1/providers/local").await).await;
    assert_eq!((status, res["deleted"].clone()), (200, json!(false)));
    let (status, res) = json(app.get("/api/v1/providers/local").await).await;
    assert_error(status, &res, 404, "NOT_FOUND");
}

#[tokio::test]
async fn provider_input_is_validated() {
    let app = TestApp::spawn().await;
    for (body, field) in [
        (json!({"id":"Bad Id","kind":"openai"}), "id"),
        (json!({"id":"x","kind":"gemini"}), "kind"),
        (
            json!({"id":"x","kind":"openai","base_url":"ftp://x"}),
            "base_url",
        ),
        (json!({"id":"x","kind":"openai","models":["a b"]}), "models"),
        (json!({"id":"x","kind":"openai","api_key":""}), "api_key"),
        (json!({"id":"x"}), "kind"),
        (json!({"id":"x","kind":"openai","extra":true}), "extra"),
    ] {
        let (status, res) = json(app.post("/api/v1/providers", &body).await).await;
        assert_eq!(
            assert_error(status, &res, 400, "VALIDATION_ERROR")["details"]["field"],
            field,
            "{body}"
        );
    }
    let (_, list) = json(app.get("/api/v1/providers").await).await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn builtin_and_configured_providers_are_read_only() {
    let app = TestApp::builder()
        .provider("openai-prod", "mock", None, &["gpt-4"])
        .spawn()
        .await;
    let (_, list) = json(app.get("/api/v1/providers").await).await;
    assert_eq!(list["total"], 2);
    for id in ["mock", "openai-prod"] {
        let (status, res) = json(
            app.patch(&format!("/api/v1/providers/{id}"), &json!({"models": []}))
                .await,
        )
        .await;
        assert_error(status, &res, 409, "CONFLICT");
        let (status, res) = json(app.delete(&format!("/api/v1/providers/{id}")).await).await;
        assert_error(status, &res, 409, "CONFLICT");
        let (status, res) = json(
            app.post("/api/v1/providers", &json!({"id": id, "kind": "openai"}))
                .await,
        )
        .await;
        assert_error(status, &res, 409, "CONFLICT");
    }
}

#[tokio::test]
async fn an_empty_model_list_accepts_any_qualified_model() {
    let app = TestApp::spawn().await;
    let (status, _) = json(
        app.post(
            "/api/v1/providers",
            &json!({"id":"ollama","kind":"openai","base_url":"http://127.0.0.1:11434/v1"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let a = create(
        &app,
        json!({"name": "llama", "model": "ollama/llama3.2:3b"}),
    )
    .await;
    assert_eq!(a["model"], "ollama/llama3.2:3b");
    let (status, res) = json(
        app.post(
            "/api/v1/agents",
            &json!({"name": "bare", "model": "llama3.2:3b"}),
        )
        .await,
    )
    .await;
    assert_error(status, &res, 400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn the_builtin_mock_serves_its_documented_model_families() {
    let app = TestApp::spawn().await;
    let run = |model: &'static str| {
        let app = &app;
        async move {
            json(
                app.post(
                    "/api/v1/runs",
                    &json!({"prompt": "a b", "model": format!("mock/{model}")}),
                )
                .await,
            )
            .await
        }
    };
    let started = std::time::Instant::now();
    let (status, res) = run("slow-300").await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["response"], "a b");
    assert!(started.elapsed().as_millis() >= 300, "it waited");
    let (status, res) = run("error-429").await;
    assert_eq!(
        assert_error(status, &res, 502, "PROVIDER_ERROR")["details"]["upstream_status"],
        429
    );
    let (status, res) = run("error-503").await;
    assert_eq!(
        assert_error(status, &res, 502, "PROVIDER_ERROR")["details"]["upstream_status"],
        503
    );
    let (status, res) = run("cut").await;
    assert_error(status, &res, 502, "PROVIDER_ERROR");
    // Agents may use them too.
    let agent = create(&app, json!({"name": "slow", "model": "mock/slow-10"})).await;
    assert_eq!(agent["model"], "mock/slow-10");
    // Other names are still unknown, and the list shown stays `echo`.
    for model in ["nope", "slow-x", "error-200", "cutting"] {
        let (status, res) = run(model).await;
        let err = assert_error(status, &res, 404, "MODEL_NOT_FOUND");
        assert_eq!(err["details"]["available_models"][0], "echo", "{err}");
    }
    let (_, mock) = json(app.get("/api/v1/providers/mock").await).await;
    assert_eq!(mock["models"], json!(["echo"]), "{mock}");
}
