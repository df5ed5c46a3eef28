//! The model that answers a call and its optional fallback.

use std::sync::Arc;

use crate::agent::ModelRef;
use crate::error::{Error, Result};
use crate::llm::{Completion, CompletionRequest, CompletionStream, LlmClient, ProviderError};

/// A model and the client that serves it.
#[derive(Clone)]
pub(super) struct Route {
    pub(super) model: ModelRef,
    pub(super) client: Arc<dyn LlmClient>,
}

/// The model that answers and, when the agent has one, its fallback, tried when the first
/// fails (after its own retries) before any text was produced. An invalid request is not
/// retried elsewhere: it would fail there too.
#[derive(Clone)]
pub(super) struct Routes {
    pub(super) primary: Route,
    pub(super) fallback: Option<Route>,
}

pub(super) fn provider_error(model: &ModelRef, error: ProviderError) -> Error {
    Error::Provider {
        provider_id: model.provider_id.to_string(),
        error,
    }
}

impl Routes {
    fn all(&self) -> impl Iterator<Item = &Route> {
        std::iter::once(&self.primary).chain(self.fallback.as_ref())
    }

    fn give_up(&self, route: &Route, error: &ProviderError) -> bool {
        matches!(error, ProviderError::InvalidRequest { .. })
            || self
                .fallback
                .as_ref()
                .is_none_or(|f| std::ptr::eq(f, route))
    }

    /// Asks each route in turn with `call` until one answers; returns the answer and the
    /// model that gave it, or the last failure.
    async fn first_answer<T, F, Fut>(
        &self,
        request: &CompletionRequest,
        call: F,
    ) -> Result<(T, ModelRef)>
    where
        F: Fn(Arc<dyn LlmClient>, CompletionRequest) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        for route in self.all() {
            let req = CompletionRequest {
                model: route.model.model_name.clone(),
                ..request.clone()
            };
            match call(route.client.clone(), req).await {
                Ok(answer) => return Ok((answer, route.model.clone())),
                Err(e) if self.give_up(route, &e) => return Err(provider_error(&route.model, e)),
                Err(e) => {
                    tracing::warn!(model = %route.model, error = %e, "model failed; trying the fallback")
                }
            }
        }
        Err(Error::Internal("no route answered".to_owned()))
    }

    /// A whole answer and the model that gave it.
    pub(super) async fn complete(
        &self,
        request: &CompletionRequest,
    ) -> Result<(Completion, ModelRef)> {
        self.first_answer(
            request,
            |client, req| async move { client.complete(req).await },
        )
        .await
    }

    /// A streamed answer and the model that gives it.
    pub(super) async fn stream(
        &self,
        request: &CompletionRequest,
    ) -> Result<(CompletionStream, ModelRef)> {
        self.first_answer(
            request,
            |client, req| async move { client.stream(req).await },
        )
        .await
    }
}
