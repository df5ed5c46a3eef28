//! Chat with an agent (seeds 002 and 004): `POST /agents/{agent}/chat` (whole answer, or SSE
//! with `stream: true`), `POST /agents/{agent}/stream` (always SSE), and
//! `GET /agents/{agent}/chat/history`.

use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::agent::AgentRef;
use agentry_domain::conversation::{Message, parse_external_id};
use agentry_domain::llm::Role;
use agentry_domain::services::{ChatTurn, Memory, Turn, TurnOutcome, TurnRequest, TurnTarget};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{JsonBody, query_number};
use crate::routes::agents::agent_ref;
use crate::routes::rfc3339;
use crate::routes::runs::TokenUsageView;
use crate::schema::at_most_one_given;
use crate::sse;

/// Routes of this module.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/agents/{agent}/chat").post(chat))
        .service(web::resource("/agents/{agent}/stream").post(stream))
        .service(web::resource("/agents/{agent}/chat/history").get(history));
}

/// A message to an agent. `session_id` and `conversation_id` are two spellings of one id:
/// give one (both only when they are equal).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"message": "Hello!", "session_id": "session-123"}))]
pub struct ChatInput {
    /// What the user says: up to 200,000 characters, not only whitespace.
    #[schema(value_type = String, required = true, max_length = 200_000, pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub message: Option<String>,
    /// Your id for the conversation (seed 002's spelling), 1 to 128 characters of A-Z, a-z,
    /// 0-9, `-`, `_`, `.` and `:`; a new conversation when absent.
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    pub session_id: Option<String>,
    /// Your id for the conversation (seed 004's spelling).
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    pub conversation_id: Option<String>,
    /// Anything about the caller, stored with a new conversation.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
    /// `true`: answer as Server-Sent Events.
    #[serde(default)]
    pub stream: bool,
}

impl ChatInput {
    /// What the OpenAPI document adds to the derived schema: one id spelling at a time.
    pub(crate) fn schema_rules() -> Value {
        json!({"allOf": [at_most_one_given(&["session_id", "conversation_id"])]})
    }

    pub(crate) fn try_into_domain(self) -> Result<TurnRequest, ApiError> {
        let (field, session_key) = match (self.session_id, self.conversation_id) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::validation(
                    "conversation_id",
                    "differs from session_id; give one",
                ));
            }
            (Some(a), _) => ("session_id", Some(a)),
            (None, b) => ("conversation_id", b),
        };
        // Checked here, where the caller's spelling is known, so that a bad key is reported
        // under the field the caller sent.
        if let Some(key) = &session_key {
            parse_external_id(field, key).map_err(agentry_domain::Error::from)?;
        }
        let message = self
            .message
            .ok_or_else(|| ApiError::validation("message", "is required"))?;
        let mut request = TurnRequest::user(message);
        request.memory = Memory::Conversation {
            session_key,
            conversation_id: None,
            from_answer: None,
            context: self.context.unwrap_or_default(),
            store: true,
        };
        request.stream = self.stream;
        Ok(request)
    }
}

/// Seed 002's `metadata`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatMetadata {
    /// The model's name at its provider.
    pub model: String,
    /// Total tokens.
    pub tokens_used: u32,
    /// The guardrails that triggered in this turn (`stage`, `index`, `rule`, `name`,
    /// `action`, `detail`), when some did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub guardrails: Vec<Value>,
    /// The knowledge passages the answer was given (`index`, `marker` as in the prompt,
    /// `file_id`, `filename`, `position`, `score`), when the agent has knowledge and some
    /// were found (docs/knowledge.md).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub citations: Vec<Value>,
    /// Time the turn spent retrieving them, in milliseconds (agents with knowledge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieval_ms: Option<u64>,
}

/// A guardrail that triggered, as the API shows it (never the text it matched).
pub fn trigger_json(t: &agentry_domain::guardrail::Trigger) -> Value {
    let mut v = serde_json::json!({"stage": t.stage.as_str(), "index": t.index, "rule": t.rule,
        "action": t.action.as_str(), "detail": t.detail});
    if let Some(n) = &t.name {
        v["name"] = Value::String(n.clone());
    }
    v
}

