//! Agents: a model, instructions and parameters behind a stable key.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::Invalid;
use crate::provider::ProviderId;
use crate::text::{check_handle, check_slug, check_text, handle_from_name};

/// The prefix of agent ids.
pub const AGENT_ID_PREFIX: &str = "agent";
/// Longest agent key.
pub const KEY_MAX: usize = 64;
/// Most tags on one agent.
pub const TAGS_MAX: usize = 32;
/// Most tools on one agent.
pub const TOOLS_MAX: usize = 64;
/// Longest instructions, in characters.
pub const INSTRUCTIONS_MAX: usize = 200_000;
/// Largest `max_tokens`.
pub const MAX_TOKENS_LIMIT: u32 = 1_000_000;

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_newtype!(
    /// An agent's id: `agent_` followed by 32 lowercase hex digits (a UUIDv7).
    AgentId
);
text_newtype!(
    /// An agent's key: a unique slug, the `model` of the client API (`support-bot`).
    AgentKey
);
text_newtype!(
    /// An agent's unique display name: 1 to 128 characters, no control characters.
    AgentName
);
text_newtype!(
    /// An agent's type (`chat`, `task`…): a slug of at most 64 characters.
    AgentType
);
text_newtype!(
    /// A tag: 1 to 64 characters, no commas (lists filter on comma-separated tags).
    Tag
);
text_newtype!(
    /// The name of the cluster an agent belongs to: a slug.
    ClusterName
);

impl AgentId {
    /// A fresh id.
    pub fn generate() -> Self {
        Self(crate::ids::new_id(AGENT_ID_PREFIX))
    }

    /// Accepts text that has the shape of an agent id.
    ///
    /// # Errors
    /// [`Invalid`] naming `id`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        if crate::ids::is_id(value, AGENT_ID_PREFIX) {
            Ok(Self(value.to_owned()))
        } else {
            Err(Invalid::new("id", "is not an agent id"))
        }
    }
}

impl AgentKey {
    /// Validates a key. Keys never start with `agent_`, so a key is never mistaken for an id.
    ///
    /// # Errors
    /// [`Invalid`] naming `key`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check_handle("key", value, KEY_MAX, "agent_")?;
        Ok(Self(value.to_owned()))
    }

    /// The key derived from a name: `Customer Support` → `customer-support`.
    ///
    /// # Errors
    /// [`Invalid`] naming `key` when the name has no letters or digits to build a key from.
    pub fn from_name(name: &AgentName) -> Result<Self, Invalid> {
        handle_from_name("key", name.as_str(), KEY_MAX).map(Self)
    }
}

impl AgentName {
    /// Validates a name (surrounding whitespace removed).
    ///
    /// # Errors
    /// [`Invalid`] naming `name`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let v = value.trim();
        check_text("name", v, 1, 128, false)?;
        Ok(Self(v.to_owned()))
    }
}

impl AgentType {
    /// The default type.
    pub fn chat() -> Self {
        Self("chat".to_owned())
    }

    /// Validates a type.
    ///
    /// # Errors
    /// [`Invalid`] naming `type`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check_slug("type", value, 64)?;
        Ok(Self(value.to_owned()))
    }
}

impl Tag {
    /// Validates a tag (surrounding whitespace removed).
    ///
    /// # Errors
    /// [`Invalid`] naming `tags`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let v = value.trim();
        check_text("tags", v, 1, 64, false)?;
        if v.contains(',') {
            return Err(Invalid::new("tags", "a tag must not contain ','"));
        }
        Ok(Self(v.to_owned()))
    }

    /// Validates a list of tags; duplicates are removed, order is kept.
    ///
    /// # Errors
    /// [`Invalid`] naming `tags`.
    pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<Vec<Self>, Invalid> {
        if values.len() > TAGS_MAX {
            return Err(Invalid::new("tags", format!("at most {TAGS_MAX} tags")));
        }
        let mut out: Vec<Self> = Vec::with_capacity(values.len());
        for v in values {
            let t = Self::parse(v.as_ref())?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }
}

impl ClusterName {
    /// Validates a cluster name.
    ///
    /// # Errors
    /// [`Invalid`] naming `cluster`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check_slug("cluster", value, 64)?;
        Ok(Self(value.to_owned()))
    }
}

