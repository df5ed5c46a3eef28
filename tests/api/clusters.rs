//! Clusters from AgentCluster manifests (seed 004): create, apply (JSON and YAML), scale,
//! instances as concurrency slots, scale to zero, delete.

use std::time::{Duration, Instant};

use agentry_test_harness::{TestApp, json};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::{assert_error, create, seed_app};

/// Seed 004's manifest, verbatim.
fn seed_manifest() -> Value {
    json!({
      "apiVersion": "goagents.dev/v1",
      "kind": "AgentCluster",
      "metadata": {"name": "my-cluster", "namespace": "default"},
      "spec": {
        "resource_policy": {"max_concurrent_agents": 5, "idle_timeout": "300s", "scale_to_zero": true},
        "agents": [{
          "name": "assistant",
          "provider": "anthropic",
          "model": "claude-sonnet-4",
          "system_prompt": "You are a helpful assistant.",
          "tools": []
        }]
      }
    })
}

/// A manifest of one agent on `model` with `instances`, and no idle policy.
fn one_agent(name: &str, model: &str, instances: u32) -> Value {
    json!({
      "apiVersion": "agentry.dev/v1",
      "kind": "AgentCluster",
      "metadata": {"name": name},
      "spec": {"agents": [{"name": "worker", "model": model, "instances": instances}]}
    })
}

async fn put_yaml(app: &TestApp, path: &str, yaml: &str) -> (u16, Value) {
    let res = app
        .client()
        .put(app.url(path))
        .header(CONTENT_TYPE, "application/yaml")
        .body(yaml.to_owned())
        .send()
        .await
        .unwrap();
    json(res).await
}

