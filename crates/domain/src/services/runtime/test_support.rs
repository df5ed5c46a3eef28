//! In-memory fakes of the runtime's ports for `tests.rs`: one store for agents, versions,
//! providers, conversations and runs; a scripted model; a recording HTTP tool client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_core::Stream;
use serde_json::{Map, Value};

use super::{Runtime, RuntimePorts, RuntimeSettings};
use crate::agent::{
    Agent, AgentFilter, AgentId, AgentKey, AgentName, AgentRef, AgentStatus, AgentType, ModelRef,
    ToolSpec,
};
use crate::conversation::{Conversation, Message, MessageQuery, Run, RunFilter};
use crate::error::{Error, Result};
use crate::llm::{
    Completion, CompletionRequest, CompletionStream, LlmClient, LlmClientFactory, ProviderError,
    StreamEvent, TokenUsage, ToolCall,
};
use crate::mcp::{
    McpCallOutput, McpCatalog, McpConnection, McpConnector, McpError, McpObserver, McpServer,
    McpServerId, McpServerRef, McpTool,
};
use crate::page::{Page, Paged};
use crate::ports::McpServerStore;
use crate::ports::{
    AgentStore, ConversationStore, ProviderStore, RunStore, SystemClock, VersionStore,
};
use crate::provider::{
    MOCK_ECHO_MODEL, MOCK_PROVIDER_ID, Provider, ProviderId, ProviderKind, ProviderSource,
};
use crate::services::{
    McpServerService, McpSettings, McpSupervisor, ProviderRegistry, VersionService,
};
use crate::tool::{HttpTool, HttpToolClient, ToolError, ToolLimits};
use crate::version::AgentVersion;

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// Storage

/// Every store the runtime reads or writes, in memory.
#[derive(Default)]
pub struct Mem {
    pub agents: Mutex<HashMap<String, Agent>>,
    pub versions: Mutex<Vec<AgentVersion>>,
    pub conversations: Mutex<HashMap<String, Conversation>>,
    pub messages: Mutex<Vec<Message>>,
    pub runs: Mutex<Vec<Run>>,
    pub mcp_servers: Mutex<Vec<McpServer>>,
    /// Reads of a conversation or its messages (`get_conversation`, `get_message`,
    /// `last_messages`, `find_conversation`).
    pub conversation_reads: AtomicUsize,
}