/// Validates instructions (the system prompt): at most 200,000 characters; may be empty.
///
/// # Errors
/// [`Invalid`] naming `instructions`.
pub fn parse_instructions(value: &str) -> Result<String, Invalid> {
    if value.chars().count() > INSTRUCTIONS_MAX {
        return Err(Invalid::new(
            "instructions",
            format!("must be at most {INSTRUCTIONS_MAX} characters"),
        ));
    }
    if value.contains('\u{0}') {
        return Err(Invalid::new(
            "instructions",
            "must not contain NUL characters",
        ));
    }
    Ok(value.to_owned())
}

/// Validates a description: at most 2,000 characters.
///
/// # Errors
/// [`Invalid`] naming `description`.
pub fn parse_description(value: &str) -> Result<String, Invalid> {
    if value.chars().count() > 2000 {
        return Err(Invalid::new(
            "description",
            "must be at most 2000 characters",
        ));
    }
    if value.contains('\u{0}') {
        return Err(Invalid::new(
            "description",
            "must not contain NUL characters",
        ));
    }
    Ok(value.to_owned())
}

/// Sampling temperature, 0 to 2.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Temperature(f64);

impl Temperature {
    /// Validates a temperature.
    ///
    /// # Errors
    /// [`Invalid`] naming `temperature`.
    pub fn parse(value: f64) -> Result<Self, Invalid> {
        if value.is_finite() && (0.0..=2.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(Invalid::new("temperature", "must be between 0 and 2"))
        }
    }

    /// The value.
    pub fn get(&self) -> f64 {
        self.0
    }
}

/// Nucleus sampling, 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct TopP(f64);

impl TopP {
    /// Validates a top-p.
    ///
    /// # Errors
    /// [`Invalid`] naming `top_p`.
    pub fn parse(value: f64) -> Result<Self, Invalid> {
        if value.is_finite() && (0.0..=1.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(Invalid::new("top_p", "must be between 0 and 1"))
        }
    }

    /// The value.
    pub fn get(&self) -> f64 {
        self.0
    }
}

/// Largest number of tokens in one answer, 1 to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MaxTokens(u32);

impl MaxTokens {
    /// Validates a token limit.
    ///
    /// # Errors
    /// [`Invalid`] naming `max_tokens`.
    pub fn parse(value: i64) -> Result<Self, Invalid> {
        match u32::try_from(value) {
            Ok(v) if (1..=MAX_TOKENS_LIMIT).contains(&v) => Ok(Self(v)),
            _ => Err(Invalid::new(
                "max_tokens",
                format!("must be between 1 and {MAX_TOKENS_LIMIT}"),
            )),
        }
    }

    /// The value.
    pub fn get(&self) -> u32 {
        self.0
    }
}

/// An agent's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentStatus {
    /// Being written; not served to clients.
    Draft,
    /// Served.
    Active,
    /// Kept but not served.
    Inactive,
    /// Retired; not served.
    Archived,
}

impl AgentStatus {
    /// All statuses, in their wire spelling.
    pub const ALL: [&'static str; 4] = ["draft", "active", "inactive", "archived"];

    /// Parses the wire spelling.
    ///
    /// # Errors
    /// [`Invalid`] naming `status`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        match value {
            "draft" => Ok(Self::Draft),
            "active" => Ok(Self::Active),
            "inactive" => Ok(Self::Inactive),
            "archived" => Ok(Self::Archived),
            _ => Err(
                Invalid::new("status", "must be one of draft, active, inactive, archived")
                    .with("allowed", Self::ALL.to_vec()),
            ),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Archived => "archived",
        }
    }
}

/// A resolved model reference: a provider that exists and a model it serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    /// The provider.
    pub provider_id: ProviderId,
    /// The model name at that provider.
    pub model_name: String,
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider_id, self.model_name)
    }
}

/// A model as a caller named it, not yet resolved against the providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The provider the caller named, if any.
    pub provider_id: Option<String>,
    /// The model name (or `provider/model` text when `provider_id` is `None`).
    pub model: String,
    /// The field the caller used (`llmModel`, `config.model`, `model_ref`…), for errors.
    pub field: String,
}

