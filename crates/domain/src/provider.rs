//! LLM providers as data: who serves which models, where, with which credential.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::error::Invalid;
use crate::text::{check_slug, check_text};

/// The built-in scripted provider that always exists.
pub const MOCK_PROVIDER_ID: &str = "mock";
/// The mock provider's model that answers with the last user message.
pub const MOCK_ECHO_MODEL: &str = "echo";
/// The mock provider's embedding model (`mock/lexical`): a deterministic hashed bag of
/// stemmed words and character trigrams. A lexical stand-in for offline use and tests, not a
/// semantic model (docs/knowledge.md).
pub const MOCK_EMBEDDING_MODEL: &str = "lexical";
/// The longest wait a `slow-<ms>` mock model may ask for (ten minutes).
pub const MOCK_SLOW_MAX_MS: u64 = 600_000;

/// Whether `model` names one of the scripted behaviours of the mock (`docs/providers.md`),
/// which every provider of kind `mock` serves whatever its model list says: `slow-<ms>`
/// (0 to [`MOCK_SLOW_MAX_MS`]), `error-<status>` (an HTTP error status, 400 to 599), `cut`, and
/// `instructions` (answers with the system instructions it was sent: a model that follows its
/// prompt to the letter, for testing prompt changes offline).
pub fn is_mock_behaviour(model: &str) -> bool {
    let number = |digits: &str| {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
    };
    if let Some(ms) = model.strip_prefix("slow-") {
        return number(ms).is_some_and(|ms| ms <= MOCK_SLOW_MAX_MS);
    }
    if let Some(status) = model.strip_prefix("error-") {
        return number(status).is_some_and(|s| (400..=599).contains(&s));
    }
    model == "cut" || model == "instructions"
}

/// A provider's identifier, such as `openai-prod`: a slug of at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(String);

impl ProviderId {
    /// Validates a provider id.
    ///
    /// # Errors
    /// [`Invalid`] naming `id` when it is not a slug.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check_slug("id", value, 64)?;
        Ok(Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI's API and every compatible server (vLLM, Ollama, llama.cpp, LM Studio, Groq…).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// The built-in scripted provider, for offline use and tests.
    Mock,
}

impl ProviderKind {
    /// All kinds, in their wire spelling.
    pub const ALL: [&'static str; 3] = ["openai", "anthropic", "mock"];

    /// Parses the wire spelling.
    ///
    /// # Errors
    /// [`Invalid`] naming `kind`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        match value {
            "openai" => Ok(Self::OpenAi),
            "anthropic" => Ok(Self::Anthropic),
            "mock" => Ok(Self::Mock),
            _ => Err(
                Invalid::new("kind", "must be one of openai, anthropic, mock")
                    .with("allowed", Self::ALL.to_vec()),
            ),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Mock => "mock",
        }
    }
}

/// Where a provider definition comes from; only API-created providers can be changed by API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderSource {
    /// Built into the server (`mock`).
    Builtin,
    /// Loaded from the config file or the environment at start-up.
    Config,
    /// Created through the API and stored in the database.
    Api,
}

