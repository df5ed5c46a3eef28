//! Rows of `agent_versions` and the snapshot format: the whole agent definition as JSON.
//!
//! The format is private to this crate. It reads back exactly what was written: every field
//! of [`Agent`], timestamps to the nanosecond (RFC 3339), floats to the bit (serde_json's
//! `float_roundtrip`), tools as given, `None`s as `null`. A snapshot is converted back through
//! an [`AgentRow`], so stored versions are checked by the same rules as stored agents; one
//! that no longer parses is an `Internal` error.

use agentry_domain::agent::Agent;
use agentry_domain::version::AgentVersion;
use agentry_domain::{Error, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rows::AgentRow;
use crate::schema::agent_versions;

/// The snapshot format written today.
const SNAPSHOT_FORMAT: u32 = 1;

/// One row of `agent_versions`. `snapshot` is a [`Snapshot`] as JSON.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = agent_versions)]
pub(crate) struct VersionRow {
    pub agent_id: String,
    pub version: i32,
    pub snapshot: String,
    pub note: Option<String>,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
    /// 1 for a draft (an optimisation's proposal, never served by default).
    pub draft: i32,
}

/// An agent definition as stored in a version.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snapshot {
    /// [`SNAPSHOT_FORMAT`] when written.
    format: u32,
    id: String,
    key: String,
    name: String,
    description: Option<String>,
    instructions: String,
    provider_id: String,
    model_name: String,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    tags: Vec<String>,
    status: String,
    agent_type: String,
    tools: Vec<Value>,
    cluster: Option<String>,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Absent from snapshots written before fallback models existed.
    #[serde(default)]
    fallback_provider_id: Option<String>,
    #[serde(default)]
    fallback_model_name: Option<String>,
    /// Absent from snapshots written before guardrails existed (and when there are none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    guardrails: Option<Value>,
    /// Absent from snapshots written before knowledge existed (and when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    knowledge: Option<Value>,
}

/// The snapshot of `agent` as stored JSON.
pub(crate) fn encode_snapshot(a: &Agent) -> Result<String> {
    let snapshot = Snapshot {
        format: SNAPSHOT_FORMAT,
        id: a.id.to_string(),
        key: a.key.to_string(),
        name: a.name.to_string(),
        description: a.description.clone(),
        instructions: a.instructions.clone(),
        provider_id: a.model.provider_id.to_string(),
        model_name: a.model.model_name.clone(),
        temperature: a.temperature.map(|t| t.get()),
        top_p: a.top_p.map(|t| t.get()),
        max_tokens: a.max_tokens.map(|m| m.get()),
        tags: a.tags.iter().map(ToString::to_string).collect(),
        status: a.status.as_str().to_owned(),
        agent_type: a.agent_type.to_string(),
        tools: a
            .tools
            .iter()
            .map(|t| Value::Object(t.as_json().clone()))
            .collect(),
        cluster: a.cluster.as_ref().map(ToString::to_string),
        created_by: a.created_by.clone(),
        created_at: a.created_at,
        updated_at: a.updated_at,
        fallback_provider_id: a.fallback_model.as_ref().map(|m| m.provider_id.to_string()),
        fallback_model_name: a.fallback_model.as_ref().map(|m| m.model_name.clone()),
        guardrails: (!a.guardrails.is_empty() || a.guardrails.refusal_message.is_some())
            .then(|| a.guardrails.to_json()),
        knowledge: (!a.knowledge.is_empty()).then(|| a.knowledge.to_json()),
    };
    serde_json::to_string(&snapshot)
        .map_err(|e| Error::Internal(format!("cannot encode the snapshot of '{}': {e}", a.id)))
}

/// The agent stored in a version's snapshot.
fn decode_snapshot(row: &VersionRow) -> Result<Agent> {
    let bad = |reason: String| {
        Error::Internal(format!(
            "stored version {} of agent '{}' has an invalid snapshot: {reason}",
            row.version, row.agent_id
        ))
    };
    let s: Snapshot = serde_json::from_str(&row.snapshot).map_err(|e| bad(e.to_string()))?;
    if s.format != SNAPSHOT_FORMAT {
        return Err(bad(format!("unknown format {}", s.format)));
    }
    if s.id != row.agent_id {
        return Err(bad(format!("it is the snapshot of agent '{}'", s.id)));
    }
    let max_tokens = s
        .max_tokens
        .map(i32::try_from)
        .transpose()
        .map_err(|_| bad("max_tokens out of range".to_owned()))?;
    let as_row = AgentRow {
        id: s.id,
        key: s.key,
        name: s.name,
        description: s.description,
        instructions: s.instructions,
        provider_id: s.provider_id,
        model_name: s.model_name,
        temperature: s.temperature,
        top_p: s.top_p,
        max_tokens,
        tags: Value::from(s.tags).to_string(),
        status: s.status,
        agent_type: s.agent_type,
        tools: Value::Array(s.tools).to_string(),
        cluster: s.cluster,
        created_by: s.created_by,
        created_at: s.created_at.naive_utc(),
        updated_at: s.updated_at.naive_utc(),
        fallback_provider_id: s.fallback_provider_id,
        fallback_model_name: s.fallback_model_name,
        guardrails: s.guardrails.map(|g| g.to_string()),
        knowledge: s.knowledge.map(|k| k.to_string()),
    };
    Agent::try_from(as_row).map_err(|e| bad(e.to_string()))
}

impl TryFrom<VersionRow> for AgentVersion {
    type Error = Error;

    fn try_from(row: VersionRow) -> Result<Self> {
        let snapshot = decode_snapshot(&row)?;
        let version = u32::try_from(row.version).map_err(|_| {
            Error::Internal(format!(
                "stored version {} of agent '{}' is not positive",
                row.version, row.agent_id
            ))
        })?;
        Ok(Self {
            agent_id: snapshot.id.clone(),
            version,
            snapshot,
            note: row.note,
            created_by: row.created_by,
            created_at: row.created_at.and_utc(),
            draft: row.draft != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use agentry_domain::Error;
    use agentry_domain::version::AgentVersion;
    use chrono::NaiveDateTime;

    use super::VersionRow;

    fn row(snapshot: &str) -> VersionRow {
        VersionRow {
            agent_id: "agent_0193a0b2c3d47e8f9a0b1c2d3e4f5a6b".into(),
            version: 1,
            snapshot: snapshot.into(),
            note: None,
            created_by: None,
            created_at: NaiveDateTime::default(),
            draft: 0,
        }
    }

    #[test]
    fn unreadable_snapshots_are_internal_errors() {
        for bad in ["", "not json", "{}", r#"{"format": 2}"#, "[1, 2]"] {
            let got = AgentVersion::try_from(row(bad));
            assert!(matches!(got, Err(Error::Internal(_))), "{bad}: {got:?}");
        }
    }
}
