//! Server-Sent Events: a domain [`Turn`] encoded as frames. The response body *is* the turn:
//! actix-web polls it, each [`TurnEvent`] becomes frames through the surface's [`Encoder`]
//! (agent chat here, Responses and Chat Completions in `openai/`), and a `: keep-alive`
//! comment goes out every 15 seconds while the turn is silent. When the client leaves, actix
//! drops the body, hence the turn, which cancels the model call and records what was produced
//! (the domain decides what; see `agentry_domain::services` `record.rs`). No task is spawned
//! per stream.
//!
//! Agent chat (`/chat` with `stream: true`, `/stream`): `start`, then `token` per delta,
//! `tool_call` and `tool_result` for the agent's tool loop, then `end` with the full
//! `response`, usage and timing (after the turn is stored), or `error`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::web::Bytes;
use agentry_domain::services::{Turn, TurnEvent, TurnStart};
use futures_core::Stream;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::error::{ApiError, current_request_id};
use crate::routes::chat::ChatReply;

/// Interval of keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One SSE `data:` frame.
pub fn frame(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// One SSE frame with an `event:` name, serialized straight from `value` (a
/// `serde_json::Value` or a type with serde's derive, which needs no `Value` in between).
pub fn named_frame(event: &str, value: &impl serde::Serialize) -> Bytes {
    let mut buf = Vec::with_capacity(1024);
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(event.as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    match serde_json::to_writer(&mut buf, value) {
        Ok(()) => {
            buf.extend_from_slice(b"\n\n");
            Bytes::from(buf)
        }
        Err(error) => {
            // Not reachable with the types sent (no map has non-string keys); a comment
            // line, which clients skip, rather than a half-written event.
            tracing::error!(%error, event, "an event could not be serialized");
            Bytes::from_static(b": an event could not be serialized\n\n")
        }
    }
}

/// Encodes one surface's stream: the frames of each turn event.
pub trait Encoder: Send + Unpin + 'static {
    /// Appends the frames of `event` to `out`.
    fn encode(&mut self, event: TurnEvent, out: &mut VecDeque<Bytes>);
}

/// A turn as an SSE body.
pub struct TurnBody<E> {
    turn: Turn,
    encoder: E,
    queue: VecDeque<Bytes>,
    keep_alive: tokio::time::Interval,
    ended: bool,
}

impl<E: Encoder> TurnBody<E> {
    /// The body of `turn`, encoded by `encoder`.
    pub fn new(turn: Turn, encoder: E) -> Self {
        let keep_alive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        Self {
            turn,
            encoder,
            queue: VecDeque::new(),
            keep_alive,
            ended: false,
        }
    }
}

impl<E: Encoder> Stream for TurnBody<E> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(frame) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match this.turn.poll_next_unpin(cx) {
                Poll::Ready(Some(event)) => {
                    this.ended = matches!(event, TurnEvent::Finished(_) | TurnEvent::Failed(_));
                    this.encoder.encode(event, &mut this.queue);
                    this.keep_alive.reset();
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => {
                    return match this.keep_alive.poll_tick(cx) {
                        Poll::Ready(_) => {
                            Poll::Ready(Some(Ok(Bytes::from_static(b": keep-alive\n\n"))))
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

/// The SSE response of a turn.
pub fn sse_response<E: Encoder>(turn: Turn, encoder: E) -> HttpResponse {
    sse_headers().streaming(TurnBody::new(turn, encoder))
}

fn sse_headers() -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"));
    response
}

/// How long a streamed turn may take to start (its model to answer) before the SSE headers
/// go out anyway: a proxy with a read timeout then sees keep-alive comments instead of silence.
pub const HEADERS_WITHIN: Duration = Duration::from_secs(2);

/// A turn being started ([`agentry_domain::services::Runtime::start_turn`], owned).
pub type Starting = Pin<Box<dyn Future<Output = agentry_domain::Result<Turn>> + Send>>;

/// The answer to a streamed request whose turn is `starting`. When it starts within
/// [`HEADERS_WITHIN`], as [`sse_response`] (made by `make`), and a failure to start is the HTTP
/// error `refuse` gives, as for a request that is not streamed. When it takes longer (a slow or
/// hung upstream), the SSE headers go out at once and a keep-alive comment every
/// [`KEEP_ALIVE`] while it starts; then its events as usual, or `late`'s frames when it fails.
///
/// # Errors
/// `refuse`'s error, when the turn fails to start within [`HEADERS_WITHIN`].
pub async fn stream_when_started<E, M, X>(
    mut starting: Starting,
    make: M,
    refuse: impl FnOnce(agentry_domain::Error) -> X,
    late: fn(agentry_domain::Error) -> Vec<Bytes>,
) -> Result<HttpResponse, X>
where
    E: Encoder,
    M: FnOnce(&Turn) -> E + Send + Unpin + 'static,
{
    match tokio::time::timeout(HEADERS_WITHIN, &mut starting).await {
        Ok(Ok(turn)) => {
            let encoder = make(&turn);
            Ok(sse_response(turn, encoder))
        }
        Ok(Err(e)) => Err(refuse(e)),
        Err(_) => Ok(sse_headers().streaming(LateStart {
            starting: Some(starting),
            make: Some(make),
            late,
            waiting: Some(Bytes::from_static(b": waiting for the model\n\n")),
            keep_alive: Some(tokio::time::interval_at(
                tokio::time::Instant::now() + KEEP_ALIVE,
                KEEP_ALIVE,
            )),
            running: None,
            failed: VecDeque::new(),
            request_id: current_request_id(),
        })),
    }
}

/// A stream whose turn is still starting: keep-alive comments, then the turn's body.
struct LateStart<E, M> {
    starting: Option<Starting>,
    make: Option<M>,
    late: fn(agentry_domain::Error) -> Vec<Bytes>,
    waiting: Option<Bytes>,
    /// Until the turn starts; then the turn's body keeps its own.
    keep_alive: Option<tokio::time::Interval>,
    running: Option<TurnBody<E>>,
    failed: VecDeque<Bytes>,
    /// The request's id: the body is polled outside the request's scope, and the encoder
    /// and the error frames carry it.
    request_id: Option<String>,
}

impl<E, M> LateStart<E, M> {
    /// Runs `f` as if inside the request (its id readable by `current_request_id`).
    fn in_request<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.request_id {
            Some(id) => crate::error::REQUEST_ID.sync_scope(id.clone(), f),
            None => f(),
        }
    }
}

impl<E: Encoder, M: FnOnce(&Turn) -> E + Unpin> Stream for LateStart<E, M> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(body) = this.running.as_mut() {
            return Pin::new(body).poll_next(cx);
        }
        if let Some(first) = this.waiting.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if let Some(frame) = this.failed.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(starting) = this.starting.as_mut() else {
            return Poll::Ready(None);
        };
        match starting.as_mut().poll(cx) {
            Poll::Ready(Ok(turn)) => {
                this.starting = None;
                let Some(make) = this.make.take() else {
                    return Poll::Ready(None);
                };
                let encoder = this.in_request(|| make(&turn));
                // What waiting needed goes now: the stream may stay open for minutes.
                this.keep_alive = None;
                this.request_id = None;
                let body = this.running.insert(TurnBody::new(turn, encoder));
                Pin::new(body).poll_next(cx)
            }
            Poll::Ready(Err(e)) => {
                this.starting = None;
                let frames = this.in_request(|| (this.late)(e));
                this.failed.extend(frames);
                Poll::Ready(this.failed.pop_front().map(Ok))
            }
            Poll::Pending => match this.keep_alive.as_mut().map(|k| k.poll_tick(cx)) {
                Some(Poll::Ready(_)) => {
                    Poll::Ready(Some(Ok(Bytes::from_static(b": keep-alive\n\n"))))
                }
                _ => Poll::Pending,
            },
        }
    }
}

/// The agent chat stream's encoder.
pub struct ChatEncoder {
    start: Option<Bytes>,
    request_id: Option<String>,
}

impl ChatEncoder {
    /// An encoder for `turn` (its `start` frame is made now, from what the turn knows).
    pub fn new(start: &TurnStart) -> Self {
        let key = start
            .conversation
            .as_ref()
            .map(|c| c.session_key.as_str())
            .unwrap_or_default();
        let agent_id = start.agent.as_ref().map(|a| a.id.to_string());
        Self {
            start: Some(frame(
                &json!({"type": "start", "session_id": key, "conversation_id": key, "message_id": start.answer_id, "agent_id": agent_id}),
            )),
            request_id: current_request_id(),
        }
    }
}

impl Encoder for ChatEncoder {
    fn encode(&mut self, event: TurnEvent, out: &mut VecDeque<Bytes>) {
        match event {
            TurnEvent::Started => out.extend(self.start.take()),
            TurnEvent::TextDelta(delta) => out.push_back(token_frame(&delta)),
            TurnEvent::ToolCall { call, server } => out.push_back(frame(&json!({
                "type": "tool_call", "id": call.id, "name": call.name,
                "arguments": call.arguments, "server": server,
            }))),
            TurnEvent::ToolResult {
                call_id,
                name,
                output,
                is_error,
            } => out.push_back(frame(&json!({
                "type": "tool_result", "tool_call_id": call_id, "name": name,
                "output": output, "is_error": is_error,
            }))),
            TurnEvent::Finished(outcome) => {
                if let Some(refusal) = &outcome.refusal {
                    out.push_back(frame(&json!({"type": "refusal", "content": refusal})));
                }
                let last = match outcome.chat.as_ref() {
                    Some(chat) => end_event(&ChatReply::new(chat, &outcome)),
                    None => error_event(
                        &ApiError::from(agentry_domain::Error::Internal(
                            "a chat turn finished without a conversation".to_owned(),
                        )),
                        self.request_id.clone(),
                    ),
                };
                out.push_back(frame(&last));
            }
            TurnEvent::Failed(e) => {
                out.push_back(frame(&error_event(
                    &ApiError::from(e),
                    self.request_id.clone(),
                )));
            }
        }
    }
}

/// `data: {"type":"token","content":…}`, written directly (one per streamed delta; no JSON
/// value is built for it).
fn token_frame(delta: &str) -> Bytes {
    let mut out = Vec::with_capacity(delta.len() + 48);
    out.extend_from_slice(br#"data: {"type":"token","content":"#);
    // Serialising a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, delta);
    out.extend_from_slice(b"}\n\n");
    Bytes::from(out)
}

/// The agent chat stream's frames for a turn that failed to start after the headers went out.
pub fn chat_late_error(e: agentry_domain::Error) -> Vec<Bytes> {
    vec![frame(&error_event(
        &ApiError::from(e),
        current_request_id(),
    ))]
}

fn error_event(err: &ApiError, request_id: Option<String>) -> Value {
    json!({"type": "error", "error": {"code": err.code(), "message": err.message(), "details": err.details(), "request_id": request_id}})
}

fn end_event(reply: &ChatReply) -> Value {
    json!({
        "type": "end",
        "message_id": reply.id,
        "response": reply.response,
        "session_id": reply.session_id,
        "conversation_id": reply.conversation_id,
        "model": reply.model,
        "usage": reply.usage,
        "tokens_used": reply.tokens_used,
        "response_time_ms": reply.response_time_ms,
        "finish_reason": reply.finish_reason,
        "tool_calls": reply.tool_calls,
        "metadata": reply.metadata,
        "timestamp": reply.timestamp,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn token_frames_are_json_events() {
        for delta in ["hello ", "a \"quoted\"\nline\\", "é ✓", ""] {
            let bytes = token_frame(delta);
            let text = std::str::from_utf8(&bytes).unwrap();
            let body = text
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\n\n")
                .unwrap();
            let event: Value = serde_json::from_str(body).unwrap();
            assert_eq!(event, json!({"type": "token", "content": delta}));
        }
    }
}
