//! Making (and caching) a resilient client per provider definition.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::ThreadId;

use agentry_domain::llm::{LlmClient, LlmClientFactory, ProviderError};
use agentry_domain::provider::{Provider, ProviderId, ProviderKind};
use secrecy::{ExposeSecret, SecretString};

use crate::anthropic::{AnthropicClient, DEFAULT_ANTHROPIC_BASE_URL};
use crate::lanes::{Lanes, MakeLane};
use crate::mock::{MockClient, MockScript};
use crate::openai::{DEFAULT_OPENAI_BASE_URL, OpenAiClient};
use crate::resilience::ResilientClient;
use crate::settings::{HttpVersion, ProviderSettings};

/// Builds the adapter for each provider kind, wrapped in [`ResilientClient`]. Clients are
/// cached per provider id and rebuilt when the definition (kind, base URL or key) changes; the
/// cache keeps a keyed hash of the key, never the key.
///
/// Each thread gets its own cached clients, hence its own HTTP connections: a pooled
/// connection's I/O task lives on the runtime that opened it, and every actix worker runs its
/// own single-threaded runtime, so a connection shared across workers made each call hop to
/// the other worker's thread and back (two cross-thread wake-ups per call). An HTTP provider's
/// calls are spread over [`Lanes`] of `streams_per_connection` calls each.
pub struct ClientFactory {
    settings: ProviderSettings,
    mock_script: MockScript,
    hasher: RandomState,
    cache: Mutex<HashMap<(ProviderId, ThreadId), Cached>>,
}

struct Cached {
    fingerprint: u64,
    client: Arc<dyn LlmClient>,
}

impl std::fmt::Debug for ClientFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFactory")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ClientFactory {
    /// A factory applying `settings` to every provider; the mock reads `mock_script` (a fresh
    /// empty one when `None`).
    pub fn new(settings: ProviderSettings, mock_script: Option<MockScript>) -> Self {
        Self {
            settings,
            mock_script: mock_script.unwrap_or_default(),
            hasher: RandomState::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The settings applied to every provider.
    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// The mock provider's script (a handle on the same queue).
    pub fn mock_script(&self) -> &MockScript {
        &self.mock_script
    }

    /// Forgets the cached client of `id` (the next [`LlmClientFactory::client`] builds anew).
    pub fn invalidate(&self, id: &ProviderId) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(provider, _), _| provider != id);
    }

    fn fingerprint(&self, provider: &Provider) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        provider.kind.as_str().hash(&mut hasher);
        provider
            .base_url
            .as_ref()
            .map(|u| u.as_str())
            .hash(&mut hasher);
        provider
            .api_key
            .as_ref()
            .map(ExposeSecret::expose_secret)
            .hash(&mut hasher);
        hasher.finish()
    }

    fn build(&self, provider: &Provider) -> Result<Arc<dyn LlmClient>, ProviderError> {
        let key = usable_key(provider.api_key.as_ref());
        let settings = self.settings;
        let (base, new_lane): (_, fn(_, _, _) -> MakeLane) = match provider.kind {
            ProviderKind::Mock => {
                let adapter = Arc::new(MockClient::new(self.mock_script.clone()));
                return Ok(Arc::new(ResilientClient::new(adapter, settings)));
            }
            ProviderKind::OpenAi => (DEFAULT_OPENAI_BASE_URL, |s, b, k| {
                http_lanes(s, b, k, OpenAiClient::new)
            }),
            ProviderKind::Anthropic => (DEFAULT_ANTHROPIC_BASE_URL, |s, b, k| {
                http_lanes(s, b, k, AnthropicClient::new)
            }),
        };
        let given = provider.base_url.as_ref().map(|u| u.as_str());
        require_key(provider, given, key.as_ref())?;
        let base = given.unwrap_or(base);
        let make = new_lane(settings, base, key);
        // Only HTTP/2 shares connections; over HTTP/1.1 one client opens as many as needed.
        let adapter: Arc<dyn LlmClient> = if may_use_http2(settings.http_version, base) {
            // The first lane is made now, so a definition that cannot be used fails here.
            let lanes = Lanes::new(settings.streams_per_connection, make);
            lanes.open_first()?;
            Arc::new(lanes)
        } else {
            make()?
        };
        Ok(Arc::new(ResilientClient::new(adapter, settings)))
    }
}

impl LlmClientFactory for ClientFactory {
    fn client(&self, provider: &Provider) -> Result<Arc<dyn LlmClient>, ProviderError> {
        let fingerprint = self.fingerprint(provider);
        let key = (provider.id.clone(), std::thread::current().id());
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cached) = cache.get(&key).filter(|c| c.fingerprint == fingerprint) {
            return Ok(Arc::clone(&cached.client));
        }
        let client = self.build(provider)?;
        cache.insert(
            key,
            Cached {
                fingerprint,
                client: Arc::clone(&client),
            },
        );
        Ok(client)
    }
}

/// Whether calls to `base` can go over HTTP/2 (and so share connections).
fn may_use_http2(version: HttpVersion, base: &str) -> bool {
    match version {
        HttpVersion::Http1 => false,
        HttpVersion::Http2 => true,
        HttpVersion::Auto => base
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://")),
    }
}

