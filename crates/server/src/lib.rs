//! The Agentry server: configuration, CLI, tracing, and the composition root — the one
//! place where concrete adapters are wired to the domain's ports.
//!
//! [`Application::build`] binds the listener (port 0 works) and exposes the port, so tests
//! and embedders start a real server in-process.

pub mod cli;
pub mod config;
pub mod eval_cli;
pub mod process_metrics;
pub mod remote;
pub mod telemetry;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use agentry_auth::{Argon2Hasher, JwtCodec, RandomSecrets};
use agentry_domain::agent::ModelSpec;
use agentry_domain::cache::CacheableStores;
use agentry_domain::ports::SecretGenerator;
use agentry_domain::ports::{Clock, SystemClock};
use agentry_domain::provider::{
    BaseUrl, Provider, ProviderId, ProviderKind, ProviderSource, parse_models,
};
use agentry_domain::services::{
    AuthService, AuthSettings, EMBEDDING_MODEL_FIELD, EvalSettings, InsightSettings,
    InstanceSettings, McpSettings, RuntimeSettings, ServicePorts, ServiceSettings, Services,
    TaskSettings,
};
use agentry_domain::tool::ToolLimits;
use agentry_http::ratelimit::{RateLimitSettings, RateLimits};
use agentry_http::{AppState, HttpSettings};
use agentry_provider::{ClientFactory, MockScript, ProviderSettings};
use agentry_storage::{Backend, Database, PoolOptions};
use secrecy::SecretString;

pub use config::Config;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A provider in the configuration is invalid.
    #[error("invalid provider '{id}' in the configuration: {reason}")]
    Provider {
        /// Which provider.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(String),
    /// Authentication could not be set up (or is disabled where that is not allowed).
    #[error("authentication: {0}")]
    Auth(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Opens the database named by the config and applies pending migrations.
///
/// # Errors
/// [`StartError::Database`] with the cause (the URL itself is not repeated: it may hold a password).
pub async fn open_database(config: &Config) -> Result<(Database, Vec<String>), StartError> {
    let url = config.database_url.clone();
    let backend = Backend::from_url(&url).map_err(|e| StartError::Database(e.to_string()))?;
    let mut opts = PoolOptions::for_backend(backend);
    if let Some(n) = config.database_max_connections {
        opts.max_connections = n;
    }
    tokio::task::spawn_blocking(move || {
        let db = Database::connect(&url, opts).map_err(|e| StartError::Database(e.to_string()))?;
        let applied = db
            .migrate()
            .map_err(|e| StartError::Database(e.to_string()))?;
        Ok((db, applied))
    })
    .await
    .map_err(|e| StartError::Database(format!("start-up task failed: {e}")))?
}

fn provider_error(id: &str, reason: impl Into<String>) -> StartError {
    StartError::Provider {
        id: id.to_owned(),
        reason: reason.into(),
    }
}

/// The built-in `mock` provider, the configured ones, and those implied by
/// `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`.
///
/// # Errors
/// [`StartError::Provider`] for an invalid or duplicate definition.
pub fn fixed_providers(config: &Config, clock: &dyn Clock) -> Result<Vec<Provider>, StartError> {
    let now = clock.now();
    let mut out = vec![Provider::builtin_mock(now)];
    for p in &config.providers {
        let id = ProviderId::parse(&p.id)
            .map_err(|e| provider_error(&p.id, format!("id {}", e.reason)))?;
        if out.iter().any(|o| o.id == id) {
            return Err(provider_error(
                &p.id,
                "defined twice (or clashes with the built-in 'mock')",
            ));
        }
        let api_key = match (&p.api_key, &p.api_key_env) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(var)) => Some(SecretString::from(std::env::var(var).map_err(|_| {
                provider_error(&p.id, format!("environment variable {var} is not set"))
            })?)),
            (None, None) => None,
        };
        out.push(Provider {
            id,
            kind: ProviderKind::parse(&p.kind)
                .map_err(|e| provider_error(&p.id, format!("kind {}", e.reason)))?,
            base_url: p
                .base_url
                .as_deref()
                .map(BaseUrl::parse)
                .transpose()
                .map_err(|e| provider_error(&p.id, format!("base_url {}", e.reason)))?,
            api_key,
            models: parse_models(p.models.clone()).map_err(|e| provider_error(&p.id, e.reason))?,
            source: ProviderSource::Config,
            created_at: now,
            updated_at: now,
        });
    }
    for (var, id, kind, models) in [
        (
            "OPENAI_API_KEY",
            "openai",
            ProviderKind::OpenAi,
            &["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini"][..],
        ),
        (
            "ANTHROPIC_API_KEY",
            "anthropic",
            ProviderKind::Anthropic,
            &["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"][..],
        ),
    ] {
        let Ok(key) = std::env::var(var) else {
            continue;
        };
        if key.is_empty() || out.iter().any(|o| o.id.as_str() == id) {
            continue;
        }
        out.push(Provider {
            id: ProviderId::parse(id).map_err(|e| provider_error(id, e.reason))?,
            kind,
            base_url: None,
            api_key: Some(SecretString::from(key)),
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            source: ProviderSource::Config,
            created_at: now,
            updated_at: now,
        });
    }
    Ok(out)
}

