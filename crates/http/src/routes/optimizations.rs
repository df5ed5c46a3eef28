//! Prompt optimisation (`docs/optimization.md`): `POST /api/v1/agents/{agent}/optimize` starts
//! one, `GET …/optimizations` lists an agent's, `GET /api/v1/optimizations/{id}` follows one
//! (phase, candidates, evaluation runs, evidence, the draft version saved) and
//! `POST /api/v1/optimizations/{id}/cancel` stops it.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use agentry_domain::agent::AgentRef;
use agentry_domain::optimization::{Optimization, OptimizationId, OptimizationRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::JsonBody;
use crate::routes::rfc3339;

/// Routes of this resource, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/agents/{agent}/optimize").route(web::post().to(start_optimization)),
    )
    .service(
        web::resource("/agents/{agent}/optimizations").route(web::get().to(list_optimizations)),
    )
    .service(web::resource("/optimizations/{optimization}").route(web::get().to(get_optimization)))
    .service(
        web::resource("/optimizations/{optimization}/cancel")
            .route(web::post().to(cancel_optimization)),
    );
}

fn agent_ref(raw: &str) -> Result<AgentRef, ApiError> {
    AgentRef::parse(raw).map_err(|_| agentry_domain::Error::not_found("agent", raw).into())
}

fn optimization_id(raw: &str) -> Result<OptimizationId, ApiError> {
    OptimizationId::parse(raw)
        .map_err(|_| agentry_domain::Error::not_found("optimization", raw).into())
}

/// What to optimise against.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"testset_id": "Customer Support Evaluation", "candidates": 3}))]
pub struct OptimizeInput {
    /// The test set (id or name, at most 200 characters) every candidate is measured on.
    #[schema(min_length = 1, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub testset_id: Option<String>,
    /// Same as `testset_id`.
    #[schema(min_length = 1)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub testset: Option<String>,
    /// Candidates to write, 1 to 5 (default 3; the built-in writer writes at most 3).
    #[schema(minimum = 1, maximum = 5)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates: Option<u64>,
    /// Who writes the candidates: an agent key or `provider/model` (default: the built-in
    /// rule-based writer). At most 200 characters.
    #[schema(min_length = 1)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer_model: Option<String>,
    /// Cases the evaluation runs send at once, 1 to 16 (default 4).
    #[schema(minimum = 1, maximum = 16)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
}

/// A candidate.
#[derive(Debug, Serialize, ToSchema)]
pub struct CandidateView {
    /// Its label in the testing run (`candidate 1`…).
    pub label: String,
    /// Its instructions.
    pub instructions: String,
    /// How it was written.
    pub rationale: String,
}

/// An optimisation.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptimizationView {
    /// `opt_…`.
    pub id: String,
    /// The agent's id.
    pub agent_id: String,
    /// The test set's id.
    pub testset_id: String,
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    #[schema(example = "running")]
    pub status: &'static str,
    /// While running: `analyzing`, `optimizing` or `testing`.
    pub phase: Option<&'static str>,
    /// Candidates asked for.
    pub candidates_requested: u32,
    /// The writer (`null`: the built-in one).
    pub optimizer_model: Option<String>,
    /// The instructions being improved (the agent's live ones when it started).
    pub baseline_instructions: Option<String>,
    /// The insights' top issues it read (last 30 days).
    pub issues: Vec<String>,
    /// The candidates written.
    pub candidates: Vec<CandidateView>,
    /// The evaluation run of the current instructions alone.
    pub baseline_run_id: Option<String>,
    /// The evaluation run of the current instructions and every candidate.
    pub testing_run_id: Option<String>,
    /// The comparison: `scores` (label, passed, results, pass_rate, rationale), `winner`,
    /// `improved`, `cases_fixed`, `cases_broken`, `draft_version`; `null` until it ends.
    #[schema(value_type = Option<Object>)]
    pub evidence: Option<Value>,
    /// The draft version saved (a candidate beat the current instructions); never published.
    pub draft_version: Option<u32>,
    /// Why it failed.
    pub error: Option<String>,
    /// Who asked.
    pub created_by: Option<String>,
    /// When.
    pub created_at: String,
    /// When a runner first took it.
    pub started_at: Option<String>,
    /// When it ended.
    pub completed_at: Option<String>,
}

