//! Instances: the concurrency slots of cluster agents on this replica.
//!
//! Each member of a cluster has `instances` slots: at most that many of its turns run at once;
//! the next ones wait (first come, first served) up to the queue timeout, then are refused
//! with [`Error::Busy`] (503 with `Retry-After`). A cluster's `max_concurrent_agents` is a
//! second gate shared by its members. Agents outside clusters take no slot at all.
//!
//! Slots are per replica (decision 69): a deployment of N replicas runs at most N × instances
//! turns of an agent at once, and the status says so. Nothing here touches the database, so a
//! turn's slot costs an uncontended semaphore acquire.
//!
//! Scale to zero: an agent of a `scale_to_zero` cluster with no turn for `idle_timeout`
//! becomes idle ([`Instances::sweep`]); its next turn starts it again (a cold start).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cluster::{Cluster, ResourcePolicy};
use crate::error::{Error, Result};
use crate::metrics::{Family, Kind, MetricsSource};

/// How long a turn waits for a slot, and how many may wait per agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceSettings {
    /// The longest wait for a slot before the turn is refused.
    pub queue_timeout: Duration,
    /// Most turns waiting for one agent's slots; the next is refused at once.
    pub queue_max: u32,
}

impl Default for InstanceSettings {
    fn default() -> Self {
        Self {
            queue_timeout: Duration::from_secs(5),
            queue_max: 100,
        }
    }
}

/// A cluster cap large enough to be no cap.
const UNLIMITED: u32 = 1 << 20;

/// A semaphore whose size can change while permits are out: shrinking forgets free permits,
/// and the rest as they come back (its debt).
#[derive(Debug)]
struct Gate {
    sem: Arc<Semaphore>,
    size: AtomicU32,
    debt: AtomicU32,
}

impl Gate {
    fn new(size: u32) -> Self {
        Self {
            sem: Arc::new(Semaphore::new(size as usize)),
            size: AtomicU32::new(size),
            debt: AtomicU32::new(0),
        }
    }

    fn resize(&self, size: u32) {
        let old = self.size.swap(size, Ordering::AcqRel);
        if size > old {
            let mut grow = size - old;
            // Pay back what shrinking still owes before adding permits.
            while grow > 0 {
                let debt = self.debt.load(Ordering::Acquire);
                if debt == 0 {
                    break;
                }
                let paid = debt.min(grow);
                if self
                    .debt
                    .compare_exchange(debt, debt - paid, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    grow -= paid;
                }
            }
            self.sem.add_permits(grow as usize);
        } else if size < old {
            let shrink = old - size;
            let forgotten = u32::try_from(self.sem.forget_permits(shrink as usize)).unwrap_or(0);
            self.debt.fetch_add(shrink - forgotten, Ordering::AcqRel);
        }
    }

    fn release(&self, permit: OwnedSemaphorePermit) {
        loop {
            let debt = self.debt.load(Ordering::Acquire);
            if debt == 0 {
                drop(permit);
                return;
            }
            if self
                .debt
                .compare_exchange(debt, debt - 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                permit.forget();
                return;
            }
        }
    }

    async fn acquire(&self, deadline: tokio::time::Instant) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            return Some(p);
        }
        match tokio::time::timeout_at(deadline, self.sem.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some(p),
            _ => None,
        }
    }
}

/// One cluster's shared gate and policy.
#[derive(Debug)]
struct ClusterSlots {
    name: String,
    gate: Gate,
    scale_to_zero: AtomicBool,
    idle_timeout_ms: AtomicU64,
}

impl ClusterSlots {
    fn new(name: &str, policy: &ResourcePolicy) -> Self {
        let s = Self {
            name: name.to_owned(),
            gate: Gate::new(policy.max_concurrent_agents.unwrap_or(UNLIMITED)),
            scale_to_zero: AtomicBool::new(false),
            idle_timeout_ms: AtomicU64::new(0),
        };
        s.set_policy(policy);
        s
    }

    fn set_policy(&self, policy: &ResourcePolicy) {
        self.gate
            .resize(policy.max_concurrent_agents.unwrap_or(UNLIMITED));
        self.scale_to_zero
            .store(policy.scale_to_zero, Ordering::Release);
        let ms = policy
            .idle_timeout
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.idle_timeout_ms.store(ms, Ordering::Release);
    }
}

