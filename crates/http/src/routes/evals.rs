//! `/api/v1/testsets` and `/api/v1/eval-runs`: test sets with cases, and evaluation runs of
//! them across configurations (seed 000; `docs/evals.md`).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use agentry_domain::eval::{
    EvalResult, EvalRun, EvalRunFilter, EvalRunId, EvalStatus, NewEvalRun, Summary, TestCase,
    TestSet, TestSetId, TestSetSummary,
};
use agentry_domain::services::TestSetFields;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{JsonBody, TextBody};
use crate::routes::{DeleteResult, rfc3339};

/// Routes of this resource, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/testsets")
            .route(web::get().to(list_testsets))
            .route(web::post().to(create_testset)),
    )
    .service(
        web::resource("/testsets/{testset}")
            .route(web::get().to(get_testset))
            .route(web::put().to(replace_testset))
            .route(web::patch().to(patch_testset))
            .route(web::delete().to(delete_testset)),
    )
    .service(
        web::resource("/testsets/{testset}/cases")
            .route(web::get().to(list_cases))
            .route(web::post().to(add_case)),
    )
    .service(
        web::resource("/testsets/{testset}/cases/{case}")
            .route(web::get().to(get_case))
            .route(web::put().to(replace_case))
            .route(web::delete().to(delete_case)),
    )
    .service(web::resource("/testsets/{testset}/export").route(web::get().to(export_cases)))
    .service(web::resource("/testsets/{testset}/import").route(web::post().to(import_cases)))
    .service(web::resource("/testsets/{testset}/runs").route(web::post().to(start_eval_run)))
    .service(web::resource("/eval-runs").route(web::get().to(list_eval_runs)))
    .service(web::resource("/eval-runs/{eval_run}").route(web::get().to(get_eval_run)))
    .service(web::resource("/eval-runs/{eval_run}/cancel").route(web::post().to(cancel_eval_run)))
    .service(web::resource("/eval-runs/{eval_run}/compare").route(web::get().to(compare_eval_run)));
}

/// A message of a case's input.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct CaseMessage {
    /// `system`, `user` or `assistant`.
    #[schema(value_type = String, example = "user")]
    role: String,
    /// What was said.
    #[schema(example = "My order has not arrived.")]
    content: String,
}

/// What a case sends: one user message, or a conversation answered as a whole.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
#[schema(example = "How do I reset my password?")]
pub enum CaseInputDoc {
    /// One user message.
    Text(String),
    /// Messages (at least one from the user).
    Messages(Vec<CaseMessage>),
}

/// One check of an answer: `type` is `equals` (`value`, `ignore_case`), `contains` and
/// `not_contains` (`value`, `ignore_case`), `regex` (`pattern`), `json_schema` (`schema`),
/// `max_latency_ms` and `max_tokens` (`value`), `tool_called` (`name`, `arguments`) or
/// `judge` (`rubric`, `threshold` from 0 to 1, default 0.7, `judge`: an agent key or
/// provider/model).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({"type": "contains", "value": "reset link", "ignore_case": true}))]
pub struct AssertionDoc {
    /// The kind of check.
    #[schema(value_type = String, example = "contains")]
    r#type: String,
    /// The expected text or value.
    #[schema(value_type = Option<Object>)]
    value: Option<Value>,
    /// Compare ignoring letter case.
    ignore_case: Option<bool>,
    /// A regular expression.
    pattern: Option<String>,
    /// A JSON Schema the answer must be valid against.
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
    /// A tool's name.
    name: Option<String>,
    /// Arguments the tool call must include.
    #[schema(value_type = Option<Object>)]
    arguments: Option<Value>,
    /// What a good answer does (judge).
    rubric: Option<String>,
    /// The judge's pass mark, 0 to 1.
    threshold: Option<f64>,
    /// The judge: an agent key or provider/model.
    judge: Option<String>,
}

/// A test case. `assertions` may be left out when `expected` is given (the answer must then
/// equal it).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({"name": "password reset", "input": "How do I reset my password?",
    "expected": "Use the reset link on the login page.",
    "assertions": [{"type": "contains", "value": "reset link", "ignore_case": true}, {"type": "max_latency_ms", "value": 5000}]}))]
