//! The request bodies of Chat Completions and Responses as the OpenAPI document shows them.
//! The handlers read these bodies as JSON objects (`parse` in `chat_completions` and
//! `responses`); these schemas say what that reading accepts, and the tests below hold their
//! property lists to the handlers' lists of accepted parameters.

use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, Object, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::schema::{FUNCTION_NAME, JsonSchemaObject, NOT_BLANK, raw_ref};

/// Longest text of one message, prompt or tool call part, in characters.
const TEXT_MAX: usize = agentry_domain::services::MESSAGE_MAX_CHARS;

/// An object schema with its properties in the order given (a JSON object literal would sort
/// them), no other properties, and `rules` added as in [`crate::schema::raw`].
fn object(
    description: &str,
    required: &[&str],
    properties: Vec<(&str, Value)>,
    rules: Value,
) -> Schema {
    let mut object = Object::with_type(Type::Object);
    object.description = Some(description.to_owned());
    object.required = required.iter().map(|r| (*r).to_owned()).collect();
    for (name, schema) in properties {
        object.properties.insert(name.to_owned(), raw_ref(schema));
    }
    object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    let mut schema = Schema::Object(object);
    crate::schema::add_rules(&mut schema, rules);
    schema
}

/// `schema` or `null` (`null` reads as absent).
fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

fn text(description: &str) -> Value {
    json!({"type": ["string", "null"], "maxLength": TEXT_MAX, "description": description})
}

fn number(min: f64, max: f64, description: &str) -> Value {
    json!({"type": ["number", "null"], "minimum": min, "maximum": max, "description": description})
}

fn token_limit(description: &str) -> Value {
    json!({"type": ["integer", "null"], "minimum": 1, "maximum": agentry_domain::agent::MAX_TOKENS_LIMIT, "description": description})
}

fn only(values: Value, description: &str) -> Value {
    json!({"enum": values, "description": description})
}

fn model() -> Value {
    json!({"type": "string", "pattern": NOT_BLANK, "example": "support-bot",
        "description": "An agent's key; `provider/model` (as `/v1/models` lists it) for callers that may call models directly."})
}

fn version() -> Value {
    json!({"type": ["integer", "null"], "minimum": 1, "maximum": u32::MAX,
        "description": "A published version of the agent to answer with, instead of the latest."})
}

/// At most 4 (the runtime's `STOP_MAX`).
fn stop() -> Value {
    nullable(json!({"anyOf": [
        {"type": "string", "maxLength": TEXT_MAX},
        {"type": "array", "maxItems": 4, "items": {"type": "string", "maxLength": TEXT_MAX}},
    ], "description": "Up to 4 sequences where the answer stops."}))
}

fn seed() -> Value {
    json!({"type": ["integer", "null"], "minimum": i64::MIN, "maximum": i64::MAX,
        "description": "Sent to providers that take one."})
}

fn function(description_of_name: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "name",
            json!({"type": "string", "pattern": FUNCTION_NAME, "description": description_of_name}),
        ),
        ("description", json!({"type": ["string", "null"]})),
        (
            "parameters",
            nullable(json!({"$ref": "#/components/schemas/JsonSchemaObject"})),
        ),
        ("strict", json!({"type": ["boolean", "null"]})),
    ]
}

/// A function tool of the caller: `{type, function: {…}}` (Chat Completions) or
/// `{type, name, …}` (Responses).
fn tools(nested: bool) -> Value {
    let fields = function("The function's name: 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`.");
    let tool = if nested {
        let function: serde_json::Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        json!({"type": "object", "required": ["type", "function"], "properties": {
            "type": {"enum": ["function"]},
            "function": {"type": "object", "required": ["name"], "properties": function},
        }})
    } else {
        let mut properties =
            serde_json::Map::from_iter([("type".to_owned(), json!({"enum": ["function"]}))]);
        properties.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
        json!({"type": "object", "required": ["type", "name"], "properties": properties})
    };
    // The runtime's `CALLER_TOOLS_MAX`.
    json!({"type": ["array", "null"], "maxItems": 128, "items": tool,
        "description": "The caller's function tools (at most 128), offered with the agent's own tools."})
}

