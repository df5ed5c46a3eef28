//! The `AgentCluster` manifest as it arrives (JSON or YAML, read as JSON), and its
//! validation into the domain's [`Manifest`]: every failure names its path in the manifest
//! (`spec.agents[0].model`).

use agentry_domain::Invalid;
use agentry_domain::agent::{AgentKey, AgentName, ClusterName};
use agentry_domain::cluster::{
    API_VERSIONS, CLUSTER_KIND, Manifest, ManifestAgent, Namespace, ResourcePolicy, parse_duration,
    parse_instances,
};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::routes::agents::AgentInput;

/// `metadata` of a manifest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestMetadata {
    /// The cluster's unique name: a slug.
    #[schema(example = "my-cluster")]
    pub name: Option<String>,
    /// A label (`default` when absent); names are unique across namespaces.
    #[schema(example = "default")]
    pub namespace: Option<String>,
}

/// `spec.resource_policy` of a manifest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcePolicyInput {
    /// At most this many turns of the cluster's agents at once (per replica).
    #[schema(example = 5, minimum = 1, maximum = 1000)]
    pub max_concurrent_agents: Option<i64>,
    /// `300s`, `5m`, `1h30m`, or a number of seconds: how long an agent may stay without a
    /// turn before it is scaled to zero.
    #[schema(value_type = Option<String>, example = "300s")]
    pub idle_timeout: Option<Value>,
    /// Scale idle agents to zero (their slots and MCP processes are released; the next call
    /// starts them again).
    pub scale_to_zero: Option<bool>,
}

/// One agent of a manifest: an agent definition (every spelling the agents API accepts:
/// `system_prompt`/`instructions`, `provider` + `model`…) plus its `instances` (also
/// `replicas`). `name` is required and is also the agent's key unless `key` is given.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ManifestAgentInput {
    /// The agent's name (and key).
    #[schema(example = "assistant")]
    pub name: String,
    /// The provider, with `model`.
    #[schema(example = "anthropic")]
    pub provider: Option<String>,
    /// The model: a name with `provider`, `provider/model`, or a bare model name.
    #[schema(example = "claude-sonnet-4")]
    pub model: Option<String>,
    /// The system prompt (also `instructions`).
    #[schema(example = "You are a helpful assistant.")]
    pub system_prompt: Option<String>,
    /// Tools, as on agents.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    /// Concurrency slots (1 to 1000; 1 for a new agent when absent, else kept).
    #[schema(example = 2)]
    pub instances: Option<i64>,
}

/// `spec` of a manifest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestSpec {
    /// The resource policy.
    pub resource_policy: Option<ResourcePolicyInput>,
    /// The agents.
    #[schema(value_type = Option<Vec<ManifestAgentInput>>)]
    pub agents: Option<Vec<Value>>,
}

/// An `AgentCluster` manifest (seed 004), as JSON or YAML.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestInput {
    /// `goagents.dev/v1` or `agentry.dev/v1`.
    #[serde(rename = "apiVersion", alias = "api_version")]
    #[schema(example = "goagents.dev/v1")]
    pub api_version: Option<String>,
    /// `AgentCluster`.
    #[schema(example = "AgentCluster")]
    pub kind: Option<String>,
    /// Name and namespace.
    pub metadata: Option<ManifestMetadata>,
    /// Policy and agents.
    pub spec: Option<ManifestSpec>,
}

fn prefixed(i: usize, e: Invalid) -> Invalid {
    let field = format!("spec.agents[{i}].{}", e.field);
    e.renamed(field)
}

/// One manifest agent: `instances`/`replicas` taken out, the rest read as an agent.
fn manifest_agent(i: usize, value: Value) -> Result<ManifestAgent, Invalid> {
    let Value::Object(mut map) = value else {
        return Err(Invalid::new(
            format!("spec.agents[{i}]"),
            "must be an object",
        ));
    };
    for managed in ["cluster", "status"] {
        if map.contains_key(managed) {
            return Err(Invalid::new(
                format!("spec.agents[{i}].{managed}"),
                "is set by the cluster, not by the manifest",
            ));
        }
    }
    let instances = match (map.remove("instances"), map.remove("replicas")) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new(
                format!("spec.agents[{i}].replicas"),
                "give only one of 'instances' and 'replicas'",
            ));
        }
        (Some(v), None) | (None, Some(v)) => {
            let field = format!("spec.agents[{i}].instances");
            let n = v
                .as_i64()
                .ok_or_else(|| Invalid::new(&field, "must be an integer"))?;
            Some(parse_instances(&field, n)?)
        }
        (None, None) => None,
    };
    let input: AgentInput = serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let field = if path == "." {
            message
                .split('`')
                .nth(1)
                .map_or_else(|| "body".to_owned(), str::to_owned)
        } else {
            path
        };
        Invalid::new(format!("spec.agents[{i}].{field}"), message)
    })?;
    let mut fields = input.try_into_domain().map_err(|e| prefixed(i, e))?;
    let Some(name) = fields.name.clone() else {
        return Err(Invalid::new(
            format!("spec.agents[{i}].name"),
            "is required",
        ));
    };
    let key = match &fields.key {
        Some(k) => k.clone(),
        None => AgentKey::parse(name.as_str())
            .or_else(|_| AgentKey::from_name(&name))
            .map_err(|e| prefixed(i, e.renamed("name")))?,
    };
    if let Some(spec) = fields.model.as_mut() {
        spec.field = format!("spec.agents[{i}].{}", spec.field);
    }
    if let Some(Some(spec)) = fields.fallback_model.as_mut() {
        spec.field = format!("spec.agents[{i}].{}", spec.field);
    }
    fields.name = Some(AgentName::parse(name.as_str()).map_err(|e| prefixed(i, e))?);
    Ok(ManifestAgent {
        key,
        fields,
        instances,
    })
}

