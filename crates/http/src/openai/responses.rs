//! The Responses API (`/v1/responses`, `/api/client/v1/responses`,
//! `/api/client/v1/agents/responses`). `model` is an agent key. A response id is
//! `resp_{conversation}`: the id of a turn names its conversation, so `previous_response_id`
//! continues it (seed 003), after a restart and on any replica, since it lives in the database.

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::agent::AgentRef;
use agentry_domain::conversation::{Message, MessageStatus};
use agentry_domain::llm::{PromptMessage, Role, TokenUsage};
use agentry_domain::services::{ChatRequest, ChatTurn, Params, PreparedTurn};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use tracing::Instrument;

use super::{
    OpenAiError, OpenAiErrorEnvelope, OpenAiResult, bounded, object_body, param, reject_unknown,
    required_model, served_agent, token_limit, unix, version_param,
};
use crate::AppState;
use crate::auth::{Principal, principal};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::sse::{self, Ending, SseSender, named_frame, pump};

/// Parameters this endpoint understands. `user`, `safety_identifier`, `prompt_cache_key`,
/// `service_tier`, `parallel_tool_calls` and `truncation` are accepted and have no effect
/// (documented); `tools`, `tool_choice`, `include`, `text`, `reasoning` only with neutral
/// values.
const ACCEPTED: &[&str] = &[
    "model",
    "input",
    "instructions",
    "previous_response_id",
    "conversation",
    "store",
    "stream",
    "metadata",
    "temperature",
    "top_p",
    "max_output_tokens",
    "version",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
    "parallel_tool_calls",
    "truncation",
    "tools",
    "tool_choice",
    "include",
    "text",
    "reasoning",
    "stream_options",
];

/// Routes of this module (mounted under `/v1` and `/api/client/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/responses", web::post().to(create_response))
        .service(
            web::resource("/responses/{id}")
                .route(web::get().to(get_response))
                .route(web::delete().to(delete_response)),
        )
        .route(
            "/responses/{id}/input_items",
            web::get().to(list_input_items),
        );
}

/// What a Responses request asks for, validated.
struct Ask {
    model: String,
    version: Option<u32>,
    request: ChatRequest,
    previous_response_id: Option<String>,
    metadata: Map<String, Value>,
    stream: bool,
}

fn conv_of_response(id: &str) -> Option<String> {
    let hex = id.strip_prefix("resp_")?;
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("conv_{hex}"))
}

fn response_id(conversation_id: &str) -> String {
    format!(
        "resp_{}",
        conversation_id
            .strip_prefix("conv_")
            .unwrap_or(conversation_id)
    )
}

fn text_of(content: &Value, at: &str) -> OpenAiResult<String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (
                    part.get("type").and_then(Value::as_str),
                    part.get("text").and_then(Value::as_str),
                ) {
                    (Some("input_text" | "output_text" | "text"), Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(OpenAiError::invalid(
                            &format!("{at}.content[{j}]"),
                            format!(
                                "Unsupported content part type {}: Agentry accepts input_text, output_text and text.",
                                kind.map_or("(missing)".to_owned(), |k| format!("'{k}'"))
                            ),
                            "unsupported_value",
                        ));
                    }
                }
            }
            Ok(text)
        }
        _ => Err(OpenAiError::invalid(
            &format!("{at}.content"),
            "Content must be a string or an array of content parts.",
            "invalid_type",
        )),
    }
}

