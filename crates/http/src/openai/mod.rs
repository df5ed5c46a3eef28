//! The OpenAI-compatible client API: Responses (`/v1/responses`), Chat Completions
//! (`/v1/chat/completions`), Models (`/v1/models`), and seed 003's `/api/client/v1`. The
//! `model` of a request is an agent's key. Errors use OpenAI's format
//! `{"error": {"message", "type", "param", "code"}}` so the SDKs raise their typed errors.

pub mod agents;
pub mod bodies;
pub mod chat_completions;
pub mod models;
pub mod options;
pub mod responses;

use actix_web::http::StatusCode;
use actix_web::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError, web};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::JsonBody;

/// Routes under `/v1` (next to the management aliases).
pub fn configure_v1(cfg: &mut web::ServiceConfig) {
    responses::configure(cfg);
    chat_completions::configure(cfg);
    models::configure(cfg);
}

/// Routes under `/api/client/v1` (seed 003).
pub fn configure_client(cfg: &mut web::ServiceConfig) {
    // Before `/agents/{key}`, whose GET-only resource would otherwise answer 405; a guarded
    // route (not a resource), so that a GET still reaches `/agents/{key}`.
    cfg.route(
        "/agents/responses",
        web::post().to(responses::create_response),
    );
    agents::configure(cfg);
    responses::configure(cfg);
}

/// An error in OpenAI's format.
#[derive(Debug, Clone)]
pub struct OpenAiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: Option<String>,
    retry_after: Option<u64>,
}

/// OpenAI's error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorEnvelope {
    /// The error.
    pub error: OpenAiErrorBody,
}

/// OpenAI's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    /// What went wrong.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `rate_limit_error`, `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter, when there is one.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `missing_required_parameter`…).
    pub code: Option<String>,
}

impl OpenAiError {
    /// An error with a status, message, parameter and code.
    pub fn new(
        status: StatusCode,
        message: impl Into<String>,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind: kind_of(status),
            param: param.map(str::to_owned),
            code: code.map(str::to_owned),
            retry_after: None,
        }
    }

    /// 400 for a parameter.
    pub fn invalid(param: &str, message: impl Into<String>, code: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, Some(param), Some(code))
    }

    /// 404 for a model (agent key) nobody serves.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("The model '{model}' does not exist or you do not have access to it."),
            Some("model"),
            Some("model_not_found"),
        )
    }

    /// 404 for a path of the OpenAI surface that Agentry does not serve (an OpenAI endpoint
    /// it lacks, or a typo), as OpenAI answers one: type `invalid_request_error`, code
    /// `unknown_url`.
    pub fn unknown_url(method: &str, path: &str) -> Self {
        Self {
            kind: "invalid_request_error",
            ..Self::new(
                StatusCode::NOT_FOUND,
                format!("Invalid URL ({method} {path}): Agentry does not serve this endpoint."),
                None,
                Some("unknown_url"),
            )
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The parameter it names.
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }
}

/// A turn's refusal in OpenAI's terms: `model` is what the caller asked for.
pub fn turn_error(e: agentry_domain::Error, model: &str) -> OpenAiError {
    use agentry_domain::Error;
    match e {
        Error::NotFound {
            entity: "agent", ..
        }
        | Error::ModelNotFound { .. } => OpenAiError::model_not_found(model),
        Error::NotFound {
            entity: "version",
            id,
        } => OpenAiError::new(
            StatusCode::NOT_FOUND,
            format!("Version {id} of agent '{model}' does not exist."),
            Some("version"),
            Some("version_not_found"),
        ),
        Error::Forbidden(message) => {
            let code = if message.starts_with("Calling") {
                "direct_model_access_denied"
            } else {
                "agent_not_allowed"
            };
            OpenAiError::new(StatusCode::FORBIDDEN, message, Some("model"), Some(code))
        }
        Error::Invalid(inv) => {
            let code = inv
                .extra
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("invalid_value")
                .to_owned();
            OpenAiError::invalid(&inv.field, inv.reason, &code)
        }
        other => other.into(),
    }
}

fn kind_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// OpenAI's own codes for authentication, permission and rate-limit failures (so SDKs behave
/// as with OpenAI); Agentry's code, lower-cased, otherwise.
fn openai_code(e: &ApiError) -> String {
    match e.status() {
        StatusCode::UNAUTHORIZED => "invalid_api_key".to_owned(),
        StatusCode::FORBIDDEN => "permission_denied".to_owned(),
        StatusCode::TOO_MANY_REQUESTS => "rate_limit_exceeded".to_owned(),
        _ => e.code().to_ascii_lowercase(),
    }
}

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        let details = e.details();
        let param = details
            .and_then(|d| d.get("field"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let retry_after = e.retry_after().or_else(|| {
            details
                .and_then(|d| d.get("retry_after_seconds"))
                .and_then(Value::as_u64)
        });
        let message = match details
            .and_then(|d| d.get("reason"))
            .and_then(Value::as_str)
        {
            Some(reason) if e.status().as_u16() == 502 => format!("{}: {reason}", e.message()),
            _ => e.message().to_owned(),
        };
        Self {
            status: e.status(),
            message,
            kind: kind_of(e.status()),
            param,
            code: Some(openai_code(&e)),
            retry_after,
        }
    }
}

