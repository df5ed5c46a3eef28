//! Server-side tools: what an agent's `tools` entries of `type: "http"` become, and the port
//! that calls them. The runtime offers them to the model and runs the calls in its tool loop
//! (see [`crate::services::turn`]); the HTTP adapter (crate `agentry-tools`) does the I/O and
//! guards against SSRF.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::agent::ToolSpec;
use crate::error::Invalid;
use crate::llm::ToolDefinition;

/// What a stored header value reads as in every response: header values are write-only.
pub const SECRET_MASK: &str = "********";

/// An HTTP method a tool may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// Arguments as query parameters.
    Get,
    /// Arguments as a JSON body.
    Post,
    /// Arguments as a JSON body.
    Put,
    /// Arguments as a JSON body.
    Patch,
    /// Arguments as query parameters.
    Delete,
}

impl HttpMethod {
    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    /// Parses a method, any case.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_uppercase().as_str() {
            "GET" => Some(Self::Get),
            "POST" => Some(Self::Post),
            "PUT" => Some(Self::Put),
            "PATCH" => Some(Self::Patch),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    /// Whether the arguments travel as a JSON body (else as query parameters).
    pub fn has_body(&self) -> bool {
        matches!(self, Self::Post | Self::Put | Self::Patch)
    }
}

/// An HTTP tool: a function the model may call, executed by Agentry as one HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTool {
    /// The function's name, as offered to the model.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// Its arguments' JSON Schema (an object schema).
    pub parameters: Value,
    /// `http://` or `https://` URL.
    pub url: String,
    /// The method (GET by default).
    pub method: HttpMethod,
    /// Headers sent with every call; their values are secrets (never returned or logged).
    pub headers: Vec<(String, String)>,
}

impl HttpTool {
    /// The definition offered to the model.
    pub fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: self.parameters.clone(),
            strict: None,
        }
    }
}

/// The schema used when a tool declares no `parameters`: any object.
pub fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// Whether `name` can name a function offered to a model: 1 to 64 characters of `A-Z a-z
/// 0-9 _ -`.
pub fn is_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Validates one `type: "http"` tool description (at index `i` of `tools`).
///
/// # Errors
/// [`Invalid`] naming the field (`tools[0].url`…).
pub fn parse_http_tool(i: usize, map: &Map<String, Value>) -> Result<HttpTool, Invalid> {
    let at = |f: &str| format!("tools[{i}].{f}");
    let name = map
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !is_function_name(&name) {
        return Err(Invalid::new(
            at("name"),
            "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'",
        ));
    }
    let url = match map.get("url") {
        Some(Value::String(u)) if u.starts_with("http://") || u.starts_with("https://") => {
            u.clone()
        }
        _ => {
            return Err(Invalid::new(
                at("url"),
                "is required: an http:// or https:// URL",
            ));
        }
    };
    let method = match map.get("method") {
        None | Some(Value::Null) => HttpMethod::Get,
        Some(Value::String(m)) => HttpMethod::parse(m)
            .ok_or_else(|| Invalid::new(at("method"), "must be GET, POST, PUT, PATCH or DELETE"))?,
        Some(_) => return Err(Invalid::new(at("method"), "must be a string")),
    };
    let description = match map.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err(Invalid::new(at("description"), "must be a string")),
    };
    let parameters = match map.get("parameters") {
        None | Some(Value::Null) => empty_object_schema(),
        Some(Value::Object(o))
            if o.get("type").is_none_or(|t| t == "object")
                && crate::schema::check(&Value::Object(o.clone())).is_ok() =>
        {
            Value::Object(o.clone())
        }
        Some(Value::Object(o)) => {
            let reason = crate::schema::check(&Value::Object(o.clone()))
                .err()
                .unwrap_or_else(|| "must be an object schema (type \"object\")".to_owned());
            return Err(Invalid::new(at("parameters"), reason));
        }
        Some(_) => {
            return Err(Invalid::new(
                at("parameters"),
                "must be a JSON Schema object",
            ));
        }
    };
    let headers = match map.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| match v {
                Value::String(s)
                    if !k.is_empty()
                        && k.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                        && !s.contains(['\r', '\n']) =>
                {
                    Ok((k.clone(), s.clone()))
                }
                _ => Err(Invalid::new(
                    at(&format!("headers.{k}")),
                    "header names must be tokens and values single-line strings",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(Invalid::new(at("headers"), "must be an object of strings")),
    };
    Ok(HttpTool {
        name,
        description,
        parameters,
        url,
        method,
        headers,
    })
}

/// The HTTP tools among an agent's tools (those of `type: "http"`). MCP bindings are
/// resolved by the runtime; other types are kept on the agent but not executed.
pub fn http_tools(tools: &[ToolSpec]) -> Vec<HttpTool> {
    tools
        .iter()
        .enumerate()
        .filter(|(_, t)| t.kind() == "http")
        .filter_map(|(i, t)| parse_http_tool(i, t.as_json()).ok())
        .collect()
}

/// Bounds of one tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolLimits {
    /// The whole call (connect, send, read).
    pub timeout: Duration,
    /// Largest response body read; a longer one is cut and marked as such.
    pub max_response_bytes: usize,
}