impl Mem {
    /// Every stored message of a conversation, oldest first.
    pub fn messages_of(&self, conversation_id: &str) -> Vec<Message> {
        let mut all: Vec<Message> = lock(&self.messages)
            .iter()
            .filter(|m| m.conversation_id == conversation_id)
            .cloned()
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    /// Every stored message, oldest first.
    pub fn all_messages(&self) -> Vec<Message> {
        let mut all = lock(&self.messages).clone();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    pub fn conversation_count(&self) -> usize {
        lock(&self.conversations).len()
    }

    pub fn runs(&self) -> Vec<Run> {
        lock(&self.runs).clone()
    }
}

#[async_trait]
impl AgentStore for Mem {
    async fn insert_agent(&self, agent: &Agent) -> Result<()> {
        let mut agents = lock(&self.agents);
        if agents.values().any(|a| a.key == agent.key) {
            return Err(Error::conflict("key", "taken"));
        }
        agents.insert(agent.id.to_string(), agent.clone());
        Ok(())
    }
    async fn get_agent(&self, agent: &AgentRef) -> Result<Agent> {
        let agents = lock(&self.agents);
        let found = match agent {
            AgentRef::Id(id) => agents.get(id.as_str()).cloned(),
            AgentRef::Key(key) => agents.values().find(|a| &a.key == key).cloned(),
        };
        found.ok_or_else(|| Error::not_found("agent", agent.to_string()))
    }
    async fn list_agents(&self, _: &AgentFilter, page: Page) -> Result<Paged<Agent>> {
        let items: Vec<Agent> = lock(&self.agents).values().cloned().collect();
        Ok(Paged {
            total: items.len() as u64,
            items,
            page,
        })
    }
    async fn update_agent(&self, agent: &Agent) -> Result<()> {
        let mut agents = lock(&self.agents);
        match agents.get_mut(agent.id.as_str()) {
            Some(a) => {
                *a = agent.clone();
                Ok(())
            }
            None => Err(Error::not_found("agent", agent.id.as_str())),
        }
    }
    async fn delete_agent(&self, id: &AgentId) -> Result<bool> {
        Ok(lock(&self.agents).remove(id.as_str()).is_some())
    }
    async fn agents_using_provider(&self, provider: &ProviderId) -> Result<Vec<AgentKey>> {
        Ok(lock(&self.agents)
            .values()
            .filter(|a| &a.model.provider_id == provider)
            .map(|a| a.key.clone())
            .collect())
    }
}

#[async_trait]
impl VersionStore for Mem {
    async fn publish_version(
        &self,
        snapshot: &Agent,
        note: Option<&str>,
        created_by: Option<&str>,
        now: DateTime<Utc>,
        draft: bool,
    ) -> Result<AgentVersion> {
        if !lock(&self.agents).contains_key(snapshot.id.as_str()) {
            return Err(Error::not_found("agent", snapshot.id.as_str()));
        }
        let mut versions = lock(&self.versions);
        let next = versions
            .iter()
            .filter(|v| v.agent_id == snapshot.id)
            .map(|v| v.version)
            .max()
            .unwrap_or(0)
            + 1;
        let v = AgentVersion {
            agent_id: snapshot.id.clone(),
            version: next,
            snapshot: snapshot.clone(),
            note: note.map(str::to_owned),
            created_by: created_by.map(str::to_owned),
            created_at: now,
            draft,
        };
        versions.push(v.clone());
        Ok(v)
    }
    async fn get_version(&self, agent: &AgentId, version: u32) -> Result<AgentVersion> {
        lock(&self.versions)
            .iter()
            .find(|v| &v.agent_id == agent && v.version == version)
            .cloned()
            .ok_or_else(|| Error::not_found("version", version.to_string()))
    }
    async fn latest_version(&self, agent: &AgentId) -> Result<Option<AgentVersion>> {
        Ok(lock(&self.versions)
            .iter()
            .filter(|v| &v.agent_id == agent && !v.draft)
            .max_by_key(|v| v.version)
            .cloned())
    }
    async fn list_versions(&self, agent: &AgentId, page: Page) -> Result<Paged<AgentVersion>> {
        let mut items: Vec<AgentVersion> = lock(&self.versions)
            .iter()
            .filter(|v| &v.agent_id == agent)
            .cloned()
            .collect();
        items.sort_by_key(|v| std::cmp::Reverse(v.version));
        Ok(Paged {
            total: items.len() as u64,
            items,
            page,
        })
    }
}

/// Providers created by API: none.
pub struct NoStoredProviders;

#[async_trait]
impl ProviderStore for NoStoredProviders {
    async fn insert_provider(&self, _: &Provider) -> Result<()> {
        Err(Error::Internal("not supported by the fake".into()))
    }
    async fn get_provider(&self, id: &ProviderId) -> Result<Provider> {
        Err(Error::not_found("provider", id.as_str()))
    }
    async fn list_providers(&self) -> Result<Vec<Provider>> {
        Ok(Vec::new())
    }
    async fn update_provider(&self, p: &Provider) -> Result<()> {
        Err(Error::not_found("provider", p.id.as_str()))
    }
    async fn delete_provider(&self, _: &ProviderId) -> Result<bool> {
        Ok(false)
    }
}

fn bump(conversations: &mut HashMap<String, Conversation>, messages: &[Message]) -> Result<()> {
    let Some(first) = messages.first() else {
        return Ok(());
    };
    if messages
        .iter()
        .any(|m| m.conversation_id != first.conversation_id)
    {
        return Err(Error::Internal("a batch spanning conversations".into()));
    }
    let c = conversations
        .get_mut(&first.conversation_id)
        .ok_or_else(|| Error::not_found("conversation", &first.conversation_id))?;
    c.message_count += messages.len() as u64;
    if let Some(last) = messages.iter().map(|m| m.created_at).max() {
        c.updated_at = last;
    }
    Ok(())
}

#[async_trait]
impl ConversationStore for Mem {
    async fn open_conversation(&self, fresh: &Conversation) -> Result<(Conversation, bool)> {
        let mut all = lock(&self.conversations);
        if let Some(c) = all
            .values()
            .find(|c| c.agent_id == fresh.agent_id && c.session_key == fresh.session_key)
        {
            return Ok((c.clone(), false));
        }
        if all.contains_key(&fresh.id) {
            return Err(Error::conflict("id", "taken"));
        }
        let c = Conversation {
            message_count: 0,
            ..fresh.clone()
        };
        all.insert(fresh.id.clone(), c.clone());
        Ok((c, true))
    }
    async fn find_conversation(
        &self,
        agent: &AgentId,
        session_key: &str,
    ) -> Result<Option<Conversation>> {
        self.conversation_reads.fetch_add(1, Ordering::SeqCst);
        Ok(lock(&self.conversations)
            .values()
            .find(|c| &c.agent_id == agent && c.session_key == session_key)
            .cloned())
    }
    async fn get_conversation(&self, id: &str) -> Result<Conversation> {
        self.conversation_reads.fetch_add(1, Ordering::SeqCst);
        lock(&self.conversations)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found("conversation", id))
    }
    async fn list_conversations(
        &self,
        agents: Option<&[AgentId]>,
        page: Page,
    ) -> Result<Paged<Conversation>> {
        let mut items: Vec<Conversation> = lock(&self.conversations)
            .values()
            .filter(|c| agents.is_none_or(|a| a.contains(&c.agent_id)))
            .cloned()
            .collect();
        items.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        Ok(Paged {
            total: items.len() as u64,
            items,
            page,
        })
    }
    async fn get_message(&self, id: &str) -> Result<Option<Message>> {
        self.conversation_reads.fetch_add(1, Ordering::SeqCst);
        Ok(lock(&self.messages).iter().find(|m| m.id == id).cloned())
    }
    async fn delete_conversation(&self, id: &str) -> Result<bool> {
        lock(&self.messages).retain(|m| m.conversation_id != id);
        Ok(lock(&self.conversations).remove(id).is_some())
    }
    async fn append_messages(&self, messages: &[Message]) -> Result<()> {
        let mut conversations = lock(&self.conversations);
        let mut stored = lock(&self.messages);
        if messages.iter().any(|m| stored.iter().any(|s| s.id == m.id)) {
            return Err(Error::conflict("id", "message id taken"));
        }
        bump(&mut conversations, messages)?;
        stored.extend(messages.iter().cloned());
        Ok(())
    }
    async fn append_messages_if(&self, messages: &[Message], expected: u64) -> Result<bool> {
        let held = messages.first().and_then(|m| {
            lock(&self.conversations)
                .get(&m.conversation_id)
                .map(|c| c.message_count)
        });
        if held.is_some_and(|n| n != expected) {
            return Ok(false);
        }
        self.append_messages(messages).await.map(|()| true)
    }
    async fn start_conversation(
        &self,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<()> {
        if !lock(&self.agents).contains_key(conversation.agent_id.as_str()) {
            return Err(Error::not_found("agent", conversation.agent_id.as_str()));
        }
        let mut conversations = lock(&self.conversations);
        if conversations.contains_key(&conversation.id) {
            return Err(Error::conflict("id", "conversation id taken"));
        }
        if conversations.values().any(|c| {
            c.agent_id == conversation.agent_id && c.session_key == conversation.session_key
        }) {
            return Err(Error::conflict("session_id", "session key taken"));
        }
        if messages
            .iter()
            .any(|m| m.conversation_id != conversation.id)
        {
            return Err(Error::Internal("a message of another conversation".into()));
        }
        conversations.insert(conversation.id.clone(), conversation.clone());
        lock(&self.messages).extend(messages.iter().cloned());
        Ok(())
    }
    async fn last_messages(&self, conversation_id: &str, limit: u32) -> Result<Vec<Message>> {
        self.conversation_reads.fetch_add(1, Ordering::SeqCst);
        let all = self.messages_of(conversation_id);
        let skip = all.len().saturating_sub(limit as usize);
        Ok(all.into_iter().skip(skip).collect())
    }
    async fn query_messages(&self, query: &MessageQuery) -> Result<Vec<Message>> {
        let conversations = lock(&self.conversations).clone();
        let all: Vec<Message> = self
            .all_messages()
            .into_iter()
            .filter(|m| m.agent_id == query.agent_id)
            .filter(|m| {
                query.session_key.as_ref().is_none_or(|k| {
                    conversations
                        .get(&m.conversation_id)
                        .is_some_and(|c| &c.session_key == k)
                })
            })
            .filter(|m| query.before.is_none_or(|b| m.created_at < b))
            .collect();
        let skip = all.len().saturating_sub(query.limit as usize);
        Ok(all.into_iter().skip(skip).collect())
    }
}

#[async_trait]
impl RunStore for Mem {
    async fn insert_run(&self, run: &Run) -> Result<()> {
        let mut runs = lock(&self.runs);
        if runs.iter().any(|r| r.id == run.id) {
            return Err(Error::conflict("run_id", "taken"));
        }
        runs.push(run.clone());
        Ok(())
    }
    async fn get_run(&self, id: &str) -> Result<Run> {
        lock(&self.runs)
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| Error::not_found("run", id))
    }
    async fn list_runs(&self, _: &RunFilter, page: Page) -> Result<Paged<Run>> {
        let items = self.runs();
        Ok(Paged {
            total: items.len() as u64,
            items,
            page,
        })
    }
}

// ---------------------------------------------------------------------------------------
// The scripted model

/// One scripted answer of the model.
pub enum Script {
    /// These events, then the end of the stream (or, with `hang`, a stream that never ends).
    Events {
        events: Vec<Result<StreamEvent, ProviderError>>,
        hang: bool,
    },
    /// The call itself fails.
    FailAtStart(ProviderError),
}

/// A model whose answers the test queues; it keeps the requests it received and counts the
/// streams dropped before their end.
#[derive(Default)]
pub struct ScriptedLlm {
    scripts: Mutex<VecDeque<Script>>,
    requests: Mutex<Vec<CompletionRequest>>,
    cut: Arc<AtomicUsize>,
}

impl ScriptedLlm {
    pub fn push(&self, script: Script) {
        lock(&self.scripts).push_back(script);
    }

