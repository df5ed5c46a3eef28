//! The auth rules over in-memory fakes of the ports: rotation and reuse, revocation, throttling,
//! the last admin, key checks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::*;
use crate::auth::{Email, Requirement, Scope};
use crate::ports::SystemClock;

#[derive(Default)]
struct Fakes {
    users: Mutex<HashMap<String, User>>,
    sessions: Mutex<HashMap<String, Session>>,
    tokens: Mutex<HashMap<String, RefreshTokenRecord>>,
    keys: Mutex<HashMap<String, ApiKey>>,
    touches: AtomicU64,
    counter: AtomicU64,
}

#[async_trait]
impl UserStore for Fakes {
    async fn insert_user(&self, user: &User) -> Result<()> {
        let mut users = self.users.lock().unwrap();
        if users.values().any(|u| u.username == user.username) {
            return Err(Error::conflict("username", "taken"));
        }
        users.insert(user.id.to_string(), user.clone());
        Ok(())
    }
    async fn get_user(&self, id: &UserId) -> Result<User> {
        self.users
            .lock()
            .unwrap()
            .get(id.as_str())
            .cloned()
            .ok_or_else(|| Error::not_found("user", id.as_str()))
    }
    async fn find_user_by_username(&self, username: &Username) -> Result<Option<User>> {
        Ok(self
            .users
            .lock()
            .unwrap()
            .values()
            .find(|u| &u.username == username)
            .cloned())
    }
    async fn list_users(&self, page: Page) -> Result<Paged<User>> {
        let items: Vec<User> = self.users.lock().unwrap().values().cloned().collect();
        Ok(Paged {
            total: items.len() as u64,
            items,
            page,
        })
    }
    async fn update_user(&self, user: &User) -> Result<()> {
        self.users
            .lock()
            .unwrap()
            .insert(user.id.to_string(), user.clone());
        Ok(())
    }
    async fn delete_user(&self, id: &UserId) -> Result<bool> {
        Ok(self.users.lock().unwrap().remove(id.as_str()).is_some())
    }
    async fn count_users(&self) -> Result<(u64, u64)> {
        let users = self.users.lock().unwrap();
        let admins = users.values().filter(|u| u.role == Role::Admin).count();
        Ok((users.len() as u64, admins as u64))
    }
}

