//! MCP servers as a resource: register, read, list, replace, delete. Nothing is started:
//! supervision (start, stop, restart, logs) and the capabilities read from the MCP
//! handshake come later (issue 14, items 2 and 3); until then every server is `stopped`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::mcp::{McpServer, McpServerId, McpServerInput, McpServerRef, McpSlug, McpStatus};
use crate::page::{Page, Paged};
use crate::ports::{Clock, McpServerStore};

/// The MCP servers use cases.
#[derive(Clone)]
pub struct McpServerService {
    store: Arc<dyn McpServerStore>,
    clock: Arc<dyn Clock>,
}

impl McpServerService {
    /// A service over `store`.
    pub fn new(store: Arc<dyn McpServerStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Registers a server; the slug is derived from the name when absent. Nothing is
    /// started.
    ///
    /// # Errors
    /// `Invalid` (a secret sent as the mask, a name without a usable slug), `Conflict`
    /// (field `slug`) when the slug is taken.
    #[tracing::instrument(skip_all)]
    pub async fn create(&self, input: McpServerInput) -> Result<McpServer> {
        let slug = match input.slug {
            Some(slug) => slug,
            None => McpSlug::from_name(&input.name)?,
        };
        let now = self.clock.now();
        let server = McpServer {
            id: McpServerId::generate(),
            name: input.name,
            slug,
            transport: input.transport.check_no_masks()?,
            status: McpStatus::Stopped,
            capabilities: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        self.store.insert_mcp_server(&server).await?;
        Ok(server)
    }

    /// One server by id or slug.
    ///
    /// # Errors
    /// `NotFound` (entity `mcp_server`).
    pub async fn get(&self, server: &McpServerRef) -> Result<McpServer> {
        self.store.get_mcp_server(server).await
    }

    /// Servers, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(&self, page: Page) -> Result<Paged<McpServer>> {
        self.store.list_mcp_servers(page).await
    }

    /// Replaces a server's definition (PUT): the id, the creation time, the capabilities and
    /// the slug (unless given) are kept; a secret sent back as the mask keeps its stored
    /// value.
    ///
    /// # Errors
    /// `NotFound`; `Invalid` for a mask with no stored value behind it; `Conflict` (field
    /// `slug`) when the new slug belongs to another server.
    #[tracing::instrument(skip_all, fields(server = %server))]
    pub async fn replace(&self, server: &McpServerRef, input: McpServerInput) -> Result<McpServer> {
        let old = self.store.get_mcp_server(server).await?;
        let new = McpServer {
            name: input.name,
            slug: input.slug.unwrap_or_else(|| old.slug.clone()),
            transport: input.transport.keep_secrets_from(&old.transport)?,
            updated_at: self.clock.now(),
            ..old
        };
        self.store.update_mcp_server(&new).await?;
        Ok(new)
    }

    /// Deletes a server. Returns whether it existed; deleting an absent server is not an
    /// error. (Once supervision exists, a running server is stopped first.)
    ///
    /// # Errors
    /// Storage failures.
    #[tracing::instrument(skip_all, fields(server = %server))]
    pub async fn delete(&self, server: &McpServerRef) -> Result<bool> {
        match self.store.get_mcp_server(server).await {
            Ok(s) => self.store.delete_mcp_server(&s.id).await,
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
