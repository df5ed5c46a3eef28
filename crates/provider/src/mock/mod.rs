//! The built-in scripted provider (kind `mock`): offline default and test double.
//!
//! Model `echo` (and any name not below) answers with the last user message, or, as
//! [`reply::echo`] reads the request, with the tool calls a `/call` or `/loop` message asks
//! for, with what the tools said after a call, or with `{"echo":…}` when JSON is asked for.
//! Names script other behaviours: `error-<status>` (that status's error; `error-429` asks to
//! retry after 1 s), `slow-<ms>` (echo after `ms`, and `ms` between streamed words), `cut`
//! (stream half the words, then [`ProviderError::Unavailable`]), `instructions` (answer with
//! the system instructions sent, or `(no instructions)`: a model that follows its prompt to
//! the letter). A [`MockScript`] queue, when not empty, wins
//! over the model name. Answers report `mock:<model>` as their model.
//!
//! Embeddings: model `lexical` ([`embed`]: a hashed bag of words, a lexical stand-in, not a
//! semantic model); `error-<status>` fails with that status; other names are refused. The
//! script queue is not read by embeddings (it scripts answers).

mod embed;
mod reply;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use agentry_domain::llm::{
    Completion, CompletionRequest, CompletionStream, LlmClient, ProviderError, Role, StreamEvent,
    TokenUsage, ToolCall,
};
use async_trait::async_trait;
use futures_util::stream;

use crate::errors::from_status;
use crate::text::{piece, piece_ends, word_count};
use reply::Reply;

/// One scripted answer of the mock.
#[derive(Debug, Clone, PartialEq)]
pub enum MockReply {
    /// Answer this text.
    Text(String),
    /// Call these tools (finish reason `tool_calls`).
    ToolCalls(Vec<ToolCall>),
    /// Fail with this error (before the first streamed event).
    Error(ProviderError),
    /// Wait (before answering, and between streamed words), then reply as the inner one.
    Delay(Duration, Box<MockReply>),
}

/// A queue of scripted replies shared by every clone (tests keep one, the mock another);
/// replies are consumed first-in-first-out, one per call, before model-name behaviour.
#[derive(Debug, Clone, Default)]
pub struct MockScript {
    queue: Arc<Mutex<VecDeque<MockReply>>>,
}

impl MockScript {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<MockReply>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a reply.
    pub fn push(&self, reply: MockReply) {
        self.queue().push_back(reply);
    }

    /// Queues a text answer.
    pub fn push_text(&self, text: impl Into<String>) {
        self.push(MockReply::Text(text.into()));
    }

    /// Queues a failure.
    pub fn push_error(&self, error: ProviderError) {
        self.push(MockReply::Error(error));
    }

    /// Replies still queued.
    pub fn len(&self) -> usize {
        self.queue().len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue().is_empty()
    }

    /// Drops every queued reply.
    pub fn clear(&self) {
        self.queue().clear();
    }

    fn pop(&self) -> Option<MockReply> {
        self.queue().pop_front()
    }
}

/// The mock provider's client.
#[derive(Debug, Clone, Default)]
pub struct MockClient {
    script: MockScript,
}

impl MockClient {
    /// A mock reading `script` first.
    pub fn new(script: MockScript) -> Self {
        Self { script }
    }

    fn plan(&self, model: &str) -> Plan {
        self.script
            .pop()
            .map_or_else(|| Plan::from_model(model), Plan::from_reply)
    }
}

/// What one call does.
#[derive(Debug)]
enum Outcome {
    Echo,
    Text(String),
    ToolCalls(Vec<ToolCall>),
    Error(ProviderError),
    Cut,
    Instructions,
}

#[derive(Debug)]
struct Plan {
    outcome: Outcome,
    delay: Duration,
}

impl Plan {
    fn from_reply(reply: MockReply) -> Self {
        match reply {
            MockReply::Text(text) => Self::now(Outcome::Text(text)),
            MockReply::ToolCalls(calls) => Self::now(Outcome::ToolCalls(calls)),
            MockReply::Error(error) => Self::now(Outcome::Error(error)),
            MockReply::Delay(delay, inner) => Self {
                delay,
                ..Self::from_reply(*inner)
            },
        }
    }

    fn from_model(model: &str) -> Self {
        if let Some(status) = model.strip_prefix("error-").and_then(|s| s.parse().ok()) {
            return Self::now(Outcome::Error(status_error(status)));
        }
        if let Some(ms) = model.strip_prefix("slow-").and_then(|s| s.parse().ok()) {
            return Self {
                outcome: Outcome::Echo,
                delay: Duration::from_millis(ms),
            };
        }
        if model == "cut" {
            return Self::now(Outcome::Cut);
        }
        if model == "instructions" {
            return Self::now(Outcome::Instructions);
        }
        Self::now(Outcome::Echo)
    }

    fn now(outcome: Outcome) -> Self {
        Self {
            outcome,
            delay: Duration::ZERO,
        }
    }
}

/// The error a real provider would give for `status`.
fn status_error(status: u16) -> ProviderError {
    let retry_after = (status == 429).then_some(Duration::from_secs(1));
    let message = format!("the mock answered {status}, as its model name asked");
    from_status(status, retry_after, message)
}

