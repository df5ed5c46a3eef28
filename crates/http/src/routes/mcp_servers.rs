//! `/api/v1/mcp-servers`: MCP servers as a resource (seed 002) and their supervision on this
//! replica: start, stop, restart, logs, tools. A stdio server is
//! `{"name","slug","config":{"command","args","env"}}`, a remote streamable-HTTP server
//! `{"name","slug","url","headers"}`. Environment and header values are write-only: they
//! read back as `"********"`, and sending that mask back keeps the stored value
//! (`docs/mcp.md`).

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use agentry_domain::Invalid;
use agentry_domain::mcp::{
    McpServerInput, McpServerName, McpServerRef, McpSlug, McpTool, McpTransport, Secrets,
};
use agentry_domain::services::{LOGS_TAIL_MAX, McpLogLine, McpServerView as ServerState};
use agentry_domain::tool::SECRET_MASK;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{JsonBody, query_number};
use crate::routes::providers::ListQuery;
use crate::routes::{DeleteResult, rfc3339};

/// Routes of this resource, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/mcp-servers")
            .route(web::get().to(list_mcp_servers))
            .route(web::post().to(create_mcp_server)),
    )
    .service(
        web::resource("/mcp-servers/{server}")
            .route(web::get().to(get_mcp_server))
            .route(web::put().to(put_mcp_server))
            .route(web::delete().to(delete_mcp_server)),
    )
    .service(web::resource("/mcp-servers/{server}/start").route(web::post().to(start_mcp_server)))
    .service(web::resource("/mcp-servers/{server}/stop").route(web::post().to(stop_mcp_server)))
    .service(
        web::resource("/mcp-servers/{server}/restart").route(web::post().to(restart_mcp_server)),
    )
    .service(web::resource("/mcp-servers/{server}/logs").route(web::get().to(mcp_server_logs)))
    .service(web::resource("/mcp-servers/{server}/tools").route(web::get().to(mcp_server_tools)));
}

/// How to run a stdio MCP server.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StdioConfigInput {
    /// The program (looked up in `PATH` when it has no `/`).
    #[schema(example = "python")]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    #[schema(example = json!(["-m", "my_mcp_server"]))]
    pub args: Vec<String>,
    /// Environment variables for it. Values are write-only (read back as `********`; send
    /// `********` back to keep a stored value).
    #[serde(default)]
    #[schema(example = json!({"API_KEY": "secret-key"}))]
    pub env: BTreeMap<String, String>,
}

/// A new MCP server, or the whole new definition of one (PUT): `config` for a stdio server,
/// or `url` (and `headers`) for a remote streamable-HTTP server, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServerInputBody {
    /// Display name.
    #[schema(example = "my-mcp-server")]
    pub name: Option<String>,
    /// Unique slug (agents will bind its tools by it). Derived from the name when absent on
    /// create; kept when absent on PUT.
    #[schema(example = "my-server")]
    pub slug: Option<String>,
    /// A stdio server's command.
    pub config: Option<StdioConfigInput>,
    /// A remote server's streamable-HTTP endpoint: `http://` or `https://`.
    #[schema(example = "https://mcp.example.com/mcp")]
    pub url: Option<String>,
    /// Headers sent to a remote server. Values are write-only (read back as `********`;
    /// send `********` back to keep a stored value).
    pub headers: Option<BTreeMap<String, String>>,
}

