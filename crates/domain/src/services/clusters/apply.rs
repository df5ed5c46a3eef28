//! Applying a manifest: everything checked first, then the agents (created, replaced,
//! versions published, those left out archived), then the cluster record.

use serde_json::{Map, Value};

use super::{AgentChange, Applied, AppliedAgent, ApplyResult, ClusterService, scaling_in_progress};
use crate::agent::{
    Agent, AgentFields, AgentName, AgentRef, AgentStatus, AgentType, ClusterName, ModelRef,
    ModelSpec,
};
use crate::cluster::{Cluster, ClusterId, ClusterMember, Manifest, ManifestAgent};
use crate::error::{Error, Invalid, Result};

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
        && a.guardrails == b.guardrails
        && a.knowledge == b.knowledge
}

impl ClusterService {
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
            guardrails: f.guardrails.clone().unwrap_or_default(),
            knowledge: f.knowledge.clone().unwrap_or_default(),
            created_by: None,
            created_at: now,
            updated_at: now,
        })
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
}
