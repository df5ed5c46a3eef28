//! The agent runtime: every call to a model is a [`Turn`] (see `turn.rs`), whatever drives
//! it (agent chat, Responses, Chat Completions, one-shot runs, and later tasks and
//! WebSockets). This module holds the runtime's ports and the reads around turns: runs,
//! history, conversations.
//!
//! - `prompt.rs`: input checks, parameters, system messages, history trimming;
//! - `routes.rs`: the model that answers and its fallback;
//! - `turn.rs`: access rules, the prompt, the model calls, the tool loop, the events;
//! - `record.rs`: what a turn stores when it finishes, is cut, or fails;
//! - `retrieve.rs`: retrieval for agents with knowledge (passages into the prompt);
//! - `tools.rs`: the server-side tools a turn runs;
//! - `tails.rs`: the conversations just stored, for the turn that continues them.

mod guard;
#[cfg(test)]
mod guard_tests;
#[cfg(test)]
mod mcp_tests;
mod prompt;
mod record;
mod retrieve;
mod routes;
mod tails;
#[cfg(test)]
mod tails_tests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
mod tools;
mod turn;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::agent::{Agent, AgentFilter, AgentId, AgentRef, ModelRef, ModelSpec};
use crate::auth::Principal;
use crate::conversation::{Conversation, Message, MessageQuery, Run, RunFilter};
use crate::error::{Error, Result};
use crate::llm::{LlmClient, LlmClientFactory};
use crate::page::{Page, Paged};
use crate::ports::{AgentStore, Clock, ConversationStore, RunStore};
use crate::services::{ProviderRegistry, VersionService};
use crate::tool::{HttpToolClient, ToolLimits};

pub use prompt::{MESSAGE_MAX_CHARS, Params};
pub use tails::Tails;
pub use turn::{
    CallOptions, ChatTurn, Memory, Turn, TurnEvent, TurnOutcome, TurnRequest, TurnStart,
    TurnTarget, may_call_models_directly,
};

use routes::{Route, Routes};

/// How a turn is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// At most this many earlier messages.
    pub history_max_messages: u32,
    /// At most this many characters of earlier messages; the oldest go first. The system
    /// prompt and the new message are always sent.
    pub history_max_chars: usize,
    /// At most this many rounds of server-side tool calls in one turn; a model that asks for
    /// more is stopped with a clear answer.
    pub max_tool_steps: u32,
    /// Bounds of one server-side tool call.
    pub tool_limits: ToolLimits,
    /// About how many bytes of just-stored conversation tails the runtime built by
    /// [`crate::services::Services`] keeps for turns continuing them (0: none).
    pub conversation_cache_bytes: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            history_max_messages: 50,
            history_max_chars: 32_000,
            max_tool_steps: 8,
            tool_limits: ToolLimits::default(),
            conversation_cache_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The ports a runtime works with.
#[derive(Clone)]
pub struct RuntimePorts {
    /// Agent definitions.
    pub agents: Arc<dyn AgentStore>,
    /// Published versions (serving rules).
    pub versions: VersionService,
    /// Providers and model resolution.
    pub providers: ProviderRegistry,
    /// Clients of the providers.
    pub llm: Arc<dyn LlmClientFactory>,
    /// Conversations and messages.
    pub conversations: Arc<dyn ConversationStore>,
    /// The run log.
    pub runs: Arc<dyn RunStore>,
    /// Calls agents' HTTP tools; `None`: such tools answer the model with an error.
    pub http_tools: Option<Arc<dyn HttpToolClient>>,
    /// MCP servers whose tools agents bind (and their supervision).
    pub mcp: crate::services::McpServerService,
    /// Retrieval for agents with knowledge (a service without ports retrieves nothing).
    pub knowledge: crate::services::KnowledgeService,
    /// Where turns publish `agent.message` events (when someone listens).
    pub events: Arc<dyn crate::event::EventBus>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

/// The runtime: its ports and settings. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    ports: Arc<RuntimePorts>,
    settings: RuntimeSettings,
    /// When each provider's failure was last announced.
    alarms: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// The slots cluster agents' turns take (none for other agents).
    instances: crate::services::Instances,
    /// What turns count.
    metrics: crate::metrics::Metrics,
    /// The tails of conversations just stored here.
    tails: Tails,
}