    /// Queues an answer of these events, ending normally.
    pub fn answer(&self, events: Vec<Result<StreamEvent, ProviderError>>) {
        self.push(Script::Events {
            events,
            hang: false,
        });
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<CompletionRequest> {
        lock(&self.requests).clone()
    }

    /// How many streams were dropped before their end.
    pub fn cut(&self) -> usize {
        self.cut.load(Ordering::SeqCst)
    }

    /// Scripted answers not used.
    pub fn left(&self) -> usize {
        lock(&self.scripts).len()
    }

    fn next(&self, request: CompletionRequest) -> Script {
        lock(&self.requests).push(request);
        lock(&self.scripts)
            .pop_front()
            .unwrap_or(Script::FailAtStart(ProviderError::Unavailable(
                "the test scripted no more answers".into(),
            )))
    }
}

/// A scripted stream that tells when it is dropped before its end.
struct ScriptedStream {
    events: VecDeque<Result<StreamEvent, ProviderError>>,
    hang: bool,
    cut: Arc<AtomicUsize>,
}

impl Stream for ScriptedStream {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.events.pop_front() {
            Some(e) => Poll::Ready(Some(e)),
            // Never woken: the test drops the turn while it waits here.
            None if self.hang => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

impl Drop for ScriptedStream {
    fn drop(&mut self) {
        if self.hang || !self.events.is_empty() {
            self.cut.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl LlmClient for ScriptedLlm {
    async fn complete(&self, request: CompletionRequest) -> Result<Completion, ProviderError> {
        let model = request.model.clone();
        let events = match self.next(request) {
            Script::FailAtStart(e) => return Err(e),
            Script::Events { events, hang } => {
                if hang {
                    // A model that never answers (a judge's timeout).
                    std::future::pending::<()>().await;
                }
                events
            }
        };
        let mut c = Completion {
            content: String::new(),
            tool_calls: Vec::new(),
            usage: None,
            finish_reason: None,
            model,
        };
        for e in events {
            match e? {
                StreamEvent::Delta(d) => c.content.push_str(&d),
                StreamEvent::ToolCall(t) => c.tool_calls.push(t),
                StreamEvent::Done {
                    usage,
                    finish_reason,
                    model,
                } => {
                    c.usage = usage;
                    c.finish_reason = finish_reason;
                    c.model = model;
                }
            }
        }
        Ok(c)
    }

    async fn stream(&self, request: CompletionRequest) -> Result<CompletionStream, ProviderError> {
        match self.next(request) {
            Script::FailAtStart(e) => Err(e),
            Script::Events { events, hang } => Ok(Box::pin(ScriptedStream {
                events: events.into(),
                hang,
                cut: self.cut.clone(),
            })),
        }
    }
}

/// Serves every provider with the one scripted model.
pub struct Factory(pub Arc<ScriptedLlm>);

impl LlmClientFactory for Factory {
    fn client(&self, _: &Provider) -> Result<Arc<dyn LlmClient>, ProviderError> {
        Ok(self.0.clone())
    }
}

/// A live agent by key.
pub fn live(key: &str) -> super::TurnTarget {
    super::TurnTarget::LiveAgent(AgentRef::parse(key).unwrap())
}

/// `message`, continuing from `answer` (stored unless `store` is false).
pub fn continuing(answer: &str, message: &str, store: bool) -> super::TurnRequest {
    super::TurnRequest {
        memory: super::Memory::Conversation {
            session_key: None,
            conversation_id: None,
            from_answer: Some(answer.to_owned()),
            context: Map::new(),
            store,
        },
        ..super::TurnRequest::user(message)
    }
}

pub fn delta(text: &str) -> Result<StreamEvent, ProviderError> {
    Ok(StreamEvent::Delta(text.to_owned()))
}

pub fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: id.to_owned(),
        name: name.to_owned(),
        arguments: arguments.to_owned(),
    }
}

pub fn tool_call(id: &str, name: &str, arguments: &str) -> Result<StreamEvent, ProviderError> {
    Ok(StreamEvent::ToolCall(call(id, name, arguments)))
}

pub fn done(
    reason: &str,
    prompt_tokens: u32,
    completion_tokens: u32,
) -> Result<StreamEvent, ProviderError> {
    Ok(StreamEvent::Done {
        usage: Some(TokenUsage::new(prompt_tokens, completion_tokens)),
        finish_reason: Some(reason.to_owned()),
        model: MOCK_ECHO_MODEL.to_owned(),
    })
}

// ---------------------------------------------------------------------------------------
// HTTP tools

/// Records tool calls and answers them from a queue (`"ok"` when it is empty).
#[derive(Default)]
pub struct FakeTools {
    /// Calls never answer while set.
    pub hang: std::sync::atomic::AtomicBool,
    calls: Mutex<Vec<(String, Map<String, Value>)>>,
    answers: Mutex<VecDeque<Result<String, ToolError>>>,
}

impl FakeTools {
    pub fn answer(&self, answer: Result<String, ToolError>) {
        lock(&self.answers).push_back(answer);
    }

