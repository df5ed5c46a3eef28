//! Authentication and account management: the bootstrap admin, login with throttling,
//! refresh-token rotation with reuse detection, logout, authentication of every request
//! (access tokens and API keys), users and API keys.
//!
//! Rules kept here, whatever the adapters:
//! - a failed login never says whether the username exists (an unknown user costs a password
//!   check too), and too many failures make further attempts wait;
//! - a refresh token works once: using it issues a new one in the same session; using an
//!   already-used token revokes the whole session (the token was stolen, or the client is
//!   confused — either way nobody keeps access);
//! - an access token is honoured only while its session is open and its user exists, checked
//!   on every request against the shared store, so logout holds at once on every replica;
//! - the last admin cannot be demoted or deleted.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::agent::AgentKey;
use crate::auth::{
    API_KEY_PREFIX, API_KEY_SECRET_CHARS, API_KEY_VISIBLE_CHARS, AccessClaims, ApiKey, ApiKeyId,
    NewApiKey, NewUser, Principal, PrincipalKind, REFRESH_TOKEN_CHARS, RefreshTokenRecord, Role,
    SESSION_ID_PREFIX, Session, User, UserId, UserPatch, Username, check_password,
};
use crate::error::{Error, Invalid, Result};
use crate::ids::new_id;
use crate::page::{Page, Paged};
use crate::ports::{
    ApiKeyStore, Clock, PasswordHasher, SecretGenerator, SessionStore, TokenCodec, UserStore,
};
use crate::services::login_throttle::LoginThrottle;
use crate::text::check_text;

/// `last_used_at` of an API key is written at most this often.
pub const KEY_TOUCH_INTERVAL_SECS: i64 = 60;
/// The most agents an API key's allowlist may name.
pub const KEY_AGENTS_MAX: usize = 100;
/// Characters of a generated bootstrap password.
const GENERATED_PASSWORD_CHARS: usize = 24;

const BAD_LOGIN: &str = "Invalid username or password";
const BAD_REFRESH: &str = "Invalid, expired or revoked refresh token";
const BAD_TOKEN: &str = "Invalid, expired or revoked access token";
const BAD_KEY: &str = "Invalid, expired or revoked API key";

/// Lifetimes and thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSettings {
    /// How long an access token works.
    pub access_token_ttl: Duration,
    /// How long a refresh token works (each use issues a new one).
    pub refresh_token_ttl: Duration,
    /// Failed logins for one username before attempts must wait.
    pub login_max_failures: u32,
    /// Failed logins from one address (any usernames) before attempts must wait.
    pub login_max_failures_per_address: u32,
    /// The longest wait imposed after failed logins.
    pub login_max_delay: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            login_max_failures: 5,
            login_max_failures_per_address: 20,
            login_max_delay: Duration::from_secs(15 * 60),
        }
    }
}

/// The ports the auth service uses.
#[derive(Clone)]
pub struct AuthPorts {
    /// Users.
    pub users: Arc<dyn UserStore>,
    /// Sessions and refresh tokens.
    pub sessions: Arc<dyn SessionStore>,
    /// API keys.
    pub keys: Arc<dyn ApiKeyStore>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Access tokens.
    pub tokens: Arc<dyn TokenCodec>,
    /// Random secrets and digests.
    pub secrets: Arc<dyn SecretGenerator>,
    /// The time.
    pub clock: Arc<dyn Clock>,
}

/// What a login or a refresh gives.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// The access token (a JWT), sent as `Authorization: Bearer …`.
    pub access_token: SecretString,
    /// Seconds the access token works.
    pub expires_in: u64,
    /// The refresh token: works once, for a new pair.
    pub refresh_token: SecretString,
    /// Who logged in.
    pub user: User,
}

/// The admin created on first start.
#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    /// The user.
    pub user: User,
    /// The password, when it was generated (to be shown once); `None` when it was given.
    pub generated_password: Option<SecretString>,
}