pub struct CaseDoc {
    /// The case's id (`case_…`); made when absent.
    id: Option<String>,
    /// A short name, for tables (at most 200 characters).
    name: Option<String>,
    /// What is sent.
    input: CaseInputDoc,
    /// Variables: each `{{name}}` in the input is replaced by its value.
    #[schema(value_type = Option<Object>)]
    context: Option<Value>,
    /// The expected answer (default of `equals`; shown to judges).
    #[schema(value_type = Option<Object>)]
    expected: Option<Value>,
    /// The checks (at most 20).
    assertions: Option<Vec<AssertionDoc>>,
}

/// A new test set (seed 000), or one replacing another whole (`PUT`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Customer Support Evaluation", "description": "Test cases for customer support scenarios",
    "cases": [{"input": "How do I reset my password?", "assertions": [{"type": "contains", "value": "password"}]}]}))]
pub struct TestSetInput {
    /// Unique name (1 to 200 characters).
    #[schema(value_type = String, required = true, max_length = 200, example = "Customer Support Evaluation")]
    pub name: Option<String>,
    /// What it checks (at most 2,000 characters).
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// The cases (at most 1,000).
    #[schema(value_type = Vec<CaseDoc>, required = true)]
    pub cases: Option<Vec<Value>>,
}

/// Changes to a test set: the fields given (`cases` replaces them all).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"description": "Cases for the support agent, refreshed for Q1"}))]
pub struct TestSetPatch {
    /// New unique name (1 to 200 characters).
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// New description; `null` clears it.
    #[serde(default, deserialize_with = "crate::extract::nullable")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    pub description: Option<Option<String>>,
    /// New cases.
    #[schema(value_type = Option<Vec<CaseDoc>>)]
    pub cases: Option<Vec<Value>>,
}

/// A test set as lists show it (seed 000).
#[derive(Debug, Serialize, ToSchema)]
pub struct TestSetView {
    /// Id (`testset_…`).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// What it checks.
    pub description: Option<String>,
    /// Its number of cases.
    pub case_count: u64,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// The cases (one test set, not lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub cases: Option<Vec<Value>>,
}

impl From<&TestSetSummary> for TestSetView {
    fn from(s: &TestSetSummary) -> Self {
        Self {
            id: s.id.to_string(),
            name: s.name.clone(),
            description: s.description.clone(),
            case_count: s.case_count,
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
            cases: None,
        }
    }
}

fn full(set: &TestSet) -> TestSetView {
    TestSetView {
        cases: Some(set.cases.iter().map(TestCase::to_json).collect()),
        ..TestSetView::from(&set.summary())
    }
}

/// A page of test sets.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestSetList {
    /// Newest first.
    pub testsets: Vec<TestSetView>,
    /// Matches in all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// Pagination.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TestSetPageQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// Items to skip.
    #[param(value_type = Option<u64>)]
    pub offset: Option<String>,
}

fn cases(field: &str, items: &[Value]) -> Result<Vec<TestCase>, ApiError> {
    Ok(agentry_domain::eval::cases_from_json(field, items)?)
}

impl TestSetInput {
    /// Its name, description and cases, the required ones checked.
    fn into_parts(self) -> Result<(String, Option<String>, Vec<TestCase>), ApiError> {
        let name = self
            .name
            .ok_or_else(|| ApiError::validation("name", "is required"))?;
        let items = self
            .cases
            .ok_or_else(|| ApiError::validation("cases", "is required"))?;
        Ok((name, self.description, cases("cases", &items)?))
    }
}

/// List test sets, newest first (seed 000).
#[utoipa::path(get, path = "/api/v1/testsets", tag = "evals", params(TestSetPageQuery),
    responses((status = 200, body = TestSetList), (status = 400, body = ErrorEnvelope)))]
