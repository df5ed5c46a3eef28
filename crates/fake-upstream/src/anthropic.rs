//! Anthropic's Messages wire format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::text::{last_user_text, prompt_words};
use crate::wire::{Answer, Asked, Reply, Wire, fragments, read_u32, tool_call_tokens};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Anthropic's `POST /v1/messages`.
pub(crate) struct Anthropic;

impl Wire for Anthropic {
    fn parse(body: &Value) -> Result<Asked, String> {
        let model = body.get("model").and_then(Value::as_str);
        let messages = body.get("messages").and_then(Value::as_array);
        let (Some(model), Some(messages)) = (model, messages) else {
            return Err("model: Field required; messages: Field required".to_owned());
        };
        let Some(max_tokens) = read_u32(body, "max_tokens") else {
            return Err("max_tokens: Field required".to_owned());
        };
        if messages
            .iter()
            .any(|m| m.get("role").and_then(Value::as_str) == Some("system"))
        {
            return Err(
                "messages: Unexpected role \"system\". Use the top-level `system` parameter."
                    .to_owned(),
            );
        }
        Ok(Asked {
            model: model.to_owned(),
            stream: body.get("stream").and_then(Value::as_bool) == Some(true),
            include_usage: true,
            max_tokens: Some(max_tokens),
            prompt_tokens: prompt_words(messages, body.get("system")),
            last_user: last_user_text(messages),
        })
    }

    fn error(status: u16, message: Option<&str>) -> Reply {
        let (kind, default) = error_kind(status);
        let body = json!({
            "type": "error",
            "error": {"type": kind, "message": message.unwrap_or(default)},
        });
        Reply::json(status, &body)
    }

    fn answer(asked: &Asked, answer: &Answer, gap: Duration, cut: bool) -> Reply {
        let id = format!("msg_fake{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        if asked.stream {
            return Reply::sse(events(&id, asked, answer, cut), gap, cut);
        }
        let body = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": asked.model,
            "content": [{"type": "text", "text": answer.text()}],
            "stop_reason": stop_reason(answer),
            "stop_sequence": null,
            "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": answer.completion_tokens},
        });
        if cut {
            Reply::broken_json(&body)
        } else {
            Reply::json(200, &body)
        }
    }

    fn tool_calls(asked: &Asked, calls: &[(String, String)], gap: Duration) -> Reply {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let id = format!("msg_fake{n}");
        let call_id = |i: usize| format!("toolu_fake{n}_{i}");
        let output_tokens = tool_call_tokens(calls);
        if !asked.stream {
            let content: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, arguments))| {
                    let input: Value = serde_json::from_str(arguments).unwrap_or(json!({}));
                    json!({"type": "tool_use", "id": call_id(i), "name": name, "input": input})
                })
                .collect();
            let body = json!({
                "id": id, "type": "message", "role": "assistant", "model": asked.model,
                "content": content, "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": asked.prompt_tokens, "output_tokens": output_tokens},
            });
            return Reply::json(200, &body);
        }
        let start = json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": asked.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": asked.prompt_tokens, "output_tokens": 1},
        }});
        let mut out = vec![event("message_start", &start)];
        for (i, (name, arguments)) in calls.iter().enumerate() {
            let block = json!({"type": "content_block_start", "index": i, "content_block":
                {"type": "tool_use", "id": call_id(i), "name": name, "input": {}}});
            out.push(event("content_block_start", &block));
            // As Anthropic does: an empty fragment first, then pieces of the JSON.
            let pieces = std::iter::once("").chain(fragments(arguments, 3));
            for piece in pieces {
                let delta = json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": piece}});
                out.push(event("content_block_delta", &delta));
            }
            out.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": i}),
            ));
        }
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"output_tokens": output_tokens},
        });
        out.push(event("message_delta", &delta));
        out.push(event("message_stop", &json!({"type": "message_stop"})));
        Reply::sse(out, gap, false)
    }
}

fn error_kind(status: u16) -> (&'static str, &'static str) {
    match status {
        401 => ("authentication_error", "invalid x-api-key"),
        403 => ("permission_error", "Your API key does not have permission."),
        404 => ("not_found_error", "Not found."),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed size.",
        ),
        429 => (
            "rate_limit_error",
            "Number of requests has exceeded your rate limit.",
        ),
        529 => ("overloaded_error", "Overloaded"),
        400..=499 => ("invalid_request_error", "Invalid request."),
        _ => ("api_error", "Internal server error"),
    }
}

fn stop_reason(answer: &Answer) -> &'static str {
    if answer.truncated {
        "max_tokens"
    } else {
        "end_turn"
    }
}

fn events(id: &str, asked: &Asked, answer: &Answer, cut: bool) -> Vec<Bytes> {
    let start = json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": asked.model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": 1},
    }});
    let mut out = vec![
        event("message_start", &start),
        event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    let sent = if cut {
        answer.cut_len()
    } else {
        answer.pieces.len()
    };
    for piece in &answer.pieces[..sent] {
        let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}});
        out.push(event("content_block_delta", &delta));
    }
    if cut {
        return out;
    }
    out.push(event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    let delta = json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason(answer), "stop_sequence": null},
        "usage": {"output_tokens": answer.completion_tokens},
    });
    out.push(event("message_delta", &delta));
    out.push(event("message_stop", &json!({"type": "message_stop"})));
    out
}

fn event(name: &str, body: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {body}\n\n"))
}
