//! [`McpServerStore`] over diesel, and the row of `mcp_servers`. Environment and header
//! values are stored as text (JSON objects); they are exposed only to write them, and the
//! row's `Debug` hides them.

use std::collections::BTreeMap;
use std::fmt;

use agentry_domain::mcp::{
    McpCatalog, McpServer, McpServerId, McpServerName, McpServerRef, McpSlug, McpStatus, McpTool,
    McpTransport, Secrets,
};
use agentry_domain::page::{Page, Paged};
use agentry_domain::ports::McpServerStore;
use agentry_domain::{Error, Invalid, Result};
use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::rows::{corrupt, parse_json};
use crate::schema::mcp_servers;
use crate::store::DieselStore;
use crate::translate::{mcp_server_error, other, query_error};

/// One row of `mcp_servers`: `transport` is `stdio` (with `command`, `args`, `env`) or
/// `http` (with `url`, `headers`). Its `Debug` hides `env` and `headers`.
#[derive(Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = mcp_servers, treat_none_as_null = true)]
pub(crate) struct McpServerRow {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub transport: String,
    pub command: Option<String>,
    pub args: Option<String>,
    pub env: Option<String>,
    pub url: Option<String>,
    pub headers: Option<String>,
    pub capabilities: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub tools: String,
}

impl fmt::Debug for McpServerRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("McpServerRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("slug", &self.slug)
            .field("transport", &self.transport)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &hidden(&self.env))
            .field("url", &self.url)
            .field("headers", &hidden(&self.headers))
            .field("capabilities", &self.capabilities)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("tools", &self.tools)
            .finish()
    }
}

/// Tools as a JSON array of `{"name", "description", "input_schema"}`.
fn tools_json(tools: &[McpTool]) -> String {
    Value::Array(
        tools
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.input_schema,
                })
            })
            .collect(),
    )
    .to_string()
}

/// The stored form of a tool.
#[derive(serde::Deserialize)]
struct StoredTool {
    name: String,
    description: Option<String>,
    input_schema: Value,
}

/// Secrets as a JSON object of strings.
fn secrets_json(secrets: &Secrets) -> String {
    Value::Object(
        secrets
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_owned())))
            .collect(),
    )
    .to_string()
}

impl From<&McpServer> for McpServerRow {
    fn from(s: &McpServer) -> Self {
        let (command, args, env, url, headers) = match &s.transport {
            McpTransport::Stdio { command, args, env } => (
                Some(command.clone()),
                Some(Value::from(args.clone()).to_string()),
                Some(secrets_json(env)),
                None,
                None,
            ),
            McpTransport::Http { url, headers } => (
                None,
                None,
                None,
                Some(url.as_str().to_owned()),
                Some(secrets_json(headers)),
            ),
        };
        Self {
            id: s.id.to_string(),
            name: s.name.as_str().to_owned(),
            slug: s.slug.to_string(),
            transport: s.transport.kind().to_owned(),
            command,
            args,
            env,
            url,
            headers,
            capabilities: Value::from(s.catalog.capabilities.clone()).to_string(),
            created_at: s.created_at.naive_utc(),
            updated_at: s.updated_at.naive_utc(),
            tools: tools_json(&s.catalog.tools),
        }
    }
}

impl TryFrom<McpServerRow> for McpServer {
    type Error = Error;

    fn try_from(row: McpServerRow) -> Result<Self, Error> {
        let bad = |e: Invalid| corrupt("mcp_server", &row.id, &e);
        let json_or_empty = |column: &str, text: &Option<String>| match text {
            Some(t) => parse_json::<BTreeMap<String, String>>("mcp_server", &row.id, column, t),
            None => Ok(BTreeMap::new()),
        };
        let transport = match row.transport.as_str() {
            "stdio" => {
                let args: Vec<String> = match &row.args {
                    Some(t) => parse_json("mcp_server", &row.id, "args", t)?,
                    None => Vec::new(),
                };
                McpTransport::stdio(
                    row.command.as_deref().unwrap_or_default(),
                    args,
                    json_or_empty("env", &row.env)?,
                )
                .map_err(bad)?
            }
            "http" => McpTransport::http(
                row.url.as_deref().unwrap_or_default(),
                json_or_empty("headers", &row.headers)?,
            )
            .map_err(bad)?,
            other => {
                return Err(Error::Internal(format!(
                    "stored mcp_server '{}' has an unknown transport '{other}'",
                    row.id
                )));
            }
        };
        Ok(Self {
            id: McpServerId::parse(&row.id).map_err(bad)?,
            name: McpServerName::parse(&row.name).map_err(bad)?,
            slug: McpSlug::parse(&row.slug).map_err(bad)?,
            transport,
            status: McpStatus::Stopped,
            catalog: McpCatalog {
                capabilities: parse_json("mcp_server", &row.id, "capabilities", &row.capabilities)?,
                tools: parse_json::<Vec<StoredTool>>("mcp_server", &row.id, "tools", &row.tools)?
                    .into_iter()
                    .map(|t| McpTool {
                        name: t.name,
                        description: t.description,
                        input_schema: t.input_schema,
                    })
                    .collect(),
            },
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        })
    }
}