impl Default for ToolLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024,
        }
    }
}

/// The note that ends a tool's output cut at `cap` bytes.
pub fn truncated_note(cap: usize) -> String {
    format!("\n[truncated: response exceeded {cap} bytes]")
}

/// `text` cut to at most `cap` bytes (on a character boundary) with [`truncated_note`] after
/// it, or unchanged when it fits.
pub fn cap_text(mut text: String, cap: usize) -> String {
    if text.len() <= cap {
        return text;
    }
    let mut cut = cap;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&truncated_note(cap));
    text
}

/// Why a tool call failed. The message is given to the model as the tool's result, so it
/// never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The destination is not allowed (loopback, private, link-local or metadata address not in
    /// `tool_allowed_hosts`).
    #[error("tool call refused: {0}")]
    Refused(String),
    /// No answer in time.
    #[error("tool call timed out after {0:?}")]
    Timeout(Duration),
    /// The request could not be sent or the connection broke.
    #[error("tool call failed: {0}")]
    Failed(String),
    /// The tool answered with an error status.
    #[error("tool answered HTTP {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of its body.
        body: String,
    },
}

/// Calls HTTP tools.
#[async_trait]
pub trait HttpToolClient: Send + Sync {
    /// Sends one call: `arguments` (already validated against the tool's schema) as query
    /// parameters (GET, DELETE) or as a JSON body (POST, PUT, PATCH), with the tool's headers.
    /// Returns the response body as text, cut to `limits.max_response_bytes` (with a note that
    /// it was cut).
    ///
    /// # Errors
    /// MUST return [`ToolError::Refused`] without sending anything when the URL's host (after
    /// DNS resolution), or a redirect's, is a loopback, private, link-local, unspecified or
    /// metadata address that the adapter's allow-list does not name; [`ToolError::Timeout`]
    /// when `limits.timeout` passes; [`ToolError::Status`] for a 4xx/5xx answer;
    /// [`ToolError::Failed`] otherwise.
    async fn call(
        &self,
        tool: &HttpTool,
        arguments: &Map<String, Value>,
        limits: ToolLimits,
    ) -> Result<String, ToolError>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn long_outputs_are_cut_on_a_character_boundary_with_a_note() {
        assert_eq!(cap_text("short".into(), 10), "short");
        let cut = cap_text("ééé".into(), 3);
        assert_eq!(cut, format!("é{}", truncated_note(3)));
    }

    #[test]
    fn seed_004_http_tool_parses_with_defaults() {
        let t = parse_http_tool(
            0,
            &map(json!({"type": "http", "name": "customer_db", "url": "https://api.example.com/customers"})),
        )
        .unwrap();
        assert_eq!(t.method, HttpMethod::Get);
        assert_eq!(t.parameters, empty_object_schema());
        assert!(t.headers.is_empty());
    }

    #[test]
    fn bad_http_tools_name_the_field() {
        let cases = [
            (
                json!({"type": "http", "name": "a b", "url": "http://x"}),
                "tools[0].name",
            ),
            (
                json!({"type": "http", "name": "a", "url": "ftp://x"}),
                "tools[0].url",
            ),
            (
                json!({"type": "http", "name": "a", "url": "http://x", "method": "TRACE"}),
                "tools[0].method",
            ),
            (
                json!({"type": "http", "name": "a", "url": "http://x", "parameters": {"type": "string"}}),
                "tools[0].parameters",
            ),
            (
                json!({"type": "http", "name": "a", "url": "http://x", "headers": {"X": 1}}),
                "tools[0].headers.X",
            ),
        ];
        for (v, field) in cases {
            let err = parse_http_tool(0, &map(v)).unwrap_err();
            assert_eq!(err.field, field);
        }
    }
}
