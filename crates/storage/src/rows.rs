//! Rows of `agents`, `agent_tags` and `providers`, and their conversion to and from domain
//! types. Rows never leave this crate; a stored value that no longer parses is an
//! `Internal` error.

use std::fmt;

use agentry_domain::agent::{
    Agent, AgentId, AgentKey, AgentName, AgentStatus, AgentType, ClusterName, MaxTokens, ModelRef,
    Tag, Temperature, ToolSpec, TopP,
};
use agentry_domain::guardrail::Guardrails;
use agentry_domain::knowledge::Knowledge;
use agentry_domain::provider::{BaseUrl, Provider, ProviderId, ProviderKind, ProviderSource};
use agentry_domain::{Error, Invalid};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::schema::{agent_tags, agents, providers};

/// One row of `agents`. `tags` and `tools` are JSON arrays.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = agents, treat_none_as_null = true)]
pub(crate) struct AgentRow {
    pub id: String,
    pub key: String,
    pub name: String,
    pub description: Option<String>,
    pub instructions: String,
    pub provider_id: String,
    pub model_name: String,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<i32>,
    pub tags: String,
    pub status: String,
    pub agent_type: String,
    pub tools: String,
    pub cluster: Option<String>,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub fallback_provider_id: Option<String>,
    pub fallback_model_name: Option<String>,
    pub guardrails: Option<String>,
    pub knowledge: Option<String>,
}

/// One row of `agent_tags`, the index behind the tags filter.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = agent_tags)]
pub(crate) struct AgentTagRow {
    pub agent_id: String,
    pub tag: String,
}

/// One row of `providers`. Its `Debug` hides the API key.
#[derive(Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = providers, treat_none_as_null = true)]
pub(crate) struct ProviderRow {
    pub id: String,
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub models: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl fmt::Debug for ProviderRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderRow")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("models", &self.models)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

impl TryFrom<&Agent> for AgentRow {
    type Error = Error;

    fn try_from(a: &Agent) -> Result<Self, Error> {
        let max_tokens = a.max_tokens.map(|m| i32::try_from(m.get())).transpose();
        let max_tokens =
            max_tokens.map_err(|_| Error::Internal("max_tokens does not fit the column".into()))?;
        Ok(Self {
            id: a.id.to_string(),
            key: a.key.to_string(),
            name: a.name.to_string(),
            description: a.description.clone(),
            instructions: a.instructions.clone(),
            provider_id: a.model.provider_id.to_string(),
            model_name: a.model.model_name.clone(),
            temperature: a.temperature.map(|t| t.get()),
            top_p: a.top_p.map(|t| t.get()),
            max_tokens,
            tags: json_strings(a.tags.iter().map(Tag::as_str)),
            status: a.status.as_str().to_owned(),
            agent_type: a.agent_type.to_string(),
            tools: Value::Array(
                a.tools
                    .iter()
                    .map(|t| Value::Object(t.as_json().clone()))
                    .collect(),
            )
            .to_string(),
            cluster: a.cluster.as_ref().map(ToString::to_string),
            created_by: a.created_by.clone(),
            created_at: a.created_at.naive_utc(),
            updated_at: a.updated_at.naive_utc(),
            fallback_provider_id: a.fallback_model.as_ref().map(|m| m.provider_id.to_string()),
            fallback_model_name: a.fallback_model.as_ref().map(|m| m.model_name.clone()),
            guardrails: (!a.guardrails.is_empty() || a.guardrails.refusal_message.is_some())
                .then(|| a.guardrails.to_json().to_string()),
            knowledge: (!a.knowledge.is_empty()).then(|| a.knowledge.to_json().to_string()),
        })
    }
}

impl AgentRow {
    /// The rows of `agent_tags` for this agent, without duplicates.
    pub(crate) fn tag_rows(agent: &Agent) -> Vec<AgentTagRow> {
        let mut rows: Vec<AgentTagRow> = Vec::with_capacity(agent.tags.len());
        for tag in &agent.tags {
            if !rows.iter().any(|r| r.tag == tag.as_str()) {
                rows.push(AgentTagRow {
                    agent_id: agent.id.to_string(),
                    tag: tag.to_string(),
                });
            }
        }
        rows
    }
}

impl TryFrom<AgentRow> for Agent {
    type Error = Error;

