//! The Responses API (`/v1/responses`, `/api/client/v1/responses`,
//! `/api/client/v1/agents/responses`). `model` is an agent key. A response id is
//! `resp_{conversation}`: the id of a turn names its conversation, so `previous_response_id`
//! continues it (seed 003), after a restart and on any replica, since it lives in the database.

use std::collections::VecDeque;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::conversation::{Message, MessageStatus};
use agentry_domain::llm::{PromptMessage, Role, TokenUsage, ToolCall};
use agentry_domain::services::{
    CallOptions, Memory, Params, Turn, TurnEvent, TurnOutcome, TurnRequest, TurnStart, TurnTarget,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::options::{Dialect, call_options, format_json, tool_choice_json, tools_json};
use super::{
    OpenAiError, OpenAiErrorEnvelope, OpenAiResult, bounded, object_body, param, reject_unknown,
    required_model, token_limit, turn_error, unix, version_param,
};
use crate::AppState;
use crate::auth::{Principal, principal};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::sse::{self, Encoder, named_frame};

/// Parameters this endpoint understands. `safety_identifier`, `prompt_cache_key`,
/// `service_tier` and `truncation` are accepted and have no effect (documented); `include`,
/// `reasoning`, `background`, `top_logprobs`, `max_tool_calls` only with neutral values.
pub(crate) const ACCEPTED: &[&str] = &[
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
    "background",
    "top_logprobs",
    "max_tool_calls",
    "stop",
    "seed",
];

/// Routes of this module (mounted under `/v1` and `/api/client/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/responses").post(create_response))
        .service(
            web::resource("/responses/{id}")
                .route(web::get().to(get_response))
                .route(web::delete().to(delete_response)),
        )
        .service(web::resource("/responses/{id}/input_items").get(list_input_items));
}

/// What a Responses request asks for, validated.
struct Ask {
    model: String,
    version: Option<u32>,
    request: TurnRequest,
    previous_response_id: Option<String>,
    metadata: Map<String, Value>,
    store: bool,
}

fn conv_of_response(id: &str) -> Option<String> {
    hex_of_response(id).map(|hex| format!("conv_{hex}"))
}

/// The answer a response id names (`resp_<hex>` → `msg_<hex>`).
fn answer_of_response(id: &str) -> Option<String> {
    hex_of_response(id).map(|hex| format!("msg_{hex}"))
}