/// One tool bound to an agent, kept as the caller described it (an object with a string
/// `type` and `name`, such as `{"type": "http", "name": "customer_db", "url": "…"}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec(serde_json::Map<String, Value>);

impl ToolSpec {
    /// Validates a list of tool descriptions.
    ///
    /// # Errors
    /// [`Invalid`] naming `tools`.
    pub fn parse_list(values: Vec<Value>) -> Result<Vec<Self>, Invalid> {
        Self::parse(values, true)
    }

    /// Reads a stored list: what [`ToolSpec::parse_list`] accepts, and also what earlier
    /// versions stored before MCP bindings were checked (`{"type": "mcp", "name": …}`
    /// without `server`), kept as it is and never run.
    ///
    /// # Errors
    /// [`Invalid`] naming `tools`.
    pub fn parse_stored(values: Vec<Value>) -> Result<Vec<Self>, Invalid> {
        Self::parse(values, false)
    }

    fn parse(values: Vec<Value>, strict: bool) -> Result<Vec<Self>, Invalid> {
        if values.len() > TOOLS_MAX {
            return Err(Invalid::new("tools", format!("at most {TOOLS_MAX} tools")));
        }
        let mut names: Vec<String> = Vec::new();
        let mut out = Vec::with_capacity(values.len());
        for (i, v) in values.into_iter().enumerate() {
            let Value::Object(map) = v else {
                return Err(Invalid::new(
                    format!("tools[{i}]"),
                    "must be an object with 'type' and 'name'",
                ));
            };
            let name = match (map.get("type"), map.get("name")) {
                (Some(Value::String(t)), name) if t == "mcp" => {
                    match (crate::mcp::McpBinding::parse(i, &map), name) {
                        // One binding per server; its tools are named by the server.
                        (Ok(binding), _) => format!("mcp:{}", binding.server),
                        (Err(_), Some(Value::String(n))) if !strict && !n.is_empty() => n.clone(),
                        (Err(e), _) => return Err(e),
                    }
                }
                (Some(Value::String(t)), Some(Value::String(n)))
                    if !t.is_empty() && !n.is_empty() =>
                {
                    n.clone()
                }
                _ => {
                    return Err(Invalid::new(
                        format!("tools[{i}]"),
                        "must have non-empty string 'type' and 'name' (or be {\"type\": \"mcp\", \"server\": \"<slug>\"})",
                    ));
                }
            };
            if map.get("type").and_then(Value::as_str) == Some("http") {
                crate::tool::parse_http_tool(i, &map)?;
            }
            if names.contains(&name) {
                let message = match name.strip_prefix("mcp:") {
                    Some(server) => format!("the MCP server '{server}' is bound twice"),
                    None => format!("duplicate tool name '{name}'"),
                };
                let field = if name.starts_with("mcp:") {
                    "server"
                } else {
                    "name"
                };
                return Err(Invalid::new(format!("tools[{i}].{field}"), message));
            }
            names.push(name);
            out.push(Self(map));
        }
        Ok(out)
    }

    /// The description as JSON.
    pub fn as_json(&self) -> &serde_json::Map<String, Value> {
        &self.0
    }

