//! Authentication and authorisation of every request, before any handler runs.
//!
//! The middleware reads `Authorization: Bearer <token>` (an access token or an `agk_…` API
//! key), asks the domain's [`AuthService`](agentry_domain::services::AuthService) who that is,
//! looks the route up in the [permission table](crate::permissions), and either stores the
//! [`Principal`] in the request's extensions (read it with [`principal`] or the
//! [`Caller`] extractor) or answers 401 / 403 — in the SPEC envelope, or in OpenAI's format
//! on the OpenAI-compatible surface.
//!
//! On public routes a credential is not even read (a stale token must not block a login, and
//! `/health` must not depend on the database). With `auth_disabled` (development, loopback only) every request is the
//! admin principal `anonymous-dev`.

use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, ResponseError, web};
pub use agentry_domain::auth::Principal;

use crate::AppState;
use crate::error::ApiError;
use crate::permissions::{Requirement, describe, is_openai_surface, requirement};

/// The caller of the current request, as the authentication middleware found it; `None` on
/// public routes called without a (valid) credential.
pub fn principal(req: &HttpRequest) -> Option<Principal> {
    req.extensions().get::<Principal>().cloned()
}

/// Extracts the caller; 401 when there is none (only possible on public routes).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            principal(req)
                .map(Caller)
                .ok_or_else(|| ApiError::unauthorized("Authentication required")),
        )
    }
}

/// The credential of `Authorization: Bearer <credential>`: `None` without the header,
/// `Some(Err)` for a header of another shape.
fn bearer(req: &ServiceRequest) -> Option<Result<String, ()>> {
    let value = req.headers().get(AUTHORIZATION)?;
    let basic_allowed = crate::compat::allows_basic(req.path());
    let parsed = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            if scheme.eq_ignore_ascii_case("bearer") {
                Some(token.trim().to_owned())
            } else if basic_allowed && scheme.eq_ignore_ascii_case("basic") {
                basic_credential(token.trim())
            } else {
                None
            }
        })
        .filter(|t| !t.is_empty() && t.len() <= 8192);
    Some(parsed.ok_or(()))
}

/// The credential in HTTP Basic `user:password` (seed 004's clients, given a base URL with
/// `agk_…:@` or `key:agk_…@` in it): the password, or the user when the password is empty.
fn basic_credential(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    let token = if password.is_empty() { user } else { password };
    Some(token.to_owned())
}

/// The error answer, in the format of the surface `path` belongs to.
pub fn error_response(req: ServiceRequest, err: &ApiError) -> ServiceResponse<BoxBody> {
    let res = if is_openai_surface(req.match_info().as_str()) {
        err.openai_response()
    } else {
        err.error_response()
    };
    req.into_response(res)
}

/// The middleware: authenticates, checks the route's requirement, stores the principal.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(error_response(
            req,
            &ApiError::from(agentry_domain::Error::Internal(
                "application state missing".into(),
            )),
        ));
    };
    // The path as the router will see it (percent-encoded characters decoded), so that
    // `/api/v1/%75sers` is looked up as `/api/v1/users`, not as an unknown route.
    let path = req.match_info().as_str();
    let needed = if state.prometheus.public && path == "/metrics" {
        Requirement::Public
    } else {
        requirement(req.method(), path)
    };
    let public = needed == Requirement::Public;
    let caller = if state.auth_disabled {
        Some(Principal::development())
    } else if public {
        // Public routes need nobody, and must keep answering while the database does not.
        None
    } else {
        match bearer(&req) {
            None => None,
            Some(Err(())) => {
                return Ok(error_response(
                    req,
                    &ApiError::unauthorized(
                        "Malformed Authorization header: expected 'Bearer <token>'",
                    ),
                ));
            }
            Some(Ok(token)) => match state.auth.authenticate(&token).await {
                Ok(p) => Some(p),
                Err(e) => return Ok(error_response(req, &ApiError::from(e))),
            },
        }
    };
    if !public {
        match &caller {
            None => {
                return Ok(error_response(
                    req,
                    &ApiError::unauthorized(
                        "Authentication required: send 'Authorization: Bearer <access token or API key>'",
                    ),
                ));
            }
            Some(p) if !p.satisfies(needed) => {
                tracing::info!(principal = %p.id, requirement = ?needed, "forbidden");
                return Ok(error_response(
                    req,
                    &ApiError::forbidden(format!("This needs {}", describe(needed))),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(p) = caller {
        req.extensions_mut().insert(p);
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}