impl ProviderSource {
    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// A provider's base URL: `http://` or `https://`, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Validates a base URL; a trailing `/` is removed.
    ///
    /// # Errors
    /// [`Invalid`] naming `base_url`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let v = value.trim_end_matches('/');
        let rest = v
            .strip_prefix("https://")
            .or_else(|| v.strip_prefix("http://"));
        match rest {
            Some(host)
                if !host.is_empty() && !v.chars().any(char::is_whitespace) && v.len() <= 2048 =>
            {
                Ok(Self(v.to_owned()))
            }
            _ => Err(Invalid::new(
                "base_url",
                "must be an http:// or https:// URL",
            )),
        }
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Validates a provider's model list: each name 1 to 200 characters without whitespace,
/// no duplicates (removed, order kept), at most 1,000 names.
///
/// # Errors
/// [`Invalid`] naming `models`.
pub fn parse_models(models: Vec<String>) -> Result<Vec<String>, Invalid> {
    if models.len() > 1000 {
        return Err(Invalid::new("models", "must list at most 1000 models"));
    }
    let mut out: Vec<String> = Vec::with_capacity(models.len());
    for m in models {
        check_text("models", &m, 1, 200, false)?;
        if m.chars().any(char::is_whitespace) {
            return Err(Invalid::new(
                "models",
                format!("model name '{m}' must not contain whitespace"),
            ));
        }
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// A configured LLM provider.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Its id, the first half of `provider/model`.
    pub id: ProviderId,
    /// Its wire protocol.
    pub kind: ProviderKind,
    /// Where it is served; `None` means the kind's default (OpenAI's or Anthropic's public API).
    pub base_url: Option<BaseUrl>,
    /// Its credential. Write-only: never returned by the API, never logged.
    pub api_key: Option<SecretString>,
    /// The models it serves. Empty means any model name is accepted when qualified by
    /// this provider's id (useful for Ollama or vLLM), but none resolves from a bare name.
    pub models: Vec<String>,
    /// Where the definition comes from.
    pub source: ProviderSource,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

impl Provider {
    /// The built-in `mock` provider (scripted, offline; it says in its answers that it is
    /// one), which every deployment has.
    pub fn builtin_mock(now: DateTime<Utc>) -> Self {
        Self {
            id: ProviderId(MOCK_PROVIDER_ID.to_owned()),
            kind: ProviderKind::Mock,
            base_url: None,
            api_key: None,
            models: vec![MOCK_ECHO_MODEL.to_owned()],
            source: ProviderSource::Builtin,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether this provider serves `model`: a listed model, any model when the list is
    /// empty, and for kind `mock` also the scripted behaviours ([`is_mock_behaviour`]), so
    /// `mock/slow-200` works although the built-in mock lists only `echo`.
    pub fn serves(&self, model: &str) -> bool {
        self.models.is_empty()
            || self.models.iter().any(|m| m == model)
            || (self.kind == ProviderKind::Mock && is_mock_behaviour(model))
    }
}

/// The fields of a provider as a caller gives them, validated.
#[derive(Debug, Clone)]
pub struct ProviderInput {
    /// The new provider's id.
    pub id: ProviderId,
    /// Its wire protocol.
    pub kind: ProviderKind,
    /// Where it is served.
    pub base_url: Option<BaseUrl>,
    /// Its credential.
    pub api_key: Option<SecretString>,
    /// Its models.
    pub models: Vec<String>,
}

/// A partial change to a provider; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProviderPatch {
    /// New kind.
    pub kind: Option<ProviderKind>,
    /// New base URL; `Some(None)` clears it.
    pub base_url: Option<Option<BaseUrl>>,
    /// New key; `Some(None)` clears it.
    pub api_key: Option<Option<SecretString>>,
    /// New model list.
    pub models: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:9000/v1/").map(|u| u.as_str().to_owned()),
            Ok("http://127.0.0.1:9000/v1".to_owned())
        );
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("http://").is_err());
        assert!(BaseUrl::parse("http://a b").is_err());
    }

    #[test]
    fn model_lists() {
        assert_eq!(
            parse_models(vec!["a".into(), "b".into(), "a".into()]),
            Ok(vec!["a".to_owned(), "b".to_owned()])
        );
        assert!(parse_models(vec!["a b".into()]).is_err());
        assert!(parse_models(vec![String::new()]).is_err());
    }

    #[test]
    fn the_mock_serves_its_scripted_behaviours() {
        let mock = Provider::builtin_mock(Utc::now());
        for served in [
            "echo",
            "slow-0",
            "slow-250",
            "slow-600000",
            "error-429",
            "error-500",
            "cut",
            "instructions",
        ] {
            assert!(mock.serves(served), "{served}");
        }
        for refused in [
            "gpt-4",
            "slow-",
            "slow-x",
            "slow--1",
            "slow-+1",
            "slow-600001",
            "error-200",
            "error-600",
            "error-",
            "error-4xx",
            "cut2",
            "Cut",
        ] {
            assert!(!mock.serves(refused), "{refused}");
        }
        let listed = Provider {
            kind: ProviderKind::OpenAi,
            ..mock.clone()
        };
        assert!(!listed.serves("cut"), "only kind mock has the behaviours");
    }

    #[test]
    fn kinds() {
        assert_eq!(ProviderKind::parse("openai"), Ok(ProviderKind::OpenAi));
        assert!(ProviderKind::parse("OpenAI").is_err());
    }
}
