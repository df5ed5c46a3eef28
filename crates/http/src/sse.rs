//! Server-Sent Events. A task drives the upstream stream and writes frames into a channel
//! that is the response body, so each turn is recorded in plain sequential code. [`pump`] is
//! shared by every streaming endpoint (chat, Responses, Chat Completions); each frames the
//! events its own way.
//!
//! For chat (`/chat` with `stream: true`, `/stream`):
//! - `start`, then one `token` per delta, then `end` with the full `response`, usage and timing
//!   (written after the turn is stored), or `error`;
//! - a `: keep-alive` comment every 15 seconds while the upstream is silent;
//! - when the client goes away, the upstream stream is dropped (cancelling the call) and the
//!   text produced so far is stored as an `incomplete` answer; nothing is stored if no text
//!   was produced;
//! - when the upstream breaks mid-stream, the partial text is stored as `incomplete` and an
//!   `error` event ends the stream.

use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::web::Bytes;
use agentry_domain::agent::AgentRef;
use agentry_domain::conversation::MessageStatus;
use agentry_domain::llm::{CompletionStream, ProviderError, StreamEvent, TokenUsage};
use agentry_domain::services::{ChatRequest, PreparedTurn, Runtime};
use futures_core::Stream;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::error::{ApiError, ApiResult, current_request_id};
use crate::routes::chat::ChatReply;

/// Interval of keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One SSE `data:` frame.
pub fn frame(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// One SSE frame with an `event:` name.
pub fn named_frame(event: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {value}\n\n"))
}

/// How an upstream stream ended.
pub enum Ending {
    /// It finished.
    Done {
        /// Tokens spent, when reported.
        usage: Option<TokenUsage>,
        /// Why it ended.
        finish_reason: Option<String>,
    },
    /// It failed after it started.
    Failed(ProviderError),
    /// The client went away; the upstream call was dropped (cancelled).
    Gone,
}

/// Frames queued between a streaming task and its response body before the task waits.
const QUEUED_FRAMES: usize = 32;

/// The task's side of an SSE body: frames go to the client through a small bounded queue, and
/// [`SseSender::gone`] tells when the client has left. Lighter than a `tokio::sync::mpsc`
/// channel (which reserves ~1.5 KB up front): every open stream holds one.
pub struct SseSender {
    frames: futures_channel::mpsc::Sender<Bytes>,
    /// Never sent on; it completes when the body (holding the other end) is dropped.
    gone: Option<oneshot::Receiver<Infallible>>,
}

impl SseSender {
    /// Queues a frame, waiting while the queue is full. False once the client has gone.
    pub async fn send(&mut self, frame: Bytes) -> bool {
        if poll_fn(|cx| self.frames.poll_ready(cx)).await.is_err() {
            return false;
        }
        self.frames.start_send(frame).is_ok()
    }

    /// Completes when the client has gone (at once if it already has).
    pub async fn gone(&mut self) {
        if let Some(rx) = self.gone.as_mut() {
            let _ = rx.await;
            self.gone = None;
        }
    }
}

/// The body's side: the frames, and the other end of [`SseSender::gone`].
pub struct SseBody {
    frames: futures_channel::mpsc::Receiver<Bytes>,
    _alive: oneshot::Sender<Infallible>,
}

impl Stream for SseBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.frames.poll_next_unpin(cx).map(|frame| frame.map(Ok))
    }
}

/// A channel for an SSE body.
pub fn channel() -> (SseSender, SseBody) {
    let (tx, rx) = futures_channel::mpsc::channel(QUEUED_FRAMES);
    let (alive, gone) = oneshot::channel();
    (
        SseSender {
            frames: tx,
            gone: Some(gone),
        },
        SseBody {
            frames: rx,
            _alive: alive,
        },
    )
}

/// The response body fed by the channel, with the SSE headers.
pub fn sse_response(body: SseBody) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

enum Next {
    Gone,
    KeepAlive,
    Event(Option<Result<StreamEvent, ProviderError>>),
}

