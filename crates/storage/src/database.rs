//! The entry point: a connection pool, its migrations and the port objects over it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentry_domain::event::{EventBus, LocalEventBus};
use agentry_domain::ports::{
    AgentStore, ApiKeyStore, ChangeLog, ConversationStore, HealthProbe, McpServerStore,
    ProviderStore, RunStore, ServerSecretStore, SessionStore, TaskStore, UserStore, VersionStore,
};
use diesel::r2d2::Pool;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::checkpoint::Checkpointer;
use crate::connection::{AnyConnection, Manager, TraceErrors};
use crate::error::StorageError;
use crate::group_commit::GroupCommit;
use crate::run_log::RunLog;
use crate::store::DieselStore;
use crate::target::{Backend, Target};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// How the connection pool behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Most connections open at once (at least 1).
    pub max_connections: u32,
    /// How long to wait for a connection, at start-up and for each query (more than zero).
    pub connect_timeout: Duration,
}

impl PoolOptions {
    /// Suitable defaults for a backend: 8 connections for SQLite (one writer at a time
    /// anyway), 16 for PostgreSQL; 5 seconds to connect.
    pub fn for_backend(backend: Backend) -> Self {
        let max_connections = match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        };
        Self {
            max_connections,
            connect_timeout: Duration::from_secs(5),
        }
    }

    fn check(&self) -> Result<(), StorageError> {
        if self.max_connections == 0 {
            return Err(StorageError::InvalidOptions(
                "max_connections must be at least 1".into(),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(StorageError::InvalidOptions(
                "connect_timeout must be more than zero".into(),
            ));
        }
        Ok(())
    }
}

impl Default for PoolOptions {
    /// The SQLite defaults (see [`PoolOptions::for_backend`]).
    fn default() -> Self {
        Self::for_backend(Backend::Sqlite)
    }
}

/// A pool of connections to SQLite or PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Database {
    pool: Pool<Manager>,
    backend: Backend,
    run_log: Arc<RunLog>,
    target: Target,
    events: Arc<std::sync::OnceLock<Arc<dyn EventBus>>>,
    group: Arc<GroupCommit>,
    checkpoint: Checkpointer,
}

impl Database {
    /// Opens the pool for a URL; the scheme chooses the backend: `sqlite://relative/path.db`,
    /// `sqlite:///absolute/path.db`, `postgres://…` or `postgresql://…`. The directory of a
    /// SQLite file is created when missing. Blocks until one connection is open.
    ///
    /// # Errors
    /// [`StorageError::UnsupportedUrl`] for any other scheme, [`StorageError::InvalidOptions`],
    /// [`StorageError::CreateDir`], and [`StorageError::Connect`] when no connection opens
    /// within `opts.connect_timeout`.
    pub fn connect(url: &str, opts: PoolOptions) -> Result<Self, StorageError> {
        let target = Target::parse(url)?;
        opts.check()?;
        if let Target::Sqlite(path) = &target {
            create_parent_dir(Path::new(path))?;
        }
        let backend = target.backend();
        let pool = Pool::builder()
            .max_size(opts.max_connections)
            .min_idle(Some(1))
            .connection_timeout(opts.connect_timeout)
            // No `SELECT 1` before every checkout: a broken connection is caught by
            // `Manager::has_broken` when it is returned, and costs one failed call at most.
            .test_on_check_out(false)
            .error_handler(Box::new(TraceErrors))
            .build(Manager::new(target.clone()))
            .map_err(|e| StorageError::Connect {
                backend: backend.as_str(),
                message: e.to_string(),
            })?;
        let checkpoint = match backend {
            Backend::Sqlite => Checkpointer::start(pool.clone()),
            Backend::Postgres => Checkpointer::default(),
        };
        let run_log = Arc::new(RunLog::start(pool.clone(), checkpoint.clone()));
        Ok(Self {
            pool,
            backend,
            run_log,
            target,
            events: Arc::new(std::sync::OnceLock::new()),
            group: Arc::new(GroupCommit::new(checkpoint.clone())),
            checkpoint,
        })
    }

    /// Applies the embedded migrations not applied yet, each in its own transaction, and
    /// returns their names (empty when the schema is current). Blocking: call it at start-up.
    ///
    /// # Errors
    /// [`StorageError::Connect`] when no connection is available, [`StorageError::Migration`]
    /// when a migration fails.
    pub fn migrate(&self) -> Result<Vec<String>, StorageError> {
        let mut conn = self.pool.get().map_err(|e| StorageError::Connect {
            backend: self.backend.as_str(),
            message: e.to_string(),
        })?;
        match &mut *conn {
            AnyConnection::Sqlite(c) => run_pending(c, SQLITE_MIGRATIONS),
            AnyConnection::Postgres(c) => run_pending(c, POSTGRES_MIGRATIONS),
        }
    }

