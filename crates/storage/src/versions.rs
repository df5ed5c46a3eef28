//! [`VersionStore`] over diesel. Publishing numbers versions per agent without gaps or
//! duplicates under concurrency: in one transaction it first touches the agent's row (a write,
//! so SQLite takes its write lock at once, and PostgreSQL locks the agent's row until commit,
//! which queues concurrent publishes of the same agent), then reads the highest number and
//! inserts the next one. Should two inserts still collide on the primary key, the loser
//! starts over, a few times.

use agentry_domain::agent::{Agent, AgentId};
use agentry_domain::page::{Page, Paged};
use agentry_domain::ports::VersionStore;
use agentry_domain::version::AgentVersion;
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use diesel::dsl::max;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::connection::AnyConnection;
use crate::schema::{agent_versions, agents};
use crate::store::DieselStore;
use crate::translate::{is_missing_reference, other, query_error};
use crate::version_rows::{VersionRow, encode_snapshot};

/// How many times a publish that lost a race for its number starts over.
const PUBLISH_ATTEMPTS: usize = 5;

#[async_trait]
impl VersionStore for DieselStore {
    async fn publish_version(
        &self,
        snapshot: &Agent,
        note: Option<&str>,
        created_by: Option<&str>,
        now: DateTime<Utc>,
        draft: bool,
    ) -> Result<AgentVersion> {
        let draft = VersionRow {
            agent_id: snapshot.id.to_string(),
            version: 0,
            snapshot: encode_snapshot(snapshot)?,
            note: note.map(str::to_owned),
            created_by: created_by.map(str::to_owned),
            created_at: now.trunc_subsecs(6).naive_utc(),
            draft: i32::from(draft),
        };
        self.run(move |conn| publish(conn, draft)).await?.try_into()
    }

    async fn get_version(&self, agent: &AgentId, version: u32) -> Result<AgentVersion> {
        let agent = agent.to_string();
        let missing = || Error::not_found("version", format!("{agent}/{version}"));
        // No stored version is above i32::MAX.
        let Ok(number) = i32::try_from(version) else {
            return Err(missing());
        };
        let found = self
            .run(move |conn| {
                agent_versions::table
                    .find((&agent, number))
                    .select(VersionRow::as_select())
                    .first(conn)
                    .map_err(|e| other(e, "version", &format!("{agent}/{version}")))
            })
            .await?;
        found.try_into()
    }

    async fn latest_version(&self, agent: &AgentId) -> Result<Option<AgentVersion>> {
        let agent = agent.to_string();
        let found = self
            .run(move |conn| {
                agent_versions::table
                    .filter(agent_versions::agent_id.eq(&agent))
                    .filter(agent_versions::draft.eq(0))
                    .order(agent_versions::version.desc())
                    .select(VersionRow::as_select())
                    .first(conn)
                    .optional()
                    .map_err(query_error)
            })
            .await?;
        found.map(AgentVersion::try_from).transpose()
    }

    async fn list_versions(&self, agent: &AgentId, page: Page) -> Result<Paged<AgentVersion>> {
        let agent = agent.to_string();
        self.run(move |conn| {
            let (total, rows) = conn
                .transaction(|c| list_rows(c, &agent, page))
                .map_err(query_error)?;
            let items = rows
                .into_iter()
                .map(AgentVersion::try_from)
                .collect::<Result<_>>()?;
            let total =
                u64::try_from(total).map_err(|_| Error::Internal("negative count".into()))?;
            Ok(Paged { items, total, page })
        })
        .await
    }
}

/// Why one attempt to publish rolled back.
enum PublishError {
    /// A statement failed.
    Db(DieselError),
    /// The agent is not there.
    NoAgent,
    /// The agent has `i32::MAX` versions.
    Exhausted,
}

impl From<DieselError> for PublishError {
    fn from(error: DieselError) -> Self {
        Self::Db(error)
    }
}

/// Stores `draft` under the agent's next number and returns the stored row.
fn publish(conn: &mut AnyConnection, draft: VersionRow) -> Result<VersionRow> {
    let agent = draft.agent_id.clone();
    let not_found = || Error::not_found("agent", &agent);
    for _ in 0..PUBLISH_ATTEMPTS {
        match conn.transaction(|c| insert_next(c, &draft)) {
            Ok(row) => return Ok(row),
            Err(PublishError::NoAgent) => return Err(not_found()),
            Err(PublishError::Exhausted) => {
                return Err(Error::conflict(
                    "version",
                    format!("agent '{agent}' has no version numbers left"),
                ));
            }
            Err(PublishError::Db(e)) if is_missing_reference(&e) => return Err(not_found()),
            Err(PublishError::Db(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _,
            ))) => {
                tracing::debug!(agent_id = %agent, "version number taken by a concurrent publish; retrying");
            }
            Err(PublishError::Db(e)) => return Err(query_error(e)),
        }
    }
    Err(Error::conflict(
        "version",
        format!(
            "agent '{agent}' is being published concurrently; gave up after {PUBLISH_ATTEMPTS} attempts, retry"
        ),
    ))
}

/// One attempt, run in a transaction.
fn insert_next(conn: &mut AnyConnection, draft: &VersionRow) -> Result<VersionRow, PublishError> {
    // The first statement writes: it takes SQLite's write lock up front (waiting up to
    // busy_timeout) and PostgreSQL's lock on the agent's row, and tells whether it exists.
    let touched = diesel::update(agents::table.find(&draft.agent_id))
        .set(agents::updated_at.eq(agents::updated_at))
        .execute(conn)?;
    if touched == 0 {
        return Err(PublishError::NoAgent);
    }
    let highest: Option<i32> = agent_versions::table
        .filter(agent_versions::agent_id.eq(&draft.agent_id))
        .select(max(agent_versions::version))
        .first(conn)?;
    let version = highest
        .unwrap_or(0)
        .checked_add(1)
        .ok_or(PublishError::Exhausted)?;
    let row = VersionRow {
        version,
        ..draft.clone()
    };
    diesel::insert_into(agent_versions::table)
        .values(&row)
        .execute(conn)?;
    Ok(row)
}

/// The number of versions of `agent` and one page of them, newest first.
fn list_rows(
    conn: &mut AnyConnection,
    agent: &str,
    page: Page,
) -> QueryResult<(i64, Vec<VersionRow>)> {
    let total = agent_versions::table
        .filter(agent_versions::agent_id.eq(agent))
        .count()
        .get_result(conn)?;
    let rows = agent_versions::table
        .filter(agent_versions::agent_id.eq(agent))
        .select(VersionRow::as_select())
        .order(agent_versions::version.desc())
        .limit(i64::from(page.limit()))
        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX))
        .load(conn)?;
    Ok((total, rows))
}
