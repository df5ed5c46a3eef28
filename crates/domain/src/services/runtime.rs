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
    /// Sampling parameters.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Answer length limit.
    pub max_tokens: Option<u32>,
    /// The caller's log metadata, stored with the run.
    pub log_meta: Map<String, Value>,
}

/// One user message to an agent.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The message (required, not blank).
    pub message: String,
    /// The caller's conversation id (`session_id` / `conversation_id`); a new conversation
    /// when absent.
    pub session_key: Option<String>,
    /// Context stored with a new conversation.
    pub context: Map<String, Value>,
}

/// A prepared turn: everything needed to call the model and to record the result.
pub struct PreparedTurn {
    runtime: Runtime,
    /// The agent answering.
    pub agent: Agent,
    /// The conversation.
    pub conversation: Conversation,
    /// The id the answer will be stored under.
    pub answer_id: String,
    client: Arc<dyn LlmClient>,
    request: CompletionRequest,
    user_message: String,
    started: Instant,
    started_at: DateTime<Utc>,
}

/// A recorded turn.
#[derive(Debug, Clone)]
pub struct ChatTurn {
    /// The agent that answered.
    pub agent: Agent,
    /// The conversation.
    pub conversation: Conversation,
    /// The stored user message.
    pub user_message: Message,
    /// The stored answer.
    pub answer: Message,
    /// Why the answer ended.
    pub finish_reason: Option<String>,
}

