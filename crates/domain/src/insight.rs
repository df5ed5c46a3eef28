//! Conversation insights (seed 001): each conversation, once idle, is analysed (outcome, task
//! completion, sentiment, issues); insights aggregate the analyses of an agent over a period,
//! with the trend against the period before. See `docs/insights.md`.
//!
//! The built-in analyser here is deterministic (a lexicon and a few rules) and says so in its
//! output; a configured analysis model answers the same questions through an agent turn.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::agent::AgentId;
use crate::conversation::{Message, MessageStatus};
use crate::error::Invalid;
use crate::llm::Role;

/// The built-in analyser's name, as stored with its analyses.
pub const BUILTIN_ANALYSER: &str =
    "builtin-lexicon (deterministic heuristics, not a language model)";
/// Sentiment above this is positive; below its negative, negative.
pub const SENTIMENT_BAND: f64 = 0.2;
/// Most issues kept per analysis.
pub const ISSUES_MAX: usize = 5;
/// Longest issue label.
pub const ISSUE_MAX_CHARS: usize = 80;

/// How a conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The user got what they came for, or the exchange ended normally.
    Completed,
    /// The user left without an answer, or unhappy.
    Abandoned,
    /// The user asked for a human.
    Escalated,
}

impl Outcome {
    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Abandoned => "abandoned",
            Self::Escalated => "escalated",
        }
    }

    /// Parses `completed`, `abandoned` or `escalated`.
    ///
    /// # Errors
    /// [`Invalid`] naming `outcome`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        match value {
            "completed" => Ok(Self::Completed),
            "abandoned" => Ok(Self::Abandoned),
            "escalated" => Ok(Self::Escalated),
            _ => Err(Invalid::new(
                "outcome",
                "must be completed, abandoned or escalated",
            )),
        }
    }
}

/// What the analyser found in one conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// How it ended.
    pub outcome: Outcome,
    /// Whether the user's task was done.
    pub task_completed: bool,
    /// From -1 (negative) to 1 (positive).
    pub sentiment: f64,
    /// Short labels of what went wrong.
    pub issues: Vec<String>,
    /// Which analyser (the built-in one names itself as such).
    pub analyser: String,
}

/// A stored analysis of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationAnalysis {
    /// The conversation.
    pub conversation_id: String,
    /// Its agent.
    pub agent_id: AgentId,
    /// What was found.
    pub analysis: Analysis,
    /// Messages in the conversation when analysed.
    pub message_count: u64,
    /// The assistant's mean response time, ms (answers that recorded one).
    pub response_ms: Option<f64>,
    /// When its last message was stored (the analysis is of the conversation up to here).
    pub last_message_at: DateTime<Utc>,
    /// When it was analysed.
    pub analysed_at: DateTime<Utc>,
}

impl ConversationAnalysis {
    /// Whether the conversation failed for the user (impact of its issues).
    pub fn failed(&self) -> bool {
        self.analysis.outcome != Outcome::Completed || !self.analysis.task_completed
    }
}

const POSITIVE: &[&str] = &[
    "thanks",
    "thank",
    "great",
    "perfect",
    "awesome",
    "helpful",
    "love",
    "excellent",
    "good",
    "solved",
    "works",
    "working",
    "appreciate",
    "brilliant",
    "fantastic",
    "nice",
    "glad",
    "resolved",
    "happy",
    "amazing",
];
const NEGATIVE: &[&str] = &[
    "bad",
    "terrible",
    "useless",
    "angry",
    "frustrated",
    "frustrating",
    "wrong",
    "broken",
    "hate",
    "awful",
    "worst",
    "disappointed",
    "annoying",
    "ridiculous",
    "unacceptable",
    "horrible",
    "poor",
    "confusing",
    "confused",
    "unhelpful",
    "waste",
    "upset",
    "still",
];
const NEGATORS: &[&str] = &[
    "not", "no", "never", "don't", "doesn't", "didn't", "isn't", "can't", "won't",
];
const ESCALATION: &[&str] = &[
    "human",
    "real person",
    "manager",
    "supervisor",
    "representative",
    "speak to someone",
    "talk to someone",
    "live agent",
    "escalate",
];
const CLOSURE: &[&str] = &[
    "thanks",
    "thank you",
    "that's all",
    "that is all",
    "solved",
    "resolved",
    "works now",
    "perfect",
    "got it",
    "all good",
    "that helps",
    "that helped",
];
const TOPICS: &[&str] = &[
    "refund",
    "billing",
    "password",
    "login",
    "shipping",
    "delivery",
    "cancel",
    "account",
    "payment",
    "invoice",
    "order",
    "subscription",
    "price",
    "warranty",
    "return",
];

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A text's sentiment from the lexicon: (positive − negative) / (positive + negative), a
/// word preceded by a negator counting the other way; 0 without sentiment words.
pub fn lexicon_sentiment(text: &str) -> f64 {
    let ws = words(text);
    let (mut pos, mut neg) = (0.0_f64, 0.0_f64);
    for (i, w) in ws.iter().enumerate() {
        let negated = i > 0 && NEGATORS.contains(&ws[i - 1].as_str());
        let (p, n) = (
            POSITIVE.contains(&w.as_str()),
            NEGATIVE.contains(&w.as_str()),
        );
        match (p, n, negated) {
            (true, _, false) | (_, true, true) => pos += 1.0,
            (true, _, true) | (_, true, false) => neg += 1.0,
            _ => {}
        }
    }
    if pos + neg == 0.0 {
        0.0
    } else {
        ((pos - neg) / (pos + neg) * 100.0).round() / 100.0
    }
}