    /// The backend the URL chose.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The agent store over this pool.
    pub fn agents(&self) -> Arc<dyn AgentStore> {
        Arc::new(self.store())
    }

    /// The provider store over this pool.
    pub fn providers(&self) -> Arc<dyn ProviderStore> {
        Arc::new(self.store())
    }

    /// The conversation (and message) store over this pool.
    pub fn conversations(&self) -> Arc<dyn ConversationStore> {
        Arc::new(self.store())
    }

    /// The run store over this pool.
    pub fn runs(&self) -> Arc<dyn RunStore> {
        Arc::new(self.store())
    }

    /// The store of published agent versions over this pool.
    pub fn versions(&self) -> Arc<dyn VersionStore> {
        Arc::new(self.store())
    }

    /// The user store over this pool.
    pub fn users(&self) -> Arc<dyn UserStore> {
        Arc::new(self.store())
    }

    /// The session (and refresh token) store over this pool.
    pub fn sessions(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.store())
    }

    /// The API key store over this pool.
    pub fn api_keys(&self) -> Arc<dyn ApiKeyStore> {
        Arc::new(self.store())
    }

    /// The server-wide secret store over this pool.
    pub fn server_secrets(&self) -> Arc<dyn ServerSecretStore> {
        Arc::new(self.store())
    }

    /// The store of registered MCP servers over this pool.
    pub fn mcp_servers(&self) -> Arc<dyn McpServerStore> {
        Arc::new(self.store())
    }

    /// Request counts shared by replicas (rate limits that hold for the deployment).
    pub fn rate_usage(&self) -> Arc<dyn agentry_domain::ports::RateUsageStore> {
        Arc::new(self.store())
    }

    /// The task queue over this pool.
    pub fn tasks(&self) -> Arc<dyn TaskStore> {
        Arc::new(self.store())
    }

    /// The event bus of this database, one for every clone of it: in memory on SQLite (one
    /// process), between replicas through `LISTEN/NOTIFY` on PostgreSQL (two threads with a
    /// connection each, started on the first call).
    pub fn events(&self) -> Arc<dyn EventBus> {
        self.events
            .get_or_init(|| match &self.target {
                Target::Sqlite(_) => Arc::new(LocalEventBus::default()),
                Target::Postgres(url) => Arc::new(crate::events::PgEventBus::start(url.clone())),
            })
            .clone()
    }

    /// The store of test sets and evaluation runs over this pool.
    pub fn evals(&self) -> Arc<dyn agentry_domain::ports::EvalStore> {
        Arc::new(self.store())
    }

    /// The store of conversation analyses over this pool.
    pub fn insights(&self) -> Arc<dyn agentry_domain::ports::InsightStore> {
        Arc::new(self.store())
    }

    /// The store of prompt optimisations over this pool.
    pub fn optimizations(&self) -> Arc<dyn agentry_domain::ports::OptimizationStore> {
        Arc::new(self.store())
    }

    /// The store of clusters over this pool.
    pub fn clusters(&self) -> Arc<dyn agentry_domain::ports::ClusterStore> {
        Arc::new(self.store())
    }

    /// The store of uploaded files' records over this pool.
    pub fn files(&self) -> Arc<dyn agentry_domain::file::FileStore> {
        Arc::new(self.store())
    }

    /// The store of files' chunks (knowledge) over this pool.
    pub fn knowledge_chunks(&self) -> Arc<dyn agentry_domain::knowledge::ChunkStore> {
        Arc::new(self.store())
    }

    /// The pool's use, as metrics (`agentry_db_pool_connections{state}`,
    /// `agentry_db_pool_max_connections`), and on SQLite the background WAL checkpoints
    /// (`agentry_db_wal_checkpoints_total`, `agentry_db_wal_checkpoint_failures_total`,
    /// `agentry_db_wal_checkpoint_seconds_total`).
    pub fn pool_metrics(&self) -> Arc<dyn agentry_domain::metrics::MetricsSource> {
        Arc::new(PoolMetrics {
            pool: self.pool.clone(),
            checkpoint: self.checkpoint.clone(),
        })
    }

    /// The change counter shared by every replica (for the in-process caches).
    pub fn changes(&self) -> Arc<dyn ChangeLog> {
        Arc::new(self.store())
    }

    /// The readiness probe over this pool.
    pub fn health(&self) -> Arc<dyn HealthProbe> {
        Arc::new(self.store())
    }

    fn store(&self) -> DieselStore {
        DieselStore::new(self.pool.clone(), self.run_log.clone(), self.group.clone())
    }

    /// Stores every run queued by `log_run` and stops the background writer; later logs are
    /// stored synchronously. Call it after the server stopped taking requests. Blocks.
    pub fn flush(&self) {
        self.run_log.close();
    }
}

