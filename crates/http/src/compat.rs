//! Compatibility mounts: the same route table, the same handlers and permissions, answering in
//! the shapes a seed document's own clients read (decisions 76 and 108). One mechanism, one
//! [`Mount`] per seed:
//!
//! - **Seed 004** (`/compat/goagents`): its clients read `response["data"]…` from a
//!   `{"success", "data", "message", "timestamp"}` envelope. Success → `{"success": true,
//!   "data": <body>, "message"?, "timestamp"}` (a body's own `message` is lifted beside
//!   `data`), error → `{"success": false, "error": {"code", "message", "details",
//!   "request_id"}, "timestamp"}`. Those clients send no `Authorization` header of their own;
//!   a credential in the base URL (`http://agk_…:@host/compat/goagents`) reaches the server
//!   as HTTP Basic, which the authentication middleware accepts under this mount only.
//! - **Seed 001** (`/compat/agents-api`): camelCase fields (`content`, `llmModel`,
//!   `maxTokens`, `createdAt`), lists as `{"data": […], "pagination": {"total", "limit",
//!   "offset"}}`, errors as `{"error": {"code", "message", "details": {"<field>":
//!   "<reason>"}}}` with seed 001's `NOT_FOUND` for a missing agent.
//!
//! Under `<prefix>/api/v1/…` JSON answers are reshaped, errors of the layers above the
//! handlers included (authentication, rate limits); Server-Sent Events and other non-JSON
//! answers pass through. `<prefix>/health` and `/ready` answer as the canonical ones do.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use chrono::Utc;
use serde_json::{Map, Value, json};

/// Where seed 004's clients are served.
pub const COMPAT_PREFIX: &str = "/compat/goagents";
/// Where seed 001's clients are served.
pub const SEED_001_PREFIX: &str = "/compat/agents-api";

/// One compatibility mount.
pub struct Mount {
    /// Its path prefix.
    pub prefix: &'static str,
    /// Whether HTTP Basic credentials (a key in the base URL) are accepted under it.
    pub basic_auth: bool,
    /// Reshapes a JSON answer: `ok` for a 2xx status.
    shape: fn(ok: bool, body: Value) -> Value,
}

/// Every compatibility mount.
pub const MOUNTS: &[Mount] = &[
    Mount {
        prefix: COMPAT_PREFIX,
        basic_auth: true,
        shape: envelope,
    },
    Mount {
        prefix: SEED_001_PREFIX,
        basic_auth: false,
        shape: seed_001,
    },
];

/// The routes of every mount.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for m in MOUNTS {
        cfg.service(
            web::scope(m.prefix)
                .configure(crate::routes::health::configure)
                .service(web::scope("/api/v1").configure(crate::routes::configure_api)),
        );
    }
}

/// The mount `path` is under, and the rest of the path.
fn mount_of(path: &str) -> Option<(&'static Mount, &str)> {
    MOUNTS.iter().find_map(|m| {
        let rest = path.strip_prefix(m.prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some((m, rest))
    })
}

/// The mount whose API `path` is under (its answers are reshaped).
fn wrapped(path: &str) -> Option<&'static Mount> {
    mount_of(path).and_then(|(m, rest)| rest.starts_with("/api/").then_some(m))
}

/// Whether HTTP Basic credentials are accepted for `path`.
pub fn allows_basic(path: &str) -> bool {
    mount_of(path).is_some_and(|(m, _)| m.basic_auth)
}

/// The path without a mount's prefix, for the permission table (`/compat/goagents/x` →
/// `/x`); other paths unchanged.
pub fn canonical(path: &str) -> &str {
    match mount_of(path) {
        Some((_, "")) => "/",
        Some((_, rest)) => rest,
        None => path,
    }
}

