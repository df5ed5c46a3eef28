//! The DNS resolver of the tool client: it resolves, then drops the addresses a call may not
//! reach, so the address checked is the address connected to (no check-then-resolve gap).

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::AllowList;

/// A destination the guard refuses; found again in reqwest's error chain by type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Forbidden(pub(crate) String);

impl Forbidden {
    /// A URL whose host is a forbidden IP literal.
    pub(crate) fn literal(ip: IpAddr) -> Self {
        Self(format!(
            "{ip} is a private/loopback address not in tool_allowed_hosts"
        ))
    }

    /// A host name that resolves only to forbidden addresses.
    pub(crate) fn resolved(host: &str, ip: IpAddr) -> Self {
        Self(format!(
            "{host} ({ip}) is a private/loopback address not in tool_allowed_hosts"
        ))
    }

    /// Looks for a `Forbidden` among the causes of `err`.
    pub(crate) fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a Self> {
        let mut cause = Some(err);
        while let Some(e) = cause {
            if let Some(f) = e.downcast_ref::<Self>() {
                return Some(f);
            }
            cause = e.source();
        }
        None
    }
}

/// Resolves with the system resolver (tokio's `lookup_host`) and keeps only allowed addresses.
pub(crate) struct GuardedResolver {
    pub(crate) allow: Arc<AllowList>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = Arc::clone(&self.allow);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allow.allows_name(&host) {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let (allowed, refused): (Vec<_>, Vec<_>) =
                addrs.into_iter().partition(|a| allow.allows_ip(a.ip()));
            match (allowed.is_empty(), refused.first()) {
                (true, Some(first)) => {
                    tracing::debug!(host, ip = %first.ip(), "tool call refused by the SSRF guard");
                    Err(Box::new(Forbidden::resolved(&host, first.ip()))
                        as Box<dyn StdError + Send + Sync>)
                }
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}
