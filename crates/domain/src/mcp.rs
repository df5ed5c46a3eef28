//! MCP servers as data: what Agentry stores about a Model Context Protocol server, either a
//! local command it will run (stdio) or a remote streamable-HTTP endpoint.
//!
//! The supervision of the servers (processes, restarts, logs) is
//! [`crate::services::McpSupervisor`]; the I/O is behind the ports at the end of this module.
//! Environment values and header values are secrets: held as
//! [`SecretString`] (never in `Debug`), never returned by the API (read back as
//! [`SECRET_MASK`]).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::error::Invalid;
use crate::text::{check_handle, check_text, handle_from_name};
use crate::tool::SECRET_MASK;

/// The prefix of MCP server ids.
pub const MCP_SERVER_ID_PREFIX: &str = "mcp";
/// Longest slug.
pub const SLUG_MAX: usize = 64;
/// Most arguments of a stdio command.
pub const ARGS_MAX: usize = 256;
/// Most environment variables or headers.
pub const SECRETS_MAX: usize = 100;
/// Longest command, argument, URL or secret value, in bytes.
pub const VALUE_MAX: usize = 8192;

crate::ids::prefixed_id!(
    /// An MCP server's id: `mcp_` followed by 32 lowercase hex digits (a UUIDv7).
    McpServerId,
    MCP_SERVER_ID_PREFIX,
    "id",
    "an MCP server id"
);

/// An MCP server's slug: unique, the name agents will use to bind its tools
/// (`{"type": "mcp", "server": "<slug>"}`). Never starts with `mcp_`, so a slug is never
/// mistaken for an id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct McpSlug(String);

