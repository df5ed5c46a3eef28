//! Test sets and evaluation runs (seed 000): cases with an input and assertions, run against
//! several configurations (an agent, an agent version, or an inline preamble + model) to prove
//! a prompt change before release. See `docs/evals.md`.
//!
//! A case's JSON is its one spelling everywhere: the API's bodies, the JSONL import/export
//! lines and the stored rows all read and write it through [`TestCase::from_json`] and
//! [`TestCase::to_json`].

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::error::Invalid;
use crate::llm::{PromptMessage, Role};
use crate::text::check_text;

/// The prefix of test set ids.
pub const TESTSET_ID_PREFIX: &str = "testset";
/// The prefix of case ids.
pub const CASE_ID_PREFIX: &str = "case";
/// The prefix of evaluation run ids.
pub const EVAL_RUN_ID_PREFIX: &str = "eval_run";
/// Longest test set name.
pub const NAME_MAX: usize = 200;
/// Longest description.
pub const DESCRIPTION_MAX: usize = 2_000;
/// Most cases in one test set.
pub const CASES_MAX: usize = 1_000;
/// Most assertions on one case.
pub const ASSERTIONS_MAX: usize = 20;
/// Largest case, serialised, in bytes.
pub const CASE_MAX_BYTES: usize = 64 * 1024;
/// Longest regular expression.
pub const PATTERN_MAX: usize = 1_000;
/// Most configurations in one run.
pub const CONFIGURATIONS_MAX: usize = 10;
/// Most repeats of each case.
pub const REPEATS_MAX: u32 = 10;
/// Most cases run at once by one run.
pub const CONCURRENCY_MAX: u32 = 16;
/// Most results (cases × configurations × repeats) in one run.
pub const RESULTS_MAX: usize = 5_000;
/// The judge's pass mark when an assertion gives none.
pub const DEFAULT_JUDGE_THRESHOLD: f64 = 0.7;

crate::ids::prefixed_id!(
    /// A test set's id: `testset_` and 32 hex digits.
    TestSetId,
    TESTSET_ID_PREFIX,
    "testset_id",
    "a test set id"
);
crate::ids::prefixed_id!(
    /// A case's id: `case_` and 32 hex digits.
    CaseId,
    CASE_ID_PREFIX,
    "case_id",
    "a case id"
);
crate::ids::prefixed_id!(
    /// An evaluation run's id: `eval_run_` and 32 hex digits.
    EvalRunId,
    EVAL_RUN_ID_PREFIX,
    "eval_run_id",
    "an evaluation run id"
);

/// What a case sends.
#[derive(Debug, Clone, PartialEq)]
pub enum CaseInput {
    /// One user message.
    Text(String),
    /// A conversation (system, user and assistant messages), answered as a whole.
    Messages(Vec<PromptMessage>),
}

/// One check of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Assertion {
    /// The answer (trimmed) equals `value` (a string; any other JSON: the answer parsed as
    /// JSON equals it).
    Equals {
        /// The expected answer.
        value: Value,
        /// Compare ignoring letter case.
        ignore_case: bool,
    },
    /// The answer contains `value`.
    Contains {
        /// The text looked for.
        value: String,
        /// Compare ignoring letter case.
        ignore_case: bool,
    },
    /// The answer does not contain `value`.
    NotContains {
        /// The text that must not appear.
        value: String,
        /// Compare ignoring letter case.
        ignore_case: bool,
    },
    /// The answer matches a regular expression (anywhere in it).
    Regex {
        /// The expression (Rust `regex` syntax).
        pattern: String,
    },
    /// The answer is JSON (a fenced code block around it is allowed) valid against a schema.
    JsonSchema {
        /// The schema.
        schema: Value,
    },
    /// The turn took at most this long, end to end.
    MaxLatencyMs {
        /// Milliseconds.
        value: u64,
    },
    /// The answer used at most this many completion tokens (over every model call).
    MaxTokens {
        /// Tokens.
        value: u64,
    },
    /// The model called this tool (the agent's own or a caller's), with at least these
    /// arguments.
    ToolCalled {
        /// The tool's name.
        name: String,
        /// Arguments that must be among the call's (each key equal).
        arguments: Option<Map<String, Value>>,
    },
    /// A judge (an agent or a model) scores the answer against a rubric from 0 to 1.
    Judge {
        /// What a good answer does.
        rubric: String,
        /// The pass mark (default 0.7).
        threshold: f64,
        /// The judge: an agent key or `provider/model`; the run's `judge` when absent.
        judge: Option<String>,
    },
}

/// Every assertion kind, as spelled in `type`.
pub const ASSERTION_KINDS: &[&str] = &[
    "equals",
    "contains",
    "not_contains",
    "regex",
    "json_schema",
    "max_latency_ms",
    "max_tokens",
    "tool_called",
    "judge",
];

