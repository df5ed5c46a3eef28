//! The OpenAI-compatible adapter.

use std::time::{Duration, Instant};

use agentry_domain::llm::{ProviderError, StreamEvent, TokenUsage};
use agentry_domain::provider::ProviderKind;
use agentry_fake_upstream::{FakeUpstream, Scripted};
use agentry_provider::{OpenAiClient, ProviderSettings};
use serde_json::json;

use crate::support::{
    KEY, assert_no_key, client, connections_closed, dead_address, drain, request, settings,
};

fn openai(
    fake: &FakeUpstream,
    settings: ProviderSettings,
) -> std::sync::Arc<dyn agentry_domain::llm::LlmClient> {
    client(ProviderKind::OpenAi, &fake.base_url(), settings)
}

#[tokio::test]
async fn json_completion_and_what_was_sent() {
    let fake = FakeUpstream::start().await;
    let mut req = request("gpt-test", "hello big world");
    req.temperature = Some(0.5);
    req.top_p = Some(0.9);
    req.max_tokens = Some(50);
    let completion = openai(&fake, settings()).complete(req).await.unwrap();

    assert_eq!(completion.content, "hello big world");
    assert_eq!(completion.usage, Some(TokenUsage::new(5, 3)));
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    assert_eq!(completion.model, "gpt-test");

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(sent.body["model"], "gpt-test");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello big world"}])
    );
    assert_eq!(sent.body["temperature"], 0.5);
    assert_eq!(sent.body["top_p"], 0.9);
    assert_eq!(sent.body["max_tokens"], 50);
    assert_eq!(sent.body["stream"], false);
}

#[tokio::test]
async fn unset_options_are_not_sent_and_no_key_means_no_header() {
    let fake = FakeUpstream::start().await;
    let factory = agentry_provider::ClientFactory::new(settings(), None);
    let provider = crate::support::provider(ProviderKind::OpenAi, Some(&fake.base_url()), None);
    let client = agentry_domain::llm::LlmClientFactory::client(&factory, &provider).unwrap();
    client.complete(request("llama3", "hi")).await.unwrap();
    let sent = &fake.requests()[0];
    assert_eq!(sent.header("authorization"), None);
    for field in ["temperature", "top_p", "max_tokens", "stream_options"] {
        assert!(sent.body.get(field).is_none(), "{field} sent");
    }
}