#[async_trait]
impl McpServerStore for DieselStore {
    async fn insert_mcp_server(&self, server: &McpServer) -> Result<()> {
        let row = McpServerRow::from(server);
        self.run(move |conn| {
            let inserted = diesel::insert_into(mcp_servers::table)
                .values(&row)
                .execute(conn);
            inserted
                .map(drop)
                .map_err(|e| mcp_server_error(e, &row.id, &row.slug))
        })
        .await
    }

    async fn get_mcp_server(&self, server: &McpServerRef) -> Result<McpServer> {
        let server = server.clone();
        self.run(move |conn| {
            let found = match &server {
                McpServerRef::Id(id) => mcp_servers::table
                    .find(id.as_str())
                    .select(McpServerRow::as_select())
                    .first(conn),
                McpServerRef::Slug(slug) => mcp_servers::table
                    .filter(mcp_servers::slug.eq(slug.as_str()))
                    .select(McpServerRow::as_select())
                    .first(conn),
            };
            found
                .map_err(|e| other(e, "mcp_server", &server.to_string()))?
                .try_into()
        })
        .await
    }

    async fn list_mcp_servers(&self, page: Page) -> Result<Paged<McpServer>> {
        self.run(move |conn| {
            let (total, rows) = conn
                .transaction(|c| {
                    let total: i64 = mcp_servers::table.count().get_result(c)?;
                    let rows = mcp_servers::table
                        .select(McpServerRow::as_select())
                        .order((mcp_servers::created_at.desc(), mcp_servers::id.desc()))
                        .limit(i64::from(page.limit()))
                        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX))
                        .load(c)?;
                    Ok::<_, DieselError>((total, rows))
                })
                .map_err(query_error)?;
            let items = rows
                .into_iter()
                .map(McpServer::try_from)
                .collect::<Result<_>>()?;
            let total =
                u64::try_from(total).map_err(|_| Error::Internal("negative count".into()))?;
            Ok(Paged { items, total, page })
        })
        .await
    }

    async fn update_mcp_server(&self, server: &McpServer) -> Result<()> {
        let row = McpServerRow::from(server);
        self.run(move |conn| {
            let changed = diesel::update(mcp_servers::table.find(&row.id))
                .set(&row)
                .execute(conn);
            match changed {
                Ok(0) => Err(mcp_server_error(DieselError::NotFound, &row.id, &row.slug)),
                Ok(_) => Ok(()),
                Err(e) => Err(mcp_server_error(e, &row.id, &row.slug)),
            }
        })
        .await
    }

    async fn set_mcp_catalog(&self, id: &McpServerId, catalog: &McpCatalog) -> Result<bool> {
        let id = id.clone();
        let capabilities = Value::from(catalog.capabilities.clone()).to_string();
        let tools = tools_json(&catalog.tools);
        self.run(move |conn| {
            let changed = diesel::update(mcp_servers::table.find(id.as_str()))
                .set((
                    mcp_servers::capabilities.eq(&capabilities),
                    mcp_servers::tools.eq(&tools),
                ))
                .execute(conn);
            changed
                .map(|n| n > 0)
                .map_err(|e| other(e, "mcp_server", id.as_str()))
        })
        .await
    }

    async fn delete_mcp_server(&self, id: &McpServerId) -> Result<bool> {
        let id = id.clone();
        self.run(move |conn| {
            let deleted = diesel::delete(mcp_servers::table.find(id.as_str())).execute(conn);
            deleted
                .map(|n| n > 0)
                .map_err(|e| other(e, "mcp_server", id.as_str()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;

    use super::McpServerRow;

    #[test]
    fn row_debug_hides_env_and_headers() {
        let row = McpServerRow {
            id: "mcp_x".into(),
            name: "n".into(),
            slug: "s".into(),
            transport: "stdio".into(),
            command: Some("python".into()),
            args: Some("[]".into()),
            env: Some(r#"{"API_KEY":"env-very-secret"}"#.into()),
            url: None,
            headers: Some(r#"{"Authorization":"hdr-very-secret"}"#.into()),
            capabilities: "[]".into(),
            created_at: NaiveDateTime::default(),
            updated_at: NaiveDateTime::default(),
            tools: "[]".into(),
        };
        let shown = format!("{row:?}");
        assert!(
            !shown.contains("very-secret") && shown.contains("REDACTED"),
            "{shown}"
        );
    }
}
