//! `/api/v1/clusters` (seed 004): clusters applied from `AgentCluster` manifests, as JSON or
//! YAML (`Content-Type: application/yaml`). `POST` creates (409 `CLUSTER_EXISTS` when the
//! name is taken), `PUT /clusters/{name}` applies (creates or makes the cluster match; the
//! same manifest twice changes nothing), `POST /clusters/{name}/scale` sets an agent's
//! instances, `DELETE` removes the cluster and archives its agents (docs/clusters.md).

use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::agent::ClusterName;
use agentry_domain::cluster::{format_duration, parse_instances};
use agentry_domain::services::{Applied, ClusterView, MemberView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod manifest;

use manifest::manifest;

pub use manifest::{
    ApiVersionName, ClusterKindName, ManifestAgentInput, ManifestCreate, ManifestInput,
    ManifestMetadata, ManifestSpec, ResourcePolicyInput,
};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{DocumentBody, JsonBody};
use crate::routes::providers::ListQuery;
use crate::routes::rfc3339;

/// Routes of this resource, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/clusters")
            .route(web::get().to(list_clusters))
            .route(web::post().to(create_cluster)),
    )
    .service(
        web::resource("/clusters/{cluster}")
            .route(web::get().to(get_cluster))
            .route(web::put().to(apply_cluster))
            .route(web::delete().to(delete_cluster)),
    )
    .service(web::resource("/clusters/{cluster}/scale").route(web::post().to(scale_cluster)));
}

/// A resource policy as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourcePolicyView {
    /// The cluster's cap on turns at once (per replica), if any.
    pub max_concurrent_agents: Option<u32>,
    /// `300s`, if set.
    pub idle_timeout: Option<String>,
    /// Whether idle agents are scaled to zero.
    pub scale_to_zero: bool,
}

/// One agent of a cluster, with its slots on the replica that answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterAgentView {
    /// The agent's name.
    #[schema(example = "intent-classifier")]
    pub name: String,
    /// Its key (the client API's `model`; `/api/v1/agents/{key}`).
    pub key: String,
    /// Its id (`null` when it was deleted through the agents API).
    pub agent_id: Option<String>,
    /// `running`, `idle` (scaled to zero), `scaling` (draining to fewer instances),
    /// `archived` or `missing`.
    #[schema(example = "running")]
    pub status: String,
    /// Its instances (the target set by the manifest or by scaling).
    pub instances: u32,
    /// Slots held or available now on this replica (0 while idle).
    pub current_instances: u32,
    /// Its turns running now on this replica.
    pub in_flight: u32,
    /// Its turns waiting for a slot now on this replica.
    pub waiting: u32,
    /// `provider/model`.
    #[schema(example = "anthropic/claude-sonnet-4")]
    pub model: Option<String>,
    /// The provider's id.
    #[schema(example = "anthropic")]
    pub provider: Option<String>,
    /// The model's name at its provider.
    pub model_name: Option<String>,
    /// Its turns that ended on this replica since it started.
    pub total_requests: u64,
    /// Their average response time, in milliseconds.
    pub avg_response_time_ms: Option<f64>,
    /// Times it started again after being idle, on this replica.
    pub cold_starts: u64,
}

impl From<&MemberView> for ClusterAgentView {
    fn from(m: &MemberView) -> Self {
        let slots = m.slots.as_ref();
        Self {
            name: m
                .agent
                .as_ref()
                .map_or_else(|| m.key.to_string(), |a| a.name.to_string()),
            key: m.key.to_string(),
            agent_id: m.agent.as_ref().map(|a| a.id.to_string()),
            status: m.status.to_owned(),
            instances: m.instances,
            current_instances: slots.map_or(0, |s| s.current_instances),
            in_flight: slots.map_or(0, |s| s.in_use),
            waiting: slots.map_or(0, |s| s.waiting),
            model: m.agent.as_ref().map(|a| a.model.to_string()),
            provider: m.agent.as_ref().map(|a| a.model.provider_id.to_string()),
            model_name: m.agent.as_ref().map(|a| a.model.model_name.clone()),
            total_requests: m.total_requests,
            avg_response_time_ms: m.avg_response_time_ms,
            cold_starts: slots.map_or(0, |s| s.cold_starts),
        }
    }
}