    /// The tool's type (`http`, `mcp`, …).
    pub fn kind(&self) -> &str {
        self.0
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The description as a caller may see it: `headers` values of HTTP tools are secrets and
    /// read as [`crate::tool::SECRET_MASK`].
    pub fn public_json(&self) -> serde_json::Map<String, Value> {
        let mut out = self.0.clone();
        if let Some(Value::Object(h)) = out.get_mut("headers") {
            for v in h.values_mut() {
                *v = Value::String(crate::tool::SECRET_MASK.to_owned());
            }
        }
        out
    }

    /// Keeps the stored value of every header that `self` sends back masked (a client that
    /// read the agent and writes it back does not erase its secrets).
    pub fn keep_secrets_from(mut self, old: &[ToolSpec]) -> Self {
        let name = self.name().to_owned();
        let Some(prev) = old.iter().find(|t| t.name() == name) else {
            return self;
        };
        let prev_headers = prev.0.get("headers").and_then(Value::as_object).cloned();
        if let (Some(Value::Object(h)), Some(prev_h)) = (self.0.get_mut("headers"), prev_headers) {
            for (k, v) in h.iter_mut() {
                if v.as_str() == Some(crate::tool::SECRET_MASK)
                    && let Some(old_v) = prev_h.get(k)
                {
                    *v = old_v.clone();
                }
            }
        }
        self
    }

    /// The MCP server binding this tool is (`type: "mcp"`), if it is one.
    pub fn mcp_binding(&self, index: usize) -> Option<crate::mcp::McpBinding> {
        (self.kind() == "mcp")
            .then(|| crate::mcp::McpBinding::parse(index, &self.0).ok())
            .flatten()
    }

    /// The tool's name (empty for an MCP binding, whose tools are named by its server).
    pub fn name(&self) -> &str {
        self.0
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// An agent definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// Stable id.
    pub id: AgentId,
    /// Unique key, the client API's `model`.
    pub key: AgentKey,
    /// Unique display name.
    pub name: AgentName,
    /// What the agent does.
    pub description: Option<String>,
    /// The system prompt.
    pub instructions: String,
    /// The model that answers.
    pub model: ModelRef,
    /// Sampling temperature.
    pub temperature: Option<Temperature>,
    /// Nucleus sampling.
    pub top_p: Option<TopP>,
    /// Answer length limit.
    pub max_tokens: Option<MaxTokens>,
    /// Organisation tags.
    pub tags: Vec<Tag>,
    /// Lifecycle status.
    pub status: AgentStatus,
    /// Free classification (`chat` by default).
    pub agent_type: AgentType,
    /// Bound tools.
    pub tools: Vec<ToolSpec>,
    /// The cluster it belongs to.
    pub cluster: Option<ClusterName>,
    /// Tried when the model's provider fails (after its retries) before any text was sent.
    pub fallback_model: Option<ModelRef>,
    /// Input and output rules applied by every turn.
    pub guardrails: crate::guardrail::Guardrails,
    /// The files searched on each turn, and how (empty: no retrieval).
    pub knowledge: crate::knowledge::Knowledge,
    /// Who created it.
    pub created_by: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The validated fields of an agent as a caller gives them. For a create or a replace,
/// `None` means "the default"; for a patch, `None` means "unchanged" and the `Option<Option>`
/// fields use `Some(None)` for "clear".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentFields {
    /// Key; derived from the name when absent on create.
    pub key: Option<AgentKey>,
    /// Name (required on create and replace).
    pub name: Option<AgentName>,
    /// Description.
    pub description: Option<Option<String>>,
    /// Instructions.
    pub instructions: Option<String>,
    /// Model, resolved by the service.
    pub model: Option<ModelSpec>,
    /// Temperature.
    pub temperature: Option<Option<Temperature>>,
    /// Top-p.
    pub top_p: Option<Option<TopP>>,
    /// Max tokens.
    pub max_tokens: Option<Option<MaxTokens>>,
    /// Tags.
    pub tags: Option<Vec<Tag>>,
    /// Status.
    pub status: Option<AgentStatus>,
    /// Type.
    pub agent_type: Option<AgentType>,
    /// Tools.
    pub tools: Option<Vec<ToolSpec>>,
    /// Cluster.
    pub cluster: Option<Option<ClusterName>>,
    /// Fallback model, resolved by the service; `Some(None)` clears it.
    pub fallback_model: Option<Option<ModelSpec>>,
    /// Guardrails (an empty set clears them).
    pub guardrails: Option<crate::guardrail::Guardrails>,
    /// Knowledge (one naming no file clears it).
    pub knowledge: Option<crate::knowledge::Knowledge>,
}

/// Which agents a list returns. Every given criterion must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentFilter {
    /// Agents carrying every one of these tags.
    pub tags: Vec<Tag>,
    /// Agents in this status.
    pub status: Option<AgentStatus>,
    /// Agents of this type.
    pub agent_type: Option<AgentType>,
    /// Agents in this cluster.
    pub cluster: Option<ClusterName>,
    /// Only agents with one of these keys (an API key's agent allowlist); `None` for all.
    pub keys: Option<Vec<String>>,
}

impl AgentFilter {
    /// The same filter, narrowed to the agents `caller` may see (its allowlist, if any).
    #[must_use]
    pub fn visible_to(mut self, caller: Option<&crate::auth::Principal>) -> Self {
        if let Some(allowed) = caller.and_then(|p| p.agents.as_ref()) {
            self.keys = Some(match self.keys.take() {
                Some(keys) => keys.into_iter().filter(|k| allowed.contains(k)).collect(),
                None => allowed.clone(),
            });
        }
        self
    }
}

/// How a caller names an agent in a path: by id or by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRef {
    /// By id (`agent_…`).
    Id(AgentId),
    /// By key (`support-bot`).
    Key(AgentKey),
}