/// `input` as a string, a message array, or messages with structured content.
fn parse_input(input: Option<&Value>) -> OpenAiResult<Vec<PromptMessage>> {
    let missing = || {
        OpenAiError::invalid(
            "input",
            "Missing required parameter: 'input'.",
            "missing_required_parameter",
        )
    };
    match input {
        None | Some(Value::Null) => Err(missing()),
        Some(Value::String(s)) if s.trim().is_empty() => Err(missing()),
        Some(Value::String(s)) => Ok(vec![PromptMessage::new(Role::User, s.clone())]),
        Some(Value::Array(items)) if items.is_empty() => Err(missing()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("input[{i}]");
                if let Some(kind) = item.get("type").and_then(Value::as_str).filter(|k| *k != "message") {
                    return Err(OpenAiError::invalid(&at, format!("Unsupported input item type '{kind}': Agentry accepts messages."), "unsupported_value"));
                }
                let role = item.get("role").and_then(Value::as_str).and_then(Role::parse).ok_or_else(|| {
                    OpenAiError::invalid(&format!("{at}.role"), "Each input message needs a role: user, assistant, system or developer.", "invalid_value")
                })?;
                let content = item.get("content").ok_or_else(|| OpenAiError::invalid(&format!("{at}.content"), "Each input message needs content.", "missing_required_parameter"))?;
                Ok(PromptMessage::new(role, text_of(content, &at)?))
            })
            .collect(),
        Some(_) => Err(OpenAiError::invalid("input", "'input' must be a string or an array of input items.", "invalid_type")),
    }
}

fn parse_conversation(body: &Map<String, Value>) -> OpenAiResult<Option<String>> {
    match body.get("conversation") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("id").and_then(Value::as_str) {
            Some(id) => Ok(Some(id.to_owned())),
            None => Err(OpenAiError::invalid(
                "conversation",
                "'conversation' must be a conversation id or {\"id\": …}.",
                "invalid_type",
            )),
        },
        Some(_) => Err(OpenAiError::invalid(
            "conversation",
            "'conversation' must be a conversation id or {\"id\": …}.",
            "invalid_type",
        )),
    }
}

fn parse(body: &Map<String, Value>) -> OpenAiResult<Ask> {
    reject_unknown(body, ACCEPTED)?;
    super::only_neutral(body, "tools", &[json!([])])?;
    super::only_neutral(body, "tool_choice", &[json!("auto"), json!("none")])?;
    super::only_neutral(body, "include", &[json!([])])?;
    super::only_neutral(
        body,
        "text",
        &[json!({"format": {"type": "text"}}), json!({})],
    )?;
    super::only_neutral(body, "reasoning", &[json!({})])?;
    super::only_neutral(body, "truncation", &[json!("disabled"), json!("auto")])?;
    let model = required_model(body)?;
    let input = parse_input(body.get("input"))?;
    let previous_response_id = param::<String>(body, "previous_response_id")?;
    let conversation = parse_conversation(body)?;
    if previous_response_id.is_some() && conversation.is_some() {
        return Err(OpenAiError::invalid(
            "conversation",
            "Give 'previous_response_id' or 'conversation', not both.",
            "invalid_value",
        ));
    }
    let conversation_id = match (&previous_response_id, conversation) {
        (Some(p), _) => Some(conv_of_response(p).ok_or_else(|| previous_not_found(p))?),
        (None, Some(c)) => Some(c),
        (None, None) => None,
    };
    let version = version_param(body)?;
    let metadata: Map<String, Value> = param(body, "metadata")?.unwrap_or_default();
    if metadata.len() > 16 || metadata.values().any(|v| !v.is_string()) {
        return Err(OpenAiError::invalid(
            "metadata",
            "'metadata' holds at most 16 string values.",
            "invalid_value",
        ));
    }
    let request = ChatRequest {
        input,
        input_field: "input",
        session_key: None,
        conversation_id,
        context: metadata.clone(),
        instructions: param(body, "instructions")?,
        params: Params {
            temperature: bounded(body, "temperature", 0.0, 2.0)?,
            top_p: bounded(body, "top_p", 0.0, 1.0)?,
            max_tokens: token_limit(body, "max_output_tokens")?,
        },
        store: param(body, "store")?.unwrap_or(true),
    };
    Ok(Ask {
        model,
        version,
        request,
        previous_response_id,
        metadata,
        stream: param(body, "stream")?.unwrap_or(false),
    })
}

fn previous_not_found(id: &str) -> OpenAiError {
    OpenAiError::new(
        StatusCode::NOT_FOUND,
        format!("Previous response with id '{id}' not found."),
        Some("previous_response_id"),
        Some("previous_response_not_found"),
    )
}

