//! Tasks: create, read, list, cancel (the API), and the workers that run them (every
//! replica runs its own; the store's claim makes each attempt run on one worker only).
//!
//! A worker claims a task (a lease), publishes `task.status` `running`, runs one agent turn
//! (input: title, description, data) while renewing the lease every third of its length,
//! and stores the answer (`completed`) or the failure (`pending` again after a backoff while
//! attempts remain, else `failed`). A cancel ends the lease at once and reaches the worker
//! through the event bus (and, at the latest, at its next renewal): it drops the turn, which
//! closes the provider's stream. A worker that dies stops renewing; once its lease runs out,
//! another worker claims the task again (one more attempt).

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::{Map, Value, json};

use crate::agent::{AgentRef, AgentStatus};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::event::{Event, EventBus};
use crate::llm::{PromptMessage, Role};
use crate::page::{Page, Paged};
use crate::ports::{AgentStore, Clock, TaskStore};
use crate::services::dormant::FirstWork;
use crate::services::{Memory, Runtime, TurnRequest, TurnTarget};
use crate::task::{NewTask, Task, TaskFilter, TaskId, TaskOutcome, TaskStatus};

/// How tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSettings {
    /// Workers in this process (0: this process runs no tasks, others may).
    pub workers: usize,
    /// A claim's lease; renewed every third of it while the task runs.
    pub lease: Duration,
    /// How often an idle worker looks for work (new tasks also wake it at once). Until the
    /// process has seen a task, worker 0 looks every
    /// [`DORMANT_POLLS`](crate::services::DORMANT_POLLS) polls and the others wait for it.
    pub poll: Duration,
    /// The delay before a failed attempt is retried; doubled each attempt.
    pub retry_base: Duration,
}

impl Default for TaskSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            retry_base: Duration::from_secs(5),
        }
    }
}

/// The queue's depth as last sampled, for metrics (`agentry_task_queue_depth{status}`).
#[derive(Default)]
pub struct QueueDepth {
    pending: std::sync::atomic::AtomicU64,
    running: std::sync::atomic::AtomicU64,
}

impl crate::metrics::MetricsSource for QueueDepth {
    fn collect(&self) -> Vec<crate::metrics::Family> {
        use std::sync::atomic::Ordering::Relaxed;
        #[allow(clippy::cast_precision_loss)]
        let family = crate::metrics::Family::new(
            "agentry_task_queue_depth",
            "Tasks waiting for a worker (pending) and being run (running), deployment-wide, sampled every few seconds.",
            crate::metrics::Kind::Gauge,
        )
        .with(vec![("status", "pending".into())], self.pending.load(Relaxed) as f64)
        .with(vec![("status", "running".into())], self.running.load(Relaxed) as f64);
        vec![family]
    }
}

/// How often the queue's depth is sampled.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// The tasks use cases. Cheap to clone.
#[derive(Clone)]
pub struct TaskService {
    depth: Arc<QueueDepth>,
    store: Arc<dyn TaskStore>,
    agents: Arc<dyn AgentStore>,
    events: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    settings: TaskSettings,
}

/// Whether `caller` may see `task`: its agent must be one the caller may call; a caller that
/// may not read the management API (an `invoke`-only key) sees the tasks it created.
fn visible(caller: Option<&Principal>, task: &Task) -> bool {
    caller.is_none_or(|p| {
        p.may_invoke_agent(task.agent_key.as_str())
            && p.may_use_conversation(task.created_by.as_deref())
    })
}

impl TaskService {
    /// A service over `store`.
    pub fn new(
        store: Arc<dyn TaskStore>,
        agents: Arc<dyn AgentStore>,
        events: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        settings: TaskSettings,
    ) -> Self {
        Self {
            depth: Arc::new(QueueDepth::default()),
            store,
            agents,
            events,
            clock,
            settings,
        }
    }

    /// The queue's depth, as a metrics source.
    pub fn depth(&self) -> Arc<QueueDepth> {
        self.depth.clone()
    }

