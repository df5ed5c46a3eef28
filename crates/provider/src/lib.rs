//! LLM provider adapters behind the domain port ([`agentry_domain::llm::LlmClient`]):
//!
//! - [`OpenAiClient`]: OpenAI and every compatible server, through async-openai;
//! - [`AnthropicClient`]: Anthropic's Messages API, through reqwest;
//! - [`MockClient`]: the built-in scripted provider, driven by model names and a
//!   [`MockScript`] queue;
//! - [`ResilientClient`]: timeouts and retries around any of them;
//! - [`ClientFactory`]: the [`agentry_domain::llm::LlmClientFactory`] building and caching
//!   resilient clients per provider definition.
//!
//! Every upstream failure is translated into [`agentry_domain::llm::ProviderError`]; API keys
//! never appear in an error, a `Debug` output or a log. Dropping a call's future or stream
//! ends its upstream request (closes its HTTP/1.1 connection, or resets its HTTP/2 stream).
//!
//! Provider calls go over HTTP/2 where an HTTPS upstream offers it, HTTP/1.1 otherwise
//! ([`ProviderSettings::http_version`] can force either); a connection carries at
//! most [`ProviderSettings::streams_per_connection`] calls at a time, further calls open more
//! connections rather than wait.

mod anthropic;
mod errors;
mod factory;
mod lanes;
mod mock;
mod openai;
mod resilience;
mod settings;
mod text;

pub use anthropic::{
    ANTHROPIC_VERSION, AnthropicClient, DEFAULT_ANTHROPIC_BASE_URL, DEFAULT_ANTHROPIC_MAX_TOKENS,
};
pub use factory::ClientFactory;
pub use mock::{MockClient, MockReply, MockScript};
pub use openai::{DEFAULT_OPENAI_BASE_URL, OpenAiClient};
pub use resilience::ResilientClient;
pub use settings::{HttpVersion, ProviderSettings};