impl McpServerInputBody {
    fn try_into_domain(self) -> Result<McpServerInput, Invalid> {
        let name =
            McpServerName::parse(self.name.as_deref().unwrap_or_default()).map_err(
                |e| match self.name {
                    None => Invalid::new("name", "is required"),
                    Some(_) => e,
                },
            )?;
        let slug = self.slug.as_deref().map(McpSlug::parse).transpose()?;
        let transport = match (self.config, self.url) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    "url",
                    "give either config (a stdio server) or url (a remote server), not both",
                ));
            }
            (None, None) => {
                return Err(Invalid::new(
                    "config",
                    "is required: config.command for a stdio server, or url for a remote server",
                ));
            }
            (Some(config), None) => {
                if self.headers.is_some() {
                    return Err(Invalid::new(
                        "headers",
                        "are for remote servers (url); a stdio server takes config.env",
                    ));
                }
                let command = config
                    .command
                    .ok_or_else(|| Invalid::new("config.command", "is required"))?;
                McpTransport::stdio(&command, config.args, config.env)?
            }
            (None, Some(url)) => McpTransport::http(&url, self.headers.unwrap_or_default())?,
        };
        Ok(McpServerInput {
            name,
            slug,
            transport,
        })
    }
}

/// A stdio server's command as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StdioConfigView {
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment variables, every value read as `********`.
    pub env: BTreeMap<String, String>,
}

/// An MCP server as the API shows it: never a secret value.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpServerView {
    /// Id (`mcp_…`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unique slug.
    pub slug: String,
    /// On this replica (each replica supervises its own processes): `stopped`, `starting`,
    /// `running`, `crashed` or `restarting`.
    #[schema(example = "running")]
    pub status: &'static str,
    /// The process id of a running stdio server on this replica.
    pub pid: Option<u32>,
    /// Automatic restarts since the server last ran long enough to count as healthy.
    pub restarts: u32,
    /// Why it last failed to start or stopped by itself, until it runs again.
    pub last_error: Option<String>,
    /// `stdio` or `http`.
    pub transport: &'static str,
    /// A remote server's endpoint; `null` for a stdio server (Agentry does not proxy MCP).
    pub url: Option<String>,
    /// A remote server's headers, every value read as `********`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// A stdio server's command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<StdioConfigView>,
    /// What the server declared at its last MCP handshake (`tools`, `resources`, `prompts`,
    /// `logging`, `completions`); empty until it has run once.
    #[schema(example = json!(["tools", "resources"]))]
    pub capabilities: Vec<String>,
    /// How many tools its last handshake (or `tools/list_changed`) listed.
    pub tool_count: usize,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

fn masked(secrets: &Secrets) -> BTreeMap<String, String> {
    secrets
        .keys()
        .map(|k| (k.clone(), SECRET_MASK.to_owned()))
        .collect()
}