/// The facts a response object is built from.
struct Shape<'a> {
    id: String,
    model: &'a str,
    created_at: i64,
    status: &'a str,
    answer_id: &'a str,
    text: Option<&'a str>,
    usage: Option<TokenUsage>,
    previous_response_id: Option<&'a str>,
    instructions: Option<&'a str>,
    params: Params,
    metadata: &'a Map<String, Value>,
    store: bool,
    error: Option<Value>,
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_item(id: &str, status: &str, text: Option<&str>) -> Value {
    let content = text.map_or_else(Vec::new, |t| vec![output_text(t)]);
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn usage_json(u: Option<TokenUsage>) -> Value {
    let u = u.unwrap_or_default();
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total_tokens,
    })
}

fn response_object(s: &Shape<'_>) -> Value {
    let output = match s.text {
        Some(t) => vec![message_item(
            s.answer_id,
            if s.status == "completed" {
                "completed"
            } else {
                "incomplete"
            },
            Some(t),
        )],
        None => Vec::new(),
    };
    let incomplete = (s.status == "incomplete").then(|| json!({"reason": "interrupted"}));
    json!({
        "id": s.id,
        "object": "response",
        "created_at": s.created_at,
        "status": s.status,
        "background": false,
        "error": s.error,
        "incomplete_details": incomplete,
        "instructions": s.instructions,
        "max_output_tokens": s.params.max_tokens,
        "max_tool_calls": null,
        "model": s.model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": s.previous_response_id,
        "reasoning": {"effort": null, "summary": null},
        "service_tier": "default",
        "store": s.store,
        "temperature": s.params.temperature.unwrap_or(1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": s.params.top_p.unwrap_or(1.0),
        "truncation": "disabled",
        "usage": if s.text.is_some() { usage_json(s.usage) } else { Value::Null },
        "user": null,
        "metadata": s.metadata,
    })
}

fn shape_of_turn<'a>(ask: &'a Ask, turn: &'a ChatTurn, created_at: i64) -> Shape<'a> {
    Shape {
        id: response_id(&turn.conversation.id),
        model: &ask.model,
        created_at,
        status: if turn.answer.status == MessageStatus::Complete {
            "completed"
        } else {
            "incomplete"
        },
        answer_id: &turn.answer.id,
        text: Some(&turn.answer.content),
        usage: turn.answer.usage,
        previous_response_id: ask.previous_response_id.as_deref(),
        instructions: ask.request.instructions.as_deref(),
        params: ask.request.params,
        metadata: &ask.metadata,
        store: ask.request.store,
        error: None,
    }
}

async fn prepare(
    state: &AppState,
    caller: Option<&Principal>,
    ask: &Ask,
) -> OpenAiResult<PreparedTurn> {
    let (_, served) = served_agent(state, caller, &ask.model, ask.version).await?;
    match state
        .runtime
        .prepare_served(served, ask.request.clone())
        .await
    {
        Ok(turn) => Ok(turn),
        Err(agentry_domain::Error::NotFound {
            entity: "conversation",
            ..
        }) => Err(match &ask.previous_response_id {
            Some(p) => previous_not_found(p),
            None => OpenAiError::new(
                StatusCode::NOT_FOUND,
                "Conversation not found.",
                Some("conversation"),
                Some("conversation_not_found"),
            ),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Create a response: `model` is an agent key; `input` a string, message array, or messages
/// with structured content; `previous_response_id` or `conversation` continue a conversation;
/// `version` pins a published version; `stream: true` answers with Responses streaming events.
#[utoipa::path(post, path = "/v1/responses", tag = "openai", request_body(content = Object, description = "OpenAI Responses request; `model` is an agent key"),
    responses((status = 200, description = "A response object, or an event stream when `stream` is true"), (status = 400, body = OpenAiErrorEnvelope), (status = 404, body = OpenAiErrorEnvelope), (status = 502, body = OpenAiErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn create_response(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<JsonBody<Value>, ApiError>,
) -> OpenAiResult<HttpResponse> {
    let caller = principal(&req);
    let body = object_body(body)?;
    let ask = parse(&body)?;
    // Boxed: see `sse::chat_stream`.
    let mut turn = Box::pin(prepare(&state, caller.as_ref(), &ask)).await?;
    let created_at = unix(chrono::Utc::now());
    if ask.stream {
        let upstream = turn.stream().await?;
        let (tx, rx) = sse::channel();
        tokio::spawn(drive(ask, turn, upstream, tx, created_at).in_current_span());
        return Ok(sse::sse_response(rx));
    }
    let completion = turn.complete().await?;
    let done = turn
        .record(
            completion.content,
            completion.usage,
            completion.finish_reason,
            MessageStatus::Complete,
        )
        .await?;
    Ok(HttpResponse::Ok().json(response_object(&shape_of_turn(&ask, &done, created_at))))
}

/// Numbers the events of one stream.
struct Events {
    tx: SseSender,
    seq: u64,
}

/// One Responses event frame: `type` and `sequence_number` added to `body`.
fn numbered(seq: &mut u64, kind: &str, mut body: Value) -> Bytes {
    if let Value::Object(o) = &mut body {
        o.insert("type".to_owned(), kind.into());
        o.insert("sequence_number".to_owned(), (*seq).into());
    }
    *seq += 1;
    named_frame(kind, &body)
}

impl Events {
    async fn send(&mut self, kind: &str, body: Value) -> bool {
        let f = numbered(&mut self.seq, kind, body);
        self.tx.send(f).await
    }
}

async fn drive(
    ask: Ask,
    turn: PreparedTurn,
    upstream: agentry_domain::llm::CompletionStream,
    tx: SseSender,
    created_at: i64,
) {
    let mut ev = Events { tx, seq: 0 };
    let id = response_id(&turn.conversation.id);
    let item_id = turn.answer_id.clone();
    let base = Shape {
        id: id.clone(),
        model: &ask.model,
        created_at,
        status: "in_progress",
        answer_id: &item_id,
        text: None,
        usage: None,
        previous_response_id: ask.previous_response_id.as_deref(),
        instructions: ask.request.instructions.as_deref(),
        params: ask.request.params,
        metadata: &ask.metadata,
        store: ask.request.store,
        error: None,
    };
    if !open(&mut ev, &base, &item_id).await {
        return;
    }
    let Events { tx, seq } = &mut ev;
    let (text, ending) = pump(upstream, tx, |delta| numbered(seq, "response.output_text.delta", json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": delta, "logprobs": []}))).await;
    match ending {
        Ending::Done {
            usage,
            finish_reason,
        } => {
            let _ = ev.send("response.output_text.done", json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []})).await;
            let _ = ev.send("response.content_part.done", json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": output_text(&text)})).await;
            let _ = ev.send("response.output_item.done", json!({"output_index": 0, "item": message_item(&item_id, "completed", Some(&text))})).await;
            // Boxed: see `sse::record_cut`.
            match Box::pin(turn.record(text, usage, finish_reason, MessageStatus::Complete)).await {
                Ok(done) => {
                    let _ = ev.send("response.completed", json!({"response": response_object(&shape_of_turn(&ask, &done, created_at))})).await;
                }
                Err(e) => {
                    let err = OpenAiError::from(e);
                    let _ = ev.send("error", json!({"code": "storage_error", "message": err.to_string(), "param": null})).await;
                }
            }
        }
        Ending::Gone => sse::record_cut(turn, text).await,
        Ending::Failed(error) => {
            let err = OpenAiError::from(turn.stream_error(error));
            let failed = Shape {
                status: "failed",
                text: Some(&text),
                error: Some(json!({"code": "server_error", "message": err.to_string()})),
                ..base
            };
            let body = response_object(&failed);
            sse::record_cut(turn, text.clone()).await;
            let _ = ev.send("response.failed", json!({"response": body})).await;
        }
    }
}

/// The events that open a stream. Boxed, so the pending response object is not kept in the
/// streaming task for the stream's whole life.
fn open<'a>(ev: &'a mut Events, base: &'a Shape<'_>, item_id: &'a str) -> BoxFuture<'a, bool> {
    Box::pin(async move {
        let pending = response_object(base);
        ev.send("response.created", json!({"response": pending})).await
            && ev.send("response.in_progress", json!({"response": pending})).await
            && ev.send("response.output_item.added", json!({"output_index": 0, "item": message_item(item_id, "in_progress", None)})).await
            && ev.send("response.content_part.added", json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})).await
    })
}

/// 404 for a response id that names no stored conversation.
fn response_not_found(id: &str) -> OpenAiError {
    OpenAiError::new(
        StatusCode::NOT_FOUND,
        format!("Response with id '{id}' not found."),
        None,
        Some("not_found"),
    )
}

/// The conversation a response id names, with its agent's key.
async fn stored(
    state: &AppState,
    id: &str,
) -> OpenAiResult<(
    agentry_domain::conversation::Conversation,
    Vec<Message>,
    String,
)> {
    let not_found = || response_not_found(id);
    let conv = conv_of_response(id).ok_or_else(not_found)?;
    let (c, messages) = match state.runtime.get_conversation(&conv, 200).await {
        Ok(found) => found,
        Err(agentry_domain::Error::NotFound { .. }) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    let agent = state.agents.get(&AgentRef::Id(c.agent_id.clone())).await?;
    Ok((c, messages, agent.key.to_string()))
}

/// Get a stored response (the latest turn of its conversation).
#[utoipa::path(get, path = "/v1/responses/{id}", tag = "openai", params(("id" = String, Path)),
    responses((status = 200, description = "The response object"), (status = 404, body = OpenAiErrorEnvelope)))]
pub async fn get_response(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> OpenAiResult<HttpResponse> {
    let (c, messages, key) = stored(&state, &path).await?;
    let answer = messages.iter().rev().find(|m| m.role == Role::Assistant);
    let shape = Shape {
        id: path.clone(),
        model: &key,
        created_at: unix(answer.map_or(c.created_at, |a| a.created_at)),
        status: match answer.map(|a| a.status) {
            Some(MessageStatus::Incomplete) => "incomplete",
            _ => "completed",
        },
        answer_id: answer.map_or("", |a| a.id.as_str()),
        text: answer.map(|a| a.content.as_str()),
        usage: answer.and_then(|a| a.usage),
        previous_response_id: (c.message_count > 2).then_some(path.as_str()),
        instructions: None,
        params: Params::default(),
        metadata: &c.context,
        store: true,
        error: None,
    };
    Ok(HttpResponse::Ok().json(response_object(&shape)))
}

/// Delete a stored response: its whole conversation.
#[utoipa::path(delete, path = "/v1/responses/{id}", tag = "openai", params(("id" = String, Path)),
    responses((status = 200, description = "`{id, object: \"response.deleted\", deleted: true}`"), (status = 404, body = OpenAiErrorEnvelope)))]
pub async fn delete_response(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> OpenAiResult<HttpResponse> {
    let conv = conv_of_response(&path).ok_or_else(|| response_not_found(&path))?;
    if !state.runtime.delete_conversation(&conv).await? {
        return Err(response_not_found(&path));
    }
    Ok(HttpResponse::Ok()
        .json(json!({"id": path.as_str(), "object": "response.deleted", "deleted": true})))
}

/// The input items of a stored response's conversation (every non-assistant message), newest
/// first unless `order=asc`.
#[utoipa::path(get, path = "/v1/responses/{id}/input_items", tag = "openai", params(("id" = String, Path), ("order" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, description = "A list of input items"), (status = 404, body = OpenAiErrorEnvelope)))]
pub async fn list_input_items(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<Map<String, Value>>,
) -> OpenAiResult<HttpResponse> {
    let (_, messages, _) = stored(&state, &path).await?;
    let limit = q
        .get("limit")
        .and_then(Value::as_str)
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let ascending = q.get("order").and_then(Value::as_str) == Some("asc");
    let mut items: Vec<Value> = messages
        .iter()
        .filter(|m| m.role != Role::Assistant)
        .map(|m| json!({"id": m.id, "type": "message", "role": m.role.as_str(), "status": "completed", "content": [{"type": "input_text", "text": m.content}]}))
        .collect();
    if !ascending {
        items.reverse();
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    let first = items.first().and_then(|i| i.get("id")).cloned();
    let last = items.last().and_then(|i| i.get("id")).cloned();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": has_more})))
}