    /// Samples the queue's depth every few seconds, forever (two counts in the database).
    pub fn sample_depth(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let tasks = self.clone();
        async move {
            let mut every = tokio::time::interval(DEPTH_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                for (status, gauge) in [
                    (TaskStatus::Pending, &tasks.depth.pending),
                    (TaskStatus::Running, &tasks.depth.running),
                ] {
                    let filter = TaskFilter {
                        status: Some(status),
                        ..TaskFilter::default()
                    };
                    let page = Page::new(Some(1), None).unwrap_or_default();
                    if let Ok(paged) = tasks.store.list_tasks(&filter, page).await {
                        gauge.store(paged.total, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// The event bus tasks publish on.
    pub fn events(&self) -> &Arc<dyn EventBus> {
        &self.events
    }

    /// Creates a task (`pending`), or returns the caller's earlier task with the same
    /// idempotency key (`false`).
    ///
    /// # Errors
    /// `NotFound` (the agent, also one outside the caller's allowlist), `Conflict` (an
    /// archived agent), `Invalid` (field `agent_id`: an agent that is not active).
    #[tracing::instrument(skip_all)]
    pub async fn create(&self, caller: Option<&Principal>, new: NewTask) -> Result<(Task, bool)> {
        let agent = self.agents.get_agent(&new.agent).await?;
        if caller.is_some_and(|p| !p.may_invoke_agent(agent.key.as_str())) {
            return Err(Error::not_found("agent", new.agent.to_string()));
        }
        match agent.status {
            AgentStatus::Active => {}
            AgentStatus::Archived => {
                return Err(Error::conflict(
                    "agent_id",
                    format!("agent '{}' is archived", agent.key),
                ));
            }
            other => {
                return Err(Error::invalid(
                    "agent_id",
                    format!("agent '{}' is not active ({})", agent.key, other.as_str()),
                ));
            }
        }
        let now = self.clock.now();
        let task = Task {
            id: TaskId::generate(),
            title: new.title,
            description: new.description,
            agent_id: agent.id,
            agent_key: agent.key,
            priority: new.priority,
            data: new.data,
            status: TaskStatus::Pending,
            idempotency_key: new.idempotency_key,
            max_attempts: new.max_attempts,
            attempts: 0,
            run_at: new.run_at.unwrap_or(now),
            result: None,
            error: None,
            created_by: caller.map(Principal::created_by),
            lease_owner: None,
            lease_expires_at: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            completed_at: None,
        };
        let (task, created) = self.store.insert_task(&task).await?;
        if created {
            self.events.publish(task.status_event());
        }
        Ok((task, created))
    }

    /// One task the caller may see.
    ///
    /// # Errors
    /// `NotFound`, also for a task of an agent outside the caller's allowlist.
    pub async fn get(&self, caller: Option<&Principal>, id: &TaskId) -> Result<Task> {
        let task = self.store.get_task(id).await?;
        if !visible(caller, &task) {
            return Err(Error::not_found("task", id.to_string()));
        }
        Ok(task)
    }

    /// Tasks the caller may see, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(
        &self,
        caller: Option<&Principal>,
        mut filter: TaskFilter,
        page: Page,
    ) -> Result<Paged<Task>> {
        if let Some(keys) = caller.and_then(|p| p.agents.clone()) {
            filter.agent_keys = Some(keys);
        }
        if let Some(p) = caller.filter(|p| !p.satisfies(crate::auth::Requirement::Read)) {
            filter.created_by = Some(p.created_by());
        }
        self.store.list_tasks(&filter, page).await
    }

    /// Cancels a task: a pending one at once; a running one's lease ends at once and its
    /// worker drops the turn. A task that already ended is returned as it is.
    ///
    /// # Errors
    /// `NotFound`.
    #[tracing::instrument(skip_all, fields(task = %id))]
    pub async fn cancel(&self, caller: Option<&Principal>, id: &TaskId) -> Result<Task> {
        let before = self.get(caller, id).await?;
        if before.status.is_final() {
            return Ok(before);
        }
        let after = self.store.cancel_task(id, self.clock.now()).await?;
        if after.status == TaskStatus::Cancelled && before.status != TaskStatus::Cancelled {
            self.events.publish(after.status_event());
        }
        Ok(after)
    }

    /// This process's workers, as one future that never ends (nothing when `workers` is 0).
    /// `replica` names this process in leases (`<replica>/<n>`).
    ///
    /// They start dormant: worker 0 looks for a task every
    /// [`DORMANT_POLLS`](crate::services::DORMANT_POLLS) polls (so it finds a task created
    /// by another replica), the others wait. The first task it claims, or a new task
    /// announced on the event bus, wakes them all, at `poll` from then on.
    pub fn workers(
        &self,
        runtime: Runtime,
        replica: String,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let first = FirstWork::new();
        let workers: Vec<_> = (0..self.settings.workers)
            .map(|n| {
                Worker {
                    tasks: self.clone(),
                    runtime: runtime.clone(),
                    name: format!("{replica}/{n}"),
                    first: first.clone(),
                    lead: n == 0,
                }
                .run()
                .boxed()
            })
            .collect();
        async move {
            futures_util::future::join_all(workers).await;
        }
    }
}

struct Worker {
    tasks: TaskService,
    runtime: Runtime,
    name: String,
    /// Whether this process has seen a task yet.
    first: FirstWork,
    /// The worker that looks for work while the others wait for the first task.
    lead: bool,
}

/// Whether an event says a task became runnable (a new or retried task).
fn wakes(event: &Event) -> bool {
    event.kind() == "task.status"
        && event.payload.get("status").and_then(Value::as_str) == Some("pending")
}

/// Whether an event cancels task `id`.
fn cancels(event: &Event, id: &str) -> bool {
    event.kind() == "task.status"
        && event.payload.get("task_id").and_then(Value::as_str) == Some(id)
        && event.payload.get("status").and_then(Value::as_str) == Some("cancelled")
}

impl Worker {
    async fn run(self) {
        let t = &self.tasks;
        if !self.lead {
            self.first.wait().await;
        }
        let mut events = t.events.subscribe();
        loop {
            let now = t.clock.now();
            match t.store.reap_tasks(now).await {
                Ok(reaped) => {
                    for task in reaped {
                        tracing::warn!(task = %task.id, "task failed: its last lease expired");
                        t.events.publish(task.status_event());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not reap expired tasks"),
            }
            match t.store.claim_task(&self.name, t.settings.lease, now).await {
                Ok(Some(task)) => {
                    self.first.seen();
                    t.events.publish(task.status_event());
                    self.attempt(task).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, worker = %self.name, "could not claim a task"),
            }
            // Idle: wait for a new task (any replica's, through the bus) or the poll.
            self.first
                .idle_wait(&mut events, t.settings.poll, wakes)
                .await;
        }
    }

    /// Runs one attempt while renewing the lease; stops when cancelled or the lease is lost.
    async fn attempt(&self, task: Task) {
        let t = &self.tasks;
        let id = task.id.clone();
        let mut events = t.events.subscribe();
        let cancelled = async {
            loop {
                match events.recv().await {
                    Ok(e) if cancels(&e, id.as_str()) => return "cancelled",
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        futures_util::future::pending::<()>().await;
                    }
                }
            }
        };
        let renewals = async {
            let every = t.settings.lease / 3;
            loop {
                tokio::time::sleep(every).await;
                let until = t.clock.now() + chrono_duration(t.settings.lease);
                match t.store.renew_lease(&id, &self.name, until).await {
                    Ok(true) => {}
                    Ok(false) => return "lost its lease (cancelled or expired)",
                    Err(e) => {
                        tracing::warn!(task = %id, error = %e, "could not renew a task's lease")
                    }
                }
            }
        };
        let outcome = tokio::select! {
            outcome = self.turn(&task) => outcome,
            why = cancelled => {
                tracing::info!(task = %id, "task {why}: its turn is dropped");
                return;
            }
            why = renewals => {
                tracing::info!(task = %id, "task {why}: its turn is dropped");
                return;
            }
        };
        let now = t.clock.now();
        match t.store.finish_task(&id, &self.name, &outcome, now).await {
            Ok(Some(after)) => t.events.publish(after.status_event()),
            Ok(None) => {
                tracing::info!(task = %id, "task changed hands before it finished; its result is dropped")
            }
            Err(e) => {
                tracing::error!(task = %id, error = %e, "could not store a task's outcome; it runs again when its lease expires")
            }
        }
    }

    /// The agent turn of one attempt.
    async fn turn(&self, task: &Task) -> TaskOutcome {
        let t = &self.tasks;
        let mut log_meta = Map::new();
        log_meta.insert("task_id".into(), json!(task.id.as_str()));
        log_meta.insert("attempt".into(), json!(task.attempts));
        let request = TurnRequest {
            input_field: "description",
            ..TurnRequest::new(
                vec![PromptMessage::new(Role::User, task.prompt())],
                Memory::Run {
                    run_id: None,
                    log_meta,
                    log_now: false,
                },
            )
        };
        let target = TurnTarget::LiveAgent(AgentRef::Id(task.agent_id.clone()));
        let finished = match self.runtime.start_turn(None, target, request).await {
            Ok(turn) => {
                let run_id = turn.start().run_id.clone();
                turn.finish().await.map(|o| (o, run_id))
            }
            Err(e) => Err(e),
        };
        match finished {
            Ok((outcome, run_id)) => TaskOutcome::Completed(json!({
                "response": outcome.text,
                "model": outcome.model.to_string(),
                "finish_reason": outcome.finish_reason,
                "usage": outcome.usage.map(|u| json!({
                    "prompt_tokens": u.prompt_tokens,
                    "completion_tokens": u.completion_tokens,
                    "total_tokens": u.total_tokens,
                })),
                "run_id": run_id,
            })),
            Err(e) => {
                let factor = 2u32.saturating_pow(task.attempts.saturating_sub(1).min(16));
                let delay = t.settings.retry_base.saturating_mul(factor);
                let retry = matches!(
                    e,
                    Error::Provider { .. }
                        | Error::Unavailable(_)
                        | Error::Internal(_)
                        | Error::RateLimited { .. }
                );
                TaskOutcome::Failed {
                    error: e.to_string(),
                    retry,
                    retry_at: t.clock.now() + chrono_duration(delay),
                }
            }
        }
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