/// Who issues access tokens, and for whom (checked on every token).
pub const JWT_ISSUER: &str = "agentry";
/// The audience of access tokens.
pub const JWT_AUDIENCE: &str = "agentry-api";
/// The name of the stored signing key in the server-secrets table.
const JWT_SECRET_NAME: &str = "jwt_signing_key";

fn auth_error(e: impl std::fmt::Display) -> StartError {
    StartError::Auth(e.to_string())
}

/// The token codec: HS256 tokens signed with `jwt_secret`, or with a key generated once and
/// stored in the database (so every replica shares it).
///
/// # Errors
/// [`StartError::Auth`] for a short `jwt_secret`, or when the stored key cannot be read.
async fn token_codec(config: &Config, database: &Database) -> Result<JwtCodec, StartError> {
    let signing_key = match &config.jwt_secret {
        Some(k) => k.clone(),
        None => database
            .server_secrets()
            .get_or_insert_secret(JWT_SECRET_NAME, RandomSecrets.random_alphanumeric(64))
            .await
            .map_err(auth_error)?,
    };
    JwtCodec::new(&signing_key, JWT_ISSUER, JWT_AUDIENCE).map_err(auth_error)
}

/// Where files' bytes go: the S3-compatible bucket of `files_s3`, else `files/` under the
/// data folder.
fn blob_store(config: &Config) -> Result<Arc<dyn agentry_domain::file::BlobStore>, StartError> {
    let blobs = match &config.files_s3 {
        Some(s3) => agentry_blob::ObjectBlobStore::s3(&agentry_blob::S3Settings {
            endpoint: s3.endpoint.clone(),
            bucket: s3.bucket.clone(),
            region: s3.region.clone(),
            access_key_id: s3.access_key_id.clone(),
            secret_access_key: s3.secret_access_key.clone(),
            allow_http: s3.allow_http,
        }),
        None => agentry_blob::ObjectBlobStore::local(&config.data_folder().join("files")),
    };
    blobs
        .map(|b| Arc::new(b) as Arc<dyn agentry_domain::file::BlobStore>)
        .map_err(|e| StartError::Config(config::ConfigError::invalid(format!("files: {e}"))))
}

/// The model of an agent saved without one.
fn default_model(config: &Config) -> ModelSpec {
    ModelSpec {
        provider_id: None,
        model: config.default_model.clone(),
        field: "default_model".to_owned(),
    }
}