pub async fn list_testsets(
    state: web::Data<AppState>,
    query: web::Query<TestSetPageQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(query.limit.as_deref(), query.offset.as_deref())?;
    let paged = state.evals.list_testsets(page).await?;
    Ok(HttpResponse::Ok().json(TestSetList {
        testsets: paged.items.iter().map(TestSetView::from).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// Create a test set (seed 000).
#[utoipa::path(post, path = "/api/v1/testsets", tag = "evals", request_body = TestSetInput,
    responses((status = 201, body = TestSetView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn create_testset(
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<TestSetInput>,
) -> ApiResult<HttpResponse> {
    let (name, description, cases) = body.into_parts()?;
    let set = state
        .evals
        .create_testset(&name, description, cases)
        .await?;
    Ok(HttpResponse::Created().json(full(&set)))
}

/// Get a test set with its cases (by id or name).
#[utoipa::path(get, path = "/api/v1/testsets/{testset}", tag = "evals",
    params(("testset" = String, Path, description = "Test set id or name")),
    responses((status = 200, body = TestSetView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_testset(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let set = state.evals.get_testset(&path).await?;
    Ok(HttpResponse::Ok().json(full(&set)))
}

/// Replace a test set's name, description and cases.
#[utoipa::path(put, path = "/api/v1/testsets/{testset}", tag = "evals", request_body = TestSetInput,
    params(("testset" = String, Path, description = "Test set id or name")),
    responses((status = 200, body = TestSetView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn replace_testset(
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonBody(body): JsonBody<TestSetInput>,
) -> ApiResult<HttpResponse> {
    let (name, description, cases) = body.into_parts()?;
    let fields = TestSetFields {
        name: Some(name),
        description: Some(description),
        cases: Some(cases),
    };
    let set = state.evals.update_testset(&path, fields).await?;
    Ok(HttpResponse::Ok().json(full(&set)))
}

/// Change some of a test set's fields.
#[utoipa::path(patch, path = "/api/v1/testsets/{testset}", tag = "evals", request_body = TestSetPatch,
    params(("testset" = String, Path, description = "Test set id or name")),
    responses((status = 200, body = TestSetView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn patch_testset(
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonBody(body): JsonBody<TestSetPatch>,
) -> ApiResult<HttpResponse> {
    let fields = TestSetFields {
        name: body.name,
        description: body.description,
        cases: body.cases.map(|c| cases("cases", &c)).transpose()?,
    };
    let set = state.evals.update_testset(&path, fields).await?;
    Ok(HttpResponse::Ok().json(full(&set)))
}

/// Delete a test set (idempotent). Its runs stay readable.
#[utoipa::path(delete, path = "/api/v1/testsets/{testset}", tag = "evals",
    params(("testset" = String, Path, description = "Test set id or name")),
    responses((status = 200, body = DeleteResult)))]
#[tracing::instrument(skip_all)]
pub async fn delete_testset(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let deleted = state.evals.delete_testset(&path).await?;
    Ok(HttpResponse::Ok().json(DeleteResult::new("Test set", deleted)))
}

/// A test set's cases.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseList {
    /// In order.
    #[schema(value_type = Vec<Object>)]
    pub cases: Vec<Value>,
    /// Their number.
    pub total: u64,
}

/// List a test set's cases, in order.
#[utoipa::path(get, path = "/api/v1/testsets/{testset}/cases", tag = "evals",
    params(("testset" = String, Path, description = "Test set id or name")),
    responses((status = 200, body = CaseList), (status = 404, body = ErrorEnvelope)))]
pub async fn list_cases(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let set = state.evals.get_testset(&path).await?;
    Ok(HttpResponse::Ok().json(CaseList {
        total: set.cases.len() as u64,
        cases: set.cases.iter().map(TestCase::to_json).collect(),
    }))
}

fn case_json(body: &Value) -> Result<TestCase, ApiError> {
    Ok(TestCase::from_json("", body)?)
}

/// Add a case at the end.
#[utoipa::path(post, path = "/api/v1/testsets/{testset}/cases", tag = "evals", request_body = CaseDoc,
    params(("testset" = String, Path, description = "Test set id or name")),
    responses((status = 201, description = "The case as stored", body = Object), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn add_case(
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<HttpResponse> {
    let case = case_json(&body)?;
    let json = case.to_json();
    state.evals.add_cases(&path, vec![case]).await?;
    Ok(HttpResponse::Created().json(json))
}

/// Get one case.
#[utoipa::path(get, path = "/api/v1/testsets/{testset}/cases/{case}", tag = "evals",
    params(("testset" = String, Path, description = "Test set id or name"), ("case" = String, Path, description = "Case id")),
    responses((status = 200, description = "The case", body = Object), (status = 404, body = ErrorEnvelope)))]
pub async fn get_case(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (set, case) = path.into_inner();
    let set = state.evals.get_testset(&set).await?;
    let found = set
        .cases
        .iter()
        .find(|c| c.id.as_str() == case)
        .ok_or_else(|| agentry_domain::Error::not_found("case", case.clone()))?;
    Ok(HttpResponse::Ok().json(found.to_json()))
}

/// Replace one case (its id is the path's).
#[utoipa::path(put, path = "/api/v1/testsets/{testset}/cases/{case}", tag = "evals", request_body = CaseDoc,
    params(("testset" = String, Path, description = "Test set id or name"), ("case" = String, Path, description = "Case id")),
    responses((status = 200, description = "The case as stored", body = Object), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn replace_case(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    JsonBody(mut body): JsonBody<Value>,
) -> ApiResult<HttpResponse> {
    let (set, case) = path.into_inner();
    let id = agentry_domain::eval::CaseId::parse(&case)
        .map_err(|_| agentry_domain::Error::not_found("case", case.clone()))?;
    match body.as_object_mut() {
        Some(o) => match o.get("id") {
            Some(Value::String(given)) if given != id.as_str() => {
                return Err(ApiError::validation(
                    "id",
                    "must be the path's case id (or left out)",
                ));
            }
            _ => {
                o.insert("id".into(), json!(id.as_str()));
            }
        },
        None => return Err(ApiError::validation("body", "must be an object")),
    }
    let case = case_json(&body)?;
    let json = case.to_json();
    state.evals.replace_case(&set, case).await?;
    Ok(HttpResponse::Ok().json(json))
}

/// Remove one case (idempotent).
#[utoipa::path(delete, path = "/api/v1/testsets/{testset}/cases/{case}", tag = "evals",
    params(("testset" = String, Path, description = "Test set id or name"), ("case" = String, Path, description = "Case id")),
    responses((status = 200, body = DeleteResult), (status = 404, description = "No such test set", body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn delete_case(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (set, case) = path.into_inner();
    let deleted = state.evals.remove_case(&set, &case).await?;
    Ok(HttpResponse::Ok().json(DeleteResult::new("Case", deleted)))
}

/// Export the cases as JSON Lines: one case a line, in order (what `import` reads back).
#[utoipa::path(get, path = "/api/v1/testsets/{testset}/export", tag = "evals",
    params(("testset" = String, Path, description = "Test set id or name")),
    responses((status = 200, description = "One case a line", content_type = "application/x-ndjson", body = String), (status = 404, body = ErrorEnvelope)))]
pub async fn export_cases(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let set = state.evals.get_testset(&path).await?;
    let file = format!("{}.jsonl", agentry_domain::text::slugify(&set.name, 100));
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file}\""),
        ))
        .body(agentry_domain::eval::cases_to_jsonl(&set.cases)))
}

/// How an import treats the cases already there.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `append` (default): add after the cases there (an id already there is refused);
    /// `replace`: the file's cases replace them all.
    #[param(value_type = Option<String>, pattern = "^(append|replace)$")]
    pub mode: Option<String>,
}

/// Import cases from JSON Lines (one case a line; blank lines skipped). Nothing changes when
/// a line is refused; the error names it (`line 3.input`).
#[utoipa::path(post, path = "/api/v1/testsets/{testset}/import", tag = "evals",
    params(("testset" = String, Path, description = "Test set id or name"), ImportQuery),
    request_body(content = String, content_type = "text/plain", description = "One case a line (JSON Lines); sent as `text/plain`, `application/x-ndjson` or any other type"),
    responses((status = 200, body = TestSetView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 413, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn import_cases(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ImportQuery>,
    TextBody(text): TextBody,
) -> ApiResult<HttpResponse> {
    let replace = match query.mode.as_deref() {
        None | Some("" | "append") => false,
        Some("replace") => true,
        Some(_) => return Err(ApiError::validation("mode", "must be append or replace")),
    };
    let cases = agentry_domain::eval::cases_from_jsonl(&text)?;
    let set = if replace {
        state
            .evals
            .update_testset(
                &path,
                TestSetFields {
                    cases: Some(cases),
                    ..TestSetFields::default()
                },
            )
            .await?
    } else {
        state.evals.add_cases(&path, cases).await?
    };
    Ok(HttpResponse::Ok().json(full(&set)))
}

/// What answers a run's cases: an agent (`agent`, optional `version`, optional `preamble` or
/// `instructions` in place of its own: a candidate prompt with the agent's tools and
/// settings), or a model with inline settings (`model`, `preamble` or `instructions`,
/// `temperature`, `top_p`, `max_tokens`);
/// `label` names it in summaries (default: the agent key, `key@version`, or the model).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
#[schema(example = json!({"agent": "support-bot", "label": "live"}))]
pub struct ConfigurationDoc {
    /// A label (unique within the run).
    label: Option<String>,
    /// An agent's key or id.
    agent: Option<String>,
    /// A version of the agent (published or draft).
    version: Option<u32>,
    /// `provider/model` (inline configurations).
    model: Option<String>,
    /// System instructions (inline), or the agent's replacement instructions (an editor's,
    /// an admin's or an unrestricted `write` key's).
    preamble: Option<String>,
    /// Same as `preamble`.
    instructions: Option<String>,
    /// Temperature, 0 to 2 (inline).
    temperature: Option<f64>,
    /// Top-p, 0 to 1 (inline).
    top_p: Option<f64>,
    /// Answer length limit (inline).
    max_tokens: Option<u32>,
}

/// A run of a test set against configurations.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"configurations": [{"agent": "support-bot", "label": "live"},
    {"model": "mock/echo", "preamble": "You are a concise support assistant.", "temperature": 0.2, "label": "concise"}],
    "concurrency": 2}))]
