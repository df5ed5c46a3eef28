//! The LLM provider port: one completion call and one streaming call, with typed errors.
//! Adapters (OpenAI-compatible, Anthropic, the scripted mock) live in the provider crate.
//!
//! Cancellation: dropping the future returned by [`LlmClient::complete`], or the stream
//! returned by [`LlmClient::stream`], MUST abort the upstream call (close the connection), so a
//! client that goes away stops the spend.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;
use serde_json::{Map, Value};

use crate::provider::Provider;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions.
    System,
    /// The caller.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call, answering an assistant's call by its id.
    Tool,
}

impl Role {
    /// The wire spelling (`system`, `user`, `assistant`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "system" | "developer" => Some(Self::System),
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            "tool" => Some(Self::Tool),
            _ => None,
        }
    }
}

/// A function call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The call's id, chosen by the model's provider (`call_…`, `toolu_…`); a tool result
    /// answers it by this id.
    pub id: String,
    /// The function's name.
    pub name: String,
    /// The arguments as the model wrote them: JSON text, not necessarily valid.
    pub arguments: String,
}

/// One message of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMessage {
    /// Who said it.
    pub role: Role,
    /// What was said (for a tool message: the tool's output).
    pub content: String,
    /// The calls an assistant message made (empty otherwise).
    pub tool_calls: Vec<ToolCall>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
}

impl PromptMessage {
    /// A message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// An assistant message that calls tools (its text may be empty).
    pub fn assistant_calls(content: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls: calls,
            ..Self::new(Role::Assistant, content)
        }
    }

    /// A tool's result for the call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::new(Role::Tool, content)
        }
    }
}

/// A function the model may call: offered to it with the request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    /// The function's name (`^[a-zA-Z0-9_-]{1,64}$`).
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// Its arguments as a JSON Schema object.
    pub parameters: Value,
    /// OpenAI's strict schema adherence, passed through when set.
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool.
    None,
    /// At least one tool.
    Required,
    /// This function.
    Function(String),
}

/// The shape of the answer's text.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// The schema's name.
        name: String,
        /// What the schema is for.
        description: Option<String>,
        /// The JSON Schema.
        schema: Value,
        /// OpenAI's strict adherence, when set.
        strict: Option<bool>,
    },
}

/// What to ask a model. Optional fields left at their default are not sent; an adapter whose
/// provider has no equivalent of a set field says so in its documentation (docs/providers.md).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompletionRequest {
    /// The model's name at the provider (`gpt-4o`), not `provider/model`.
    pub model: String,
    /// The conversation, oldest first; system messages first.
    pub messages: Vec<PromptMessage>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Answer length limit.
    pub max_tokens: Option<u32>,
    /// Functions the model may call.
    pub tools: Vec<ToolDefinition>,
    /// Whether and which tool the model must call.
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools in one answer.
    pub parallel_tool_calls: Option<bool>,
    /// The shape of the answer.
    pub response_format: Option<ResponseFormat>,
    /// Sequences that end the answer (at most 4).
    pub stop: Vec<String>,
    /// Best-effort deterministic sampling.
    pub seed: Option<i64>,
    /// Presence penalty (-2 to 2).
    pub presence_penalty: Option<f64>,
    /// Frequency penalty (-2 to 2).
    pub frequency_penalty: Option<f64>,
    /// Token id → bias (-100 to 100).
    pub logit_bias: Option<Map<String, Value>>,
    /// The end user, for the provider's abuse monitoring.
    pub user: Option<String>,
}

/// Tokens spent by one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Tokens of the prompt.
    pub prompt_tokens: u32,
    /// Tokens of the answer.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

impl TokenUsage {
    /// Usage with the total computed.
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

/// A finished answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The answer's text.
    pub content: String,
    /// The tool calls the model made (then `finish_reason` is usually `tool_calls`).
    pub tool_calls: Vec<ToolCall>,
    /// Tokens spent; `None` when the provider did not say.
    pub usage: Option<TokenUsage>,
    /// Why the answer ended (`stop`, `length`, `content_filter`…), normalised to OpenAI's words.
    pub finish_reason: Option<String>,
    /// The model that answered, as the provider reported it.
    pub model: String,
}

