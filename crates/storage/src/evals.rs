//! [`EvalStore`] over diesel: test sets (cases as one JSON column, written under a revision
//! check), evaluation runs (claimed like tasks: `FOR UPDATE SKIP LOCKED` on PostgreSQL, an
//! `IMMEDIATE` transaction on SQLite) and their results (one row each, first write wins).

use std::collections::HashMap;
use std::time::Duration;

use agentry_domain::eval::{
    CaseId, Configuration, EvalResult, EvalRun, EvalRunFilter, EvalRunId, EvalStatus, TestCase,
    TestSet, TestSetId, TestSetSummary, Verdict,
};
use agentry_domain::page::{Page, Paged};
use agentry_domain::ports::EvalStore;
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
use crate::schema::{eval_results, eval_runs, testsets};
use crate::store::DieselStore;
use crate::translate::{conflict_on, other, query_error};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = testsets, treat_none_as_null = true)]
struct TestSetRow {
    id: String,
    name: String,
    description: Option<String>,
    cases: String,
    case_count: i64,
    revision: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

fn cases_json(cases: &[TestCase]) -> String {
    Value::Array(cases.iter().map(TestCase::to_json).collect()).to_string()
}

fn cases_of(entity: &str, id: &str, text: &str) -> Result<Vec<TestCase>> {
    let items: Vec<Value> = parse_json(entity, id, "cases", text)?;
    items
        .iter()
        .map(|c| TestCase::from_json("case", c).map_err(|e| corrupt(entity, id, &e)))
        .collect()
}

impl From<&TestSet> for TestSetRow {
    fn from(t: &TestSet) -> Self {
        Self {
            id: t.id.to_string(),
            name: t.name.clone(),
            description: t.description.clone(),
            cases: cases_json(&t.cases),
            case_count: i64::try_from(t.cases.len()).unwrap_or(i64::MAX),
            revision: t.revision,
            created_at: t.created_at.naive_utc(),
            updated_at: t.updated_at.naive_utc(),
        }
    }
}

impl TryFrom<TestSetRow> for TestSet {
    type Error = Error;