pub struct EvalRunInput {
    /// 1 to 10 configurations.
    #[schema(value_type = Vec<ConfigurationDoc>, required = true)]
    pub configurations: Option<Vec<Value>>,
    /// Cases run at once, 1 to 16 (default 4).
    #[schema(minimum = 1, maximum = 16)]
    pub concurrency: Option<u64>,
    /// Times each case runs per configuration, 1 to 10 (default 1).
    #[schema(minimum = 1, maximum = 10)]
    pub repeats: Option<u64>,
    /// The judge of `judge` assertions that name none: an agent key or provider/model.
    #[schema(max_length = 200)]
    pub judge: Option<String>,
}

/// Assertions of one kind under one configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssertionTally {
    /// Held.
    pub passed: u64,
    /// Checked.
    pub total: u64,
}

/// Token counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenTotals {
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
    /// Both.
    pub total: u64,
}

/// One configuration's numbers.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvalSummaryView {
    /// The configuration's position in the run.
    pub configuration: u32,
    /// Its label.
    pub label: String,
    /// Results in.
    pub results: u64,
    /// Results whose assertions all held.
    pub passed: u64,
    /// `passed / results`.
    pub pass_rate: f64,
    /// Turns that failed (not passed).
    pub errors: u64,
    /// Per assertion kind.
    pub assertions: std::collections::BTreeMap<String, AssertionTally>,
    /// Median latency, ms.
    pub latency_p50_ms: Option<u64>,
    /// 95th percentile latency, ms.
    pub latency_p95_ms: Option<u64>,
    /// Tokens spent.
    pub tokens: TokenTotals,
    /// Estimated cost in USD: `null` (providers carry no prices yet; docs/evals.md).
    pub estimated_cost_usd: Option<f64>,
}

