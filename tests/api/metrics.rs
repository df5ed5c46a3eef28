//! Prometheus `/metrics`, parsed by a Prometheus text parser (the `prometheus-parse` crate),
//! with the counters moving as calls are made; the configurable prefix; who may read it.

use std::collections::HashMap;

use agentry_test_harness::{TestApp, json};
use prometheus_parse::{Sample, Scrape, Value as PromValue};
use reqwest::Method;
use serde_json::json;

/// Scrapes `/metrics` with `token` (the admin's when `None`) and parses it.
async fn scrape(app: &TestApp) -> Scrape {
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&res.text().await.unwrap())
}

fn parse(text: &str) -> Scrape {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse(lines).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

/// The samples of `metric` whose labels include `labels`.
fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

/// The one counter or gauge value of `metric` with `labels` (0 when absent).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    find(scrape, metric, labels)
        .first()
        .map(|s| match &s.value {
            PromValue::Counter(v) | PromValue::Gauge(v) | PromValue::Untyped(v) => *v,
            other => panic!("{metric} is not a number: {other:?}"),
        })
        .unwrap_or(0.0)
}

/// The observation count of the histogram `metric` with `labels`.
fn histogram_count(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> u64 {
    find(scrape, metric, labels)
        .first()
        .map(|s| match &s.value {
            PromValue::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0, |b| b.count as u64),
            other => panic!("{metric} is not a histogram: {other:?}"),
        })
        .unwrap_or(0)
}

fn manifest(prefix_agent: &str) -> serde_json::Value {
    json!({"apiVersion": "goagents.dev/v1", "kind": "AgentCluster",
        "metadata": {"name": "customer-support"},
        "spec": {"agents": [{"name": prefix_agent, "provider": "anthropic", "model": "claude-sonnet-4", "instances": 2}]}})
}

