//! The OpenAPI 3.1 document, generated from the handlers and DTOs, served at `/openapi.json`
//! and browsable at `/docs` (Swagger UI, vendored: no network needed).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::openai;
use crate::routes::{
    agents, api_keys, auth, chat, clusters, conversations, evals, files, health, insights,
    knowledge, mcp_servers, metrics, optimizations, providers, runs, tasks, users, versions,
};

/// The whole API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agentry",
        description = "Define LLM agents once; serve, test, watch and improve them.\n\n\
            Every route under `/api/v1` is also served under the `/v1` alias, under `/compat/goagents/api/v1` in seed 004's `{\"success\", \"data\", \"message\", \"timestamp\"}` envelope (docs/clusters.md), and under `/compat/agents-api/api/v1` in seed 001's camelCase shapes (`content`, `llmModel`, `{\"data\", \"pagination\"}` lists; docs/agents.md); trailing slashes are ignored. \
            Errors use `{\"error\": {\"code\", \"message\", \"details\", \"request_id\"}}` and every response carries `X-Request-Id`.\n\n\
            Authenticate with `Authorization: Bearer <token>`: an access token from `POST /api/v1/auth/login`, or an API key (`agk_…`). \
            `/health`, `/ready`, `/docs`, `/openapi.json`, login and refresh are public; everything else needs a role or scope (see docs/security.md). \
            Rate-limited responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`; a refused request is 429 `RATE_LIMITED` with `Retry-After`. \
            A path and query over 16 KiB is 414 `URI_TOO_LONG`, more than 64 header lines or 64 KiB of headers 431 `HEADERS_TOO_LARGE`; a connection opened past the server's `max_connections` gets 503 `SERVICE_UNAVAILABLE` with `Retry-After` and is closed (`/health`, `/ready` and `/metrics` still answer).",
        license(name = "Apache-2.0")
    ),
    paths(
        health::health,
        health::ready,
        metrics::system_metrics,
        metrics::prometheus_metrics,
        clusters::create_cluster,
        clusters::list_clusters,
        clusters::get_cluster,
        clusters::apply_cluster,
        clusters::delete_cluster,
        clusters::scale_cluster,
        agents::create_agent,
        agents::list_agents,
        agents::get_agent,
        agents::patch_agent,
        agents::put_agent,
        agents::delete_agent,
        providers::create_provider,
        providers::list_providers,
        providers::get_provider,
        providers::patch_provider,
        providers::delete_provider,
        mcp_servers::create_mcp_server,
        mcp_servers::list_mcp_servers,
        mcp_servers::get_mcp_server,
        mcp_servers::put_mcp_server,
        mcp_servers::delete_mcp_server,
        mcp_servers::start_mcp_server,
        mcp_servers::stop_mcp_server,
        mcp_servers::restart_mcp_server,
        mcp_servers::mcp_server_logs,
        mcp_servers::mcp_server_tools,
        insights::agent_status,
        insights::agent_insights,
        insights::analyze_agent,
        optimizations::start_optimization,
        optimizations::list_optimizations,
        optimizations::get_optimization,
        optimizations::cancel_optimization,
        evals::list_testsets,
        evals::create_testset,
        evals::get_testset,
        evals::replace_testset,
        evals::patch_testset,
        evals::delete_testset,
        evals::list_cases,
        evals::add_case,
        evals::get_case,
        evals::replace_case,
        evals::delete_case,
        evals::export_cases,
        evals::import_cases,
        evals::start_eval_run,
        evals::list_eval_runs,
        evals::get_eval_run,
        evals::cancel_eval_run,
        evals::compare_eval_run,
        tasks::create_task,
        tasks::list_tasks,
        tasks::get_task,
        tasks::cancel_task,
        crate::ws::ws_events,
        crate::ws::ws_chat,
        runs::create_run,
        runs::list_runs,
        runs::get_run,
        chat::chat,
        chat::stream,
        chat::history,
        conversations::list_conversations,
        conversations::get_conversation,
        conversations::delete_conversation,
        files::upload_file,
        files::list_files,
        files::get_file,
        files::download_file,
        files::delete_file,
        knowledge::search_knowledge,
        versions::publish_version,
        versions::list_versions,
        versions::get_version,
        versions::restore_version,
        openai::responses::create_response,
        openai::responses::get_response,
        openai::responses::delete_response,
        openai::responses::list_input_items,
        openai::chat_completions::create_chat_completion,
        openai::models::list_models,
        openai::models::get_model,
        openai::agents::list_client_agents,
        openai::agents::get_client_agent,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::me,
        users::create_user,
        users::list_users,
        users::get_user,
        users::patch_user,
        users::delete_user,
        api_keys::create_api_key,
        api_keys::list_api_keys,
        api_keys::get_api_key,
        api_keys::revoke_api_key,
    ),
    components(schemas(
        crate::error::ErrorEnvelope,
        crate::schema::AgentStatusName,
        openai::responses::SortOrder,
        crate::routes::tasks::TaskStatusName
    )),
    modifiers(&BearerAuth, &ClientAliases, &CommonResponses, &RequestRules, &NoNul),
    security(("bearer" = [])),
    tags(
        (name = "ops", description = "Health and readiness"),
        (name = "tasks", description = "Asynchronous agent work, run by workers on any replica"),
        (name = "insights", description = "Agent status and conversation insights (seed 001)"),
        (name = "optimization", description = "Prompt optimisation: candidates measured on a test set, the best saved as a draft version"),
        (name = "evals", description = "Test sets and evaluation runs across configurations (seed 000)"),
        (name = "events", description = "The WebSocket event stream: task status, agent messages, system notifications"),
        (name = "ops", description = "Health, readiness and metrics"),
        (name = "clusters", description = "Clusters from AgentCluster manifests (JSON or YAML): apply, scale, delete (seed 004)"),
        (name = "agents", description = "Agent definitions"),
        (name = "providers", description = "LLM providers and their models"),
        (name = "mcp-servers", description = "MCP servers (stdio commands or remote streamable-HTTP endpoints): the resource, their supervision on this replica (start, stop, restart, logs) and their tools"),
        (name = "runs", description = "One-shot runs, logged with their log_meta"),
        (name = "chat", description = "Chat with agents, streaming, history and conversations"),
        (name = "knowledge", description = "Knowledge (RAG): searches of the indexed files' chunks, for debugging retrieval (docs/knowledge.md)"),
        (name = "files", description = "Uploaded files (seed 002): multipart uploads streamed to a local folder or an S3-compatible bucket, downloads with ranges"),
        (name = "versions", description = "Published agent versions: immutable, numbered snapshots"),
        (name = "openai", description = "OpenAI-compatible client API (`model` = agent key); also at /api/client/v1/responses and /api/client/v1/agents/responses"),
        (name = "auth", description = "Login, token refresh, logout and the current caller"),
        (name = "users", description = "User accounts (admins)"),
        (name = "api-keys", description = "Scoped API keys (admins)"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme (access tokens and `agk_…` API keys).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or agk_ API key")
                    .description(Some(
                        "An access token from POST /api/v1/auth/login, or an API key (agk_…)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The `/api/client/v1` spellings of the Responses routes (seed 003), described like their
/// `/v1` originals, with operation ids of their own.
struct ClientAliases;

impl Modify for ClientAliases {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let paths = &mut openapi.paths.paths;
        for (original, aliases) in [
            (
                "/v1/responses",
                &[
                    "/api/client/v1/responses",
                    "/api/client/v1/agents/responses",
                ][..],
            ),
            ("/v1/responses/{id}", &["/api/client/v1/responses/{id}"][..]),
            (
                "/v1/responses/{id}/input_items",
                &["/api/client/v1/responses/{id}/input_items"][..],
            ),
        ] {
            let Some(item) = paths.get(original).cloned() else {
                continue;
            };
            for (n, alias) in aliases.iter().enumerate() {
                let mut copy = item.clone();
                for op in operations(&mut copy) {
                    op.operation_id = op.operation_id.as_ref().map(|id| {
                        format!(
                            "{id}_client{}",
                            if n == 0 { String::new() } else { n.to_string() }
                        )
                    });
                }
                paths.insert((*alias).to_owned(), copy);
            }
        }
    }
}

/// The answers every route can give that the handlers do not list one by one: 401, 403 and
/// 429 on every route that needs a credential, 400 on every route with parameters or a body,
/// 413 and 415 on every route with a body, 414 and 431 (request head limits) everywhere, 503
/// (connection limit) everywhere but `/health`, `/ready` and `/metrics`, in the
/// error format of its surface; and `limit`/`offset` typed as the integers they are, with
/// their bounds (the handlers read them as text to name them in errors).
struct CommonResponses;

/// The operations of a path item.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let public = [
            "/health",
            "/ready",
            "/api/v1/auth/login",
            "/api/v1/auth/refresh",
        ];
        use crate::middleware::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES};
        let uri_too_long = format!(
            "The path and query are longer than {} KiB",
            MAX_URI_BYTES / 1024
        );
        let headers_too_large = format!(
            "The request has more than {MAX_HEADERS} header lines or {} KiB of headers",
            MAX_HEADER_BYTES / 1024
        );
        for (path, item) in &mut openapi.paths.paths {
            let openai = crate::permissions::is_openai_surface(path);
            let envelope = if openai {
                "OpenAiErrorEnvelope"
            } else {
                "ErrorEnvelope"
            };
            let error = |description: &str| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name(envelope)))
                                .build(),
                        )
                        .build(),
                )
            };
            let needs_credential = !public.contains(&path.as_str());
            // Routes that start a turn: a cluster agent with every instance busy (clusters.md).
            let starts_turns = [
                "/api/v1/agents/{agent}/chat",
                "/api/v1/agents/{agent}/stream",
                "/v1/responses",
                "/v1/chat/completions",
                "/api/client/v1/responses",
                "/api/client/v1/agents/responses",
            ]
            .contains(&path.as_str());
            // Served even past the connection limit (monitors' routes).
            let past_cap = ["/health", "/ready", "/metrics"].contains(&path.as_str());
            for op in operations(item) {
                let responses = &mut op.responses.responses;
                let mut add = |code: &str, description: &str| {
                    responses
                        .entry(code.to_owned())
                        .or_insert_with(|| error(description));
                };
                if needs_credential {
                    add(
                        "401",
                        "No credential, or an invalid, expired or revoked one",
                    );
                    add(
                        "403",
                        "The caller's role, scopes or agent allowlist do not allow this",
                    );
                    add(
                        "429",
                        "Too many requests (`Retry-After` says when to come back)",
                    );
                }
                if op.request_body.is_some()
                    || op.parameters.as_ref().is_some_and(|p| !p.is_empty())
                {
                    add(
                        "400",
                        "Invalid input: a parameter or the body is malformed or out of range",
                    );
                }
                if starts_turns {
                    add(
                        "503",
                        "Every instance of the cluster agent is busy, or the server is at its \
                         connection limit (`Retry-After` says when to retry)",
                    );
                } else if !past_cap {
                    add(
                        "503",
                        "The server is at its connection limit (`Retry-After` says when to retry \
                         on a new connection)",
                    );
                }
                add("414", &uri_too_long);
                add("431", &headers_too_large);
                if op.request_body.is_some() {
                    add("413", "The body is larger than `json_limit_bytes`");
                    add("415", "The body is not `application/json`");
                }
                for parameter in op.parameters.iter_mut().flatten() {
                    let RefOr::T(parameter) = parameter else {
                        continue;
                    };
                    let (minimum, maximum) = match parameter.name.as_str() {
                        // Chat history pages hold up to 200 messages, other lists 100 items.
                        "limit" if path.ends_with("/chat/history") => (1, 200),
                        "limit" => (1, agentry_domain::page::MAX_LIMIT as usize),
                        "offset" => (0, usize::MAX),
                        _ => continue,
                    };
                    parameter.schema = Some(RefOr::T(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(minimum))
                            .maximum(Some(maximum))
                            .into(),
                    ));
                }
            }
        }
    }
}

