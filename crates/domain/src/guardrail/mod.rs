//! Guardrails: per-agent rules over a turn's input (before it reaches the model) and its
//! output (before it reaches the caller). Each rule detects something and acts on it:
//! `block` (the input is refused, the output replaced by a refusal), `redact` (the matched
//! text is replaced) or `flag` (only recorded). Applied by the turn (`services/runtime`),
//! so every transport gets the same rules.
//!
//! - `mod.rs`: the rules and their JSON form (parsed and validated here);
//! - `pii.rs`: e-mail, phone, card (Luhn) and IBAN (mod 97) detection;
//! - `check.rs`: applying the text rules to a text;
//! - `output.rs`: the output guard that releases streamed text sentence by sentence.

mod check;
mod output;
mod pii;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::agent::ModelSpec;
use crate::error::Invalid;

pub use check::{Checked, check_text};
pub use output::{OutputGuard, Release};
pub use pii::{PiiKind, PiiMatch, find_pii};

/// Most rules per stage.
pub const RULES_MAX: usize = 32;
/// Most blocked terms in one rule.
pub const TERMS_MAX: usize = 500;
/// Longest blocked term, regex pattern or judge question, in characters.
pub const PATTERN_MAX: usize = 2_000;
/// Longest refusal message.
pub const REFUSAL_MAX: usize = 2_000;
/// A judge's timeout when none is given.
pub const JUDGE_TIMEOUT_DEFAULT_MS: u64 = 10_000;
/// The refusal sent in place of a blocked answer when the agent sets none.
pub const DEFAULT_REFUSAL: &str = "I'm sorry, but I can't help with that.";
/// What replaces a redacted blocked term or regex match.
pub const REDACTED: &str = "[REDACTED]";

/// Where a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The caller's messages, before the model sees them.
    Input,
    /// The answer, before the caller sees it.
    Output,
}

impl Stage {
    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }
}

/// What a rule does when it triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Refuse the input (400 `GUARDRAIL_VIOLATION`) or replace the answer by a refusal.
    Block,
    /// Replace what matched and go on.
    Redact,
    /// Record it and go on.
    Flag,
}

impl Action {
    fn parse(field: &str, v: Option<&Value>) -> Result<Self, Invalid> {
        match v {
            None => Ok(Self::Block),
            Some(Value::String(s)) if s == "block" => Ok(Self::Block),
            Some(Value::String(s)) if s == "redact" => Ok(Self::Redact),
            Some(Value::String(s)) if s == "flag" => Ok(Self::Flag),
            _ => Err(Invalid::new(field, "must be one of block, redact, flag")
                .with("allowed", vec!["block", "redact", "flag"])),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Redact => "redact",
            Self::Flag => "flag",
        }
    }
}

/// What a judge does when it cannot answer (timeout, provider error, an answer that is
/// neither yes nor no).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Fail open: the text passes.
    Allow,
    /// Fail closed: the rule triggers.
    Block,
}

/// Who judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judge {
    /// A model (`provider/model` or a bare name), resolved when the agent is saved and
    /// again at each call.
    Model(ModelSpec),
    /// Another agent by key: its model, with its instructions before the judge's prompt.
    Agent(String),
}

/// What a rule checks.
#[derive(Debug, Clone)]
pub enum RuleKind {
    /// Longer than `max_chars` characters (output: the whole answer so far).
    MaxLength {
        /// The limit.
        max_chars: usize,
    },
    /// Any of these terms, case-insensitive, as whole words when they start or end with a
    /// letter or digit.
    BlockedTerms {
        /// The terms as given.
        terms: Vec<String>,
        /// One pattern matching any of them.
        matcher: regex::Regex,
    },
    /// A regular expression (Rust `regex` syntax: linear time, no look-around).
    Regex {
        /// The pattern as given.
        pattern: String,
        /// It compiled.
        matcher: regex::Regex,
    },
    /// Personal data: e-mail addresses, phone numbers, card numbers (Luhn-checked), IBANs
    /// (checksum-checked).
    Pii {
        /// Which kinds (all four when not given).
        kinds: Vec<PiiKind>,
    },
    /// The text must be JSON valid against this schema.
    JsonSchema {
        /// The schema.
        schema: Value,
    },
    /// Another model or agent is asked a yes/no question about the text; "yes" triggers.
    Judge {
        /// Who answers.
        judge: Judge,
        /// The question, phrased so that "yes" means the rule is broken.
        question: String,
        /// How long the judge may take.
        timeout_ms: u64,
        /// What a judge that cannot answer means.
        on_error: OnError,
    },
}

