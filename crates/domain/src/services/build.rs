//! The services wired from their ports: the one place that decides which service gets which
//! store, behind which cache. The server, its CLI, the test harness and any program that
//! embeds the domain call [`Services::build`]; none of them assembles a service by hand.
//!
//! Framework-free: the ports are traits of this crate, the background work is a plain future
//! that the caller runs on its own runtime ([`Services::background`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::ModelSpec;
use crate::cache::{CacheableStores, Coherence};
use crate::cluster::ClusterStore;
use crate::error::Result;
use crate::event::EventBus;
use crate::llm::LlmClientFactory;
use crate::mcp::McpConnector;
use crate::metrics::Metrics;
use crate::ports::{
    ChangeLog, Clock, ConversationStore, EvalStore, InsightStore, McpServerStore,
    OptimizationStore, PasswordHasher, RunStore, SecretGenerator, TaskStore, TokenCodec,
};
use crate::provider::Provider;
use crate::services::{
    AgentService, AuthPorts, AuthService, AuthSettings, ClusterService, EvalService, EvalSettings,
    FilePorts, FileService, InsightService, InsightSettings, InstanceSettings, Instances,
    KnowledgePorts, KnowledgeService, KnowledgeSettings, McpServerService, McpSettings,
    McpSupervisor, OptimizationService, ProviderEmbedder, ProviderRegistry, Runtime, RuntimePorts,
    RuntimeSettings, Tails, TaskService, TaskSettings, VersionService,
};
use crate::tool::HttpToolClient;

/// Every port the services need, uncached: [`Services::build`] puts the caches in front.
#[derive(Clone)]
pub struct ServicePorts {
    /// Agents, versions, providers, users, sessions and API keys, as the storage gives them.
    pub stores: CacheableStores,
    /// The change counter shared by every process on the same database: writes move it, the
    /// caches follow it.
    pub changes: Arc<dyn ChangeLog>,
    /// Conversations and their messages.
    pub conversations: Arc<dyn ConversationStore>,
    /// The one-shot run log.
    pub runs: Arc<dyn RunStore>,
    /// Registered MCP servers (not cached: read when a turn's agent binds MCP tools).
    pub mcp_servers: Arc<dyn McpServerStore>,
    /// Clusters (not cached: their slots are loaded into memory and reloaded on change).
    pub clusters: Arc<dyn ClusterStore>,
    /// Starts MCP servers (child processes, remote sessions); `None` makes every start fail
    /// with a clear reason.
    pub mcp: Option<Arc<dyn McpConnector>>,
    /// Clients of the providers.
    pub llm: Arc<dyn LlmClientFactory>,
    /// The task queue.
    pub tasks: Arc<dyn TaskStore>,
    /// Test sets and evaluation runs.
    pub evals: Arc<dyn EvalStore>,
    /// Conversation analyses.
    pub insights: Arc<dyn InsightStore>,
    /// Prompt optimisations.
    pub optimizations: Arc<dyn OptimizationStore>,
    /// Events to subscribers (WebSocket clients, task workers), across replicas when the
    /// adapter carries them.
    pub events: Arc<dyn EventBus>,
    /// Outbound HTTP for agents' `http` tools; `None` makes every such call a tool error.
    pub http_tools: Option<Arc<dyn HttpToolClient>>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Access tokens.
    pub tokens: Arc<dyn TokenCodec>,
    /// Random secrets and digests.
    pub secrets: Arc<dyn SecretGenerator>,
    /// File records and bytes; `None`: the Files API answers 503.
    pub files: Option<FilePorts>,
    /// Text extraction, chunks and the full-text index; `None` (or no `files`): files are
    /// not indexed and knowledge searches answer 503.
    pub knowledge: Option<KnowledgePorts>,
    /// The time.
    pub clock: Arc<dyn Clock>,
}

/// How the services behave.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Providers that are not in the database: the built-in `mock` and those from the
    /// configuration (read-only through the API).
    pub fixed_providers: Vec<Provider>,
    /// The model of an agent saved without one; it must resolve when the services are built.
    pub default_model: ModelSpec,
    /// How long a cached record may be served; zero keeps nothing in memory (writes still move
    /// the shared change counter, so other processes' caches follow them).
    pub cache_max_age: Duration,
    /// How often [`Services::background`] reads the shared change counter.
    pub cache_sync_interval: Duration,
    /// How often [`Services::background`] deletes dead sessions.
    pub session_purge_interval: Duration,
    /// Bounds of a turn.
    pub runtime: RuntimeSettings,
    /// Token lifetimes and login throttling.
    pub auth: AuthSettings,
    /// Supervision of MCP servers.
    pub mcp: McpSettings,
    /// Task workers and leases.
    pub tasks: TaskSettings,
    /// How evaluation runs run.
    pub evals: EvalSettings,
    /// How conversations are analysed.
    pub insights: InsightSettings,
    /// How turns of cluster agents wait for a slot.
    pub instances: InstanceSettings,
    /// The largest file upload, in bytes.
    pub file_max_bytes: u64,
    /// How files are chunked and indexed.
    pub knowledge: KnowledgeSettings,
    /// The embedding model of hybrid ranking (`provider/model`), checked when the services
    /// are built; `None`: BM25 alone (docs/knowledge.md).
    pub knowledge_embedding_model: Option<String>,
}