fn tool_choice(nested: bool) -> Value {
    let named = if nested {
        json!({"type": "object", "required": ["type", "function"], "properties": {
            "type": {"enum": ["function"]},
            "function": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        }})
    } else {
        json!({"type": "object", "required": ["type", "name"], "properties": {
            "type": {"enum": ["function"]}, "name": {"type": "string"},
        }})
    };
    json!({"anyOf": [{"enum": ["none", "auto", "required", null]}, named],
        "description": "`none`, `auto` (the default), `required`, or a function to call, which must be among the tools."})
}

/// A structured-output format: `response_format` (Chat Completions, `json_schema` nested) or
/// `text.format` (Responses, flat).
fn format(nested: bool) -> Value {
    let spec = json!({
        "name": {"type": "string", "minLength": 1},
        "description": {"type": ["string", "null"]},
        "schema": nullable(json!({"$ref": "#/components/schemas/JsonSchemaObject"})),
        "strict": {"type": ["boolean", "null"]},
    });
    let json_schema = if nested {
        json!({"type": "object", "required": ["type", "json_schema"], "properties": {
            "type": {"enum": ["json_schema"]},
            "json_schema": {"type": "object", "required": ["name"], "properties": spec},
        }})
    } else {
        let mut properties = spec;
        properties["type"] = json!({"enum": ["json_schema"]});
        json!({"type": "object", "required": ["type", "name"], "properties": properties})
    };
    nullable(json!({"anyOf": [
        {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object"]}}},
        json_schema,
    ], "description": "`text` (the default), `json_object`, or `json_schema` with a named schema."}))
}

/// Text, or content parts of the given types whose texts are joined; with something other
/// than whitespace in it when `answerable`.
fn content(part_types: &[&str], answerable: bool) -> Value {
    let text = if answerable {
        json!({"type": "string", "maxLength": TEXT_MAX, "pattern": NOT_BLANK})
    } else {
        json!({"type": "string", "maxLength": TEXT_MAX})
    };
    json!({"anyOf": [
        text,
        {"type": "array", "minItems": if answerable { 1 } else { 0 }, "items": {"type": "object", "required": ["type", "text"], "properties": {
            "type": {"enum": part_types}, "text": text,
        }}},
    ]})
}

/// The body of `POST /v1/chat/completions`.
pub struct ChatCompletionRequest;

impl ChatCompletionRequest {
    fn messages() -> Value {
        let parts = ["text"];
        let id = json!({"type": "string", "maxLength": TEXT_MAX});
        let call = json!({"type": "object", "required": ["id", "function"], "properties": {
            "id": id,
            "function": {"type": "object", "required": ["name"], "properties": {
                "name": id, "arguments": {"type": "string", "maxLength": TEXT_MAX},
            }},
        }});
        // Each message has something to answer: text, a tool result, or the model's own tool
        // calls. (The server needs one such message and takes blank ones beside it.)
        let message = json!({"anyOf": [
            {"type": "object", "required": ["role", "content"], "properties": {
                "role": {"enum": ["system", "developer", "user"]}, "content": content(&parts, true)}},
            {"type": "object", "required": ["role", "content"], "properties": {
                "role": {"enum": ["assistant"]}, "content": content(&parts, true),
                "tool_calls": {"type": ["array", "null"], "items": call}}},
            {"type": "object", "required": ["role", "tool_calls"], "properties": {
                "role": {"enum": ["assistant"]}, "content": nullable(content(&parts, false)),
                "tool_calls": {"type": "array", "minItems": 1, "items": call}}},
            {"type": "object", "required": ["role", "content", "tool_call_id"], "properties": {
                "role": {"enum": ["tool"]}, "content": content(&parts, false), "tool_call_id": id}},
        ]});
        json!({"type": "array", "minItems": 1, "items": message,
            "description": "The conversation so far, after the agent's instructions: roles `system`, `developer`, `user`, `assistant` and `tool`; text content or `text` parts. The server needs one message with something to answer (text, a tool result, tool calls) and takes blank ones beside it; the document asks each message to have something."})
    }
}

impl PartialSchema for ChatCompletionRequest {
    fn schema() -> RefOr<Schema> {
        let mut schema = object(
            "An OpenAI Chat Completions request; `model` is an agent's key. Parameters Agentry does not support are refused, those with neutral values accepted.",
            &["model", "messages"],
            vec![
                ("model", model()),
                ("messages", Self::messages()),
                (
                    "stream",
                    json!({"type": ["boolean", "null"], "description": "Answer as `chat.completion.chunk` events."}),
                ),
                (
                    "stream_options",
                    nullable(
                        json!({"type": "object", "properties": {"include_usage": {"type": ["boolean", "null"]}}}),
                    ),
                ),
                (
                    "temperature",
                    number(0.0, 2.0, "0 to 2; the agent's when absent."),
                ),
                (
                    "top_p",
                    number(0.0, 1.0, "0 to 1; the agent's when absent."),
                ),
                (
                    "max_tokens",
                    token_limit("1 to 1,000,000; the agent's when absent."),
                ),
                (
                    "max_completion_tokens",
                    token_limit("Wins over `max_tokens`."),
                ),
                ("n", only(json!([1, null]), "One choice only.")),
                ("user", text("Logged with the call.")),
                (
                    "metadata",
                    json!({"type": ["object", "null"], "description": "Logged with the call."}),
                ),
                (
                    "store",
                    json!({"type": ["boolean", "null"], "description": "Accepted; every call is logged as a run."}),
                ),
                (
                    "service_tier",
                    json!({"type": ["string", "null"], "description": "Accepted, no effect."}),
                ),
                ("parallel_tool_calls", json!({"type": ["boolean", "null"]})),
                ("tools", tools(true)),
                ("tool_choice", tool_choice(true)),
                ("response_format", format(true)),
                ("stop", stop()),
                ("seed", seed()),
                (
                    "logit_bias",
                    json!({"type": ["object", "null"], "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}}),
                ),
                (
                    "logprobs",
                    only(json!([false, null]), "Not supported: `false` only."),
                ),
                (
                    "top_logprobs",
                    only(json!([0, null]), "Not supported: `0` only."),
                ),
                ("presence_penalty", number(-2.0, 2.0, "-2 to 2.")),
                ("frequency_penalty", number(-2.0, 2.0, "-2 to 2.")),
                ("modalities", only(json!([["text"], null]), "Text only.")),
                (
                    "reasoning_effort",
                    only(json!([null]), "Not supported: `null` only."),
                ),
                ("version", version()),
            ],
            json!({}),
        );
        if let Schema::Object(o) = &mut schema {
            o.example = Some(
                json!({"model": "support-bot", "messages": [{"role": "user", "content": "Hello!"}]}),
            );
        }
        RefOr::T(schema)
    }
}

impl ToSchema for ChatCompletionRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            JsonSchemaObject::name().into_owned(),
            JsonSchemaObject::schema(),
        ));
    }
}

