//! The one route-permission table: method and path pattern → what the caller needs. The
//! authentication middleware looks every request up here (first match wins) before any
//! handler runs, so a new route is protected by the catch-all rows (reads need `Read`,
//! writes need `Write`) until it is given a row of its own.
//!
//! Patterns are matched on the path's segments: `{}` is exactly one segment, a final `*` is
//! any number of segments (none included: `/api/v1/users/*` matches `/api/v1/users`).
//! Paths of the `/v1` alias are looked up as their `/api/v1` spelling, except the
//! OpenAI-compatible surface, which lives at `/v1/…` itself.

use actix_web::http::Method;
pub use agentry_domain::auth::Requirement;

/// Which methods a row applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    /// Every method.
    Any,
    /// `GET` and `HEAD`.
    Read,
    /// `POST`.
    Post,
}

impl Methods {
    fn matches(self, method: &Method) -> bool {
        match self {
            Self::Any => true,
            Self::Read => method == Method::GET || method == Method::HEAD,
            Self::Post => method == Method::POST,
        }
    }
}

use Methods::{Any, Post, Read as Get};
use Requirement::{Admin, Authenticated, Invoke, Public, Read, Write};

/// Every rule, first match wins. Documented in `docs/security.md`.
pub const ROUTE_PERMISSIONS: &[(Methods, &str, Requirement)] = &[
    // Operations and documentation.
    (Get, "/health", Public),
    (Get, "/ready", Public),
    // Prometheus metrics name agents and providers: a credential that may read, unless
    // `metrics_public` (or a separate `metrics_addr` listener) makes them public.
    (Get, "/metrics", Read),
    (Get, "/docs", Public),
    (Get, "/docs/*", Public),
    (Get, "/openapi.json", Public),
    // Sessions.
    (Post, "/api/v1/auth/login", Public),
    (Post, "/api/v1/auth/refresh", Public),
    (Any, "/api/v1/auth/*", Authenticated),
    // Accounts and credentials: admins only.
    (Any, "/api/v1/users/*", Admin),
    (Any, "/api/v1/api-keys/*", Admin),
    // Providers and MCP servers hold credentials and run commands: admins change them.
    (Get, "/api/v1/providers/*", Read),
    (Any, "/api/v1/providers/*", Admin),
    // A server's standard error may hold anything: its log is for admins.
    (Get, "/api/v1/mcp-servers/{}/logs", Admin),
    (Get, "/api/v1/mcp-servers/*", Read),
    (Any, "/api/v1/mcp-servers/*", Admin),
    // Calling agents spends tokens.
    (Post, "/api/v1/runs", Invoke),
    // Tasks run agents: creating and cancelling need `Invoke`; reading them any caller
    // (an `invoke`-only key sees the tasks it created, others what they may read).
    (Post, "/api/v1/tasks", Invoke),
    (Post, "/api/v1/tasks/{}/cancel", Invoke),
    (Get, "/api/v1/tasks/*", Authenticated),
    // The event stream and WebSocket chat check each channel and agent themselves.
    (Get, "/api/v1/ws", Public),
    (Get, "/api/v1/agents/{}/ws", Public),
    (Post, "/api/v1/agents/{}/chat", Invoke),
    (Post, "/api/v1/agents/{}/stream", Invoke),
    // The OpenAI-compatible client API.
    (Any, "/v1/responses/*", Invoke),
    (Any, "/v1/chat/completions", Invoke),
    (Any, "/v1/models/*", Invoke),
    (Any, "/api/client/v1/*", Invoke),
    // OpenAI endpoints Agentry does not serve (`UNSERVED_OPENAI_RESOURCES`): whoever could
    // call the client API learns `404 unknown_url` in OpenAI's format, not a scope refusal.
    (Any, "/v1/assistants/*", Invoke),
    (Any, "/v1/audio/*", Invoke),
    (Any, "/v1/batches/*", Invoke),
    (Any, "/v1/chat/*", Invoke),
    (Any, "/v1/chatkit/*", Invoke),
    (Any, "/v1/completions/*", Invoke),
    (Any, "/v1/containers/*", Invoke),
    (Any, "/v1/edits/*", Invoke),
    (Any, "/v1/embeddings/*", Invoke),
    (Any, "/v1/engines/*", Invoke),
    (Any, "/v1/evals/*", Invoke),
    (Any, "/v1/fine-tunes/*", Invoke),
    (Any, "/v1/fine_tuning/*", Invoke),
    (Any, "/v1/images/*", Invoke),
    (Any, "/v1/moderations/*", Invoke),
    (Any, "/v1/organization/*", Invoke),
    (Any, "/v1/realtime/*", Invoke),
    (Any, "/v1/threads/*", Invoke),
    (Any, "/v1/uploads/*", Invoke),
    (Any, "/v1/vector_stores/*", Invoke),
    (Any, "/v1/videos/*", Invoke),
    // A knowledge search reads (its body is the query).
    (Post, "/api/v1/knowledge/search", Read),
    // Everything else: reads and writes of the management API.
    (Get, "/*", Read),
    (Any, "/*", Write),
];

