//! Models (`/v1/models`): the agents a caller may call by key (active ones), then the models
//! of the providers as `provider/model` for direct gateway access.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::agent::{AgentFilter, AgentStatus};
use serde_json::{Value, json};

use super::{OpenAiError, OpenAiErrorEnvelope, OpenAiResult, may_call_models_directly, unix};
use crate::AppState;
use crate::auth::{Principal, principal};

/// Routes of this module (under `/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/models").get(list_models))
        .service(web::resource("/models/{id:.*}").get(get_model));
}

async fn all_models(state: &AppState, caller: Option<&Principal>) -> OpenAiResult<Vec<Value>> {
    let filter = AgentFilter {
        status: Some(AgentStatus::Active),
        ..AgentFilter::default()
    };
    let agents = state.agents.list_all(&filter).await?;
    let allowed = agents
        .iter()
        .filter(|a| caller.is_none_or(|p| p.may_invoke_agent(a.key.as_str())));
    let mut out: Vec<Value> = allowed
        .map(|a| json!({"id": a.key.as_str(), "object": "model", "created": unix(a.created_at), "owned_by": "agentry"}))
        .collect();
    if !may_call_models_directly(caller) {
        return Ok(out);
    }
    for p in state.providers.list().await? {
        out.extend(p.models.iter().map(|m| json!({"id": format!("{}/{m}", p.id), "object": "model", "created": unix(p.created_at), "owned_by": p.id.as_str()})));
    }
    Ok(out)
}

/// List the models (agent keys, then `provider/model`) a caller may call.
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, description = "`{object: \"list\", data: [model]}`")))]
pub async fn list_models(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> OpenAiResult<HttpResponse> {
    let caller = principal(&req);
    Ok(HttpResponse::Ok()
        .json(json!({"object": "list", "data": all_models(&state, caller.as_ref()).await?})))
}

/// Get one model.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "openai", params(("id" = String, Path)), responses((status = 200, description = "A model"), (status = 404, body = OpenAiErrorEnvelope)))]
pub async fn get_model(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> OpenAiResult<HttpResponse> {
    let id = path.into_inner();
    let caller = principal(&req);
    all_models(&state, caller.as_ref())
        .await?
        .into_iter()
        .find(|m| m["id"] == id.as_str())
        .map(|m| HttpResponse::Ok().json(m))
        .ok_or_else(|| {
            OpenAiError::new(
                StatusCode::NOT_FOUND,
                format!("The model '{id}' does not exist or you do not have access to it."),
                Some("model"),
                Some("model_not_found"),
            )
        })
}