/// What the derive macros cannot say about request bodies: rules between fields (added to the
/// derived schemas), and bodies that may be left out.
struct RequestRules;

impl Modify for RequestRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // Bodies that may be left out (an empty body), though never `null`.
        for path in ["/api/v1/agents/{agent}/versions", "/api/v1/auth/logout"] {
            if let Some(utoipa::openapi::RefOr::T(body)) = openapi
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
                .and_then(|op| op.request_body.as_mut())
            {
                body.required = Some(utoipa::openapi::Required::False);
            }
        }
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (name, rules) in [
            ("ChatInput", chat::ChatInput::schema_rules()),
            ("RunInput", runs::RunInput::schema_rules()),
            (
                "ResourcePolicyInput",
                clusters::ResourcePolicyInput::schema_rules(),
            ),
        ] {
            if let Some(utoipa::openapi::RefOr::T(schema)) = components.schemas.get_mut(name) {
                crate::schema::add_rules(schema, rules);
            }
        }
    }
}

/// The server's NUL rule, said where requests are described: every string of a request body,
/// parameter or path holds no NUL (U+0000), nor does any key or free-form value (decision 55).
struct NoNul;

impl Modify for NoNul {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        let mut named = std::collections::BTreeSet::new();
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                if let Some(RefOr::T(body)) = op.request_body.as_mut() {
                    for content in body.content.values_mut() {
                        let RefOr::T(content) = content else {
                            continue;
                        };
                        if let Some(schema) = content.schema.as_mut() {
                            references(schema, &mut named);
                            crate::schema::forbid_nul(schema);
                        }
                    }
                }
                for parameter in op.parameters.iter_mut().flatten() {
                    let RefOr::T(parameter) = parameter else {
                        continue;
                    };
                    if let Some(schema) = parameter.schema.as_mut() {
                        references(schema, &mut named);
                        crate::schema::forbid_nul(schema);
                    }
                }
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        // And the schemas those name, and the ones these name in turn.
        let mut pending: Vec<String> = named.iter().cloned().collect();
        while let Some(name) = pending.pop() {
            let mut more = std::collections::BTreeSet::new();
            if let Some(schema) = components.schemas.get(&name) {
                references(schema, &mut more);
            }
            pending.extend(more.into_iter().filter(|n| named.insert(n.clone())));
        }
        for name in &named {
            if let Some(schema) = components.schemas.get_mut(name) {
                crate::schema::forbid_nul(schema);
            }
        }
        components.schemas.insert(
            <crate::schema::JsonValue as utoipa::ToSchema>::name().into_owned(),
            <crate::schema::JsonValue as utoipa::PartialSchema>::schema(),
        );
    }
}