impl fmt::Debug for Database {
    /// Shows the backend and pool size, never the URL (it may carry a password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .field("max_connections", &self.pool.max_size())
            .finish_non_exhaustive()
    }
}

/// The pool's use, read on every scrape (`r2d2::Pool::state`: one short lock), and the
/// checkpoint thread's counts where there is one (SQLite).
struct PoolMetrics {
    pool: Pool<Manager>,
    checkpoint: Checkpointer,
}

impl agentry_domain::metrics::MetricsSource for PoolMetrics {
    fn collect(&self) -> Vec<agentry_domain::metrics::Family> {
        use agentry_domain::metrics::{Family, Kind};
        let state = self.pool.state();
        let idle = state.idle_connections;
        let in_use = state.connections.saturating_sub(idle);
        let mut families = vec![
            Family::new(
                "agentry_db_pool_connections",
                "Database connections open, by state (in_use, idle)",
                Kind::Gauge,
            )
            .with(vec![("state", "in_use".to_owned())], f64::from(in_use))
            .with(vec![("state", "idle".to_owned())], f64::from(idle)),
            Family::new(
                "agentry_db_pool_max_connections",
                "The database pool's size (database_max_connections)",
                Kind::Gauge,
            )
            .with(Vec::new(), f64::from(self.pool.max_size())),
        ];
        if let Some(counts) = self.checkpoint.counts() {
            let (runs, failures, seconds) = counts.read();
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            families.extend([
                Family::new(
                    "agentry_db_wal_checkpoints_total",
                    "SQLite WAL checkpoints run in the background",
                    Kind::Counter,
                )
                .with(Vec::new(), runs as f64),
                Family::new(
                    "agentry_db_wal_checkpoint_failures_total",
                    "SQLite WAL checkpoints that failed (retried on the next write)",
                    Kind::Counter,
                )
                .with(Vec::new(), failures as f64),
                Family::new(
                    "agentry_db_wal_checkpoint_seconds_total",
                    "Time spent in background SQLite WAL checkpoints",
                    Kind::Counter,
                )
                .with(Vec::new(), seconds),
            ]);
        }
        families
    }
}

fn create_parent_dir(file: &Path) -> Result<(), StorageError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::create_dir_all(dir)
            .map_err(|error| StorageError::CreateDir {
                path: dir.to_owned(),
                error,
            }),
        _ => Ok(()),
    }
}

fn run_pending<DB, C>(conn: &mut C, source: EmbeddedMigrations) -> Result<Vec<String>, StorageError>
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: diesel::migration::MigrationSource<DB>,
{
    let failed =
        |e: Box<dyn std::error::Error + Send + Sync>| StorageError::Migration(e.to_string());
    let pending = conn.pending_migrations(source).map_err(failed)?;
    let mut applied = Vec::with_capacity(pending.len());
    for migration in &pending {
        conn.run_migration(migration).map_err(failed)?;
        let name = migration.name().to_string();
        tracing::info!(migration = %name, "applied database migration");
        applied.push(name);
    }
    Ok(applied)
}

/// For unit tests: an in-memory SQLite connection with the schema (foreign keys not enforced), counting the statements
/// diesel prepares and caches (its `CacheQuery` events) in the returned counter.
#[cfg(test)]
pub(crate) fn counted_sqlite() -> (
    diesel::sqlite::SqliteConnection,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let (conn, cached, _) = instrumented_sqlite();
    (conn, cached)
}

/// For unit tests: [`counted_sqlite`], with the SQL of every statement run on it (its
/// `StartQuery` events) in the returned list.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn instrumented_sqlite() -> (
    diesel::sqlite::SqliteConnection,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    use diesel::Connection;
    use diesel::connection::{Instrumentation, InstrumentationEvent};
    use diesel::sqlite::SqliteConnection;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>);
    impl Instrumentation for Count {
        fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
            match event {
                InstrumentationEvent::CacheQuery { .. } => {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
                InstrumentationEvent::StartQuery { query, .. } => {
                    self.1.lock().unwrap().push(query.to_string());
                }
                _ => {}
            }
        }
    }

    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    run_pending(&mut conn, SQLITE_MIGRATIONS).unwrap();
    // Rows without their parents (a message without its agent): the statements are the subject.
    diesel::connection::SimpleConnection::batch_execute(&mut conn, "PRAGMA foreign_keys = OFF")
        .unwrap();
    let cached = Arc::new(AtomicUsize::new(0));
    let run = Arc::default();
    conn.set_instrumentation(Count(cached.clone(), Arc::clone(&run)));
    (conn, cached, run)
}
