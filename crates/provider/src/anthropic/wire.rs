//! The Messages bodies: the request we send (the port's request translated to Anthropic's
//! words) and the answer we read.

use agentry_domain::llm::{
    Completion, CompletionRequest, PromptMessage, ResponseFormat, Role, TokenUsage, ToolCall,
    ToolChoice, ToolDefinition,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DEFAULT_ANTHROPIC_MAX_TOKENS;

/// Added to the system prompt for [`ResponseFormat::JsonObject`] (Anthropic has no JSON mode).
pub(crate) const JSON_OBJECT_INSTRUCTION: &str =
    "Respond with a single JSON object and nothing else.";

/// The Messages request body: system prompts go to the top-level `system`; `seed`, the
/// penalties and `logit_bias` have no Anthropic equivalent and are not sent.
#[derive(Debug, Serialize)]
pub(super) struct MessagesRequest<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: WireContent<'a>,
}

/// A plain text, or content blocks.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(&'a str),
    Blocks(Vec<Block<'a>>),
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: &'a str,
    },
}

#[derive(Debug, Serialize)]
struct WireTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: &'a Value,
}

/// `{"type":"auto"|"any"|"none"}` or `{"type":"tool","name"}`, with
/// `disable_parallel_tool_use` when parallel calls are refused.
#[derive(Debug, Serialize)]
struct WireToolChoice<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Metadata<'a> {
    user_id: &'a str,
}

/// The tool that carries a [`ResponseFormat::JsonSchema`] answer: offered with the schema as
/// its input schema and forced, its input is the answer.
pub(super) fn structured_tool(request: &CompletionRequest) -> Option<&str> {
    match &request.response_format {
        Some(ResponseFormat::JsonSchema { name, .. }) => Some(name),
        _ => None,
    }
}

impl<'a> MessagesRequest<'a> {
    pub(super) fn new(request: &'a CompletionRequest, stream: bool) -> Self {
        let mut system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        if request.response_format == Some(ResponseFormat::JsonObject) {
            system.push(JSON_OBJECT_INSTRUCTION);
        }
        let mut tools: Vec<WireTool<'a>> = request.tools.iter().map(WireTool::new).collect();
        let mut tool_choice = tool_choice(request);
        if let Some(ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            ..
        }) = &request.response_format
        {
            tools.push(WireTool {
                name,
                description: description.as_deref(),
                input_schema: schema,
            });
            tool_choice = Some(WireToolChoice {
                kind: "tool",
                name: Some(name),
                disable_parallel_tool_use: None,
            });
        }
        if tools.is_empty() {
            tool_choice = None;
        }
        Self {
            model: &request.model,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages: messages(&request.messages),
            max_tokens: request.max_tokens.unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS),
            temperature: request.temperature,
            top_p: request.top_p,
            stop_sequences: &request.stop,
            tools,
            tool_choice,
            metadata: request.user.as_deref().map(|user_id| Metadata { user_id }),
            stream,
        }
    }
}

fn tool_choice(request: &CompletionRequest) -> Option<WireToolChoice<'_>> {
    let no_parallel = (request.parallel_tool_calls == Some(false)).then_some(true);
    let (kind, name) = match &request.tool_choice {
        None if no_parallel.is_some() => ("auto", None),
        None => return None,
        Some(ToolChoice::Auto) => ("auto", None),
        Some(ToolChoice::Required) => ("any", None),
        Some(ToolChoice::Function(name)) => ("tool", Some(name.as_str())),
        Some(ToolChoice::None) => {
            return Some(WireToolChoice {
                kind: "none",
                name: None,
                disable_parallel_tool_use: None,
            });
        }
    };
    Some(WireToolChoice {
        kind,
        name,
        disable_parallel_tool_use: no_parallel,
    })
}

impl<'a> WireTool<'a> {
    fn new(tool: &'a ToolDefinition) -> Self {
        Self {
            name: &tool.name,
            description: tool.description.as_deref(),
            input_schema: &tool.parameters,
        }
    }
}

/// The conversation without system messages: an assistant message's calls become
/// `tool_use` blocks after its text, and consecutive tool results one user message of
/// `tool_result` blocks.
fn messages(prompt: &[PromptMessage]) -> Vec<WireMessage<'_>> {
    let mut out: Vec<WireMessage<'_>> = Vec::new();
    let mut gathering_results = false;
    for message in prompt {
        match message.role {
            Role::System => continue,
            Role::Tool => {
                let block = Block::ToolResult {
                    tool_use_id: message.tool_call_id.as_deref().unwrap_or_default(),
                    content: &message.content,
                };
                match out.last_mut() {
                    Some(WireMessage {
                        content: WireContent::Blocks(blocks),
                        ..
                    }) if gathering_results => blocks.push(block),
                    _ => out.push(WireMessage {
                        role: "user",
                        content: WireContent::Blocks(vec![block]),
                    }),
                }
                gathering_results = true;
                continue;
            }
            Role::Assistant if !message.tool_calls.is_empty() => {
                let text = (!message.content.is_empty()).then_some(Block::Text {
                    text: &message.content,
                });
                let calls = message.tool_calls.iter().map(|call| Block::ToolUse {
                    id: &call.id,
                    name: &call.name,
                    input: serde_json::from_str::<Value>(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
                });
                out.push(WireMessage {
                    role: "assistant",
                    content: WireContent::Blocks(text.into_iter().chain(calls).collect()),
                });
            }
            Role::User | Role::Assistant => out.push(WireMessage {
                role: message.role.as_str(),
                content: WireContent::Text(&message.content),
            }),
        }
        gathering_results = false;
    }
    out
}

/// Anthropic's stop reasons in OpenAI's words.
pub(super) fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_owned()
}

#[derive(Debug, Deserialize)]
pub(super) struct MessagesResponse {
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<ContentBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(super) struct WireUsage {
    pub(super) input_tokens: Option<u32>,
    pub(super) output_tokens: Option<u32>,
}

impl MessagesResponse {
    /// The answer; with `structured` (the forced structured-output tool), that tool's input
    /// is the answer's text and the answer ends with `stop`.
    pub(super) fn into_completion(self, asked_model: &str, structured: Option<&str>) -> Completion {
        let mut content = String::new();
        let mut tool_calls = Vec::new();
        let mut structured_answer = None;
        for block in self.content {
            match block {
                ContentBlock::Text { text } => content.push_str(&text),
                ContentBlock::ToolUse { name, input, .. } if Some(name.as_str()) == structured => {
                    structured_answer = Some(input.to_string());
                }
                ContentBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments: input.to_string(),
                }),
                ContentBlock::Other => {}
            }
        }
        let usage = self
            .usage
            .map(|u| TokenUsage::new(u.input_tokens.unwrap_or(0), u.output_tokens.unwrap_or(0)));
        let mut finish = self.stop_reason.as_deref().map(finish_reason);
        if let Some(json) = structured_answer {
            content = json;
            if tool_calls.is_empty() && finish.as_deref() == Some("tool_calls") {
                finish = Some("stop".to_owned());
            }
        }
        Completion {
            content,
            tool_calls,
            usage,
            finish_reason: finish,
            model: if self.model.is_empty() {
                asked_model.to_owned()
            } else {
                self.model
            },
        }
    }
}