impl Assertion {
    /// Its `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Equals { .. } => "equals",
            Self::Contains { .. } => "contains",
            Self::NotContains { .. } => "not_contains",
            Self::Regex { .. } => "regex",
            Self::JsonSchema { .. } => "json_schema",
            Self::MaxLatencyMs { .. } => "max_latency_ms",
            Self::MaxTokens { .. } => "max_tokens",
            Self::ToolCalled { .. } => "tool_called",
            Self::Judge { .. } => "judge",
        }
    }

    /// Reads one assertion; `expected` is the case's, the default `value` of `equals`.
    ///
    /// # Errors
    /// [`Invalid`] naming `field` or one of its members.
    pub fn from_json(
        field: &str,
        value: &Value,
        expected: Option<&Value>,
    ) -> Result<Self, Invalid> {
        let Value::Object(o) = value else {
            return Err(Invalid::new(field, "must be an object"));
        };
        let kind = o
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Invalid::new(format!("{field}.type"), "is required"))?;
        let allowed: &[&str] = match kind {
            "equals" | "contains" | "not_contains" => &["type", "value", "ignore_case"],
            "regex" => &["type", "pattern"],
            "json_schema" => &["type", "schema"],
            "max_latency_ms" | "max_tokens" => &["type", "value"],
            "tool_called" => &["type", "name", "arguments"],
            "judge" => &["type", "rubric", "threshold", "judge"],
            _ => {
                return Err(Invalid::new(
                    format!("{field}.type"),
                    format!("must be one of {}", ASSERTION_KINDS.join(", ")),
                ));
            }
        };
        if let Some(extra) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Invalid::new(
                format!("{field}.{extra}"),
                format!("is not a field of a '{kind}' assertion"),
            ));
        }
        let text = |name: &str, max: usize| -> Result<String, Invalid> {
            let f = format!("{field}.{name}");
            let v = o
                .get(name)
                .ok_or_else(|| Invalid::new(&f, "is required"))?
                .as_str()
                .ok_or_else(|| Invalid::new(&f, "must be a string"))?;
            check_text(&f, v, 1, max, true)?;
            Ok(v.to_owned())
        };
        let ignore_case = match o.get("ignore_case") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(Invalid::new(
                    format!("{field}.ignore_case"),
                    "must be a boolean",
                ));
            }
        };
        let positive = |name: &str| -> Result<u64, Invalid> {
            let f = format!("{field}.{name}");
            o.get(name)
                .ok_or_else(|| Invalid::new(&f, "is required"))?
                .as_u64()
                .filter(|n| *n >= 1)
                .ok_or_else(|| Invalid::new(&f, "must be a positive integer"))
        };
        Ok(match kind {
            "equals" => {
                let value = match o.get("value").or(expected) {
                    Some(Value::Null) | None => {
                        return Err(Invalid::new(
                            format!("{field}.value"),
                            "is required (or give the case an `expected`)",
                        ));
                    }
                    Some(v) => v.clone(),
                };
                Self::Equals { value, ignore_case }
            }
            "contains" => Self::Contains {
                value: text("value", 10_000)?,
                ignore_case,
            },
            "not_contains" => Self::NotContains {
                value: text("value", 10_000)?,
                ignore_case,
            },
            "regex" => {
                let pattern = text("pattern", PATTERN_MAX)?;
                compile(&pattern).map_err(|e| Invalid::new(format!("{field}.pattern"), e))?;
                Self::Regex { pattern }
            }
            "json_schema" => {
                let schema = o
                    .get("schema")
                    .ok_or_else(|| Invalid::new(format!("{field}.schema"), "is required"))?;
                crate::schema::check(schema)
                    .map_err(|e| Invalid::new(format!("{field}.schema"), e))?;
                Self::JsonSchema {
                    schema: schema.clone(),
                }
            }
            "max_latency_ms" => Self::MaxLatencyMs {
                value: positive("value")?,
            },
            "max_tokens" => Self::MaxTokens {
                value: positive("value")?,
            },
            "tool_called" => Self::ToolCalled {
                name: text("name", 64)?,
                arguments: match o.get("arguments") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(a)) => Some(a.clone()),
                    Some(_) => {
                        return Err(Invalid::new(
                            format!("{field}.arguments"),
                            "must be an object",
                        ));
                    }
                },
            },
            _ => Self::Judge {
                rubric: text("rubric", 10_000)?,
                threshold: match o.get("threshold") {
                    None | Some(Value::Null) => DEFAULT_JUDGE_THRESHOLD,
                    Some(t) => t
                        .as_f64()
                        .filter(|t| (0.0..=1.0).contains(t))
                        .ok_or_else(|| {
                            Invalid::new(
                                format!("{field}.threshold"),
                                "must be a number from 0 to 1",
                            )
                        })?,
                },
                judge: match o.get("judge") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(text("judge", 200)?),
                },
            },
        })
    }

    /// Its JSON.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("type".into(), json!(self.kind()));
        match self {
            Self::Equals { value, ignore_case } => {
                o.insert("value".into(), value.clone());
                if *ignore_case {
                    o.insert("ignore_case".into(), json!(true));
                }
            }
            Self::Contains { value, ignore_case } | Self::NotContains { value, ignore_case } => {
                o.insert("value".into(), json!(value));
                if *ignore_case {
                    o.insert("ignore_case".into(), json!(true));
                }
            }
            Self::Regex { pattern } => {
                o.insert("pattern".into(), json!(pattern));
            }
            Self::JsonSchema { schema } => {
                o.insert("schema".into(), schema.clone());
            }
            Self::MaxLatencyMs { value } | Self::MaxTokens { value } => {
                o.insert("value".into(), json!(value));
            }
            Self::ToolCalled { name, arguments } => {
                o.insert("name".into(), json!(name));
                if let Some(a) = arguments {
                    o.insert("arguments".into(), Value::Object(a.clone()));
                }
            }
            Self::Judge {
                rubric,
                threshold,
                judge,
            } => {
                o.insert("rubric".into(), json!(rubric));
                o.insert("threshold".into(), json!(threshold));
                if let Some(j) = judge {
                    o.insert("judge".into(), json!(j));
                }
            }
        }
        Value::Object(o)
    }
}

/// Compiles a pattern with a bounded size (a pattern cannot make the server build a huge
/// automaton).
///
/// # Errors
/// The reason, in words.
pub fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| format!("is not a valid regular expression: {e}"))
}

/// One case of a test set.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// Its id.
    pub id: CaseId,
    /// A short name, for tables.
    pub name: Option<String>,
    /// What is sent.
    pub input: CaseInput,
    /// Variables: each `{{name}}` in the input is replaced by its value.
    pub context: Map<String, Value>,
    /// The expected answer (the default of `equals`, and shown to judges).
    pub expected: Option<Value>,
    /// The checks.
    pub assertions: Vec<Assertion>,
}

const CASE_FIELDS: &[&str] = &["id", "name", "input", "context", "expected", "assertions"];

