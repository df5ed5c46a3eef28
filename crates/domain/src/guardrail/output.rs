//! The output guard: what of an answer may be sent, and when.
//!
//! Text rules (`max_length`, `blocked_terms`, `regex`, `pii`) are applied sentence by
//! sentence: streamed text is held until a sentence ends (`.`, `!` or `?` followed by white
//! space, or a line break; or [`FORCED_CUT_BYTES`] without one, cut at white space), then the
//! rules run over that sentence and what passes (or is redacted) is released. Rules that can
//! only judge a whole answer (`json_schema`, `judge`) run when the model has finished: with
//! `block` they make the guard hold the whole answer until then; with `flag` nothing is held.

use super::{Action, Checked, Guardrails, Rule, Stage, Trigger, check_text};

/// Held text longer than this without a sentence end is released up to its last white space.
pub const FORCED_CUT_BYTES: usize = 2_000;

/// What the guard lets out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// This text (possibly empty: nothing yet).
    Text(String),
    /// A `block` rule triggered: nothing more is sent; the answer becomes the refusal.
    Blocked(Trigger),
}

/// Holds and checks an answer's text before it is sent.
#[derive(Debug, Clone)]
pub struct OutputGuard {
    rules: Vec<Rule>,
    refusal: String,
    whole: bool,
    pending: String,
    released_chars: usize,
    triggers: Vec<Trigger>,
    /// A `max_length` rule cut the answer: nothing more is released.
    cut: bool,
    blocked: bool,
}

impl OutputGuard {
    /// The guard of an agent's output rules; `None` when it has none.
    pub fn new(guardrails: &Guardrails) -> Option<Self> {
        if guardrails.output.is_empty() {
            return None;
        }
        Some(Self {
            rules: guardrails.output.clone(),
            refusal: guardrails.refusal().to_owned(),
            whole: guardrails.output_needs_whole_answer(),
            pending: String::new(),
            released_chars: 0,
            triggers: Vec::new(),
            cut: false,
            blocked: false,
        })
    }

    /// The text sent in place of a blocked answer.
    pub fn refusal(&self) -> &str {
        &self.refusal
    }

    /// Whether the whole answer is held until the model has finished.
    pub fn holds_whole_answer(&self) -> bool {
        self.whole
    }

    /// Every rule that triggered so far, once per rule.
    pub fn triggers(&self) -> &[Trigger] {
        &self.triggers
    }

    /// Records a trigger (once per rule: the first occurrence is kept).
    pub fn record(&mut self, t: Trigger) {
        if !self
            .triggers
            .iter()
            .any(|o| o.stage == t.stage && o.index == t.index)
        {
            self.triggers.push(t);
        }
    }

    /// The rules that judge the whole answer when it is complete, with their positions.
    pub fn whole_answer_rules(&self) -> Vec<(usize, Rule)> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind.needs_whole_text())
            .map(|(i, r)| (i, r.clone()))
            .collect()
    }

    /// More of the answer arrived: what may be sent now.
    pub fn push(&mut self, delta: &str) -> Release {
        if self.blocked || self.cut {
            return Release::Text(String::new());
        }
        self.pending.push_str(delta);
        if self.whole {
            return Release::Text(String::new());
        }
        let at = sentence_cut(&self.pending);
        if at == 0 {
            return Release::Text(String::new());
        }
        let rest = self.pending.split_off(at);
        let sentence = std::mem::replace(&mut self.pending, rest);
        self.release(sentence)
    }

    /// The model's answer ended: the rest of the held text, checked.
    pub fn flush(&mut self) -> Release {
        if self.blocked || self.cut {
            self.pending.clear();
            return Release::Text(String::new());
        }
        let rest = std::mem::take(&mut self.pending);
        if rest.is_empty() {
            return Release::Text(rest);
        }
        self.release(rest)
    }

    fn release(&mut self, mut text: String) -> Release {
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            if rule.kind.needs_whole_text() {
                continue;
            }
            let Some(Checked::Triggered { detail, redacted }) =
                check_text(&rule.kind, &text, self.released_chars)
            else {
                continue;
            };
            let is_length = matches!(rule.kind, super::RuleKind::MaxLength { .. });
            let action = rule.action;
            let trigger = rule.trigger(Stage::Output, i, detail);
            self.record(trigger.clone());
            match action {
                Action::Block => {
                    self.blocked = true;
                    self.pending.clear();
                    return Release::Blocked(trigger);
                }
                Action::Redact => {
                    if let Some(r) = redacted {
                        text = r;
                    }
                    if is_length {
                        self.cut = true;
                        self.pending.clear();
                    }
                }
                Action::Flag => {}
            }
        }
        self.released_chars += text.chars().count();
        Release::Text(text)
    }
}

/// The byte position after the last sentence end in `text` (0: none yet).
fn sentence_cut(text: &str) -> usize {
    let mut cut = 0;
    let mut prev: Option<(usize, char)> = None;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            cut = i + 1;
        } else if c.is_whitespace()
            && let Some((_, p)) = prev
            && matches!(p, '.' | '!' | '?' | '…' | '。')
        {
            cut = i + c.len_utf8();
        }
        prev = Some((i, c));
    }
    if cut == 0 && text.len() > FORCED_CUT_BYTES {
        cut = text
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map(|(i, c)| i + c.len_utf8())
            .unwrap_or(text.len());
    }
    cut
}
