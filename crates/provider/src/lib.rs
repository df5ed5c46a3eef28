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
//! closes its upstream connection.

mod anthropic;
mod errors;
mod factory;
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
pub use settings::ProviderSettings;
