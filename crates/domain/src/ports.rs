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
use crate::agent::{Agent, AgentFilter, AgentId, AgentKey, AgentRef};
use crate::page::{Page, Paged};
use crate::provider::{Provider, ProviderId};

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
