//! `/api/v1/auth` (and `/v1/auth`, seed 002): login, refresh, logout, me.
//!
//! Request DTOs holding secrets do not derive `Debug`, and secrets become `SecretString`s as
//! soon as they are parsed.

use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::auth::{PrincipalKind, User};
use agentry_domain::services::IssuedTokens;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{OptionalJsonBody, parse_json};
use crate::routes::rfc3339;
use crate::routes::users::UserView;

/// Routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Resources, not `cfg.route`: a resource answers another method with 405 and `Allow`;
    // a guarded route lets it fall through to 404.
    cfg.service(web::resource("/auth/login").post(login))
        .service(web::resource("/auth/refresh").post(refresh))
        .service(web::resource("/auth/logout").post(logout))
        .service(web::resource("/auth/me").get(me));
}

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "admin", "password": "correct horse battery staple"}))]
pub struct LoginInput {
    /// The username (case-insensitive).
    #[schema(example = "admin")]
    pub username: String,
    /// The password.
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

/// A refresh token to exchange, or to end with a logout.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"refresh_token": "rt_0123456789abcdef"}))]
pub struct RefreshInput {
    /// The refresh token of the last login or refresh.
    pub refresh_token: String,
}

/// What a logout may end besides the caller's session.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutInput {
    /// A refresh token of the same user whose session should end too.
    pub refresh_token: Option<String>,
}

/// Tokens: an access token for `Authorization: Bearer …` and a refresh token to get the next
/// pair (it works once).
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// A short-lived JWT.
    pub access_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: &'static str,
    /// Seconds the access token works.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Exchange it at `/api/v1/auth/refresh` for a new pair; it works once.
    pub refresh_token: String,
    /// Who logged in.
    pub user: UserView,
}

impl From<IssuedTokens> for TokenResponse {
    fn from(t: IssuedTokens) -> Self {
        Self {
            access_token: t.access_token.expose_secret().to_owned(),
            token_type: "bearer",
            expires_in: t.expires_in,
            refresh_token: t.refresh_token.expose_secret().to_owned(),
            user: UserView::from(&t.user),
        }
    }
}

/// The answer to a logout.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogoutResult {
    /// Always true.
    pub success: bool,
    /// A human-readable summary.
    pub message: String,
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// `user`, `api_key` or `development` (authentication disabled).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The user's id (`user_…`) or the key's id (`key_…`).
    pub id: String,
    /// The username (users).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The e-mail address (users).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `admin`, `editor` or `viewer` (users).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// The key's name (API keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The key's scopes (API keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<&'static str>>,
    /// The only agents the key may call, when limited (API keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
    /// When the user was created (users).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

fn client_address(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|a| a.ip().to_string())
}

/// Log in with a username and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginInput,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorEnvelope),
        (status = 401, description = "Wrong username or password (the same answer for both)", body = ErrorEnvelope),
        (status = 429, description = "Too many failed logins for this username or address", body = ErrorEnvelope)),
    security(()))]
#[tracing::instrument(skip_all)]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    OptionalJsonBody(body): OptionalJsonBody<LoginInput>,
) -> ApiResult<HttpResponse> {
    // No body at all lacks the first required field: say which, as `refresh` does.
    let body = body.ok_or_else(|| ApiError::validation("username", "is required"))?;
    let password = SecretString::from(body.password);
    let tokens = state
        .auth
        .login(&body.username, &password, client_address(&req).as_deref())
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(TokenResponse::from(tokens)))
}

/// Exchange a refresh token for a new access token and a new refresh token. A refresh token
/// works once: presenting a used one again ends its whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshInput,
    responses((status = 200, body = TokenResponse), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)),
    security(()))]
#[tracing::instrument(skip_all)]
pub async fn refresh(
    state: web::Data<AppState>,
    OptionalJsonBody(body): OptionalJsonBody<RefreshInput>,
) -> ApiResult<HttpResponse> {
    // No body at all (often sent without a content type) lacks the one required field: say
    // which, rather than refusing the absent content type.
    let body = body.ok_or_else(|| ApiError::validation("refresh_token", "is required"))?;
    let token = SecretString::from(body.refresh_token);
    let tokens = state.auth.refresh(&token).await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(TokenResponse::from(tokens)))
}

/// End the session of the access token used (its access and refresh tokens stop working at
/// once, on every replica). An optional body `{"refresh_token"}` ends that token's session too.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body(content = LogoutInput, description = "Optional"),
    responses((status = 200, body = LogoutResult), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn logout(
    state: web::Data<AppState>,
    Caller(caller): Caller,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let token = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let parsed: LogoutInput = parse_json(&body)?;
        parsed.refresh_token.map(SecretString::from)
    };
    state.auth.logout(&caller, token.as_ref()).await?;
    Ok(HttpResponse::Ok().json(LogoutResult {
        success: true,
        message: "Logged out".to_owned(),
    }))
}

/// Who is calling: the user (with its role) or the API key (with its scopes).
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = MeView), (status = 401, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn me(state: web::Data<AppState>, Caller(caller): Caller) -> ApiResult<HttpResponse> {
    let view = match &caller.kind {
        PrincipalKind::User { .. } => {
            let id = agentry_domain::auth::UserId::parse(&caller.id)
                .map_err(|_| ApiError::unauthorized("Unknown user"))?;
            let user: User = state.auth.get_user(&id).await?;
            MeView {
                kind: "user",
                id: user.id.to_string(),
                username: Some(user.username.to_string()),
                email: user.email.as_ref().map(|e| e.as_str().to_owned()),
                role: Some(user.role.as_str()),
                name: None,
                scopes: None,
                agents: None,
                created_at: Some(rfc3339(user.created_at)),
            }
        }
        PrincipalKind::ApiKey { .. } => MeView {
            kind: "api_key",
            id: caller.id.clone(),
            username: None,
            email: None,
            role: None,
            name: Some(caller.name.clone()),
            scopes: Some(caller.scopes.iter().map(|s| s.as_str()).collect()),
            agents: caller.agents.clone(),
            created_at: None,
        },
        PrincipalKind::Development => MeView {
            kind: "development",
            id: caller.id.clone(),
            username: Some(caller.name.clone()),
            email: None,
            role: caller.role.map(|r| r.as_str()),
            name: None,
            scopes: None,
            agents: None,
            created_at: None,
        },
    };
    Ok(HttpResponse::Ok().json(view))
}
