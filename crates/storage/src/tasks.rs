//! [`TaskStore`] over diesel: the task queue. A claim is one transaction that picks the
//! next task and takes its lease: on PostgreSQL the pick is `FOR UPDATE SKIP LOCKED` (two
//! replicas' workers never wait for, nor take, the same row); on SQLite the transaction is
//! `IMMEDIATE` (one writer at a time, so the pick and the update are one step).

use std::time::Duration;

use agentry_domain::agent::{AgentId, AgentKey};
use agentry_domain::page::{Page, Paged};
use agentry_domain::ports::TaskStore;
use agentry_domain::task::{Task, TaskFilter, TaskId, TaskOutcome, TaskPriority, TaskStatus};
use agentry_domain::{Error, Invalid, Result};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::OptionalExtension;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use serde_json::Value;

use crate::connection::on_backend;
use crate::connection::{AnyConnection, MultiBackend};
use crate::rows::{corrupt, parse_json};
use crate::schema::tasks;
use crate::store::DieselStore;
use crate::translate::{conflict_on, other, query_error};

/// One row of `tasks`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = tasks, treat_none_as_null = true)]
pub(crate) struct TaskRow {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub agent_id: String,
    pub agent_key: String,
    pub priority: String,
    pub priority_rank: i32,
    pub data: String,
    pub status: String,
    pub idempotency_scope: String,
    pub idempotency_key: Option<String>,
    pub max_attempts: i32,
    pub attempts: i32,
    pub run_at: NaiveDateTime,
    pub result: Option<String>,
    pub error: Option<String>,
    pub created_by: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub completed_at: Option<NaiveDateTime>,
}

fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl From<&Task> for TaskRow {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id.to_string(),
            title: t.title.clone(),
            description: t.description.clone(),
            agent_id: t.agent_id.to_string(),
            agent_key: t.agent_key.to_string(),
            priority: t.priority.as_str().to_owned(),
            priority_rank: t.priority.rank(),
            data: Value::Object(t.data.clone()).to_string(),
            status: t.status.as_str().to_owned(),
            idempotency_scope: t.created_by.clone().unwrap_or_default(),
            idempotency_key: t.idempotency_key.clone(),
            max_attempts: count(t.max_attempts),
            attempts: count(t.attempts),
            run_at: t.run_at.naive_utc(),
            result: t.result.as_ref().map(Value::to_string),
            error: t.error.clone(),
            created_by: t.created_by.clone(),
            lease_owner: t.lease_owner.clone(),
            lease_expires_at: t.lease_expires_at.map(|d| d.naive_utc()),
            created_at: t.created_at.naive_utc(),
            updated_at: t.updated_at.naive_utc(),
            started_at: t.started_at.map(|d| d.naive_utc()),
            completed_at: t.completed_at.map(|d| d.naive_utc()),
        }
    }
}

impl TryFrom<TaskRow> for Task {
    type Error = Error;

    fn try_from(row: TaskRow) -> Result<Self, Error> {
        let bad = |e: Invalid| corrupt("task", &row.id, &e);
        let attempts = |n: i32| u32::try_from(n).unwrap_or(0);
        Ok(Self {
            id: TaskId::parse(&row.id).map_err(bad)?,
            title: row.title.clone(),
            description: row.description.clone(),
            agent_id: AgentId::parse(&row.agent_id).map_err(bad)?,
            agent_key: AgentKey::parse(&row.agent_key).map_err(bad)?,
            priority: TaskPriority::parse(&row.priority).map_err(bad)?,
            data: parse_json("task", &row.id, "data", &row.data)?,
            status: TaskStatus::parse(&row.status).map_err(bad)?,
            idempotency_key: row.idempotency_key.clone(),
            max_attempts: attempts(row.max_attempts),
            attempts: attempts(row.attempts),
            run_at: row.run_at.and_utc(),
            result: match &row.result {
                Some(text) => Some(parse_json("task", &row.id, "result", text)?),
                None => None,
            },
            error: row.error.clone(),
            created_by: row.created_by.clone(),
            lease_owner: row.lease_owner.clone(),
            lease_expires_at: row.lease_expires_at.map(|d| d.and_utc()),
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
            started_at: row.started_at.map(|d| d.and_utc()),
            completed_at: row.completed_at.map(|d| d.and_utc()),
        })
    }
}

fn naive(d: DateTime<Utc>) -> NaiveDateTime {
    d.naive_utc()
}

