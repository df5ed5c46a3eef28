//! A small, fast fake LLM upstream for tests and benchmarks, over HTTP/1.1 and (for clients
//! that start with its preface) HTTP/2 without TLS, speaking the real wire formats:
//!
//! - OpenAI: `POST /v1/chat/completions` (JSON, and SSE with `stream: true`, honouring
//!   `stream_options.include_usage`), `POST /v1/embeddings` (deterministic hashed-word
//!   vectors, `float` or `base64`), `GET /v1/models`;
//! - Anthropic: `POST /v1/messages` (JSON and SSE; `max_tokens` required as upstream does).
//!
//! By default it answers with the last user message ("echo"). The behaviour of a request is
//! chosen, in order, by the queue of [`Scripted`] replies ([`FakeUpstream::push`]), then by the
//! model name:
//!
//! | model | behaviour |
//! |---|---|
//! | `fake-echo` (and any other name) | echo |
//! | `fake-error-<status>` | that status with the provider's real error JSON (429 adds `Retry-After: 1`) |
//! | `fake-slow-<ms>` | echo after `ms`, and `ms` between SSE chunks |
//! | `fake-cut` | half the answer, then the connection drops (no `[DONE]` / `message_stop`) |
//!
//! [`Scripted::ToolCalls`] answers with tool calls in each format (OpenAI `tool_calls`,
//! Anthropic `tool_use` blocks), their arguments streamed in several fragments as the real
//! providers do. Every request is recorded ([`FakeUpstream::requests`]) so tests can check
//! what a client sent (tools, `tool_choice`, `response_format`…).
//!
//! Usage is deterministic: `prompt_tokens` is the word count of the messages (and `system`),
//! `completion_tokens` the word count of the answer; `max_tokens` cuts the answer in words
//! (finish reason `length` / `max_tokens`).
//!
//! ```no_run
//! # async fn demo() {
//! use agentry_fake_upstream::{FakeUpstream, Scripted};
//! let fake = FakeUpstream::start().await;
//! fake.push(Scripted::Error(500)); // the next request fails once, then echo
//! let openai_base = fake.base_url(); // http://127.0.0.1:PORT/v1
//! let anthropic_base = fake.origin(); // http://127.0.0.1:PORT
//! # }
//! ```

mod anthropic;
mod embeddings;
mod openai;
mod script;
mod server;
mod text;
mod wire;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::http::request::Parts;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use script::Plan;
pub use script::Scripted;

/// HTTP/2 streams per connection until [`FakeUpstream::with_stream_limit`] says otherwise
/// (hyper's own default).
const DEFAULT_STREAM_LIMIT: u32 = 200;

/// A request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `POST`…
    pub method: String,
    /// The path, such as `/v1/chat/completions`.
    pub path: String,
    /// Headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The JSON body; `Null` when there was none or it was not JSON.
    pub body: Value,
    /// The protocol the request came over: `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
}

