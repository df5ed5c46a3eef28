//! The domain's few error kinds. Adapters translate their infrastructure errors into these;
//! the HTTP adapter maps each kind to a status and an error code in one place.

use serde_json::{Map, Value};

/// Result alias used across the domain and its ports.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A rejected input: which field failed and why, plus optional extra details
/// (for example `available_models`).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The field as the caller spelled it (`llmModel`, `config.temperature`, `name`…).
    pub field: String,
    /// A human-readable reason.
    pub reason: String,
    /// Extra machine-readable details merged into the error's `details`.
    pub extra: Map<String, Value>,
}

impl Invalid {
    /// A rejected `field` with a `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
            extra: Map::new(),
        }
    }

    /// Adds a machine-readable detail.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The same failure reported under another field name (the caller's spelling).
    #[must_use]
    pub fn renamed(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for Invalid {}

/// Every failure the domain and its ports report.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The input was rejected; nothing was changed.
    #[error("invalid {}: {}", .0.field, .0.reason)]
    Invalid(Invalid),
    /// No such entity.
    #[error("{entity} not found: {id}")]
    NotFound {
        /// The kind of entity (`agent`, `provider`…).
        entity: &'static str,
        /// The identifier that was looked up.
        id: String,
    },
    /// A referenced model is not served by any configured provider.
    #[error("model not found: {model}")]
    ModelNotFound {
        /// The provider the caller named, if any.
        provider_id: Option<String>,
        /// The model name the caller named.
        model: String,
        /// Every model that could have been named, as `provider/model`.
        available_models: Vec<String>,
    },
    /// The change would break a uniqueness rule or a reference.
    #[error("{message}")]
    Conflict {
        /// A human-readable explanation.
        message: String,
        /// The field whose value collides, when there is one.
        field: Option<String>,
        /// Extra machine-readable details.
        extra: Map<String, Value>,
    },
    /// The LLM provider failed (after retries).
    #[error("provider '{provider_id}' failed: {error}")]
    Provider {
        /// Which provider.
        provider_id: String,
        /// How it failed.
        error: crate::llm::ProviderError,
    },
    /// The caller is not authenticated: no credential, or one that is invalid, expired or
    /// revoked. The message is safe to show (it never says which part was wrong).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The caller is authenticated but may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Too many requests (or failed logins): try again after `retry_after`.
    #[error("rate limited: retry after {}s", retry_after.as_secs())]
    RateLimited {
        /// How long to wait.
        retry_after: std::time::Duration,
        /// The limit that was hit, in words (`100 requests per minute`).
        limit: Option<String>,
    },
    /// Too busy to take this now (every instance of a cluster agent is in use and none came
    /// free in time): try again after `retry_after`.
    #[error("busy: {message}")]
    Busy {
        /// How long to wait before trying again.
        retry_after: std::time::Duration,
        /// What is busy, in words.
        message: String,
    },
    /// A guardrail with `action: block` refused the turn's input; nothing reached the model.
    #[error("blocked by guardrail {}: {}", .trigger.label(), .trigger.detail)]
    Guardrail {
        /// The rule that triggered (never the text it matched).
        trigger: Box<crate::guardrail::Trigger>,
        /// The input field as the caller named it (`message`, `input`, `messages`).
        field: String,
    },
    /// A body (an uploaded file) is larger than the configured limit; nothing was kept.
    #[error("too large: more than {limit_bytes} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit_bytes: u64,
    },
    /// The content's media type is refused (an executable, a type the content contradicts).
    #[error("unsupported media type: {0}")]
    UnsupportedMedia(String),
    /// A backing service (database…) cannot be reached right now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected infrastructure failure. The message is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid(Invalid::new(field, reason))
    }

    /// Shorthand for [`Error::Conflict`] on a field.
    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
            field: Some(field.to_owned()),
            extra: Map::new(),
        }
    }

    /// Shorthand for [`Error::Unauthorized`].
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(message.into())
    }

    /// Shorthand for [`Error::Forbidden`].
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(entity: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            entity,
            id: id.into(),
        }
    }
}

impl From<Invalid> for Error {
    fn from(value: Invalid) -> Self {
        Self::Invalid(value)
    }
}