fn has_phrase(text: &str, phrases: &[&str]) -> bool {
    let lower = text.to_lowercase();
    let ws = words(text);
    phrases.iter().any(|p| {
        if p.contains(' ') || p.contains('\'') {
            lower.contains(p)
        } else {
            ws.iter().any(|w| w == p)
        }
    })
}

/// The built-in analyser: deterministic rules over the conversation's messages (oldest
/// first). Sentiment is the lexicon's over the user's messages, the last one counted twice;
/// escalated when the user asks for a human; completed when the last answer is whole and
/// the user did not end unhappy or unanswered; the task is done when it completed and the
/// user closed it (thanks, solved…) or ended positive. Issues: escalation, unanswered or cut
/// answers, a repeated question, negative sentiment about a topic (`refund problem`), slow
/// answers.
pub fn analyse(messages: &[Message]) -> Analysis {
    let talk: Vec<&Message> = messages
        .iter()
        .filter(|m| matches!(m.role, Role::User | Role::Assistant))
        .collect();
    let user: Vec<&str> = talk
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect();
    let mut scores: Vec<f64> = user.iter().map(|t| lexicon_sentiment(t)).collect();
    if let Some(last) = scores.last().copied() {
        scores.push(last);
    }
    #[allow(clippy::cast_precision_loss)]
    let sentiment = if scores.is_empty() {
        0.0
    } else {
        (scores.iter().sum::<f64>() / scores.len() as f64 * 100.0).round() / 100.0
    };
    let last_user = user.last().copied().unwrap_or_default();
    let escalated = user.iter().any(|t| has_phrase(t, ESCALATION));
    let unanswered = talk.last().is_some_and(|m| m.role == Role::User);
    let cut = talk
        .iter()
        .any(|m| m.role == Role::Assistant && m.status == MessageStatus::Incomplete);
    let closed = has_phrase(last_user, CLOSURE) && lexicon_sentiment(last_user) >= 0.0;
    let last_cut = talk
        .last()
        .is_some_and(|m| m.role == Role::Assistant && m.status == MessageStatus::Incomplete);
    let outcome = if escalated {
        Outcome::Escalated
    } else if unanswered || last_cut || lexicon_sentiment(last_user) < 0.0 {
        Outcome::Abandoned
    } else {
        Outcome::Completed
    };
    let task_completed =
        outcome == Outcome::Completed && (closed || sentiment > SENTIMENT_BAND || user.len() == 1);
    let mut issues = Vec::new();
    if escalated {
        issues.push("asked for a human".to_owned());
    }
    if unanswered {
        issues.push("question left unanswered".to_owned());
    }
    if cut {
        issues.push("answer cut off".to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    if user.iter().any(|t| !seen.insert(t.trim().to_lowercase())) {
        issues.push("user repeated a question".to_owned());
    }
    for t in &user {
        if lexicon_sentiment(t) < 0.0 {
            let ws = words(t);
            if let Some(topic) = TOPICS.iter().find(|topic| {
                ws.iter()
                    .any(|w| w == *topic || w.strip_suffix('s') == Some(topic))
            }) {
                issues.push(format!("{topic} problem"));
            }
        }
    }
    if sentiment < -SENTIMENT_BAND && !issues.iter().any(|i| i.ends_with("problem")) {
        issues.push("user dissatisfied".to_owned());
    }
    let latencies: Vec<u64> = talk.iter().filter_map(|m| m.latency_ms).collect();
    if !latencies.is_empty() && latencies.iter().sum::<u64>() / latencies.len() as u64 > 10_000 {
        issues.push("slow answers".to_owned());
    }
    let mut unique = Vec::new();
    for i in issues {
        if !unique.contains(&i) {
            unique.push(i);
        }
    }
    unique.truncate(ISSUES_MAX);
    Analysis {
        outcome,
        task_completed,
        sentiment,
        issues: unique,
        analyser: BUILTIN_ANALYSER.to_owned(),
    }
}

/// The instructions a model analyser gets.
pub const ANALYSIS_INSTRUCTIONS: &str = "You analyse a finished conversation between a user and an AI assistant. \
Reply with one JSON object and nothing else: {\"outcome\": \"completed\"|\"abandoned\"|\"escalated\", \
\"task_completed\": true|false, \"sentiment\": <a number from -1 to 1, the user's>, \
\"issues\": [<up to 5 short labels of what went wrong, lower case, e.g. \"unclear refund policy\">]}.";

/// The transcript a model analyser reads.
pub fn transcript(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        if matches!(m.role, Role::User | Role::Assistant) {
            out.push_str(m.role.as_str());
            out.push_str(": ");
            out.push_str(&m.content);
            if m.status == MessageStatus::Incomplete {
                out.push_str(" [cut off]");
            }
            out.push('\n');
        }
    }
    out
}

/// Reads a model analyser's answer (a JSON object, possibly in a code fence or other text).
///
/// # Errors
/// Why it could not be read.
pub fn read_analysis(text: &str, analyser: &str) -> Result<Analysis, String> {
    let start = text.find('{').ok_or("no JSON object in the answer")?;
    let end = text.rfind('}').ok_or("no JSON object in the answer")?;
    let v: Value = serde_json::from_str(text.get(start..=end).unwrap_or_default())
        .map_err(|e| format!("the answer's JSON is invalid: {e}"))?;
    let outcome = v["outcome"]
        .as_str()
        .and_then(|o| Outcome::parse(o).ok())
        .ok_or("`outcome` must be completed, abandoned or escalated")?;
    let task_completed = v["task_completed"]
        .as_bool()
        .ok_or("`task_completed` must be a boolean")?;
    let sentiment = v["sentiment"]
        .as_f64()
        .filter(|s| (-1.0..=1.0).contains(s))
        .ok_or("`sentiment` must be a number from -1 to 1")?;
    let issues = v["issues"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| {
                    s.trim()
                        .to_lowercase()
                        .chars()
                        .take(ISSUE_MAX_CHARS)
                        .collect::<String>()
                })
                .filter(|s| !s.is_empty())
                .take(ISSUES_MAX)
                .collect()
        })
        .unwrap_or_default();
    Ok(Analysis {
        outcome,
        task_completed,
        sentiment,
        issues,
        analyser: analyser.to_owned(),
    })
}

