//! Clusters: applying `AgentCluster` manifests, scaling their agents, reading their state.
//!
//! Applying a manifest makes it true: each listed agent exists with that definition (created,
//! or replaced when it differs), belongs to the cluster and is active; each created or changed
//! agent gets a published version, so what was applied is what the client API serves; agents
//! that left the manifest are archived; the cluster record keeps the policy and each member's
//! instances. Applying the same manifest again changes nothing. Deleting a cluster archives
//! its agents (decision 68).
//!
//! - `apply.rs`: applying a manifest;
//! - `lifecycle.rs`: deleting a cluster, scaling an agent;
//! - `background.rs`: reloading clusters changed elsewhere, scaling idle agents to zero;
//! - `instances.rs`: the concurrency slots of cluster agents on this replica (and scale to
//!   zero).

mod apply;
mod background;
mod instances;
mod lifecycle;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};

pub(crate) use instances::Slot;
pub use instances::{InstanceSettings, Instances, SlotState};

use crate::agent::{Agent, AgentKey, AgentName, AgentRef, AgentStatus, ClusterName, ModelSpec};
use crate::cluster::{Cluster, ClusterStore};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::page::{MAX_LIMIT, Page, Paged};
use crate::ports::{ChangeLog, Clock};
use crate::services::{AgentService, McpServerService, ProviderRegistry, VersionService};

/// What applying a manifest did to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyResult {
    /// The cluster is new.
    Created,
    /// Something changed.
    Configured,
    /// Nothing changed.
    Unchanged,
}

impl ApplyResult {
    /// `created`, `configured` or `unchanged` (as `kubectl apply` says).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Configured => "configured",
            Self::Unchanged => "unchanged",
        }
    }
}

/// What applying a manifest did to one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentChange {
    /// Created (and version 1 published).
    Created,
    /// Its definition changed (and a version was published).
    Updated,
    /// Already as the manifest says.
    Unchanged,
    /// Left the manifest: archived.
    Archived,
}

impl AgentChange {
    /// The word for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Archived => "archived",
        }
    }
}

/// One agent's part of an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedAgent {
    /// The agent's key.
    pub key: AgentKey,
    /// What happened to it.
    pub change: AgentChange,
    /// The version published for it, if one was.
    pub version: Option<u32>,
}

/// The outcome of an apply.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The cluster as stored now.
    pub cluster: Cluster,
    /// What happened to it.
    pub result: ApplyResult,
    /// What happened to each agent.
    pub agents: Vec<AppliedAgent>,
}

/// One member agent as the API shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    /// Its key.
    pub key: AgentKey,
    /// Its definition (`None` when it was deleted through the agents API).
    pub agent: Option<Agent>,
    /// Its instances, as the cluster record says.
    pub instances: u32,
    /// Its slots here.
    pub slots: Option<SlotState>,
    /// `running`, `idle`, `scaling`, `archived` or `missing`.
    pub status: &'static str,
    /// Turns that ended on this replica since it started.
    pub total_requests: u64,
    /// Of which finished.
    pub succeeded: u64,
    /// Their average response time, in milliseconds.
    pub avg_response_time_ms: Option<f64>,
}

/// A cluster with its members' state.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// The stored cluster.
    pub cluster: Cluster,
    /// `running`, `idle` (every agent scaled to zero), `scaling` (an agent draining to a
    /// lower number of instances) or `deploying` (an apply is under way here).
    pub status: &'static str,
    /// Its members, in manifest order.
    pub members: Vec<MemberView>,
}

impl ClusterView {
    /// Turns of its agents that ended on this replica since it started.
    pub fn total_requests(&self) -> u64 {
        self.members.iter().map(|m| m.total_requests).sum()
    }

    /// Turns of its agents running now on this replica.
    pub fn active_turns(&self) -> u32 {
        self.members
            .iter()
            .filter_map(|m| m.slots.as_ref())
            .map(|s| s.in_use)
            .sum()
    }

    /// The average response time of its agents' turns, in milliseconds.
    pub fn avg_response_time_ms(&self) -> Option<f64> {
        let (n, total) = self
            .members
            .iter()
            .filter_map(|m| m.avg_response_time_ms.map(|a| (m.total_requests, a)))
            .fold((0u64, 0f64), |(n, t), (c, a)| (n + c, t + a * c as f64));
        (n > 0).then(|| total / n as f64)
    }
}

/// A scale request's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaled {
    /// The agent's key.
    pub key: AgentKey,
    /// Its instances before.
    pub previous_instances: u32,
    /// Its instances now (the target).
    pub target_instances: u32,
    /// Slots held or available now here (above the target while turns drain).
    pub current_instances: u32,
    /// `running`, `idle` or `scaling`.
    pub status: &'static str,
}