impl TestCase {
    /// Reads a case from its JSON; `field` prefixes error fields (`cases[3]`). An `id` is
    /// kept when it is a case id, else a new one is made.
    ///
    /// # Errors
    /// [`Invalid`] naming the member at fault.
    pub fn from_json(field: &str, value: &Value) -> Result<Self, Invalid> {
        let Value::Object(o) = value else {
            return Err(Invalid::new(field, "must be an object"));
        };
        let at = |name: &str| {
            if field.is_empty() {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            }
        };
        if let Some(extra) = o.keys().find(|k| !CASE_FIELDS.contains(&k.as_str())) {
            return Err(Invalid::new(at(extra), "is not a field of a case"));
        }
        if value.to_string().len() > CASE_MAX_BYTES {
            return Err(Invalid::new(
                if field.is_empty() { "case" } else { field },
                format!("must be at most {CASE_MAX_BYTES} bytes of JSON"),
            ));
        }
        let id = match o.get("id") {
            None | Some(Value::Null) => CaseId::generate(),
            Some(Value::String(s)) => CaseId::parse(s).map_err(|e| e.renamed(at("id")))?,
            Some(_) => return Err(Invalid::new(at("id"), "must be a case id")),
        };
        let name = match o.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                check_text(&at("name"), s, 1, NAME_MAX, false)?;
                Some(s.clone())
            }
            Some(_) => return Err(Invalid::new(at("name"), "must be a string")),
        };
        let input = match o.get("input") {
            None | Some(Value::Null) => return Err(Invalid::new(at("input"), "is required")),
            Some(Value::String(s)) => {
                check_text(&at("input"), s, 1, 200_000, true)?;
                CaseInput::Text(s.clone())
            }
            Some(Value::Array(items)) => {
                if items.is_empty() {
                    return Err(Invalid::new(at("input"), "must not be empty"));
                }
                let mut messages = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let f = format!("{}[{i}]", at("input"));
                    let role = item
                        .get("role")
                        .and_then(Value::as_str)
                        .and_then(Role::parse)
                        .filter(|r| matches!(r, Role::System | Role::User | Role::Assistant))
                        .ok_or_else(|| {
                            Invalid::new(format!("{f}.role"), "must be system, user or assistant")
                        })?;
                    let content = item
                        .get("content")
                        .and_then(Value::as_str)
                        .ok_or_else(|| Invalid::new(format!("{f}.content"), "must be a string"))?;
                    check_text(&format!("{f}.content"), content, 1, 200_000, true)?;
                    if let Some(extra) = item
                        .as_object()
                        .and_then(|m| m.keys().find(|k| !matches!(k.as_str(), "role" | "content")))
                    {
                        return Err(Invalid::new(
                            format!("{f}.{extra}"),
                            "is not a field of a message",
                        ));
                    }
                    messages.push(PromptMessage::new(role, content));
                }
                if !messages.iter().any(|m| m.role == Role::User) {
                    return Err(Invalid::new(at("input"), "must hold a user message"));
                }
                CaseInput::Messages(messages)
            }
            Some(_) => {
                return Err(Invalid::new(
                    at("input"),
                    "must be a string or a list of messages",
                ));
            }
        };
        let context = match o.get("context") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(c)) => c.clone(),
            Some(_) => return Err(Invalid::new(at("context"), "must be an object")),
        };
        let expected = o.get("expected").filter(|v| !v.is_null()).cloned();
        let assertions = match o.get("assertions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > ASSERTIONS_MAX {
                    return Err(Invalid::new(
                        at("assertions"),
                        format!("must hold at most {ASSERTIONS_MAX} assertions"),
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        Assertion::from_json(
                            &format!("{}[{i}]", at("assertions")),
                            a,
                            expected.as_ref(),
                        )
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(_) => return Err(Invalid::new(at("assertions"), "must be a list")),
        };
        let mut case = Self {
            id,
            name,
            input,
            context,
            expected,
            assertions,
        };
        if case.assertions.is_empty() {
            // A case with an expected answer and nothing else checks that answer.
            match &case.expected {
                Some(e) => case.assertions.push(Assertion::Equals {
                    value: e.clone(),
                    ignore_case: false,
                }),
                None => {
                    return Err(Invalid::new(
                        at("assertions"),
                        "a case needs at least one assertion or an `expected` answer",
                    ));
                }
            }
        }
        Ok(case)
    }

    /// Its JSON (what [`TestCase::from_json`] reads back).
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), json!(self.id.as_str()));
        if let Some(n) = &self.name {
            o.insert("name".into(), json!(n));
        }
        o.insert(
            "input".into(),
            match &self.input {
                CaseInput::Text(t) => json!(t),
                CaseInput::Messages(ms) => Value::Array(
                    ms.iter()
                        .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                        .collect(),
                ),
            },
        );
        if !self.context.is_empty() {
            o.insert("context".into(), Value::Object(self.context.clone()));
        }
        if let Some(e) = &self.expected {
            o.insert("expected".into(), e.clone());
        }
        o.insert(
            "assertions".into(),
            Value::Array(self.assertions.iter().map(Assertion::to_json).collect()),
        );
        Value::Object(o)
    }

    /// The messages sent: the input with each `{{name}}` replaced by its context value.
    pub fn messages(&self) -> Vec<PromptMessage> {
        let fill = |text: &str| fill_variables(text, &self.context);
        match &self.input {
            CaseInput::Text(t) => vec![PromptMessage::new(Role::User, fill(t))],
            CaseInput::Messages(ms) => ms
                .iter()
                .map(|m| PromptMessage::new(m.role, fill(&m.content)))
                .collect(),
        }
    }

    /// The input as one text (for judges and tables).
    pub fn input_text(&self) -> String {
        self.messages()
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The judges its assertions name.
    pub fn judges(&self) -> impl Iterator<Item = Option<&str>> {
        self.assertions.iter().filter_map(|a| match a {
            Assertion::Judge { judge, .. } => Some(judge.as_deref()),
            _ => None,
        })
    }
}

/// `text` with each `{{name}}` replaced by `context[name]` (strings as they are, other
/// values as JSON); unknown names are left.
fn fill_variables(text: &str, context: &Map<String, Value>) -> String {
    if context.is_empty() || !text.contains("{{") {
        return text.to_owned();
    }
    let mut out = text.to_owned();
    for (name, value) in context {
        let with = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out = out.replace(&format!("{{{{{name}}}}}", name = name), &with);
        out = out.replace(&format!("{{{{ {name} }}}}", name = name), &with);
    }
    out
}

/// Reads a list of cases (`cases` of a create).
///
/// # Errors
/// [`Invalid`] naming the case at fault; duplicate ids are refused.
pub fn cases_from_json(field: &str, items: &[Value]) -> Result<Vec<TestCase>, Invalid> {
    if items.len() > CASES_MAX {
        return Err(Invalid::new(
            field,
            format!("must hold at most {CASES_MAX} cases"),
        ));
    }
    let cases: Vec<TestCase> = items
        .iter()
        .enumerate()
        .map(|(i, c)| TestCase::from_json(&format!("{field}[{i}]"), c))
        .collect::<Result<_, _>>()?;
    check_unique(field, &cases)?;
    Ok(cases)
}

