//! The MCP adapter: [`RmcpConnector`] implements the domain's [`McpConnector`] port with the
//! official `rmcp` client.
//!
//! - **stdio** servers run as child processes in a process group of their own (so signals
//!   reach whatever they start, e.g. `npx` → `node`), with `kill_on_drop`; their standard
//!   error is read line by line (each line capped) into the supervisor's log. Stopping is
//!   MCP's stdio shutdown (standard input closed), then SIGTERM to the group, then SIGKILL,
//!   each after the grace period. When the process exits, whatever is left of its group is
//!   killed.
//! - **remote** servers are reached over MCP's streamable HTTP transport with their headers
//!   (`Authorization`…); the session is closed on stop.
//!
//! Environment and header values are secrets: they reach the child or the wire, never a log.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentry_domain::mcp::{
    McpCallOutput, McpCatalog, McpConnection, McpConnector, McpError, McpObserver, McpServer,
    McpTool, McpTransport, Secrets,
};
use agentry_domain::tool::{ToolLimits, cap_text};
use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use process_wrap::tokio::{CommandWrap, ProcessGroup};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
    Implementation, ResourceContents,
};
use rmcp::service::{NotificationContext, Peer, RoleClient, RunningServiceCancellationToken};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ServiceExt};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

/// Longest standard error line kept (the supervisor's own bound); the rest of a longer line
/// is dropped.
const STDERR_LINE_MAX: usize = agentry_domain::services::LOG_LINE_MAX;

/// Opens MCP connections with `rmcp`.
#[derive(Debug, Clone)]
pub struct RmcpConnector {
    grace: Duration,
}

impl RmcpConnector {
    /// A connector whose stops wait `grace` after closing standard input, and again after
    /// SIGTERM, before the next step.
    pub fn new(grace: Duration) -> Self {
        Self { grace }
    }
}

impl Default for RmcpConnector {
    fn default() -> Self {
        Self::new(Duration::from_secs(3))
    }
}

/// The client side of the protocol: reports `tools/list_changed` to the supervisor.
struct Handler {
    observer: Arc<dyn McpObserver>,
}