/// The tasks matching `filter`.
fn matching(filter: &TaskFilter) -> tasks::BoxedQuery<'_, MultiBackend> {
    let mut query = tasks::table.into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(tasks::status.eq(status.as_str()));
    }
    if let Some(agent) = &filter.agent_id {
        query = query.filter(tasks::agent_id.eq(agent.as_str()));
    }
    if let Some(priority) = filter.priority {
        query = query.filter(tasks::priority.eq(priority.as_str()));
    }
    if let Some(keys) = &filter.agent_keys {
        query = query.filter(tasks::agent_key.eq_any(keys));
    }
    if let Some(creator) = &filter.created_by {
        query = query.filter(tasks::created_by.eq(creator));
    }
    query
}

fn existing(conn: &mut AnyConnection, scope: &str, key: &str) -> QueryResult<Option<TaskRow>> {
    tasks::table
        .filter(tasks::idempotency_scope.eq(scope))
        .filter(tasks::idempotency_key.eq(key))
        .select(TaskRow::as_select())
        .first(conn)
        .optional()
}

/// The claim's pick: the next runnable task (id and first start), highest priority first.
macro_rules! next_runnable {
    ($now:expr) => {
        tasks::table
            .filter(
                tasks::status
                    .eq("pending")
                    .and(tasks::run_at.le($now))
                    .or(tasks::status
                        .eq("running")
                        .and(tasks::lease_expires_at.lt($now))
                        .and(tasks::attempts.lt(tasks::max_attempts))),
            )
            .order((
                tasks::priority_rank.desc(),
                tasks::created_at.asc(),
                tasks::id.asc(),
            ))
            .select((tasks::id, tasks::started_at))
            .limit(1)
    };
}

/// The claim's update: `running` under `worker`'s lease, one more attempt.
macro_rules! take_lease {
    ($conn:expr, $picked:expr, $worker:expr, $until:expr, $now:expr) => {{
        let (id, started): (String, Option<NaiveDateTime>) = $picked;
        diesel::update(tasks::table.find(id))
            .set((
                tasks::status.eq("running"),
                tasks::lease_owner.eq($worker),
                tasks::lease_expires_at.eq(Some($until)),
                tasks::attempts.eq(tasks::attempts + 1),
                tasks::started_at.eq(Some(started.unwrap_or($now))),
                tasks::updated_at.eq($now),
            ))
            .returning(TaskRow::as_returning())
            .get_result::<TaskRow>($conn)
    }};
}