impl McpSlug {
    /// Validates a slug.
    ///
    /// # Errors
    /// [`Invalid`] naming `slug`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check_handle("slug", value, SLUG_MAX, "mcp_")?;
        Ok(Self(value.to_owned()))
    }

    /// The slug derived from a name: `File Operations` → `file-operations`.
    ///
    /// # Errors
    /// [`Invalid`] naming `slug` when the name has no letters or digits to build one from.
    pub fn from_name(name: &McpServerName) -> Result<Self, Invalid> {
        handle_from_name("slug", name.as_str(), SLUG_MAX).map(Self)
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for McpSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An MCP server's display name: 1 to 128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServerName(String);

impl McpServerName {
    /// Validates a name (surrounding whitespace removed).
    ///
    /// # Errors
    /// [`Invalid`] naming `name`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let v = value.trim();
        check_text("name", v, 1, 128, false)?;
        Ok(Self(v.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The URL of a remote (streamable-HTTP) MCP server: `http://` or `https://`, no
/// whitespace. Kept exactly as given (an MCP endpoint's trailing `/` may matter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpUrl(String);

impl McpUrl {
    /// Validates a URL.
    ///
    /// # Errors
    /// [`Invalid`] naming `url`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let rest = value
            .strip_prefix("https://")
            .or_else(|| value.strip_prefix("http://"));
        match rest {
            Some(rest)
                if !rest.is_empty()
                    && !rest.starts_with('/')
                    && !value.chars().any(|c| c.is_whitespace() || c.is_control())
                    && value.len() <= 2048 =>
            {
                Ok(Self(value.to_owned()))
            }
            _ => Err(Invalid::new(
                "url",
                "must be an http:// or https:// URL with a host",
            )),
        }
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Named secret values (environment variables or HTTP headers), ordered by name. Their
/// `Debug` shows the names only.
pub type Secrets = BTreeMap<String, SecretString>;

/// How Agentry reaches an MCP server.
#[derive(Debug, Clone)]
pub enum McpTransport {
    /// A local command speaking MCP over its standard input and output.
    Stdio {
        /// The program (looked up in `PATH` when it has no `/`).
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Environment variables added for it. Values are secrets.
        env: Secrets,
    },
    /// A remote server speaking MCP's streamable HTTP transport.
    Http {
        /// Its endpoint.
        url: McpUrl,
        /// Headers sent with every request (`Authorization`…). Values are secrets.
        headers: Secrets,
    },
}

fn check_value(field: &str, value: &str) -> Result<(), Invalid> {
    if value.len() > VALUE_MAX {
        return Err(Invalid::new(
            field,
            format!("must be at most {VALUE_MAX} bytes"),
        ));
    }
    if value.contains('\0') {
        return Err(Invalid::new(field, "must not contain NUL characters"));
    }
    Ok(())
}

/// Headers the streamable-HTTP transport sets itself.
const RESERVED_HEADERS: [&str; 5] = [
    "accept",
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

fn is_env_name(name: &str) -> bool {
    name.len() <= 256
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl McpTransport {
    /// A stdio server: `command` must not be blank; `env` names are `[A-Za-z_][A-Za-z0-9_]*`.
    ///
    /// # Errors
    /// [`Invalid`] naming `config.command`, `config.args[i]` or `config.env.NAME`.
    pub fn stdio(
        command: &str,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    ) -> Result<Self, Invalid> {
        check_text("config.command", command, 1, VALUE_MAX, false)?;
        if args.len() > ARGS_MAX {
            return Err(Invalid::new(
                "config.args",
                format!("must hold at most {ARGS_MAX} arguments"),
            ));
        }
        for (i, arg) in args.iter().enumerate() {
            check_value(&format!("config.args[{i}]"), arg)?;
        }
        if env.len() > SECRETS_MAX {
            return Err(Invalid::new(
                "config.env",
                format!("must hold at most {SECRETS_MAX} variables"),
            ));
        }
        let mut secrets = Secrets::new();
        for (name, value) in env {
            let field = format!("config.env.{name}");
            if !is_env_name(&name) {
                return Err(Invalid::new(
                    field,
                    "variable names must be letters, digits and '_', not starting with a digit",
                ));
            }
            check_value(&field, &value)?;
            secrets.insert(name, SecretString::from(value));
        }
        Ok(Self::Stdio {
            command: command.to_owned(),
            args,
            env: secrets,
        })
    }

    /// A remote streamable-HTTP server. Header names are HTTP tokens (compared without case:
    /// two spellings of one name are refused), values single-line strings.
    ///
    /// # Errors
    /// [`Invalid`] naming `url`, `headers` or `headers.NAME`.
    pub fn http(url: &str, headers: BTreeMap<String, String>) -> Result<Self, Invalid> {
        let url = McpUrl::parse(url)?;
        if headers.len() > SECRETS_MAX {
            return Err(Invalid::new(
                "headers",
                format!("must hold at most {SECRETS_MAX} headers"),
            ));
        }
        let mut secrets = Secrets::new();
        for (name, value) in headers {
            let field = format!("headers.{name}");
            if !is_header_name(&name) {
                return Err(Invalid::new(field, "is not a valid HTTP header name"));
            }
            if RESERVED_HEADERS
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&name))
            {
                return Err(Invalid::new(
                    field,
                    "is set by the MCP transport itself and cannot be given",
                ));
            }
            if secrets.keys().any(|k| k.eq_ignore_ascii_case(&name)) {
                return Err(Invalid::new(
                    field,
                    "is given twice (header names ignore case)",
                ));
            }
            if value.contains(['\r', '\n']) {
                return Err(Invalid::new(field, "must be a single line"));
            }
            check_value(&field, &value)?;
            secrets.insert(name, SecretString::from(value));
        }
        Ok(Self::Http {
            url,
            headers: secrets,
        })
    }

    /// The wire name of the transport: `stdio` or `http`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdio { .. } => "stdio",
            Self::Http { .. } => "http",
        }
    }

    /// The secret values and the field prefix the caller knows them by.
    fn secrets_mut(&mut self) -> (&'static str, &mut Secrets) {
        match self {
            Self::Stdio { env, .. } => ("config.env", env),
            Self::Http { headers, .. } => ("headers", headers),
        }
    }

    fn secrets(&self) -> &Secrets {
        match self {
            Self::Stdio { env, .. } => env,
            Self::Http { headers, .. } => headers,
        }
    }

    /// Replaces every value sent back as [`SECRET_MASK`] with the value stored under the same
    /// name in `old` (same transport kind), so a client that reads a server and writes it back
    /// does not erase its secrets.
    ///
    /// # Errors
    /// [`Invalid`] naming `config.env.NAME` or `headers.NAME` when a value is the mask but
    /// `old` holds nothing to keep under that name.
    pub fn keep_secrets_from(mut self, old: &Self) -> Result<Self, Invalid> {
        let same_kind = self.kind() == old.kind();
        let stored = old.secrets();
        let (prefix, secrets) = self.secrets_mut();
        for (name, value) in secrets.iter_mut() {
            if value.expose_secret() != SECRET_MASK {
                continue;
            }
            match stored.get(name).filter(|_| same_kind) {
                Some(kept) => *value = kept.clone(),
                None => {
                    return Err(Invalid::new(
                        format!("{prefix}.{name}"),
                        format!("is the mask '{SECRET_MASK}' but no value is stored to keep"),
                    ));
                }
            }
        }
        Ok(self)
    }

    /// Refuses the mask as a value where there is nothing to keep (a new server).
    ///
    /// # Errors
    /// As [`McpTransport::keep_secrets_from`].
    pub fn check_no_masks(self) -> Result<Self, Invalid> {
        let empty = match &self {
            Self::Stdio { .. } => Self::Stdio {
                command: String::new(),
                args: Vec::new(),
                env: Secrets::new(),
            },
            Self::Http { url, .. } => Self::Http {
                url: url.clone(),
                headers: Secrets::new(),
            },
        };
        self.keep_secrets_from(&empty)
    }
}

/// Whether an MCP server's process (or remote session) is up, on this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpStatus {
    /// Not running, and not wanted running.
    Stopped,
    /// Being started: the process is spawned (or the URL called) and the MCP handshake runs.
    Starting,
    /// Handshake done; tools can be called.
    Running,
    /// It exited or failed to start. It is restarted with backoff while restarts remain;
    /// after the last one it stays `crashed` until started again (or used by an agent).
    Crashed,
    /// Waiting for the backoff delay, or starting again, after a crash.
    Restarting,
}

impl McpStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Crashed => "crashed",
            Self::Restarting => "restarting",
        }
    }
}