/// A one-shot call (seed 000).
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The caller's id for the run; one is made when absent.
    pub run_id: Option<String>,
    /// The system prompt.
    pub preamble: String,
    /// The user prompt (required, not blank).
    pub prompt: String,
    /// The model.
    pub model: ModelSpec,
    /// Sampling and length parameters.
    pub params: Params,
    /// The caller's log metadata, stored with the run.
    pub log_meta: Map<String, Value>,
}

impl Runtime {
    /// A runtime over its ports.
    pub fn new(ports: RuntimePorts, settings: RuntimeSettings) -> Self {
        Self {
            ports: Arc::new(ports),
            settings,
            alarms: Arc::new(std::sync::Mutex::new(std::collections::HashMap::new())),
            instances: crate::services::Instances::default(),
            metrics: crate::metrics::Metrics::new(),
            tails: Tails::off(),
        }
    }

    /// Publishes a `system.notification` for a provider that failed (after its retries), at
    /// most once a minute per provider: an outage is news, each failed turn of it is not.
    pub(crate) fn provider_failed(&self, error: &Error) {
        let Error::Provider { provider_id, error } = error else {
            return;
        };
        let now = std::time::Instant::now();
        {
            let Ok(mut alarms) = self.alarms.lock() else {
                return;
            };
            if alarms
                .get(provider_id)
                .is_some_and(|last| now.duration_since(*last) < std::time::Duration::from_secs(60))
            {
                return;
            }
            alarms.insert(provider_id.clone(), now);
        }
        self.ports.events.publish(crate::event::Event::system(
            "warning",
            format!("provider '{provider_id}' failed: {error}"),
        ));
    }

    /// The same runtime taking cluster agents' slots from `instances` and counting turns in
    /// `metrics` (by default: no cluster agent, counters of its own).
    #[must_use]
    pub fn with_instances(
        mut self,
        instances: crate::services::Instances,
        metrics: crate::metrics::Metrics,
    ) -> Self {
        self.instances = instances;
        self.metrics = metrics;
        self
    }

    /// The same runtime keeping the tails of the conversations it stores in `tails`, so that
    /// a turn continuing from an answer stored here reads nothing back (by default: off).
    #[must_use]
    pub fn with_tails(mut self, tails: Tails) -> Self {
        self.tails = tails;
        self
    }

    /// The same runtime counting its turns in `metrics` instead (evaluation traffic is kept
    /// out of the production counters this way).
    #[must_use]
    pub fn counting_in(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// What its turns count.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Its settings.
    pub fn settings(&self) -> &RuntimeSettings {
        &self.settings
    }

    /// The client serving `model`.
    async fn client_for(&self, model: &ModelRef) -> Result<Arc<dyn LlmClient>> {
        let providers = &self.ports.providers;
        let provider = match providers.get(&model.provider_id).await {
            Ok(p) => p,
            Err(Error::NotFound { .. }) => {
                return Err(Error::ModelNotFound {
                    provider_id: Some(model.provider_id.to_string()),
                    model: model.model_name.clone(),
                    available_models: providers.available_models().await?,
                });
            }
            Err(e) => return Err(e),
        };
        self.ports
            .llm
            .client(&provider)
            .map_err(|error| Error::Provider {
                provider_id: model.provider_id.to_string(),
                error,
            })
    }

    /// The routes of a model and its optional fallback. A fallback whose provider is gone is
    /// skipped (and logged) rather than failing the call.
    async fn routes_for(&self, model: &ModelRef, fallback: Option<&ModelRef>) -> Result<Routes> {
        let primary = Route {
            model: model.clone(),
            client: self.client_for(model).await?,
        };
        let fallback = match fallback {
            Some(fb) => match self.client_for(fb).await {
                Ok(client) => Some(Route {
                    model: fb.clone(),
                    client,
                }),
                Err(e) => {
                    tracing::warn!(fallback = %fb, error = %e, "fallback model unusable; ignored");
                    None
                }
            },
            None => None,
        };
        Ok(Routes { primary, fallback })
    }

    /// Runs a one-shot call and logs it (also when the provider fails): a turn on a bare
    /// model whose log is written before the answer is returned.
    ///
    /// # Errors
    /// `Invalid` (blank prompt, bad run id), `ModelNotFound`, `Conflict` (run id taken),
    /// `Provider`.
    #[tracing::instrument(skip_all)]
    pub async fn run(&self, req: RunRequest) -> Result<Run> {
        prompt::check_text("prompt", &req.prompt)?;
        let mut input = prompt::system_messages(&req.preamble, None);
        input.push(crate::llm::PromptMessage::new(
            crate::llm::Role::User,
            req.prompt,
        ));
        let request = TurnRequest {
            params: req.params,
            ..TurnRequest::new(
                input,
                Memory::Run {
                    run_id: req.run_id,
                    log_meta: req.log_meta,
                    log_now: true,
                },
            )
        };
        let outcome = self
            .start_turn(None, TurnTarget::Model(req.model), request)
            .await?
            .finish()
            .await?;
        outcome
            .run
            .ok_or_else(|| Error::Internal("a run turn returned no run".to_owned()))
    }

    /// One logged run.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_run(&self, id: &str) -> Result<Run> {
        self.ports.runs.get_run(id).await
    }

