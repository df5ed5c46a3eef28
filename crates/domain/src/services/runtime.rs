//! The agent runtime: one-shot runs, chat turns (whole or streamed), history.
//!
//! A chat turn is prepared (agent loaded, conversation opened, prompt built from the
//! instructions and the trimmed history), then the model is called, then the turn is
//! recorded: the user message and the answer are appended together, atomically. A turn whose
//! provider call fails stores nothing (the caller gets the error and may retry); a streamed
//! answer cut short (the client left, or the upstream broke) is stored as `incomplete` with the
//! text produced so far, since the caller may have seen it.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::agent::{Agent, AgentRef, AgentStatus, ModelRef, ModelSpec};
use crate::conversation::{
    CONVERSATION_ID_PREFIX, Conversation, MESSAGE_ID_PREFIX, Message, MessageQuery, MessageStatus,
    RUN_ID_PREFIX, Run, RunFilter, RunStatus, parse_external_id,
};
use crate::error::{Error, Invalid, Result};
use crate::ids::new_id;
use crate::llm::{
    Completion, CompletionRequest, CompletionStream, LlmClient, LlmClientFactory, PromptMessage,
    ProviderError, Role, TokenUsage,
};
use crate::page::{Page, Paged};
use crate::ports::{AgentStore, Clock, ConversationStore, RunStore};
use crate::services::ProviderRegistry;
use crate::version::ServedAgent;

/// Longest user message or prompt, in characters.
pub const MESSAGE_MAX_CHARS: usize = 200_000;

/// How much history a turn sends upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeSettings {
    /// At most this many earlier messages.
    pub history_max_messages: u32,
    /// At most this many characters of earlier messages; the oldest go first. The system
    /// prompt and the new message are always sent.
    pub history_max_chars: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            history_max_messages: 50,
            history_max_chars: 32_000,
        }
    }
}

/// The ports and services the runtime needs.
#[derive(Clone)]
pub struct Runtime {
    agents: Arc<dyn AgentStore>,
    providers: ProviderRegistry,
    llm: Arc<dyn LlmClientFactory>,
    conversations: Arc<dyn ConversationStore>,
    runs: Arc<dyn RunStore>,
    clock: Arc<dyn Clock>,
    settings: RuntimeSettings,
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

/// Sampling and length parameters of one call; `None` leaves the agent's (or the model's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Params {
    /// Temperature.
    pub temperature: Option<f64>,
    /// Top-p.
    pub top_p: Option<f64>,
    /// Answer length limit.
    pub max_tokens: Option<u32>,
}

impl Params {
    /// These parameters where given, `base` elsewhere.
    pub fn or(self, base: Params) -> Params {
        Params {
            temperature: self.temperature.or(base.temperature),
            top_p: self.top_p.or(base.top_p),
            max_tokens: self.max_tokens.or(base.max_tokens),
        }
    }

    /// An agent's own parameters.
    pub fn of(agent: &Agent) -> Params {
        Params {
            temperature: agent.temperature.map(|t| t.get()),
            top_p: agent.top_p.map(|t| t.get()),
            max_tokens: agent.max_tokens.map(|t| t.get()),
        }
    }
}

/// One turn of a conversation with an agent.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The new messages of this turn (usually one user message); stored with the answer.
    pub input: Vec<PromptMessage>,
    /// How the caller named the input, for errors (`message`, `input`).
    pub input_field: &'static str,
    /// The caller's conversation id (`session_id` / `conversation_id`), scoped to the agent;
    /// opened when new.
    pub session_key: Option<String>,
    /// Continue this stored conversation (by its `conv_…` id) instead.
    pub conversation_id: Option<String>,
    /// Context stored with a new conversation.
    pub context: Map<String, Value>,
    /// The caller's instructions, sent after the agent's.
    pub instructions: Option<String>,
    /// The caller's parameters, over the agent's.
    pub params: Params,
    /// Whether the turn is stored (`false`: answered, then forgotten).
    pub store: bool,
}