impl ServiceSettings {
    /// Defaults around the given providers and default model: caches on (60 s, synced every
    /// 250 ms), sessions purged hourly, the runtime's and auth's own defaults.
    pub fn new(fixed_providers: Vec<Provider>, default_model: ModelSpec) -> Self {
        Self {
            fixed_providers,
            default_model,
            cache_max_age: Duration::from_secs(60),
            cache_sync_interval: Duration::from_millis(250),
            session_purge_interval: Duration::from_secs(3600),
            runtime: RuntimeSettings::default(),
            auth: AuthSettings::default(),
            mcp: McpSettings::default(),
            tasks: TaskSettings::default(),
            evals: EvalSettings::default(),
            insights: InsightSettings::default(),
            instances: InstanceSettings::default(),
            file_max_bytes: 100 * 1024 * 1024,
            knowledge: KnowledgeSettings::default(),
            knowledge_embedding_model: None,
        }
    }
}

/// The use-case services, wired. Cheap to clone (every service is a handle).
#[derive(Clone)]
pub struct Services {
    /// Agent definitions.
    pub agents: AgentService,
    /// Providers and model resolution.
    pub providers: ProviderRegistry,
    /// Turns, runs, history and conversations.
    pub runtime: Runtime,
    /// Published agent versions.
    pub versions: VersionService,
    /// Users, sessions, API keys.
    pub auth: AuthService,
    /// Registered MCP servers.
    pub mcp_servers: McpServerService,
    /// Tasks and their workers.
    pub tasks: TaskService,
    /// Test sets, evaluation runs and their runners.
    pub evals: EvalService,
    /// Agent status, conversation analyses and insights.
    pub insights: InsightService,
    /// Prompt optimisations and their runner.
    pub optimizations: OptimizationService,
    /// The event bus.
    pub events: Arc<dyn EventBus>,
    /// Clusters and the slots of their agents.
    pub clusters: ClusterService,
    /// What turns count (and what other parts of the process add as sources).
    pub metrics: Metrics,
    /// Uploaded files.
    pub files: FileService,
    /// Knowledge: indexing and search of files' text.
    pub knowledge: KnowledgeService,
    coherence: Option<Arc<Coherence>>,
    cache_sync_interval: Duration,
    session_purge_interval: Duration,
}

