//! `tool_allowed_hosts`: the exceptions to the SSRF guard, parsed once at start-up.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::is_forbidden;

/// Settings of [`crate::HttpTools`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpToolsConfig {
    /// `tool_allowed_hosts`: host names (`localhost`, `api.internal`), IP addresses
    /// (`127.0.0.1`, `::1`) and CIDR ranges (`10.0.0.0/8`, `fd00::/8`) that tool calls may reach
    /// although they are loopback, private or link-local. A listed host name is allowed whatever
    /// it resolves to; an address is allowed when a listed address or range contains it.
    pub allowed_hosts: Vec<String>,
}

/// Why [`crate::HttpTools::new`] refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An entry of `tool_allowed_hosts` is neither a host name, an IP address nor a CIDR range.
    #[error("tool_allowed_hosts[{index}] ({entry:?}) {reason}")]
    AllowedHost {
        /// Its position in the list.
        index: usize,
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("the HTTP tool client could not be built: {0}")]
    Client(String),
}

/// The parsed allow-list.
#[derive(Debug, Default)]
pub(crate) struct AllowList {
    names: HashSet<String>,
    nets: Vec<IpNet>,
}

impl AllowList {
    pub(crate) fn parse(entries: &[String]) -> Result<Self, ConfigError> {
        let mut list = Self::default();
        for (index, raw) in entries.iter().enumerate() {
            let bad = |reason| ConfigError::AllowedHost {
                index,
                entry: raw.clone(),
                reason,
            };
            let entry = raw.trim();
            if entry.is_empty() {
                return Err(bad("is empty"));
            }
            if entry.contains('/') {
                let net: IpNet = entry
                    .parse()
                    .map_err(|_| bad("is not a valid CIDR range (like 10.0.0.0/8 or fd00::/8)"))?;
                list.nets.push(net.trunc());
            } else if let Some(ip) = parse_ip(entry) {
                list.nets.push(IpNet::from(ip));
            } else {
                list.names.insert(parse_name(entry).map_err(bad)?);
            }
        }
        Ok(list)
    }

    /// Whether the host name is listed (then any address it resolves to may be reached).
    pub(crate) fn allows_name(&self, host: &str) -> bool {
        !self.names.is_empty() && self.names.contains(&normalize_name(host))
    }

    /// Whether a call may reach `ip`: a public address, or one a listed address or range holds
    /// (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub(crate) fn allows_ip(&self, ip: IpAddr) -> bool {
        !is_forbidden(ip)
            || self
                .nets
                .iter()
                .any(|net| net.contains(&ip) || net.contains(&ip.to_canonical()))
    }
}

/// An IP address, also written in brackets (`[::1]`).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let bare = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse().ok()
}

fn normalize_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_name(entry: &str) -> Result<String, &'static str> {
    if entry.contains("://") {
        return Err("must be a host name, an IP address or a CIDR range, not a URL");
    }
    if entry.contains(':') {
        return Err("must be a host name without a port (or an IP address)");
    }
    if entry.contains('*') {
        return Err("wildcards are not supported: list each host name");
    }
    let name = normalize_name(entry);
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !labels.iter().all(label_ok) {
        return Err("is not a valid host name, IP address or CIDR range");
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("looks like an IPv4 address but is not a valid one");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn list(entries: &[&str]) -> Result<AllowList, ConfigError> {
        AllowList::parse(&entries.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_list_allows_only_public_addresses() {
        let l = list(&[]).unwrap();
        assert!(l.allows_ip(ip("8.8.8.8")));
        assert!(!l.allows_ip(ip("127.0.0.1")));
        assert!(!l.allows_name("localhost"));
    }

    #[test]
    fn addresses_ranges_and_names() {
        let l = list(&[
            "127.0.0.1",
            "10.0.0.0/8",
            "::1",
            "[fd00::1]",
            "LocalHost.",
            "api.internal",
        ])
        .unwrap();
        assert!(l.allows_ip(ip("127.0.0.1")));
        assert!(!l.allows_ip(ip("127.0.0.2")));
        assert!(l.allows_ip(ip("10.200.3.4")));
        assert!(l.allows_ip(ip("11.0.0.1")), "public addresses stay allowed");
        assert!(!l.allows_ip(ip("192.168.1.1")));
        assert!(l.allows_ip(ip("::1")));
        assert!(l.allows_ip(ip("fd00::1")));
        assert!(!l.allows_ip(ip("fd00::2")));
        // The mapped form of a listed IPv4 address is that address.
        assert!(l.allows_ip(ip("::ffff:127.0.0.1")));
        assert!(l.allows_ip(ip("::ffff:10.9.9.9")));
        assert!(!l.allows_ip(ip("::ffff:169.254.169.254")));
        assert!(l.allows_name("localhost"));
        assert!(l.allows_name("LOCALHOST."));
        assert!(l.allows_name("api.internal"));
        assert!(!l.allows_name("internal"));
    }

    #[test]
    fn host_bits_in_a_range_are_ignored() {
        let l = list(&["192.168.1.77/24"]).unwrap();
        assert!(l.allows_ip(ip("192.168.1.1")));
        assert!(!l.allows_ip(ip("192.168.2.1")));
    }

    #[test]
    fn malformed_entries_are_refused_with_their_index() {
        for bad in [
            "",
            "  ",
            "10.0.0.0/33",
            "10.0.0/8",
            "::1/129",
            "http://localhost",
            "localhost:8080",
            "*.internal",
            "a b",
            "999.1.1.1",
            "-bad.example",
            "bad..example",
        ] {
            let err = list(&["127.0.0.1", bad]).err();
            assert!(
                matches!(err, Some(ConfigError::AllowedHost { index: 1, .. })),
                "{bad:?} should be refused, got {err:?}"
            );
        }
    }
}
