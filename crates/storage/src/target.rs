//! Which backend a database URL names, and what to hand its driver.

use std::fmt;

use crate::error::StorageError;

/// The URL forms [`Database::connect`](crate::Database::connect) accepts, for error messages.
const ACCEPTED: &str = "use sqlite://relative/path.db, sqlite:///absolute/path.db, \
                        postgres://… or postgresql://…";

/// The database engine behind a [`Database`](crate::Database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, embedded (a bundled libsqlite3).
    Sqlite,
    /// PostgreSQL, through libpq.
    Postgres,
}

impl Backend {
    /// The backend a database URL names (see [`Database::connect`](crate::Database::connect)),
    /// for instance to choose [`PoolOptions::for_backend`](crate::PoolOptions::for_backend).
    ///
    /// # Errors
    /// [`StorageError::UnsupportedUrl`] for any other scheme.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        Target::parse(url).map(|t| t.backend())
    }

    /// The backend's name: `sqlite` or `postgres`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed database URL. Never printed: a PostgreSQL URL may carry a password.
#[derive(Clone)]
pub(crate) enum Target {
    /// The path of the SQLite file.
    Sqlite(String),
    /// The libpq connection URI, unchanged.
    Postgres(String),
}

impl Target {
    /// Chooses the backend from the URL scheme.
    pub(crate) fn parse(url: &str) -> Result<Self, StorageError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            return sqlite_path(path).map(Self::Sqlite);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        let scheme = match url.split_once("://") {
            Some((scheme, _)) => format!("scheme '{scheme}'"),
            None => "no scheme".to_owned(),
        };
        Err(StorageError::UnsupportedUrl(format!(
            "{scheme}: {ACCEPTED}"
        )))
    }

    /// The backend the URL names.
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

fn sqlite_path(path: &str) -> Result<String, StorageError> {
    let reason = match path {
        "" | "/" => "the SQLite URL has no file path",
        ":memory:" => "in-memory SQLite cannot be shared by a connection pool; give a file path",
        _ => return Ok(path.to_owned()),
    };
    Err(StorageError::UnsupportedUrl(format!(
        "{reason}: {ACCEPTED}"
    )))
}

#[cfg(test)]
mod tests {
    use super::{Backend, Target};

    fn parsed(url: &str) -> Result<(Backend, String), String> {
        match Target::parse(url) {
            Ok(Target::Sqlite(p)) => Ok((Backend::Sqlite, p)),
            Ok(Target::Postgres(u)) => Ok((Backend::Postgres, u)),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn schemes() {
        assert_eq!(
            parsed("sqlite://data/a.db"),
            Ok((Backend::Sqlite, "data/a.db".into()))
        );
        assert_eq!(
            parsed("sqlite:///var/a.db"),
            Ok((Backend::Sqlite, "/var/a.db".into()))
        );
        let pg = "postgresql://u:p@h/db";
        assert_eq!(parsed(pg), Ok((Backend::Postgres, pg.into())));
        assert!(parsed("postgres://h/db").is_ok());
        assert_eq!(
            Backend::from_url("postgres://h/db").ok(),
            Some(Backend::Postgres)
        );
    }

    #[test]
    fn rejections_name_the_scheme_and_hide_the_rest() {
        let err = parsed("mysql://root:secret@h/db").err().unwrap_or_default();
        assert!(
            err.contains("scheme 'mysql'") && err.contains("sqlite://"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
        assert!(
            parsed("data.db")
                .err()
                .unwrap_or_default()
                .contains("no scheme")
        );
        assert!(parsed("sqlite://").is_err());
        assert!(parsed("sqlite://:memory:").is_err());
    }
}
