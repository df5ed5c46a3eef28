//! What a turn stores. A turn records itself exactly once, whichever way it ends:
//!
//! | how it ended | conversation turn | run-log entry |
//! |---|---|---|
//! | finished | input, tool steps and answer, `complete` | `succeeded` with the answer |
//! | cut (dropped by its consumer) or failed after text or tool steps | the same, answer `incomplete` | `failed` with the text so far and the reason |
//! | failed before anything was produced | nothing | `failed` with the reason |

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::Runtime;
use super::prompt::newest;
use super::tails::Tail;
use super::turn::ChatTurn;
use crate::agent::{Agent, ModelRef};
use crate::conversation::{
    Annotations, Conversation, MESSAGE_ID_PREFIX, Message, MessageStatus, Run, RunStatus,
};
use crate::error::Result;
use crate::ids::new_id;
use crate::llm::{PromptMessage, Role, TokenUsage, ToolCall};

/// Where a turn is remembered.
pub(super) enum Target {
    /// A conversation with an agent.
    Conversation {
        agent: Arc<Agent>,
        version: Option<u32>,
        /// Shared with the turn's start; copied when the turn is recorded.
        conversation: Arc<Conversation>,
        /// Not stored yet: stored with the turn (one write per turn).
        new_conversation: bool,
        /// A branch's copy of the earlier messages, stored before the turn's own.
        copied: Vec<Message>,
        /// The answer this turn continues right after: if another turn was stored after it
        /// meanwhile, this one becomes a branch instead of merging into that line.
        continued_from: Option<String>,
        /// The history the turn continued (when it continues an answer and tails are kept):
        /// with the turn's messages, the conversation's new tail.
        tail_before: Option<Vec<Message>>,
        /// `false`: answered, then forgotten.
        store: bool,
    },
    /// The run log.
    Run {
        run_id: String,
        preamble: String,
        prompt: String,
        log_meta: Map<String, Value>,
        /// Written before the answer is returned (one-shot runs), else queued.
        log_now: bool,
    },
}

/// What the turn produced, to be recorded.
pub(super) struct Produced {
    /// The final answer's text (so far).
    pub text: String,
    /// Calls left for the caller to run.
    pub tool_calls: Vec<ToolCall>,
    /// Server-side tool calls and their results, in order.
    pub steps: Vec<PromptMessage>,
    pub usage: Option<TokenUsage>,
    pub model: ModelRef,
    pub status: MessageStatus,
    pub latency_ms: u64,
    /// Why it failed, for the run log.
    pub error: Option<String>,
    /// Noted on the answer (the guardrails that triggered).
    pub annotations: Annotations,
}

impl Produced {
    /// Whether anything reached the consumer that a cut should keep.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.steps.is_empty() && self.tool_calls.is_empty()
    }
}

/// Records a turn once.
pub(super) struct Recorder {
    pub runtime: Runtime,
    pub target: Target,
    /// The turn's new messages (a conversation's input).
    pub input: Vec<PromptMessage>,
    pub answer_id: String,
    pub started_at: DateTime<Utc>,
}

/// What was recorded.
pub(super) struct Recorded {
    pub chat: Option<ChatTurn>,
    pub run: Option<Run>,
}

impl Recorder {
    /// Whether a cut or failure with `produced` leaves anything to record.
    pub fn keeps(&self, produced: &Produced) -> bool {
        match &self.target {
            Target::Conversation { store, .. } => *store && !produced.is_empty(),
            Target::Run { .. } => true,
        }
    }