/// An insights period: `7`, `30`, `90` days, or all time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The last N days.
    Days(u32),
    /// Everything.
    All,
}

impl Period {
    /// Parses `7`, `30`, `90` or `all` (absent: 30).
    ///
    /// # Errors
    /// [`Invalid`] naming `days`.
    pub fn parse(value: Option<&str>) -> Result<Self, Invalid> {
        match value {
            None | Some("" | "30") => Ok(Self::Days(30)),
            Some("7") => Ok(Self::Days(7)),
            Some("90") => Ok(Self::Days(90)),
            Some("all") => Ok(Self::All),
            Some(_) => Err(Invalid::new("days", "must be 7, 30, 90 or all")),
        }
    }
}

/// Counts over a set of analyses (one period), as the store aggregates them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Conversations.
    pub total: u64,
    /// Outcome completed.
    pub completed: u64,
    /// Outcome abandoned.
    pub abandoned: u64,
    /// Outcome escalated.
    pub escalated: u64,
    /// Task completed.
    pub task_completed: u64,
    /// Sentiment above the band.
    pub positive: u64,
    /// Sentiment below minus the band.
    pub negative: u64,
    /// Mean sentiment.
    pub sentiment_avg: Option<f64>,
    /// Mean of the conversations' mean response times, ms.
    pub response_ms_avg: Option<f64>,
    /// Mean messages per conversation.
    pub length_avg: Option<f64>,
}

