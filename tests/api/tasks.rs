//! Tasks (issue 18, items 1 and 2): seed 002's Tasks API, the queue's workers, retries,
//! cancels, idempotency and visibility; on PostgreSQL, two replicas sharing one queue.

use std::time::Duration;

use agentry_test_harness::fake_upstream::{FakeUpstream, Scripted};
use agentry_test_harness::{TestApp, json};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{assert_error, create, upstream_provider};

/// An app whose idle workers look for work every 50 ms and retry after 50 ms.
async fn app(workers: usize) -> TestApp {
    TestApp::builder()
        .configure(move |c| {
            c.task_workers = workers;
            c.task_poll_ms = 50;
            c.task_retry_base_ms = 50;
            c.task_lease_secs = 3;
        })
        .spawn()
        .await
}

async fn wait_status(app: &TestApp, id: &str, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (status, task) = json(app.get(&format!("/api/v1/tasks/{id}")).await).await;
        assert_eq!(status, 200, "{task}");
        if task["status"] == want {
            return task;
        }
        last = task;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {id} never became {want}: {last}");
}

#[tokio::test]
async fn seed_002_task_runs_to_completion_with_its_result() {
    let app = app(2).await;
    create(&app, json!({"name": "Doc agent", "key": "agent-123"})).await;
    // Seed 002's request, verbatim, on its own path spelling.
    let (status, task) = json(
        app.post(
            "/v1/tasks/",
            &json!({
                "title": "Process document",
                "description": "Extract key information from uploaded document",
                "agent_id": "agent-123",
                "priority": "high",
                "data": {
                    "document_url": "https://example.com/doc.pdf",
                    "extract_fields": ["name", "date", "amount"]
                }
            }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("task_"), "{task}");
    assert_eq!(task["priority"], "high");
    assert_eq!(task["agent_key"], "agent-123");
    assert_eq!(task["data"]["extract_fields"][2], "amount");
    assert!(
        ["pending", "running", "completed"].contains(&task["status"].as_str().unwrap()),
        "{task}"
    );

    let done = wait_status(&app, &id, "completed").await;
    let response = done["result"]["response"].as_str().unwrap();
    // The mock echoes its input: the prompt built from title, description and data.
    assert!(response.contains("Task: Process document"), "{response}");
    assert!(response.contains("Extract key information"), "{response}");
    assert!(
        response.contains("https://example.com/doc.pdf"),
        "{response}"
    );
    assert_eq!(done["result"]["model"], "mock/echo");
    assert!(done["result"]["run_id"].is_string(), "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["error"], Value::Null);
    assert!(done["started_at"].is_string() && done["completed_at"].is_string());

    // The run is in the run log, tagged with the task.
    let run_id = done["result"]["run_id"].as_str().unwrap();
    let mut run = Value::Null;
    for _ in 0..100 {
        let (status, r) = json(app.get(&format!("/api/v1/runs/{run_id}")).await).await;
        if status == 200 {
            run = r;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(run["log_meta"]["task_id"], id.as_str(), "{run}");

    // Listed, and filtered.
    let (_, list) = json(
        app.get("/v1/tasks/?status=completed&agent_id=agent-123&priority=high")
            .await,
    )
    .await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["tasks"][0]["id"], id.as_str());
    for query in ["status=pending", "priority=low", "agent_id=other-agent"] {
        let (_, list) = json(app.get(&format!("/api/v1/tasks?{query}")).await).await;
        assert_eq!(list["total"], 0, "{query}: {list}");
    }
}

#[tokio::test]
async fn bad_tasks_are_refused_clearly() {
    let app = app(0).await;
    create(&app, json!({"name": "A"})).await;
    for (body, field) in [
        (json!({"agent_id": "a"}), "title"),
        (json!({"title": "t"}), "agent_id"),
        (json!({"title": "  ", "agent_id": "a"}), "title"),
        (
            json!({"title": "t", "agent_id": "a", "priority": "urgent"}),
            "priority",
        ),
        (
            json!({"title": "t", "agent_id": "a", "max_attempts": 0}),
            "max_attempts",
        ),
        (
            json!({"title": "t", "agent_id": "a", "max_attempts": 11}),
            "max_attempts",
        ),
        (json!({"title": "t", "agent_id": "a", "data": [1]}), "data"),
        (
            json!({"title": "t", "agent_id": "a", "colour": "red"}),
            "colour",
        ),
    ] {
        let (status, err) = json(app.post("/api/v1/tasks", &body).await).await;
        let err = assert_error(status, &err, 400, "VALIDATION_ERROR");
        assert_eq!(err["details"]["field"], field, "{body}: {err}");
    }
    let (status, err) = json(
        app.post(
            "/api/v1/tasks",
            &json!({"title": "t", "agent_id": "nobody"}),
        )
        .await,
    )
    .await;
    assert_error(status, &err, 404, "AGENT_NOT_FOUND");
    let (status, err) = json(
        app.get("/api/v1/tasks/task_0193aaaaaaaaaaaaaaaaaaaaaaaaaaaa")
            .await,
    )
    .await;
    assert_error(status, &err, 404, "TASK_NOT_FOUND");
    let (status, err) = json(app.get("/api/v1/tasks/nope").await).await;
    assert_error(status, &err, 404, "TASK_NOT_FOUND");
    let (status, err) = json(app.post("/api/v1/tasks/nope/cancel", &json!({})).await).await;
    assert_error(status, &err, 404, "TASK_NOT_FOUND");
    let (status, err) = json(app.get("/api/v1/tasks?status=done").await).await;
    assert_error(status, &err, 400, "VALIDATION_ERROR");
    let (_, list) = json(app.get("/api/v1/tasks").await).await;
    assert_eq!(list["total"], 0, "nothing was stored: {list}");
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_task() {
    let app = app(0).await;
    create(&app, json!({"name": "A"})).await;
    let body = json!({"title": "once", "agent_id": "a", "idempotency_key": "order-42"});
    let (status, first) = json(app.post("/api/v1/tasks", &body).await).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = json(app.post("/api/v1/tasks", &body).await).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    // Another caller's same key is another task.
    let key = app.create_api_key(&["invoke"], None).await;
    let res = app
        .request_as(Some(&key), Method::POST, "/api/v1/tasks", Some(&body))
        .await;
    let (status, other) = json(res).await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["id"], first["id"]);
    let (_, list) = json(app.get("/api/v1/tasks").await).await;
    assert_eq!(list["total"], 2);
}

#[tokio::test]
async fn cancel_while_pending_and_while_running_closes_the_providers_stream() {
    // Pending: nothing runs tasks here.
    let app0 = app(0).await;
    create(&app0, json!({"name": "A"})).await;
    let (_, task) = json(
        app0.post("/api/v1/tasks", &json!({"title": "t", "agent_id": "a"}))
            .await,
    )
    .await;
    let id = task["id"].as_str().unwrap();
    let (status, cancelled) = json(
        app0.post(&format!("/api/v1/tasks/{id}/cancel"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["completed_at"].is_string());
    // Cancelling again returns it as it is.
    let (status, again) = json(
        app0.post(&format!("/api/v1/tasks/{id}/cancel"), &json!({}))
            .await,
    )
    .await;
    assert_eq!((status, again["status"].as_str()), (200, Some("cancelled")));

    // Running: the upstream holds the answer; the cancel drops the turn.
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::Stalled(
        Duration::from_secs(30),
        Box::new(Scripted::Text("too late".into())),
    ));
    let app = TestApp::builder()
        .configure(|c| {
            c.task_workers = 1;
            c.task_poll_ms = 50;
            c.provider_timeout_secs = 60;
            c.provider_max_retries = 0;
        })
        .spawn()
        .await;
    upstream_provider(&app, &fake).await;
    create(&app, json!({"name": "Slow", "model": "up/fake-echo"})).await;
    let (_, task) = json(
        app.post(
            "/api/v1/tasks",
            &json!({"title": "wait", "agent_id": "slow"}),
        )
        .await,
    )
    .await;
    let id = task["id"].as_str().unwrap().to_owned();
    wait_status(&app, &id, "running").await;
    for _ in 0..100 {
        if fake.request_count() == 1 && fake.open_connections() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fake.open_connections() >= 1, "the provider call is open");
    let (status, cancelled) = json(
        app.post(&format!("/api/v1/tasks/{id}/cancel"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["status"], "cancelled");
    let mut open = usize::MAX;
    for _ in 0..100 {
        open = fake.open_connections();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        open, 0,
        "the worker dropped the turn: the upstream saw its connection close"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, after) = json(app.get(&format!("/api/v1/tasks/{id}")).await).await;
    assert_eq!(after["status"], "cancelled", "{after}");
    assert_eq!(after["result"], Value::Null);
}

#[tokio::test]
async fn failures_are_retried_up_to_max_attempts() {
    let fake = FakeUpstream::start().await;
    let app = TestApp::builder()
        .configure(|c| {
            c.task_workers = 1;
            c.task_poll_ms = 20;
            c.task_retry_base_ms = 20;
            c.provider_max_retries = 0;
        })
        .spawn()
        .await;
    upstream_provider(&app, &fake).await;
    create(&app, json!({"name": "Flaky", "model": "up/fake-echo"})).await;

    // Fails once, then succeeds.
    fake.push(Scripted::Error(500));
    let (_, task) = json(
        app.post(
            "/api/v1/tasks",
            &json!({"title": "retry me", "agent_id": "flaky"}),
        )
        .await,
    )
    .await;
    let done = wait_status(&app, task["id"].as_str().unwrap(), "completed").await;
    assert_eq!(done["attempts"], 2, "{done}");
    assert!(
        done["result"]["response"]
            .as_str()
            .unwrap()
            .contains("retry me")
    );

    // Fails every time: failed after max_attempts, with the last error.
    fake.push_n(Scripted::Error(500), 2);
    let (_, task) = json(
        app.post(
            "/api/v1/tasks",
            &json!({"title": "doomed", "agent_id": "flaky", "max_attempts": 2}),
        )
        .await,
    )
    .await;
    let failed = wait_status(&app, task["id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["attempts"], 2, "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("500"),
        "{failed}"
    );
    assert_eq!(failed["result"], Value::Null);

    // Not before its run_at.
    let (_, task) = json(
        app.post(
            "/api/v1/tasks",
            &json!({"title": "later", "agent_id": "flaky", "run_at": "2099-01-01T00:00:00Z"}),
        )
        .await,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, later) = json(
        app.get(&format!("/api/v1/tasks/{}", task["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(later["status"], "pending", "{later}");
    assert_eq!(later["attempts"], 0);
}

#[tokio::test]
async fn a_task_whose_agent_is_gone_fails_without_retries() {
    let app = app(1).await;
    create(&app, json!({"name": "Gone"})).await;
    let run_at = (chrono::Utc::now() + chrono::Duration::milliseconds(500)).to_rfc3339();
    let (status, task) = json(
        app.post(
            "/api/v1/tasks",
            &json!({"title": "orphan", "agent_id": "gone", "run_at": run_at}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{task}");
    let (status, _) = json(app.delete("/api/v1/agents/gone").await).await;
    assert_eq!(status, 200);
    let failed = wait_status(&app, task["id"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["attempts"], 1, "not retried: {failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("not found"),
        "{failed}"
    );
}

#[tokio::test]
async fn callers_see_only_the_tasks_they_may() {
    let app = app(0).await;
    create(&app, json!({"name": "A"})).await;
    create(&app, json!({"name": "B"})).await;
    let (_, admin_task) = json(
        app.post(
            "/api/v1/tasks",
            &json!({"title": "by admin", "agent_id": "a"}),
        )
        .await,
    )
    .await;
    let invoker = app.create_api_key(&["invoke"], None).await;
    let limited = app.create_api_key(&["read", "invoke"], Some(&["b"])).await;
    let res = app
        .request_as(
            Some(&invoker),
            Method::POST,
            "/api/v1/tasks",
            Some(&json!({"title": "mine", "agent_id": "a"})),
        )
        .await;
    let (status, mine) = json(res).await;
    assert_eq!(status, 201, "{mine}");

    // An invoke-only key sees its own tasks only.
    let (status, list) = json(
        app.request_as(Some(&invoker), Method::GET, "/api/v1/tasks", None)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1);
    assert_eq!(list["tasks"][0]["id"], mine["id"]);
    let path = format!("/api/v1/tasks/{}", admin_task["id"].as_str().unwrap());
    let (status, err) = json(
        app.request_as(Some(&invoker), Method::GET, &path, None)
            .await,
    )
    .await;
    assert_error(status, &err, 404, "TASK_NOT_FOUND");

    // A key limited to agent b sees none of a's, and cannot queue work for a.
    let (_, list) = json(
        app.request_as(Some(&limited), Method::GET, "/api/v1/tasks", None)
            .await,
    )
    .await;
    assert_eq!(list["total"], 0, "{list}");
    let res = app
        .request_as(
            Some(&limited),
            Method::POST,
            "/api/v1/tasks",
            Some(&json!({"title": "x", "agent_id": "a"})),
        )
        .await;
    let (status, err) = json(res).await;
    assert_error(status, &err, 404, "AGENT_NOT_FOUND");
    let (status, err) = json(
        app.request_as(
            Some(&limited),
            Method::POST,
            &format!("{path}/cancel"),
            Some(&json!({})),
        )
        .await,
    )
    .await;
    assert_error(status, &err, 404, "TASK_NOT_FOUND");

    // A read-only key cannot create or cancel.
    let reader = app.create_api_key(&["read"], None).await;
    let res = app
        .request_as(
            Some(&reader),
            Method::POST,
            "/api/v1/tasks",
            Some(&json!({"title": "x", "agent_id": "a"})),
        )
        .await;
    let (status, err) = json(res).await;
    assert_error(status, &err, 403, "FORBIDDEN");
    let (status, list) = json(
        app.request_as(Some(&reader), Method::GET, "/api/v1/tasks", None)
            .await,
    )
    .await;
    assert_eq!((status, list["total"].as_u64()), (200, Some(2)));
}

#[tokio::test]
async fn two_replicas_run_each_task_exactly_once() {
    let Some(app) = crate::postgres_app(|c| {
        c.task_workers = 3;
        c.task_poll_ms = 50;
        c.rate_limit_per_minute = 100_000;
        c.rate_limit_burst = 10_000;
    })
    .await
    else {
        return;
    };
    let fake = FakeUpstream::start().await;
    upstream_provider(&app, &fake).await;
    create(&app, json!({"name": "Worker", "model": "up/fake-echo"})).await;
    let replica = app.replica().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..200 {
        let on = if n % 2 == 0 { &app } else { &replica };
        let (status, task) = json(
            on.post(
                "/api/v1/tasks",
                &json!({"title": format!("job-{n:03}"), "agent_id": "worker"}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 201, "{task}");
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    for _ in 0..600 {
        let (_, list) = json(app.get("/api/v1/tasks?status=completed&limit=1").await).await;
        if list["total"] == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, list) = json(app.get("/api/v1/tasks?status=completed&limit=1").await).await;
    assert_eq!(list["total"], 200, "every task completed");
    // Each task reached the upstream exactly once.
    let mut calls = std::collections::HashMap::new();
    for r in fake.requests() {
        let text = r.body.to_string();
        if let Some(start) = text.find("job-") {
            *calls.entry(text[start..start + 7].to_owned()).or_insert(0) += 1;
        }
    }
    assert_eq!(calls.len(), 200, "{calls:?}");
    assert!(calls.values().all(|n| *n == 1), "{calls:?}");
    // Both replicas worked: the worker's name starts with its replica's.
    let mut replicas = std::collections::HashSet::new();
    for id in &ids {
        let (_, t) = json(app.get(&format!("/api/v1/tasks/{id}")).await).await;
        assert_eq!(t["attempts"], 1, "{t}");
        let worker = t["worker"].as_str().unwrap();
        replicas.insert(worker.split('/').next().unwrap().to_owned());
    }
    assert_eq!(replicas.len(), 2, "{replicas:?}");
}

/// A replica that has never seen a task (its workers dormant: one looking every ten polls)
/// still runs the tasks created on another replica that runs none, which it learns of only
/// from the database on SQLite (no event crosses processes there); the first one wakes its
/// other workers.
#[tokio::test]
async fn a_dormant_replica_runs_tasks_created_on_another() {
    let runner = app(2).await;
    let creator = runner.replica_with(|c| c.task_workers = 0).await.unwrap();
    create(&creator, json!({"name": "Far", "key": "far"})).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let (status, task) = json(
            creator
                .post(
                    "/api/v1/tasks",
                    &json!({"title": format!("far-{n}"), "agent_id": "far"}),
                )
                .await,
        )
        .await;
        assert_eq!(status, 201, "{task}");
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let done = wait_status(&creator, id, "completed").await;
        let response = done["result"]["response"].as_str().unwrap();
        assert!(response.contains("Task: far-"), "{response}");
        assert_eq!(done["attempts"], 1, "{done}");
    }
}
