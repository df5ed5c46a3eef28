//! The turn: the one use case every transport drives. [`Runtime::start_turn`] applies the
//! access rules (an API key's agent allowlist, the agent's status, version pinning and
//! serving), builds the prompt (instructions, trimmed history, input), offers the tools (the
//! agent's, run here; the caller's, returned to it) and makes the first model call. The
//! [`Turn`] it returns is a stream of [`TurnEvent`]s: text as it comes, tool calls and their
//! results, then `Finished` with what was stored, or `Failed`. It records itself (see
//! `record.rs`): when it finishes, fails, or is dropped by its consumer.
//!
//! Errors before the first model call answers (validation, access, an unknown model, a
//! provider refusing the call) are returned by `start_turn`, so transports can answer them
//! as ordinary errors.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_core::Stream;
use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::guard::guard_whole_answer;
use super::prompt::{check_input, check_length, millis, newest, system_messages, trim_history};
use super::record::{Produced, Recorded, Recorder, Target};
use super::retrieve::with_sources;
use super::routes::{Routes, provider_error};
use super::tools::ServerTools;
use super::{Params, Runtime};
use crate::agent::{Agent, AgentKey, AgentRef, AgentStatus, ModelRef, ModelSpec};
use crate::auth::{Principal, Requirement};
use crate::conversation::{
    Annotations, CONVERSATION_ID_PREFIX, Conversation, MESSAGE_ID_PREFIX, Message, MessageStatus,
    RUN_ID_PREFIX, Run, parse_external_id,
};
use crate::error::{Error, Invalid, Result};
use crate::guardrail::{OutputGuard, Release, Trigger};
use crate::ids::new_id;
use crate::knowledge::{Citation, Retrieval};
use crate::llm::{
    Completion, CompletionRequest, CompletionStream, PromptMessage, ResponseFormat, Role,
    StreamEvent, TokenUsage, ToolCall, ToolChoice, ToolDefinition,
};
use crate::metrics::{Metrics, TurnMeter, TurnStatus};
use crate::services::clusters::Slot;
use crate::version::ServedAgent;

/// Most stop sequences.
pub const STOP_MAX: usize = 4;
/// Most tools a caller may send.
pub const CALLER_TOOLS_MAX: usize = 128;

/// What answers a turn.
#[derive(Debug, Clone)]
pub enum TurnTarget {
    /// An agent's live definition (the management API's chat); archived agents are refused.
    LiveAgent(AgentRef),
    /// An agent by key as the client API serves it: the pinned version, else the latest
    /// published one, else the live definition; the agent must be active.
    ServedAgent {
        /// The agent's key.
        key: String,
        /// A published version to pin.
        version: Option<u32>,
    },
    /// As `ServedAgent`; when no agent has that key and it reads `provider/model` (and no
    /// version is pinned), that model directly, for callers allowed to call models directly.
    AgentOrModel {
        /// The agent key or `provider/model`.
        name: String,
        /// A published version to pin.
        version: Option<u32>,
    },
    /// A model directly (one-shot runs).
    Model(ModelSpec),
}

/// How a turn is remembered.
#[derive(Debug, Clone)]
pub enum Memory {
    /// In a conversation with the agent: history is read and the turn appended.
    Conversation {
        /// The caller's conversation id (`session_id` / `conversation_id`), scoped to the
        /// agent; opened when new.
        session_key: Option<String>,
        /// Continue this stored conversation (by its `conv_…` id) instead.
        conversation_id: Option<String>,
        /// Continue from this answer (`msg_…`): its conversation when it is the latest
        /// message there, else a new conversation holding a copy of everything up to it (a
        /// branch). An id that names no message falls back to `conversation_id`.
        from_answer: Option<String>,
        /// Context stored with a new conversation.
        context: Map<String, Value>,
        /// `false`: answered, then forgotten.
        store: bool,
    },
    /// Stateless: the input is the whole conversation; the turn is logged as a run.
    Run {
        /// The run's id; one is made when absent.
        run_id: Option<String>,
        /// Stored with the run.
        log_meta: Map<String, Value>,
        /// Write the log before answering (one-shot runs: the caller may read the run at
        /// once, and a chosen id that is taken is a conflict); else it is queued.
        log_now: bool,
    },
}

/// What the caller may set beyond the messages; `None`/empty leaves the provider's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallOptions {
    /// The caller's own function tools: offered to the model and, when called, returned to
    /// the caller to run (never run here).
    pub client_tools: Vec<ToolDefinition>,
    /// Whether and which tool the model must call.
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools at once.
    pub parallel_tool_calls: Option<bool>,
    /// The answer's shape.
    pub response_format: Option<ResponseFormat>,
    /// Stop sequences (at most 4).
    pub stop: Vec<String>,
    /// Sampling seed.
    pub seed: Option<i64>,
    /// Presence penalty.
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    pub frequency_penalty: Option<f64>,
    /// Token biases.
    pub logit_bias: Option<Map<String, Value>>,
    /// The end user.
    pub user: Option<String>,
}

/// One turn's request.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    /// The new messages of this turn (a conversation), or the whole conversation (a run).
    pub input: Vec<PromptMessage>,
    /// How the caller named the input, for errors (`message`, `input`, `messages`).
    pub input_field: &'static str,
    /// Where the turn is remembered.
    pub memory: Memory,
    /// The caller's instructions, sent after the agent's.
    pub instructions: Option<String>,
    /// Instructions that replace the agent's own for this turn (evaluating a candidate
    /// prompt; set by trusted code such as an evaluation run, never from a client's field).
    pub agent_instructions: Option<String>,
    /// The caller's parameters, over the agent's.
    pub params: Params,
    /// Tools, structured output and sampling options.
    pub options: CallOptions,
    /// Ask the provider for a streamed answer (text arrives in pieces); otherwise one call
    /// answers whole and its text is one event.
    pub stream: bool,
}