    /// The calls received: tool name and arguments.
    pub fn calls(&self) -> Vec<(String, Map<String, Value>)> {
        lock(&self.calls).clone()
    }
}

#[async_trait]
impl HttpToolClient for FakeTools {
    async fn call(
        &self,
        tool: &HttpTool,
        arguments: &Map<String, Value>,
        _: ToolLimits,
    ) -> Result<String, ToolError> {
        lock(&self.calls).push((tool.name.clone(), arguments.clone()));
        if self.hang.load(Ordering::SeqCst) {
            futures_util::future::pending::<()>().await;
        }
        lock(&self.answers)
            .pop_front()
            .unwrap_or_else(|| Ok("ok".to_owned()))
    }
}

#[async_trait]
impl McpServerStore for Mem {
    async fn insert_mcp_server(&self, server: &McpServer) -> Result<()> {
        lock(&self.mcp_servers).push(server.clone());
        Ok(())
    }

    async fn get_mcp_server(&self, server: &McpServerRef) -> Result<McpServer> {
        lock(&self.mcp_servers)
            .iter()
            .find(|s| match server {
                McpServerRef::Id(id) => &s.id == id,
                McpServerRef::Slug(slug) => &s.slug == slug,
            })
            .cloned()
            .ok_or_else(|| Error::not_found("mcp_server", server.to_string()))
    }

