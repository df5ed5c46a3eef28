//! Server-side tool adapters. [`HttpTools`] implements the domain's
//! [`HttpToolClient`](agentry_domain::tool::HttpToolClient) port with reqwest: arguments as a
//! query (GET, DELETE) or a JSON body (POST, PUT, PATCH), the tool's secret headers, a time
//! bound and a size cap, and an SSRF guard that refuses loopback, private, link-local and
//! metadata addresses unless `tool_allowed_hosts` names them. The guard runs after DNS
//! resolution (in the client's resolver, so the address checked is the one connected to), on
//! IP-literal hosts before sending, and at every redirect. See `docs/tools.md`.

mod address;
mod config;
mod http;
mod resolve;

pub use address::is_forbidden;
pub use config::{ConfigError, HttpToolsConfig};
pub use http::{ACCEPT_VALUE, HttpTools, MAX_REDIRECTS, STATUS_BODY_CHARS, USER_AGENT};
