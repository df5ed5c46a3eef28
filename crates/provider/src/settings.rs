//! Timeouts and retry policy applied to every provider call.

use std::time::Duration;

/// How patient the provider clients are. One value per factory, applied to every provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderSettings {
    /// Limit for opening a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Limit for a whole non-streaming call, and for a stream's first event, per attempt.
    pub request_timeout: Duration,
    /// Limit for a whole call over every attempt (up to its answer, or a stream's first
    /// event): a retry starts only while time remains, and gets only what remains.
    pub total_timeout: Duration,
    /// Limit between two events of a stream.
    pub stream_idle_timeout: Duration,
    /// Retries after the first attempt, for retryable errors only.
    pub max_retries: u32,
    /// First backoff ceiling; it doubles per retry (full jitter: the wait is random below it).
    pub backoff_base: Duration,
    /// Largest backoff, and largest `Retry-After` honoured (a longer one is not waited for:
    /// the rate-limit error is returned).
    pub backoff_max: Duration,
    /// Calls carried by one connection at a time over HTTP/2 (a provider's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` is usually 100 or more); a further call opens another
    /// connection instead of waiting. See `lanes`.
    pub streams_per_connection: usize,
    /// Which HTTP versions provider calls use.
    pub http_version: HttpVersion,
}

/// Which HTTP versions provider calls use (`auto`, `http1`, `http2` in configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    /// HTTP/2 when an `https://` upstream offers it (TLS ALPN), HTTP/1.1 otherwise (and
    /// always for `http://`).
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only: negotiated over TLS, spoken from the start to `http://` upstreams (h2c
    /// with prior knowledge), which must support it.
    Http2,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            total_timeout: Duration::from_secs(150),
            stream_idle_timeout: Duration::from_secs(60),
            max_retries: 2,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            streams_per_connection: 100,
            http_version: HttpVersion::Auto,
        }
    }
}

impl ProviderSettings {
    /// The ceiling of the wait before retry number `retry` (0-based): `base * 2^retry`,
    /// at most `backoff_max`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 2_u32.saturating_pow(retry.min(16));
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }

    /// A random wait in `0..=backoff_ceiling(retry)` ("full jitter").
    pub fn jittered_backoff(&self, retry: u32) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        let s = ProviderSettings::default();
        assert_eq!(s.backoff_ceiling(0), Duration::from_millis(200));
        assert_eq!(s.backoff_ceiling(2), Duration::from_millis(800));
        assert_eq!(s.backoff_ceiling(40), Duration::from_secs(5));
        for retry in 0..5 {
            assert!(s.jittered_backoff(retry) <= s.backoff_ceiling(retry));
        }
    }
}
