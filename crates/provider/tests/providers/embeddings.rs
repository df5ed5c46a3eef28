//! Embeddings through the adapters: the OpenAI-compatible one at its HTTP boundary (the
//! fake's `/v1/embeddings`, real wire format), the mock's lexical model, and Anthropic's
//! refusal (it has no embeddings endpoint).

use agentry_domain::llm::ProviderError;
use agentry_domain::provider::ProviderKind;
use agentry_fake_upstream::{FakeUpstream, Scripted};
use agentry_provider::MockScript;
use serde_json::json;

use crate::support::{KEY, assert_no_key, client, dead_address, mock, settings};

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text number {i}")).collect()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn openai_embeddings_are_batched_in_order_with_the_key() {
    let fake = FakeUpstream::start().await;
    let c = client(ProviderKind::OpenAi, &fake.base_url(), settings());
    let inputs = texts(300);
    let vectors = c.embed("text-embedding-test", &inputs).await.unwrap();
    assert_eq!(vectors.len(), 300);
    assert!(vectors.iter().all(|v| v.len() == 64));
    // In input order: each vector is the one of its own text.
    let alone = c
        .embed("text-embedding-test", &inputs[299..])
        .await
        .unwrap();
    assert!((cos(&vectors[299], &alone[0]) - 1.0).abs() < 1e-5);
    assert!(cos(&vectors[0], &alone[0]) < 0.99);
    let sent = fake.requests();
    // 300 inputs: batches of 128, 128 and 44, then the single one.
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0].path, "/v1/embeddings");
    assert_eq!(sent[0].method, "POST");
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(sent[0].body["model"], "text-embedding-test");
    assert_eq!(sent[0].body["encoding_format"], "float");
    let sizes: Vec<usize> = sent
        .iter()
        .map(|r| r.body["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [128, 128, 44, 1]);
    assert_eq!(sent[2].body["input"][43], json!("text number 299"));
}

#[tokio::test]
async fn openai_embedding_errors_are_classified_and_retried() {
    let fake = FakeUpstream::start().await;
    let c = client(ProviderKind::OpenAi, &fake.base_url(), settings());
    // A 500 is retried (settings: 2 retries), then succeeds.
    fake.push(Scripted::Error(500));
    assert_eq!(c.embed("m", &texts(2)).await.unwrap().len(), 2);
    let e = c.embed("fake-error-401", &texts(1)).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Unauthorized { status: 401, .. }),
        "{e:?}"
    );
    assert_no_key(&e);
    let e = c.embed("fake-error-400", &texts(1)).await.unwrap_err();
    assert!(matches!(e, ProviderError::InvalidRequest { .. }), "{e:?}");
    fake.push(Scripted::Unreadable);
    let e = c.embed("m", &texts(1)).await.unwrap_err();
    assert!(matches!(e, ProviderError::Malformed { .. }), "{e:?}");
    let down = client(ProviderKind::OpenAi, &dead_address().await, settings());
    let e = down.embed("m", &texts(1)).await.unwrap_err();
    assert!(matches!(e, ProviderError::Unavailable(_)), "{e:?}");
}

#[tokio::test]
async fn the_mock_embeds_lexically_and_anthropic_has_no_endpoint() {
    let script = MockScript::new();
    script.push_text("left for a chat");
    let m = mock(&script, settings());
    let v = m
        .embed(
            "lexical",
            &[
                "refunds are paid".to_owned(),
                "when is my refund paid".to_owned(),
                "parcels leave Rotterdam".to_owned(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(v.len(), 3);
    assert!(cos(&v[0], &v[1]) > cos(&v[0], &v[2]));
    // Embeddings leave the script to chat answers.
    assert_eq!(script.len(), 1);
    let e = m.embed("echo", &texts(1)).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::InvalidRequest { status: 404, .. }),
        "{e:?}"
    );
    assert!(matches!(
        m.embed("error-503", &texts(1)).await,
        Err(ProviderError::Upstream { status: 503, .. })
    ));
    let fake = FakeUpstream::start().await;
    let a = client(ProviderKind::Anthropic, &fake.origin(), settings());
    let e = a.embed("claude", &texts(1)).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::InvalidRequest { message, .. } if message.contains("no embeddings endpoint")),
        "{e:?}"
    );
    assert!(fake.requests().is_empty());
}