impl RuleKind {
    /// The wire name of the rule's type.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MaxLength { .. } => "max_length",
            Self::BlockedTerms { .. } => "blocked_terms",
            Self::Regex { .. } => "regex",
            Self::Pii { .. } => "pii",
            Self::JsonSchema { .. } => "json_schema",
            Self::Judge { .. } => "judge",
        }
    }

    /// Whether the rule can only judge a whole text (not a piece of a stream).
    pub fn needs_whole_text(&self) -> bool {
        matches!(self, Self::JsonSchema { .. } | Self::Judge { .. })
    }
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// What it checks.
    pub kind: RuleKind,
    /// What it does when it triggers.
    pub action: Action,
    /// The caller's name for it, shown in violations.
    pub name: Option<String>,
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        self.to_json() == other.to_json()
    }
}

/// An agent's guardrails.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Guardrails {
    /// Rules over the caller's messages, in order.
    pub input: Vec<Rule>,
    /// Rules over the answer, in order.
    pub output: Vec<Rule>,
    /// The answer sent in place of a blocked one (a default when `None`).
    pub refusal_message: Option<String>,
}

/// One rule that triggered in a turn. Never holds the text that matched (it may be the
/// personal data a rule exists to keep out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Input or output.
    pub stage: Stage,
    /// The rule's position in its stage's list.
    pub index: usize,
    /// The rule's type (`pii`, `regex`…).
    pub rule: String,
    /// The rule's name, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What was done.
    pub action: Action,
    /// What was found, without the text itself (`2 email, 1 card`, `1,234 characters`).
    pub detail: String,
}

impl Trigger {
    /// `input[0] (pii "no-pii")`: how violations name a rule.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!(
                "{}[{}] ({} '{}')",
                self.stage.as_str(),
                self.index,
                self.rule,
                n
            ),
            None => format!("{}[{}] ({})", self.stage.as_str(), self.index, self.rule),
        }
    }
}

