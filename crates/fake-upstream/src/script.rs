//! What the fake answers: scripted replies first, then behaviour chosen by the model name.

use std::time::Duration;

/// A reply a test queues with [`crate::FakeUpstream::push`]; queued replies are used in order,
/// one per request, before the model-name behaviour applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// Answer with this text.
    Text(String),
    /// Answer with this HTTP status and the provider's real error body (429 adds
    /// `Retry-After: 1`).
    Error(u16),
    /// Answer with this status and this error message (to check what clients do with it).
    ErrorMessage(u16, String),
    /// Start answering (the echo), then drop the connection mid-way.
    Cut,
    /// Call these tools: `(name, arguments as JSON text)` each, answered as OpenAI
    /// `tool_calls` (finish reason `tool_calls`) or Anthropic `tool_use` blocks (stop reason
    /// `tool_use`). Streamed, each call's arguments arrive in several fragments.
    ToolCalls(Vec<(String, String)>),
    /// Answer 200 with a body that is not the wire format (an HTML page where JSON or SSE
    /// should be), as a misconfigured proxy in front of a provider does.
    Unreadable,
    /// Wait this long before answering (headers included), then reply as the inner, at its
    /// own pace: a hung upstream that comes back.
    Stalled(Duration, Box<Scripted>),
    /// Wait this long before answering (and between stream chunks), then reply as the inner.
    Delayed(Duration, Box<Scripted>),
}

impl Scripted {
    /// A reply calling the tool `name` with `arguments` (JSON text).
    pub fn tool_call(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self::ToolCalls(vec![(name.into(), arguments.into())])
    }
}

/// What one request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The echo of the last user message.
    Echo,
    /// A fixed text.
    Text(String),
    /// An error status with an optional message.
    Error(u16, Option<String>),
    /// A broken answer.
    Cut,
    /// Tool calls: `(name, arguments)`.
    ToolCalls(Vec<(String, String)>),
    /// 200 with a body that is not the wire format.
    Unreadable,
}

/// An outcome and how slowly to deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// What to answer.
    pub outcome: Outcome,
    /// Pause before answering and between stream chunks.
    pub delay: Duration,
    /// Extra pause before answering only.
    pub stall: Duration,
}

impl Plan {
    /// The plan for a queued reply.
    pub(crate) fn from_scripted(scripted: Scripted) -> Self {
        match scripted {
            Scripted::Text(text) => Self::now(Outcome::Text(text)),
            Scripted::Error(status) => Self::now(Outcome::Error(status, None)),
            Scripted::ErrorMessage(status, message) => {
                Self::now(Outcome::Error(status, Some(message)))
            }
            Scripted::Cut => Self::now(Outcome::Cut),
            Scripted::ToolCalls(calls) => Self::now(Outcome::ToolCalls(calls)),
            Scripted::Unreadable => Self::now(Outcome::Unreadable),
            Scripted::Stalled(stall, inner) => Self {
                stall,
                ..Self::from_scripted(*inner)
            },
            Scripted::Delayed(delay, inner) => Self {
                delay,
                ..Self::from_scripted(*inner)
            },
        }
    }

    /// The plan named by a model: `fake-error-<status>`, `fake-slow-<ms>`, `fake-cut`, else echo.
    pub(crate) fn from_model(model: &str) -> Self {
        if let Some(status) = model
            .strip_prefix("fake-error-")
            .and_then(|s| s.parse().ok())
        {
            return Self::now(Outcome::Error(status, None));
        }
        if let Some(ms) = model
            .strip_prefix("fake-slow-")
            .and_then(|s| s.parse().ok())
        {
            return Self {
                outcome: Outcome::Echo,
                delay: Duration::from_millis(ms),
                stall: Duration::ZERO,
            };
        }
        if model == "fake-cut" {
            return Self::now(Outcome::Cut);
        }
        Self::now(Outcome::Echo)
    }

    fn now(outcome: Outcome) -> Self {
        Self {
            outcome,
            delay: Duration::ZERO,
            stall: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        assert_eq!(
            Plan::from_model("fake-error-503").outcome,
            Outcome::Error(503, None)
        );
        assert_eq!(
            Plan::from_model("fake-slow-20").delay,
            Duration::from_millis(20)
        );
        assert_eq!(Plan::from_model("fake-cut").outcome, Outcome::Cut);
        assert_eq!(Plan::from_model("gpt-4o").outcome, Outcome::Echo);
        assert_eq!(Plan::from_model("fake-error-x").outcome, Outcome::Echo);
    }

    #[test]
    fn delayed_scripts_keep_the_inner_reply() {
        let plan = Plan::from_scripted(Scripted::Delayed(
            Duration::from_millis(5),
            Box::new(Scripted::Error(500)),
        ));
        assert_eq!(plan.outcome, Outcome::Error(500, None));
        assert_eq!(plan.delay, Duration::from_millis(5));
    }
}
