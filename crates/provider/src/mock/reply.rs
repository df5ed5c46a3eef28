//! What the mock's echo answers, read from the request: tool calls asked for with `/call` or
//! `/loop`, the tools' results after a call, JSON when structured output is asked, else the
//! last user message.

use agentry_domain::llm::{CompletionRequest, PromptMessage, ResponseFormat, Role, ToolCall};
use serde_json::Value;

/// The mock's answer: text, or tool calls (then no text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) text: String,
    pub(super) calls: Vec<ToolCall>,
}

impl Reply {
    fn text(text: String) -> Self {
        Self {
            text,
            calls: Vec::new(),
        }
    }
}

/// The echo's answer to `request`:
///
/// - tools offered and the turn's user message is `/loop NAME {json}`: that call, on every
///   request of the turn (even after tool results);
/// - tools offered and the last message is `/call NAME {json} ;; /call NAME2 {json}…`:
///   those calls, ids `call_mock_1`, `call_mock_2`…;
/// - the last message is a tool result: `tool NAME said: <content>` for each result after
///   the last assistant message, one per line;
/// - `response_format` asks for JSON and the user message is not JSON:
///   `{"echo":"<the message>"}`;
/// - else the last user message.
pub(super) fn echo(request: &CompletionRequest) -> Reply {
    let last_user = request.messages.iter().rev().find(|m| m.role == Role::User);
    let user_text = last_user.map(|m| m.content.as_str()).unwrap_or_default();
    let offered = !request.tools.is_empty();
    if offered && let Some(call) = parse_loop(user_text) {
        return Reply {
            text: String::new(),
            calls: vec![call],
        };
    }
    let last = request.messages.last();
    if offered
        && last.is_some_and(|m| m.role == Role::User)
        && let Some(calls) = parse_calls(user_text)
    {
        return Reply {
            text: String::new(),
            calls,
        };
    }
    if last.is_some_and(|m| m.role == Role::Tool) {
        return Reply::text(tool_results(&request.messages));
    }
    let wants_json = matches!(
        request.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    );
    if wants_json && serde_json::from_str::<Value>(user_text).is_err() {
        return Reply::text(serde_json::json!({ "echo": user_text }).to_string());
    }
    Reply::text(user_text.to_owned())
}

/// `NAME {json}` after `command`: the name and the arguments (`{}` when none).
fn parse_one<'a>(text: &'a str, command: &str) -> Option<(&'a str, &'a str)> {
    let rest = text.trim().strip_prefix(command)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start();
    let (name, arguments) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let arguments = arguments.trim();
    (!name.is_empty()).then_some((
        name,
        if arguments.is_empty() {
            "{}"
        } else {
            arguments
        },
    ))
}

fn call(n: usize, (name, arguments): (&str, &str)) -> ToolCall {
    ToolCall {
        id: format!("call_mock_{n}"),
        name: name.to_owned(),
        arguments: arguments.to_owned(),
    }
}

/// `/call A {..} ;; /call B {..}`: every part must be a call.
fn parse_calls(text: &str) -> Option<Vec<ToolCall>> {
    text.split(" ;; ")
        .enumerate()
        .map(|(i, part)| parse_one(part, "/call").map(|c| call(i + 1, c)))
        .collect()
}

fn parse_loop(text: &str) -> Option<ToolCall> {
    parse_one(text, "/loop").map(|c| call(1, c))
}

/// `tool NAME said: <content>` for each tool result after the last assistant message.
fn tool_results(messages: &[PromptMessage]) -> String {
    let start = messages
        .iter()
        .rposition(|m| m.role == Role::Assistant)
        .map_or(0, |i| i + 1);
    let assistant = start.checked_sub(1).and_then(|i| messages.get(i));
    messages
        .get(start..)
        .unwrap_or_default()
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|result| {
            let id = result.tool_call_id.as_deref().unwrap_or_default();
            let name = assistant
                .and_then(|a| a.tool_calls.iter().find(|c| c.id == id))
                .map_or(id, |c| c.name.as_str());
            format!("tool {name} said: {}", result.content)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_one("/call a", "/call"), Some(("a", "{}")));
        assert_eq!(
            parse_one(" /call b {\"x\": 1} ", "/call"),
            Some(("b", "{\"x\": 1}"))
        );
        assert_eq!(parse_one("/callx a", "/call"), None);
        assert_eq!(parse_one("/call ", "/call"), None);
        let calls = parse_calls("/call a {} ;; /call b {\"x\":1}").unwrap_or_default();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].id, "call_mock_2");
        assert_eq!(calls[1].arguments, "{\"x\":1}");
        assert_eq!(parse_calls("/call a {} ;; hello"), None);
    }
}
