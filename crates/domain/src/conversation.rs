//! Conversations and their messages, and one-shot runs.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::agent::{AgentId, ModelRef};
use crate::error::Invalid;
use crate::llm::{Role, TokenUsage, ToolCall};

/// Prefix of conversation ids.
pub const CONVERSATION_ID_PREFIX: &str = "conv";
/// Prefix of message ids.
pub const MESSAGE_ID_PREFIX: &str = "msg";
/// Prefix of generated run ids.
pub const RUN_ID_PREFIX: &str = "run";

/// Checks a caller-chosen identifier (`session-123`, `conv-456`, `eval_123e…`): 1 to 128
/// characters of ASCII letters, digits, `-`, `_`, `.` and `:`.
///
/// # Errors
/// [`Invalid`] naming `field`.
pub fn parse_external_id(field: &str, value: &str) -> Result<String, Invalid> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(Invalid::new(
            field,
            "must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.' or ':'",
        ))
    }
}

/// A conversation between a caller and an agent. Its `session_key` is the id the caller
/// chose (`session_id` / `conversation_id`), unique per agent; when the caller chose none it
/// equals `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// `conv_…`.
    pub id: String,
    /// The agent.
    pub agent_id: AgentId,
    /// The caller's id for it, unique per agent.
    pub session_key: String,
    /// What the caller said about the context when it opened (`user_id`…).
    pub context: Map<String, Value>,
    /// How many messages it holds.
    pub message_count: u64,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When its last message was stored.
    pub updated_at: DateTime<Utc>,
    /// Who opened it ([`crate::auth::Principal::created_by`]): a user's id, `key:<id>`, or
    /// `anonymous-dev`; `None` for a trusted caller (an embedder) and for conversations stored
    /// before owners were recorded. Callers that may only invoke agents see their own
    /// conversations only.
    pub created_by: Option<String>,
}

/// How a stored message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    /// Whole.
    Complete,
    /// Cut short: the client went away while it streamed, or the upstream stream broke.
    Incomplete,
}

impl MessageStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Incomplete => "incomplete",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "complete" => Some(Self::Complete),
            "incomplete" => Some(Self::Incomplete),
            _ => None,
        }
    }
}

/// One stored message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `msg_…`.
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The agent.
    pub agent_id: AgentId,
    /// Who said it.
    pub role: Role,
    /// What was said (a tool message: the tool's output).
    pub content: String,
    /// The tool calls an assistant message made.
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
    /// Tokens spent producing it (assistant messages).
    pub usage: Option<TokenUsage>,
    /// Time from request to answer, in milliseconds (assistant messages).
    pub latency_ms: Option<u64>,
    /// The model that answered (assistant messages).
    pub model: Option<ModelRef>,
    /// The agent version that answered, when a published version served.
    pub agent_version: Option<u32>,
    /// Whether it is whole.
    pub status: MessageStatus,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// What the turn noted about it (an answer: the guardrails that triggered).
    pub annotations: Annotations,
}

/// What a turn notes on its answer, stored with it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Annotations {
    /// Every guardrail that triggered in the turn (input and output), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<crate::guardrail::Trigger>,
    /// The knowledge passages the answer was given, in their marker order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<crate::knowledge::Citation>,
    /// Time the turn spent retrieving them, in milliseconds (turns of agents with knowledge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval_ms: Option<u64>,
}

impl Annotations {
    /// Whether there is nothing to note.
    pub fn is_empty(&self) -> bool {
        self.guardrails.is_empty() && self.citations.is_empty() && self.retrieval_ms.is_none()
    }
}

/// Which messages a history query returns.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageQuery {
    /// The agent's messages.
    pub agent_id: AgentId,
    /// Only this conversation (by the caller's session key).
    pub session_key: Option<String>,
    /// Only messages stored strictly before this time.
    pub before: Option<DateTime<Utc>>,
    /// At most this many (the newest ones).
    pub limit: u32,
}

impl From<Message> for crate::llm::PromptMessage {
    /// A stored message as it is sent to a model again.
    fn from(m: Message) -> Self {
        Self {
            role: m.role,
            content: m.content,
            tool_calls: m.tool_calls,
            tool_call_id: m.tool_call_id,
        }
    }
}

impl From<&Message> for crate::llm::PromptMessage {
    fn from(m: &Message) -> Self {
        Self::from(m.clone())
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// The model answered.
    Succeeded,
    /// The provider failed.
    Failed,
}

impl RunStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A logged one-shot call (seed 000).
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The caller's `run_id`, or `run_…`.
    pub id: String,
    /// The system prompt.
    pub preamble: String,
    /// The user prompt.
    pub prompt: String,
    /// The model asked.
    pub model: ModelRef,
    /// The answer, when it succeeded.
    pub response: Option<String>,
    /// Tokens spent.
    pub usage: Option<TokenUsage>,
    /// Time spent, in milliseconds.
    pub latency_ms: u64,
    /// How it ended.
    pub status: RunStatus,
    /// The error, when it failed.
    pub error: Option<String>,
    /// The caller's `log_meta` (`user_id`, `session_id`, `component`, anything else).
    pub log_meta: Map<String, Value>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl Run {
    /// A string field of `log_meta`.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.log_meta.get(key).and_then(Value::as_str)
    }
}

/// Which runs a list returns; every given criterion must hold (matched on `log_meta`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// `log_meta.user_id`.
    pub user_id: Option<String>,
    /// `log_meta.session_id`.
    pub session_id: Option<String>,
    /// `log_meta.component`.
    pub component: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::parse_external_id;

    #[test]
    fn external_ids() {
        assert!(parse_external_id("session_id", "session-123").is_ok());
        assert!(parse_external_id("run_id", "eval_123e4567-e89b-12d3-a456-426614174000").is_ok());
        assert!(parse_external_id("session_id", "").is_err());
        assert!(parse_external_id("session_id", "a b").is_err());
        assert!(parse_external_id("session_id", &"x".repeat(129)).is_err());
    }
}
