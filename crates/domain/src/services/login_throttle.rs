//! Slows down password guessing: after a number of failed logins for one username (or from
//! one address), each further attempt must wait, twice as long after every new failure, up to
//! a ceiling. The counters are kept in memory by each replica; a success clears the
//! username's counter, and a counter is forgotten once its ceiling has passed without a new
//! failure.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// The wait after the first failure over the threshold; it doubles with each further failure.
const BASE_DELAY_SECS: u64 = 5;
/// Counters kept at most; older ones are dropped first when there are more.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: DateTime<Utc>,
}

/// Failed-login counters, per key (`user:<name>` or `addr:<ip>`).
#[derive(Debug)]
pub struct LoginThrottle {
    max_delay: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl LoginThrottle {
    /// Waits are capped at `max_delay`; a counter idle for that long is forgotten.
    pub fn new(max_delay: Duration) -> Self {
        Self {
            max_delay,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn delay(&self, failures: u32, threshold: u32) -> Option<Duration> {
        if failures < threshold {
            return None;
        }
        let doublings = (failures - threshold).min(20);
        let secs = BASE_DELAY_SECS.saturating_mul(1u64 << doublings);
        Some(Duration::from_secs(secs).min(self.max_delay))
    }

    fn forgotten(&self, entry: &Entry, now: DateTime<Utc>) -> bool {
        (now - entry.last)
            .to_std()
            .is_ok_and(|idle| idle > self.max_delay)
    }

    /// Refuses an attempt on `key` while it must wait.
    ///
    /// # Errors
    /// `RateLimited` with the time left.
    pub fn check(&self, key: &str, threshold: u32, now: DateTime<Utc>) -> Result<()> {
        let Ok(entries) = self.entries.lock() else {
            return Ok(());
        };
        let Some(entry) = entries.get(key).copied() else {
            return Ok(());
        };
        if self.forgotten(&entry, now) {
            return Ok(());
        }
        let Some(delay) = self.delay(entry.failures, threshold) else {
            return Ok(());
        };
        let until = entry.last + chrono::Duration::from_std(delay).unwrap_or_default();
        match (until - now).to_std() {
            Ok(left) if !left.is_zero() => Err(Error::RateLimited {
                retry_after: left,
                limit: Some(format!(
                    "{threshold} failed logins, then an increasing delay"
                )),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failure on `key`.
    pub fn failed(&self, key: &str, now: DateTime<Utc>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| !self.forgotten(e, now));
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let entry = entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            last: now,
        });
        if self.forgotten(entry, now) {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
    }

    /// Clears the counter of `key`.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn delays_grow_after_the_threshold_and_reset() {
        let t = LoginThrottle::new(Duration::from_secs(900));
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        for _ in 0..4 {
            t.failed("user:a", t0);
            assert!(t.check("user:a", 5, t0).is_ok());
        }
        t.failed("user:a", t0);
        let Err(Error::RateLimited { retry_after, .. }) = t.check("user:a", 5, t0) else {
            panic!("expected a wait");
        };
        assert_eq!(retry_after, Duration::from_secs(5));
        let later = t0 + chrono::Duration::seconds(6);
        assert!(t.check("user:a", 5, later).is_ok());
        t.failed("user:a", later);
        let Err(Error::RateLimited { retry_after, .. }) = t.check("user:a", 5, later) else {
            panic!("expected a wait");
        };
        assert_eq!(retry_after, Duration::from_secs(10));
        assert!(
            t.check("user:b", 5, later).is_ok(),
            "other keys are not affected"
        );
        let much_later = later + chrono::Duration::seconds(901);
        assert!(t.check("user:a", 5, much_later).is_ok());
        t.succeeded("user:a");
        assert!(t.check("user:a", 5, later).is_ok());
    }

    #[test]
    fn delays_are_capped() {
        let t = LoginThrottle::new(Duration::from_secs(60));
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        for _ in 0..40 {
            t.failed("addr:x", t0);
        }
        let Err(Error::RateLimited { retry_after, .. }) = t.check("addr:x", 5, t0) else {
            panic!("expected a wait");
        };
        assert_eq!(retry_after, Duration::from_secs(60));
    }
}
