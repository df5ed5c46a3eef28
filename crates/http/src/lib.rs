//! Agentry's HTTP adapter: actix-web handlers, DTOs, error mapping, middleware and the
//! OpenAPI document. It depends on the domain only; the server crate gives it the services.

pub mod auth;
pub mod compat;
pub mod connections;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openai;
pub mod openapi;
pub mod permissions;
pub mod ratelimit;
pub mod routes;
pub mod schema;
pub mod sse;
pub mod ws;

pub use auth::{Caller, Principal, principal};
pub use permissions::is_openai_surface;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpRequest, web};
use agentry_domain::ports::HealthProbe;
use agentry_domain::services::{
    AgentService, AuthService, McpServerService, ProviderRegistry, Runtime, VersionService,
};
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::extract::{BodyLimits, path_error, query_error};

/// What the handlers need: the use-case services and a few facts about the server.
#[derive(Clone)]
pub struct AppState {
    /// Agent definitions.
    pub agents: AgentService,
    /// Providers and model resolution.
    pub providers: ProviderRegistry,
    /// Runs, chat, history and conversations.
    pub runtime: Runtime,
    /// Published agent versions.
    pub versions: VersionService,
    /// Registered MCP servers.
    pub mcp_servers: McpServerService,
    /// Tasks.
    pub tasks: agentry_domain::services::TaskService,
    /// Test sets and evaluation runs.
    pub evals: agentry_domain::services::EvalService,
    /// Agent status and conversation insights.
    pub insights: agentry_domain::services::InsightService,
    /// Prompt optimisations.
    pub optimizations: agentry_domain::services::OptimizationService,
    /// Uploaded files.
    pub files: agentry_domain::services::FileService,
    /// Knowledge searches.
    pub knowledge: agentry_domain::services::KnowledgeService,
    /// The event bus (WebSocket subscriptions).
    pub events: Arc<dyn agentry_domain::event::EventBus>,
    /// Database reachability, for `/ready`.
    pub health: Arc<dyn HealthProbe>,
    /// The server's version, for `/health`.
    pub version: String,
    /// Users, sessions, API keys; authenticates every request.
    pub auth: AuthService,
    /// Development only (loopback addresses): every request is the admin `anonymous-dev`.
    pub auth_disabled: bool,
    /// Request-rate and concurrency counters, shared by every worker.
    pub rate_limits: Arc<ratelimit::RateLimits>,
    /// Clusters and the slots of their agents.
    pub clusters: agentry_domain::services::ClusterService,
    /// What turns count (`/metrics`, `/api/v1/metrics`).
    pub metrics: agentry_domain::metrics::Metrics,
    /// How `/metrics` is served (name prefix, public or not).
    pub prometheus: routes::metrics::PrometheusSettings,
}

/// HTTP-level settings.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// Largest JSON body accepted, in bytes.
    pub json_limit: usize,
    /// Longest a request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            json_limit: 1024 * 1024,
            body_read_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// `/docs` → `/docs/`, where the Swagger UI lives.
async fn docs_redirect() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}

/// No route: `404 NOT_FOUND`, or on the OpenAI surface (which includes the OpenAI endpoints
/// Agentry lacks, such as `/v1/embeddings`) OpenAI's `404 unknown_url`.
async fn route_not_found(req: HttpRequest) -> actix_web::HttpResponse {
    let (method, path) = (req.method().as_str(), req.path());
    if is_openai_surface(path) {
        actix_web::ResponseError::error_response(&openai::OpenAiError::unknown_url(method, path))
    } else {
        actix_web::ResponseError::error_response(&ApiError::route_not_found(method, path))
    }
}

/// The application of a separate metrics listener (`metrics_addr`): `GET /metrics` without
/// authentication, nothing else.
pub fn metrics_app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(state))
        .configure(routes::metrics::configure_root)
        .default_service(web::to(route_not_found))
        .wrap(actix_web::middleware::from_fn(middleware::request_context))
}

/// The application: every route, the middleware and the JSON error handling.
pub fn app(
    state: AppState,
    settings: HttpSettings,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(state))
        .app_data(web::Data::new(BodyLimits {
            max_bytes: settings.json_limit,
            read_timeout: settings.body_read_timeout,
        }))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .configure(routes::health::configure)
        .configure(routes::metrics::configure_root)
        .service(web::scope("/api/v1").configure(routes::configure_api))
        .service(
            web::scope("/v1")
                .configure(openai::configure_v1)
                .configure(routes::configure_api),
        )
        .service(web::scope("/api/client/v1").configure(openai::configure_client))
        .configure(compat::configure)
        .route("/docs", web::get().to(docs_redirect))
        // The document is served from one copy built on its first request; Swagger UI only
        // points at it.
        .route("/openapi.json", web::get().to(openapi::serve_document))
        .service(
            SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::from("/openapi.json")),
        )
        .default_service(web::to(route_not_found))
        // The last `wrap` runs first: request id, then authentication, then rate limits.
        .wrap(actix_web::middleware::from_fn(ratelimit::limit))
        .wrap(actix_web::middleware::from_fn(auth::authenticate))
        .wrap(actix_web::middleware::from_fn(middleware::request_context))
        // The compatibility mounts' shapes (seed 004's envelope, seed 001's camelCase), errors
        // of the layers above included.
        .wrap(actix_web::middleware::from_fn(compat::wrap))
}
