//! The client factory.

use std::sync::Arc;

use agentry_domain::llm::{LlmClientFactory, ProviderError};
use agentry_domain::provider::ProviderKind;
use agentry_provider::{ClientFactory, MockScript};

use crate::support::{KEY, provider, request, settings};

#[tokio::test]
async fn clients_are_cached_until_the_definition_changes() {
    let factory = ClientFactory::new(settings(), None);
    let first = provider(
        ProviderKind::OpenAi,
        Some("http://127.0.0.1:9/v1"),
        Some(KEY),
    );
    let a = factory.client(&first).unwrap();
    let b = factory.client(&first).unwrap();
    assert!(Arc::ptr_eq(&a, &b));

    let rekeyed = provider(
        ProviderKind::OpenAi,
        Some("http://127.0.0.1:9/v1"),
        Some("sk-other"),
    );
    let c = factory.client(&rekeyed).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    let moved = provider(
        ProviderKind::OpenAi,
        Some("http://127.0.0.1:10/v1"),
        Some("sk-other"),
    );
    assert!(!Arc::ptr_eq(&c, &factory.client(&moved).unwrap()));

    factory.invalidate(&moved.id);
    assert!(!format!("{factory:?}").contains(KEY));
}

#[tokio::test]
async fn default_endpoints_need_a_key() {
    let factory = ClientFactory::new(settings(), None);
    for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
        let error = factory.client(&provider(kind, None, None)).err().unwrap();
        assert!(
            matches!(error, ProviderError::InvalidRequest { .. }),
            "{error:?}"
        );
        assert!(
            factory.client(&provider(kind, None, Some("  "))).is_err(),
            "a blank key is no key"
        );
        assert!(factory.client(&provider(kind, None, Some(KEY))).is_ok());
        assert!(
            factory
                .client(&provider(kind, Some("http://localhost:11434"), None))
                .is_ok()
        );
    }
    let bad = provider(ProviderKind::OpenAi, None, Some("sk-bad\nkey"));
    assert!(matches!(
        factory.client(&bad),
        Err(ProviderError::InvalidRequest { .. })
    ));
}

#[tokio::test]
async fn the_mock_shares_the_given_script() {
    let script = MockScript::new();
    let factory = ClientFactory::new(settings(), Some(script.clone()));
    script.push_text("from the test");
    let client = factory
        .client(&provider(ProviderKind::Mock, None, None))
        .unwrap();
    assert_eq!(
        client.complete(request("echo", "x")).await.unwrap().content,
        "from the test"
    );
    factory.mock_script().push_text("via the factory");
    assert_eq!(script.len(), 1);
}