impl RecordedRequest {
    fn new(parts: &Parts, body: Option<Value>) -> Self {
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        Self {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            headers,
            body: body.unwrap_or(Value::Null),
            version: format!("{:?}", parts.version),
        }
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server tasks share with the handle.
#[derive(Debug, Default)]
pub(crate) struct State {
    queue: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<RecordedRequest>>,
    latency_micros: AtomicU64,
    recording: AtomicBool,
    connections: AtomicUsize,
    /// HTTP/2 streams allowed per connection (`SETTINGS_MAX_CONCURRENT_STREAMS`); 0 = no limit.
    stream_limit: AtomicU32,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

impl State {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Scripted>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next queued reply, else the behaviour named by `model`.
    pub(crate) fn next_plan(&self, model: &str) -> Plan {
        match self.queue().pop_front() {
            Some(scripted) => Plan::from_scripted(scripted),
            None => Plan::from_model(model),
        }
    }

    /// The fixed latency added before every answer.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_micros.load(Ordering::Relaxed))
    }

    pub(crate) fn is_recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        self.requests().push(request);
    }

    /// The HTTP/2 stream limit advertised to new connections (`None`: no limit).
    pub(crate) fn stream_limit(&self) -> Option<u32> {
        match self.stream_limit.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// Counts a request being handled (until its answer starts) and keeps the peak.
    pub(crate) fn request(self: &Arc<Self>) -> Counted {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        Counted(Arc::clone(self), |state| &state.in_flight)
    }

    /// Counts a connection until the guard is dropped.
    pub(crate) fn connection(self: &Arc<Self>) -> Counted {
        self.connections.fetch_add(1, Ordering::Relaxed);
        Counted(Arc::clone(self), |state| &state.connections)
    }
}

/// Something counted (an open connection, a request being handled) while the guard lives.
pub(crate) struct Counted(Arc<State>, fn(&State) -> &AtomicUsize);

impl Drop for Counted {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running fake upstream on `127.0.0.1`. Dropping it stops the server and closes its
/// connections.
#[derive(Debug)]
pub struct FakeUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FakeUpstream {
    /// Starts a fake on `127.0.0.1:0` (a free port) in the current tokio runtime, recording
    /// requests.
    ///
    /// # Panics
    /// When no local port can be bound (test support: failing loudly is what a test wants).
    #[allow(clippy::panic)]
    pub async fn start() -> Self {
        match Self::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await {
            Ok(fake) => fake,
            Err(error) => panic!("the fake upstream could not bind 127.0.0.1:0: {error}"),
        }
    }

    /// Starts a fake on `addr` in the current tokio runtime, recording requests.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        state.recording.store(true, Ordering::Relaxed);
        state
            .stream_limit
            .store(DEFAULT_STREAM_LIMIT, Ordering::Relaxed);
        let task = tokio::spawn(server::serve(listener, Arc::clone(&state)));
        Ok(Self { addr, state, task })
    }

    /// The OpenAI base URL, `http://127.0.0.1:PORT/v1` (clients append `/chat/completions`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The origin, `http://127.0.0.1:PORT`: the Anthropic base URL (clients append
    /// `/v1/messages`).
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply for the next request not served by an earlier queued reply.
    pub fn push(&self, reply: Scripted) {
        self.state.queue().push_back(reply);
    }

    /// Queues the same reply `times` times (e.g. a 500 twice, then the normal answer).
    pub fn push_n(&self, reply: Scripted, times: usize) {
        let mut queue = self.state.queue();
        queue.extend(std::iter::repeat_n(reply, times));
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests().clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.state.requests().len()
    }

    /// How many client connections are open now (to check that clients hang up, e.g. when a
    /// stream is dropped).
    pub fn open_connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// The most requests handled at the same time so far (counted from arrival until the
    /// answer starts, so it includes the latency): shows whether a client's calls really ran
    /// concurrently.
    pub fn peak_concurrent_requests(&self) -> usize {
        self.state.peak_in_flight.load(Ordering::Relaxed)
    }

    /// Advertises at most `limit` concurrent streams per HTTP/2 connection to connections
    /// opened from now on (0: no limit; hyper's default of 200 until set). HTTP/2 is served
    /// to clients that start with its preface (`http2_prior_knowledge`); others get HTTP/1.1.
    #[must_use]
    pub fn with_stream_limit(self, limit: u32) -> Self {
        self.state.stream_limit.store(limit, Ordering::Relaxed);
        self
    }

    /// Adds a fixed latency before every completion answer.
    #[must_use]
    pub fn with_latency(self, latency: Duration) -> Self {
        self.set_latency(latency);
        self
    }

    /// Changes the fixed latency added before every completion answer.
    pub fn set_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.state.latency_micros.store(micros, Ordering::Relaxed);
    }

    /// Turns request recording on or off (off for load tests: it keeps every request).
    #[must_use]
    pub fn with_recording(self, on: bool) -> Self {
        self.state.recording.store(on, Ordering::Relaxed);
        self
    }

    /// Serves until the server task ends (it only ends when aborted, or the runtime stops).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