/// One agent's slots.
#[derive(Debug)]
struct AgentSlots {
    key: String,
    cluster: Arc<ClusterSlots>,
    gate: Gate,
    in_use: AtomicU32,
    waiting: AtomicU32,
    /// Milliseconds since the registry's epoch of the last turn's end (or start).
    last_used_ms: AtomicU64,
    idle: AtomicBool,
    cold_starts: AtomicU64,
    rejected: AtomicU64,
}

/// What an agent's slots look like now, on this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    /// `running`, `idle` (scaled to zero) or `scaling` (more turns running than its new
    /// number of instances: they drain as they end).
    pub status: &'static str,
    /// Its instances (the target).
    pub instances: u32,
    /// Slots held now (0 when idle).
    pub current_instances: u32,
    /// Turns running now.
    pub in_use: u32,
    /// Turns waiting for a slot now.
    pub waiting: u32,
    /// Times it started again after being idle.
    pub cold_starts: u64,
    /// Turns refused for want of a slot.
    pub rejected: u64,
}

struct Inner {
    agents: RwLock<HashMap<String, Arc<AgentSlots>>>,
    clusters: RwLock<HashMap<String, Arc<ClusterSlots>>>,
    settings: InstanceSettings,
    epoch: Instant,
}

/// The slots of every cluster agent on this replica. Cheap to clone (a handle).
#[derive(Clone)]
pub struct Instances {
    inner: Arc<Inner>,
}

