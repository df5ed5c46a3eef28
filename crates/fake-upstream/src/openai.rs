//! OpenAI's chat-completions wire format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::text::{last_user_text, prompt_words};
use crate::wire::{Answer, Asked, Reply, Wire, fragments, read_u32, tool_call_tokens, unix_now};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// OpenAI's `POST /v1/chat/completions`.
pub(crate) struct OpenAi;

impl Wire for OpenAi {
    fn parse(body: &Value) -> Result<Asked, String> {
        let model = body.get("model").and_then(Value::as_str);
        let messages = body.get("messages").and_then(Value::as_array);
        let (Some(model), Some(messages)) = (model, messages) else {
            return Err("'model' and 'messages' are required properties".to_owned());
        };
        Ok(Asked {
            model: model.to_owned(),
            stream: body.get("stream").and_then(Value::as_bool) == Some(true),
            include_usage: body
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true),
            max_tokens: read_u32(body, "max_tokens")
                .or_else(|| read_u32(body, "max_completion_tokens")),
            prompt_tokens: prompt_words(messages, None),
            last_user: last_user_text(messages),
        })
    }

    fn error(status: u16, message: Option<&str>) -> Reply {
        let (kind, code, default) = error_kind(status);
        let body = json!({"error": {
            "message": message.unwrap_or(default),
            "type": kind,
            "param": null,
            "code": code,
        }});
        Reply::json(status, &body)
    }

    fn answer(asked: &Asked, answer: &Answer, gap: Duration, cut: bool) -> Reply {
        let id = format!("chatcmpl-fake{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        if asked.stream {
            return Reply::sse(stream_chunks(&id, asked, answer, cut), gap, cut);
        }
        let body = completion(&id, asked, answer);
        if cut {
            Reply::broken_json(&body)
        } else {
            Reply::json(200, &body)
        }
    }

    fn tool_calls(asked: &Asked, calls: &[(String, String)], gap: Duration) -> Reply {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let id = format!("chatcmpl-fake{n}");
        let call_id = |i: usize| format!("call_fake{n}_{i}");
        let completion_tokens = tool_call_tokens(calls);
        let usage = json!({
            "prompt_tokens": asked.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": asked.prompt_tokens + completion_tokens,
        });
        if !asked.stream {
            let tool_calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, arguments))| {
                    json!({"id": call_id(i), "type": "function",
                           "function": {"name": name, "arguments": arguments}})
                })
                .collect();
            let body = json!({
                "id": id,
                "object": "chat.completion",
                "created": unix_now(),
                "model": asked.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": null, "refusal": null,
                                "tool_calls": tool_calls},
                    "logprobs": null,
                    "finish_reason": "tool_calls",
                }],
                "usage": usage,
                "system_fingerprint": null,
            });
            return Reply::json(200, &body);
        }
        let created = unix_now();
        let chunk = |delta: Value, finish: Value| {
            let mut body = json!({
                "id": id, "object": "chat.completion.chunk", "created": created,
                "model": asked.model, "system_fingerprint": null,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if asked.include_usage {
                body["usage"] = Value::Null;
            }
            data(&body)
        };
        let mut out = Vec::new();
        for (i, (name, arguments)) in calls.iter().enumerate() {
            // As OpenAI does: the id and name with empty arguments, then argument fragments.
            let first = json!({"index": i, "id": call_id(i), "type": "function",
                               "function": {"name": name, "arguments": ""}});
            let mut delta = json!({"tool_calls": [first]});
            if i == 0 {
                delta["role"] = json!("assistant");
                delta["content"] = Value::Null;
            }
            out.push(chunk(delta, Value::Null));
            for piece in fragments(arguments, 3) {
                let more = json!({"index": i, "function": {"arguments": piece}});
                out.push(chunk(json!({"tool_calls": [more]}), Value::Null));
            }
        }
        out.push(chunk(json!({}), json!("tool_calls")));
        if asked.include_usage {
            out.push(data(&json!({
                "id": id, "object": "chat.completion.chunk", "created": created,
                "model": asked.model, "choices": [], "usage": usage,
            })));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        Reply::sse(out, gap, false)
    }
}

fn error_kind(status: u16) -> (&'static str, Value, &'static str) {
    match status {
        401 => (
            "invalid_request_error",
            json!("invalid_api_key"),
            "Incorrect API key provided.",
        ),
        403 => (
            "permission_error",
            Value::Null,
            "You are not allowed to do this.",
        ),
        404 => (
            "invalid_request_error",
            json!("model_not_found"),
            "The model does not exist.",
        ),
        429 => (
            "requests",
            json!("rate_limit_exceeded"),
            "Rate limit reached. Please try again in 1s.",
        ),
        400..=499 => ("invalid_request_error", Value::Null, "Invalid request."),
        _ => (
            "server_error",
            Value::Null,
            "The server had an error while processing your request.",
        ),
    }
}

fn usage(answer: &Answer) -> Value {
    json!({
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    })
}

fn finish_reason(answer: &Answer) -> &'static str {
    if answer.truncated { "length" } else { "stop" }
}

fn completion(id: &str, asked: &Asked, answer: &Answer) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": asked.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer.text(), "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason(answer),
        }],
        "usage": usage(answer),
        "system_fingerprint": null,
    })
}

fn stream_chunks(id: &str, asked: &Asked, answer: &Answer, cut: bool) -> Vec<Bytes> {
    let created = unix_now();
    let chunk = |delta: Value, finish: Value| {
        let mut body = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": asked.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if asked.include_usage {
            body["usage"] = Value::Null;
        }
        data(&body)
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let sent = if cut {
        answer.cut_len()
    } else {
        answer.pieces.len()
    };
    for piece in &answer.pieces[..sent] {
        out.push(chunk(json!({"content": piece}), Value::Null));
    }
    if cut {
        return out;
    }
    out.push(chunk(json!({}), json!(finish_reason(answer))));
    if asked.include_usage {
        out.push(data(&json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": asked.model,
            "choices": [],
            "usage": usage(answer),
        })));
    }
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

fn data(body: &Value) -> Bytes {
    Bytes::from(format!("data: {body}\n\n"))
}

/// The `GET /v1/models` list.
pub(crate) fn models() -> Reply {
    let names = ["fake-echo", "fake-cut", "fake-slow-100", "fake-error-500"];
    let data: Vec<Value> = names
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "agentry-fake"}))
        .collect();
    Reply::json(200, &json!({"object": "list", "data": data}))
}
