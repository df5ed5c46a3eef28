//! [`RunStore`] over diesel. The string fields `user_id`, `session_id` and `component` of a
//! run's `log_meta` are copied into columns of their own when it is stored, for the filters.

use agentry_domain::conversation::{Run, RunFilter};
use agentry_domain::page::{Page, Paged};
use agentry_domain::ports::RunStore;
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use diesel::prelude::*;

use crate::connection::{AnyConnection, MultiBackend};
use crate::group_commit::{Later, Write};
use crate::history_rows::RunRow;
use crate::multi_row::insert_runs;
use crate::schema::runs;
use crate::store::DieselStore;
use crate::translate::{conflict_on, other, query_error};

#[async_trait]
impl RunStore for DieselStore {
    async fn insert_run(&self, run: &Run) -> Result<()> {
        // In a group commit, as a turn's messages: concurrent callers share a transaction
        // instead of queuing for SQLite's write lock (whose busy handler sleeps in growing
        // steps) or each making their own round trips on PostgreSQL.
        self.grouped(InsertRun(RunRow::try_from(run)?))
            .await
            .map(|_| ())
    }

    async fn log_run(&self, run: &Run) -> Result<()> {
        if self.run_log.enqueue(RunRow::try_from(run)?) {
            Ok(())
        } else {
            self.insert_run(run).await
        }
    }

    async fn get_run(&self, id: &str) -> Result<Run> {
        let id = id.to_owned();
        self.run(move |conn| {
            let found = runs::table
                .find(&id)
                .select(RunRow::as_select())
                .first(conn);
            found.map_err(|e| other(e, "run", &id))?.try_into()
        })
        .await
    }

    async fn list_runs(&self, filter: &RunFilter, page: Page) -> Result<Paged<Run>> {
        let filter = filter.clone();
        self.run(move |conn| {
            let (total, rows) = conn
                .transaction(|c| list_rows(c, &filter, page))
                .map_err(query_error)?;
            let items = rows.into_iter().map(Run::try_from).collect::<Result<_>>()?;
            let total =
                u64::try_from(total).map_err(|_| Error::Internal("negative count".into()))?;
            Ok(Paged { items, total, page })
        })
        .await
    }
}

/// A run the caller waits for.
struct InsertRun(RunRow);

impl Write for InsertRun {
    fn now(&self, conn: &mut AnyConnection) -> Result<bool> {
        let row = &self.0;
        match insert_runs(conn, std::slice::from_ref(row)) {
            Ok(_) => Ok(true),
            Err(e) if conflict_on(&e).is_some() => Err(Error::conflict(
                "run_id",
                format!("a run with id '{}' already exists", row.id),
            )),
            Err(e) => Err(other(e, "run", &row.id)),
        }
    }

    fn batched(&self, _: &mut AnyConnection, later: &mut Later) -> Result<bool> {
        later.run(&self.0);
        Ok(true)
    }
}

/// The number of matches and one page of them, newest first.
fn list_rows(
    conn: &mut AnyConnection,
    filter: &RunFilter,
    page: Page,
) -> QueryResult<(i64, Vec<RunRow>)> {
    let total = matching(filter).count().get_result(conn)?;
    let rows = matching(filter)
        .select(RunRow::as_select())
        .order((runs::created_at.desc(), runs::id.desc()))
        .limit(i64::from(page.limit()))
        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX))
        .load(conn)?;
    Ok((total, rows))
}

/// The runs for which every criterion of `filter` holds.
fn matching(filter: &RunFilter) -> runs::BoxedQuery<'_, MultiBackend> {
    let mut query = runs::table.into_boxed();
    if let Some(user_id) = &filter.user_id {
        query = query.filter(runs::user_id.eq(user_id.as_str()));
    }
    if let Some(session_id) = &filter.session_id {
        query = query.filter(runs::session_id.eq(session_id.as_str()));
    }
    if let Some(component) = &filter.component {
        query = query.filter(runs::component.eq(component.as_str()));
    }
    query
}