    fn try_from(row: TestSetRow) -> Result<Self> {
        Ok(Self {
            id: TestSetId::parse(&row.id).map_err(|e| corrupt("testset", &row.id, &e))?,
            cases: cases_of("testset", &row.id, &row.cases)?,
            name: row.name,
            description: row.description,
            revision: row.revision,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        })
    }
}

type SummaryColumns = (
    testsets::id,
    testsets::name,
    testsets::description,
    testsets::case_count,
    testsets::created_at,
    testsets::updated_at,
);
const SUMMARY: SummaryColumns = (
    testsets::id,
    testsets::name,
    testsets::description,
    testsets::case_count,
    testsets::created_at,
    testsets::updated_at,
);

fn summary(
    (id, name, description, count, created, updated): (
        String,
        String,
        Option<String>,
        i64,
        NaiveDateTime,
        NaiveDateTime,
    ),
) -> Result<TestSetSummary> {
    Ok(TestSetSummary {
        id: TestSetId::parse(&id).map_err(|e| corrupt("testset", &id, &e))?,
        name,
        description,
        case_count: u64::try_from(count).unwrap_or(0),
        created_at: created.and_utc(),
        updated_at: updated.and_utc(),
    })
}

fn name_taken(e: DieselError, name: &str, id: &str) -> Error {
    match conflict_on(&e) {
        Some("name") => {
            Error::conflict("name", format!("a test set named '{name}' already exists"))
        }
        Some(field) => Error::conflict(field, format!("a test set with id '{id}' already exists")),
        None => other(e, "testset", id),
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = eval_runs, treat_none_as_null = true)]
struct RunRow {
    id: String,
    testset_id: String,
    testset_name: String,
    status: String,
    configurations: String,
    cases: String,
    concurrency: i32,
    repeats: i32,
    judge: Option<String>,
    total: i64,
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

fn small(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl From<&EvalRun> for RunRow {
    fn from(r: &EvalRun) -> Self {
        Self {
            id: r.id.to_string(),
            testset_id: r.testset_id.to_string(),
            testset_name: r.testset_name.clone(),
            status: r.status.as_str().to_owned(),
            configurations: Value::Array(
                r.configurations
                    .iter()
                    .map(Configuration::to_json)
                    .collect(),
            )
            .to_string(),
            cases: cases_json(&r.cases),
            concurrency: small(r.concurrency),
            repeats: small(r.repeats),
            judge: r.judge.clone(),
            total: i64::try_from(r.total).unwrap_or(i64::MAX),
            error: r.error.clone(),
            created_by: r.created_by.clone(),
            lease_owner: r.lease_owner.clone(),
            lease_expires_at: r.lease_expires_at.map(|d| d.naive_utc()),
            attempts: small(r.attempts),
            created_at: r.created_at.naive_utc(),
            updated_at: r.updated_at.naive_utc(),
            started_at: r.started_at.map(|d| d.naive_utc()),
            completed_at: r.completed_at.map(|d| d.naive_utc()),
        }
    }
}

fn run_of(row: RunRow, done: u64) -> Result<EvalRun> {
    let bad = |e: Invalid| corrupt("eval_run", &row.id, &e);
    let configs: Vec<Value> =
        parse_json("eval_run", &row.id, "configurations", &row.configurations)?;
    let unsigned = |n: i32| u32::try_from(n).unwrap_or(0);
    Ok(EvalRun {
        id: EvalRunId::parse(&row.id).map_err(bad)?,
        testset_id: TestSetId::parse(&row.testset_id).map_err(bad)?,
        testset_name: row.testset_name.clone(),
        status: EvalStatus::parse(&row.status).map_err(bad)?,
        configurations: configs
            .iter()
            .map(|c| Configuration::from_json("configuration", c).map_err(bad))
            .collect::<Result<_>>()?,
        cases: cases_of("eval_run", &row.id, &row.cases)?,
        concurrency: unsigned(row.concurrency),
        repeats: unsigned(row.repeats),
        judge: row.judge.clone(),
        total: u64::try_from(row.total).unwrap_or(0),
        done,
        error: row.error.clone(),
        created_by: row.created_by.clone(),
        lease_owner: row.lease_owner.clone(),
        lease_expires_at: row.lease_expires_at.map(|d| d.and_utc()),
        attempts: unsigned(row.attempts),
        created_at: row.created_at.and_utc(),
        updated_at: row.updated_at.and_utc(),
        started_at: row.started_at.map(|d| d.and_utc()),
        completed_at: row.completed_at.map(|d| d.and_utc()),
    })
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = eval_results, treat_none_as_null = true)]
struct ResultRow {
    run_id: String,
    configuration: i32,
    case_id: String,
    repetition: i32,
    passed: i32,
    output: String,
    verdicts: String,
    error: Option<String>,
    latency_ms: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    model: Option<String>,
    tool_calls: String,
    created_at: NaiveDateTime,
}

fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl From<&EvalResult> for ResultRow {
    fn from(r: &EvalResult) -> Self {
        Self {
            run_id: r.run_id.to_string(),
            configuration: small(r.configuration),
            case_id: r.case_id.to_string(),
            repetition: small(r.repeat),
            passed: i32::from(r.passed),
            output: r.output.clone(),
            verdicts: Value::Array(r.verdicts.iter().map(Verdict::to_json).collect()).to_string(),
            error: r.error.clone(),
            latency_ms: big(r.latency_ms),
            prompt_tokens: big(r.prompt_tokens),
            completion_tokens: big(r.completion_tokens),
            model: r.model.clone(),
            tool_calls: Value::Array(r.tool_calls.clone()).to_string(),
            created_at: r.created_at.naive_utc(),
        }
    }
}

/// A stored verdict's kind as the domain's static word.
fn kind_word(kind: &str) -> &'static str {
    agentry_domain::eval::ASSERTION_KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("unknown")
}

impl TryFrom<ResultRow> for EvalResult {
    type Error = Error;

    fn try_from(row: ResultRow) -> Result<Self> {
        let bad = |e: Invalid| corrupt("eval_result", &row.run_id, &e);
        let verdicts: Vec<Value> =
            parse_json("eval_result", &row.run_id, "verdicts", &row.verdicts)?;
        let unsigned = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Self {
            run_id: EvalRunId::parse(&row.run_id).map_err(bad)?,
            configuration: u32::try_from(row.configuration).unwrap_or(0),
            case_id: CaseId::parse(&row.case_id).map_err(bad)?,
            repeat: u32::try_from(row.repetition).unwrap_or(0),
            passed: row.passed != 0,
            verdicts: verdicts
                .iter()
                .map(|v| Verdict {
                    kind: kind_word(v.get("type").and_then(Value::as_str).unwrap_or_default()),
                    passed: v.get("passed").and_then(Value::as_bool).unwrap_or(false),
                    reason: v
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    score: v.get("score").and_then(Value::as_f64),
                })
                .collect(),
            tool_calls: parse_json("eval_result", &row.run_id, "tool_calls", &row.tool_calls)?,
            output: row.output,
            error: row.error,
            latency_ms: unsigned(row.latency_ms),
            prompt_tokens: unsigned(row.prompt_tokens),
            completion_tokens: unsigned(row.completion_tokens),
            model: row.model,
            created_at: row.created_at.and_utc(),
        })
    }
}