impl From<agentry_domain::Error> for OpenAiError {
    fn from(e: agentry_domain::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl std::fmt::Display for OpenAiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.kind, self.message)
    }
}

impl ResponseError for OpenAiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(s) = self.retry_after {
            res.insert_header((RETRY_AFTER, s.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((WWW_AUTHENTICATE, "Bearer"));
        }
        res.json(OpenAiErrorEnvelope {
            error: OpenAiErrorBody {
                message: self.message.clone(),
                kind: self.kind.to_owned(),
                param: self.param.clone(),
                code: self.code.clone(),
            },
        })
    }
}

/// Result of the client API handlers.
pub type OpenAiResult<T> = Result<T, OpenAiError>;

/// The body as a JSON object, with OpenAI-format errors.
///
/// # Errors
/// Not JSON, not an object, too large, wrong content type.
pub fn object_body(body: Result<JsonBody<Value>, ApiError>) -> OpenAiResult<Map<String, Value>> {
    match body.map_err(OpenAiError::from)?.0 {
        Value::Object(map) => Ok(map),
        _ => Err(OpenAiError::new(
            StatusCode::BAD_REQUEST,
            "The request body must be a JSON object.",
            None,
            Some("invalid_request"),
        )),
    }
}

/// Refuses parameters the endpoint does not support; `accepted` are the supported names.
/// A parameter is never silently ignored.
///
/// # Errors
/// 400 naming the first unsupported parameter.
pub fn reject_unknown(body: &Map<String, Value>, accepted: &[&str]) -> OpenAiResult<()> {
    match body.keys().find(|k| !accepted.contains(&k.as_str())) {
        Some(k) => Err(OpenAiError::invalid(
            k,
            format!("Unsupported parameter: '{k}' is not supported by Agentry on this endpoint."),
            "unsupported_parameter",
        )),
        None => Ok(()),
    }
}

/// Accepts a parameter only with one of its neutral values (`tools: []`, `n: 1`…).
///
/// # Errors
/// 400 naming the parameter.
pub fn only_neutral(body: &Map<String, Value>, param: &str, neutral: &[Value]) -> OpenAiResult<()> {
    match body.get(param) {
        Some(v) if !v.is_null() && !neutral.contains(v) => Err(OpenAiError::invalid(
            param,
            format!(
                "Unsupported value for '{param}': {v}. Agentry accepts only {}.",
                json!(neutral)
            ),
            "unsupported_value",
        )),
        _ => Ok(()),
    }
}

/// Reads an optional typed parameter.
///
/// # Errors
/// 400 naming the parameter when it has the wrong type.
pub fn param<T: serde::de::DeserializeOwned>(
    body: &Map<String, Value>,
    name: &str,
) -> OpenAiResult<Option<T>> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
            OpenAiError::invalid(
                name,
                format!("Invalid type for '{name}': {e}"),
                "invalid_type",
            )
        }),
    }
}

/// Reads an optional number within bounds.
///
/// # Errors
/// 400 naming the parameter.
pub fn bounded(
    body: &Map<String, Value>,
    name: &str,
    min: f64,
    max: f64,
) -> OpenAiResult<Option<f64>> {
    match param::<f64>(body, name)? {
        Some(v) if !(min..=max).contains(&v) => Err(OpenAiError::invalid(
            name,
            format!("'{name}' must be between {min} and {max}."),
            "invalid_value",
        )),
        other => Ok(other),
    }
}

/// Reads an optional positive token limit.
///
/// # Errors
/// 400 naming the parameter.
pub fn token_limit(body: &Map<String, Value>, name: &str) -> OpenAiResult<Option<u32>> {
    param::<i64>(body, name)?
        .map(|v| {
            agentry_domain::agent::MaxTokens::parse(v)
                .map(|t| t.get())
                .map_err(|e| {
                    OpenAiError::invalid(name, format!("'{name}' {}.", e.reason), "invalid_value")
                })
        })
        .transpose()
}

/// The optional `version` parameter: a published version number to pin (1 or more).
///
/// # Errors
/// 400 naming `version` when it is not a positive integer.
pub fn version_param(body: &Map<String, Value>) -> OpenAiResult<Option<u32>> {
    param::<i64>(body, "version")?
        .map(|v| {
            u32::try_from(v).ok().filter(|v| *v >= 1).ok_or_else(|| {
                OpenAiError::invalid(
                    "version",
                    "'version' must be a positive integer.",
                    "invalid_value",
                )
            })
        })
        .transpose()
}

/// The required `model` parameter.
///
/// # Errors
/// 400 when it is missing or not a string.
pub fn required_model(body: &Map<String, Value>) -> OpenAiResult<String> {
    match param::<String>(body, "model")? {
        Some(m) if !m.trim().is_empty() => Ok(m),
        _ => Err(OpenAiError::invalid(
            "model",
            "Missing required parameter: 'model'.",
            "missing_required_parameter",
        )),
    }
}

pub use agentry_domain::services::may_call_models_directly;

/// Unix seconds.
pub fn unix(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp()
}
