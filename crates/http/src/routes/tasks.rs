//! `/api/v1/tasks`: asynchronous agent work (seed 002's Tasks API). Creating a task queues
//! it; a worker on any replica runs the agent and stores the answer as `result`
//! (`docs/tasks.md`).

use actix_web::{HttpResponse, web};
use agentry_domain::task::{NewTask, Task, TaskFilter, TaskId, TaskPriority, TaskStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::JsonBody;
use crate::routes::rfc3339;

/// Routes of this resource, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tasks")
            .route(web::post().to(create_task))
            .route(web::get().to(list_tasks)),
    )
    .service(web::resource("/tasks/{task_id}").route(web::get().to(get_task)))
    .service(web::resource("/tasks/{task_id}/cancel").route(web::post().to(cancel_task)));
}

/// A new task (seed 002).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Process document", "description": "Extract key information from uploaded document",
    "agent_id": "support-bot", "priority": "high", "data": {"document_url": "https://example.com/doc.pdf"}}))]
pub struct TaskInput {
    /// What to do, in a line (1 to 500 characters, no control characters).
    #[schema(value_type = String, required = true, example = "Process document", max_length = 500,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")]
    pub title: Option<String>,
    /// More of what to do (at most 20,000 characters; lines and tabs, no other control
    /// characters).
    #[schema(
        example = "Extract key information from uploaded document",
        max_length = 20_000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    pub description: Option<String>,
    /// The agent that runs it: its id or key.
    #[schema(value_type = String, required = true, example = "agent-123",
        pattern = r"^(agent_[0-9a-f]{32}|(?!agent_)[a-z0-9][a-z0-9._-]{0,63})$")]
    pub agent_id: Option<String>,
    /// `low`, `medium` (default) or `high`: higher priorities are claimed first.
    #[schema(example = "high")]
    pub priority: Option<TaskPriorityInput>,
    /// Input data for the agent (a JSON object, at most 256 KiB).
    #[schema(value_type = Option<Object>, example = json!({"document_url": "https://example.com/doc.pdf", "extract_fields": ["name", "date", "amount"]}))]
    pub data: Option<Map<String, Value>>,
    /// Your key for retrying this create safely: the same key from the same caller returns
    /// the task created first (`200` instead of `201`). 1 to 255 characters, no control
    /// characters.
    #[schema(
        max_length = 255,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub idempotency_key: Option<String>,
    /// Attempts allowed, 1 to 10 (default 3).
    #[schema(minimum = 1, maximum = 10)]
    pub max_attempts: Option<i64>,
    /// Not before this time (RFC 3339); now when absent.
    pub run_at: Option<DateTime<Utc>>,
}

/// A task's status.
#[derive(ToSchema)]
#[schema(as = TaskStatus)]
#[allow(dead_code)]
pub enum TaskStatusName {
    /// Queued.
    #[schema(rename = "pending")]
    Pending,
    /// Held by a worker.
    #[schema(rename = "running")]
    Running,
    /// Answered: see `result`.
    #[schema(rename = "completed")]
    Completed,
    /// Out of attempts: see `error`.
    #[schema(rename = "failed")]
    Failed,
    /// Cancelled before it ended.
    #[schema(rename = "cancelled")]
    Cancelled,
}

/// A priority.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskPriorityInput {
    /// Claimed last.
    Low,
    /// The default.
    Medium,
    /// Claimed first.
    High,
}

impl TaskPriorityInput {
    fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// A task as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    /// Id (`task_…`).
    pub id: String,
    /// What to do.
    pub title: String,
    /// More of what to do.
    pub description: Option<String>,
    /// The agent's id.
    pub agent_id: String,
    /// The agent's key.
    pub agent_key: String,
    /// `low`, `medium` or `high`.
    #[schema(example = "high")]
    pub priority: &'static str,
    /// The input data.
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    #[schema(example = "pending")]
    pub status: &'static str,
    /// Once completed: `{"response", "model", "finish_reason", "usage", "run_id"}`.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Attempts started.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// Who created it.
    pub created_by: Option<String>,
    /// The worker that holds it, or ran its last attempt (`<replica>/<n>`).
    pub worker: Option<String>,
    /// Not claimed before (RFC 3339 UTC).
    pub run_at: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// When the first attempt started.
    pub started_at: Option<String>,
    /// When it ended.
    pub completed_at: Option<String>,
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id.to_string(),
            title: t.title.clone(),
            description: t.description.clone(),
            agent_id: t.agent_id.to_string(),
            agent_key: t.agent_key.to_string(),
            priority: t.priority.as_str(),
            data: t.data.clone(),
            status: t.status.as_str(),
            result: t.result.clone(),
            error: t.error.clone(),
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            idempotency_key: t.idempotency_key.clone(),
            created_by: t.created_by.clone(),
            worker: t.lease_owner.clone(),
            run_at: rfc3339(t.run_at),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
            started_at: t.started_at.map(rfc3339),
            completed_at: t.completed_at.map(rfc3339),
        }
    }
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskList {
    /// Newest first.
    pub tasks: Vec<TaskView>,
    /// Matches in all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// Filters and pagination.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Only tasks in this status.
    #[param(value_type = Option<TaskStatusName>)]
    pub status: Option<String>,
    /// The agent's id or key.
    #[param(pattern = r"^(agent_[0-9a-f]{32}|(?!agent_)[a-z0-9][a-z0-9._-]{0,63})?$")]
    pub agent_id: Option<String>,
    /// Only tasks of this priority.
    #[param(value_type = Option<TaskPriorityInput>)]
    pub priority: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
    /// Items to skip.
    #[param(value_type = Option<u64>)]
    pub offset: Option<String>,
}

fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(raw).map_err(|_| agentry_domain::Error::not_found("task", raw).into())
}

/// Create a task: it is queued (`pending`) and run by a worker.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", request_body = TaskInput,
    responses((status = 201, body = TaskView), (status = 200, description = "An earlier task with the same idempotency key", body = TaskView),
        (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn create_task(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<TaskInput>,
) -> ApiResult<HttpResponse> {
    let title = body
        .title
        .ok_or_else(|| ApiError::validation("title", "is required"))?;
    let agent = body
        .agent_id
        .ok_or_else(|| ApiError::validation("agent_id", "is required"))?;
    let new = NewTask::new(
        &title,
        body.description,
        &agent,
        body.priority.map(TaskPriorityInput::as_str),
        body.data,
        body.idempotency_key,
        body.max_attempts,
        body.run_at,
    )?;
    let (task, created) = state.tasks.create(Some(&caller), new).await?;
    let view = TaskView::from(&task);
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

/// List tasks, newest first.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(TaskQuery),
    responses((status = 200, body = TaskList), (status = 400, body = ErrorEnvelope)))]
pub async fn list_tasks(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    query: web::Query<TaskQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(query.limit.as_deref(), query.offset.as_deref())?;
    let agent_id = match query.agent_id.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(raw) => {
            let agent = agentry_domain::agent::AgentRef::parse(raw)
                .map_err(|e| ApiError::from(agentry_domain::Error::from(e.renamed("agent_id"))))?;
            match state.agents.get(&agent).await {
                Ok(a) => Some(a.id),
                // No such agent: no tasks.
                Err(agentry_domain::Error::NotFound { .. }) => {
                    return Ok(HttpResponse::Ok().json(TaskList {
                        tasks: Vec::new(),
                        total: 0,
                        limit: page.limit(),
                        offset: page.offset(),
                    }));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let filter = TaskFilter {
        status: query
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(TaskStatus::parse)
            .transpose()?,
        priority: query
            .priority
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(TaskPriority::parse)
            .transpose()?,
        agent_id,
        ..TaskFilter::default()
    };
    let paged = state.tasks.list(Some(&caller), filter, page).await?;
    Ok(HttpResponse::Ok().json(TaskList {
        tasks: paged.items.iter().map(TaskView::from).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// Get a task (with `result` or `error`, attempts and timings).
#[utoipa::path(get, path = "/api/v1/tasks/{task_id}", tag = "tasks",
    params(("task_id" = String, Path, description = "Task id")),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_task(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let task = state.tasks.get(Some(&caller), &task_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(TaskView::from(&task)))
}

/// Cancel a task: a pending task at once; a running task's turn is dropped by its worker
/// (the provider's stream is closed). A task that already ended is returned unchanged.
#[utoipa::path(post, path = "/api/v1/tasks/{task_id}/cancel", tag = "tasks",
    params(("task_id" = String, Path, description = "Task id")),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn cancel_task(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let task = state.tasks.cancel(Some(&caller), &task_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(TaskView::from(&task)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use utoipa::PartialSchema;

    #[test]
    fn the_documented_words_are_the_domains() {
        let words = |schema: serde_json::Value| -> Vec<String> {
            schema["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_str().unwrap().to_owned())
                .collect()
        };
        let statuses = words(serde_json::to_value(super::TaskStatusName::schema()).unwrap());
        assert_eq!(statuses.len(), 5);
        for s in statuses {
            assert_eq!(
                super::TaskStatus::parse(&s).map(|t| t.as_str()),
                Ok(s.as_str())
            );
        }
        for p in words(serde_json::to_value(super::TaskPriorityInput::schema()).unwrap()) {
            assert!(super::TaskPriority::parse(&p).is_ok(), "{p}");
        }
    }
}
