//! Agent status and conversation insights (issue 17, items 1 to 3): conversations with known
//! outcomes and sentiments, analysed by the built-in analyser (or a scripted analysis model),
//! and every figure of the insights in seed 001's shape.

use std::time::Duration;

use agentry_test_harness::fake_upstream::{FakeUpstream, Scripted};
use agentry_test_harness::{TestApp, json};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{assert_error, create};

/// An app that analyses a conversation as soon as it is idle (no wait), looking every second.
async fn app(model: Option<&str>) -> TestApp {
    let model = model.map(str::to_owned);
    TestApp::builder()
        .configure(move |c| {
            c.insights_idle_minutes = 0;
            c.insights_sweep_secs = 1;
            c.insights_model = model;
        })
        .spawn()
        .await
}

async fn chat(app: &TestApp, agent: &str, session: &str, message: &str) {
    let (status, body) = json(
        app.post(
            &format!("/api/v1/agents/{agent}/chat"),
            &json!({"message": message, "session_id": session}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn insights(app: &TestApp, agent: &str, days: &str) -> Value {
    let (status, body) = json(
        app.get(&format!("/api/v1/agents/{agent}/insights?days={days}"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the insights count `n` conversations.
async fn analysed(app: &TestApp, agent: &str, n: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let i = insights(app, agent, "7").await;
        if i["summary"]["totalConversations"] == n {
            return i;
        }
        last = i;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never {n} analysed conversations: {last}");
}

/// Four conversations the built-in analyser reads one way each.
async fn four_conversations(app: &TestApp) {
    create(
        app,
        json!({"name": "Support", "key": "support", "model": "mock/echo"}),
    )
    .await;
    chat(app, "support", "happy", "How do I reset my password?").await;
    chat(app, "support", "happy", "Thanks, that works, great!").await;
    chat(
        app,
        "support",
        "angry",
        "My refund is wrong and this is useless",
    )
    .await;
    chat(app, "support", "human", "I want to talk to a real person").await;
    chat(app, "support", "plain", "Hello").await;
}

#[tokio::test]
async fn insights_of_known_conversations_in_seed_001s_shape() {
    let app = app(None).await;
    four_conversations(&app).await;
    let i = analysed(&app, "support", 4).await;
    let (_, agent) = json(app.get("/api/v1/agents/support").await).await;
    assert_eq!(i["agentId"], agent["id"]);
    assert_eq!(i["period"]["days"], 7);
    assert!(i["period"]["from"].is_string() && i["period"]["to"].is_string());
    assert_eq!(
        i["summary"],
        json!({"totalConversations": 4, "completedConversations": 2, "abandonedConversations": 1,
            "escalatedConversations": 1, "completionRate": 50.0})
    );
    let m = &i["metrics"];
    // Tasks done: the thanked one and the one-message one.
    assert_eq!(m["taskCompletion"]["rate"], 50.0);
    assert_eq!(
        m["taskCompletion"]["trend"],
        Value::Null,
        "no earlier period: {m}"
    );
    // Sentiments: 0.67 (0, +1, +1 counted twice… the last user message twice), -1, 0, 0.
    assert_eq!(m["sentiment"]["average"], -0.08, "{m}");
    assert_eq!(
        m["sentiment"]["distribution"],
        json!({"positive": 25.0, "neutral": 50.0, "negative": 25.0})
    );
    assert_eq!(m["avgConversationLength"], 2.5);
    assert!(m["avgResponseTime"].as_f64().unwrap() >= 0.0, "{m}");
    let issues: Vec<&str> = i["topIssues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["issue"].as_str().unwrap())
        .collect();
    assert_eq!(issues, ["asked for a human", "refund problem"], "{i}");
    assert!(
        i["topIssues"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["impact"] == "high" && g["frequency"] == 1)
    );
    assert!(!i["recommendations"].as_array().unwrap().is_empty());
    assert!(
        i["analyser"]
            .as_str()
            .unwrap()
            .contains("not a language model"),
        "{i}"
    );

    // Every period holds them (they are from today); all time has no trend.
    for days in ["30", "90", "all"] {
        let i = insights(&app, "support", days).await;
        assert_eq!(i["summary"]["totalConversations"], 4, "{days}");
    }
    assert_eq!(
        insights(&app, "support", "all").await["period"]["days"],
        "all"
    );

    // Seed 001's status.
    let (status, s) = json(app.get("/api/v1/agents/support/status").await).await;
    assert_eq!(status, 200);
    assert_eq!(s["id"], agent["id"]);
    assert_eq!(s["name"], "Support");
    assert_eq!(s["status"], "active");
    assert_eq!(s["optimizationState"], "idle");
    assert_eq!(
        s["metrics"],
        json!({"conversationCount": 4, "taskCompletionRate": 50.0, "avgSentiment": -0.08})
    );
    assert_eq!(s["lastOptimized"], Value::Null);

    // A continued conversation is analysed again: its new turn changes the figures.
    chat(&app, "support", "angry", "Thanks, solved, that works now").await;
    let mut done = false;
    for _ in 0..100 {
        let i = insights(&app, "support", "7").await;
        if i["summary"]["completedConversations"] == 3 {
            assert_eq!(i["summary"]["totalConversations"], 4);
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "the continued conversation was not analysed again");
}

#[tokio::test]
async fn bad_periods_unknown_agents_and_allowlists_are_refused() {
    let app = app(None).await;
    create(&app, json!({"name": "A", "key": "a", "model": "mock/echo"})).await;
    create(&app, json!({"name": "B", "key": "b", "model": "mock/echo"})).await;
    for days in ["14", "0", "x"] {
        let (status, body) = json(
            app.get(&format!("/api/v1/agents/a/insights?days={days}"))
                .await,
        )
        .await;
        let e = assert_error(status, &body, 400, "VALIDATION_ERROR");
        assert_eq!(e["details"]["field"], "days");
    }
    let (status, body) = json(app.get("/api/v1/agents/nobody/status").await).await;
    assert_error(status, &body, 404, "AGENT_NOT_FOUND");
    let (status, body) = json(app.get("/api/v1/agents/nobody/insights").await).await;
    assert_error(status, &body, 404, "AGENT_NOT_FOUND");
    // An empty agent has zeros, not errors.
    let i = insights(&app, "a", "30").await;
    assert_eq!(i["summary"]["totalConversations"], 0);
    assert_eq!(i["metrics"]["sentiment"]["average"], Value::Null);
    // A key limited to `a` sees no `b`.
    let key = app.create_api_key(&["read"], Some(&["a"])).await;
    let res = app
        .request_as(Some(&key), Method::GET, "/api/v1/agents/b/insights", None)
        .await;
    assert_eq!(res.status(), 404);
    let res = app
        .request_as(Some(&key), Method::GET, "/api/v1/agents/a/status", None)
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn analysis_on_demand_and_evaluation_traffic_left_out() {
    // Conversations idle for 30 minutes only: nothing is analysed by itself in this test.
    let app = TestApp::spawn().await;
    create(&app, json!({"name": "S", "key": "s", "model": "mock/echo"})).await;
    chat(&app, "s", "one", "Thanks, great help").await;
    let (_, set) = json(
        app.post(
            "/api/v1/testsets",
            &json!({"name": "t", "cases": [{"input": "x", "expected": "x"}]}),
        )
        .await,
    )
    .await;
    let (status, run) = json(
        app.post(
            &format!("/api/v1/testsets/{}/runs", set["id"].as_str().unwrap()),
            &json!({"configurations": [{"agent": "s"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202, "{run}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        insights(&app, "s", "7").await["summary"]["totalConversations"],
        0
    );
    let (status, body) = json(
        app.post("/api/v1/agents/s/insights/analyze?days=7", &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["analyzed"], 1,
        "evaluation turns open no conversation: {body}"
    );
    let i = insights(&app, "s", "7").await;
    assert_eq!(i["summary"]["completedConversations"], 1);
    let (_, s) = json(app.get("/api/v1/agents/s/status").await).await;
    assert_eq!(s["metrics"]["conversationCount"], 1);
}

#[tokio::test]
async fn a_configured_analysis_model_answers_and_the_builtin_covers_its_failures() {
    let fake = FakeUpstream::start().await;
    let app = app(Some("up/m1")).await;
    let (status, p) = json(
        app.post(
            "/api/v1/providers",
            &json!({"id": "up", "kind": "openai", "base_url": fake.base_url(), "api_key": "k", "models": ["m1"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{p}");
    create(&app, json!({"name": "M", "key": "m", "model": "mock/echo"})).await;
    fake.push(Scripted::Text(
        r#"{"outcome": "escalated", "task_completed": false, "sentiment": -0.5, "issues": ["Unclear refund policy"]}"#.into(),
    ));
    chat(&app, "m", "one", "What is your refund policy?").await;
    let i = analysed(&app, "m", 1).await;
    assert_eq!(i["summary"]["escalatedConversations"], 1, "{i}");
    assert_eq!(i["metrics"]["sentiment"]["average"], -0.5);
    assert_eq!(i["topIssues"][0]["issue"], "unclear refund policy");
    assert_eq!(i["analyser"], "model up/m1");
    let sent = fake.requests();
    let transcript = sent[0].body["messages"].to_string();
    assert!(
        transcript.contains("What is your refund policy?"),
        "{transcript}"
    );
    // An answer that is not an analysis: the built-in analyser answers, and says why.
    fake.push(Scripted::Text("I think it went fine".into()));
    chat(&app, "m", "two", "Thanks, great").await;
    let i = analysed(&app, "m", 2).await;
    assert_eq!(i["summary"]["completedConversations"], 1, "{i}");
}