/// Refuses two cases with one id.
///
/// # Errors
/// [`Invalid`] naming the second.
pub fn check_unique(field: &str, cases: &[TestCase]) -> Result<(), Invalid> {
    let mut seen = std::collections::HashSet::new();
    for (i, c) in cases.iter().enumerate() {
        if !seen.insert(c.id.as_str()) {
            return Err(Invalid::new(
                format!("{field}[{i}].id"),
                format!("'{}' is used by an earlier case", c.id),
            ));
        }
    }
    Ok(())
}

/// Reads JSONL: one case a line, blank lines skipped.
///
/// # Errors
/// [`Invalid`] naming the line (`line 3`).
pub fn cases_from_jsonl(text: &str) -> Result<Vec<TestCase>, Invalid> {
    let mut cases = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let field = format!("line {}", n + 1);
        let value: Value = serde_json::from_str(line)
            .map_err(|e| Invalid::new(&field, format!("is not JSON: {e}")))?;
        cases.push(TestCase::from_json(&field, &value)?);
        if cases.len() > CASES_MAX {
            return Err(Invalid::new(
                "body",
                format!("must hold at most {CASES_MAX} cases"),
            ));
        }
    }
    if cases.is_empty() {
        return Err(Invalid::new(
            "body",
            "holds no case (one JSON object a line)",
        ));
    }
    check_unique("cases", &cases)?;
    Ok(cases)
}

/// The cases as JSONL.
pub fn cases_to_jsonl(cases: &[TestCase]) -> String {
    let mut out = String::new();
    for c in cases {
        out.push_str(&c.to_json().to_string());
        out.push('\n');
    }
    out
}

/// A test set.
#[derive(Debug, Clone, PartialEq)]
pub struct TestSet {
    /// Its id.
    pub id: TestSetId,
    /// Its unique name.
    pub name: String,
    /// What it checks.
    pub description: Option<String>,
    /// Its cases, in order.
    pub cases: Vec<TestCase>,
    /// Changes on every write (optimistic concurrency).
    pub revision: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A test set as lists show it: no cases, their count.
#[derive(Debug, Clone, PartialEq)]
pub struct TestSetSummary {
    /// Its id.
    pub id: TestSetId,
    /// Its name.
    pub name: String,
    /// What it checks.
    pub description: Option<String>,
    /// How many cases it has.
    pub case_count: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl TestSet {
    /// Its summary.
    pub fn summary(&self) -> TestSetSummary {
        TestSetSummary {
            id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            case_count: self.cases.len() as u64,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Checks a test set's name.
///
/// # Errors
/// [`Invalid`] naming `name`.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    check_text("name", name, 1, NAME_MAX, false)
}

/// Checks a description.
///
/// # Errors
/// [`Invalid`] naming `description`.
pub fn check_description(description: &str) -> Result<(), Invalid> {
    check_text("description", description, 0, DESCRIPTION_MAX, true)
}

/// What answers a run's cases.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// An agent: its live definition, or a version; optionally with other instructions in
    /// place of its own (a candidate prompt, tools and settings unchanged).
    Agent {
        /// The agent's key or id.
        agent: String,
        /// A version to pin.
        version: Option<u32>,
        /// Instructions that replace the agent's own.
        instructions: Option<String>,
    },
    /// A model with inline instructions and parameters.
    Inline {
        /// `provider/model` or a bare model name.
        model: String,
        /// The system instructions (`preamble`).
        instructions: Option<String>,
        /// Temperature.
        temperature: Option<f64>,
        /// Top-p.
        top_p: Option<f64>,
        /// Answer length limit.
        max_tokens: Option<u32>,
    },
}

/// One configuration of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    /// Its label in summaries (unique within the run).
    pub label: String,
    /// What answers.
    pub subject: Subject,
}

const AGENT_FIELDS: &[&str] = &[
    "label",
    "agent",
    "agent_id",
    "version",
    "preamble",
    "instructions",
];
const INLINE_FIELDS: &[&str] = &[
    "label",
    "model",
    "preamble",
    "instructions",
    "temperature",
    "top_p",
    "max_tokens",
];

impl Configuration {
    /// Reads a configuration.
    ///
    /// # Errors
    /// [`Invalid`] naming the member at fault.
    pub fn from_json(field: &str, value: &Value) -> Result<Self, Invalid> {
        let Value::Object(o) = value else {
            return Err(Invalid::new(field, "must be an object"));
        };
        let at = |name: &str| format!("{field}.{name}");
        let agent = o.get("agent").or_else(|| o.get("agent_id"));
        let allowed = if agent.is_some() {
            AGENT_FIELDS
        } else {
            INLINE_FIELDS
        };
        if let Some(extra) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Invalid::new(
                at(extra),
                if agent.is_some() {
                    "is not a field of an agent configuration (agent, version, preamble or instructions, label)"
                } else {
                    "is not a field of an inline configuration (model, preamble or instructions, temperature, top_p, max_tokens, label)"
                },
            ));
        }
        let label = match o.get("label") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                check_text(&at("label"), s, 1, 100, false)?;
                Some(s.clone())
            }
            Some(_) => return Err(Invalid::new(at("label"), "must be a string")),
        };
        let instructions = match (o.get("preamble"), o.get("instructions")) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    at("instructions"),
                    "give `preamble` or `instructions`, not both",
                ));
            }
            (Some(v), None) | (None, Some(v)) if !v.is_null() => {
                let name = if o.contains_key("preamble") {
                    "preamble"
                } else {
                    "instructions"
                };
                let text = v
                    .as_str()
                    .ok_or_else(|| Invalid::new(at(name), "must be a string"))?;
                check_text(&at(name), text, 0, 100_000, true)?;
                Some(text.to_owned())
            }
            _ => None,
        };
        let subject = if let Some(agent) = agent {
            let agent = agent
                .as_str()
                .filter(|a| !a.trim().is_empty())
                .ok_or_else(|| Invalid::new(at("agent"), "must be an agent key or id"))?;
            let version = match o.get("version") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .filter(|n| *n >= 1)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| Invalid::new(at("version"), "must be a version number"))?,
                ),
            };
            Subject::Agent {
                agent: agent.to_owned(),
                version,
                instructions,
            }
        } else {
            let model = o
                .get("model")
                .and_then(Value::as_str)
                .filter(|m| !m.trim().is_empty())
                .ok_or_else(|| {
                    Invalid::new(
                        at("model"),
                        "is required (a configuration names an `agent` or a `model`)",
                    )
                })?;
            check_text(&at("model"), model, 1, 200, false)?;
            let number = |name: &str, max: f64| -> Result<Option<f64>, Invalid> {
                match o.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v
                        .as_f64()
                        .filter(|x| (0.0..=max).contains(x))
                        .map(Some)
                        .ok_or_else(|| {
                            Invalid::new(at(name), format!("must be a number from 0 to {max}"))
                        }),
                }
            };
            Subject::Inline {
                model: model.to_owned(),
                instructions,
                temperature: number("temperature", 2.0)?,
                top_p: number("top_p", 1.0)?,
                max_tokens: match o.get("max_tokens") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_u64()
                            .filter(|n| *n >= 1)
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| {
                                Invalid::new(at("max_tokens"), "must be a positive integer")
                            })?,
                    ),
                },
            }
        };
        let label = label.unwrap_or_else(|| match &subject {
            Subject::Agent {
                agent,
                version: Some(v),
                ..
            } => format!("{agent}@{v}"),
            Subject::Agent { agent, .. } => agent.clone(),
            Subject::Inline { model, .. } => model.clone(),
        });
        Ok(Self { label, subject })
    }

    /// Its JSON (what [`Configuration::from_json`] reads back).
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("label".into(), json!(self.label));
        match &self.subject {
            Subject::Agent {
                agent,
                version,
                instructions,
            } => {
                o.insert("agent".into(), json!(agent));
                if let Some(v) = version {
                    o.insert("version".into(), json!(v));
                }
                if let Some(i) = instructions {
                    o.insert("preamble".into(), json!(i));
                }
            }
            Subject::Inline {
                model,
                instructions,
                temperature,
                top_p,
                max_tokens,
            } => {
                o.insert("model".into(), json!(model));
                let optional = [
                    ("preamble", instructions.as_ref().map(|i| json!(i))),
                    ("temperature", temperature.map(|t| json!(t))),
                    ("top_p", top_p.map(|t| json!(t))),
                    ("max_tokens", max_tokens.map(|t| json!(t))),
                ];
                for (name, v) in optional {
                    if let Some(v) = v {
                        o.insert(name.into(), v);
                    }
                }
            }
        }
        Value::Object(o)
    }
}