    async fn list_mcp_servers(&self, page: Page) -> Result<Paged<McpServer>> {
        let items = lock(&self.mcp_servers).clone();
        Ok(Paged {
            total: items.len() as u64,
            items,
            page,
        })
    }

    async fn update_mcp_server(&self, server: &McpServer) -> Result<()> {
        let mut all = lock(&self.mcp_servers);
        let found = all.iter_mut().find(|s| s.id == server.id).unwrap();
        *found = server.clone();
        Ok(())
    }

    async fn set_mcp_catalog(&self, id: &McpServerId, catalog: &McpCatalog) -> Result<bool> {
        let mut all = lock(&self.mcp_servers);
        Ok(match all.iter_mut().find(|s| &s.id == id) {
            Some(s) => {
                s.catalog = catalog.clone();
                true
            }
            None => false,
        })
    }

    async fn delete_mcp_server(&self, id: &McpServerId) -> Result<bool> {
        let mut all = lock(&self.mcp_servers);
        let before = all.len();
        all.retain(|s| &s.id != id);
        Ok(all.len() < before)
    }
}

/// A fake MCP connector: each connection offers `tools`, answers a call with
/// `<tool> got <arguments>`, and "crashes" when [`FakeMcp::kill`] is called.
#[derive(Default)]
pub struct FakeMcp {
    pub tools: Mutex<Vec<McpTool>>,
    /// The next starts that fail.
    pub failing_starts: AtomicUsize,
    pub connects: AtomicUsize,
    pub closes: AtomicUsize,
    pub calls: Mutex<Vec<(String, Map<String, Value>)>>,
    current: Mutex<Option<Arc<FakeMcpConnection>>>,
    observer: Mutex<Option<Arc<dyn McpObserver>>>,
}

pub struct FakeMcpConnection {
    tools: Vec<McpTool>,
    owner: std::sync::Weak<FakeMcp>,
    ended: tokio::sync::watch::Sender<Option<String>>,
}

impl FakeMcp {
    /// Ends the current connection as if the process had died.
    pub fn kill(&self) {
        if let Some(c) = lock(&self.current).take() {
            c.ended.send_replace(Some("killed by signal 9".into()));
        }
    }