#[tokio::test]
async fn prometheus_counters_move_as_calls_are_made() {
    let app = crate::seed_app().await;
    let (status, body) = json(
        app.post("/api/v1/clusters", &manifest("intent-classifier"))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let before = scrape(&app).await;
    let success = [("agent", "intent-classifier"), ("status", "success")];
    assert_eq!(value(&before, "agentry_requests_total", &success), 0.0);
    assert_eq!(
        value(
            &before,
            "agentry_active_agents",
            &[("cluster", "customer-support")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &before,
            "agentry_agent_instances",
            &[
                ("agent", "intent-classifier"),
                ("cluster", "customer-support")
            ]
        ),
        2.0
    );
    let help: HashMap<&str, &str> = before
        .docs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for family in [
        "agentry_requests_total",
        "agentry_response_time_seconds",
        "agentry_active_agents",
        "agentry_open_streams",
        "agentry_rate_limited_total",
        "agentry_db_pool_connections",
        "agentry_db_pool_max_connections",
        "process_resident_memory_bytes",
    ] {
        assert!(help.contains_key(family), "{family} has HELP: {help:?}");
    }
    assert!(value(&before, "agentry_db_pool_max_connections", &[]) >= 1.0);

    // Two chats, a streamed chat and a Chat Completion, all through the one turn.
    for message in ["one", "two"] {
        let (status, _) = json(
            app.post(
                "/api/v1/agents/intent-classifier/chat",
                &json!({"message": message}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200);
    }
    let res = app
        .post(
            "/api/v1/agents/intent-classifier/stream",
            &json!({"message": "streamed words"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("end"));
    let (status, _) = json(
        app.post(
            "/v1/chat/completions",
            &json!({"model": "intent-classifier", "messages": [{"role": "user", "content": "hi there"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    // A failing provider call.
    crate::create(&app, json!({"name": "broken", "model": "mock/error-500"})).await;
    let (status, _) = json(
        app.post("/api/v1/agents/broken/chat", &json!({"message": "x"}))
            .await,
    )
    .await;
    assert_eq!(status, 502);

    let after = scrape(&app).await;
    assert_eq!(value(&after, "agentry_requests_total", &success), 4.0);
    assert_eq!(
        value(
            &after,
            "agentry_requests_total",
            &[("agent", "broken"), ("status", "error")]
        ),
        1.0
    );
    assert_eq!(
        histogram_count(
            &after,
            "agentry_response_time_seconds",
            &[("agent", "intent-classifier")]
        ),
        4
    );
    let output = value(
        &after,
        "agentry_tokens_total",
        &[
            ("agent", "intent-classifier"),
            ("model", "anthropic/claude-sonnet-4"),
            ("direction", "output"),
        ],
    );
    assert!(output >= 4.0, "output tokens counted: {output}");
    assert!(
        value(
            &after,
            "agentry_tokens_total",
            &[("agent", "intent-classifier"), ("direction", "input")]
        ) > 0.0
    );
    assert_eq!(
        histogram_count(
            &after,
            "agentry_provider_latency_seconds",
            &[("provider", "anthropic")]
        ),
        4
    );
    assert!(
        value(
            &after,
            "agentry_provider_errors_total",
            &[("provider", "mock")]
        ) >= 1.0,
        "the failed call counts against its provider"
    );
    assert_eq!(value(&after, "agentry_open_streams", &[]), 0.0);
    assert_eq!(value(&after, "agentry_turns_in_flight", &[]), 0.0);
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 1e6);
}

#[tokio::test]
async fn the_prefix_is_configurable_for_seed_004_dashboards() {
    let app = TestApp::builder()
        .with_seed_providers()
        .configure(|c| c.metrics_prefix = "goagents".to_owned())
        .spawn()
        .await;
    let (status, _) = json(
        app.post("/api/v1/clusters", &manifest("intent-classifier"))
            .await,
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = json(
        app.post(
            "/api/v1/agents/intent-classifier/chat",
            &json!({"message": "hi"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let scraped = scrape(&app).await;
    assert_eq!(
        value(
            &scraped,
            "goagents_requests_total",
            &[("agent", "intent-classifier"), ("status", "success")]
        ),
        1.0
    );
    assert_eq!(
        histogram_count(
            &scraped,
            "goagents_response_time_seconds",
            &[("agent", "intent-classifier")]
        ),
        1
    );
    assert_eq!(
        value(
            &scraped,
            "goagents_active_agents",
            &[("cluster", "customer-support")]
        ),
        1.0
    );
    assert!(
        scraped
            .samples
            .iter()
            .all(|s| !s.metric.starts_with("agentry_")),
        "every agentry_ name carries the prefix"
    );
}

#[tokio::test]
async fn metrics_need_a_credential_unless_made_public() {
    let app = TestApp::spawn().await;
    let res = app.request_as(None, Method::GET, "/metrics", None).await;
    assert_eq!(res.status(), 401);
    let (_, password) = app.create_user("watcher", "viewer").await;
    let token = app.login("watcher", &password).await;
    let res = app
        .request_as(Some(&token), Method::GET, "/metrics", None)
        .await;
    assert_eq!(res.status(), 200, "a viewer may read metrics");
    let key = app.create_api_key(&["read"], None).await;
    let res = app
        .request_as(Some(&key), Method::GET, "/metrics", None)
        .await;
    assert_eq!(res.status(), 200, "a read-scoped key (a scraper's) may");
    let res = app
        .request_as(None, Method::GET, "/api/v1/metrics", None)
        .await;
    assert_eq!(res.status(), 401);

    let public = TestApp::builder()
        .configure(|c| c.metrics_public = true)
        .spawn()
        .await;
    let res = public.request_as(None, Method::GET, "/metrics", None).await;
    assert_eq!(res.status(), 200);
    parse(&res.text().await.unwrap());
    let res = public
        .request_as(None, Method::GET, "/api/v1/metrics", None)
        .await;
    assert_eq!(res.status(), 401, "only /metrics is made public");
}

#[tokio::test]
async fn a_separate_metrics_listener_serves_only_metrics_without_credentials() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let app = TestApp::builder()
        .configure(move |c| c.metrics_addr = Some(([127, 0, 0, 1], port).into()))
        .spawn()
        .await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let scraped = parse(&res.text().await.unwrap());
    assert!(!find(&scraped, "agentry_uptime_seconds", &[]).is_empty());
    let res = client
        .get(format!("http://127.0.0.1:{port}/api/v1/agents"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "nothing else is served there");
    let res = app.request_as(None, Method::GET, "/metrics", None).await;
    assert_eq!(
        res.status(),
        401,
        "the main listener still asks for a credential"
    );
}

#[tokio::test]
async fn rate_limited_requests_are_counted() {
    let app = TestApp::builder()
        .configure(|c| {
            c.rate_limit_per_minute = 60;
            c.rate_limit_burst = 2;
        })
        .spawn()
        .await;
    let mut limited = 0;
    for _ in 0..4 {
        if app.get("/api/v1/agents").await.status() == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 1);
    let scraped = scrape(&app).await;
    assert_eq!(
        value(&scraped, "agentry_rate_limited_total", &[]),
        f64::from(limited)
    );
}

#[tokio::test]
async fn the_task_queue_depth_is_a_gauge() {
    let app = TestApp::spawn().await;
    crate::create(&app, json!({"name": "Later"})).await;
    for _ in 0..3 {
        let (status, _) = json(
            app.post(
                "/api/v1/tasks",
                &json!({"title": "t", "agent_id": "later", "run_at": "2099-01-01T00:00:00Z"}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201);
    }
    // Sampled every 5 s: wait for the next sample.
    let mut pending = 0.0;
    for _ in 0..70 {
        pending = value(
            &scrape(&app).await,
            "agentry_task_queue_depth",
            &[("status", "pending")],
        );
        if pending >= 3.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 3.0);
}