fn claim_row(
    conn: &mut AnyConnection,
    worker: &str,
    until: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<Option<TaskRow>> {
    // An idle queue is the usual case: a read tells, without taking SQLite's write lock (which
    // every turn's writes would then wait for) or a PostgreSQL row lock.
    let runnable = next_runnable!(now)
        .first::<(String, Option<NaiveDateTime>)>(conn)
        .optional()?;
    if runnable.is_none() {
        return Ok(None);
    }
    match conn {
        AnyConnection::Postgres(c) => c.transaction(|c| {
            let picked = next_runnable!(now)
                .for_update()
                .skip_locked()
                .first::<(String, Option<NaiveDateTime>)>(c)
                .optional()?;
            picked
                .map(|p| take_lease!(c, p, worker, until, now))
                .transpose()
        }),
        AnyConnection::Sqlite(c) => c.immediate_transaction(|c| {
            let picked = next_runnable!(now)
                .first::<(String, Option<NaiveDateTime>)>(c)
                .optional()?;
            picked
                .map(|p| take_lease!(c, p, worker, until, now))
                .transpose()
        }),
    }
}

#[async_trait]
impl TaskStore for DieselStore {
    async fn insert_task(&self, task: &Task) -> Result<(Task, bool)> {
        let row = TaskRow::from(task);
        self.run(move |conn| {
            let found = match &row.idempotency_key {
                Some(key) => existing(conn, &row.idempotency_scope, key).map_err(query_error)?,
                None => None,
            };
            if let Some(found) = found {
                return Ok((Task::try_from(found)?, false));
            }
            let inserted = diesel::insert_into(tasks::table).values(&row).execute(conn);
            match inserted {
                Ok(_) => Ok((Task::try_from(row)?, true)),
                Err(e) => match (conflict_on(&e), &row.idempotency_key) {
                    // Two creates with one key at once: the other one won.
                    (None, Some(key)) if is_unique_violation(&e) => {
                        let found = existing(conn, &row.idempotency_scope, key)
                            .map_err(query_error)?
                            .ok_or_else(|| query_error(e))?;
                        Ok((Task::try_from(found)?, false))
                    }
                    (Some(_), _) => Err(Error::conflict(
                        "id",
                        format!("a task with id '{}' already exists", row.id),
                    )),
                    _ => Err(query_error(e)),
                },
            }
        })
        .await
    }

    async fn get_task(&self, id: &TaskId) -> Result<Task> {
        let id = id.clone();
        self.run(move |conn| {
            tasks::table
                .find(id.as_str())
                .select(TaskRow::as_select())
                .first(conn)
                .map_err(|e| other(e, "task", id.as_str()))?
                .try_into()
        })
        .await
    }

    async fn list_tasks(&self, filter: &TaskFilter, page: Page) -> Result<Paged<Task>> {
        let filter = filter.clone();
        self.run(move |conn| {
            let (total, rows) = conn
                .transaction(|c| {
                    let total: i64 = matching(&filter).count().get_result(c)?;
                    let rows = matching(&filter)
                        .select(TaskRow::as_select())
                        .order((tasks::created_at.desc(), tasks::id.desc()))
                        .limit(i64::from(page.limit()))
                        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX))
                        .load(c)?;
                    Ok::<_, DieselError>((total, rows))
                })
                .map_err(query_error)?;
            let items = rows
                .into_iter()
                .map(Task::try_from)
                .collect::<Result<_>>()?;
            let total =
                u64::try_from(total).map_err(|_| Error::Internal("negative count".into()))?;
            Ok(Paged { items, total, page })
        })
        .await
    }

    async fn claim_task(
        &self,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>> {
        let worker = worker.to_owned();
        let until = naive(now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX));
        let now = naive(now);
        self.run(move |conn| {
            claim_row(conn, &worker, until, now)
                .map_err(query_error)?
                .map(Task::try_from)
                .transpose()
        })
        .await
    }

    async fn reap_tasks(&self, now: DateTime<Utc>) -> Result<Vec<Task>> {
        let now = naive(now);
        self.run(move |conn| {
            // Nothing to reap is the usual case: a read tells, without a write.
            let expired = tasks::table
                .filter(tasks::status.eq("running"))
                .filter(tasks::lease_expires_at.lt(now))
                .filter(tasks::attempts.ge(tasks::max_attempts))
                .select(tasks::id)
                .first::<String>(conn)
                .optional()
                .map_err(query_error)?;
            if expired.is_none() {
                return Ok(Vec::new());
            }
            let rows = on_backend!(conn, |c| diesel::update(
                tasks::table
                    .filter(tasks::status.eq("running"))
                    .filter(tasks::lease_expires_at.lt(now))
                    .filter(tasks::attempts.ge(tasks::max_attempts)),
            )
            .set((
                tasks::status.eq("failed"),
                tasks::error.eq("the worker running the last attempt stopped (its lease expired)"),
                tasks::lease_owner.eq(None::<String>),
                tasks::lease_expires_at.eq(None::<NaiveDateTime>),
                tasks::updated_at.eq(now),
                tasks::completed_at.eq(Some(now)),
            ))
            .returning(TaskRow::as_returning())
            .get_results::<TaskRow>(c))
            .map_err(query_error)?;
            rows.into_iter().map(Task::try_from).collect()
        })
        .await
    }

    async fn renew_lease(&self, id: &TaskId, worker: &str, until: DateTime<Utc>) -> Result<bool> {
        let (id, worker, until) = (id.to_string(), worker.to_owned(), naive(until));
        self.run(move |conn| {
            diesel::update(
                tasks::table
                    .find(&id)
                    .filter(tasks::status.eq("running"))
                    .filter(tasks::lease_owner.eq(&worker)),
            )
            .set(tasks::lease_expires_at.eq(Some(until)))
            .execute(conn)
            .map(|n| n > 0)
            .map_err(query_error)
        })
        .await
    }

    async fn finish_task(
        &self,
        id: &TaskId,
        worker: &str,
        outcome: &TaskOutcome,
        now: DateTime<Utc>,
    ) -> Result<Option<Task>> {
        let (id, worker, outcome, now) = (
            id.to_string(),
            worker.to_owned(),
            outcome.clone(),
            naive(now),
        );
        // Each write is one conditional statement: it applies only while the task runs
        // under this worker's lease, so a cancel or a new claim in between always wins.
        // `lease_owner` stays: it names the worker that ran the attempt.
        self.run(move |conn| {
            let row = on_backend!(conn, |c| {
                let ours = tasks::table
                    .find(&id)
                    .filter(tasks::status.eq("running"))
                    .filter(tasks::lease_owner.eq(&worker));
                match &outcome {
                    TaskOutcome::Completed(result) => diesel::update(ours)
                        .set((
                            tasks::status.eq("completed"),
                            tasks::result.eq(Some(result.to_string())),
                            tasks::error.eq(None::<String>),
                            tasks::lease_expires_at.eq(None::<NaiveDateTime>),
                            tasks::updated_at.eq(now),
                            tasks::completed_at.eq(Some(now)),
                        ))
                        .returning(TaskRow::as_returning())
                        .get_result::<TaskRow>(c)
                        .optional(),
                    TaskOutcome::Failed {
                        error,
                        retry,
                        retry_at,
                    } => {
                        let retried = if *retry {
                            diesel::update(ours.filter(tasks::attempts.lt(tasks::max_attempts)))
                                .set((
                                    tasks::status.eq("pending"),
                                    tasks::run_at.eq(naive(*retry_at)),
                                    tasks::error.eq(Some(error.clone())),
                                    tasks::lease_expires_at.eq(None::<NaiveDateTime>),
                                    tasks::updated_at.eq(now),
                                ))
                                .returning(TaskRow::as_returning())
                                .get_result::<TaskRow>(c)
                                .optional()
                        } else {
                            Ok(None)
                        };
                        match retried {
                            Ok(None) => diesel::update(ours)
                                .set((
                                    tasks::status.eq("failed"),
                                    tasks::error.eq(Some(error.clone())),
                                    tasks::lease_expires_at.eq(None::<NaiveDateTime>),
                                    tasks::updated_at.eq(now),
                                    tasks::completed_at.eq(Some(now)),
                                ))
                                .returning(TaskRow::as_returning())
                                .get_result::<TaskRow>(c)
                                .optional(),
                            other => other,
                        }
                    }
                }
            });
            row.map_err(query_error)?.map(Task::try_from).transpose()
        })
        .await
    }

    async fn cancel_task(&self, id: &TaskId, now: DateTime<Utc>) -> Result<Task> {
        let (id, now) = (id.to_string(), naive(now));
        self.run(move |conn| {
            let cancelled = on_backend!(conn, |c| diesel::update(
                tasks::table
                    .find(&id)
                    .filter(tasks::status.eq_any(["pending", "running"])),
            )
            .set((
                tasks::status.eq("cancelled"),
                tasks::lease_owner.eq(None::<String>),
                tasks::lease_expires_at.eq(None::<NaiveDateTime>),
                tasks::updated_at.eq(now),
                tasks::completed_at.eq(Some(now)),
            ))
            .returning(TaskRow::as_returning())
            .get_result::<TaskRow>(c)
            .optional())
            .map_err(query_error)?;
            let row = match cancelled {
                Some(row) => row,
                None => tasks::table
                    .find(&id)
                    .select(TaskRow::as_select())
                    .first(conn)
                    .map_err(|e| other(e, "task", &id))?,
            };
            Task::try_from(row)
        })
        .await
    }
}