    /// The server says its tool list changed (to `tools`).
    pub fn change_tools(&self, tools: Vec<McpTool>) {
        *lock(&self.tools) = tools;
        if let Some(observer) = lock(&self.observer).clone() {
            observer.tools_changed();
        }
    }

    pub fn tool(name: &str) -> McpTool {
        McpTool {
            name: name.into(),
            description: Some(format!("the {name} tool")),
            input_schema: serde_json::json!({"type": "object", "properties": {}}),
        }
    }
}

#[async_trait]
impl McpConnection for FakeMcpConnection {
    fn pid(&self) -> Option<u32> {
        Some(4242)
    }

    fn catalog(&self) -> McpCatalog {
        McpCatalog {
            capabilities: vec!["tools".into()],
            tools: self.tools.clone(),
        }
    }

    async fn list_tools(&self) -> std::result::Result<Vec<McpTool>, McpError> {
        Ok(match self.owner.upgrade() {
            Some(owner) => lock(&owner.tools).clone(),
            None => self.tools.clone(),
        })
    }

    async fn call_tool(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        _: ToolLimits,
    ) -> std::result::Result<McpCallOutput, McpError> {
        if self.ended.borrow().is_some() {
            return Err(McpError::Failed("the connection is closed".into()));
        }
        if let Some(owner) = self.owner.upgrade() {
            lock(&owner.calls).push((name.to_owned(), arguments.clone()));
        }
        Ok(McpCallOutput {
            text: format!("{name} got {}", Value::Object(arguments)),
            is_error: name == "broken",
        })
    }

