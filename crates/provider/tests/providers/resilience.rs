//! The retry and timeout layer, driven through the mock (no network).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentry_domain::llm::{
    Completion, CompletionRequest, CompletionStream, LlmClient, ProviderError,
};
use agentry_provider::{MockClient, MockReply, MockScript, ProviderSettings, ResilientClient};

use crate::support::{drain, request, settings};

fn resilient(script: &MockScript, settings: ProviderSettings) -> ResilientClient {
    ResilientClient::new(Arc::new(MockClient::new(script.clone())), settings)
}

fn upstream(status: u16) -> ProviderError {
    ProviderError::Upstream {
        status,
        message: "boom".into(),
    }
}

#[tokio::test]
async fn retryable_errors_are_retried_up_to_the_limit() {
    let script = MockScript::new();
    script.push_error(upstream(502));
    script.push_error(ProviderError::Timeout(Duration::from_secs(1)));
    script.push_text("third time");
    let completion = resilient(&script, settings())
        .complete(request("echo", "x"))
        .await
        .unwrap();
    assert_eq!(completion.content, "third time");

    for _ in 0..3 {
        script.push_error(upstream(500));
    }
    script.push_text("never reached");
    let error = resilient(&script, settings())
        .complete(request("echo", "x"))
        .await
        .unwrap_err();
    assert_eq!(error, upstream(500));
    assert_eq!(script.len(), 1, "1 + max_retries attempts");
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let script = MockScript::new();
    script.push_error(ProviderError::InvalidRequest {
        status: 422,
        message: "no".into(),
    });
    script.push_text("never reached");
    let error = resilient(&script, settings())
        .complete(request("echo", "x"))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        ProviderError::InvalidRequest { status: 422, .. }
    ));
    assert_eq!(script.len(), 1);
}

#[tokio::test]
async fn each_attempt_is_timed() {
    let script = MockScript::new();
    let slow = || {
        MockReply::Delay(
            Duration::from_secs(5),
            Box::new(MockReply::Text("late".into())),
        )
    };
    script.push(slow());
    script.push_text("in time");
    let quick = ProviderSettings {
        request_timeout: Duration::from_millis(50),
        ..settings()
    };
    let completion = resilient(&script, quick)
        .complete(request("echo", "x"))
        .await
        .unwrap();
    assert_eq!(completion.content, "in time");

    script.push(slow());
    let error = resilient(
        &script,
        ProviderSettings {
            max_retries: 0,
            ..quick
        },
    )
    .stream(request("echo", "x"))
    .await
    .err()
    .unwrap();
    assert_eq!(error, ProviderError::Timeout(Duration::from_millis(50)));
}

/// Counts the calls that reach the wrapped client.
struct Counting {
    inner: MockClient,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl LlmClient for Counting {
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(request).await
    }

    async fn stream(&self, request: CompletionRequest) -> Result<CompletionStream, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.stream(request).await
    }
}

#[tokio::test]
async fn streams_are_retried_only_before_the_first_event() {
    let script = MockScript::new();
    let counting = Arc::new(Counting {
        inner: MockClient::new(script.clone()),
        calls: AtomicUsize::new(0),
    });
    let client = ResilientClient::new(counting.clone(), settings());

    script.push_error(upstream(503));
    let drained = drain(client.stream(request("echo", "a b")).await.unwrap()).await;
    assert_eq!(drained.text(), "a b");
    assert!(drained.done.is_some());
    assert_eq!(counting.calls.swap(0, Ordering::SeqCst), 2);

    let drained = drain(
        client
            .stream(request("cut", "one two three four"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(drained.deltas, vec!["one ", "two "]);
    assert!(matches!(drained.error, Some(ProviderError::Unavailable(_))));
    assert_eq!(
        counting.calls.load(Ordering::SeqCst),
        1,
        "retried after the first event"
    );
}

#[tokio::test]
async fn idle_streams_time_out() {
    let script = MockScript::new();
    let idle = ProviderSettings {
        stream_idle_timeout: Duration::from_millis(30),
        ..settings()
    };
    let drained = drain(
        resilient(&script, idle)
            .stream(request("slow-100", "a b"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(drained.deltas, vec!["a "]);
    assert_eq!(
        drained.error,
        Some(ProviderError::Timeout(Duration::from_millis(30)))
    );
}

#[tokio::test]
async fn a_total_deadline_bounds_every_attempt_together() {
    let script = MockScript::new();
    for _ in 0..3 {
        script.push(MockReply::Delay(
            Duration::from_secs(5),
            Box::new(MockReply::Text("late".into())),
        ));
    }
    let bounded = ProviderSettings {
        request_timeout: Duration::from_millis(200),
        total_timeout: Duration::from_millis(300),
        max_retries: 2,
        ..settings()
    };
    let started = std::time::Instant::now();
    let error = resilient(&script, bounded)
        .complete(request("echo", "x"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        error,
        ProviderError::Timeout(Duration::from_millis(300)),
        "the second attempt only had what remained of the total"
    );
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(5),
        "cut at the deadline, not when the upstream answered: {took:?}"
    );
}
