//! Chat Completions (`/v1/chat/completions`). `model` is an agent key (its instructions come
//! first, then the caller's messages, system ones included; its parameters apply unless the
//! request sets them), or `provider/model` for direct gateway access. Stateless, as in
//! OpenAI's API: the caller sends the whole conversation. Each call is logged as a run.

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::agent::ModelSpec;
use agentry_domain::llm::{PromptMessage, Role, TokenUsage};
use agentry_domain::services::{GatewayRequest, GatewayTarget, Params, PreparedCall};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use super::{
    OpenAiError, OpenAiErrorEnvelope, OpenAiResult, bounded, may_call_models_directly, object_body,
    only_neutral, param, reject_unknown, required_model, served_agent, token_limit, unix,
    version_param,
};
use crate::AppState;
use crate::auth::{Principal, principal};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::sse::{self, Ending, frame, pump};

/// Parameters understood. `user`, `metadata`, `store`, `service_tier`, `parallel_tool_calls`
/// and `stream_options` are accepted (`user` and `metadata` are logged); the others in the
/// neutral list only with neutral values.
const ACCEPTED: &[&str] = &[
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
    "logprobs",
    "presence_penalty",
    "frequency_penalty",
    "modalities",
    "version",
];

/// Routes of this module (under `/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/chat/completions", web::post().to(create_chat_completion));
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
                OpenAiError::invalid(&format!("{at}.role"), format!("Unsupported role '{role_name}': Agentry accepts system, developer, user and assistant."), "unsupported_value")
            })?;
            let text = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => Ok(t.to_owned()),
                        _ => Err(OpenAiError::invalid(&format!("{at}.content"), "Only text content parts are supported.", "unsupported_value")),
                    })
                    .collect::<OpenAiResult<Vec<_>>>()?
                    .concat(),
                Some(Value::Null) | None if role == Role::Assistant => String::new(),
                _ => return Err(OpenAiError::invalid(&format!("{at}.content"), "Each message needs string content.", "invalid_type")),
            };
            Ok(PromptMessage::new(role, text))
        })
        .collect()
}

/// Resolves `model`: an agent key first, else `provider/model`.
async fn target(
    state: &AppState,
    caller: Option<&Principal>,
    model: &str,
    version: Option<u32>,
) -> OpenAiResult<(GatewayTarget, Option<String>)> {
    match served_agent(state, caller, model, version).await {
        Ok((live, served)) => Ok((
            GatewayTarget::Agent(Box::new(served)),
            Some(live.key.to_string()),
        )),
        Err(e) if e.status().as_u16() == 404 && model.contains('/') && version.is_none() => {
            if !may_call_models_directly(caller) {
                return Err(OpenAiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Calling '{model}' directly needs an editor or a key with the 'write' scope and no agent allowlist."
                    ),
                    Some("model"),
                    Some("direct_model_access_denied"),
                ));
            }
            let spec = ModelSpec {
                provider_id: None,
                model: model.to_owned(),
                field: "model".to_owned(),
            };
            match state.providers.resolve(&spec).await {
                Ok(m) => Ok((GatewayTarget::Model(m), None)),
                Err(_) => Err(OpenAiError::model_not_found(model)),
            }
        }
        Err(e) => Err(e),
    }
}

struct Ask {
    model: String,
    stream: bool,
    include_usage: bool,
}