/// An agent's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatReply {
    /// The stored answer's id (`msg_…`).
    pub id: String,
    /// The same id.
    pub message_id: String,
    /// The answer (seed 002's spelling).
    pub message: String,
    /// The answer (seed 004's spelling).
    pub response: String,
    /// The agent's id.
    pub agent_id: String,
    /// The conversation, as the caller named it (or its generated id).
    pub session_id: String,
    /// The same, in seed 004's spelling.
    pub conversation_id: String,
    /// `provider/model`.
    pub model: String,
    /// Tokens spent.
    pub usage: TokenUsageView,
    /// Total tokens.
    pub tokens_used: u32,
    /// Time to answer.
    pub response_time_ms: u64,
    /// Why the answer ended.
    pub finish_reason: Option<String>,
    /// RFC 3339 UTC.
    pub timestamp: String,
    /// Model and tokens, as seed 002 shows them.
    pub metadata: ChatMetadata,
    /// The agent's tool calls during this turn, with their results, in order.
    #[schema(value_type = Vec<Object>)]
    pub tool_calls: Vec<Value>,
    /// When an output guardrail blocked the answer: the refusal sent instead (also in
    /// `message`; `finish_reason` is `content_filter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

impl ChatReply {
    /// The reply of a stored turn.
    pub fn new(t: &ChatTurn, outcome: &TurnOutcome) -> Self {
        let mut reply = Self::from(t);
        reply.model = outcome.model.to_string();
        reply.metadata.model = outcome.model.model_name.clone();
        reply.refusal.clone_from(&outcome.refusal);
        reply
    }
}

/// The tool calls of a turn's steps, each with its result.
fn tool_steps(steps: &[Message]) -> Vec<Value> {
    steps
        .iter()
        .flat_map(|m| m.tool_calls.iter())
        .map(|c| {
            let result = steps
                .iter()
                .find(|m| m.role == Role::Tool && m.tool_call_id.as_deref() == Some(&c.id))
                .map(|m| m.content.as_str());
            serde_json::json!({"id": c.id, "name": c.name, "arguments": c.arguments, "output": result})
        })
        .collect()
}

impl From<&ChatTurn> for ChatReply {
    fn from(t: &ChatTurn) -> Self {
        let a = &t.answer;
        let usage = TokenUsageView::from(a.usage);
        let tokens_used = usage.total_tokens;
        Self {
            id: a.id.clone(),
            message_id: a.id.clone(),
            message: a.content.clone(),
            response: a.content.clone(),
            agent_id: t.agent.id.to_string(),
            session_id: t.conversation.session_key.clone(),
            conversation_id: t.conversation.session_key.clone(),
            model: t.agent.model.to_string(),
            usage,
            tokens_used,
            response_time_ms: a.latency_ms.unwrap_or_default(),
            finish_reason: t.finish_reason.clone(),
            timestamp: rfc3339(a.created_at),
            metadata: ChatMetadata {
                model: t.agent.model.model_name.clone(),
                tokens_used,
                guardrails: a.annotations.guardrails.iter().map(trigger_json).collect(),
                citations: a
                    .annotations
                    .citations
                    .iter()
                    .map(agentry_domain::knowledge::Citation::to_json)
                    .collect(),
                retrieval_ms: a.annotations.retrieval_ms,
            },
            tool_calls: tool_steps(&t.steps),
            refusal: None,
        }
    }
}

/// Send a message; `stream: true` answers with Server-Sent Events (`start`, `token`…, `end` or
/// `error`).
#[utoipa::path(post, path = "/api/v1/agents/{agent}/chat", tag = "chat", request_body = ChatInput, params(("agent" = String, Path, description = "Agent id or key")),
    responses((status = 200, description = "The answer, or an SSE stream when `stream` is true",
            content((ChatReply = "application/json"), ("text/event-stream"))),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, description = "No invoke permission, or an API key not allowed to call this agent", body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "The agent is archived", body = ErrorEnvelope), (status = 502, body = ErrorEnvelope)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn chat(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonBody(body): JsonBody<ChatInput>,
) -> ApiResult<HttpResponse> {
    let target = agent_ref(&path)?;
    let request = body.try_into_domain()?;
    run_chat(&req, &state, target, request).await
}

/// Starts the turn on the agent's live definition; answers JSON, or SSE when asked.
async fn run_chat(
    req: &HttpRequest,
    state: &AppState,
    target: AgentRef,
    request: TurnRequest,
) -> ApiResult<HttpResponse> {
    let caller = crate::auth::principal(req);
    let streamed = request.stream;
    let runtime = state.runtime.clone();
    // Boxed: its future is large and done with before the stream is served.
    let starting: sse::Starting = Box::pin(async move {
        runtime
            .start_turn(caller.as_ref(), TurnTarget::LiveAgent(target), request)
            .await
    });
    if streamed {
        let make = |turn: &Turn| sse::ChatEncoder::new(turn.start());
        return sse::stream_when_started(starting, make, ApiError::from, sse::chat_late_error)
            .await;
    }
    let turn = starting.await?;
    let outcome = turn.finish().await?;
    let chat = outcome.chat.as_ref().ok_or_else(|| {
        ApiError::from(agentry_domain::Error::Internal(
            "a chat turn finished without a conversation".to_owned(),
        ))
    })?;
    Ok(HttpResponse::Ok().json(ChatReply::new(chat, &outcome)))
}

