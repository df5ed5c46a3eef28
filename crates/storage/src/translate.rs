//! Diesel and pool failures translated into the domain's error kinds. Nothing above this
//! crate sees a diesel error.

use agentry_domain::Error;
use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};

use crate::rows::{AgentRow, ProviderRow};

/// The field a unique violation is about, from the PostgreSQL constraint name (named in the
/// migrations) or the SQLite message (`UNIQUE constraint failed: agents.name`).
fn unique_field(info: &dyn DatabaseErrorInformation) -> Option<&'static str> {
    let columns = info
        .constraint_name()
        .or_else(|| info.message().strip_prefix("UNIQUE constraint failed: "))?;
    match columns {
        "agents_name_key" | "agents.name" => Some("name"),
        "agents_key_key" | "agents.key" => Some("key"),
        "agents_pkey" | "agents.id" | "providers_pkey" | "providers.id" => Some("id"),
        "conversations_pkey" | "conversations.id" | "messages_pkey" | "messages.id" => Some("id"),
        "conversations_agent_id_session_key_key"
        | "conversations.agent_id, conversations.session_key" => Some("session_key"),
        "runs_pkey" | "runs.id" => Some("run_id"),
        "users_username_key" | "users.username" => Some("username"),
        "users_pkey" | "users.id" | "auth_sessions_pkey" | "auth_sessions.id" => Some("id"),
        "api_keys_pkey" | "api_keys.id" | "api_keys_secret_hash_key" | "api_keys.secret_hash" => {
            Some("id")
        }
        "refresh_tokens_pkey" | "refresh_tokens.token_hash" => Some("token_hash"),
        "server_secrets_pkey" | "server_secrets.name" => Some("name"),
        "mcp_servers_pkey" | "mcp_servers.id" => Some("id"),
        "mcp_servers_slug_key" | "mcp_servers.slug" => Some("slug"),
        "tasks_pkey" | "tasks.id" => Some("id"),
        "clusters_pkey" | "clusters.id" => Some("id"),
        "clusters_name_key" | "clusters.name" => Some("name"),
        "testsets_pkey" | "testsets.id" | "eval_runs_pkey" | "eval_runs.id" => Some("id"),
        "testsets_name_key" | "testsets.name" => Some("name"),
        _ => None,
    }
}

/// The field of a unique violation, if `error` is one on a known constraint.
pub(crate) fn conflict_on(error: &DieselError) -> Option<&'static str> {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            unique_field(info.as_ref())
        }
        _ => None,
    }
}

/// Whether `error` is a foreign key violation (a referenced row is missing).
pub(crate) fn is_missing_reference(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)
    )
}

/// An error on an agent being written: conflicts name the colliding field and value.
pub(crate) fn agent_error(error: DieselError, agent: &AgentRow) -> Error {
    let Some(field) = conflict_on(&error) else {
        return other(error, "agent", &agent.id);
    };
    let message = match field {
        "name" => format!("an agent named '{}' already exists", agent.name),
        "key" => format!("an agent with key '{}' already exists", agent.key),
        _ => format!("an agent with id '{}' already exists", agent.id),
    };
    Error::conflict(field, message)
}

/// An error on a provider being written: a taken id is a conflict on `id`.
pub(crate) fn provider_error(error: DieselError, provider: &ProviderRow) -> Error {
    match conflict_on(&error) {
        Some(_) => Error::conflict(
            "id",
            format!("a provider with id '{}' already exists", provider.id),
        ),
        None => other(error, "provider", &provider.id),
    }
}

/// An error on an MCP server being written: a taken slug (or id) is a conflict on that field.
pub(crate) fn mcp_server_error(error: DieselError, id: &str, slug: &str) -> Error {
    match conflict_on(&error) {
        Some("slug") => Error::conflict(
            "slug",
            format!("an MCP server with slug '{slug}' already exists"),
        ),
        Some(field) => Error::conflict(
            field,
            format!("an MCP server with id '{id}' already exists"),
        ),
        None => other(error, "mcp_server", id),
    }
}

/// Diesel's `NotFound` becomes `NotFound` for `entity` `id`; anything else as [`query_error`].
pub(crate) fn other(error: DieselError, entity: &'static str, id: &str) -> Error {
    match error {
        DieselError::NotFound => Error::not_found(entity, id),
        error => query_error(error),
    }
}

/// A lost connection or a SQLite file still locked after `busy_timeout` is `Unavailable`;
/// anything else is `Internal`.
pub(crate) fn query_error(error: DieselError) -> Error {
    if is_unavailable(&error) {
        Error::Unavailable(format!("database: {error}"))
    } else {
        Error::Internal(format!("database error: {error}"))
    }
}

/// No connection could be had from the pool in time.
pub(crate) fn pool_error(error: &diesel::r2d2::PoolError) -> Error {
    Error::Unavailable(format!("database: {error}"))
}