/// The components `schema` names (`#/components/schemas/<name>`), added to `names`.
fn references(
    schema: &utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    names: &mut std::collections::BTreeSet<String>,
) {
    fn walk(value: &serde_json::Value, names: &mut std::collections::BTreeSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v.as_str()) {
                        ("$ref", Some(r)) => {
                            if let Some(name) = r.strip_prefix("#/components/schemas/") {
                                names.insert(name.to_owned());
                            }
                        }
                        _ => walk(v, names),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, names)),
            _ => {}
        }
    }
    if let Ok(value) = serde_json::to_value(schema) {
        walk(&value, names);
    }
}

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document serialised, built on the first request for it and shared by every worker
/// afterwards. Built eagerly, as Swagger UI's `url(…, document())` did in each worker's app
/// factory, it cost every idle server the document twice over and the start-up run of its
/// generated code (decision 96).
fn document_json() -> Result<&'static actix_web::web::Bytes, &'static str> {
    static JSON: std::sync::OnceLock<Result<actix_web::web::Bytes, String>> =
        std::sync::OnceLock::new();
    JSON.get_or_init(|| {
        serde_json::to_vec(&document())
            .map(actix_web::web::Bytes::from)
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(String::as_str)
}

/// `GET /openapi.json`.
pub(crate) async fn serve_document() -> actix_web::HttpResponse {
    match document_json() {
        Ok(json) => actix_web::HttpResponse::Ok()
            .content_type(actix_web::http::header::ContentType::json())
            .body(json.clone()),
        Err(e) => actix_web::ResponseError::error_response(&crate::error::ApiError::new(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            format!("the OpenAPI document cannot be serialised: {e}"),
        )),
    }
}
