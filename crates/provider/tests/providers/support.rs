//! Shared test helpers.

use std::sync::Arc;
use std::time::Duration;

use agentry_domain::llm::{
    CompletionRequest, CompletionStream, LlmClient, LlmClientFactory, PromptMessage, ProviderError,
    Role, StreamEvent, ToolCall,
};
use agentry_domain::provider::{BaseUrl, Provider, ProviderId, ProviderKind, ProviderSource};
use agentry_provider::{ClientFactory, MockScript, ProviderSettings};
use futures_util::StreamExt;
use secrecy::SecretString;

/// A key that must never leak.
pub const KEY: &str = "sk-test-0123456789-secret";

/// Fast settings: tiny backoffs, short timeouts, `Retry-After: 1` still honoured.
pub fn settings() -> ProviderSettings {
    ProviderSettings {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(3),
        stream_idle_timeout: Duration::from_secs(2),
        max_retries: 2,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(1_500),
        ..ProviderSettings::default()
    }
}

/// A provider definition.
pub fn provider(kind: ProviderKind, base_url: Option<&str>, key: Option<&str>) -> Provider {
    let now = chrono::Utc::now();
    Provider {
        id: ProviderId::parse(&format!("test-{}", kind.as_str())).unwrap(),
        kind,
        base_url: base_url.map(|u| BaseUrl::parse(u).unwrap()),
        api_key: key.map(|k| SecretString::from(k.to_owned())),
        models: Vec::new(),
        source: ProviderSource::Api,
        created_at: now,
        updated_at: now,
    }
}

/// A resilient client of `kind` at `base_url`, with key [`KEY`].
pub fn client(
    kind: ProviderKind,
    base_url: &str,
    settings: ProviderSettings,
) -> Arc<dyn LlmClient> {
    let factory = ClientFactory::new(settings, None);
    factory
        .client(&provider(kind, Some(base_url), Some(KEY)))
        .unwrap()
}

/// A mock client reading `script`.
pub fn mock(script: &MockScript, settings: ProviderSettings) -> Arc<dyn LlmClient> {
    let factory = ClientFactory::new(settings, Some(script.clone()));
    factory
        .client(&provider(ProviderKind::Mock, None, None))
        .unwrap()
}

/// A request with a system prompt and one user message.
pub fn request(model: &str, text: &str) -> CompletionRequest {
    CompletionRequest {
        model: model.to_owned(),
        messages: vec![
            PromptMessage::new(Role::System, "be brief"),
            PromptMessage::new(Role::User, text),
        ],
        temperature: None,
        top_p: None,
        max_tokens: None,
        ..CompletionRequest::default()
    }
}

/// What a stream yielded: its deltas, its tool calls, its `Done` (if any) and its error (if
/// any).
#[derive(Debug, Default)]
pub struct Drained {
    pub deltas: Vec<String>,
    pub tool_calls: Vec<ToolCall>,
    pub done: Option<StreamEvent>,
    pub error: Option<ProviderError>,
}

impl Drained {
    pub fn text(&self) -> String {
        self.deltas.concat()
    }
}

/// Reads a stream to its end, checking nothing follows `Done` or an error.
pub async fn drain(mut stream: CompletionStream) -> Drained {
    let mut out = Drained::default();
    while let Some(item) = stream.next().await {
        assert!(
            out.done.is_none() && out.error.is_none(),
            "event after the end: {item:?}"
        );
        match item {
            Ok(StreamEvent::Delta(text)) => out.deltas.push(text),
            Ok(StreamEvent::ToolCall(call)) => out.tool_calls.push(call),
            Ok(done) => out.done = Some(done),
            Err(error) => out.error = Some(error),
        }
    }
    out
}

/// A local address nothing listens on.
pub async fn dead_address() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Asserts that the key is in neither the Display nor the Debug of `error`.
pub fn assert_no_key(error: &ProviderError) {
    assert!(!error.to_string().contains(KEY), "{error}");
    assert!(!format!("{error:?}").contains(KEY), "{error:?}");
}

/// Waits (up to 2 s) until the fake has no open connection; true when it got there.
pub async fn connections_closed(fake: &agentry_fake_upstream::FakeUpstream) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while fake.open_connections() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fake.open_connections() == 0
}