impl Default for Instances {
    fn default() -> Self {
        Self::new(InstanceSettings::default())
    }
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instances")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// A held slot: released (to the next waiting turn) when dropped.
#[derive(Debug)]
pub struct Slot {
    agent: Arc<AgentSlots>,
    agent_permit: Option<OwnedSemaphorePermit>,
    cluster_permit: Option<OwnedSemaphorePermit>,
    epoch: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(p) = self.cluster_permit.take() {
            self.agent.cluster.gate.release(p);
        }
        if let Some(p) = self.agent_permit.take() {
            self.agent.gate.release(p);
        }
        self.agent.in_use.fetch_sub(1, Ordering::AcqRel);
        self.agent
            .last_used_ms
            .store(millis_since(self.epoch), Ordering::Release);
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Waiting turns of one agent, counted while the guard lives.
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Instances {
    /// An empty registry: no agent takes a slot until [`Instances::sync`] adds clusters.
    pub fn new(settings: InstanceSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                agents: RwLock::new(HashMap::new()),
                clusters: RwLock::new(HashMap::new()),
                settings,
                epoch: Instant::now(),
            }),
        }
    }

    /// The settings.
    pub fn settings(&self) -> InstanceSettings {
        self.inner.settings
    }

    /// Makes the registry hold exactly `clusters` (what the store says): new members get
    /// slots, changed numbers resize them (turns in flight keep theirs), members and clusters
    /// that are gone stop taking slots.
    pub fn sync(&self, clusters: &[Cluster]) {
        for c in clusters {
            self.upsert(c);
        }
        let gone: Vec<String> = read(&self.inner.clusters)
            .keys()
            .filter(|name| !clusters.iter().any(|c| c.name.as_str() == name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.remove(&name);
        }
    }

    /// Adds or changes one cluster's slots, leaving the other clusters as they are.
    pub fn upsert(&self, c: &Cluster) {
        let mut by_cluster = write(&self.inner.clusters);
        let mut by_agent = write(&self.inner.agents);
        let slots = by_cluster
            .entry(c.name.to_string())
            .or_insert_with(|| Arc::new(ClusterSlots::new(c.name.as_str(), &c.policy)))
            .clone();
        slots.set_policy(&c.policy);
        by_agent.retain(|key, a| {
            !Arc::ptr_eq(&a.cluster, &slots) || c.members.iter().any(|m| m.key.as_str() == key)
        });
        for m in &c.members {
            match by_agent.get(m.key.as_str()) {
                Some(a) if Arc::ptr_eq(&a.cluster, &slots) => a.gate.resize(m.instances),
                _ => {
                    by_agent.insert(
                        m.key.to_string(),
                        Arc::new(AgentSlots {
                            key: m.key.to_string(),
                            cluster: slots.clone(),
                            gate: Gate::new(m.instances),
                            in_use: AtomicU32::new(0),
                            waiting: AtomicU32::new(0),
                            last_used_ms: AtomicU64::new(millis_since(self.inner.epoch)),
                            idle: AtomicBool::new(false),
                            cold_starts: AtomicU64::new(0),
                            rejected: AtomicU64::new(0),
                        }),
                    );
                }
            }
        }
    }

    /// Removes one cluster's slots.
    pub fn remove(&self, cluster: &str) {
        write(&self.inner.clusters).remove(cluster);
        write(&self.inner.agents).retain(|_, a| a.cluster.name != cluster);
    }

    /// Takes a slot of agent `key` for a turn: at once when one is free, else after waiting
    /// in line up to the queue timeout. `Ok(None)` for an agent outside every cluster.
    ///
    /// # Errors
    /// [`Error::Busy`] when no slot came free in time, or the line is full.
    pub async fn acquire(&self, key: &str) -> Result<Option<Slot>> {
        let Some(agent) = read(&self.inner.agents).get(key).cloned() else {
            return Ok(None);
        };
        let settings = self.inner.settings;
        let deadline = tokio::time::Instant::now() + settings.queue_timeout;
        let agent_permit = match agent.gate.sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let waiting = agent.waiting.fetch_add(1, Ordering::AcqRel);
                let _line = Waiting(&agent.waiting);
                if waiting >= settings.queue_max {
                    return Err(self.refuse(&agent, "its queue is full"));
                }
                match agent.gate.acquire(deadline).await {
                    Some(p) => p,
                    None => return Err(self.refuse(&agent, "no instance came free in time")),
                }
            }
        };
        let cluster_permit = match agent.cluster.gate.sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let _line = {
                    agent.waiting.fetch_add(1, Ordering::AcqRel);
                    Waiting(&agent.waiting)
                };
                match agent.cluster.gate.acquire(deadline).await {
                    Some(p) => p,
                    None => {
                        agent.gate.release(agent_permit);
                        return Err(
                            self.refuse(&agent, "its cluster's max_concurrent_agents are all busy")
                        );
                    }
                }
            }
        };
        agent.in_use.fetch_add(1, Ordering::AcqRel);
        agent
            .last_used_ms
            .store(millis_since(self.inner.epoch), Ordering::Release);
        if agent.idle.swap(false, Ordering::AcqRel) {
            agent.cold_starts.fetch_add(1, Ordering::Relaxed);
            tracing::info!(agent = %agent.key, cluster = %agent.cluster.name, "cold start: the idle agent runs again");
        }
        Ok(Some(Slot {
            agent,
            agent_permit: Some(agent_permit),
            cluster_permit: Some(cluster_permit),
            epoch: self.inner.epoch,
        }))
    }

    fn refuse(&self, agent: &AgentSlots, why: &str) -> Error {
        agent.rejected.fetch_add(1, Ordering::Relaxed);
        let instances = agent.gate.size.load(Ordering::Acquire);
        Error::Busy {
            retry_after: Duration::from_secs(1),
            message: format!(
                "Agent '{}' is busy: all {instances} of its instances are in use and {why} \
                 (queue timeout {} ms); retry later or scale it up",
                agent.key,
                self.inner.settings.queue_timeout.as_millis()
            ),
        }
    }

    /// Marks idle every agent of a `scale_to_zero` cluster that has had no turn for its
    /// cluster's `idle_timeout`; returns their keys (whose MCP servers the caller stops).
    pub fn sweep(&self) -> Vec<String> {
        let now = millis_since(self.inner.epoch);
        let mut gone_idle = Vec::new();
        for a in read(&self.inner.agents).values() {
            let c = &a.cluster;
            let timeout = c.idle_timeout_ms.load(Ordering::Acquire);
            if !c.scale_to_zero.load(Ordering::Acquire)
                || timeout == 0
                || a.idle.load(Ordering::Acquire)
                || a.in_use.load(Ordering::Acquire) > 0
                || a.waiting.load(Ordering::Acquire) > 0
            {
                continue;
            }
            let last = a.last_used_ms.load(Ordering::Acquire);
            if now.saturating_sub(last) >= timeout
                && a.idle
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                tracing::info!(agent = %a.key, cluster = %c.name, "scaled to zero after its idle timeout");
                gone_idle.push(a.key.clone());
            }
        }
        gone_idle
    }

    /// The state of agent `key`'s slots, if it belongs to a cluster here.
    pub fn state(&self, key: &str) -> Option<SlotState> {
        let a = read(&self.inner.agents).get(key).cloned()?;
        Some(slot_state(&a))
    }

    /// Whether agent `key` is idle (scaled to zero) here.
    pub fn is_idle(&self, key: &str) -> bool {
        read(&self.inner.agents)
            .get(key)
            .is_some_and(|a| a.idle.load(Ordering::Acquire))
    }

    /// Agent keys that are not idle, of every cluster.
    pub fn running_keys(&self) -> Vec<String> {
        read(&self.inner.agents)
            .values()
            .filter(|a| !a.idle.load(Ordering::Acquire))
            .map(|a| a.key.clone())
            .collect()
    }
}

