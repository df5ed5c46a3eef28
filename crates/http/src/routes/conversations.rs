//! `/api/v1/conversations`: stored conversations and their messages.

use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::conversation::Conversation;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::principal;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::routes::agents::agent_ref;
use crate::routes::chat::MessageView;
use crate::routes::{DeleteResult, rfc3339};

/// Messages returned with one conversation.
const MESSAGES_MAX: u32 = 200;

/// Routes of this resource.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/conversations").get(list_conversations))
        .service(
            web::resource("/conversations/{id}")
                .route(web::get().to(get_conversation))
                .route(web::delete().to(delete_conversation)),
        );
}

/// A conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    /// `conv_…`.
    pub id: String,
    /// The agent's id.
    pub agent_id: String,
    /// The caller's id for it (`session_id` / `conversation_id` of chat).
    pub session_id: String,
    /// Context given when it opened.
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
    /// Stored messages.
    pub message_count: u64,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        Self {
            id: c.id.clone(),
            agent_id: c.agent_id.to_string(),
            session_id: c.session_key.clone(),
            context: c.context.clone(),
            message_count: c.message_count,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// A conversation with its newest messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationDetail {
    /// The conversation.
    #[serde(flatten)]
    pub conversation: ConversationView,
    /// Its newest messages (at most 200), oldest first.
    pub messages: Vec<MessageView>,
}

/// A page of conversations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    /// Most recently updated first.
    pub conversations: Vec<ConversationView>,
    /// Matches in all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// Filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    /// Only this agent's (id or key).
    pub agent_id: Option<String>,
    /// Page size, 1 to 100.
    pub limit: Option<String>,
    /// Items to skip.
    pub offset: Option<String>,
}

/// List conversations, most recent first.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "chat", params(ConversationQuery),
    responses((status = 200, body = ConversationList), (status = 404, body = ErrorEnvelope)))]
pub async fn list_conversations(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ConversationQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(q.limit.as_deref(), q.offset.as_deref())?;
    let agent = q
        .agent_id
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(agent_ref)
        .transpose()?;
    let paged = state
        .runtime
        .list_conversations(principal(&req).as_ref(), agent.as_ref(), page)
        .await?;
    Ok(HttpResponse::Ok().json(ConversationList {
        conversations: paged.items.iter().map(ConversationView::from).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// Get a conversation with its newest messages.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "chat", params(("id" = String, Path)),
    responses((status = 200, body = ConversationDetail), (status = 404, body = ErrorEnvelope)))]
pub async fn get_conversation(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let (c, _, messages) = state
        .runtime
        .get_conversation(principal(&req).as_ref(), &path, MESSAGES_MAX)
        .await?;
    Ok(HttpResponse::Ok().json(ConversationDetail {
        conversation: ConversationView::from(&c),
        messages: messages.iter().map(MessageView::from).collect(),
    }))
}

/// Delete a conversation and its messages.
#[utoipa::path(delete, path = "/api/v1/conversations/{id}", tag = "chat", params(("id" = String, Path)), responses((status = 200, body = DeleteResult)))]
pub async fn delete_conversation(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let deleted = state
        .runtime
        .delete_conversation(principal(&req).as_ref(), &path)
        .await?;
    Ok(HttpResponse::Ok().json(DeleteResult::new("Conversation", deleted)))
}