impl ChatRequest {
    /// One user message, stored.
    pub fn user(message: impl Into<String>) -> Self {
        Self {
            input: vec![PromptMessage::new(Role::User, message)],
            input_field: "message",
            session_key: None,
            conversation_id: None,
            context: Map::new(),
            instructions: None,
            params: Params::default(),
            store: true,
        }
    }
}

/// A prepared turn: everything needed to call the model and to record the result.
pub struct PreparedTurn {
    runtime: Runtime,
    /// The agent answering (the served version's definition).
    pub agent: Agent,
    /// The version serving, if a published one does.
    pub version: Option<u32>,
    /// The conversation (not stored when `store` is false).
    pub conversation: Conversation,
    /// The id the answer will be stored under.
    pub answer_id: String,
    /// The model parameters sent.
    pub params: Params,
    routes: Routes,
    /// The model that answered: the agent's, or its fallback.
    pub answered_by: ModelRef,
    request: CompletionRequest,
    input: Vec<PromptMessage>,
    store: bool,
    /// The conversation is new and not stored yet: [`PreparedTurn::record`] stores it.
    new_conversation: bool,
    started: Instant,
    started_at: DateTime<Utc>,
}

/// A recorded turn.
#[derive(Debug, Clone)]
pub struct ChatTurn {
    /// The agent that answered.
    pub agent: Agent,
    /// The version that answered, if a published one did.
    pub version: Option<u32>,
    /// The conversation.
    pub conversation: Conversation,
    /// The stored input messages.
    pub input: Vec<Message>,
    /// The stored answer.
    pub answer: Message,
    /// Why the answer ended.
    pub finish_reason: Option<String>,
}

/// What a stateless gateway call (OpenAI Chat Completions) targets.
#[derive(Debug, Clone)]
pub enum GatewayTarget {
    /// An agent: its instructions come first, its parameters apply unless overridden.
    Agent(Box<ServedAgent>),
    /// A model directly.
    Model(ModelRef),
}

/// A stateless call: the caller sends the whole conversation each time. It is logged as a
/// run.
#[derive(Debug, Clone)]
pub struct GatewayRequest {
    /// What answers.
    pub target: GatewayTarget,
    /// The caller's messages, oldest first.
    pub messages: Vec<PromptMessage>,
    /// The caller's parameters.
    pub params: Params,
    /// Stored with the run.
    pub log_meta: Map<String, Value>,
    /// The run's id; one is made when absent.
    pub run_id: Option<String>,
}

/// A prepared gateway call.
pub struct PreparedCall {
    runtime: Runtime,
    routes: Routes,
    request: CompletionRequest,
    /// The model that answers: the target's, or the agent's fallback once it answered.
    pub model: ModelRef,
    /// The id the call is logged under.
    pub run_id: String,
    /// Whether the log is written before answering: one-shot runs (the caller may read the run
    /// at once, and a chosen id that is taken is a conflict). Gateway calls (Chat Completions)
    /// queue their log instead, off the latency path.
    log_now: bool,
    preamble: String,
    prompt: String,
    log_meta: Map<String, Value>,
    started: Instant,
    created_at: DateTime<Utc>,
}

/// A model and the client that serves it.
#[derive(Clone)]
struct Route {
    model: ModelRef,
    client: Arc<dyn LlmClient>,
}

/// The model that answers and, when the agent has one, its fallback, tried when the first
/// fails (after its own retries) before any text was produced. An invalid request is not
/// retried elsewhere: it would fail there too.
#[derive(Clone)]
struct Routes {
    primary: Route,
    fallback: Option<Route>,
}

fn provider_error(model: &ModelRef, error: ProviderError) -> Error {
    Error::Provider {
        provider_id: model.provider_id.to_string(),
        error,
    }
}

impl Routes {
    fn all(&self) -> impl Iterator<Item = &Route> {
        std::iter::once(&self.primary).chain(self.fallback.as_ref())
    }

    fn give_up(&self, route: &Route, error: &ProviderError) -> bool {
        matches!(error, ProviderError::InvalidRequest { .. })
            || self
                .fallback
                .as_ref()
                .is_none_or(|f| std::ptr::eq(f, route))
    }

