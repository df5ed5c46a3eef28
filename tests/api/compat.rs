//! Seed 004's compatibility mount (`/compat/goagents`): every seed-004 route in the
//! `{"success", "data", "message", "timestamp"}` envelope, errors included; and seed 004's own
//! Python client, run unchanged but for its base URL.

use std::process::Command;

use agentry_test_harness::{TestApp, json};
use reqwest::Method;
use serde_json::json;

use crate::seed_app;

const PREFIX: &str = "/compat/goagents";

fn manifest() -> serde_json::Value {
    json!({"apiVersion": "goagents.dev/v1", "kind": "AgentCluster",
        "metadata": {"name": "my-cluster", "namespace": "default"},
        "spec": {"resource_policy": {"max_concurrent_agents": 5, "idle_timeout": "300s", "scale_to_zero": true},
            "agents": [{"name": "assistant", "provider": "anthropic", "model": "claude-sonnet-4",
                "system_prompt": "You are a helpful assistant.", "tools": []}]}})
}

#[tokio::test]
async fn every_seed_004_route_answers_in_its_envelope() {
    let app = seed_app().await;
    let (status, created) = json(
        app.post(&format!("{PREFIX}/api/v1/clusters"), &manifest())
            .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["success"], true);
    assert_eq!(created["data"]["name"], "my-cluster");
    assert!(
        created["data"]["cluster_id"]
            .as_str()
            .unwrap()
            .starts_with("cluster_")
    );
    assert_eq!(created["message"], "Cluster deployed");
    assert!(created["timestamp"].as_str().unwrap().ends_with('Z'));

    let (_, list) = json(app.get(&format!("{PREFIX}/api/v1/clusters")).await).await;
    assert_eq!(list["data"]["clusters"][0]["name"], "my-cluster");
    let (_, one) = json(
        app.get(&format!("{PREFIX}/api/v1/clusters/my-cluster"))
            .await,
    )
    .await;
    assert_eq!(one["data"]["agents"][0]["name"], "assistant");
    let (_, agents) = json(
        app.get(&format!("{PREFIX}/api/v1/agents?cluster=my-cluster"))
            .await,
    )
    .await;
    assert_eq!(agents["data"]["agents"][0]["cluster"], "my-cluster");
    let (status, chat) = json(
        app.post(
            &format!("{PREFIX}/api/v1/agents/assistant/chat"),
            &json!({"message": "Hello, I need help with my billing account.", "conversation_id": "conv-456",
                "context": {"user_id": "user-789", "session_id": "session-101"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{chat}");
    assert_eq!(chat["data"]["conversation_id"], "conv-456");
    assert!(chat["data"]["response_time_ms"].is_u64());
    // The stream is Server-Sent Events, as seed 004 shows it: not wrapped.
    let res = app
        .post(
            &format!("{PREFIX}/api/v1/agents/assistant/stream"),
            &json!({"message": "Can you help me analyze this data?", "conversation_id": "conv-789"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let sse = res.text().await.unwrap();
    assert!(sse.contains("\"type\":\"end\""), "{sse}");
    let (_, scaled) = json(
        app.post(
            &format!("{PREFIX}/api/v1/clusters/my-cluster/scale"),
            &json!({"agent_name": "assistant", "instances": 5}),
        )
        .await,
    )
    .await;
    assert_eq!(scaled["data"]["target_instances"], 5);
    assert_eq!(scaled["message"], "Scaling operation completed");
    let (_, metrics) = json(app.get(&format!("{PREFIX}/api/v1/metrics")).await).await;
    assert_eq!(metrics["data"]["clusters"]["total"], 1);
    assert_eq!(metrics["data"]["requests"]["total"], 2);

    // Errors, the framework's and the authentication layer's included.
    let (status, missing) = json(app.get(&format!("{PREFIX}/api/v1/clusters/nope")).await).await;
    assert_eq!(status, 404);
    assert_eq!(missing["success"], false);
    assert_eq!(missing["error"]["code"], "CLUSTER_NOT_FOUND");
    assert!(missing["error"]["message"].is_string());
    assert!(missing["timestamp"].is_string());
    let (status, exists) = json(
        app.post(&format!("{PREFIX}/api/v1/clusters"), &manifest())
            .await,
    )
    .await;
    assert_eq!(
        (status, &exists["error"]["code"]),
        (409, &json!("CLUSTER_EXISTS"))
    );
    let (status, anonymous) = json(
        app.request_as(
            None,
            Method::GET,
            &format!("{PREFIX}/api/v1/clusters"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, &anonymous["success"]), (401, &json!(false)));
    assert_eq!(anonymous["error"]["code"], "UNAUTHORIZED");
    // HTTP Basic carries a credential on the mount only.
    let key = app.create_api_key(&["read"], None).await;
    for (path, want) in [
        (format!("{PREFIX}/api/v1/clusters"), 200),
        ("/api/v1/clusters".to_owned(), 401),
    ] {
        let res = app
            .anonymous_client()
            .get(app.url(&path))
            .basic_auth(&key, Some(""))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), want, "{path}");
    }
    let (status, nowhere) = json(app.get(&format!("{PREFIX}/api/v1/nowhere")).await).await;
    assert_eq!(
        (status, &nowhere["error"]["code"]),
        (404, &json!("NOT_FOUND"))
    );

    // Health and readiness as seed 004 shows them, and the canonical API unchanged.
    let (status, health) = json(
        app.request_as(None, Method::GET, &format!("{PREFIX}/health"), None)
            .await,
    )
    .await;
    assert_eq!((status, &health["status"]), (200, &json!("healthy")));
    let (_, canonical) = json(app.get("/api/v1/clusters/my-cluster").await).await;
    assert!(canonical.get("success").is_none() && canonical["name"] == "my-cluster");

    let (status, deleted) = json(
        app.delete(&format!("{PREFIX}/api/v1/clusters/my-cluster"))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(deleted["success"], true);
    assert_eq!(deleted["message"], "Cluster deleted successfully");
}

/// Seed 004's Python client, verbatim but for the base URL taken from the command line and
/// what it prints.
const SEED_004_PYTHON: &str = r#"
import requests
import json
import sys

class GoAgentsClient:
    def __init__(self, base_url="http://localhost:8080"):
        self.base_url = base_url
    
    def chat_with_agent(self, agent_id, message, conversation_id=None):
        url = f"{self.base_url}/api/v1/agents/{agent_id}/chat"
        payload = {
            "message": message,
            "conversation_id": conversation_id
        }
        response = requests.post(url, json=payload)
        return response.json()
    
    def get_clusters(self):
        url = f"{self.base_url}/api/v1/clusters"
        response = requests.get(url)
        return response.json()

# Usage
client = GoAgentsClient(sys.argv[1])

# Start a conversation
response = client.chat_with_agent(
    "assistant", 
    "Hello! Can you explain what GoAgents does?",
    "conv-001"
)

print("Agent response:", response["data"]["response"])
print("Clusters:", json.dumps([c["name"] for c in client.get_clusters()["data"]["clusters"]]))
missing = client.chat_with_agent("nobody", "hi")
print("Error:", missing["success"], missing["error"]["code"])
"#;

#[tokio::test]
async fn seed_004_python_client_works_by_changing_only_its_base_url() {
    let python = std::env::var("AGENTRY_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let has_requests = Command::new(&python)
        .args(["-c", "import requests"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_requests,
        "this test runs seed 004's Python client: it needs python3 with the `requests` package \
         (scripts/mcp-servers.sh installs it and exports AGENTRY_TEST_PYTHON)"
    );
    let app: TestApp = seed_app().await;
    let (status, _) = json(app.post("/api/v1/clusters", &manifest()).await).await;
    assert_eq!(status, 201);
    let key = app.create_api_key(&["read", "invoke"], None).await;
    let dir = tempfile_dir();
    let script = dir.join("goagents_client.py");
    std::fs::write(&script, SEED_004_PYTHON).unwrap();
    // The credential rides in the base URL: the client sends it as HTTP Basic (requests
    // sends URL credentials only with a password part, hence the `:`).
    let base_url = format!("http://{key}:@{}{PREFIX}", app.addr());
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&base_url)
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "Agent response: Hello! Can you explain what GoAgents does?",
            "Clusters: [\"my-cluster\"]",
            "Error: False AGENT_NOT_FOUND",
        ]
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh temporary folder (the tests crate has no tempfile dependency).
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "agentry-compat-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const SEED_001: &str = "/compat/agents-api";

/// Seed 001's own shapes under `/compat/agents-api`: its request examples, answered in
/// camelCase with `content`/`llmModel`, lists as `data` + `pagination`, errors with
/// `details: {"<field>": "<reason>"}`, status and insights included.
#[tokio::test]
async fn seed_001_routes_answer_in_its_shapes() {
    let app = seed_app().await;
    let (status, created) = json(
        app.post(
            &format!("{SEED_001}/api/v1/agents"),
            &json!({"name": "Customer Support", "content": "You are a helpful customer support agent...",
                "llmModel": "gpt-4o", "description": "Main support chatbot", "tags": ["support", "production"],
                "maxTokens": 300}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert!(created["id"].as_str().unwrap().starts_with("agent_"));
    assert_eq!(
        created["content"],
        "You are a helpful customer support agent..."
    );
    assert!(
        created["llmModel"].as_str().unwrap().ends_with("gpt-4o"),
        "{created}"
    );
    assert_eq!(created["maxTokens"], 300);
    assert_eq!(created["status"], "active");
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(created["updatedAt"].is_string());
    assert!(created.get("instructions").is_none() && created.get("created_at").is_none());
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, list) = json(
        app.get(&format!(
            "{SEED_001}/api/v1/agents?limit=20&offset=0&tags=support&status=active"
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["name"], "Customer Support");
    assert_eq!(
        list["pagination"],
        json!({"total": 1, "limit": 20, "offset": 0})
    );

    let (_, one) = json(app.get(&format!("{SEED_001}/api/v1/agents/{id}")).await).await;
    assert_eq!(
        one["content"],
        "You are a helpful customer support agent..."
    );
    let (status, patched) = json(
        app.patch(
            &format!("{SEED_001}/api/v1/agents/{id}"),
            &json!({"content": "Updated system prompt...", "tags": ["support", "v2"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["content"], "Updated system prompt...");
    assert!(patched["updatedAt"].is_string());

    let (status, st) = json(
        app.get(&format!("{SEED_001}/api/v1/agents/{id}/status"))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(st["optimizationState"], "idle");
    assert!(st["metrics"]["conversationCount"].is_u64());
    let (status, ins) = json(
        app.get(&format!("{SEED_001}/api/v1/agents/{id}/insights?days=30"))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ins["agentId"], id.as_str());
    assert!(ins["metrics"]["taskCompletion"].is_object());

    // Errors as seed 001 shows them.
    let (status, err) = json(
        app.post(
            &format!("{SEED_001}/api/v1/agents"),
            &json!({"name": "Bad", "content": "x", "llmModel": "no-such-model"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "VALIDATION_ERROR");
    assert!(err["error"]["details"]["llmModel"].is_string(), "{err}");
    let (status, err) = json(
        app.get(&format!("{SEED_001}/api/v1/agents/agent_nope"))
            .await,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "NOT_FOUND");
    assert!(err["error"]["message"].is_string());

    let (status, deleted) = json(app.delete(&format!("{SEED_001}/api/v1/agents/{id}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(deleted["success"], true);
    assert_eq!(deleted["message"], "Agent deleted");
    // The canonical API is unchanged.
    let (_, canonical) = json(app.get("/api/v1/agents").await).await;
    assert!(canonical["agents"].is_array() && canonical["total"].is_u64());
}