impl Services {
    /// Wires the services over `ports`: the cacheable stores behind one shared cache, the
    /// provider registry, versions, agents, the runtime, auth and MCP servers.
    ///
    /// # Errors
    /// The model resolution's error when `default_model` names no known provider or model
    /// (the store is read for providers created by API, so a store error is returned as such);
    /// `Invalid` naming `knowledge_embedding_model` when it names no usable embedding model.
    pub async fn build(ports: ServicePorts, settings: ServiceSettings) -> Result<Self> {
        let changes = ports.changes.clone();
        let coherence = Coherence::new(ports.changes, settings.cache_max_age);
        let stores = ports.stores.cached(&coherence);
        let providers = ProviderRegistry::new(
            settings.fixed_providers,
            stores.providers.clone(),
            stores.agents.clone(),
            ports.clock.clone(),
        );
        providers.resolve(&settings.default_model).await?;
        let versions = VersionService::new(
            stores.agents.clone(),
            stores.versions.clone(),
            ports.clock.clone(),
        );
        let supervisor = McpSupervisor::new(
            ports.mcp,
            ports.mcp_servers.clone(),
            ports.clock.clone(),
            settings.mcp,
        )
        .with_events(ports.events.clone());
        let mcp_servers =
            McpServerService::new(ports.mcp_servers.clone(), ports.clock.clone(), supervisor);
        let metrics = Metrics::new();
        let instances = Instances::new(settings.instances);
        metrics.add_source(Arc::new(instances.clone()));
        let mut knowledge =
            KnowledgeService::new(ports.knowledge, ports.files.clone(), settings.knowledge);
        if let Some(spec) = &settings.knowledge_embedding_model {
            let embedder =
                ProviderEmbedder::new(spec, providers.clone(), ports.llm.clone()).await?;
            knowledge = knowledge.with_embedder(Arc::new(embedder));
        }
        let runtime = Runtime::new(
            RuntimePorts {
                agents: stores.agents.clone(),
                versions: versions.clone(),
                providers: providers.clone(),
                llm: ports.llm,
                conversations: ports.conversations.clone(),
                runs: ports.runs,
                http_tools: ports.http_tools,
                mcp: mcp_servers.clone(),
                knowledge: knowledge.clone(),
                events: ports.events.clone(),
                clock: ports.clock.clone(),
            },
            settings.runtime,
        )
        .with_instances(instances.clone(), metrics.clone())
        .with_tails(Tails::new(
            coherence.clone(),
            settings.runtime.conversation_cache_bytes,
        ));
        let auth = AuthService::new(
            AuthPorts {
                users: stores.users.clone(),
                sessions: stores.sessions.clone(),
                keys: stores.api_keys.clone(),
                hasher: ports.hasher,
                tokens: ports.tokens,
                secrets: ports.secrets,
                clock: ports.clock.clone(),
            },
            settings.auth,
        );
        let mut agents = AgentService::new(
            stores.agents.clone(),
            providers.clone(),
            ports.mcp_servers,
            ports.clock.clone(),
            settings.default_model.clone(),
        );
        if let Some(f) = &ports.files {
            agents = agents.with_files(f.store.clone());
        }
        let tasks = TaskService::new(
            ports.tasks,
            stores.agents.clone(),
            ports.events.clone(),
            ports.clock.clone(),
            settings.tasks,
        );
        metrics.add_source(tasks.depth());
        let insights = InsightService::new(
            ports.insights,
            ports.conversations.clone(),
            agents.clone(),
            runtime.clone(),
            ports.clock.clone(),
            settings.insights,
        );
        let evals = EvalService::new(
            ports.evals,
            agents.clone(),
            versions.clone(),
            providers.clone(),
            runtime.clone(),
            ports.events.clone(),
            ports.clock.clone(),
            settings.evals,
        );
        let optimizations = OptimizationService::new(
            ports.optimizations,
            agents.clone(),
            versions.clone(),
            evals.clone(),
            insights.clone(),
            runtime.clone(),
            ports.events.clone(),
            ports.clock.clone(),
            settings.evals.lease,
            settings.evals.poll,
        );
        let clusters = ClusterService::new(
            ports.clusters,
            agents.clone(),
            versions.clone(),
            providers.clone(),
            mcp_servers.clone(),
            instances,
            metrics.clone(),
            changes,
            ports.clock.clone(),
            settings.default_model,
        );
        clusters.reload().await?;
        let files = FileService::new(ports.files, ports.clock.clone(), settings.file_max_bytes)
            .with_knowledge(knowledge.clone());
        let caching = !settings.cache_max_age.is_zero();
        Ok(Self {
            agents,
            providers,
            runtime,
            versions,
            auth,
            mcp_servers,
            tasks,
            evals,
            insights,
            optimizations,
            events: ports.events,
            clusters,
            metrics,
            files,
            knowledge,
            coherence: caching.then_some(coherence),
            cache_sync_interval: settings.cache_sync_interval.max(Duration::from_millis(1)),
            session_purge_interval: settings.session_purge_interval.max(Duration::from_secs(1)),
        })
    }

    /// Stops what the services started that outlives a request: every MCP server this
    /// process runs (MCP shutdown, SIGTERM, SIGKILL). Call it when the process shuts down.
    pub async fn shutdown(&self) {
        self.mcp_servers.supervisor().stop_all().await;
    }

    /// The work a long-running process does beside its requests, as one future that never
    /// ends: following the shared change counter (so a change made by another process empties
    /// this one's caches within one sync interval) when caching is on, deleting dead
    /// sessions, and running tasks (`tasks.workers` workers). Run it on the process's runtime (`tokio::spawn(services.background())`); a
    /// one-shot program (a CLI command) need not.
    pub fn background(&self) -> impl Future<Output = ()> + Send + 'static {
        let caches = self
            .coherence
            .clone()
            .map(|c| sync_caches(c, self.cache_sync_interval));
        let sessions = purge_sessions(self.auth.clone(), self.session_purge_interval);
        let replica = crate::ids::new_id("replica");
        let workers = self.tasks.workers(self.runtime.clone(), replica.clone());
        let runners = self.evals.runners(replica.clone());
        let optimizer = self.optimizations.runner(replica);
        let analyses = self.insights.sweeper();
        let clusters = self.clusters.background();
        let depth = self.tasks.sample_depth();
        let knowledge = self.knowledge.background();
        async move {
            match caches {
                Some(caches) => {
                    tokio::join!(
                        caches, sessions, workers, runners, optimizer, analyses, clusters, depth,
                        knowledge
                    );
                }
                None => {
                    tokio::join!(
                        sessions, workers, runners, optimizer, analyses, clusters, depth, knowledge
                    );
                }
            }
        }
    }
}

/// Follows the change counter every `interval`, forever.
async fn sync_caches(coherence: Arc<Coherence>, interval: Duration) {
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        every.tick().await;
        match coherence.sync().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the change counter is readable again; caches in use");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot read the change counter; caches emptied until it can be read");
            }
            Err(_) => {}
        }
    }
}

/// Deletes dead sessions now and every `interval`, forever.
async fn purge_sessions(auth: AuthService, interval: Duration) {
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match auth.purge_sessions().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "purged dead sessions"),
            Err(e) => tracing::warn!(error = %e, "could not purge dead sessions"),
        }
    }
}
