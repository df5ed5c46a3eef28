//! WebSocket: the event stream (`/api/v1/ws`, seed 002) and chat with an agent
//! (`/api/v1/agents/{agent}/ws`, seed 004). See `docs/events.md`.
//!
//! Both authenticate with `Authorization: Bearer …` on the upgrade request, or with
//! `{"type": "auth", "token": …}` as the first message (browsers cannot set headers on a
//! WebSocket), within [`AUTH_WITHIN`]. Every frame is a JSON text message.
//!
//! Memory per connection is bounded: events are read from the bus's shared buffer, and a
//! client that does not read (the socket's send queue stays full for [`SEND_WITHIN`]) or falls
//! more than the bus's buffer behind is closed with a reason. The server pings every
//! [`PING_EVERY`]; a connection silent for [`IDLE_AFTER`] is closed.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use agentry_domain::auth::{Principal, Requirement};
use agentry_domain::event::{Event, Interest, SYSTEM_CHANNEL, TASKS_CHANNEL};
use agentry_domain::services::{Turn, TurnEvent, TurnTarget};
use agentry_domain::task::TaskId;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::agents::agent_ref;
use crate::routes::chat::ChatInput;
use crate::sse::{ChatEncoder, Encoder};

/// The first message must authenticate within this.
pub const AUTH_WITHIN: Duration = Duration::from_secs(10);
/// The server pings this often.
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// A connection that sends nothing (not even a pong) for this long is closed.
pub const IDLE_AFTER: Duration = Duration::from_secs(60);
/// A frame that cannot be queued for this long means the client does not read: closed.
pub const SEND_WITHIN: Duration = Duration::from_secs(5);
/// Channels one connection may subscribe to.
pub const SUBSCRIPTIONS_MAX: usize = 100;
/// Largest message a client may send.
pub const CLIENT_FRAME_MAX: usize = 256 * 1024;

/// Routes of this module, under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ws").get(ws_events))
        .service(web::resource("/agents/{agent}/ws").get(ws_chat));
}

/// The WebSocket handshake; a request that is not an upgrade is a `400 VALIDATION_ERROR` in
/// the usual envelope.
fn upgrade(
    req: &HttpRequest,
    body: web::Payload,
) -> Result<(HttpResponse, Session, MessageStream), ApiError> {
    actix_ws::handle(req, body).map_err(|e| {
        ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("expected a WebSocket upgrade: {e}"),
        )
    })
}

/// What a client's frame asks of the loop.
enum Incoming {
    /// A text message to handle.
    Text(String),
    /// A ping (answered) or another frame (ignored).
    Handled,
    /// The client closes (or the stream broke): close and end.
    Closing,
    /// The connection is gone: end.
    Gone,
}

/// Answers control frames; hands text messages to the caller.
async fn incoming(
    session: &mut Session,
    msg: Option<Result<Message, actix_ws::ProtocolError>>,
) -> Incoming {
    match msg {
        Some(Ok(Message::Text(text))) => Incoming::Text(text.to_string()),
        Some(Ok(Message::Ping(p))) => {
            if session.pong(&p).await.is_err() {
                Incoming::Gone
            } else {
                Incoming::Handled
            }
        }
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Incoming::Closing,
        Some(Ok(_)) => Incoming::Handled,
    }
}

/// The ping tick: `false` when the connection has been idle too long (and may be closed for
/// it), otherwise pings the client.
async fn keep_alive(
    session: &mut Session,
    last_heard: tokio::time::Instant,
    may_idle: bool,
) -> bool {
    if may_idle && last_heard.elapsed() >= IDLE_AFTER {
        return false;
    }
    // A failed ping means the connection is gone; the next read ends the loop.
    let _ = session.ping(b"").await;
    true
}

/// Sends `value`; `false` when the connection is gone or the client does not read.
async fn send(session: &mut Session, value: &Value) -> bool {
    send_text(session, value.to_string()).await
}

async fn send_text(session: &mut Session, text: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_WITHIN, session.text(text)).await,
        Ok(Ok(()))
    )
}

