//! Agentry embedded in a plain Rust program, with no HTTP server and no web framework.
//!
//! It opens (or creates) a SQLite database, wires the domain's services with
//! [`Services::build`] — the same call the `agentry` server makes — creates an agent on the
//! built-in `mock` provider, streams one turn, continues the conversation with a second turn,
//! and prints the stored history.
//!
//! ```sh
//! cargo run -p agentry-example-embedded -- /tmp/agentry-embedded   # the database's folder
//! ```
//!
//! Swap `ClientFactory`'s mock for a provider stored with `services.providers` (or listed in
//! `fixed_providers`) and the same program talks to OpenAI or Anthropic.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agentry_auth::{Argon2Hasher, JwtCodec, RandomSecrets};
use agentry_domain::agent::{AgentFields, AgentName, AgentRef, AgentStatus, ModelSpec};
use agentry_domain::cache::CacheableStores;
use agentry_domain::ports::{Clock, SecretGenerator, SystemClock};
use agentry_domain::provider::Provider;
use agentry_domain::services::{
    Memory, ServicePorts, ServiceSettings, Services, TurnEvent, TurnRequest, TurnTarget,
};
use agentry_provider::{ClientFactory, ProviderSettings};
use agentry_storage::{Backend, Database, PoolOptions};
use futures_util::StreamExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let folder = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("agentry-embedded"));
    std::fs::create_dir_all(&folder)?;
    let url = format!("sqlite://{}", folder.join("agentry.db").display());

    // Storage: one pool, migrations applied (both are blocking calls).
    let database = tokio::task::spawn_blocking(move || {
        let database = Database::connect(&url, PoolOptions::for_backend(Backend::Sqlite))?;
        database.migrate()?;
        Ok::<_, agentry_storage::StorageError>(database)
    })
    .await??;

    // The services, wired from their ports by the domain itself.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let signing_key = RandomSecrets.random_alphanumeric(64);
    let ports = ServicePorts {
        stores: CacheableStores {
            agents: database.agents(),
            versions: database.versions(),
            providers: database.providers(),
            users: database.users(),
            sessions: database.sessions(),
            api_keys: database.api_keys(),
        },
        changes: database.changes(),
        conversations: database.conversations(),
        runs: database.runs(),
        mcp_servers: database.mcp_servers(),
        tasks: database.tasks(),
        evals: database.evals(),
        insights: database.insights(),
        optimizations: database.optimizations(),
        events: database.events(),
        clusters: database.clusters(),
        llm: Arc::new(ClientFactory::new(ProviderSettings::default(), None)),
        http_tools: None,
        // No MCP servers in this program: starting one fails with a clear reason.
        mcp: None,
        // No uploaded files in this program: the Files API would answer `Unavailable`.
        files: None,
        // Nor knowledge: agents with knowledge would retrieve nothing.
        knowledge: None,
        hasher: Arc::new(Argon2Hasher),
        tokens: Arc::new(JwtCodec::new(&signing_key, "embedded", "embedded")?),
        secrets: Arc::new(RandomSecrets),
        clock: clock.clone(),
    };
    let default_model = ModelSpec {
        provider_id: None,
        model: "mock/echo".to_owned(),
        field: "default_model".to_owned(),
    };
    let settings = ServiceSettings::new(vec![Provider::builtin_mock(clock.now())], default_model);
    let services = Services::build(ports, settings).await?;

    // An agent, found again by its key on later runs of this program.
    let key = "embedded-helper";
    let agent = match services.agents.get(&AgentRef::parse(key)?).await {
        Ok(agent) => agent,
        Err(_) => {
            let fields = AgentFields {
                key: Some(agentry_domain::agent::AgentKey::parse(key)?),
                name: Some(AgentName::parse("Embedded helper")?),
                instructions: Some("You answer in one short sentence.".to_owned()),
                status: Some(AgentStatus::Active),
                ..AgentFields::default()
            };
            services.agents.create(fields, None).await?
        }
    };
    println!("agent: {} ({}), model {}", agent.key, agent.id, agent.model);

    // First turn, streamed: text arrives in pieces, then the recorded outcome.
    let target = TurnTarget::LiveAgent(AgentRef::parse(key)?);
    let first = TurnRequest {
        stream: true,
        ..TurnRequest::user("Hello from a program with no web server")
    };
    let mut turn = services
        .runtime
        .start_turn(None, target.clone(), first)
        .await?;
    print!("answer: ");
    let mut conversation = None;
    while let Some(event) = turn.next().await {
        match event {
            TurnEvent::TextDelta(text) => print!("{text}"),
            TurnEvent::Finished(outcome) => {
                println!();
                println!(
                    "finished: {} (finish_reason {})",
                    outcome.model,
                    outcome.finish_reason.as_deref().unwrap_or("-")
                );
                conversation = outcome.chat.map(|chat| chat.conversation.id);
            }
            TurnEvent::Failed(e) => return Err(e.into()),
            _ => {}
        }
        std::io::stdout().flush()?;
    }
    let conversation = conversation.ok_or("the turn was not stored")?;
    println!("conversation: {conversation}");

    // Second turn in the same conversation, not streamed: the history is sent to the model.
    let second = TurnRequest {
        memory: Memory::Conversation {
            session_key: None,
            conversation_id: Some(conversation.clone()),
            from_answer: None,
            context: Default::default(),
            store: true,
        },
        ..TurnRequest::user("And a second message")
    };
    let outcome = services
        .runtime
        .start_turn(None, target, second)
        .await?
        .finish()
        .await?;
    println!("second answer: {}", outcome.text);

    // What was stored (`None`: a trusted caller, no access rules).
    let (_, _, messages) = services
        .runtime
        .get_conversation(None, &conversation, 100)
        .await?;
    println!("history of {conversation}: {} messages", messages.len());
    for m in &messages {
        println!("  {}: {}", m.role, m.content);
    }

    // Queued writes (run logs) are stored before the program ends.
    tokio::task::spawn_blocking(move || database.flush()).await?;
    Ok(())
}
