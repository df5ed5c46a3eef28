//! Rows of `users`, `auth_sessions`, `refresh_tokens` and `api_keys`, and their conversion to
//! and from domain types. None of them derives `Debug`: they hold password hashes and token
//! digests.

use agentry_domain::auth::{
    ApiKey, ApiKeyId, Email, RefreshTokenRecord, Role, Scope, Session, User, UserId, Username,
};
use agentry_domain::{Error, Invalid};
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::rows::{corrupt, parse_json};
use crate::schema::{api_keys, auth_sessions, refresh_tokens, users};

/// One row of `users`.
#[derive(Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = users, treat_none_as_null = true)]
pub(crate) struct UserRow {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub role: String,
    pub password_hash: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl From<&User> for UserRow {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            username: u.username.to_string(),
            email: u.email.as_ref().map(|e| e.as_str().to_owned()),
            role: u.role.as_str().to_owned(),
            password_hash: u.password_hash.clone(),
            created_at: u.created_at.naive_utc(),
            updated_at: u.updated_at.naive_utc(),
        }
    }
}

impl TryFrom<UserRow> for User {
    type Error = Error;

    fn try_from(row: UserRow) -> Result<Self, Error> {
        let bad = |e: Invalid| corrupt("user", &row.id, &e);
        Ok(Self {
            id: UserId::parse(&row.id).map_err(bad)?,
            username: Username::parse(&row.username).map_err(bad)?,
            email: row
                .email
                .as_deref()
                .map(Email::parse)
                .transpose()
                .map_err(bad)?,
            role: Role::parse(&row.role).map_err(bad)?,
            password_hash: row.password_hash,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        })
    }
}

/// One row of `auth_sessions`.
#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = auth_sessions)]
pub(crate) struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub created_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

impl From<&Session> for SessionRow {
    fn from(s: &Session) -> Self {
        Self {
            id: s.id.clone(),
            user_id: s.user_id.to_string(),
            created_at: s.created_at.naive_utc(),
            revoked_at: s.revoked_at.map(|t| t.naive_utc()),
        }
    }
}

impl TryFrom<SessionRow> for Session {
    type Error = Error;

    fn try_from(row: SessionRow) -> Result<Self, Error> {
        Ok(Self {
            user_id: UserId::parse(&row.user_id).map_err(|e| corrupt("session", &row.id, &e))?,
            id: row.id,
            created_at: row.created_at.and_utc(),
            revoked_at: row.revoked_at.map(|t| t.and_utc()),
        })
    }
}

/// One row of `refresh_tokens`.
#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub(crate) struct RefreshTokenRow {
    pub token_hash: String,
    pub session_id: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

impl From<&RefreshTokenRecord> for RefreshTokenRow {
    fn from(t: &RefreshTokenRecord) -> Self {
        Self {
            token_hash: t.token_hash.clone(),
            session_id: t.session_id.clone(),
            created_at: t.created_at.naive_utc(),
            expires_at: t.expires_at.naive_utc(),
            used_at: t.used_at.map(|u| u.naive_utc()),
        }
    }
}

impl From<RefreshTokenRow> for RefreshTokenRecord {
    fn from(row: RefreshTokenRow) -> Self {
        Self {
            token_hash: row.token_hash,
            session_id: row.session_id,
            created_at: row.created_at.and_utc(),
            expires_at: row.expires_at.and_utc(),
            used_at: row.used_at.map(|u| u.and_utc()),
        }
    }
}

/// One row of `api_keys`. `scopes` and `agents` are JSON arrays.
#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub(crate) struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub scopes: String,
    pub agents: Option<String>,
    pub rate_limit_per_minute: Option<i32>,
    pub created_by: Option<String>,
    pub expires_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}

impl TryFrom<&ApiKey> for ApiKeyRow {
    type Error = Error;

    fn try_from(k: &ApiKey) -> Result<Self, Error> {
        let scopes: Vec<&str> = k.scopes.iter().map(Scope::as_str).collect();
        let rate = k
            .rate_limit_per_minute
            .map(i32::try_from)
            .transpose()
            .map_err(|_| Error::Internal("rate_limit_per_minute does not fit the column".into()))?;
        Ok(Self {
            id: k.id.to_string(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            secret_hash: k.secret_hash.clone(),
            scopes: serde_json::to_string(&scopes)
                .map_err(|e| Error::Internal(format!("scopes: {e}")))?,
            agents: k
                .agents
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| Error::Internal(format!("agents: {e}")))?,
            rate_limit_per_minute: rate,
            created_by: k.created_by.as_ref().map(ToString::to_string),
            expires_at: k.expires_at.map(|t| t.naive_utc()),
            last_used_at: k.last_used_at.map(|t| t.naive_utc()),
            revoked_at: k.revoked_at.map(|t| t.naive_utc()),
            created_at: k.created_at.naive_utc(),
        })
    }
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = Error;

    fn try_from(row: ApiKeyRow) -> Result<Self, Error> {
        let bad = |e: Invalid| corrupt("api_key", &row.id, &e);
        let scopes: Vec<String> = parse_json("api_key", &row.id, "scopes", &row.scopes)?;
        let agents: Option<Vec<String>> = row
            .agents
            .as_deref()
            .map(|a| parse_json("api_key", &row.id, "agents", a))
            .transpose()?;
        Ok(Self {
            id: ApiKeyId::parse(&row.id).map_err(bad)?,
            scopes: Scope::parse_list(&scopes).map_err(bad)?,
            agents,
            rate_limit_per_minute: row
                .rate_limit_per_minute
                .map(u32::try_from)
                .transpose()
                .map_err(|_| {
                    Error::Internal(format!(
                        "stored api_key '{}' has a negative rate limit",
                        row.id
                    ))
                })?,
            created_by: row
                .created_by
                .as_deref()
                .map(UserId::parse)
                .transpose()
                .map_err(bad)?,
            name: row.name,
            prefix: row.prefix,
            secret_hash: row.secret_hash,
            expires_at: row.expires_at.map(|t| t.and_utc()),
            last_used_at: row.last_used_at.map(|t| t.and_utc()),
            revoked_at: row.revoked_at.map(|t| t.and_utc()),
            created_at: row.created_at.and_utc(),
        })
    }
}