fn error_frame(code: &str, message: impl Into<String>) -> Value {
    json!({"type": "error", "code": code, "message": message.into()})
}

async fn close(session: Session, code: CloseCode, reason: &str) {
    let _ = session
        .close(Some(CloseReason {
            code,
            description: Some(reason.to_owned()),
        }))
        .await;
}

/// The principal of the `Authorization` header, if one was sent.
async fn header_principal(
    req: &HttpRequest,
    state: &AppState,
) -> Option<Result<Principal, ApiError>> {
    if state.auth_disabled {
        return Some(Ok(Principal::development()));
    }
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    Some(match token {
        Some(t) if !t.is_empty() => state.auth.authenticate(&t).await.map_err(ApiError::from),
        _ => Err(ApiError::unauthorized(
            "Malformed Authorization header: expected 'Bearer <token>'",
        )),
    })
}

/// Waits for `{"type": "auth", "token": …}`; answers `auth.ok` or an error and closes.
async fn first_message_auth(
    state: &AppState,
    session: &mut Session,
    stream: &mut MessageStream,
) -> Option<Principal> {
    let first = tokio::time::timeout(AUTH_WITHIN, stream.next()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(t)))) => t,
        _ => return None,
    };
    let token = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        (v.get("type").and_then(Value::as_str) == Some("auth"))
            .then(|| v.get("token").and_then(Value::as_str).map(str::to_owned))
            .flatten()
    })?;
    match state.auth.authenticate(&token).await {
        Ok(p) => Some(p),
        Err(e) => {
            let e = ApiError::from(e);
            send(session, &error_frame(e.code(), e.message())).await;
            None
        }
    }
}

/// Authenticates a new connection (header first, else the first message).
async fn authenticated(
    req: &HttpRequest,
    state: &AppState,
    session: &mut Session,
    stream: &mut MessageStream,
) -> Option<Principal> {
    let principal = match header_principal(req, state).await {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            send(session, &error_frame(e.code(), e.message())).await;
            None
        }
        None => first_message_auth(state, session, stream).await,
    };
    if let Some(p) = &principal {
        send(session, &json!({"type": "auth.ok", "principal": p.id})).await;
    }
    principal
}

/// `GET /api/v1/ws`: the event stream.
#[utoipa::path(get, path = "/api/v1/ws", tag = "events",
    description = "Upgrades to a WebSocket carrying events as JSON messages. Authenticate with a bearer header or `{\"type\":\"auth\",\"token\"}` first; then `{\"type\":\"subscribe\",\"channel\"}` with `agent.{id}.events`, `task.{id}`, `tasks`, `eval_run.{id}` or `system`. Events: `task.status`, `eval_run.status`, `agent.message`, `system.notification` (see docs/events.md).",
    responses((status = 101, description = "Switching protocols"), (status = 400, description = "Not a WebSocket upgrade", body = crate::error::ErrorEnvelope)))]
pub async fn ws_events(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, stream) = upgrade(&req, body)?;
    let stream = stream.max_frame_size(CLIENT_FRAME_MAX);
    let state = state.into_inner();
    actix_web::rt::spawn(async move {
        run_events(req, state, session, stream).await;
    });
    Ok(response)
}

/// What a connection listens to.
struct Subscription {
    channel: String,
    /// Keeps agent messages flowing to this replica while subscribed.
    _interest: Option<Interest>,
}