/// Where a run is in its life: the words of a task's (`pending`, `running`, `completed`,
/// `failed`, `cancelled`), with the same meanings.
pub use crate::task::TaskStatus as EvalStatus;

/// An evaluation run.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRun {
    /// Its id.
    pub id: EvalRunId,
    /// The test set run.
    pub testset_id: TestSetId,
    /// Its name when the run started.
    pub testset_name: String,
    /// Where it is.
    pub status: EvalStatus,
    /// What answers, in order.
    pub configurations: Vec<Configuration>,
    /// The cases as they were when the run started.
    pub cases: Vec<TestCase>,
    /// Cases run at once.
    pub concurrency: u32,
    /// Times each case runs per configuration.
    pub repeats: u32,
    /// The judge of `judge` assertions that name none.
    pub judge: Option<String>,
    /// Results expected (cases × configurations × repeats).
    pub total: u64,
    /// Results stored so far (filled in on reads).
    pub done: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// Who started it.
    pub created_by: Option<String>,
    /// The runner holding it (`<replica>/eval`).
    pub lease_owner: Option<String>,
    /// When the runner's lease ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Runners that took it so far.
    pub attempts: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When a runner first took it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

/// What a run is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvalRun {
    /// The configurations.
    pub configurations: Vec<Configuration>,
    /// Cases at once (1 to 16, default 4).
    pub concurrency: u32,
    /// Repeats (1 to 10, default 1).
    pub repeats: u32,
    /// The default judge.
    pub judge: Option<String>,
}

impl NewEvalRun {
    /// Reads and checks a run's request.
    ///
    /// # Errors
    /// [`Invalid`] naming the field at fault.
    pub fn new(
        configurations: &[Value],
        concurrency: Option<u64>,
        repeats: Option<u64>,
        judge: Option<String>,
    ) -> Result<Self, Invalid> {
        if configurations.is_empty() {
            return Err(Invalid::new(
                "configurations",
                "must hold at least one configuration",
            ));
        }
        if configurations.len() > CONFIGURATIONS_MAX {
            return Err(Invalid::new(
                "configurations",
                format!("must hold at most {CONFIGURATIONS_MAX} configurations"),
            ));
        }
        let configurations: Vec<Configuration> = configurations
            .iter()
            .enumerate()
            .map(|(i, c)| Configuration::from_json(&format!("configurations[{i}]"), c))
            .collect::<Result<_, _>>()?;
        let mut labels = std::collections::HashSet::new();
        for (i, c) in configurations.iter().enumerate() {
            if !labels.insert(c.label.as_str()) {
                return Err(Invalid::new(
                    format!("configurations[{i}].label"),
                    format!(
                        "'{}' labels an earlier configuration: give each a distinct label",
                        c.label
                    ),
                ));
            }
        }
        let bounded = |field: &str, v: Option<u64>, default: u32, max: u32| match v {
            None => Ok(default),
            Some(n) if (1..=u64::from(max)).contains(&n) => Ok(u32::try_from(n).unwrap_or(max)),
            Some(_) => Err(Invalid::new(field, format!("must be from 1 to {max}"))),
        };
        if let Some(j) = &judge {
            check_text("judge", j, 1, 200, false)?;
        }
        Ok(Self {
            configurations,
            concurrency: bounded("concurrency", concurrency, 4, CONCURRENCY_MAX)?,
            repeats: bounded("repeats", repeats, 1, REPEATS_MAX)?,
            judge,
        })
    }
}

