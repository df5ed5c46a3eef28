//! Start-up failures: opening the pool and migrating. Port methods report
//! [`agentry_domain::Error`] instead (see [`crate::translate`]).

use std::path::PathBuf;

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL names no backend this build supports.
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
    /// The pool options cannot work (zero connections, zero timeout).
    #[error("invalid database pool options: {0}")]
    InvalidOptions(String),
    /// The directory of the SQLite file could not be created.
    #[error("cannot create the database directory {}: {error}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why it failed.
        error: std::io::Error,
    },
    /// No connection could be opened in time.
    #[error("cannot connect to the {backend} database: {message}")]
    Connect {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// The last connection error.
        message: String,
    },
    /// A migration failed; the failing migration was rolled back.
    #[error("database migration failed: {0}")]
    Migration(String),
}
