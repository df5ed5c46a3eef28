//! Seed 003's client agents API, in that document's exact camelCase shape:
//! `GET /api/client/v1/agents?status=` and `GET /api/client/v1/agents/{key}`. The config shown
//! is the definition that serves calls (the latest published version, else the live one).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::agent::{Agent, AgentFilter, AgentKey, AgentRef, AgentStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{OpenAiError, OpenAiErrorEnvelope, OpenAiResult};
use crate::AppState;
use crate::auth::principal;
use crate::routes::rfc3339;
use crate::schema::AgentStatusName;

/// Routes of this module (under `/api/client/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/agents").get(list_client_agents))
        .service(web::resource("/agents/{key}").get(get_client_agent));
}

fn view(live: &Agent, served: &Agent) -> Value {
    json!({
        "key": live.key.as_str(),
        "name": served.name.as_str(),
        "description": served.description,
        "config": {
            "modelKey": served.model.to_string(),
            "temperature": served.temperature.map(|t| t.get()),
            "topP": served.top_p.map(|t| t.get()),
            "maxTokens": served.max_tokens.map(|t| t.get()),
        },
        "status": live.status.as_str(),
        "createdAt": rfc3339(live.created_at),
    })
}

/// Status filter.
#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    /// `active`, `inactive`, `draft` (or `archived`).
    pub status: Option<String>,
}

/// List agents (seed 003 shape).
#[utoipa::path(get, path = "/api/client/v1/agents", tag = "openai", params(("status" = Option<AgentStatusName>, Query, description = "Only agents in this status")),
    responses((status = 200, description = "`{agents: [...]}`"), (status = 400, body = OpenAiErrorEnvelope)))]
pub async fn list_client_agents(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<StatusQuery>,
) -> OpenAiResult<HttpResponse> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            AgentStatus::parse(s)
                .map_err(|e| OpenAiError::invalid("status", e.reason, "invalid_value"))?,
        ),
        None => None,
    };
    let filter = AgentFilter {
        status,
        ..AgentFilter::default()
    }
    .visible_to(principal(&req).as_ref());
    let mut agents = Vec::new();
    for a in state.agents.list_all(&filter).await? {
        let served = state.versions.served(&a).await?;
        agents.push(view(&a, &served.agent));
    }
    Ok(HttpResponse::Ok().json(json!({"agents": agents})))
}

/// Get an agent by key (seed 003 shape).
#[utoipa::path(get, path = "/api/client/v1/agents/{key}", tag = "openai", params(("key" = String, Path)),
    responses((status = 200, description = "`{agent: {...}}`"), (status = 404, body = OpenAiErrorEnvelope)))]
pub async fn get_client_agent(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> OpenAiResult<HttpResponse> {
    let not_found = || {
        OpenAiError::new(
            StatusCode::NOT_FOUND,
            format!("Agent '{}' not found.", path.as_str()),
            Some("agentKey"),
            Some("agent_not_found"),
        )
    };
    let key = AgentKey::parse(&path).map_err(|_| not_found())?;
    if principal(&req).is_some_and(|p| !p.may_invoke_agent(key.as_str())) {
        return Err(not_found());
    }
    match state.versions.serving(&AgentRef::Key(key), None).await {
        Ok((live, served)) => {
            Ok(HttpResponse::Ok().json(json!({"agent": view(&live, &served.agent)})))
        }
        Err(agentry_domain::Error::NotFound { .. }) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}
