//! Server-Sent Events for streamed chat. A task drives the upstream stream and writes events
//! into a channel that is the response body, so the turn is recorded in plain sequential code:
//!
//! - `start`, then one `token` per delta, then `end` with the full `response`, usage and timing
//!   (written after the turn is stored), or `error`;
//! - a `: keep-alive` comment every 15 seconds while the upstream is silent;
//! - when the client goes away, the upstream stream is dropped (cancelling the call) and the
//!   text produced so far is stored as an `incomplete` answer; nothing is stored if no text
//!   was produced;
//! - when the upstream breaks mid-stream, the partial text is stored as `incomplete` and an
//!   `error` event ends the stream.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::web::Bytes;
use agentry_domain::agent::AgentRef;
use agentry_domain::conversation::MessageStatus;
use agentry_domain::llm::{CompletionStream, StreamEvent, TokenUsage};
use agentry_domain::services::{ChatRequest, PreparedTurn, Runtime};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::error::{ApiError, ApiResult, current_request_id};
use crate::routes::chat::ChatReply;

/// Interval of keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One SSE `data:` frame.
pub fn frame(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
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
    let turn = runtime.prepare_turn(agent, request).await?;
    let upstream = turn.stream().await?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let request_id = current_request_id();
    tokio::spawn(drive(turn, upstream, tx, request_id).in_current_span());
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

enum Next {
    Gone,
    KeepAlive,
    Event(Option<Result<StreamEvent, agentry_domain::llm::ProviderError>>),
}

async fn drive(
    turn: PreparedTurn,
    mut upstream: CompletionStream,
    tx: mpsc::Sender<Bytes>,
    request_id: Option<String>,
) {
    let key = turn.conversation.session_key.clone();
    let start = json!({"type": "start", "session_id": key, "conversation_id": key, "message_id": turn.answer_id, "agent_id": turn.agent.id.to_string()});
    if tx.send(frame(&start)).await.is_err() {
        return;
    }
    let mut text = String::new();
    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        let next = tokio::select! {
            () = tx.closed() => Next::Gone,
            _ = keep_alive.tick() => Next::KeepAlive,
            ev = upstream.next() => Next::Event(ev),
        };
        match next {
            Next::KeepAlive => {
                if tx
                    .send(Bytes::from_static(b": keep-alive\n\n"))
                    .await
                    .is_err()
                {
                    return finish_cut(turn, upstream, text).await;
                }
            }
            Next::Gone => return finish_cut(turn, upstream, text).await,
            Next::Event(Some(Ok(StreamEvent::Delta(delta)))) => {
                text.push_str(&delta);
                if tx
                    .send(frame(&json!({"type": "token", "content": delta})))
                    .await
                    .is_err()
                {
                    return finish_cut(turn, upstream, text).await;
                }
            }
            Next::Event(Some(Ok(StreamEvent::Done {
                usage,
                finish_reason,
                ..
            }))) => {
                drop(upstream);
                return finish_done(turn, text, usage, finish_reason, &tx, request_id).await;
            }
            Next::Event(None) => {
                drop(upstream);
                return finish_done(turn, text, None, None, &tx, request_id).await;
            }
            Next::Event(Some(Err(error))) => {
                drop(upstream);
                let err = ApiError::from(turn.stream_error(error));
                if !text.is_empty() {
                    record_quietly(turn, text, MessageStatus::Incomplete).await;
                }
                let _ = tx.send(frame(&error_event(&err, request_id))).await;
                return;
            }
        }
    }
}

fn error_event(err: &ApiError, request_id: Option<String>) -> Value {
    json!({"type": "error", "error": {"code": err.code(), "message": err.message(), "details": err.details(), "request_id": request_id}})
}

/// The client went away: cancel the upstream call, keep what was produced.
async fn finish_cut(turn: PreparedTurn, upstream: CompletionStream, text: String) {
    drop(upstream);
    tracing::info!(
        chars = text.len(),
        "client left mid-stream; upstream cancelled"
    );
    if !text.is_empty() {
        record_quietly(turn, text, MessageStatus::Incomplete).await;
    }
}

async fn record_quietly(turn: PreparedTurn, text: String, status: MessageStatus) {
    if let Err(e) = turn.record(text, None, None, status).await {
        tracing::error!(error = %e, "could not store a cut answer");
    }
}

async fn finish_done(
    turn: PreparedTurn,
    text: String,
    usage: Option<TokenUsage>,
    finish_reason: Option<String>,
    tx: &mpsc::Sender<Bytes>,
    request_id: Option<String>,
) {
    match turn
        .record(text, usage, finish_reason, MessageStatus::Complete)
        .await
    {
        Ok(t) => {
            let reply = ChatReply::from(&t);
            let end = json!({
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
            });
            let _ = tx.send(frame(&end)).await;
        }
        Err(e) => {
            let _ = tx
                .send(frame(&error_event(&ApiError::from(e), request_id)))
                .await;
        }
    }
}