    fn try_from(row: AgentRow) -> Result<Self, Error> {
        let bad = |e: Invalid| corrupt("agent", &row.id, &e);
        let tags: Vec<String> = parse_json("agent", &row.id, "tags", &row.tags)?;
        let tools: Vec<Value> = parse_json("agent", &row.id, "tools", &row.tools)?;
        let guardrails = match row.guardrails.as_deref() {
            None => Guardrails::default(),
            Some(text) => {
                let v: Value = parse_json("agent", &row.id, "guardrails", text)?;
                Guardrails::parse(&v).map_err(bad)?
            }
        };
        let knowledge = match row.knowledge.as_deref() {
            None => Knowledge::default(),
            Some(text) => {
                let v: Value = parse_json("agent", &row.id, "knowledge", text)?;
                Knowledge::parse(&v, "knowledge").map_err(bad)?
            }
        };
        Ok(Self {
            id: AgentId::parse(&row.id).map_err(bad)?,
            key: AgentKey::parse(&row.key).map_err(bad)?,
            name: AgentName::parse(&row.name).map_err(bad)?,
            description: row.description,
            instructions: row.instructions,
            model: ModelRef {
                provider_id: ProviderId::parse(&row.provider_id).map_err(bad)?,
                model_name: row.model_name,
            },
            temperature: row
                .temperature
                .map(Temperature::parse)
                .transpose()
                .map_err(bad)?,
            top_p: row.top_p.map(TopP::parse).transpose().map_err(bad)?,
            max_tokens: row
                .max_tokens
                .map(|m| MaxTokens::parse(m.into()))
                .transpose()
                .map_err(bad)?,
            tags: tags
                .iter()
                .map(|t| Tag::parse(t))
                .collect::<Result<_, _>>()
                .map_err(bad)?,
            status: AgentStatus::parse(&row.status).map_err(bad)?,
            agent_type: AgentType::parse(&row.agent_type).map_err(bad)?,
            tools: ToolSpec::parse_stored(tools).map_err(bad)?,
            cluster: row
                .cluster
                .as_deref()
                .map(ClusterName::parse)
                .transpose()
                .map_err(bad)?,
            fallback_model: match (row.fallback_provider_id, row.fallback_model_name) {
                (Some(p), Some(model_name)) => Some(ModelRef {
                    provider_id: ProviderId::parse(&p).map_err(bad)?,
                    model_name,
                }),
                _ => None,
            },
            guardrails,
            knowledge,
            created_by: row.created_by,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        })
    }
}

impl From<&Provider> for ProviderRow {
    fn from(p: &Provider) -> Self {
        Self {
            id: p.id.to_string(),
            kind: p.kind.as_str().to_owned(),
            base_url: p.base_url.as_ref().map(|u| u.as_str().to_owned()),
            api_key: p.api_key.as_ref().map(|k| k.expose_secret().to_owned()),
            models: json_strings(p.models.iter().map(String::as_str)),
            created_at: p.created_at.naive_utc(),
            updated_at: p.updated_at.naive_utc(),
        }
    }
}

impl TryFrom<ProviderRow> for Provider {
    type Error = Error;

    fn try_from(row: ProviderRow) -> Result<Self, Error> {
        let bad = |e: Invalid| corrupt("provider", &row.id, &e);
        Ok(Self {
            id: ProviderId::parse(&row.id).map_err(bad)?,
            kind: ProviderKind::parse(&row.kind).map_err(bad)?,
            base_url: row
                .base_url
                .as_deref()
                .map(BaseUrl::parse)
                .transpose()
                .map_err(bad)?,
            api_key: row.api_key.map(SecretString::from),
            models: parse_json("provider", &row.id, "models", &row.models)?,
            source: ProviderSource::Api,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        })
    }
}

/// A JSON array of strings.
fn json_strings<'a>(items: impl Iterator<Item = &'a str>) -> String {
    Value::Array(items.map(|s| Value::String(s.to_owned())).collect()).to_string()
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    entity: &str,
    id: &str,
    column: &str,
    text: &str,
) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| {
        Error::Internal(format!(
            "stored {entity} '{id}' has invalid {column} JSON: {e}"
        ))
    })
}

/// A stored row that no longer reads, for a reason in words.
pub(crate) fn corrupt_text(entity: &str, id: &str, reason: &str) -> Error {
    Error::Internal(format!("stored {entity} '{id}' is invalid: {reason}"))
}

pub(crate) fn corrupt(entity: &str, id: &str, e: &Invalid) -> Error {
    Error::Internal(format!(
        "stored {entity} '{id}' is invalid: {}: {}",
        e.field, e.reason
    ))
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;

    use super::ProviderRow;

    #[test]
    fn provider_row_debug_hides_the_key() {
        let row = ProviderRow {
            id: "p".into(),
            kind: "openai".into(),
            base_url: None,
            api_key: Some("sk-very-secret".into()),
            models: "[]".into(),
            created_at: NaiveDateTime::default(),
            updated_at: NaiveDateTime::default(),
        };
        let shown = format!("{row:?}");
        assert!(
            !shown.contains("sk-very-secret") && shown.contains("REDACTED"),
            "{shown}"
        );
    }
}
