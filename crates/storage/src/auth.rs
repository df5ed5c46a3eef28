//! [`UserStore`], [`SessionStore`], [`ApiKeyStore`] and [`ServerSecretStore`] over diesel.
//! Refresh-token consumption and API-key touches are single conditional `UPDATE`s, so they
//! are atomic on both backends and across replicas.

use agentry_domain::auth::{ApiKey, ApiKeyId, RefreshTokenRecord, Session, User, UserId, Username};
use agentry_domain::page::{Page, Paged};
use agentry_domain::ports::{ApiKeyStore, ServerSecretStore, SessionStore, UserStore};
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use secrecy::{ExposeSecret, SecretString};

use crate::auth_rows::{ApiKeyRow, RefreshTokenRow, SessionRow, UserRow};
use crate::schema::{api_keys, auth_sessions, refresh_tokens, server_secrets, users};
use crate::store::DieselStore;
use crate::translate::{conflict_on, is_missing_reference, other, query_error};

fn count(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::Internal("negative count".into()))
}

fn offset(page: Page) -> i64 {
    i64::try_from(page.offset()).unwrap_or(i64::MAX)
}

/// An error on a user being written: a taken username or id is a conflict.
fn user_error(error: DieselError, row: &UserRow) -> Error {
    match conflict_on(&error) {
        Some("username") => Error::conflict(
            "username",
            format!("a user named '{}' already exists", row.username),
        ),
        Some(_) => Error::conflict("id", format!("a user with id '{}' already exists", row.id)),
        None => other(error, "user", &row.id),
    }
}

#[async_trait]
impl UserStore for DieselStore {
    async fn insert_user(&self, user: &User) -> Result<()> {
        let row = UserRow::from(user);
        self.run(move |conn| {
            let inserted = diesel::insert_into(users::table).values(&row).execute(conn);
            inserted.map(drop).map_err(|e| user_error(e, &row))
        })
        .await
    }

    async fn get_user(&self, id: &UserId) -> Result<User> {
        let id = id.to_string();
        self.run(move |conn| {
            let found = users::table
                .find(&id)
                .select(UserRow::as_select())
                .first(conn);
            found.map_err(|e| other(e, "user", &id))?.try_into()
        })
        .await
    }

    async fn find_user_by_username(&self, username: &Username) -> Result<Option<User>> {
        let username = username.to_string();
        self.run(move |conn| {
            let found = users::table
                .filter(users::username.eq(&username))
                .select(UserRow::as_select())
                .first(conn)
                .optional()
                .map_err(query_error)?;
            found.map(User::try_from).transpose()
        })
        .await
    }

    async fn list_users(&self, page: Page) -> Result<Paged<User>> {
        self.run(move |conn| {
            let (total, rows) = conn
                .transaction(|c| {
                    let total: i64 = users::table.count().get_result(c)?;
                    let rows = users::table
                        .select(UserRow::as_select())
                        .order((users::created_at.asc(), users::id.asc()))
                        .limit(i64::from(page.limit()))
                        .offset(offset(page))
                        .load(c)?;
                    Ok::<_, DieselError>((total, rows))
                })
                .map_err(query_error)?;
            let items = rows
                .into_iter()
                .map(User::try_from)
                .collect::<Result<_>>()?;
            Ok(Paged {
                items,
                total: count(total)?,
                page,
            })
        })
        .await
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        let row = UserRow::from(user);
        self.run(move |conn| {
            let changed = diesel::update(users::table.find(&row.id))
                .set(&row)
                .execute(conn);
            match changed {
                Ok(0) => Err(Error::not_found("user", &row.id)),
                Ok(_) => Ok(()),
                Err(e) => Err(user_error(e, &row)),
            }
        })
        .await
    }

    async fn delete_user(&self, id: &UserId) -> Result<bool> {
        let id = id.to_string();
        self.run(move |conn| {
            let deleted = diesel::delete(users::table.find(&id)).execute(conn);
            deleted.map(|n| n > 0).map_err(|e| other(e, "user", &id))
        })
        .await
    }

    async fn count_users(&self) -> Result<(u64, u64)> {
        self.run(|conn| {
            let (all, admins) = conn
                .transaction(|c| {
                    let all: i64 = users::table.count().get_result(c)?;
                    let admins: i64 = users::table
                        .filter(users::role.eq("admin"))
                        .count()
                        .get_result(c)?;
                    Ok::<_, DieselError>((all, admins))
                })
                .map_err(query_error)?;
            Ok((count(all)?, count(admins)?))
        })
        .await
    }
}