impl TurnRequest {
    /// A request with defaults around `input` and `memory`.
    pub fn new(input: Vec<PromptMessage>, memory: Memory) -> Self {
        Self {
            input,
            input_field: "input",
            memory,
            instructions: None,
            agent_instructions: None,
            params: Params::default(),
            options: CallOptions::default(),
            stream: false,
        }
    }

    /// One user message in a new, stored conversation.
    pub fn user(message: impl Into<String>) -> Self {
        Self {
            input_field: "message",
            ..Self::new(
                vec![PromptMessage::new(Role::User, message)],
                Memory::Conversation {
                    session_key: None,
                    conversation_id: None,
                    from_answer: None,
                    context: Map::new(),
                    store: true,
                },
            )
        }
    }
}

/// What is known when a turn starts.
#[derive(Debug, Clone)]
pub struct TurnStart {
    /// The definition answering (a served version's snapshot), unless a bare model answers.
    pub agent: Option<Arc<Agent>>,
    /// The published version answering, if one does.
    pub version: Option<u32>,
    /// The conversation (conversation turns; not stored when `store` is false).
    pub conversation: Option<Arc<Conversation>>,
    /// The run's id (run turns).
    pub run_id: Option<String>,
    /// The id the answer is stored under (`msg_…`).
    pub answer_id: String,
    /// The model answering the first call (the agent's, or its fallback).
    pub model: ModelRef,
    /// The parameters sent.
    pub params: Params,
    /// When the turn started.
    pub created_at: DateTime<Utc>,
}

/// One event of a turn. A turn yields `Started`, then any number of `TextDelta`, `ToolCall`
/// and `ToolResult`, then exactly one `Finished` or `Failed`.
#[derive(Debug, Clone)]
pub enum TurnEvent {
    /// The turn started (see [`Turn::start`]).
    Started,
    /// More text of the answer.
    TextDelta(String),
    /// The model called a tool: run by the runtime (`server`), or returned to the caller.
    ToolCall {
        /// The call.
        call: ToolCall,
        /// Whether the runtime runs it (an agent's tool).
        server: bool,
    },
    /// A server-side tool's result, fed back to the model.
    ToolResult {
        /// The call answered.
        call_id: String,
        /// The tool.
        name: String,
        /// Its output (or `{"error": …}`).
        output: String,
        /// Whether the call failed.
        is_error: bool,
    },
    /// The turn ended and was recorded.
    Finished(Box<TurnOutcome>),
    /// The turn failed (what it produced so far was recorded as the table in `record.rs` says).
    Failed(Error),
}

/// A recorded conversation turn.
#[derive(Debug, Clone)]
pub struct ChatTurn {
    /// The agent that answered.
    pub agent: Arc<Agent>,
    /// The version that answered, if a published one did.
    pub version: Option<u32>,
    /// The conversation.
    pub conversation: Conversation,
    /// The stored input messages.
    pub input: Vec<Message>,
    /// The stored server-side tool calls and results, in order.
    pub steps: Vec<Message>,
    /// The stored answer (its `tool_calls` are those left for the caller).
    pub answer: Message,
    /// Why the answer ended.
    pub finish_reason: Option<String>,
}

/// How a turn ended.
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    /// The final answer's text.
    pub text: String,
    /// Tool calls left for the caller to run (its own tools).
    pub tool_calls: Vec<ToolCall>,
    /// Server-side tool calls and results, in order (assistant and tool messages).
    pub steps: Vec<PromptMessage>,
    /// Tokens spent over every model call of the turn.
    pub usage: Option<TokenUsage>,
    /// Why the answer ended (`stop`, `length`, `tool_calls`, `max_tool_steps`…).
    pub finish_reason: Option<String>,
    /// The model that gave the last answer.
    pub model: ModelRef,
    /// Time from start to end, in milliseconds.
    pub latency_ms: u64,
    /// The stored conversation turn (conversation turns).
    pub chat: Option<ChatTurn>,
    /// The logged run (run turns).
    pub run: Option<Run>,
    /// The refusal that replaced the answer, when an output guardrail blocked it (then
    /// `text` is the refusal too, and `finish_reason` is `content_filter`).
    pub refusal: Option<String>,
    /// Every guardrail that triggered, input then output.
    pub guardrails: Vec<Trigger>,
    /// The knowledge passages the model was given, in marker order (`[index + 1]`).
    pub citations: Vec<Citation>,
    /// Time spent retrieving them, in milliseconds (agents with knowledge).
    pub retrieval_ms: Option<u64>,
}

/// A running turn: a stream of [`TurnEvent`]s. Dropping it before `Finished` cancels the
/// model call and records what was produced (see `record.rs`).
pub struct Turn {
    start: Arc<TurnStart>,
    events: Pin<Box<dyn Stream<Item = TurnEvent> + Send>>,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn").field("start", &self.start).finish()
    }
}

impl Turn {
    /// What is known at the start.
    pub fn start(&self) -> &TurnStart {
        &self.start
    }

    /// Drives the turn to its end.
    ///
    /// # Errors
    /// The turn's failure.
    pub async fn finish(mut self) -> Result<TurnOutcome> {
        while let Some(event) = self.events.next().await {
            match event {
                TurnEvent::Finished(outcome) => return Ok(*outcome),
                TurnEvent::Failed(e) => return Err(e),
                _ => {}
            }
        }
        Err(Error::Internal(
            "the turn ended without an outcome".to_owned(),
        ))
    }
}

impl Stream for Turn {
    type Item = TurnEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TurnEvent>> {
        self.events.poll_next_unpin(cx)
    }
}

/// Whether `caller` may call models directly as `provider/model` (bypassing agents): editors
/// and admins, and keys with `write` or `admin` scope and no agent allowlist. `None` is a
/// trusted caller (an embedder, the CLI).
pub fn may_call_models_directly(caller: Option<&Principal>) -> bool {
    caller.is_none_or(|p| p.agents.is_none() && p.satisfies(Requirement::Write))
}

