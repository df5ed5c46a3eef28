//! The OpenAI-compatible adapter (OpenAI, vLLM, Ollama, llama.cpp, LM Studio, Groq…), through
//! async-openai's chat API with our own request/response types (`byot`).
//!
//! async-openai is given a tower service of ours instead of its default executor, so that
//! (1) its built-in retry layer is off (the resilience layer retries), and (2) a failed answer
//! is read here, where its status and `Retry-After` header are still at hand: the service
//! returns the classified [`ProviderError`] inside `OpenAIError::Boxed`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use agentry_domain::llm::{
    Completion, CompletionRequest, CompletionStream, LlmClient, PromptMessage, ProviderError,
    StreamEvent, TokenUsage,
};
use async_openai::config::Config;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::stream::StreamResponse;
use async_trait::async_trait;
use futures_util::{StreamExt, stream};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::errors::{self, from_reqwest, malformed, scrub};
use crate::settings::ProviderSettings;

/// OpenAI's public API, used when a provider has no base URL.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// A client of one OpenAI-compatible server.
pub struct OpenAiClient {
    client: async_openai::Client<ApiConfig>,
    api_key: Option<SecretString>,
    settings: ProviderSettings,
}

impl fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("base_url", &self.client.config().base)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl OpenAiClient {
    /// A client of `base_url` (such as `http://localhost:11434/v1`), sending
    /// `Authorization: Bearer <api_key>` only when a key is given.
    ///
    /// # Errors
    /// [`ProviderError::InvalidRequest`] when the key cannot be sent as a header.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        api_key: Option<SecretString>,
        settings: ProviderSettings,
    ) -> Result<Self, ProviderError> {
        let config = ApiConfig::new(base_url, api_key.as_ref())?;
        let service = StatusAwareService {
            http: http.clone(),
            settings,
        };
        let client = async_openai::Client::build(http, config).with_http_service(service);
        Ok(Self {
            client,
            api_key,
            settings,
        })
    }

    fn error(&self, error: OpenAIError) -> ProviderError {
        scrub(
            map_openai_error(error, &self.settings),
            self.api_key.as_ref(),
        )
    }
}

#[async_trait]
impl LlmClient for OpenAiClient {
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        let body = ChatRequest::new(&request, false);
        let response: ChatResponse = self
            .client
            .chat()
            .create_byot(&body)
            .await
            .map_err(|e| self.error(e))?;
        response.into_completion(&request.model)
    }

    async fn stream(&self, request: CompletionRequest) -> Result<CompletionStream, ProviderError> {
        let body = ChatRequest::new(&request, true);
        let chunks: StreamResponse<ChatChunk> = self
            .client
            .chat()
            .create_stream_byot(&body)
            .await
            .map_err(|e| self.error(e))?;
        let key = self.api_key.clone();
        let settings = self.settings;
        let events = translate(chunks, request.model, settings)
            .map(move |item| item.map_err(|e| scrub(e, key.as_ref())));
        Ok(Box::pin(events))
    }
}

/// async-openai's view of the provider: base URL and headers, nothing read from the
/// environment (unlike `OpenAIConfig`, which would pick up `OPENAI_API_KEY` and send it to
/// any server when the provider has no key).
#[derive(Clone)]
struct ApiConfig {
    base: String,
    key: SecretString,
    headers: HeaderMap,
}

impl ApiConfig {
    fn new(base_url: &str, api_key: Option<&SecretString>) -> Result<Self, ProviderError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .map_err(|_| ProviderError::InvalidRequest {
                    status: 400,
                    message: "the API key contains characters not allowed in a header".to_owned(),
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            key: api_key.cloned().unwrap_or_else(|| SecretString::from("")),
            headers,
        })
    }
}

impl Config for ApiConfig {
    fn headers(&self) -> HeaderMap {
        self.headers.clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn query(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }

    fn api_base(&self) -> &str {
        &self.base
    }

    fn api_key(&self) -> &SecretString {
        &self.key
    }
}

/// Sends async-openai's requests with our shared reqwest client, no retries, and turns a
/// failed answer into a [`ProviderError`] while its headers are still readable.
#[derive(Clone)]
struct StatusAwareService {
    http: reqwest::Client,
    settings: ProviderSettings,
}

type HttpFuture = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

impl tower::Service<HttpRequestFactory> for StatusAwareService {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = HttpFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        let settings = self.settings;
        Box::pin(async move {
            let request = request.build().await?;
            let boxed = |e: ProviderError| OpenAIError::Boxed(Box::new(e));
            let response = http
                .execute(request)
                .await
                .map_err(|e| boxed(from_reqwest(e, &settings)))?;
            if response.status().is_success() {
                Ok(response)
            } else {
                Err(boxed(errors::from_response(response).await))
            }
        })
    }
}