/// A run's filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalRunFilter {
    /// Runs of this test set.
    pub testset_id: Option<TestSetId>,
    /// Runs in this status.
    pub status: Option<EvalStatus>,
    /// Runs this caller started.
    pub created_by: Option<String>,
}

/// One assertion's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The assertion's `type`.
    pub kind: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// Why, in words.
    pub reason: String,
    /// The judge's score, for `judge`.
    pub score: Option<f64>,
}

impl Verdict {
    /// Its JSON.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"type": self.kind, "passed": self.passed, "reason": self.reason});
        if let (Some(s), Value::Object(o)) = (self.score, &mut v) {
            o.insert("score".into(), json!(s));
        }
        v
    }
}

/// One case's result under one configuration (one repeat).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalResult {
    /// The run.
    pub run_id: EvalRunId,
    /// The configuration's position in the run.
    pub configuration: u32,
    /// The case.
    pub case_id: CaseId,
    /// Which repeat (0-based).
    pub repeat: u32,
    /// Every assertion held (and the turn did not fail).
    pub passed: bool,
    /// The answer's text.
    pub output: String,
    /// The assertions' verdicts, in the case's order.
    pub verdicts: Vec<Verdict>,
    /// The turn's failure, when it failed.
    pub error: Option<String>,
    /// The turn's time, end to end.
    pub latency_ms: u64,
    /// Prompt tokens (every model call of the turn).
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// The model that answered last.
    pub model: Option<String>,
    /// The tool calls the model made (name and arguments).
    pub tool_calls: Vec<Value>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// One configuration's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The configuration's label.
    pub label: String,
    /// Results in.
    pub results: u64,
    /// Results that passed.
    pub passed: u64,
    /// `passed / results` (0 when none).
    pub pass_rate: f64,
    /// Turns that failed (counted as not passed).
    pub errors: u64,
    /// Per assertion kind: `(passed, total)`.
    pub assertions: Vec<(&'static str, u64, u64)>,
    /// Median latency, ms.
    pub latency_p50_ms: Option<u64>,
    /// 95th percentile latency, ms.
    pub latency_p95_ms: Option<u64>,
    /// Prompt tokens in all.
    pub prompt_tokens: u64,
    /// Completion tokens in all.
    pub completion_tokens: u64,
}

/// The nearest-rank percentile `p` (0–100) of sorted values.
fn percentile(sorted: &[u64], p: u64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (p * n).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank - 1).unwrap_or(0)).copied()
}

/// Each configuration's summary over `results`.
pub fn summarise(configurations: &[Configuration], results: &[EvalResult]) -> Vec<Summary> {
    configurations
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mine: Vec<&EvalResult> = results
                .iter()
                .filter(|r| r.configuration as usize == i)
                .collect();
            let mut latencies: Vec<u64> = mine
                .iter()
                .filter(|r| r.error.is_none())
                .map(|r| r.latency_ms)
                .collect();
            latencies.sort_unstable();
            let passed = mine.iter().filter(|r| r.passed).count() as u64;
            let total = mine.len() as u64;
            let assertions = ASSERTION_KINDS
                .iter()
                .filter_map(|kind| {
                    let verdicts: Vec<&Verdict> = mine
                        .iter()
                        .flat_map(|r| r.verdicts.iter())
                        .filter(|v| v.kind == *kind)
                        .collect();
                    (!verdicts.is_empty()).then(|| {
                        (
                            *kind,
                            verdicts.iter().filter(|v| v.passed).count() as u64,
                            verdicts.len() as u64,
                        )
                    })
                })
                .collect();
            #[allow(clippy::cast_precision_loss)]
            let pass_rate = if total == 0 {
                0.0
            } else {
                passed as f64 / total as f64
            };
            Summary {
                label: c.label.clone(),
                results: total,
                passed,
                pass_rate,
                errors: mine.iter().filter(|r| r.error.is_some()).count() as u64,
                assertions,
                latency_p50_ms: percentile(&latencies, 50),
                latency_p95_ms: percentile(&latencies, 95),
                prompt_tokens: mine.iter().map(|r| r.prompt_tokens).sum(),
                completion_tokens: mine.iter().map(|r| r.completion_tokens).sum(),
            }
        })
        .collect()
}

/// How one case changed between two configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct Flip {
    /// The case.
    pub case_id: CaseId,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// It passed under the base configuration.
    pub base_passed: bool,
    /// It passed under the candidate.
    pub candidate_passed: bool,
}

/// The cases whose outcome differs between configurations `base` and `candidate` (a case
/// passes under a configuration when every repeat passed), and how many did not change.
pub fn flips(run: &EvalRun, results: &[EvalResult], base: u32, candidate: u32) -> (Vec<Flip>, u64) {
    let passed = |config: u32, case: &CaseId| -> Option<bool> {
        let mine: Vec<&EvalResult> = results
            .iter()
            .filter(|r| r.configuration == config && &r.case_id == case)
            .collect();
        (!mine.is_empty()).then(|| mine.iter().all(|r| r.passed))
    };
    let mut out = Vec::new();
    let mut same = 0;
    for case in &run.cases {
        if let (Some(b), Some(c)) = (passed(base, &case.id), passed(candidate, &case.id)) {
            if b == c {
                same += 1;
            } else {
                out.push(Flip {
                    case_id: case.id.clone(),
                    name: case.name.clone(),
                    base_passed: b,
                    candidate_passed: c,
                });
            }
        }
    }
    (out, same)
}

/// What a turn produced, as assertions see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The final text.
    pub text: String,
    /// Tool calls the model made: `(name, arguments as JSON text)`.
    pub tool_calls: Vec<(String, String)>,
    /// Time, end to end.
    pub latency_ms: u64,
    /// Completion tokens, when reported.
    pub completion_tokens: Option<u64>,
}

/// The text of a JSON answer: the whole answer, or a fenced code block in it.
fn json_of(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Some(v);
    }
    let start = t.find("```")?;
    let body = &t[start + 3..];
    let body = body.strip_prefix("json").unwrap_or(body);
    let end = body.find("```")?;
    serde_json::from_str(body[..end].trim()).ok()
}

