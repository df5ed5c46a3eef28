//! What the runtime counts: turns by agent and outcome, their response times, tokens by
//! agent and model, provider calls and errors, open streams. One [`Metrics`] per
//! [`Services`](crate::services::Services), not a process-wide recorder, so two servers in one
//! process (tests, embedders) keep separate counts.
//!
//! Recording is a few atomic additions on handles looked up under a read lock (allocated once
//! per agent, model and provider); nothing is written to the database. Reading is
//! [`Metrics::families`]: plain data, in the shape of Prometheus metric families, that the HTTP
//! adapter renders as text exposition or as JSON. Other parts of the process add their own
//! families through [`MetricsSource`] (the database pool, the process, the instance slots).
//!
//! Every name starts with `agentry_` (or is a standard `process_…` name); the HTTP adapter
//! swaps that prefix for the configured one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::llm::TokenUsage;

/// Upper bounds (seconds) of the response-time and provider-latency histograms.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

impl Kind {
    /// The exposition format's word for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// The value of one sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter or gauge value.
    Number(f64),
    /// Cumulative bucket counts (upper bound, count), the sum and the count.
    Histogram {
        /// `(le, cumulative count)`, ascending; `+Inf` is the count.
        buckets: Vec<(f64, u64)>,
        /// Sum of the observations.
        sum: f64,
        /// Number of observations.
        count: u64,
    },
}

/// One labelled sample of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: Value,
}

/// A metric family: a name, its help text, its kind and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// `agentry_…` or `process_…`.
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Its samples.
    pub samples: Vec<Sample>,
}

impl Family {
    /// A family without samples yet.
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a number sample.
    #[must_use]
    pub fn with(mut self, labels: Vec<(&'static str, String)>, value: f64) -> Self {
        self.samples.push(Sample {
            labels,
            value: Value::Number(value),
        });
        self
    }

    /// The value of the first sample whose labels include all of `labels`, if a number.
    pub fn number(&self, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .and_then(|s| match s.value {
                Value::Number(n) => Some(n),
                Value::Histogram { .. } => None,
            })
    }
}

/// Something else in the process that has metrics to show (the database pool, the process
/// itself, the instance slots). Called on every scrape: keep it cheap.
pub trait MetricsSource: Send + Sync {
    /// The current families.
    fn collect(&self) -> Vec<Family>;
}

/// How a turn ended, for `agentry_requests_total{status}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnStatus {
    /// It finished.
    Success,
    /// It failed (the provider, a tool loop that could not go on, a start that failed).
    Error,
    /// Its consumer left before the end (a client that disconnected).
    Cancelled,
    /// No instance of its agent was free within the queue timeout (503).
    Rejected,
}

impl TurnStatus {
    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
        }
    }

    const ALL: [Self; 4] = [Self::Success, Self::Error, Self::Cancelled, Self::Rejected];
}

/// A histogram of durations with [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of the observations.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us.load(Ordering::Relaxed))
    }

    /// The sample value (cumulative buckets).
    pub fn value(&self) -> Value {
        let mut running = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(le, n)| {
                running += n.load(Ordering::Relaxed);
                (*le, running)
            })
            .collect();
        Value::Histogram {
            buckets,
            sum: self.sum().as_secs_f64(),
            count: self.count(),
        }
    }
}

/// Counts of one agent's turns.
#[derive(Debug, Default)]
pub struct AgentStats {
    by_status: [AtomicU64; 4],
    latency: Histogram,
    models: RwLock<HashMap<String, HashMap<String, Arc<TokenStats>>>>,
}

impl AgentStats {
    /// Turns that ended with `status`.
    pub fn count(&self, status: TurnStatus) -> u64 {
        self.by_status[status as usize].load(Ordering::Relaxed)
    }

    /// Every ended turn.
    pub fn total(&self) -> u64 {
        TurnStatus::ALL.iter().map(|s| self.count(*s)).sum()
    }

    /// Response times.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }

