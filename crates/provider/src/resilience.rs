//! The resilience layer every adapter is wrapped in: timeouts, and bounded retries with
//! jittered exponential backoff, only while nothing has been sent downstream.

use std::sync::Arc;
use std::time::Duration;

use agentry_domain::llm::{
    Completion, CompletionRequest, CompletionStream, LlmClient, ProviderError, StreamEvent,
};
use async_trait::async_trait;
use futures_util::{Stream, StreamExt, stream};

use crate::settings::ProviderSettings;

/// Wraps a client with [`ProviderSettings`]' timeouts and retries.
///
/// - The whole call, every attempt and wait included, is limited by `total_timeout`: a retry
///   starts only while time remains and gets only what remains.
/// - `complete`: each attempt is limited by `request_timeout`.
/// - `stream`: each attempt is limited by `request_timeout` up to its first event; the first
///   event is read before the stream is returned, so retries only happen while nothing has
///   been sent downstream. After it, `stream_idle_timeout` limits the wait for each next event
///   and nothing is retried.
/// - Retries: at most `max_retries`, only for [`ProviderError::is_retryable`] errors, after a
///   random wait below `backoff_base * 2^n` (capped by `backoff_max`), or after the upstream's
///   `Retry-After` when it gave one, unless that exceeds `backoff_max` (then the error is
///   returned at once).
#[derive(Clone)]
pub struct ResilientClient {
    inner: Arc<dyn LlmClient>,
    settings: ProviderSettings,
}

impl std::fmt::Debug for ResilientClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

impl ResilientClient {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn LlmClient>, settings: ProviderSettings) -> Self {
        Self { inner, settings }
    }

    /// How long to wait before retry number `retry` after `error`; `None` to give up.
    fn retry_delay(&self, error: &ProviderError, retry: u32) -> Option<Duration> {
        if retry >= self.settings.max_retries || !error.is_retryable() {
            return None;
        }
        match error {
            ProviderError::RateLimited {
                retry_after: Some(wait),
                ..
            } => (*wait <= self.settings.backoff_max).then_some(*wait),
            _ => Some(self.settings.jittered_backoff(retry)),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or retries run out.
    async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let total = self.settings.total_timeout;
        let deadline = tokio::time::Instant::now() + total;
        let mut retry = 0;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let limit = self.settings.request_timeout.min(remaining);
            let result = tokio::time::timeout(limit, attempt()).await.unwrap_or(Err(
                ProviderError::Timeout(if limit < self.settings.request_timeout {
                    total
                } else {
                    limit
                }),
            ));
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let Some(delay) = self.retry_delay(&error, retry) else {
                return Err(error);
            };
            // A retry needs time left after its wait.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if delay >= left {
                return Err(error);
            }
            tracing::warn!(retry = retry + 1, delay_ms = delay.as_millis() as u64, error = %error, "provider call failed; retrying");
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// Opens a stream and reads its first event.
    async fn open(
        &self,
        request: CompletionRequest,
    ) -> Result<(StreamEvent, Events), ProviderError> {
        let mut events = self.inner.stream(request).await?;
        match events.next().await {
            Some(Ok(first)) => Ok((first, events)),
            Some(Err(error)) => Err(error),
            None => Err(ProviderError::Unavailable(
                "the stream ended before its first event".to_owned(),
            )),
        }
    }
}

#[async_trait]
impl LlmClient for ResilientClient {
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        self.with_retries(|| self.inner.complete(request.clone()))
            .await
    }

    async fn stream(&self, request: CompletionRequest) -> Result<CompletionStream, ProviderError> {
        let (first, rest) = self.with_retries(|| self.open(request.clone())).await?;
        Ok(Box::pin(idle_limited(
            first,
            rest,
            self.settings.stream_idle_timeout,
        )))
    }

    /// Each attempt is limited by `request_timeout`, and retried as `complete` is.
    async fn embed(&self, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        self.with_retries(|| self.inner.embed(model, inputs)).await
    }
}

/// `first`, then `rest` with at most `idle` between events; ends after `Done` or an error
/// (text and tool calls go on).
fn idle_limited(
    first: StreamEvent,
    rest: Events,
    idle: Duration,
) -> impl Stream<Item = Result<StreamEvent, ProviderError>> + Send {
    let first_done = matches!(first, StreamEvent::Done { .. });
    let tail = stream::unfold((rest, first_done), move |(mut rest, ended)| async move {
        if ended {
            return None;
        }
        let item = match tokio::time::timeout(idle, rest.next()).await {
            Err(_) => Err(ProviderError::Timeout(idle)),
            Ok(None) => Err(ProviderError::Unavailable(
                "the stream ended without its end event".to_owned(),
            )),
            Ok(Some(item)) => item,
        };
        let ended = !matches!(item, Ok(StreamEvent::Delta(_) | StreamEvent::ToolCall(_)));
        Some((item, (rest, ended)))
    });
    stream::once(async move { Ok(first) }).chain(tail)
}
