//! What Chat Completions and Responses share beyond messages: function tools, tool choice,
//! structured output and sampling options, read into the domain's [`CallOptions`]. Neutral
//! values and explicit `null` read as absent, so a client may send back what a response
//! reported.

use agentry_domain::llm::{ResponseFormat, ToolCall, ToolChoice, ToolDefinition};
use agentry_domain::services::CallOptions;
use serde_json::{Map, Value, json};

use super::{OpenAiError, OpenAiResult, bounded, param};

/// How the endpoint spells its tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"type":"function","function":{name,…}}`, `{"type":"function","function":{"name"}}`.
    ChatCompletions,
    /// `{"type":"function",name,…}`, `{"type":"function","name"}`.
    Responses,
}

fn invalid(param: &str, message: impl Into<String>) -> OpenAiError {
    OpenAiError::invalid(param, message, "invalid_value")
}

fn parse_tool(d: Dialect, i: usize, tool: &Value) -> OpenAiResult<ToolDefinition> {
    let at = format!("tools[{i}]");
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "function" {
        return Err(OpenAiError::invalid(
            &format!("{at}.type"),
            format!(
                "Unsupported tool type '{kind}': Agentry accepts function tools (an agent's own tools are configured on the agent)."
            ),
            "unsupported_value",
        ));
    }
    let (f, fat) = match d {
        Dialect::ChatCompletions => (
            tool.get("function")
                .filter(|f| f.is_object())
                .ok_or_else(|| {
                    invalid(
                        &format!("{at}.function"),
                        "A function tool needs 'function'.",
                    )
                })?,
            format!("{at}.function"),
        ),
        Dialect::Responses => (tool, at.clone()),
    };
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{fat}.name"), "A function needs a 'name'."))?;
    let description = match f.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid(&format!("{fat}.description"), "Must be a string.")),
    };
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => {
            return Err(invalid(
                &format!("{fat}.parameters"),
                "Must be a JSON Schema object.",
            ));
        }
    };
    let strict = match f.get("strict") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(invalid(&format!("{fat}.strict"), "Must be a boolean.")),
    };
    Ok(ToolDefinition {
        name: name.to_owned(),
        description,
        parameters,
        strict,
    })
}

fn parse_tool_choice(d: Dialect, v: Option<&Value>) -> OpenAiResult<Option<ToolChoice>> {
    let bad = || {
        invalid(
            "tool_choice",
            "'tool_choice' must be \"none\", \"auto\", \"required\" or a function to call.",
        )
    };
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            _ => return Err(bad()),
        }),
        Some(Value::Object(o)) => {
            if o.get("type").and_then(Value::as_str) != Some("function") {
                return Err(bad());
            }
            let name = match d {
                Dialect::ChatCompletions => o.get("function").and_then(|f| f.get("name")),
                Dialect::Responses => o.get("name"),
            };
            Some(ToolChoice::Function(
                name.and_then(Value::as_str).ok_or_else(bad)?.to_owned(),
            ))
        }
        Some(_) => return Err(bad()),
    })
}

/// A `response_format` (Chat Completions) or `text.format` (Responses) object.
fn parse_format(d: Dialect, at: &str, v: &Value) -> OpenAiResult<Option<ResponseFormat>> {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    Ok(Some(match kind {
        "text" => return Ok(None),
        "json_object" => ResponseFormat::JsonObject,
        "json_schema" => {
            let (spec, sat) = match d {
                Dialect::ChatCompletions => (
                    v.get("json_schema")
                        .filter(|s| s.is_object())
                        .ok_or_else(|| {
                            invalid(&format!("{at}.json_schema"), "Missing 'json_schema'.")
                        })?,
                    format!("{at}.json_schema"),
                ),
                Dialect::Responses => (v, at.to_owned()),
            };
            let name = spec
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid(&format!("{sat}.name"), "A JSON schema needs a 'name'."))?;
            ResponseFormat::JsonSchema {
                name: name.to_owned(),
                description: spec
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                schema: spec
                    .get("schema")
                    .filter(|s| !s.is_null())
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"})),
                strict: spec.get("strict").and_then(Value::as_bool),
            }
        }
        _ => {
            return Err(invalid(
                &format!("{at}.type"),
                "The format type must be text, json_object or json_schema.",
            ));
        }
    }))
}

fn parse_stop(v: Option<&Value>) -> OpenAiResult<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid("stop", "'stop' must be a string or a list of strings."))
            })
            .collect(),
        Some(_) => Err(invalid(
            "stop",
            "'stop' must be a string or a list of strings.",
        )),
    }
}

