//! The Anthropic Messages API adapter (`POST {base}/v1/messages`), JSON and SSE, with reqwest.

use std::fmt;

use agentry_domain::llm::{
    Completion, CompletionRequest, CompletionStream, LlmClient, ProviderError, Role, StreamEvent,
    TokenUsage,
};
use async_trait::async_trait;
use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt, stream};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::errors::{self, from_reqwest, malformed, scrub};
use crate::settings::ProviderSettings;

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
        Ok(message.into_completion(&request.model))
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
        let response = self
            .post(&MessagesRequest::new(&request, true))
            .await
            .map_err(|e| scrub(e, key.as_ref()))?;
        let events = translate(response, request.model)
            .map(move |item| item.map_err(|e| scrub(e, key.as_ref())));
        Ok(Box::pin(events))
    }
}

/// The Messages request body: system prompts go to the top-level `system`.
#[derive(Debug, Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> MessagesRequest<'a> {
    fn new(request: &'a CompletionRequest, stream: bool) -> Self {
        let (system, chat): (Vec<_>, Vec<_>) = request
            .messages
            .iter()
            .partition(|m| m.role == Role::System);
        let system: Vec<&str> = system.iter().map(|m| m.content.as_str()).collect();
        Self {
            model: &request.model,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages: chat
                .into_iter()
                .map(|m| WireMessage {
                    role: m.role.as_str(),
                    content: &m.content,
                })
                .collect(),
            max_tokens: request.max_tokens.unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS),
            temperature: request.temperature,
            top_p: request.top_p,
            stream,
        }
    }
}

/// Anthropic's stop reasons in OpenAI's words.
fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_owned()
}

#[derive(Debug, Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<ContentBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct ContentBlock {
    text: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct WireUsage {
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
}

impl MessagesResponse {
    fn into_completion(self, asked_model: &str) -> Completion {
        let content = self.content.into_iter().filter_map(|b| b.text).collect();
        let usage = self
            .usage
            .map(|u| TokenUsage::new(u.input_tokens.unwrap_or(0), u.output_tokens.unwrap_or(0)));
        Completion {
            content,
            tool_calls: Vec::new(),
            usage,
            finish_reason: self.stop_reason.as_deref().map(finish_reason),
            model: if self.model.is_empty() {
                asked_model.to_owned()
            } else {
                self.model
            },
        }
    }
}

/// The SSE events we act on; others (`ping`, `content_block_start`…) are skipped.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockDelta {
        delta: BlockDelta,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    #[serde(default)]
    model: String,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct MessageDelta {
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

impl WireError {
    /// The HTTP status Anthropic uses for this error type.
    fn into_error(self) -> ProviderError {
        let status = match self.kind.as_str() {
            "invalid_request_error" => 400,
            "authentication_error" => 401,
            "permission_error" => 403,
            "not_found_error" => 404,
            "request_too_large" => 413,
            "rate_limit_error" => 429,
            "overloaded_error" => 529,
            _ => 500,
        };
        errors::from_status(status, None, self.message)
    }
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>;

/// What a stream has told so far.
struct StreamState {
    events: Events,
    model: String,
    usage: WireUsage,
    stop_reason: Option<String>,
    ended: bool,
}

fn translate(
    response: reqwest::Response,
    model: String,
) -> impl Stream<Item = Result<StreamEvent, ProviderError>> + Send {
    let events: Events = Box::pin(response.bytes_stream().eventsource().map(|item| {
        item.map_err(|e| match e {
            eventsource_stream::EventStreamError::Transport(e) => errors::chain(&e.without_url()),
            other => other.to_string(),
        })
    }));
    let state = StreamState {
        events,
        model,
        usage: WireUsage::default(),
        stop_reason: None,
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
        while let Some(event) = self.events.next().await {
            let event = event
                .map_err(|e| ProviderError::Unavailable(format!("the connection broke: {e}")))?;
            let parsed: WireEvent = serde_json::from_str(&event.data).map_err(malformed)?;
            if let Some(out) = self.absorb(parsed)? {
                return Ok(out);
            }
        }
        Err(ProviderError::Unavailable(
            "the stream ended before the answer was complete".to_owned(),
        ))
    }

    /// Notes an event; returns the port event it makes, if any.
    fn absorb(&mut self, event: WireEvent) -> Result<Option<StreamEvent>, ProviderError> {
        match event {
            WireEvent::MessageStart { message } => {
                if !message.model.is_empty() {
                    self.model = message.model;
                }
                self.merge_usage(message.usage);
            }
            WireEvent::ContentBlockDelta {
                delta: BlockDelta::TextDelta { text },
            } if !text.is_empty() => {
                return Ok(Some(StreamEvent::Delta(text)));
            }
            WireEvent::MessageDelta { delta, usage } => {
                self.stop_reason = delta.stop_reason.or(self.stop_reason.take());
                self.merge_usage(usage);
            }
            WireEvent::MessageStop => return Ok(Some(self.done())),
            WireEvent::Error { error } => return Err(error.into_error()),
            WireEvent::ContentBlockDelta { .. } | WireEvent::Other => {}
        }
        Ok(None)
    }

    fn merge_usage(&mut self, usage: Option<WireUsage>) {
        let Some(usage) = usage else { return };
        self.usage.input_tokens = usage.input_tokens.or(self.usage.input_tokens);
        self.usage.output_tokens = usage.output_tokens.or(self.usage.output_tokens);
    }

    fn done(&mut self) -> StreamEvent {
        let usage =
            (self.usage.input_tokens.is_some() || self.usage.output_tokens.is_some()).then(|| {
                TokenUsage::new(
                    self.usage.input_tokens.unwrap_or(0),
                    self.usage.output_tokens.unwrap_or(0),
                )
            });
        StreamEvent::Done {
            usage,
            finish_reason: self.stop_reason.as_deref().map(finish_reason),
            model: std::mem::take(&mut self.model),
        }
    }
}