impl From<&ServerState> for McpServerView {
    fn from(view: &ServerState) -> Self {
        let s = &view.server;
        let (url, headers, config) = match &s.transport {
            McpTransport::Stdio { command, args, env } => (
                None,
                None,
                Some(StdioConfigView {
                    command: command.clone(),
                    args: args.clone(),
                    env: masked(env),
                }),
            ),
            McpTransport::Http { url, headers } => {
                (Some(url.as_str().to_owned()), Some(masked(headers)), None)
            }
        };
        Self {
            id: s.id.to_string(),
            name: s.name.as_str().to_owned(),
            slug: s.slug.to_string(),
            status: s.status.as_str(),
            pid: view.runtime.pid,
            restarts: view.runtime.restarts,
            last_error: view.runtime.last_error.clone(),
            transport: s.transport.kind(),
            url,
            headers,
            config,
            capabilities: s.catalog.capabilities.clone(),
            tool_count: s.catalog.tools.len(),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// A page of MCP servers.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpServerList {
    /// Servers, newest first.
    pub servers: Vec<McpServerView>,
    /// Matches in all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

fn server_ref(raw: &str) -> Result<McpServerRef, ApiError> {
    McpServerRef::parse(raw).map_err(|_| agentry_domain::Error::not_found("mcp_server", raw).into())
}

/// Register an MCP server (admins). Nothing is started: `POST …/start`, or an agent's first
/// use of its tools, starts it.
#[utoipa::path(post, path = "/api/v1/mcp-servers", tag = "mcp-servers", request_body = McpServerInputBody,
    responses((status = 201, body = McpServerView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn create_mcp_server(
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<McpServerInputBody>,
) -> ApiResult<HttpResponse> {
    let server = state.mcp_servers.create(body.try_into_domain()?).await?;
    Ok(HttpResponse::Created().json(McpServerView::from(&server)))
}

/// List MCP servers, newest first.
#[utoipa::path(get, path = "/api/v1/mcp-servers", tag = "mcp-servers", params(ListQuery),
    responses((status = 200, body = McpServerList), (status = 400, body = ErrorEnvelope)))]
pub async fn list_mcp_servers(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(query.limit.as_deref(), query.offset.as_deref())?;
    let paged = state.mcp_servers.list(page).await?;
    Ok(HttpResponse::Ok().json(McpServerList {
        servers: paged.items.iter().map(McpServerView::from).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// Get an MCP server by id or slug.
#[utoipa::path(get, path = "/api/v1/mcp-servers/{server}", tag = "mcp-servers",
    params(("server" = String, Path, description = "Server id or slug")),
    responses((status = 200, body = McpServerView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_mcp_server(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let server = state.mcp_servers.get(&server_ref(&path)?).await?;
    Ok(HttpResponse::Ok().json(McpServerView::from(&server)))
}

/// Replace an MCP server's definition (admins); secrets sent back as `********` are kept.
#[utoipa::path(put, path = "/api/v1/mcp-servers/{server}", tag = "mcp-servers",
    params(("server" = String, Path, description = "Server id or slug")), request_body = McpServerInputBody,
    responses((status = 200, body = McpServerView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn put_mcp_server(
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonBody(body): JsonBody<McpServerInputBody>,
) -> ApiResult<HttpResponse> {
    let target = server_ref(&path)?;
    let input = body.try_into_domain()?;
    let server = state.mcp_servers.replace(&target, input).await?;
    Ok(HttpResponse::Ok().json(McpServerView::from(&server)))
}

/// Delete an MCP server (admins). Deleting an absent server succeeds with `deleted: false`.
#[utoipa::path(delete, path = "/api/v1/mcp-servers/{server}", tag = "mcp-servers",
    params(("server" = String, Path, description = "Server id or slug")),
    responses((status = 200, body = DeleteResult)))]
#[tracing::instrument(skip_all)]
pub async fn delete_mcp_server(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let deleted = match McpServerRef::parse(&path) {
        Ok(target) => state.mcp_servers.delete(&target).await?,
        Err(_) => false,
    };
    Ok(HttpResponse::Ok().json(DeleteResult::new("MCP server", deleted)))
}

/// Start an MCP server on this replica (admins) and wait for the outcome (at most the start
/// timeout): `running`, or `crashed` with `last_error` (restarts follow with backoff). A
/// server that is up already is left as it is.
#[utoipa::path(post, path = "/api/v1/mcp-servers/{server}/start", tag = "mcp-servers",
    params(("server" = String, Path, description = "Server id or slug")),
    responses((status = 200, body = McpServerView), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn start_mcp_server(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let server = state.mcp_servers.start(&server_ref(&path)?).await?;
    Ok(HttpResponse::Ok().json(McpServerView::from(&server)))
}

/// Stop an MCP server on this replica (admins): MCP shutdown (standard input closed), then
/// SIGTERM, then SIGKILL to its process group, each after a grace period. Stopping a stopped
/// server is not an error.
#[utoipa::path(post, path = "/api/v1/mcp-servers/{server}/stop", tag = "mcp-servers",
    params(("server" = String, Path, description = "Server id or slug")),
    responses((status = 200, body = McpServerView), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn stop_mcp_server(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let server = state.mcp_servers.stop(&server_ref(&path)?).await?;
    Ok(HttpResponse::Ok().json(McpServerView::from(&server)))
}

/// Stop then start an MCP server on this replica (admins), with its stored definition.
#[utoipa::path(post, path = "/api/v1/mcp-servers/{server}/restart", tag = "mcp-servers",
    params(("server" = String, Path, description = "Server id or slug")),
    responses((status = 200, body = McpServerView), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn restart_mcp_server(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let server = state.mcp_servers.restart(&server_ref(&path)?).await?;
    Ok(HttpResponse::Ok().json(McpServerView::from(&server)))
}

/// How many log lines to read.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// The newest lines to return, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub tail: Option<String>,
}

/// One line of an MCP server's log.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpLogLineView {
    /// RFC 3339 UTC.
    pub at: String,
    /// `stderr` (the server's standard error) or `event` (supervision: starting, running,
    /// crashed, restarting, stopped — seed 002's `system.notification`s).
    #[schema(example = "event")]
    pub source: &'static str,
    /// `info`, `warning` or `error`.
    #[schema(example = "info")]
    pub level: &'static str,
    /// The text.
    pub message: String,
}

impl From<&McpLogLine> for McpLogLineView {
    fn from(l: &McpLogLine) -> Self {
        Self {
            at: rfc3339(l.at),
            source: l.source.as_str(),
            level: l.level.as_str(),
            message: l.message.clone(),
        }
    }
}

/// A server's recent log on this replica.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpLogs {
    /// The server's id.
    pub server_id: String,
    /// Oldest first.
    pub lines: Vec<McpLogLineView>,
}

/// Read an MCP server's recent standard error lines and lifecycle events on this replica
/// (admins: a server's output may hold anything). Kept in a bounded ring buffer, lost on
/// restart of Agentry.
#[utoipa::path(get, path = "/api/v1/mcp-servers/{server}/logs", tag = "mcp-servers",
    params(("server" = String, Path, description = "Server id or slug"), LogsQuery),
    responses((status = 200, body = McpLogs), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn mcp_server_logs(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<LogsQuery>,
) -> ApiResult<HttpResponse> {
    let tail: usize = query_number("tail", query.tail.as_deref())?.unwrap_or(100);
    if !(1..=LOGS_TAIL_MAX).contains(&tail) {
        return Err(ApiError::validation(
            "tail",
            format!("must be between 1 and {LOGS_TAIL_MAX}"),
        ));
    }
    let target = server_ref(&path)?;
    let server = state.mcp_servers.get(&target).await?;
    let lines = state.mcp_servers.logs(&target, tail).await?;
    Ok(HttpResponse::Ok().json(McpLogs {
        server_id: server.server.id.to_string(),
        lines: lines.iter().map(McpLogLineView::from).collect(),
    }))
}

/// A tool an MCP server offers.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpToolView {
    /// Its name on the server (agents offer it to the model under this name, or prefixed
    /// with the server's slug when the name is taken or not a valid function name).
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// Its arguments' JSON Schema.
    #[schema(value_type = Object)]
    pub input_schema: serde_json::Value,
}

impl From<&McpTool> for McpToolView {
    fn from(t: &McpTool) -> Self {
        Self {
            name: t.name.clone(),
            description: t.description.clone(),
            input_schema: t.input_schema.clone(),
        }
    }
}

/// A server's tools.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpTools {
    /// The server's id.
    pub server_id: String,
    /// Its status on this replica.
    pub status: &'static str,
    /// The tools of its running connection, else those its last handshake listed.
    pub tools: Vec<McpToolView>,
}

/// List an MCP server's tools: those of its running connection on this replica, else the
/// list stored at its last handshake (empty if it never ran). Never starts it.
#[utoipa::path(get, path = "/api/v1/mcp-servers/{server}/tools", tag = "mcp-servers",
    params(("server" = String, Path, description = "Server id or slug")),
    responses((status = 200, body = McpTools), (status = 404, body = ErrorEnvelope)))]
pub async fn mcp_server_tools(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (view, tools) = state.mcp_servers.tools(&server_ref(&path)?).await?;
    Ok(HttpResponse::Ok().json(McpTools {
        server_id: view.server.id.to_string(),
        status: view.server.status.as_str(),
        tools: tools.iter().map(McpToolView::from).collect(),
    }))
}