    /// Stores what the turn produced.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn record(self, p: Produced, finish_reason: Option<String>) -> Result<Recorded> {
        match self.target {
            Target::Conversation {
                agent,
                version,
                conversation,
                new_conversation,
                copied,
                continued_from,
                tail_before,
                store,
            } => {
                let runtime = self.runtime;
                // The turn's messages are dated when they are stored, just before its answer,
                // so that turns answered in parallel in one conversation stay whole (question,
                // steps, answer) in the order they finished, and a history read sends each
                // answer right after its own question.
                let before_answer =
                    i64::try_from(self.input.len() + p.steps.len()).unwrap_or(i64::MAX / 2);
                let answered_at = runtime
                    .ports
                    .clock
                    .now()
                    .max(self.started_at + chrono::Duration::microseconds(before_answer));
                let mut at = answered_at - chrono::Duration::microseconds(before_answer);
                let mut next = |role: Role, m: PromptMessage| {
                    let created_at = at;
                    at += chrono::Duration::microseconds(1);
                    Message {
                        id: new_id(MESSAGE_ID_PREFIX),
                        conversation_id: conversation.id.clone(),
                        agent_id: agent.id.clone(),
                        role,
                        content: m.content,
                        tool_calls: m.tool_calls,
                        tool_call_id: m.tool_call_id,
                        usage: None,
                        latency_ms: None,
                        model: None,
                        agent_version: None,
                        status: MessageStatus::Complete,
                        created_at,
                        annotations: Annotations::default(),
                    }
                };
                let input: Vec<Message> = self.input.into_iter().map(|m| next(m.role, m)).collect();
                let steps: Vec<Message> = p
                    .steps
                    .into_iter()
                    .map(|m| {
                        let role = m.role;
                        Message {
                            model: (role == Role::Assistant).then(|| p.model.clone()),
                            agent_version: version,
                            ..next(role, m)
                        }
                    })
                    .collect();
                let base = next(
                    Role::Assistant,
                    PromptMessage::assistant_calls(p.text, p.tool_calls),
                );
                let answer = Message {
                    id: self.answer_id,
                    usage: p.usage,
                    latency_ms: Some(p.latency_ms),
                    model: Some(p.model),
                    agent_version: version,
                    status: p.status,
                    created_at: answered_at,
                    annotations: p.annotations,
                    ..base
                };
                let mut conversation = Arc::unwrap_or_clone(conversation);
                let (mut input, mut steps, mut answer) = (input, steps, answer);
                if store {
                    let mut all = Vec::with_capacity(copied.len() + input.len() + steps.len() + 1);
                    all.extend(copied);
                    all.extend(input.iter().cloned());
                    all.extend(steps.iter().cloned());
                    all.push(answer.clone());
                    let read_count = conversation.message_count;
                    conversation.message_count += all.len() as u64;
                    conversation.updated_at = answered_at;
                    let store = &runtime.ports.conversations;
                    let generation = runtime.tails.generation();
                    // The stored conversation's tail, when it is known exactly: all of a new
                    // conversation, or a continuation the store accepted at the count read.
                    let mut new_tail = None;
                    if new_conversation {
                        store.start_conversation(&conversation, &all).await?;
                        new_tail = runtime.tails.is_on().then_some(all);
                    } else if let Some(from) = continued_from {
                        if store.append_messages_if(&all, read_count).await? {
                            new_tail = tail_before.map(|mut before| {
                                before.extend(all);
                                before
                            });
                        } else {
                            // Another turn continued the same answer first: branch.
                            conversation = runtime
                                .branch_with(&conversation, &from, &mut all, answered_at)
                                .await?;
                            let moved =
                                |m: &mut Message| m.conversation_id.clone_from(&conversation.id);
                            input.iter_mut().for_each(moved);
                            steps.iter_mut().for_each(moved);
                            moved(&mut answer);
                        }
                    } else {
                        store.append_messages(&all).await?;
                    }
                    if let Some(messages) = new_tail {
                        let tail = Tail {
                            conversation: conversation.clone(),
                            messages: newest(messages, runtime.settings.history_max_messages),
                        };
                        runtime.tails.keep(tail, generation);
                    }
                }
                Ok(Recorded {
                    chat: Some(ChatTurn {
                        agent,
                        version,
                        conversation,
                        input,
                        steps,
                        answer,
                        finish_reason,
                    }),
                    run: None,
                })
            }
            Target::Run {
                run_id,
                preamble,
                prompt,
                log_meta,
                log_now,
            } => {
                let produced_text = !p.text.is_empty() || p.error.is_none();
                let run = Run {
                    id: run_id,
                    preamble,
                    prompt,
                    model: p.model,
                    response: produced_text.then_some(p.text),
                    usage: p.usage,
                    latency_ms: p.latency_ms,
                    status: if p.error.is_some() {
                        RunStatus::Failed
                    } else {
                        RunStatus::Succeeded
                    },
                    error: p.error,
                    log_meta,
                    created_at: self.started_at,
                };
                let runs = &self.runtime.ports.runs;
                if log_now {
                    runs.insert_run(&run).await?;
                } else {
                    runs.log_run(&run).await?;
                }
                Ok(Recorded {
                    chat: None,
                    run: Some(run),
                })
            }
        }
    }
}

impl Runtime {
    /// Stores `turn` (the messages of a turn that continued answer `from` of `line`) as a
    /// new conversation holding a copy of `line` up to `from`, then the turn; `turn`'s
    /// messages are moved into it. Returns the new conversation.
    async fn branch_with(
        &self,
        line: &Conversation,
        from: &str,
        turn: &mut [Message],
        answered_at: DateTime<Utc>,
    ) -> Result<Conversation> {
        let Some((earlier, _)) = self
            .messages_up_to(&line.id, from, super::turn::BRANCH_MAX_MESSAGES)
            .await?
        else {
            return Err(crate::error::Error::not_found("conversation", from));
        };
        let (mut branch, mut all) =
            super::branch(line, &earlier, line.created_by.clone(), answered_at);
        branch.message_count = (all.len() + turn.len()) as u64;
        for m in turn.iter_mut() {
            m.conversation_id.clone_from(&branch.id);
        }
        all.extend(turn.iter().cloned());
        self.ports
            .conversations
            .start_conversation(&branch, &all)
            .await?;
        Ok(branch)
    }
}