    /// Asks each route in turn with `call` until one answers; returns the answer and the
    /// model that gave it, or the last failure.
    async fn first_answer<T, F, Fut>(
        &self,
        request: &CompletionRequest,
        call: F,
    ) -> Result<(T, ModelRef)>
    where
        F: Fn(Arc<dyn LlmClient>, CompletionRequest) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        for route in self.all() {
            let req = CompletionRequest {
                model: route.model.model_name.clone(),
                ..request.clone()
            };
            match call(route.client.clone(), req).await {
                Ok(answer) => return Ok((answer, route.model.clone())),
                Err(e) if self.give_up(route, &e) => return Err(provider_error(&route.model, e)),
                Err(e) => {
                    tracing::warn!(model = %route.model, error = %e, "model failed; trying the fallback")
                }
            }
        }
        Err(Error::Internal("no route answered".to_owned()))
    }

    /// A whole answer and the model that gave it.
    async fn complete(&self, request: &CompletionRequest) -> Result<(Completion, ModelRef)> {
        self.first_answer(
            request,
            |client, req| async move { client.complete(req).await },
        )
        .await
    }

    /// A streamed answer and the model that gives it.
    async fn stream(&self, request: &CompletionRequest) -> Result<(CompletionStream, ModelRef)> {
        self.first_answer(
            request,
            |client, req| async move { client.stream(req).await },
        )
        .await
    }
}

fn check_text(field: &str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid::new(
            field,
            format!("{} is required and cannot be empty", capital(field)),
        ));
    }
    check_length(field, value)
}

fn check_length(field: &str, value: &str) -> Result<(), Invalid> {
    if value.chars().count() > MESSAGE_MAX_CHARS {
        return Err(Invalid::new(
            field,
            format!("must be at most {MESSAGE_MAX_CHARS} characters"),
        ));
    }
    // PostgreSQL text cannot hold NUL; refuse it for every backend alike.
    if value.contains('\u{0}') {
        return Err(Invalid::new(field, "must not contain NUL characters"));
    }
    Ok(())
}