/// A new API key and its secret, shown once.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The key as stored.
    pub key: ApiKey,
    /// The whole secret (`agk_…`): never stored, never shown again.
    pub secret: SecretString,
}

/// Authentication, sessions, users and API keys.
#[derive(Clone)]
pub struct AuthService {
    ports: AuthPorts,
    settings: AuthSettings,
    throttle: Arc<LoginThrottle>,
    dummy_hash: Arc<OnceLock<String>>,
}

fn unauthorized_if_missing<T>(result: Result<T>, message: &str) -> Result<T> {
    match result {
        Err(Error::NotFound { .. }) => Err(Error::unauthorized(message)),
        other => other,
    }
}

impl AuthService {
    /// A service over `ports`.
    pub fn new(ports: AuthPorts, settings: AuthSettings) -> Self {
        Self {
            throttle: Arc::new(LoginThrottle::new(settings.login_max_delay)),
            ports,
            settings,
            dummy_hash: Arc::new(OnceLock::new()),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    fn now(&self) -> DateTime<Utc> {
        self.ports.clock.now()
    }

    // -----------------------------------------------------------------------------------
    // First start

    /// On an empty user table, creates the admin `username` with `password`, or with a random
    /// password returned to be shown once. Returns `None` when users exist (also when another
    /// replica created the admin at the same moment).
    ///
    /// # Errors
    /// `Invalid` for a bad username or password; storage failures.
    pub async fn bootstrap_admin(
        &self,
        username: &str,
        password: Option<SecretString>,
    ) -> Result<Option<BootstrapAdmin>> {
        let (users, _) = self.ports.users.count_users().await?;
        if users > 0 {
            return Ok(None);
        }
        let username = Username::parse(username).map_err(|e| e.renamed("admin_username"))?;
        let (password, generated) = match password {
            Some(p) => (p, false),
            None => (
                self.ports
                    .secrets
                    .random_alphanumeric(GENERATED_PASSWORD_CHARS),
                true,
            ),
        };
        check_password("admin_password", &password)?;
        let new = NewUser {
            username,
            email: None,
            role: Role::Admin,
            password: password.clone(),
        };
        match self.create_user(new).await {
            Ok(user) => Ok(Some(BootstrapAdmin {
                user,
                generated_password: generated.then_some(password),
            })),
            Err(Error::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // -----------------------------------------------------------------------------------
    // Sessions

    /// Checks a username and password and opens a session. `address` is the client's, for
    /// throttling.
    ///
    /// # Errors
    /// `Unauthorized` (the same for an unknown user and a wrong password), `RateLimited` after
    /// too many failures.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        username: &str,
        password: &SecretString,
        address: Option<&str>,
    ) -> Result<IssuedTokens> {
        let now = self.now();
        let user_key: String = format!("user:{}", username.to_lowercase())
            .chars()
            .take(128)
            .collect();
        let addr_key = address.map(|a| format!("addr:{a}"));
        self.throttle
            .check(&user_key, self.settings.login_max_failures, now)?;
        if let Some(a) = &addr_key {
            self.throttle
                .check(a, self.settings.login_max_failures_per_address, now)?;
        }
        let user = match Username::parse(username) {
            Ok(name) => self.ports.users.find_user_by_username(&name).await?,
            Err(_) => None,
        };
        let verified = match &user {
            Some(u) => {
                self.ports
                    .hasher
                    .verify_password(password, &u.password_hash)
                    .await?
            }
            None => {
                // The same work as for a real user, so timing does not tell.
                let dummy = self.dummy_hash().await?;
                let _ = self.ports.hasher.verify_password(password, &dummy).await?;
                false
            }
        };
        let Some(user) = user.filter(|_| verified) else {
            self.throttle.failed(&user_key, now);
            if let Some(a) = &addr_key {
                self.throttle.failed(a, now);
            }
            tracing::info!(address = address.unwrap_or("-"), "login failed");
            return Err(Error::unauthorized(BAD_LOGIN));
        };
        self.throttle.succeeded(&user_key);
        let tokens = self.open_session(user).await?;
        tracing::info!(user_id = %tokens.user.id, "login succeeded");
        Ok(tokens)
    }

    async fn dummy_hash(&self) -> Result<String> {
        if let Some(h) = self.dummy_hash.get() {
            return Ok(h.clone());
        }
        let random = self.ports.secrets.random_alphanumeric(32);
        let hash = self.ports.hasher.hash_password(&random).await?;
        Ok(self.dummy_hash.get_or_init(|| hash).clone())
    }

    fn new_refresh_token(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> (SecretString, RefreshTokenRecord) {
        let token = self.ports.secrets.random_alphanumeric(REFRESH_TOKEN_CHARS);
        let record = RefreshTokenRecord {
            token_hash: self.ports.secrets.digest(token.expose_secret()),
            session_id: session_id.to_owned(),
            created_at: now,
            expires_at: now
                + chrono::Duration::from_std(self.settings.refresh_token_ttl)
                    .unwrap_or(chrono::Duration::days(30)),
            used_at: None,
        };
        (token, record)
    }

    fn access_token(
        &self,
        user: &User,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<SecretString> {
        let ttl = i64::try_from(self.settings.access_token_ttl.as_secs()).unwrap_or(900);
        self.ports.tokens.issue(&AccessClaims {
            user_id: user.id.to_string(),
            session_id: session_id.to_owned(),
            role: user.role.as_str().to_owned(),
            token_id: uuid::Uuid::now_v7().simple().to_string(),
            issued_at: now.timestamp(),
            expires_at: now.timestamp() + ttl,
        })
    }

    async fn open_session(&self, user: User) -> Result<IssuedTokens> {
        let now = self.now();
        let session = Session {
            id: new_id(SESSION_ID_PREFIX),
            user_id: user.id.clone(),
            created_at: now,
            revoked_at: None,
        };
        let (refresh_token, record) = self.new_refresh_token(&session.id, now);
        self.ports
            .sessions
            .insert_session(&session, &record)
            .await?;
        Ok(IssuedTokens {
            access_token: self.access_token(&user, &session.id, now)?,
            expires_in: self.settings.access_token_ttl.as_secs(),
            refresh_token,
            user,
        })
    }

    /// Exchanges a refresh token for a new access token and a new refresh token (the old one
    /// stops working). Using a token a second time revokes its whole session.
    ///
    /// # Errors
    /// `Unauthorized` for an unknown, expired, used or revoked token.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, token: &SecretString) -> Result<IssuedTokens> {
        let now = self.now();
        let hash = self.ports.secrets.digest(token.expose_secret());
        let Some(record) = self.ports.sessions.find_refresh_token(&hash).await? else {
            return Err(Error::unauthorized(BAD_REFRESH));
        };
        let session = unauthorized_if_missing(
            self.ports.sessions.get_session(&record.session_id).await,
            BAD_REFRESH,
        )?;
        if session.revoked_at.is_some() {
            return Err(Error::unauthorized(BAD_REFRESH));
        }
        if record.used_at.is_some() {
            self.reuse_detected(&session).await?;
            return Err(Error::unauthorized(BAD_REFRESH));
        }
        if record.expires_at <= now {
            return Err(Error::unauthorized(BAD_REFRESH));
        }
        if !self
            .ports
            .sessions
            .consume_refresh_token(&hash, now)
            .await?
        {
            // Another request used it a moment ago: the same token twice is reuse.
            self.reuse_detected(&session).await?;
            return Err(Error::unauthorized(BAD_REFRESH));
        }
        let user = unauthorized_if_missing(
            self.ports.users.get_user(&session.user_id).await,
            BAD_REFRESH,
        )?;
        let (refresh_token, next) = self.new_refresh_token(&session.id, now);
        self.ports.sessions.insert_refresh_token(&next).await?;
        Ok(IssuedTokens {
            access_token: self.access_token(&user, &session.id, now)?,
            expires_in: self.settings.access_token_ttl.as_secs(),
            refresh_token,
            user,
        })
    }

    async fn reuse_detected(&self, session: &Session) -> Result<()> {
        tracing::warn!(
            session_id = %session.id,
            user_id = %session.user_id,
            "a used refresh token was presented again: the session is revoked"
        );
        self.ports
            .sessions
            .revoke_session(&session.id, self.now())
            .await
            .map(drop)
    }

    /// Ends the caller's session (its access and refresh tokens stop working at once), and the
    /// session of `refresh_token` when it is given and belongs to the same user.
    ///
    /// # Errors
    /// `Invalid` when the caller is not a logged-in user (API keys are revoked instead).
    #[tracing::instrument(skip_all)]
    pub async fn logout(
        &self,
        principal: &Principal,
        refresh_token: Option<&SecretString>,
    ) -> Result<()> {
        let Some(session_id) = principal.session_id() else {
            return Err(Invalid::new(
                "authorization",
                "only a user's access token can log out; revoke API keys with DELETE /api/v1/api-keys/{id}",
            )
            .into());
        };
        let now = self.now();
        self.ports.sessions.revoke_session(session_id, now).await?;
        if let Some(token) = refresh_token {
            let hash = self.ports.secrets.digest(token.expose_secret());
            if let Some(record) = self.ports.sessions.find_refresh_token(&hash).await? {
                let other = self.ports.sessions.get_session(&record.session_id).await;
                if other.is_ok_and(|s| Some(s.user_id.as_str()) == principal.user_id()) {
                    self.ports
                        .sessions
                        .revoke_session(&record.session_id, now)
                        .await?;
                }
            }
        }
        tracing::info!(%session_id, "logged out");
        Ok(())
    }

    /// Deletes dead sessions: those whose refresh tokens have all expired, and those revoked
    /// more than a day ago. Returns how many. Call it now and then (the server does hourly).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn purge_sessions(&self) -> Result<u64> {
        let now = self.now();
        self.ports
            .sessions
            .purge_sessions(now, now - chrono::Duration::days(1))
            .await
    }

    /// Who is calling with this bearer credential: an API key (`agk_…`) or an access token.
    ///
    /// # Errors
    /// `Unauthorized` for anything invalid, expired or revoked; storage failures.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal> {
        if bearer.starts_with(API_KEY_PREFIX) {
            return self.authenticate_key(bearer).await;
        }
        let claims = self.ports.tokens.verify(bearer)?;
        let session = unauthorized_if_missing(
            self.ports.sessions.get_session(&claims.session_id).await,
            BAD_TOKEN,
        )?;
        if session.revoked_at.is_some() || session.user_id.as_str() != claims.user_id {
            return Err(Error::unauthorized(BAD_TOKEN));
        }
        let user =
            unauthorized_if_missing(self.ports.users.get_user(&session.user_id).await, BAD_TOKEN)?;
        Ok(Principal {
            id: user.id.to_string(),
            name: user.username.to_string(),
            kind: PrincipalKind::User {
                session_id: session.id,
            },
            role: Some(user.role),
            scopes: Vec::new(),
            agents: None,
            rate_limit_per_minute: None,
        })
    }

    async fn authenticate_key(&self, secret: &str) -> Result<Principal> {
        let now = self.now();
        let hash = self.ports.secrets.digest(secret);
        let key = match self.ports.keys.find_api_key_by_hash(&hash).await? {
            Some(k) if k.is_active(now) => k,
            _ => return Err(Error::unauthorized(BAD_KEY)),
        };
        let stale = key
            .last_used_at
            .is_none_or(|t| (now - t).num_seconds() >= KEY_TOUCH_INTERVAL_SECS);
        if stale
            && let Err(e) = self
                .ports
                .keys
                .touch_api_key(&key.id, now, KEY_TOUCH_INTERVAL_SECS)
                .await
        {
            tracing::warn!(key_id = %key.id, error = %e, "could not record the API key's use");
        }
        Ok(Principal {
            id: key.id.to_string(),
            name: key.name,
            kind: PrincipalKind::ApiKey {
                owner: key.created_by,
            },
            role: None,
            scopes: key.scopes,
            agents: key.agents,
            rate_limit_per_minute: key.rate_limit_per_minute,
        })
    }

    // -----------------------------------------------------------------------------------
    // Users

    /// Creates a user.
    ///
    /// # Errors
    /// `Invalid` (password too short or long), `Conflict` (username taken).
    #[tracing::instrument(skip_all)]
    pub async fn create_user(&self, new: NewUser) -> Result<User> {
        check_password("password", &new.password)?;
        let now = self.now();
        let user = User {
            id: UserId::generate(),
            username: new.username,
            email: new.email,
            role: new.role,
            password_hash: self.ports.hasher.hash_password(&new.password).await?,
            created_at: now,
            updated_at: now,
        };
        self.ports.users.insert_user(&user).await?;
        tracing::info!(user_id = %user.id, role = %user.role, "user created");
        Ok(user)
    }

    /// Users, oldest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_users(&self, page: Page) -> Result<Paged<User>> {
        self.ports.users.list_users(page).await
    }

    /// One user.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_user(&self, id: &UserId) -> Result<User> {
        self.ports.users.get_user(id).await
    }

    /// One user by username.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_user_by_username(&self, username: &Username) -> Result<User> {
        self.ports
            .users
            .find_user_by_username(username)
            .await?
            .ok_or_else(|| Error::not_found("user", username.as_str()))
    }