fn lower_if(text: &str, ignore_case: bool) -> String {
    if ignore_case {
        text.to_lowercase()
    } else {
        text.to_owned()
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// Checks every assertion but `judge` (returned as `None`: the runner asks the judge).
pub fn check(assertion: &Assertion, answer: &Answer) -> Option<Verdict> {
    let verdict = |passed: bool, reason: String| {
        Some(Verdict {
            kind: assertion.kind(),
            passed,
            reason,
            score: None,
        })
    };
    match assertion {
        Assertion::Equals { value, ignore_case } => match value {
            Value::String(s) => {
                let ok =
                    lower_if(answer.text.trim(), *ignore_case) == lower_if(s.trim(), *ignore_case);
                verdict(
                    ok,
                    if ok {
                        "the answer equals the expected text".to_owned()
                    } else {
                        format!(
                            "expected \"{}\", got \"{}\"",
                            shorten(s),
                            shorten(answer.text.trim())
                        )
                    },
                )
            }
            other => match json_of(&answer.text) {
                Some(got) if &got == other => {
                    verdict(true, "the answer equals the expected JSON".into())
                }
                Some(got) => verdict(
                    false,
                    format!(
                        "expected {}, got {}",
                        shorten(&other.to_string()),
                        shorten(&got.to_string())
                    ),
                ),
                None => verdict(false, "the answer is not JSON".into()),
            },
        },
        Assertion::Contains { value, ignore_case } => {
            let ok = lower_if(&answer.text, *ignore_case).contains(&lower_if(value, *ignore_case));
            verdict(
                ok,
                if ok {
                    format!("the answer contains \"{}\"", shorten(value))
                } else {
                    format!("the answer does not contain \"{}\"", shorten(value))
                },
            )
        }
        Assertion::NotContains { value, ignore_case } => {
            let found =
                lower_if(&answer.text, *ignore_case).contains(&lower_if(value, *ignore_case));
            verdict(
                !found,
                if found {
                    format!("the answer contains \"{}\"", shorten(value))
                } else {
                    format!("the answer does not contain \"{}\"", shorten(value))
                },
            )
        }
        Assertion::Regex { pattern } => match compile(pattern) {
            Ok(re) => {
                let ok = re.is_match(&answer.text);
                verdict(
                    ok,
                    format!(
                        "the answer {} /{}/",
                        if ok { "matches" } else { "does not match" },
                        shorten(pattern)
                    ),
                )
            }
            Err(e) => verdict(false, format!("the pattern {e}")),
        },
        Assertion::JsonSchema { schema } => match json_of(&answer.text) {
            None => verdict(false, "the answer is not JSON".into()),
            Some(v) => match crate::schema::validate(schema, &v) {
                Ok(()) => verdict(true, "the answer is JSON valid against the schema".into()),
                Err(e) => verdict(false, format!("the answer's JSON is not valid: {e}")),
            },
        },
        Assertion::MaxLatencyMs { value } => verdict(
            answer.latency_ms <= *value,
            format!("the turn took {} ms (at most {value})", answer.latency_ms),
        ),
        Assertion::MaxTokens { value } => match answer.completion_tokens {
            Some(n) => verdict(
                n <= *value,
                format!("the answer used {n} completion tokens (at most {value})"),
            ),
            None => verdict(false, "the provider reported no token usage".into()),
        },
        Assertion::ToolCalled { name, arguments } => {
            let named: Vec<&(String, String)> = answer
                .tool_calls
                .iter()
                .filter(|(n, _)| n == name)
                .collect();
            if named.is_empty() {
                let called: Vec<&str> = answer.tool_calls.iter().map(|(n, _)| n.as_str()).collect();
                return verdict(
                    false,
                    if called.is_empty() {
                        format!("no tool was called (expected '{name}')")
                    } else {
                        format!("'{name}' was not called (called: {})", called.join(", "))
                    },
                );
            }
            match arguments {
                None => verdict(true, format!("'{name}' was called")),
                Some(want) => {
                    let matches = named.iter().any(|(_, args)| {
                        serde_json::from_str::<Map<String, Value>>(args)
                            .is_ok_and(|got| want.iter().all(|(k, v)| got.get(k) == Some(v)))
                    });
                    verdict(
                        matches,
                        if matches {
                            format!("'{name}' was called with the expected arguments")
                        } else {
                            format!(
                                "'{name}' was called, not with {} (got {})",
                                Value::Object(want.clone()),
                                named
                                    .iter()
                                    .map(|(_, a)| a.as_str())
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            )
                        },
                    )
                }
            }
        }
        Assertion::Judge { .. } => None,
    }
}

/// The system instructions a judge gets.
pub const JUDGE_INSTRUCTIONS: &str = "You grade an AI assistant's answer against a rubric. \
Reply with one JSON object and nothing else: {\"score\": <a number from 0 to 1>, \"reason\": \"<one sentence>\"}. \
1 means the answer fully meets the rubric, 0 that it does not at all.";

/// The message a judge grades.
pub fn judge_prompt(rubric: &str, case: &TestCase, answer: &str) -> String {
    let mut p = format!(
        "Rubric:\n{rubric}\n\nThe user's input:\n{}\n",
        case.input_text()
    );
    if let Some(e) = &case.expected {
        let e = match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        p.push_str(&format!("\nA reference answer:\n{e}\n"));
    }
    p.push_str(&format!("\nThe answer to grade:\n{answer}\n"));
    p
}

/// Reads a judge's answer: a JSON object (possibly inside other text or a code fence) with a
/// `score` from 0 to 1 (or `pass`: a boolean) and a `reason`.
///
/// # Errors
/// Why it could not be read.
pub fn read_judgement(text: &str) -> Result<(f64, String), String> {
    let candidate = json_of(text).or_else(|| {
        let start = text.find('{')?;
        let end = text.rfind('}')?;
        (start < end)
            .then(|| serde_json::from_str(&text[start..=end]).ok())
            .flatten()
    });
    let Some(Value::Object(o)) = candidate else {
        return Err(format!(
            "the judge's answer is not a JSON object: \"{}\"",
            shorten(text)
        ));
    };
    let reason = o
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("the judge gave no reason")
        .to_owned();
    let score = match (o.get("score"), o.get("pass")) {
        (Some(s), _) => s
            .as_f64()
            .filter(|s| (0.0..=1.0).contains(s))
            .ok_or_else(|| format!("the judge's score {s} is not a number from 0 to 1"))?,
        (None, Some(Value::Bool(p))) => {
            if *p {
                1.0
            } else {
                0.0
            }
        }
        _ => return Err("the judge's answer has no `score`".to_owned()),
    };
    Ok((score, reason))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn answer(text: &str) -> Answer {
        Answer {
            text: text.to_owned(),
            tool_calls: vec![("lookup".into(), r#"{"id": 7, "verbose": true}"#.into())],
            latency_ms: 120,
            completion_tokens: Some(30),
        }
    }

    fn verdict(a: Value, text: &str) -> bool {
        let a = Assertion::from_json("a", &a, None).unwrap();
        check(&a, &answer(text)).unwrap().passed
    }

    #[test]
    fn every_kind_passes_and_fails() {
        let cases = [
            (
                json!({"type": "equals", "value": "Paris"}),
                " Paris\n",
                "paris",
            ),
            (
                json!({"type": "equals", "value": "paris", "ignore_case": true}),
                "PARIS",
                "Lyon",
            ),
            (
                json!({"type": "equals", "value": {"a": 1}}),
                "```json\n{\"a\": 1}\n```",
                "{\"a\": 2}",
            ),
            (
                json!({"type": "contains", "value": "refund"}),
                "a refund is due",
                "no money back",
            ),
            (
                json!({"type": "not_contains", "value": "sorry"}),
                "done",
                "sorry, no",
            ),
            (
                json!({"type": "regex", "pattern": "^\\d{3}-\\d{4}$"}),
                "555-1234",
                "5551234",
            ),
            (
                json!({"type": "json_schema", "schema": {"type": "object", "required": ["ok"]}}),
                "{\"ok\": true}",
                "{\"nope\": 1}",
            ),
        ];
        for (a, good, bad) in cases {
            assert!(verdict(a.clone(), good), "{a} should pass on {good:?}");
            assert!(!verdict(a.clone(), bad), "{a} should fail on {bad:?}");
        }
        assert!(verdict(
            json!({"type": "max_latency_ms", "value": 120}),
            "x"
        ));
        assert!(!verdict(
            json!({"type": "max_latency_ms", "value": 119}),
            "x"
        ));
        assert!(verdict(json!({"type": "max_tokens", "value": 30}), "x"));
        assert!(!verdict(json!({"type": "max_tokens", "value": 29}), "x"));
        assert!(verdict(
            json!({"type": "tool_called", "name": "lookup", "arguments": {"id": 7}}),
            "x"
        ));
        assert!(!verdict(
            json!({"type": "tool_called", "name": "lookup", "arguments": {"id": 8}}),
            "x"
        ));
        assert!(!verdict(
            json!({"type": "tool_called", "name": "other"}),
            "x"
        ));
    }

    #[test]
    fn bad_assertions_name_their_field() {
        let bad = [
            (json!({"type": "regex", "pattern": "("}), "a.pattern"),
            (json!({"type": "nope"}), "a.type"),
            (json!({"type": "contains"}), "a.value"),
            (
                json!({"type": "contains", "value": "x", "extra": 1}),
                "a.extra",
            ),
            (
                json!({"type": "judge", "rubric": "polite", "threshold": 2}),
                "a.threshold",
            ),
            (json!({"type": "max_tokens", "value": 0}), "a.value"),
            (json!({"type": "equals"}), "a.value"),
        ];
        for (a, field) in bad {
            let e = Assertion::from_json("a", &a, None).unwrap_err();
            assert_eq!(e.field, field, "{a}");
        }
    }

    #[test]
    fn a_case_round_trips_through_json_and_jsonl() {
        let case = TestCase::from_json(
            "",
            &json!({"name": "greeting", "input": "Hello {{who}}", "context": {"who": "Ada"},
                "expected": "Hello Ada", "assertions": [{"type": "contains", "value": "Ada"},
                {"type": "judge", "rubric": "friendly"}]}),
        )
        .unwrap();
        assert_eq!(case.messages()[0].content, "Hello Ada");
        let again = TestCase::from_json("", &case.to_json()).unwrap();
        assert_eq!(again, case);
        let lines = cases_to_jsonl(&[case.clone(), again.clone()]);
        let e = cases_from_jsonl(&lines).unwrap_err();
        assert_eq!(e.field, "cases[1].id", "one id twice is refused");
        let other = TestCase::from_json("", &json!({"input": "x", "expected": "x"})).unwrap();
        let back = cases_from_jsonl(&cases_to_jsonl(&[case.clone(), other.clone()])).unwrap();
        assert_eq!(back, vec![case, other]);
        assert_eq!(
            cases_from_jsonl("{\"input\": 1}\n").unwrap_err().field,
            "line 1.input"
        );
    }

    #[test]
    fn judgements_are_read_strictly() {
        assert_eq!(
            read_judgement(r#"{"score": 0.8, "reason": "ok"}"#).unwrap(),
            (0.8, "ok".into())
        );
        assert_eq!(
            read_judgement("Sure! {\"pass\": false, \"reason\": \"rude\"}")
                .unwrap()
                .0,
            0.0
        );
        assert!(read_judgement(r#"{"score": 7}"#).is_err());
        assert!(read_judgement("looks good").is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, 50), Some(10));
        assert_eq!(percentile(&v, 95), Some(19));
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[5], 95), Some(5));
    }

    #[test]
    fn configurations_get_distinct_labels() {
        let run = NewEvalRun::new(
            &[
                json!({"agent": "support"}),
                json!({"agent": "support", "version": 2}),
                json!({"model": "mock/echo", "preamble": "Be brief."}),
            ],
            None,
            None,
            None,
        )
        .unwrap();
        let labels: Vec<&str> = run
            .configurations
            .iter()
            .map(|c| c.label.as_str())
            .collect();
        assert_eq!(labels, ["support", "support@2", "mock/echo"]);
        let e = NewEvalRun::new(
            &[json!({"agent": "a"}), json!({"agent": "a"})],
            None,
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(e.field, "configurations[1].label");
        let e =
            NewEvalRun::new(&[json!({"model": "m", "agent_x": 1})], None, None, None).unwrap_err();
        assert_eq!(e.field, "configurations[0].agent_x");
    }
}