impl AgentRef {
    /// Reads a path segment: an id when it has the shape of one, otherwise a key.
    ///
    /// # Errors
    /// [`Invalid`] naming `agent_id` when it is neither.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        if let Ok(id) = AgentId::parse(value) {
            return Ok(Self::Id(id));
        }
        AgentKey::parse(value)
            .map(Self::Key)
            .map_err(|e| e.renamed("agent_id"))
    }
}

impl fmt::Display for AgentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Key(key) => key.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ids_do_not_overlap() {
        let id = AgentId::generate();
        assert!(AgentKey::parse(id.as_str()).is_err());
        assert_eq!(AgentRef::parse(id.as_str()), Ok(AgentRef::Id(id)));
        assert!(matches!(
            AgentRef::parse("support-bot"),
            Ok(AgentRef::Key(_))
        ));
        assert!(AgentRef::parse("Bad Key").is_err());
    }

    #[test]
    fn key_from_name() {
        let name = AgentName::parse("  Customer Support ").map_err(|e| e.reason);
        assert_eq!(
            name.clone().map(|n| n.as_str().to_owned()),
            Ok("Customer Support".to_owned())
        );
        let key = name.and_then(|n| AgentKey::from_name(&n).map_err(|e| e.reason));
        assert_eq!(
            key.map(|k| k.as_str().to_owned()),
            Ok("customer-support".to_owned())
        );
        let weird = AgentName::parse("***").map_err(|e| e.reason);
        assert!(
            weird
                .map(|n| AgentKey::from_name(&n).is_err())
                .unwrap_or(false)
        );
    }

    #[test]
    fn parameters() {
        assert!(Temperature::parse(0.0).is_ok());
        assert!(Temperature::parse(2.0).is_ok());
        assert!(Temperature::parse(2.01).is_err());
        assert!(Temperature::parse(f64::NAN).is_err());
        assert!(TopP::parse(1.5).is_err());
        assert!(MaxTokens::parse(0).is_err());
        assert!(MaxTokens::parse(-5).is_err());
        assert!(MaxTokens::parse(4096).is_ok());
        assert!(AgentStatus::parse("deleted").is_err());
    }

    #[test]
    fn tools_and_tags() {
        let ok = ToolSpec::parse_list(vec![
            serde_json::json!({"type": "http", "name": "db", "url": "https://x"}),
        ]);
        assert!(ok.is_ok());
        assert!(ToolSpec::parse_list(vec![serde_json::json!("x")]).is_err());
        // An MCP entry of an earlier version (no `server`) is refused as input, read when
        // stored, and binds nothing.
        let legacy = vec![serde_json::json!({"type": "mcp", "name": "search"})];
        assert!(
            matches!(ToolSpec::parse_list(legacy.clone()), Err(e) if e.field == "tools[0].server")
        );
        let stored = ToolSpec::parse_stored(legacy);
        assert!(
            matches!(&stored, Ok(s) if s[0].name() == "search" && s[0].mcp_binding(0).is_none())
        );
        let dup = serde_json::json!({"type": "http", "name": "db"});
        assert!(ToolSpec::parse_list(vec![dup.clone(), dup]).is_err());
        assert_eq!(Tag::parse_list(&["a", "b", "a"]).map(|t| t.len()), Ok(2));
        assert!(Tag::parse_list(&["a,b"]).is_err());
    }
}
