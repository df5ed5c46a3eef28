//! Chat Completions (`/v1/chat/completions`). `model` is an agent key (its instructions come
//! first, then the caller's messages, system ones included; its parameters apply unless the
//! request sets them), or `provider/model` for direct gateway access. Stateless, as in
//! OpenAI's API: the caller sends the whole conversation. Each call is logged as a run.

use std::collections::VecDeque;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::llm::{PromptMessage, Role, TokenUsage, ToolCall};
use agentry_domain::services::{
    Memory, Params, Turn, TurnEvent, TurnOutcome, TurnRequest, TurnTarget,
};
use serde_json::{Map, Value, json};

use super::options::{Dialect, call_options, chat_tool_call};
use super::{
    OpenAiError, OpenAiErrorEnvelope, OpenAiResult, bounded, object_body, only_neutral, param,
    reject_unknown, required_model, token_limit, turn_error, unix, version_param,
};
use crate::AppState;
use crate::auth::principal;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::sse::{self, Encoder, frame};

/// Parameters understood. `metadata`, `store`, `service_tier` and `stream_options` are
/// accepted (`user` and `metadata` are logged); the others in the neutral list only with
/// neutral values.
pub(crate) const ACCEPTED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
    "tools",
    "tool_choice",
    "response_format",
    "stop",
    "seed",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "modalities",
    "reasoning_effort",
    "version",
];

/// Routes of this module (under `/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/chat/completions").post(create_chat_completion));
}

fn text_content(at: &str, content: Option<&Value>, role: Role) -> OpenAiResult<String> {
    match content {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .map(|p| {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => Ok(t.to_owned()),
                    _ => Err(OpenAiError::invalid(
                        &format!("{at}.content"),
                        "Only text content parts are supported.",
                        "unsupported_value",
                    )),
                }
            })
            .collect::<OpenAiResult<Vec<_>>>()?
            .concat()),
        Some(Value::Null) | None if role == Role::Assistant => Ok(String::new()),
        _ => Err(OpenAiError::invalid(
            &format!("{at}.content"),
            "Each message needs string content.",
            "invalid_type",
        )),
    }
}

fn parse_tool_calls(at: &str, value: Option<&Value>) -> OpenAiResult<Vec<ToolCall>> {
    let Some(Value::Array(calls)) = value else {
        return Ok(Vec::new());
    };
    calls
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let field = |path: &str| c.pointer(path).and_then(Value::as_str);
            match (
                field("/id"),
                field("/function/name"),
                field("/function/arguments"),
            ) {
                (Some(id), Some(name), args) => Ok(ToolCall {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    arguments: args.unwrap_or("{}").to_owned(),
                }),
                _ => Err(OpenAiError::invalid(
                    &format!("{at}.tool_calls[{j}]"),
                    "A tool call needs 'id' and 'function' with 'name' and 'arguments'.",
                    "invalid_value",
                )),
            }
        })
        .collect()
}

fn parse_messages(value: Option<&Value>) -> OpenAiResult<Vec<PromptMessage>> {
    let Some(Value::Array(items)) = value else {
        return Err(OpenAiError::invalid(
            "messages",
            "Missing required parameter: 'messages' (a non-empty array).",
            "missing_required_parameter",
        ));
    };
    if items.is_empty() {
        return Err(OpenAiError::invalid(
            "messages",
            "'messages' must not be empty.",
            "invalid_value",
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let at = format!("messages[{i}]");
            let role_name = m.get("role").and_then(Value::as_str).unwrap_or("");
            let role = Role::parse(role_name).ok_or_else(|| {
                OpenAiError::invalid(&format!("{at}.role"), format!("Unsupported role '{role_name}': Agentry accepts system, developer, user, assistant and tool."), "unsupported_value")
            })?;
            let content = text_content(&at, m.get("content"), role)?;
            let mut message = PromptMessage::new(role, content);
            if role == Role::Assistant {
                message.tool_calls = parse_tool_calls(&at, m.get("tool_calls"))?;
            }
            if role == Role::Tool {
                let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
                    OpenAiError::invalid(&format!("{at}.tool_call_id"), "A tool message needs 'tool_call_id'.", "missing_required_parameter")
                })?;
                message.tool_call_id = Some(id.to_owned());
            }
            Ok(message)
        })
        .collect()
}

