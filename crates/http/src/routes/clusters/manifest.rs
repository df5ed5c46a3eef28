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
    /// The cluster's unique name: 1 to 64 characters of a-z, 0-9, `-`, `_` and `.`, starting
    /// with a letter or a digit. Required, but by `PUT /clusters/{cluster}`, where it must be
    /// the URL's when given.
    #[schema(
        example = "my-cluster",
        max_length = 64,
        pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"
    )]
    pub name: Option<String>,
    /// A label (`default` when absent): 1 to 63 characters of a-z, 0-9, `-`, `_` and `.`;
    /// names are unique across namespaces.
    #[schema(
        example = "default",
        max_length = 63,
        pattern = r"^[a-z0-9][a-z0-9._-]{0,62}$"
    )]
    pub namespace: Option<String>,
}

/// `spec.resource_policy` of a manifest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcePolicyInput {
    /// At most this many turns of the cluster's agents at once (per replica).
    #[schema(example = 5, minimum = 1, maximum = 1000)]
    pub max_concurrent_agents: Option<i64>,
    /// `300s`, `5m`, `1h30m`, `500ms`, or a number of seconds, from 1 second to 7 days: how
    /// long an agent may stay without a turn before it is scaled to zero. Required with
    /// `scale_to_zero`.
    #[schema(schema_with = idle_timeout, example = "300s")]
    pub idle_timeout: Option<Value>,
    /// Scale idle agents to zero (their slots and MCP processes are released; the next call
    /// starts them again).
    pub scale_to_zero: Option<bool>,
}

/// `spec` of a manifest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestSpec {
    /// The resource policy.
    pub resource_policy: Option<ResourcePolicyInput>,
    /// The agents (at most 100, with distinct keys).
    #[schema(value_type = Vec<ManifestAgentInput>, required = true, max_items = 100)]
    pub agents: Option<Vec<Value>>,
}

/// An `AgentCluster` manifest (seed 004), as JSON or YAML.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = ManifestInput::example)]
pub struct ManifestInput {
    /// The manifest's format.
    #[serde(rename = "apiVersion", alias = "api_version")]
    #[schema(value_type = ApiVersionName, required = true, example = "goagents.dev/v1")]
    pub api_version: Option<String>,
    /// What it describes.
    #[schema(value_type = ClusterKindName, required = true, example = "AgentCluster")]
    pub kind: Option<String>,
    /// Name and namespace.
    pub metadata: Option<ManifestMetadata>,
    /// Policy and agents.
    #[schema(value_type = ManifestSpec, required = true)]
    pub spec: Option<ManifestSpec>,
}

impl ResourcePolicyInput {
    /// What the OpenAPI document adds to the derived schema: `scale_to_zero` needs an
    /// `idle_timeout`.
    pub(crate) fn schema_rules() -> Value {
        serde_json::json!({"anyOf": [
            {"properties": {"scale_to_zero": {"enum": [false, null]}}},
            {"required": ["idle_timeout"], "properties": {"idle_timeout": {"type": ["string", "integer"]}}},
        ]})
    }
}

impl ManifestInput {
    /// The example of the document's manifests: seed 004's.
    fn example() -> Value {
        serde_json::json!({
            "apiVersion": "goagents.dev/v1",
            "kind": "AgentCluster",
            "metadata": {"name": "my-cluster", "namespace": "default"},
            "spec": {
                "resource_policy": {"max_concurrent_agents": 5, "idle_timeout": "300s", "scale_to_zero": true},
                "agents": [{"name": "assistant", "model": "mock/echo", "system_prompt": "You are a helpful assistant.", "tools": []}],
            },
        })
    }
}

/// The `apiVersion`s of a manifest (documentation only).
#[derive(ToSchema)]
#[schema(as = ManifestApiVersion)]
#[allow(dead_code)]
pub enum ApiVersionName {
    /// Agentry's own.
    #[schema(rename = "agentry.dev/v1")]
    Agentry,
    /// Seed 004's.
    #[schema(rename = "goagents.dev/v1")]
    GoAgents,
}

/// The `kind` of a manifest (documentation only).
#[derive(ToSchema)]
#[schema(as = ManifestKind)]
#[allow(dead_code)]
pub enum ClusterKindName {
    /// A cluster of agents.
    #[schema(rename = "AgentCluster")]
    AgentCluster,
}

/// An agent of a manifest, as the document shows it (read as an agent body).
pub struct ManifestAgentInput;

impl utoipa::PartialSchema for ManifestAgentInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::routes::agents::manifest_agent()
    }
}

impl ToSchema for ManifestAgentInput {
    fn name() -> std::borrow::Cow<'static, str> {
        "ManifestAgent".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <AgentInput as ToSchema>::schemas(schemas);
    }
}

/// A manifest that creates a cluster (`POST`): `metadata.name` is required.
pub struct ManifestCreate;

impl utoipa::PartialSchema for ManifestCreate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut schema = <ManifestInput as utoipa::PartialSchema>::schema();
        if let utoipa::openapi::RefOr::T(s) = &mut schema {
            crate::schema::add_rules(
                s,
                serde_json::json!({
                    "properties": {"metadata": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
                    "allOf": [{"required": ["metadata"]}],
                }),
            );
        }
        schema
    }
}

impl ToSchema for ManifestCreate {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <ManifestInput as ToSchema>::schemas(schemas);
    }
}

/// `idle_timeout`: a Go duration or a number of seconds.
fn idle_timeout() -> utoipa::openapi::schema::Schema {
    crate::schema::raw(serde_json::json!({
        "description": "`300s`, `5m`, `1h30m`, `500ms`, or a number of seconds, from 1 second to 7 days.",
        "anyOf": [
            {"type": "string", "pattern": "^\\s*([0-9]+|([0-9]+(ms|s|m|h))+)\\s*$"},
            {"type": "integer", "minimum": 1, "maximum": agentry_domain::cluster::IDLE_TIMEOUT_MAX.as_secs()},
            {"type": "null"},
        ],
        "example": "300s",
    }))
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