impl Guardrails {
    /// Whether there is no rule at all.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty() && self.output.is_empty()
    }

    /// The refusal text.
    pub fn refusal(&self) -> &str {
        self.refusal_message.as_deref().unwrap_or(DEFAULT_REFUSAL)
    }

    /// Validates `{"input": [...], "output": [...], "refusal_message": "…"}` (`null` or `{}`:
    /// no guardrails). Fields are named `guardrails.input[0].pattern` and so on.
    ///
    /// # Errors
    /// [`Invalid`] naming the failing field.
    pub fn parse(value: &Value) -> Result<Self, Invalid> {
        let obj = match value {
            Value::Null => return Ok(Self::default()),
            Value::Object(o) => o,
            _ => {
                return Err(Invalid::new(
                    "guardrails",
                    "must be an object with 'input' and/or 'output' rule lists",
                ));
            }
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !["input", "output", "refusal_message"].contains(&k.as_str()))
        {
            return Err(Invalid::new(
                format!("guardrails.{k}"),
                "is not a known field (input, output, refusal_message)",
            ));
        }
        let refusal_message = match obj.get("refusal_message") {
            None | Some(Value::Null) => None,
            Some(Value::String(s))
                if !s.trim().is_empty()
                    && s.chars().count() <= REFUSAL_MAX
                    && !s.contains('\u{0}') =>
            {
                Some(s.clone())
            }
            Some(_) => {
                return Err(Invalid::new(
                    "guardrails.refusal_message",
                    format!("must be a non-blank string of at most {REFUSAL_MAX} characters"),
                ));
            }
        };
        Ok(Self {
            input: parse_rules(Stage::Input, obj.get("input"))?,
            output: parse_rules(Stage::Output, obj.get("output"))?,
            refusal_message,
        })
    }

    /// The canonical JSON form (what [`Guardrails::parse`] reads back).
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert(
            "input".to_owned(),
            Value::Array(self.input.iter().map(Rule::to_json).collect()),
        );
        out.insert(
            "output".to_owned(),
            Value::Array(self.output.iter().map(Rule::to_json).collect()),
        );
        if let Some(r) = &self.refusal_message {
            out.insert("refusal_message".to_owned(), Value::String(r.clone()));
        }
        Value::Object(out)
    }

    /// The judges' models, with the fields that name them, for checking on save.
    pub fn judge_models(&self) -> impl Iterator<Item = &ModelSpec> {
        self.input
            .iter()
            .chain(&self.output)
            .filter_map(|r| match &r.kind {
                RuleKind::Judge {
                    judge: Judge::Model(spec),
                    ..
                } => Some(spec),
                _ => None,
            })
    }

    /// Whether the output must be held whole before any of it is sent: a rule that can only
    /// judge the whole answer (`json_schema`, `judge`) and may change it (`block`).
    pub fn output_needs_whole_answer(&self) -> bool {
        self.output
            .iter()
            .any(|r| r.kind.needs_whole_text() && r.action != Action::Flag)
    }
}

impl Rule {
    /// The canonical JSON form of the rule.
    pub fn to_json(&self) -> Value {
        let mut out = match &self.kind {
            RuleKind::MaxLength { max_chars } => {
                json!({"type": "max_length", "max_chars": max_chars})
            }
            RuleKind::BlockedTerms { terms, .. } => {
                json!({"type": "blocked_terms", "terms": terms})
            }
            RuleKind::Regex { pattern, .. } => json!({"type": "regex", "pattern": pattern}),
            RuleKind::Pii { kinds } => {
                json!({"type": "pii", "kinds": kinds.iter().map(PiiKind::as_str).collect::<Vec<_>>()})
            }
            RuleKind::JsonSchema { schema } => json!({"type": "json_schema", "schema": schema}),
            RuleKind::Judge {
                judge,
                question,
                timeout_ms,
                on_error,
            } => {
                let mut j = json!({"type": "judge", "question": question, "timeout_ms": timeout_ms,
                    "on_error": match on_error { OnError::Allow => "allow", OnError::Block => "block" }});
                match judge {
                    Judge::Model(spec) => {
                        let model = match &spec.provider_id {
                            Some(p) => format!("{p}/{}", spec.model),
                            None => spec.model.clone(),
                        };
                        j["model"] = Value::String(model);
                    }
                    Judge::Agent(key) => j["agent"] = Value::String(key.clone()),
                }
                j
            }
        };
        out["action"] = Value::String(self.action.as_str().to_owned());
        if let Some(n) = &self.name {
            out["name"] = Value::String(n.clone());
        }
        out
    }

    /// A trigger of this rule.
    pub fn trigger(&self, stage: Stage, index: usize, detail: impl Into<String>) -> Trigger {
        Trigger {
            stage,
            index,
            rule: self.kind.name().to_owned(),
            name: self.name.clone(),
            action: self.action,
            detail: detail.into(),
        }
    }
}

fn parse_rules(stage: Stage, v: Option<&Value>) -> Result<Vec<Rule>, Invalid> {
    let field = format!("guardrails.{}", stage.as_str());
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(Invalid::new(field, "must be a list of rules")),
    };
    if list.len() > RULES_MAX {
        return Err(Invalid::new(field, format!("at most {RULES_MAX} rules")));
    }
    list.iter()
        .enumerate()
        .map(|(i, r)| parse_rule(stage, &format!("{field}[{i}]"), r))
        .collect()
}

