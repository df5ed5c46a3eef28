//! The OpenAI-compatible client API, called through a real OpenAI client library
//! (async-openai), not hand-made JSON: models, Responses (basic, streaming, system prompt,
//! multi-turn, retrieval), Chat Completions (JSON and streaming), typed errors, and seed 003.

use agentry_test_harness::fake_upstream::FakeUpstream;
use agentry_test_harness::{TestApp, json};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    ChatCompletionStreamOptions, CreateChatCompletionRequestArgs,
};
use async_openai::types::responses::{CreateResponse, CreateResponseArgs, ResponseStreamEvent};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::create;

type Sdk = Client<OpenAIConfig>;

/// An SDK client pointed at the app: only the base URL and the key change.
fn sdk(app: &TestApp, base: &str) -> Sdk {
    let config = OpenAIConfig::new()
        .with_api_base(format!("{}{base}", app.base_url()))
        .with_api_key(app.admin_token());
    Client::with_config(config).with_http_service(ReqwestService::new(reqwest::Client::new()))
}

fn ask(model: &str, input: &str) -> CreateResponse {
    CreateResponseArgs::default()
        .model(model)
        .input(input)
        .build()
        .unwrap()
}

/// An app whose agent `support-bot` answers through a fake OpenAI upstream, so what is sent
/// upstream can be inspected.
async fn app_with_upstream() -> (TestApp, FakeUpstream) {
    let fake = FakeUpstream::start().await;
    let app = TestApp::builder()
        .provider("up", "openai", Some(&fake.base_url()), &["fake-echo"])
        .spawn()
        .await;
    create(&app, json!({"name": "Support Bot", "key": "support-bot", "model": "up/fake-echo", "instructions": "You are support.", "temperature": 0.7, "top_p": 1, "max_tokens": 4096})).await;
    (app, fake)
}

fn api_error(e: OpenAIError) -> (Option<String>, Option<String>, String) {
    match e {
        OpenAIError::ApiError(api) => (
            api.api_error.code.clone(),
            api.api_error.param.clone(),
            api.api_error.message,
        ),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn models_lists_agents_and_provider_models() {
    let app = TestApp::spawn().await;
    create(&app, json!({"name": "Support Bot", "key": "support-bot"})).await;
    create(&app, json!({"name": "Draft", "status": "draft"})).await;
    let list = sdk(&app, "/v1").models().list().await.unwrap();
    let ids: Vec<&str> = list.data.iter().map(|m| m.id.as_str()).collect();
    assert!(
        ids.contains(&"support-bot") && ids.contains(&"mock/echo"),
        "{ids:?}"
    );
    assert!(!ids.contains(&"draft"), "only active agents are callable");
    let one = sdk(&app, "/v1")
        .models()
        .retrieve("support-bot")
        .await
        .unwrap();
    assert_eq!(one.owned_by, "agentry");
}

#[tokio::test]
async fn responses_basic_system_prompt_and_multi_turn() {
    let (app, fake) = app_with_upstream().await;
    let client = sdk(&app, "/v1");
    let mut req = ask("support-bot", "How do I reset my password?");
    req.instructions = Some("Answer in one sentence.".to_owned());
    let first = client.responses().create(req).await.unwrap();
    assert!(first.id.starts_with("resp_"), "{}", first.id);
    assert_eq!(first.object, "response");
    assert_eq!(first.model, "support-bot");
    assert_eq!(
        first.output_text().as_deref(),
        Some("How do I reset my password?")
    );
    let usage = first.usage.clone().unwrap();
    assert_eq!(usage.total_tokens, usage.input_tokens + usage.output_tokens);
    let sent = fake.requests().last().unwrap().body.clone();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "You are support."}),
        "the agent's instructions come first"
    );
    assert_eq!(
        sent["messages"][1],
        json!({"role": "system", "content": "Answer in one sentence."}),
        "then the caller's"
    );
    assert_eq!(sent["temperature"], 0.7);

    let mut next = ask("support-bot", "Can you elaborate on the security settings?");
    next.previous_response_id = Some(first.id.clone());
    let second = client.responses().create(next).await.unwrap();
    assert_eq!(
        second.previous_response_id.as_deref(),
        Some(first.id.as_str())
    );
    let roles: Vec<String> = fake.requests().last().unwrap().body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user"],
        "the earlier turn is sent upstream"
    );

    let app = app.restart().await.unwrap();
    let client = sdk(&app, "/v1");
    let mut third = ask("support-bot", "And after a restart?");
    third.previous_response_id = Some(second.id.clone());
    client.responses().create(third).await.unwrap();
    assert_eq!(
        fake.requests().last().unwrap().body["messages"]
            .as_array()
            .unwrap()
            .len(),
        6,
        "continuity survives a restart"
    );

    let got = client.responses().retrieve(&first.id).await.unwrap();
    assert_eq!(
        got.output_text().as_deref(),
        Some("How do I reset my password?"),
        "a response id names its turn, after a restart too"
    );
    let items = client.responses().list_input_items(&first.id).await;
    assert!(items.is_ok(), "{items:?}");
    let deleted = client.responses().delete(&first.id).await.unwrap();
    assert!(deleted.deleted);
    let (code, _, _) = api_error(client.responses().retrieve(&first.id).await.unwrap_err());
    assert_eq!(code.as_deref(), Some("not_found"));
    // Deleting it again, or an id that names no conversation, is a 404 too.
    for id in [first.id.as_str(), "resp_not-an-id"] {
        let (code, _, _) = api_error(client.responses().delete(id).await.unwrap_err());
        assert_eq!(code.as_deref(), Some("not_found"), "{id}");
    }
}