/// One issue label's count in a period.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueCount {
    /// The label.
    pub label: String,
    /// Conversations with it.
    pub count: u64,
    /// Of them, conversations that failed.
    pub failed: u64,
}

/// Issues whose labels are alike, grouped: the most frequent label names the group.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueGroup {
    /// The group's label.
    pub issue: String,
    /// Conversations with one of its labels.
    pub frequency: u64,
    /// `high` (half or more of them failed), `medium` (a quarter or more), `low`.
    pub impact: &'static str,
}

fn tokens(label: &str) -> std::collections::BTreeSet<String> {
    const STOP: &[&str] = &[
        "a", "an", "the", "of", "to", "and", "or", "with", "for", "in", "on", "is", "was", "not",
        "no",
    ];
    words(label)
        .into_iter()
        .filter(|w| !STOP.contains(&w.as_str()))
        .map(|w| {
            w.strip_suffix('s')
                .filter(|s| s.len() > 2)
                .map_or(w.clone(), str::to_owned)
        })
        .collect()
}

/// Groups labels whose word sets overlap by half or more (Jaccard), most frequent first.
pub fn group_issues(counts: &[IssueCount], max: usize) -> Vec<IssueGroup> {
    let mut sorted: Vec<&IssueCount> = counts.iter().collect();
    sorted.sort_by(|a, b| b.count.cmp(&a.count).then(a.label.cmp(&b.label)));
    let mut groups: Vec<(String, std::collections::BTreeSet<String>, u64, u64)> = Vec::new();
    for c in sorted {
        let t = tokens(&c.label);
        let home = groups.iter_mut().find(|(_, gt, _, _)| {
            let inter = gt.intersection(&t).count();
            let union = gt.union(&t).count();
            union > 0 && inter * 2 >= union
        });
        match home {
            Some(g) => {
                g.2 += c.count;
                g.3 += c.failed;
            }
            None => groups.push((c.label.clone(), t, c.count, c.failed)),
        }
    }
    groups.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    groups
        .into_iter()
        .take(max)
        .map(|(issue, _, frequency, failed)| IssueGroup {
            issue,
            frequency,
            impact: if failed * 2 >= frequency {
                "high"
            } else if failed * 4 >= frequency {
                "medium"
            } else {
                "low"
            },
        })
        .collect()
}

/// Rule-based recommendations from the figures and the top issues (what the built-in
/// analyser offers; a model analyser's insights use the same rules).
pub fn recommendations(current: &Tally, issues: &[IssueGroup]) -> Vec<String> {
    let mut out = Vec::new();
    for g in issues.iter().filter(|g| g.impact != "low").take(3) {
        let advice = match g.issue.as_str() {
            "asked for a human" => "Users ask for a human: give the agent a clear hand-off path, and cover the requests that lead there in its instructions".to_owned(),
            "question left unanswered" => "Conversations end on an unanswered question: check for provider errors and time-outs on this agent".to_owned(),
            "answer cut off" => "Answers are cut off: raise max_tokens or ask for shorter answers".to_owned(),
            "user repeated a question" => "Users repeat themselves: answers miss what was asked; add examples of these questions to the instructions".to_owned(),
            "slow answers" => "Answers are slow: consider a faster model or fewer tool steps".to_owned(),
            other => format!("Address \"{other}\" ({} conversations): add specific guidance for it to the agent's instructions", g.frequency),
        };
        out.push(advice);
    }
    if current.total > 0 && current.negative * 4 > current.total {
        out.push(
            "A quarter or more of conversations end negative: review them for tone and accuracy"
                .to_owned(),
        );
    }
    if out.is_empty() && current.total > 0 {
        out.push("No frequent issue: keep the current instructions, and add test cases for new topics as they appear".to_owned());
    }
    out
}