/// Request counts of a cluster's agents (seed 004's `metrics`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterMetricsView {
    /// Turns of its agents that ended on this replica since it started.
    pub total_requests: u64,
    /// Turns of its agents running now on this replica.
    pub active_conversations: u32,
    /// Their average response time, in milliseconds.
    pub avg_response_time_ms: Option<f64>,
}

/// A cluster. Instances, statuses and metrics are the answering replica's (slots are per
/// replica: N replicas run up to N × `instances` turns of an agent at once).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterOut {
    /// `cluster_…`.
    pub id: String,
    /// The same id (seed 004's spelling).
    pub cluster_id: String,
    /// Unique name.
    pub name: String,
    /// Namespace (a label).
    pub namespace: String,
    /// The manifest's `apiVersion`.
    pub api_version: String,
    /// `running`, `idle` (every agent scaled to zero), `scaling` or `deploying`.
    #[schema(example = "running")]
    pub status: String,
    /// Its resource policy.
    pub resource_policy: ResourcePolicyView,
    /// How many agents it has.
    pub agents_count: usize,
    /// Its agents, in manifest order.
    pub agents: Vec<ClusterAgentView>,
    /// Request counts of its agents.
    pub metrics: ClusterMetricsView,
    /// `replica`: instances, statuses and metrics are counted on the answering replica.
    pub scope: &'static str,
    /// Grows with every apply or scale that changed it.
    pub generation: u64,
    /// Who created it.
    pub created_by: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

impl From<&ClusterView> for ClusterOut {
    fn from(v: &ClusterView) -> Self {
        let c = &v.cluster;
        Self {
            id: c.id.to_string(),
            cluster_id: c.id.to_string(),
            name: c.name.to_string(),
            namespace: c.namespace.as_str().to_owned(),
            api_version: c.api_version.clone(),
            status: v.status.to_owned(),
            resource_policy: ResourcePolicyView {
                max_concurrent_agents: c.policy.max_concurrent_agents,
                idle_timeout: c.policy.idle_timeout.map(format_duration),
                scale_to_zero: c.policy.scale_to_zero,
            },
            agents_count: v.members.len(),
            agents: v.members.iter().map(ClusterAgentView::from).collect(),
            metrics: ClusterMetricsView {
                total_requests: v.total_requests(),
                active_conversations: v.active_turns(),
                avg_response_time_ms: v.avg_response_time_ms(),
            },
            scope: "replica",
            generation: c.generation,
            created_by: c.created_by.clone(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// What an apply did to one agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentChangeView {
    /// The agent's key.
    pub agent: String,
    /// `created`, `updated`, `unchanged` or `archived`.
    pub change: &'static str,
    /// The version published for it, if one was.
    pub version: Option<u32>,
}

/// A cluster after an apply, with what changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppliedOut {
    /// The cluster.
    #[serde(flatten)]
    pub cluster: ClusterOut,
    /// `created`, `configured` or `unchanged`.
    #[schema(example = "created")]
    pub result: &'static str,
    /// What happened to each agent.
    pub changes: Vec<AgentChangeView>,
    /// A human-readable summary.
    pub message: String,
}

/// A page of clusters.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterList {
    /// Clusters, by name.
    pub clusters: Vec<ClusterOut>,
    /// Matches in all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// The answer to a cluster DELETE.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterDeleted {
    /// Always true: after the call the cluster does not exist.
    pub success: bool,
    /// Whether this call removed it (false when it was already absent).
    pub deleted: bool,
    /// The agents archived with it (their conversations and versions are kept).
    pub archived_agents: Vec<String>,
    /// A human-readable summary.
    pub message: String,
}

/// A scale request: one agent and its new number of instances.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"agent_name": "assistant", "instances": 2}))]
pub struct ScaleInput {
    /// The agent's name or key.
    #[schema(value_type = String, required = true, example = "intent-classifier",
        pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub agent_name: Option<String>,
    /// Its instances, 1 to 1000.
    #[schema(value_type = i64, required = true, example = 5, minimum = 1, maximum = 1000)]
    pub instances: Option<i64>,
}

/// The outcome of a scale request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScaleOut {
    /// The cluster.
    pub cluster: String,
    /// The agent's key.
    pub agent_name: String,
    /// Slots held or available now on this replica (above the target while turns drain).
    pub current_instances: u32,
    /// The new number of instances.
    pub target_instances: u32,
    /// The number before.
    pub previous_instances: u32,
    /// `running`, `idle` or `scaling`.
    pub status: &'static str,
    /// A human-readable summary.
    pub message: String,
}

