//! Users, sessions, API keys and who may do what.
//!
//! Two kinds of callers: **users** (a role: `admin`, `editor` or `viewer`; they log in and get
//! short-lived access tokens tied to a revocable session) and **API keys** (scopes: `admin`,
//! `write`, `read`, `invoke`; optionally limited to some agents). Both become a [`Principal`];
//! a route asks for a [`Requirement`] and [`Principal::satisfies`] decides.
//!
//! Secrets never live in these types in clear text: passwords and tokens are `SecretString`s
//! while they travel, and only hashes are stored (argon2id for passwords, SHA-256 for
//! high-entropy random tokens and keys).

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::error::Invalid;
use crate::ids::new_id;

/// Prefix of user ids.
pub const USER_ID_PREFIX: &str = "user";
/// Prefix of API key ids.
pub const API_KEY_ID_PREFIX: &str = "key";
/// Prefix of session ids.
pub const SESSION_ID_PREFIX: &str = "ses";
/// Every API key secret starts with this.
pub const API_KEY_PREFIX: &str = "agk_";
/// Characters of the secret (after [`API_KEY_PREFIX`]) shown in lists.
pub const API_KEY_VISIBLE_CHARS: usize = 8;
/// Random characters of an API key secret (alphanumeric: about 238 bits).
pub const API_KEY_SECRET_CHARS: usize = 40;
/// Random characters of a refresh token (alphanumeric: about 256 bits).
pub const REFRESH_TOKEN_CHARS: usize = 43;
/// Shortest password accepted.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Longest password accepted (argon2 would take anything; this bounds the work).
pub const PASSWORD_MAX_CHARS: usize = 1024;
/// The principal of every request while authentication is disabled (development only).
pub const DEV_PRINCIPAL: &str = "anonymous-dev";

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything, including users, API keys, providers and MCP servers.
    Admin,
    /// Reads, writes agents and other resources, and calls agents.
    Editor,
    /// Reads only: cannot change anything nor spend tokens.
    Viewer,
}

impl Role {
    /// Every role, in their wire spelling.
    pub const ALL: [&'static str; 3] = ["admin", "editor", "viewer"];

    /// Parses the wire spelling.
    ///
    /// # Errors
    /// [`Invalid`] naming `role`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        match value {
            "admin" => Ok(Self::Admin),
            "editor" => Ok(Self::Editor),
            "viewer" => Ok(Self::Viewer),
            _ => Err(Invalid::new("role", "must be one of admin, editor, viewer")
                .with("allowed", Self::ALL.to_vec())),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Editor => "editor",
            Self::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Everything an admin may do.
    Admin,
    /// Management writes (and reads), and calling agents.
    Write,
    /// Management reads.
    Read,
    /// Calling agents: runs, chat, the OpenAI-compatible client API.
    Invoke,
}

impl Scope {
    /// Every scope, in their wire spelling.
    pub const ALL: [&'static str; 4] = ["admin", "write", "read", "invoke"];

    /// Parses the wire spelling.
    ///
    /// # Errors
    /// [`Invalid`] naming `scopes`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        match value {
            "admin" => Ok(Self::Admin),
            "write" => Ok(Self::Write),
            "read" => Ok(Self::Read),
            "invoke" => Ok(Self::Invoke),
            _ => Err(Invalid::new(
                "scopes",
                format!("unknown scope '{value}': must be admin, write, read or invoke"),
            )
            .with("allowed", Self::ALL.to_vec())),
        }
    }

    /// Parses a list: at least one scope, duplicates removed, sorted.
    ///
    /// # Errors
    /// [`Invalid`] naming `scopes`.
    pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<Vec<Self>, Invalid> {
        if values.is_empty() {
            return Err(Invalid::new("scopes", "must list at least one scope")
                .with("allowed", Self::ALL.to_vec()));
        }
        let mut out = values
            .iter()
            .map(|v| Self::parse(v.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Write => "write",
            Self::Read => "read",
            Self::Invoke => "invoke",
        }
    }
}

/// A user's id: `user_` and a UUIDv7.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// A new id.
    pub fn generate() -> Self {
        Self(new_id(USER_ID_PREFIX))
    }

    /// Validates the shape of an id.
    ///
    /// # Errors
    /// [`Invalid`] naming `id`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        parse_prefixed_id(value, USER_ID_PREFIX).map(Self)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An API key's id: `key_` and a UUIDv7. Not secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiKeyId(String);

impl ApiKeyId {
    /// A new id.
    pub fn generate() -> Self {
        Self(new_id(API_KEY_ID_PREFIX))
    }