    fn tokens(&self, provider: &str, model: &str) -> Arc<TokenStats> {
        if let Some(t) = read(&self.models).get(provider).and_then(|m| m.get(model)) {
            return t.clone();
        }
        write(&self.models)
            .entry(provider.to_owned())
            .or_default()
            .entry(model.to_owned())
            .or_default()
            .clone()
    }
}

/// Tokens of one agent on one model.
#[derive(Debug, Default)]
struct TokenStats {
    input: AtomicU64,
    output: AtomicU64,
}

/// Calls to one provider.
#[derive(Debug, Default)]
struct ProviderStats {
    errors: AtomicU64,
    latency: Histogram,
}

/// Turns per second over the last minute: 60 one-second slots stamped with their second.
#[derive(Debug)]
struct MinuteWindow {
    slots: [(AtomicU64, AtomicU64); 60],
}

impl Default for MinuteWindow {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| (AtomicU64::new(u64::MAX), AtomicU64::new(0))),
        }
    }
}

impl MinuteWindow {
    fn record(&self, second: u64) {
        let (stamp, count) = &self.slots[(second % 60) as usize];
        let seen = stamp.load(Ordering::Relaxed);
        if seen != second
            && stamp
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            count.store(0, Ordering::Relaxed);
        }
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// Turns in the 60 seconds up to `second`.
    fn last_minute(&self, second: u64) -> u64 {
        self.slots
            .iter()
            .filter(|(stamp, _)| {
                let s = stamp.load(Ordering::Relaxed);
                s <= second && second - s < 60
            })
            .map(|(_, count)| count.load(Ordering::Relaxed))
            .sum()
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

struct Inner {
    started: Instant,
    started_at: DateTime<Utc>,
    agents: RwLock<HashMap<String, Arc<AgentStats>>>,
    providers: RwLock<HashMap<String, Arc<ProviderStats>>>,
    in_flight: AtomicI64,
    open_streams: AtomicI64,
    minute: MinuteWindow,
    sources: RwLock<Vec<Arc<dyn MetricsSource>>>,
}

/// The counters of one set of services. Cheap to clone (a handle).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Totals over every agent, for the JSON view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Ended turns.
    pub requests: u64,
    /// Of which finished.
    pub succeeded: u64,
    /// Their summed response time.
    pub latency: Duration,
    /// Turns that ended in the last 60 seconds.
    pub last_minute: u64,
    /// Turns running now.
    pub in_flight: u64,
}

impl Metrics {
    /// Empty counters; the uptime starts now.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                started: Instant::now(),
                started_at: Utc::now(),
                agents: RwLock::new(HashMap::new()),
                providers: RwLock::new(HashMap::new()),
                in_flight: AtomicI64::new(0),
                open_streams: AtomicI64::new(0),
                minute: MinuteWindow::default(),
                sources: RwLock::new(Vec::new()),
            }),
        }
    }

    /// Adds families from elsewhere in the process to every [`Metrics::families`].
    pub fn add_source(&self, source: Arc<dyn MetricsSource>) {
        write(&self.inner.sources).push(source);
    }

    /// Time since these counters started.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// When these counters started.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.inner.started_at
    }

    /// The counts of one agent (`""`: turns on a bare model), created on first use.
    pub fn agent(&self, key: &str) -> Arc<AgentStats> {
        if let Some(a) = read(&self.inner.agents).get(key) {
            return a.clone();
        }
        write(&self.inner.agents)
            .entry(key.to_owned())
            .or_default()
            .clone()
    }

    /// The counts of one agent, if it had a turn.
    pub fn agent_if_seen(&self, key: &str) -> Option<Arc<AgentStats>> {
        read(&self.inner.agents).get(key).cloned()
    }

    fn provider(&self, id: &str) -> Arc<ProviderStats> {
        if let Some(p) = read(&self.inner.providers).get(id) {
            return p.clone();
        }
        write(&self.inner.providers)
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// A turn of `agent` (`None`: a bare model) starts: counted in flight (and as an open
    /// stream when `streaming`) until the returned meter ends or is dropped.
    pub fn start_turn(&self, agent: Option<&str>, streaming: bool) -> TurnMeter {
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        if streaming {
            self.inner.open_streams.fetch_add(1, Ordering::Relaxed);
        }
        TurnMeter {
            metrics: self.clone(),
            agent: self.agent(agent.unwrap_or_default()),
            started: Instant::now(),
            streaming,
            on_drop: TurnStatus::Error,
            ended: false,
        }
    }

    /// One model call to `provider` answered in `latency`.
    pub fn provider_answered(&self, provider: &str, latency: Duration) {
        self.provider(provider).latency.observe(latency);
    }

    /// One model call to `provider` failed (after its retries).
    pub fn provider_failed(&self, provider: &str) {
        self.provider(provider)
            .errors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Totals over every agent.
    pub fn totals(&self) -> Totals {
        let agents = read(&self.inner.agents);
        let mut t = Totals {
            requests: 0,
            succeeded: 0,
            latency: Duration::ZERO,
            last_minute: self.inner.minute.last_minute(self.uptime().as_secs()),
            in_flight: u64::try_from(self.inner.in_flight.load(Ordering::Relaxed)).unwrap_or(0),
        };
        for a in agents.values() {
            t.requests += a.total();
            t.succeeded += a.count(TurnStatus::Success);
            t.latency += a.latency.sum();
        }
        t
    }

    /// Every family: the turns', then every source's.
    pub fn families(&self) -> Vec<Family> {
        let mut requests = Family::new(
            "agentry_requests_total",
            "Agent turns ended, by agent and status (success, error, cancelled, rejected)",
            Kind::Counter,
        );
        let mut latency = Family::new(
            "agentry_response_time_seconds",
            "Time from the start of a turn to its end, by agent",
            Kind::Histogram,
        );
        let mut tokens = Family::new(
            "agentry_tokens_total",
            "Tokens spent, by agent, model and direction (input, output)",
            Kind::Counter,
        );
        {
            let agents = read(&self.inner.agents);
            let mut keys: Vec<&String> = agents.keys().collect();
            keys.sort();
            for key in keys {
                let Some(a) = agents.get(key) else { continue };
                for status in TurnStatus::ALL {
                    requests.samples.push(Sample {
                        labels: vec![("agent", key.clone()), ("status", status.as_str().into())],
                        value: Value::Number(a.count(status) as f64),
                    });
                }
                latency.samples.push(Sample {
                    labels: vec![("agent", key.clone())],
                    value: a.latency.value(),
                });
                for (provider, models) in read(&a.models).iter() {
                    for (model, t) in models {
                        for (direction, n) in [("input", &t.input), ("output", &t.output)] {
                            tokens.samples.push(Sample {
                                labels: vec![
                                    ("agent", key.clone()),
                                    ("model", format!("{provider}/{model}")),
                                    ("direction", direction.into()),
                                ],
                                value: Value::Number(n.load(Ordering::Relaxed) as f64),
                            });
                        }
                    }
                }
            }
        }
        let mut provider_latency = Family::new(
            "agentry_provider_latency_seconds",
            "Time of one model call, from the request to the end of the answer, by provider",
            Kind::Histogram,
        );
        let mut provider_errors = Family::new(
            "agentry_provider_errors_total",
            "Model calls that failed after their retries, by provider",
            Kind::Counter,
        );
        {
            let providers = read(&self.inner.providers);
            let mut ids: Vec<&String> = providers.keys().collect();
            ids.sort();
            for id in ids {
                let Some(p) = providers.get(id) else { continue };
                provider_latency.samples.push(Sample {
                    labels: vec![("provider", id.clone())],
                    value: p.latency.value(),
                });
                provider_errors.samples.push(Sample {
                    labels: vec![("provider", id.clone())],
                    value: Value::Number(p.errors.load(Ordering::Relaxed) as f64),
                });
            }
        }
        let totals = self.totals();
        let mut out = vec![
            requests,
            latency,
            tokens,
            provider_latency,
            provider_errors,
            Family::new(
                "agentry_turns_in_flight",
                "Agent turns running now",
                Kind::Gauge,
            )
            .with(Vec::new(), totals.in_flight as f64),
            Family::new(
                "agentry_open_streams",
                "Streamed turns (SSE, streamed Responses and Chat Completions) open now",
                Kind::Gauge,
            )
            .with(
                Vec::new(),
                self.inner.open_streams.load(Ordering::Relaxed).max(0) as f64,
            ),
            Family::new(
                "agentry_uptime_seconds",
                "Seconds since the server started",
                Kind::Gauge,
            )
            .with(Vec::new(), self.uptime().as_secs_f64()),
        ];
        let sources: Vec<Arc<dyn MetricsSource>> = read(&self.inner.sources).clone();
        for s in sources {
            out.extend(s.collect());
        }
        out
    }
}

/// One turn being counted. [`TurnMeter::end`] records its outcome; dropped without it, the
/// turn counts as failed (before it was handed over) or cancelled (after).
#[derive(Debug)]
pub struct TurnMeter {
    metrics: Metrics,
    agent: Arc<AgentStats>,
    started: Instant,
    streaming: bool,
    on_drop: TurnStatus,
    ended: bool,
}

impl TurnMeter {
    /// From now on, being dropped without an end means the consumer left.
    pub fn handed_over(&mut self) {
        self.on_drop = TurnStatus::Cancelled;
    }

    /// Records how the turn ended, its tokens (on `model` of `provider`) and response time.
    pub fn end(&mut self, status: TurnStatus, usage: Option<(&str, &str, TokenUsage)>) {
        if self.ended {
            return;
        }
        self.ended = true;
        let inner = &self.metrics.inner;
        inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.streaming {
            inner.open_streams.fetch_sub(1, Ordering::Relaxed);
        }
        self.agent.by_status[status as usize].fetch_add(1, Ordering::Relaxed);
        self.agent.latency.observe(self.started.elapsed());
        inner.minute.record(self.metrics.uptime().as_secs());
        if let Some((provider, model, usage)) = usage {
            let t = self.agent.tokens(provider, model);
            t.input
                .fetch_add(u64::from(usage.prompt_tokens), Ordering::Relaxed);
            t.output
                .fetch_add(u64::from(usage.completion_tokens), Ordering::Relaxed);
        }
    }
}

impl Drop for TurnMeter {
    fn drop(&mut self) {
        let status = self.on_drop;
        self.end(status, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_are_counted_once_with_their_tokens() {
        let m = Metrics::new();
        let mut t = m.start_turn(Some("a"), true);
        assert_eq!(m.totals().in_flight, 1);
        t.end(
            TurnStatus::Success,
            Some(("mock", "echo", TokenUsage::new(3, 4))),
        );
        drop(t);
        let a = m.agent("a");
        assert_eq!(a.count(TurnStatus::Success), 1);
        assert_eq!(a.total(), 1, "dropping after end records nothing more");
        let dropped = m.start_turn(Some("a"), false);
        drop(dropped);
        assert_eq!(a.count(TurnStatus::Error), 1);
        let mut handed = m.start_turn(Some("a"), false);
        handed.handed_over();
        drop(handed);
        assert_eq!(a.count(TurnStatus::Cancelled), 1);
        let totals = m.totals();
        assert_eq!(
            (totals.requests, totals.succeeded, totals.in_flight),
            (3, 1, 0)
        );
        assert_eq!(totals.last_minute, 3);
        let families = m.families();
        let tokens = families
            .iter()
            .find(|f| f.name == "agentry_tokens_total")
            .and_then(|f| f.number(&[("model", "mock/echo"), ("direction", "output")]));
        assert_eq!(tokens, Some(4.0));
        let streams = families
            .iter()
            .find(|f| f.name == "agentry_open_streams")
            .and_then(|f| f.number(&[]));
        assert_eq!(streams, Some(0.0));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        h.observe(Duration::from_secs(500));
        let Value::Histogram { buckets, count, .. } = h.value() else {
            unreachable!()
        };
        assert_eq!(count, 3);
        assert_eq!(buckets[0], (0.005, 1));
        assert_eq!(buckets.iter().find(|(le, _)| *le == 0.5), Some(&(0.5, 2)));
        assert_eq!(buckets.last().map(|b| b.1), Some(2), "+Inf is the count");
    }
}
