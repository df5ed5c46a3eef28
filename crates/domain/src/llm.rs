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
}

impl Role {
    /// The wire spelling (`system`, `user`, `assistant`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "system" | "developer" => Some(Self::System),
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            _ => None,
        }
    }
}

/// One message of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl PromptMessage {
    /// A message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// What to ask a model.
#[derive(Debug, Clone, PartialEq)]
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
    /// Tokens spent; `None` when the provider did not say.
    pub usage: Option<TokenUsage>,
    /// Why the answer ended (`stop`, `length`, `content_filter`…), normalised to OpenAI's words.
    pub finish_reason: Option<String>,
    /// The model that answered, as the provider reported it.
    pub model: String,
}

/// One event of a streamed answer. A well-formed stream is zero or more `Delta`s then one
/// `Done`; an error ends it early.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More text.
    Delta(String),
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
            Self::Unauthorized { .. } | Self::InvalidRequest { .. } => false,
        }
    }

    /// The upstream HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { status, .. }
            | Self::Upstream { status, .. }
            | Self::InvalidRequest { status, .. } => Some(*status),
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
