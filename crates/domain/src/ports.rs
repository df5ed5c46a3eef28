//! Ports: what the domain needs from the outside world. Adapters implement these traits and
//! translate their own failures into [`Error`](crate::Error) kinds as each method documents.
//! Every port is object-safe and used as `Arc<dyn Port>`.
//!
//! Common to all methods: a backing service that cannot be reached is
//! [`Error::Unavailable`](crate::Error::Unavailable); anything unexpected is
//! [`Error::Internal`](crate::Error::Internal).

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};

use crate::Result;
use serde_json::{Map, Value};

use crate::agent::{Agent, AgentFilter, AgentId, AgentKey, AgentRef};
use crate::conversation::{Conversation, Message, MessageQuery, Run, RunFilter};
use crate::page::{Page, Paged};
use crate::provider::{Provider, ProviderId};
use crate::version::AgentVersion;

/// Durable storage of agents.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Stores a new agent.
    ///
    /// # Errors
    /// MUST return `Conflict` with field `name` or `key` when another agent has that name or
    /// key; nothing is stored then.
    async fn insert_agent(&self, agent: &Agent) -> Result<()>;

    /// Reads one agent by id or key.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `agent`) when no agent has that id or key.
    async fn get_agent(&self, agent: &AgentRef) -> Result<Agent>;

    /// Lists agents matching `filter`, newest first (then by id, descending), with the total
    /// number of matches.
    async fn list_agents(&self, filter: &AgentFilter, page: Page) -> Result<Paged<Agent>>;

    /// Replaces every field of the stored agent with the same id.
    ///
    /// # Errors
    /// MUST return `NotFound` when the id does not exist, `Conflict` (field `name` or `key`)
    /// when the new name or key belongs to another agent; nothing is changed then.
    async fn update_agent(&self, agent: &Agent) -> Result<()>;

    /// Deletes an agent. Returns whether it existed. Deleting twice is not an error.
    async fn delete_agent(&self, id: &AgentId) -> Result<bool>;

    /// The keys of the agents whose model is served by `provider` (at most 100).
    async fn agents_using_provider(&self, provider: &ProviderId) -> Result<Vec<AgentKey>>;
}

/// Durable storage of published agent versions.
#[async_trait]
pub trait VersionStore: Send + Sync {
    /// Stores `snapshot` as the agent's next version (one more than its highest, starting at
    /// 1), atomically: two concurrent publishes get two different numbers.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `agent`) when the agent does not exist.
    async fn publish_version(
        &self,
        snapshot: &Agent,
        note: Option<&str>,
        created_by: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<AgentVersion>;

    /// One version.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `version`) when the agent has no such version.
    async fn get_version(&self, agent: &AgentId, version: u32) -> Result<AgentVersion>;

    /// The highest version, if any.
    async fn latest_version(&self, agent: &AgentId) -> Result<Option<AgentVersion>>;

    /// Versions of an agent, newest first, with the total.
    async fn list_versions(&self, agent: &AgentId, page: Page) -> Result<Paged<AgentVersion>>;
}

/// Durable storage of API-managed providers (config and built-in providers are not stored).
#[async_trait]
pub trait ProviderStore: Send + Sync {
    /// Stores a new provider, its API key included.
    ///
    /// # Errors
    /// MUST return `Conflict` (field `id`) when the id is taken.
    async fn insert_provider(&self, provider: &Provider) -> Result<()>;

    /// Reads one provider.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `provider`) when the id does not exist.
    async fn get_provider(&self, id: &ProviderId) -> Result<Provider>;

    /// Every stored provider, ordered by id.
    async fn list_providers(&self) -> Result<Vec<Provider>>;

    /// Replaces a stored provider.
    ///
    /// # Errors
    /// MUST return `NotFound` when the id does not exist.
    async fn update_provider(&self, provider: &Provider) -> Result<()>;

    /// Deletes a provider. Returns whether it existed.
    async fn delete_provider(&self, id: &ProviderId) -> Result<bool>;
}

/// Durable storage of conversations and their messages.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// The conversation of `agent` with `session_key`, created (with `id`, `context` and
    /// `now`) when there is none. Returns it and whether it was created. Two concurrent calls
    /// with the same agent and key MUST return the same conversation.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `agent`) when the agent does not exist, `Conflict`
    /// (field `id`) when `id` belongs to another conversation.
    async fn open_conversation(
        &self,
        id: &str,
        agent: &AgentId,
        session_key: &str,
        context: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<(Conversation, bool)>;

    /// The conversation of `agent` with `session_key`, if any.
    async fn find_conversation(
        &self,
        agent: &AgentId,
        session_key: &str,
    ) -> Result<Option<Conversation>>;

    /// One conversation by id.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `conversation`) when the id does not exist.
    async fn get_conversation(&self, id: &str) -> Result<Conversation>;

    /// Conversations, most recently updated first (then by id, descending), optionally of one
    /// agent, with the total number of matches.
    async fn list_conversations(
        &self,
        agent: Option<&AgentId>,
        page: Page,
    ) -> Result<Paged<Conversation>>;

    /// Deletes a conversation and its messages. Returns whether it existed.
    async fn delete_conversation(&self, id: &str) -> Result<bool>;

    /// Stores messages (all of one conversation) atomically: all or none. Raises the
    /// conversation's `message_count` and sets its `updated_at` to the last message's time.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `conversation`) when the conversation does not exist,
    /// `Conflict` (field `id`) when a message id is taken (nothing is stored then), and
    /// `Internal` for a batch spanning several conversations.
    async fn append_messages(&self, messages: &[Message]) -> Result<()>;

    /// The newest `limit` messages of a conversation, returned oldest first (empty for an
    /// unknown conversation).
    async fn last_messages(&self, conversation_id: &str, limit: u32) -> Result<Vec<Message>>;

    /// The newest `limit` messages matching `query`, returned oldest first (by creation time,
    /// then id).
    async fn query_messages(&self, query: &MessageQuery) -> Result<Vec<Message>>;
}

/// Durable storage of one-shot runs.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores a run.
    ///
    /// # Errors
    /// MUST return `Conflict` (field `run_id`) when the id is taken.
    async fn insert_run(&self, run: &Run) -> Result<()>;

    /// One run.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `run`) when the id does not exist.
    async fn get_run(&self, id: &str) -> Result<Run>;

    /// Runs matching `filter` (on the string values of `log_meta`), newest first (then by id, descending), with
    /// the total number of matches.
    async fn list_runs(&self, filter: &RunFilter, page: Page) -> Result<Paged<Run>>;
}

/// Whether the backing services answer (for `/ready`).
#[async_trait]
pub trait HealthProbe: Send + Sync {
    /// Succeeds when the backing service answers a trivial query.
    ///
    /// # Errors
    /// `Unavailable` when it does not.
    async fn ping(&self) -> Result<()>;
}

/// The current time. Tests may substitute a fixed clock.
pub trait Clock: Send + Sync {
    /// Now, in UTC, with at most microsecond precision (what every database keeps).
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
