//! Seed 004's own clients (its JavaScript and Python examples) read `response["data"]…` from a
//! `{"success", "data", "message", "timestamp"}` envelope. Under [`COMPAT_PREFIX`] every
//! management route answers in that envelope, errors included (decision 76):
//!
//! - `/compat/goagents/api/v1/…` is the same route table as `/api/v1/…`, the same handlers and
//!   permissions; a JSON answer is wrapped: success → `{"success": true, "data": <body>,
//!   "message"?, "timestamp"}` (a body's own `message` is lifted beside `data`), error →
//!   `{"success": false, "error": {"code", "message", "details", "request_id"}, "timestamp"}`.
//!   Server-Sent Events and other non-JSON answers pass through.
//! - `/compat/goagents/health` and `/ready` answer as seed 004 shows them (not wrapped).
//! - Those clients send no `Authorization` header of their own; a credential in the base URL
//!   (`http://agk_…:@host/compat/goagents`, or `http://key:agk_…@host/…`) reaches the server as
//!   HTTP Basic, which the authentication middleware accepts under this prefix only.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use chrono::Utc;
use serde_json::{Map, Value, json};

/// Where seed 004's clients are served.
pub const COMPAT_PREFIX: &str = "/compat/goagents";

/// The routes of the mount.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(COMPAT_PREFIX)
            .configure(crate::routes::health::configure)
            .service(web::scope("/api/v1").configure(crate::routes::configure_api)),
    );
}

/// Whether `path` is under the mount's API (its answers are wrapped).
fn wrapped(path: &str) -> bool {
    path.strip_prefix(COMPAT_PREFIX)
        .and_then(|rest| rest.strip_prefix("/api/"))
        .is_some()
}

/// The path without the mount's prefix, for the permission table (`/compat/goagents/x` →
/// `/x`); other paths unchanged.
pub fn canonical(path: &str) -> &str {
    match path.strip_prefix(COMPAT_PREFIX) {
        Some(rest) if rest.starts_with('/') => rest,
        Some("") => "/",
        _ => path,
    }
}

/// The envelope of one answer.
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

/// The middleware (outermost, so that authentication and rate-limit errors are wrapped too):
/// wraps the JSON answers of the mount's API; everything else passes through untouched.
pub async fn wrap(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !wrapped(req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
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
    let wrapped = serde_json::to_vec(&envelope(ok, value)).unwrap_or_default();
    head.headers_mut().remove(CONTENT_LENGTH);
    head.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let res = head.set_body(BoxBody::new(wrapped));
    Ok(ServiceResponse::new(req, res))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_envelopes() {
        assert!(wrapped("/compat/goagents/api/v1/clusters"));
        assert!(!wrapped("/compat/goagents/health"));
        assert!(!wrapped("/api/v1/clusters"));
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
}