/// The services over `database`, as the configuration asks: every concrete adapter named
/// here, the wiring itself done by [`Services::build`]. Servers and the CLI both use it, so
/// that every write goes through the caches' decorators and moves the change counter the
/// servers' caches follow.
///
/// # Errors
/// [`StartError`] for an invalid provider, default model, tool setting or signing key.
pub async fn services(
    config: &Config,
    database: &Database,
    mock_script: Option<MockScript>,
) -> Result<Services, StartError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let fixed = fixed_providers(config, clock.as_ref())?;
    let http_tools = agentry_tools::HttpTools::new(agentry_tools::HttpToolsConfig {
        allowed_hosts: config.tool_allowed_hosts.clone(),
    })
    .map_err(|e| StartError::Config(config::ConfigError::invalid(e.to_string())))?;
    let ports = ServicePorts {
        stores: CacheableStores {
            agents: database.agents(),
            versions: database.versions(),
            providers: database.providers(),
            users: database.users(),
            sessions: database.sessions(),
            api_keys: database.api_keys(),
        },
        changes: database.changes(),
        conversations: database.conversations(),
        runs: database.runs(),
        mcp_servers: database.mcp_servers(),
        tasks: database.tasks(),
        evals: database.evals(),
        insights: database.insights(),
        optimizations: database.optimizations(),
        events: database.events(),
        clusters: database.clusters(),
        llm: Arc::new(ClientFactory::new(provider_settings(config), mock_script)),
        http_tools: Some(Arc::new(http_tools)),
        mcp: Some(Arc::new(agentry_mcp::RmcpConnector::new(
            Duration::from_secs(config.mcp_stop_grace_secs),
        ))),
        files: Some(agentry_domain::services::FilePorts {
            store: database.files(),
            blobs: blob_store(config)?,
        }),
        knowledge: Some(agentry_domain::services::KnowledgePorts {
            chunks: database.knowledge_chunks(),
            index: Arc::new(agentry_knowledge::TantivyIndex::new(
                &config.data_folder().join("knowledge"),
            )),
            extractor: Arc::new(agentry_knowledge::Extractor),
        }),
        hasher: Arc::new(Argon2Hasher),
        tokens: Arc::new(token_codec(config, database).await?),
        secrets: Arc::new(RandomSecrets),
        clock,
    };
    let settings = ServiceSettings {
        cache_max_age: Duration::from_secs(config.cache_ttl_secs),
        cache_sync_interval: Duration::from_millis(config.cache_sync_ms.max(1)),
        runtime: RuntimeSettings {
            history_max_messages: config.history_max_messages,
            history_max_chars: config.history_max_chars,
            max_tool_steps: config.max_tool_steps,
            tool_limits: ToolLimits {
                timeout: Duration::from_secs(config.tool_timeout_secs.max(1)),
                max_response_bytes: config.tool_max_response_bytes.max(1),
            },
            conversation_cache_bytes: config.conversation_cache_bytes,
        },
        auth: AuthSettings {
            access_token_ttl: Duration::from_secs(config.access_token_ttl_secs.max(1)),
            refresh_token_ttl: Duration::from_secs(config.refresh_token_ttl_secs.max(1)),
            login_max_failures: config.login_max_failures.max(1),
            login_max_failures_per_address: config.login_max_failures.max(1).saturating_mul(4),
            ..AuthSettings::default()
        },
        mcp: McpSettings {
            start_timeout: Duration::from_secs(config.mcp_start_timeout_secs.max(1)),
            max_restarts: config.mcp_max_restarts,
            backoff_base: Duration::from_millis(config.mcp_backoff_base_ms.max(1)),
            backoff_max: Duration::from_secs(config.mcp_backoff_max_secs.max(1)),
            log_lines: config.mcp_log_lines.max(1),
            ..McpSettings::default()
        },
        tasks: TaskSettings {
            workers: config.task_workers,
            lease: Duration::from_secs(config.task_lease_secs.max(1)),
            poll: Duration::from_millis(config.task_poll_ms.max(10)),
            retry_base: Duration::from_millis(config.task_retry_base_ms),
        },
        evals: EvalSettings {
            runners: config.eval_runners,
            lease: Duration::from_secs(config.eval_lease_secs.max(1)),
            poll: Duration::from_millis(config.eval_poll_ms.max(10)),
            ..EvalSettings::default()
        },
        insights: InsightSettings {
            idle: Duration::from_secs(config.insights_idle_minutes.saturating_mul(60)),
            model: config.insights_model.clone(),
            daily_cap: config.insights_daily_cap,
            sweep: Duration::from_secs(config.insights_sweep_secs.max(1)),
            ..InsightSettings::default()
        },
        instances: InstanceSettings {
            queue_timeout: Duration::from_millis(config.instance_queue_timeout_ms),
            queue_max: config.instance_queue_max,
        },
        file_max_bytes: config.files_max_bytes.max(1),
        knowledge_embedding_model: config
            .knowledge_embedding_model
            .clone()
            .filter(|m| !m.trim().is_empty()),
        ..ServiceSettings::new(fixed, default_model(config))
    };
    Services::build(ports, settings).await.map_err(|e| match e {
        agentry_domain::Error::Unavailable(_) | agentry_domain::Error::Internal(_) => {
            StartError::Database(e.to_string())
        }
        agentry_domain::Error::Invalid(i) if i.field == EMBEDDING_MODEL_FIELD => {
            StartError::Config(config::ConfigError::invalid(format!(
                "{EMBEDDING_MODEL_FIELD} (AGENTRY_KNOWLEDGE_EMBEDDING_MODEL) {}",
                i.reason
            )))
        }
        e => provider_error("default_model", e.to_string()),
    })
}