fn check_input(field: &str, input: &[PromptMessage]) -> Result<(), Invalid> {
    if input.iter().all(|m| m.content.trim().is_empty()) {
        return Err(Invalid::new(
            field,
            format!("{} is required and cannot be empty", capital(field)),
        ));
    }
    input
        .iter()
        .try_for_each(|m| check_length(field, &m.content))
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Keeps the newest messages that fit the character budget, oldest first.
fn trim_history(history: Vec<Message>, max_chars: usize) -> Vec<PromptMessage> {
    let mut used = 0usize;
    let mut kept: Vec<PromptMessage> = Vec::with_capacity(history.len());
    for m in history.into_iter().rev() {
        used = used.saturating_add(m.content.chars().count());
        if used > max_chars {
            break;
        }
        kept.push(PromptMessage::new(m.role, m.content));
    }
    kept.reverse();
    kept
}

fn system_messages(agent_instructions: &str, extra: Option<&str>) -> Vec<PromptMessage> {
    [Some(agent_instructions), extra]
        .into_iter()
        .flatten()
        .filter(|s| !s.trim().is_empty())
        .map(|s| PromptMessage::new(Role::System, s))
        .collect()
}

impl Runtime {
    /// A runtime over its ports.
    pub fn new(
        agents: Arc<dyn AgentStore>,
        providers: ProviderRegistry,
        llm: Arc<dyn LlmClientFactory>,
        conversations: Arc<dyn ConversationStore>,
        runs: Arc<dyn RunStore>,
        clock: Arc<dyn Clock>,
        settings: RuntimeSettings,
    ) -> Self {
        Self {
            agents,
            providers,
            llm,
            conversations,
            runs,
            clock,
            settings,
        }
    }

    /// The client serving `model`.
    async fn client_for(&self, model: &ModelRef) -> Result<Arc<dyn LlmClient>> {
        let provider = match self.providers.get(&model.provider_id).await {
            Ok(p) => p,
            Err(Error::NotFound { .. }) => {
                return Err(Error::ModelNotFound {
                    provider_id: Some(model.provider_id.to_string()),
                    model: model.model_name.clone(),
                    available_models: self.providers.available_models().await?,
                });
            }
            Err(e) => return Err(e),
        };
        self.llm.client(&provider).map_err(|error| Error::Provider {
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

    /// Runs a one-shot call and logs it (also when the provider fails).
    ///
    /// # Errors
    /// `Invalid` (blank prompt, bad run id), `ModelNotFound`, `Conflict` (run id taken),
    /// `Provider`.
    #[tracing::instrument(skip_all)]
    pub async fn run(&self, req: RunRequest) -> Result<Run> {
        check_text("prompt", &req.prompt)?;
        let model = self.providers.resolve(&req.model).await?;
        let mut messages = system_messages(&req.preamble, None);
        messages.push(PromptMessage::new(Role::User, req.prompt));
        let call = self
            .prepare_call(GatewayRequest {
                target: GatewayTarget::Model(model),
                messages,
                params: req.params,
                log_meta: req.log_meta,
                run_id: req.run_id,
            })
            .await?;
        let call = PreparedCall {
            log_now: true,
            ..call
        };
        call.complete().await.map(|(_, run)| run)
    }

    /// Prepares a stateless call: the target's client, the prompt (an agent's instructions
    /// first), the parameters (the caller's over the agent's).
    ///
    /// # Errors
    /// `Invalid` (no message, bad run id), `ModelNotFound`.
    pub async fn prepare_call(&self, req: GatewayRequest) -> Result<PreparedCall> {
        check_input("messages", &req.messages)?;
        let run_id = match &req.run_id {
            Some(id) => parse_external_id("run_id", id)?,
            None => new_id(RUN_ID_PREFIX),
        };
        let (model, fallback, mut messages, params) = match req.target {
            GatewayTarget::Agent(served) => {
                let a = served.agent;
                (
                    a.model.clone(),
                    a.fallback_model.clone(),
                    system_messages(&a.instructions, None),
                    req.params.or(Params::of(&a)),
                )
            }
            GatewayTarget::Model(model) => (model, None, Vec::new(), req.params),
        };
        messages.extend(req.messages);
        let routes = self.routes_for(&model, fallback.as_ref()).await?;
        let preamble = messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        let prompt = messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let request = CompletionRequest {
            model: model.model_name.clone(),
            messages,
            temperature: params.temperature,
            top_p: params.top_p,
            max_tokens: params.max_tokens,
            ..CompletionRequest::default()
        };
        Ok(PreparedCall {
            runtime: self.clone(),
            routes,
            request,
            model,
            run_id,
            log_now: req.run_id.is_some(),
            preamble,
            prompt,
            log_meta: req.log_meta,
            started: Instant::now(),
            created_at: self.clock.now(),
        })
    }

    /// One logged run.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_run(&self, id: &str) -> Result<Run> {
        self.runs.get_run(id).await
    }

    /// Logged runs, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_runs(&self, filter: &RunFilter, page: Page) -> Result<Paged<Run>> {
        self.runs.list_runs(filter, page).await
    }

    /// Prepares a chat turn with an agent's live definition (the management API).
    ///
    /// # Errors
    /// `NotFound` (agent), `Conflict` (archived agent), and as [`Runtime::prepare_served`].
    #[tracing::instrument(skip_all, fields(agent = %agent))]
    pub async fn prepare_turn(&self, agent: &AgentRef, req: ChatRequest) -> Result<PreparedTurn> {
        check_input(req.input_field, &req.input)?;
        let agent = self.agents.get_agent(agent).await?;
        if agent.status == AgentStatus::Archived {
            return Err(Error::conflict(
                "status",
                format!("agent '{}' is archived", agent.key),
            ));
        }
        self.prepare_served(
            ServedAgent {
                agent,
                version: None,
            },
            req,
        )
        .await
    }

    /// Prepares a chat turn served by a given definition: opens (or continues, or — when not
    /// stored — imagines) the conversation and builds the prompt.
    ///
    /// # Errors
    /// `Invalid` (blank input, bad session id), `NotFound` (conversation to continue),
    /// `ModelNotFound` (the agent's provider is gone).
    pub async fn prepare_served(
        &self,
        served: ServedAgent,
        req: ChatRequest,
    ) -> Result<PreparedTurn> {
        check_input(req.input_field, &req.input)?;
        req.instructions
            .as_deref()
            .map(|i| check_length("instructions", i))
            .transpose()?;
        let session_key = req
            .session_key
            .as_deref()
            .map(|k| parse_external_id("session_id", k))
            .transpose()?;
        let agent = served.agent;
        let routes = self
            .routes_for(&agent.model, agent.fallback_model.as_ref())
            .await?;
        let answered_by_default = agent.model.clone();
        let now = self.clock.now();
        let (conversation, history, new_conversation) = self
            .conversation_for(
                &agent,
                req.conversation_id.as_deref(),
                session_key,
                &req.context,
                req.store,
                now,
            )
            .await?;
        let mut messages = system_messages(&agent.instructions, req.instructions.as_deref());
        messages.extend(trim_history(history, self.settings.history_max_chars));
        messages.extend(req.input.iter().cloned());
        let params = req.params.or(Params::of(&agent));
        let request = CompletionRequest {
            model: agent.model.model_name.clone(),
            messages,
            temperature: params.temperature,
            top_p: params.top_p,
            max_tokens: params.max_tokens,
            ..CompletionRequest::default()
        };
        Ok(PreparedTurn {
            runtime: self.clone(),
            agent,
            version: served.version,
            conversation,
            answer_id: new_id(MESSAGE_ID_PREFIX),
            params,
            answered_by: answered_by_default,
            routes,
            request,
            input: req.input,
            store: req.store,
            new_conversation,
            started: Instant::now(),
            started_at: now,
        })
    }

    /// The conversation of a turn, its history, and whether it is a new conversation not
    /// stored yet (stored with the turn by [`PreparedTurn::record`]: one write per turn).
    async fn conversation_for(
        &self,
        agent: &Agent,
        conversation_id: Option<&str>,
        session_key: Option<String>,
        context: &Map<String, Value>,
        store: bool,
        now: DateTime<Utc>,
    ) -> Result<(Conversation, Vec<Message>, bool)> {
        let fresh = |id: String, key: String| Conversation {
            id,
            agent_id: agent.id.clone(),
            session_key: key,
            context: context.clone(),
            message_count: 0,
            created_at: now,
            updated_at: now,
        };
        if let Some(id) = conversation_id {
            let c = self.conversations.get_conversation(id).await?;
            if c.agent_id != agent.id {
                return Err(Error::not_found("conversation", id));
            }
            let history = self
                .conversations
                .last_messages(&c.id, self.settings.history_max_messages)
                .await?;
            return Ok((c, history, false));
        }
        let conv_id = new_id(CONVERSATION_ID_PREFIX);
        let Some(key) = session_key else {
            // A generated key: nobody can know this conversation before the turn's answer,
            // so nothing is read and it is stored with the turn.
            let key = conv_id.clone();
            return Ok((fresh(conv_id, key), Vec::new(), store));
        };
        if !store {
            if let Some(c) = self
                .conversations
                .find_conversation(&agent.id, &key)
                .await?
            {
                let history = self
                    .conversations
                    .last_messages(&c.id, self.settings.history_max_messages)
                    .await?;
                return Ok((c, history, false));
            }
            return Ok((fresh(conv_id, key), Vec::new(), false));
        }
        let (c, created) = self
            .conversations
            .open_conversation(&conv_id, &agent.id, &key, context, now)
            .await?;
        let history = if created {
            Vec::new()
        } else {
            self.conversations
                .last_messages(&c.id, self.settings.history_max_messages)
                .await?
        };
        Ok((c, history, false))
    }

    /// A whole chat turn: prepare, call the model, record.
    ///
    /// # Errors
    /// As [`Runtime::prepare_turn`], plus `Provider`.
    pub async fn chat(&self, agent: &AgentRef, req: ChatRequest) -> Result<ChatTurn> {
        let mut turn = self.prepare_turn(agent, req).await?;
        let completion = turn.complete().await?;
        turn.record(
            completion.content,
            completion.usage,
            completion.finish_reason,
            MessageStatus::Complete,
        )
        .await
    }

    /// Messages of an agent (optionally one conversation), the newest `limit` before
    /// `before`, oldest first.
    ///
    /// # Errors
    /// `NotFound` (agent).
    pub async fn history(
        &self,
        agent: &AgentRef,
        session_key: Option<String>,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<(Agent, Vec<Message>)> {
        let agent = self.agents.get_agent(agent).await?;
        let query = MessageQuery {
            agent_id: agent.id.clone(),
            session_key,
            before,
            limit,
        };
        let messages = self.conversations.query_messages(&query).await?;
        Ok((agent, messages))
    }

    /// Conversations, most recent first, optionally of one agent.
    ///
    /// # Errors
    /// `NotFound` (agent).
    pub async fn list_conversations(
        &self,
        agent: Option<&AgentRef>,
        page: Page,
    ) -> Result<Paged<Conversation>> {
        let agent_id = match agent {
            Some(r) => Some(self.agents.get_agent(r).await?.id),
            None => None,
        };
        self.conversations
            .list_conversations(agent_id.as_ref(), page)
            .await
    }

    /// One conversation with its newest `limit` messages (oldest first).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_conversation(
        &self,
        id: &str,
        limit: u32,
    ) -> Result<(Conversation, Vec<Message>)> {
        let conversation = self.conversations.get_conversation(id).await?;
        let messages = self.conversations.last_messages(id, limit).await?;
        Ok((conversation, messages))
    }

    /// Deletes a conversation and its messages. Returns whether it existed.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn delete_conversation(&self, id: &str) -> Result<bool> {
        self.conversations.delete_conversation(id).await
    }
}

impl PreparedTurn {
    /// Asks the model (or its fallback) for a whole answer.
    ///
    /// # Errors
    /// `Provider`.
    pub async fn complete(&mut self) -> Result<Completion> {
        let (c, by) = self.routes.complete(&self.request).await?;
        self.answered_by = by;
        Ok(c)
    }

    /// Asks the model (or its fallback) for a streamed answer. Dropping the stream cancels
    /// the upstream call.
    ///
    /// # Errors
    /// `Provider` when the stream cannot start.
    pub async fn stream(&mut self) -> Result<CompletionStream> {
        let (stream, by) = self.routes.stream(&self.request).await?;
        self.answered_by = by;
        Ok(stream)
    }

    /// Converts a provider failure met while streaming into the domain error.
    pub fn stream_error(&self, error: ProviderError) -> Error {
        provider_error(&self.answered_by, error)
    }

    /// Stores the input messages and the answer together (unless the turn is not stored).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn record(
        self,
        content: String,
        usage: Option<TokenUsage>,
        finish_reason: Option<String>,
        status: MessageStatus,
    ) -> Result<ChatTurn> {
        let latency_ms = millis(self.started);
        let base = |role: Role, content: String, created_at: DateTime<Utc>| Message {
            id: new_id(MESSAGE_ID_PREFIX),
            conversation_id: self.conversation.id.clone(),
            agent_id: self.agent.id.clone(),
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
            usage: None,
            latency_ms: None,
            model: None,
            agent_version: None,
            status: MessageStatus::Complete,
            created_at,
        };
        let input: Vec<Message> = self
            .input
            .iter()
            .enumerate()
            .map(|(i, m)| {
                base(
                    m.role,
                    m.content.clone(),
                    self.started_at + chrono::Duration::microseconds(i64::try_from(i).unwrap_or(0)),
                )
            })
            .collect();
        let after_input = self.started_at
            + chrono::Duration::microseconds(i64::try_from(input.len()).unwrap_or(0));
        let answered_at = self.runtime.clock.now().max(after_input);
        let answer = Message {
            id: self.answer_id.clone(),
            usage,
            latency_ms: Some(latency_ms),
            model: Some(self.answered_by.clone()),
            agent_version: self.version,
            status,
            ..base(Role::Assistant, content, answered_at)
        };
        let mut conversation = self.conversation;
        if self.store {
            let mut all = input.clone();
            all.push(answer.clone());
            conversation.message_count += all.len() as u64;
            conversation.updated_at = answered_at;
            if self.new_conversation {
                self.runtime
                    .conversations
                    .start_conversation(&conversation, &all)
                    .await?;
            } else {
                self.runtime.conversations.append_messages(&all).await?;
            }
        }
        Ok(ChatTurn {
            agent: self.agent,
            version: self.version,
            conversation,
            input,
            answer,
            finish_reason,
        })
    }
}

