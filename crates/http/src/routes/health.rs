//! `/health` (the process answers) and `/ready` (its database answers too).

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::routes::rfc3339;

/// Routes of this module, at the root.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health").get(health))
        .service(web::resource("/ready").get(ready));
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `healthy`.
    pub status: &'static str,
    /// Now, RFC 3339 UTC.
    pub timestamp: String,
    /// The server's version.
    pub version: String,
}

/// Readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// Now, RFC 3339 UTC.
    pub timestamp: String,
    /// Each dependency: `ok` or `unreachable`.
    pub checks: ReadyChecks,
}

/// Readiness checks.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyChecks {
    /// The database.
    pub database: &'static str,
}

/// Whether the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, body = Health)), security(()))]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "healthy",
        timestamp: rfc3339(Utc::now()),
        version: state.version.clone(),
    })
}

/// Whether the server can serve: 503 while its database does not answer.
#[utoipa::path(get, path = "/ready", tag = "ops", responses((status = 200, body = Ready), (status = 503, body = Ready)), security(()))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let ok = state.health.ping().await.is_ok();
    let body = Ready {
        status: if ok { "ready" } else { "unavailable" },
        timestamp: rfc3339(Utc::now()),
        checks: ReadyChecks {
            database: if ok { "ok" } else { "unreachable" },
        },
    };
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