    async fn ended(&self) -> String {
        let mut rx = self.ended.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "gone".into(),
        }
    }

    async fn close(&self) {
        if let Some(owner) = self.owner.upgrade() {
            owner.closes.fetch_add(1, Ordering::SeqCst);
        }
        self.ended.send_replace(Some("closed".into()));
    }
}

/// The connector over a shared [`FakeMcp`].
pub struct FakeConnector(pub Arc<FakeMcp>);

#[async_trait]
impl McpConnector for FakeConnector {
    async fn connect(
        &self,
        _: &McpServer,
        observer: Arc<dyn McpObserver>,
    ) -> std::result::Result<Arc<dyn McpConnection>, McpError> {
        self.0.connects.fetch_add(1, Ordering::SeqCst);
        observer.stderr_line("fake server: hello on stderr");
        *lock(&self.0.observer) = Some(observer.clone());
        let failing = self.0.failing_starts.load(Ordering::SeqCst);
        if failing > 0 {
            self.0.failing_starts.store(failing - 1, Ordering::SeqCst);
            return Err(McpError::Start("spawn failed: no such command".into()));
        }
        let conn = Arc::new(FakeMcpConnection {
            tools: lock(&self.0.tools).clone(),
            owner: Arc::downgrade(&self.0),
            ended: tokio::sync::watch::Sender::new(None),
        });
        *lock(&self.0.current) = Some(conn.clone());
        Ok(conn)
    }
}

/// Supervision settings fast enough for tests.
pub fn fast_mcp_settings() -> McpSettings {
    McpSettings {
        start_timeout: Duration::from_secs(5),
        max_restarts: 2,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        healthy_after: Duration::from_secs(60),
        log_lines: 50,
    }
}

// ---------------------------------------------------------------------------------------
// The runtime over the fakes

pub fn mock_model() -> ModelRef {
    ModelRef {
        provider_id: ProviderId::parse(MOCK_PROVIDER_ID).unwrap(),
        model_name: MOCK_ECHO_MODEL.to_owned(),
    }
}

/// The built-in `mock` provider, as the server builds it.
pub fn fixed_providers() -> Vec<Provider> {
    let now = Utc::now();
    vec![Provider {
        id: ProviderId::parse(MOCK_PROVIDER_ID).unwrap(),
        kind: ProviderKind::Mock,
        base_url: None,
        api_key: None,
        models: vec![MOCK_ECHO_MODEL.to_owned()],
        source: ProviderSource::Builtin,
        created_at: now,
        updated_at: now,
    }]
}

pub struct Harness {
    pub runtime: Runtime,
    pub mem: Arc<Mem>,
    pub llm: Arc<ScriptedLlm>,
    pub tools: Arc<FakeTools>,
    pub versions: VersionService,
    pub mcp: Arc<FakeMcp>,
    pub mcp_servers: McpServerService,
    pub events: Arc<crate::event::LocalEventBus>,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(RuntimeSettings::default())
    }

