//! The server-side tools of a turn: an agent's HTTP tools, run by the runtime when the model
//! calls them. Every failure becomes a result the model reads (`{"error": …}`), never an
//! error of the turn.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::llm::ToolCall;
use crate::schema;
use crate::tool::{HttpTool, HttpToolClient, ToolLimits};

/// The tools a turn runs itself.
#[derive(Clone)]
pub(super) struct ServerTools {
    tools: Vec<HttpTool>,
    client: Option<Arc<dyn HttpToolClient>>,
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

impl ServerTools {
    pub(super) fn new(
        tools: Vec<HttpTool>,
        client: Option<Arc<dyn HttpToolClient>>,
        limits: ToolLimits,
    ) -> Self {
        Self {
            tools,
            client,
            limits,
        }
    }

    pub(super) fn tools(&self) -> &[HttpTool] {
        &self.tools
    }

    /// Whether the runtime runs calls of `name`.
    pub(super) fn runs(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name == name)
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
            .find(|t| t.name == call.name)
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
}
