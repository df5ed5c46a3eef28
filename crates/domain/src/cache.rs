//! In-process caches of what every request reads: agents, published versions, providers,
//! users, sessions and API keys. Without them a chat turn through `/v1/chat/completions`
//! makes five database round trips before it calls the model (session, user, agent, latest
//! version, provider); with them, none.
//!
//! Each cache is a decorator over a storage port ([`CachedAgents`], [`CachedVersions`],
//! [`CachedProviders`], [`CachedUsers`], [`CachedSessions`], [`CachedApiKeys`]): reads of one
//! record by id are served from memory, everything else goes to the store. They share one
//! [`Coherence`], which decides when an entry is still good:
//!
//! - a write through any decorator empties every cache of this process at once, then bumps
//!   the [`ChangeLog`] counter shared by all replicas;
//! - [`Coherence::sync`], called every few hundred milliseconds by the server, reads that
//!   counter and empties every cache when another replica moved it, so a change made
//!   elsewhere (an agent edited, a session logged out, a key revoked) holds here within one
//!   sync interval; when the counter cannot be read, the caches are emptied too;
//! - an entry older than `max_age` is not used, whatever happens.
//!
//! Emptying is a generation number: an entry is good only if it was loaded in the current
//! generation, so a read that started before a change and finished after it is never kept.
//! Only records that exist are cached; a miss always asks the store.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::Result;
use crate::agent::{Agent, AgentFilter, AgentId, AgentKey, AgentRef};
use crate::auth::{ApiKey, ApiKeyId, RefreshTokenRecord, Session, User, UserId, Username};
use crate::page::{Page, Paged};
use crate::ports::{
    AgentStore, ApiKeyStore, ChangeLog, ProviderStore, SessionStore, UserStore, VersionStore,
};
use crate::provider::{Provider, ProviderId};
use crate::version::AgentVersion;

/// Most entries one cache keeps; when full, it is emptied and fills again with what is used.
const CAPACITY: usize = 10_000;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// When cached entries are still good: shared by every cache of a process.
pub struct Coherence {
    generation: AtomicU64,
    changes: Arc<dyn ChangeLog>,
    seen: Mutex<Option<i64>>,
    max_age: Duration,
}

impl Coherence {
    /// Coherence over the shared `changes` counter; no entry is used after `max_age`. With a
    /// zero `max_age` nothing is kept, but writes still move the shared counter.
    pub fn new(changes: Arc<dyn ChangeLog>, max_age: Duration) -> Arc<Self> {
        Arc::new(Self {
            generation: AtomicU64::new(0),
            changes,
            seen: Mutex::new(None),
            max_age,
        })
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Empties every cache of this process.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// After a write: empties every cache here and tells the other replicas. A failure to
    /// tell them is logged (they catch up after `max_age`); the write itself stands.
    pub(crate) async fn changed(&self) {
        self.invalidate();
        if let Err(e) = self.changes.record_change().await {
            tracing::warn!(error = %e, "could not record a change for the other replicas' caches");
        }
    }

    /// Reads the shared change counter and empties every cache when it moved since the last
    /// call (or on the first call). Call it periodically.
    ///
    /// # Errors
    /// When the counter cannot be read; every cache is emptied then.
    pub async fn sync(&self) -> Result<()> {
        match self.changes.change_counter().await {
            Ok(counter) => {
                let mut seen = lock(&self.seen);
                if *seen != Some(counter) {
                    *seen = Some(counter);
                    self.invalidate();
                }
                Ok(())
            }
            Err(e) => {
                self.invalidate();
                Err(e)
            }
        }
    }
}

struct Entry<V> {
    value: V,
    generation: u64,
    loaded: Instant,
}

/// One cache: string keys to values, good while [`Coherence`] says so.
struct Memo<V> {
    coherence: Arc<Coherence>,
    entries: Mutex<HashMap<String, Entry<V>>>,
}

impl<V: Clone> Memo<V> {
    fn new(coherence: &Arc<Coherence>) -> Self {
        Self {
            coherence: coherence.clone(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &str) -> Option<V> {
        let generation = self.coherence.generation();
        let entries = lock(&self.entries);
        let entry = entries.get(key)?;
        (entry.generation == generation && entry.loaded.elapsed() < self.coherence.max_age)
            .then(|| entry.value.clone())
    }

    /// Keeps `value` under each of `keys` if nothing changed since `generation` (when its
    /// load started).
    fn put(&self, keys: Vec<String>, value: &V, generation: u64) {
        if generation != self.coherence.generation() || self.coherence.max_age.is_zero() {
            return;
        }
        let mut entries = lock(&self.entries);
        if entries.len() + keys.len() > CAPACITY {
            entries.clear();
        }
        let loaded = Instant::now();
        for key in keys {
            entries.insert(
                key,
                Entry {
                    value: value.clone(),
                    generation,
                    loaded,
                },
            );
        }
    }

    /// The cached value of `key`, or `load`'s, then kept under `keys(&value)`.
    async fn get_or_load<F, Fut>(
        &self,
        key: String,
        load: F,
        keys: impl FnOnce(&V) -> Vec<String>,
    ) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let generation = self.coherence.generation();
        let value = load().await?;
        let mut all = keys(&value);
        all.push(key);
        self.put(all, &value, generation);
        Ok(value)
    }

    /// Changes every cached value in place (for fields that only this process's writes move).
    fn update_all(&self, change: impl Fn(&mut V)) {
        for entry in lock(&self.entries).values_mut() {
            change(&mut entry.value);
        }
    }
}

/// Runs a write, then (whatever its outcome: a failed write may still have happened)
/// invalidates every cache.
async fn write<T>(coherence: &Coherence, done: impl Future<Output = Result<T>>) -> Result<T> {
    let result = done.await;
    coherence.changed().await;
    result
}

fn agent_id_key(id: &AgentId) -> String {
    format!("id:{}", id.as_str())
}

fn agent_key_key(key: &AgentKey) -> String {
    format!("key:{}", key.as_str())
}

/// [`AgentStore`] with agents cached by id and by key.
pub struct CachedAgents {
    inner: Arc<dyn AgentStore>,
    coherence: Arc<Coherence>,
    memo: Memo<Agent>,
}

impl CachedAgents {
    /// Caches `inner`'s agents.
    pub fn new(inner: Arc<dyn AgentStore>, coherence: &Arc<Coherence>) -> Self {
        Self {
            inner,
            coherence: coherence.clone(),
            memo: Memo::new(coherence),
        }
    }
}

#[async_trait]
impl AgentStore for CachedAgents {
    async fn insert_agent(&self, agent: &Agent) -> Result<()> {
        write(&self.coherence, self.inner.insert_agent(agent)).await
    }

