//! The caches' rules, over counting fakes: what is served from memory, and what empties it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize};

use chrono::TimeZone;

use super::*;
use crate::Error;
use crate::provider::{ProviderKind, ProviderSource};

/// A change counter shared by "replicas" (several `Coherence`s over one `Counter`).
#[derive(Default)]
struct Counter {
    value: AtomicI64,
    broken: AtomicBool,
}

#[async_trait]
impl ChangeLog for Counter {
    async fn change_counter(&self) -> Result<i64> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::Unavailable("database down".into()));
        }
        Ok(self.value.load(Ordering::SeqCst))
    }

    async fn record_change(&self) -> Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::Unavailable("database down".into()));
        }
        self.value.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// One provider `p`, counting reads; optionally invalidating `during_read` while it reads
/// (a change landing in the middle of a load).
#[derive(Default)]
struct Providers {
    reads: AtomicUsize,
    during_read: Mutex<Option<Arc<Coherence>>>,
}

fn provider() -> Provider {
    let t = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    Provider {
        id: ProviderId::parse("p").unwrap(),
        kind: ProviderKind::Mock,
        base_url: None,
        api_key: None,
        models: vec!["m".to_owned()],
        source: ProviderSource::Api,
        created_at: t,
        updated_at: t,
    }
}

#[async_trait]
impl ProviderStore for Providers {
    async fn insert_provider(&self, _: &Provider) -> Result<()> {
        Ok(())
    }
    async fn get_provider(&self, id: &ProviderId) -> Result<Provider> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if let Some(c) = lock(&self.during_read).as_ref() {
            c.invalidate();
        }
        if id.as_str() == "p" {
            Ok(provider())
        } else {
            Err(Error::not_found("provider", id.as_str()))
        }
    }
    async fn list_providers(&self) -> Result<Vec<Provider>> {
        Ok(vec![provider()])
    }
    async fn update_provider(&self, _: &Provider) -> Result<()> {
        Ok(())
    }
    async fn delete_provider(&self, _: &ProviderId) -> Result<bool> {
        Ok(true)
    }
}

fn id(s: &str) -> ProviderId {
    ProviderId::parse(s).unwrap()
}

fn setup(
    max_age: Duration,
) -> (
    Arc<Counter>,
    Arc<Providers>,
    Arc<Coherence>,
    CachedProviders,
) {
    let counter = Arc::new(Counter::default());
    let store = Arc::new(Providers::default());
    let coherence = Coherence::new(counter.clone(), max_age);
    let cached = CachedProviders::new(store.clone(), &coherence);
    (counter, store, coherence, cached)
}

fn reads(store: &Providers) -> usize {
    store.reads.load(Ordering::SeqCst)
}

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_second_read_is_served_from_memory() {
    let (_, store, _, cached) = setup(MINUTE);
    assert_eq!(
        cached.get_provider(&id("p")).await.ok().map(|p| p.id),
        Some(id("p"))
    );
    assert!(cached.get_provider(&id("p")).await.is_ok());
    assert_eq!(reads(&store), 1);
}

#[tokio::test]
async fn misses_are_not_cached() {
    let (_, store, _, cached) = setup(MINUTE);
    for _ in 0..2 {
        assert!(matches!(
            cached.get_provider(&id("q")).await,
            Err(Error::NotFound { .. })
        ));
    }
    assert_eq!(reads(&store), 2);
}

#[tokio::test]
async fn a_write_empties_the_cache_and_moves_the_shared_counter() {
    let (counter, store, _, cached) = setup(MINUTE);
    cached.get_provider(&id("p")).await.ok();
    cached.update_provider(&provider()).await.ok();
    assert_eq!(counter.value.load(Ordering::SeqCst), 1);
    cached.get_provider(&id("p")).await.ok();
    assert_eq!(reads(&store), 2);
}

#[tokio::test]
async fn a_change_by_another_replica_empties_the_cache_at_the_next_sync() {
    let (counter, store, coherence, cached) = setup(MINUTE);
    coherence.sync().await.ok();
    cached.get_provider(&id("p")).await.ok();
    // Nothing moved: the entry stays.
    coherence.sync().await.ok();
    cached.get_provider(&id("p")).await.ok();
    assert_eq!(reads(&store), 1);
    // Another replica (its own Coherence over the same counter) writes.
    let other = Coherence::new(counter.clone(), MINUTE);
    CachedProviders::new(Arc::new(Providers::default()), &other)
        .delete_provider(&id("p"))
        .await
        .ok();
    cached.get_provider(&id("p")).await.ok();
    assert_eq!(reads(&store), 1, "not seen before the sync");
    coherence.sync().await.ok();
    cached.get_provider(&id("p")).await.ok();
    assert_eq!(reads(&store), 2);
}

#[tokio::test]
async fn an_unreadable_counter_empties_the_cache() {
    let (counter, store, coherence, cached) = setup(MINUTE);
    coherence.sync().await.ok();
    cached.get_provider(&id("p")).await.ok();
    counter.broken.store(true, Ordering::SeqCst);
    assert!(coherence.sync().await.is_err());
    cached.get_provider(&id("p")).await.ok();
    assert_eq!(reads(&store), 2);
}