/// Results stored per run, for the runs given.
fn done_counts(conn: &mut AnyConnection, ids: &[String]) -> QueryResult<HashMap<String, u64>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64)> = eval_results::table
        .filter(eval_results::run_id.eq_any(ids))
        .group_by(eval_results::run_id)
        .select((eval_results::run_id, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, n)| (id, u64::try_from(n).unwrap_or(0)))
        .collect())
}

fn matching(filter: &EvalRunFilter) -> eval_runs::BoxedQuery<'_, MultiBackend> {
    let mut q = eval_runs::table.into_boxed();
    if let Some(t) = &filter.testset_id {
        q = q.filter(eval_runs::testset_id.eq(t.as_str()));
    }
    if let Some(s) = filter.status {
        q = q.filter(eval_runs::status.eq(s.as_str()));
    }
    if let Some(c) = &filter.created_by {
        q = q.filter(eval_runs::created_by.eq(c));
    }
    q
}

macro_rules! next_run {
    ($now:expr) => {
        eval_runs::table
            .filter(
                eval_runs::status.eq("pending").or(eval_runs::status
                    .eq("running")
                    .and(eval_runs::lease_expires_at.lt($now))),
            )
            .order((eval_runs::created_at.asc(), eval_runs::id.asc()))
            .select((eval_runs::id, eval_runs::started_at))
            .limit(1)
    };
}

macro_rules! take_run {
    ($conn:expr, $picked:expr, $runner:expr, $until:expr, $now:expr) => {{
        let (id, started): (String, Option<NaiveDateTime>) = $picked;
        diesel::update(eval_runs::table.find(id))
            .set((
                eval_runs::status.eq("running"),
                eval_runs::lease_owner.eq($runner),
                eval_runs::lease_expires_at.eq(Some($until)),
                eval_runs::attempts.eq(eval_runs::attempts + 1),
                eval_runs::started_at.eq(Some(started.unwrap_or($now))),
                eval_runs::updated_at.eq($now),
            ))
            .returning(RunRow::as_returning())
            .get_result::<RunRow>($conn)
    }};
}