fn check_text(field: &str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid::new(
            field,
            format!("{} is required and cannot be empty", capital(field)),
        ));
    }
    if value.chars().count() > MESSAGE_MAX_CHARS {
        return Err(Invalid::new(
            field,
            format!("must be at most {MESSAGE_MAX_CHARS} characters"),
        ));
    }
    Ok(())
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

    /// Runs a one-shot call and logs it (also when the provider fails).
    ///
    /// # Errors
    /// `Invalid` (blank prompt, bad run id), `ModelNotFound`, `Conflict` (run id taken),
    /// `Provider`.
    #[tracing::instrument(skip_all)]
    pub async fn run(&self, req: RunRequest) -> Result<Run> {
        check_text("prompt", &req.prompt)?;
        let id = match &req.run_id {
            Some(id) => parse_external_id("run_id", id)?,
            None => new_id(RUN_ID_PREFIX),
        };
        let model = self.providers.resolve(&req.model).await?;
        let client = self.client_for(&model).await?;
        let mut messages = Vec::with_capacity(2);
        if !req.preamble.trim().is_empty() {
            messages.push(PromptMessage::new(Role::System, req.preamble.clone()));
        }
        messages.push(PromptMessage::new(Role::User, req.prompt.clone()));
        let request = CompletionRequest {
            model: model.model_name.clone(),
            messages,
            temperature: req.temperature,
            top_p: req.top_p,
            max_tokens: req.max_tokens,
        };
        let created_at = self.clock.now();
        let started = Instant::now();
        let outcome = client.complete(request).await;
        let mut run = Run {
            id,
            preamble: req.preamble,
            prompt: req.prompt,
            model: model.clone(),
            response: None,
            usage: None,
            latency_ms: millis(started),
            status: RunStatus::Succeeded,
            error: None,
            log_meta: req.log_meta,
            created_at,
        };
        match outcome {
            Ok(c) => {
                run.response = Some(c.content);
                run.usage = c.usage;
                self.runs.insert_run(&run).await?;
                Ok(run)
            }
            Err(error) => {
                run.status = RunStatus::Failed;
                run.error = Some(error.to_string());
                self.runs.insert_run(&run).await?;
                Err(Error::Provider {
                    provider_id: model.provider_id.to_string(),
                    error,
                })
            }
        }
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

    /// Prepares a chat turn: loads the agent, opens the conversation, builds the prompt.
    ///
    /// # Errors
    /// `NotFound` (agent), `Invalid` (blank message, bad session id), `Conflict` (archived
    /// agent), `ModelNotFound` (the agent's provider is gone).
    #[tracing::instrument(skip_all, fields(agent = %agent))]
    pub async fn prepare_turn(&self, agent: &AgentRef, req: ChatRequest) -> Result<PreparedTurn> {
        check_text("message", &req.message)?;
        let session_key = req
            .session_key
            .as_deref()
            .map(|k| parse_external_id("session_id", k))
            .transpose()?;
        let agent = self.agents.get_agent(agent).await?;
        if agent.status == AgentStatus::Archived {
            return Err(Error::conflict(
                "status",
                format!("agent '{}' is archived", agent.key),
            ));
        }
        let client = self.client_for(&agent.model).await?;
        let conv_id = new_id(CONVERSATION_ID_PREFIX);
        let key = session_key.unwrap_or_else(|| conv_id.clone());
        let now = self.clock.now();
        let (conversation, created) = self
            .conversations
            .open_conversation(&conv_id, &agent.id, &key, &req.context, now)
            .await?;
        let history = if created {
            Vec::new()
        } else {
            self.conversations
                .last_messages(&conversation.id, self.settings.history_max_messages)
                .await?
        };
        let mut messages = Vec::with_capacity(history.len() + 2);
        if !agent.instructions.trim().is_empty() {
            messages.push(PromptMessage::new(Role::System, agent.instructions.clone()));
        }
        messages.extend(trim_history(history, self.settings.history_max_chars));
        messages.push(PromptMessage::new(Role::User, req.message.clone()));
        let request = CompletionRequest {
            model: agent.model.model_name.clone(),
            messages,
            temperature: agent.temperature.map(|t| t.get()),
            top_p: agent.top_p.map(|t| t.get()),
            max_tokens: agent.max_tokens.map(|t| t.get()),
        };
        Ok(PreparedTurn {
            runtime: self.clone(),
            agent,
            conversation,
            answer_id: new_id(MESSAGE_ID_PREFIX),
            client,
            request,
            user_message: req.message,
            started: Instant::now(),
            started_at: now,
        })
    }

    /// A whole chat turn: prepare, call the model, record.
    ///
    /// # Errors
    /// As [`Runtime::prepare_turn`], plus `Provider`.
    pub async fn chat(&self, agent: &AgentRef, req: ChatRequest) -> Result<ChatTurn> {
        let turn = self.prepare_turn(agent, req).await?;
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
    fn provider_error(&self, error: ProviderError) -> Error {
        Error::Provider {
            provider_id: self.agent.model.provider_id.to_string(),
            error,
        }
    }

    /// Asks the model for a whole answer.
    ///
    /// # Errors
    /// `Provider`.
    pub async fn complete(&self) -> Result<Completion> {
        self.client
            .complete(self.request.clone())
            .await
            .map_err(|e| self.provider_error(e))
    }

    /// Asks the model for a streamed answer. Dropping the stream cancels the upstream call.
    ///
    /// # Errors
    /// `Provider` when the stream cannot start.
    pub async fn stream(&self) -> Result<CompletionStream> {
        self.client
            .stream(self.request.clone())
            .await
            .map_err(|e| self.provider_error(e))
    }

    /// Converts a provider failure met while streaming into the domain error.
    pub fn stream_error(&self, error: ProviderError) -> Error {
        self.provider_error(error)
    }

    /// Milliseconds since the turn was prepared.
    pub fn elapsed_ms(&self) -> u64 {
        millis(self.started)
    }

    /// Stores the user message and the answer together.
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
        let user_message = Message {
            id: new_id(MESSAGE_ID_PREFIX),
            conversation_id: self.conversation.id.clone(),
            agent_id: self.agent.id.clone(),
            role: Role::User,
            content: self.user_message,
            usage: None,
            latency_ms: None,
            model: None,
            agent_version: None,
            status: MessageStatus::Complete,
            created_at: self.started_at,
        };
        let answered_at = self
            .runtime
            .clock
            .now()
            .max(self.started_at + chrono::Duration::microseconds(1));
        let answer = Message {
            id: self.answer_id,
            conversation_id: self.conversation.id.clone(),
            agent_id: self.agent.id.clone(),
            role: Role::Assistant,
            content,
            usage,
            latency_ms: Some(latency_ms),
            model: Some(self.agent.model.clone()),
            agent_version: None,
            status,
            created_at: answered_at,
        };
        self.runtime
            .conversations
            .append_messages(&[user_message.clone(), answer.clone()])
            .await?;
        let mut conversation = self.conversation;
        conversation.message_count += 2;
        conversation.updated_at = answered_at;
        Ok(ChatTurn {
            agent: self.agent,
            conversation,
            user_message,
            answer,
            finish_reason,
        })
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
    }
}
