//! Applying one rule to one text (every rule but `judge`, which asks a model: see the
//! runtime's `guard.rs`).

use std::collections::BTreeMap;

use super::{REDACTED, RuleKind, pii};

/// What a rule found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Nothing.
    Pass,
    /// Something: what (without the text itself), and the text redacted.
    Triggered {
        /// What was found.
        detail: String,
        /// The text with what was found replaced (or cut, for `max_length`); `None` for
        /// rules that cannot redact.
        redacted: Option<String>,
    },
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Applies `kind` to `text`, `before` characters having already been checked before it
/// (a streamed answer's earlier sentences: `max_length` counts them). `None` for a `judge`.
pub fn check_text(kind: &RuleKind, text: &str, before: usize) -> Option<Checked> {
    Some(match kind {
        RuleKind::MaxLength { max_chars } => {
            let len = text.chars().count();
            if before + len <= *max_chars {
                Checked::Pass
            } else {
                let keep = max_chars.saturating_sub(before);
                Checked::Triggered {
                    detail: format!("{} characters, more than {max_chars}", before + len),
                    redacted: Some(text.chars().take(keep).collect()),
                }
            }
        }
        RuleKind::BlockedTerms { matcher, .. } | RuleKind::Regex { matcher, .. } => {
            let n = matcher
                .find_iter(text)
                .filter(|m| !m.as_str().is_empty())
                .count();
            if n == 0 {
                Checked::Pass
            } else {
                let what = if matches!(kind, RuleKind::Regex { .. }) {
                    plural(n, "match", "matches")
                } else {
                    plural(n, "blocked term", "blocked terms")
                };
                Checked::Triggered {
                    detail: what,
                    redacted: Some(matcher.replace_all(text, REDACTED).into_owned()),
                }
            }
        }
        RuleKind::Pii { kinds } => {
            let found = pii::find_pii(text, kinds);
            if found.is_empty() {
                Checked::Pass
            } else {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for m in &found {
                    *counts.entry(m.kind.as_str()).or_default() += 1;
                }
                let detail = counts
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                Checked::Triggered {
                    detail,
                    redacted: Some(pii::redact(text, &found)),
                }
            }
        }
        RuleKind::JsonSchema { schema } => {
            match serde_json::from_str::<serde_json::Value>(text.trim()) {
                Err(e) => Checked::Triggered {
                    detail: format!("not JSON: {e}"),
                    redacted: None,
                },
                Ok(value) => match crate::schema::validate(schema, &value) {
                    Ok(()) => Checked::Pass,
                    Err(reason) => Checked::Triggered {
                        detail: format!("does not match the schema: {reason}"),
                        redacted: None,
                    },
                },
            }
        }
        RuleKind::Judge { .. } => return None,
    })
}
