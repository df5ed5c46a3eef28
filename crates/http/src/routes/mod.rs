//! The route table: one module per resource, each with its own `configure`.

pub mod agents;
pub mod api_keys;
pub mod auth;
pub mod chat;
pub mod clusters;
pub mod conversations;
pub mod evals;
pub mod files;
pub mod health;
pub mod insights;
pub mod knowledge;
pub mod mcp_servers;
pub mod metrics;
pub mod optimizations;
pub mod providers;
pub mod runs;
pub mod tasks;
pub mod users;
pub mod versions;

use actix_web::web;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Every management route, mounted under `/api/v1` and again under the `/v1` alias.
pub fn configure_api(cfg: &mut web::ServiceConfig) {
    agents::configure(cfg);
    api_keys::configure(cfg);
    auth::configure(cfg);
    chat::configure(cfg);
    clusters::configure(cfg);
    conversations::configure(cfg);
    insights::configure(cfg);
    optimizations::configure(cfg);
    evals::configure(cfg);
    files::configure(cfg);
    knowledge::configure(cfg);
    mcp_servers::configure(cfg);
    metrics::configure(cfg);
    providers::configure(cfg);
    runs::configure(cfg);
    tasks::configure(cfg);
    versions::configure(cfg);
    users::configure(cfg);
    crate::ws::configure(cfg);
}

/// RFC 3339 in UTC with milliseconds: `2025-01-15T10:00:00.000Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The answer to a DELETE.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteResult {
    /// Always true: after the call the resource does not exist.
    pub success: bool,
    /// Whether this call removed it (false when it was already absent).
    pub deleted: bool,
    /// A human-readable summary.
    pub message: String,
}

impl DeleteResult {
    /// The result for `what` (`Agent`, `Provider`…).
    pub fn new(what: &str, deleted: bool) -> Self {
        let message = if deleted {
            format!("{what} deleted")
        } else {
            format!("{what} not found; nothing to delete")
        };
        Self {
            success: true,
            deleted,
            message,
        }
    }
}