fn check_allowed(caller: Option<&Principal>, key: &str) -> Result<()> {
    if caller.is_some_and(|p| !p.may_invoke_agent(key)) {
        return Err(Error::forbidden(format!(
            "This API key may not call agent '{key}'."
        )));
    }
    Ok(())
}

fn check_options(o: &CallOptions) -> Result<(), Invalid> {
    if o.stop.len() > STOP_MAX {
        return Err(Invalid::new(
            "stop",
            format!("at most {STOP_MAX} stop sequences"),
        ));
    }
    o.stop.iter().try_for_each(|s| check_length("stop", s))?;
    if o.client_tools.len() > CALLER_TOOLS_MAX {
        return Err(Invalid::new(
            "tools",
            format!("at most {CALLER_TOOLS_MAX} tools"),
        ));
    }
    for (i, t) in o.client_tools.iter().enumerate() {
        let ok_name = !t.name.is_empty()
            && t.name.len() <= 64
            && t.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok_name {
            return Err(Invalid::new(
                format!("tools[{i}].name"),
                "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'",
            ));
        }
        crate::schema::check(&t.parameters)
            .map_err(|e| Invalid::new(format!("tools[{i}].parameters"), e))?;
    }
    if let Some(ResponseFormat::JsonSchema { name, schema, .. }) = &o.response_format {
        if name.is_empty() {
            return Err(Invalid::new(
                "response_format.json_schema.name",
                "is required",
            ));
        }
        crate::schema::check(schema)
            .map_err(|e| Invalid::new("response_format.json_schema.schema", e))?;
    }
    if let Some(u) = &o.user {
        check_length("user", u)?;
    }
    Ok(())
}

/// The agent (or model) a target resolves to.
struct Resolved {
    served: Option<ServedAgent>,
    model: ModelRef,
    fallback: Option<ModelRef>,
}

