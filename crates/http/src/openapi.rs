//! The OpenAPI 3.1 document, generated from the handlers and DTOs, served at `/openapi.json`
//! and browsable at `/docs` (Swagger UI, vendored: no network needed).

use utoipa::OpenApi;

use crate::openai;
use crate::routes::{agents, chat, conversations, health, providers, runs, versions};

/// The whole API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agentry",
        description = "Define LLM agents once; serve, test, watch and improve them.\n\n\
            Every route under `/api/v1` is also served under the `/v1` alias; trailing slashes are ignored. \
            Errors use `{\"error\": {\"code\", \"message\", \"details\", \"request_id\"}}` and every response carries `X-Request-Id`.",
        license(name = "Apache-2.0")
    ),
    paths(
        health::health,
        health::ready,
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
        runs::create_run,
        runs::list_runs,
        runs::get_run,
        chat::chat,
        chat::stream,
        chat::history,
        conversations::list_conversations,
        conversations::get_conversation,
        conversations::delete_conversation,
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
    ),
    components(schemas(crate::error::ErrorEnvelope)),
    tags(
        (name = "ops", description = "Health and readiness"),
        (name = "agents", description = "Agent definitions"),
        (name = "providers", description = "LLM providers and their models"),
        (name = "runs", description = "One-shot runs, logged with their log_meta"),
        (name = "chat", description = "Chat with agents, streaming, history and conversations"),
        (name = "versions", description = "Published agent versions: immutable, numbered snapshots"),
        (name = "openai", description = "OpenAI-compatible client API (`model` = agent key); also at /api/client/v1/responses and /api/client/v1/agents/responses"),
    )
)]
pub struct ApiDoc;

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