fn claim(
    conn: &mut AnyConnection,
    runner: &str,
    until: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<Option<RunRow>> {
    // Usually nothing waits: a read tells, without a write lock.
    if next_run!(now)
        .first::<(String, Option<NaiveDateTime>)>(conn)
        .optional()?
        .is_none()
    {
        return Ok(None);
    }
    match conn {
        AnyConnection::Postgres(c) => c.transaction(|c| {
            next_run!(now)
                .for_update()
                .skip_locked()
                .first::<(String, Option<NaiveDateTime>)>(c)
                .optional()?
                .map(|p| take_run!(c, p, runner, until, now))
                .transpose()
        }),
        AnyConnection::Sqlite(c) => c.immediate_transaction(|c| {
            next_run!(now)
                .first::<(String, Option<NaiveDateTime>)>(c)
                .optional()?
                .map(|p| take_run!(c, p, runner, until, now))
                .transpose()
        }),
    }
}

fn count(conn: &mut AnyConnection, id: &str) -> QueryResult<u64> {
    let n: i64 = eval_results::table
        .filter(eval_results::run_id.eq(id))
        .count()
        .get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[async_trait]
impl EvalStore for DieselStore {
    async fn insert_testset(&self, set: &TestSet) -> Result<()> {
        let row = TestSetRow::from(set);
        self.run(move |conn| {
            diesel::insert_into(testsets::table)
                .values(&row)
                .execute(conn)
                .map_err(|e| name_taken(e, &row.name, &row.id))?;
            Ok(())
        })
        .await
    }

    async fn get_testset(&self, id: &TestSetId) -> Result<TestSet> {
        let id = id.to_string();
        self.run(move |conn| {
            testsets::table
                .find(&id)
                .select(TestSetRow::as_select())
                .first(conn)
                .map_err(|e| other(e, "testset", &id))?
                .try_into()
        })
        .await
    }

    async fn get_testset_by_name(&self, name: &str) -> Result<TestSet> {
        let name = name.to_owned();
        self.run(move |conn| {
            testsets::table
                .filter(testsets::name.eq(&name))
                .select(TestSetRow::as_select())
                .first(conn)
                .map_err(|e| other(e, "testset", &name))?
                .try_into()
        })
        .await
    }

    async fn list_testsets(&self, page: Page) -> Result<Paged<TestSetSummary>> {
        self.run(move |conn| {
            let (total, rows) = conn
                .transaction(|c| {
                    let total: i64 = testsets::table.count().get_result(c)?;
                    let rows = testsets::table
                        .select(SUMMARY)
                        .order((testsets::created_at.desc(), testsets::id.desc()))
                        .limit(i64::from(page.limit()))
                        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX))
                        .load(c)?;
                    Ok::<_, DieselError>((total, rows))
                })
                .map_err(query_error)?;
            Ok(Paged {
                items: rows.into_iter().map(summary).collect::<Result<_>>()?,
                total: u64::try_from(total).unwrap_or(0),
                page,
            })
        })
        .await
    }

    async fn update_testset(&self, set: &TestSet, expected_revision: i64) -> Result<bool> {
        let row = TestSetRow::from(set);
        self.run(move |conn| {
            let n = diesel::update(
                testsets::table
                    .find(&row.id)
                    .filter(testsets::revision.eq(expected_revision)),
            )
            .set((
                testsets::name.eq(&row.name),
                testsets::description.eq(&row.description),
                testsets::cases.eq(&row.cases),
                testsets::case_count.eq(row.case_count),
                testsets::revision.eq(row.revision),
                testsets::updated_at.eq(row.updated_at),
            ))
            .execute(conn)
            .map_err(|e| name_taken(e, &row.name, &row.id))?;
            if n > 0 {
                return Ok(true);
            }
            let exists = testsets::table
                .find(&row.id)
                .select(testsets::id)
                .first::<String>(conn)
                .optional()
                .map_err(query_error)?;
            match exists {
                Some(_) => Ok(false),
                None => Err(Error::not_found("testset", row.id.clone())),
            }
        })
        .await
    }

    async fn delete_testset(&self, id: &TestSetId) -> Result<bool> {
        let id = id.to_string();
        self.run(move |conn| {
            diesel::delete(testsets::table.find(&id))
                .execute(conn)
                .map(|n| n > 0)
                .map_err(query_error)
        })
        .await
    }

    async fn insert_eval_run(&self, run: &EvalRun) -> Result<()> {
        let row = RunRow::from(run);
        self.run(move |conn| {
            diesel::insert_into(eval_runs::table)
                .values(&row)
                .execute(conn)
                .map_err(|e| match conflict_on(&e) {
                    Some(_) => Error::conflict(
                        "id",
                        format!("an evaluation run with id '{}' already exists", row.id),
                    ),
                    None => query_error(e),
                })?;
            Ok(())
        })
        .await
    }

    async fn get_eval_run(&self, id: &EvalRunId) -> Result<EvalRun> {
        let id = id.to_string();
        self.run(move |conn| {
            let (row, done) = conn
                .transaction(|c| {
                    let row = eval_runs::table
                        .find(&id)
                        .select(RunRow::as_select())
                        .first(c)?;
                    let done = count(c, &id)?;
                    Ok::<_, DieselError>((row, done))
                })
                .map_err(|e| other(e, "eval_run", &id))?;
            run_of(row, done)
        })
        .await
    }

    async fn list_eval_runs(&self, filter: &EvalRunFilter, page: Page) -> Result<Paged<EvalRun>> {
        let filter = filter.clone();
        self.run(move |conn| {
            let (total, rows, done) = conn
                .transaction(|c| {
                    let total: i64 = matching(&filter).count().get_result(c)?;
                    let rows: Vec<RunRow> = matching(&filter)
                        .select(RunRow::as_select())
                        .order((eval_runs::created_at.desc(), eval_runs::id.desc()))
                        .limit(i64::from(page.limit()))
                        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX))
                        .load(c)?;
                    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
                    let done = done_counts(c, &ids)?;
                    Ok::<_, DieselError>((total, rows, done))
                })
                .map_err(query_error)?;
            let items = rows
                .into_iter()
                .map(|r| {
                    let d = done.get(&r.id).copied().unwrap_or(0);
                    run_of(r, d)
                })
                .collect::<Result<_>>()?;
            Ok(Paged {
                items,
                total: u64::try_from(total).unwrap_or(0),
                page,
            })
        })
        .await
    }

    async fn claim_eval_run(
        &self,
        runner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<EvalRun>> {
        let runner = runner.to_owned();
        let until =
            (now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)).naive_utc();
        let now = now.naive_utc();
        self.run(move |conn| {
            let Some(row) = claim(conn, &runner, until, now).map_err(query_error)? else {
                return Ok(None);
            };
            let done = count(conn, &row.id).map_err(query_error)?;
            run_of(row, done).map(Some)
        })
        .await
    }

    async fn renew_eval_lease(
        &self,
        id: &EvalRunId,
        runner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let (id, runner, until) = (id.to_string(), runner.to_owned(), until.naive_utc());
        self.run(move |conn| {
            diesel::update(
                eval_runs::table
                    .find(&id)
                    .filter(eval_runs::status.eq("running"))
                    .filter(eval_runs::lease_owner.eq(&runner)),
            )
            .set(eval_runs::lease_expires_at.eq(Some(until)))
            .execute(conn)
            .map(|n| n > 0)
            .map_err(query_error)
        })
        .await
    }

    async fn insert_eval_result(&self, result: &EvalResult) -> Result<()> {
        let row = ResultRow::from(result);
        self.run(move |conn| {
            on_backend!(conn, |c| diesel::insert_into(eval_results::table)
                .values(&row)
                .on_conflict_do_nothing()
                .execute(c))
            .map_err(query_error)?;
            Ok(())
        })
        .await
    }

    async fn eval_results(&self, id: &EvalRunId) -> Result<Vec<EvalResult>> {
        let id = id.to_string();
        self.run(move |conn| {
            eval_results::table
                .filter(eval_results::run_id.eq(&id))
                .order((
                    eval_results::configuration.asc(),
                    eval_results::case_id.asc(),
                    eval_results::repetition.asc(),
                ))
                .select(ResultRow::as_select())
                .load(conn)
                .map_err(query_error)?
                .into_iter()
                .map(EvalResult::try_from)
                .collect()
        })
        .await
    }

    async fn finish_eval_run(
        &self,
        id: &EvalRunId,
        runner: &str,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (id, runner, error, now) = (
            id.to_string(),
            runner.to_owned(),
            error.map(str::to_owned),
            now.naive_utc(),
        );
        self.run(move |conn| {
            diesel::update(
                eval_runs::table
                    .find(&id)
                    .filter(eval_runs::status.eq("running"))
                    .filter(eval_runs::lease_owner.eq(&runner)),
            )
            .set((
                eval_runs::status.eq(if error.is_some() {
                    "failed"
                } else {
                    "completed"
                }),
                eval_runs::error.eq(&error),
                eval_runs::lease_expires_at.eq(None::<NaiveDateTime>),
                eval_runs::updated_at.eq(now),
                eval_runs::completed_at.eq(Some(now)),
            ))
            .execute(conn)
            .map(|n| n > 0)
            .map_err(query_error)
        })
        .await
    }

    async fn cancel_eval_run(&self, id: &EvalRunId, now: DateTime<Utc>) -> Result<EvalRun> {
        let (id, now) = (id.to_string(), now.naive_utc());
        self.run(move |conn| {
            diesel::update(
                eval_runs::table
                    .find(&id)
                    .filter(eval_runs::status.eq_any(["pending", "running"])),
            )
            .set((
                eval_runs::status.eq("cancelled"),
                eval_runs::lease_owner.eq(None::<String>),
                eval_runs::lease_expires_at.eq(None::<NaiveDateTime>),
                eval_runs::updated_at.eq(now),
                eval_runs::completed_at.eq(Some(now)),
            ))
            .execute(conn)
            .map_err(query_error)?;
            let row = eval_runs::table
                .find(&id)
                .select(RunRow::as_select())
                .first(conn)
                .map_err(|e| other(e, "eval_run", &id))?;
            let done = count(conn, &id).map_err(query_error)?;
            run_of(row, done)
        })
        .await
    }
}