fn hex_of_response(id: &str) -> Option<&str> {
    let hex = id.strip_prefix("resp_")?;
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// The response id of a turn's answer (`msg_…`) or, for a stateless turn, of its run
/// (`run_…`, never found by `GET`: nothing is stored under it). Older ids named the
/// conversation (`conv_…`) and still resolve to its latest turn.
fn response_id(answer_or_run: &str) -> String {
    let hex = answer_or_run
        .strip_prefix("msg_")
        .or_else(|| answer_or_run.strip_prefix("run_"))
        .unwrap_or(answer_or_run);
    format!("resp_{hex}")
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

/// `input` as a string, a message array, messages with structured content, and the
/// caller's function calls and their outputs (`function_call`, `function_call_output`).
fn parse_input(input: Option<&Value>) -> OpenAiResult<Vec<PromptMessage>> {
    let missing = || {
        OpenAiError::invalid(
            "input",
            "Missing required parameter: 'input'.",
            "missing_required_parameter",
        )
    };
    let items = match input {
        None | Some(Value::Null) => return Err(missing()),
        Some(Value::String(s)) if s.trim().is_empty() => return Err(missing()),
        Some(Value::String(s)) => return Ok(vec![PromptMessage::new(Role::User, s.clone())]),
        Some(Value::Array(items)) if items.is_empty() => return Err(missing()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "input",
                "'input' must be a string or an array of input items.",
                "invalid_type",
            ));
        }
    };
    let mut out: Vec<PromptMessage> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let text_field = |name: &str| -> OpenAiResult<String> {
            match item.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(OpenAiError::invalid(
                    &format!("{at}.{name}"),
                    format!(
                        "A {} item needs a string '{name}'.",
                        item.get("type").and_then(Value::as_str).unwrap_or("")
                    ),
                    "missing_required_parameter",
                )),
            }
        };
        match item.get("type").and_then(Value::as_str) {
            None | Some("message") => {
                let role = item.get("role").and_then(Value::as_str).and_then(Role::parse).filter(|r| *r != Role::Tool).ok_or_else(|| {
                    OpenAiError::invalid(&format!("{at}.role"), "Each input message needs a role: user, assistant, system or developer.", "invalid_value")
                })?;
                let content = item.get("content").ok_or_else(|| {
                    OpenAiError::invalid(
                        &format!("{at}.content"),
                        "Each input message needs content.",
                        "missing_required_parameter",
                    )
                })?;
                out.push(PromptMessage::new(role, text_of(content, &at)?));
            }
            Some("function_call") => {
                let call = ToolCall {
                    id: text_field("call_id")?,
                    name: text_field("name")?,
                    arguments: text_field("arguments")?,
                };
                // Consecutive calls are one assistant message, as the model made them.
                match out.last_mut() {
                    Some(last) if last.role == Role::Assistant && !last.tool_calls.is_empty() => {
                        last.tool_calls.push(call);
                    }
                    _ => out.push(PromptMessage::assistant_calls("", vec![call])),
                }
            }
            Some("function_call_output") => {
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(_)) => text_of(&item["output"], &at)?,
                    _ => {
                        return Err(OpenAiError::invalid(
                            &format!("{at}.output"),
                            "A function_call_output item needs 'output'.",
                            "missing_required_parameter",
                        ));
                    }
                };
                out.push(PromptMessage::tool_result(text_field("call_id")?, output));
            }
            Some(kind) => {
                return Err(OpenAiError::invalid(
                    &at,
                    format!(
                        "Unsupported input item type '{kind}': Agentry accepts message, function_call and function_call_output."
                    ),
                    "unsupported_value",
                ));
            }
        }
    }
    Ok(out)
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
    super::only_neutral(body, "include", &[json!([])])?;
    if let Some(Value::Object(text)) = body.get("text") {
        reject_unknown(text, &["format", "verbosity"]).map_err(|_| {
            OpenAiError::invalid(
                "text",
                "'text' accepts 'format' and 'verbosity'.",
                "unsupported_parameter",
            )
        })?;
        super::only_neutral(text, "verbosity", &[json!("medium")])?;
    }
    if let Some(Value::Object(reasoning)) = body.get("reasoning") {
        for (k, v) in reasoning {
            if !v.is_null() {
                return Err(OpenAiError::invalid(
                    &format!("reasoning.{k}"),
                    "Agentry's agents take no reasoning options; send null or leave it out.",
                    "unsupported_value",
                ));
            }
        }
    }
    super::only_neutral(body, "background", &[json!(false)])?;
    super::only_neutral(body, "top_logprobs", &[json!(0)])?;
    super::only_neutral(body, "max_tool_calls", &[])?;
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
    // A response id names its turn's answer (`resp_<hex>` ↔ `msg_<hex>`); ids issued before
    // ids were per turn named the conversation (`conv_<hex>`), the fallback.
    let (from_answer, conversation_id) = match (&previous_response_id, conversation) {
        (Some(p), _) => (
            Some(answer_of_response(p).ok_or_else(|| previous_not_found(p))?),
            conv_of_response(p),
        ),
        (None, Some(c)) => (None, Some(c)),
        (None, None) => (None, None),
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
    let store = param(body, "store")?.unwrap_or(true);
    let request = TurnRequest {
        instructions: param(body, "instructions")?,
        params: Params {
            temperature: bounded(body, "temperature", 0.0, 2.0)?,
            top_p: bounded(body, "top_p", 0.0, 1.0)?,
            max_tokens: token_limit(body, "max_output_tokens")?,
        },
        options: call_options(body, Dialect::Responses)?,
        stream: param(body, "stream")?.unwrap_or(false),
        ..TurnRequest::new(
            input,
            Memory::Conversation {
                session_key: None,
                conversation_id,
                from_answer,
                context: metadata.clone(),
                store,
            },
        )
    };
    Ok(Ask {
        model,
        version,
        request,
        previous_response_id,
        metadata,
        store,
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
    output: Vec<Value>,
    usage: Option<TokenUsage>,
    previous_response_id: Option<&'a str>,
    instructions: Option<&'a str>,
    params: Params,
    options: Option<&'a CallOptions>,
    metadata: &'a Map<String, Value>,
    store: bool,
    error: Option<Value>,
    /// Why an `incomplete` response is: `interrupted` (a cut stream) unless told otherwise.
    incomplete_reason: &'static str,
    /// The stored conversation the turn belongs to.
    conversation: Option<&'a str>,
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A knowledge citation as a Responses annotation (`file_citation`; `index` is the
/// source's place in the turn's list of sources, its marker in the text being
/// `[index + 1]`).
fn file_citation(c: &agentry_domain::knowledge::Citation) -> Value {
    json!({"type": "file_citation", "file_id": c.file_id, "filename": c.filename, "index": c.index})
}

/// Puts the citations on the answer's text (the last message item's `output_text`).
fn cite(output: &mut [Value], citations: &[agentry_domain::knowledge::Citation]) {
    if citations.is_empty() {
        return;
    }
    let text_part = output
        .iter_mut()
        .rev()
        .filter(|item| item["type"] == "message")
        .find_map(|item| {
            item["content"]
                .as_array_mut()
                .and_then(|parts| parts.iter_mut().find(|p| p["type"] == "output_text"))
        });
    if let Some(part) = text_part {
        part["annotations"] = Value::Array(citations.iter().map(file_citation).collect());
    }
}

/// The message item of an answer an output guardrail replaced: one `refusal` content part.
fn refusal_item(id: &str, refusal: &str) -> Value {
    json!({"id": id, "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "refusal", "refusal": refusal}]})
}

fn message_item(id: &str, status: &str, text: Option<&str>) -> Value {
    let content = text.map_or_else(Vec::new, |t| vec![output_text(t)]);
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// A call the caller runs (its own function tool).
fn function_call_item(call: &ToolCall, status: &str) -> Value {
    json!({"id": format!("fc_{}", call.id), "type": "function_call", "status": status, "call_id": call.id, "name": call.name, "arguments": call.arguments})
}

/// A call Agentry ran (the agent's own tool), reported as OpenAI reports tools run on the
/// server side (`mcp_call` items), so SDKs do not try to run it themselves.
fn server_call_item(call: &ToolCall, output: Option<&str>, is_error: bool, status: &str) -> Value {
    let (output, error) = if is_error {
        (None, output)
    } else {
        (output, None)
    };
    json!({"id": format!("mcp_{}", call.id), "type": "mcp_call", "status": status, "server_label": "agentry", "name": call.name, "arguments": call.arguments, "output": output, "error": error})
}

fn is_error_output(output: &str) -> bool {
    serde_json::from_str::<Value>(output).ok().is_some_and(|v| {
        v.as_object()
            .is_some_and(|o| o.len() == 1 && o.contains_key("error"))
    })
}

/// The output items of a turn: the agent's tool calls with their results, the answer's text,
/// the caller's calls.
fn output_items(
    answer_id: &str,
    status: &str,
    steps: &[PromptMessage],
    text: &str,
    calls: &[ToolCall],
) -> Vec<Value> {
    let mut out = Vec::new();
    for call in steps.iter().flat_map(|m| m.tool_calls.iter()) {
        let result = steps
            .iter()
            .find(|m| m.role == Role::Tool && m.tool_call_id.as_deref() == Some(&call.id))
            .map(|m| m.content.as_str());
        out.push(server_call_item(
            call,
            result,
            result.is_some_and(is_error_output),
            "completed",
        ));
    }
    if !text.is_empty() || calls.is_empty() {
        out.push(message_item(answer_id, status, Some(text)));
    }
    out.extend(calls.iter().map(|c| function_call_item(c, "completed")));
    out
}

/// A response's `usage`.
#[derive(Serialize)]
struct UsageReport {
    input_tokens: u32,
    input_tokens_details: CachedTokens,
    output_tokens: u32,
    output_tokens_details: ReasoningTokens,
    total_tokens: u32,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u32,
}

#[derive(Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u32,
}

impl From<TokenUsage> for UsageReport {
    fn from(u: TokenUsage) -> Self {
        Self {
            input_tokens: u.prompt_tokens,
            input_tokens_details: CachedTokens { cached_tokens: 0 },
            output_tokens: u.completion_tokens,
            output_tokens_details: ReasoningTokens {
                reasoning_tokens: 0,
            },
            total_tokens: u.total_tokens,
        }
    }
}

/// `{"reason": …}`, `{"id": …}`, `{"effort": null, "summary": null}` and `text`.
#[derive(Serialize)]
struct Reason {
    reason: &'static str,
}

#[derive(Serialize)]
struct IdOf<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct NoReasoning {
    effort: Option<()>,
    summary: Option<()>,
}

#[derive(Serialize)]
struct TextReport {
    format: Value,
    verbosity: &'static str,
}

/// A response object, serialized straight from the facts it reports (building it as a
/// `serde_json::Value` cost ~40,000 instructions a response: a map entry and a key string
/// for each of its 28 fields).
#[derive(Serialize)]
struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: i64,
    status: &'a str,
    background: bool,
    error: Option<&'a Value>,
    incomplete_details: Option<Reason>,
    instructions: Option<&'a str>,
    max_output_tokens: Option<u32>,
    max_tool_calls: Option<u32>,
    model: &'a str,
    output: &'a [Value],
    parallel_tool_calls: bool,
    previous_response_id: Option<&'a str>,
    reasoning: NoReasoning,
    service_tier: &'static str,
    store: bool,
    temperature: f64,
    text: TextReport,
    tool_choice: Value,
    tools: Vec<Value>,
    top_logprobs: u8,
    top_p: f64,
    truncation: &'static str,
    usage: Option<UsageReport>,
    user: Option<&'a str>,
    metadata: &'a Map<String, Value>,
    conversation: Option<IdOf<'a>>,
}

fn response_object<'a>(s: &'a Shape<'_>) -> ResponseObject<'a> {
    let d = Dialect::Responses;
    ResponseObject {
        id: &s.id,
        object: "response",
        created_at: s.created_at,
        status: s.status,
        background: false,
        error: s.error.as_ref(),
        incomplete_details: (s.status == "incomplete").then_some(Reason {
            reason: s.incomplete_reason,
        }),
        instructions: s.instructions,
        max_output_tokens: s.params.max_tokens,
        max_tool_calls: None,
        model: s.model,
        output: &s.output,
        parallel_tool_calls: s
            .options
            .and_then(|o| o.parallel_tool_calls)
            .unwrap_or(true),
        previous_response_id: s.previous_response_id,
        reasoning: NoReasoning {
            effort: None,
            summary: None,
        },
        service_tier: "default",
        store: s.store,
        temperature: s.params.temperature.unwrap_or(1.0),
        text: TextReport {
            format: format_json(d, s.options.and_then(|o| o.response_format.as_ref())),
            verbosity: "medium",
        },
        tool_choice: tool_choice_json(d, s.options.and_then(|o| o.tool_choice.as_ref())),
        tools: tools_json(d, s.options.map_or(&[][..], |o| &o.client_tools)),
        top_logprobs: 0,
        top_p: s.params.top_p.unwrap_or(1.0),
        truncation: "disabled",
        usage: (s.status != "in_progress").then(|| s.usage.unwrap_or_default().into()),
        user: s.options.and_then(|o| o.user.as_deref()),
        metadata: s.metadata,
        conversation: s.conversation.map(|id| IdOf { id }),
    }
}

/// What a response reports from its request.
struct Reported {
    model: String,
    previous_response_id: Option<String>,
    instructions: Option<String>,
    options: CallOptions,
    metadata: Map<String, Value>,
    store: bool,
    params: Params,
    created_at: i64,
    id: String,
    answer_id: String,
    conversation: Option<String>,
}

impl Reported {
    fn shape(
        &self,
        status: &'static str,
        output: Vec<Value>,
        usage: Option<TokenUsage>,
    ) -> Shape<'_> {
        Shape {
            id: self.id.clone(),
            model: &self.model,
            created_at: self.created_at,
            status,
            output,
            usage,
            previous_response_id: self.previous_response_id.as_deref(),
            instructions: self.instructions.as_deref(),
            params: self.params,
            options: Some(&self.options),
            metadata: &self.metadata,
            store: self.store,
            error: None,
            incomplete_reason: "interrupted",
            conversation: self.conversation.as_deref(),
        }
    }

    /// The facts of the finished response (serialize them with [`response_object`]).
    fn finished<'s>(&'s self, o: &'s TurnOutcome) -> Shape<'s> {
        let status = match o.chat.as_ref().map(|c| c.answer.status) {
            Some(MessageStatus::Incomplete) => "incomplete",
            _ if o.finish_reason.as_deref() == Some("max_tool_steps") => "incomplete",
            _ => "completed",
        };
        let output = match &o.refusal {
            Some(refusal) => vec![refusal_item(&self.answer_id, refusal)],
            None => {
                let mut items = output_items(
                    &self.answer_id,
                    "completed",
                    &o.steps,
                    &o.text,
                    &o.tool_calls,
                );
                cite(&mut items, &o.citations);
                items
            }
        };
        let mut shape = self.shape(status, output, o.usage);
        if o.finish_reason.as_deref() == Some("max_tool_steps") {
            shape.incomplete_reason = "max_tool_calls";
        }
        // Where the turn was stored: a continuation whose answer was continued elsewhere
        // meanwhile becomes a branch when stored, not the conversation it started in.
        if self.conversation.is_some()
            && let Some(chat) = &o.chat
        {
            shape.conversation = Some(&chat.conversation.id);
        }
        shape
    }
}

/// Create a response: `model` is an agent key; `input` a string, message array, messages
/// with structured content, or the caller's function calls and outputs;
/// `previous_response_id` or `conversation` continue a conversation; `version` pins a
/// published version; `tools` are the caller's function tools; `stream: true` answers with
/// Responses streaming events.
#[utoipa::path(post, path = "/v1/responses", tag = "openai", request_body = super::bodies::ResponseRequest,
    responses((status = 200, description = "A response object, or an event stream when `stream` is true"), (status = 400, body = OpenAiErrorEnvelope), (status = 404, body = OpenAiErrorEnvelope), (status = 502, body = OpenAiErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn create_response(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Result<JsonBody<Value>, ApiError>,
) -> OpenAiResult<HttpResponse> {
    let caller = principal(&req);
    let body = object_body(body)?;
    let mut ask = parse(&body)?;
    let target = if ask.model.contains('/') {
        // `provider/model`, as `/v1/models` lists it for callers allowed to call models
        // directly: a stateless turn (conversations belong to agents), logged as a run.
        if let Memory::Conversation {
            conversation_id: Some(_),
            ..
        } = &ask.request.memory
        {
            let param = if ask.previous_response_id.is_some() {
                "previous_response_id"
            } else {
                "conversation"
            };
            return Err(OpenAiError::invalid(
                param,
                format!(
                    "'{}' is a model, not an agent: its responses are not stored, so they \
                     cannot be continued. Call an agent to keep a conversation.",
                    ask.model
                ),
                "invalid_value",
            ));
        }
        ask.request.memory = Memory::Run {
            run_id: None,
            log_meta: ask.metadata.clone(),
            log_now: false,
        };
        ask.store = false;
        TurnTarget::AgentOrModel {
            name: ask.model.clone(),
            version: ask.version,
        }
    } else {
        TurnTarget::ServedAgent {
            key: ask.model.clone(),
            version: ask.version,
        }
    };
    let facts = Asked {
        model: ask.model,
        previous_response_id: ask.previous_response_id,
        instructions: ask.request.instructions.clone(),
        options: ask.request.options.clone(),
        metadata: ask.metadata,
        store: ask.store,
    };
    let stream = ask.request.stream;
    let runtime = state.runtime.clone();
    // Boxed: its future is large and done with before the answer is awaited.
    let starting: sse::Starting = Box::pin(async move {
        runtime
            .start_turn(caller.as_ref(), target, ask.request)
            .await
    });
    let refuse = {
        let (model, previous) = (facts.model.clone(), facts.previous_response_id.clone());
        move |e| start_error(e, &model, previous.as_deref())
    };
    if stream {
        let make = move |turn: &Turn| EventEncoder {
            reported: facts.reported(turn.start()),
            seq: 0,
            next_index: 0,
            message: None,
            calls: Vec::new(),
        };
        return sse::stream_when_started(starting, make, refuse, late_error).await;
    }
    let turn = starting.await.map_err(refuse)?;
    let reported = facts.reported(turn.start());
    let outcome = turn.finish().await.map_err(OpenAiError::from)?;
    Ok(HttpResponse::Ok().json(response_object(&reported.finished(&outcome))))
}

/// What a response reports from its request, before the turn starts.
struct Asked {
    model: String,
    previous_response_id: Option<String>,
    instructions: Option<String>,
    options: CallOptions,
    metadata: Map<String, Value>,
    store: bool,
}

impl Asked {
    /// The response's facts once its turn started.
    fn reported(self, start: &TurnStart) -> Reported {
        Reported {
            params: start.params,
            created_at: unix(start.created_at),
            id: response_id(match &start.run_id {
                Some(run) => run,
                None => &start.answer_id,
            }),
            answer_id: start.answer_id.clone(),
            conversation: start
                .conversation
                .as_ref()
                .filter(|_| self.store)
                .map(|c| c.id.clone()),
            model: self.model,
            previous_response_id: self.previous_response_id,
            instructions: self.instructions,
            options: self.options,
            metadata: self.metadata,
            store: self.store,
        }
    }
}

/// A turn that could not start, as the OpenAI error for `model`.
fn start_error(e: agentry_domain::Error, model: &str, previous: Option<&str>) -> OpenAiError {
    match e {
        agentry_domain::Error::NotFound {
            entity: "conversation",
            ..
        } => match previous {
            Some(p) => previous_not_found(p),
            None => OpenAiError::new(
                StatusCode::NOT_FOUND,
                "Conversation not found.",
                Some("conversation"),
                Some("conversation_not_found"),
            ),
        },
        e => turn_error(e, model),
    }
}

/// A streamed response whose turn failed to start after the headers went out: OpenAI's
/// `error` event.
fn late_error(e: agentry_domain::Error) -> Vec<Bytes> {
    let err = OpenAiError::from(e);
    vec![named_frame(
        "error",
        &json!({"type": "error", "code": err.code, "message": err.message, "param": err.param, "sequence_number": 0}),
    )]
}

/// The message item being streamed: its id, output index and text so far.
struct OpenMessage {
    id: String,
    index: usize,
    text: String,
}

/// Responses streaming events of a turn.
struct EventEncoder {
    reported: Reported,
    seq: u64,
    next_index: usize,
    message: Option<OpenMessage>,
    /// Calls in flight: the call, its output index.
    calls: Vec<(ToolCall, usize)>,
}

impl EventEncoder {
    fn event(&mut self, out: &mut VecDeque<Bytes>, kind: &str, mut body: Value) {
        if let Value::Object(o) = &mut body {
            o.insert("type".to_owned(), kind.into());
            o.insert("sequence_number".to_owned(), self.seq.into());
        }
        self.seq += 1;
        out.push_back(named_frame(kind, &body));
    }

    fn index(&mut self) -> usize {
        let i = self.next_index;
        self.next_index += 1;
        i
    }

    fn open_message(&mut self, out: &mut VecDeque<Bytes>) {
        if self.message.is_some() {
            return;
        }
        // The first message item carries the answer's id; later ones (after tool calls) get
        // their own.
        let id = if self.next_index == 0 {
            self.reported.answer_id.clone()
        } else {
            format!("{}_{}", self.reported.answer_id, self.next_index)
        };
        let index = self.index();
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": message_item(&id, "in_progress", None)}),
        );
        self.event(out, "response.content_part.added", json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text("")}));
        self.message = Some(OpenMessage {
            id,
            index,
            text: String::new(),
        });
    }

    /// A refusal message item, streamed as OpenAI streams one (`response.refusal.delta`,
    /// `response.refusal.done`).
    fn refusal(&mut self, out: &mut VecDeque<Bytes>, refusal: &str) {
        let id = if self.next_index == 0 {
            self.reported.answer_id.clone()
        } else {
            format!("{}_{}", self.reported.answer_id, self.next_index)
        };
        let index = self.index();
        let mut added = refusal_item(&id, "");
        added["status"] = json!("in_progress");
        added["content"] = json!([]);
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
        );
        self.event(out, "response.content_part.added", json!({"item_id": id, "output_index": index, "content_index": 0, "part": {"type": "refusal", "refusal": ""}}));
        self.event(
            out,
            "response.refusal.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0, "delta": refusal}),
        );
        self.event(
            out,
            "response.refusal.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "refusal": refusal}),
        );
        self.event(out, "response.content_part.done", json!({"item_id": id, "output_index": index, "content_index": 0, "part": {"type": "refusal", "refusal": refusal}}));
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": refusal_item(&id, refusal)}),
        );
    }

    fn close_message(&mut self, out: &mut VecDeque<Bytes>) {
        let Some(m) = self.message.take() else {
            return;
        };
        self.event(out, "response.output_text.done", json!({"item_id": m.id, "output_index": m.index, "content_index": 0, "text": m.text, "logprobs": []}));
        self.event(out, "response.content_part.done", json!({"item_id": m.id, "output_index": m.index, "content_index": 0, "part": output_text(&m.text)}));
        self.event(out, "response.output_item.done", json!({"output_index": m.index, "item": message_item(&m.id, "completed", Some(&m.text))}));
    }
}

/// An event carrying the response object (`response.created`, `…completed`, …), numbered
/// from `seq`.
fn response_event(seq: &mut u64, out: &mut VecDeque<Bytes>, kind: &str, response: &Shape<'_>) {
    #[derive(Serialize)]
    struct ResponseEvent<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        sequence_number: u64,
        response: ResponseObject<'a>,
    }
    let event = ResponseEvent {
        kind,
        sequence_number: *seq,
        response: response_object(response),
    };
    *seq += 1;
    out.push_back(named_frame(kind, &event));
}

