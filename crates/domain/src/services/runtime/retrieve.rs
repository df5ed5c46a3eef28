//! Retrieval as a step of the turn (docs/knowledge.md): for an agent with knowledge, the
//! best passages for the turn's user message, then that message as sent to the model
//! rewritten to carry them with their `[n]` markers. An agent without knowledge skips the
//! step entirely (the index is never touched).

use super::Runtime;
use crate::agent::Agent;
use crate::knowledge::{Retrieval, prompt_with_sources};
use crate::llm::{PromptMessage, Role};

impl Runtime {
    /// The passages for the last user message of `input` (after input guardrails), when
    /// `agent` has knowledge; `None` when it has none.
    pub(super) async fn retrieve(
        &self,
        agent: Option<&Agent>,
        input: &[PromptMessage],
    ) -> Option<Retrieval> {
        let knowledge = agent.map(|a| &a.knowledge).filter(|k| !k.is_empty())?;
        let question = input
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .unwrap_or_default();
        Some(self.ports.knowledge.retrieve(knowledge, question).await)
    }
}

/// Puts the passages of `retrieval` (if any were found) into the last user message of the
/// prompt, before the question. The stored input is left as the user wrote it.
pub(super) fn with_sources(messages: &mut [PromptMessage], retrieval: Option<&Retrieval>) {
    let Some(r) = retrieval.filter(|r| !r.passages.is_empty()) else {
        return;
    };
    if let Some(last) = messages.iter_mut().rev().find(|m| m.role == Role::User) {
        last.content = prompt_with_sources(&r.passages, &last.content);
    }
}