/// async-openai's errors as the port's.
fn map_openai_error(error: OpenAIError, settings: &ProviderSettings) -> ProviderError {
    match error {
        OpenAIError::Boxed(inner) => match inner.downcast::<ProviderError>() {
            Ok(error) => *error,
            Err(other) => ProviderError::Unavailable(errors::chain(other.as_ref())),
        },
        OpenAIError::ApiError(api) => {
            errors::from_status(api.status_code.as_u16(), None, api.api_error.message)
        }
        OpenAIError::Reqwest(e) => from_reqwest(e, settings),
        OpenAIError::JSONDeserialize(e, _) => malformed(e),
        OpenAIError::StreamError(e) => {
            ProviderError::Unavailable(format!("the stream broke: {}", errors::chain(&e)))
        }
        OpenAIError::InvalidArgument(message) => ProviderError::InvalidRequest {
            status: 400,
            message,
        },
        other => ProviderError::Unavailable(errors::chain(&other)),
    }
}

/// The chat-completions request body.
#[derive(Debug, Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> ChatRequest<'a> {
    fn new(request: &'a CompletionRequest, stream: bool) -> Self {
        Self {
            model: &request.model,
            messages: request.messages.iter().map(WireMessage::new).collect(),
            temperature: request.temperature,
            top_p: request.top_p,
            max_tokens: request.max_tokens,
            // Set explicitly: with async-openai's `byot`, `create_stream` does not set it.
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

impl<'a> WireMessage<'a> {
    fn new(message: &'a PromptMessage) -> Self {
        Self {
            role: message.role.as_str(),
            content: &message.content,
        }
    }
}

/// The parts of a chat completion we read; lenient, as compatible servers omit fields.
#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    message: ChoiceMessage,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl From<WireUsage> for TokenUsage {
    fn from(usage: WireUsage) -> Self {
        TokenUsage::new(usage.prompt_tokens, usage.completion_tokens)
    }
}

impl ChatResponse {
    fn into_completion(self, asked_model: &str) -> Result<Completion, ProviderError> {
        let model = if self.model.is_empty() {
            asked_model.to_owned()
        } else {
            self.model
        };
        let choice = self
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| malformed("no choices"))?;
        Ok(Completion {
            tool_calls: Vec::new(),
            content: choice.message.content.unwrap_or_default(),
            usage: self.usage.map(TokenUsage::from),
            finish_reason: choice.finish_reason,
            model,
        })
    }
}

/// One `chat.completion.chunk` (or an in-stream `{"error":..}` some servers send).
#[derive(Debug, Deserialize)]
struct ChatChunk {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<ChunkError>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: ChoiceMessage,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChunkError {
    #[serde(default)]
    message: String,
}

/// What a stream has told so far.
struct StreamState {
    chunks: StreamResponse<ChatChunk>,
    settings: ProviderSettings,
    model: String,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
    ended: bool,
}

/// Chunks as port events: one `Delta` per non-empty content, `Done` at the end with the
/// finish reason and usage (which arrives in a last chunk after the finish reason); an end
/// without a finish reason is a broken stream.
fn translate(
    chunks: StreamResponse<ChatChunk>,
    model: String,
    settings: ProviderSettings,
) -> impl futures_util::Stream<Item = Result<StreamEvent, ProviderError>> + Send {
    let state = StreamState {
        chunks,
        settings,
        model,
        finish_reason: None,
        usage: None,
        ended: false,
    };
    stream::unfold(state, |mut state| async move {
        if state.ended {
            return None;
        }
        let item = state.next_event().await;
        state.ended = !matches!(item, Ok(StreamEvent::Delta(_)));
        Some((item, state))
    })
}

impl StreamState {
    async fn next_event(&mut self) -> Result<StreamEvent, ProviderError> {
        while let Some(chunk) = self.chunks.next().await {
            let chunk = chunk.map_err(|e| map_openai_error(e, &self.settings))?;
            if let Some(text) = self.absorb(chunk)? {
                return Ok(StreamEvent::Delta(text));
            }
        }
        match self.finish_reason.take() {
            Some(reason) => Ok(StreamEvent::Done {
                usage: self.usage,
                finish_reason: Some(reason),
                model: std::mem::take(&mut self.model),
            }),
            None => Err(ProviderError::Unavailable(
                "the stream ended before the answer was complete".to_owned(),
            )),
        }
    }

    /// Notes a chunk's model, usage and finish reason; returns its text, if any.
    fn absorb(&mut self, chunk: ChatChunk) -> Result<Option<String>, ProviderError> {
        if let Some(error) = chunk.error {
            return Err(ProviderError::Upstream {
                status: 502,
                message: error.message,
            });
        }
        if !chunk.model.is_empty() {
            self.model = chunk.model;
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(None);
        };
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
        Ok(choice.delta.content.filter(|text| !text.is_empty()))
    }
}
