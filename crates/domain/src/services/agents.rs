//! Agent definitions: create, read, list, change, delete.

use std::sync::Arc;

use crate::agent::ToolSpec;
use crate::agent::{
    Agent, AgentFields, AgentFilter, AgentId, AgentKey, AgentRef, AgentStatus, AgentType, ModelRef,
    ModelSpec,
};
use crate::error::{Error, Invalid, Result};
use crate::mcp::McpServerRef;
use crate::page::{MAX_LIMIT, Page, Paged};
use crate::ports::{AgentStore, Clock, McpServerStore};
use crate::services::ProviderRegistry;

/// The agents use cases.
#[derive(Clone)]
pub struct AgentService {
    store: Arc<dyn AgentStore>,
    providers: ProviderRegistry,
    mcp_servers: Arc<dyn McpServerStore>,
    clock: Arc<dyn Clock>,
    default_model: ModelSpec,
    /// File records, to check the files an agent's knowledge names (`None`: any file id).
    files: Option<Arc<dyn crate::file::FileStore>>,
}

impl AgentService {
    /// A service over `store`; agents saved without a model get `default_model`.
    pub fn new(
        store: Arc<dyn AgentStore>,
        providers: ProviderRegistry,
        mcp_servers: Arc<dyn McpServerStore>,
        clock: Arc<dyn Clock>,
        default_model: ModelSpec,
    ) -> Self {
        Self {
            store,
            providers,
            mcp_servers,
            clock,
            default_model,
            files: None,
        }
    }

    /// The same service checking that the files an agent's knowledge names exist.
    #[must_use]
    pub fn with_files(mut self, files: Arc<dyn crate::file::FileStore>) -> Self {
        self.files = Some(files);
        self
    }