/// The body of `POST /v1/responses` (and its `/api/client/v1` spellings).
pub struct ResponseRequest;

impl ResponseRequest {
    fn input() -> Value {
        let parts = ["input_text", "output_text", "text"];
        let id = json!({"type": "string", "maxLength": TEXT_MAX});
        // Each item has something to answer: text, a function call or its output. (The
        // server needs one such item and takes blank messages beside it.)
        let item = json!({"anyOf": [
            {"type": "object", "required": ["role", "content"], "properties": {
                "type": {"enum": ["message"]},
                "role": {"enum": ["user", "assistant", "system", "developer"]},
                "content": content(&parts, true)}},
            {"type": "object", "required": ["type", "call_id", "name", "arguments"], "properties": {
                "type": {"enum": ["function_call"]}, "call_id": id, "name": id, "arguments": id}},
            {"type": "object", "required": ["type", "call_id", "output"], "properties": {
                "type": {"enum": ["function_call_output"]}, "call_id": id, "output": content(&parts, false)}},
        ]});
        json!({"anyOf": [
            {"type": "string", "pattern": NOT_BLANK, "maxLength": TEXT_MAX},
            {"type": "array", "minItems": 1, "items": item},
        ], "description": "Text, or input items: messages with text or content parts, the caller's `function_call`s and their `function_call_output`s. The server needs one item with something to answer and takes blank messages beside it; the document asks each item to have something."})
    }
}