    async fn get_agent(&self, agent: &AgentRef) -> Result<Agent> {
        let key = match agent {
            AgentRef::Id(id) => agent_id_key(id),
            AgentRef::Key(key) => agent_key_key(key),
        };
        self.memo
            .get_or_load(
                key,
                || self.inner.get_agent(agent),
                |a| vec![agent_id_key(&a.id), agent_key_key(&a.key)],
            )
            .await
    }

    async fn list_agents(&self, filter: &AgentFilter, page: Page) -> Result<Paged<Agent>> {
        self.inner.list_agents(filter, page).await
    }

    async fn update_agent(&self, agent: &Agent) -> Result<()> {
        write(&self.coherence, self.inner.update_agent(agent)).await
    }

    async fn delete_agent(&self, id: &AgentId) -> Result<bool> {
        write(&self.coherence, self.inner.delete_agent(id)).await
    }

    async fn agents_using_provider(&self, provider: &ProviderId) -> Result<Vec<AgentKey>> {
        self.inner.agents_using_provider(provider).await
    }
}

/// [`VersionStore`] with each agent's latest version and single versions cached.
pub struct CachedVersions {
    inner: Arc<dyn VersionStore>,
    coherence: Arc<Coherence>,
    latest: Memo<Option<AgentVersion>>,
    one: Memo<AgentVersion>,
}

impl CachedVersions {
    /// Caches `inner`'s versions.
    pub fn new(inner: Arc<dyn VersionStore>, coherence: &Arc<Coherence>) -> Self {
        Self {
            inner,
            coherence: coherence.clone(),
            latest: Memo::new(coherence),
            one: Memo::new(coherence),
        }
    }
}

#[async_trait]
impl VersionStore for CachedVersions {
    async fn publish_version(
        &self,
        snapshot: &Agent,
        note: Option<&str>,
        created_by: Option<&str>,
        now: DateTime<Utc>,
        draft: bool,
    ) -> Result<AgentVersion> {
        write(
            &self.coherence,
            self.inner
                .publish_version(snapshot, note, created_by, now, draft),
        )
        .await
    }

    async fn get_version(&self, agent: &AgentId, version: u32) -> Result<AgentVersion> {
        self.one
            .get_or_load(
                format!("{}:{version}", agent.as_str()),
                || self.inner.get_version(agent, version),
                |_| Vec::new(),
            )
            .await
    }

