//! Prompt optimisation: an agent's instructions rewritten from what goes wrong (the insights'
//! top issues and the failing cases of a test set), each candidate measured against the
//! current instructions on that test set, and the best one saved as a **draft version** with
//! its evidence. Nothing is ever published by an optimisation. See `docs/optimization.md`.
//!
//! The writer of candidates is a model (`optimizer_model`: an agent key or `provider/model`)
//! or, by default, the built-in deterministic writer below, which says in every candidate's
//! rationale that it is one: it turns failing assertions and reported issues into explicit
//! guidelines and worked examples, which is what a prompt engineer does first by hand.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::agent::AgentId;
use crate::error::Invalid;
use crate::eval::{Assertion, EvalRunId, TestCase, TestSetId};
use crate::llm::Role;
use crate::task::TaskStatus;

/// The prefix of optimisation ids.
pub const OPTIMIZATION_ID_PREFIX: &str = "opt";
/// Candidates written when the request names no number.
pub const DEFAULT_CANDIDATES: u32 = 3;
/// Most candidates one optimisation may ask for.
pub const MAX_CANDIDATES: u32 = 5;
/// Cases run at once by the optimisation's evaluation runs when the request names no number.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// Most failing cases shown to the writer.
pub const FAILURES_SHOWN: usize = 10;
/// What the built-in writer calls itself.
pub const BUILTIN_OPTIMIZER: &str = "built-in rule-based writer (not a language model: failing assertions and reported issues become guidelines and worked examples)";

crate::ids::prefixed_id!(
    /// An optimisation's id: `opt_` followed by 32 lowercase hex digits (a UUIDv7).
    OptimizationId,
    OPTIMIZATION_ID_PREFIX,
    "optimization_id",
    "an optimization id"
);

/// Where a running optimisation is (seed 001's `optimizationState`, less `idle`/`failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading insights and running the current instructions on the test set.
    Analyzing,
    /// Writing candidates.
    Optimizing,
    /// Running the candidates and the current instructions on the test set.
    Testing,
}

impl Phase {
    /// Its word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Analyzing => "analyzing",
            Self::Optimizing => "optimizing",
            Self::Testing => "testing",
        }
    }

    /// Reads a stored word.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "analyzing" => Some(Self::Analyzing),
            "optimizing" => Some(Self::Optimizing),
            "testing" => Some(Self::Testing),
            _ => None,
        }
    }
}

/// What was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizationRequest {
    /// The test set every candidate is measured on.
    pub testset: String,
    /// Candidates to write (1 to [`MAX_CANDIDATES`]).
    pub candidates: u32,
    /// The writer: an agent key or `provider/model`; `None`: the built-in one.
    pub optimizer_model: Option<String>,
    /// Cases run at once.
    pub concurrency: u32,
}

const REQUEST_FIELDS: &[&str] = &[
    "testset_id",
    "testset",
    "candidates",
    "optimizer_model",
    "concurrency",
];

impl OptimizationRequest {
    /// Reads `POST /agents/{id}/optimize`'s body.
    ///
    /// # Errors
    /// [`Invalid`] naming the field at fault.
    pub fn from_json(body: &Value) -> Result<Self, Invalid> {
        let Value::Object(o) = body else {
            return Err(Invalid::new("body", "must be a JSON object"));
        };
        if let Some(extra) = o.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
            return Err(Invalid::new(
                extra.clone(),
                "is not a field of an optimisation (testset_id, candidates, optimizer_model, concurrency)",
            ));
        }
        let testset = match (o.get("testset_id"), o.get("testset")) {
            (Some(Value::String(s)), None) | (None, Some(Value::String(s)))
                if !s.trim().is_empty() =>
            {
                crate::text::check_text("testset_id", s, 1, 200, false)?;
                s.clone()
            }
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    "testset_id",
                    "give `testset_id` or `testset`, not both",
                ));
            }
            (None, None) => {
                return Err(Invalid::new(
                    "testset_id",
                    "is required: the test set (id or name) the candidates are measured on",
                ));
            }
            _ => return Err(Invalid::new("testset_id", "must be a test set id or name")),
        };
        let count = |name: &str, default: u32, max: u32| -> Result<u32, Invalid> {
            match o.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=u64::from(max)).contains(n))
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        Invalid::new(name, format!("must be an integer from 1 to {max}"))
                    }),
            }
        };
        let optimizer_model = match o.get("optimizer_model") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                crate::text::check_text("optimizer_model", s, 1, 200, false)?;
                Some(s.trim().to_owned())
            }
            Some(_) => {
                return Err(Invalid::new(
                    "optimizer_model",
                    "must be an agent key or provider/model",
                ));
            }
        };
        Ok(Self {
            testset,
            candidates: count("candidates", DEFAULT_CANDIDATES, MAX_CANDIDATES)?,
            optimizer_model,
            concurrency: count("concurrency", DEFAULT_CONCURRENCY, 16)?,
        })
    }

    /// Its stored JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "testset_id": self.testset,
            "candidates": self.candidates,
            "optimizer_model": self.optimizer_model,
            "concurrency": self.concurrency,
        })
    }
}