impl Runtime {
    /// Starts a turn: checks the request and the caller's right to it, builds the prompt and
    /// makes the first model call. `caller` is the authenticated principal (`None`: a trusted
    /// caller such as an embedder).
    ///
    /// # Errors
    /// `Invalid` (blank input, bad ids, bad options; an agent not active: field `model`),
    /// `Forbidden` (an API key's allowlist, direct model access), `NotFound` (agent, version,
    /// conversation), `Conflict` (archived agent, run id taken), `ModelNotFound`, `Provider`
    /// (the first call failed; a run turn logs it).
    #[tracing::instrument(skip_all)]
    pub async fn start_turn(
        &self,
        caller: Option<&Principal>,
        target: TurnTarget,
        req: TurnRequest,
    ) -> Result<Turn> {
        check_input(req.input_field, &req.input)?;
        if let Some(i) = &req.instructions {
            check_length("instructions", i)?;
        }
        check_options(&req.options)?;
        // Every await here is boxed: this future lives as long as the model takes to answer
        // its first token (seconds, for every stream opening at once), and would otherwise
        // be as large as its largest step (~7 KB) for all that time instead of its locals.
        let mut resolved = Box::pin(self.resolve(caller, target)).await?;
        let mut req = req;
        if let Some(text) = req.agent_instructions.take()
            && let Some(served) = resolved.served.as_mut()
        {
            check_length("agent_instructions", &text)?;
            served.agent.instructions = text;
        }
        // One copy of the answering definition, shared by the turn's start (which its
        // encoders read) and its recorder: an open stream holds it for minutes.
        let Resolved {
            served,
            model: first_model,
            fallback,
        } = resolved;
        let served: Option<(Arc<Agent>, Option<u32>)> =
            served.map(|s| (Arc::new(s.agent), s.version));
        let agent = served.as_ref().map(|(a, _)| &**a);
        // Guardrails: the input rules run before anything reaches a model (a block is an
        // error here; a redaction changes what is sent and stored); the output guard goes
        // with the driver.
        let guardrails = agent.map(|a| a.guardrails.clone()).unwrap_or_default();
        let input_triggers = if guardrails.input.is_empty() {
            Vec::new()
        } else {
            Box::pin(self.guard_input(&guardrails.input, &mut req.input, req.input_field)).await?
        };
        let output_guard = OutputGuard::new(&guardrails);
        // Retrieval: an agent with knowledge gets the best passages for the user's message
        // (after input redaction); an agent without any never touches the index.
        let retrieval = Box::pin(self.retrieve(agent, &req.input)).await;
        // Counted from here (the agent is known); a cluster agent's turn takes one of its
        // slots, waiting in line for one when all are busy.
        let served_key = agent.map(|a| a.key.as_str());
        let mut meter = self.metrics.start_turn(served_key, req.stream);
        let slot = match agent {
            Some(a) if a.cluster.is_some() => {
                match Box::pin(self.instances.acquire(a.key.as_str())).await {
                    Ok(slot) => slot,
                    Err(e) => {
                        meter.end(TurnStatus::Rejected, None);
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        let routes = Box::pin(self.routes_for(&first_model, fallback.as_ref())).await?;
        let params = match agent {
            Some(a) => req.params.or(Params::of(a)),
            None => req.params,
        };
        let server_tools = Box::pin(ServerTools::for_agent(
            agent,
            self.ports.http_tools.clone(),
            &self.ports.mcp,
            self.settings.tool_limits,
        ))
        .await?;
        let now = self.ports.clock.now();
        let answer_id = new_id(MESSAGE_ID_PREFIX);
        let (messages, recorder, conversation, run_id) = match req.memory {
            Memory::Conversation {
                session_key,
                conversation_id,
                from_answer,
                context,
                store,
            } => {
                let Some((served_agent, version)) = served.clone() else {
                    return Err(Error::invalid("model", "a conversation needs an agent"));
                };
                let session_key = session_key
                    .as_deref()
                    .map(|k| parse_external_id("session_id", k))
                    .transpose()?;
                let Opened {
                    conversation,
                    history,
                    new: new_conversation,
                    copied,
                    continued_from,
                } = Box::pin(self.conversation_for(
                    caller,
                    &served_agent,
                    (from_answer.as_deref(), conversation_id.as_deref()),
                    session_key,
                    &context,
                    store,
                    now,
                ))
                .await?;
                // What the conversation's tail will be after this turn, when it is kept.
                let tail_before = (self.tails.is_on() && store && continued_from.is_some())
                    .then(|| history.clone());
                let conversation = Arc::new(conversation);
                let mut messages =
                    system_messages(&served_agent.instructions, req.instructions.as_deref());
                messages.extend(trim_history(history, self.settings.history_max_chars));
                messages.extend(req.input.iter().cloned());
                let recorder = Recorder {
                    runtime: self.clone(),
                    target: Target::Conversation {
                        agent: served_agent,
                        version,
                        conversation: conversation.clone(),
                        new_conversation,
                        copied,
                        continued_from,
                        tail_before,
                        store,
                    },
                    input: req.input,
                    answer_id: answer_id.clone(),
                    started_at: now,
                };
                (messages, recorder, Some(conversation), None)
            }
            Memory::Run {
                run_id,
                mut log_meta,
                log_now,
            } => {
                if let Some(a) = agent {
                    log_meta
                        .entry("agent")
                        .or_insert_with(|| Value::String(a.key.to_string()));
                }
                if let Some(r) = &retrieval {
                    log_meta.entry("knowledge").or_insert_with(|| r.log_json());
                }
                let run_id = match run_id {
                    Some(id) => parse_external_id("run_id", &id)?,
                    None => new_id(RUN_ID_PREFIX),
                };
                let mut messages = match agent {
                    Some(a) => system_messages(&a.instructions, req.instructions.as_deref()),
                    None => system_messages("", req.instructions.as_deref()),
                };
                messages.extend(req.input);
                let preamble = messages
                    .iter()
                    .filter(|m| m.role == Role::System)
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n\n");
                let prompt = messages
                    .iter()
                    .rev()
                    .find(|m| m.role == Role::User)
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                let recorder = Recorder {
                    runtime: self.clone(),
                    target: Target::Run {
                        run_id: run_id.clone(),
                        preamble,
                        prompt,
                        log_meta,
                        log_now,
                    },
                    input: Vec::new(),
                    answer_id: answer_id.clone(),
                    started_at: now,
                };
                (messages, recorder, None, Some(run_id))
            }
        };
        let mut messages = messages;
        with_sources(&mut messages, retrieval.as_ref());
        let o = req.options;
        let client_names: Vec<String> = o.client_tools.iter().map(|t| t.name.clone()).collect();
        let mut tools: Vec<ToolDefinition> = server_tools.definitions().collect();
        tools.extend(
            o.client_tools
                .into_iter()
                .filter(|t| !server_tools.runs(&t.name)),
        );
        if let Some(ToolChoice::Function(name)) = &o.tool_choice
            && !tools.iter().any(|t| &t.name == name)
        {
            return Err(Error::invalid(
                "tool_choice",
                format!("names the function '{name}', which is not among the tools"),
            ));
        }
        let request = CompletionRequest {
            model: first_model.model_name.clone(),
            messages,
            temperature: params.temperature,
            top_p: params.top_p,
            max_tokens: params.max_tokens,
            tool_choice: if tools.is_empty() {
                None
            } else {
                o.tool_choice
            },
            parallel_tool_calls: if tools.is_empty() {
                None
            } else {
                o.parallel_tool_calls
            },
            tools,
            response_format: o.response_format,
            stop: o.stop,
            seed: o.seed,
            presence_penalty: o.presence_penalty,
            frequency_penalty: o.frequency_penalty,
            logit_bias: o.logit_bias,
            user: o.user,
        };
        let started = Instant::now();
        let (upstream, model) = match Box::pin(open(&routes, &request, req.stream)).await {
            Ok(opened) => opened,
            Err(e) => {
                self.provider_failed(&e);
                if let Error::Provider { provider_id, .. } = &e {
                    self.metrics.provider_failed(provider_id);
                }
                // A run is logged also when it fails; a conversation keeps nothing.
                let produced = Produced::failed(&first_model, &e, started);
                if recorder.keeps(&produced)
                    && let Err(log) = Box::pin(recorder.record(produced, None)).await
                {
                    tracing::error!(error = %log, "could not log a failed run");
                    if matches!(log, Error::Conflict { .. }) {
                        return Err(log);
                    }
                }
                return Err(e);
            }
        };
        let start = Arc::new(TurnStart {
            agent: served.as_ref().map(|(a, _)| a.clone()),
            version: served.as_ref().and_then(|(_, v)| *v),
            conversation,
            run_id,
            answer_id,
            model: model.clone(),
            params,
            created_at: now,
        });
        meter.handed_over();
        let driver = Driver {
            meter,
            slot,
            metrics: self.metrics.clone(),
            call_started: started,
            routes,
            request,
            stream: req.stream,
            upstream: Some(upstream),
            server_tools,
            client_names,
            max_steps: self.settings.max_tool_steps,
            pending: VecDeque::new(),
            phase: Phase::Start,
            text: String::new(),
            calls: Vec::new(),
            steps: Vec::new(),
            usage: None,
            finish_reason: None,
            model,
            step_count: 0,
            recorder: Some(recorder),
            started,
            runtime: self.clone(),
            guard: output_guard,
            input_triggers,
            retrieval,
            held: String::new(),
            refused: false,
        };
        let events = futures_util::stream::unfold(driver, |mut d| async move {
            d.next_event().await.map(|e| (e, d))
        });
        // `agent.message` events, only when someone listens to the agent's channel.
        let listened = start.agent.as_ref().filter(|a| {
            self.ports
                .events
                .wants(&crate::event::agent_channel(a.id.as_str()))
        });
        if let Some(agent) = listened {
            let bus = self.ports.events.clone();
            let (agent_id, agent_key) = (agent.id.to_string(), agent.key.to_string());
            let session = start
                .conversation
                .as_ref()
                .map(|c| c.session_key.clone())
                .or_else(|| start.run_id.clone());
            let events = events.inspect(move |e| {
                let (text, done) = match e {
                    TurnEvent::TextDelta(t) => (t.as_str(), false),
                    TurnEvent::Finished(o) => (o.text.as_str(), true),
                    _ => return,
                };
                bus.publish(crate::event::Event::agent_message(
                    &agent_id,
                    &agent_key,
                    session.as_deref(),
                    text,
                    done,
                ));
            });
            return Ok(Turn {
                start,
                events: Box::pin(events),
            });
        }
        Ok(Turn {
            start,
            events: Box::pin(events),
        })
    }

    async fn serve(
        &self,
        caller: Option<&Principal>,
        key: &str,
        version: Option<u32>,
    ) -> Result<ServedAgent> {
        let parsed = AgentKey::parse(key).map_err(|_| Error::not_found("agent", key))?;
        check_allowed(caller, key)?;
        let (live, served) = self
            .ports
            .versions
            .serving(&AgentRef::Key(parsed), version)
            .await?;
        if live.status != AgentStatus::Active {
            return Err(Invalid::new(
                "model",
                format!(
                    "Agent '{key}' is not active (status: {}).",
                    live.status.as_str()
                ),
            )
            .with("code", "agent_not_active")
            .into());
        }
        Ok(served)
    }

    async fn resolve(&self, caller: Option<&Principal>, target: TurnTarget) -> Result<Resolved> {
        let served = match target {
            TurnTarget::LiveAgent(r) => {
                let agent = self.ports.agents.get_agent(&r).await?;
                check_allowed(caller, agent.key.as_str())?;
                if agent.status == AgentStatus::Archived {
                    return Err(Error::conflict(
                        "status",
                        format!("agent '{}' is archived", agent.key),
                    ));
                }
                ServedAgent {
                    agent,
                    version: None,
                }
            }
            TurnTarget::ServedAgent { key, version } => self.serve(caller, &key, version).await?,
            TurnTarget::AgentOrModel { name, version } => {
                match self.serve(caller, &name, version).await {
                    Ok(s) => s,
                    Err(Error::NotFound {
                        entity: "agent", ..
                    }) if name.contains('/') && version.is_none() => {
                        return self.direct(caller, name).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            TurnTarget::Model(spec) => {
                let model = self.ports.providers.resolve(&spec).await?;
                return Ok(Resolved {
                    served: None,
                    model,
                    fallback: None,
                });
            }
        };
        Ok(Resolved {
            model: served.agent.model.clone(),
            fallback: served.agent.fallback_model.clone(),
            served: Some(served),
        })
    }

    async fn direct(&self, caller: Option<&Principal>, name: String) -> Result<Resolved> {
        if !may_call_models_directly(caller) {
            return Err(Error::forbidden(format!(
                "Calling '{name}' directly needs an editor or a key with the 'write' scope and no agent allowlist."
            )));
        }
        let spec = ModelSpec {
            provider_id: None,
            model: name,
            field: "model".to_owned(),
        };
        let model = self.ports.providers.resolve(&spec).await?;
        Ok(Resolved {
            served: None,
            model,
            fallback: None,
        })
    }

    /// The conversation of a turn and its history (see [`Opened`]). `named` is
    /// (`from_answer`, `conversation_id`).
    #[allow(clippy::too_many_arguments)]
    async fn conversation_for(
        &self,
        caller: Option<&Principal>,
        agent: &Agent,
        named: (Option<&str>, Option<&str>),
        session_key: Option<String>,
        context: &Map<String, Value>,
        store: bool,
        now: DateTime<Utc>,
    ) -> Result<Opened> {
        let (from_answer, conversation_id) = named;
        let conversations = &self.ports.conversations;
        let max = self.settings.history_max_messages;
        let fresh = |id: String, key: String| Conversation {
            id,
            agent_id: agent.id.clone(),
            session_key: key,
            context: context.clone(),
            message_count: 0,
            created_at: now,
            updated_at: now,
            created_by: caller.map(Principal::created_by),
        };
        // Another caller's conversation is not found, whichever way it is named.
        let usable = |c: &Conversation| {
            caller.is_none_or(|p| p.may_use_conversation(c.created_by.as_deref()))
        };
        let tail = |all: Vec<Message>| newest(all, max);
        // An answer this process just stored: its conversation and tail are in memory (a
        // stale entry is caught when the turn is stored, see `tails.rs`).
        if let Some(answer) = from_answer
            && let Some(hit) = self.tails.get(answer, store)
        {
            let c = hit.conversation;
            if c.agent_id != agent.id || !usable(&c) {
                return Err(Error::not_found("conversation", answer));
            }
            return Ok(Opened::continued(
                c,
                tail(hit.messages),
                Some(answer.to_owned()),
            ));
        }
        if let Some(answer) = from_answer
            && let Some(found) = conversations.get_message(answer).await?
        {
            let c = conversations
                .get_conversation(&found.conversation_id)
                .await?;
            if c.agent_id != agent.id || !usable(&c) || found.role != Role::Assistant {
                return Err(Error::not_found("conversation", answer));
            }
            let Some((all, newest)) = self
                .messages_up_to(&c.id, &found.id, BRANCH_MAX_MESSAGES)
                .await?
            else {
                return Err(Error::invalid(
                    "previous_response_id",
                    format!(
                        "this response is older than the newest {BRANCH_MAX_MESSAGES} \
                             messages of its conversation and cannot be continued"
                    ),
                ));
            };
            if newest {
                return Ok(Opened::continued(c, tail(all), Some(found.id)));
            }
            // A branch: a new conversation holding a copy of everything up to the answer.
            let (branch, copied) = super::branch(&c, &all, caller.map(Principal::created_by), now);
            return Ok(Opened {
                conversation: branch,
                history: tail(all),
                new: store,
                copied,
                continued_from: None,
            });
        }
        if let Some(id) = conversation_id {
            let c = conversations.get_conversation(id).await?;
            if c.agent_id != agent.id || !usable(&c) {
                return Err(Error::not_found("conversation", id));
            }
            let history = conversations.last_messages(&c.id, max).await?;
            return Ok(Opened::continued(c, history, None));
        }
        let conv_id = new_id(CONVERSATION_ID_PREFIX);
        let Some(key) = session_key else {
            // A generated key: nobody can know this conversation before the turn's answer,
            // so nothing is read and it is stored with the turn.
            let key = conv_id.clone();
            return Ok(Opened::fresh(fresh(conv_id, key), store));
        };
        if !store {
            if let Some(c) = conversations.find_conversation(&agent.id, &key).await? {
                if !usable(&c) {
                    return Err(session_taken(&key));
                }
                let history = conversations.last_messages(&c.id, max).await?;
                return Ok(Opened::continued(c, history, None));
            }
            return Ok(Opened::fresh(fresh(conv_id, key), false));
        }
        let (c, created) = conversations
            .open_conversation(&fresh(conv_id, key.clone()))
            .await?;
        if !usable(&c) {
            return Err(session_taken(&key));
        }
        let history = if created {
            Vec::new()
        } else {
            conversations.last_messages(&c.id, max).await?
        };
        Ok(Opened::continued(c, history, None))
    }
}

/// The conversation a turn goes into.
struct Opened {
    conversation: Conversation,
    /// Its earlier messages sent to the model (the newest ones).
    history: Vec<Message>,
    /// Not stored yet: stored with the turn (one write per turn).
    new: bool,
    /// A branch's copy of the messages up to the answer it continues.
    copied: Vec<Message>,
    /// The answer continued, when the turn must append right after it (no other turn in
    /// between; otherwise it branches when recorded).
    continued_from: Option<String>,
}

impl Opened {
    fn continued(conversation: Conversation, history: Vec<Message>, from: Option<String>) -> Self {
        Self {
            conversation,
            history,
            new: false,
            copied: Vec::new(),
            continued_from: from,
        }
    }

    fn fresh(conversation: Conversation, new: bool) -> Self {
        Self {
            conversation,
            history: Vec::new(),
            new,
            copied: Vec::new(),
            continued_from: None,
        }
    }
}

/// The most messages of a conversation read to continue from (or branch at) an earlier answer.
pub(super) const BRANCH_MAX_MESSAGES: u32 = 10_000;

/// A session key another caller's conversation uses (with this agent).
fn session_taken(key: &str) -> Error {
    Error::conflict(
        "session_id",
        format!("the session id '{key}' is in use by another caller; choose another"),
    )
}

/// A whole answer as the events of a stream.
fn completion_events(c: Completion) -> CompletionStream {
    let mut events = Vec::with_capacity(c.tool_calls.len() + 2);
    if !c.content.is_empty() {
        events.push(Ok(StreamEvent::Delta(c.content)));
    }
    events.extend(
        c.tool_calls
            .into_iter()
            .map(|t| Ok(StreamEvent::ToolCall(t))),
    );
    events.push(Ok(StreamEvent::Done {
        usage: c.usage,
        finish_reason: c.finish_reason,
        model: c.model,
    }));
    Box::pin(futures_util::stream::iter(events))
}

/// One model call: streamed, or whole and replayed as events.
async fn open(
    routes: &Routes,
    request: &CompletionRequest,
    stream: bool,
) -> Result<(CompletionStream, ModelRef)> {
    if stream {
        routes.stream(request).await
    } else {
        let (c, model) = routes.complete(request).await?;
        Ok((completion_events(c), model))
    }
}

impl Produced {
    fn failed(model: &ModelRef, error: &Error, started: Instant) -> Self {
        Self {
            text: String::new(),
            tool_calls: Vec::new(),
            steps: Vec::new(),
            usage: None,
            model: model.clone(),
            status: MessageStatus::Incomplete,
            latency_ms: millis(started),
            error: Some(error.to_string()),
            annotations: Annotations::default(),
        }
    }
}

fn add_usage(total: Option<TokenUsage>, more: Option<TokenUsage>) -> Option<TokenUsage> {
    match (total, more) {
        (Some(a), Some(b)) => Some(TokenUsage::new(
            a.prompt_tokens.saturating_add(b.prompt_tokens),
            a.completion_tokens.saturating_add(b.completion_tokens),
        )),
        (a, b) => a.or(b),
    }
}

/// Gives every stored tool call a result: a turn cut while its tools ran would otherwise
/// store calls without results, a history no provider accepts.
fn answer_pending_calls(steps: &mut Vec<PromptMessage>) {
    let Some(last_call) = steps
        .iter()
        .rposition(|m| m.role == Role::Assistant && !m.tool_calls.is_empty())
    else {
        return;
    };
    let pending: Vec<String> = steps[last_call]
        .tool_calls
        .iter()
        .filter(|c| {
            !steps[last_call..]
                .iter()
                .any(|m| m.tool_call_id.as_deref() == Some(c.id.as_str()))
        })
        .map(|c| c.id.clone())
        .collect();
    for id in pending {
        steps.push(PromptMessage::tool_result(
            id,
            r#"{"error":"cancelled: the turn ended before the tool answered"}"#,
        ));
    }
}

enum Phase {
    Start,
    Streaming,
    Done,
}

/// The turn's state between events.
struct Driver {
    /// Counts the turn; ended with it (dropped unended: cancelled).
    meter: TurnMeter,
    /// A cluster agent's slot, released when the turn ends.
    slot: Option<Slot>,
    metrics: Metrics,
    /// When the current model call started.
    call_started: Instant,
    routes: Routes,
    /// The prompt; it grows with each tool step.
    request: CompletionRequest,
    stream: bool,
    upstream: Option<CompletionStream>,
    server_tools: ServerTools,
    client_names: Vec<String>,
    max_steps: u32,
    pending: VecDeque<TurnEvent>,
    phase: Phase,
    /// The current answer's text.
    text: String,
    /// The current answer's tool calls.
    calls: Vec<ToolCall>,
    steps: Vec<PromptMessage>,
    usage: Option<TokenUsage>,
    finish_reason: Option<String>,
    model: ModelRef,
    step_count: u32,
    /// Taken when the turn is recorded; still here on drop means "cut".
    recorder: Option<Recorder>,
    started: Instant,
    /// For the guardrails' judges.
    runtime: Runtime,
    /// The output guardrails, when the agent has some.
    guard: Option<OutputGuard>,
    /// The input guardrails that triggered (and let the turn go on).
    input_triggers: Vec<Trigger>,
    /// What the retrieval step gave the model (agents with knowledge).
    retrieval: Option<Retrieval>,
    /// Checked text not sent yet: the whole answer, when an output rule must see it whole.
    held: String,
    /// An output guardrail blocked the answer: `text` is the refusal.
    refused: bool,
}

impl Driver {
    /// The next event. Every await but the model stream's is boxed: this future lives inside
    /// the turn for the whole stream, sized by its largest await, and the rare ones (a tool
    /// step, recording, a failure, a guardrail's refusal) would otherwise make every open
    /// stream carry their state.
    async fn next_event(&mut self) -> Option<TurnEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            match self.phase {
                Phase::Start => {
                    self.phase = Phase::Streaming;
                    return Some(TurnEvent::Started);
                }
                Phase::Done => return None,
                Phase::Streaming => {}
            }
            let Some(upstream) = self.upstream.as_mut() else {
                Box::pin(self.fail(Error::Internal("the turn lost its model call".to_owned())))
                    .await;
                continue;
            };
            match upstream.next().await {
                Some(Ok(StreamEvent::Delta(delta))) => {
                    let delta = match self.guard.as_mut().map(|g| g.push(&delta)) {
                        None => delta,
                        Some(Release::Text(t)) => t,
                        Some(Release::Blocked(_)) => {
                            Box::pin(self.refuse()).await;
                            continue;
                        }
                    };
                    if delta.is_empty() {
                        continue;
                    }
                    self.text.push_str(&delta);
                    return Some(TurnEvent::TextDelta(delta));
                }
                Some(Ok(StreamEvent::ToolCall(call))) => {
                    let server = self.server_tools.runs(&call.name)
                        || !self.client_names.contains(&call.name);
                    self.calls.push(call.clone());
                    return Some(TurnEvent::ToolCall { call, server });
                }
                Some(Ok(StreamEvent::Done {
                    usage,
                    finish_reason,
                    ..
                })) => {
                    self.upstream = None;
                    self.metrics.provider_answered(
                        self.model.provider_id.as_str(),
                        self.call_started.elapsed(),
                    );
                    self.usage = add_usage(self.usage, usage);
                    self.finish_reason = finish_reason;
                    if Box::pin(self.flush_guard()).await {
                        Box::pin(self.answered()).await;
                    }
                }
                None => {
                    self.upstream = None;
                    self.metrics.provider_answered(
                        self.model.provider_id.as_str(),
                        self.call_started.elapsed(),
                    );
                    if Box::pin(self.flush_guard()).await {
                        Box::pin(self.answered()).await;
                    }
                }
                Some(Err(e)) => {
                    self.upstream = None;
                    self.metrics
                        .provider_failed(self.model.provider_id.as_str());
                    let error = provider_error(&self.model, e);
                    if let Some(recorder) = &self.recorder {
                        recorder.runtime.provider_failed(&error);
                    }
                    Box::pin(self.fail(error)).await;
                }
            }
        }
    }

    /// A model answer ended: the guard releases the text it held (sent now, or once the
    /// whole-answer rules passed). `false` when it blocked the answer (the turn is over).
    async fn flush_guard(&mut self) -> bool {
        let Some(guard) = self.guard.as_mut() else {
            return true;
        };
        match guard.flush() {
            Release::Text(t) if t.is_empty() => true,
            Release::Text(t) => {
                self.text.push_str(&t);
                if guard.holds_whole_answer() {
                    self.held.push_str(&t);
                } else {
                    self.pending.push_back(TurnEvent::TextDelta(t));
                }
                true
            }
            Release::Blocked(_) => {
                self.refuse().await;
                false
            }
        }
    }

    /// An output guardrail blocked the answer: the model call is dropped (cancelled), the
    /// answer becomes the refusal, and the turn finishes.
    async fn refuse(&mut self) {
        self.upstream = None;
        self.refused = true;
        self.held.clear();
        self.calls.clear();
        self.text = self
            .guard
            .as_ref()
            .map(|g| g.refusal().to_owned())
            .unwrap_or_default();
        self.finish_reason = Some("content_filter".to_owned());
        self.finish(Vec::new()).await;
    }

    /// Before a final answer is recorded: the output rules that judge a whole answer; then
    /// the text held for them is sent (or replaced by the refusal).
    async fn guard_final_answer(&mut self) {
        let Some(guard) = self.guard.as_mut() else {
            return;
        };
        if self.refused {
            return;
        }
        let rules = guard.whole_answer_rules();
        if !rules.is_empty() {
            let (triggers, blocked) =
                Box::pin(guard_whole_answer(&self.runtime, &rules, &self.text)).await;
            for t in triggers {
                guard.record(t);
            }
            if blocked.is_some() {
                self.refused = true;
                self.held.clear();
                self.text = guard.refusal().to_owned();
                self.finish_reason = Some("content_filter".to_owned());
                return;
            }
        }
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            self.pending.push_back(TurnEvent::TextDelta(held));
        }
    }

    /// Every guardrail that triggered so far, input then output.
    fn triggers(&self) -> Vec<Trigger> {
        let mut all = self.input_triggers.clone();
        if let Some(g) = &self.guard {
            all.extend(g.triggers().iter().cloned());
        }
        all
    }

    /// A model call ended: finish, or run the server-side calls and ask again.
    async fn answered(&mut self) {
        let calls = std::mem::take(&mut self.calls);
        // Calls of unknown tools are answered here with an error, like the agent's own.
        let (server, client): (Vec<ToolCall>, Vec<ToolCall>) = calls
            .iter()
            .cloned()
            .partition(|c| self.server_tools.runs(&c.name) || !self.client_names.contains(&c.name));
        if calls.is_empty() {
            return self.finish(Vec::new()).await;
        }
        if !client.is_empty() {
            // The caller runs its own calls and continues the turn. Calls of server-side
            // tools in the same answer are dropped (logged): the stored answer holds only the
            // calls the caller answers, so the history stays a valid prompt.
            if !server.is_empty() {
                tracing::info!(
                    dropped = server.len(),
                    "model called server-side and caller tools at once; only the caller's are kept"
                );
            }
            self.finish_reason = Some("tool_calls".to_owned());
            return self.finish(client).await;
        }
        self.step_count += 1;
        if self.step_count > self.max_steps {
            self.text = format!(
                "Stopped: the agent reached its limit of {} tool steps before answering.",
                self.max_steps
            );
            self.finish_reason = Some("max_tool_steps".to_owned());
            self.pending
                .push_back(TurnEvent::TextDelta(self.text.clone()));
            return self.finish(Vec::new()).await;
        }
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            self.pending.push_back(TurnEvent::TextDelta(held));
        }
        let assistant = PromptMessage::assistant_calls(std::mem::take(&mut self.text), calls);
        self.request.messages.push(assistant.clone());
        self.steps.push(assistant);
        let outputs = Box::pin(self.server_tools.run_all(&server)).await;
        for out in outputs {
            let result = PromptMessage::tool_result(out.call_id.clone(), out.output.clone());
            self.request.messages.push(result.clone());
            self.steps.push(result);
            self.pending.push_back(TurnEvent::ToolResult {
                call_id: out.call_id,
                name: out.name,
                output: out.output,
                is_error: out.is_error,
            });
        }
        self.call_started = Instant::now();
        match Box::pin(open(&self.routes, &self.request, self.stream)).await {
            Ok((upstream, model)) => {
                self.upstream = Some(upstream);
                self.model = model;
            }
            Err(e) => {
                if let Error::Provider { provider_id, .. } = &e {
                    self.metrics.provider_failed(provider_id);
                }
                self.fail(e).await;
            }
        }
    }

    fn produced(&mut self, tool_calls: Vec<ToolCall>, status: MessageStatus) -> Produced {
        answer_pending_calls(&mut self.steps);
        let annotations = Annotations {
            guardrails: self.triggers(),
            citations: self
                .retrieval
                .as_ref()
                .map(Retrieval::citations)
                .unwrap_or_default(),
            retrieval_ms: self.retrieval.as_ref().map(|r| r.elapsed_ms),
        };
        Produced {
            annotations,
            text: std::mem::take(&mut self.text),
            tool_calls,
            steps: std::mem::take(&mut self.steps),
            usage: self.usage,
            model: self.model.clone(),
            status,
            latency_ms: millis(self.started),
            error: None,
        }
    }

    async fn finish(&mut self, tool_calls: Vec<ToolCall>) {
        self.guard_final_answer().await;
        let tool_calls = if self.refused { Vec::new() } else { tool_calls };
        self.phase = Phase::Done;
        let Some(recorder) = self.recorder.take() else {
            return;
        };
        let produced = self.produced(tool_calls, MessageStatus::Complete);
        let text = produced.text.clone();
        let calls = produced.tool_calls.clone();
        let steps = produced.steps.clone();
        let (usage, model, latency_ms) =
            (produced.usage, produced.model.clone(), produced.latency_ms);
        let finish_reason = self.finish_reason.clone();
        let guardrails = produced.annotations.guardrails.clone();
        let citations = produced.annotations.citations.clone();
        let retrieval_ms = produced.annotations.retrieval_ms;
        let refusal = self.refused.then(|| text.clone());
        let event = match Box::pin(recorder.record(produced, finish_reason.clone())).await {
            Ok(Recorded { chat, run }) => TurnEvent::Finished(Box::new(TurnOutcome {
                text,
                tool_calls: calls,
                steps,
                usage,
                finish_reason,
                model,
                latency_ms,
                chat,
                run,
                refusal,
                guardrails,
                citations,
                retrieval_ms,
            })),
            Err(e) => TurnEvent::Failed(e),
        };
        let status = match event {
            TurnEvent::Finished(_) => TurnStatus::Success,
            _ => TurnStatus::Error,
        };
        self.end_meter(status);
        self.pending.push_back(event);
    }

    /// Counts the turn's end and frees its slot.
    fn end_meter(&mut self, status: TurnStatus) {
        let usage = self.usage.map(|u| {
            (
                self.model.provider_id.as_str(),
                self.model.model_name.as_str(),
                u,
            )
        });
        self.meter.end(status, usage);
        self.slot = None;
    }

    async fn fail(&mut self, error: Error) {
        self.phase = Phase::Done;
        self.end_meter(TurnStatus::Error);
        if let Some(recorder) = self.recorder.take() {
            let mut produced = self.produced(Vec::new(), MessageStatus::Incomplete);
            produced.error = Some(error.to_string());
            if recorder.keeps(&produced)
                && let Err(e) = Box::pin(recorder.record(produced, None)).await
            {
                tracing::error!(error = %e, "could not record a failed turn");
            }
        }
        self.pending.push_back(TurnEvent::Failed(error));
    }
}

impl Drop for Driver {
    /// A turn dropped before its end was cut by its consumer: what it produced is recorded
    /// in the background.
    fn drop(&mut self) {
        let Some(recorder) = self.recorder.take() else {
            return;
        };
        let mut produced = self.produced(Vec::new(), MessageStatus::Incomplete);
        produced.error = Some("client disconnected".to_owned());
        if !recorder.keeps(&produced) {
            return;
        }
        tracing::info!(
            chars = produced.text.len(),
            "turn cut by its consumer; upstream cancelled"
        );
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = recorder.record(produced, None).await {
                        tracing::error!(error = %e, "could not record a cut turn");
                    }
                });
            }
            Err(_) => tracing::warn!("a cut turn could not be recorded: no async runtime"),
        }
    }
}