/// Whether `error` says the database could not be reached rather than that the query was
/// wrong. Pooled connections are not tested on check-out, so a connection the server (or the
/// network) dropped shows up in the first query on it, and libpq reports that in several ways:
/// `ClosedConnection` when it noticed the socket is gone, `UnableToSendCommand` when the write
/// failed, or `Unknown` with libpq's own words when the read did. A transaction whose commit
/// failed for one of those reasons is the same outage.
fn is_unavailable(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        DieselError::DatabaseError(_, info) => {
            is_busy(info.message()) || is_connection_lost(info.message())
        }
        DieselError::RollbackErrorOnCommit { commit_error, .. } => is_unavailable(commit_error),
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}

/// libpq's messages for a connection that is gone (they carry no SQLSTATE).
fn is_connection_lost(message: &str) -> bool {
    const LOST: [&str; 8] = [
        "server closed the connection",
        "no connection to the server",
        "could not receive data from server",
        "could not send data to server",
        "connection not open",
        "terminating connection",
        "SSL SYSCALL error",
        "SSL connection has been closed",
    ];
    LOST.iter().any(|words| message.contains(words))
}

/// SQLite's "database is locked" / "database table is locked" once `busy_timeout` ran out.
fn is_busy(message: &str) -> bool {
    message.contains("is locked")
}

#[cfg(test)]
mod tests {
    use super::{other, query_error, unique_field};
    use agentry_domain::Error;
    use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};

    struct Info(&'static str, Option<&'static str>);

    impl DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            self.1
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    #[test]
    fn sqlite_messages() {
        assert_eq!(
            unique_field(&Info("UNIQUE constraint failed: agents.name", None)),
            Some("name")
        );
        assert_eq!(
            unique_field(&Info("UNIQUE constraint failed: agents.key", None)),
            Some("key")
        );
        assert_eq!(
            unique_field(&Info("UNIQUE constraint failed: providers.id", None)),
            Some("id")
        );
        assert_eq!(
            unique_field(&Info(
                "UNIQUE constraint failed: agent_tags.agent_id, agent_tags.tag",
                None
            )),
            None
        );
        assert_eq!(
            unique_field(&Info("UNIQUE constraint failed: runs.id", None)),
            Some("run_id")
        );
        assert_eq!(
            unique_field(&Info(
                "UNIQUE constraint failed: conversations.agent_id, conversations.session_key",
                None
            )),
            Some("session_key")
        );
        assert_eq!(
            unique_field(&Info("UNIQUE constraint failed: messages.id", None)),
            Some("id")
        );
        assert_eq!(
            unique_field(&Info("UNIQUE constraint failed: mcp_servers.slug", None)),
            Some("slug")
        );
    }

    #[test]
    fn postgres_constraint_names() {
        let msg = "duplicate key value violates unique constraint";
        assert_eq!(
            unique_field(&Info(msg, Some("agents_name_key"))),
            Some("name")
        );
        assert_eq!(
            unique_field(&Info(msg, Some("agents_key_key"))),
            Some("key")
        );
        assert_eq!(unique_field(&Info(msg, Some("agents_pkey"))), Some("id"));
        assert_eq!(unique_field(&Info(msg, Some("agent_tags_pkey"))), None);
        assert_eq!(unique_field(&Info(msg, Some("runs_pkey"))), Some("run_id"));
        assert_eq!(
            unique_field(&Info(msg, Some("conversations_agent_id_session_key_key"))),
            Some("session_key")
        );
        assert_eq!(unique_field(&Info(msg, Some("messages_pkey"))), Some("id"));
        assert_eq!(
            unique_field(&Info(msg, Some("mcp_servers_slug_key"))),
            Some("slug")
        );
    }

    fn db(kind: DatabaseErrorKind, message: &'static str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(Info(message, None)))
    }

    #[test]
    fn kinds() {
        assert!(matches!(
            other(DieselError::NotFound, "agent", "x"),
            Error::NotFound {
                entity: "agent",
                ..
            }
        ));
        let closed = db(
            DatabaseErrorKind::ClosedConnection,
            "server closed the connection",
        );
        assert!(matches!(query_error(closed), Error::Unavailable(_)));
        for lost in [
            db(
                DatabaseErrorKind::UnableToSendCommand,
                "no connection to the server",
            ),
            db(
                DatabaseErrorKind::Unknown,
                "server closed the connection unexpectedly\n\tThis probably means…",
            ),
            db(
                DatabaseErrorKind::Unknown,
                "could not receive data from server: Connection reset by peer",
            ),
            DieselError::BrokenTransactionManager,
            DieselError::RollbackErrorOnCommit {
                commit_error: Box::new(db(
                    DatabaseErrorKind::Unknown,
                    "SSL SYSCALL error: EOF detected",
                )),
                rollback_error: Box::new(DieselError::BrokenTransactionManager),
            },
        ] {
            let shown = lost.to_string();
            assert!(
                matches!(query_error(lost), Error::Unavailable(_)),
                "{shown}"
            );
        }
        let syntax = db(DatabaseErrorKind::Unknown, "syntax error at or near \"x\"");
        assert!(matches!(query_error(syntax), Error::Internal(_)));
        let busy = db(DatabaseErrorKind::Unknown, "database is locked");
        assert!(matches!(query_error(busy), Error::Unavailable(_)));
        let unknown_unique = db(
            DatabaseErrorKind::UniqueViolation,
            "UNIQUE constraint failed: x.y",
        );
        assert!(matches!(query_error(unknown_unique), Error::Internal(_)));
    }
}