#[tokio::test]
async fn seed_004_complete_chat_flow() {
    let app = seed_app().await;
    // 1. Deploy a cluster.
    let (status, created) = json(app.post("/api/v1/clusters", &seed_manifest()).await).await;
    assert_eq!(status, 201, "{created}");
    assert!(
        created["cluster_id"]
            .as_str()
            .unwrap()
            .starts_with("cluster_")
    );
    assert_eq!(created["name"], "my-cluster");
    assert_eq!(created["namespace"], "default");
    assert_eq!(created["status"], "running");
    assert_eq!(created["result"], "created");
    assert_eq!(
        created["resource_policy"],
        json!({"max_concurrent_agents": 5, "idle_timeout": "300s", "scale_to_zero": true})
    );
    assert_eq!(
        created["changes"],
        json!([{"agent": "assistant", "change": "created", "version": 1}])
    );
    let agent = &created["agents"][0];
    assert_eq!(agent["name"], "assistant");
    assert_eq!(agent["status"], "running");
    assert_eq!(agent["instances"], 1);
    assert_eq!(agent["provider"], "anthropic");
    assert_eq!(agent["model_name"], "claude-sonnet-4");

    // 2. List agents (across clusters, and filtered by cluster).
    let (_, agents) = json(app.get("/api/v1/agents").await).await;
    assert_eq!(agents["total"], 1);
    assert_eq!(agents["agents"][0]["key"], "assistant");
    assert_eq!(agents["agents"][0]["cluster"], "my-cluster");
    assert_eq!(
        agents["agents"][0]["instructions"],
        "You are a helpful assistant."
    );
    let (_, filtered) = json(app.get("/api/v1/agents?cluster=my-cluster").await).await;
    assert_eq!(filtered["total"], 1);
    let (_, list) = json(app.get("/api/v1/clusters").await).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["clusters"][0]["agents_count"], 1);

    // 3. Start a conversation, 4. continue it.
    for message in [
        "Hello! How can you help me?",
        "I need help with data analysis",
    ] {
        let (status, reply) = json(
            app.post(
                "/api/v1/agents/assistant/chat",
                &json!({"message": message, "conversation_id": "conv-001"}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["response"], message, "the mock echoes");
        assert_eq!(reply["conversation_id"], "conv-001");
    }

    // 5. Metrics.
    let (status, metrics) = json(app.get("/api/v1/metrics").await).await;
    assert_eq!(status, 200, "{metrics}");
    assert_eq!(metrics["requests"]["total"], 2);
    assert_eq!(metrics["requests"]["success_rate"], 1.0);
    assert_eq!(metrics["requests"]["requests_per_minute"], 2);
    assert!(
        metrics["requests"]["avg_response_time_ms"]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    assert_eq!(
        metrics["clusters"],
        json!({"total": 1, "running": 1, "scaling": 0, "idle": 0})
    );
    assert_eq!(
        metrics["agents"],
        json!({"total": 1, "active": 1, "idle": 0})
    );
    assert!(metrics["system"]["uptime_seconds"].as_u64().is_some());
    assert!(metrics["system"]["memory_usage_mb"].as_f64().unwrap() > 1.0);
    assert!(metrics["system"]["tokio_tasks"].as_u64().is_some());

    let (status, got) = json(app.get("/api/v1/clusters/my-cluster").await).await;
    assert_eq!(status, 200);
    assert_eq!(got["metrics"]["total_requests"], 2);
    assert_eq!(got["metrics"]["active_conversations"], 0);
    assert_eq!(got["agents"][0]["total_requests"], 2);
    assert!(got["metrics"]["avg_response_time_ms"].as_f64().is_some());
}

#[tokio::test]
async fn yaml_manifests_apply_and_applying_twice_changes_nothing() {
    let app = seed_app().await;
    let v1 = r#"
apiVersion: goagents.dev/v1
kind: AgentCluster
metadata:
  name: support
spec:
  resource_policy:
    max_concurrent_agents: 4
  agents:
    - name: intent-classifier
      provider: anthropic
      model: claude-sonnet-4
      system_prompt: Classify the intent.
      instances: 2
    - name: responder
      model: openai-prod/gpt-4o
      system_prompt: Answer politely.
"#;
    let (status, first) = put_yaml(&app, "/api/v1/clusters/support", v1).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["result"], "created");
    assert_eq!(first["agents"][0]["instances"], 2);
    assert_eq!(first["agents"][1]["instances"], 1);

    let (status, again) = put_yaml(&app, "/api/v1/clusters/support", v1).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["result"], "unchanged");
    assert!(
        again["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["change"] == "unchanged" && c["version"].is_null()),
        "{again}"
    );
    assert_eq!(again["generation"], first["generation"]);
    let (_, versions) = json(app.get("/api/v1/agents/responder/versions").await).await;
    assert_eq!(
        versions["total"], 1,
        "no new version for an unchanged agent"
    );

    // POST of an existing name is refused; PUT is how a cluster changes.
    let (status, body) = json(
        app.post(
            "/api/v1/clusters",
            &json!({"apiVersion": "goagents.dev/v1", "kind": "AgentCluster",
                "metadata": {"name": "support"}, "spec": {"agents": []}}),
        )
        .await,
    )
    .await;
    assert_error(status, &body, 409, "CLUSTER_EXISTS");

    // A changed manifest: one prompt changed, one agent gone, one new.
    let v2 = r#"
apiVersion: goagents.dev/v1
kind: AgentCluster
metadata: {name: support}
spec:
  resource_policy: {max_concurrent_agents: 4}
  agents:
    - name: intent-classifier
      provider: anthropic
      model: claude-sonnet-4
      system_prompt: Classify the intent, briefly.
    - name: escalation
      model: mock/echo
"#;
    let (status, changed) = put_yaml(&app, "/api/v1/clusters/support", v2).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["result"], "configured");
    assert_eq!(
        changed["changes"],
        json!([
            {"agent": "intent-classifier", "change": "updated", "version": 2},
            {"agent": "escalation", "change": "created", "version": 1},
            {"agent": "responder", "change": "archived", "version": null},
        ])
    );
    assert_eq!(
        changed["agents"][0]["instances"], 2,
        "instances left out of the manifest keep their number"
    );
    // What was applied is what is served: the client API answers from the new version.
    let (_, versions) = json(app.get("/api/v1/agents/intent-classifier/versions").await).await;
    assert_eq!(versions["total"], 2, "{versions}");
    assert_eq!(versions["versions"][0]["version"], 2);
    assert_eq!(
        versions["versions"][0]["agent"]["instructions"],
        "Classify the intent, briefly."
    );
    let (_, responder) = json(app.get("/api/v1/agents/responder").await).await;
    assert_eq!(responder["status"], "archived");
}

