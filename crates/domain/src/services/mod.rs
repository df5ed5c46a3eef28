//! Use cases. Each service holds its ports as `Arc<dyn Port>` and owns the rules that span
//! several fields or entities (uniqueness, model resolution, references).

mod agents;
mod providers;

pub use agents::AgentService;
pub use providers::ProviderRegistry;
