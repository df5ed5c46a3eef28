//! The one place where failures become HTTP responses: `{"error": {"code", "message",
//! "details", "request_id"}}` with the status of the code.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use agentry_domain::Error;
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served, set by the request-id middleware.
    pub(crate) static REQUEST_ID: String;
}

/// The request id of the current request, if one is being served.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// An error as the API reports it.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Value>,
    /// Seconds to wait, sent as `Retry-After` (429, and 503 for a busy agent).
    retry_after: Option<u64>,
}

/// The error envelope every route uses.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// The body of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code such as `VALIDATION_ERROR` or `AGENT_NOT_FOUND`.
    #[schema(example = "VALIDATION_ERROR")]
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
    /// Machine-readable details, such as the failing `field` and the `reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// The request id, also sent as the `X-Request-Id` header.
    pub request_id: Option<String>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 401 `UNAUTHORIZED`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    /// 403 `FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 429 `RATE_LIMITED`, with `Retry-After` and, as seed 000 shows,
    /// `details.retry_after_seconds` and `details.limit`.
    pub fn rate_limited(retry_after_secs: u64, limit: Option<&str>) -> Self {
        let secs = retry_after_secs.max(1);
        let mut details = Map::new();
        details.insert("retry_after_seconds".to_owned(), secs.into());
        if let Some(l) = limit {
            details.insert("limit".to_owned(), l.into());
        }
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "Too many requests, please try again later",
        )
        .with_details(Value::Object(details));
        e.retry_after = Some(secs);
        e
    }

    /// Sets the seconds to wait before retrying (`Retry-After`).
    pub fn set_retry_after(&mut self, secs: u64) {
        self.retry_after = Some(secs);
    }

    /// Seconds to wait before retrying, for a 429.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// Adds machine-readable details.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 `INVALID_REQUEST`: the request could not be read at all.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// 400 `VALIDATION_ERROR` on one field.
    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("Invalid request data: {field} {reason}"),
        )
        .with_details(json!({ "field": field, "reason": reason }))
    }

    /// 404 `NOT_FOUND` for a route that does not exist.
    pub fn route_not_found(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("No route for {method} {path}"),
        )
    }

    /// The same error under another code when it is a 400 (seed 000's endpoints say
    /// `INVALID_REQUEST` for every bad input).
    #[must_use]
    pub fn recode_bad_request(mut self, code: &'static str) -> Self {
        if self.status == StatusCode::BAD_REQUEST {
            self.code = code;
        }
        self
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The details.
    pub fn details(&self) -> Option<&Value> {
        self.details.as_ref()
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

fn not_found_code(entity: &str) -> &'static str {
    match entity {
        "agent" => "AGENT_NOT_FOUND",
        "cluster" => "CLUSTER_NOT_FOUND",
        "model" => "MODEL_NOT_FOUND",
        "mcp_server" => "MCP_SERVER_NOT_FOUND",
        "task" => "TASK_NOT_FOUND",
        _ => "NOT_FOUND",
    }
}

fn capitalised(entity: &str) -> String {
    if entity == "mcp_server" {
        return "MCP server".to_owned();
    }
    let mut c = entity.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(inv) => {
                let mut details = Map::new();
                details.insert("field".to_owned(), inv.field.clone().into());
                details.insert("reason".to_owned(), inv.reason.clone().into());
                details.extend(inv.extra);
                Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", format!("Invalid request data: {} {}", inv.field, inv.reason))
                    .with_details(Value::Object(details))
            }
            Error::NotFound { entity, id } => Self::new(StatusCode::NOT_FOUND, not_found_code(entity), format!("{} not found", capitalised(entity)))
                .with_details(json!({ "resource": entity, "id": id })),
            Error::ModelNotFound { provider_id, model, available_models } => {
                Self::new(StatusCode::NOT_FOUND, "MODEL_NOT_FOUND", "The specified model was not found")
                    .with_details(json!({ "provider_id": provider_id, "model_name": model, "available_models": available_models }))
            }
            Error::Conflict { message, field, extra } => {
                let mut details = extra;
                if let Some(f) = field {
                    details.insert("field".to_owned(), f.into());
                }
                // Seed 004's specific conflicts carry their code.
                let code = match details.remove("code").as_ref().and_then(Value::as_str) {
                    Some("CLUSTER_EXISTS") => "CLUSTER_EXISTS",
                    Some("SCALING_IN_PROGRESS") => "SCALING_IN_PROGRESS",
                    _ => "CONFLICT",
                };
                let e = Self::new(StatusCode::CONFLICT, code, message);
                if details.is_empty() { e } else { e.with_details(Value::Object(details)) }
            }
            Error::Provider { provider_id, error } => {
                tracing::warn!(%provider_id, %error, "provider call failed");
                let mut details = Map::new();
                details.insert("provider_id".to_owned(), provider_id.into());
                if let Some(status) = error.status() {
                    details.insert("upstream_status".to_owned(), status.into());
                }
                if let agentry_domain::llm::ProviderError::RateLimited { retry_after: Some(d), .. } = &error {
                    details.insert("retry_after_seconds".to_owned(), d.as_secs().max(1).into());
                }
                details.insert("reason".to_owned(), error.to_string().into());
                Self::new(StatusCode::BAD_GATEWAY, "PROVIDER_ERROR", "Error communicating with the AI provider").with_details(Value::Object(details))
            }
            Error::Unauthorized(message) => Self::unauthorized(message),
            Error::Forbidden(message) => Self::forbidden(message),
            Error::RateLimited { retry_after, limit } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Self::rate_limited(secs, limit.as_deref())
            }
            Error::Busy { retry_after, message } => {
                let secs = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
                let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", message)
                    .with_details(json!({ "retry_after_seconds": secs }));
                e.retry_after = Some(secs);
                e
            }
            Error::Guardrail { trigger, field } => {
                let mut details = Map::new();
                details.insert("field".to_owned(), field.into());
                details.insert("stage".to_owned(), trigger.stage.as_str().into());
                details.insert("index".to_owned(), trigger.index.into());
                details.insert("rule".to_owned(), trigger.rule.clone().into());
                if let Some(name) = &trigger.name {
                    details.insert("name".to_owned(), name.clone().into());
                }
                details.insert("reason".to_owned(), trigger.detail.clone().into());
                Self::new(StatusCode::BAD_REQUEST, "GUARDRAIL_VIOLATION", format!("The input was blocked by guardrail {}: {}", trigger.label(), trigger.detail))
                    .with_details(Value::Object(details))
            }
            Error::TooLarge { limit_bytes } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("The upload is larger than the limit of {limit_bytes} bytes"),
            )
            .with_details(json!({ "limit_bytes": limit_bytes })),
            Error::UnsupportedMedia(reason) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                format!("Unsupported media type: {reason}"),
            )
            .with_details(json!({ "field": "file", "reason": reason })),
            Error::Unavailable(cause) => {
                tracing::warn!(%cause, "backing service unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", "Service temporarily unavailable, please retry")
            }
            Error::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "Internal server error")
            }
        }
    }
}

impl ApiError {
    /// This error in OpenAI's format, `{"error": {"message", "type", "param", "code"}}`, for the
    /// OpenAI-compatible surface (see [`crate::permissions::is_openai_surface`]), rendered by
    /// the one OpenAI error type of the client API.
    pub fn openai_response(&self) -> HttpResponse {
        crate::openai::OpenAiError::from(self.clone()).error_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code.to_owned(),
                message: self.message.clone(),
                details: self.details.clone(),
                request_id: current_request_id(),
            },
        };
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.json(body)
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
