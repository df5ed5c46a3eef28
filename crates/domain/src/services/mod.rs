//! Use cases. Each service holds its ports as `Arc<dyn Port>` and owns the rules that span
//! several fields or entities (uniqueness, model resolution, references).

mod agents;
mod auth;
mod build;
mod clusters;
mod dormant;
mod embedder;
mod evals;
mod files;
mod insights;
mod knowledge;
#[cfg(test)]
mod knowledge_tests;
mod login_throttle;
mod mcp;
mod mcp_supervisor;
mod optimizations;
mod providers;
pub(crate) mod runtime;
mod tasks;
mod versions;

pub use agents::AgentService;
pub use auth::{
    AuthPorts, AuthService, AuthSettings, BootstrapAdmin, CreatedApiKey, IssuedTokens,
    KEY_AGENTS_MAX, KEY_TOUCH_INTERVAL_SECS,
};
pub use build::{ServicePorts, ServiceSettings, Services};
pub use clusters::{
    AgentChange, Applied, AppliedAgent, ApplyResult, ClusterService, ClusterView, InstanceSettings,
    Instances, MemberView, Scaled, SlotState,
};
pub use dormant::DORMANT_POLLS;
pub use embedder::{EMBEDDING_MODEL_FIELD, ProviderEmbedder};
pub use evals::{EvalService, EvalSettings, TestSetFields};
pub use files::{FilePorts, FileService, Received};
pub use insights::{AgentStatusReport, InsightService, InsightSettings, Insights, REANALYSE_MAX};
pub use knowledge::{KnowledgePorts, KnowledgeService, KnowledgeSettings};
pub use login_throttle::LoginThrottle;
pub use mcp::{LOGS_TAIL_MAX, McpServerService, McpServerView};
pub use mcp_supervisor::{
    LOG_LINE_MAX, McpLogLevel, McpLogLine, McpLogSource, McpRuntimeState, McpSettings,
    McpSupervisor,
};
pub use optimizations::OptimizationService;
pub use providers::ProviderRegistry;
pub use runtime::{
    CallOptions, ChatTurn, MESSAGE_MAX_CHARS, Memory, Params, RunRequest, Runtime, RuntimePorts,
    RuntimeSettings, Tails, Turn, TurnEvent, TurnOutcome, TurnRequest, TurnStart, TurnTarget,
    may_call_models_directly,
};
pub use tasks::{QueueDepth, TaskService, TaskSettings};
pub use versions::VersionService;
