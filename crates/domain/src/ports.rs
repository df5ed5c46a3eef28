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

use secrecy::SecretString;

use crate::agent::{Agent, AgentFilter, AgentId, AgentKey, AgentRef};
use crate::auth::{
    AccessClaims, ApiKey, ApiKeyId, RefreshTokenRecord, Session, User, UserId, Username,
};
use crate::conversation::{Conversation, Message, MessageQuery, Run, RunFilter};
use crate::mcp::{McpCatalog, McpServer, McpServerId, McpServerRef};
use crate::page::{Page, Paged};
use crate::provider::{Provider, ProviderId};
use crate::task::{Task, TaskFilter, TaskId, TaskOutcome};
use crate::version::AgentVersion;

pub use crate::cluster::ClusterStore;

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
    /// 1), atomically: two concurrent publishes get two different numbers. A `draft` version
    /// takes a number too but is never the latest published one.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `agent`) when the agent does not exist.
    async fn publish_version(
        &self,
        snapshot: &Agent,
        note: Option<&str>,
        created_by: Option<&str>,
        now: DateTime<Utc>,
        draft: bool,
    ) -> Result<AgentVersion>;

    /// One version.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `version`) when the agent has no such version.
    async fn get_version(&self, agent: &AgentId, version: u32) -> Result<AgentVersion>;

    /// The highest version that is not a draft, if any.
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

/// Durable storage of registered MCP servers, their secrets (environment and header values)
/// included. The status is not stored: it is the state of a process on one replica.
#[async_trait]
pub trait McpServerStore: Send + Sync {
    /// Stores a new MCP server.
    ///
    /// # Errors
    /// MUST return `Conflict` (field `slug`) when another server has that slug, (field `id`)
    /// when the id is taken; nothing is stored then.
    async fn insert_mcp_server(&self, server: &McpServer) -> Result<()>;

    /// One server by id or slug, its status `stopped`.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `mcp_server`) when no server has that id or slug.
    async fn get_mcp_server(&self, server: &McpServerRef) -> Result<McpServer>;

    /// Servers, newest first (then by id, descending), with the total number.
    async fn list_mcp_servers(&self, page: Page) -> Result<Paged<McpServer>>;

    /// Replaces every stored field of the server with the same id (its `created_at` is kept
    /// as given).
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `mcp_server`) when the id does not exist, `Conflict`
    /// (field `slug`) when the new slug belongs to another server; nothing is changed then.
    async fn update_mcp_server(&self, server: &McpServer) -> Result<()>;

    /// Stores what a server's last handshake reported (capabilities and tools), nothing
    /// else. Returns whether the server exists.
    async fn set_mcp_catalog(&self, id: &McpServerId, catalog: &McpCatalog) -> Result<bool>;

    /// Deletes a server. Returns whether it existed. Deleting twice is not an error.
    async fn delete_mcp_server(&self, id: &McpServerId) -> Result<bool>;
}

/// Request counts per client and minute, shared by every replica (rate limits that hold for
/// the deployment).
#[async_trait]
pub trait RateUsageStore: Send + Sync {
    /// Adds `counts` (client key, requests this replica admitted since it last reported) to
    /// the window that starts at `window`, and returns the deployment's totals for those
    /// keys in that window. Windows older than two minutes may be deleted.
    async fn add_usage(
        &self,
        window: chrono::DateTime<chrono::Utc>,
        counts: &[(String, u64)],
    ) -> Result<Vec<(String, u64)>>;
}