async fn prepare(
    state: &AppState,
    caller: Option<&Principal>,
    body: &Map<String, Value>,
) -> OpenAiResult<(Ask, PreparedCall)> {
    reject_unknown(body, ACCEPTED)?;
    only_neutral(body, "n", &[json!(1)])?;
    only_neutral(body, "tools", &[json!([])])?;
    only_neutral(body, "tool_choice", &[json!("none"), json!("auto")])?;
    only_neutral(body, "response_format", &[json!({"type": "text"})])?;
    only_neutral(body, "logprobs", &[json!(false)])?;
    only_neutral(body, "presence_penalty", &[json!(0), json!(0.0)])?;
    only_neutral(body, "frequency_penalty", &[json!(0), json!(0.0)])?;
    only_neutral(body, "modalities", &[json!(["text"])])?;
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
    let (target, agent_key) = target(state, caller, &model, version).await?;
    let mut log_meta = Map::new();
    log_meta.insert("endpoint".to_owned(), "chat.completions".into());
    log_meta.insert("model".to_owned(), model.clone().into());
    if let Some(k) = agent_key {
        log_meta.insert("agent".to_owned(), k.into());
    }
    if let Some(user) = param::<String>(body, "user")? {
        log_meta.insert("user_id".to_owned(), user.into());
    }
    if let Some(meta) = param::<Map<String, Value>>(body, "metadata")? {
        log_meta.insert("metadata".to_owned(), Value::Object(meta));
    }
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let call = state
        .runtime
        .prepare_call(GatewayRequest {
            target,
            messages,
            params,
            log_meta,
            run_id: None,
        })
        .await
        .map_err(|e| match e {
            agentry_domain::Error::Invalid(inv) => {
                OpenAiError::invalid("messages", inv.reason, "invalid_value")
            }
            other => other.into(),
        })?;
    Ok((
        Ask {
            model,
            stream: param(body, "stream")?.unwrap_or(false),
            include_usage,
        },
        call,
    ))
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

fn completion_id(run_id: &str) -> String {
    format!("chatcmpl-{}", run_id.strip_prefix("run_").unwrap_or(run_id))
}

/// Create a chat completion: `model` is an agent key (or `provider/model`).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body(content = Object, description = "OpenAI Chat Completions request; `model` is an agent key"),
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
    // Boxed: see `sse::chat_stream`.
    let (ask, mut call) = Box::pin(prepare(&state, caller.as_ref(), &body)).await?;
    let id = completion_id(&call.run_id);
    let created = unix(chrono::Utc::now());
    if ask.stream {
        let upstream = call.stream().await?;
        let (tx, rx) = sse::channel();
        tokio::spawn(drive(ask, call, upstream, tx, id, created).in_current_span());
        return Ok(sse::sse_response(rx));
    }
    let (completion, _) = call.complete().await?;
    Ok(HttpResponse::Ok().json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": ask.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": completion.content, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": completion.finish_reason.unwrap_or_else(|| "stop".to_owned()),
        }],
        "usage": usage_json(completion.usage),
        "service_tier": "default",
        "system_fingerprint": null,
    })))
}

fn chunk(id: &str, created: i64, model: &str, delta: Value, finish_reason: Option<&str>) -> Bytes {
    frame(&json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        "service_tier": "default",
        "system_fingerprint": null,
    }))
}

async fn drive(
    ask: Ask,
    call: PreparedCall,
    upstream: agentry_domain::llm::CompletionStream,
    mut tx: sse::SseSender,
    id: String,
    created: i64,
) {
    if !tx
        .send(chunk(
            &id,
            created,
            &ask.model,
            json!({"role": "assistant", "content": ""}),
            None,
        ))
        .await
    {
        return;
    }
    let (text, ending) = pump(upstream, &mut tx, |delta| {
        chunk(&id, created, &ask.model, json!({"content": delta}), None)
    })
    .await;
    let (usage, error) = match ending {
        Ending::Done {
            usage,
            finish_reason,
        } => {
            let _ = tx
                .send(chunk(
                    &id,
                    created,
                    &ask.model,
                    json!({}),
                    Some(finish_reason.as_deref().unwrap_or("stop")),
                ))
                .await;
            if ask.include_usage {
                let last = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": ask.model, "choices": [], "usage": usage_json(usage)});
                let _ = tx.send(frame(&last)).await;
            }
            let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
            (usage, None)
        }
        Ending::Gone => (None, Some("client disconnected".to_owned())),
        Ending::Failed(e) => {
            let err = OpenAiError::from(call.stream_error(e.clone()));
            let _ = tx.send(frame(&json!({"error": {"message": err.to_string(), "type": "api_error", "param": null, "code": "provider_error"}}))).await;
            (None, Some(e.to_string()))
        }
    };
    // Boxed: see `sse::record_cut`.
    if let Err(e) = Box::pin(call.finish(text, usage, error)).await {
        tracing::error!(error = %e, "could not log a streamed chat completion");
    }
}
