//! Fresh databases for tests (feature `test-support`): a new SQLite file, or a new
//! PostgreSQL schema dropped when its guard is dropped, so tests run isolated and in parallel.
//!
//! PostgreSQL comes from `AGENTRY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). When it cannot be reached, tests skip, unless
//! `AGENTRY_TEST_REQUIRE_POSTGRES=1`, which makes them fail.

use std::fmt;
use std::path::Path;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use uuid::Uuid;

/// The variable naming the test PostgreSQL server.
pub const POSTGRES_URL_ENV: &str = "AGENTRY_TEST_POSTGRES_URL";
/// The variable that, set to `1`, makes an unreachable PostgreSQL a failure, not a skip.
pub const REQUIRE_POSTGRES_ENV: &str = "AGENTRY_TEST_REQUIRE_POSTGRES";
/// The test PostgreSQL server when [`POSTGRES_URL_ENV`] is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";

/// The URL of a new SQLite file (not created yet) in `dir`: `sqlite:///dir/agentry-<uuid>.db`
/// (`sqlite://dir/…` when `dir` is relative).
pub fn fresh_sqlite_url(dir: &Path) -> String {
    let file = dir.join(format!("agentry-{}.db", Uuid::now_v7().simple()));
    format!("sqlite://{}", file.display())
}

/// A URL to a new, empty PostgreSQL schema of the test server (its `search_path` set through
/// the libpq `options` parameter, so tables and diesel's migration table land there), and
/// the guard that drops the schema.
///
/// Returns `Ok(None)` after printing `skipped: PostgreSQL not reachable at …` to stderr when
/// the server cannot be reached.
///
/// # Errors
/// When the server cannot be reached and [`REQUIRE_POSTGRES_ENV`] is `1`, or the schema
/// cannot be created.
pub fn fresh_postgres_url() -> Result<Option<(String, PgSchemaGuard)>, String> {
    let base = std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let mut conn = match PgConnection::establish(&base) {
        Ok(conn) => conn,
        Err(e) if postgres_required() => {
            return Err(format!(
                "PostgreSQL not reachable at {} ({REQUIRE_POSTGRES_ENV}=1): {}",
                redact(&base),
                e.to_string().trim()
            ));
        }
        Err(e) => {
            eprintln!(
                "skipped: PostgreSQL not reachable at {}: {}",
                redact(&base),
                e.to_string().trim()
            );
            return Ok(None);
        }
    };
    let schema = format!("t_{}", Uuid::now_v7().simple());
    conn.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .map_err(|e| format!("cannot create schema {schema}: {e}"))?;
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
    Ok(Some((
        url,
        PgSchemaGuard {
            base_url: base,
            schema,
        },
    )))
}

/// Whether [`REQUIRE_POSTGRES_ENV`] is `1`.
pub fn postgres_required() -> bool {
    std::env::var(REQUIRE_POSTGRES_ENV).is_ok_and(|v| v == "1")
}

/// Drops its PostgreSQL schema (and everything in it) when dropped; best effort.
pub struct PgSchemaGuard {
    base_url: String,
    schema: String,
}

impl PgSchemaGuard {
    /// The schema's name (`t_<uuid>`).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A plain connection to the test server, outside the schema (for assertions).
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub fn admin_connection(&self) -> Result<PgConnection, String> {
        PgConnection::establish(&self.base_url).map_err(|e| e.to_string())
    }
}

impl fmt::Debug for PgSchemaGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSchemaGuard")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Drop for PgSchemaGuard {
    fn drop(&mut self) {
        let dropped = self.admin_connection().and_then(|mut c| {
            c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
                .map_err(|e| e.to_string())
        });
        if let Err(e) = dropped {
            eprintln!("warning: could not drop test schema {}: {e}", self.schema);
        }
    }
}

/// `url` with the password of its user info replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:pw@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
    }
}