impl Encoder for EventEncoder {
    fn encode(&mut self, event: TurnEvent, out: &mut VecDeque<Bytes>) {
        match event {
            TurnEvent::Started => {
                let pending = self.reported.shape("in_progress", Vec::new(), None);
                response_event(&mut self.seq, out, "response.created", &pending);
                response_event(&mut self.seq, out, "response.in_progress", &pending);
            }
            TurnEvent::TextDelta(delta) => {
                self.open_message(out);
                let Some(m) = self.message.as_mut() else {
                    return;
                };
                m.text.push_str(&delta);
                let (id, index) = (m.id.clone(), m.index);
                self.event(out, "response.output_text.delta", json!({"item_id": id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": []}));
            }
            TurnEvent::ToolCall { call, server } => {
                self.close_message(out);
                let index = self.index();
                if server {
                    self.event(out, "response.output_item.added", json!({"output_index": index, "item": server_call_item(&call, None, false, "in_progress")}));
                    self.calls.push((call, index));
                } else {
                    let item_id = format!("fc_{}", call.id);
                    let mut added = function_call_item(&call, "in_progress");
                    added["arguments"] = json!("");
                    self.event(
                        out,
                        "response.output_item.added",
                        json!({"output_index": index, "item": added}),
                    );
                    self.event(
                        out,
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": index, "delta": call.arguments}),
                    );
                    self.event(out, "response.function_call_arguments.done", json!({"item_id": item_id, "output_index": index, "name": call.name, "arguments": call.arguments}));
                    self.event(out, "response.output_item.done", json!({"output_index": index, "item": function_call_item(&call, "completed")}));
                }
            }
            TurnEvent::ToolResult {
                call_id,
                output,
                is_error,
                ..
            } => {
                if let Some(pos) = self.calls.iter().position(|(c, _)| c.id == call_id) {
                    let (call, index) = self.calls.remove(pos);
                    self.event(out, "response.output_item.done", json!({"output_index": index, "item": server_call_item(&call, Some(&output), is_error, "completed")}));
                }
            }
            TurnEvent::Finished(outcome) => {
                if outcome.refusal.is_none()
                    && let Some((id, index)) =
                        self.message.as_ref().map(|m| (m.id.clone(), m.index))
                {
                    for (i, c) in outcome.citations.iter().enumerate() {
                        self.event(out, "response.output_text.annotation.added", json!({"item_id": id, "output_index": index, "content_index": 0, "annotation_index": i, "annotation": file_citation(c)}));
                    }
                }
                self.close_message(out);
                if let Some(refusal) = &outcome.refusal {
                    self.refusal(out, refusal);
                }
                let done = self.reported.finished(&outcome);
                response_event(&mut self.seq, out, "response.completed", &done);
            }
            TurnEvent::Failed(e) => {
                let err = OpenAiError::from(e);
                let text = self
                    .message
                    .as_ref()
                    .map(|m| m.text.clone())
                    .unwrap_or_default();
                let output = if text.is_empty() {
                    Vec::new()
                } else {
                    vec![message_item(
                        &self.reported.answer_id,
                        "incomplete",
                        Some(&text),
                    )]
                };
                let mut failed = self.reported.shape("failed", output, None);
                failed.error = Some(json!({"code": "server_error", "message": err.to_string()}));
                response_event(&mut self.seq, out, "response.failed", &failed);
            }
        }
    }
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

/// The turn a response id names: its conversation, the conversation's messages up to and
/// including the turn's answer (oldest first, at most `limit`), and its agent's key, if
/// `caller` may see it (an API key's allowlist; a key that may only invoke agents sees its own
/// conversations). Ids issued before ids were per turn name a conversation: its latest turn.
async fn stored(
    state: &AppState,
    caller: Option<&Principal>,
    id: &str,
    limit: u32,
) -> OpenAiResult<(
    agentry_domain::conversation::Conversation,
    Vec<Message>,
    String,
)> {
    let not_found = || response_not_found(id);
    let hidden = |e: agentry_domain::Error| match e {
        agentry_domain::Error::NotFound { .. } => not_found(),
        e => e.into(),
    };
    let answer = answer_of_response(id).ok_or_else(not_found)?;
    if let Some((c, agent, messages)) = state
        .runtime
        .get_answer(caller, &answer, limit)
        .await
        .map_err(hidden)?
    {
        return Ok((c, messages, agent.key.to_string()));
    }
    let conv = conv_of_response(id).ok_or_else(not_found)?;
    let (c, agent, messages) = state
        .runtime
        .get_conversation(caller, &conv, limit)
        .await
        .map_err(hidden)?;
    Ok((c, messages, agent.key.to_string()))
}

/// Get a stored response (the latest turn of its conversation).
#[utoipa::path(get, path = "/v1/responses/{id}", tag = "openai", params(("id" = String, Path)),
    responses((status = 200, description = "The response object"), (status = 404, body = OpenAiErrorEnvelope)))]
pub async fn get_response(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> OpenAiResult<HttpResponse> {
    let (c, messages, key) = stored(&state, principal(&req).as_ref(), &path, 200).await?;
    let answer = messages.iter().rev().find(|m| m.role == Role::Assistant);
    // The stored steps of the turn: the messages after its last user message.
    let input_at = messages.iter().rposition(|m| m.role == Role::User);
    let turn_start = input_at.map_or(0, |i| i + 1);
    // The turn it continued: the answer before its input.
    let previous = messages[..input_at.unwrap_or(0)]
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .map(|m| response_id(&m.id));
    let steps: Vec<PromptMessage> = messages[turn_start..]
        .iter()
        .filter(|m| answer.is_none_or(|a| a.id != m.id))
        .map(PromptMessage::from)
        .collect();
    let status = match answer.map(|a| a.status) {
        Some(MessageStatus::Incomplete) => "incomplete",
        _ => "completed",
    };
    let output = answer.map_or_else(Vec::new, |a| {
        // An answer an output guardrail blocked is read back as the refusal it was.
        if a.annotations.guardrails.iter().any(|t| {
            t.stage == agentry_domain::guardrail::Stage::Output
                && t.action == agentry_domain::guardrail::Action::Block
        }) {
            vec![refusal_item(&a.id, &a.content)]
        } else {
            let mut items = output_items(&a.id, "completed", &steps, &a.content, &a.tool_calls);
            cite(&mut items, &a.annotations.citations);
            items
        }
    });
    let shape = Shape {
        id: path.clone(),
        model: &key,
        created_at: unix(answer.map_or(c.created_at, |a| a.created_at)),
        status,
        output,
        usage: answer.and_then(|a| a.usage),
        previous_response_id: previous.as_deref(),
        instructions: None,
        params: Params::default(),
        options: None,
        metadata: &c.context,
        store: true,
        error: None,
        incomplete_reason: "interrupted",
        conversation: Some(&c.id),
    };
    Ok(HttpResponse::Ok().json(response_object(&shape)))
}

/// Delete a stored response: its whole conversation (every turn of it).
#[utoipa::path(delete, path = "/v1/responses/{id}", tag = "openai", params(("id" = String, Path)),
    responses((status = 200, description = "`{id, object: \"response.deleted\", deleted: true}`"), (status = 404, body = OpenAiErrorEnvelope)))]
pub async fn delete_response(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> OpenAiResult<HttpResponse> {
    let caller = principal(&req);
    // The response's conversation goes with it: a turn cut out of the middle would leave the
    // later turns answering a question nobody asked.
    let (conv, _, _) = stored(&state, caller.as_ref(), &path, 1).await?;
    if !state
        .runtime
        .delete_conversation(caller.as_ref(), &conv.id)
        .await?
    {
        return Err(response_not_found(&path));
    }
    Ok(HttpResponse::Ok()
        .json(json!({"id": path.as_str(), "object": "response.deleted", "deleted": true})))
}

/// The order of a list.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum SortOrder {
    /// Oldest first.
    #[schema(rename = "asc")]
    Asc,
    /// Newest first (the default).
    #[schema(rename = "desc")]
    Desc,
}

/// The most messages of one conversation that `input_items` pages through (documented in
/// docs/openai-compatibility.md).
const INPUT_ITEMS_MAX_MESSAGES: u32 = 10_000;

/// The input items of a stored response's conversation (every non-assistant message), newest
/// first unless `order=asc`, paged by item id with `after` and `before` as OpenAI's lists are.
#[utoipa::path(get, path = "/v1/responses/{id}/input_items", tag = "openai", params(("id" = String, Path),
        ("order" = Option<SortOrder>, Query, description = "`desc` (default) or `asc`"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20"),
        ("after" = Option<String>, Query, description = "An item id: the items after it in this order"),
        ("before" = Option<String>, Query, description = "An item id: the items before it in this order")),
    responses((status = 200, description = "A list of input items"), (status = 400, body = OpenAiErrorEnvelope), (status = 404, body = OpenAiErrorEnvelope)))]