    pub fn with(settings: RuntimeSettings) -> Self {
        Self::with_knowledge(
            settings,
            crate::services::KnowledgeService::new(None, None, Default::default()),
        )
    }

    /// A harness whose turns retrieve with `knowledge`.
    pub fn with_knowledge(
        settings: RuntimeSettings,
        knowledge: crate::services::KnowledgeService,
    ) -> Self {
        let mem = Arc::new(Mem::default());
        let llm = Arc::new(ScriptedLlm::default());
        let tools = Arc::new(FakeTools::default());
        let clock = Arc::new(SystemClock);
        let versions = VersionService::new(mem.clone(), mem.clone(), clock.clone());
        let providers = ProviderRegistry::new(
            fixed_providers(),
            Arc::new(NoStoredProviders),
            mem.clone(),
            clock.clone(),
        );
        let events: Arc<crate::event::LocalEventBus> =
            Arc::new(crate::event::LocalEventBus::default());
        let mcp = Arc::new(FakeMcp::default());
        let mcp_servers = McpServerService::new(
            mem.clone(),
            clock.clone(),
            McpSupervisor::new(
                Some(Arc::new(FakeConnector(mcp.clone()))),
                mem.clone(),
                clock.clone(),
                fast_mcp_settings(),
            )
            .with_events(events.clone()),
        );
        let ports = RuntimePorts {
            agents: mem.clone(),
            versions: versions.clone(),
            providers,
            llm: Arc::new(Factory(llm.clone())),
            conversations: mem.clone(),
            runs: mem.clone(),
            http_tools: Some(tools.clone()),
            mcp: mcp_servers.clone(),
            knowledge,
            events: events.clone(),
            clock,
        };
        Self {
            runtime: Runtime::new(ports, settings),
            mem,
            llm,
            tools,
            versions,
            mcp,
            mcp_servers,
            events,
        }
    }

    /// Stores an agent `key` answered by `mock/echo`.
    pub async fn agent(
        &self,
        key: &str,
        status: AgentStatus,
        instructions: &str,
        tools: Vec<Value>,
    ) -> Agent {
        let now = Utc::now();
        let agent = Agent {
            id: AgentId::generate(),
            key: AgentKey::parse(key).unwrap(),
            name: AgentName::parse(key).unwrap(),
            description: None,
            instructions: instructions.to_owned(),
            model: mock_model(),
            temperature: None,
            top_p: None,
            max_tokens: None,
            tags: Vec::new(),
            status,
            agent_type: AgentType::chat(),
            tools: ToolSpec::parse_list(tools).unwrap(),
            cluster: None,
            fallback_model: None,
            guardrails: Default::default(),
            knowledge: Default::default(),
            created_by: None,
            created_at: now,
            updated_at: now,
        };
        self.mem.insert_agent(&agent).await.unwrap();
        agent
    }

    /// Stores an agent `key` answered by `mock/echo` with these guardrails (their JSON).
    pub async fn guarded(&self, key: &str, guardrails: Value) -> Agent {
        let mut agent = self.agent(key, AgentStatus::Active, "", vec![]).await;
        agent.guardrails = crate::guardrail::Guardrails::parse(&guardrails).unwrap();
        self.mem.update_agent(&agent).await.unwrap();
        agent
    }

    /// Waits (a little) until `done` holds: for what a dropped turn records in the background.
    pub async fn eventually(&self, done: impl Fn(&Mem) -> bool) -> bool {
        for _ in 0..100 {
            if done(&self.mem) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        done(&self.mem)
    }
}