/// Durable storage of tasks: the queue every replica's workers claim from.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a new task and returns it with `true`. When the same `created_by` already made
    /// a task with the same `idempotency_key`, stores nothing and returns that task with
    /// `false`.
    ///
    /// # Errors
    /// `Conflict` (field `id`) when the id is taken.
    async fn insert_task(&self, task: &Task) -> Result<(Task, bool)>;

    /// One task.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `task`) when absent.
    async fn get_task(&self, id: &TaskId) -> Result<Task>;

    /// Tasks matching `filter`, newest first, with the total number.
    async fn list_tasks(&self, filter: &TaskFilter, page: Page) -> Result<Paged<Task>>;

    /// Claims the next task for `worker`, atomically: the highest priority, then the oldest,
    /// among pending tasks whose `run_at` has come and running tasks whose lease expired
    /// before `now` with attempts left. The claimed task becomes `running` with the lease
    /// (`lease_owner`, `lease_expires_at = now + lease`), one more attempt, and `started_at`
    /// set if it was not. Two workers (on any replicas) never claim the same task at once.
    async fn claim_task(
        &self,
        worker: &str,
        lease: std::time::Duration,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Task>>;

    /// Fails every running task whose lease expired before `now` with no attempts left;
    /// returns them.
    async fn reap_tasks(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<Task>>;

    /// Extends `worker`'s lease on a running task to `until`. Returns `false` (changing
    /// nothing) when the task is no longer running under that worker's lease (cancelled,
    /// or claimed by another after the lease ran out).
    async fn renew_lease(
        &self,
        id: &TaskId,
        worker: &str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool>;

    /// Ends `worker`'s attempt: completed with the result, or failed (pending again at
    /// `retry_at` when attempts remain, else failed). The lease is released. Returns the
    /// task after the change, or `None` when it is no longer running under that worker's
    /// lease (nothing is changed then).
    async fn finish_task(
        &self,
        id: &TaskId,
        worker: &str,
        outcome: &TaskOutcome,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Task>>;

    /// Cancels a pending or running task (the lease is released); returns the task after
    /// the change, unchanged when it had already ended.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `task`) when absent.
    async fn cancel_task(&self, id: &TaskId, now: chrono::DateTime<chrono::Utc>) -> Result<Task>;
}

/// Durable storage of conversations and their messages.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// The conversation of `fresh.agent_id` with `fresh.session_key`; `fresh` itself (empty:
    /// its `message_count` is ignored and stored as 0) is stored when there is none. Returns
    /// it and whether it was created. Two concurrent calls with the same agent and key MUST
    /// return the same conversation.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `agent`) when the agent does not exist, `Conflict`
    /// (field `id`) when `fresh.id` belongs to another conversation.
    async fn open_conversation(&self, fresh: &Conversation) -> Result<(Conversation, bool)>;

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

    /// Conversations, most recently updated first (then by id, descending), of the given
    /// agents (`None`: of every agent; an empty list matches nothing), with the total number
    /// of matches.
    async fn list_conversations(
        &self,
        agents: Option<&[AgentId]>,
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

    /// As [`ConversationStore::append_messages`], but only while the conversation still
    /// holds `expected` messages; otherwise stores nothing and returns `false` (another turn
    /// was stored since the caller read it). The check and the write are one transaction.
    ///
    /// # Errors
    /// As [`ConversationStore::append_messages`].
    async fn append_messages_if(&self, messages: &[Message], expected: u64) -> Result<bool>;

    /// Stores a new conversation together with its first messages, atomically (all or
    /// nothing, one transaction): the conversation as given (its `message_count` and
    /// `updated_at` should already count the messages), then the messages, which must all
    /// belong to it. How a new conversation's first turn is stored with one write.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `agent`) when the agent does not exist, `Conflict`
    /// (field `id`) when the conversation's id or a message id is taken, `Conflict` (field
    /// `session_id`) when the agent already has a conversation with that session key, and
    /// `Internal` for a message of another conversation; nothing is stored then.
    async fn start_conversation(
        &self,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<()>;

    /// One message by id, if it exists.
    async fn get_message(&self, id: &str) -> Result<Option<Message>>;

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

    /// Logs a run whose id nobody else can hold (a generated one), off the caller's latency
    /// path: an adapter MAY store it a few milliseconds later in a batch, but MUST store it
    /// before a clean shutdown completes, and MUST fall back to storing it now when it cannot
    /// queue it. Only a killed process may lose the last queued runs.
    ///
    /// # Errors
    /// Storage failures of the fallback.
    async fn log_run(&self, run: &Run) -> Result<()> {
        self.insert_run(run).await
    }
}

/// Durable storage of user accounts.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user.
    ///
    /// # Errors
    /// MUST return `Conflict` (field `username`) when the username is taken, (field `id`)
    /// when the id is.
    async fn insert_user(&self, user: &User) -> Result<()>;

    /// One user by id.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `user`) when the id does not exist.
    async fn get_user(&self, id: &UserId) -> Result<User>;

    /// The user with this (lower-case) username, if any.
    async fn find_user_by_username(&self, username: &Username) -> Result<Option<User>>;

    /// Users, oldest first (then by id), with the total number.
    async fn list_users(&self, page: Page) -> Result<Paged<User>>;

    /// Replaces the stored user with the same id.
    ///
    /// # Errors
    /// MUST return `NotFound` when the id does not exist, `Conflict` (field `username`) when
    /// the new username belongs to another user.
    async fn update_user(&self, user: &User) -> Result<()>;

    /// Deletes a user, its sessions and refresh tokens, and the API keys it created. Returns
    /// whether it existed.
    async fn delete_user(&self, id: &UserId) -> Result<bool>;

    /// How many users there are, and how many of them are admins.
    async fn count_users(&self) -> Result<(u64, u64)>;
}

/// Durable storage of login sessions and their refresh tokens. Shared by every replica, so
/// a revocation holds everywhere at once.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session with its first refresh token, atomically.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `user`) when the user does not exist.
    async fn insert_session(&self, session: &Session, token: &RefreshTokenRecord) -> Result<()>;

    /// One session.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `session`) when the id does not exist.
    async fn get_session(&self, id: &str) -> Result<Session>;

    /// Marks a session revoked at `now` (when it is not already). Returns whether it exists.
    async fn revoke_session(&self, id: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Revokes every open session of a user; returns how many.
    async fn revoke_user_sessions(&self, user: &UserId, now: DateTime<Utc>) -> Result<u64>;

    /// The refresh token with this digest, if any.
    async fn find_refresh_token(&self, token_hash: &str) -> Result<Option<RefreshTokenRecord>>;

    /// Marks the token used at `now` if and only if it is unused (atomic: of two concurrent
    /// calls, exactly one gets `true`).
    async fn consume_refresh_token(&self, token_hash: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Stores a new refresh token of an existing session.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `session`) when the session does not exist.
    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> Result<()>;

    /// Deletes refresh tokens that expired before `now`, then sessions left without any
    /// refresh token and sessions revoked before `revoked_before`. Returns how many sessions
    /// were deleted.
    async fn purge_sessions(
        &self,
        now: DateTime<Utc>,
        revoked_before: DateTime<Utc>,
    ) -> Result<u64>;
}

/// Durable storage of API keys (digests only).
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key.
    ///
    /// # Errors
    /// MUST return `Conflict` (field `id`) when the id or the digest is taken.
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()>;

    /// One key by id.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `api_key`) when the id does not exist.
    async fn get_api_key(&self, id: &ApiKeyId) -> Result<ApiKey>;

    /// The key whose secret has this digest, if any (revoked and expired ones included).
    async fn find_api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>>;

    /// Keys, newest first (then by id, descending), optionally only those created by
    /// `created_by`, with the total number.
    async fn list_api_keys(&self, created_by: Option<&UserId>, page: Page)
    -> Result<Paged<ApiKey>>;

    /// Marks a key revoked at `now`. Returns whether a key was revoked by this call (false
    /// when it does not exist or was already revoked).
    async fn revoke_api_key(&self, id: &ApiKeyId, now: DateTime<Utc>) -> Result<bool>;

    /// Sets the key's `last_used_at` to `now` unless it is already at or after
    /// `now - min_interval_secs` seconds (so a busy key is written at most that often).
    async fn touch_api_key(
        &self,
        id: &ApiKeyId,
        now: DateTime<Utc>,
        min_interval_secs: i64,
    ) -> Result<()>;
}

/// Durable server-wide secrets shared by every replica (the access-token signing key when the
/// configuration gives none).
#[async_trait]
pub trait ServerSecretStore: Send + Sync {
    /// The secret named `name`; when there is none, stores `candidate` and returns it. Two
    /// concurrent calls MUST return the same secret.
    async fn get_or_insert_secret(
        &self,
        name: &str,
        candidate: SecretString,
    ) -> Result<SecretString>;
}

/// Hashes and checks passwords (argon2id in production). Slow on purpose.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// A self-describing hash (PHC string) of `password` with a fresh salt.
    async fn hash_password(&self, password: &SecretString) -> Result<String>;

    /// Whether `password` matches `hash`. A malformed hash is `Ok(false)`, not an error.
    async fn verify_password(&self, password: &SecretString, hash: &str) -> Result<bool>;
}

/// Signs and checks access tokens (HS256 JWTs in production).
pub trait TokenCodec: Send + Sync {
    /// A signed token carrying `claims`.
    ///
    /// # Errors
    /// `Internal` when signing fails.
    fn issue(&self, claims: &AccessClaims) -> Result<SecretString>;

    /// The claims of a token whose signature, algorithm, issuer, audience and expiry are
    /// right.
    ///
    /// # Errors
    /// MUST return `Unauthorized` for any token that is not exactly right.
    fn verify(&self, token: &str) -> Result<AccessClaims>;
}

/// Random secrets and their digests.
pub trait SecretGenerator: Send + Sync {
    /// `len` random alphanumeric characters from a cryptographic generator.
    fn random_alphanumeric(&self, len: usize) -> SecretString;

    /// The lower-case hex SHA-256 of `secret`: how high-entropy tokens and keys are stored
    /// and looked up.
    fn digest(&self, secret: &str) -> String;
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

/// A change counter shared by every replica: how in-process caches learn that another
/// replica changed what they hold (see [`crate::cache`]).
#[async_trait]
pub trait ChangeLog: Send + Sync {
    /// The counter: it grows by at least one with every [`ChangeLog::record_change`].
    async fn change_counter(&self) -> Result<i64>;

    /// Records that cached data (agents, versions, providers, users, sessions, API keys)
    /// changed.
    async fn record_change(&self) -> Result<()>;
}

/// Durable storage of test sets, evaluation runs and their results.
#[async_trait]
pub trait EvalStore: Send + Sync {
    /// Stores a new test set.
    ///
    /// # Errors
    /// `Conflict` (field `name`) when another test set has the name.
    async fn insert_testset(&self, set: &crate::eval::TestSet) -> Result<()>;

    /// One test set, with its cases.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `testset`) when absent.
    async fn get_testset(&self, id: &crate::eval::TestSetId) -> Result<crate::eval::TestSet>;

    /// The test set with this name.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `testset`) when absent.
    async fn get_testset_by_name(&self, name: &str) -> Result<crate::eval::TestSet>;

    /// Test sets (without their cases), newest first, with the total number.
    async fn list_testsets(&self, page: Page) -> Result<Paged<crate::eval::TestSetSummary>>;

    /// Replaces a test set's name, description and cases when its stored `revision` is
    /// `expected_revision` (the new one is stored as given). Returns `false`, changing
    /// nothing, when the revision moved on (another write came first).
    ///
    /// # Errors
    /// `NotFound` when absent; `Conflict` (field `name`) when another test set has the name.
    async fn update_testset(
        &self,
        set: &crate::eval::TestSet,
        expected_revision: i64,
    ) -> Result<bool>;

    /// Deletes a test set (its runs stay); `false` when there was none.
    async fn delete_testset(&self, id: &crate::eval::TestSetId) -> Result<bool>;

    /// Stores a new run (`pending`).
    async fn insert_eval_run(&self, run: &crate::eval::EvalRun) -> Result<()>;

    /// One run, `done` counted from its stored results.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `eval_run`) when absent.
    async fn get_eval_run(&self, id: &crate::eval::EvalRunId) -> Result<crate::eval::EvalRun>;

    /// Runs matching `filter`, newest first (`done` counted), with the total number.
    async fn list_eval_runs(
        &self,
        filter: &crate::eval::EvalRunFilter,
        page: Page,
    ) -> Result<Paged<crate::eval::EvalRun>>;

    /// Claims the oldest run that is pending, or running under a lease that expired before
    /// `now`, for `runner` (lease until `now + lease`, one more attempt, `started_at` set if
    /// it was not). Two runners never hold one run at once.
    async fn claim_eval_run(
        &self,
        runner: &str,
        lease: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::eval::EvalRun>>;

    /// Extends `runner`'s lease to `until`; `false` (changing nothing) when the run is no
    /// longer running under that lease (cancelled, or taken by another runner).
    async fn renew_eval_lease(
        &self,
        id: &crate::eval::EvalRunId,
        runner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool>;

    /// Stores one result; a result already stored for the same run, configuration, case and
    /// repeat is kept (a runner that took over may repeat a case).
    async fn insert_eval_result(&self, result: &crate::eval::EvalResult) -> Result<()>;

    /// A run's results, by configuration, then case position as stored, then repeat.
    async fn eval_results(
        &self,
        id: &crate::eval::EvalRunId,
    ) -> Result<Vec<crate::eval::EvalResult>>;

    /// Ends `runner`'s run: `completed`, or `failed` with `error`. Returns `false`, changing
    /// nothing, when it no longer runs under that lease.
    async fn finish_eval_run(
        &self,
        id: &crate::eval::EvalRunId,
        runner: &str,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Cancels a pending or running run; returns it after the change (unchanged when it had
    /// already ended).
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `eval_run`) when absent.
    async fn cancel_eval_run(
        &self,
        id: &crate::eval::EvalRunId,
        now: DateTime<Utc>,
    ) -> Result<crate::eval::EvalRun>;
}

/// Durable storage of prompt optimisations (claimed by runners like evaluation runs).
#[async_trait]
pub trait OptimizationStore: Send + Sync {
    /// Stores a new optimisation (`pending`).
    ///
    /// # Errors
    /// MUST return `Conflict` (field `agent`) when the agent has one pending or running.
    async fn insert_optimization(&self, o: &crate::optimization::Optimization) -> Result<()>;

    /// One optimisation.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `optimization`) when absent.
    async fn get_optimization(
        &self,
        id: &crate::optimization::OptimizationId,
    ) -> Result<crate::optimization::Optimization>;

    /// An agent's optimisations, newest first, with the total.
    async fn list_optimizations(
        &self,
        agent: &AgentId,
        page: Page,
    ) -> Result<Paged<crate::optimization::Optimization>>;

    /// The agent's latest optimisation and when its latest completed one ended.
    async fn optimization_state(
        &self,
        agent: &AgentId,
    ) -> Result<(
        Option<crate::optimization::Optimization>,
        Option<DateTime<Utc>>,
    )>;

    /// Claims the oldest optimisation that is pending, or running under a lease that expired
    /// before `now`, for `runner` (lease until `now + lease`, one more attempt, `started_at`
    /// set if it was not). Two runners never hold one at once.
    async fn claim_optimization(
        &self,
        runner: &str,
        lease: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::optimization::Optimization>>;

    /// Stores a running optimisation's phase and progress and renews its lease, when `runner`
    /// still holds it; `false` (nothing changed) when it does not (cancelled, taken over).
    async fn save_optimization(
        &self,
        o: &crate::optimization::Optimization,
        runner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool>;

    /// Ends a running optimisation held by `runner`: `completed` (with its progress and
    /// draft version) or `failed` (with `error`). `false` when it does not hold it.
    async fn finish_optimization(
        &self,
        o: &crate::optimization::Optimization,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Cancels a pending or running optimisation (one that ended stays as it is) and returns it.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `optimization`) when absent.
    async fn cancel_optimization(
        &self,
        id: &crate::optimization::OptimizationId,
        now: DateTime<Utc>,
    ) -> Result<crate::optimization::Optimization>;
}

/// A conversation waiting for its analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleConversation {
    /// The conversation.
    pub id: String,
    /// Its agent.
    pub agent_id: AgentId,
    /// Its messages.
    pub message_count: u64,
    /// When its last message was stored.
    pub updated_at: DateTime<Utc>,
}

/// Durable storage of conversation analyses, and the aggregations insights read.
#[async_trait]
pub trait InsightStore: Send + Sync {
    /// Conversations whose last message is at or after `from` and before `idle_before`, with
    /// messages, and with no analysis of their latest message; oldest first.
    async fn idle_conversations(
        &self,
        from: DateTime<Utc>,
        idle_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<IdleConversation>>;

    /// Stores an analysis, replacing the conversation's earlier one (and its issues).
    async fn save_analysis(&self, analysis: &crate::insight::ConversationAnalysis) -> Result<()>;

    /// The analysis of a conversation, if any.
    async fn get_analysis(
        &self,
        conversation_id: &str,
    ) -> Result<Option<crate::insight::ConversationAnalysis>>;

    /// The counts over an agent's analyses whose conversation's last message is in
    /// `[from, to)` (`from` `None`: since the beginning).
    async fn tally(
        &self,
        agent: &AgentId,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Result<crate::insight::Tally>;

    /// The issue labels of the same analyses, most frequent first, at most `limit`.
    async fn issue_counts(
        &self,
        agent: &AgentId,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::insight::IssueCount>>;

    /// Analyses made by `analyser` since `since` (the daily cap of a model analyser).
    async fn analyses_since(&self, analyser: &str, since: DateTime<Utc>) -> Result<u64>;

    /// The agent's stored conversations.
    async fn conversation_count(&self, agent: &AgentId) -> Result<u64>;
}
