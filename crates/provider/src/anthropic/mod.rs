//! The Anthropic Messages API adapter (`POST {base}/v1/messages`), JSON and SSE, with reqwest.
//!
//! Tools, tool choice and tool results are translated to Anthropic's blocks. Structured
//! output (`json_schema`) has no direct equivalent: the schema is offered as one more tool,
//! forced with `tool_choice`, and that tool's input is returned as the answer's text;
//! `json_object` adds [`wire::JSON_OBJECT_INSTRUCTION`] to the system prompt.

mod stream;
mod wire;

use std::fmt;

use agentry_domain::llm::{
    Completion, CompletionRequest, CompletionStream, LlmClient, ProviderError,
};
use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::errors::{self, from_reqwest, malformed, scrub};
use crate::settings::ProviderSettings;
use wire::{MessagesRequest, MessagesResponse, structured_tool};

/// Anthropic's public API, used when a provider has no base URL.
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header sent.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` sent when the request has none (Anthropic requires it).
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u32 = 4096;

/// A client of one Anthropic Messages API endpoint.
pub struct AnthropicClient {
    http: reqwest::Client,
    url: String,
    key_header: Option<HeaderValue>,
    api_key: Option<SecretString>,
    settings: ProviderSettings,
}

impl fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl AnthropicClient {
    /// A client of `base_url` (such as `https://api.anthropic.com`; a trailing `/v1` is
    /// accepted), sending `x-api-key` when a key is given.
    ///
    /// # Errors
    /// [`ProviderError::InvalidRequest`] when the key cannot be sent as a header.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        api_key: Option<SecretString>,
        settings: ProviderSettings,
    ) -> Result<Self, ProviderError> {
        let base = base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        let key_header = api_key.as_ref().map(key_header).transpose()?;
        Ok(Self {
            http,
            url: format!("{base}/v1/messages"),
            key_header,
            api_key,
            settings,
        })
    }

    /// Posts `body`; a non-success answer becomes its error.
    async fn post(&self, body: &MessagesRequest<'_>) -> Result<reqwest::Response, ProviderError> {
        let mut request = self
            .http
            .post(&self.url)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(body);
        if let Some(key) = &self.key_header {
            request = request.header("x-api-key", key.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| from_reqwest(e, &self.settings))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(errors::from_response(response).await)
        }
    }

    async fn complete_inner(
        &self,
        request: &CompletionRequest,
    ) -> Result<Completion, ProviderError> {
        let response = self.post(&MessagesRequest::new(request, false)).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| from_reqwest(e, &self.settings))?;
        let message: MessagesResponse = serde_json::from_slice(&bytes).map_err(malformed)?;
        Ok(message.into_completion(&request.model, structured_tool(request)))
    }
}

fn key_header(key: &SecretString) -> Result<HeaderValue, ProviderError> {
    let mut value =
        HeaderValue::from_str(key.expose_secret()).map_err(|_| ProviderError::InvalidRequest {
            status: 400,
            message: "the API key contains characters not allowed in a header".to_owned(),
        })?;
    value.set_sensitive(true);
    Ok(value)
}

#[async_trait]
impl LlmClient for AnthropicClient {
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        self.complete_inner(&request)
            .await
            .map_err(|e| scrub(e, self.api_key.as_ref()))
    }

    async fn stream(&self, request: CompletionRequest) -> Result<CompletionStream, ProviderError> {
        let key = self.api_key.clone();
        let response = self.post(&MessagesRequest::new(&request, true)).await;
        let response = match response {
            Ok(response) => errors::event_stream(response).await,
            Err(e) => Err(e),
        }
        .map_err(|e| scrub(e, key.as_ref()))?;
        let structured = structured_tool(&request).map(str::to_owned);
        let events = stream::translate(response, request.model, structured)
            .map(move |item| item.map_err(|e| scrub(e, key.as_ref())));
        Ok(Box::pin(events))
    }
}