    /// Every file the knowledge names must exist.
    async fn check_knowledge(&self, k: &crate::knowledge::Knowledge) -> Result<()> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        for (i, id) in k.files.iter().enumerate() {
            match files.get_file(id).await {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {
                    return Err(Invalid::new(
                        format!("knowledge.files[{i}]"),
                        format!("no file has the id '{id}'"),
                    )
                    .into());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Resolves the model of an agent being saved: an unknown model is a validation error
    /// on the caller's field that lists the available models.
    async fn resolve_model(&self, spec: &ModelSpec) -> Result<ModelRef> {
        match self.providers.resolve(spec).await {
            Err(Error::ModelNotFound {
                model,
                available_models,
                ..
            }) => Err(
                Invalid::new(&spec.field, format!("unknown model '{model}'"))
                    .with("available_models", available_models)
                    .into(),
            ),
            other => other,
        }
    }

    /// Every judge's model must resolve (an agent judge is looked up when it judges).
    async fn check_guardrails(&self, g: &crate::guardrail::Guardrails) -> Result<()> {
        for spec in g.judge_models() {
            self.resolve_model(spec).await?;
        }
        Ok(())
    }

    /// Every MCP server the tools bind must be registered.
    async fn check_tools(&self, tools: &[ToolSpec]) -> Result<()> {
        for (i, tool) in tools.iter().enumerate() {
            let Some(binding) = tool.mcp_binding(i) else {
                continue;
            };
            match self
                .mcp_servers
                .get_mcp_server(&McpServerRef::Slug(binding.server.clone()))
                .await
            {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {
                    return Err(Invalid::new(
                        format!("tools[{i}].server"),
                        format!("no MCP server has the slug '{}'", binding.server),
                    )
                    .into());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates an agent. Only `name` is required; the key is derived from it when absent.
    ///
    /// # Errors
    /// `Invalid` (missing name, unknown model…), `Conflict` (name or key taken).
    #[tracing::instrument(skip_all)]
    pub async fn create(&self, fields: AgentFields, created_by: Option<String>) -> Result<Agent> {
        let now = self.clock.now();
        let agent = self
            .build(AgentId::generate(), fields, None, created_by, now)
            .await?;
        self.store.insert_agent(&agent).await?;
        Ok(agent)
    }

    /// Builds a full agent from `fields`, defaulting what is absent. `key` is kept from an
    /// existing agent on replace.
    async fn build(
        &self,
        id: AgentId,
        f: AgentFields,
        existing_key: Option<AgentKey>,
        created_by: Option<String>,
        created_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Agent> {
        let name = f.name.ok_or_else(|| Invalid::new("name", "is required"))?;
        let key = match (f.key, existing_key) {
            (Some(k), _) | (None, Some(k)) => k,
            (None, None) => AgentKey::from_name(&name)?,
        };
        let model = self
            .resolve_model(f.model.as_ref().unwrap_or(&self.default_model))
            .await?;
        let fallback_model = match f.fallback_model.flatten() {
            Some(spec) => Some(self.resolve_model(&spec).await?),
            None => None,
        };
        if let Some(tools) = &f.tools {
            self.check_tools(tools).await?;
        }
        if let Some(g) = &f.guardrails {
            self.check_guardrails(g).await?;
        }
        if let Some(k) = &f.knowledge {
            self.check_knowledge(k).await?;
        }
        Ok(Agent {
            id,
            key,
            name,
            description: f.description.flatten(),
            instructions: f.instructions.unwrap_or_default(),
            model,
            temperature: f.temperature.flatten(),
            top_p: f.top_p.flatten(),
            max_tokens: f.max_tokens.flatten(),
            tags: f.tags.unwrap_or_default(),
            status: f.status.unwrap_or(AgentStatus::Active),
            agent_type: f.agent_type.unwrap_or_else(AgentType::chat),
            tools: f.tools.unwrap_or_default(),
            cluster: f.cluster.flatten(),
            fallback_model,
            guardrails: f.guardrails.unwrap_or_default(),
            knowledge: f.knowledge.unwrap_or_default(),
            created_by,
            created_at,
            updated_at: self.clock.now(),
        })
    }

    /// One agent, if `caller` may see it (an API key's allowlist hides the others).
    ///
    /// # Errors
    /// `NotFound`, also for an agent outside the allowlist.
    pub async fn get_for(
        &self,
        caller: Option<&crate::auth::Principal>,
        agent: &AgentRef,
    ) -> Result<Agent> {
        let found = self.get(agent).await?;
        if caller.is_some_and(|p| !p.may_invoke_agent(found.key.as_str())) {
            return Err(Error::not_found("agent", found.key.to_string()));
        }
        Ok(found)
    }

    /// Reads an agent by id or key.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get(&self, agent: &AgentRef) -> Result<Agent> {
        self.store.get_agent(agent).await
    }

    /// Lists agents, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(&self, filter: &AgentFilter, page: Page) -> Result<Paged<Agent>> {
        self.store.list_agents(filter, page).await
    }

    /// Every agent matching `filter`, newest first, read page by page.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_all(&self, filter: &AgentFilter) -> Result<Vec<Agent>> {
        let mut all = Vec::new();
        loop {
            let page = Page::new(Some(MAX_LIMIT), Some(all.len() as u64))?;
            let paged = self.store.list_agents(filter, page).await?;
            let last = paged.items.len() < MAX_LIMIT as usize;
            all.extend(paged.items);
            if last || all.len() as u64 >= paged.total {
                return Ok(all);
            }
        }
    }

    /// Changes the given fields only.
    ///
    /// # Errors
    /// `NotFound`, `Invalid`, `Conflict`.
    #[tracing::instrument(skip_all, fields(agent = %agent))]
    pub async fn patch(&self, agent: &AgentRef, f: AgentFields) -> Result<Agent> {
        let mut a = self.store.get_agent(agent).await?;
        if let Some(spec) = &f.model {
            a.model = self.resolve_model(spec).await?;
        }
        if let Some(v) = f.key {
            a.key = v;
        }
        if let Some(v) = f.name {
            a.name = v;
        }
        if let Some(v) = f.description {
            a.description = v;
        }
        if let Some(v) = f.instructions {
            a.instructions = v;
        }
        if let Some(v) = f.temperature {
            a.temperature = v;
        }
        if let Some(v) = f.top_p {
            a.top_p = v;
        }
        if let Some(v) = f.max_tokens {
            a.max_tokens = v;
        }
        if let Some(v) = f.tags {
            a.tags = v;
        }
        if let Some(v) = f.status {
            a.status = v;
        }
        if let Some(v) = f.agent_type {
            a.agent_type = v;
        }
        if let Some(v) = f.tools {
            self.check_tools(&v).await?;
            // Header values read back masked keep their stored secret.
            let old = std::mem::take(&mut a.tools);
            a.tools = v.into_iter().map(|t| t.keep_secrets_from(&old)).collect();
        }
        if let Some(v) = f.cluster {
            a.cluster = v;
        }
        if let Some(v) = f.fallback_model {
            a.fallback_model = match v {
                Some(spec) => Some(self.resolve_model(&spec).await?),
                None => None,
            };
        }
        if let Some(g) = f.guardrails {
            self.check_guardrails(&g).await?;
            a.guardrails = g;
        }
        if let Some(k) = f.knowledge {
            self.check_knowledge(&k).await?;
            a.knowledge = k;
        }
        a.updated_at = self.clock.now();
        self.store.update_agent(&a).await?;
        Ok(a)
    }

    /// Replaces the definition: absent fields return to their defaults; the id, the key
    /// (unless given), the creator and the creation time are kept.
    ///
    /// # Errors
    /// `NotFound`, `Invalid`, `Conflict`.
    #[tracing::instrument(skip_all, fields(agent = %agent))]
    pub async fn replace(&self, agent: &AgentRef, f: AgentFields) -> Result<Agent> {
        let old = self.store.get_agent(agent).await?;
        let new = self
            .build(old.id, f, Some(old.key), old.created_by, old.created_at)
            .await?;
        self.store.update_agent(&new).await?;
        Ok(new)
    }

    /// Deletes an agent. Returns whether it existed; deleting an absent agent is not an error.
    ///
    /// # Errors
    /// Storage failures.
    #[tracing::instrument(skip_all, fields(agent = %agent))]
    pub async fn delete(&self, agent: &AgentRef) -> Result<bool> {
        match self.store.get_agent(agent).await {
            Ok(a) => self.store.delete_agent(&a.id).await,
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