async fn run_events(
    req: HttpRequest,
    state: Arc<AppState>,
    mut session: Session,
    mut stream: MessageStream,
) {
    let Some(principal) = authenticated(&req, &state, &mut session, &mut stream).await else {
        close(session, CloseCode::Policy, "authentication failed").await;
        return;
    };
    let mut bus = state.events.subscribe();
    let mut subscriptions: Vec<Subscription> = Vec::new();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            got = bus.recv() => match got {
                Ok(event) => {
                    let Some(frame) = deliverable(&principal, &subscriptions, &event) else { continue };
                    if !send_text(&mut session, frame).await {
                        close(session, CloseCode::Policy, "slow consumer: events could not be sent in time").await;
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    close(session, CloseCode::Policy, &format!("slow consumer: {n} events were dropped")).await;
                    return;
                }
                Err(RecvError::Closed) => {
                    close(session, CloseCode::Away, "shutting down").await;
                    return;
                }
            },
            msg = stream.next() => {
                last_heard = tokio::time::Instant::now();
                let text = match incoming(&mut session, msg).await {
                    Incoming::Text(text) => text,
                    Incoming::Handled => continue,
                    Incoming::Closing => {
                        let _ = session.close(None).await;
                        return;
                    }
                    Incoming::Gone => return,
                };
                let reply = command(&state, &principal, &mut subscriptions, &text).await;
                if !send(&mut session, &reply).await {
                    return;
                }
            }
            _ = ping.tick() => {
                if !keep_alive(&mut session, last_heard, true).await {
                    close(session, CloseCode::Normal, "idle").await;
                    return;
                }
            }
        }
    }
}

/// The frame of `event` for this connection, if it subscribed to one of its channels and may
/// see it.
fn deliverable(
    principal: &Principal,
    subscriptions: &[Subscription],
    event: &Event,
) -> Option<String> {
    let channel = event
        .channels
        .iter()
        .find(|c| subscriptions.iter().any(|s| &&s.channel == c))?;
    if let Some(key) = &event.agent_key
        && !principal.may_invoke_agent(key)
    {
        return None;
    }
    let mut payload = event.payload.clone();
    payload.insert("channel".into(), json!(channel));
    Some(Value::Object(payload).to_string())
}

/// Handles one client message; returns the reply.
async fn command(
    state: &AppState,
    principal: &Principal,
    subscriptions: &mut Vec<Subscription>,
    text: &str,
) -> Value {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        return error_frame("VALIDATION_ERROR", "messages must be JSON objects");
    };
    let channel = message.get("channel").and_then(Value::as_str);
    match (message.get("type").and_then(Value::as_str), channel) {
        (Some("ping"), _) => json!({"type": "pong"}),
        (Some("auth"), _) => json!({"type": "auth.ok", "principal": principal.id}),
        (Some("subscribe"), Some(channel)) => {
            if subscriptions.len() >= SUBSCRIPTIONS_MAX {
                return json!({"type": "error", "code": "VALIDATION_ERROR", "channel": channel,
                    "message": format!("at most {SUBSCRIPTIONS_MAX} subscriptions per connection")});
            }
            match may_subscribe(state, principal, channel).await {
                Ok((canonical, interest)) => {
                    if !subscriptions.iter().any(|s| s.channel == canonical) {
                        subscriptions.push(Subscription {
                            channel: canonical.clone(),
                            _interest: interest,
                        });
                    }
                    json!({"type": "subscribed", "channel": canonical, "requested": channel})
                }
                Err(e) => {
                    json!({"type": "error", "code": e.code(), "channel": channel, "message": e.message()})
                }
            }
        }
        (Some("unsubscribe"), Some(channel)) => {
            let canonical = canonical_agent_channel(state, channel)
                .await
                .unwrap_or_else(|| channel.to_owned());
            subscriptions.retain(|s| s.channel != canonical);
            json!({"type": "unsubscribed", "channel": canonical, "requested": channel})
        }
        (Some("subscribe" | "unsubscribe"), None) => {
            error_frame("VALIDATION_ERROR", "'channel' is required")
        }
        _ => error_frame(
            "VALIDATION_ERROR",
            "unknown message type: expected subscribe, unsubscribe or ping",
        ),
    }
}

/// `agent.{key}.events` spelled with the agent's id, as events are published.
async fn canonical_agent_channel(state: &AppState, channel: &str) -> Option<String> {
    let agent = channel
        .strip_prefix("agent.")
        .and_then(|rest| rest.strip_suffix(".events"))?;
    let agent = state.agents.get(&agent_ref(agent).ok()?).await.ok()?;
    Some(agentry_domain::event::agent_channel(agent.id.as_str()))
}