    /// Logged runs, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_runs(&self, filter: &RunFilter, page: Page) -> Result<Paged<Run>> {
        self.ports.runs.list_runs(filter, page).await
    }

    /// Messages of an agent (optionally one conversation), the newest `limit` before
    /// `before`, oldest first.
    ///
    /// # Errors
    /// `NotFound` (agent, also one outside `caller`'s allowlist).
    pub async fn history(
        &self,
        caller: Option<&Principal>,
        agent: &AgentRef,
        session_key: Option<String>,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<(Agent, Vec<Message>)> {
        let agent = visible_agent(caller, self.ports.agents.get_agent(agent).await?)?;
        let query = MessageQuery {
            agent_id: agent.id.clone(),
            session_key,
            before,
            limit,
        };
        let messages = self.ports.conversations.query_messages(&query).await?;
        Ok((agent, messages))
    }

    /// Conversations, most recent first, optionally of one agent; only of the agents
    /// `caller` may call, and only its own when it may only invoke agents.
    ///
    /// # Errors
    /// `NotFound` (agent, also one outside `caller`'s allowlist).
    pub async fn list_conversations(
        &self,
        caller: Option<&Principal>,
        agent: Option<&AgentRef>,
        page: Page,
    ) -> Result<Paged<Conversation>> {
        let agents: Option<Vec<AgentId>> = match (agent, caller.and_then(|p| p.agents.as_ref())) {
            (Some(r), _) => {
                let agent = visible_agent(caller, self.ports.agents.get_agent(r).await?)?;
                Some(vec![agent.id])
            }
            (None, Some(_)) => {
                // An allowlist holds at most KEY_AGENTS_MAX keys: one page holds them all.
                const _: () =
                    assert!(crate::services::KEY_AGENTS_MAX <= crate::page::MAX_LIMIT as usize);
                let visible = AgentFilter::default().visible_to(caller);
                let page_of_all = Page::new(Some(crate::page::MAX_LIMIT), None)?;
                let agents = self.ports.agents.list_agents(&visible, page_of_all).await?;
                Some(agents.items.into_iter().map(|a| a.id).collect())
            }
            (None, None) => None,
        };
        self.ports
            .conversations
            .list_conversations(agents.as_deref(), page)
            .await
    }

    /// One conversation with its newest `limit` messages (oldest first), if `caller` may see
    /// it (its agent in the allowlist; its own conversation when it may only invoke agents).
    ///
    /// # Errors
    /// `NotFound`, also for a conversation `caller` may not see.
    pub async fn get_conversation(
        &self,
        caller: Option<&Principal>,
        id: &str,
        limit: u32,
    ) -> Result<(Conversation, Agent, Vec<Message>)> {
        let (conversation, agent) = self.usable_conversation(caller, id).await?;
        let messages = self.ports.conversations.last_messages(id, limit).await?;
        Ok((conversation, agent, messages))
    }

    /// A stored answer (`msg_…`), its conversation and agent, and the conversation's
    /// messages up to and including it (the newest `limit` of them, oldest first), if `caller`
    /// may see it; `None` when no answer has that id.
    ///
    /// # Errors
    /// `NotFound` for a conversation `caller` may not see; storage failures.
    pub async fn get_answer(
        &self,
        caller: Option<&Principal>,
        answer_id: &str,
        limit: u32,
    ) -> Result<Option<(Conversation, Agent, Vec<Message>)>> {
        let Some(answer) = self.ports.conversations.get_message(answer_id).await? else {
            return Ok(None);
        };
        if answer.role != crate::llm::Role::Assistant {
            return Ok(None);
        }
        let (conversation, agent) = self
            .usable_conversation(caller, &answer.conversation_id)
            .await?;
        let messages = match self
            .messages_up_to(&conversation.id, &answer.id, limit)
            .await?
        {
            Some((messages, _)) => messages,
            None => vec![answer],
        };
        Ok(Some((conversation, agent, messages)))
    }

    /// The messages of `conversation` up to and including `answer`, oldest first, read from
    /// its newest `limit`, and whether `answer` is the newest of all; `None` when it is not
    /// among them.
    async fn messages_up_to(
        &self,
        conversation: &str,
        answer: &str,
        limit: u32,
    ) -> Result<Option<(Vec<Message>, bool)>> {
        let mut messages = self
            .ports
            .conversations
            .last_messages(conversation, limit)
            .await?;
        let Some(at) = messages.iter().position(|m| m.id == answer) else {
            return Ok(None);
        };
        let newest = at + 1 == messages.len();
        messages.truncate(at + 1);
        Ok(Some((messages, newest)))
    }

    /// Deletes a conversation and its messages, if `caller` may see it. Returns whether it
    /// existed (for `caller`).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn delete_conversation(&self, caller: Option<&Principal>, id: &str) -> Result<bool> {
        match self.usable_conversation(caller, id).await {
            Ok(_) => {
                let deleted = self.ports.conversations.delete_conversation(id).await?;
                self.tails.deleted(id).await;
                Ok(deleted)
            }
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A conversation and its agent, when `caller` may use them.
    async fn usable_conversation(
        &self,
        caller: Option<&Principal>,
        id: &str,
    ) -> Result<(Conversation, Agent)> {
        let conversation = self.ports.conversations.get_conversation(id).await?;
        let agent = match self
            .ports
            .agents
            .get_agent(&AgentRef::Id(conversation.agent_id.clone()))
            .await
        {
            Ok(agent) => agent,
            Err(Error::NotFound { .. }) => return Err(Error::not_found("conversation", id)),
            Err(e) => return Err(e),
        };
        let usable = caller.is_none_or(|p| {
            p.may_invoke_agent(agent.key.as_str())
                && p.may_use_conversation(conversation.created_by.as_deref())
        });
        if !usable {
            return Err(Error::not_found("conversation", id));
        }
        Ok((conversation, agent))
    }
}

/// A branch of `line`: a new conversation (its own id and session key; `line`'s agent and
/// context; opened by `created_by` at `at`, empty) and a copy of `upto` in it, under new
/// message ids.
fn branch(
    line: &Conversation,
    upto: &[Message],
    created_by: Option<String>,
    at: DateTime<Utc>,
) -> (Conversation, Vec<Message>) {
    let id = crate::ids::new_id(crate::conversation::CONVERSATION_ID_PREFIX);
    let copied = upto
        .iter()
        .map(|m| Message {
            id: crate::ids::new_id(crate::conversation::MESSAGE_ID_PREFIX),
            conversation_id: id.clone(),
            ..m.clone()
        })
        .collect();
    let branch = Conversation {
        id: id.clone(),
        agent_id: line.agent_id.clone(),
        session_key: id,
        context: line.context.clone(),
        message_count: 0,
        created_at: at,
        updated_at: at,
        created_by,
    };
    (branch, copied)
}

/// `agent`, unless `caller`'s allowlist leaves it out: then it is not found.
fn visible_agent(caller: Option<&Principal>, agent: Agent) -> Result<Agent> {
    if caller.is_some_and(|p| !p.may_invoke_agent(agent.key.as_str())) {
        return Err(Error::not_found("agent", agent.key.to_string()));
    }
    Ok(agent)
}