/// The separate `/metrics` listener: one worker, no authentication, nothing but `/metrics`.
fn metrics_listener(at: SocketAddr, state: AppState) -> Result<(Server, SocketAddr), StartError> {
    let listener = TcpListener::bind(at).map_err(|source| StartError::Bind { addr: at, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr: at, source })?;
    let server = HttpServer::new(move || agentry_http::metrics_app(state.clone()))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .map_err(|source| StartError::Bind { addr, source })?
        .run();
    tracing::info!(%addr, "metrics listening (GET /metrics, no authentication)");
    Ok((server, addr))
}

/// Refuses `auth_disabled` unless the server listens on a loopback address only.
///
/// # Errors
/// [`StartError::Auth`] with the reason.
pub fn check_auth_disabled(config: &Config) -> Result<(), StartError> {
    if config.auth_disabled && !config.addr.ip().is_loopback() {
        return Err(StartError::Auth(format!(
            "auth_disabled (AGENTRY_AUTH_DISABLED) is a development setting, honoured only on a \
             loopback address; refusing to serve {} without authentication. Unset it, or listen on \
             127.0.0.1 / ::1",
            config.addr
        )));
    }
    Ok(())
}

/// On an empty database, creates the first admin (`admin_username`, `admin_password` or a
/// random password printed once on stderr).
///
/// # Errors
/// [`StartError::Auth`] for an invalid username or password.
pub async fn bootstrap_admin(config: &Config, auth: &AuthService) -> Result<(), StartError> {
    let password = config
        .admin_password
        .clone()
        .filter(|p| !secrecy::ExposeSecret::expose_secret(p).is_empty());
    let created = auth
        .bootstrap_admin(&config.admin_username, password)
        .await
        .map_err(auth_error)?;
    let Some(created) = created else {
        return Ok(());
    };
    match &created.generated_password {
        Some(password) => {
            tracing::warn!(
                username = %created.user.username,
                "created the first admin user with a generated password (printed once on stderr, never logged)"
            );
            eprintln!(
                "\n================================================================\n\
                 Agentry created the first admin user.\n  username: {}\n  password: {}\n\
                 This password is shown only this once. Log in and change it:\n  \
                 agentry user passwd {}   (or PATCH /api/v1/users/{{id}})\n\
                 ================================================================\n",
                created.user.username,
                secrecy::ExposeSecret::expose_secret(password),
                created.user.username
            );
        }
        None => tracing::info!(
            username = %created.user.username,
            "created the first admin user with the configured password"
        ),
    }
    Ok(())
}