/// Whether `principal` may subscribe to `channel`: the channel as events name it (an agent
/// channel by the agent's id), and for an agent channel the interest that makes turns
/// publish its messages.
async fn may_subscribe(
    state: &AppState,
    principal: &Principal,
    channel: &str,
) -> Result<(String, Option<Interest>), ApiError> {
    let reader = principal.satisfies(Requirement::Read);
    if channel == SYSTEM_CHANNEL || channel == TASKS_CHANNEL {
        return if reader {
            Ok((channel.to_owned(), None))
        } else {
            Err(ApiError::forbidden(format!(
                "channel '{channel}' needs read access"
            )))
        };
    }
    if let Some(id) = channel.strip_prefix("task.") {
        let id = TaskId::parse(id)
            .map_err(|_| ApiError::from(agentry_domain::Error::not_found("task", id)))?;
        state.tasks.get(Some(principal), &id).await?;
        return Ok((channel.to_owned(), None));
    }
    if let Some(id) = channel.strip_prefix("eval_run.") {
        let id = agentry_domain::eval::EvalRunId::parse(id)
            .map_err(|_| ApiError::from(agentry_domain::Error::not_found("eval_run", id)))?;
        state.evals.get_run(Some(principal), &id).await?;
        return Ok((channel.to_owned(), None));
    }
    if let Some(agent) = channel
        .strip_prefix("agent.")
        .and_then(|rest| rest.strip_suffix(".events"))
    {
        if !reader {
            return Err(ApiError::forbidden(
                "agent channels carry users' conversations: they need read access",
            ));
        }
        let agent = state
            .agents
            .get_for(Some(principal), &agent_ref(agent)?)
            .await?;
        // Events are published under the agent's id: subscribe by id.
        let channel = agentry_domain::event::agent_channel(agent.id.as_str());
        let interest = state.events.listen(&channel);
        return Ok((channel, Some(interest)));
    }
    Err(ApiError::validation(
        "channel",
        "must be agent.{id}.events, task.{id}, tasks, eval_run.{id} or system",
    ))
}

/// `GET /api/v1/agents/{agent}/ws`: chat with an agent over a WebSocket.
#[utoipa::path(get, path = "/api/v1/agents/{agent}/ws", tag = "chat",
    params(("agent" = String, Path, description = "Agent id or key")),
    description = "Upgrades to a WebSocket. Authenticate (bearer header or `{\"type\":\"auth\",\"token\"}` first), then send `{\"type\":\"chat\",\"message\",\"conversation_id\"?}`: the answer comes as `start`, `token`…, `tool_call`/`tool_result`, then `end` (or `error`) messages, as on the SSE stream. `{\"type\":\"cancel\"}` drops the turn in progress.",
    responses((status = 101, description = "Switching protocols"), (status = 400, description = "Not a WebSocket upgrade", body = crate::error::ErrorEnvelope),
        (status = 404, description = "The path cannot name an agent (the upgrade has not happened yet)", body = crate::error::ErrorEnvelope)))]