impl PartialSchema for ResponseRequest {
    fn schema() -> RefOr<Schema> {
        let continued = json!({"anyOf": [
            {"properties": {"previous_response_id": {"type": "null"}}},
            {"properties": {"conversation": {"type": "null"}}},
        ]});
        // `provider/model` answers are not stored: they cannot continue a conversation.
        let stateless = json!({"anyOf": [
            {"properties": {"model": {"pattern": "^[^/]*$"}}},
            {"properties": {"previous_response_id": {"type": "null"}, "conversation": {"type": "null"}}},
        ]});
        let mut schema = object(
            "An OpenAI Responses request; `model` is an agent's key. Parameters Agentry does not support are refused, those with neutral values accepted.",
            &["model", "input"],
            vec![
                ("model", model()),
                ("input", Self::input()),
                (
                    "instructions",
                    text("Sent after the agent's own instructions."),
                ),
                (
                    "previous_response_id",
                    json!({"type": ["string", "null"], "description": "Continue from this response: the latest turn of a conversation continues it, an earlier one branches from it."}),
                ),
                (
                    "conversation",
                    nullable(
                        json!({"anyOf": [{"type": "string"}, {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}],
                    "description": "Continue this conversation (`conv_…`), instead of `previous_response_id`."}),
                    ),
                ),
                (
                    "store",
                    json!({"type": ["boolean", "null"], "description": "`false`: answer without storing the turn."}),
                ),
                (
                    "stream",
                    json!({"type": ["boolean", "null"], "description": "Answer as Responses streaming events."}),
                ),
                (
                    "metadata",
                    json!({"type": ["object", "null"], "maxProperties": 16, "additionalProperties": {"type": "string"},
                    "description": "At most 16 string values, kept with the conversation."}),
                ),
                (
                    "temperature",
                    number(0.0, 2.0, "0 to 2; the agent's when absent."),
                ),
                (
                    "top_p",
                    number(0.0, 1.0, "0 to 1; the agent's when absent."),
                ),
                (
                    "max_output_tokens",
                    token_limit("1 to 1,000,000; the agent's when absent."),
                ),
                ("version", version()),
                ("user", text("Logged with the turn.")),
                (
                    "safety_identifier",
                    json!({"description": "Accepted, no effect."}),
                ),
                (
                    "prompt_cache_key",
                    json!({"description": "Accepted, no effect."}),
                ),
                (
                    "service_tier",
                    json!({"description": "Accepted, no effect."}),
                ),
                ("parallel_tool_calls", json!({"type": ["boolean", "null"]})),
                (
                    "truncation",
                    only(json!(["disabled", "auto", null]), "Accepted, no effect."),
                ),
                ("tools", tools(false)),
                ("tool_choice", tool_choice(false)),
                (
                    "include",
                    nullable(
                        json!({"type": "array", "maxItems": 0, "description": "Not supported: empty only."}),
                    ),
                ),
                (
                    "text",
                    nullable(
                        json!({"type": "object", "additionalProperties": false, "properties": {
                            "format": format(false),
                            "verbosity": {"enum": ["medium", null]},
                        }}),
                    ),
                ),
                (
                    "reasoning",
                    nullable(
                        json!({"type": "object", "additionalProperties": {"type": "null"},
                    "description": "Agentry's agents take no reasoning options: `null` values only."}),
                    ),
                ),
                (
                    "stream_options",
                    json!({"description": "Accepted, no effect."}),
                ),
                (
                    "background",
                    only(json!([false, null]), "Not supported: `false` only."),
                ),
                (
                    "top_logprobs",
                    only(json!([0, null]), "Not supported: `0` only."),
                ),
                (
                    "max_tool_calls",
                    only(json!([null]), "Not supported: `null` only."),
                ),
                ("stop", stop()),
                ("seed", seed()),
            ],
            json!({"allOf": [continued, stateless]}),
        );
        if let Schema::Object(o) = &mut schema {
            o.example = Some(json!({"model": "support-bot", "input": "Hello!"}));
        }
        RefOr::T(schema)
    }
}

impl ToSchema for ResponseRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            JsonSchemaObject::name().into_owned(),
            JsonSchemaObject::schema(),
        ));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn properties<T: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn bodies_list_the_parameters_the_handlers_accept() {
        let mut documented = properties::<ChatCompletionRequest>();
        let mut accepted: Vec<String> = super::super::chat_completions::ACCEPTED
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        documented.sort();
        accepted.sort();
        assert_eq!(documented, accepted);
        let mut documented = properties::<ResponseRequest>();
        let mut accepted: Vec<String> = super::super::responses::ACCEPTED
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        documented.sort();
        accepted.sort();
        assert_eq!(documented, accepted);
    }
}
