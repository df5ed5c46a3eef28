//! The OpenAI-compatible adapter (OpenAI, vLLM, Ollama, llama.cpp, LM Studio, Groq…), through
//! async-openai's chat API with our own request/response types (`byot`).
//!
//! async-openai is given a tower service of ours instead of its default executor, so that
//! (1) its built-in retry layer is off (the resilience layer retries), and (2) a failed answer
//! is read here, where its status and `Retry-After` header are still at hand: the service
//! returns the classified [`ProviderError`] inside `OpenAIError::Boxed`.
//!
//! Streams are not read through async-openai: its `create_stream` spawns a task and an
//! unbounded channel per stream (~4.8 KB each). [`stream`] decodes the SSE body itself, as a
//! plain stream adapter over the HTTP body: nothing is spawned, and dropping the stream drops
//! the body, which closes the connection (or resets the HTTP/2 stream).

mod embeddings;
mod stream;
mod wire;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use agentry_domain::llm::{
    Completion, CompletionRequest, CompletionStream, LlmClient, ProviderError,
};
use async_openai::config::Config;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::errors::{self, from_reqwest, malformed, scrub};
use crate::settings::ProviderSettings;
use wire::{ChatRequest, ChatResponse};

/// OpenAI's public API, used when a provider has no base URL.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// A client of one OpenAI-compatible server.
pub struct OpenAiClient {
    client: async_openai::Client<ApiConfig>,
    /// The same HTTP client async-openai uses, for streams (read here, see the module docs).
    http: reqwest::Client,
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
        let client = async_openai::Client::build(http.clone(), config).with_http_service(service);
        Ok(Self {
            client,
            http,
            api_key,
            settings,
        })
    }

    /// Posts a streaming request with async-openai's URL and headers; a non-success answer
    /// becomes its error, as in [`StatusAwareService`].
    async fn open_stream(
        &self,
        body: &ChatRequest<'_>,
    ) -> Result<reqwest::Response, ProviderError> {
        let config = self.client.config();
        let response = self
            .http
            .post(config.url("/chat/completions"))
            .headers(config.headers())
            .header(ACCEPT, "text/event-stream")
            .json(body)
            .send()
            .await
            .map_err(|e| from_reqwest(e, &self.settings))?;
        if response.status().is_success() {
            errors::event_stream(response).await
        } else {
            Err(errors::from_response(response).await)
        }
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
        let key = self.api_key.clone();
        let response = self
            .open_stream(&ChatRequest::new(&request, true))
            .await
            .map_err(|e| scrub(e, key.as_ref()))?;
        let events = stream::translate(response, request.model)
            .map(move |item| item.map_err(|e| scrub(e, key.as_ref())));
        Ok(Box::pin(events))
    }

    /// `POST {base_url}/embeddings`, [`embeddings::BATCH_INPUTS`] inputs per call, one call
    /// after the other.
    async fn embed(&self, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let mut vectors = Vec::with_capacity(inputs.len());
        for batch in inputs.chunks(embeddings::BATCH_INPUTS) {
            vectors.extend(
                self.embed_batch(model, batch)
                    .await
                    .map_err(|e| scrub(e, self.api_key.as_ref()))?,
            );
        }
        Ok(vectors)
    }
}

impl OpenAiClient {
    /// One embeddings call.
    async fn embed_batch(
        &self,
        model: &str,
        inputs: &[String],
    ) -> Result<Vec<Vec<f32>>, ProviderError> {
        let config = self.client.config();
        let response = self
            .http
            .post(config.url("/embeddings"))
            .headers(config.headers())
            .json(&embeddings::EmbeddingRequest::new(model, inputs))
            .send()
            .await
            .map_err(|e| from_reqwest(e, &self.settings))?;
        if !response.status().is_success() {
            return Err(errors::from_response(response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| from_reqwest(e, &self.settings))?;
        serde_json::from_slice::<embeddings::EmbeddingResponse>(&body)
            .map_err(malformed)?
            .into_vectors(inputs.len())
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