const KNOWN: &[(&str, &[&str])] = &[
    ("max_length", &["max_chars"]),
    ("blocked_terms", &["terms"]),
    ("regex", &["pattern"]),
    ("pii", &["kinds"]),
    ("json_schema", &["schema"]),
    (
        "judge",
        &["model", "agent", "question", "timeout_ms", "on_error"],
    ),
];

fn text_field<'a>(field: &str, v: Option<&'a Value>, max: usize) -> Result<&'a str, Invalid> {
    match v {
        Some(Value::String(s))
            if !s.is_empty() && s.chars().count() <= max && !s.contains('\u{0}') =>
        {
            Ok(s)
        }
        _ => Err(Invalid::new(
            field,
            format!("must be a non-empty string of at most {max} characters"),
        )),
    }
}

fn parse_rule(stage: Stage, field: &str, v: &Value) -> Result<Rule, Invalid> {
    let Value::Object(r) = v else {
        return Err(Invalid::new(field, "must be an object with a 'type'"));
    };
    let types: Vec<&str> = KNOWN.iter().map(|(t, _)| *t).collect();
    let kind_name = r.get("type").and_then(Value::as_str).unwrap_or_default();
    let Some((_, own)) = KNOWN.iter().find(|(t, _)| *t == kind_name) else {
        return Err(Invalid::new(
            format!("{field}.type"),
            format!("must be one of {}", types.join(", ")),
        )
        .with("allowed", types));
    };
    if let Some(k) = r
        .keys()
        .find(|k| !["type", "action", "name"].contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        return Err(Invalid::new(
            format!("{field}.{k}"),
            format!("is not a field of a '{kind_name}' rule"),
        ));
    }
    let action = Action::parse(&format!("{field}.action"), r.get("action"))?;
    let name = match r.get("name") {
        None | Some(Value::Null) => None,
        Some(v) => Some(text_field(&format!("{field}.name"), Some(v), 64)?.to_owned()),
    };
    let at = |k: &str| format!("{field}.{k}");
    let kind = match kind_name {
        "max_length" => {
            let max_chars = r
                .get("max_chars")
                .and_then(Value::as_u64)
                .filter(|m| (1..=10_000_000).contains(m))
                .ok_or_else(|| {
                    Invalid::new(at("max_chars"), "must be an integer from 1 to 10000000")
                })?;
            RuleKind::MaxLength {
                max_chars: usize::try_from(max_chars).unwrap_or(usize::MAX),
            }
        }
        "blocked_terms" => {
            let Some(Value::Array(list)) = r.get("terms") else {
                return Err(Invalid::new(at("terms"), "must be a list of terms"));
            };
            if list.is_empty() || list.len() > TERMS_MAX {
                return Err(Invalid::new(
                    at("terms"),
                    format!("must hold 1 to {TERMS_MAX} terms"),
                ));
            }
            let mut terms = Vec::with_capacity(list.len());
            for (i, t) in list.iter().enumerate() {
                let t = text_field(&format!("{field}.terms[{i}]"), Some(t), 200)?;
                if t.trim().is_empty() {
                    return Err(Invalid::new(
                        format!("{field}.terms[{i}]"),
                        "must not be blank",
                    ));
                }
                terms.push(t.to_owned());
            }
            let matcher = terms_matcher(&terms).map_err(|e| Invalid::new(at("terms"), e))?;
            RuleKind::BlockedTerms { terms, matcher }
        }
        "regex" => {
            let pattern = text_field(&at("pattern"), r.get("pattern"), PATTERN_MAX)?.to_owned();
            let matcher = compile(&pattern).map_err(|e| Invalid::new(at("pattern"), e))?;
            RuleKind::Regex { pattern, matcher }
        }
        "pii" => {
            let kinds = match r.get("kinds") {
                None | Some(Value::Null) => PiiKind::ALL.to_vec(),
                Some(Value::Array(list)) if !list.is_empty() => {
                    let mut kinds = Vec::new();
                    for (i, k) in list.iter().enumerate() {
                        let k = k.as_str().and_then(PiiKind::parse).ok_or_else(|| {
                            Invalid::new(
                                format!("{field}.kinds[{i}]"),
                                "must be one of email, phone, card, iban",
                            )
                            .with("allowed", vec!["email", "phone", "card", "iban"])
                        })?;
                        if !kinds.contains(&k) {
                            kinds.push(k);
                        }
                    }
                    kinds
                }
                Some(_) => {
                    return Err(Invalid::new(
                        at("kinds"),
                        "must be a non-empty list of email, phone, card, iban",
                    ));
                }
            };
            RuleKind::Pii { kinds }
        }
        "json_schema" => {
            let schema = r.get("schema").cloned().unwrap_or(Value::Null);
            crate::schema::check(&schema).map_err(|e| Invalid::new(at("schema"), e))?;
            RuleKind::JsonSchema { schema }
        }
        _ => {
            let judge = match (r.get("model"), r.get("agent")) {
                (Some(m), None) => {
                    let m = text_field(&at("model"), Some(m), 256)?;
                    Judge::Model(ModelSpec {
                        provider_id: None,
                        model: m.to_owned(),
                        field: at("model"),
                    })
                }
                (None, Some(a)) => {
                    let a = text_field(&at("agent"), Some(a), crate::agent::KEY_MAX)?;
                    crate::agent::AgentKey::parse(a).map_err(|e| e.renamed(at("agent")))?;
                    Judge::Agent(a.to_owned())
                }
                _ => {
                    return Err(Invalid::new(
                        at("model"),
                        "a judge needs exactly one of 'model' and 'agent'",
                    ));
                }
            };
            let question = text_field(&at("question"), r.get("question"), PATTERN_MAX)?.to_owned();
            let timeout_ms = match r.get("timeout_ms") {
                None | Some(Value::Null) => JUDGE_TIMEOUT_DEFAULT_MS,
                Some(v) => v
                    .as_u64()
                    .filter(|t| (100..=120_000).contains(t))
                    .ok_or_else(|| {
                        Invalid::new(at("timeout_ms"), "must be an integer from 100 to 120000")
                    })?,
            };
            let on_error = match r.get("on_error").and_then(Value::as_str) {
                None if r.get("on_error").is_none() => OnError::Allow,
                Some("allow") => OnError::Allow,
                Some("block") => OnError::Block,
                _ => {
                    return Err(Invalid::new(
                        at("on_error"),
                        "must be 'allow' (fail open) or 'block' (fail closed)",
                    )
                    .with("allowed", vec!["allow", "block"]));
                }
            };
            RuleKind::Judge {
                judge,
                question,
                timeout_ms,
                on_error,
            }
        }
    };
    if action == Action::Redact && kind.needs_whole_text() {
        return Err(Invalid::new(
            format!("{field}.action"),
            format!("a '{kind_name}' rule cannot redact: use block or flag"),
        ));
    }
    let _ = stage;
    Ok(Rule { kind, action, name })
}

/// Compiles a caller's pattern with bounded size (the `regex` crate matches in linear time).
fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| format!("is not a valid regular expression: {e}"))
}

/// One case-insensitive pattern for a list of terms: whole words where a term starts or ends
/// with a word character.
fn terms_matcher(terms: &[String]) -> Result<regex::Regex, String> {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let alternatives: Vec<String> = terms
        .iter()
        .map(|t| {
            format!(
                "{}{}{}",
                if word(t.chars().next()) { r"\b" } else { "" },
                regex::escape(t),
                if word(t.chars().last()) { r"\b" } else { "" }
            )
        })
        .collect();
    regex::RegexBuilder::new(&format!("(?i)(?:{})", alternatives.join("|")))
        .size_limit(1 << 23)
        .build()
        .map_err(|e| format!("cannot be matched: {e}"))
}

#[cfg(test)]
mod tests;