/// Seed 004's envelope of one answer.
fn envelope(status_ok: bool, body: Value) -> Value {
    let timestamp = crate::routes::rfc3339(Utc::now());
    if status_ok {
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut out = Map::new();
        out.insert("success".to_owned(), Value::Bool(true));
        out.insert("data".to_owned(), body);
        if let Some(m) = message {
            out.insert("message".to_owned(), Value::String(m));
        }
        out.insert("timestamp".to_owned(), Value::String(timestamp));
        return Value::Object(out);
    }
    let error = match body.get("error") {
        Some(Value::Object(e)) => Value::Object(e.clone()),
        _ => json!({"code": "INTERNAL_ERROR", "message": "Unexpected answer"}),
    };
    json!({"success": false, "error": error, "timestamp": timestamp})
}

/// Members whose value is the caller's own data (or a JSON Schema): their keys are kept as
/// they are.
const OPAQUE: &[&str] = &[
    "metadata",
    "context",
    "variables",
    "parameters",
    "schema",
    "json_schema",
    "input_schema",
    "arguments",
    "headers",
    "env",
    "log_meta",
    "data",
    "expected",
    "input",
    "output",
    "result",
];

/// `snake_case` → `camelCase`.
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Seed 001's names for an agent's members.
fn agent_member(key: &str) -> String {
    match key {
        "instructions" => "content".to_owned(),
        "model" => "llmModel".to_owned(),
        other => camel(other),
    }
}

/// Whether `o` is an agent (an `agent_…` id with instructions and a model).
fn is_agent(o: &Map<String, Value>) -> bool {
    o.get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| id.starts_with("agent_"))
        && o.contains_key("instructions")
        && o.contains_key("model")
}