    async fn admins(&self) -> Result<u64> {
        Ok(self.ports.users.count_users().await?.1)
    }

    /// Changes a user's role, password or e-mail address. A new password ends every session
    /// of the user.
    ///
    /// # Errors
    /// `NotFound`, `Invalid`, `Conflict` when the last admin would stop being one.
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn update_user(&self, id: &UserId, patch: UserPatch) -> Result<User> {
        let mut user = self.ports.users.get_user(id).await?;
        if let Some(role) = patch.role {
            if user.role == Role::Admin && role != Role::Admin && self.admins().await? <= 1 {
                return Err(Error::conflict(
                    "role",
                    "this is the last admin: make another user admin first",
                ));
            }
            user.role = role;
        }
        if let Some(email) = patch.email {
            user.email = email;
        }
        let new_password = patch.password.is_some();
        if let Some(password) = &patch.password {
            check_password("password", password)?;
            user.password_hash = self.ports.hasher.hash_password(password).await?;
        }
        user.updated_at = self.now();
        self.ports.users.update_user(&user).await?;
        if new_password {
            let ended = self
                .ports
                .sessions
                .revoke_user_sessions(&user.id, self.now())
                .await?;
            tracing::info!(user_id = %user.id, sessions_ended = ended, "password changed");
        }
        Ok(user)
    }