fn is_unique_violation(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

#[async_trait]
impl agentry_domain::ports::RateUsageStore for DieselStore {
    async fn add_usage(
        &self,
        window: DateTime<Utc>,
        counts: &[(String, u64)],
    ) -> Result<Vec<(String, u64)>> {
        use crate::schema::rate_usage;
        let window = naive(window);
        let counts = counts.to_vec();
        self.run(move |conn| {
            let totals = conn
                .transaction(|c| {
                    let mut totals = Vec::with_capacity(counts.len());
                    for (key, n) in &counts {
                        let n = i64::try_from(*n).unwrap_or(i64::MAX);
                        let total: i64 =
                            on_backend!(&mut *c, |c| diesel::insert_into(rate_usage::table)
                                .values((
                                    rate_usage::client_key.eq(key),
                                    rate_usage::window_start.eq(window),
                                    rate_usage::count.eq(n),
                                ))
                                .on_conflict((rate_usage::client_key, rate_usage::window_start))
                                .do_update()
                                .set(rate_usage::count.eq(rate_usage::count + n))
                                .returning(rate_usage::count)
                                .get_result(c))?;
                        totals.push((key.clone(), u64::try_from(total).unwrap_or(0)));
                    }
                    let old = window - chrono::Duration::minutes(2);
                    diesel::delete(rate_usage::table.filter(rate_usage::window_start.lt(old)))
                        .execute(c)?;
                    Ok::<_, DieselError>(totals)
                })
                .map_err(query_error)?;
            Ok(totals)
        })
        .await
    }
}
