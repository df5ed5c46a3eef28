//! One connection type over both backends, and the r2d2 manager that opens it.

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{Error as ConnError, HandleError, ManageConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;

use crate::target::Target;

/// A connection to either backend. Queries written with diesel's DSL run on both; SQL that
/// differs is an explicit `match` on the variant.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    /// An embedded SQLite file.
    Sqlite(SqliteConnection),
    /// A PostgreSQL server.
    Postgres(PgConnection),
}

/// Run on every new SQLite connection. `busy_timeout` must come first: switching to WAL
/// takes a lock, and without a timeout concurrent start-up fails with "database is locked".
/// The automatic checkpoint is then set to a backstop,
/// [`BACKSTOP_PAGES`](crate::checkpoint::BACKSTOP_PAGES): a thread of its own checkpoints the
/// log, so that commits do not (see `checkpoint.rs`).
const SQLITE_SETUP: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                            PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;";

/// Opens connections for the pool, choosing the backend from the URL scheme (diesel's own
/// `MultiConnection::establish` tries each backend in turn and hides the real error).
pub(crate) struct Manager {
    target: Target,
}

impl Manager {
    pub(crate) fn new(target: Target) -> Self {
        Self { target }
    }
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = ConnError;

    fn connect(&self) -> Result<AnyConnection, ConnError> {
        match &self.target {
            Target::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path)?;
                conn.batch_execute(SQLITE_SETUP)?;
                conn.batch_execute(&format!(
                    "PRAGMA wal_autocheckpoint = {}",
                    crate::checkpoint::BACKSTOP_PAGES
                ))?;
                Ok(AnyConnection::Sqlite(conn))
            }
            Target::Postgres(url) => Ok(AnyConnection::Postgres(PgConnection::establish(url)?)),
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), ConnError> {
        conn.batch_execute("SELECT 1")
            .map_err(ConnError::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// Reports connection failures of the pool through `tracing` (r2d2 would use `log`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TraceErrors;

impl HandleError<ConnError> for TraceErrors {
    fn handle_error(&self, error: ConnError) {
        tracing::warn!(%error, "database connection failed");
    }
}

/// Runs `$body` with `$c` bound to the backend's own connection, for what `MultiConnection`
/// cannot express (`RETURNING`, upserts, multi-row inserts) or makes slow: its bind handling
/// costs a cached insert on SQLite several times the statement's own execution.
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::connection::AnyConnection::Sqlite($c) => $body,
            $crate::connection::AnyConnection::Postgres($c) => $body,
        }
    };
}
pub(crate) use on_backend;