    /// Deletes a user with its sessions and the API keys it created. Returns whether it
    /// existed.
    ///
    /// # Errors
    /// `Conflict` for the last admin.
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn delete_user(&self, id: &UserId) -> Result<bool> {
        let user = match self.ports.users.get_user(id).await {
            Ok(u) => u,
            Err(Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if user.role == Role::Admin && self.admins().await? <= 1 {
            return Err(Error::conflict(
                "id",
                "this is the last admin: make another user admin first",
            ));
        }
        self.ports.users.delete_user(id).await
    }

    // -----------------------------------------------------------------------------------
    // API keys

    /// Creates an API key for `creator`; the secret is returned once and only its digest is
    /// stored.
    ///
    /// # Errors
    /// `Invalid` (name, agents, expiry or rate), `Forbidden` when the creator may not grant
    /// the scopes.
    #[tracing::instrument(skip_all)]
    pub async fn create_api_key(
        &self,
        new: NewApiKey,
        creator: &Principal,
    ) -> Result<CreatedApiKey> {
        let now = self.now();
        check_text("name", &new.name, 1, 128, false)?;
        if new.scopes.is_empty() {
            return Err(Invalid::new("scopes", "must list at least one scope").into());
        }
        let grantable = new.scopes.iter().all(|s| {
            creator.satisfies(match s {
                crate::auth::Scope::Admin => crate::auth::Requirement::Admin,
                crate::auth::Scope::Write => crate::auth::Requirement::Write,
                crate::auth::Scope::Read => crate::auth::Requirement::Read,
                crate::auth::Scope::Invoke => crate::auth::Requirement::Invoke,
            })
        });
        if !grantable {
            return Err(Error::forbidden(
                "a key cannot have scopes its creator does not have",
            ));
        }
        let agents = new.agents.map(parse_agent_list).transpose()?;
        if let Some(limited) = &creator.agents {
            // A key limited to some agents can only make keys limited to those.
            let within = agents
                .as_ref()
                .is_some_and(|a| a.iter().all(|k| limited.contains(k)));
            if !within {
                return Err(Error::forbidden(
                    "a key limited to some agents can only create keys limited to those agents",
                ));
            }
        }
        if new.expires_at.is_some_and(|e| e <= now) {
            return Err(Invalid::new("expires_at", "must be in the future").into());
        }
        if new
            .rate_limit_per_minute
            .is_some_and(|r| r == 0 || r > 1_000_000)
        {
            return Err(
                Invalid::new("rate_limit_per_minute", "must be between 1 and 1000000").into(),
            );
        }
        let random = self.ports.secrets.random_alphanumeric(API_KEY_SECRET_CHARS);
        let secret = SecretString::from(format!("{API_KEY_PREFIX}{}", random.expose_secret()));
        let visible: String = random
            .expose_secret()
            .chars()
            .take(API_KEY_VISIBLE_CHARS)
            .collect();
        let key = ApiKey {
            id: ApiKeyId::generate(),
            name: new.name,
            prefix: format!("{API_KEY_PREFIX}{visible}"),
            secret_hash: self.ports.secrets.digest(secret.expose_secret()),
            scopes: new.scopes,
            agents,
            rate_limit_per_minute: new.rate_limit_per_minute,
            created_by: creator.acting_user(),
            expires_at: new.expires_at,
            last_used_at: None,
            revoked_at: None,
            created_at: now,
        };
        self.ports.keys.insert_api_key(&key).await?;
        tracing::info!(key_id = %key.id, prefix = %key.prefix, "API key created");
        Ok(CreatedApiKey { key, secret })
    }

    /// API keys, newest first; only those created by `created_by` when given.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_api_keys(
        &self,
        created_by: Option<&UserId>,
        page: Page,
    ) -> Result<Paged<ApiKey>> {
        self.ports.keys.list_api_keys(created_by, page).await
    }

    /// One API key.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get_api_key(&self, id: &ApiKeyId) -> Result<ApiKey> {
        self.ports.keys.get_api_key(id).await
    }

