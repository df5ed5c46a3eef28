//! The chat-completions bodies: the request we send and the parts of answers we read
//! (lenient, as compatible servers omit fields).

use agentry_domain::llm::{
    Completion, CompletionRequest, PromptMessage, ProviderError, ResponseFormat, Role, TokenUsage,
    ToolCall, ToolChoice, ToolDefinition,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::errors::malformed;

/// The chat-completions request body. Options left unset in the [`CompletionRequest`] are
/// not sent.
#[derive(Debug, Serialize)]
pub(super) struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<WireResponseFormat<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logit_bias: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

/// A message: `content` is `null` for an assistant message that only calls tools.
#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireCalledFunction<'a>,
}

#[derive(Debug, Serialize)]
struct WireCalledFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Debug, Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Debug, Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

/// `"auto"`, `"none"`, `"required"`, or `{"type":"function","function":{"name"}}`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireToolChoice<'a> {
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: FunctionName<'a>,
    },
}

#[derive(Debug, Serialize)]
struct FunctionName<'a> {
    name: &'a str,
}

/// `{"type":"text"}`, `{"type":"json_object"}`, or
/// `{"type":"json_schema","json_schema":{name, description?, schema, strict?}}`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireResponseFormat<'a> {
    Text,
    JsonObject,
    JsonSchema { json_schema: WireJsonSchema<'a> },
}

#[derive(Debug, Serialize)]
struct WireJsonSchema<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    schema: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> ChatRequest<'a> {
    pub(super) fn new(request: &'a CompletionRequest, stream: bool) -> Self {
        let has_tools = !request.tools.is_empty();
        Self {
            model: &request.model,
            messages: request.messages.iter().map(WireMessage::new).collect(),
            temperature: request.temperature,
            top_p: request.top_p,
            max_tokens: request.max_tokens,
            tools: request.tools.iter().map(WireTool::new).collect(),
            tool_choice: request.tool_choice.as_ref().map(WireToolChoice::new),
            // OpenAI rejects `parallel_tool_calls` without tools.
            parallel_tool_calls: request.parallel_tool_calls.filter(|_| has_tools),
            response_format: request
                .response_format
                .as_ref()
                .map(WireResponseFormat::new),
            stop: &request.stop,
            seed: request.seed,
            presence_penalty: request.presence_penalty,
            frequency_penalty: request.frequency_penalty,
            logit_bias: request.logit_bias.as_ref(),
            user: request.user.as_deref(),
            // Always said: a compatible server may default either way.
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

impl<'a> WireMessage<'a> {
    fn new(message: &'a PromptMessage) -> Self {
        let calls_only = message.role == Role::Assistant
            && !message.tool_calls.is_empty()
            && message.content.is_empty();
        Self {
            role: message.role.as_str(),
            content: (!calls_only).then_some(message.content.as_str()),
            tool_calls: message
                .tool_calls
                .iter()
                .map(|call| WireToolCall {
                    id: &call.id,
                    kind: "function",
                    function: WireCalledFunction {
                        name: &call.name,
                        arguments: &call.arguments,
                    },
                })
                .collect(),
            tool_call_id: message.tool_call_id.as_deref(),
        }
    }
}

impl<'a> WireTool<'a> {
    fn new(tool: &'a ToolDefinition) -> Self {
        Self {
            kind: "function",
            function: WireFunction {
                name: &tool.name,
                description: tool.description.as_deref(),
                parameters: &tool.parameters,
                strict: tool.strict,
            },
        }
    }
}

impl<'a> WireToolChoice<'a> {
    fn new(choice: &'a ToolChoice) -> Self {
        match choice {
            ToolChoice::Auto => Self::Mode("auto"),
            ToolChoice::None => Self::Mode("none"),
            ToolChoice::Required => Self::Mode("required"),
            ToolChoice::Function(name) => Self::Function {
                kind: "function",
                function: FunctionName { name },
            },
        }
    }
}

impl<'a> WireResponseFormat<'a> {
    fn new(format: &'a ResponseFormat) -> Self {
        match format {
            ResponseFormat::Text => Self::Text,
            ResponseFormat::JsonObject => Self::JsonObject,
            ResponseFormat::JsonSchema {
                name,
                description,
                schema,
                strict,
            } => Self::JsonSchema {
                json_schema: WireJsonSchema {
                    name,
                    description: description.as_deref(),
                    schema,
                    strict: *strict,
                },
            },
        }
    }
}

/// A chat completion.
#[derive(Debug, Deserialize)]
pub(super) struct ChatResponse {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    message: ChoiceMessage,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<AnswerToolCall>>,
}

#[derive(Debug, Deserialize)]
struct AnswerToolCall {
    #[serde(default)]
    id: String,
    function: AnswerFunction,
}

#[derive(Debug, Deserialize)]
struct AnswerFunction {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl From<WireUsage> for TokenUsage {
    fn from(usage: WireUsage) -> Self {
        TokenUsage::new(usage.prompt_tokens, usage.completion_tokens)
    }
}

impl ChatResponse {
    pub(super) fn into_completion(self, asked_model: &str) -> Result<Completion, ProviderError> {
        let model = if self.model.is_empty() {
            asked_model.to_owned()
        } else {
            self.model
        };
        let choice = self
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| malformed("no choices"))?;
        let tool_calls = choice
            .message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .map(|call| ToolCall {
                id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
            })
            .collect();
        Ok(Completion {
            tool_calls,
            content: choice.message.content.unwrap_or_default(),
            usage: self.usage.map(TokenUsage::from),
            finish_reason: choice.finish_reason,
            model,
        })
    }
}

/// One `chat.completion.chunk` (or an in-stream `{"error":..}` some servers send).
#[derive(Debug, Deserialize)]
pub(super) struct ChatChunk {
    #[serde(default)]
    pub(super) model: String,
    #[serde(default)]
    pub(super) choices: Vec<ChunkChoice>,
    pub(super) usage: Option<WireUsage>,
    pub(super) error: Option<ChunkError>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChunkChoice {
    #[serde(default)]
    pub(super) delta: ChunkDelta,
    pub(super) finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ChunkDelta {
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A fragment of a streamed tool call: the first names it (`id`, `function.name`), the next
/// ones carry pieces of its arguments; `index` says which call.
#[derive(Debug, Deserialize)]
pub(super) struct ToolCallDelta {
    #[serde(default)]
    pub(super) index: usize,
    pub(super) id: Option<String>,
    pub(super) function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FunctionDelta {
    pub(super) name: Option<String>,
    pub(super) arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChunkError {
    #[serde(default)]
    pub(super) message: String,
}