pub async fn list_input_items(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<Map<String, Value>>,
) -> OpenAiResult<HttpResponse> {
    let text = |name: &str| {
        q.get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let limit = match text("limit") {
        None => 20,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| {
                OpenAiError::invalid(
                    "limit",
                    "limit must be an integer from 1 to 100",
                    "invalid_value",
                )
            })?,
    };
    let ascending = match text("order") {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "order",
                "order must be 'asc' or 'desc'",
                "invalid_value",
            ));
        }
    };
    let (_, messages, _) = stored(
        &state,
        principal(&req).as_ref(),
        &path,
        INPUT_ITEMS_MAX_MESSAGES,
    )
    .await?;
    let mut inputs: Vec<&Message> = messages
        .iter()
        .filter(|m| m.role != Role::Assistant)
        .collect();
    if !ascending {
        inputs.reverse();
    }
    let position = |param: &str, id: &str| {
        inputs.iter().position(|m| m.id == id).ok_or_else(|| {
            OpenAiError::invalid(
                param,
                format!("No input item with id '{id}' in this response."),
                "invalid_value",
            )
        })
    };
    let end = match text("before") {
        Some(id) => position("before", id)?,
        None => inputs.len(),
    };
    let start = match text("after") {
        Some(id) => position("after", id)? + 1,
        None => 0,
    };
    let window = inputs.get(start..end).unwrap_or_default();
    let has_more = window.len() > limit;
    // `before` alone asks for the page just before that item: the last `limit` of the window.
    let skip = if text("before").is_some() && text("after").is_none() {
        window.len().saturating_sub(limit)
    } else {
        0
    };
    let items: Vec<Value> = window
        .iter()
        .skip(skip)
        .take(limit)
        .map(|m| match &m.tool_call_id {
            Some(call_id) => json!({"id": m.id, "type": "function_call_output", "call_id": call_id, "output": m.content, "status": "completed"}),
            None => json!({"id": m.id, "type": "message", "role": m.role.as_str(), "status": "completed", "content": [{"type": "input_text", "text": m.content}]}),
        })
        .collect();
    let first = items.first().and_then(|i| i.get("id")).cloned();
    let last = items.last().and_then(|i| i.get("id")).cloned();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": has_more})))
}
