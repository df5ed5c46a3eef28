//! The scripted mock provider.

use std::time::{Duration, Instant};

use agentry_domain::llm::{ProviderError, StreamEvent, TokenUsage};
use agentry_provider::{MockReply, MockScript, ProviderSettings};

use crate::support::{drain, mock, request, settings};

fn no_retry() -> ProviderSettings {
    ProviderSettings {
        max_retries: 0,
        ..settings()
    }
}

#[tokio::test]
async fn echo_with_usage_says_it_is_the_mock() {
    let client = mock(&MockScript::new(), settings());
    let completion = client
        .complete(request("echo", "hello there world"))
        .await
        .unwrap();
    assert_eq!(completion.content, "hello there world");
    assert_eq!(completion.usage, Some(TokenUsage::new(5, 3)));
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    assert_eq!(completion.model, "mock:echo");
}

#[tokio::test]
async fn streams_one_delta_per_word() {
    let client = mock(&MockScript::new(), settings());
    let drained = drain(
        client
            .stream(request("echo", "  hi  there\nyou "))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(drained.text(), "  hi  there\nyou ");
    assert_eq!(drained.deltas, vec!["  hi  ", "there\n", "you "]);
    assert_eq!(
        drained.done,
        Some(StreamEvent::Done {
            usage: Some(TokenUsage::new(5, 3)),
            finish_reason: Some("stop".into()),
            model: "mock:echo".into(),
        })
    );
}

#[tokio::test]
async fn model_names_script_errors() {
    let client = mock(&MockScript::new(), no_retry());
    let error = |model: &'static str| {
        let client = client.clone();
        async move { client.complete(request(model, "x")).await.unwrap_err() }
    };
    assert!(matches!(
        error("error-500").await,
        ProviderError::Upstream { status: 500, .. }
    ));
    assert!(matches!(
        error("error-401").await,
        ProviderError::Unauthorized { status: 401, .. }
    ));
    assert!(matches!(
        error("error-400").await,
        ProviderError::InvalidRequest { status: 400, .. }
    ));
    assert!(matches!(
        error("error-429").await,
        ProviderError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1)
    ));
    let stream_error = client
        .stream(request("error-503", "x"))
        .await
        .err()
        .unwrap();
    assert!(matches!(
        stream_error,
        ProviderError::Upstream { status: 503, .. }
    ));
}

#[tokio::test]
async fn slow_and_cut() {
    let client = mock(&MockScript::new(), no_retry());
    let started = Instant::now();
    let drained = drain(client.stream(request("slow-30", "a b c")).await.unwrap()).await;
    assert_eq!(drained.text(), "a b c");
    assert!(started.elapsed() >= Duration::from_millis(90));

    let drained = drain(client.stream(request("cut", "a b c d")).await.unwrap()).await;
    assert_eq!(drained.text(), "a b ");
    assert!(matches!(drained.error, Some(ProviderError::Unavailable(_))));
    assert!(matches!(
        client.complete(request("cut", "a")).await,
        Err(ProviderError::Unavailable(_))
    ));
}

#[tokio::test]
async fn script_queue_is_first_in_first_out_then_model_behaviour() {
    let script = MockScript::new();
    let client = mock(&script, no_retry());
    script.push_text("first");
    script.push_error(ProviderError::Unavailable("scripted".into()));
    script.push(MockReply::Delay(
        Duration::from_millis(20),
        Box::new(MockReply::Text("third".into())),
    ));
    assert_eq!(script.len(), 3);

    assert_eq!(
        client.complete(request("echo", "x")).await.unwrap().content,
        "first"
    );
    assert_eq!(
        client.complete(request("echo", "x")).await.unwrap_err(),
        ProviderError::Unavailable("scripted".into())
    );
    let drained = drain(client.stream(request("echo", "x")).await.unwrap()).await;
    assert_eq!(drained.text(), "third");
    assert!(script.is_empty());
    assert_eq!(
        client
            .complete(request("echo", "back to echo"))
            .await
            .unwrap()
            .content,
        "back to echo"
    );
}