impl ClientHandler for Handler {
    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.observer.tools_changed();
        std::future::ready(())
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("agentry", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// A live connection.
struct Connection {
    peer: Peer<RoleClient>,
    catalog: McpCatalog,
    pid: Option<u32>,
    grace: Duration,
    cancel: Mutex<Option<RunningServiceCancellationToken>>,
    /// `Some(reason)` once the connection has ended.
    ended: watch::Receiver<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Connection {
    /// Waits at most `wait` for the end; whether it came.
    async fn wait_end(&self, wait: Duration) -> bool {
        let mut rx = self.ended.clone();
        tokio::time::timeout(wait, rx.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            // ESRCH (nothing left in the group) is the normal case late in a stop.
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }
}

#[async_trait]
impl McpConnection for Connection {
    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn catalog(&self) -> McpCatalog {
        self.catalog.clone()
    }

    async fn list_tools(&self) -> Result<Vec<McpTool>, McpError> {
        list_tools(&self.peer).await
    }

    async fn call_tool(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        limits: ToolLimits,
    ) -> Result<McpCallOutput, McpError> {
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        match tokio::time::timeout(limits.timeout, self.peer.call_tool(params)).await {
            Err(_) => Err(McpError::Timeout(limits.timeout)),
            Ok(Err(e)) => Err(McpError::Failed(service_error(&e))),
            Ok(Ok(result)) => Ok(McpCallOutput {
                is_error: result.is_error == Some(true),
                text: cap_text(result_text(&result), limits.max_response_bytes),
            }),
        }
    }

    async fn ended(&self) -> String {
        let mut rx = self.ended.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the connection's monitor stopped".to_owned(),
        }
    }

    async fn close(&self) {
        // MCP's shutdown: the session ends and, for a process, its standard input closes.
        if let Some(cancel) = lock(&self.cancel).take() {
            cancel.cancel();
        }
        if self.pid.is_none() {
            self.wait_end(self.grace).await;
            return;
        }
        if self.wait_end(self.grace).await {
            return;
        }
        self.signal(Signal::SIGTERM);
        if self.wait_end(self.grace).await {
            return;
        }
        self.signal(Signal::SIGKILL);
        self.wait_end(self.grace).await;
    }
}

/// A request's failure in words: the server's own error, or the innermost cause of a
/// transport failure (`Connection refused`), without the transport's type names.
fn service_error(e: &rmcp::ServiceError) -> String {
    match e {
        rmcp::ServiceError::McpError(data) => {
            format!("the server answered an error: {}", data.message)
        }
        rmcp::ServiceError::TransportSend(_) | rmcp::ServiceError::TransportClosed => {
            let mut cause: &dyn std::error::Error = e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            format!("the connection failed: {cause}")
        }
        other => other.to_string(),
    }
}

/// A tool result as text: text items as they are, other items described, one per line; the
/// structured content when there is nothing else.
fn result_text(result: &CallToolResult) -> String {
    let mut parts: Vec<String> = Vec::new();
    for item in &result.content {
        parts.push(match item {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => {
                format!("[image: {}, {} bytes of base64]", i.mime_type, i.data.len())
            }
            ContentBlock::Audio(a) => {
                format!("[audio: {}, {} bytes of base64]", a.mime_type, a.data.len())
            }
            ContentBlock::Resource(r) => match &r.resource {
                ResourceContents::TextResourceContents { text, .. } => text.clone(),
                other => format!("[resource: {}]", resource_uri(other)),
            },
            ContentBlock::ResourceLink(link) => format!("[resource link: {}]", link.uri),
            other => serde_json::to_string(other).unwrap_or_default(),
        });
    }
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        return structured.to_string();
    }
    parts.join("\n")
}

fn resource_uri(contents: &ResourceContents) -> String {
    serde_json::to_value(contents)
        .ok()
        .and_then(|v| v.get("uri").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

async fn list_tools(peer: &Peer<RoleClient>) -> Result<Vec<McpTool>, McpError> {
    let tools = peer
        .list_all_tools()
        .await
        .map_err(|e| McpError::Failed(format!("tools/list failed: {}", service_error(&e))))?;
    Ok(tools
        .into_iter()
        .map(|t| McpTool {
            name: t.name.into_owned(),
            description: t.description.map(std::borrow::Cow::into_owned),
            input_schema: Value::Object((*t.input_schema).clone()),
        })
        .collect())
}

/// The capability names a server declared, in a fixed order.
fn capabilities(peer: &Peer<RoleClient>) -> Vec<String> {
    let Some(info) = peer.peer_info() else {
        return Vec::new();
    };
    let c = &info.capabilities;
    [
        ("tools", c.tools.is_some()),
        ("resources", c.resources.is_some()),
        ("prompts", c.prompts.is_some()),
        ("logging", c.logging.is_some()),
        ("completions", c.completions.is_some()),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| name.to_owned())
    .collect()
}

/// After the handshake: the capabilities and, when it has the `tools` capability, the tools.
async fn catalog(peer: &Peer<RoleClient>) -> Result<McpCatalog, McpError> {
    let capabilities = capabilities(peer);
    let tools = if capabilities.iter().any(|c| c == "tools") {
        list_tools(peer)
            .await
            .map_err(|e| McpError::Start(e.to_string()))?
    } else {
        Vec::new()
    };
    Ok(McpCatalog {
        capabilities,
        tools,
    })
}

/// Reads standard error into the observer, a line at a time, each cut to
/// [`STDERR_LINE_MAX`] bytes (the rest of a longer line is dropped, never buffered).
async fn read_stderr(stream: impl AsyncRead + Unpin, observer: Arc<dyn McpObserver>) {
    let mut reader = BufReader::new(stream);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let (consumed, end_of_line) = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let room = STDERR_LINE_MAX.saturating_sub(line.len());
                    line.extend_from_slice(&buf[..i.min(room)]);
                    (i + 1, true)
                }
                None => {
                    let room = STDERR_LINE_MAX.saturating_sub(line.len());
                    line.extend_from_slice(&buf[..buf.len().min(room)]);
                    (buf.len(), false)
                }
            },
        };
        reader.consume(consumed);
        if end_of_line {
            observer.stderr_line(String::from_utf8_lossy(&line).trim_end_matches('\r'));
            line.clear();
        }
    }
    if !line.is_empty() {
        observer.stderr_line(&String::from_utf8_lossy(&line));
    }
}

fn exposed(secrets: &Secrets) -> impl Iterator<Item = (&String, &str)> {
    secrets.iter().map(|(k, v)| (k, v.expose_secret()))
}