/// The constructor shared by the HTTP adapters.
type NewAdapter<C> =
    fn(reqwest::Client, &str, Option<SecretString>, ProviderSettings) -> Result<C, ProviderError>;

/// Lanes of an HTTP adapter: each lane gets a new HTTP client.
fn http_lanes<C: LlmClient + 'static>(
    settings: ProviderSettings,
    base: &str,
    key: Option<SecretString>,
    new: NewAdapter<C>,
) -> MakeLane {
    let base = base.to_owned();
    Box::new(move || {
        let adapter = new(http_client(&settings), &base, key.clone(), settings)?;
        Ok(Arc::new(adapter) as Arc<dyn LlmClient>)
    })
}

/// A key worth sending: present and not blank.
fn usable_key(key: Option<&SecretString>) -> Option<SecretString> {
    key.filter(|k| !k.expose_secret().trim().is_empty())
        .cloned()
}

/// The public OpenAI and Anthropic endpoints need a key; self-hosted ones may not.
fn require_key(
    provider: &Provider,
    base: Option<&str>,
    key: Option<&SecretString>,
) -> Result<(), ProviderError> {
    if base.is_none() && key.is_none() {
        return Err(ProviderError::InvalidRequest {
            status: 400,
            message: format!(
                "provider '{}' ({}) has no api_key, which its default endpoint requires",
                provider.id,
                provider.kind.as_str()
            ),
        });
    }
    Ok(())
}

/// A new HTTP client (one per lane): its own connection pool, connect timeout, no overall timeout
/// (the resilience layer times calls, and streams may last long). HTTP/2 where the upstream
/// negotiates it (TLS) or is declared to speak it ([`HttpVersion::Http2`]); hyper keeps one
/// HTTP/2 connection per upstream in a pool and queues calls beyond the upstream's stream
/// limit, which is why calls are spread over lanes (decision 47).
fn http_client(settings: &ProviderSettings) -> reqwest::Client {
    client_builder(settings).build().unwrap_or_else(|error| {
        tracing::error!(%error, "the configured HTTP client could not be built; using defaults");
        reqwest::Client::new()
    })
}

fn client_builder(settings: &ProviderSettings) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .user_agent(concat!("agentry/", env!("CARGO_PKG_VERSION")));
    builder = match settings.http_version {
        HttpVersion::Auto => builder,
        HttpVersion::Http1 => builder.http1_only(),
        HttpVersion::Http2 => builder.http2_prior_knowledge(),
    };
    if let Some(tls) = shared_tls() {
        let mut tls = tls.clone();
        // What reqwest offers for each choice when it builds the configuration itself.
        tls.alpn_protocols = match settings.http_version {
            HttpVersion::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
            HttpVersion::Http2 => vec![b"h2".to_vec()],
        };
        builder = builder.tls_backend_preconfigured(tls);
    }
    builder
}

/// The TLS configuration of every provider client, built once per process: the same as
/// reqwest builds for each client by default (the platform's verifier and root certificates,
/// TLS 1.2 and 1.3, aws-lc-rs unless a process default is installed), but its verifier, and
/// the root store it loaded, are shared by all clones instead of loaded again for each lane
/// (~73 KB and ~4 ms per lane; decision 120). `None` when the platform's roots cannot be
/// read: each client then builds its own as before, and reports the same error itself.
fn shared_tls() -> Option<&'static rustls::ClientConfig> {
    static TLS: OnceLock<Option<rustls::ClientConfig>> = OnceLock::new();
    TLS.get_or_init(|| {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let verifier = match rustls_platform_verifier::Verifier::new(provider.clone()) {
            Ok(verifier) => verifier,
            Err(error) => {
                tracing::warn!(%error, "the platform's TLS roots could not be loaded once for all provider clients");
                return None;
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .ok()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Some(config)
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_is_built_on_the_one_shared_tls_configuration() {
        // reqwest recognises a preconfigured backend only by its exact rustls type; with
        // another version it would refuse to build and the lane would fall back to defaults.
        assert!(
            shared_tls().is_some(),
            "the platform's roots load on this machine"
        );
        for http_version in [HttpVersion::Auto, HttpVersion::Http1, HttpVersion::Http2] {
            let settings = ProviderSettings {
                http_version,
                ..ProviderSettings::default()
            };
            let built = client_builder(&settings).build();
            assert!(built.is_ok(), "{http_version:?}: {:?}", built.err());
        }
    }

    #[test]
    fn only_upstreams_that_can_speak_http2_share_connections() {
        assert!(may_use_http2(
            HttpVersion::Auto,
            "https://api.openai.com/v1"
        ));
        assert!(may_use_http2(HttpVersion::Auto, "HTTPS://example.com"));
        assert!(!may_use_http2(
            HttpVersion::Auto,
            "http://localhost:11434/v1"
        ));
        assert!(!may_use_http2(
            HttpVersion::Http1,
            "https://api.openai.com/v1"
        ));
        assert!(may_use_http2(
            HttpVersion::Http2,
            "http://127.0.0.1:9100/v1"
        ));
    }
}
