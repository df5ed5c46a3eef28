//! The server-side tools of a turn: an agent's HTTP tools and the tools of the MCP servers it
//! binds, run by the runtime when the model calls them. Every failure becomes a result the
//! model reads (`{"error": …}`), never an error of the turn.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::llm::{ToolCall, ToolDefinition};
use crate::mcp::{McpServer, McpServerRef};
use crate::schema;
use crate::services::McpServerService;
use crate::tool::{HttpTool, HttpToolClient, ToolLimits, is_function_name};

/// How a server-side tool runs.
#[derive(Clone)]
enum Runner {
    /// One HTTP request.
    Http(HttpTool),
    /// A `tools/call` to an MCP server, under the tool's own name there.
    Mcp {
        server: Arc<McpServer>,
        tool: String,
    },
}

/// A tool the runtime runs: what the model is offered, and how a call runs.
#[derive(Clone)]
struct ServerTool {
    definition: ToolDefinition,
    runner: Runner,
}

/// The tools a turn runs itself.
#[derive(Clone)]
pub(super) struct ServerTools {
    tools: Vec<ServerTool>,
    client: Option<Arc<dyn HttpToolClient>>,
    mcp: Option<McpServerService>,
    limits: ToolLimits,
}

/// A tool's answer to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ToolOutput {
    pub call_id: String,
    pub name: String,
    pub output: String,
    pub is_error: bool,
}

fn error_output(message: impl std::fmt::Display) -> String {
    json!({"error": message.to_string()}).to_string()
}

/// The name a tool is offered under: its own when it is a valid function name not yet
/// taken; otherwise `<slug>_<name>` with the characters a function name cannot hold
/// replaced by `_`, cut to 64 characters and numbered if it still collides.
fn offered_name(slug: &str, name: &str, taken: &[ServerTool]) -> String {
    let free = |n: &str| !taken.iter().any(|t| t.definition.name == n);
    if is_function_name(name) && free(name) {
        return name.to_owned();
    }
    let clean: String = format!("{slug}_{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if free(&clean) {
        return clean;
    }
    (2..)
        .map(|n| {
            let suffix = format!("_{n}");
            let keep = 64 - suffix.len();
            format!("{}{suffix}", clean.chars().take(keep).collect::<String>())
        })
        .find(|c| free(c))
        .unwrap_or(clean)
}

impl ServerTools {
    /// The tools of `agent` (none for a bare model): its HTTP tools, then the tools of each
    /// MCP server it binds (started if needed; see [`crate::services::McpSupervisor::tools`]).
    ///
    /// # Errors
    /// `Invalid` (field `model`) when the agent binds an MCP server that no longer exists.
    pub(super) async fn for_agent(
        agent: Option<&Agent>,
        client: Option<Arc<dyn HttpToolClient>>,
        mcp: &McpServerService,
        limits: ToolLimits,
    ) -> Result<Self> {
        let mut tools: Vec<ServerTool> = Vec::new();
        let mut uses_mcp = false;
        if let Some(agent) = agent {
            for tool in crate::tool::http_tools(&agent.tools) {
                tools.push(ServerTool {
                    definition: tool.definition(),
                    runner: Runner::Http(tool),
                });
            }
            for (i, spec) in agent.tools.iter().enumerate() {
                let Some(binding) = spec.mcp_binding(i) else {
                    continue;
                };
                uses_mcp = true;
                let server = match mcp
                    .definition(&McpServerRef::Slug(binding.server.clone()))
                    .await
                {
                    Ok(s) => Arc::new(s),
                    Err(Error::NotFound { .. }) => {
                        return Err(Error::invalid(
                            "model",
                            format!(
                                "the agent '{}' binds the MCP server '{}', which does not exist; \
                                 change the agent's tools or register the server",
                                agent.key, binding.server
                            ),
                        ));
                    }
                    Err(e) => return Err(e),
                };
                for t in mcp.supervisor().tools(&server).await {
                    if !binding.allows(&t.name) {
                        continue;
                    }
                    let name = offered_name(server.slug.as_str(), &t.name, &tools);
                    let parameters = match t.input_schema {
                        Value::Object(o) => Value::Object(o),
                        _ => crate::tool::empty_object_schema(),
                    };
                    tools.push(ServerTool {
                        definition: ToolDefinition {
                            name,
                            description: t.description,
                            parameters,
                            strict: None,
                        },
                        runner: Runner::Mcp {
                            server: server.clone(),
                            tool: t.name,
                        },
                    });
                }
            }
        }
        Ok(Self {
            tools,
            client,
            mcp: uses_mcp.then(|| mcp.clone()),
            limits,
        })
    }

