//! Publishing, listing, restoring and serving agent versions.

use std::sync::Arc;

use crate::agent::{Agent, AgentRef};
use crate::error::{Invalid, Result};
use crate::page::{Page, Paged};
use crate::ports::{AgentStore, Clock, VersionStore};
use crate::version::{AgentVersion, ServedAgent};

/// Longest publishing note.
pub const NOTE_MAX_CHARS: usize = 2000;

/// The versions use cases.
#[derive(Clone)]
pub struct VersionService {
    agents: Arc<dyn AgentStore>,
    versions: Arc<dyn VersionStore>,
    clock: Arc<dyn Clock>,
}

impl VersionService {
    /// A service over its ports.
    pub fn new(
        agents: Arc<dyn AgentStore>,
        versions: Arc<dyn VersionStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            agents,
            versions,
            clock,
        }
    }

    /// Publishes the agent's current definition as its next version.
    ///
    /// # Errors
    /// `NotFound` (agent), `Invalid` (note too long or holding NUL characters).
    pub async fn publish(
        &self,
        agent: &AgentRef,
        note: Option<String>,
        created_by: Option<String>,
    ) -> Result<AgentVersion> {
        if note
            .as_ref()
            .is_some_and(|n| n.chars().count() > NOTE_MAX_CHARS)
        {
            return Err(Invalid::new(
                "note",
                format!("must be at most {NOTE_MAX_CHARS} characters"),
            )
            .into());
        }
        // PostgreSQL text cannot hold NUL: refuse it here rather than fail in storage.
        if note.as_ref().is_some_and(|n| n.contains('\u{0}')) {
            return Err(Invalid::new("note", "must not contain NUL characters").into());
        }
        let agent = self.agents.get_agent(agent).await?;
        self.versions
            .publish_version(
                &agent,
                note.as_deref(),
                created_by.as_deref(),
                self.clock.now(),
                false,
            )
            .await
    }

    /// Saves `snapshot` as the agent's next version, a **draft**: pinnable and restorable,
    /// never served by default (an optimisation's proposal).
    ///
    /// # Errors
    /// `NotFound` (agent).
    pub async fn save_draft(
        &self,
        snapshot: &Agent,
        note: String,
        created_by: Option<String>,
    ) -> Result<AgentVersion> {
        let note: String = note.chars().take(NOTE_MAX_CHARS).collect();
        self.versions
            .publish_version(
                snapshot,
                Some(&note),
                created_by.as_deref(),
                self.clock.now(),
                true,
            )
            .await
    }

    /// Versions of an agent, newest first.
    ///
    /// # Errors
    /// `NotFound` (agent).
    pub async fn list(&self, agent: &AgentRef, page: Page) -> Result<(Agent, Paged<AgentVersion>)> {
        let agent = self.agents.get_agent(agent).await?;
        let versions = self.versions.list_versions(&agent.id, page).await?;
        Ok((agent, versions))
    }

    /// One version.
    ///
    /// # Errors
    /// `NotFound` (agent or version).
    pub async fn get(&self, agent: &AgentRef, version: u32) -> Result<AgentVersion> {
        let agent = self.agents.get_agent(agent).await?;
        self.versions.get_version(&agent.id, version).await
    }

    /// Copies a version's definition back into the editable agent (the id, key, status,
    /// creator and creation time of the live agent are kept). Publishing again makes it the
    /// latest version.
    ///
    /// # Errors
    /// `NotFound` (agent or version), `Conflict` (its old name now belongs to another agent).
    pub async fn restore(&self, agent: &AgentRef, version: u32) -> Result<Agent> {
        let live = self.agents.get_agent(agent).await?;
        let v = self.versions.get_version(&live.id, version).await?;
        let restored = Agent {
            id: live.id,
            key: live.key,
            status: live.status,
            created_by: live.created_by,
            created_at: live.created_at,
            updated_at: self.clock.now(),
            ..v.snapshot
        };
        self.agents.update_agent(&restored).await?;
        Ok(restored)
    }

    /// The definition that serves a client call: the pinned version, else the latest
    /// published one, else the live definition of a never-published agent.
    ///
    /// # Errors
    /// `NotFound` (agent, or the pinned version).
    pub async fn serving(
        &self,
        agent: &AgentRef,
        pin: Option<u32>,
    ) -> Result<(Agent, ServedAgent)> {
        let live = self.agents.get_agent(agent).await?;
        let served = match pin {
            Some(0) => return Err(Invalid::new("version", "must be a positive integer").into()),
            Some(n) => {
                let v = self.versions.get_version(&live.id, n).await?;
                ServedAgent {
                    agent: v.snapshot,
                    version: Some(v.version),
                }
            }
            None => self.served(&live).await?,
        };
        Ok((live, served))
    }

    /// The definition that serves an agent already loaded: its latest published version, else
    /// the live definition.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn served(&self, live: &Agent) -> Result<ServedAgent> {
        Ok(match self.versions.latest_version(&live.id).await? {
            Some(v) => ServedAgent {
                agent: v.snapshot,
                version: Some(v.version),
            },
            None => ServedAgent {
                agent: live.clone(),
                version: None,
            },
        })
    }
}