    /// Validates the shape of an id.
    ///
    /// # Errors
    /// [`Invalid`] naming `id`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        parse_prefixed_id(value, API_KEY_ID_PREFIX).map(Self)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_prefixed_id(value: &str, prefix: &str) -> Result<String, Invalid> {
    let ok = value
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(Invalid::new(
            "id",
            format!("must be '{prefix}_' followed by 32 hex digits"),
        ))
    }
}

/// A login name: 1 to 64 characters of `a-z`, `0-9`, `.`, `_`, `-` and `@`, starting with a
/// letter or a digit. Stored in lower case: `Alice` and `alice` are the same user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    /// Validates (and lower-cases) a username.
    ///
    /// # Errors
    /// [`Invalid`] naming `username`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let v = value.to_ascii_lowercase();
        let first_ok = v
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = v.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@')
        });
        if !first_ok || !rest_ok || v.len() > 64 {
            return Err(Invalid::new(
                "username",
                "must be 1 to 64 characters of a-z, 0-9, '.', '_', '-' and '@', starting with a letter or a digit",
            ));
        }
        Ok(Self(v))
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address, loosely checked: one `@` with text on both sides, no whitespace, at
/// most 254 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Validates an address.
    ///
    /// # Errors
    /// [`Invalid`] naming `email`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let ok = value.len() <= 254
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
            && value
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(Invalid::new("email", "must be an e-mail address"))
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a new password: 8 to 1,024 characters.
///
/// # Errors
/// [`Invalid`] naming `field`.
pub fn check_password(field: &str, password: &SecretString) -> Result<(), Invalid> {
    let n = password.expose_secret().chars().count();
    if n < PASSWORD_MIN_CHARS {
        return Err(Invalid::new(
            field,
            format!("must be at least {PASSWORD_MIN_CHARS} characters"),
        ));
    }
    if n > PASSWORD_MAX_CHARS {
        return Err(Invalid::new(
            field,
            format!("must be at most {PASSWORD_MAX_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A user account.
#[derive(Clone, PartialEq)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Its login name (unique, lower case).
    pub username: Username,
    /// Its e-mail address.
    pub email: Option<Email>,
    /// What it may do.
    pub role: Role,
    /// Its password as an argon2id PHC string (`$argon2id$v=19$…`). Never returned.
    pub password_hash: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

impl fmt::Debug for User {
    /// Everything but the password hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A user being created.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name.
    pub username: Username,
    /// E-mail address.
    pub email: Option<Email>,
    /// Role.
    pub role: Role,
    /// Initial password (checked with [`check_password`] by the service).
    pub password: SecretString,
}

/// A change to a user; `None` keeps a field, `Some(None)` clears the e-mail address.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// New role.
    pub role: Option<Role>,
    /// New password (ends every session of the user).
    pub password: Option<SecretString>,
    /// New e-mail address, or none.
    pub email: Option<Option<Email>>,
}

/// A login session: what a refresh token family and the access tokens made from it belong to.
/// Revoking it (logout, refresh-token reuse, password change) ends all of them at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// `ses_…`, carried by every access token as `sid`.
    pub id: String,
    /// Whose session.
    pub user_id: UserId,
    /// When it was opened (login).
    pub created_at: DateTime<Utc>,
    /// When it was ended, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One refresh token of a session, by its SHA-256 digest (the token itself is never stored).
/// Each use rotates it: the used token is marked, a new one is issued in the same session.
#[derive(Clone, PartialEq)]
pub struct RefreshTokenRecord {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// The session (the token's family).
    pub session_id: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was exchanged for a new one; a second use revokes the session.
    pub used_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for RefreshTokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenRecord")
            .field("session_id", &self.session_id)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// An API key as stored: its secret only as a digest.
#[derive(Clone, PartialEq)]
pub struct ApiKey {
    /// `key_…` (not secret).
    pub id: ApiKeyId,
    /// What it is for.
    pub name: String,
    /// `agk_` and the first 8 characters of the secret, to recognise it in lists.
    pub prefix: String,
    /// Hex SHA-256 of the whole secret.
    pub secret_hash: String,
    /// What it may do (at least one, sorted).
    pub scopes: Vec<Scope>,
    /// When set, the only agents (by key) it may call.
    pub agents: Option<Vec<String>>,
    /// Its own request rate, instead of the server's default.
    pub rate_limit_per_minute: Option<u32>,
    /// The user who created it (none when made while authentication was disabled).
    pub created_by: Option<UserId>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for ApiKey {
    /// Everything but the digest.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("scopes", &self.scopes)
            .field("agents", &self.agents)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// Whether the key works at `now`: not revoked, not expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// An API key being created.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// What it is for (1 to 128 characters).
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The only agents (keys) it may call, when set.
    pub agents: Option<Vec<String>>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its own request rate per minute.
    pub rate_limit_per_minute: Option<u32>,
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user's id (`sub`).
    pub user_id: String,
    /// The session (`sid`): revoking it ends the token at once, on every replica.
    pub session_id: String,
    /// The role when the token was issued (informative: the stored role is what counts).
    pub role: String,
    /// The token's unique id (`jti`).
    pub token_id: String,
    /// Issued at, in seconds since the epoch (`iat`).
    pub issued_at: i64,
    /// Expires at, in seconds since the epoch (`exp`).
    pub expires_at: i64,
}

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: anyone may call it.
    Public,
    /// Any authenticated caller.
    Authenticated,
    /// Management reads: any role, or scope `read` (`write` and `admin` include it).
    Read,
    /// Management writes: role editor or admin, or scope `write` (or `admin`).
    Write,
    /// Calling agents (spends tokens): role editor or admin, or scope `invoke`, `write` or `admin`.
    Invoke,
    /// Role admin, or scope `admin`.
    Admin,
}

/// Who is calling, as the authentication middleware found out.
#[derive(Debug, Clone, PartialEq)]
pub enum PrincipalKind {
    /// A user with an access token of this session.
    User {
        /// The session the token belongs to.
        session_id: String,
    },
    /// An API key, created by this user (if any).
    ApiKey {
        /// The user who created the key.
        owner: Option<UserId>,
    },
    /// Authentication is disabled (development on a loopback address): everyone is an admin.
    Development,
}

/// An authenticated caller: a user (with a role) or an API key (with scopes).
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The user's id (`user_…`), the key's id (`key_…`), or `anonymous-dev`.
    pub id: String,
    /// The username, or the key's name.
    pub name: String,
    /// User, key or development.
    pub kind: PrincipalKind,
    /// A user's role.
    pub role: Option<Role>,
    /// A key's scopes (empty for users).
    pub scopes: Vec<Scope>,
    /// The only agents (keys) this caller may call, when set.
    pub agents: Option<Vec<String>>,
    /// This caller's own request rate per minute, instead of the server's default.
    pub rate_limit_per_minute: Option<u32>,
}

impl Principal {
    /// The principal of every request while authentication is disabled: an admin named
    /// `anonymous-dev`.
    pub fn development() -> Self {
        Self {
            id: DEV_PRINCIPAL.to_owned(),
            name: DEV_PRINCIPAL.to_owned(),
            kind: PrincipalKind::Development,
            role: Some(Role::Admin),
            scopes: Vec::new(),
            agents: None,
            rate_limit_per_minute: None,
        }
    }

    /// A user's id, when the caller is a user.
    pub fn user_id(&self) -> Option<&str> {
        matches!(self.kind, PrincipalKind::User { .. }).then_some(self.id.as_str())
    }

    /// The session of a user's access token.
    pub fn session_id(&self) -> Option<&str> {
        match &self.kind {
            PrincipalKind::User { session_id } => Some(session_id),
            _ => None,
        }
    }

    /// The user behind this caller: the user, or the key's creator.
    pub fn acting_user(&self) -> Option<UserId> {
        match &self.kind {
            PrincipalKind::User { .. } => UserId::parse(&self.id).ok(),
            PrincipalKind::ApiKey { owner } => owner.clone(),
            PrincipalKind::Development => None,
        }
    }

    /// What resources record as their creator: the user's id, `key:<id>` for a key, or
    /// `anonymous-dev`.
    pub fn created_by(&self) -> String {
        match self.kind {
            PrincipalKind::ApiKey { .. } => format!("key:{}", self.id),
            _ => self.id.clone(),
        }
    }

    fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether this caller may call a route that needs `req`.
    pub fn satisfies(&self, req: Requirement) -> bool {
        let admin = self.role == Some(Role::Admin) || self.has_scope(Scope::Admin);
        let editor = admin || self.role == Some(Role::Editor);
        match req {
            Requirement::Public | Requirement::Authenticated => true,
            Requirement::Admin => admin,
            Requirement::Write => editor || self.has_scope(Scope::Write),
            Requirement::Read => {
                self.role.is_some()
                    || admin
                    || self.has_scope(Scope::Write)
                    || self.has_scope(Scope::Read)
            }
            Requirement::Invoke => {
                editor || self.has_scope(Scope::Write) || self.has_scope(Scope::Invoke)
            }
        }
    }

    /// Whether this caller may call the agent with key `agent_key`: true without an agent
    /// allowlist, otherwise only for the listed agents.
    pub fn may_invoke_agent(&self, agent_key: &str) -> bool {
        self.agents
            .as_ref()
            .is_none_or(|list| list.iter().any(|a| a == agent_key))
    }

    /// Whether this caller may read, continue or delete a conversation opened by
    /// `created_by` (its agent being one this caller may call): anyone who may read the
    /// management API may (users, keys with `read`, `write` or `admin`); a key that may only
    /// invoke agents sees the conversations it opened itself.
    pub fn may_use_conversation(&self, created_by: Option<&str>) -> bool {
        self.satisfies(Requirement::Read) || created_by == Some(self.created_by().as_str())
    }

    /// The key under which this caller's requests are counted by the rate limiter.
    pub fn rate_key(&self) -> String {
        match self.kind {
            PrincipalKind::ApiKey { .. } => format!("key:{}", self.id),
            PrincipalKind::User { .. } => format!("user:{}", self.id),
            PrincipalKind::Development => format!("dev:{}", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scopes: &[Scope], agents: Option<Vec<String>>) -> Principal {
        Principal {
            id: "key_x".into(),
            name: "k".into(),
            kind: PrincipalKind::ApiKey { owner: None },
            role: None,
            scopes: scopes.to_vec(),
            agents,
            rate_limit_per_minute: None,
        }
    }

    fn user(role: Role) -> Principal {
        Principal {
            id: "user_x".into(),
            name: "u".into(),
            kind: PrincipalKind::User {
                session_id: "ses_x".into(),
            },
            role: Some(role),
            scopes: Vec::new(),
            agents: None,
            rate_limit_per_minute: None,
        }
    }

    #[test]
    fn roles_and_scopes_meet_requirements() {
        use Requirement::*;
        let table: [(Principal, [bool; 5]); 8] = [
            //                                        Read   Write  Invoke Admin  Authenticated
            (user(Role::Admin), [true, true, true, true, true]),
            (user(Role::Editor), [true, true, true, false, true]),
            (user(Role::Viewer), [true, false, false, false, true]),
            (key(&[Scope::Admin], None), [true, true, true, true, true]),
            (key(&[Scope::Write], None), [true, true, true, false, true]),
            (key(&[Scope::Read], None), [true, false, false, false, true]),
            (
                key(&[Scope::Invoke], None),
                [false, false, true, false, true],
            ),
            (Principal::development(), [true, true, true, true, true]),
        ];
        for (p, want) in table {
            let got = [Read, Write, Invoke, Admin, Authenticated].map(|r| p.satisfies(r));
            assert_eq!(got, want, "{p:?}");
        }
    }

    #[test]
    fn agent_allowlist() {
        assert!(key(&[Scope::Invoke], None).may_invoke_agent("any"));
        let limited = key(&[Scope::Invoke], Some(vec!["support-bot".into()]));
        assert!(limited.may_invoke_agent("support-bot"));
        assert!(!limited.may_invoke_agent("other"));
    }

    #[test]
    fn parsing() {
        assert_eq!(Username::parse("Alice").map(|u| u.0), Ok("alice".into()));
        assert!(Username::parse("").is_err());
        assert!(Username::parse("-x").is_err());
        assert!(Username::parse("a b").is_err());
        assert!(Username::parse(&"a".repeat(65)).is_err());
        assert!(Email::parse("a@b.c").is_ok());
        assert!(Email::parse("a@").is_err());
        assert!(Email::parse("a b@c").is_err());
        assert_eq!(
            Scope::parse_list(&["read", "invoke", "read"]),
            Ok(vec![Scope::Read, Scope::Invoke])
        );
        assert!(Scope::parse_list::<&str>(&[]).is_err());
        assert!(Scope::parse_list(&["root"]).is_err());
        assert!(check_password("password", &SecretString::from("short")).is_err());
        assert!(check_password("password", &SecretString::from("long enough")).is_ok());
        assert!(UserId::parse(UserId::generate().as_str()).is_ok());
        assert!(UserId::parse("user_1").is_err());
        assert!(ApiKeyId::parse("user_0123456789abcdef0123456789abcdef").is_err());
    }
}