#[async_trait]
impl SessionStore for DieselStore {
    async fn insert_session(&self, session: &Session, token: &RefreshTokenRecord) -> Result<()> {
        let session = SessionRow::from(session);
        let token = RefreshTokenRow::from(token);
        self.run(move |conn| {
            let inserted = conn.transaction(|c| {
                diesel::insert_into(auth_sessions::table)
                    .values(&session)
                    .execute(c)?;
                diesel::insert_into(refresh_tokens::table)
                    .values(&token)
                    .execute(c)
            });
            match inserted {
                Ok(_) => Ok(()),
                Err(e) if is_missing_reference(&e) => {
                    Err(Error::not_found("user", &session.user_id))
                }
                Err(e) if conflict_on(&e).is_some() => Err(Error::conflict(
                    "id",
                    format!("a session with id '{}' already exists", session.id),
                )),
                Err(e) => Err(query_error(e)),
            }
        })
        .await
    }

    async fn get_session(&self, id: &str) -> Result<Session> {
        let id = id.to_owned();
        self.run(move |conn| {
            let found = auth_sessions::table
                .find(&id)
                .select(SessionRow::as_select())
                .first(conn);
            found.map_err(|e| other(e, "session", &id))?.try_into()
        })
        .await
    }

    async fn revoke_session(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.transaction(|c| {
                diesel::update(
                    auth_sessions::table
                        .find(&id)
                        .filter(auth_sessions::revoked_at.is_null()),
                )
                .set(auth_sessions::revoked_at.eq(Some(now.naive_utc())))
                .execute(c)?;
                let exists: i64 = auth_sessions::table.find(&id).count().get_result(c)?;
                Ok::<_, DieselError>(exists > 0)
            })
            .map_err(query_error)
        })
        .await
    }

    async fn revoke_user_sessions(&self, user: &UserId, now: DateTime<Utc>) -> Result<u64> {
        let user = user.to_string();
        self.run(move |conn| {
            let n = diesel::update(
                auth_sessions::table
                    .filter(auth_sessions::user_id.eq(&user))
                    .filter(auth_sessions::revoked_at.is_null()),
            )
            .set(auth_sessions::revoked_at.eq(Some(now.naive_utc())))
            .execute(conn)
            .map_err(query_error)?;
            Ok(n as u64)
        })
        .await
    }

    async fn find_refresh_token(&self, token_hash: &str) -> Result<Option<RefreshTokenRecord>> {
        let token_hash = token_hash.to_owned();
        self.run(move |conn| {
            let found = refresh_tokens::table
                .find(&token_hash)
                .select(RefreshTokenRow::as_select())
                .first(conn)
                .optional()
                .map_err(query_error)?;
            Ok(found.map(RefreshTokenRecord::from))
        })
        .await
    }

    async fn consume_refresh_token(&self, token_hash: &str, now: DateTime<Utc>) -> Result<bool> {
        let token_hash = token_hash.to_owned();
        self.run(move |conn| {
            let n = diesel::update(
                refresh_tokens::table
                    .find(&token_hash)
                    .filter(refresh_tokens::used_at.is_null()),
            )
            .set(refresh_tokens::used_at.eq(Some(now.naive_utc())))
            .execute(conn)
            .map_err(query_error)?;
            Ok(n == 1)
        })
        .await
    }

    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> Result<()> {
        let row = RefreshTokenRow::from(token);
        self.run(move |conn| {
            let inserted = diesel::insert_into(refresh_tokens::table)
                .values(&row)
                .execute(conn);
            match inserted {
                Ok(_) => Ok(()),
                Err(e) if is_missing_reference(&e) => {
                    Err(Error::not_found("session", &row.session_id))
                }
                Err(e) if conflict_on(&e).is_some() => Err(Error::conflict(
                    "token_hash",
                    "this refresh token already exists",
                )),
                Err(e) => Err(query_error(e)),
            }
        })
        .await
    }

    async fn purge_sessions(
        &self,
        now: DateTime<Utc>,
        revoked_before: DateTime<Utc>,
    ) -> Result<u64> {
        let (now, revoked_before) = (now.naive_utc(), revoked_before.naive_utc());
        self.run(move |conn| {
            conn.transaction(|c| {
                diesel::delete(refresh_tokens::table.filter(refresh_tokens::expires_at.lt(now)))
                    .execute(c)?;
                let live = refresh_tokens::table.select(refresh_tokens::session_id);
                let n = diesel::delete(
                    auth_sessions::table.filter(
                        auth_sessions::id
                            .ne_all(live)
                            .or(auth_sessions::revoked_at.lt(revoked_before)),
                    ),
                )
                .execute(c)?;
                Ok::<_, DieselError>(n as u64)
            })
            .map_err(query_error)
        })
        .await
    }
}