/// Reads tools, tool choice, structured output and sampling options.
///
/// # Errors
/// 400 naming the parameter.
pub fn call_options(body: &Map<String, Value>, d: Dialect) -> OpenAiResult<CallOptions> {
    let client_tools = match body.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools
            .iter()
            .enumerate()
            .map(|(i, t)| parse_tool(d, i, t))
            .collect::<OpenAiResult<_>>()?,
        Some(_) => return Err(invalid("tools", "'tools' must be a list.")),
    };
    let response_format = match d {
        Dialect::ChatCompletions => match body.get("response_format") {
            None | Some(Value::Null) => None,
            Some(v) => parse_format(d, "response_format", v)?,
        },
        Dialect::Responses => match body.get("text").and_then(|t| t.get("format")) {
            None | Some(Value::Null) => None,
            Some(v) => parse_format(d, "text.format", v)?,
        },
    };
    let logit_bias = match param::<Map<String, Value>>(body, "logit_bias")? {
        Some(m) if m.is_empty() => None,
        Some(m) => {
            if m.values()
                .any(|b| b.as_f64().is_none_or(|b| !(-100.0..=100.0).contains(&b)))
            {
                return Err(invalid(
                    "logit_bias",
                    "Biases must be numbers from -100 to 100.",
                ));
            }
            Some(m)
        }
        None => None,
    };
    let seed = match body.get("seed") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| invalid("seed", "'seed' must be an integer."))?,
        ),
    };
    Ok(CallOptions {
        client_tools,
        tool_choice: parse_tool_choice(d, body.get("tool_choice"))?,
        parallel_tool_calls: param(body, "parallel_tool_calls")?,
        response_format,
        stop: parse_stop(body.get("stop"))?,
        seed,
        presence_penalty: bounded(body, "presence_penalty", -2.0, 2.0)?.filter(|p| *p != 0.0),
        frequency_penalty: bounded(body, "frequency_penalty", -2.0, 2.0)?.filter(|p| *p != 0.0),
        logit_bias,
        user: param(body, "user")?,
    })
}

/// A tool call as Chat Completions shows it.
pub fn chat_tool_call(call: &ToolCall) -> Value {
    json!({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}})
}

/// The format a response reports: what was asked (`{"type":"text"}` when nothing was).
pub fn format_json(d: Dialect, f: Option<&ResponseFormat>) -> Value {
    match f {
        None | Some(ResponseFormat::Text) => json!({"type": "text"}),
        Some(ResponseFormat::JsonObject) => json!({"type": "json_object"}),
        Some(ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        }) => {
            let spec = json!({"name": name, "description": description, "schema": schema, "strict": strict});
            match d {
                Dialect::ChatCompletions => json!({"type": "json_schema", "json_schema": spec}),
                Dialect::Responses => {
                    let mut o = json!({"type": "json_schema"});
                    if let (Value::Object(o), Value::Object(s)) = (&mut o, spec) {
                        o.extend(s);
                    }
                    o
                }
            }
        }
    }
}

/// The tools a response reports (the caller's, in the endpoint's spelling).
pub fn tools_json(d: Dialect, tools: &[ToolDefinition]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| match d {
            Dialect::ChatCompletions => json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters, "strict": t.strict}}),
            Dialect::Responses => json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters, "strict": t.strict}),
        })
        .collect()
}

/// The tool choice a response reports.
pub fn tool_choice_json(d: Dialect, c: Option<&ToolChoice>) -> Value {
    match c {
        None | Some(ToolChoice::Auto) => json!("auto"),
        Some(ToolChoice::None) => json!("none"),
        Some(ToolChoice::Required) => json!("required"),
        Some(ToolChoice::Function(name)) => match d {
            Dialect::ChatCompletions => json!({"type": "function", "function": {"name": name}}),
            Dialect::Responses => json!({"type": "function", "name": name}),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn neutral_values_read_as_absent() {
        let o = call_options(
            &body(json!({"stop": null, "logit_bias": {}, "presence_penalty": 0, "tools": [], "tool_choice": null, "seed": null, "response_format": {"type": "text"}})),
            Dialect::ChatCompletions,
        )
        .unwrap();
        assert_eq!(o, CallOptions::default());
    }

    #[test]
    fn both_dialects_read_tools_and_formats() {
        let chat = call_options(
            &body(json!({
                "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
                "stop": "END", "seed": 7
            })),
            Dialect::ChatCompletions,
        )
        .unwrap();
        let responses = call_options(
            &body(json!({
                "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
                "tool_choice": {"type": "function", "name": "get_weather"},
                "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}, "verbosity": "medium"},
                "stop": ["END"], "seed": 7
            })),
            Dialect::Responses,
        )
        .unwrap();
        assert_eq!(chat, responses);
        assert_eq!(
            chat.tool_choice,
            Some(ToolChoice::Function("get_weather".into()))
        );
    }

    #[test]
    fn bad_options_name_their_parameter() {
        let cases = [
            (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
            (json!({"tool_choice": "sometimes"}), "tool_choice"),
            (
                json!({"response_format": {"type": "xml"}}),
                "response_format.type",
            ),
            (json!({"stop": [1]}), "stop"),
            (json!({"logit_bias": {"1": 500}}), "logit_bias"),
            (json!({"presence_penalty": 3}), "presence_penalty"),
        ];
        for (b, param) in cases {
            let e = call_options(&body(b), Dialect::ChatCompletions).unwrap_err();
            assert_eq!(e.param(), Some(param));
        }
    }
}