struct Ask {
    model: String,
    version: Option<u32>,
    include_usage: bool,
    request: TurnRequest,
}

fn parse(body: &Map<String, Value>) -> OpenAiResult<Ask> {
    reject_unknown(body, ACCEPTED)?;
    only_neutral(body, "n", &[json!(1)])?;
    only_neutral(body, "logprobs", &[json!(false)])?;
    only_neutral(body, "top_logprobs", &[json!(0)])?;
    only_neutral(body, "modalities", &[json!(["text"])])?;
    only_neutral(body, "reasoning_effort", &[])?;
    let model = required_model(body)?;
    let messages = parse_messages(body.get("messages"))?;
    let version = version_param(body)?;
    let max_tokens = match token_limit(body, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => token_limit(body, "max_tokens")?,
    };
    let params = Params {
        temperature: bounded(body, "temperature", 0.0, 2.0)?,
        top_p: bounded(body, "top_p", 0.0, 1.0)?,
        max_tokens,
    };
    let options = call_options(body, Dialect::ChatCompletions)?;
    let mut log_meta = Map::new();
    log_meta.insert("endpoint".to_owned(), "chat.completions".into());
    log_meta.insert("model".to_owned(), model.clone().into());
    if let Some(user) = &options.user {
        log_meta.insert("user_id".to_owned(), user.clone().into());
    }
    if let Some(meta) = param::<Map<String, Value>>(body, "metadata")? {
        log_meta.insert("metadata".to_owned(), Value::Object(meta));
    }
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let request = TurnRequest {
        input_field: "messages",
        params,
        options,
        stream: param(body, "stream")?.unwrap_or(false),
        ..TurnRequest::new(
            messages,
            Memory::Run {
                run_id: None,
                log_meta,
                log_now: false,
            },
        )
    };
    Ok(Ask {
        model,
        version,
        include_usage,
        request,
    })
}

fn usage_json(u: Option<TokenUsage>) -> Value {
    let u = u.unwrap_or_default();
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
}

/// A streamed completion whose turn failed to start after the headers went out: OpenAI's
/// in-stream error, then the end of the stream.
fn late_error(e: agentry_domain::Error) -> Vec<Bytes> {
    let err = OpenAiError::from(e);
    vec![
        frame(
            &json!({"error": {"message": err.message, "type": err.kind, "param": err.param, "code": err.code}}),
        ),
        Bytes::from_static(b"data: [DONE]\n\n"),
    ]
}

fn completion_id(run_id: &str) -> String {
    format!("chatcmpl-{}", run_id.strip_prefix("run_").unwrap_or(run_id))
}