impl PreparedCall {
    /// Asks for a whole answer and logs the run (also when the provider fails).
    ///
    /// # Errors
    /// `Provider`; `Conflict` when the run id is taken.
    pub async fn complete(mut self) -> Result<(Completion, Run)> {
        match self.routes.complete(&self.request).await {
            Ok((c, by)) => {
                self.model = by;
                let run = self.log(Some(c.content.clone()), c.usage, None).await?;
                Ok((c, run))
            }
            Err(err) => {
                self.log(None, None, Some(err.to_string())).await?;
                Err(err)
            }
        }
    }

    /// Asks for a streamed answer; log it with [`PreparedCall::finish`] once it ends.
    ///
    /// # Errors
    /// `Provider` when the stream cannot start (the failure is logged).
    pub async fn stream(&mut self) -> Result<CompletionStream> {
        match self.routes.stream(&self.request).await {
            Ok((stream, by)) => {
                self.model = by;
                Ok(stream)
            }
            Err(err) => {
                self.log(None, None, Some(err.to_string())).await?;
                Err(err)
            }
        }
    }

    /// Converts a provider failure met while streaming into the domain error.
    pub fn stream_error(&self, error: ProviderError) -> Error {
        provider_error(&self.model, error)
    }

    /// Logs a streamed call that ended (with its text so far and, on failure, the error).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn finish(
        self,
        content: String,
        usage: Option<TokenUsage>,
        error: Option<String>,
    ) -> Result<Run> {
        self.log(Some(content), usage, error).await
    }

    async fn log(
        &self,
        response: Option<String>,
        usage: Option<TokenUsage>,
        error: Option<String>,
    ) -> Result<Run> {
        let run = Run {
            id: self.run_id.clone(),
            preamble: self.preamble.clone(),
            prompt: self.prompt.clone(),
            model: self.model.clone(),
            response,
            usage,
            latency_ms: millis(self.started),
            status: if error.is_some() {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            },
            error,
            log_meta: self.log_meta.clone(),
            created_at: self.created_at,
        };
        if self.log_now {
            self.runtime.runs.insert_run(&run).await?;
        } else {
            self.runtime.runs.log_run(&run).await?;
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentId;

    fn msg(content: &str) -> Message {
        Message {
            id: new_id("msg"),
            conversation_id: "c".into(),
            agent_id: AgentId::generate(),
            role: Role::User,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            usage: None,
            latency_ms: None,
            model: None,
            agent_version: None,
            status: MessageStatus::Complete,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn history_is_trimmed_oldest_first() {
        let h = vec![msg("aaaa"), msg("bbbb"), msg("cccc")];
        let kept = trim_history(h, 9);
        assert_eq!(
            kept.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            ["bbbb", "cccc"]
        );
        assert!(trim_history(vec![msg("toolong")], 3).is_empty());
    }

    #[test]
    fn blank_text_is_refused() {
        assert!(check_text("prompt", "  ").is_err());
        assert_eq!(
            check_text("prompt", "").map_err(|e| e.reason),
            Err("Prompt is required and cannot be empty".to_owned())
        );
        assert!(check_text("message", "hi").is_ok());
        assert!(check_text("message", "a\u{0}b").is_err());
    }
}