/// A write whose change cannot be recorded for the other replicas (the counter's database is
/// down) still succeeds, and still empties this replica's cache.
#[tokio::test]
async fn a_change_that_cannot_be_recorded_still_empties_this_replica() {
    let (counter, store, _, cached) = setup(MINUTE);
    cached.get_provider(&id("p")).await.ok();
    counter.broken.store(true, Ordering::SeqCst);
    cached.update_provider(&provider()).await.unwrap();
    assert_eq!(counter.value.load(Ordering::SeqCst), 0, "nothing recorded");
    cached.get_provider(&id("p")).await.ok();
    assert_eq!(reads(&store), 2);
}

#[tokio::test]
async fn entries_older_than_max_age_are_not_used() {
    let (counter, store, _, cached) = setup(Duration::ZERO);
    cached.get_provider(&id("p")).await.ok();
    cached.get_provider(&id("p")).await.ok();
    assert_eq!(reads(&store), 2);
    // Caching off (max age 0) still tells the other replicas about writes.
    cached.update_provider(&provider()).await.ok();
    assert_eq!(counter.value.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_read_overtaken_by_a_change_is_not_kept() {
    let (_, store, coherence, cached) = setup(MINUTE);
    *lock(&store.during_read) = Some(coherence.clone());
    cached.get_provider(&id("p")).await.ok();
    *lock(&store.during_read) = None;
    cached.get_provider(&id("p")).await.ok();
    assert_eq!(
        reads(&store),
        2,
        "the first read may hold data from before the change"
    );
    cached.get_provider(&id("p")).await.ok();
    assert_eq!(reads(&store), 2);
}

/// One API key with digest `h`, counting lookups and touches.
#[derive(Default)]
struct Keys {
    finds: AtomicUsize,
    touches: AtomicUsize,
    key: Mutex<Option<ApiKey>>,
}

fn api_key() -> ApiKey {
    let t = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    ApiKey {
        id: ApiKeyId::generate(),
        name: "k".to_owned(),
        prefix: "agk_abc".to_owned(),
        secret_hash: "h".to_owned(),
        scopes: Vec::new(),
        agents: None,
        rate_limit_per_minute: None,
        created_by: None,
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
        created_at: t,
    }
}

#[async_trait]
impl ApiKeyStore for Keys {
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        *lock(&self.key) = Some(key.clone());
        Ok(())
    }
    async fn get_api_key(&self, id: &ApiKeyId) -> Result<ApiKey> {
        lock(&self.key)
            .clone()
            .ok_or_else(|| Error::not_found("api_key", id.as_str()))
    }
    async fn find_api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        Ok(lock(&self.key)
            .clone()
            .filter(|k| k.secret_hash == secret_hash))
    }
    async fn list_api_keys(&self, _: Option<&UserId>, page: Page) -> Result<Paged<ApiKey>> {
        Ok(Paged {
            items: Vec::new(),
            total: 0,
            page,
        })
    }
    async fn revoke_api_key(&self, _: &ApiKeyId, now: DateTime<Utc>) -> Result<bool> {
        if let Some(k) = lock(&self.key).as_mut() {
            k.revoked_at = Some(now);
        }
        Ok(true)
    }
    async fn touch_api_key(&self, _: &ApiKeyId, now: DateTime<Utc>, _: i64) -> Result<()> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        if let Some(k) = lock(&self.key).as_mut() {
            k.last_used_at = Some(now);
        }
        Ok(())
    }
}

#[tokio::test]
async fn api_keys_are_cached_touched_in_place_and_dropped_on_revocation() {
    let counter = Arc::new(Counter::default());
    let store = Arc::new(Keys::default());
    let coherence = Coherence::new(counter.clone(), MINUTE);
    let cached = CachedApiKeys::new(store.clone(), &coherence);
    let key = api_key();
    cached.insert_api_key(&key).await.unwrap();
    assert_eq!(cached.find_api_key_by_hash("nope").await.unwrap(), None);
    assert_eq!(cached.find_api_key_by_hash("nope").await.unwrap(), None);
    assert_eq!(
        store.finds.load(Ordering::SeqCst),
        2,
        "misses are not cached"
    );

    let found = cached.find_api_key_by_hash("h").await.unwrap().unwrap();
    assert_eq!(found.last_used_at, None);
    // A touch moves the cached time of last use without emptying the cache.
    let now = key.created_at + chrono::Duration::seconds(90);
    cached.touch_api_key(&key.id, now, 60).await.unwrap();
    let again = cached.find_api_key_by_hash("h").await.unwrap().unwrap();
    assert_eq!(again.last_used_at, Some(now));
    assert_eq!(store.finds.load(Ordering::SeqCst), 3);
    assert_eq!(
        counter.value.load(Ordering::SeqCst),
        0,
        "a touch is not a change"
    );

    // A revocation is seen at once.
    cached.revoke_api_key(&key.id, now).await.unwrap();
    let revoked = cached.find_api_key_by_hash("h").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(now));
    assert_eq!(counter.value.load(Ordering::SeqCst), 1);
}