/// A tool an MCP server offers, as its `tools/list` answer describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    /// The tool's name on its server.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// Its arguments' JSON Schema.
    pub input_schema: serde_json::Value,
}

/// What the MCP handshake taught about a server: its capabilities and its tools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct McpCatalog {
    /// `tools`, `resources`, `prompts`… (the capability names the server declared).
    pub capabilities: Vec<String>,
    /// Its tools (empty when it has no `tools` capability).
    pub tools: Vec<McpTool>,
}

/// A registered MCP server.
#[derive(Debug, Clone)]
pub struct McpServer {
    /// Stable id (`mcp_…`).
    pub id: McpServerId,
    /// Display name.
    pub name: McpServerName,
    /// Unique slug.
    pub slug: McpSlug,
    /// How it is reached.
    pub transport: McpTransport,
    /// Its status on this replica; not stored (each replica supervises its own processes).
    pub status: McpStatus,
    /// What it offers and its tools, from the last MCP handshake (stored; empty until the
    /// server has run once).
    pub catalog: McpCatalog,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// The fields of an MCP server as a caller gives them, validated.
#[derive(Debug, Clone)]
pub struct McpServerInput {
    /// Display name.
    pub name: McpServerName,
    /// Slug; derived from the name on create when absent, kept on replace when absent.
    pub slug: Option<McpSlug>,
    /// How it is reached.
    pub transport: McpTransport,
}

/// Longest tool name in `allowed_tools`.
pub const TOOL_NAME_MAX: usize = 128;

/// An agent's binding of an MCP server's tools: `{"type": "mcp", "server": "<slug>",
/// "allowed_tools": ["…"]}` in its `tools`. Without `allowed_tools` every tool of the server
/// is offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpBinding {
    /// The server's slug.
    pub server: McpSlug,
    /// The tools offered, by their name on the server; `None`: all of them.
    pub allowed_tools: Option<Vec<String>>,
}

impl McpBinding {
    /// Reads the binding at index `i` of an agent's `tools`.
    ///
    /// # Errors
    /// [`Invalid`] naming `tools[i].server` or `tools[i].allowed_tools`.
    pub fn parse(
        i: usize,
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, Invalid> {
        use serde_json::Value;
        let server = match map.get("server") {
            Some(Value::String(slug)) => {
                McpSlug::parse(slug).map_err(|e| e.renamed(format!("tools[{i}].server")))?
            }
            _ => {
                return Err(Invalid::new(
                    format!("tools[{i}].server"),
                    "is required: the slug of a registered MCP server",
                ));
            }
        };
        let field = format!("tools[{i}].allowed_tools");
        let allowed_tools = match map.get("allowed_tools") {
            None | Some(Value::Null) => None,
            Some(Value::Array(names)) => Some(
                names
                    .iter()
                    .map(|n| match n {
                        Value::String(n)
                            if !n.is_empty()
                                && n.len() <= TOOL_NAME_MAX
                                && !n.chars().any(char::is_control) =>
                        {
                            Ok(n.clone())
                        }
                        _ => Err(Invalid::new(
                            &field,
                            format!("must hold tool names (1 to {TOOL_NAME_MAX} characters)"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(Invalid::new(&field, "must be an array of tool names")),
        };
        if let Some(name) = map.get("name")
            && !name.is_string()
        {
            return Err(Invalid::new(format!("tools[{i}].name"), "must be a string"));
        }
        Ok(Self {
            server,
            allowed_tools,
        })
    }

    /// Whether the binding offers the server's tool `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.allowed_tools
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }
}

/// How a caller names an MCP server in a path: by id or by slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpServerRef {
    /// By id (`mcp_…`).
    Id(McpServerId),
    /// By slug (`file-ops`).
    Slug(McpSlug),
}

impl McpServerRef {
    /// Reads a path segment: an id when it has the shape of one, otherwise a slug.
    ///
    /// # Errors
    /// [`Invalid`] naming `server_id` when it is neither.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        if let Ok(id) = McpServerId::parse(value) {
            return Ok(Self::Id(id));
        }
        McpSlug::parse(value)
            .map(Self::Slug)
            .map_err(|e| e.renamed("server_id"))
    }
}

impl fmt::Display for McpServerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Slug(slug) => slug.fmt(f),
        }
    }
}