fn cluster_name(raw: &str) -> Result<ClusterName, ApiError> {
    ClusterName::parse(raw).map_err(|_| agentry_domain::Error::not_found("cluster", raw).into())
}

fn applied_out(a: &Applied, view: &ClusterView) -> AppliedOut {
    let message = match a.result.as_str() {
        "created" => "Cluster deployed".to_owned(),
        "unchanged" => "Cluster unchanged: it already matches the manifest".to_owned(),
        _ => "Cluster configured".to_owned(),
    };
    AppliedOut {
        cluster: ClusterOut::from(view),
        result: a.result.as_str(),
        changes: a
            .agents
            .iter()
            .map(|c| AgentChangeView {
                agent: c.key.to_string(),
                change: c.change.as_str(),
                version: c.version,
            })
            .collect(),
        message,
    }
}

fn creator(req: &HttpRequest) -> Option<String> {
    crate::auth::principal(req).map(|p| p.created_by())
}

/// Create a cluster from a manifest (JSON or YAML). Its agents are created and a version of
/// each is published; 409 `CLUSTER_EXISTS` when the name is taken (`PUT` applies instead).
#[utoipa::path(post, path = "/api/v1/clusters", tag = "clusters",
    request_body(content = ManifestCreate, content_type = "application/json",
        description = "An AgentCluster manifest; also accepted as YAML (`application/yaml`)"),
    responses((status = 201, body = AppliedOut), (status = 400, body = ErrorEnvelope),
        (status = 409, description = "CLUSTER_EXISTS, an agent key taken outside the cluster, or SCALING_IN_PROGRESS", body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn create_cluster(
    req: HttpRequest,
    state: web::Data<AppState>,
    DocumentBody(doc): DocumentBody,
) -> ApiResult<HttpResponse> {
    let manifest = manifest(doc, None)?;
    let applied = state.clusters.create(manifest, creator(&req)).await?;
    let view = state.clusters.get(&applied.cluster.name).await?;
    Ok(HttpResponse::Created().json(applied_out(&applied, &view)))
}

/// Apply a manifest (JSON or YAML) to the cluster it names: create it, or make it match
/// (changed agents are replaced and a version of each is published; agents left out are
/// archived). Applying the same manifest again changes nothing (`result: "unchanged"`).
#[utoipa::path(put, path = "/api/v1/clusters/{cluster}", tag = "clusters",
    params(("cluster" = String, Path, description = "Cluster name; `metadata.name` must match it when given")),
    request_body(content = ManifestInput, content_type = "application/json",
        description = "An AgentCluster manifest; also accepted as YAML (`application/yaml`)"),
    responses((status = 200, description = "Configured or unchanged", body = AppliedOut), (status = 201, description = "Created", body = AppliedOut),
        (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn apply_cluster(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    DocumentBody(doc): DocumentBody,
) -> ApiResult<HttpResponse> {
    let manifest = manifest(doc, Some(path.as_str()))?;
    let applied = state.clusters.apply(manifest, creator(&req)).await?;
    let view = state.clusters.get(&applied.cluster.name).await?;
    let body = applied_out(&applied, &view);
    Ok(if body.result == "created" {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// List clusters, by name.
#[utoipa::path(get, path = "/api/v1/clusters", tag = "clusters", params(ListQuery),
    responses((status = 200, body = ClusterList), (status = 400, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn list_clusters(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(query.limit.as_deref(), query.offset.as_deref())?;
    let paged = state.clusters.list(page).await?;
    Ok(HttpResponse::Ok().json(ClusterList {
        clusters: paged.items.iter().map(ClusterOut::from).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// A cluster with its agents (status, instances) and request metrics.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster}", tag = "clusters",
    params(("cluster" = String, Path, description = "Cluster name")),
    responses((status = 200, body = ClusterOut), (status = 404, description = "CLUSTER_NOT_FOUND", body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn get_cluster(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let view = state.clusters.get(&cluster_name(&path)?).await?;
    Ok(HttpResponse::Ok().json(ClusterOut::from(&view)))
}

/// Delete a cluster; its agents are archived (kept with their conversations and versions,
/// no longer served; applying the manifest again brings them back). Deleting an absent
/// cluster succeeds with `deleted: false`.
#[utoipa::path(delete, path = "/api/v1/clusters/{cluster}", tag = "clusters",
    params(("cluster" = String, Path, description = "Cluster name")),
    responses((status = 200, body = ClusterDeleted), (status = 409, description = "SCALING_IN_PROGRESS", body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn delete_cluster(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let deleted = match ClusterName::parse(&path) {
        Ok(name) => state.clusters.delete(&name).await?,
        Err(_) => None,
    };
    let body = match deleted {
        Some(archived) => ClusterDeleted {
            success: true,
            deleted: true,
            message: "Cluster deleted successfully".to_owned(),
            archived_agents: archived.iter().map(ToString::to_string).collect(),
        },
        None => ClusterDeleted {
            success: true,
            deleted: false,
            message: "Cluster not found; nothing to delete".to_owned(),
            archived_agents: Vec::new(),
        },
    };
    Ok(HttpResponse::Ok().json(body))
}

/// Set the instances (concurrency slots) of one agent of the cluster. More take effect at
/// once; fewer let running turns end first (status `scaling` until they have).
#[utoipa::path(post, path = "/api/v1/clusters/{cluster}/scale", tag = "clusters",
    params(("cluster" = String, Path, description = "Cluster name")),
    request_body = ScaleInput,
    responses((status = 200, body = ScaleOut), (status = 400, body = ErrorEnvelope),
        (status = 404, description = "CLUSTER_NOT_FOUND, or AGENT_NOT_FOUND for an agent not in the cluster", body = ErrorEnvelope),
        (status = 409, description = "SCALING_IN_PROGRESS", body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn scale_cluster(
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonBody(body): JsonBody<ScaleInput>,
) -> ApiResult<HttpResponse> {
    let name = cluster_name(&path)?;
    let agent = body
        .agent_name
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| ApiError::validation("agent_name", "is required"))?;
    let instances = body
        .instances
        .ok_or_else(|| ApiError::validation("instances", "is required"))?;
    let instances = parse_instances("instances", instances)?;
    let scaled = state.clusters.scale(&name, &agent, instances).await?;
    Ok(HttpResponse::Ok().json(ScaleOut {
        cluster: name.to_string(),
        agent_name: scaled.key.to_string(),
        current_instances: scaled.current_instances,
        target_instances: scaled.target_instances,
        previous_instances: scaled.previous_instances,
        status: scaled.status,
        message: "Scaling operation completed".to_owned(),
    }))
}
