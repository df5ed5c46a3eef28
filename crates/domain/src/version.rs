//! Published agent versions: immutable, numbered snapshots of an agent's definition.
//!
//! Callers of the client API get the latest published version unless they pin one; an agent
//! that was never published is served from its live definition (so a new agent works at once),
//! and answers then carry no version number.

use chrono::{DateTime, Utc};

use crate::agent::{Agent, AgentId};

/// One published version.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentVersion {
    /// The agent.
    pub agent_id: AgentId,
    /// 1, 2, 3… per agent, in publishing order.
    pub version: u32,
    /// The definition as it was when published (id, key and timestamps included).
    pub snapshot: Agent,
    /// Why it was published.
    pub note: Option<String>,
    /// Who published it.
    pub created_by: Option<String>,
    /// When it was published.
    pub created_at: DateTime<Utc>,
    /// A draft: proposed (by an optimisation), pinnable and restorable, but never served by
    /// default — the latest published version is the highest one that is not a draft.
    pub draft: bool,
}

/// Which definition serves a call.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedAgent {
    /// The definition that answers.
    pub agent: Agent,
    /// Its version number; `None` when the live definition of a never-published agent serves.
    pub version: Option<u32>,
}
