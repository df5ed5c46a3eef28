//! `/api/v1/providers`: LLM providers as data. API keys are write-only: accepted, stored,
//! never returned (`api_key_set` says whether one is set).

use actix_web::{HttpResponse, web};
use agentry_domain::page::Page;
use agentry_domain::provider::{
    BaseUrl, Provider, ProviderId, ProviderInput, ProviderKind, ProviderPatch, parse_models,
};
use agentry_domain::{Error, Invalid};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{JsonBody, nullable, query_number};
use crate::routes::{DeleteResult, rfc3339};
use crate::schema::{ModelNameText, ProviderKindName};

/// Routes of this resource, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/providers")
            .route(web::get().to(list_providers))
            .route(web::post().to(create_provider)),
    )
    .service(
        web::resource("/providers/{provider}")
            .route(web::get().to(get_provider))
            .route(web::patch().to(patch_provider))
            .route(web::delete().to(delete_provider)),
    );
}

/// A new provider.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "local", "kind": "openai", "base_url": "http://127.0.0.1:9000/v1", "api_key": "sk-local", "models": ["m1"]}))]
pub struct ProviderCreate {
    /// The first half of `provider/model`: 1 to 64 characters of a-z, 0-9, `-`, `_` and `.`,
    /// starting with a letter or a digit.
    #[schema(
        example = "local",
        max_length = 64,
        pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"
    )]
    pub id: String,
    /// The wire protocol.
    #[schema(value_type = ProviderKindName, example = "openai")]
    pub kind: String,
    /// Where it is served (`http://` or `https://`, at most 2,048 characters); the kind's
    /// public API when absent.
    #[schema(
        example = "http://127.0.0.1:9000/v1",
        max_length = 2048,
        pattern = r"^https?://[!-~]*[!-.0-~][!-~]*$"
    )]
    pub base_url: Option<String>,
    /// Credential, 1 to 4,096 printable characters. Write-only.
    #[schema(max_length = 4096, pattern = r"^[ -~]+$")]
    pub api_key: Option<String>,
    /// Models it serves (at most 1,000 names of 1 to 200 characters without whitespace);
    /// empty accepts any model qualified by this provider's id.
    #[serde(default)]
    #[schema(value_type = Vec<ModelNameText>, max_items = 1000)]
    pub models: Vec<String>,
}

/// A change to a provider; absent fields are kept, `null` clears `base_url` or `api_key`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"base_url": "http://127.0.0.1:9001/v1", "models": ["m1", "m2"]}))]
pub struct ProviderUpdate {
    /// New kind.
    #[schema(value_type = Option<ProviderKindName>)]
    pub kind: Option<String>,
    /// New base URL.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 2048, pattern = r"^https?://[!-~]*[!-.0-~][!-~]*$")]
    pub base_url: Option<Option<String>>,
    /// New credential, 1 to 4,096 printable characters.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 4096, pattern = r"^[ -~]+$")]
    pub api_key: Option<Option<String>>,
    /// New model list.
    #[schema(value_type = Option<Vec<ModelNameText>>, max_items = 1000)]
    pub models: Option<Vec<String>>,
}

fn secret(key: String) -> Result<SecretString, Invalid> {
    if key.is_empty() || key.len() > 4096 || key.chars().any(char::is_control) {
        return Err(Invalid::new(
            "api_key",
            "must be 1 to 4096 characters without control characters",
        ));
    }
    Ok(SecretString::from(key))
}

impl ProviderCreate {
    fn try_into_domain(self) -> Result<ProviderInput, Invalid> {
        Ok(ProviderInput {
            id: ProviderId::parse(&self.id)?,
            kind: ProviderKind::parse(&self.kind)?,
            base_url: self.base_url.as_deref().map(BaseUrl::parse).transpose()?,
            api_key: self.api_key.map(secret).transpose()?,
            models: parse_models(self.models)?,
        })
    }
}

impl ProviderUpdate {
    fn try_into_domain(self) -> Result<ProviderPatch, Invalid> {
        Ok(ProviderPatch {
            kind: self.kind.as_deref().map(ProviderKind::parse).transpose()?,
            base_url: self
                .base_url
                .map(|u| u.as_deref().map(BaseUrl::parse).transpose())
                .transpose()?,
            api_key: self
                .api_key
                .map(|k| k.map(secret).transpose())
                .transpose()?,
            models: self.models.map(parse_models).transpose()?,
        })
    }
}