impl RmcpConnector {
    async fn stdio(
        &self,
        command: &str,
        args: &[String],
        env: &Secrets,
        observer: Arc<dyn McpObserver>,
    ) -> Result<Arc<dyn McpConnection>, McpError> {
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(args)
            .envs(exposed(env))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut wrap = CommandWrap::from(cmd);
        wrap.wrap(ProcessGroup::leader());
        let mut child = wrap
            .spawn()
            .map_err(|e| McpError::Start(format!("cannot run '{command}': {e}")))?;
        let pid = child.id();
        let (Some(stdin), Some(stdout)) = (child.stdin().take(), child.stdout().take()) else {
            return Err(McpError::Start("the child's pipes are missing".to_owned()));
        };
        if let Some(stderr) = child.stderr().take() {
            tokio::spawn(read_stderr(stderr, observer.clone()));
        }
        // The process is watched from here on: its exit ends the connection, and whatever
        // it left in its group is killed.
        let (ended_tx, ended) = watch::channel(None);
        let sweep = pid.and_then(|p| i32::try_from(p).ok()).map(Pid::from_raw);
        tokio::spawn(async move {
            let reason = match child.wait().await {
                Ok(status) => describe_exit(status),
                Err(e) => format!("could not wait for the process: {e}"),
            };
            if let Some(group) = sweep {
                let _ = killpg(group, Signal::SIGKILL);
            }
            ended_tx.send_replace(Some(reason));
        });
        let handler = Handler { observer };
        let service = match handler.serve((stdout, stdin)).await {
            Ok(service) => service,
            Err(e) => {
                if let Some(group) = sweep {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                let mut ended = ended.clone();
                let exit =
                    tokio::time::timeout(Duration::from_secs(1), ended.wait_for(Option::is_some))
                        .await
                        .ok()
                        .and_then(|r| r.ok().and_then(|r| r.clone()));
                let why = match exit {
                    Some(exit) => format!("the MCP handshake failed ({e}); the process {exit}"),
                    None => format!("the MCP handshake failed: {e}"),
                };
                return Err(McpError::Start(why));
            }
        };
        let peer = service.peer().clone();
        let catalog = match catalog(&peer).await {
            Ok(catalog) => catalog,
            Err(e) => {
                let _ = service.cancel().await;
                if let Some(group) = sweep {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                return Err(e);
            }
        };
        let connection = Arc::new(Connection {
            catalog,
            peer,
            pid,
            grace: self.grace,
            cancel: Mutex::new(Some(service.cancellation_token())),
            ended,
        });
        // A session that ends while the process lives (it closed its output) ends the
        // process too, so the supervisor sees one end.
        let watched = connection.clone();
        tokio::spawn(async move {
            let _ = service.waiting().await;
            if !watched.wait_end(watched.grace).await {
                watched.signal(Signal::SIGTERM);
            }
        });
        Ok(connection)
    }

    async fn http(
        &self,
        url: &str,
        headers: &Secrets,
        observer: Arc<dyn McpObserver>,
    ) -> Result<Arc<dyn McpConnection>, McpError> {
        let mut custom = std::collections::HashMap::new();
        for (name, value) in exposed(headers) {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| McpError::Start(format!("header '{name}' is not valid")))?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                McpError::Start(format!("the value of header '{name}' is not valid"))
            })?;
            custom.insert(name, value);
        }
        let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(custom);
        let transport = StreamableHttpClientTransport::from_config(config);
        let handler = Handler { observer };
        let service = handler
            .serve(transport)
            .await
            .map_err(|e| McpError::Start(format!("the MCP handshake with {url} failed: {e}")))?;
        let peer = service.peer().clone();
        let catalog = match catalog(&peer).await {
            Ok(catalog) => catalog,
            Err(e) => {
                let _ = service.cancel().await;
                return Err(e);
            }
        };
        let (ended_tx, ended) = watch::channel(None);
        let cancel = service.cancellation_token();
        tokio::spawn(async move {
            let reason = match service.waiting().await {
                Ok(quit) => format!("the session ended ({quit:?})"),
                Err(e) => format!("the session failed: {e}"),
            };
            ended_tx.send_replace(Some(reason));
        });
        Ok(Arc::new(Connection {
            catalog,
            peer,
            pid: None,
            grace: self.grace,
            cancel: Mutex::new(Some(cancel)),
            ended,
        }))
    }
}

/// An exit status in words: `exited with status 1`, `was killed by signal 9`.
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "exited".to_owned(),
    }
}

#[async_trait]
impl McpConnector for RmcpConnector {
    async fn connect(
        &self,
        server: &McpServer,
        observer: Arc<dyn McpObserver>,
    ) -> Result<Arc<dyn McpConnection>, McpError> {
        match &server.transport {
            McpTransport::Stdio { command, args, env } => {
                self.stdio(command, args, env, observer).await
            }
            McpTransport::Http { url, headers } => self.http(url.as_str(), headers, observer).await,
        }
    }
}
