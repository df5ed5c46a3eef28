//! The provider registry: built-in and configured providers plus those created by API, and
//! the resolution of model references against them.

use std::sync::Arc;

use serde_json::Map;

use crate::agent::{ModelRef, ModelSpec};
use crate::error::{Error, Invalid, Result};
use crate::ports::{AgentStore, Clock, ProviderStore};
use crate::provider::{Provider, ProviderId, ProviderInput, ProviderPatch, ProviderSource};

/// Every provider the server knows and the rules for changing them.
#[derive(Clone)]
pub struct ProviderRegistry {
    fixed: Arc<Vec<Provider>>,
    store: Arc<dyn ProviderStore>,
    agents: Arc<dyn AgentStore>,
    clock: Arc<dyn Clock>,
}

impl ProviderRegistry {
    /// A registry over `fixed` providers (built-in and configured; read-only) and a store
    /// for those created by API. `agents` is consulted before a provider is deleted.
    pub fn new(
        fixed: Vec<Provider>,
        store: Arc<dyn ProviderStore>,
        agents: Arc<dyn AgentStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            fixed: Arc::new(fixed),
            store,
            agents,
            clock,
        }
    }

    fn fixed(&self, id: &ProviderId) -> Option<&Provider> {
        self.fixed.iter().find(|p| &p.id == id)
    }

    /// Every provider, ordered by id.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(&self) -> Result<Vec<Provider>> {
        let mut all: Vec<Provider> = self.fixed.iter().cloned().collect();
        all.extend(
            self.store
                .list_providers()
                .await?
                .into_iter()
                .filter(|p| self.fixed(&p.id).is_none()),
        );
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    /// One provider.
    ///
    /// # Errors
    /// `NotFound` when no provider has that id.
    pub async fn get(&self, id: &ProviderId) -> Result<Provider> {
        match self.fixed(id) {
            Some(p) => Ok(p.clone()),
            None => self.store.get_provider(id).await,
        }
    }

    /// Creates a provider managed by API.
    ///
    /// # Errors
    /// `Conflict` (field `id`) when the id is taken, by a stored or a configured provider.
    pub async fn create(&self, input: ProviderInput) -> Result<Provider> {
        if self.fixed(&input.id).is_some() {
            return Err(Error::conflict(
                "id",
                format!(
                    "provider '{}' already exists (defined in the configuration)",
                    input.id
                ),
            ));
        }
        let now = self.clock.now();
        let provider = Provider {
            id: input.id,
            kind: input.kind,
            base_url: input.base_url,
            api_key: input.api_key,
            models: input.models,
            source: ProviderSource::Api,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_provider(&provider).await?;
        Ok(provider)
    }

    fn ensure_mutable(&self, id: &ProviderId) -> Result<()> {
        match self.fixed(id) {
            Some(p) => Err(Error::Conflict {
                message: format!(
                    "provider '{id}' is {} and cannot be changed through the API",
                    match p.source {
                        ProviderSource::Builtin => "built in",
                        _ => "defined in the configuration",
                    }
                ),
                field: Some("id".to_owned()),
                extra: Map::new(),
            }),
            None => Ok(()),
        }
    }

    /// Changes a provider managed by API.
    ///
    /// # Errors
    /// `NotFound`; `Conflict` for a built-in or configured provider.
    pub async fn update(&self, id: &ProviderId, patch: ProviderPatch) -> Result<Provider> {
        self.ensure_mutable(id)?;
        let mut p = self.store.get_provider(id).await?;
        if let Some(kind) = patch.kind {
            p.kind = kind;
        }
        if let Some(url) = patch.base_url {
            p.base_url = url;
        }
        if let Some(key) = patch.api_key {
            p.api_key = key;
        }
        if let Some(models) = patch.models {
            p.models = models;
        }
        p.updated_at = self.clock.now();
        self.store.update_provider(&p).await?;
        Ok(p)
    }

    /// Deletes a provider managed by API. Returns whether it existed.
    ///
    /// # Errors
    /// `Conflict` for a built-in or configured provider, or one that agents still use
    /// (their keys are in the details).
    pub async fn delete(&self, id: &ProviderId) -> Result<bool> {
        self.ensure_mutable(id)?;
        let users = self.agents.agents_using_provider(id).await?;
        if !users.is_empty() {
            let mut extra = Map::new();
            extra.insert(
                "agents".to_owned(),
                users
                    .iter()
                    .map(|k| k.as_str().to_owned())
                    .collect::<Vec<_>>()
                    .into(),
            );
            return Err(Error::Conflict {
                message: format!(
                    "provider '{id}' is used by {} agent(s); change their model first",
                    users.len()
                ),
                field: None,
                extra,
            });
        }
        self.store.delete_provider(id).await
    }

    /// Every model that can be named, as `provider/model`, ordered by provider.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn available_models(&self) -> Result<Vec<String>> {
        Ok(Self::model_names(&self.list().await?))
    }

    fn model_names(providers: &[Provider]) -> Vec<String> {
        providers
            .iter()
            .flat_map(|p| p.models.iter().map(move |m| format!("{}/{m}", p.id)))
            .collect()
    }

    /// The models to suggest when `provider_id` does not serve a model: that provider's
    /// models first, by their bare names (as seed 000's `MODEL_NOT_FOUND` example lists
    /// them), then every other provider's as `provider/model`. Without a known provider,
    /// every model as `provider/model`.
    fn suggestions(providers: &[Provider], provider_id: Option<&str>) -> Vec<String> {
        let Some(named) = provider_id.and_then(|id| providers.iter().find(|p| p.id.as_str() == id))
        else {
            return Self::model_names(providers);
        };
        let others = providers
            .iter()
            .filter(|p| p.id != named.id)
            .flat_map(|p| p.models.iter().map(move |m| format!("{}/{m}", p.id)));
        named.models.iter().cloned().chain(others).collect()
    }

    /// Resolves a model as a caller named it: `provider/model`, `{provider_id, model_name}`
    /// or a bare model name served by exactly one provider.
    ///
    /// # Errors
    /// `ModelNotFound` (with the models to suggest: the named provider's first, by bare
    /// name) when nothing serves it; `Invalid` when a bare name is served by several providers
    /// (the candidates are in the details).
    pub async fn resolve(&self, spec: &ModelSpec) -> Result<ModelRef> {
        let providers = self.list().await?;
        let find = |id: &str| providers.iter().find(|p| p.id.as_str() == id);
        let model = spec.model.trim();
        if model.is_empty() {
            return Err(Invalid::new(&spec.field, "must name a model").into());
        }
        let not_found = |provider_id: Option<String>, model: &str| Error::ModelNotFound {
            available_models: Self::suggestions(&providers, provider_id.as_deref()),
            provider_id,
            model: model.to_owned(),
        };
        let qualified = match &spec.provider_id {
            Some(pid) => Some((pid.as_str(), model)),
            None => model.split_once('/').filter(|(pid, _)| find(pid).is_some()),
        };
        if let Some((pid, name)) = qualified {
            return match find(pid) {
                Some(p) if !name.is_empty() && p.serves(name) => Ok(ModelRef {
                    provider_id: p.id.clone(),
                    model_name: name.to_owned(),
                }),
                _ => Err(not_found(Some(pid.to_owned()), name)),
            };
        }
        let serving: Vec<&Provider> = providers
            .iter()
            .filter(|p| p.models.iter().any(|m| m == model))
            .collect();
        match serving.as_slice() {
            [p] => Ok(ModelRef {
                provider_id: p.id.clone(),
                model_name: model.to_owned(),
            }),
            [] => Err(not_found(None, model)),
            many => Err(Invalid::new(
                &spec.field,
                format!(
                    "model '{model}' is served by several providers: name one as provider/model"
                ),
            )
            .with(
                "candidates",
                many.iter()
                    .map(|p| format!("{}/{model}", p.id))
                    .collect::<Vec<_>>(),
            )
            .into()),
        }
    }
}