/// One candidate's instructions and why it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The instructions.
    pub instructions: String,
    /// How it was written.
    pub rationale: String,
}

/// What an optimisation has done so far (stored as JSON; a runner that takes an
/// optimisation over goes on from here).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// The instructions being improved (the agent's live definition when it started).
    pub baseline: Option<String>,
    /// The run of the current instructions alone.
    pub baseline_run: Option<EvalRunId>,
    /// The insights' top issues it read.
    pub issues: Vec<String>,
    /// The candidates written.
    pub candidates: Vec<Candidate>,
    /// The run of the current instructions and every candidate.
    pub testing_run: Option<EvalRunId>,
    /// The comparison, once the testing run ended.
    pub evidence: Option<Value>,
}

impl Progress {
    /// Its stored JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "baseline_instructions": self.baseline,
            "baseline_run_id": self.baseline_run.as_ref().map(EvalRunId::as_str),
            "issues": self.issues,
            "candidates": self.candidates.iter().map(|c| json!({
                "instructions": c.instructions,
                "rationale": c.rationale,
            })).collect::<Vec<_>>(),
            "testing_run_id": self.testing_run.as_ref().map(EvalRunId::as_str),
            "evidence": self.evidence,
        })
    }

    /// Reads the stored JSON back (unknown or broken members are left empty).
    pub fn from_json(value: &Value) -> Self {
        let run = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .and_then(|s| EvalRunId::parse(s).ok())
        };
        Self {
            baseline: value
                .get("baseline_instructions")
                .and_then(Value::as_str)
                .map(str::to_owned),
            baseline_run: run("baseline_run_id"),
            issues: value
                .get("issues")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            candidates: value
                .get("candidates")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|c| {
                            Some(Candidate {
                                instructions: c.get("instructions")?.as_str()?.to_owned(),
                                rationale: c
                                    .get("rationale")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_owned(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            testing_run: run("testing_run_id"),
            evidence: value.get("evidence").filter(|v| !v.is_null()).cloned(),
        }
    }
}

/// An optimisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimization {
    /// Its id.
    pub id: OptimizationId,
    /// The agent optimised.
    pub agent_id: AgentId,
    /// The test set it measures on.
    pub testset_id: TestSetId,
    /// Where it is in its life (`pending`, `running`, `completed`, `failed`, `cancelled`).
    pub status: TaskStatus,
    /// Where a running one is.
    pub phase: Option<Phase>,
    /// What was asked.
    pub request: OptimizationRequest,
    /// What it has done.
    pub progress: Progress,
    /// The draft version saved, when a candidate beat the current instructions.
    pub draft_version: Option<u32>,
    /// Why it failed.
    pub error: Option<String>,
    /// Who asked (`user:<id>` / `key:<id>`).
    pub created_by: Option<String>,
    /// The runner holding it.
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Times a runner took it.
    pub attempts: u32,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When a runner first took it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

/// An agent's optimisation state (seed 001's `optimizationState`): the phase of the running
/// optimisation (`analyzing` while it waits for a runner), `failed` when the latest one
/// failed, else `idle`.
pub fn state_of(latest: Option<&Optimization>) -> &'static str {
    match latest {
        Some(o) if o.status == TaskStatus::Pending => Phase::Analyzing.as_str(),
        Some(o) if o.status == TaskStatus::Running => o.phase.unwrap_or(Phase::Analyzing).as_str(),
        Some(o) if o.status == TaskStatus::Failed => "failed",
        _ => "idle",
    }
}

/// A failing case as the writer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The case.
    pub case: TestCase,
    /// What the current instructions answered.
    pub output: String,
    /// Why each failing assertion failed.
    pub reasons: Vec<String>,
}

/// The last user message of a case, for prompts and examples.
pub fn case_question(case: &TestCase) -> String {
    case.messages()
        .into_iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content)
        .unwrap_or_default()
}

