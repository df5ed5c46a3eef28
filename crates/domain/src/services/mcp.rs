//! MCP servers as a resource (register, read, list, replace, delete) and their supervision on
//! this replica (start, stop, restart, logs, tools), through [`McpSupervisor`].

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::mcp::{
    McpCatalog, McpServer, McpServerId, McpServerInput, McpServerRef, McpSlug, McpStatus, McpTool,
};
use crate::page::{Page, Paged};
use crate::ports::{Clock, McpServerStore};
use crate::services::mcp_supervisor::{McpLogLine, McpRuntimeState, McpSupervisor};

/// Most log lines one request may read.
pub const LOGS_TAIL_MAX: usize = 1000;

/// The MCP servers use cases.
#[derive(Clone)]
pub struct McpServerService {
    store: Arc<dyn McpServerStore>,
    clock: Arc<dyn Clock>,
    supervisor: McpSupervisor,
}

/// A server with what this replica knows of its process.
#[derive(Debug, Clone)]
pub struct McpServerView {
    /// The stored server, its `status` this replica's.
    pub server: McpServer,
    /// The process as this replica sees it.
    pub runtime: McpRuntimeState,
}

impl McpServerService {
    /// A service over `store`, supervising through `supervisor`.
    pub fn new(
        store: Arc<dyn McpServerStore>,
        clock: Arc<dyn Clock>,
        supervisor: McpSupervisor,
    ) -> Self {
        Self {
            store,
            clock,
            supervisor,
        }
    }

    /// The supervisor (for shutdown).
    pub fn supervisor(&self) -> &McpSupervisor {
        &self.supervisor
    }

    fn view(&self, mut server: McpServer) -> McpServerView {
        let runtime = self.supervisor.state(&server.id);
        server.status = runtime.status;
        McpServerView { server, runtime }
    }

    /// Registers a server; the slug is derived from the name when absent. Nothing is
    /// started.
    ///
    /// # Errors
    /// `Invalid` (a secret sent as the mask, a name without a usable slug), `Conflict`
    /// (field `slug`) when the slug is taken.
    #[tracing::instrument(skip_all)]
    pub async fn create(&self, input: McpServerInput) -> Result<McpServerView> {
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
            catalog: McpCatalog::default(),
            created_at: now,
            updated_at: now,
        };
        self.store.insert_mcp_server(&server).await?;
        Ok(self.view(server))
    }

    /// One server by id or slug.
    ///
    /// # Errors
    /// `NotFound` (entity `mcp_server`).
    pub async fn get(&self, server: &McpServerRef) -> Result<McpServerView> {
        Ok(self.view(self.store.get_mcp_server(server).await?))
    }

    /// One stored server, without its process state (what agents' turns use).
    ///
    /// # Errors
    /// `NotFound` (entity `mcp_server`).
    pub async fn definition(&self, server: &McpServerRef) -> Result<McpServer> {
        self.store.get_mcp_server(server).await
    }

    /// Servers, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(&self, page: Page) -> Result<Paged<McpServerView>> {
        let paged = self.store.list_mcp_servers(page).await?;
        Ok(Paged {
            items: paged.items.into_iter().map(|s| self.view(s)).collect(),
            total: paged.total,
            page: paged.page,
        })
    }

    /// Replaces a server's definition (PUT): the id, the creation time, the capabilities and
    /// the slug (unless given) are kept; a secret sent back as the mask keeps its stored
    /// value. A server that runs here is restarted with the new definition.
    ///
    /// # Errors
    /// `NotFound`; `Invalid` for a mask with no stored value behind it; `Conflict` (field
    /// `slug`) when the new slug belongs to another server.
    #[tracing::instrument(skip_all, fields(server = %server))]
    pub async fn replace(
        &self,
        server: &McpServerRef,
        input: McpServerInput,
    ) -> Result<McpServerView> {
        let old = self.store.get_mcp_server(server).await?;
        let new = McpServer {
            name: input.name,
            slug: input.slug.unwrap_or_else(|| old.slug.clone()),
            transport: input.transport.keep_secrets_from(&old.transport)?,
            updated_at: self.clock.now(),
            ..old
        };
        self.store.update_mcp_server(&new).await?;
        self.supervisor.reload(&new).await;
        self.get(&McpServerRef::Id(new.id)).await
    }

    /// Deletes a server, stopping it first. Returns whether it existed; deleting an absent
    /// server is not an error.
    ///
    /// # Errors
    /// Storage failures.
    #[tracing::instrument(skip_all, fields(server = %server))]
    pub async fn delete(&self, server: &McpServerRef) -> Result<bool> {
        match self.store.get_mcp_server(server).await {
            Ok(s) => {
                self.supervisor.forget(&s.id).await;
                self.store.delete_mcp_server(&s.id).await
            }
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Starts a server here (nothing happens if it is up) and waits for the outcome: the
    /// answer says `running`, or `crashed` with the reason (restarts follow with backoff).
    ///
    /// # Errors
    /// `NotFound`.
    #[tracing::instrument(skip_all, fields(server = %server))]
    pub async fn start(&self, server: &McpServerRef) -> Result<McpServerView> {
        let s = self.store.get_mcp_server(server).await?;
        self.supervisor.start(&s).await;
        self.get(&McpServerRef::Id(s.id)).await
    }

    /// Stops a server here (MCP shutdown, SIGTERM, SIGKILL); stopping a stopped server does
    /// nothing.
    ///
    /// # Errors
    /// `NotFound`.
    #[tracing::instrument(skip_all, fields(server = %server))]
    pub async fn stop(&self, server: &McpServerRef) -> Result<McpServerView> {
        let s = self.store.get_mcp_server(server).await?;
        self.supervisor.stop(&s.id).await;
        Ok(self.view(s))
    }

    /// Stops then starts a server here, with its stored definition.
    ///
    /// # Errors
    /// `NotFound`.
    #[tracing::instrument(skip_all, fields(server = %server))]
    pub async fn restart(&self, server: &McpServerRef) -> Result<McpServerView> {
        let s = self.store.get_mcp_server(server).await?;
        self.supervisor.restart(&s).await;
        self.get(&McpServerRef::Id(s.id)).await
    }

    /// The newest `tail` lines (at most [`LOGS_TAIL_MAX`]) of a server's log on this replica.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn logs(&self, server: &McpServerRef, tail: usize) -> Result<Vec<McpLogLine>> {
        let s = self.store.get_mcp_server(server).await?;
        Ok(self.supervisor.logs(&s.id, tail.min(LOGS_TAIL_MAX)))
    }

    /// A server's tools: those of its running connection here, else those its last
    /// handshake reported (stored). Never starts it.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn tools(&self, server: &McpServerRef) -> Result<(McpServerView, Vec<McpTool>)> {
        let view = self.get(server).await?;
        let tools = self
            .supervisor
            .live_tools(&view.server.id)
            .unwrap_or_else(|| view.server.catalog.tools.clone());
        Ok((view, tools))
    }
}