fn last_user_text(request: &CompletionRequest) -> String {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

fn usage(request: &CompletionRequest, answer: &Reply) -> TokenUsage {
    let prompt = request
        .messages
        .iter()
        .map(|m| word_count(&m.content))
        .sum();
    let calls: u32 = answer
        .calls
        .iter()
        .map(|c| word_count(&c.name) + word_count(&c.arguments))
        .sum();
    TokenUsage::new(prompt, word_count(&answer.text) + calls)
}

/// `tool_calls` when the answer calls tools, else `stop`.
fn finish_reason(answer: &Reply) -> String {
    if answer.calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    }
    .to_owned()
}

/// The answer, or the error to fail with, once the plan's delay has passed; `true` when the
/// answer is to be cut.
fn answer(outcome: Outcome, request: &CompletionRequest) -> Result<(Reply, bool), ProviderError> {
    let text = |text| Reply {
        text,
        calls: Vec::new(),
    };
    match outcome {
        Outcome::Echo => Ok((reply::echo(request), false)),
        Outcome::Text(t) => Ok((text(t), false)),
        Outcome::ToolCalls(calls) => Ok((
            Reply {
                text: String::new(),
                calls,
            },
            false,
        )),
        Outcome::Cut => Ok((text(last_user_text(request)), true)),
        Outcome::Instructions => {
            let system: Vec<&str> = request
                .messages
                .iter()
                .filter(|m| m.role == Role::System)
                .map(|m| m.content.as_str())
                .collect();
            Ok((
                text(if system.is_empty() {
                    "(no instructions)".to_owned()
                } else {
                    system.join("\n\n")
                }),
                false,
            ))
        }
        Outcome::Error(error) => Err(error),
    }
}

async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

#[async_trait]
impl LlmClient for MockClient {
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        let plan = self.plan(&request.model);
        pause(plan.delay).await;
        let (reply, cut) = answer(plan.outcome, &request)?;
        if cut {
            return Err(ProviderError::Unavailable(
                "the mock cut the answer".to_owned(),
            ));
        }
        Ok(Completion {
            usage: Some(usage(&request, &reply)),
            finish_reason: Some(finish_reason(&reply)),
            content: reply.text,
            tool_calls: reply.calls,
            model: format!("mock:{}", request.model),
        })
    }

    async fn stream(&self, request: CompletionRequest) -> Result<CompletionStream, ProviderError> {
        let plan = self.plan(&request.model);
        pause(plan.delay).await;
        let (reply, cut) = answer(plan.outcome, &request)?;
        let gap = plan.delay;
        let paced = stream::unfold(
            Words::new(&request, reply, cut),
            move |mut words| async move {
                let event = words.next_event()?;
                if words.next > 1 {
                    pause(gap).await;
                }
                Some((event, words))
            },
        );
        Ok(Box::pin(paced))
    }

    async fn embed(&self, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        if let Some(status) = model
            .strip_prefix("error-")
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (400..=599).contains(s))
        {
            return Err(status_error(status));
        }
        if model != agentry_domain::provider::MOCK_EMBEDDING_MODEL {
            return Err(ProviderError::InvalidRequest {
                status: 404,
                message: format!(
                    "the mock has no embedding model '{model}' (it has '{}')",
                    agentry_domain::provider::MOCK_EMBEDDING_MODEL
                ),
            });
        }
        Ok(inputs.iter().map(|t| embed::embed(t)).collect())
    }
}

/// A stream's words, made one at a time (an open stream holds its text and the word
/// offsets, not a prepared event per word): the tool calls (one `ToolCall` each), one `Delta`
/// per word (whitespace kept), then `Done`; a cut stream stops half-way with an error.
struct Words {
    calls: std::vec::IntoIter<ToolCall>,
    text: String,
    ends: Vec<usize>,
    /// How many words are sent (all, or half when cut).
    sent: usize,
    /// The index of the next event.
    next: usize,
    last: Option<Result<StreamEvent, ProviderError>>,
}

impl Words {
    fn new(request: &CompletionRequest, reply: Reply, cut: bool) -> Self {
        let ends = piece_ends(&reply.text);
        let sent = if cut {
            ends.len().div_ceil(2)
        } else {
            ends.len()
        };
        let last = if cut {
            Err(ProviderError::Unavailable(
                "the mock cut the stream".to_owned(),
            ))
        } else {
            Ok(StreamEvent::Done {
                usage: Some(usage(request, &reply)),
                finish_reason: Some(finish_reason(&reply)),
                model: format!("mock:{}", request.model),
            })
        };
        Self {
            calls: reply.calls.into_iter(),
            text: reply.text,
            ends,
            sent,
            next: 0,
            last: Some(last),
        }
    }

    fn next_event(&mut self) -> Option<Result<StreamEvent, ProviderError>> {
        if let Some(call) = self.calls.next() {
            return Some(Ok(StreamEvent::ToolCall(call)));
        }
        let i = self.next;
        self.next += 1;
        if i < self.sent {
            let word = piece(&self.text, &self.ends, i);
            return Some(Ok(StreamEvent::Delta(word.to_owned())));
        }
        self.last.take()
    }
}
