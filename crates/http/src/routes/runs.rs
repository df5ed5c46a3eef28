//! `/api/v1/runs`: one-shot calls (seed 000), logged with their `log_meta`. Every bad input
//! is `INVALID_REQUEST`, as that document shows.

use actix_web::{HttpResponse, web};
use agentry_domain::agent::{MaxTokens, ModelSpec, Temperature, TopP};
use agentry_domain::conversation::{Run, RunFilter};
use agentry_domain::llm::TokenUsage;
use agentry_domain::services::{Params, RunRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::JsonBody;
use crate::routes::agents::{ModelInput, ModelRefInput};
use crate::routes::rfc3339;

/// Routes of this resource.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/runs")
            .route(web::post().to(create_run))
            .route(web::get().to(list_runs)),
    )
    .service(web::resource("/runs/{run_id}").route(web::get().to(get_run)));
}

/// A one-shot call: a `prompt` and a model, as `model_ref` or as `model` (one of them).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"run_id": "eval_123e4567-e89b-12d3-a456-426614174000", "preamble": "You are a helpful assistant.",
    "prompt": "Hello!", "model_ref": {"provider_id": "mock", "model_name": "echo"}, "log_meta": {"user_id": "user_456"}}))]
pub struct RunInput {
    /// Your id for the run (echoed back), 1 to 128 characters of A-Z, a-z, 0-9, `-`, `_`,
    /// `.` and `:`; one is made when absent.
    #[schema(
        example = "eval_123e4567-e89b-12d3-a456-426614174000",
        pattern = r"^[A-Za-z0-9._:-]{1,128}$"
    )]
    pub run_id: Option<String>,
    /// The system prompt, up to 200,000 characters.
    #[schema(max_length = 200_000)]
    pub preamble: Option<String>,
    /// The user prompt: up to 200,000 characters, not only whitespace.
    #[schema(value_type = String, required = true, max_length = 200_000, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub prompt: Option<String>,
    /// The model as `{provider_id, model_name}`.
    pub model_ref: Option<ModelRefInput>,
    /// The model as `provider/model` or a bare name (instead of `model_ref`).
    pub model: Option<ModelInput>,
    /// Temperature, 0 to 2.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// Top-p, 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// Answer length limit, 1 to 1,000,000 tokens.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub max_tokens: Option<i64>,
    /// Anything to log with the run; `user_id`, `session_id` and `component` can filter lists.
    #[schema(value_type = Option<Object>)]
    pub log_meta: Option<Map<String, Value>>,
}

/// Token counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenUsageView {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

impl From<Option<TokenUsage>> for TokenUsageView {
    fn from(u: Option<TokenUsage>) -> Self {
        let u = u.unwrap_or_default();
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
        }
    }
}

/// The answer to a run, exactly as seed 000 documents it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunResult {
    /// The model's answer.
    pub response: String,
    /// Tokens spent.
    pub token_usage: TokenUsageView,
    /// The run's id.
    pub run_id: String,
}

/// A logged run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    /// The run's id.
    pub run_id: String,
    /// `succeeded` or `failed`.
    pub status: &'static str,
    /// `provider/model`.
    pub model: String,
    /// The system prompt.
    pub preamble: String,
    /// The user prompt.
    pub prompt: String,
    /// The answer, when it succeeded.
    pub response: Option<String>,
    /// Tokens spent.
    pub token_usage: TokenUsageView,
    /// Time spent.
    pub latency_ms: u64,
    /// The error, when it failed.
    pub error: Option<String>,
    /// The caller's metadata.
    #[schema(value_type = Object)]
    pub log_meta: Map<String, Value>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl From<&Run> for RunView {
    fn from(r: &Run) -> Self {
        Self {
            run_id: r.id.clone(),
            status: r.status.as_str(),
            model: r.model.to_string(),
            preamble: r.preamble.clone(),
            prompt: r.prompt.clone(),
            response: r.response.clone(),
            token_usage: r.usage.into(),
            latency_ms: r.latency_ms,
            error: r.error.clone(),
            log_meta: r.log_meta.clone(),
            created_at: rfc3339(r.created_at),
        }
    }
}

/// A page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// Runs, newest first.
    pub runs: Vec<RunView>,
    /// Matches in all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// Filters on `log_meta`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Page size, 1 to 100.
    pub limit: Option<String>,
    /// Items to skip.
    pub offset: Option<String>,
    /// `log_meta.user_id`.
    pub user_id: Option<String>,
    /// `log_meta.session_id`.
    pub session_id: Option<String>,
    /// `log_meta.component`.
    pub component: Option<String>,
}

