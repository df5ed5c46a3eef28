//! Tasks: asynchronous agent work (seed 002's Tasks API). A task names an agent and carries a
//! title, a description and data; a worker on any replica claims it (a lease with a
//! heartbeat), runs one agent turn whose input is built from them, and stores the answer as
//! the task's `result`. See `docs/tasks.md`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::agent::{AgentId, AgentKey};
use crate::error::Invalid;
use crate::text::check_text;

/// The prefix of task ids.
pub const TASK_ID_PREFIX: &str = "task";
/// Longest title.
pub const TITLE_MAX: usize = 500;
/// Longest description.
pub const DESCRIPTION_MAX: usize = 20_000;
/// Largest `data`, serialised, in bytes.
pub const DATA_MAX_BYTES: usize = 256 * 1024;
/// Longest idempotency key.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;
/// Most attempts a task may ask for.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;
/// Attempts when none are asked for.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

crate::ids::prefixed_id!(
    /// A task's id: `task_` followed by 32 lowercase hex digits (a UUIDv7).
    TaskId,
    TASK_ID_PREFIX,
    "task_id",
    "a task id"
);

/// How urgent a task is: workers claim higher priorities first, then older tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskPriority {
    /// Claimed last.
    Low,
    /// The default.
    Medium,
    /// Claimed first.
    High,
}

impl TaskPriority {
    /// Parses `low`, `medium` or `high`.
    ///
    /// # Errors
    /// [`Invalid`] naming `priority`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        match value {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            _ => Err(Invalid::new("priority", "must be low, medium or high")),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// The order workers claim in (higher first).
    pub fn rank(&self) -> i32 {
        match self {
            Self::Low => 0,
            Self::Medium => 1,
            Self::High => 2,
        }
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Waiting for a worker (also between attempts).
    Pending,
    /// A worker holds its lease and runs it.
    Running,
    /// Done; `result` holds the answer.
    Completed,
    /// Every attempt failed; `error` says why.
    Failed,
    /// Cancelled by a caller.
    Cancelled,
}

impl TaskStatus {
    /// Parses a status.
    ///
    /// # Errors
    /// [`Invalid`] naming `status`.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        match value {
            "pending" => Ok(Self::Pending),
            "running" => Ok(Self::Running),
            "completed" => Ok(Self::Completed),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            _ => Err(Invalid::new(
                "status",
                "must be pending, running, completed, failed or cancelled",
            )),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more happens to the task.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A task.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Stable id (`task_…`).
    pub id: TaskId,
    /// What to do, in a line.
    pub title: String,
    /// More of what to do.
    pub description: Option<String>,
    /// The agent that runs it.
    pub agent_id: AgentId,
    /// That agent's key (for allowlists and events).
    pub agent_key: AgentKey,
    /// Claim order.
    pub priority: TaskPriority,
    /// Input data (a JSON object).
    pub data: Map<String, Value>,
    /// Where it is.
    pub status: TaskStatus,
    /// The caller's key for retrying a create safely (scoped to the caller).
    pub idempotency_key: Option<String>,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Attempts started so far.
    pub attempts: u32,
    /// Not claimed before this time.
    pub run_at: DateTime<Utc>,
    /// The answer, once completed: `{"response", "model", "usage", "run_id", "finish_reason"}`.
    pub result: Option<Value>,
    /// Why the last attempt failed (kept when a later attempt is pending).
    pub error: Option<String>,
    /// The principal that created it.
    pub created_by: Option<String>,
    /// The worker holding the lease while it runs (and, once it ended, the worker that ran
    /// its last attempt).
    pub lease_owner: Option<String>,
    /// When that lease runs out unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When the first attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a final status.
    pub completed_at: Option<DateTime<Utc>>,
}

impl Task {
    /// The `task.status` event payload: id, status, and the result when completed (the
    /// error when failed).
    pub fn status_event(&self) -> crate::event::Event {
        let mut payload = Map::new();
        payload.insert("type".into(), json!("task.status"));
        payload.insert("task_id".into(), json!(self.id.as_str()));
        payload.insert("agent_id".into(), json!(self.agent_id.as_str()));
        payload.insert("status".into(), json!(self.status.as_str()));
        payload.insert("attempts".into(), json!(self.attempts));
        if self.status == TaskStatus::Completed {
            payload.insert("result".into(), self.result.clone().unwrap_or(Value::Null));
        }
        if self.status == TaskStatus::Failed {
            payload.insert("error".into(), json!(self.error));
        }
        crate::event::Event {
            channels: vec![
                crate::event::task_channel(self.id.as_str()),
                crate::event::TASKS_CHANNEL.to_owned(),
            ],
            agent_key: Some(self.agent_key.to_string()),
            payload,
        }
    }

