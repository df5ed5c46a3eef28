//! Supervision of MCP servers on this replica: starting them through the [`McpConnector`]
//! port, restarting a crashed one with exponential backoff up to a limit, stopping them, and
//! keeping their recent standard error lines and lifecycle events in a bounded ring buffer.
//!
//! Each replica supervises its own processes: the status is local (docs/mcp.md). What a
//! handshake reports (capabilities and tools) is stored, so every replica and every restart
//! can show it without starting the server.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::mcp::{
    McpCallOutput, McpCatalog, McpConnection, McpConnector, McpError, McpObserver, McpServer,
    McpServerId, McpStatus, McpTool,
};
use crate::ports::{Clock, McpServerStore};
use crate::tool::ToolLimits;

/// How servers are supervised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McpSettings {
    /// How long a start (spawn, handshake, tool list) may take before it counts as failed.
    pub start_timeout: Duration,
    /// Automatic restarts after a crash before giving up (the server then stays `crashed`).
    pub max_restarts: u32,
    /// The first restart's delay; each next one doubles it.
    pub backoff_base: Duration,
    /// The longest delay between restarts.
    pub backoff_max: Duration,
    /// A server that ran this long before crashing gets its restart count back.
    pub healthy_after: Duration,
    /// Lines kept per server for `GET …/logs` (standard error and lifecycle events).
    pub log_lines: usize,
}

impl Default for McpSettings {
    fn default() -> Self {
        Self {
            start_timeout: Duration::from_secs(60),
            max_restarts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(60),
            log_lines: 500,
        }
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpLogSource {
    /// The server's standard error.
    Stderr,
    /// Agentry's supervision: started, crashed, restarting, stopped… These are the
    /// `system.notification`s of seed 002.
    Event,
}

impl McpLogSource {
    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Stderr => "stderr",
            Self::Event => "event",
        }
    }
}

/// How serious a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpLogLevel {
    /// Normal lifecycle.
    Info,
    /// A crash that will be retried.
    Warning,
    /// A crash that will not be retried, a failed start.
    Error,
}

impl McpLogLevel {
    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// One line of a server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpLogLine {
    /// When it was seen.
    pub at: DateTime<Utc>,
    /// Standard error or a lifecycle event.
    pub source: McpLogSource,
    /// Its level (standard error lines are `info`: a server's stderr is its log).
    pub level: McpLogLevel,
    /// The text (at most [`LOG_LINE_MAX`] bytes).
    pub message: String,
}

/// Longest log line kept, in bytes; longer lines are cut.
pub const LOG_LINE_MAX: usize = 2000;

/// What this replica knows of a server's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpRuntimeState {
    /// The status.
    pub status: McpStatus,
    /// The process id of a running stdio server.
    pub pid: Option<u32>,
    /// Why it last failed, until it runs again.
    pub last_error: Option<String>,
    /// Automatic restarts since it last ran long enough to count as healthy.
    pub restarts: u32,
}

struct State {
    conn: Option<Arc<dyn McpConnection>>,
    task: Option<JoinHandle<()>>,
    pid: Option<u32>,
    last_error: Option<String>,
    restarts: u32,
    /// The tool list of the running connection (re-read on `tools/list_changed`).
    tools: Option<Vec<McpTool>>,
}

/// The status, and whether a supervision loop still looks after the server (false once it
/// is stopped or gave up restarting): a waiter for `running` stops waiting then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Phase {
    status: McpStatus,
    supervised: bool,
}

impl Phase {
    fn supervised(status: McpStatus) -> Self {
        Self {
            status,
            supervised: true,
        }
    }
}

