//! Translating HTTP outcomes into [`ProviderError`]: statuses, `Retry-After`, transport
//! failures, and keeping credentials out of every message.

use std::error::Error as StdError;
use std::time::Duration;

use agentry_domain::llm::ProviderError;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::settings::ProviderSettings;

/// Longest upstream message kept in an error.
const MAX_MESSAGE_CHARS: usize = 1_000;

/// The error for an upstream answer with a non-success `status`.
pub(crate) fn from_status(
    status: u16,
    retry_after: Option<Duration>,
    message: String,
) -> ProviderError {
    match status {
        401 | 403 => ProviderError::Unauthorized { status, message },
        429 => ProviderError::RateLimited {
            retry_after,
            message,
        },
        400..=499 => ProviderError::InvalidRequest { status, message },
        _ => ProviderError::Upstream { status, message },
    }
}

/// Reads a failed response (status, `Retry-After`, error body) into its error.
pub(crate) async fn from_response(response: reqwest::Response) -> ProviderError {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.unwrap_or_default();
    let message = error_message(&body)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned());
    from_status(status.as_u16(), retry_after, message)
}

/// The message of an error body: `{"error":{"message"}}` (OpenAI, Anthropic), `{"error":".."}`,
/// `{"message":".."}`, else the body's text; `None` when empty.
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let json: Option<Value> = serde_json::from_str(&text).ok();
    let from_json = json.as_ref().and_then(|v| {
        [
            v.pointer("/error/message"),
            v.get("error"),
            v.get("message"),
        ]
        .into_iter()
        .flatten()
        .find_map(Value::as_str)
        .map(str::to_owned)
    });
    let message = from_json.unwrap_or_else(|| text.trim().to_owned());
    (!message.is_empty()).then(|| truncate(message))
}

/// How long the upstream asked to wait: `retry-after-ms`, else `retry-after` in seconds or as
/// an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return seconds(ms / 1000.0);
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn seconds(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// The error for a transport failure (no HTTP answer, or a broken body).
pub(crate) fn from_reqwest(error: reqwest::Error, settings: &ProviderSettings) -> ProviderError {
    if error.is_timeout() {
        let limit = if error.is_connect() {
            settings.connect_timeout
        } else {
            settings.request_timeout
        };
        return ProviderError::Timeout(limit);
    }
    let what = if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the connection broke"
    } else {
        "the request failed"
    };
    ProviderError::Unavailable(format!("{what}: {}", chain(&error.without_url())))
}

/// An error and its sources, joined with `: `.
pub(crate) fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    truncate(text)
}

/// A successful answer to a streaming request, when it is an event stream; a JSON document
/// or an HTML page (a proxy's page, a server that ignored `stream`) is [`malformed`] with its
/// real status, so it is reported as such and not retried. Other or missing content types
/// are read as a stream (some compatible servers label their streams loosely).
pub(crate) async fn event_stream(
    response: reqwest::Response,
) -> Result<reqwest::Response, ProviderError> {
    let kind = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !(kind.starts_with("application/json") || kind.starts_with("text/html")) {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    let said = error_message(&body).unwrap_or_default();
    Err(ProviderError::Malformed {
        status,
        message: truncate(format!(
            "a stream was asked for, the answer is {kind}: {said}"
        )),
    })
}

/// The error for a success answer (200) the adapter could not read.
pub(crate) fn malformed(detail: impl std::fmt::Display) -> ProviderError {
    ProviderError::Malformed {
        status: 200,
        message: truncate(detail.to_string()),
    }
}

fn truncate(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_MESSAGE_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Removes `secret` from every message of `error` (upstreams sometimes echo the key back).
pub(crate) fn scrub(error: ProviderError, secret: Option<&SecretString>) -> ProviderError {
    let Some(secret) = secret
        .map(ExposeSecret::expose_secret)
        .filter(|s| !s.is_empty())
    else {
        return error;
    };
    let clean = |m: String| m.replace(secret, "[redacted]");
    match error {
        ProviderError::Unauthorized { status, message } => ProviderError::Unauthorized {
            status,
            message: clean(message),
        },
        ProviderError::RateLimited {
            retry_after,
            message,
        } => ProviderError::RateLimited {
            retry_after,
            message: clean(message),
        },
        ProviderError::Upstream { status, message } => ProviderError::Upstream {
            status,
            message: clean(message),
        },
        ProviderError::InvalidRequest { status, message } => ProviderError::InvalidRequest {
            status,
            message: clean(message),
        },
        ProviderError::Malformed { status, message } => ProviderError::Malformed {
            status,
            message: clean(message),
        },
        ProviderError::Unavailable(message) => ProviderError::Unavailable(clean(message)),
        ProviderError::Timeout(limit) => ProviderError::Timeout(limit),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statuses() {
        let m = || "m".to_owned();
        assert!(matches!(
            from_status(401, None, m()),
            ProviderError::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            from_status(403, None, m()),
            ProviderError::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(
            from_status(422, None, m()),
            ProviderError::InvalidRequest { status: 422, .. }
        ));
        assert!(matches!(
            from_status(529, None, m()),
            ProviderError::Upstream { status: 529, .. }
        ));
        let limited = from_status(429, Some(Duration::from_secs(2)), m());
        assert_eq!(
            limited,
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
                message: m()
            }
        );
    }

    #[test]
    fn messages() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad"}}"#).unwrap(),
            "bad"
        );
        assert_eq!(
            error_message(br#"{"type":"error","error":{"type":"x","message":"over"}}"#).unwrap(),
            "over"
        );
        assert_eq!(error_message(br#"{"error":"flat"}"#).unwrap(), "flat");
        assert_eq!(error_message(b" plain text ").unwrap(), "plain text");
        assert_eq!(error_message(b""), None);
        assert_eq!(
            error_message("x".repeat(5000).as_bytes())
                .unwrap()
                .chars()
                .count(),
            1001
        );
    }

    #[test]
    fn retry_after_forms() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        let mut headers = HeaderMap::new();
        headers.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn scrubbing() {
        let key = SecretString::from("sk-secret-123");
        let error = ProviderError::Unauthorized {
            status: 401,
            message: "bad key sk-secret-123".into(),
        };
        let clean = scrub(error, Some(&key));
        assert!(!clean.to_string().contains("sk-secret-123"));
        assert!(format!("{clean:?}").contains("[redacted]"));
    }
}
