//! `/api/v1/agents/{agent}/versions` (and the `/v1` alias): publish, list, get and restore
//! an agent's versions, immutable numbered snapshots of its definition.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::Error;
use agentry_domain::version::AgentVersion;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::OptionalJsonBody;
use crate::routes::agents::{AgentView, agent_ref};
use crate::routes::rfc3339;

/// Routes of this resource, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/agents/{agent}/versions")
            .route(web::get().to(list_versions))
            .route(web::post().to(publish_version)),
    )
    .service(web::resource("/agents/{agent}/versions/{version}").route(web::get().to(get_version)))
    .service(
        web::resource("/agents/{agent}/versions/{version}/restore")
            .route(web::post().to(restore_version)),
    );
}

/// What to publish with. The body may be left out, or be `{}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"note": "Shorter answers"}))]
pub struct PublishInput {
    /// Why this version is published (at most 2,000 characters).
    #[schema(example = "Shorter answers", max_length = 2000)]
    pub note: Option<String>,
}

/// A published version.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    /// The agent's id.
    pub agent_id: String,
    /// 1, 2, 3… per agent, in publishing order.
    pub version: u32,
    /// `published`, or `draft`: an optimisation's proposal, pinnable and restorable but never
    /// served by default (restore it, then publish, to serve it).
    #[schema(example = "published")]
    pub status: &'static str,
    /// Why it was published.
    pub note: Option<String>,
    /// Who published it: a user's id (`user_…`), `key:<key id>` for an API key, or
    /// `anonymous-dev`; `null` for versions published before publishers were recorded.
    pub created_by: Option<String>,
    /// When it was published, RFC 3339 UTC.
    pub created_at: String,
    /// The definition as it was when published.
    pub agent: AgentView,
}

impl From<&AgentVersion> for VersionView {
    fn from(v: &AgentVersion) -> Self {
        Self {
            agent_id: v.agent_id.to_string(),
            version: v.version,
            status: if v.draft { "draft" } else { "published" },
            note: v.note.clone(),
            created_by: v.created_by.clone(),
            created_at: rfc3339(v.created_at),
            agent: AgentView::from(&v.snapshot),
        }
    }
}

/// A page of versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    /// The versions, newest first.
    pub versions: Vec<VersionView>,
    /// Versions in all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// Pagination.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListVersionsQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// Items to skip (default 0).
    pub offset: Option<String>,
}

/// Where a version can be read.
#[derive(Debug)]
struct VersionPath {
    /// The `{agent}` segment as given.
    agent: String,
    /// The version number (`u32::MAX` for one too large to exist).
    version: u32,
    /// The `{version}` segment without leading zeros, for messages.
    shown: String,
}

impl VersionPath {
    /// Reads `{agent}/versions/{version}`: the version must be a positive integer (400
    /// otherwise); one too large to exist is simply not found.
    fn parse((agent, raw): (String, String)) -> ApiResult<Self> {
        let invalid = || ApiError::validation("version", "must be a positive integer");
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let shown = raw.trim_start_matches('0').to_owned();
        let version = match raw.parse::<u32>() {
            Ok(0) => return Err(invalid()),
            Ok(n) => n,
            // Only digits, so it overflowed: no agent has that many versions.
            Err(_) => u32::MAX,
        };
        Ok(Self {
            agent,
            version,
            shown,
        })
    }

    /// The error for `error`: an unknown version says which one.
    fn error(&self, error: Error) -> ApiError {
        match error {
            Error::NotFound {
                entity: "version", ..
            } => {
                let version = self
                    .shown
                    .parse::<u32>()
                    .map_or_else(|_| json!(self.shown), |n| json!(n));
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    format!("Agent '{}' has no version {}", self.agent, self.shown),
                )
                .with_details(json!({
                    "resource": "version",
                    "agent": self.agent,
                    "version": version,
                }))
            }
            other => other.into(),
        }
    }
}

/// Publish the agent's current definition as its next version.
#[utoipa::path(post, path = "/api/v1/agents/{agent}/versions", tag = "versions",
    request_body(content = PublishInput, description = "Optional: an empty body publishes without a note"),
    params(("agent" = String, Path, description = "Agent id or key")),
    responses((status = 201, body = VersionView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn publish_version(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<PublishInput>,
) -> ApiResult<HttpResponse> {
    let target = agent_ref(&path)?;
    let note = body.unwrap_or_default().note;
    // The publisher, recorded as agents record their creator.
    let created_by = crate::auth::principal(&req).map(|p| p.created_by());
    let version = state.versions.publish(&target, note, created_by).await?;
    let location = format!(
        "/api/v1/agents/{}/versions/{}",
        version.agent_id, version.version
    );
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, location))
        .json(VersionView::from(&version)))
}

/// List an agent's versions, newest first.
#[utoipa::path(get, path = "/api/v1/agents/{agent}/versions", tag = "versions",
    params(("agent" = String, Path, description = "Agent id or key"), ListVersionsQuery),
    responses((status = 200, body = VersionList), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn list_versions(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListVersionsQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(query.limit.as_deref(), query.offset.as_deref())?;
    let target = agent_ref(&path)?;
    let (_, paged) = state.versions.list(&target, page).await?;
    Ok(HttpResponse::Ok().json(VersionList {
        versions: paged.items.iter().map(VersionView::from).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// Get one version of an agent.
#[utoipa::path(get, path = "/api/v1/agents/{agent}/versions/{version}", tag = "versions",
    params(("agent" = String, Path, description = "Agent id or key"), ("version" = u32, Path, minimum = 1, description = "Version number, from 1")),
    responses((status = 200, body = VersionView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn get_version(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let at = VersionPath::parse(path.into_inner())?;
    let target = agent_ref(&at.agent)?;
    let version = state
        .versions
        .get(&target, at.version)
        .await
        .map_err(|e| at.error(e))?;
    Ok(HttpResponse::Ok().json(VersionView::from(&version)))
}

/// Copy a version's definition back into the editable agent. Its id, key, status, creator and
/// creation time stay; publish again to make it the latest version.
#[utoipa::path(post, path = "/api/v1/agents/{agent}/versions/{version}/restore", tag = "versions",
    params(("agent" = String, Path, description = "Agent id or key"), ("version" = u32, Path, minimum = 1, description = "Version number, from 1")),
    responses((status = 200, description = "The agent as restored", body = AgentView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn restore_version(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let at = VersionPath::parse(path.into_inner())?;
    let target = agent_ref(&at.agent)?;
    let agent = state
        .versions
        .restore(&target, at.version)
        .await
        .map_err(|e| at.error(e))?;
    Ok(HttpResponse::Ok().json(AgentView::from(&agent)))
}

#[cfg(test)]
mod tests {
    use super::VersionPath;

    fn parsed(version: &str) -> Result<u32, String> {
        VersionPath::parse(("a".to_owned(), version.to_owned()))
            .map(|p| p.version)
            .map_err(|e| e.code().to_owned())
    }

    #[test]
    fn version_segments() {
        assert_eq!(parsed("1"), Ok(1));
        assert_eq!(parsed("0042"), Ok(42));
        assert_eq!(parsed("99999999999999999999999"), Ok(u32::MAX));
        for bad in ["0", "-1", "+1", "1.5", "", "abc", " 1", "1e3"] {
            assert_eq!(parsed(bad), Err("VALIDATION_ERROR".to_owned()), "{bad}");
        }
    }
}