#[tokio::test]
async fn responses_streaming_with_the_sdk() {
    let (app, _fake) = app_with_upstream().await;
    let mut req = ask("support-bot", "stream these five words");
    req.stream = Some(true);
    let mut stream = sdk(&app, "/v1")
        .responses()
        .create_stream(req)
        .await
        .unwrap();
    let (mut deltas, mut kinds, mut seqs, mut completed) =
        (String::new(), Vec::new(), Vec::new(), None);
    while let Some(ev) = stream.next().await {
        let ev = ev.unwrap();
        let v = serde_json::to_value(&ev).unwrap();
        kinds.push(v["type"].as_str().unwrap().to_owned());
        seqs.push(v["sequence_number"].as_u64().unwrap());
        match ev {
            ResponseStreamEvent::ResponseOutputTextDelta(d) => deltas.push_str(&d.delta),
            ResponseStreamEvent::ResponseCompleted(c) => completed = Some(c.response),
            _ => {}
        }
    }
    assert_eq!(deltas, "stream these five words");
    assert_eq!(kinds.first().map(String::as_str), Some("response.created"));
    for k in [
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    assert_eq!(kinds.last().map(String::as_str), Some("response.completed"));
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers increase by one: {seqs:?}"
    );
    let completed = completed.unwrap();
    assert_eq!(
        completed.output_text().as_deref(),
        Some("stream these five words")
    );
    assert!(completed.usage.unwrap().output_tokens > 0);
}