/// Why talking to an MCP server failed. Messages never hold a secret (no env or header value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// The process could not be started or the URL not reached, or the handshake failed.
    #[error("could not start: {0}")]
    Start(String),
    /// The server is not running (stopped, crashed, restarting).
    #[error("{0}")]
    NotRunning(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The request failed (connection lost, protocol error, the server answered an error).
    #[error("{0}")]
    Failed(String),
}

/// A tool's answer, as text for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpCallOutput {
    /// The result's content as text (text items joined by newlines; other items as JSON).
    pub text: String,
    /// The tool said it failed (`isError`).
    pub is_error: bool,
}

/// What a connection reports while it lives: the server's standard error lines and its
/// notifications. Called from the adapter's tasks; must not block.
pub trait McpObserver: Send + Sync {
    /// One line the server wrote to its standard error (stdio servers).
    fn stderr_line(&self, line: &str);
    /// The server said its tool list changed (`notifications/tools/list_changed`).
    fn tools_changed(&self);
}

/// A live connection to one MCP server: a child process speaking MCP on its standard input
/// and output, or a streamable-HTTP session.
#[async_trait::async_trait]
pub trait McpConnection: Send + Sync {
    /// The child's process id (stdio servers).
    fn pid(&self) -> Option<u32>;
    /// What the handshake reported, with the tool list read right after it.
    fn catalog(&self) -> McpCatalog;
    /// Reads the tool list again.
    ///
    /// # Errors
    /// [`McpError::Failed`] when the connection is gone or the server answers an error.
    async fn list_tools(&self) -> Result<Vec<McpTool>, McpError>;
    /// Calls one tool. `limits.timeout` bounds the call and `limits.max_response_bytes` the
    /// text returned (cut with a note).
    ///
    /// # Errors
    /// [`McpError::Timeout`], or [`McpError::Failed`] (the connection is gone, the server
    /// answered a protocol error). A tool that reports a failure is not an error:
    /// [`McpCallOutput::is_error`].
    async fn call_tool(
        &self,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        limits: crate::tool::ToolLimits,
    ) -> Result<McpCallOutput, McpError>;
    /// Resolves when the connection has ended by itself (the process exited, the session was
    /// lost), with the reason in words. Never resolves while it is up.
    async fn ended(&self) -> String;
    /// Ends the connection: for a process, MCP's stdio shutdown (its standard input is
    /// closed), then SIGTERM to its process group, then SIGKILL, each after a grace period;
    /// for a remote session, the session is deleted. Returns once it is over.
    async fn close(&self);
}