    /// What the model is offered.
    pub(super) fn definitions(&self) -> impl Iterator<Item = ToolDefinition> + '_ {
        self.tools.iter().map(|t| t.definition.clone())
    }

    /// Whether the runtime runs calls of `name`.
    pub(super) fn runs(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.definition.name == name)
    }

    /// Runs several calls at once; results in the calls' order.
    pub(super) async fn run_all(&self, calls: &[ToolCall]) -> Vec<ToolOutput> {
        futures_util::future::join_all(calls.iter().map(|c| self.run(c))).await
    }

    async fn run(&self, call: &ToolCall) -> ToolOutput {
        let (output, is_error) = match self.output(call).await {
            Ok(text) => (text, false),
            Err(message) => (error_output(message), true),
        };
        if is_error {
            tracing::info!(tool = %call.name, "tool call failed; the model is told");
        }
        ToolOutput {
            call_id: call.id.clone(),
            name: call.name.clone(),
            output,
            is_error,
        }
    }

    async fn output(&self, call: &ToolCall) -> Result<String, String> {
        let tool = self
            .tools
            .iter()
            .find(|t| t.definition.name == call.name)
            .ok_or_else(|| format!("unknown tool '{}'", call.name))?;
        let raw = if call.arguments.trim().is_empty() {
            "{}"
        } else {
            call.arguments.as_str()
        };
        let args: Value = serde_json::from_str(raw)
            .map_err(|e| format!("the arguments are not valid JSON: {e}"))?;
        let Value::Object(args) = args else {
            return Err("the arguments must be a JSON object".to_owned());
        };
        match &tool.runner {
            Runner::Http(http) => self.http(http, args).await,
            // The MCP server checks the arguments against its own schema (which may use
            // keywords this runtime's validator does not know).
            Runner::Mcp { server, tool } => self.mcp(server, tool, args).await,
        }
    }

    async fn http(&self, tool: &HttpTool, args: Map<String, Value>) -> Result<String, String> {
        let value = Value::Object(args);
        schema::validate(&tool.parameters, &value)
            .map_err(|e| format!("the arguments do not match the tool's schema: {e}"))?;
        let Value::Object(args) = value else {
            return Err("the arguments must be a JSON object".to_owned());
        };
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| "HTTP tools are not available on this server".to_owned())?;
        let limits = self.limits;
        // The adapter bounds the call too; this bound holds whatever the adapter does.
        let grace = limits.timeout + std::time::Duration::from_secs(1);
        match tokio::time::timeout(grace, client.call(tool, &args, limits)).await {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("tool call timed out after {:?}", limits.timeout)),
        }
    }

    async fn mcp(
        &self,
        server: &McpServer,
        tool: &str,
        args: Map<String, Value>,
    ) -> Result<String, String> {
        let mcp = self
            .mcp
            .as_ref()
            .ok_or_else(|| "MCP tools are not available on this server".to_owned())?;
        match mcp.supervisor().call(server, tool, args, self.limits).await {
            Ok(out) if out.is_error => Err(out.text),
            Ok(out) => Ok(out.text),
            Err(e) => Err(format!("MCP server '{}': {e}", server.slug)),
        }
    }
}