/// One event of a streamed answer. A well-formed stream is zero or more `Delta`s and
/// `ToolCall`s then one `Done`; an error ends it early.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More text.
    Delta(String),
    /// A whole tool call: adapters gather a call's streamed fragments and emit it once its
    /// arguments are complete (at the latest just before `Done`).
    ToolCall(ToolCall),
    /// The end, with what the provider reported.
    Done {
        /// Tokens spent, when reported.
        usage: Option<TokenUsage>,
        /// Why the answer ended.
        finish_reason: Option<String>,
        /// The model that answered.
        model: String,
    },
}

/// A streamed answer.
pub type CompletionStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// Why a provider call failed. Messages come from the upstream (never credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The upstream refused the credential (401/403).
    #[error("the provider refused the credential (status {status}): {message}")]
    Unauthorized {
        /// Upstream status.
        status: u16,
        /// Upstream message.
        message: String,
    },
    /// The upstream is rate limiting (429).
    #[error("the provider is rate limiting: {message}")]
    RateLimited {
        /// How long the upstream asked to wait, when it said.
        retry_after: Option<Duration>,
        /// Upstream message.
        message: String,
    },
    /// No answer in time.
    #[error("the provider did not answer in time ({0:?})")]
    Timeout(Duration),
    /// The upstream answered with an error status.
    #[error("the provider answered {status}: {message}")]
    Upstream {
        /// Upstream status.
        status: u16,
        /// Upstream message.
        message: String,
    },
    /// The upstream could not be reached, or the connection broke.
    #[error("the provider is unreachable: {0}")]
    Unavailable(String),
    /// The upstream answered with a success status, but its answer could not be read (not
    /// the wire format, no choices…). Not retried: the same request would get the same answer.
    #[error("the provider answered {status} but its answer could not be read: {message}")]
    Malformed {
        /// Upstream status (a success).
        status: u16,
        /// What could not be read.
        message: String,
    },
    /// The upstream rejected the request as invalid (400/404/422).
    #[error("the provider rejected the request (status {status}): {message}")]
    InvalidRequest {
        /// Upstream status.
        status: u16,
        /// Upstream message.
        message: String,
    },
}

impl ProviderError {
    /// Whether trying again (after a pause) may succeed: rate limits, timeouts, 5xx and
    /// connection failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Timeout(_) | Self::Unavailable(_) => true,
            Self::Upstream { status, .. } => *status >= 500,
            Self::Unauthorized { .. } | Self::InvalidRequest { .. } | Self::Malformed { .. } => {
                false
            }
        }
    }

    /// The upstream HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { status, .. }
            | Self::Upstream { status, .. }
            | Self::InvalidRequest { status, .. }
            | Self::Malformed { status, .. } => Some(*status),
            Self::RateLimited { .. } => Some(429),
            Self::Timeout(_) | Self::Unavailable(_) => None,
        }
    }
}

/// A client of one provider.
#[async_trait]
pub trait LlmClient: Send + Sync {
    /// Asks for a whole answer.
    ///
    /// # Errors
    /// [`ProviderError`] as classified by the adapter.
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError>;

    /// Asks for a streamed answer. Errors before the first event are returned here; later
    /// ones end the stream.
    ///
    /// # Errors
    /// [`ProviderError`] as classified by the adapter.
    async fn stream(&self, request: CompletionRequest) -> Result<CompletionStream, ProviderError>;

    /// The embeddings of `inputs` by `model` (the name at the provider): one vector per
    /// input, in order. Adapters batch long lists into several upstream calls. The default
    /// is for providers without an embeddings endpoint.
    ///
    /// # Errors
    /// [`ProviderError`] as classified by the adapter; [`ProviderError::InvalidRequest`]
    /// (status 400) when the provider has no embeddings endpoint; [`ProviderError::Malformed`]
    /// when the answer lacks a vector for some input.
    async fn embed(&self, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let _ = (model, inputs);
        Err(ProviderError::InvalidRequest {
            status: 400,
            message: "this provider has no embeddings endpoint".to_owned(),
        })
    }
}

/// Makes clients for provider definitions (one per provider kind).
pub trait LlmClientFactory: Send + Sync {
    /// A client for `provider`. Cheap to call; adapters may cache.
    ///
    /// # Errors
    /// [`ProviderError::InvalidRequest`] when the definition cannot be used (no key where one
    /// is needed…).
    fn client(&self, provider: &Provider) -> Result<Arc<dyn LlmClient>, ProviderError>;
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
