//! `/api/v1/mcp-servers`: MCP servers as a resource (seed 002). A stdio server is
//! `{"name","slug","config":{"command","args","env"}}`, a remote streamable-HTTP server
//! `{"name","slug","url","headers"}`. Environment and header values are write-only: they
//! read back as `"********"`, and sending that mask back keeps the stored value. Nothing is
//! started yet: every server is `stopped` and its capabilities are empty (`docs/mcp.md`).

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use agentry_domain::Invalid;
use agentry_domain::mcp::{
    McpServer, McpServerInput, McpServerName, McpServerRef, McpSlug, McpTransport, Secrets,
};
use agentry_domain::page::Page;
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
    );
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
    /// `stopped` (servers are not started yet: supervision is not built).
    #[schema(example = "stopped")]
    pub status: &'static str,
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
    /// What the server offers (`tools`, `resources`, `prompts`): empty until supervision
    /// reads them from the MCP handshake.
    pub capabilities: Vec<String>,
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

impl From<&McpServer> for McpServerView {
    fn from(s: &McpServer) -> Self {
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
            transport: s.transport.kind(),
            url,
            headers,
            config,
            capabilities: s.capabilities.clone(),
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

/// Register an MCP server (admins). Nothing is started.
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
    let page = Page::new(
        query_number("limit", query.limit.as_deref())?,
        query_number("offset", query.offset.as_deref())?,
    )?;
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
