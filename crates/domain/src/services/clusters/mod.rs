//! Clusters: applying `AgentCluster` manifests, scaling their agents, reading their state.
//!
//! Applying a manifest makes it true: each listed agent exists with that definition (created,
//! or replaced when it differs), belongs to the cluster and is active; each created or changed
//! agent gets a published version, so what was applied is what the client API serves; agents
//! that left the manifest are archived; the cluster record keeps the policy and each member's
//! instances. Applying the same manifest again changes nothing. Deleting a cluster archives
//! its agents (decision 70).
//!
//! - `instances.rs`: the concurrency slots of cluster agents on this replica (and scale to
//!   zero).

mod instances;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};

pub(crate) use instances::Slot;
pub use instances::{InstanceSettings, Instances, SlotState};

use crate::agent::{
    Agent, AgentFields, AgentKey, AgentName, AgentRef, AgentStatus, AgentType, ClusterName,
    ModelRef, ModelSpec,
};
use crate::cluster::{Cluster, ClusterId, ClusterMember, ClusterStore, Manifest, ManifestAgent};
use crate::error::{Error, Invalid, Result};
use crate::mcp::McpServerRef;
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

/// A 409 `CLUSTER_EXISTS`.
fn cluster_exists(name: &ClusterName) -> Error {
    let mut extra = Map::new();
    extra.insert("code".to_owned(), Value::from("CLUSTER_EXISTS"));
    Error::Conflict {
        message: format!("a cluster named '{name}' already exists"),
        field: Some("metadata.name".to_owned()),
        extra,
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

/// Whether two agents have the same definition (what a manifest sets), ignoring ids, times,
/// the creator and the status.
fn same_definition(a: &Agent, b: &Agent) -> bool {
    a.key == b.key
        && a.name == b.name
        && a.description == b.description
        && a.instructions == b.instructions
        && a.model == b.model
        && a.temperature == b.temperature
        && a.top_p == b.top_p
        && a.max_tokens == b.max_tokens
        && a.tags == b.tags
        && a.agent_type == b.agent_type
        && a.tools == b.tools
        && a.cluster == b.cluster
        && a.fallback_model == b.fallback_model
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

    async fn resolve(&self, spec: &ModelSpec) -> Result<ModelRef> {
        match self.providers.resolve(spec).await {
            Err(Error::ModelNotFound {
                model,
                available_models,
                ..
            }) => Err(
                Invalid::new(&spec.field, format!("unknown model '{model}'"))
                    .with("available_models", available_models)
                    .into(),
            ),
            other => other,
        }
    }

    /// The fields a manifest agent is saved with: its own, plus its key, the cluster and the
    /// `active` status.
    fn fields_for(a: &ManifestAgent, cluster: &ClusterName) -> AgentFields {
        AgentFields {
            key: Some(a.key.clone()),
            cluster: Some(Some(cluster.clone())),
            status: Some(AgentStatus::Active),
            ..a.fields.clone()
        }
    }

    /// The agent a manifest entry describes (its model resolved), to compare with what is
    /// stored; `live` lends what the manifest does not set.
    async fn desired(
        &self,
        a: &ManifestAgent,
        cluster: &ClusterName,
        live: Option<&Agent>,
    ) -> Result<Agent> {
        let f = Self::fields_for(a, cluster);
        let model = self
            .resolve(f.model.as_ref().unwrap_or(&self.default_model))
            .await?;
        let fallback_model = match f.fallback_model.clone().flatten() {
            Some(spec) => Some(self.resolve(&spec).await?),
            None => None,
        };
        let name = match f.name {
            Some(n) => n,
            None => AgentName::parse(a.key.as_str())?,
        };
        let now = self.clock.now();
        Ok(Agent {
            id: live.map_or_else(crate::agent::AgentId::generate, |l| l.id.clone()),
            key: a.key.clone(),
            name,
            description: f.description.flatten(),
            instructions: f.instructions.unwrap_or_default(),
            model,
            temperature: f.temperature.flatten(),
            top_p: f.top_p.flatten(),
            max_tokens: f.max_tokens.flatten(),
            tags: f.tags.unwrap_or_default(),
            status: AgentStatus::Active,
            agent_type: f.agent_type.unwrap_or_else(AgentType::chat),
            tools: f.tools.unwrap_or_default(),
            cluster: Some(cluster.clone()),
            fallback_model,
            created_by: None,
            created_at: now,
            updated_at: now,
        })
    }

    async fn archive(&self, key: &AgentKey) -> Result<bool> {
        let fields = AgentFields {
            status: Some(AgentStatus::Archived),
            ..AgentFields::default()
        };
        match self.agents.patch(&AgentRef::Key(key.clone()), fields).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Tells the other replicas that clusters changed (they reload within a second).
    async fn changed(&self) {
        if let Err(e) = self.changes.record_change().await {
            tracing::warn!(error = %e, "could not record a cluster change for the other replicas");
        }
    }

    /// Creates a cluster from a manifest.
    ///
    /// # Errors
    /// `Conflict` with code `CLUSTER_EXISTS` when the name is taken; as [`ClusterService::apply`].
    #[tracing::instrument(skip_all, fields(cluster = %manifest.name))]
    pub async fn create(&self, manifest: Manifest, created_by: Option<String>) -> Result<Applied> {
        self.apply_manifest(manifest, created_by, true).await
    }

    /// Applies a manifest: creates the cluster, or makes the existing one match it.
    ///
    /// # Errors
    /// `Invalid` (the manifest, an unknown model: nothing changed), `Conflict` (an agent key
    /// taken outside the cluster: nothing changed; code `SCALING_IN_PROGRESS` while another
    /// apply or scale of the cluster runs), storage failures (what was done stays; applying
    /// again finishes the job).
    #[tracing::instrument(skip_all, fields(cluster = %manifest.name))]
    pub async fn apply(&self, manifest: Manifest, created_by: Option<String>) -> Result<Applied> {
        self.apply_manifest(manifest, created_by, false).await
    }

    async fn apply_manifest(
        &self,
        manifest: Manifest,
        created_by: Option<String>,
        create_only: bool,
    ) -> Result<Applied> {
        manifest.check()?;
        let _busy = self.begin(manifest.name.as_str())?;
        let existing = self.find(&manifest.name).await?;
        if create_only && existing.is_some() {
            return Err(cluster_exists(&manifest.name));
        }
        // Everything is checked before anything changes.
        let mut plan = Vec::with_capacity(manifest.agents.len());
        for (i, a) in manifest.agents.iter().enumerate() {
            let live = self.find_agent(&a.key).await?;
            if let Some(l) = &live
                && l.cluster.as_ref() != Some(&manifest.name)
            {
                let owner = l.cluster.as_ref().map_or_else(
                    || "outside any cluster".to_owned(),
                    |c| format!("in the cluster '{c}'"),
                );
                return Err(Error::Conflict {
                    message: format!(
                        "an agent with key '{}' already exists {owner}; rename the agent in the manifest or delete that agent",
                        a.key
                    ),
                    field: Some(format!("spec.agents[{i}].name")),
                    extra: Map::new(),
                });
            }
            let desired = self.desired(a, &manifest.name, live.as_ref()).await?;
            plan.push((a, desired, live));
        }
        let note = format!("applied from cluster '{}'", manifest.name);
        let mut changes = Vec::with_capacity(plan.len());
        for (a, desired, live) in plan {
            let fields = Self::fields_for(a, &manifest.name);
            let (mut change, agent) = match live {
                None => (
                    AgentChange::Created,
                    self.agents.create(fields, created_by.clone()).await?,
                ),
                Some(live)
                    if !same_definition(&live, &desired) || live.status != AgentStatus::Active =>
                {
                    (
                        AgentChange::Updated,
                        self.agents
                            .replace(&AgentRef::Id(live.id.clone()), fields)
                            .await?,
                    )
                }
                Some(live) => (AgentChange::Unchanged, live),
            };
            let served = self.versions.served(&agent).await?;
            let version = if served.version.is_none() || !same_definition(&served.agent, &desired) {
                let v = self
                    .versions
                    .publish(
                        &AgentRef::Id(agent.id.clone()),
                        Some(note.clone()),
                        created_by.clone(),
                    )
                    .await?;
                if change == AgentChange::Unchanged {
                    change = AgentChange::Updated;
                }
                Some(v.version)
            } else {
                None
            };
            changes.push(AppliedAgent {
                key: agent.key,
                change,
                version,
            });
        }
        if let Some(old) = &existing {
            for m in &old.members {
                if manifest.agents.iter().any(|a| a.key == m.key) {
                    continue;
                }
                self.archive(&m.key).await?;
                changes.push(AppliedAgent {
                    key: m.key.clone(),
                    change: AgentChange::Archived,
                    version: None,
                });
            }
        }
        let members: Vec<ClusterMember> = manifest
            .agents
            .iter()
            .map(|a| ClusterMember {
                key: a.key.clone(),
                instances: a
                    .instances
                    .or_else(|| {
                        existing
                            .as_ref()
                            .and_then(|c| c.members.iter().find(|m| m.key == a.key))
                            .map(|m| m.instances)
                    })
                    .unwrap_or(1),
            })
            .collect();
        let now = self.clock.now();
        let agents_changed = changes.iter().any(|c| c.change != AgentChange::Unchanged);
        let (cluster, result) = match existing {
            None => {
                let c = Cluster {
                    id: ClusterId::generate(),
                    name: manifest.name.clone(),
                    namespace: manifest.namespace,
                    api_version: manifest.api_version,
                    policy: manifest.policy,
                    members,
                    generation: 1,
                    created_by,
                    created_at: now,
                    updated_at: now,
                };
                match self.store.insert_cluster(&c).await {
                    Ok(()) => {}
                    Err(Error::Conflict { .. }) => return Err(cluster_exists(&manifest.name)),
                    Err(e) => return Err(e),
                }
                (c, ApplyResult::Created)
            }
            Some(old) => {
                let same = old.namespace == manifest.namespace
                    && old.api_version == manifest.api_version
                    && old.policy == manifest.policy
                    && old.members == members;
                if same && !agents_changed {
                    (old, ApplyResult::Unchanged)
                } else {
                    let new = Cluster {
                        namespace: manifest.namespace,
                        api_version: manifest.api_version,
                        policy: manifest.policy,
                        members,
                        generation: old.generation + 1,
                        updated_at: now,
                        ..old.clone()
                    };
                    if !self.store.update_cluster(&new, old.generation).await? {
                        return Err(scaling_in_progress(manifest.name.as_str()));
                    }
                    (new, ApplyResult::Configured)
                }
            }
        };
        self.instances.upsert(&cluster);
        if result != ApplyResult::Unchanged {
            self.changed().await;
        }
        Ok(Applied {
            cluster,
            result,
            agents: changes,
        })
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

    /// Deletes a cluster and archives its agents (their conversations and versions are
    /// kept; applying the manifest again brings them back). `None` when there was no such
    /// cluster (deleting twice is not an error); else the archived agents' keys.
    ///
    /// # Errors
    /// `Conflict` (code `SCALING_IN_PROGRESS`) while an apply or scale of it runs here;
    /// storage failures.
    #[tracing::instrument(skip_all, fields(cluster = %name))]
    pub async fn delete(&self, name: &ClusterName) -> Result<Option<Vec<AgentKey>>> {
        let _busy = self.begin(name.as_str())?;
        let Some(c) = self.find(name).await? else {
            return Ok(None);
        };
        let mut archived = Vec::new();
        for m in &c.members {
            if self.archive(&m.key).await? {
                archived.push(m.key.clone());
            }
        }
        self.store.delete_cluster(&c.id).await?;
        self.instances.remove(name.as_str());
        self.release_mcp(&archived).await;
        self.changed().await;
        Ok(Some(archived))
    }

    /// Sets the instances of one agent of a cluster (`agent` is its key or manifest name).
    /// Growing takes effect at once; shrinking lets running turns end (status `scaling`
    /// until they have).
    ///
    /// # Errors
    /// `NotFound` (cluster, or agent not in it), `Invalid` (instances out of range),
    /// `Conflict` (code `SCALING_IN_PROGRESS`) while another apply or scale of the cluster
    /// runs.
    #[tracing::instrument(skip_all, fields(cluster = %name))]
    pub async fn scale(&self, name: &ClusterName, agent: &str, instances: u32) -> Result<Scaled> {
        crate::cluster::parse_instances("instances", i64::from(instances))?;
        let _busy = self.begin(name.as_str())?;
        let c = self.store.get_cluster(name).await?;
        let Some(pos) = key_of(agent).and_then(|k| c.members.iter().position(|m| m.key == k))
        else {
            return Err(Error::not_found("agent", agent));
        };
        let previous = c.members[pos].instances;
        let mut new = c.clone();
        if previous != instances {
            new.members[pos].instances = instances;
            new.generation = c.generation + 1;
            new.updated_at = self.clock.now();
            if !self.store.update_cluster(&new, c.generation).await? {
                return Err(scaling_in_progress(name.as_str()));
            }
        }
        self.instances.upsert(&new);
        if previous != instances {
            self.changed().await;
        }
        let key = new.members[pos].key.clone();
        let state = self.instances.state(key.as_str());
        Ok(Scaled {
            previous_instances: previous,
            target_instances: instances,
            current_instances: state.as_ref().map_or(instances, |s| s.current_instances),
            status: state.as_ref().map_or("running", |s| s.status),
            key,
        })
    }

    /// Loads every cluster into this replica's slots.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn reload(&self) -> Result<()> {
        let all = self.list_all().await?;
        self.instances.sync(&all);
        Ok(())
    }

    /// Stops the MCP servers the given (now idle or archived) agents bind, unless a running
    /// cluster agent binds them too. Others using them start them again on their next turn.
    async fn release_mcp(&self, keys: &[AgentKey]) {
        if keys.is_empty() {
            return;
        }
        let slugs = |a: &Agent| -> Vec<crate::mcp::McpSlug> {
            a.tools
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.mcp_binding(i).map(|b| b.server))
                .collect()
        };
        let mut release = Vec::new();
        for key in keys {
            if let Ok(Some(a)) = self.find_agent(key).await {
                release.extend(slugs(&a));
            }
        }
        if release.is_empty() {
            return;
        }
        let mut keep = Vec::new();
        for key in self.instances.running_keys() {
            if let Some(k) = key_of(&key)
                && let Ok(Some(a)) = self.find_agent(&k).await
                && a.status == AgentStatus::Active
            {
                keep.extend(slugs(&a));
            }
        }
        release.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        release.dedup();
        for slug in release {
            if keep.contains(&slug) {
                continue;
            }
            match self.mcp.stop(&McpServerRef::Slug(slug.clone())).await {
                Ok(_) => tracing::info!(server = %slug, "stopped the MCP server of an idle agent"),
                Err(Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(server = %slug, error = %e, "could not stop an MCP server")
                }
            }
        }
    }

    /// The work beside requests, forever: every 250 ms, scale idle agents to zero (and stop
    /// their MCP servers); every second, reload the clusters when the shared change counter
    /// moved (another replica applied or scaled).
    pub fn background(&self) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ticks: u64 = 0;
            let mut seen: Option<i64> = None;
            let mut failing = false;
            loop {
                every.tick().await;
                ticks += 1;
                let idle: Vec<AgentKey> = this
                    .instances
                    .sweep()
                    .iter()
                    .filter_map(|k| AgentKey::parse(k).ok())
                    .collect();
                this.release_mcp(&idle).await;
                if !ticks.is_multiple_of(4) {
                    continue;
                }
                let moved = match this.changes.change_counter().await {
                    Ok(n) => {
                        let moved = seen != Some(n);
                        seen = Some(n);
                        moved
                    }
                    Err(_) => true,
                };
                if moved {
                    match this.reload().await {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            tracing::warn!(error = %e, "could not reload the clusters");
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }
}