#[tokio::test]
async fn streaming_concatenates_and_reports_usage() {
    let fake = FakeUpstream::start().await;
    let stream = openai(&fake, settings())
        .stream(request("gpt-test", "one  two three "))
        .await
        .unwrap();
    let drained = drain(stream).await;

    assert_eq!(drained.text(), "one  two three ");
    assert_eq!(drained.deltas.len(), 3);
    assert_eq!(
        drained.done,
        Some(StreamEvent::Done {
            usage: Some(TokenUsage::new(5, 3)),
            finish_reason: Some("stop".to_owned()),
            model: "gpt-test".to_owned(),
        })
    );
    let sent = &fake.requests()[0];
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn max_tokens_finish_reason_is_length() {
    let fake = FakeUpstream::start().await;
    let mut req = request("gpt-test", "a b c d e");
    req.max_tokens = Some(2);
    let completion = openai(&fake, settings()).complete(req).await.unwrap();
    assert_eq!(completion.content, "a b ");
    assert_eq!(completion.finish_reason.as_deref(), Some("length"));
}

#[tokio::test]
async fn unauthorized_is_not_retried() {
    let fake = FakeUpstream::start().await;
    let error = openai(&fake, settings())
        .complete(request("fake-error-401", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProviderError::Unauthorized { status: 401, message } if message.contains("Incorrect API key")),
        "{error:?}"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn bad_request_is_invalid_request() {
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::ErrorMessage(
        400,
        "temperature is out of range".into(),
    ));
    let error = openai(&fake, settings())
        .complete(request("gpt-test", "hi"))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        ProviderError::InvalidRequest {
            status: 400,
            message: "temperature is out of range".into()
        }
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn server_error_is_retried_then_succeeds() {
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::Error(500));
    let completion = openai(&fake, settings())
        .complete(request("gpt-test", "again"))
        .await
        .unwrap();
    assert_eq!(completion.content, "again");
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn rate_limit_waits_retry_after_then_succeeds() {
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::Error(429));
    let started = Instant::now();
    let completion = openai(&fake, settings())
        .complete(request("gpt-test", "later"))
        .await
        .unwrap();
    assert_eq!(completion.content, "later");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 not honoured"
    );
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn rate_limit_longer_than_the_cap_is_returned_at_once() {
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::Error(429));
    let capped = ProviderSettings {
        backoff_max: Duration::from_millis(500),
        ..settings()
    };
    let error = openai(&fake, capped)
        .complete(request("gpt-test", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "{error:?}"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn persistent_unavailability_gives_up_after_max_retries() {
    let fake = FakeUpstream::start().await;
    let error = openai(&fake, settings())
        .complete(request("fake-error-503", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Upstream { status: 503, .. }),
        "{error:?}"
    );
    assert_eq!(fake.request_count(), 1 + settings().max_retries as usize);
}

#[tokio::test]
async fn slow_upstream_times_out() {
    let fake = FakeUpstream::start().await;
    let quick = ProviderSettings {
        request_timeout: Duration::from_millis(100),
        max_retries: 0,
        ..settings()
    };
    let started = Instant::now();
    let error = openai(&fake, quick)
        .complete(request("fake-slow-2000", "x"))
        .await
        .unwrap_err();
    assert_eq!(error, ProviderError::Timeout(Duration::from_millis(100)));
    assert!(started.elapsed() < Duration::from_secs(1));

    let error = openai(&fake, quick)
        .stream(request("fake-slow-2000", "x"))
        .await
        .err()
        .unwrap();
    assert_eq!(error, ProviderError::Timeout(Duration::from_millis(100)));
}

#[tokio::test]
async fn stream_idle_timeout_ends_the_stream() {
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::Delayed(
        Duration::from_millis(300),
        Box::new(Scripted::Text("a b c".into())),
    ));
    let idle = ProviderSettings {
        stream_idle_timeout: Duration::from_millis(100),
        ..settings()
    };
    let drained = drain(
        openai(&fake, idle)
            .stream(request("gpt-test", "x"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        drained.error,
        Some(ProviderError::Timeout(Duration::from_millis(100)))
    );
    assert!(drained.done.is_none());
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn cut_stream_yields_deltas_then_an_error_without_retry() {
    let fake = FakeUpstream::start().await;
    let stream = openai(&fake, settings())
        .stream(request("fake-cut", "one two three four"))
        .await
        .unwrap();
    let drained = drain(stream).await;
    assert_eq!(drained.text(), "one two ");
    assert!(drained.done.is_none());
    assert!(
        matches!(drained.error, Some(ProviderError::Unavailable(_))),
        "{drained:?}"
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn cut_json_answer_is_unavailable() {
    let fake = FakeUpstream::start().await;
    let no_retry = ProviderSettings {
        max_retries: 0,
        ..settings()
    };
    let error = openai(&fake, no_retry)
        .complete(request("fake-cut", "one two"))
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn unreachable_base_url_is_unavailable() {
    let base = format!("{}/v1", dead_address().await);
    let no_retry = ProviderSettings {
        max_retries: 0,
        ..settings()
    };
    let error = client(ProviderKind::OpenAi, &base, no_retry)
        .complete(request("gpt", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProviderError::Unavailable(m) if m.contains("connect")),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn the_key_never_appears_in_errors() {
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::ErrorMessage(
        401,
        format!("Incorrect API key provided: {KEY}"),
    ));
    fake.push(Scripted::ErrorMessage(500, format!("crashed on {KEY}")));
    let no_retry = ProviderSettings {
        max_retries: 0,
        ..settings()
    };
    let client = openai(&fake, no_retry);
    let unauthorized = client.complete(request("gpt", "x")).await.unwrap_err();
    assert!(matches!(unauthorized, ProviderError::Unauthorized { .. }));
    assert_no_key(&unauthorized);
    let upstream = client.stream(request("gpt", "x")).await.err().unwrap();
    assert!(matches!(
        upstream,
        ProviderError::Upstream { status: 500, .. }
    ));
    assert_no_key(&upstream);

    let direct = OpenAiClient::new(
        reqwest::Client::new(),
        &fake.base_url(),
        Some(KEY.to_owned().into()),
        settings(),
    )
    .unwrap();
    assert!(!format!("{direct:?}").contains(KEY));
}

#[tokio::test]
async fn dropping_a_stream_closes_the_upstream_connection() {
    let fake = FakeUpstream::start().await;
    let words: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
    let mut stream = openai(&fake, settings())
        .stream(request("fake-slow-50", &words.join(" ")))
        .await
        .unwrap();
    futures_util::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fake.open_connections(), 1);
    drop(stream);
    assert!(
        connections_closed(&fake).await,
        "the upstream connection outlived the stream"
    );
}

#[tokio::test]
async fn dropping_a_call_closes_the_upstream_connection() {
    let fake = FakeUpstream::start().await;
    let client = openai(&fake, settings());
    let call = tokio::spawn(async move { client.complete(request("fake-slow-5000", "x")).await });
    while fake.request_count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    call.abort();
    assert!(
        connections_closed(&fake).await,
        "the upstream connection outlived the call"
    );
}

#[tokio::test]
async fn an_unreadable_success_is_reported_with_its_status_and_not_retried() {
    let fake = FakeUpstream::start().await;
    fake.push(Scripted::Unreadable);
    let error = openai(&fake, settings())
        .complete(request("gpt-test", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProviderError::Malformed { status: 200, .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert_eq!(error.status(), Some(200));
    assert_eq!(
        fake.request_count(),
        1,
        "the same request would get the same answer"
    );

    fake.push(Scripted::Unreadable);
    let before = fake.request_count();
    let outcome = match openai(&fake, settings())
        .stream(request("gpt-test", "hi"))
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
    assert_eq!(fake.request_count(), before + 1);
}