#[async_trait]
impl ApiKeyStore for DieselStore {
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        let row = ApiKeyRow::try_from(key)?;
        self.run(move |conn| {
            let inserted = diesel::insert_into(api_keys::table)
                .values(&row)
                .execute(conn);
            match inserted {
                Ok(_) => Ok(()),
                Err(e) if conflict_on(&e).is_some() => Err(Error::conflict(
                    "id",
                    format!("an API key with id '{}' already exists", row.id),
                )),
                Err(e) if is_missing_reference(&e) => Err(Error::not_found(
                    "user",
                    row.created_by.clone().unwrap_or_default(),
                )),
                Err(e) => Err(other(e, "api_key", &row.id)),
            }
        })
        .await
    }

    async fn get_api_key(&self, id: &ApiKeyId) -> Result<ApiKey> {
        let id = id.to_string();
        self.run(move |conn| {
            let found = api_keys::table
                .find(&id)
                .select(ApiKeyRow::as_select())
                .first(conn);
            found.map_err(|e| other(e, "api_key", &id))?.try_into()
        })
        .await
    }

    async fn find_api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        let secret_hash = secret_hash.to_owned();
        self.run(move |conn| {
            let found = api_keys::table
                .filter(api_keys::secret_hash.eq(&secret_hash))
                .select(ApiKeyRow::as_select())
                .first(conn)
                .optional()
                .map_err(query_error)?;
            found.map(ApiKey::try_from).transpose()
        })
        .await
    }

    async fn list_api_keys(
        &self,
        created_by: Option<&UserId>,
        page: Page,
    ) -> Result<Paged<ApiKey>> {
        let created_by = created_by.map(ToString::to_string);
        self.run(move |conn| {
            let matching = || {
                let mut q = api_keys::table.into_boxed();
                if let Some(by) = &created_by {
                    q = q.filter(api_keys::created_by.eq(by.clone()));
                }
                q
            };
            let (total, rows) = conn
                .transaction(|c| {
                    let total: i64 = matching().count().get_result(c)?;
                    let rows = matching()
                        .select(ApiKeyRow::as_select())
                        .order((api_keys::created_at.desc(), api_keys::id.desc()))
                        .limit(i64::from(page.limit()))
                        .offset(offset(page))
                        .load(c)?;
                    Ok::<_, DieselError>((total, rows))
                })
                .map_err(query_error)?;
            let items = rows
                .into_iter()
                .map(ApiKey::try_from)
                .collect::<Result<_>>()?;
            Ok(Paged {
                items,
                total: count(total)?,
                page,
            })
        })
        .await
    }

    async fn revoke_api_key(&self, id: &ApiKeyId, now: DateTime<Utc>) -> Result<bool> {
        let id = id.to_string();
        self.run(move |conn| {
            let n = diesel::update(
                api_keys::table
                    .find(&id)
                    .filter(api_keys::revoked_at.is_null()),
            )
            .set(api_keys::revoked_at.eq(Some(now.naive_utc())))
            .execute(conn)
            .map_err(query_error)?;
            Ok(n > 0)
        })
        .await
    }

    async fn touch_api_key(
        &self,
        id: &ApiKeyId,
        now: DateTime<Utc>,
        min_interval_secs: i64,
    ) -> Result<()> {
        let id = id.to_string();
        let fresh_after = (now - chrono::Duration::seconds(min_interval_secs)).naive_utc();
        self.run(move |conn| {
            diesel::update(
                api_keys::table.find(&id).filter(
                    api_keys::last_used_at
                        .is_null()
                        .or(api_keys::last_used_at.lt(fresh_after)),
                ),
            )
            .set(api_keys::last_used_at.eq(Some(now.naive_utc())))
            .execute(conn)
            .map(drop)
            .map_err(query_error)
        })
        .await
    }
}

#[async_trait]
impl ServerSecretStore for DieselStore {
    async fn get_or_insert_secret(
        &self,
        name: &str,
        candidate: SecretString,
    ) -> Result<SecretString> {
        let name = name.to_owned();
        self.run(move |conn| {
            let read = |c: &mut crate::connection::AnyConnection| {
                server_secrets::table
                    .find(&name)
                    .select(server_secrets::value)
                    .first::<String>(c)
                    .optional()
                    .map_err(query_error)
            };
            if let Some(v) = read(conn)? {
                return Ok(SecretString::from(v));
            }
            let inserted = diesel::insert_into(server_secrets::table)
                .values((
                    server_secrets::name.eq(&name),
                    server_secrets::value.eq(candidate.expose_secret()),
                    server_secrets::created_at.eq(Utc::now().naive_utc()),
                ))
                .execute(conn);
            match inserted {
                Ok(_) => Ok(candidate),
                // Another replica stored one first: use that one.
                Err(e) if conflict_on(&e).is_some() => read(conn)?
                    .map(SecretString::from)
                    .ok_or_else(|| Error::Internal(format!("server secret '{name}' vanished"))),
                Err(e) => Err(query_error(e)),
            }
        })
        .await
    }
}