#[async_trait]
impl SessionStore for Fakes {
    async fn insert_session(&self, session: &Session, token: &RefreshTokenRecord) -> Result<()> {
        self.sessions
            .lock()
            .unwrap()
            .insert(session.id.clone(), session.clone());
        self.insert_refresh_token(token).await
    }
    async fn get_session(&self, id: &str) -> Result<Session> {
        self.sessions
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found("session", id))
    }
    async fn revoke_session(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut sessions = self.sessions.lock().unwrap();
        Ok(sessions
            .get_mut(id)
            .map(|s| s.revoked_at = s.revoked_at.or(Some(now)))
            .is_some())
    }
    async fn revoke_user_sessions(&self, user: &UserId, now: DateTime<Utc>) -> Result<u64> {
        let mut n = 0;
        for s in self.sessions.lock().unwrap().values_mut() {
            if &s.user_id == user && s.revoked_at.is_none() {
                s.revoked_at = Some(now);
                n += 1;
            }
        }
        Ok(n)
    }
    async fn find_refresh_token(&self, token_hash: &str) -> Result<Option<RefreshTokenRecord>> {
        Ok(self.tokens.lock().unwrap().get(token_hash).cloned())
    }
    async fn consume_refresh_token(&self, token_hash: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut tokens = self.tokens.lock().unwrap();
        match tokens.get_mut(token_hash) {
            Some(t) if t.used_at.is_none() => {
                t.used_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> Result<()> {
        self.tokens
            .lock()
            .unwrap()
            .insert(token.token_hash.clone(), token.clone());
        Ok(())
    }
    async fn purge_sessions(&self, _: DateTime<Utc>, _: DateTime<Utc>) -> Result<u64> {
        Ok(0)
    }
}

#[async_trait]
impl ApiKeyStore for Fakes {
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        self.keys
            .lock()
            .unwrap()
            .insert(key.id.to_string(), key.clone());
        Ok(())
    }
    async fn get_api_key(&self, id: &ApiKeyId) -> Result<ApiKey> {
        self.keys
            .lock()
            .unwrap()
            .get(id.as_str())
            .cloned()
            .ok_or_else(|| Error::not_found("api_key", id.as_str()))
    }
    async fn find_api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        Ok(self
            .keys
            .lock()
            .unwrap()
            .values()
            .find(|k| k.secret_hash == secret_hash)
            .cloned())
    }
    async fn list_api_keys(&self, _: Option<&UserId>, page: Page) -> Result<Paged<ApiKey>> {
        let items: Vec<ApiKey> = self.keys.lock().unwrap().values().cloned().collect();
        Ok(Paged {
            total: items.len() as u64,
            items,
            page,
        })
    }
    async fn revoke_api_key(&self, id: &ApiKeyId, now: DateTime<Utc>) -> Result<bool> {
        let mut keys = self.keys.lock().unwrap();
        match keys.get_mut(id.as_str()) {
            Some(k) if k.revoked_at.is_none() => {
                k.revoked_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn touch_api_key(&self, id: &ApiKeyId, now: DateTime<Utc>, _: i64) -> Result<()> {
        self.touches.fetch_add(1, Ordering::Relaxed);
        if let Some(k) = self.keys.lock().unwrap().get_mut(id.as_str()) {
            k.last_used_at = Some(now);
        }
        Ok(())
    }
}

/// Passwords "hashed" as `hash:<password>`; tokens "signed" as `token:<user>:<session>`.
#[async_trait]
impl PasswordHasher for Fakes {
    async fn hash_password(&self, password: &SecretString) -> Result<String> {
        Ok(format!("hash:{}", password.expose_secret()))
    }
    async fn verify_password(&self, password: &SecretString, hash: &str) -> Result<bool> {
        Ok(hash == format!("hash:{}", password.expose_secret()))
    }
}

impl TokenCodec for Fakes {
    fn issue(&self, claims: &AccessClaims) -> Result<SecretString> {
        Ok(SecretString::from(format!(
            "token:{}:{}",
            claims.user_id, claims.session_id
        )))
    }
    fn verify(&self, token: &str) -> Result<AccessClaims> {
        let mut parts = token.split(':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("token"), Some(user), Some(session)) => Ok(AccessClaims {
                user_id: user.into(),
                session_id: session.into(),
                role: String::new(),
                token_id: String::new(),
                issued_at: 0,
                expires_at: 0,
            }),
            _ => Err(Error::unauthorized("bad token")),
        }
    }
}

impl SecretGenerator for Fakes {
    fn random_alphanumeric(&self, len: usize) -> SecretString {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        SecretString::from(format!("{n:0>len$}"))
    }
    fn digest(&self, secret: &str) -> String {
        format!("digest({secret})")
    }
}

fn service() -> (AuthService, Arc<Fakes>) {
    let fakes = Arc::new(Fakes::default());
    let ports = AuthPorts {
        users: fakes.clone(),
        sessions: fakes.clone(),
        keys: fakes.clone(),
        hasher: fakes.clone(),
        tokens: fakes.clone(),
        secrets: fakes.clone(),
        clock: Arc::new(SystemClock),
    };
    (AuthService::new(ports, AuthSettings::default()), fakes)
}

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

async fn user(auth: &AuthService, name: &str, role: Role) -> User {
    auth.create_user(NewUser {
        username: Username::parse(name).unwrap(),
        email: Some(Email::parse(&format!("{name}@example.com")).unwrap()),
        role,
        password: pw("password-1"),
    })
    .await
    .unwrap()
}

fn unauthorized<T: std::fmt::Debug>(r: Result<T>) {
    assert!(matches!(r, Err(Error::Unauthorized(_))), "{r:?}");
}

#[tokio::test]
async fn bootstrap_creates_one_admin_once() {
    let (auth, _) = service();
    let first = auth.bootstrap_admin("Admin", None).await.unwrap().unwrap();
    assert_eq!(first.user.username.as_str(), "admin");
    assert_eq!(first.user.role, Role::Admin);
    let generated = first.generated_password.unwrap();
    assert!(generated.expose_secret().len() >= 20);
    auth.login("admin", &generated, None).await.unwrap();
    assert!(auth.bootstrap_admin("admin", None).await.unwrap().is_none());

    let (auth, _) = service();
    let given = auth
        .bootstrap_admin("root", Some(pw("configured-pw")))
        .await
        .unwrap()
        .unwrap();
    assert!(given.generated_password.is_none());
    let short = service().0.bootstrap_admin("root", Some(pw("short"))).await;
    assert!(matches!(short, Err(Error::Invalid(_))), "{short:?}");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let (auth, _) = service();
    user(&auth, "ann", Role::Editor).await;
    let first = auth.login("ann", &pw("password-1"), None).await.unwrap();
    let second = auth.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(
        second.refresh_token.expose_secret(),
        first.refresh_token.expose_secret()
    );
    let p = auth
        .authenticate(second.access_token.expose_secret())
        .await
        .unwrap();
    assert_eq!(p.role, Some(Role::Editor));
    // Reuse of the first token: refused, and the session is gone.
    unauthorized(auth.refresh(&first.refresh_token).await);
    unauthorized(auth.refresh(&second.refresh_token).await);
    unauthorized(auth.authenticate(second.access_token.expose_secret()).await);
    unauthorized(auth.refresh(&pw("unknown")).await);
}

#[tokio::test]
async fn logout_and_password_change_end_sessions() {
    let (auth, _) = service();
    let u = user(&auth, "bo", Role::Viewer).await;
    let a = auth.login("bo", &pw("password-1"), None).await.unwrap();
    let b = auth.login("bo", &pw("password-1"), None).await.unwrap();
    let pa = auth
        .authenticate(a.access_token.expose_secret())
        .await
        .unwrap();
    auth.logout(&pa, None).await.unwrap();
    unauthorized(auth.authenticate(a.access_token.expose_secret()).await);
    unauthorized(auth.refresh(&a.refresh_token).await);
    auth.authenticate(b.access_token.expose_secret())
        .await
        .unwrap();
    auth.update_user(
        &u.id,
        UserPatch {
            password: Some(pw("password-2")),
            ..UserPatch::default()
        },
    )
    .await
    .unwrap();
    unauthorized(auth.authenticate(b.access_token.expose_secret()).await);
    unauthorized(auth.login("bo", &pw("password-1"), None).await);
    auth.login("bo", &pw("password-2"), None).await.unwrap();
}

#[tokio::test]
async fn failed_logins_are_throttled_per_username_and_address() {
    let (auth, _) = service();
    user(&auth, "cy", Role::Viewer).await;
    for _ in 0..5 {
        unauthorized(auth.login("cy", &pw("wrong"), Some("10.0.0.1")).await);
    }
    let limited = auth.login("cy", &pw("password-1"), Some("10.0.0.2")).await;
    assert!(
        matches!(limited, Err(Error::RateLimited { .. })),
        "{limited:?}"
    );
    // An address that failed for many usernames is slowed too.
    for i in 0..20 {
        unauthorized(
            auth.login(&format!("ghost{i}"), &pw("x"), Some("10.9.9.9"))
                .await,
        );
    }
    user(&auth, "dee", Role::Viewer).await;
    let limited = auth.login("dee", &pw("password-1"), Some("10.9.9.9")).await;
    assert!(
        matches!(limited, Err(Error::RateLimited { .. })),
        "{limited:?}"
    );
    auth.login("dee", &pw("password-1"), Some("10.0.0.3"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_last_admin_stays() {
    let (auth, _) = service();
    let admin = user(&auth, "root", Role::Admin).await;
    let demote = UserPatch {
        role: Some(Role::Editor),
        ..UserPatch::default()
    };
    assert!(matches!(
        auth.update_user(&admin.id, demote.clone()).await,
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        auth.delete_user(&admin.id).await,
        Err(Error::Conflict { .. })
    ));
    user(&auth, "second", Role::Admin).await;
    auth.update_user(&admin.id, demote).await.unwrap();
    assert!(auth.delete_user(&admin.id).await.unwrap());
    assert!(!auth.delete_user(&admin.id).await.unwrap());
}

#[tokio::test]
async fn api_keys_authenticate_until_revoked_and_are_touched_rarely() {
    let (auth, fakes) = service();
    let creator = Principal::development();
    let created = auth
        .create_api_key(
            NewApiKey {
                name: "k".into(),
                scopes: vec![Scope::Invoke],
                agents: Some(vec!["bot".into(), "bot".into()]),
                expires_at: None,
                rate_limit_per_minute: Some(10),
            },
            &creator,
        )
        .await
        .unwrap();
    let secret = created.secret.expose_secret();
    assert!(secret.starts_with("agk_"));
    assert_eq!(created.key.prefix, secret[..12]);
    assert_eq!(created.key.agents, Some(vec!["bot".to_owned()]));
    assert_ne!(created.key.secret_hash, secret, "only a digest is kept");
    for _ in 0..3 {
        let p = auth.authenticate(secret).await.unwrap();
        assert!(p.satisfies(Requirement::Invoke) && !p.satisfies(Requirement::Read));
        assert!(p.may_invoke_agent("bot") && !p.may_invoke_agent("other"));
        assert_eq!(p.rate_limit_per_minute, Some(10));
        assert_eq!(p.created_by(), format!("key:{}", created.key.id));
    }
    assert_eq!(fakes.touches.load(Ordering::Relaxed), 1, "once a minute");
    assert!(auth.revoke_api_key(&created.key.id).await.unwrap());
    unauthorized(auth.authenticate(secret).await);
    unauthorized(auth.authenticate("agk_unknown").await);
}

#[tokio::test]
async fn keys_cannot_exceed_their_creator() {
    let (auth, _) = service();
    let reader = Principal {
        id: "key_x".into(),
        name: "reader".into(),
        kind: PrincipalKind::ApiKey { owner: None },
        role: None,
        scopes: vec![Scope::Read],
        agents: None,
        rate_limit_per_minute: None,
    };
    let new = |scopes: Vec<Scope>, agents: Option<Vec<String>>| NewApiKey {
        name: "k".into(),
        scopes,
        agents,
        expires_at: None,
        rate_limit_per_minute: None,
    };
    let r = auth
        .create_api_key(new(vec![Scope::Admin], None), &reader)
        .await;
    assert!(matches!(r, Err(Error::Forbidden(_))), "{r:?}");
    let limited = Principal {
        scopes: vec![Scope::Admin],
        agents: Some(vec!["bot".into()]),
        ..reader.clone()
    };
    let r = auth
        .create_api_key(new(vec![Scope::Invoke], None), &limited)
        .await;
    assert!(matches!(r, Err(Error::Forbidden(_))), "{r:?}");
    auth.create_api_key(new(vec![Scope::Invoke], Some(vec!["bot".into()])), &limited)
        .await
        .unwrap();
    let past = NewApiKey {
        expires_at: Some(Utc::now() - chrono::Duration::seconds(1)),
        ..new(vec![Scope::Read], None)
    };
    let r = auth.create_api_key(past, &Principal::development()).await;
    assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
}