/// OpenAI API resources (the first segment after `/v1`) that Agentry does not serve. They
/// belong to the OpenAI surface so that an SDK pointed at Agentry gets `404 unknown_url` in
/// OpenAI's format instead of a management-API answer. Left out on purpose: `files` (seed
/// 002's management files API lives at `/v1/files`) and `conversations` (Agentry's
/// management conversations at `/v1/conversations`); the `/v1` management aliases are never
/// shadowed. `chat` covers what lies beside the served `/v1/chat/completions`. Documented
/// in `docs/openai-compatibility.md`.
pub const UNSERVED_OPENAI_RESOURCES: &[&str] = &[
    "assistants",
    "audio",
    "batches",
    "chat",
    "chatkit",
    "completions",
    "containers",
    "edits",
    "embeddings",
    "engines",
    "evals",
    "fine-tunes",
    "fine_tuning",
    "images",
    "moderations",
    "organization",
    "realtime",
    "threads",
    "uploads",
    "vector_stores",
    "videos",
];

/// Whether `path` is under `prefix` (the prefix itself included).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether `path` names an OpenAI endpoint Agentry does not serve (see
/// [`UNSERVED_OPENAI_RESOURCES`]).
pub fn is_unserved_openai(path: &str) -> bool {
    path.strip_prefix("/v1/").is_some_and(|rest| {
        let first = rest.split('/').next().unwrap_or_default();
        UNSERVED_OPENAI_RESOURCES.contains(&first) && path != "/v1/chat/completions"
    })
}

/// Whether `path` belongs to the OpenAI-compatible client API (`/v1/responses…`,
/// `/v1/chat/completions`, `/v1/models…`, `/api/client/v1/…`, and the OpenAI endpoints
/// Agentry does not serve), whose errors use OpenAI's format
/// `{"error": {"message", "type", "param", "code"}}`.
pub fn is_openai_surface(path: &str) -> bool {
    under(path, "/v1/responses")
        || path == "/v1/chat/completions"
        || under(path, "/v1/models")
        || under(path, "/api/client/v1")
        || is_unserved_openai(path)
}

