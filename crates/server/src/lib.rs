//! The Agentry server: configuration, CLI, tracing, and the composition root — the one
//! place where concrete adapters are wired to the domain's ports.
//!
//! [`Application::build`] binds the listener (port 0 works) and exposes the port, so tests
//! and embedders start a real server in-process.

pub mod config;
pub mod telemetry;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};
use agentry_domain::agent::ModelSpec;
use agentry_domain::ports::{Clock, SystemClock};
use agentry_domain::provider::{
    BaseUrl, MOCK_ECHO_MODEL, MOCK_PROVIDER_ID, Provider, ProviderId, ProviderKind, ProviderSource,
    parse_models,
};
use agentry_domain::services::{
    AgentService, ProviderRegistry, Runtime, RuntimeSettings, VersionService,
};
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
    let mock_id = ProviderId::parse(MOCK_PROVIDER_ID)
        .map_err(|e| provider_error(MOCK_PROVIDER_ID, e.reason))?;
    let mut out = vec![Provider {
        id: mock_id,
        kind: ProviderKind::Mock,
        base_url: None,
        api_key: None,
        models: vec![MOCK_ECHO_MODEL.to_owned()],
        source: ProviderSource::Builtin,
        created_at: now,
        updated_at: now,
    }];
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
        stream_idle_timeout: Duration::from_secs(config.provider_stream_idle_secs.max(1)),
        max_retries: config.provider_max_retries,
        ..ProviderSettings::default()
    }
}

/// A built server, listening, not yet serving.
pub struct Application {
    server: Server,
    addr: SocketAddr,
    database: Database,
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
        let (database, applied) = open_database(&config).await?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "applied database migrations");
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let fixed = fixed_providers(&config, clock.as_ref())?;
        let providers = ProviderRegistry::new(
            fixed,
            database.providers(),
            database.agents(),
            clock.clone(),
        );
        let default_model = ModelSpec {
            provider_id: None,
            model: config.default_model.clone(),
            field: "default_model".to_owned(),
        };
        providers
            .resolve(&default_model)
            .await
            .map_err(|e| provider_error("default_model", e.to_string()))?;
        let llm = Arc::new(ClientFactory::new(
            provider_settings(&config),
            options.mock_script.clone(),
        ));
        let runtime_settings = RuntimeSettings {
            history_max_messages: config.history_max_messages,
            history_max_chars: config.history_max_chars,
        };
        let runtime = Runtime::new(
            database.agents(),
            providers.clone(),
            llm,
            database.conversations(),
            database.runs(),
            clock.clone(),
            runtime_settings,
        );
        let versions = VersionService::new(database.agents(), database.versions(), clock.clone());
        let state = AppState {
            agents: AgentService::new(database.agents(), providers.clone(), clock, default_model),
            providers,
            runtime,
            versions,
            health: database.health(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let settings = HttpSettings {
            json_limit: config.json_limit_bytes,
        };
        let listener = TcpListener::bind(config.addr).map_err(|source| StartError::Bind {
            addr: config.addr,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.addr,
            source,
        })?;
        let mut server = HttpServer::new(move || agentry_http::app(state.clone(), settings))
            .shutdown_timeout(config.shutdown_timeout_secs)
            .client_request_timeout(Duration::from_secs(30));
        if let Some(n) = config.workers {
            server = server.workers(n.max(1));
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
            addr,
            database,
        })
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
        self.server.await
    }
}