/// Send a message and stream the answer as Server-Sent Events: `start`, `token`…, then `end`
/// with the full `response`, usage and timing, or `error`.
#[utoipa::path(post, path = "/api/v1/agents/{agent}/stream", tag = "chat", request_body = ChatInput, params(("agent" = String, Path, description = "Agent id or key")),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream"), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, description = "The agent is archived", body = ErrorEnvelope), (status = 502, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonBody(body): JsonBody<ChatInput>,
) -> ApiResult<HttpResponse> {
    let target = agent_ref(&path)?;
    let mut request = body.try_into_domain()?;
    request.stream = true;
    run_chat(&req, &state, target, request).await
}

/// A stored message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    /// `msg_…`.
    pub id: String,
    /// `conv_…`.
    pub conversation_id: String,
    /// `user`, `assistant` or `tool`.
    pub role: &'static str,
    /// The text (a tool message: the tool's output).
    pub content: String,
    /// The tool calls an assistant message made (`{id, name, arguments}`).
    #[schema(value_type = Vec<Object>)]
    pub tool_calls: Vec<Value>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
    /// `complete`, or `incomplete` when the stream was cut.
    pub status: &'static str,
    /// `provider/model` (answers).
    pub model: Option<String>,
    /// Tokens (answers).
    pub usage: Option<TokenUsageView>,
    /// Time to answer (answers).
    pub latency_ms: Option<u64>,
    /// The published version that answered, if any.
    pub agent_version: Option<u32>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id.clone(),
            conversation_id: m.conversation_id.clone(),
            role: m.role.as_str(),
            content: m.content.clone(),
            tool_calls: m
                .tool_calls
                .iter()
                .map(|c| serde_json::json!({"id": c.id, "name": c.name, "arguments": c.arguments}))
                .collect(),
            tool_call_id: m.tool_call_id.clone(),
            status: m.status.as_str(),
            model: m.model.as_ref().map(ToString::to_string),
            usage: m.usage.map(|u| Some(u).into()),
            latency_ms: m.latency_ms,
            agent_version: m.agent_version,
            created_at: rfc3339(m.created_at),
        }
    }
}

/// History filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only this conversation (also `conversation_id`).
    pub session_id: Option<String>,
    /// Only this conversation.
    pub conversation_id: Option<String>,
    /// At most this many messages, 1 to 200 (default 50): the newest ones.
    pub limit: Option<String>,
    /// Only messages before this time (RFC 3339).
    #[param(format = DateTime)]
    pub before: Option<String>,
}

/// A page of history.
#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    /// The agent's id.
    pub agent_id: String,
    /// Messages, oldest first.
    pub messages: Vec<MessageView>,
    /// The page size asked for.
    pub limit: u32,
    /// Whether older messages exist: ask again with `before` = the first message's `created_at`.
    pub has_more: bool,
}

/// Chat history of an agent, optionally of one conversation: the newest `limit` messages
/// before `before`, oldest first.
#[utoipa::path(get, path = "/api/v1/agents/{agent}/chat/history", tag = "chat", params(("agent" = String, Path, description = "Agent id or key"), HistoryQuery),
    responses((status = 200, body = History), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn history(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<HistoryQuery>,
) -> ApiResult<HttpResponse> {
    let target = agent_ref(&path)?;
    let limit: u32 = query_number("limit", q.limit.as_deref())?.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 200"));
    }
    let before = q
        .before
        .as_deref()
        .filter(|b| !b.is_empty())
        .map(|b| {
            DateTime::parse_from_rfc3339(b)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::validation("before", "must be an RFC 3339 time"))
        })
        .transpose()?;
    let session = q
        .session_id
        .clone()
        .or_else(|| q.conversation_id.clone())
        .filter(|s| !s.is_empty());
    let (agent, mut messages) = state
        .runtime
        .history(
            crate::auth::principal(&req).as_ref(),
            &target,
            session,
            before,
            limit + 1,
        )
        .await?;
    let has_more = messages.len() > limit as usize;
    if has_more {
        messages.remove(0);
    }
    Ok(HttpResponse::Ok().json(History {
        agent_id: agent.id.to_string(),
        messages: messages.iter().map(MessageView::from).collect(),
        limit,
        has_more,
    }))
}