impl EvalSummaryView {
    fn new(i: usize, s: &Summary) -> Self {
        Self {
            configuration: u32::try_from(i).unwrap_or(u32::MAX),
            label: s.label.clone(),
            results: s.results,
            passed: s.passed,
            pass_rate: (s.pass_rate * 10_000.0).round() / 10_000.0,
            errors: s.errors,
            assertions: s
                .assertions
                .iter()
                .map(|(k, p, t)| {
                    (
                        (*k).to_owned(),
                        AssertionTally {
                            passed: *p,
                            total: *t,
                        },
                    )
                })
                .collect(),
            latency_p50_ms: s.latency_p50_ms,
            latency_p95_ms: s.latency_p95_ms,
            tokens: TokenTotals {
                prompt: s.prompt_tokens,
                completion: s.completion_tokens,
                total: s.prompt_tokens + s.completion_tokens,
            },
            estimated_cost_usd: None,
        }
    }
}

/// One case's result under one configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvalResultView {
    /// The configuration's position.
    pub configuration: u32,
    /// The configuration's label.
    pub label: String,
    /// The case.
    pub case_id: String,
    /// The case's name.
    pub case_name: Option<String>,
    /// Which repeat (from 0).
    pub repeat: u32,
    /// Every assertion held and the turn did not fail.
    pub passed: bool,
    /// The answer.
    pub output: String,
    /// The turn's failure.
    pub error: Option<String>,
    /// Time, end to end.
    pub latency_ms: u64,
    /// Tokens.
    pub tokens: TokenTotals,
    /// The model that answered.
    pub model: Option<String>,
    /// Tool calls made (`name`, `arguments`).
    #[schema(value_type = Vec<Object>)]
    pub tool_calls: Vec<Value>,
    /// Each assertion's verdict: `type`, `passed`, `reason` (and `score` for judges).
    #[schema(value_type = Vec<Object>)]
    pub assertions: Vec<Value>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// EvalProgress.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvalProgress {
    /// Results stored.
    pub done: u64,
    /// Results expected.
    pub total: u64,
}