    async fn latest_version(&self, agent: &AgentId) -> Result<Option<AgentVersion>> {
        self.latest
            .get_or_load(
                agent.as_str().to_owned(),
                || self.inner.latest_version(agent),
                |_| Vec::new(),
            )
            .await
    }

    async fn list_versions(&self, agent: &AgentId, page: Page) -> Result<Paged<AgentVersion>> {
        self.inner.list_versions(agent, page).await
    }
}

/// [`ProviderStore`] with providers cached by id.
pub struct CachedProviders {
    inner: Arc<dyn ProviderStore>,
    coherence: Arc<Coherence>,
    memo: Memo<Provider>,
}

impl CachedProviders {
    /// Caches `inner`'s providers.
    pub fn new(inner: Arc<dyn ProviderStore>, coherence: &Arc<Coherence>) -> Self {
        Self {
            inner,
            coherence: coherence.clone(),
            memo: Memo::new(coherence),
        }
    }
}

#[async_trait]
impl ProviderStore for CachedProviders {
    async fn insert_provider(&self, provider: &Provider) -> Result<()> {
        write(&self.coherence, self.inner.insert_provider(provider)).await
    }

    async fn get_provider(&self, id: &ProviderId) -> Result<Provider> {
        self.memo
            .get_or_load(
                id.as_str().to_owned(),
                || self.inner.get_provider(id),
                |_| Vec::new(),
            )
            .await
    }

    async fn list_providers(&self) -> Result<Vec<Provider>> {
        self.inner.list_providers().await
    }

    async fn update_provider(&self, provider: &Provider) -> Result<()> {
        write(&self.coherence, self.inner.update_provider(provider)).await
    }

    async fn delete_provider(&self, id: &ProviderId) -> Result<bool> {
        write(&self.coherence, self.inner.delete_provider(id)).await
    }
}

/// [`UserStore`] with users cached by id.
pub struct CachedUsers {
    inner: Arc<dyn UserStore>,
    coherence: Arc<Coherence>,
    memo: Memo<User>,
}

impl CachedUsers {
    /// Caches `inner`'s users.
    pub fn new(inner: Arc<dyn UserStore>, coherence: &Arc<Coherence>) -> Self {
        Self {
            inner,
            coherence: coherence.clone(),
            memo: Memo::new(coherence),
        }
    }
}

#[async_trait]
impl UserStore for CachedUsers {
    async fn insert_user(&self, user: &User) -> Result<()> {
        // A new id was never cached (misses are not kept): nothing to invalidate.
        self.inner.insert_user(user).await
    }

    async fn get_user(&self, id: &UserId) -> Result<User> {
        self.memo
            .get_or_load(
                id.as_str().to_owned(),
                || self.inner.get_user(id),
                |_| Vec::new(),
            )
            .await
    }

    async fn find_user_by_username(&self, username: &Username) -> Result<Option<User>> {
        self.inner.find_user_by_username(username).await
    }

    async fn list_users(&self, page: Page) -> Result<Paged<User>> {
        self.inner.list_users(page).await
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        write(&self.coherence, self.inner.update_user(user)).await
    }

    async fn delete_user(&self, id: &UserId) -> Result<bool> {
        write(&self.coherence, self.inner.delete_user(id)).await
    }

    async fn count_users(&self) -> Result<(u64, u64)> {
        self.inner.count_users().await
    }
}

/// [`SessionStore`] with sessions cached by id (refresh tokens are not cached).
pub struct CachedSessions {
    inner: Arc<dyn SessionStore>,
    coherence: Arc<Coherence>,
    memo: Memo<Session>,
}

impl CachedSessions {
    /// Caches `inner`'s sessions.
    pub fn new(inner: Arc<dyn SessionStore>, coherence: &Arc<Coherence>) -> Self {
        Self {
            inner,
            coherence: coherence.clone(),
            memo: Memo::new(coherence),
        }
    }
}

#[async_trait]
impl SessionStore for CachedSessions {
    async fn insert_session(&self, session: &Session, token: &RefreshTokenRecord) -> Result<()> {
        self.inner.insert_session(session, token).await
    }

    async fn get_session(&self, id: &str) -> Result<Session> {
        self.memo
            .get_or_load(id.to_owned(), || self.inner.get_session(id), |_| Vec::new())
            .await
    }

    async fn revoke_session(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        write(&self.coherence, self.inner.revoke_session(id, now)).await
    }