/// The clusters use cases. Cheap to clone.
#[derive(Clone)]
pub struct ClusterService {
    store: Arc<dyn ClusterStore>,
    agents: AgentService,
    versions: VersionService,
    providers: ProviderRegistry,
    mcp: McpServerService,
    instances: Instances,
    metrics: Metrics,
    changes: Arc<dyn ChangeLog>,
    clock: Arc<dyn Clock>,
    default_model: ModelSpec,
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Marks a cluster as being changed by this process while it lives.
struct Busy {
    set: Arc<Mutex<HashSet<String>>>,
    name: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.name);
    }
}

/// A 409 `SCALING_IN_PROGRESS`.
fn scaling_in_progress(name: &str) -> Error {
    let mut extra = Map::new();
    extra.insert("code".to_owned(), Value::from("SCALING_IN_PROGRESS"));
    Error::Conflict {
        message: format!(
            "the cluster '{name}' is being changed by another apply or scale; try again"
        ),
        field: None,
        extra,
    }
}

/// The key a caller means by `name` (a key, or a name a key derives from).
fn key_of(name: &str) -> Option<AgentKey> {
    AgentKey::parse(name).ok().or_else(|| {
        AgentName::parse(name)
            .ok()
            .and_then(|n| AgentKey::from_name(&n).ok())
    })
}

impl ClusterService {
    /// A service over its ports and the services it drives.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn ClusterStore>,
        agents: AgentService,
        versions: VersionService,
        providers: ProviderRegistry,
        mcp: McpServerService,
        instances: Instances,
        metrics: Metrics,
        changes: Arc<dyn ChangeLog>,
        clock: Arc<dyn Clock>,
        default_model: ModelSpec,
    ) -> Self {
        Self {
            store,
            agents,
            versions,
            providers,
            mcp,
            instances,
            metrics,
            changes,
            clock,
            default_model,
            busy: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The slots of cluster agents on this replica.
    pub fn instances(&self) -> &Instances {
        &self.instances
    }

    fn begin(&self, name: &str) -> Result<Busy> {
        let mut set = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        if !set.insert(name.to_owned()) {
            return Err(scaling_in_progress(name));
        }
        Ok(Busy {
            set: self.busy.clone(),
            name: name.to_owned(),
        })
    }

    fn is_busy(&self, name: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name)
    }

    async fn find(&self, name: &ClusterName) -> Result<Option<Cluster>> {
        match self.store.get_cluster(name).await {
            Ok(c) => Ok(Some(c)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_agent(&self, key: &AgentKey) -> Result<Option<Agent>> {
        match self.agents.get(&AgentRef::Key(key.clone())).await {
            Ok(a) => Ok(Some(a)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One cluster with its members' state.
    ///
    /// # Errors
    /// `NotFound` (entity `cluster`).
    pub async fn get(&self, name: &ClusterName) -> Result<ClusterView> {
        let c = self.store.get_cluster(name).await?;
        self.view(c).await
    }

    /// Clusters by name, with their members' state.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(&self, page: Page) -> Result<Paged<ClusterView>> {
        let paged = self.store.list_clusters(page).await?;
        let mut items = Vec::with_capacity(paged.items.len());
        for c in paged.items {
            items.push(self.view(c).await?);
        }
        Ok(Paged {
            items,
            total: paged.total,
            page: paged.page,
        })
    }

    /// Every cluster, read page by page.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list_all(&self) -> Result<Vec<Cluster>> {
        let mut all = Vec::new();
        loop {
            let page = Page::new(Some(MAX_LIMIT), Some(all.len() as u64))?;
            let paged = self.store.list_clusters(page).await?;
            let last = paged.items.len() < MAX_LIMIT as usize;
            all.extend(paged.items);
            if last || all.len() as u64 >= paged.total {
                return Ok(all);
            }
        }
    }

    async fn view(&self, c: Cluster) -> Result<ClusterView> {
        let mut members = Vec::with_capacity(c.members.len());
        for m in &c.members {
            let agent = self.find_agent(&m.key).await?;
            let slots = self.instances.state(m.key.as_str());
            let status = match (&agent, &slots) {
                (None, _) => "missing",
                (Some(a), _) if a.status != AgentStatus::Active => "archived",
                (Some(_), Some(s)) => s.status,
                (Some(_), None) => "running",
            };
            let stats = self.metrics.agent_if_seen(m.key.as_str());
            let (total, succeeded, avg) = stats.map_or((0, 0, None), |s| {
                let n = s.latency().count();
                let avg = (n > 0).then(|| s.latency().sum().as_secs_f64() * 1000.0 / n as f64);
                (s.total(), s.count(crate::metrics::TurnStatus::Success), avg)
            });
            members.push(MemberView {
                key: m.key.clone(),
                agent,
                instances: m.instances,
                slots,
                status,
                total_requests: total,
                succeeded,
                avg_response_time_ms: avg,
            });
        }
        let status = if self.is_busy(c.name.as_str()) {
            "deploying"
        } else if members.iter().any(|m| m.status == "scaling") {
            "scaling"
        } else if !members.is_empty() && members.iter().all(|m| m.status == "idle") {
            "idle"
        } else {
            "running"
        };
        Ok(ClusterView {
            cluster: c,
            status,
            members,
        })
    }
}