#[tokio::test]
async fn responses_typed_errors() {
    let (app, _fake) = app_with_upstream().await;
    create(
        &app,
        json!({"name": "Sleeping", "key": "sleeping", "status": "inactive"}),
    )
    .await;
    let client = sdk(&app, "/v1");
    let (code, param, _) = api_error(
        client
            .responses()
            .create(ask("no-such-agent", "hi"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code.as_deref(), param.as_deref()),
        (Some("model_not_found"), Some("model"))
    );
    let (code, _, msg) = api_error(
        client
            .responses()
            .create(ask("sleeping", "hi"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code.as_deref(), Some("agent_not_active"), "{msg}");
    let mut bad = ask("support-bot", "hi");
    bad.previous_response_id = Some("resp_00000000000000000000000000000000".to_owned());
    let (code, param, _) = api_error(client.responses().create(bad).await.unwrap_err());
    assert_eq!(
        (code.as_deref(), param.as_deref()),
        (
            Some("previous_response_not_found"),
            Some("previous_response_id")
        )
    );
    let mut pinned = ask("support-bot", "hi");
    pinned.top_logprobs = Some(3);
    let (code, param, _) = api_error(client.responses().create(pinned).await.unwrap_err());
    assert_eq!(
        (code.as_deref(), param.as_deref()),
        (Some("unsupported_value"), Some("top_logprobs")),
        "unsupported values are refused, not ignored (top_logprobs: 0 is accepted)"
    );

    let raw = |body: Value| {
        let app = &app;
        async move { json(app.post("/v1/responses", &body).await).await }
    };
    let (status, e) = raw(json!({"input": "hi"})).await;
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("model")));
    assert_eq!(e["error"]["type"], "invalid_request_error");
    let (status, e) = raw(json!({"model": "support-bot"})).await;
    assert_eq!((status, e["error"]["param"].as_str()), (400, Some("input")));
    let (status, e) = raw(json!({"model": "support-bot", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]})).await;
    assert_eq!(
        (status, e["error"]["param"].as_str()),
        (400, Some("input[0].content[0]"))
    );
    let (status, e) = raw(json!({"model": "support-bot", "input": "hi", "temperature": 3})).await;
    assert_eq!(
        (status, e["error"]["param"].as_str()),
        (400, Some("temperature"))
    );
    let (status, e) =
        raw(json!({"model": "support-bot", "input": "hi", "tools": [{"type": "web_search"}]}))
            .await;
    assert_eq!(
        (status, e["error"]["param"].as_str()),
        (400, Some("tools[0].type")),
        "hosted tools are refused, naming the item"
    );
    let res = app
        .client()
        .post(app.url("/v1/responses"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    let (status, e) = json(res).await;
    assert_eq!(status, 400);
    assert!(
        e["error"]["type"].is_string() && e["error"]["message"].is_string(),
        "OpenAI format even for malformed JSON: {e}"
    );
}

#[tokio::test]
async fn chat_completions_json_and_streaming_with_the_sdk() {
    let (app, fake) = app_with_upstream().await;
    let client = sdk(&app, "/v1");
    let req = CreateChatCompletionRequestArgs::default()
        .model("support-bot")
        .messages([
            ChatCompletionRequestSystemMessageArgs::default()
                .content("Reply in French.")
                .build()
                .unwrap()
                .into(),
            ChatCompletionRequestUserMessageArgs::default()
                .content("bonjour tout le monde")
                .build()
                .unwrap()
                .into(),
        ])
        .build()
        .unwrap();
    let res = client.chat().create(req.clone()).await.unwrap();
    assert!(res.id.starts_with("chatcmpl-"));
    assert_eq!(res.model, "support-bot");
    assert_eq!(
        res.choices[0].message.content.as_deref(),
        Some("bonjour tout le monde")
    );
    assert!(res.usage.unwrap().total_tokens > 0);
    let sent = fake.requests().last().unwrap().body.clone();
    let sys: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "system")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        sys,
        ["You are support.", "Reply in French."],
        "agent instructions first, then the caller's system messages"
    );

    let mut streamed = req.clone();
    streamed.stream = Some(true);
    streamed.stream_options = Some(ChatCompletionStreamOptions {
        include_usage: Some(true),
        include_obfuscation: None,
    });
    let mut stream = client.chat().create_stream(streamed).await.unwrap();
    let (mut text, mut usage, mut finish) = (String::new(), None, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if let Some(c) = chunk.choices.first() {
            text.push_str(c.delta.content.as_deref().unwrap_or_default());
            finish = finish.or(c.finish_reason);
        }
        usage = usage.or(chunk.usage);
    }
    assert_eq!(text, "bonjour tout le monde");
    assert!(finish.is_some());
    assert!(
        usage.unwrap().completion_tokens > 0,
        "the usage chunk arrives with include_usage"
    );

    let direct = CreateChatCompletionRequestArgs::default()
        .model("mock/echo")
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("straight to the model")
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap();
    let res = client.chat().create(direct).await.unwrap();
    assert_eq!(
        res.choices[0].message.content.as_deref(),
        Some("straight to the model")
    );

    // Chat completion logs are written in the background, within milliseconds.
    let mut runs = Value::Null;
    for _ in 0..100 {
        runs = json(app.get("/api/v1/runs").await).await.1;
        if runs["total"] == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(runs["total"], 3, "every chat completion is logged: {runs}");
    assert_eq!(runs["runs"][2]["log_meta"]["agent"], "support-bot");

    let bad = CreateChatCompletionRequestArgs::default()
        .model("nobody")
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("hi")
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap();
    let (code, _, _) = api_error(client.chat().create(bad).await.unwrap_err());
    assert_eq!(code.as_deref(), Some("model_not_found"));
}

#[tokio::test]
async fn seed_003_client_api() {
    let app = TestApp::builder().with_seed_providers().spawn().await;
    create(&app, json!({"name": "Support Bot", "key": "support-bot", "description": "Customer support agent", "llmModel": "gpt-4o", "temperature": 0.7, "top_p": 1, "maxTokens": 4096})).await;
    create(&app, json!({"name": "Other", "status": "draft"})).await;
    let (status, list) = json(app.get("/api/client/v1/agents?status=active").await).await;
    assert_eq!(status, 200);
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);
    let a = &list["agents"][0];
    assert_eq!(a["key"], "support-bot");
    assert_eq!(
        a["config"],
        json!({"modelKey": "openai-prod/gpt-4o", "temperature": 0.7, "topP": 1.0, "maxTokens": 4096})
    );
    assert!(a["createdAt"].as_str().unwrap().ends_with('Z'));
    let (status, one) = json(app.get("/api/client/v1/agents/support-bot").await).await;
    assert_eq!((status, &one["agent"]), (200, a));
    let (status, e) = json(app.get("/api/client/v1/agents/nope").await).await;
    assert_eq!(status, 404);
    assert!(e["error"]["message"].is_string() && e["error"]["type"].is_string());

    let inputs = [
        json!({"model": "support-bot", "input": "How do I reset my password?", "previous_response_id": null}),
        json!({"model": "support-bot", "input": "Hello, I need help"}),
        json!({"model": "support-bot", "input": [{"role": "user", "content": "Hello, I need help"}]}),
        json!({"model": "support-bot", "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hello, I need help"}]}]}),
    ];
    let mut last_id = String::new();
    for (i, body) in inputs.iter().enumerate() {
        let path = if i % 2 == 0 {
            "/api/client/v1/responses"
        } else {
            "/api/client/v1/agents/responses"
        };
        let (status, r) = json(app.post(path, body).await).await;
        assert_eq!(status, 200, "{body} → {r}");
        assert_eq!(r["object"], "response");
        assert_eq!(r["status"], "completed");
        assert_eq!(r["output"][0]["content"][0]["type"], "output_text");
        assert!(r["created_at"].is_i64());
        last_id = r["id"].as_str().unwrap().to_owned();
    }
    let (status, r) = json(app.post("/api/client/v1/responses", &json!({"model": "support-bot", "input": "Can you elaborate on the security settings?", "previous_response_id": last_id})).await).await;
    assert_eq!(
        (status, r["previous_response_id"].as_str()),
        (200, Some(last_id.as_str()))
    );
    let (status, e) = json(
        app.post(
            "/api/client/v1/responses",
            &json!({"model": "other", "input": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "a draft agent is not served: {e}");
    let (status, _) = json(
        app.post(
            "/api/client/v1/responses",
            &json!({"model": "support-bot", "input": "x", "previous_response_id": "resp_nope"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_client_api_serves_the_latest_published_version_or_the_pinned_one() {
    let (app, fake) = app_with_upstream().await;
    let client = sdk(&app, "/v1");
    let system = |fake: &FakeUpstream| {
        fake.requests().last().unwrap().body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    client
        .responses()
        .create(ask("support-bot", "hi"))
        .await
        .unwrap();
    assert_eq!(
        system(&fake),
        "You are support.",
        "never published: the live definition serves"
    );

    let (status, v1) = json(
        app.post(
            "/api/v1/agents/support-bot/versions",
            &json!({"note": "v1"}),
        )
        .await,
    )
    .await;
    assert_eq!((status, v1["version"].as_u64()), (201, Some(1)));
    json(
        app.patch(
            "/api/v1/agents/support-bot",
            &json!({"instructions": "You are support, version two."}),
        )
        .await,
    )
    .await;
    client
        .responses()
        .create(ask("support-bot", "hi"))
        .await
        .unwrap();
    assert_eq!(
        system(&fake),
        "You are support.",
        "an unpublished edit does not reach clients"
    );

    json(
        app.post("/api/v1/agents/support-bot/versions", &json!({}))
            .await,
    )
    .await;
    client
        .responses()
        .create(ask("support-bot", "hi"))
        .await
        .unwrap();
    assert_eq!(
        system(&fake),
        "You are support, version two.",
        "the latest published version serves"
    );

    let res = app
        .post(
            "/v1/responses",
            &json!({"model": "support-bot", "input": "hi", "version": 1}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(system(&fake), "You are support.", "a pinned version serves");
    let (status, e) = json(
        app.post(
            "/v1/responses",
            &json!({"model": "support-bot", "input": "hi", "version": 9}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("version_not_found"))
    );

    let (_, h) = json(app.get("/api/v1/agents/support-bot/chat/history").await).await;
    let versions: Vec<Value> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .map(|m| m["agent_version"].clone())
        .collect();
    assert_eq!(
        versions,
        [Value::Null, json!(1), json!(2), json!(1)],
        "each answer records the version that served it"
    );
}

#[tokio::test]
async fn api_keys_reach_only_their_agents_through_the_sdk() {
    let (app, _fake) = app_with_upstream().await;
    create(&app, json!({"name": "Other Bot", "key": "other-bot"})).await;
    let key = app
        .create_api_key(&["invoke"], Some(&["support-bot"]))
        .await;
    let config = OpenAIConfig::new()
        .with_api_base(format!("{}/v1", app.base_url()))
        .with_api_key(key);
    let client: Sdk =
        Client::with_config(config).with_http_service(ReqwestService::new(reqwest::Client::new()));

    let r = client
        .responses()
        .create(ask("support-bot", "allowed"))
        .await
        .unwrap();
    assert_eq!(r.output_text().as_deref(), Some("allowed"));
    let (code, _, _) = api_error(
        client
            .responses()
            .create(ask("other-bot", "not mine"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code.as_deref(), Some("agent_not_allowed"));
    let direct = CreateChatCompletionRequestArgs::default()
        .model("mock/echo")
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("x")
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap();
    let (code, _, _) = api_error(client.chat().create(direct).await.unwrap_err());
    assert_eq!(
        code.as_deref(),
        Some("direct_model_access_denied"),
        "a key limited to agents cannot call models directly"
    );
    let ids: Vec<String> = client
        .models()
        .list()
        .await
        .unwrap()
        .data
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        ids,
        ["support-bot"],
        "models lists only what the key may call"
    );

    let anonymous = OpenAIConfig::new()
        .with_api_base(format!("{}/v1", app.base_url()))
        .with_api_key("agk_not_a_real_key");
    let anon: Sdk = Client::with_config(anonymous)
        .with_http_service(ReqwestService::new(reqwest::Client::new()));
    match anon
        .responses()
        .create(ask("support-bot", "x"))
        .await
        .unwrap_err()
    {
        OpenAIError::ApiError(e) => assert_eq!(e.status_code, 401),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn responses_store_conversation_metadata_and_limits() {
    let (app, fake) = app_with_upstream().await;
    let (status, r) = json(
        app.post(
            "/v1/responses",
            &json!({"model": "support-bot", "input": "forget me", "store": false}),
        )
        .await,
    )
    .await;
    assert_eq!((status, r["store"].as_bool()), (200, Some(false)), "{r}");
    let id = r["id"].as_str().unwrap();
    let (status, _) = json(app.get(&format!("/v1/responses/{id}")).await).await;
    assert_eq!(status, 404, "an unstored response cannot be retrieved");
    let (_, convs) = json(app.get("/api/v1/conversations").await).await;
    assert_eq!(convs["total"], 0, "store: false writes no conversation");

    let (status, first) = json(app.post("/v1/responses", &json!({"model": "support-bot", "input": "remember me", "metadata": {"ticket": "T-1"}, "max_output_tokens": 64})).await).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["metadata"], json!({"ticket": "T-1"}));
    assert_eq!(first["max_output_tokens"], 64);
    assert_eq!(
        fake.requests().last().unwrap().body["max_tokens"],
        64,
        "max_output_tokens reaches the upstream"
    );
    let (_, convs) = json(app.get("/api/v1/conversations").await).await;
    let conv = convs["conversations"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        convs["conversations"][0]["context"],
        json!({"ticket": "T-1"}),
        "metadata is stored with a new conversation"
    );
    assert_eq!(
        first["conversation"]["id"], conv,
        "the response names its conversation"
    );

    let (status, second) = json(app.post("/v1/responses", &json!({"model": "support-bot", "input": "by conversation", "conversation": {"id": conv}})).await).await;
    assert_eq!(status, 200, "{second}");
    let roles: Vec<String> = fake.requests().last().unwrap().body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "user"],
        "continuing by conversation id sends its history"
    );
    let (status, items) = json(
        app.get(&format!(
            "/v1/responses/{}/input_items?order=asc",
            second["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let texts: Vec<&str> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["remember me", "by conversation"]);
    assert_eq!(items["object"], "list");

    let (status, e) = json(app.post("/v1/responses", &json!({"model": "support-bot", "input": "x", "conversation": "conv_00000000000000000000000000000000"})).await).await;
    assert_eq!(
        (status, e["error"]["param"].as_str()),
        (404, Some("conversation"))
    );
    let (status, e) = json(app.post("/v1/responses", &json!({"model": "support-bot", "input": "x", "conversation": conv, "previous_response_id": first["id"]})).await).await;
    assert_eq!(
        (status, e["error"]["param"].as_str()),
        (400, Some("conversation")),
        "the two ways to continue are exclusive"
    );
}

#[tokio::test]
async fn input_items_page_with_after_and_before() {
    let app = TestApp::spawn().await;
    create(&app, json!({"name": "Support Bot", "model": "mock/echo"})).await;
    let mut id = None::<String>;
    for n in 1..=5 {
        let mut body = json!({"model": "support-bot", "input": format!("m{n}")});
        if let Some(prev) = &id {
            body["previous_response_id"] = json!(prev);
        }
        let (status, r) = json(app.post("/v1/responses", &body).await).await;
        assert_eq!(status, 200, "{r}");
        id = Some(r["id"].as_str().unwrap().to_owned());
    }
    let id = id.unwrap();
    let page = |query: String| {
        let app = &app;
        let id = &id;
        async move {
            let (status, list) = json(
                app.get(&format!("/v1/responses/{id}/input_items?{query}"))
                    .await,
            )
            .await;
            assert_eq!(status, 200, "{query}: {list}");
            let texts: Vec<String> = list["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["content"][0]["text"].as_str().unwrap().to_owned())
                .collect();
            (texts, list)
        }
    };
    // Forward through every page, as the SDKs' auto-pagination does.
    let mut seen = Vec::new();
    let mut query = "order=asc&limit=2".to_owned();
    for _ in 0..5 {
        let (texts, list) = page(query.clone()).await;
        seen.extend(texts);
        if list["has_more"] == false {
            break;
        }
        query = format!(
            "order=asc&limit=2&after={}",
            list["last_id"].as_str().unwrap()
        );
    }
    assert_eq!(seen, ["m1", "m2", "m3", "m4", "m5"]);
    // Newest first by default; `before` gives the page just before an item.
    let (texts, newest) = page("limit=2".into()).await;
    assert_eq!(
        (texts, newest["has_more"].clone()),
        (vec!["m5".to_owned(), "m4".to_owned()], json!(true))
    );
    let (_, all) = page("order=asc".into()).await;
    let m4 = all["data"][3]["id"].as_str().unwrap();
    let (texts, _) = page(format!("order=asc&limit=2&before={m4}")).await;
    assert_eq!(texts, ["m2", "m3"]);
    let (texts, _) = page(format!(
        "order=asc&after={}&before={m4}",
        all["data"][0]["id"].as_str().unwrap()
    ))
    .await;
    assert_eq!(texts, ["m2", "m3"]);
    for bad in ["after=msg_nope", "limit=0", "limit=101", "order=sideways"] {
        let (status, e) = json(
            app.get(&format!("/v1/responses/{id}/input_items?{bad}"))
                .await,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
    }
}

#[tokio::test]
async fn every_listed_model_is_served_by_both_endpoints() {
    let app = TestApp::spawn().await;
    create(&app, json!({"name": "Support Bot", "model": "mock/echo"})).await;
    let limited = app
        .create_api_key(&["invoke"], Some(&["support-bot"]))
        .await;
    let writer = app.create_api_key(&["write"], None).await;
    let admin = app.admin_token();
    for token in [
        Some(admin.as_str()),
        Some(limited.as_str()),
        Some(writer.as_str()),
    ] {
        let (status, models) = json(
            app.request_as(token, reqwest::Method::GET, "/v1/models", None)
                .await,
        )
        .await;
        assert_eq!(status, 200, "{models}");
        let ids: Vec<String> = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.contains(&"support-bot".to_owned()), "{ids:?}");
        assert_eq!(
            ids.contains(&"mock/echo".to_owned()),
            token != Some(limited.as_str()),
            "direct models are listed for callers who may call them: {ids:?}"
        );
        for id in &ids {
            let (status, r) = json(
                app.request_as(
                    token,
                    reqwest::Method::POST,
                    "/v1/responses",
                    Some(&json!({"model": id, "input": "hi"})),
                )
                .await,
            )
            .await;
            assert_eq!(status, 200, "responses refused listed {id}: {r}");
            let (status, c) = json(
                app.request_as(
                    token,
                    reqwest::Method::POST,
                    "/v1/chat/completions",
                    Some(&json!({"model": id, "messages": [{"role": "user", "content": "hi"}]})),
                )
                .await,
            )
            .await;
            assert_eq!(status, 200, "chat completions refused listed {id}: {c}");
        }
    }
    // A model's response is stateless: reported as not stored, not retrievable, not continued.
    let (status, r) = json(
        app.post(
            "/v1/responses",
            &json!({"model": "mock/echo", "input": "hi"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["store"], false, "{r}");
    let id = r["id"].as_str().unwrap();
    let (status, _) = json(app.get(&format!("/v1/responses/{id}")).await).await;
    assert_eq!(status, 404);
    let (status, e) = json(
        app.post(
            "/v1/responses",
            &json!({"model": "mock/echo", "input": "and?", "previous_response_id": id}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, e["error"]["param"].as_str()),
        (400, Some("previous_response_id")),
        "{e}"
    );
    let (status, _) = json(
        app.request_as(
            Some(&limited),
            reqwest::Method::POST,
            "/v1/responses",
            Some(&json!({"model": "mock/echo", "input": "hi"})),
        )
        .await,
    )
    .await;
    assert_eq!(
        status, 403,
        "a key limited to agents may not call models directly"
    );
}

#[tokio::test]
async fn openai_endpoints_agentry_lacks_are_404_unknown_url() {
    use reqwest::Method;
    let app = TestApp::spawn().await;
    let invoke = app.create_api_key(&["invoke"], None).await;
    let admin = app.admin_token();
    let body = json!({"model": "text-embedding-3-small", "input": "hi"});
    for (method, path) in [
        (Method::POST, "/v1/embeddings"),
        (Method::POST, "/v1/completions"),
        (Method::POST, "/v1/images/generations"),
        (Method::POST, "/v1/audio/transcriptions"),
        (Method::POST, "/v1/moderations"),
        (Method::GET, "/v1/fine_tuning/jobs"),
        (Method::POST, "/v1/batches"),
        (Method::POST, "/v1/assistants"),
        (Method::POST, "/v1/threads/thread_1/runs"),
        (Method::GET, "/v1/vector_stores"),
        (Method::GET, "/v1/chat/completions/chatcmpl_1"),
        (Method::POST, "/api/client/v1/embeddings"),
    ] {
        for token in [invoke.as_str(), admin.as_str()] {
            let (status, got) = json(
                app.request_as(Some(token), method.clone(), path, Some(&body))
                    .await,
            )
            .await;
            assert_eq!(status, 404, "{method} {path}: {got}");
            let message = got["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(path), "{got}");
            assert_eq!(
                got,
                json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "unknown_url"}}),
                "{method} {path}"
            );
        }
    }
    // Whoever may not call the client API is refused as there, in OpenAI's format.
    let read_only = app.create_api_key(&["read"], None).await;
    let (status, got) = json(
        app.request_as(
            Some(&read_only),
            Method::POST,
            "/v1/embeddings",
            Some(&body),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403, "{got}");
    assert_eq!(got["error"]["type"], "permission_error", "{got}");
    assert_eq!(got["error"]["code"], "permission_denied", "{got}");
    let (status, got) = json(
        app.request_as(None, Method::POST, "/v1/embeddings", Some(&body))
            .await,
    )
    .await;
    assert_eq!(status, 401, "{got}");
    assert_eq!(got["error"]["code"], "invalid_api_key", "{got}");
    // The management aliases under `/v1` are not shadowed.
    let (status, got) = json(app.get("/v1/conversations").await).await;
    assert_eq!(status, 200, "{got}");
    // Seed 002's Files API, not OpenAI's.
    let (status, got) = json(app.get("/v1/files").await).await;
    assert_eq!(status, 200, "{got}");
    assert!(got["files"].is_array(), "{got}");
}

#[tokio::test]
async fn each_turn_has_its_own_response_id_and_earlier_ones_branch() {
    let app = TestApp::spawn().await;
    create(&app, json!({"name": "Support Bot", "model": "mock/echo"})).await;
    let ask = |input: &'static str, previous: Option<String>| {
        let app = &app;
        async move {
            let mut body = json!({"model": "support-bot", "input": input});
            if let Some(p) = previous {
                body["previous_response_id"] = json!(p);
            }
            let (status, r) = json(app.post("/v1/responses", &body).await).await;
            assert_eq!(status, 200, "{r}");
            r
        }
    };
    let id = |r: &Value| r["id"].as_str().unwrap().to_owned();
    let conv = |r: &Value| r["conversation"]["id"].as_str().unwrap().to_owned();
    let t1 = ask("one", None).await;
    let t2 = ask("two", Some(id(&t1))).await;
    let t3 = ask("three", Some(id(&t2))).await;
    assert!(id(&t1) != id(&t2) && id(&t2) != id(&t3), "ids are per turn");
    assert_eq!(
        (conv(&t1), conv(&t2)),
        (conv(&t3), conv(&t3)),
        "one conversation"
    );
    assert_eq!(t2["previous_response_id"], t1["id"]);
    // GET returns that turn, with the turn it continued.
    for (t, text, previous) in [(&t1, "one", Value::Null), (&t2, "two", t1["id"].clone())] {
        let (status, got) = json(app.get(&format!("/v1/responses/{}", id(t))).await).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["id"], t["id"]);
        assert_eq!(got["output"][0]["content"][0]["text"], text, "{got}");
        assert_eq!(got["previous_response_id"], previous, "{got}");
        assert_eq!(got["conversation"]["id"], conv(&t1).as_str());
    }
    // An earlier turn continued: a new conversation sharing the turns up to it.
    let branch = ask("two again", Some(id(&t1))).await;
    assert_ne!(
        conv(&branch),
        conv(&t1),
        "a branch is a conversation of its own"
    );
    let (_, items) = json(
        app.get(&format!(
            "/v1/responses/{}/input_items?order=asc",
            id(&branch)
        ))
        .await,
    )
    .await;
    let texts: Vec<&str> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two again"]);
    // The original line is untouched and still continues from its latest turn.
    let t4 = ask("four", Some(id(&t3))).await;
    assert_eq!(conv(&t4), conv(&t1));
    let (_, items) = json(
        app.get(&format!("/v1/responses/{}/input_items?order=asc", id(&t4)))
            .await,
    )
    .await;
    assert_eq!(items["data"].as_array().unwrap().len(), 4, "{items}");
    // Two continuations of one id do not merge: the second one branches.
    let p1 = ask("left", Some(id(&t4))).await;
    let p2 = ask("right", Some(id(&t4))).await;
    assert_eq!(conv(&p1), conv(&t1));
    assert_ne!(conv(&p2), conv(&t1));
    // A turn's id continues its own line only.
    let (_, got) = json(app.get(&format!("/v1/responses/{}", id(&p2))).await).await;
    assert_eq!(got["output"][0]["content"][0]["text"], "right");
}

#[tokio::test]
async fn a_malformed_query_on_the_client_api_is_answered_in_openais_format() {
    let app = TestApp::spawn().await;
    for path in [
        "/api/client/v1/agents?status=active&status=draft",
        "/api/client/v1/agents?status=running",
    ] {
        let (status, got) = json(app.get(path).await).await;
        assert_eq!(status, 400, "{path}: {got}");
        assert_eq!(
            got["error"]["type"], "invalid_request_error",
            "{path}: {got}"
        );
        assert!(got["error"].get("request_id").is_none(), "{path}: {got}");
    }
    // The management API keeps its own format.
    let (status, got) = json(app.get("/api/v1/agents?status=active&status=draft").await).await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (400, Some("VALIDATION_ERROR")),
        "{got}"
    );
}