/// An evaluation run.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvalRunView {
    /// Id (`eval_run_…`).
    pub id: String,
    /// The test set.
    pub testset_id: String,
    /// Its name when the run started.
    pub testset_name: String,
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    #[schema(example = "running")]
    pub status: &'static str,
    /// Results stored of those expected.
    pub progress: EvalProgress,
    /// The configurations, in order (with their labels).
    #[schema(value_type = Vec<Object>)]
    pub configurations: Vec<Value>,
    /// Cases at once.
    pub concurrency: u32,
    /// Repeats.
    pub repeats: u32,
    /// The default judge.
    pub judge: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Who started it.
    pub created_by: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// When a runner first took it.
    pub started_at: Option<String>,
    /// When it ended.
    pub completed_at: Option<String>,
    /// Per configuration (one run, not lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Vec<EvalSummaryView>>,
    /// Per case × configuration × repeat (one run, unless `results=false`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<EvalResultView>>,
}

fn run_view(run: &EvalRun) -> EvalRunView {
    EvalRunView {
        id: run.id.to_string(),
        testset_id: run.testset_id.to_string(),
        testset_name: run.testset_name.clone(),
        status: run.status.as_str(),
        progress: EvalProgress {
            done: run.done,
            total: run.total,
        },
        configurations: run.configurations.iter().map(|c| c.to_json()).collect(),
        concurrency: run.concurrency,
        repeats: run.repeats,
        judge: run.judge.clone(),
        error: run.error.clone(),
        created_by: run.created_by.clone(),
        created_at: rfc3339(run.created_at),
        started_at: run.started_at.map(rfc3339),
        completed_at: run.completed_at.map(rfc3339),
        summary: None,
        results: None,
    }
}

fn result_view(run: &EvalRun, r: &EvalResult) -> EvalResultView {
    EvalResultView {
        configuration: r.configuration,
        label: run
            .configurations
            .get(r.configuration as usize)
            .map(|c| c.label.clone())
            .unwrap_or_default(),
        case_id: r.case_id.to_string(),
        case_name: run
            .cases
            .iter()
            .find(|c| c.id == r.case_id)
            .and_then(|c| c.name.clone()),
        repeat: r.repeat,
        passed: r.passed,
        output: r.output.clone(),
        error: r.error.clone(),
        latency_ms: r.latency_ms,
        tokens: TokenTotals {
            prompt: r.prompt_tokens,
            completion: r.completion_tokens,
            total: r.prompt_tokens + r.completion_tokens,
        },
        model: r.model.clone(),
        tool_calls: r.tool_calls.clone(),
        assertions: r.verdicts.iter().map(|v| v.to_json()).collect(),
        created_at: rfc3339(r.created_at),
    }
}

