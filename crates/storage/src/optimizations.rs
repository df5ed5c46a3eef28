//! [`OptimizationStore`] over diesel: one row per optimisation, its request and progress as
//! JSON, claimed like an evaluation run (`FOR UPDATE SKIP LOCKED` on PostgreSQL, an
//! `IMMEDIATE` transaction on SQLite). A partial unique index keeps one pending or running
//! optimisation per agent.

use std::time::Duration;

use agentry_domain::agent::AgentId;
use agentry_domain::eval::TestSetId;
use agentry_domain::optimization::{
    Optimization, OptimizationId, OptimizationRequest, Phase, Progress,
};
use agentry_domain::page::{Page, Paged};
use agentry_domain::ports::OptimizationStore;
use agentry_domain::task::TaskStatus;
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::OptionalExtension;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde_json::Value;

use crate::connection::AnyConnection;
use crate::rows::{corrupt, corrupt_text, parse_json};
use crate::schema::optimizations;
use crate::store::DieselStore;
use crate::translate::{other, query_error};

const ENTITY: &str = "optimization";

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = optimizations, treat_none_as_null = true)]
struct Row {
    id: String,
    agent_id: String,
    testset_id: String,
    status: String,
    phase: Option<String>,
    request: String,
    progress: String,
    draft_version: Option<i32>,
    error: Option<String>,
    created_by: Option<String>,
    lease_owner: Option<String>,
    lease_expires_at: Option<NaiveDateTime>,
    attempts: i32,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    started_at: Option<NaiveDateTime>,
    completed_at: Option<NaiveDateTime>,
}

impl From<&Optimization> for Row {
    fn from(o: &Optimization) -> Self {
        Self {
            id: o.id.to_string(),
            agent_id: o.agent_id.to_string(),
            testset_id: o.testset_id.to_string(),
            status: o.status.as_str().to_owned(),
            phase: o.phase.map(|p| p.as_str().to_owned()),
            request: o.request.to_json().to_string(),
            progress: o.progress.to_json().to_string(),
            draft_version: o.draft_version.and_then(|v| i32::try_from(v).ok()),
            error: o.error.clone(),
            created_by: o.created_by.clone(),
            lease_owner: o.lease_owner.clone(),
            lease_expires_at: o.lease_expires_at.map(|t| t.naive_utc()),
            attempts: i32::try_from(o.attempts).unwrap_or(i32::MAX),
            created_at: o.created_at.naive_utc(),
            updated_at: o.updated_at.naive_utc(),
            started_at: o.started_at.map(|t| t.naive_utc()),
            completed_at: o.completed_at.map(|t| t.naive_utc()),
        }
    }
}

fn optimization_of(r: Row) -> Result<Optimization> {
    let id = r.id.as_str();
    let request: Value = parse_json(ENTITY, id, "request", &r.request)?;
    let progress: Value = parse_json(ENTITY, id, "progress", &r.progress)?;
    Ok(Optimization {
        id: OptimizationId::parse(id).map_err(|e| corrupt(ENTITY, id, &e))?,
        agent_id: AgentId::parse(&r.agent_id).map_err(|e| corrupt(ENTITY, id, &e))?,
        testset_id: TestSetId::parse(&r.testset_id).map_err(|e| corrupt(ENTITY, id, &e))?,
        status: TaskStatus::parse(&r.status).map_err(|e| corrupt(ENTITY, id, &e))?,
        phase: match &r.phase {
            None => None,
            Some(p) => {
                Some(Phase::parse(p).ok_or_else(|| corrupt_text(ENTITY, id, "unknown phase"))?)
            }
        },
        request: OptimizationRequest::from_json(&request).map_err(|e| corrupt(ENTITY, id, &e))?,
        progress: Progress::from_json(&progress),
        draft_version: r.draft_version.and_then(|v| u32::try_from(v).ok()),
        error: r.error,
        created_by: r.created_by,
        lease_owner: r.lease_owner,
        lease_expires_at: r.lease_expires_at.map(|t| t.and_utc()),
        attempts: u32::try_from(r.attempts).unwrap_or(0),
        created_at: r.created_at.and_utc(),
        updated_at: r.updated_at.and_utc(),
        started_at: r.started_at.map(|t| t.and_utc()),
        completed_at: r.completed_at.map(|t| t.and_utc()),
    })
}

