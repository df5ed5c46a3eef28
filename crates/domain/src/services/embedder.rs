//! The embedder of knowledge: the configured `provider/model` (`knowledge_embedding_model`)
//! called through the provider port, so that any provider serving `/v1/embeddings` (an
//! OpenAI-compatible one, or the mock's lexical stand-in) can rank chunks by similarity.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Invalid, Result};
use crate::knowledge::Embedder;
use crate::llm::LlmClientFactory;
use crate::provider::{MOCK_EMBEDDING_MODEL, ProviderId, ProviderKind};
use crate::services::ProviderRegistry;

/// The setting's name, in errors.
pub const EMBEDDING_MODEL_FIELD: &str = "knowledge_embedding_model";

/// Embeds texts with a model of a provider, looked up at each call (so a provider edited
/// through the API is followed).
pub struct ProviderEmbedder {
    /// `provider/model`, as stored with the vectors.
    qualified: String,
    provider_id: ProviderId,
    /// The model's name at the provider.
    model_name: String,
    providers: ProviderRegistry,
    llm: Arc<dyn LlmClientFactory>,
}

impl ProviderEmbedder {
    /// The embedder `spec` names (`provider/model`), checked now: the provider must exist,
    /// have an embeddings endpoint (not kind `anthropic`), and its client must be usable; a
    /// `mock`-kind provider serves only [`MOCK_EMBEDDING_MODEL`]. The model is not checked
    /// against the provider's `models` (which lists chat models).
    ///
    /// # Errors
    /// [`Invalid`] naming [`EMBEDDING_MODEL_FIELD`] with the reason; a store error while
    /// providers are read.
    pub async fn new(
        spec: &str,
        providers: ProviderRegistry,
        llm: Arc<dyn LlmClientFactory>,
    ) -> Result<Self> {
        let invalid = |reason: String| Error::from(Invalid::new(EMBEDDING_MODEL_FIELD, reason));
        let Some((pid, model)) = spec
            .trim()
            .split_once('/')
            .filter(|(p, m)| !p.is_empty() && !m.trim().is_empty())
        else {
            return Err(invalid(format!(
                "'{spec}' must be provider/model, such as openai/text-embedding-3-small or \
                 mock/{MOCK_EMBEDDING_MODEL}"
            )));
        };
        let provider_id =
            ProviderId::parse(pid).map_err(|e| invalid(format!("provider id {}", e.reason)))?;
        let provider = match providers.get(&provider_id).await {
            Ok(p) => p,
            Err(Error::NotFound { .. }) => {
                let known: Vec<String> = providers
                    .list()
                    .await?
                    .iter()
                    .map(|p| p.id.to_string())
                    .collect();
                return Err(invalid(format!(
                    "names provider '{pid}', which does not exist (providers: {})",
                    known.join(", ")
                )));
            }
            Err(e) => return Err(e),
        };
        match provider.kind {
            ProviderKind::Anthropic => {
                return Err(invalid(format!(
                    "provider '{pid}' is of kind anthropic, which has no embeddings endpoint: \
                     name an OpenAI-compatible provider (kind openai) serving /v1/embeddings, \
                     or mock/{MOCK_EMBEDDING_MODEL}"
                )));
            }
            ProviderKind::Mock if model != MOCK_EMBEDDING_MODEL => {
                return Err(invalid(format!(
                    "provider '{pid}' is of kind mock, whose only embedding model is \
                     '{MOCK_EMBEDDING_MODEL}'"
                )));
            }
            ProviderKind::Mock | ProviderKind::OpenAi => {}
        }
        llm.client(&provider)
            .map_err(|e| invalid(format!("provider '{pid}' cannot be used: {e}")))?;
        Ok(Self {
            qualified: format!("{pid}/{model}"),
            provider_id,
            model_name: model.to_owned(),
            providers,
            llm,
        })
    }
}

#[async_trait]
impl Embedder for ProviderEmbedder {
    fn model(&self) -> &str {
        &self.qualified
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let provider = self.providers.get(&self.provider_id).await?;
        let failed = |error| Error::Provider {
            provider_id: self.provider_id.to_string(),
            error,
        };
        let client = self.llm.client(&provider).map_err(failed)?;
        let vectors = client
            .embed(&self.model_name, texts)
            .await
            .map_err(failed)?;
        let dims = vectors.first().map_or(0, Vec::len);
        if vectors.len() != texts.len() || dims == 0 || vectors.iter().any(|v| v.len() != dims) {
            return Err(Error::Internal(format!(
                "embedding model {} gave {} vectors for {} texts, or vectors of unequal or zero length",
                self.qualified,
                vectors.len(),
                texts.len()
            )));
        }
        Ok(vectors)
    }
}