/// Results in the run's order: by case (as the test set had them), then configuration, then
/// repeat.
fn ordered(run: &EvalRun, mut results: Vec<EvalResult>) -> Vec<EvalResult> {
    let position = |id: &agentry_domain::eval::CaseId| {
        run.cases
            .iter()
            .position(|c| &c.id == id)
            .unwrap_or(usize::MAX)
    };
    results.sort_by_key(|r| (position(&r.case_id), r.configuration, r.repeat));
    results
}

/// Start a run of the test set against configurations (seed 000): `202` with the run,
/// `pending`; a runner on any replica executes it (`GET /api/v1/eval-runs/{id}` follows it).
#[utoipa::path(post, path = "/api/v1/testsets/{testset}/runs", tag = "evals", request_body = EvalRunInput,
    params(("testset" = String, Path, description = "Test set id or name")),
    responses((status = 202, body = EvalRunView), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn start_eval_run(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    JsonBody(body): JsonBody<EvalRunInput>,
) -> ApiResult<HttpResponse> {
    let configurations = body
        .configurations
        .ok_or_else(|| ApiError::validation("configurations", "is required"))?;
    let new = NewEvalRun::new(&configurations, body.concurrency, body.repeats, body.judge)?;
    let run = state.evals.start_run(Some(&caller), &path, new).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/v1/eval-runs/{}", run.id)))
        .json(run_view(&run)))
}

/// Filters and pagination.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvalRunQuery {
    /// Runs of this test set (id).
    #[param(pattern = "^(testset_[0-9a-f]{32})?$")]
    pub testset_id: Option<String>,
    /// Runs in this status.
    #[param(value_type = Option<String>, pattern = "^(pending|running|completed|failed|cancelled)?$")]
    pub status: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// Items to skip.
    #[param(value_type = Option<u64>)]
    pub offset: Option<String>,
}

/// A page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvalRunList {
    /// Newest first (without summaries and results).
    pub eval_runs: Vec<EvalRunView>,
    /// Matches in all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// List runs, newest first.
#[utoipa::path(get, path = "/api/v1/eval-runs", tag = "evals", params(EvalRunQuery),
    responses((status = 200, body = EvalRunList), (status = 400, body = ErrorEnvelope)))]