    /// Revokes an API key: it stops working at once. Returns whether this call revoked it.
    ///
    /// # Errors
    /// Storage failures.
    #[tracing::instrument(skip_all, fields(key_id = %id))]
    pub async fn revoke_api_key(&self, id: &ApiKeyId) -> Result<bool> {
        let revoked = self.ports.keys.revoke_api_key(id, self.now()).await?;
        if revoked {
            tracing::info!(key_id = %id, "API key revoked");
        }
        Ok(revoked)
    }
}

/// Validates an agent allowlist: agent keys, duplicates removed, at most
/// [`KEY_AGENTS_MAX`].
fn parse_agent_list(list: Vec<String>) -> Result<Vec<String>> {
    if list.is_empty() {
        return Err(Invalid::new(
            "agents",
            "must list at least one agent key, or be absent for all agents",
        )
        .into());
    }
    if list.len() > KEY_AGENTS_MAX {
        return Err(Invalid::new(
            "agents",
            format!("must list at most {KEY_AGENTS_MAX} agents"),
        )
        .into());
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for a in list {
        let key = AgentKey::parse(&a).map_err(|e| {
            Invalid::new("agents", format!("'{a}' is not an agent key: {}", e.reason))
        })?;
        let key = key.to_string();
        if !out.contains(&key) {
            out.push(key);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