impl ManifestInput {
    /// Validates the manifest into domain values; `path_name` is the cluster named by the URL
    /// (PUT), which `metadata.name` must match when given.
    ///
    /// # Errors
    /// The first failing field, named by its path in the manifest.
    pub fn try_into_domain(self, path_name: Option<&str>) -> Result<Manifest, Invalid> {
        let api_version = self
            .api_version
            .ok_or_else(|| Invalid::new("apiVersion", "is required"))?;
        if !API_VERSIONS.contains(&api_version.as_str()) {
            return Err(Invalid::new(
                "apiVersion",
                format!("must be one of {}", API_VERSIONS.join(", ")),
            )
            .with("allowed", API_VERSIONS.to_vec()));
        }
        match self.kind.as_deref() {
            Some(CLUSTER_KIND) => {}
            Some(_) => {
                return Err(Invalid::new("kind", format!("must be '{CLUSTER_KIND}'")));
            }
            None => return Err(Invalid::new("kind", "is required")),
        }
        let metadata = self
            .metadata
            .ok_or_else(|| Invalid::new("metadata.name", "is required"))?;
        let raw_name = match (metadata.name.as_deref(), path_name) {
            (Some(n), Some(p)) if n != p => {
                return Err(Invalid::new(
                    "metadata.name",
                    format!("is '{n}' but the URL names the cluster '{p}'"),
                ));
            }
            (Some(n), _) => n.to_owned(),
            (None, Some(p)) => p.to_owned(),
            (None, None) => return Err(Invalid::new("metadata.name", "is required")),
        };
        let name = ClusterName::parse(&raw_name).map_err(|e| e.renamed("metadata.name"))?;
        let namespace = metadata
            .namespace
            .as_deref()
            .map(Namespace::parse)
            .transpose()?
            .unwrap_or_else(Namespace::default_namespace);
        let spec = self
            .spec
            .ok_or_else(|| Invalid::new("spec.agents", "is required"))?;
        let policy = match spec.resource_policy {
            None => ResourcePolicy::default(),
            Some(p) => ResourcePolicy {
                max_concurrent_agents: p
                    .max_concurrent_agents
                    .map(|n| parse_instances("spec.resource_policy.max_concurrent_agents", n))
                    .transpose()?,
                idle_timeout: match p.idle_timeout {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) => {
                        Some(parse_duration("spec.resource_policy.idle_timeout", &t)?)
                    }
                    Some(Value::Number(n)) => Some(parse_duration(
                        "spec.resource_policy.idle_timeout",
                        &n.to_string(),
                    )?),
                    Some(_) => {
                        return Err(Invalid::new(
                            "spec.resource_policy.idle_timeout",
                            "must be a duration such as '300s' or a number of seconds",
                        ));
                    }
                },
                scale_to_zero: p.scale_to_zero.unwrap_or(false),
            },
        };
        let agents = spec
            .agents
            .ok_or_else(|| Invalid::new("spec.agents", "is required"))?
            .into_iter()
            .enumerate()
            .map(|(i, v)| manifest_agent(i, v))
            .collect::<Result<Vec<_>, _>>()?;
        let manifest = Manifest {
            api_version,
            name,
            namespace,
            policy,
            agents,
        };
        manifest.check()?;
        Ok(manifest)
    }
}

/// Parses a manifest document (JSON or YAML, already read as a JSON value).
pub(super) fn manifest(doc: Value, path_name: Option<&str>) -> Result<Manifest, ApiError> {
    let input: ManifestInput = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let field = if path == "." {
            message
                .split('`')
                .nth(1)
                .map_or_else(|| "body".to_owned(), str::to_owned)
        } else {
            path
        };
        ApiError::validation(&field, message)
    })?;
    Ok(input.try_into_domain(path_name)?)
}