    async fn revoke_user_sessions(&self, user: &UserId, now: DateTime<Utc>) -> Result<u64> {
        write(&self.coherence, self.inner.revoke_user_sessions(user, now)).await
    }

    async fn find_refresh_token(&self, token_hash: &str) -> Result<Option<RefreshTokenRecord>> {
        self.inner.find_refresh_token(token_hash).await
    }

    async fn consume_refresh_token(&self, token_hash: &str, now: DateTime<Utc>) -> Result<bool> {
        self.inner.consume_refresh_token(token_hash, now).await
    }

    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> Result<()> {
        self.inner.insert_refresh_token(token).await
    }

    async fn purge_sessions(
        &self,
        now: DateTime<Utc>,
        revoked_before: DateTime<Utc>,
    ) -> Result<u64> {
        let purged = self.inner.purge_sessions(now, revoked_before).await;
        // Nothing to tell only when nothing was purged for sure.
        if !matches!(purged, Ok(0)) {
            self.coherence.changed().await;
        }
        purged
    }
}

/// [`ApiKeyStore`] with keys cached by the digest of their secret (only keys that exist).
pub struct CachedApiKeys {
    inner: Arc<dyn ApiKeyStore>,
    coherence: Arc<Coherence>,
    memo: Memo<Option<ApiKey>>,
}

impl CachedApiKeys {
    /// Caches `inner`'s keys.
    pub fn new(inner: Arc<dyn ApiKeyStore>, coherence: &Arc<Coherence>) -> Self {
        Self {
            inner,
            coherence: coherence.clone(),
            memo: Memo::new(coherence),
        }
    }
}

#[async_trait]
impl ApiKeyStore for CachedApiKeys {
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        self.inner.insert_api_key(key).await
    }

    async fn get_api_key(&self, id: &ApiKeyId) -> Result<ApiKey> {
        self.inner.get_api_key(id).await
    }

    async fn find_api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        if let Some(found) = self.memo.get(secret_hash) {
            return Ok(found);
        }
        let generation = self.coherence.generation();
        let found = self.inner.find_api_key_by_hash(secret_hash).await?;
        if found.is_some() {
            self.memo
                .put(vec![secret_hash.to_owned()], &found, generation);
        }
        Ok(found)
    }

    async fn list_api_keys(
        &self,
        created_by: Option<&UserId>,
        page: Page,
    ) -> Result<Paged<ApiKey>> {
        self.inner.list_api_keys(created_by, page).await
    }

    async fn revoke_api_key(&self, id: &ApiKeyId, now: DateTime<Utc>) -> Result<bool> {
        write(&self.coherence, self.inner.revoke_api_key(id, now)).await
    }

    async fn touch_api_key(
        &self,
        id: &ApiKeyId,
        now: DateTime<Utc>,
        min_interval_secs: i64,
    ) -> Result<()> {
        self.inner.touch_api_key(id, now, min_interval_secs).await?;
        // Only the time of last use moved: keep the entry, with the new time, so the next
        // request does not write again.
        self.memo.update_all(|cached| {
            if let Some(k) = cached.as_mut().filter(|k| &k.id == id) {
                k.last_used_at = Some(k.last_used_at.map_or(now, |t| t.max(now)));
            }
        });
        Ok(())
    }
}

/// The stores that can be cached, as one value: what the server wires into the services.
#[derive(Clone)]
pub struct CacheableStores {
    /// Agents.
    pub agents: Arc<dyn AgentStore>,
    /// Published versions.
    pub versions: Arc<dyn VersionStore>,
    /// API-managed providers.
    pub providers: Arc<dyn ProviderStore>,
    /// Users.
    pub users: Arc<dyn UserStore>,
    /// Sessions and refresh tokens.
    pub sessions: Arc<dyn SessionStore>,
    /// API keys.
    pub api_keys: Arc<dyn ApiKeyStore>,
}

impl CacheableStores {
    /// The same stores, each behind its cache, all sharing `coherence`.
    #[must_use]
    pub fn cached(self, coherence: &Arc<Coherence>) -> Self {
        Self {
            agents: Arc::new(CachedAgents::new(self.agents, coherence)),
            versions: Arc::new(CachedVersions::new(self.versions, coherence)),
            providers: Arc::new(CachedProviders::new(self.providers, coherence)),
            users: Arc::new(CachedUsers::new(self.users, coherence)),
            sessions: Arc::new(CachedSessions::new(self.sessions, coherence)),
            api_keys: Arc::new(CachedApiKeys::new(self.api_keys, coherence)),
        }
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