/// Create a chat completion: `model` is an agent key (or `provider/model`).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = super::bodies::ChatCompletionRequest,
    responses((status = 200, description = "A chat.completion object, or chat.completion.chunk events when `stream` is true"), (status = 400, body = OpenAiErrorEnvelope),
        (status = 404, body = OpenAiErrorEnvelope), (status = 502, body = OpenAiErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn create_chat_completion(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<JsonBody<Value>, ApiError>,
) -> OpenAiResult<HttpResponse> {
    let caller = principal(&req);
    let body = object_body(body)?;
    let ask = parse(&body)?;
    let target = TurnTarget::AgentOrModel {
        name: ask.model.clone(),
        version: ask.version,
    };
    let stream = ask.request.stream;
    let runtime = state.runtime.clone();
    // Boxed: its future is large and done with before the answer is awaited.
    let starting: sse::Starting = Box::pin(async move {
        runtime
            .start_turn(caller.as_ref(), target, ask.request)
            .await
    });
    let model = ask.model.clone();
    let refuse = move |e| turn_error(e, &model);
    if stream {
        let (model, include_usage) = (ask.model, ask.include_usage);
        let make = move |turn: &Turn| ChunkEncoder {
            id: completion_id(turn.start().run_id.as_deref().unwrap_or_default()),
            created: unix(turn.start().created_at),
            model,
            include_usage,
            tool_index: 0,
        };
        return sse::stream_when_started(starting, make, refuse, late_error).await;
    }
    let turn = starting.await.map_err(refuse)?;
    let id = completion_id(turn.start().run_id.as_deref().unwrap_or_default());
    let created = unix(turn.start().created_at);
    let outcome = turn.finish().await.map_err(OpenAiError::from)?;
    let content = if (outcome.text.is_empty() && !outcome.tool_calls.is_empty())
        || outcome.refusal.is_some()
    {
        Value::Null
    } else {
        Value::String(outcome.text.clone())
    };
    // An answer an output guardrail blocked is OpenAI's refusal: `content` null, `refusal` set.
    let mut message = json!({"role": "assistant", "content": content, "refusal": outcome.refusal, "annotations": []});
    if !outcome.tool_calls.is_empty()
        && let Value::Object(m) = &mut message
    {
        m.insert(
            "tool_calls".to_owned(),
            outcome.tool_calls.iter().map(chat_tool_call).collect(),
        );
    }
    Ok(HttpResponse::Ok().json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": ask.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(&outcome),
        }],
        "usage": usage_json(outcome.usage),
        "service_tier": "default",
        "system_fingerprint": null,
    })))
}

/// OpenAI's finish reasons; a turn stopped by its tool-step limit reads as `length`.
fn finish_reason(outcome: &TurnOutcome) -> &str {
    match outcome.finish_reason.as_deref() {
        _ if !outcome.tool_calls.is_empty() => "tool_calls",
        Some(r @ ("stop" | "length" | "content_filter" | "tool_calls")) => r,
        Some("max_tool_steps") => "length",
        _ => "stop",
    }
}

/// Chat Completions chunks of a turn.
struct ChunkEncoder {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    tool_index: usize,
}

impl ChunkEncoder {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
            "service_tier": "default",
            "system_fingerprint": null,
        });
        if self.include_usage
            && let Value::Object(m) = &mut c
        {
            m.insert("usage".to_owned(), Value::Null);
        }
        frame(&c)
    }
}

impl Encoder for ChunkEncoder {
    fn encode(&mut self, event: TurnEvent, out: &mut VecDeque<Bytes>) {
        match event {
            TurnEvent::Started => {
                out.push_back(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            TurnEvent::TextDelta(delta) => {
                out.push_back(self.chunk(json!({"content": delta}), None));
            }
            // The agent's own tool calls happen inside the turn; only the caller's reach it.
            TurnEvent::ToolCall {
                call,
                server: false,
            } => {
                let mut c = chat_tool_call(&call);
                if let Value::Object(m) = &mut c {
                    m.insert("index".to_owned(), self.tool_index.into());
                }
                self.tool_index += 1;
                out.push_back(self.chunk(json!({"tool_calls": [c]}), None));
            }
            TurnEvent::ToolCall { .. } | TurnEvent::ToolResult { .. } => {}
            TurnEvent::Finished(outcome) => {
                if let Some(refusal) = &outcome.refusal {
                    out.push_back(self.chunk(json!({"refusal": refusal}), None));
                }
                out.push_back(self.chunk(json!({}), Some(finish_reason(&outcome))));
                if self.include_usage {
                    let last = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": [], "usage": usage_json(outcome.usage)});
                    out.push_back(frame(&last));
                }
                out.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
            }
            TurnEvent::Failed(e) => {
                let err = OpenAiError::from(e);
                out.push_back(frame(&json!({"error": {"message": err.to_string(), "type": "api_error", "param": null, "code": "provider_error"}})));
            }
        }
    }
}