pub async fn list_eval_runs(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    query: web::Query<EvalRunQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(query.limit.as_deref(), query.offset.as_deref())?;
    let filter = EvalRunFilter {
        testset_id: query
            .testset_id
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(TestSetId::parse)
            .transpose()?,
        status: query
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(EvalStatus::parse)
            .transpose()?,
        created_by: None,
    };
    let paged = state.evals.list_runs(Some(&caller), filter, page).await?;
    Ok(HttpResponse::Ok().json(EvalRunList {
        eval_runs: paged.items.iter().map(run_view).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

fn run_id(raw: &str) -> Result<EvalRunId, ApiError> {
    EvalRunId::parse(raw).map_err(|_| agentry_domain::Error::not_found("eval_run", raw).into())
}

/// What a run's page holds.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvalRunDetailQuery {
    /// `false` leaves the per-case results out (the summary stays).
    #[param(value_type = Option<bool>)]
    pub results: Option<String>,
}

/// Get a run: status, progress, per-configuration summary and per-case results.
#[utoipa::path(get, path = "/api/v1/eval-runs/{eval_run}", tag = "evals",
    params(("eval_run" = String, Path, description = "Run id"), EvalRunDetailQuery),
    responses((status = 200, body = EvalRunView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get_eval_run(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    query: web::Query<EvalRunDetailQuery>,
) -> ApiResult<HttpResponse> {
    let with_results = match query.results.as_deref() {
        None | Some("" | "true") => true,
        Some("false") => false,
        Some(_) => return Err(ApiError::validation("results", "must be true or false")),
    };
    let (run, results) = state.evals.results(Some(&caller), &run_id(&path)?).await?;
    let results = ordered(&run, results);
    let summaries = agentry_domain::eval::summarise(&run.configurations, &results);
    let mut view = run_view(&run);
    view.progress.done = results.len() as u64;
    view.summary = Some(
        summaries
            .iter()
            .enumerate()
            .map(|(i, s)| EvalSummaryView::new(i, s))
            .collect(),
    );
    if with_results {
        view.results = Some(results.iter().map(|r| result_view(&run, r)).collect());
    }
    Ok(HttpResponse::Ok().json(view))
}

/// Cancel a run: a pending one at once; a running one's turns are dropped. A run that already
/// ended is returned unchanged.
#[utoipa::path(post, path = "/api/v1/eval-runs/{eval_run}/cancel", tag = "evals",
    params(("eval_run" = String, Path, description = "Run id")),
    responses((status = 200, body = EvalRunView), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn cancel_eval_run(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let run = state
        .evals
        .cancel_run(Some(&caller), &run_id(&path)?)
        .await?;
    Ok(HttpResponse::Ok().json(run_view(&run)))
}

/// Which configurations to compare.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvalCompareQuery {
    /// The base configuration: its label or position (default 0).
    pub base: Option<String>,
    /// The candidate: its label or position (default 1).
    pub candidate: Option<String>,
}

/// A case whose outcome differs between two configurations.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlipView {
    /// The case.
    pub case_id: String,
    /// Its name.
    pub case_name: Option<String>,
    /// Passed under the base.
    pub base_passed: bool,
    /// Passed under the candidate.
    pub candidate_passed: bool,
}

/// Two configurations compared case by case.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvalComparison {
    /// The base's label.
    pub base: String,
    /// The candidate's label.
    pub candidate: String,
    /// Failed under the base, passed under the candidate.
    pub improved: Vec<FlipView>,
    /// Passed under the base, failed under the candidate.
    pub regressed: Vec<FlipView>,
    /// Cases with the same outcome under both.
    pub unchanged: u64,
    /// The candidate's pass rate minus the base's.
    pub pass_rate_delta: f64,
}

fn configuration_index(
    run: &EvalRun,
    field: &str,
    raw: Option<&str>,
    default: u32,
) -> Result<u32, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        if (default as usize) < run.configurations.len() {
            return Ok(default);
        }
        return Err(ApiError::validation(
            field,
            "the run has no such configuration",
        ));
    };
    if let Some(i) = run.configurations.iter().position(|c| c.label == raw) {
        return Ok(u32::try_from(i).unwrap_or(u32::MAX));
    }
    match raw.parse::<u32>() {
        Ok(i) if (i as usize) < run.configurations.len() => Ok(i),
        _ => Err(ApiError::validation(
            field,
            format!(
                "names no configuration of the run (a label or a position from 0 to {})",
                run.configurations.len().saturating_sub(1)
            ),
        )),
    }
}

/// Compare two configurations of a run: the cases that flipped (a case passes under a
/// configuration when every repeat passed).
#[utoipa::path(get, path = "/api/v1/eval-runs/{eval_run}/compare", tag = "evals",
    params(("eval_run" = String, Path, description = "Run id"), EvalCompareQuery),
    responses((status = 200, body = EvalComparison), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn compare_eval_run(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
    query: web::Query<EvalCompareQuery>,
) -> ApiResult<HttpResponse> {
    let (run, results) = state.evals.results(Some(&caller), &run_id(&path)?).await?;
    let base = configuration_index(&run, "base", query.base.as_deref(), 0)?;
    let candidate = configuration_index(&run, "candidate", query.candidate.as_deref(), 1)?;
    let (flips, unchanged) = agentry_domain::eval::flips(&run, &results, base, candidate);
    let summaries = agentry_domain::eval::summarise(&run.configurations, &results);
    let rate = |i: u32| summaries.get(i as usize).map_or(0.0, |s| s.pass_rate);
    let view = |f: &agentry_domain::eval::Flip| FlipView {
        case_id: f.case_id.to_string(),
        case_name: f.name.clone(),
        base_passed: f.base_passed,
        candidate_passed: f.candidate_passed,
    };
    let label = |i: u32| run.configurations[i as usize].label.clone();
    Ok(HttpResponse::Ok().json(EvalComparison {
        base: label(base),
        candidate: label(candidate),
        improved: flips
            .iter()
            .filter(|f| f.candidate_passed)
            .map(view)
            .collect(),
        regressed: flips.iter().filter(|f| f.base_passed).map(view).collect(),
        unchanged,
        pass_rate_delta: ((rate(candidate) - rate(base)) * 10_000.0).round() / 10_000.0,
    }))
}