/// Options of an embedded server (tests, embedders) that the config file does not carry.
#[derive(Clone, Default)]
pub struct BuildOptions {
    /// Leave SIGINT/SIGTERM alone (the embedding program handles them).
    pub disable_signals: bool,
    /// Scripted replies for `mock`-kind providers, consumed before their model-name behaviour.
    pub mock_script: Option<MockScript>,
}

fn provider_settings(config: &Config) -> ProviderSettings {
    ProviderSettings {
        connect_timeout: Duration::from_secs(config.provider_connect_timeout_secs.max(1)),
        request_timeout: Duration::from_secs(config.provider_timeout_secs.max(1)),
        total_timeout: Duration::from_secs(config.provider_total_timeout_secs.max(1)),
        stream_idle_timeout: Duration::from_secs(config.provider_stream_idle_secs.max(1)),
        max_retries: config.provider_max_retries,
        streams_per_connection: config.provider_streams_per_connection.max(1),
        http_version: config.provider_http_version,
        ..ProviderSettings::default()
    }
}

/// A built server, listening, not yet serving.
pub struct Application {
    server: Server,
    /// The separate `/metrics` listener (`metrics_addr`), if configured.
    metrics_server: Option<(Server, SocketAddr)>,
    addr: SocketAddr,
    database: Database,
    mcp: agentry_domain::services::McpServerService,
    events: Arc<dyn agentry_domain::event::EventBus>,
}

