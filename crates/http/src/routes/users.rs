//! `/api/v1/users`: accounts, for admins. Password hashes are never returned.

use actix_web::{HttpResponse, web};
use agentry_domain::auth::{Email, NewUser, Role, User, UserId, UserPatch, Username};
use agentry_domain::{Error, Invalid};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{JsonBody, nullable};
use crate::routes::{DeleteResult, rfc3339};
use crate::schema::RoleName;

/// Routes of this resource.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/users")
            .route(web::get().to(list_users))
            .route(web::post().to(create_user)),
    )
    .service(
        web::resource("/users/{user}")
            .route(web::get().to(get_user))
            .route(web::patch().to(patch_user))
            .route(web::delete().to(delete_user)),
    );
}

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// `user_…`.
    pub id: String,
    /// Login name (lower case).
    pub username: String,
    /// E-mail address.
    pub email: Option<String>,
    /// `admin`, `editor` or `viewer`.
    pub role: &'static str,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            username: u.username.to_string(),
            email: u.email.as_ref().map(|e| e.as_str().to_owned()),
            role: u.role.as_str(),
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

/// A new user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "alice", "password": "correct horse battery staple", "email": "alice@example.com", "role": "editor"}))]
pub struct UserCreate {
    /// 1 to 64 characters of a-z, 0-9, `.`, `_`, `-`, `@`, starting with a letter or a digit
    /// (case-insensitive: stored in lower case).
    #[schema(example = "alice", pattern = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")]
    pub username: String,
    /// 8 to 1,024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// E-mail address: one `@` with text on both sides, no spaces, at most 254 characters.
    #[schema(max_length = 254, pattern = r"^[!-?A-~]+@[!-?A-~]+$")]
    pub email: Option<String>,
    /// `viewer` by default.
    #[schema(value_type = Option<RoleName>, example = "editor")]
    pub role: Option<String>,
}

/// A change; absent fields are kept, `email: null` clears the address. A new password ends
/// every session of the user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "viewer", "email": "bob@example.com"}))]
pub struct UserUpdate {
    /// New role.
    #[schema(value_type = Option<RoleName>)]
    pub role: Option<String>,
    /// New password, 8 to 1,024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: Option<String>,
    /// New e-mail address, or `null`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 254, pattern = r"^[!-?A-~]+@[!-?A-~]+$")]
    pub email: Option<Option<String>>,
}

impl UserCreate {
    fn try_into_domain(self) -> Result<NewUser, Invalid> {
        Ok(NewUser {
            username: Username::parse(&self.username)?,
            email: self.email.as_deref().map(Email::parse).transpose()?,
            role: self
                .role
                .as_deref()
                .map(Role::parse)
                .transpose()?
                .unwrap_or(Role::Viewer),
            password: SecretString::from(self.password),
        })
    }
}

impl UserUpdate {
    fn try_into_domain(self) -> Result<UserPatch, Invalid> {
        Ok(UserPatch {
            role: self.role.as_deref().map(Role::parse).transpose()?,
            password: self.password.map(SecretString::from),
            email: self
                .email
                .map(|e| e.as_deref().map(Email::parse).transpose())
                .transpose()?,
        })
    }
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// Users, oldest first.
    pub users: Vec<UserView>,
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

/// The `{user}` path segment: an id (`user_…`) or a username.
async fn find(state: &AppState, raw: &str) -> Result<User, Error> {
    if let Ok(id) = UserId::parse(raw) {
        return state.auth.get_user(&id).await;
    }
    let name = Username::parse(raw).map_err(|_| Error::not_found("user", raw))?;
    state.auth.get_user_by_username(&name).await
}

/// Create a user (admins).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = UserCreate,
    responses((status = 201, body = UserView), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_user(
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<UserCreate>,
) -> ApiResult<HttpResponse> {
    let user = state.auth.create_user(body.try_into_domain()?).await?;
    Ok(HttpResponse::Created().json(UserView::from(&user)))
}

/// List users (admins).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(ListQuery),
    responses((status = 200, body = UserList), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_users(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(query.limit.as_deref(), query.offset.as_deref())?;
    let paged = state.auth.list_users(page).await?;
    Ok(HttpResponse::Ok().json(UserList {
        users: paged.items.iter().map(UserView::from).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// Get a user by id or username (admins).
#[utoipa::path(get, path = "/api/v1/users/{user}", tag = "users", params(("user" = String, Path, description = "User id or username")),
    responses((status = 200, body = UserView), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn get_user(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let user = find(&state, &path).await?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

/// Change a user's role, password or e-mail address (admins). A new password ends the user's
/// sessions; the last admin cannot be demoted.
#[utoipa::path(patch, path = "/api/v1/users/{user}", tag = "users", request_body = UserUpdate, params(("user" = String, Path, description = "User id or username")),
    responses((status = 200, body = UserView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn patch_user(
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonBody(body): JsonBody<UserUpdate>,
) -> ApiResult<HttpResponse> {
    let user = find(&state, &path).await?;
    let patch = body.try_into_domain()?;
    let user = state.auth.update_user(&user.id, patch).await?;
    Ok(HttpResponse::Ok().json(UserView::from(&user)))
}

/// Delete a user with its sessions and the API keys it created (admins). The last admin
/// cannot be deleted.
#[utoipa::path(delete, path = "/api/v1/users/{user}", tag = "users", params(("user" = String, Path, description = "User id or username")),
    responses((status = 200, body = DeleteResult), (status = 409, body = ErrorEnvelope)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn delete_user(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let deleted = match find(&state, &path).await {
        Ok(user) => state.auth.delete_user(&user.id).await?,
        Err(Error::NotFound { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    Ok(HttpResponse::Ok().json(DeleteResult::new("User", deleted)))
}