fn view(o: &Optimization) -> OptimizationView {
    OptimizationView {
        id: o.id.to_string(),
        agent_id: o.agent_id.to_string(),
        testset_id: o.testset_id.to_string(),
        status: o.status.as_str(),
        phase: o.phase.map(|p| p.as_str()),
        candidates_requested: o.request.candidates,
        optimizer_model: o.request.optimizer_model.clone(),
        baseline_instructions: o.progress.baseline.clone(),
        issues: o.progress.issues.clone(),
        candidates: o
            .progress
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| CandidateView {
                label: format!("candidate {}", i + 1),
                instructions: c.instructions.clone(),
                rationale: c.rationale.clone(),
            })
            .collect(),
        baseline_run_id: o.progress.baseline_run.as_ref().map(ToString::to_string),
        testing_run_id: o.progress.testing_run.as_ref().map(ToString::to_string),
        evidence: o.progress.evidence.clone(),
        draft_version: o.draft_version,
        error: o.error.clone(),
        created_by: o.created_by.clone(),
        created_at: rfc3339(o.created_at),
        started_at: o.started_at.map(rfc3339),
        completed_at: o.completed_at.map(rfc3339),
    }
}

/// Start optimising an agent's instructions against a test set: `202` with the optimisation
/// (`pending`); a runner on any replica carries it out. `409` while the agent has one pending
/// or running. The best candidate, if it beats the current instructions, becomes a draft
/// version; nothing is published.
#[utoipa::path(post, path = "/api/v1/agents/{agent}/optimize", tag = "optimization",
    request_body = OptimizeInput,
    params(("agent" = String, Path, description = "Agent id or key")),
    responses((status = 202, body = OptimizationView), (status = 400, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn start_optimization(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    JsonBody(body): JsonBody<OptimizeInput>,
) -> ApiResult<HttpResponse> {
    let raw = serde_json::to_value(&body).unwrap_or_else(|_| json!({}));
    let request = OptimizationRequest::from_json(&raw)?;
    let o = state
        .optimizations
        .start(Some(&caller), &agent_ref(&path)?, request)
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/v1/optimizations/{}", o.id)))
        .json(view(&o)))
}

/// Pagination.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OptimizationPageQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// Items to skip.
    #[param(value_type = Option<u64>)]
    pub offset: Option<String>,
}

/// A page of optimisations.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptimizationList {
    /// Newest first.
    pub optimizations: Vec<OptimizationView>,
    /// In all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// List an agent's optimisations, newest first.
#[utoipa::path(get, path = "/api/v1/agents/{agent}/optimizations", tag = "optimization",
    params(("agent" = String, Path, description = "Agent id or key"), OptimizationPageQuery),
    responses((status = 200, body = OptimizationList), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_optimizations(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    query: web::Query<OptimizationPageQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(query.limit.as_deref(), query.offset.as_deref())?;
    let paged = state
        .optimizations
        .list(Some(&caller), &agent_ref(&path)?, page)
        .await?;
    Ok(HttpResponse::Ok().json(OptimizationList {
        optimizations: paged.items.iter().map(view).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// Get an optimisation: phase, candidates, evaluation runs, evidence and draft version.
#[utoipa::path(get, path = "/api/v1/optimizations/{optimization}", tag = "optimization",
    params(("optimization" = String, Path, description = "Optimisation id")),
    responses((status = 200, body = OptimizationView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_optimization(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let o = state
        .optimizations
        .get(Some(&caller), &optimization_id(&path)?)
        .await?;
    Ok(HttpResponse::Ok().json(view(&o)))
}

/// Cancel an optimisation and the evaluation run it waits for; one that ended is returned
/// unchanged.
#[utoipa::path(post, path = "/api/v1/optimizations/{optimization}/cancel", tag = "optimization",
    params(("optimization" = String, Path, description = "Optimisation id")),
    responses((status = 200, body = OptimizationView), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn cancel_optimization(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let o = state
        .optimizations
        .cancel(Some(&caller), &optimization_id(&path)?)
        .await?;
    Ok(HttpResponse::Ok().json(view(&o)))
}