/// A percentage with one decimal.
#[allow(clippy::cast_precision_loss)]
pub fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::conversation::MessageStatus;

    fn conv(lines: &[(&str, &str)]) -> Vec<Message> {
        lines
            .iter()
            .enumerate()
            .map(|(i, (role, text))| Message {
                id: format!("msg_{i}"),
                conversation_id: "conv_1".into(),
                agent_id: AgentId::generate(),
                role: if *role == "user" {
                    Role::User
                } else {
                    Role::Assistant
                },
                content: (*text).to_owned(),
                tool_calls: Vec::new(),
                tool_call_id: None,
                usage: None,
                latency_ms: Some(800),
                model: None,
                agent_version: None,
                status: if text.ends_with("…") {
                    MessageStatus::Incomplete
                } else {
                    MessageStatus::Complete
                },
                created_at: Utc::now(),
                annotations: Default::default(),
            })
            .collect()
    }

    #[test]
    fn the_builtin_analyser_reads_fixed_conversations() {
        let happy = analyse(&conv(&[
            ("user", "How do I reset my password?"),
            ("assistant", "Use the link."),
            ("user", "Thanks, that works, great!"),
            ("assistant", "Glad to help."),
        ]));
        assert_eq!(happy.outcome, Outcome::Completed);
        assert!(happy.task_completed);
        assert!(happy.sentiment > 0.5, "{happy:?}");
        assert!(happy.issues.is_empty(), "{happy:?}");
        assert!(happy.analyser.contains("not a language model"));

        let angry = analyse(&conv(&[
            ("user", "My refund is wrong and this is useless"),
            ("assistant", "Sorry."),
            ("user", "My refund is wrong and this is useless"),
        ]));
        assert_eq!(angry.outcome, Outcome::Abandoned);
        assert!(!angry.task_completed);
        assert_eq!(angry.sentiment, -1.0);
        assert_eq!(
            angry.issues,
            [
                "question left unanswered",
                "user repeated a question",
                "refund problem"
            ]
        );

        let human = analyse(&conv(&[
            ("user", "I want to talk to a real person"),
            ("assistant", "Connecting…"),
        ]));
        assert_eq!(human.outcome, Outcome::Escalated);
        assert_eq!(human.issues, ["asked for a human", "answer cut off"]);

        assert_eq!(lexicon_sentiment("this is not good"), -1.0);
        assert_eq!(lexicon_sentiment("not bad at all"), 1.0);
        assert_eq!(lexicon_sentiment("the sky"), 0.0);
    }

    #[test]
    fn model_answers_are_read_strictly() {
        let a = read_analysis("```json\n{\"outcome\": \"escalated\", \"task_completed\": false, \"sentiment\": -0.4, \"issues\": [\"Unclear refund policy\"]}\n```", "m").unwrap();
        assert_eq!(
            (a.outcome, a.sentiment, a.issues[0].as_str()),
            (Outcome::Escalated, -0.4, "unclear refund policy")
        );
        assert!(read_analysis("{\"outcome\": \"fine\"}", "m").is_err());
        assert!(
            read_analysis(
                "{\"outcome\": \"completed\", \"task_completed\": true, \"sentiment\": 3}",
                "m"
            )
            .is_err()
        );
    }

    #[test]
    fn alike_issues_are_grouped_with_their_impact() {
        let counts = [
            IssueCount {
                label: "unclear refund policy".into(),
                count: 10,
                failed: 8,
            },
            IssueCount {
                label: "refund policy unclear".into(),
                count: 3,
                failed: 1,
            },
            IssueCount {
                label: "slow answers".into(),
                count: 5,
                failed: 1,
            },
            IssueCount {
                label: "password reset loop".into(),
                count: 4,
                failed: 1,
            },
        ];
        let groups = group_issues(&counts, 10);
        assert_eq!(
            groups[0],
            IssueGroup {
                issue: "unclear refund policy".into(),
                frequency: 13,
                impact: "high"
            }
        );
        assert_eq!(groups[1].impact, "low");
        assert_eq!(
            groups[2],
            IssueGroup {
                issue: "password reset loop".into(),
                frequency: 4,
                impact: "medium"
            }
        );
        assert_eq!(groups.len(), 3);
    }

    #[test]
    fn periods_are_the_seeds() {
        assert_eq!(Period::parse(None).unwrap(), Period::Days(30));
        assert_eq!(Period::parse(Some("all")).unwrap(), Period::All);
        assert_eq!(Period::parse(Some("14")).unwrap_err().field, "days");
        assert_eq!(rate(1089, 1247), 87.3);
    }
}