struct Slot {
    id: McpServerId,
    state: Mutex<State>,
    status: watch::Sender<Phase>,
    logs: Mutex<VecDeque<McpLogLine>>,
    /// Serialises start, stop and restart of this server.
    ops: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Slot {
    fn alive(&self) -> bool {
        lock(&self.state)
            .task
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    fn running(&self) -> Option<Arc<dyn McpConnection>> {
        if self.status.borrow().status != McpStatus::Running {
            return None;
        }
        lock(&self.state).conn.clone()
    }
}

struct Inner {
    connector: Option<Arc<dyn McpConnector>>,
    events: Option<Arc<dyn crate::event::EventBus>>,
    store: Arc<dyn McpServerStore>,
    clock: Arc<dyn Clock>,
    settings: McpSettings,
    slots: Mutex<HashMap<McpServerId, Arc<Slot>>>,
}

impl Inner {
    fn log(&self, slot: &Slot, source: McpLogSource, level: McpLogLevel, message: &str) {
        let mut message = message.trim_end().to_owned();
        if message.len() > LOG_LINE_MAX {
            let mut cut = LOG_LINE_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        if source == McpLogSource::Event {
            match level {
                McpLogLevel::Info => tracing::info!(server = %slot.id, "mcp: {message}"),
                McpLogLevel::Warning => tracing::warn!(server = %slot.id, "mcp: {message}"),
                McpLogLevel::Error => tracing::error!(server = %slot.id, "mcp: {message}"),
            }
        }
        let line = McpLogLine {
            at: self.clock.now(),
            source,
            level,
            message,
        };
        let mut logs = lock(&slot.logs);
        while logs.len() >= self.settings.log_lines.max(1) {
            logs.pop_front();
        }
        logs.push_back(line);
    }

    fn event(&self, slot: &Slot, level: McpLogLevel, message: &str) {
        self.log(slot, McpLogSource::Event, level, message);
    }

    /// A `system.notification` for subscribers (crashes and restarts).
    fn notify(&self, level: McpLogLevel, message: String) {
        if let Some(bus) = &self.events {
            bus.publish(crate::event::Event::system(level.as_str(), message));
        }
    }

    fn backoff(&self, restart: u32) -> Duration {
        let factor = 2u32.saturating_pow(restart.saturating_sub(1).min(20));
        self.settings
            .backoff_base
            .saturating_mul(factor)
            .min(self.settings.backoff_max)
    }
}

/// What a connection reports, routed to its slot. Holds weak references: a connection that
/// outlives its supervisor reports nothing.
struct SlotObserver {
    inner: Weak<Inner>,
    slot: Weak<Slot>,
}

impl McpObserver for SlotObserver {
    fn stderr_line(&self, line: &str) {
        if let (Some(inner), Some(slot)) = (self.inner.upgrade(), self.slot.upgrade()) {
            inner.log(&slot, McpLogSource::Stderr, McpLogLevel::Info, line);
        }
    }

    fn tools_changed(&self) {
        let (Some(inner), Some(slot)) = (self.inner.upgrade(), self.slot.upgrade()) else {
            return;
        };
        tokio::spawn(async move {
            let Some(conn) = slot.running() else { return };
            match conn.list_tools().await {
                Ok(tools) => {
                    let catalog = McpCatalog {
                        capabilities: conn.catalog().capabilities,
                        tools: tools.clone(),
                    };
                    lock(&slot.state).tools = Some(tools);
                    if let Err(e) = inner.store.set_mcp_catalog(&slot.id, &catalog).await {
                        tracing::warn!(server = %slot.id, error = %e, "could not store the new tool list");
                    }
                    inner.event(
                        &slot,
                        McpLogLevel::Info,
                        &format!("tool list changed: {} tools", catalog.tools.len()),
                    );
                }
                Err(e) => inner.event(
                    &slot,
                    McpLogLevel::Warning,
                    &format!("tool list changed but could not be read: {e}"),
                ),
            }
        });
    }
}

/// Starts, watches, restarts and stops MCP servers on this replica. Cheap to clone.
#[derive(Clone)]
pub struct McpSupervisor {
    inner: Arc<Inner>,
}

impl McpSupervisor {
    /// A supervisor that starts servers through `connector` (`None`: MCP is not available in
    /// this process, and every start fails with a clear reason).
    pub fn new(
        connector: Option<Arc<dyn McpConnector>>,
        store: Arc<dyn McpServerStore>,
        clock: Arc<dyn Clock>,
        settings: McpSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector,
                events: None,
                store,
                clock,
                settings,
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Publishes crashes and restarts as `system.notification`s on `events`.
    #[must_use]
    pub fn with_events(self, events: Arc<dyn crate::event::EventBus>) -> Self {
        let inner = match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.events = Some(events);
                inner
            }
            // Not shared yet in practice (called while building); keep it as it is otherwise.
            Err(shared) => return Self { inner: shared },
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &McpSettings {
        &self.inner.settings
    }

    fn slot(&self, id: &McpServerId) -> Arc<Slot> {
        lock(&self.inner.slots)
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(Slot {
                    id: id.clone(),
                    state: Mutex::new(State {
                        conn: None,
                        task: None,
                        pid: None,
                        last_error: None,
                        restarts: 0,
                        tools: None,
                    }),
                    status: watch::Sender::new(Phase {
                        status: McpStatus::Stopped,
                        supervised: false,
                    }),
                    logs: Mutex::new(VecDeque::new()),
                    ops: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    fn existing(&self, id: &McpServerId) -> Option<Arc<Slot>> {
        lock(&self.inner.slots).get(id).cloned()
    }

    /// What this replica knows of a server's process (`stopped` for one it never started).
    pub fn state(&self, id: &McpServerId) -> McpRuntimeState {
        match self.existing(id) {
            None => McpRuntimeState {
                status: McpStatus::Stopped,
                pid: None,
                last_error: None,
                restarts: 0,
            },
            Some(slot) => {
                let status = slot.status.borrow().status;
                let state = lock(&slot.state);
                McpRuntimeState {
                    status,
                    pid: state.pid.filter(|_| status == McpStatus::Running),
                    last_error: state.last_error.clone(),
                    restarts: state.restarts,
                }
            }
        }
    }

    /// The newest `tail` lines of a server's log, oldest first.
    pub fn logs(&self, id: &McpServerId, tail: usize) -> Vec<McpLogLine> {
        let Some(slot) = self.existing(id) else {
            return Vec::new();
        };
        let logs = lock(&slot.logs);
        let skip = logs.len().saturating_sub(tail);
        logs.iter().skip(skip).cloned().collect()
    }

    /// Starts a server unless it is already up (or being started or restarted), then waits
    /// for the first outcome: `running`, or `crashed` when the start failed (the reason is in
    /// [`McpRuntimeState::last_error`] and the log; restarts follow with backoff).
    pub async fn start(&self, server: &McpServer) -> McpRuntimeState {
        let slot = self.slot(&server.id);
        {
            let _op = slot.ops.lock().await;
            if !slot.alive() {
                self.spawn(&slot, server.clone());
            }
        }
        self.settle(&slot, self.inner.settings.start_timeout).await;
        self.state(&server.id)
    }

    fn spawn(&self, slot: &Arc<Slot>, server: McpServer) {
        slot.status
            .send_replace(Phase::supervised(McpStatus::Starting));
        let mut state = lock(&slot.state);
        state.restarts = 0;
        state.last_error = None;
        state.task = Some(tokio::spawn(supervise(
            self.inner.clone(),
            slot.clone(),
            server,
        )));
    }

    /// Waits until the server is `running`, `crashed` or `stopped`, at most `wait`.
    async fn settle(&self, slot: &Slot, wait: Duration) {
        let mut rx = slot.status.subscribe();
        let settled = rx.wait_for(|p| {
            matches!(
                p.status,
                McpStatus::Running | McpStatus::Crashed | McpStatus::Stopped
            )
        });
        // A closed channel cannot happen while the slot lives; a timeout leaves the status
        // as it is (`starting`), which the caller reports.
        let _ = tokio::time::timeout(wait, settled).await;
    }

    /// Stops a server: its supervision ends (no restart), then its connection is closed
    /// (MCP shutdown, SIGTERM, SIGKILL for a process). Stopping a stopped server does nothing.
    pub async fn stop(&self, id: &McpServerId) {
        let Some(slot) = self.existing(id) else {
            return;
        };
        let _op = slot.ops.lock().await;
        self.stop_locked(&slot).await;
    }

    async fn stop_locked(&self, slot: &Slot) {
        let was = slot.status.borrow().status;
        // The supervision ends first (no restart can follow), then the connection it left.
        let task = lock(&slot.state).task.take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        let conn = lock(&slot.state).conn.take();
        if let Some(conn) = conn {
            conn.close().await;
        }
        {
            let mut state = lock(&slot.state);
            state.pid = None;
            state.tools = None;
        }
        slot.status.send_replace(Phase {
            status: McpStatus::Stopped,
            supervised: false,
        });
        if was != McpStatus::Stopped {
            self.inner.event(slot, McpLogLevel::Info, "stopped");
        }
    }

    /// Stops a server (if it runs here) and starts it with `server`'s definition.
    pub async fn restart(&self, server: &McpServer) -> McpRuntimeState {
        let slot = self.slot(&server.id);
        {
            let _op = slot.ops.lock().await;
            self.stop_locked(&slot).await;
            self.inner
                .event(&slot, McpLogLevel::Info, "restarting on request");
            self.spawn(&slot, server.clone());
        }
        self.settle(&slot, self.inner.settings.start_timeout).await;
        self.state(&server.id)
    }

    /// Restarts a server with a new definition if it is up here; leaves it alone otherwise.
    pub async fn reload(&self, server: &McpServer) {
        if self.existing(&server.id).is_some_and(|s| s.alive()) {
            self.restart(server).await;
        }
    }

    /// Stops a server and forgets it (its log included): the server was deleted.
    pub async fn forget(&self, id: &McpServerId) {
        self.stop(id).await;
        lock(&self.inner.slots).remove(id);
    }

    /// Stops every server this replica runs (at shutdown).
    pub async fn stop_all(&self) {
        let slots: Vec<Arc<Slot>> = lock(&self.inner.slots).values().cloned().collect();
        futures_util::future::join_all(slots.iter().map(|s| self.stop(&s.id))).await;
    }

    /// A running connection to `server`: started first when nothing supervises it here (it
    /// was stopped, or gave up restarting), awaited for at most `wait` while it is starting
    /// or restarting.
    ///
    /// # Errors
    /// [`McpError::NotRunning`] naming the status and the last failure.
    pub async fn connection(
        &self,
        server: &McpServer,
        wait: Duration,
    ) -> Result<Arc<dyn McpConnection>, McpError> {
        let slot = self.slot(&server.id);
        if let Some(conn) = slot.running() {
            return Ok(conn);
        }
        if slot.alive() {
            // Starting, or crashed and waiting to restart: wait for it to run.
            let mut rx = slot.status.subscribe();
            let up = rx.wait_for(|p| p.status == McpStatus::Running || !p.supervised);
            let _ = tokio::time::timeout(wait, up).await;
        } else {
            self.start(server).await;
        }
        slot.running().ok_or_else(|| {
            let state = self.state(&server.id);
            let why = state
                .last_error
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            McpError::NotRunning(format!(
                "MCP server '{}' is {}{why}",
                server.slug,
                state.status.as_str()
            ))
        })
    }

    /// The tool list of the server's running connection here, if it runs.
    pub fn live_tools(&self, id: &McpServerId) -> Option<Vec<McpTool>> {
        let slot = self.existing(id)?;
        slot.running()?;
        lock(&slot.state).tools.clone()
    }

    /// The tools to offer for `server`: the running connection's list. A server nothing
    /// supervises here (stopped, or given up) is started first and one being started is
    /// awaited (at most the start timeout each); one that crashed and waits to restart is not
    /// awaited. When it does not run, the list stored at its last handshake is offered (calls
    /// then wait for it up to the tool timeout, or fail as tool errors the model reads).
    pub async fn tools(&self, server: &McpServer) -> Vec<McpTool> {
        let slot = self.slot(&server.id);
        if !slot.alive() {
            self.start(server).await;
        } else if slot.status.borrow().status == McpStatus::Starting {
            self.settle(&slot, self.inner.settings.start_timeout).await;
        }
        self.live_tools(&server.id)
            .unwrap_or_else(|| server.catalog.tools.clone())
    }

    /// Calls one tool of `server`, starting it first if needed.
    ///
    /// # Errors
    /// [`McpError::NotRunning`] when it cannot be brought up within `limits.timeout`; the
    /// connection's errors.
    pub async fn call(
        &self,
        server: &McpServer,
        tool: &str,
        arguments: Map<String, Value>,
        limits: ToolLimits,
    ) -> Result<McpCallOutput, McpError> {
        let conn = self.connection(server, limits.timeout).await?;
        let grace = limits.timeout + Duration::from_secs(1);
        match tokio::time::timeout(grace, conn.call_tool(tool, arguments, limits)).await {
            Ok(out) => out,
            Err(_) => Err(McpError::Timeout(limits.timeout)),
        }
    }
}

/// One server's supervision: start, wait for the end, restart with backoff, give up.
async fn supervise(inner: Arc<Inner>, slot: Arc<Slot>, server: McpServer) {
    let settings = inner.settings;
    let mut restarts: u32 = 0;
    loop {
        let first = restarts == 0;
        slot.status.send_replace(Phase::supervised(if first {
            McpStatus::Starting
        } else {
            McpStatus::Restarting
        }));
        inner.event(
            &slot,
            McpLogLevel::Info,
            &format!("starting ({})", describe(&server)),
        );
        let failure = match run_once(&inner, &slot, &server, restarts > 0).await {
            Ok((reason, up_for)) => {
                if up_for >= settings.healthy_after {
                    restarts = 0;
                }
                format!("exited: {reason}")
            }
            Err(e) => e,
        };
        {
            let mut state = lock(&slot.state);
            state.conn = None;
            state.pid = None;
            state.tools = None;
            state.last_error = Some(failure.clone());
            state.restarts = restarts;
        }
        let giving_up = restarts >= settings.max_restarts;
        slot.status.send_replace(Phase {
            status: McpStatus::Crashed,
            supervised: !giving_up,
        });
        if giving_up {
            inner.event(
                &slot,
                McpLogLevel::Error,
                &format!("crashed: {failure}; not restarted (gave up after {restarts} restarts)"),
            );
            inner.notify(
                McpLogLevel::Error,
                format!(
                    "MCP server '{}' crashed and is not restarted (gave up after {restarts} restarts)",
                    server.slug
                ),
            );
            return;
        }
        restarts += 1;
        let delay = inner.backoff(restarts);
        inner.event(
            &slot,
            McpLogLevel::Warning,
            &format!(
                "crashed: {failure}; restarting in {} ms (restart {restarts} of {})",
                delay.as_millis(),
                settings.max_restarts
            ),
        );
        inner.notify(
            McpLogLevel::Warning,
            format!(
                "MCP server '{}' crashed ({failure}); restarting in {} ms",
                server.slug,
                delay.as_millis()
            ),
        );
        lock(&slot.state).restarts = restarts;
        tokio::time::sleep(delay).await;
    }
}

/// Connects once and waits for the connection to end: the reason and how long it was up, or
/// why it could not start.
async fn run_once(
    inner: &Arc<Inner>,
    slot: &Arc<Slot>,
    server: &McpServer,
    restarted: bool,
) -> Result<(String, Duration), String> {
    let Some(connector) = inner.connector.clone() else {
        return Err("MCP servers cannot be started in this process (no connector)".to_owned());
    };
    let observer = Arc::new(SlotObserver {
        inner: Arc::downgrade(inner),
        slot: Arc::downgrade(slot),
    });
    let timeout = inner.settings.start_timeout;
    let conn = match tokio::time::timeout(timeout, connector.connect(server, observer)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!(
                "the MCP handshake did not finish within {} s",
                timeout.as_secs()
            ));
        }
    };
    let catalog = conn.catalog();
    if let Err(e) = inner.store.set_mcp_catalog(&server.id, &catalog).await {
        tracing::warn!(server = %server.id, error = %e, "could not store the server's capabilities");
    }
    let pid = conn.pid();
    {
        let mut state = lock(&slot.state);
        state.conn = Some(conn.clone());
        state.pid = pid;
        state.last_error = None;
        state.tools = Some(catalog.tools.clone());
    }
    slot.status
        .send_replace(Phase::supervised(McpStatus::Running));
    let pid_text = pid.map(|p| format!("pid {p}, ")).unwrap_or_default();
    inner.event(
        slot,
        McpLogLevel::Info,
        &format!(
            "running ({pid_text}capabilities: {}; {} tools)",
            if catalog.capabilities.is_empty() {
                "none".to_owned()
            } else {
                catalog.capabilities.join(", ")
            },
            catalog.tools.len()
        ),
    );
    if restarted {
        inner.notify(
            McpLogLevel::Info,
            format!("MCP server '{}' restarted", server.slug),
        );
    }
    let up = Instant::now();
    let reason = conn.ended().await;
    Ok((reason, up.elapsed()))
}

/// The server in words for the log: the command (no environment values) or the URL.
fn describe(server: &McpServer) -> String {
    match &server.transport {
        crate::mcp::McpTransport::Stdio { command, args, .. } => {
            let mut text = command.clone();
            for a in args {
                text.push(' ');
                text.push_str(a);
            }
            text
        }
        crate::mcp::McpTransport::Http { url, .. } => url.as_str().to_owned(),
    }
}
