//! Use cases. Each service holds its ports as `Arc<dyn Port>` and owns the rules that span
//! several fields or entities (uniqueness, model resolution, references).

mod agents;
mod providers;
mod runtime;
mod versions;

pub use agents::AgentService;
pub use providers::ProviderRegistry;
pub use runtime::{
    ChatRequest, ChatTurn, GatewayRequest, GatewayTarget, Params, PreparedCall, PreparedTurn,
    RunRequest, Runtime, RuntimeSettings,
};
pub use versions::VersionService;