pub async fn ws_chat(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, actix_web::Error> {
    let target = agent_ref(&path)?;
    let (response, session, stream) = upgrade(&req, body)?;
    let stream = stream.max_frame_size(CLIENT_FRAME_MAX);
    let state = state.into_inner();
    actix_web::rt::spawn(async move {
        run_chat(req, state, target, session, stream).await;
    });
    Ok(response)
}

async fn run_chat(
    req: HttpRequest,
    state: Arc<AppState>,
    target: agentry_domain::agent::AgentRef,
    mut session: Session,
    mut stream: MessageStream,
) {
    let Some(principal) = authenticated(&req, &state, &mut session, &mut stream).await else {
        close(session, CloseCode::Policy, "authentication failed").await;
        return;
    };
    if !principal.satisfies(Requirement::Invoke) {
        send(
            &mut session,
            &error_frame("FORBIDDEN", "This needs the invoke permission"),
        )
        .await;
        close(session, CloseCode::Policy, "forbidden").await;
        return;
    }
    let mut turn: Option<(Turn, ChatEncoder)> = None;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            event = next_event(&mut turn) => {
                let Some((event, encoder)) = event else { continue };
                let ended = matches!(event, TurnEvent::Finished(_) | TurnEvent::Failed(_));
                let mut frames = std::collections::VecDeque::new();
                encoder.encode(event, &mut frames);
                for frame in frames {
                    if !send_text(&mut session, sse_json(&frame)).await {
                        close(session, CloseCode::Policy, "slow consumer").await;
                        return;
                    }
                }
                if ended {
                    turn = None;
                }
            }
            msg = stream.next() => {
                last_heard = tokio::time::Instant::now();
                let text = match incoming(&mut session, msg).await {
                    Incoming::Text(text) => text,
                    Incoming::Handled => continue,
                    Incoming::Closing => {
                        let _ = session.close(None).await;
                        return;
                    }
                    Incoming::Gone => return,
                };
                match chat_command(&state, &principal, &target, &text, turn.is_some()).await {
                    Ok(Some(started)) => {
                        let encoder = ChatEncoder::new(started.start());
                        turn = Some((started, encoder));
                    }
                    Ok(None) => {
                        // A cancel: the turn is dropped (recorded as incomplete).
                        if turn.take().is_some() {
                            send(&mut session, &json!({"type": "cancelled"})).await;
                        }
                    }
                    Err(reply) => {
                        if !send(&mut session, &reply).await {
                            return;
                        }
                    }
                }
            }
            _ = ping.tick() => {
                if !keep_alive(&mut session, last_heard, turn.is_none()).await {
                    close(session, CloseCode::Normal, "idle").await;
                    return;
                }
            }
        }
    }
}

/// The next event of the turn in progress; never resolves without one.
async fn next_event(
    turn: &mut Option<(Turn, ChatEncoder)>,
) -> Option<(TurnEvent, &mut ChatEncoder)> {
    match turn {
        Some((t, encoder)) => match t.next().await {
            Some(event) => Some((event, encoder)),
            None => None,
        },
        None => futures_util::future::pending().await,
    }
}

/// The JSON of an agent-chat SSE frame (`data: {…}\n\n`).
fn sse_json(frame: &[u8]) -> String {
    let text = String::from_utf8_lossy(frame);
    text.trim_end()
        .strip_prefix("data: ")
        .unwrap_or(&text)
        .to_owned()
}

/// A client message of the chat socket: `chat` starts a turn (`Ok(Some)`), `cancel` drops
/// the one in progress (`Ok(None)`); anything else is answered (`Err(reply)`).
async fn chat_command(
    state: &AppState,
    principal: &Principal,
    target: &agentry_domain::agent::AgentRef,
    text: &str,
    busy: bool,
) -> Result<Option<Turn>, Value> {
    let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
        return Err(error_frame(
            "VALIDATION_ERROR",
            "messages must be JSON objects",
        ));
    };
    match message.remove("type").as_ref().and_then(Value::as_str) {
        Some("ping") => Err(json!({"type": "pong"})),
        Some("auth") => Err(json!({"type": "auth.ok", "principal": principal.id})),
        Some("cancel") => Ok(None),
        Some("chat") if busy => Err(error_frame(
            "CONFLICT",
            "a turn is in progress: wait for its end, or send {\"type\":\"cancel\"}",
        )),
        Some("chat") => {
            message.insert("stream".into(), json!(true));
            let input: ChatInput = serde_json::from_value(Value::Object(message)).map_err(|e| {
                error_frame("VALIDATION_ERROR", format!("invalid chat message: {e}"))
            })?;
            let request = input.try_into_domain().map_err(|e| {
                json!({"type": "error", "code": e.code(), "message": e.message(), "details": e.details()})
            })?;
            state
                .runtime
                .start_turn(Some(principal), TurnTarget::LiveAgent(target.clone()), request)
                .await
                .map(Some)
                .map_err(|e| {
                    let e = ApiError::from(e);
                    json!({"type": "error", "code": e.code(), "message": e.message(), "details": e.details()})
                })
        }
        _ => Err(error_frame(
            "VALIDATION_ERROR",
            "unknown message type: expected chat, cancel or ping",
        )),
    }
}