#[tokio::test]
async fn bad_manifests_are_refused_naming_the_field_and_change_nothing() {
    let app = seed_app().await;
    let post = |body: Value| {
        let app = &app;
        async move { json(app.post("/api/v1/clusters", &body).await).await }
    };
    let mut wrong_kind = seed_manifest();
    wrong_kind["kind"] = json!("Deployment");
    let (status, body) = post(wrong_kind).await;
    assert_eq!(
        assert_error(status, &body, 400, "VALIDATION_ERROR")["details"]["field"],
        "kind"
    );
    let mut unknown_model = seed_manifest();
    unknown_model["spec"]["agents"][0]["model"] = json!("no-such-model");
    let (status, body) = post(unknown_model).await;
    let err = assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert_eq!(err["details"]["field"], "spec.agents[0].model");
    assert!(err["details"]["available_models"].is_array(), "{body}");
    let mut twice = seed_manifest();
    let first = twice["spec"]["agents"][0].clone();
    twice["spec"]["agents"].as_array_mut().unwrap().push(first);
    let (status, body) = post(twice).await;
    assert_eq!(
        assert_error(status, &body, 400, "VALIDATION_ERROR")["details"]["field"],
        "spec.agents[1].name"
    );
    let mut typo = seed_manifest();
    typo["spec"]["agents"][0]["temprature"] = json!(0.5);
    let (status, body) = post(typo).await;
    let err = assert_error(status, &body, 400, "VALIDATION_ERROR");
    assert!(
        err["details"]["field"]
            .as_str()
            .unwrap()
            .contains("temprature"),
        "{body}"
    );
    let mut bad_timeout = seed_manifest();
    bad_timeout["spec"]["resource_policy"]["idle_timeout"] = json!("soon");
    let (status, body) = post(bad_timeout).await;
    assert_eq!(
        assert_error(status, &body, 400, "VALIDATION_ERROR")["details"]["field"],
        "spec.resource_policy.idle_timeout"
    );
    let mut zero = seed_manifest();
    zero["spec"]["agents"][0]["instances"] = json!(0);
    let (status, body) = post(zero).await;
    assert_eq!(
        assert_error(status, &body, 400, "VALIDATION_ERROR")["details"]["field"],
        "spec.agents[0].instances"
    );
    let (status, body) = put_yaml(&app, "/api/v1/clusters/x", "kind: [unclosed").await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body) = put_yaml(
        &app,
        "/api/v1/clusters/other-name",
        &serde_json::to_string(&seed_manifest()).unwrap(),
    )
    .await;
    assert_eq!(
        assert_error(status, &body, 400, "VALIDATION_ERROR")["details"]["field"],
        "metadata.name"
    );
    let res = app
        .client()
        .post(app.url("/api/v1/clusters"))
        .header(CONTENT_TYPE, "text/plain")
        .body("kind: AgentCluster")
        .send()
        .await
        .unwrap();
    let (status, body) = json(res).await;
    assert_error(status, &body, 415, "UNSUPPORTED_MEDIA_TYPE");

    // An agent key that belongs to an agent outside the cluster: 409, nothing created.
    create(&app, json!({"name": "assistant"})).await;
    let (status, body) = post(seed_manifest()).await;
    assert_eq!(
        assert_error(status, &body, 409, "CONFLICT")["details"]["field"],
        "spec.agents[0].name"
    );
    let (_, list) = json(app.get("/api/v1/clusters").await).await;
    assert_eq!(list["total"], 0, "{list}");
    let (_, agent) = json(app.get("/api/v1/agents/assistant").await).await;
    assert!(agent["cluster"].is_null(), "the other agent is untouched");

    let (status, body) = json(app.get("/api/v1/clusters/nope").await).await;
    assert_error(status, &body, 404, "CLUSTER_NOT_FOUND");
}

/// Sends a chat to `agent` and returns the status, the `Retry-After` header and the time
/// it took.
async fn timed_chat(app: &TestApp, agent: &str) -> (u16, Option<String>, Duration, Value) {
    let started = Instant::now();
    let res = app
        .post(
            &format!("/api/v1/agents/{agent}/chat"),
            &json!({"message": "hi"}),
        )
        .await;
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body) = json(res).await;
    (status, retry_after, started.elapsed(), body)
}