macro_rules! next {
    ($now:expr) => {
        optimizations::table
            .filter(
                optimizations::status.eq("pending").or(optimizations::status
                    .eq("running")
                    .and(optimizations::lease_expires_at.lt($now))),
            )
            .order((optimizations::created_at.asc(), optimizations::id.asc()))
            .select((optimizations::id, optimizations::started_at))
            .limit(1)
    };
}

macro_rules! take {
    ($conn:expr, $picked:expr, $runner:expr, $until:expr, $now:expr) => {{
        let (id, started): (String, Option<NaiveDateTime>) = $picked;
        diesel::update(optimizations::table.find(id))
            .set((
                optimizations::status.eq("running"),
                optimizations::lease_owner.eq($runner),
                optimizations::lease_expires_at.eq(Some($until)),
                optimizations::attempts.eq(optimizations::attempts + 1),
                optimizations::started_at.eq(Some(started.unwrap_or($now))),
                optimizations::updated_at.eq($now),
            ))
            .returning(Row::as_returning())
            .get_result::<Row>($conn)
    }};
}

fn claim(
    conn: &mut AnyConnection,
    runner: &str,
    until: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<Option<Row>> {
    // Usually nothing waits: a read tells, without a write lock.
    if next!(now)
        .first::<(String, Option<NaiveDateTime>)>(conn)
        .optional()?
        .is_none()
    {
        return Ok(None);
    }
    match conn {
        AnyConnection::Postgres(c) => c.transaction(|c| {
            next!(now)
                .for_update()
                .skip_locked()
                .first::<(String, Option<NaiveDateTime>)>(c)
                .optional()?
                .map(|p| take!(c, p, runner, until, now))
                .transpose()
        }),
        AnyConnection::Sqlite(c) => c.immediate_transaction(|c| {
            next!(now)
                .first::<(String, Option<NaiveDateTime>)>(c)
                .optional()?
                .map(|p| take!(c, p, runner, until, now))
                .transpose()
        }),
    }
}

fn load(conn: &mut AnyConnection, id: &str) -> Result<Row> {
    optimizations::table
        .find(id)
        .select(Row::as_select())
        .first(conn)
        .map_err(|e| other(e, ENTITY, id))
}

#[async_trait]
impl OptimizationStore for DieselStore {
    async fn insert_optimization(&self, o: &Optimization) -> Result<()> {
        let row = Row::from(o);
        self.run(move |conn| {
            diesel::insert_into(optimizations::table)
                .values(&row)
                .execute(conn)
                .map_err(|e| match e {
                    DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                        Error::conflict(
                            "agent",
                            format!(
                                "agent '{}' has an optimisation pending or running",
                                row.agent_id
                            ),
                        )
                    }
                    e => query_error(e),
                })?;
            Ok(())
        })
        .await
    }

    async fn get_optimization(&self, id: &OptimizationId) -> Result<Optimization> {
        let id = id.to_string();
        self.run(move |conn| optimization_of(load(conn, &id)?))
            .await
    }

    async fn list_optimizations(&self, agent: &AgentId, page: Page) -> Result<Paged<Optimization>> {
        let agent = agent.to_string();
        self.run(move |conn| {
            let (total, rows) = conn
                .transaction(|c| {
                    let total: i64 = optimizations::table
                        .filter(optimizations::agent_id.eq(&agent))
                        .count()
                        .get_result(c)?;
                    let rows: Vec<Row> = optimizations::table
                        .filter(optimizations::agent_id.eq(&agent))
                        .select(Row::as_select())
                        .order((optimizations::created_at.desc(), optimizations::id.desc()))
                        .limit(i64::from(page.limit()))
                        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX))
                        .load(c)?;
                    Ok::<_, DieselError>((total, rows))
                })
                .map_err(query_error)?;
            Ok(Paged {
                items: rows
                    .into_iter()
                    .map(optimization_of)
                    .collect::<Result<_>>()?,
                total: u64::try_from(total).unwrap_or(0),
                page,
            })
        })
        .await
    }

    async fn optimization_state(
        &self,
        agent: &AgentId,
    ) -> Result<(Option<Optimization>, Option<DateTime<Utc>>)> {
        let agent = agent.to_string();
        self.run(move |conn| {
            let latest: Option<Row> = optimizations::table
                .filter(optimizations::agent_id.eq(&agent))
                .select(Row::as_select())
                .order((optimizations::created_at.desc(), optimizations::id.desc()))
                .first(conn)
                .optional()
                .map_err(query_error)?;
            let last: Option<Option<NaiveDateTime>> = optimizations::table
                .filter(optimizations::agent_id.eq(&agent))
                .filter(optimizations::status.eq("completed"))
                .select(optimizations::completed_at)
                .order(optimizations::completed_at.desc())
                .first(conn)
                .optional()
                .map_err(query_error)?;
            Ok((
                latest.map(optimization_of).transpose()?,
                last.flatten().map(|t| t.and_utc()),
            ))
        })
        .await
    }

    async fn claim_optimization(
        &self,
        runner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Optimization>> {
        let runner = runner.to_owned();
        let until =
            (now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)).naive_utc();
        let now = now.naive_utc();
        self.run(move |conn| {
            claim(conn, &runner, until, now)
                .map_err(query_error)?
                .map(optimization_of)
                .transpose()
        })
        .await
    }

    async fn save_optimization(
        &self,
        o: &Optimization,
        runner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        let row = Row::from(o);
        let (runner, until) = (runner.to_owned(), lease_until.naive_utc());
        self.run(move |conn| {
            diesel::update(
                optimizations::table
                    .find(&row.id)
                    .filter(optimizations::status.eq("running"))
                    .filter(optimizations::lease_owner.eq(&runner)),
            )
            .set((
                optimizations::phase.eq(&row.phase),
                optimizations::progress.eq(&row.progress),
                optimizations::lease_expires_at.eq(Some(until)),
                optimizations::updated_at.eq(row.updated_at),
            ))
            .execute(conn)
            .map(|n| n > 0)
            .map_err(query_error)
        })
        .await
    }

    async fn finish_optimization(
        &self,
        o: &Optimization,
        runner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let row = Row::from(o);
        let (runner, now) = (runner.to_owned(), now.naive_utc());
        self.run(move |conn| {
            diesel::update(
                optimizations::table
                    .find(&row.id)
                    .filter(optimizations::status.eq("running"))
                    .filter(optimizations::lease_owner.eq(&runner)),
            )
            .set((
                optimizations::status.eq(&row.status),
                optimizations::phase.eq(None::<String>),
                optimizations::progress.eq(&row.progress),
                optimizations::draft_version.eq(row.draft_version),
                optimizations::error.eq(&row.error),
                optimizations::lease_expires_at.eq(None::<NaiveDateTime>),
                optimizations::updated_at.eq(now),
                optimizations::completed_at.eq(Some(now)),
            ))
            .execute(conn)
            .map(|n| n > 0)
            .map_err(query_error)
        })
        .await
    }

    async fn cancel_optimization(
        &self,
        id: &OptimizationId,
        now: DateTime<Utc>,
    ) -> Result<Optimization> {
        let (id, now) = (id.to_string(), now.naive_utc());
        self.run(move |conn| {
            diesel::update(
                optimizations::table
                    .find(&id)
                    .filter(optimizations::status.eq_any(["pending", "running"])),
            )
            .set((
                optimizations::status.eq("cancelled"),
                optimizations::phase.eq(None::<String>),
                optimizations::lease_owner.eq(None::<String>),
                optimizations::lease_expires_at.eq(None::<NaiveDateTime>),
                optimizations::updated_at.eq(now),
                optimizations::completed_at.eq(Some(now)),
            ))
            .execute(conn)
            .map_err(query_error)?;
            optimization_of(load(conn, &id)?)
        })
        .await
    }
}
