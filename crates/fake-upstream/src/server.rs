//! The server (HTTP/1.1, and HTTP/2 without TLS for clients that speak it from the start):
//! accept loop, routing, and turning replies into (possibly broken) bodies.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::anthropic::Anthropic;
use crate::openai::{self, OpenAi};
use crate::script::Outcome;
use crate::wire::{Answer, Reply, Wire};
use crate::{RecordedRequest, State};

type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Largest request body read.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Pause before breaking a connection, so the pieces before it get flushed.
const CUT_PAUSE: Duration = Duration::from_millis(20);

/// Accepts connections until the task is aborted; aborting also ends every connection.
pub(crate) async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&state)));
                }
                // Out of file descriptors or similar: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let _open = state.connection();
    // Best effort: Nagle only adds latency to small SSE chunks.
    let _ = stream.set_nodelay(true);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(state.stream_limit());
    let service = service_fn(move |request| handle(request, Arc::clone(&state)));
    // A connection error (client gone, cut on purpose) only ends this connection.
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Body>, Infallible> {
    let _busy = state.request();
    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(into_response(OpenAi::error(413, None))),
    };
    let json: Option<Value> = serde_json::from_slice(&bytes).ok();
    if state.is_recording() {
        state.record(RecordedRequest::new(&parts, json.clone()));
    }
    let reply = match (parts.method.as_str(), parts.uri.path()) {
        ("POST", "/v1/chat/completions") => respond::<OpenAi>(&state, json).await,
        ("POST", "/v1/messages") => respond::<Anthropic>(&state, json).await,
        ("POST", "/v1/embeddings") => crate::embeddings::respond(&state, json).await,
        ("GET", "/v1/models") => openai::models(),
        _ => OpenAi::error(404, Some("Unknown request URL.")),
    };
    Ok(into_response(reply))
}

async fn respond<W: Wire>(state: &State, json: Option<Value>) -> Reply {
    let Some(body) = json else {
        return W::error(400, Some("The request body is not valid JSON."));
    };
    let asked = match W::parse(&body) {
        Ok(asked) => asked,
        Err(message) => return W::error(400, Some(&message)),
    };
    let plan = state.next_plan(&asked.model);
    let wait = state.latency() + plan.delay + plan.stall;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let (text, cut) = match plan.outcome {
        Outcome::Error(status, message) => return W::error(status, message.as_deref()),
        Outcome::Echo => (asked.last_user.clone(), false),
        Outcome::Text(text) => (text, false),
        Outcome::Cut => (asked.last_user.clone(), true),
        Outcome::ToolCalls(calls) => return W::tool_calls(&asked, &calls, plan.delay),
        Outcome::Unreadable => {
            return Reply {
                status: 200,
                content_type: "application/json",
                retry_after: None,
                chunks: vec![Bytes::from_static(
                    b"<html><body>Welcome to nginx!</body></html>",
                )],
                gap: Duration::ZERO,
                cut: false,
            };
        }
    };
    W::answer(&asked, &Answer::new(&text, &asked), plan.delay, cut)
}

fn into_response(reply: Reply) -> Response<Body> {
    let mut builder = Response::builder()
        .status(reply.status)
        .header(CONTENT_TYPE, reply.content_type);
    if let Some(seconds) = reply.retry_after {
        builder = builder.header(RETRY_AFTER, seconds);
    }
    if reply.content_type == "text/event-stream" {
        builder = builder.header(CACHE_CONTROL, "no-cache");
    }
    builder
        .body(body_of(reply))
        .unwrap_or_else(|_| Response::new(whole(Bytes::new())))
}

fn body_of(reply: Reply) -> Body {
    if !reply.cut && reply.gap.is_zero() {
        return whole(reply.chunks.concat().into());
    }
    let gap = reply.gap;
    let pieces =
        stream::iter(reply.chunks.into_iter().enumerate()).then(move |(i, chunk)| async move {
            if i > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            Ok(Frame::data(chunk))
        });
    let cut = stream::iter(reply.cut.then_some(())).then(|()| async {
        tokio::time::sleep(CUT_PAUSE).await;
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "cut on purpose",
        ))
    });
    StreamBody::new(pieces.chain(cut)).boxed_unsync()
}

fn whole(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}