fn slot_state(a: &AgentSlots) -> SlotState {
    let instances = a.gate.size.load(Ordering::Acquire);
    let in_use = a.in_use.load(Ordering::Acquire);
    let idle = a.idle.load(Ordering::Acquire);
    let status = if idle {
        "idle"
    } else if in_use > instances {
        "scaling"
    } else {
        "running"
    };
    SlotState {
        status,
        instances,
        current_instances: if idle { 0 } else { instances.max(in_use) },
        in_use,
        waiting: a.waiting.load(Ordering::Acquire),
        cold_starts: a.cold_starts.load(Ordering::Relaxed),
        rejected: a.rejected.load(Ordering::Relaxed),
    }
}

impl MetricsSource for Instances {
    fn collect(&self) -> Vec<Family> {
        let mut active = Family::new(
            "agentry_active_agents",
            "Cluster agents running (not scaled to zero) on this replica, by cluster",
            Kind::Gauge,
        );
        let mut instances = Family::new(
            "agentry_agent_instances",
            "Instances (concurrency slots) of each cluster agent on this replica",
            Kind::Gauge,
        );
        let mut in_use = Family::new(
            "agentry_agent_instances_in_use",
            "Slots of each cluster agent held by running turns",
            Kind::Gauge,
        );
        let mut waiting = Family::new(
            "agentry_agent_queue_waiting",
            "Turns waiting for a slot of each cluster agent",
            Kind::Gauge,
        );
        let mut cold = Family::new(
            "agentry_cold_starts_total",
            "Times an idle (scaled to zero) agent started again",
            Kind::Counter,
        );
        let mut rejected = Family::new(
            "agentry_instance_rejections_total",
            "Turns refused with 503 because no slot of their agent came free in time",
            Kind::Counter,
        );
        // Locks are taken one at a time, clusters before agents, as `upsert` takes them.
        let mut clusters: Vec<String> = read(&self.inner.clusters).keys().cloned().collect();
        clusters.sort();
        let agents = read(&self.inner.agents);
        let mut keys: Vec<&String> = agents.keys().collect();
        keys.sort();
        for c in clusters {
            let n = agents
                .values()
                .filter(|a| a.cluster.name == c && !a.idle.load(Ordering::Acquire))
                .count();
            active = active.with(vec![("cluster", c)], n as f64);
        }
        for key in keys {
            let Some(a) = agents.get(key) else { continue };
            let s = slot_state(a);
            let labels = || vec![("agent", key.clone()), ("cluster", a.cluster.name.clone())];
            instances = instances.with(labels(), f64::from(s.current_instances));
            in_use = in_use.with(labels(), f64::from(s.in_use));
            waiting = waiting.with(labels(), f64::from(s.waiting));
            cold = cold.with(labels(), s.cold_starts as f64);
            rejected = rejected.with(labels(), s.rejected as f64);
        }
        vec![active, instances, in_use, waiting, cold, rejected]
    }
}
