//! HTTP versions towards providers, and calls spread over connections ("lanes") so that an
//! upstream's HTTP/2 stream limit does not queue calls.

use agentry_domain::llm::ProviderError;
use agentry_domain::provider::ProviderKind;
use agentry_fake_upstream::FakeUpstream;
use agentry_provider::{HttpVersion, ProviderSettings};
use futures_util::future::join_all;

use crate::support::{client, drain, request, settings};

fn over(version: HttpVersion, streams_per_connection: usize) -> ProviderSettings {
    ProviderSettings {
        http_version: version,
        streams_per_connection,
        ..settings()
    }
}

fn versions(fake: &FakeUpstream) -> Vec<String> {
    fake.requests().into_iter().map(|r| r.version).collect()
}

#[tokio::test]
async fn plain_http_upstreams_get_http1_unless_http2_is_asked_for() {
    for (kind, base) in [(ProviderKind::OpenAi, "/v1"), (ProviderKind::Anthropic, "")] {
        for (version, expected) in [
            (HttpVersion::Auto, "HTTP/1.1"),
            (HttpVersion::Http1, "HTTP/1.1"),
            (HttpVersion::Http2, "HTTP/2.0"),
        ] {
            let fake = FakeUpstream::start().await;
            let llm = client(
                kind,
                &format!("{}{base}", fake.origin()),
                over(version, 100),
            );
            let answer = llm.complete(request("fake-echo", "one two")).await.unwrap();
            assert_eq!(answer.content, "one two");
            let streamed = drain(llm.stream(request("fake-echo", "three")).await.unwrap()).await;
            assert_eq!(
                (streamed.text(), streamed.error),
                ("three".to_owned(), None)
            );
            assert_eq!(
                versions(&fake),
                [expected, expected],
                "{kind:?} {version:?}"
            );
        }
    }
}

/// Opens `n` streams at once against a fake allowing `limit` streams per HTTP/2 connection
/// and answering after 100 ms; returns the most requests the fake had at the same time and
/// the connections open while all streams were.
async fn concurrent_streams(n: usize, limit: u32, per_connection: usize) -> (usize, usize) {
    let fake = FakeUpstream::start().await.with_stream_limit(limit);
    let llm = client(
        ProviderKind::OpenAi,
        &fake.base_url(),
        over(HttpVersion::Http2, per_connection),
    );
    let opened = join_all((0..n).map(|_| llm.stream(request("fake-slow-100", "a b")))).await;
    let connections = fake.open_connections();
    let streams: Vec<_> = opened
        .into_iter()
        .collect::<Result<_, ProviderError>>()
        .unwrap();
    for stream in streams {
        assert_eq!(drain(stream).await.text(), "a b");
    }
    assert!(versions(&fake).iter().all(|v| v == "HTTP/2.0"));
    (fake.peak_concurrent_requests(), connections)
}

#[tokio::test]
async fn calls_beyond_a_connections_stream_limit_open_another_connection() {
    // Six streams, two per connection: three connections, all six served at once.
    assert_eq!(concurrent_streams(6, 2, 2).await, (6, 3));
}

#[tokio::test]
async fn without_lanes_sized_to_the_upstream_limit_calls_wait_for_a_free_stream() {
    // What lanes prevent (and why `streams_per_connection` must not exceed the upstream's
    // limit): one connection, and the upstream never sees more than its limit at once.
    assert_eq!(concurrent_streams(6, 2, 100).await, (2, 1));
}

#[tokio::test]
async fn http2_asked_of_an_http1_only_upstream_is_a_clean_provider_error() {
    // A server that answers everything in HTTP/1.1, whatever the client sent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0_u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let llm = client(ProviderKind::OpenAi, &base, over(HttpVersion::Http2, 100));
    let error = llm.complete(request("fake-echo", "hi")).await.unwrap_err();
    crate::support::assert_no_key(&error);
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
}
