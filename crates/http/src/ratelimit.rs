//! Rate limits per client: a request rate (GCRA, with `governor`) and a number of requests in
//! flight. A client is its API key or user when authenticated, its address otherwise.
//! `/health`, `/ready` and `/metrics` are exempt.
//!
//! Limited responses carry `X-RateLimit-Limit` (requests per minute), `X-RateLimit-Remaining`
//! (requests that may be sent at once now) and `X-RateLimit-Reset` (seconds until the full
//! burst is available again). A refused request is 429 `RATE_LIMITED` with `Retry-After` and
//! `details.retry_after_seconds` / `details.limit`.
//!
//! The counters live in each replica's memory. With several replicas, the per-minute limit
//! holds for the deployment when [`RateLimits::shared`] is on: besides its own buckets, each
//! replica counts every client's requests in the current minute, adds them to the shared
//! totals every sync interval ([`sync_usage`], through the `RateUsageStore` port) and refuses
//! a client whose total for the minute has reached its limit. No request waits for the
//! database; between two syncs each replica admits on what it last saw, so the deployment
//! may admit more than the limit by what the other replicas admit in one interval (see
//! `docs/security.md`).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, web};
use agentry_domain::auth::Principal;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::AppState;
use crate::auth::error_response;
use crate::error::ApiError;