/// Every key camelCased (agents' with seed 001's names), opaque members kept as they are.
fn camel_case(value: Value) -> Value {
    match value {
        Value::Object(o) => {
            let agent = is_agent(&o);
            Value::Object(
                o.into_iter()
                    .map(|(k, v)| {
                        let v = if OPAQUE.contains(&k.as_str()) {
                            v
                        } else {
                            camel_case(v)
                        };
                        let k = if agent { agent_member(&k) } else { camel(&k) };
                        (k, v)
                    })
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(camel_case).collect()),
        other => other,
    }
}

/// The list in `o` (`{"<plural>": […], "total", "limit", "offset"}`), if it is one.
fn as_list(o: &Map<String, Value>) -> Option<(&Value, Value)> {
    let page = ["total", "limit", "offset"];
    if o.len() != 4 || !page.iter().all(|k| o.get(*k).is_some_and(Value::is_number)) {
        return None;
    }
    let items = o
        .iter()
        .find(|(k, v)| !page.contains(&k.as_str()) && v.is_array())?
        .1;
    Some((
        items,
        json!({"total": o["total"], "limit": o["limit"], "offset": o["offset"]}),
    ))
}

/// Seed 001's shape of one answer.
fn seed_001(status_ok: bool, body: Value) -> Value {
    if status_ok {
        if let Value::Object(o) = &body
            && let Some((items, pagination)) = as_list(o)
        {
            return json!({"data": camel_case(items.clone()), "pagination": pagination});
        }
        return camel_case(body);
    }
    let Some(Value::Object(e)) = body.get("error") else {
        return json!({"error": {"code": "INTERNAL_ERROR", "message": "Unexpected answer"}});
    };
    let code = match e.get("code").and_then(Value::as_str) {
        Some("AGENT_NOT_FOUND") | None => "NOT_FOUND",
        Some(c) => c,
    };
    let mut error = Map::new();
    error.insert("code".into(), json!(code));
    error.insert(
        "message".into(),
        e.get("message").cloned().unwrap_or_else(|| json!("")),
    );
    if let Some(Value::Object(d)) = e.get("details") {
        let mut details = Map::new();
        let mut rest = d.clone();
        if let (Some(Value::String(field)), Some(reason)) =
            (rest.remove("field"), rest.remove("reason"))
        {
            details.insert(agent_member(&field), reason);
        }
        for (k, v) in rest {
            details.insert(camel(&k), v);
        }
        error.insert("details".into(), Value::Object(details));
    }
    if let Some(id) = e.get("request_id") {
        error.insert("requestId".into(), id.clone());
    }
    json!({ "error": error })
}

/// The middleware (outermost, so that authentication and rate-limit errors are reshaped
/// too): reshapes the JSON answers of a mount's API; everything else passes through.
pub async fn wrap(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(mount) = wrapped(req.path()) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let res = next.call(req).await?;
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !is_json {
        return Ok(res.map_into_boxed_body());
    }
    let ok = res.status().is_success();
    let (req, res) = res.into_parts();
    let (mut head, body) = res.into_parts();
    let bytes = actix_web::body::to_bytes(body).await.unwrap_or_default();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let shaped = serde_json::to_vec(&(mount.shape)(ok, value)).unwrap_or_default();
    head.headers_mut().remove(CONTENT_LENGTH);
    head.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let res = head.set_body(BoxBody::new(shaped));
    Ok(ServiceResponse::new(req, res))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_envelopes() {
        assert!(wrapped("/compat/goagents/api/v1/clusters").is_some());
        assert!(wrapped("/compat/goagents/health").is_none());
        assert!(wrapped("/api/v1/clusters").is_none());
        assert!(wrapped("/compat/agents-api/api/v1/agents").is_some());
        assert!(allows_basic("/compat/goagents/api/v1/agents"));
        assert!(!allows_basic("/compat/agents-api/api/v1/agents"));
        assert_eq!(
            canonical("/compat/agents-api/api/v1/agents/a/status"),
            "/api/v1/agents/a/status"
        );
        assert_eq!(
            canonical("/compat/goagents/api/v1/agents"),
            "/api/v1/agents"
        );
        assert_eq!(canonical("/compat/goagents"), "/");
        assert_eq!(canonical("/compat/goagentsx"), "/compat/goagentsx");
        let ok = envelope(
            true,
            json!({"deleted": true, "message": "Cluster deleted successfully"}),
        );
        assert_eq!(ok["success"], true);
        assert_eq!(ok["message"], "Cluster deleted successfully");
        assert_eq!(ok["data"]["deleted"], true);
        let err = envelope(
            false,
            json!({"error": {"code": "CLUSTER_NOT_FOUND", "message": "Cluster not found"}}),
        );
        assert_eq!(err["success"], false);
        assert_eq!(err["error"]["code"], "CLUSTER_NOT_FOUND");
        assert!(err["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn seed_001_shapes() {
        let agent = json!({"id": "agent_1", "key": "k", "instructions": "Hi", "model": "mock/echo",
            "max_tokens": 5, "created_at": "t", "metadata": {"snake_key": 1},
            "config": {"top_p": 1.0}});
        let one = seed_001(true, agent.clone());
        assert_eq!(one["content"], "Hi");
        assert_eq!(one["llmModel"], "mock/echo");
        assert_eq!(one["maxTokens"], 5);
        assert_eq!(one["createdAt"], "t");
        assert_eq!(one["metadata"]["snake_key"], 1, "the caller's data is kept");
        assert_eq!(one["config"]["topP"], 1.0);
        let list = seed_001(
            true,
            json!({"agents": [agent], "total": 1, "limit": 20, "offset": 0}),
        );
        assert_eq!(list["data"][0]["content"], "Hi");
        assert_eq!(
            list["pagination"],
            json!({"total": 1, "limit": 20, "offset": 0})
        );
        let err = seed_001(
            false,
            json!({"error": {"code": "VALIDATION_ERROR", "message": "m",
            "details": {"field": "max_tokens", "reason": "too big", "max_value": 3}, "request_id": "r"}}),
        );
        assert_eq!(
            err["error"]["details"],
            json!({"maxTokens": "too big", "maxValue": 3})
        );
        assert_eq!(err["error"]["requestId"], "r");
        let missing = seed_001(
            false,
            json!({"error": {"code": "AGENT_NOT_FOUND", "message": "Agent not found"}}),
        );
        assert_eq!(
            missing,
            json!({"error": {"code": "NOT_FOUND", "message": "Agent not found"}})
        );
        assert_eq!(camel("avg_response_time"), "avgResponseTime");
        assert_eq!(camel("_x"), "_x");
    }
}
