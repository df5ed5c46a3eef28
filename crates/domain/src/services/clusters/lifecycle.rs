//! Deleting a cluster (its agents archived) and scaling one of its agents.

use super::{ClusterService, Scaled, key_of, scaling_in_progress};
use crate::agent::{AgentFields, AgentKey, AgentRef, AgentStatus, ClusterName};
use crate::error::{Error, Result};

impl ClusterService {
    /// Archives agent `key`; `false` when it does not exist.
    pub(super) async fn archive(&self, key: &AgentKey) -> Result<bool> {
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
    pub(super) async fn changed(&self) {
        if let Err(e) = self.changes.record_change().await {
            tracing::warn!(error = %e, "could not record a cluster change for the other replicas");
        }
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
}