impl Application {
    /// Builds the server from its configuration: opens and migrates the database, wires the
    /// services and binds the listen address (port 0 picks a free port).
    ///
    /// # Errors
    /// [`StartError`] with a clear cause.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with(config, BuildOptions::default()).await
    }

    /// [`Application::build`] with embedding options.
    ///
    /// # Errors
    /// [`StartError`] with a clear cause.
    pub async fn build_with(config: Config, options: BuildOptions) -> Result<Self, StartError> {
        check_auth_disabled(&config)?;
        config.check()?;
        let (database, applied) = open_database(&config).await?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "applied database migrations");
        }
        let services = services(&config, &database, options.mock_script.clone()).await?;
        bootstrap_admin(&config, &services.auth).await?;
        tokio::spawn(services.background());
        if config.auth_disabled {
            tracing::warn!(
                addr = %config.addr,
                "AUTHENTICATION IS DISABLED (auth_disabled): every request acts as the admin 'anonymous-dev'. Development only."
            );
        }
        let rate_limits = RateLimits::new(RateLimitSettings {
            per_minute: config.rate_limit_per_minute.max(1),
            burst: config.rate_limit_burst.max(1),
            concurrency: config.rate_limit_concurrency.max(1),
        });
        let shared = config
            .rate_limit_shared
            .unwrap_or(database.backend() == agentry_storage::Backend::Postgres);
        let rate_limits = if shared {
            let limits = Arc::new(rate_limits.shared());
            tokio::spawn(agentry_http::ratelimit::sync_usage(
                limits.clone(),
                database.rate_usage(),
                Duration::from_millis(config.rate_limit_sync_ms.max(10)),
            ));
            limits
        } else {
            Arc::new(rate_limits)
        };
        let mcp = services.mcp_servers.clone();
        let events = services.events.clone();
        let runtimes = process_metrics::Runtimes::default();
        runtimes.register_current();
        services.metrics.add_source(database.pool_metrics());
        services
            .metrics
            .add_source(Arc::new(process_metrics::ProcessMetrics::new(
                runtimes.clone(),
            )));
        let state = AppState {
            agents: services.agents,
            providers: services.providers,
            runtime: services.runtime,
            versions: services.versions,
            mcp_servers: services.mcp_servers,
            tasks: services.tasks,
            evals: services.evals,
            insights: services.insights,
            optimizations: services.optimizations,
            files: services.files,
            knowledge: services.knowledge,
            events: services.events,
            health: database.health(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            auth: services.auth,
            auth_disabled: config.auth_disabled,
            rate_limits,
            clusters: services.clusters,
            metrics: services.metrics,
            prometheus: agentry_http::routes::metrics::PrometheusSettings {
                prefix: config.metrics_prefix.clone(),
                public: config.metrics_public,
            },
        };
        let metrics_server = match config.metrics_addr {
            Some(at) => Some(metrics_listener(at, state.clone())?),
            None => None,
        };
        let settings = HttpSettings {
            json_limit: config.json_limit_bytes,
            body_read_timeout: Duration::from_secs(config.request_body_timeout_secs.max(1)),
        };
        let listener = TcpListener::bind(config.addr).map_err(|source| StartError::Bind {
            addr: config.addr,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.addr,
            source,
        })?;
        let mut server = HttpServer::new(move || {
            runtimes.register_current();
            agentry_http::app(state.clone(), settings)
        })
        .shutdown_timeout(config.shutdown_timeout_secs)
        .client_request_timeout(Duration::from_secs(30))
        // Without it, the first SSE token waits ~40 ms for the client's delayed ACK (Nagle).
        .tcp_nodelay(true)
        // Database calls and password hashes run on each worker's blocking pool, and a
        // database call holds its thread while it waits for one of the pool's connections:
        // threads beyond the pool's size only wait, each with its stack and malloc arena.
        // actix-web's default (512 / workers) let bursts of streams grow ~500 threads.
        .worker_max_blocking_threads(
            config
                .database_max_connections
                .unwrap_or(PoolOptions::for_backend(database.backend()).max_connections)
                .max(2) as usize,
        );
        let workers = config
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1);
        server = server.workers(workers);
        // Connections past `max_connections` are answered 503 (`Retry-After`, then closed);
        // a margin above it, each worker stops accepting (connections wait in the listen
        // backlog) instead of running out of the file descriptors that the database pool and
        // provider sockets need. Slow clients are cut by the header and body deadlines.
        if let Some(soft_cap) = config
            .max_connections
            .or_else(config::default_max_connections)
        {
            let hard_cap = soft_cap + agentry_http::connections::overflow_margin(soft_cap);
            let gauge = agentry_http::connections::ConnectionGauge::new(soft_cap);
            server = server
                .max_connections(hard_cap.div_ceil(workers).max(1))
                .on_connect(move |_, extensions| gauge.admit(extensions));
        }
        if options.disable_signals {
            server = server.disable_signals();
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartError::Bind { addr, source })?
            .run();
        tracing::info!(%addr, backend = database.backend().as_str(), version = env!("CARGO_PKG_VERSION"), "Agentry listening");
        Ok(Self {
            server,
            metrics_server,
            addr,
            database,
            mcp,
            events,
        })
    }

    /// The address of the separate `/metrics` listener, if one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|(_, a)| *a)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The database this server uses.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// A handle that stops the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT/SIGTERM, or [`ServerHandle::stop`]); in-flight requests
    /// get `shutdown_timeout_secs` to finish.
    ///
    /// # Errors
    /// An I/O error of the server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = match self.metrics_server {
            Some((metrics, _)) => {
                let handle = metrics.handle();
                let main = async {
                    let served = self.server.await;
                    handle.stop(true).await;
                    served
                };
                let (served, _) = tokio::join!(main, metrics);
                served
            }
            None => self.server.await,
        };
        // The other replicas' subscribers learn that this one left.
        self.events.publish(agentry_domain::event::Event::system(
            "info",
            format!("replica {} shut down", self.addr),
        ));
        // MCP servers' processes do not outlive the server.
        self.mcp.supervisor().stop_all().await;
        // Runs queued for the background writer are stored before the process ends.
        let database = self.database;
        let _ = tokio::task::spawn_blocking(move || database.flush()).await;
        served
    }
}
