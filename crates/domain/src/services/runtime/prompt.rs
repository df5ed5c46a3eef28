//! Building a prompt: input checks, parameters, system messages and trimmed history.

use std::time::Instant;

use crate::agent::Agent;
use crate::conversation::Message;
use crate::error::Invalid;
use crate::llm::{PromptMessage, Role};

/// Longest user message or prompt, in characters.
pub const MESSAGE_MAX_CHARS: usize = 200_000;

/// Sampling and length parameters of one call; `None` leaves the agent's (or the model's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Params {
    /// Temperature.
    pub temperature: Option<f64>,
    /// Top-p.
    pub top_p: Option<f64>,
    /// Answer length limit.
    pub max_tokens: Option<u32>,
}

impl Params {
    /// These parameters where given, `base` elsewhere.
    pub fn or(self, base: Params) -> Params {
        Params {
            temperature: self.temperature.or(base.temperature),
            top_p: self.top_p.or(base.top_p),
            max_tokens: self.max_tokens.or(base.max_tokens),
        }
    }

    /// An agent's own parameters.
    pub fn of(agent: &Agent) -> Params {
        Params {
            temperature: agent.temperature.map(|t| t.get()),
            top_p: agent.top_p.map(|t| t.get()),
            max_tokens: agent.max_tokens.map(|t| t.get()),
        }
    }
}

pub(super) fn check_text(field: &str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid::new(
            field,
            format!("{} is required and cannot be empty", capital(field)),
        ));
    }
    check_length(field, value)
}

pub(super) fn check_length(field: &str, value: &str) -> Result<(), Invalid> {
    if value.chars().count() > MESSAGE_MAX_CHARS {
        return Err(Invalid::new(
            field,
            format!("must be at most {MESSAGE_MAX_CHARS} characters"),
        ));
    }
    // PostgreSQL text cannot hold NUL; refuse it for every backend alike.
    if value.contains('\u{0}') {
        return Err(Invalid::new(field, "must not contain NUL characters"));
    }
    Ok(())
}

/// The input of a turn: something to answer (a non-blank message, or a tool result), every
/// text within bounds.
pub(super) fn check_input(field: &str, input: &[PromptMessage]) -> Result<(), Invalid> {
    let answerable = |m: &PromptMessage| {
        !m.content.trim().is_empty() || m.role == Role::Tool || !m.tool_calls.is_empty()
    };
    if !input.iter().any(answerable) {
        return Err(Invalid::new(
            field,
            format!("{} is required and cannot be empty", capital(field)),
        ));
    }
    input.iter().try_for_each(|m| {
        check_length(field, &m.content)?;
        m.tool_calls.iter().try_for_each(|c| {
            check_length(field, &c.arguments)?;
            check_length(field, &c.id)?;
            check_length(field, &c.name)
        })?;
        m.tool_call_id
            .as_deref()
            .map_or(Ok(()), |id| check_length(field, id))
    })
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

pub(super) fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The newest `max` of `messages` (oldest first), the others dropped.
pub(super) fn newest(mut messages: Vec<Message>, max: u32) -> Vec<Message> {
    let keep = usize::try_from(max).unwrap_or(usize::MAX);
    messages.drain(..messages.len().saturating_sub(keep));
    messages
}

/// Keeps the newest messages that fit the character budget, oldest first. The kept history
/// never starts with a tool result (its call would be missing: providers refuse that).
pub(super) fn trim_history(history: Vec<Message>, max_chars: usize) -> Vec<PromptMessage> {
    let mut used = 0usize;
    let mut kept: Vec<PromptMessage> = Vec::with_capacity(history.len());
    for m in history.into_iter().rev() {
        let size = m.content.chars().count()
            + m.tool_calls
                .iter()
                .map(|c| c.arguments.len() + c.name.len())
                .sum::<usize>();
        used = used.saturating_add(size);
        if used > max_chars {
            break;
        }
        kept.push(PromptMessage::from(m));
    }
    while kept.last().is_some_and(|m| m.role == Role::Tool) {
        kept.pop();
    }
    kept.reverse();
    kept
}

pub(super) fn system_messages(agent_instructions: &str, extra: Option<&str>) -> Vec<PromptMessage> {
    [Some(agent_instructions), extra]
        .into_iter()
        .flatten()
        .filter(|s| !s.trim().is_empty())
        .map(|s| PromptMessage::new(Role::System, s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentId;
    use crate::conversation::MessageStatus;
    use crate::ids::new_id;
    use crate::llm::ToolCall;
    use chrono::Utc;

    fn msg(role: Role, content: &str) -> Message {
        Message {
            id: new_id("msg"),
            conversation_id: "c".into(),
            agent_id: AgentId::generate(),
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            usage: None,
            latency_ms: None,
            model: None,
            agent_version: None,
            status: MessageStatus::Complete,
            created_at: Utc::now(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn history_is_trimmed_oldest_first() {
        let h = vec![
            msg(Role::User, "aaaa"),
            msg(Role::User, "bbbb"),
            msg(Role::User, "cccc"),
        ];
        let kept = trim_history(h, 9);
        assert_eq!(
            kept.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            ["bbbb", "cccc"]
        );
        assert!(trim_history(vec![msg(Role::User, "toolong")], 3).is_empty());
    }

    #[test]
    fn trimmed_history_never_starts_with_a_tool_result() {
        let call = Message {
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            ..msg(Role::Assistant, "")
        };
        let result = Message {
            tool_call_id: Some("c1".into()),
            ..msg(Role::Tool, "12345678")
        };
        let h = vec![
            msg(Role::User, "q"),
            call,
            result,
            msg(Role::Assistant, "done"),
        ];
        // The budget keeps "done" and the result but not the call: the result goes too.
        let kept = trim_history(h, 13);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].content, "done");
    }

    #[test]
    fn blank_text_is_refused() {
        assert!(check_text("prompt", "  ").is_err());
        assert_eq!(
            check_text("prompt", "").map_err(|e| e.reason),
            Err("Prompt is required and cannot be empty".to_owned())
        );
        assert!(check_text("message", "hi").is_ok());
        assert!(check_text("message", "a\u{0}b").is_err());
        assert!(check_input("input", &[PromptMessage::tool_result("c1", "")]).is_ok());
        assert!(check_input("input", &[PromptMessage::new(Role::User, " ")]).is_err());
    }
}