fn missing(field: &str) -> ApiError {
    let mut chars = field.chars();
    let cap: String = chars
        .next()
        .map(|f| f.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    ApiError::invalid_request(format!("Missing required field: {field}")).with_details(
        json!({ "field": field, "reason": format!("{cap} field is required and cannot be empty") }),
    )
}

impl RunInput {
    /// What the OpenAPI document adds to the derived schema: a model, as `model_ref` or as
    /// `model`.
    pub(crate) fn schema_rules() -> Value {
        json!({"anyOf": [
            {"required": ["model_ref"], "properties": {"model_ref": {"type": "object"}, "model": {"type": "null"}}},
            {"required": ["model"], "properties": {"model": {"type": ["string", "object"]}, "model_ref": {"type": "null"}}},
        ]})
    }

    fn try_into_domain(self) -> Result<RunRequest, ApiError> {
        let prompt = self
            .prompt
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| missing("prompt"))?;
        let model = match (self.model_ref, self.model) {
            (Some(_), Some(_)) => {
                return Err(ApiError::validation(
                    "model",
                    "give only one of 'model_ref' and 'model'",
                ));
            }
            (Some(r), None) => ModelSpec {
                provider_id: Some(r.provider_id),
                model: r.model_name,
                field: "model_ref".into(),
            },
            (None, Some(ModelInput::Name(m))) => ModelSpec {
                provider_id: None,
                model: m,
                field: "model".into(),
            },
            (None, Some(ModelInput::Ref(r))) => ModelSpec {
                provider_id: Some(r.provider_id),
                model: r.model_name,
                field: "model".into(),
            },
            (None, None) => return Err(missing("model_ref")),
        };
        Ok(RunRequest {
            run_id: self.run_id,
            preamble: self.preamble.unwrap_or_default(),
            prompt,
            model,
            params: Params {
                temperature: self
                    .temperature
                    .map(Temperature::parse)
                    .transpose()?
                    .map(|t| t.get()),
                top_p: self.top_p.map(TopP::parse).transpose()?.map(|t| t.get()),
                max_tokens: self
                    .max_tokens
                    .map(MaxTokens::parse)
                    .transpose()?
                    .map(|t| t.get()),
            },
            log_meta: self.log_meta.unwrap_or_default(),
        })
    }
}

/// Run a prompt once against a model and log it.
#[utoipa::path(post, path = "/api/v1/runs", tag = "runs", request_body = RunInput,
    responses((status = 200, body = RunResult), (status = 400, body = ErrorEnvelope), (status = 404, description = "MODEL_NOT_FOUND, with available_models", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, description = "No invoke permission, or an API key limited to some agents", body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 502, description = "PROVIDER_ERROR", body = ErrorEnvelope)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_run(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    body: Result<JsonBody<RunInput>, ApiError>,
) -> ApiResult<HttpResponse> {
    if crate::auth::principal(&req).is_some_and(|p| p.agents.is_some()) {
        return Err(ApiError::forbidden(
            "This API key is limited to some agents: it may call them, not run arbitrary prompts",
        ));
    }
    let recode = |e: ApiError| e.recode_bad_request("INVALID_REQUEST");
    let JsonBody(body) = body.map_err(recode)?;
    let request = body.try_into_domain().map_err(recode)?;
    let run = state
        .runtime
        .run(request)
        .await
        .map_err(|e| recode(e.into()))?;
    Ok(HttpResponse::Ok().json(RunResult {
        response: run.response.unwrap_or_default(),
        token_usage: run.usage.into(),
        run_id: run.id,
    }))
}

/// List logged runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunQuery), responses((status = 200, body = RunList), (status = 400, body = ErrorEnvelope)))]
pub async fn list_runs(
    state: web::Data<AppState>,
    q: web::Query<RunQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(q.limit.as_deref(), q.offset.as_deref())?;
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let filter = RunFilter {
        user_id: nonempty(&q.user_id),
        session_id: nonempty(&q.session_id),
        component: nonempty(&q.component),
    };
    let paged = state.runtime.list_runs(&filter, page).await?;
    Ok(HttpResponse::Ok().json(RunList {
        runs: paged.items.iter().map(RunView::from).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// Get a logged run.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "runs", params(("run_id" = String, Path)),
    responses((status = 200, body = RunView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_run(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let run = state.runtime.get_run(&path).await?;
    Ok(HttpResponse::Ok().json(RunView::from(&run)))
}