fn matches(pattern: &str, path: &str) -> bool {
    let mut pattern = pattern.split('/');
    let mut path = path.split('/');
    loop {
        match (pattern.next(), path.next()) {
            (Some("*"), _) => return true,
            (Some("{}"), Some(seg)) if !seg.is_empty() => {}
            (Some(p), Some(seg)) if p != "{}" && p == seg => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// What a request with `method` on `path` needs.
pub fn requirement(method: &Method, path: &str) -> Requirement {
    // The compatibility mounts have the rules of the routes they mount.
    let path = crate::compat::canonical(path);
    let canonical;
    let path = match path.strip_prefix("/v1/") {
        Some(rest) if !is_openai_surface(path) => {
            canonical = format!("/api/v1/{rest}");
            canonical.as_str()
        }
        _ => path,
    };
    ROUTE_PERMISSIONS
        .iter()
        .find(|(m, pattern, _)| m.matches(method) && matches(pattern, path))
        .map_or(Write, |(_, _, r)| *r)
}

/// A human-readable statement of what `req` needs, for 403 messages.
pub fn describe(req: Requirement) -> &'static str {
    match req {
        Requirement::Public | Requirement::Authenticated => "authentication",
        Requirement::Read => "role viewer, editor or admin, or an API key with scope 'read'",
        Requirement::Write => "role editor or admin, or an API key with scope 'write'",
        Requirement::Invoke => {
            "role editor or admin, or an API key with scope 'invoke' (or 'write')"
        }
        Requirement::Admin => "role admin, or an API key with scope 'admin'",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lookups() {
        let cases: &[(Method, &str, Requirement)] = &[
            (Method::GET, "/health", Public),
            (Method::GET, "/ready", Public),
            (Method::GET, "/metrics", Read),
            (Method::GET, "/api/v1/metrics", Read),
            (Method::GET, "/api/v1/clusters/support", Read),
            (Method::PUT, "/api/v1/clusters/support", Write),
            (Method::POST, "/v1/clusters/support/scale", Write),
            (Method::GET, "/compat/goagents/health", Public),
            (Method::GET, "/compat/goagents/api/v1/clusters", Read),
            (
                Method::POST,
                "/compat/goagents/api/v1/agents/a/chat",
                Invoke,
            ),
            (Method::POST, "/compat/goagents/api/v1/users", Admin),
            (Method::POST, "/health", Write),
            (Method::GET, "/docs/", Public),
            (Method::GET, "/docs/swagger-ui.css", Public),
            (Method::GET, "/openapi.json", Public),
            (Method::POST, "/api/v1/auth/login", Public),
            (Method::POST, "/v1/auth/login", Public),
            (Method::POST, "/v1/auth/refresh", Public),
            (Method::GET, "/api/v1/auth/login", Authenticated),
            (Method::POST, "/api/v1/auth/logout", Authenticated),
            (Method::GET, "/v1/auth/me", Authenticated),
            (Method::GET, "/api/v1/users", Admin),
            (Method::GET, "/v1/users/user_1", Admin),
            (Method::POST, "/api/v1/api-keys", Admin),
            (Method::DELETE, "/api/v1/api-keys/key_1", Admin),
            (Method::GET, "/api/v1/providers", Read),
            (Method::POST, "/api/v1/providers", Admin),
            (Method::PATCH, "/v1/providers/local", Admin),
            (Method::POST, "/api/v1/mcp-servers/x/start", Admin),
            (Method::POST, "/api/v1/runs", Invoke),
            (Method::GET, "/api/v1/runs", Read),
            (Method::POST, "/api/v1/agents/support/chat", Invoke),
            (Method::POST, "/v1/agents/support/stream", Invoke),
            (Method::GET, "/api/v1/agents/support/chat/history", Read),
            (Method::POST, "/api/v1/agents", Write),
            (Method::PUT, "/v1/agents/x", Write),
            (Method::DELETE, "/api/v1/conversations/c", Write),
            (Method::GET, "/api/v1/agents", Read),
            (Method::POST, "/v1/responses", Invoke),
            (Method::GET, "/v1/responses/resp_1", Invoke),
            (Method::POST, "/v1/chat/completions", Invoke),
            (Method::GET, "/v1/models", Invoke),
            (Method::GET, "/api/client/v1/agents", Invoke),
            (Method::POST, "/api/client/v1/responses", Invoke),
            (Method::GET, "/nope", Read),
            (Method::POST, "/api/v1/nope", Write),
            (Method::POST, "/api/v1/usersx", Write),
            (Method::POST, "/v1/embeddings", Invoke),
            (Method::GET, "/v1/images/generations", Invoke),
            (Method::DELETE, "/v1/fine_tuning/jobs/x", Invoke),
            (Method::GET, "/v1/chat/completions/c1", Invoke),
            (Method::POST, "/api/v1/embeddings", Write),
            (Method::GET, "/v1/files", Read),
            (Method::DELETE, "/v1/conversations/c", Write),
        ];
        for (method, path, want) in cases {
            assert_eq!(requirement(method, path), *want, "{method} {path}");
        }
    }

    #[test]
    fn unserved_openai_resources_are_invoke_rows_and_shadow_no_management_alias() {
        // Every management resource the seeds put under `/v1`, served or not yet.
        let management = [
            "agents",
            "api-keys",
            "auth",
            "clusters",
            "conversations",
            "files",
            "mcp-servers",
            "metrics",
            "providers",
            "runs",
            "tasks",
            "testsets",
            "users",
            "ws",
        ];
        for name in UNSERVED_OPENAI_RESOURCES {
            assert!(!management.contains(name), "{name}");
            let path = format!("/v1/{name}");
            assert!(is_unserved_openai(&path), "{path}");
            assert_eq!(requirement(&Method::POST, &path), Invoke, "{path}");
            assert_eq!(
                requirement(&Method::GET, &format!("{path}/x/y")),
                Invoke,
                "{path}"
            );
        }
        assert!(!is_unserved_openai("/v1/chat/completions"));
    }

    #[test]
    fn openai_surface() {
        for p in [
            "/v1/responses",
            "/v1/responses/resp_1",
            "/v1/chat/completions",
            "/v1/models",
            "/v1/models/support",
            "/api/client/v1/agents",
            "/api/client/v1/responses",
            "/v1/embeddings",
            "/v1/audio/speech",
            "/v1/chat",
            "/v1/chat/completions/c1",
        ] {
            assert!(is_openai_surface(p), "{p}");
        }
        for p in [
            "/v1/agents",
            "/api/v1/agents",
            "/v1/responsesx",
            "/v1/embeddingsx",
            "/api/v1/embeddings",
            "/v1/files",
            "/v1/conversations",
            "/health",
        ] {
            assert!(!is_openai_surface(p), "{p}");
        }
    }
}