/// Forwards the upstream's deltas to the client as frames made by `on_delta`, with
/// keep-alives, until the upstream ends or the client leaves. Returns the text produced and
/// how it ended; the upstream stream is dropped (cancelled) before this returns.
pub async fn pump(
    mut upstream: CompletionStream,
    tx: &mut SseSender,
    mut on_delta: impl FnMut(&str) -> Bytes,
) -> (String, Ending) {
    let mut text = String::new();
    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        let next = tokio::select! {
            () = tx.gone() => Next::Gone,
            _ = keep_alive.tick() => Next::KeepAlive,
            ev = upstream.next() => Next::Event(ev),
        };
        let sent = match next {
            Next::Gone => return (text, Ending::Gone),
            Next::KeepAlive => tx.send(Bytes::from_static(b": keep-alive\n\n")).await,
            // Tool calls reach clients through the domain turn (issue 12); this pump only
            // carries text.
            Next::Event(Some(Ok(StreamEvent::ToolCall(_)))) => true,
            Next::Event(Some(Ok(StreamEvent::Delta(delta)))) => {
                text.push_str(&delta);
                tx.send(on_delta(&delta)).await
            }
            Next::Event(Some(Ok(StreamEvent::Done {
                usage,
                finish_reason,
                ..
            }))) => {
                return (
                    text,
                    Ending::Done {
                        usage,
                        finish_reason,
                    },
                );
            }
            Next::Event(None) => {
                return (
                    text,
                    Ending::Done {
                        usage: None,
                        finish_reason: None,
                    },
                );
            }
            Next::Event(Some(Err(error))) => return (text, Ending::Failed(error)),
        };
        if !sent {
            return (text, Ending::Gone);
        }
    }
}

/// Stores the text produced before a cut as an `incomplete` answer (nothing when there is none).
/// Boxed, as is every storage call made by a streaming task: such a task lives as long as its
/// stream, and a storage future is far larger than the task's own state, so it is allocated
/// only when it runs instead of being reserved in every open stream.
pub fn record_cut(turn: PreparedTurn, text: String) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        if text.is_empty() {
            return;
        }
        if let Err(e) = turn
            .record(text, None, None, MessageStatus::Incomplete)
            .await
        {
            tracing::error!(error = %e, "could not store a cut answer");
        }
    })
}

/// Starts the turn and answers with the event stream. Failures before the stream starts
/// (unknown agent, provider refusing the call) are ordinary JSON errors.
///
/// # Errors
/// As [`Runtime::prepare_turn`] and [`PreparedTurn::stream`].
pub async fn chat_stream(
    runtime: &Runtime,
    agent: &AgentRef,
    request: ChatRequest,
) -> ApiResult<HttpResponse> {
    // Boxed: its future is large and is done with before the upstream answers, so it is not
    // kept in the request's state while the first token is awaited.
    let mut turn = Box::pin(runtime.prepare_turn(agent, request)).await?;
    let upstream = turn.stream().await?;
    let (tx, rx) = channel();
    let request_id = current_request_id();
    tokio::spawn(drive_chat(turn, upstream, tx, request_id).in_current_span());
    Ok(sse_response(rx))
}

async fn drive_chat(
    turn: PreparedTurn,
    upstream: CompletionStream,
    mut tx: SseSender,
    request_id: Option<String>,
) {
    // The frame is made before the first await, so the event's JSON is not kept in the task.
    if !tx.send(start_frame(&turn)).await {
        return;
    }
    let (text, ending) = pump(upstream, &mut tx, token_frame).await;
    match ending {
        Ending::Done {
            usage,
            finish_reason,
        } => {
            // Boxed: see `record_cut`.
            let last =
                match Box::pin(turn.record(text, usage, finish_reason, MessageStatus::Complete))
                    .await
                {
                    Ok(t) => end_event(&ChatReply::from(&t)),
                    Err(e) => error_event(&ApiError::from(e), request_id),
                };
            let _ = tx.send(frame(&last)).await;
        }
        Ending::Gone => {
            tracing::info!(
                chars = text.len(),
                "client left mid-stream; upstream cancelled"
            );
            record_cut(turn, text).await;
        }
        Ending::Failed(error) => {
            let err = ApiError::from(turn.stream_error(error));
            record_cut(turn, text).await;
            let _ = tx.send(frame(&error_event(&err, request_id))).await;
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

fn start_frame(turn: &PreparedTurn) -> Bytes {
    let key = &turn.conversation.session_key;
    frame(
        &json!({"type": "start", "session_id": key, "conversation_id": key, "message_id": turn.answer_id, "agent_id": turn.agent.id.to_string()}),
    )
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