/// Opens connections to MCP servers.
#[async_trait::async_trait]
pub trait McpConnector: Send + Sync {
    /// Starts `server` (spawns its command in a process group of its own, or opens a session
    /// at its URL), runs the MCP handshake and reads its tools.
    ///
    /// # Errors
    /// [`McpError::Start`] with the reason (the command was not found, the process exited
    /// during the handshake, the URL answered an error…).
    async fn connect(
        &self,
        server: &McpServer,
        observer: std::sync::Arc<dyn McpObserver>,
    ) -> Result<std::sync::Arc<dyn McpConnection>, McpError>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn secret<'a>(t: &'a McpTransport, name: &str) -> Option<&'a str> {
        t.secrets().get(name).map(|s| s.expose_secret())
    }

    #[test]
    fn ids_and_slugs_never_collide() {
        let id = McpServerId::generate();
        assert!(id.as_str().starts_with("mcp_"));
        assert_eq!(
            McpServerRef::parse(id.as_str()),
            Ok(McpServerRef::Id(id.clone()))
        );
        assert!(matches!(
            McpServerRef::parse("file-ops"),
            Ok(McpServerRef::Slug(_))
        ));
        assert!(McpSlug::parse("mcp_x").is_err());
        assert_eq!(
            McpServerRef::parse("Bad Slug").unwrap_err().field,
            "server_id"
        );
        let name = McpServerName::parse("  File Operations ").unwrap();
        assert_eq!(
            McpSlug::from_name(&name).unwrap().as_str(),
            "file-operations"
        );
        let odd = McpServerName::parse("MCP_tools").unwrap();
        assert_eq!(McpSlug::from_name(&odd).unwrap().as_str(), "mcp-tools");
        assert!(McpSlug::from_name(&McpServerName::parse("***").unwrap()).is_err());
    }

    #[test]
    fn stdio_servers_are_validated() {
        let ok = McpTransport::stdio(
            "python",
            vec!["-m".into(), "my_mcp_server".into()],
            map(&[("API_KEY", "secret-key")]),
        )
        .unwrap();
        assert_eq!(ok.kind(), "stdio");
        assert_eq!(secret(&ok, "API_KEY"), Some("secret-key"));
        let shown = format!("{ok:?}");
        assert!(
            !shown.contains("secret-key") && shown.contains("API_KEY"),
            "{shown}"
        );

        let cases = [
            (McpTransport::stdio("", vec![], map(&[])), "config.command"),
            (
                McpTransport::stdio("  ", vec![], map(&[])),
                "config.command",
            ),
            (
                McpTransport::stdio("x", vec!["a".into(), "b\0".into()], map(&[])),
                "config.args[1]",
            ),
            (
                McpTransport::stdio("x", vec![], map(&[("1BAD", "v")])),
                "config.env.1BAD",
            ),
            (
                McpTransport::stdio("x", vec![], map(&[("A-B", "v")])),
                "config.env.A-B",
            ),
        ];
        for (got, field) in cases {
            assert_eq!(got.unwrap_err().field, field);
        }
    }

    #[test]
    fn remote_servers_are_validated() {
        let ok = McpTransport::http(
            "http://localhost:81/mcp/file-ops/mcp/",
            map(&[("Authorization", "Bearer t0ken")]),
        )
        .unwrap();
        match &ok {
            McpTransport::Http { url, .. } => {
                assert_eq!(url.as_str(), "http://localhost:81/mcp/file-ops/mcp/");
            }
            McpTransport::Stdio { .. } => panic!("expected http"),
        }
        assert!(!format!("{ok:?}").contains("t0ken"));
        for (url, headers, field) in [
            ("ftp://x", map(&[]), "url"),
            ("http://", map(&[]), "url"),
            ("http:///path", map(&[]), "url"),
            ("https://a b", map(&[]), "url"),
            ("file:///etc/passwd", map(&[]), "url"),
            ("https://x", map(&[("Bad Name", "v")]), "headers.Bad Name"),
            ("https://x", map(&[("X-A", "a\r\nb")]), "headers.X-A"),
            (
                "https://x",
                map(&[("X-Key", "1"), ("x-key", "2")]),
                "headers.x-key",
            ),
        ] {
            assert_eq!(
                McpTransport::http(url, headers).unwrap_err().field,
                field,
                "{url}"
            );
        }
    }

    #[test]
    fn masked_values_keep_the_stored_secret() {
        let old = McpTransport::stdio("x", vec![], map(&[("A", "old-a"), ("B", "old-b")])).unwrap();
        let new = McpTransport::stdio(
            "x",
            vec![],
            map(&[("A", SECRET_MASK), ("B", "new-b"), ("C", "c")]),
        )
        .unwrap()
        .keep_secrets_from(&old)
        .unwrap();
        assert_eq!(secret(&new, "A"), Some("old-a"));
        assert_eq!(secret(&new, "B"), Some("new-b"));
        assert_eq!(secret(&new, "C"), Some("c"));

        let unknown = McpTransport::stdio("x", vec![], map(&[("Z", SECRET_MASK)])).unwrap();
        assert_eq!(
            unknown.keep_secrets_from(&old).unwrap_err().field,
            "config.env.Z"
        );
        let other_kind = McpTransport::http("https://x", map(&[("A", SECRET_MASK)])).unwrap();
        assert_eq!(
            other_kind.keep_secrets_from(&old).unwrap_err().field,
            "headers.A",
            "secrets are not carried across transports"
        );
        let fresh = McpTransport::http("https://x", map(&[("A", SECRET_MASK)])).unwrap();
        assert_eq!(fresh.check_no_masks().unwrap_err().field, "headers.A");
    }

    #[test]
    fn urls() {
        assert!(McpUrl::parse("https://mcp.example.com/mcp").is_ok());
        assert!(McpUrl::parse("http://127.0.0.1:3001/mcp/").is_ok());
        assert!(McpUrl::parse("HTTP://x").is_err());
    }
}