fn expected_text(case: &TestCase) -> Option<String> {
    case.expected.as_ref().map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// A guideline that would make `assertion` pass, if one can be said.
fn guideline(case: &TestCase, assertion: &Assertion) -> Option<String> {
    Some(match assertion {
        Assertion::Equals { value, .. } => {
            let v = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!(
                "When asked \"{}\", answer exactly: {v}",
                case_question(case)
            )
        }
        Assertion::Contains { value, .. } => {
            format!("Include \"{value}\" in your answer whenever it applies.")
        }
        Assertion::NotContains { value, .. } => format!("Never write \"{value}\"."),
        Assertion::Regex { pattern } => {
            format!("Your answer must match the regular expression {pattern}.")
        }
        Assertion::JsonSchema { schema } => {
            format!("Answer with JSON only, valid against this JSON Schema: {schema}")
        }
        Assertion::MaxLatencyMs { .. } => "Answer briefly and directly.".to_owned(),
        Assertion::MaxTokens { value } => format!(
            "Keep every answer under about {} words.",
            (value * 3 / 4).max(1)
        ),
        Assertion::ToolCalled { name, .. } => {
            format!("Use the tool `{name}` whenever a request calls for it.")
        }
        Assertion::Judge { rubric, .. } => {
            format!("Make sure every answer meets this standard: {rubric}")
        }
    })
}

/// The built-in writer's candidates: guidelines from the failing assertions and the issues,
/// worked examples from failing cases with an expected answer, and both; at most `count`
/// (three kinds, so at most three distinct candidates).
pub fn builtin_candidates(
    baseline: &str,
    failures: &[Failure],
    issues: &[String],
    count: u32,
) -> Vec<Candidate> {
    let mut rules: Vec<String> = Vec::new();
    for f in failures {
        for reason_of in f
            .case
            .assertions
            .iter()
            .filter_map(|a| guideline(&f.case, a))
        {
            if !rules.contains(&reason_of) {
                rules.push(reason_of);
            }
        }
    }
    for issue in issues {
        let rule = format!("Users have reported this problem; avoid it: {issue}.");
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    let examples: Vec<String> = failures
        .iter()
        .filter_map(|f| {
            expected_text(&f.case)
                .map(|e| format!("User: {}\nAssistant: {e}", case_question(&f.case)))
        })
        .collect();
    let base = baseline.trim_end();
    let join = |parts: &[String]| {
        if base.is_empty() {
            parts.join("\n\n")
        } else {
            let mut all = vec![base.to_owned()];
            all.extend_from_slice(parts);
            all.join("\n\n")
        }
    };
    let guidelines = (!rules.is_empty()).then(|| {
        format!(
            "Guidelines:\n{}",
            rules
                .iter()
                .map(|r| format!("- {r}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let worked = (!examples.is_empty())
        .then(|| format!("Examples of good answers:\n\n{}", examples.join("\n\n")));
    let mut out = Vec::new();
    if let Some(g) = &guidelines {
        out.push(Candidate {
            instructions: join(std::slice::from_ref(g)),
            rationale: format!(
                "{BUILTIN_OPTIMIZER}: {} guideline(s) from the failing assertions and reported issues",
                rules.len()
            ),
        });
    }
    if let Some(w) = &worked {
        out.push(Candidate {
            instructions: join(std::slice::from_ref(w)),
            rationale: format!(
                "{BUILTIN_OPTIMIZER}: {} worked example(s) from failing cases with an expected answer",
                examples.len()
            ),
        });
    }
    if let (Some(g), Some(w)) = (&guidelines, &worked) {
        out.push(Candidate {
            instructions: join(&[g.clone(), w.clone()]),
            rationale: format!("{BUILTIN_OPTIMIZER}: the guidelines and the worked examples"),
        });
    }
    out.truncate(count as usize);
    out
}

/// The instructions of the model writer.
pub const OPTIMIZER_INSTRUCTIONS: &str = "You improve the system prompts of LLM agents. You are given an agent's current system prompt, problems users reported, and test cases it fails (the question, its answer, and why the answer failed). Write improved system prompts that fix the failures without breaking what works. Answer with one JSON object only: {\"candidates\": [{\"instructions\": \"<the whole new system prompt>\", \"rationale\": \"<one sentence>\"}]}";

/// The prompt of the model writer.
pub fn optimizer_prompt(
    baseline: &str,
    failures: &[Failure],
    issues: &[String],
    count: u32,
) -> String {
    let mut out = format!(
        "Write {count} improved system prompt(s).\n\nCurrent system prompt:\n<<<\n{baseline}\n>>>\n"
    );
    if !issues.is_empty() {
        out.push_str("\nProblems users reported:\n");
        for i in issues {
            out.push_str(&format!("- {i}\n"));
        }
    }
    if !failures.is_empty() {
        out.push_str("\nFailing test cases:\n");
        for (n, f) in failures.iter().take(FAILURES_SHOWN).enumerate() {
            out.push_str(&format!(
                "\n{}. Question: {}\n   Answer: {}\n",
                n + 1,
                case_question(&f.case),
                f.output
            ));
            if let Some(e) = expected_text(&f.case) {
                out.push_str(&format!("   Expected: {e}\n"));
            }
            for r in &f.reasons {
                out.push_str(&format!("   Failed because: {r}\n"));
            }
        }
    }
    out
}

/// Reads the model writer's answer: `{"candidates": [{"instructions", "rationale"?}]}` (the
/// first JSON object in the text), at most `count`, blank ones dropped.
///
/// # Errors
/// Why the answer could not be read.
pub fn read_candidates(text: &str, count: u32, writer: &str) -> Result<Vec<Candidate>, String> {
    let start = text.find('{').ok_or("the answer holds no JSON object")?;
    let end = text.rfind('}').ok_or("the answer holds no JSON object")?;
    let value: Value = serde_json::from_str(text.get(start..=end).unwrap_or_default())
        .map_err(|e| format!("the answer is not JSON: {e}"))?;
    let list = value
        .get("candidates")
        .and_then(Value::as_array)
        .ok_or("the answer has no `candidates` array")?;
    let out: Vec<Candidate> = list
        .iter()
        .filter_map(|c| {
            let instructions = match c {
                Value::String(s) => s.clone(),
                other => other.get("instructions")?.as_str()?.to_owned(),
            };
            (!instructions.trim().is_empty()).then(|| Candidate {
                rationale: format!(
                    "written by {writer}: {}",
                    c.get("rationale")
                        .and_then(Value::as_str)
                        .unwrap_or("no rationale given")
                ),
                instructions,
            })
        })
        .take(count as usize)
        .collect();
    if out.is_empty() {
        return Err("the answer's `candidates` holds no instructions".to_owned());
    }
    Ok(out)
}

/// How one configuration of the testing run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// `current` or `candidate N`.
    pub label: String,
    /// Results that passed.
    pub passed: u64,
    /// Results.
    pub results: u64,
    /// `passed / results`.
    pub pass_rate: f64,
}

/// The evidence of a testing run: each configuration's score (the first is the current
/// instructions), the winner (a candidate that beats the current instructions strictly:
/// highest pass rate, the earlier candidate on ties; `None` when none beats them), and the
/// cases that flipped between the current instructions and the winner.
pub fn evidence(
    scores: &[Score],
    per_case: &[(String, Vec<bool>)],
    candidates: &[Candidate],
) -> (Option<usize>, Value) {
    let current = scores.first().map_or(0.0, |s| s.pass_rate);
    let mut winner: Option<usize> = None;
    for (i, s) in scores.iter().enumerate().skip(1) {
        let best = winner.map_or(current, |w| scores[w].pass_rate);
        if s.pass_rate > best + f64::EPSILON {
            winner = Some(i);
        }
    }
    let mut fixed = Vec::new();
    let mut broken = Vec::new();
    if let Some(w) = winner {
        for (case, passes) in per_case {
            match (passes.first(), passes.get(w)) {
                (Some(false), Some(true)) => fixed.push(json!(case)),
                (Some(true), Some(false)) => broken.push(json!(case)),
                _ => {}
            }
        }
    }
    let mut o = Map::new();
    o.insert(
        "scores".into(),
        Value::Array(
            scores
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut entry = json!({
                        "label": s.label,
                        "passed": s.passed,
                        "results": s.results,
                        "pass_rate": s.pass_rate,
                    });
                    if i > 0
                        && let Some(c) = candidates.get(i - 1)
                    {
                        entry["rationale"] = json!(c.rationale);
                    }
                    entry
                })
                .collect(),
        ),
    );
    o.insert(
        "winner".into(),
        winner.map_or(Value::Null, |w| json!(scores[w].label)),
    );
    o.insert("improved".into(), json!(winner.is_some()));
    o.insert("cases_fixed".into(), Value::Array(fixed));
    o.insert("cases_broken".into(), Value::Array(broken));
    (winner.map(|w| w - 1), Value::Object(o))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn case(json: Value) -> TestCase {
        TestCase::from_json("cases[0]", &json).unwrap()
    }

    #[test]
    fn requests_are_checked() {
        let ok = OptimizationRequest::from_json(&json!({"testset_id": "ts"})).unwrap();
        assert_eq!(
            (ok.candidates, ok.concurrency, ok.optimizer_model),
            (3, 4, None)
        );
        for (body, field) in [
            (json!({}), "testset_id"),
            (json!({"testset_id": 3}), "testset_id"),
            (json!({"testset_id": "a", "testset": "b"}), "testset_id"),
            (json!({"testset_id": "a", "candidates": 0}), "candidates"),
            (json!({"testset_id": "a", "candidates": 6}), "candidates"),
            (
                json!({"testset_id": "a", "optimizer_model": 1}),
                "optimizer_model",
            ),
            (json!({"testset_id": "a", "extra": 1}), "extra"),
            (json!([]), "body"),
        ] {
            assert_eq!(
                OptimizationRequest::from_json(&body).unwrap_err().field,
                field,
                "{body}"
            );
        }
    }

    #[test]
    fn the_builtin_writer_turns_failures_into_guidelines_and_examples() {
        let failures = vec![Failure {
            case: case(
                json!({"input": "What is the refund window?", "expected": "30 days",
                "assertions": [{"type": "contains", "value": "30 days"}]}),
            ),
            output: "What is the refund window?".into(),
            reasons: vec!["does not contain '30 days'".into()],
        }];
        let issues = vec!["unclear refund policy".to_owned()];
        let c = builtin_candidates("Be helpful.", &failures, &issues, 5);
        assert_eq!(c.len(), 3);
        assert!(c[0].instructions.starts_with("Be helpful.\n\nGuidelines:"));
        assert!(c[0].instructions.contains("Include \"30 days\""));
        assert!(c[0].instructions.contains("unclear refund policy"));
        assert!(
            c[1].instructions
                .contains("User: What is the refund window?\nAssistant: 30 days")
        );
        assert!(
            c[2].instructions.contains("Guidelines:") && c[2].instructions.contains("Examples")
        );
        assert!(
            c.iter()
                .all(|c| c.rationale.contains("not a language model"))
        );
        assert_eq!(builtin_candidates("x", &failures, &issues, 1).len(), 1);
        assert!(builtin_candidates("x", &[], &[], 3).is_empty());
    }

    #[test]
    fn model_answers_are_read_strictly() {
        let read = read_candidates(
            "Sure: {\"candidates\": [{\"instructions\": \"A\", \"rationale\": \"r\"}, \"B\", {\"instructions\": \" \"}]}",
            5,
            "m",
        )
        .unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].rationale, "written by m: r");
        assert_eq!(read[1].instructions, "B");
        assert!(read_candidates("no json", 3, "m").is_err());
        assert!(read_candidates("{\"candidates\": []}", 3, "m").is_err());
        assert_eq!(
            read_candidates("{\"candidates\": [\"a\",\"b\"]}", 1, "m")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn the_winner_must_beat_the_current_instructions() {
        let s = |label: &str, passed: u64| Score {
            label: label.into(),
            passed,
            results: 4,
            pass_rate: passed as f64 / 4.0,
        };
        let cands = vec![
            Candidate {
                instructions: "a".into(),
                rationale: "ra".into(),
            },
            Candidate {
                instructions: "b".into(),
                rationale: "rb".into(),
            },
        ];
        let per_case = vec![
            ("c1".to_owned(), vec![false, true, true]),
            ("c2".to_owned(), vec![true, false, true]),
        ];
        let (w, ev) = evidence(
            &[s("current", 2), s("candidate 1", 3), s("candidate 2", 4)],
            &per_case,
            &cands,
        );
        assert_eq!(w, Some(1));
        assert_eq!(ev["winner"], "candidate 2");
        assert_eq!(ev["cases_fixed"], json!(["c1"]));
        assert_eq!(ev["cases_broken"], json!([]));
        assert_eq!(ev["scores"][2]["rationale"], "rb");
        let (w, ev) = evidence(&[s("current", 3), s("candidate 1", 3)], &per_case, &cands);
        assert_eq!(w, None);
        assert_eq!(ev["improved"], false);
        let (w, _) = evidence(
            &[s("current", 1), s("candidate 1", 3), s("candidate 2", 3)],
            &per_case,
            &cands,
        );
        assert_eq!(w, Some(0), "the earlier candidate wins a tie");
    }

    #[test]
    fn states_follow_the_latest_optimisation() {
        assert_eq!(state_of(None), "idle");
    }
}
