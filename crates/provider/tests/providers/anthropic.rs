//! The Anthropic Messages adapter.

use std::sync::Arc;
use std::time::Duration;

use agentry_domain::llm::{LlmClient, ProviderError, StreamEvent, TokenUsage};
use agentry_domain::provider::ProviderKind;
use agentry_fake_upstream::{FakeUpstream, Scripted};
use agentry_provider::{DEFAULT_ANTHROPIC_MAX_TOKENS, ProviderSettings};
use serde_json::json;

use crate::support::{
    KEY, assert_no_key, client, connections_closed, dead_address, drain, request, settings,
};

fn anthropic(fake: &FakeUpstream, settings: ProviderSettings) -> Arc<dyn LlmClient> {
    client(ProviderKind::Anthropic, &fake.origin(), settings)
}

fn no_retry() -> ProviderSettings {
    ProviderSettings {
        max_retries: 0,
        ..settings()
    }
}

#[tokio::test]
async fn json_completion_and_what_was_sent() {
    let fake = FakeUpstream::start().await;
    let mut req = request("claude-test", "hello big world");
    req.temperature = Some(0.25);
    let completion = anthropic(&fake, settings()).complete(req).await.unwrap();

    assert_eq!(completion.content, "hello big world");
    assert_eq!(completion.usage, Some(TokenUsage::new(5, 3)));
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    assert_eq!(completion.model, "claude-test");

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.body["system"], "be brief");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "hello big world"}])
    );
    assert_eq!(sent.body["max_tokens"], DEFAULT_ANTHROPIC_MAX_TOKENS);
    assert_eq!(sent.body["temperature"], 0.25);
    assert!(sent.body.get("stream").is_none());
}

#[tokio::test]
async fn base_url_with_v1_and_explicit_max_tokens() {
    let fake = FakeUpstream::start().await;
    let mut req = request("claude-test", "a b c d");
    req.max_tokens = Some(2);
    let client = client(
        ProviderKind::Anthropic,
        &format!("{}/v1", fake.origin()),
        settings(),
    );
    let completion = client.complete(req).await.unwrap();
    assert_eq!(completion.content, "a b ");
    assert_eq!(completion.finish_reason.as_deref(), Some("length"));
    assert_eq!(fake.requests()[0].path, "/v1/messages");
    assert_eq!(fake.requests()[0].body["max_tokens"], 2);
}

#[tokio::test]
async fn streaming_concatenates_and_reports_usage() {
    let fake = FakeUpstream::start().await;
    let stream = anthropic(&fake, settings())
        .stream(request("claude-test", " one two  three"))
        .await
        .unwrap();
    let drained = drain(stream).await;
    assert_eq!(drained.text(), " one two  three");
    assert_eq!(drained.deltas.len(), 3);
    assert_eq!(
        drained.done,
        Some(StreamEvent::Done {
            usage: Some(TokenUsage::new(5, 3)),
            finish_reason: Some("stop".to_owned()),
            model: "claude-test".to_owned(),
        })
    );
    let sent = &fake.requests()[0];
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["system"], "be brief");
}

#[tokio::test]
async fn error_statuses_are_mapped() {
    let fake = FakeUpstream::start().await;
    let client = anthropic(&fake, no_retry());
    let complete = |model: &'static str| {
        let client = Arc::clone(&client);
        async move { client.complete(request(model, "x")).await.unwrap_err() }
    };
    assert!(matches!(
        complete("fake-error-401").await,
        ProviderError::Unauthorized { status: 401, .. }
    ));
    assert!(matches!(
        complete("fake-error-403").await,
        ProviderError::Unauthorized { status: 403, .. }
    ));
    assert!(matches!(
        complete("fake-error-400").await,
        ProviderError::InvalidRequest { status: 400, .. }
    ));
    assert!(matches!(
        complete("fake-error-404").await,
        ProviderError::InvalidRequest { status: 404, .. }
    ));
    assert_eq!(
        complete("fake-error-429").await,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
            message: "Number of requests has exceeded your rate limit.".into()
        }
    );
    let overloaded = complete("fake-error-529").await;
    assert_eq!(
        overloaded,
        ProviderError::Upstream {
            status: 529,
            message: "Overloaded".into()
        }
    );
    assert!(overloaded.is_retryable());
}

#[tokio::test]
async fn overloaded_is_retried_then_succeeds() {
    let fake = FakeUpstream::start().await;
    fake.push_n(Scripted::Error(529), 2);
    let stream = anthropic(&fake, settings())
        .stream(request("claude-test", "made it"))
        .await
        .unwrap();
    assert_eq!(drain(stream).await.text(), "made it");
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn cut_stream_yields_deltas_then_an_error_without_retry() {
    let fake = FakeUpstream::start().await;
    let stream = anthropic(&fake, settings())
        .stream(request("fake-cut", "one two three"))
        .await
        .unwrap();
    let drained = drain(stream).await;
    assert_eq!(drained.text(), "one two ");
    assert!(
        matches!(drained.error, Some(ProviderError::Unavailable(_))),
        "{drained:?}"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn slow_upstream_times_out_and_dead_one_is_unavailable() {
    let fake = FakeUpstream::start().await;
    let quick = ProviderSettings {
        request_timeout: Duration::from_millis(100),
        ..no_retry()
    };
    let error = anthropic(&fake, quick)
        .complete(request("fake-slow-2000", "x"))
        .await
        .unwrap_err();
    assert_eq!(error, ProviderError::Timeout(Duration::from_millis(100)));

    let dead = client(ProviderKind::Anthropic, &dead_address().await, no_retry());
    let error = dead.stream(request("claude", "x")).await.err().unwrap();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn the_key_never_appears_in_errors() {
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::ErrorMessage(
        401,
        format!("invalid x-api-key {KEY}"),
    ));
    let error = anthropic(&fake, no_retry())
        .complete(request("claude", "x"))
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Unauthorized { .. }));
    assert_no_key(&error);
}

#[tokio::test]
async fn dropping_a_stream_closes_the_upstream_connection() {
    let fake = FakeUpstream::start().await;
    let mut stream = anthropic(&fake, settings())
        .stream(request("fake-slow-50", "a b c d e f g h i j k l m n o p"))
        .await
        .unwrap();
    futures_util::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    drop(stream);
    assert!(
        connections_closed(&fake).await,
        "the upstream connection outlived the stream"
    );
}

#[tokio::test]
async fn an_unreadable_success_is_reported_with_its_status_and_not_retried() {
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::Unreadable);
    let error = anthropic(&fake, settings())
        .complete(request("claude-test", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProviderError::Malformed { status: 200, .. }),
        "{error:?}"
    );
    assert_eq!(fake.request_count(), 1, "not retried");
    fake.push(Scripted::Unreadable);
    let outcome = match anthropic(&fake, settings())
        .stream(request("claude-test", "hi"))
        .await
    {
        Err(e) => Err(e),
        Ok(stream) => drain(stream).await.error.map_or(Ok(()), Err),
    };
    let error = outcome.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Malformed { status: 200, .. }),
        "{error:?}"
    );
    assert_eq!(fake.request_count(), 2);
}