/// Waits (at most 5 s) until agent `index` of `cluster` runs `n` turns on `app`.
async fn wait_in_flight(app: &TestApp, cluster: &str, index: usize, n: u64) {
    for _ in 0..250 {
        let (_, c) = json(app.get(&format!("/api/v1/clusters/{cluster}")).await).await;
        if c["agents"][index]["in_flight"].as_u64() >= Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("agent {index} of {cluster} never had {n} turn(s) in flight");
}

#[tokio::test]
async fn one_instance_makes_a_second_call_wait_then_503_and_two_let_both_run() {
    let app = TestApp::builder()
        .configure(|c| c.instance_queue_timeout_ms = 400)
        .spawn()
        .await;
    let (status, body) = json(
        app.post("/api/v1/clusters", &one_agent("busy", "mock/slow-1500", 1))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let (a, b) = tokio::join!(timed_chat(&app, "worker"), async {
        wait_in_flight(&app, "busy", 0, 1).await;
        timed_chat(&app, "worker").await
    });
    assert_eq!(a.0, 200, "{}", a.3);
    let err = assert_error(b.0, &b.3, 503, "SERVICE_UNAVAILABLE");
    assert_eq!(b.1.as_deref(), Some("1"), "Retry-After");
    assert_eq!(err["details"]["retry_after_seconds"], 1);
    assert!(
        b.2 >= Duration::from_millis(380),
        "the second call waited in line before the 503: {:?}",
        b.2
    );
    let (_, cluster) = json(app.get("/api/v1/clusters/busy").await).await;
    assert_eq!(cluster["agents"][0]["in_flight"], 0);

    // The OpenAI-compatible surface takes the same slots.
    let (held, completion) = tokio::join!(timed_chat(&app, "worker"), async {
        wait_in_flight(&app, "busy", 0, 1).await;
        let res = app
            .post(
                "/v1/chat/completions",
                &json!({"model": "worker", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        let retry = res.headers().get("retry-after").cloned();
        let (status, body) = json(res).await;
        (status, retry, body)
    });
    assert_eq!(held.0, 200);
    assert_eq!(completion.0, 503, "{}", completion.2);
    assert!(
        completion.1.is_some(),
        "Retry-After on the OpenAI surface too"
    );
    assert!(
        completion.2["error"]["message"].is_string(),
        "{}",
        completion.2
    );

    // Two instances: both run.
    let (status, scaled) = json(
        app.post(
            "/api/v1/clusters/busy/scale",
            &json!({"agent_name": "worker", "instances": 2}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{scaled}");
    assert_eq!(
        (
            &scaled["current_instances"],
            &scaled["target_instances"],
            &scaled["previous_instances"]
        ),
        (&json!(2), &json!(2), &json!(1))
    );
    assert_eq!(scaled["message"], "Scaling operation completed");
    let (a, b) = tokio::join!(timed_chat(&app, "worker"), async {
        wait_in_flight(&app, "busy", 0, 1).await;
        timed_chat(&app, "worker").await
    });
    assert_eq!((a.0, b.0), (200, 200), "{} {}", a.3, b.3);
    assert!(
        b.2 < Duration::from_millis(1500 + 400),
        "the second ran beside the first, not after it: {:?}",
        b.2
    );

    // Scale errors.
    for (path, body, status, code) in [
        (
            "/api/v1/clusters/nope/scale",
            json!({"agent_name": "worker", "instances": 2}),
            404,
            "CLUSTER_NOT_FOUND",
        ),
        (
            "/api/v1/clusters/busy/scale",
            json!({"agent_name": "nobody", "instances": 2}),
            404,
            "AGENT_NOT_FOUND",
        ),
        (
            "/api/v1/clusters/busy/scale",
            json!({"agent_name": "worker", "instances": 0}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "/api/v1/clusters/busy/scale",
            json!({"instances": 3}),
            400,
            "VALIDATION_ERROR",
        ),
    ] {
        let (s, b) = json(app.post(path, &body).await).await;
        assert_error(s, &b, status, code);
    }
    let (_, cluster) = json(app.get("/api/v1/clusters/busy").await).await;
    assert_eq!(
        cluster["agents"][0]["instances"], 2,
        "refused scales change nothing"
    );
}

#[tokio::test]
async fn max_concurrent_agents_caps_the_cluster() {
    let app = TestApp::builder()
        .configure(|c| c.instance_queue_timeout_ms = 300)
        .spawn()
        .await;
    let manifest = json!({
      "apiVersion": "agentry.dev/v1", "kind": "AgentCluster", "metadata": {"name": "capped"},
      "spec": {"resource_policy": {"max_concurrent_agents": 1},
        "agents": [{"name": "a", "model": "mock/slow-1200", "instances": 3},
                   {"name": "b", "model": "mock/slow-1200", "instances": 3}]}
    });
    let (status, body) = json(app.post("/api/v1/clusters", &manifest).await).await;
    assert_eq!(status, 201, "{body}");
    let (a, b) = tokio::join!(timed_chat(&app, "a"), async {
        wait_in_flight(&app, "capped", 0, 1).await;
        timed_chat(&app, "b").await
    });
    assert_eq!(a.0, 200);
    assert_error(b.0, &b.3, 503, "SERVICE_UNAVAILABLE");
}

#[tokio::test]
async fn idle_agents_scale_to_zero_and_the_next_call_starts_them() {
    let app = TestApp::spawn().await;
    let manifest = json!({
      "apiVersion": "agentry.dev/v1", "kind": "AgentCluster", "metadata": {"name": "sleepy"},
      "spec": {"resource_policy": {"idle_timeout": "1s", "scale_to_zero": true},
        "agents": [{"name": "napper", "model": "mock/echo", "instances": 2}]}
    });
    let (status, body) = json(app.post("/api/v1/clusters", &manifest).await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["agents"][0]["status"], "running");
    assert_eq!(body["agents"][0]["current_instances"], 2);

    let mut idle = Value::Null;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, c) = json(app.get("/api/v1/clusters/sleepy").await).await;
        if c["agents"][0]["status"] == "idle" {
            idle = c;
            break;
        }
    }
    assert_eq!(
        idle["status"], "idle",
        "scaled to zero after idle_timeout: {idle}"
    );
    assert_eq!(idle["agents"][0]["current_instances"], 0);
    assert_eq!(idle["agents"][0]["instances"], 2, "the target is kept");
    let (_, m) = json(app.get("/api/v1/metrics").await).await;
    assert_eq!(m["agents"]["idle"], 1, "{m}");
    assert_eq!(m["clusters"]["idle"], 1, "{m}");

    // The cold start.
    let (status, _, _, reply) = timed_chat(&app, "napper").await;
    assert_eq!(status, 200, "{reply}");
    let (_, c) = json(app.get("/api/v1/clusters/sleepy").await).await;
    assert_eq!(c["status"], "running", "{c}");
    assert_eq!(c["agents"][0]["status"], "running");
    assert_eq!(c["agents"][0]["current_instances"], 2);
    assert_eq!(c["agents"][0]["cold_starts"], 1);
}

#[tokio::test]
async fn delete_archives_the_agents_and_applying_again_brings_them_back() {
    let app = seed_app().await;
    let (status, _) = json(app.post("/api/v1/clusters", &seed_manifest()).await).await;
    assert_eq!(status, 201);
    let (status, deleted) = json(app.delete("/api/v1/clusters/my-cluster").await).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["success"], true);
    assert_eq!(deleted["deleted"], true);
    assert_eq!(deleted["message"], "Cluster deleted successfully");
    assert_eq!(deleted["archived_agents"], json!(["assistant"]));
    let (status, body) = json(app.get("/api/v1/clusters/my-cluster").await).await;
    assert_error(status, &body, 404, "CLUSTER_NOT_FOUND");
    let (_, agent) = json(app.get("/api/v1/agents/assistant").await).await;
    assert_eq!(agent["status"], "archived");
    let (status, body) = json(
        app.post("/api/v1/agents/assistant/chat", &json!({"message": "hi"}))
            .await,
    )
    .await;
    assert_eq!(status, 409, "an archived agent does not answer: {body}");
    let (status, again) = json(app.delete("/api/v1/clusters/my-cluster").await).await;
    assert_eq!((status, &again["deleted"]), (200, &json!(false)));

    let (status, back) = json(app.post("/api/v1/clusters", &seed_manifest()).await).await;
    assert_eq!(status, 201, "{back}");
    assert_eq!(back["changes"][0]["change"], "updated", "{back}");
    let (_, agent) = json(app.get("/api/v1/agents/assistant").await).await;
    assert_eq!(agent["status"], "active");
    let (status, _) = json(
        app.post("/api/v1/agents/assistant/chat", &json!({"message": "hi"}))
            .await,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn concurrent_applies_of_one_cluster_get_scaling_in_progress() {
    let app = TestApp::spawn().await;
    let agents: Vec<Value> = (0..25)
        .map(|i| json!({"name": format!("agent-{i}"), "model": "mock/echo"}))
        .collect();
    let manifest = json!({"apiVersion": "agentry.dev/v1", "kind": "AgentCluster",
        "metadata": {"name": "big"}, "spec": {"agents": agents}});
    let results =
        futures_util::future::join_all((0..4).map(|_| app.put("/api/v1/clusters/big", &manifest)))
            .await;
    let mut statuses = Vec::new();
    for res in results {
        let (status, body) = json(res).await;
        if status == 409 {
            assert_error(status, &body, 409, "SCALING_IN_PROGRESS");
        } else {
            assert!(status == 200 || status == 201, "{status} {body}");
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&201), "{statuses:?}");
    assert!(
        statuses.contains(&409),
        "applies racing the first get 409 SCALING_IN_PROGRESS: {statuses:?}"
    );
    let (_, c) = json(app.get("/api/v1/clusters/big").await).await;
    assert_eq!(c["agents_count"], 25);
}

#[tokio::test]
async fn a_scale_on_one_replica_reaches_the_other() {
    let app = TestApp::builder()
        .configure(|c| c.instance_queue_timeout_ms = 200)
        .spawn()
        .await;
    let replica = app.replica().await.unwrap();
    let (status, body) = json(
        app.post(
            "/api/v1/clusters",
            &one_agent("shared", "mock/slow-1000", 1),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The replica loads the new cluster and enforces its one instance by itself.
    let mut seen = Value::Null;
    for _ in 0..30 {
        let (status, c) = json(replica.get("/api/v1/clusters/shared").await).await;
        if status == 200 && c["agents"][0]["current_instances"] == 1 {
            seen = c;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["scope"], "replica", "{seen}");
    let (a, b) = tokio::join!(timed_chat(&replica, "worker"), async {
        wait_in_flight(&replica, "shared", 0, 1).await;
        timed_chat(&replica, "worker").await
    });
    assert_eq!((a.0, b.0), (200, 503), "{} {}", a.3, b.3);

    let (status, _) = json(
        app.post(
            "/api/v1/clusters/shared/scale",
            &json!({"agent_name": "worker", "instances": 3}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let mut current = Value::Null;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, c) = json(replica.get("/api/v1/clusters/shared").await).await;
        current = c["agents"][0]["current_instances"].clone();
        if current == 3 {
            break;
        }
    }
    assert_eq!(current, 3, "the scale reached the other replica within 3 s");
}

#[tokio::test]
async fn scale_to_zero_stops_the_agents_mcp_server_and_the_cold_start_brings_it_back() {
    let Some(time) = crate::mcp_live::time_server() else {
        return;
    };
    let app = TestApp::builder()
        .configure(|c| {
            c.mcp_stop_grace_secs = 1;
            c.mcp_start_timeout_secs = 30;
        })
        .spawn()
        .await;
    let (status, body) = json(
        app.post(
            "/api/v1/mcp-servers",
            &json!({"name": "Time", "slug": "time",
                "config": {"command": time, "args": ["--local-timezone", "UTC"]}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let manifest = json!({
      "apiVersion": "agentry.dev/v1", "kind": "AgentCluster", "metadata": {"name": "clocks"},
      "spec": {"resource_policy": {"idle_timeout": "2s", "scale_to_zero": true},
        "agents": [{"name": "clock", "model": "mock/echo",
                    "tools": [{"type": "mcp", "server": "time"}]}]}
    });
    let (status, body) = json(app.post("/api/v1/clusters", &manifest).await).await;
    assert_eq!(status, 201, "{body}");
    // A turn starts the agent's MCP server (its tools are offered to the model).
    let (status, _, _, reply) = timed_chat(&app, "clock").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(mcp_status(&app, "time").await, "running");
    // Idle for its timeout: the agent scales to zero and its server is stopped.
    let mut seen = (String::new(), String::new());
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, c) = json(app.get("/api/v1/clusters/clocks").await).await;
        seen = (
            c["agents"][0]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            mcp_status(&app, "time").await,
        );
        if seen.0 == "idle" && seen.1 == "stopped" {
            break;
        }
    }
    assert_eq!(seen, ("idle".to_owned(), "stopped".to_owned()));
    // The next call starts both again.
    let (status, _, _, reply) = timed_chat(&app, "clock").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(mcp_status(&app, "time").await, "running");
    let (_, c) = json(app.get("/api/v1/clusters/clocks").await).await;
    assert_eq!(c["agents"][0]["status"], "running");
    assert_eq!(c["agents"][0]["cold_starts"], 1);
}

/// The status of an MCP server on the app's replica.
async fn mcp_status(app: &TestApp, slug: &str) -> String {
    let (_, s) = json(app.get(&format!("/api/v1/mcp-servers/{slug}")).await).await;
    s["status"].as_str().unwrap_or_default().to_owned()
}