    /// The agent's input: the title, the description, then the data as JSON.
    pub fn prompt(&self) -> String {
        let mut text = format!("Task: {}", self.title);
        if let Some(d) = &self.description {
            text.push_str("\n\n");
            text.push_str(d);
        }
        if !self.data.is_empty() {
            text.push_str("\n\nData:\n");
            text.push_str(&Value::Object(self.data.clone()).to_string());
        }
        text
    }
}

/// A new task as a caller gives it, validated. The agent is resolved by the service.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// What to do.
    pub title: String,
    /// More of what to do.
    pub description: Option<String>,
    /// The agent (id or key).
    pub agent: crate::agent::AgentRef,
    /// Claim order (medium by default).
    pub priority: TaskPriority,
    /// Input data.
    pub data: Map<String, Value>,
    /// The caller's key for a safe retry.
    pub idempotency_key: Option<String>,
    /// Attempts allowed (1 to [`MAX_ATTEMPTS_LIMIT`]).
    pub max_attempts: u32,
    /// Not before this time.
    pub run_at: Option<DateTime<Utc>>,
}

impl NewTask {
    /// Validates the fields.
    ///
    /// # Errors
    /// [`Invalid`] naming the field.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        title: &str,
        description: Option<String>,
        agent: &str,
        priority: Option<&str>,
        data: Option<Map<String, Value>>,
        idempotency_key: Option<String>,
        max_attempts: Option<i64>,
        run_at: Option<DateTime<Utc>>,
    ) -> Result<Self, Invalid> {
        let title = title.trim();
        check_text("title", title, 1, TITLE_MAX, false)?;
        if let Some(d) = &description {
            check_text("description", d, 0, DESCRIPTION_MAX, true)?;
        }
        let agent = crate::agent::AgentRef::parse(agent).map_err(|e| e.renamed("agent_id"))?;
        let priority = priority
            .map(TaskPriority::parse)
            .transpose()?
            .unwrap_or(TaskPriority::Medium);
        let data = data.unwrap_or_default();
        let size = Value::Object(data.clone()).to_string().len();
        if size > DATA_MAX_BYTES {
            return Err(Invalid::new(
                "data",
                format!("must be at most {DATA_MAX_BYTES} bytes of JSON"),
            ));
        }
        if Value::Object(data.clone()).to_string().contains("\\u0000") {
            return Err(Invalid::new("data", "must not contain NUL characters"));
        }
        if let Some(k) = &idempotency_key {
            check_text("idempotency_key", k, 1, IDEMPOTENCY_KEY_MAX, false)?;
        }
        let max_attempts = match max_attempts {
            None => DEFAULT_MAX_ATTEMPTS,
            Some(n) if (1..=i64::from(MAX_ATTEMPTS_LIMIT)).contains(&n) => {
                u32::try_from(n).unwrap_or(DEFAULT_MAX_ATTEMPTS)
            }
            Some(_) => {
                return Err(Invalid::new(
                    "max_attempts",
                    format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
                ));
            }
        };
        Ok(Self {
            title: title.to_owned(),
            description,
            agent,
            priority,
            data,
            idempotency_key,
            max_attempts,
            run_at,
        })
    }
}

/// Which tasks to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only this agent's.
    pub agent_id: Option<AgentId>,
    /// Only this priority.
    pub priority: Option<TaskPriority>,
    /// Only tasks of these agents (an API key's allowlist), by key.
    pub agent_keys: Option<Vec<String>>,
    /// Only tasks this principal created (an `invoke`-only key's own).
    pub created_by: Option<String>,
}

/// How a worker's attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// The answer.
    Completed(Value),
    /// Failed; try again at `retry_at` if `retry` and attempts remain, else fail the task.
    Failed {
        /// Why.
        error: String,
        /// Whether another attempt may succeed (a provider or database failure), or not (the
        /// agent was deleted or archived, the input is refused).
        retry: bool,
        /// When the next attempt may start.
        retry_at: DateTime<Utc>,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn seed_002_task_validates_with_defaults() {
        let data = json!({"document_url": "https://example.com/doc.pdf", "extract_fields": ["name", "date", "amount"]});
        let t = NewTask::new(
            "Process document",
            Some("Extract key information from uploaded document".into()),
            "agent-123",
            Some("high"),
            data.as_object().cloned(),
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(t.priority, TaskPriority::High);
        assert_eq!(t.max_attempts, DEFAULT_MAX_ATTEMPTS);
        for (bad, field) in [
            (
                NewTask::new("", None, "a", None, None, None, None, None),
                "title",
            ),
            (
                NewTask::new("t", None, "a b", None, None, None, None, None),
                "agent_id",
            ),
            (
                NewTask::new("t", None, "a", Some("urgent"), None, None, None, None),
                "priority",
            ),
            (
                NewTask::new("t", None, "a", None, None, None, Some(0), None),
                "max_attempts",
            ),
            (
                NewTask::new("t", None, "a", None, None, Some(String::new()), None, None),
                "idempotency_key",
            ),
        ] {
            assert_eq!(bad.unwrap_err().field, field);
        }
    }

    #[test]
    fn ids_priorities_and_statuses() {
        let id = TaskId::generate();
        assert_eq!(TaskId::parse(id.as_str()).unwrap(), id);
        assert!(TaskId::parse("task-123").is_err());
        assert!(TaskPriority::High.rank() > TaskPriority::Low.rank());
        assert!(TaskStatus::parse("done").is_err());
        assert!(TaskStatus::Cancelled.is_final());
        assert!(!TaskStatus::Pending.is_final());
    }
}
