//! `/api/v1/api-keys`: scoped API keys, for admins. The secret (`agk_…`) is returned once, at
//! creation; only its SHA-256 digest is stored, and lists show its first characters.

use actix_web::{HttpResponse, web};
use agentry_domain::Invalid;
use agentry_domain::auth::{ApiKey, ApiKeyId, NewApiKey, Scope};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::JsonBody;
use crate::routes::rfc3339;
use crate::schema::{AgentKeyText, ScopeName};

/// Routes of this resource.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api-keys")
            .route(web::get().to(list_api_keys))
            .route(web::post().to(create_api_key)),
    )
    .service(
        web::resource("/api-keys/{id}")
            .route(web::get().to(get_api_key))
            .route(web::delete().to(revoke_api_key)),
    );
}

/// A new API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "support widget", "scopes": ["invoke"], "agents": ["support-bot"], "expires_at": "2099-01-01T00:00:00Z"}))]
pub struct ApiKeyCreate {
    /// What it is for: 1 to 128 characters, no control characters.
    #[schema(
        example = "support widget",
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    /// What it may do, at least one; a key cannot have a scope its creator lacks.
    #[schema(value_type = Vec<ScopeName>, min_items = 1, example = json!(["invoke"]))]
    pub scopes: Vec<String>,
    /// When given, the only agents (by key, 1 to 100 of them) it may call.
    #[schema(value_type = Option<Vec<AgentKeyText>>, min_items = 1, max_items = 100, example = json!(["support-bot"]))]
    pub agents: Option<Vec<String>>,
    /// When it stops working: an RFC 3339 time in the future.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Its own request rate per minute instead of the server's, 1 to 1,000,000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub rate_limit_per_minute: Option<u32>,
}

impl ApiKeyCreate {
    fn try_into_domain(self) -> Result<NewApiKey, Invalid> {
        let expires_at = self
            .expires_at
            .as_deref()
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| Invalid::new("expires_at", "must be an RFC 3339 time"))
            })
            .transpose()?;
        Ok(NewApiKey {
            name: self.name,
            scopes: Scope::parse_list(&self.scopes)?,
            agents: self.agents,
            expires_at,
            rate_limit_per_minute: self.rate_limit_per_minute,
        })
    }
}

/// An API key as lists show it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// `key_…` (not secret).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// `agk_` and the secret's first 8 characters.
    #[schema(example = "agk_Xy12AbCd")]
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<&'static str>,
    /// The only agents it may call, when limited.
    pub agents: Option<Vec<String>>,
    /// Its own request rate per minute, when set.
    pub rate_limit_per_minute: Option<u32>,
    /// The user who created it.
    pub created_by: Option<String>,
    /// When it stops working.
    pub expires_at: Option<String>,
    /// When it was last used (updated at most once a minute).
    pub last_used_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k.is_active(Utc::now()) {
            "active"
        } else {
            "expired"
        };
        Self {
            id: k.id.to_string(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.iter().map(Scope::as_str).collect(),
            agents: k.agents.clone(),
            rate_limit_per_minute: k.rate_limit_per_minute,
            created_by: k.created_by.as_ref().map(ToString::to_string),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
            status,
            created_at: rfc3339(k.created_at),
        }
    }
}

/// A new key with its secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedApiKeyView {
    /// The secret: send it as `Authorization: Bearer agk_…`. It cannot be shown again.
    #[schema(example = "agk_Xy12AbCd…")]
    pub key: String,
    /// The key's description.
    #[serde(flatten)]
    pub api_key: ApiKeyView,
}

/// A page of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// Keys, newest first.
    pub api_keys: Vec<ApiKeyView>,
    /// Matches in all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// The answer to a revocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokeResult {
    /// Always true: after the call the key does not work.
    pub success: bool,
    /// Whether this call revoked it (false when it was already revoked or does not exist).
    pub revoked: bool,
    /// A human-readable summary.
    pub message: String,
}

/// Pagination.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// Items to skip.
    pub offset: Option<String>,
}

fn key_id(raw: &str) -> Result<ApiKeyId, agentry_domain::Error> {
    ApiKeyId::parse(raw).map_err(|_| agentry_domain::Error::not_found("api_key", raw))
}

/// Create an API key (admins). The answer carries the secret once, as `key`.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = ApiKeyCreate,
    responses((status = 201, body = CreatedApiKeyView), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_api_key(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<ApiKeyCreate>,
) -> ApiResult<HttpResponse> {
    let created = state
        .auth
        .create_api_key(body.try_into_domain()?, &caller)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(CreatedApiKeyView {
            key: created.secret.expose_secret().to_owned(),
            api_key: ApiKeyView::from(&created.key),
        }))
}

/// List API keys, newest first (admins).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", params(ListQuery),
    responses((status = 200, body = ApiKeyList), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_api_keys(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(query.limit.as_deref(), query.offset.as_deref())?;
    let paged = state.auth.list_api_keys(None, page).await?;
    Ok(HttpResponse::Ok().json(ApiKeyList {
        api_keys: paged.items.iter().map(ApiKeyView::from).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// Get an API key (admins); never its secret.
#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 200, body = ApiKeyView), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn get_api_key(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let key = state.auth.get_api_key(&key_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(ApiKeyView::from(&key)))
}

/// Revoke an API key (admins): it stops working at once, on every replica.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 200, body = RevokeResult)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn revoke_api_key(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let revoked = match ApiKeyId::parse(&path) {
        Ok(id) => state.auth.revoke_api_key(&id).await?,
        Err(_) => false,
    };
    let message = if revoked {
        "API key revoked"
    } else {
        "API key not found or already revoked"
    };
    Ok(HttpResponse::Ok().json(RevokeResult {
        success: true,
        revoked,
        message: message.to_owned(),
    }))
}