/// A provider as the API shows it: never its key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    /// Id.
    pub id: String,
    /// `openai`, `anthropic` or `mock`.
    pub kind: &'static str,
    /// Base URL, when set.
    pub base_url: Option<String>,
    /// Models it serves.
    pub models: Vec<String>,
    /// Whether a credential is set (the credential itself is never returned).
    pub api_key_set: bool,
    /// `builtin`, `config` or `api`: only `api` providers can be changed by API.
    pub source: &'static str,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

impl From<&Provider> for ProviderView {
    fn from(p: &Provider) -> Self {
        Self {
            id: p.id.to_string(),
            kind: p.kind.as_str(),
            base_url: p.base_url.as_ref().map(|u| u.as_str().to_owned()),
            models: p.models.clone(),
            api_key_set: p.api_key.is_some(),
            source: p.source.as_str(),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

/// A page of providers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    /// Providers, by id.
    pub providers: Vec<ProviderView>,
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
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// Items to skip.
    pub offset: Option<String>,
}

/// The page of a query's `limit` and `offset`.
///
/// # Errors
/// `VALIDATION_ERROR` naming `limit` or `offset`.
pub fn page_of(limit: Option<&str>, offset: Option<&str>) -> Result<Page, ApiError> {
    Ok(Page::new(
        query_number("limit", limit)?,
        query_number("offset", offset)?,
    )?)
}

fn provider_id(raw: &str) -> Result<ProviderId, Error> {
    ProviderId::parse(raw).map_err(|_| Error::not_found("provider", raw))
}

/// Register a provider.
#[utoipa::path(post, path = "/api/v1/providers", tag = "providers", request_body = ProviderCreate,
    responses((status = 201, body = ProviderView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn create_provider(
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<ProviderCreate>,
) -> ApiResult<HttpResponse> {
    let p = state.providers.create(body.try_into_domain()?).await?;
    Ok(HttpResponse::Created().json(ProviderView::from(&p)))
}

/// List providers, built-in and configured ones included.
#[utoipa::path(get, path = "/api/v1/providers", tag = "providers", params(ListQuery), responses((status = 200, body = ProviderList)))]
pub async fn list_providers(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let page = page_of(query.limit.as_deref(), query.offset.as_deref())?;
    let all = state.providers.list().await?;
    let total = all.len() as u64;
    let providers = all
        .iter()
        .skip(usize::try_from(page.offset()).unwrap_or(usize::MAX))
        .take(page.limit() as usize)
        .map(ProviderView::from)
        .collect();
    Ok(HttpResponse::Ok().json(ProviderList {
        providers,
        total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// Get a provider.
#[utoipa::path(get, path = "/api/v1/providers/{provider}", tag = "providers", params(("provider" = String, Path)),
    responses((status = 200, body = ProviderView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_provider(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let p = state.providers.get(&provider_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(ProviderView::from(&p)))
}

/// Change a provider created by API.
#[utoipa::path(patch, path = "/api/v1/providers/{provider}", tag = "providers", params(("provider" = String, Path)), request_body = ProviderUpdate,
    responses((status = 200, body = ProviderView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn patch_provider(
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonBody(body): JsonBody<ProviderUpdate>,
) -> ApiResult<HttpResponse> {
    let id = provider_id(&path)?;
    let p = state.providers.update(&id, body.try_into_domain()?).await?;
    Ok(HttpResponse::Ok().json(ProviderView::from(&p)))
}

/// Delete a provider created by API; refused while agents use it.
#[utoipa::path(delete, path = "/api/v1/providers/{provider}", tag = "providers", params(("provider" = String, Path)),
    responses((status = 200, body = DeleteResult), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn delete_provider(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let deleted = match ProviderId::parse(&path) {
        Ok(id) => state.providers.delete(&id).await?,
        Err(_) => false,
    };
    Ok(HttpResponse::Ok().json(DeleteResult::new("Provider", deleted)))
}