type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// `X-RateLimit-Limit`.
pub const LIMIT_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub const REMAINING_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`.
pub const RESET_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Paths never limited.
const EXEMPT: [&str; 3] = ["/health", "/ready", "/metrics"];
/// How often idle clients are forgotten.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// The limits of each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Sustained requests per minute.
    pub per_minute: u32,
    /// Requests that may be sent at once after a quiet period.
    pub burst: u32,
    /// Requests in flight at once (a streamed answer counts until it ends).
    pub concurrency: u32,
}

impl Default for RateLimitSettings {
    /// 100 requests per minute, bursts of 20, 20 in flight (seed 000's numbers).
    fn default() -> Self {
        Self {
            per_minute: 100,
            burst: 20,
            concurrency: 20,
        }
    }
}

struct Limiter {
    per_minute: u32,
    burst: u32,
    limiter: KeyedLimiter,
}

impl Limiter {
    fn new(per_minute: u32, burst: u32) -> Self {
        let per_minute = per_minute.max(1);
        let burst = burst.clamp(1, per_minute);
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            per_minute,
            burst,
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
        }
    }

    /// Seconds until `remaining` cells have grown back to the whole burst.
    fn reset_secs(&self, remaining: u32) -> u64 {
        let missing = u64::from(self.burst.saturating_sub(remaining));
        (missing * 60).div_ceil(u64::from(self.per_minute))
    }
}

/// Requests per client in the current minute: the deployment's total as last synced, and
/// this replica's admissions since.
#[derive(Default)]
struct Window {
    minute: u64,
    seen: HashMap<String, u64>,
    pending: HashMap<String, u64>,
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every client's counters. Share one across the server's workers.
pub struct RateLimits {
    settings: RateLimitSettings,
    /// The deployment-wide minute windows, when shared.
    shared: Option<Mutex<Window>>,
    default: Limiter,
    custom: Mutex<HashMap<u32, Arc<Limiter>>>,
    in_flight: Mutex<HashMap<String, u32>>,
    started: Instant,
    last_cleanup: AtomicU64,
    refused: AtomicU64,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

enum Choice<'a> {
    Default(&'a Limiter),
    Custom(Arc<Limiter>),
}

impl std::ops::Deref for Choice<'_> {
    type Target = Limiter;
    fn deref(&self) -> &Limiter {
        match self {
            Self::Default(l) => l,
            Self::Custom(l) => l,
        }
    }
}

/// A refused request: why, and for how long.
struct Refusal {
    retry_after: u64,
    limit: String,
}

/// Headers of an allowed request.
struct Allowed {
    limit: u32,
    remaining: u32,
    reset: u64,
}

impl RateLimits {
    /// Counters for `settings`.
    pub fn new(settings: RateLimitSettings) -> Self {
        Self {
            default: Limiter::new(settings.per_minute, settings.burst),
            settings,
            shared: None,
            custom: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            started: Instant::now(),
            last_cleanup: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Also counts every client's requests per minute for the whole deployment (several
    /// replicas): run [`sync_usage`] beside it.
    #[must_use]
    pub fn shared(mut self) -> Self {
        self.shared = Some(Mutex::new(Window::default()));
        self
    }

    /// Admits one request of `key` under the deployment's per-minute total, if shared.
    fn check_shared(&self, key: &str, per_minute: u32) -> Result<(), Refusal> {
        let Some(window) = &self.shared else {
            return Ok(());
        };
        let Ok(mut w) = window.lock() else {
            return Ok(());
        };
        let now = unix_secs();
        let minute = now / 60;
        if w.minute != minute {
            *w = Window {
                minute,
                ..Window::default()
            };
        }
        let used = w.seen.get(key).copied().unwrap_or(0) + w.pending.get(key).copied().unwrap_or(0);
        if used >= u64::from(per_minute) {
            return Err(Refusal {
                retry_after: 60 - now % 60,
                limit: format!("{per_minute} requests per minute"),
            });
        }
        *w.pending.entry(key.to_owned()).or_insert(0) += 1;
        Ok(())
    }

    /// Sends this replica's counts since the last sync and takes the deployment's totals.
    async fn sync(&self, store: &dyn agentry_domain::ports::RateUsageStore) {
        let Some(window) = &self.shared else { return };
        let (minute, counts) = {
            let Ok(mut w) = window.lock() else { return };
            if w.minute != unix_secs() / 60 {
                return;
            }
            let pending = std::mem::take(&mut w.pending);
            let mut counts: Vec<(String, u64)> = pending.into_iter().collect();
            // Clients seen this minute are refreshed too: others may have used them.
            for key in w.seen.keys() {
                if !counts.iter().any(|(k, _)| k == key) {
                    counts.push((key.clone(), 0));
                }
            }
            (w.minute, counts)
        };
        if counts.is_empty() {
            return;
        }
        let start = chrono::DateTime::from_timestamp(i64::try_from(minute * 60).unwrap_or(0), 0)
            .unwrap_or_default();
        match store.add_usage(start, &counts).await {
            Ok(totals) => {
                if let Ok(mut w) = window.lock()
                    && w.minute == minute
                {
                    for (key, total) in totals {
                        w.seen.insert(key, total);
                    }
                }
            }
            Err(e) => {
                // The counts are put back: they are sent with the next sync.
                tracing::warn!(error = %e, "could not share rate-limit counts");
                if let Ok(mut w) = window.lock()
                    && w.minute == minute
                {
                    for (key, n) in counts {
                        *w.pending.entry(key).or_insert(0) += n;
                    }
                }
            }
        }
    }

    /// Requests refused (429) so far.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The settings in force.
    pub fn settings(&self) -> RateLimitSettings {
        self.settings
    }

    fn limiter(&self, per_minute: Option<u32>) -> Choice<'_> {
        match per_minute {
            Some(n) if n != self.settings.per_minute => {
                let Ok(mut custom) = self.custom.lock() else {
                    return Choice::Default(&self.default);
                };
                let l = custom
                    .entry(n)
                    .or_insert_with(|| Arc::new(Limiter::new(n, self.settings.burst)))
                    .clone();
                Choice::Custom(l)
            }
            _ => Choice::Default(&self.default),
        }
    }

    /// Forgets clients whose buckets are full again, once a minute at most.
    fn maybe_clean_up(&self) {
        let now = self.started.elapsed().as_secs();
        let last = self.last_cleanup.load(Ordering::Relaxed);
        if now.saturating_sub(last) < CLEANUP_EVERY.as_secs()
            || self
                .last_cleanup
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.default.limiter.retain_recent();
        self.default.limiter.shrink_to_fit();
        if let Ok(custom) = self.custom.lock() {
            for l in custom.values() {
                l.limiter.retain_recent();
                l.limiter.shrink_to_fit();
            }
        }
    }

    fn check_rate(&self, key: &str, per_minute: Option<u32>) -> Result<Allowed, Refusal> {
        self.maybe_clean_up();
        let l = self.limiter(per_minute);
        match l.limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(Allowed {
                    limit: l.per_minute,
                    remaining,
                    reset: l.reset_secs(remaining),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(Refusal {
                    retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                    limit: format!("{} requests per minute", l.per_minute),
                })
            }
        }
    }

    fn enter(self: &Arc<Self>, key: &str) -> Result<InFlight, Refusal> {
        let Ok(mut map) = self.in_flight.lock() else {
            return Ok(InFlight {
                limits: None,
                key: String::new(),
            });
        };
        let n = map.entry(key.to_owned()).or_insert(0);
        if *n >= self.settings.concurrency.max(1) {
            return Err(Refusal {
                retry_after: 1,
                limit: format!("{} concurrent requests", self.settings.concurrency),
            });
        }
        *n += 1;
        Ok(InFlight {
            limits: Some(self.clone()),
            key: key.to_owned(),
        })
    }
}

/// One request in flight; leaving decrements the client's count.
struct InFlight {
    limits: Option<Arc<RateLimits>>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(limits) = &self.limits else { return };
        if let Ok(mut map) = limits.in_flight.lock()
            && let Some(n) = map.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// A response body that keeps its request counted as in flight until it has been sent.
struct Counted {
    body: BoxBody,
    _guard: InFlight,
}

impl MessageBody for Counted {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// The client a request is counted for.
fn client_key(req: &ServiceRequest) -> (String, Option<u32>) {
    match req.extensions().get::<Principal>() {
        Some(p) => (p.rate_key(), p.rate_limit_per_minute),
        None => (
            format!(
                "addr:{}",
                req.peer_addr()
                    .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string())
            ),
            None,
        ),
    }
}

fn header(n: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&n.to_string()).unwrap_or(HeaderValue::from_static("0"))
}

/// The middleware; runs after authentication, so it knows the principal.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    if EXEMPT.contains(&req.match_info().as_str()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let Some(limits) = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.rate_limits.clone())
    else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let (key, per_minute) = client_key(&req);
    let limit_per_minute = limits.limiter(per_minute).per_minute;
    let refused = |req: ServiceRequest, r: Refusal| {
        tracing::info!(client = %key, limit = %r.limit, "rate limited");
        limits.refused.fetch_add(1, Ordering::Relaxed);
        let mut res = error_response(req, &ApiError::rate_limited(r.retry_after, Some(&r.limit)));
        let headers = res.headers_mut();
        headers.insert(LIMIT_HEADER, header(limit_per_minute));
        headers.insert(REMAINING_HEADER, header(0));
        headers.insert(RESET_HEADER, header(r.retry_after));
        Ok(res)
    };
    let allowed = match limits.check_rate(&key, per_minute) {
        Ok(a) => a,
        Err(r) => return refused(req, r),
    };
    if let Err(r) = limits.check_shared(&key, limit_per_minute) {
        return refused(req, r);
    }
    let guard = match limits.enter(&key) {
        Ok(g) => g,
        Err(r) => return refused(req, r),
    };
    let res = next.call(req).await?;
    let mut res = res.map_body(|_, body| Counted {
        body: body.boxed(),
        _guard: guard,
    });
    let headers = res.headers_mut();
    headers.insert(LIMIT_HEADER, header(allowed.limit));
    headers.insert(REMAINING_HEADER, header(allowed.remaining));
    headers.insert(RESET_HEADER, header(allowed.reset));
    Ok(res.map_into_boxed_body())
}

/// Shares `limits`' counts with the other replicas every `every`, forever (see
/// [`RateLimits::shared`]).
pub async fn sync_usage(
    limits: Arc<RateLimits>,
    store: Arc<dyn agentry_domain::ports::RateUsageStore>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        limits.sync(store.as_ref()).await;
    }
}
