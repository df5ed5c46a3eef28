//! [`AgentStore`] over diesel. Tags live twice: as JSON in `agents.tags` (the agent as
//! written) and as rows of `agent_tags` (for the tags filter), written in one transaction.

use agentry_domain::agent::{Agent, AgentFilter, AgentId, AgentKey, AgentRef};
use agentry_domain::page::{Page, Paged};
use agentry_domain::ports::AgentStore;
use agentry_domain::provider::ProviderId;
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

use crate::connection::{AnyConnection, MultiBackend};
use crate::rows::{AgentRow, AgentTagRow};
use crate::schema::{agent_tags, agents};
use crate::store::DieselStore;
use crate::translate::{agent_error, other, query_error};

/// Most keys [`AgentStore::agents_using_provider`] returns.
const USING_PROVIDER_MAX: i64 = 100;

#[async_trait]
impl AgentStore for DieselStore {
    async fn insert_agent(&self, agent: &Agent) -> Result<()> {
        let (row, tags) = (AgentRow::try_from(agent)?, AgentRow::tag_rows(agent));
        self.run(move |conn| {
            // The first statement writes, so SQLite takes the write lock up front (waiting
            // up to busy_timeout) instead of failing to upgrade a read transaction.
            conn.transaction(|c| {
                diesel::insert_into(agents::table).values(&row).execute(c)?;
                replace_tags(c, &row.id, &tags)
            })
            .map_err(|e| agent_error(e, &row))
        })
        .await
    }

    async fn get_agent(&self, agent: &AgentRef) -> Result<Agent> {
        let agent = agent.clone();
        self.run(move |conn| {
            let found = match &agent {
                AgentRef::Id(id) => agents::table
                    .find(id.as_str())
                    .select(AgentRow::as_select())
                    .first(conn),
                AgentRef::Key(key) => agents::table
                    .filter(agents::key.eq(key.as_str()))
                    .select(AgentRow::as_select())
                    .first(conn),
            };
            found
                .map_err(|e| other(e, "agent", &agent.to_string()))?
                .try_into()
        })
        .await
    }

    async fn list_agents(&self, filter: &AgentFilter, page: Page) -> Result<Paged<Agent>> {
        let filter = filter.clone();
        self.run(move |conn| {
            let (total, rows) = conn
                .transaction(|c| list_rows(c, &filter, page))
                .map_err(query_error)?;
            let items = rows
                .into_iter()
                .map(Agent::try_from)
                .collect::<Result<_>>()?;
            let total =
                u64::try_from(total).map_err(|_| Error::Internal("negative count".into()))?;
            Ok(Paged { items, total, page })
        })
        .await
    }

    async fn update_agent(&self, agent: &Agent) -> Result<()> {
        let (row, tags) = (AgentRow::try_from(agent)?, AgentRow::tag_rows(agent));
        self.run(move |conn| {
            conn.transaction(|c| {
                let changed = diesel::update(agents::table.find(&row.id))
                    .set(&row)
                    .execute(c)?;
                if changed == 0 {
                    return Err(DieselError::NotFound);
                }
                replace_tags(c, &row.id, &tags)
            })
            .map_err(|e| agent_error(e, &row))
        })
        .await
    }

    async fn delete_agent(&self, id: &AgentId) -> Result<bool> {
        let id = id.clone();
        self.run(move |conn| {
            let deleted = diesel::delete(agents::table.find(id.as_str())).execute(conn);
            deleted
                .map(|n| n > 0)
                .map_err(|e| other(e, "agent", id.as_str()))
        })
        .await
    }

    async fn agents_using_provider(&self, provider: &ProviderId) -> Result<Vec<AgentKey>> {
        let provider = provider.clone();
        self.run(move |conn| {
            let keys: Vec<String> = agents::table
                .filter(agents::provider_id.eq(provider.as_str()))
                .select(agents::key)
                .order(agents::key.asc())
                .limit(USING_PROVIDER_MAX)
                .load(conn)
                .map_err(query_error)?;
            keys.iter()
                .map(|k| {
                    AgentKey::parse(k).map_err(|e| {
                        Error::Internal(format!("stored agent key '{k}': {}", e.reason))
                    })
                })
                .collect()
        })
        .await
    }
}

/// Makes `agent_tags` hold exactly `tags` for the agent. One insert per tag: multi-row
/// inserts do not compile for SQLite through `MultiConnection` (and there are at most 32).
fn replace_tags(conn: &mut AnyConnection, agent_id: &str, tags: &[AgentTagRow]) -> QueryResult<()> {
    diesel::delete(agent_tags::table.filter(agent_tags::agent_id.eq(agent_id))).execute(conn)?;
    for tag in tags {
        diesel::insert_into(agent_tags::table)
            .values(tag)
            .execute(conn)?;
    }
    Ok(())
}

/// The number of matches and one page of them, newest first.
fn list_rows(
    conn: &mut AnyConnection,
    filter: &AgentFilter,
    page: Page,
) -> QueryResult<(i64, Vec<AgentRow>)> {
    let total = matching(filter).count().get_result(conn)?;
    let rows = matching(filter)
        .select(AgentRow::as_select())
        .order((agents::created_at.desc(), agents::id.desc()))
        .limit(i64::from(page.limit()))
        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX))
        .load(conn)?;
    Ok((total, rows))
}

/// The agents for which every criterion of `filter` holds.
fn matching(filter: &AgentFilter) -> agents::BoxedQuery<'_, MultiBackend> {
    let mut query = agents::table.into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(agents::status.eq(status.as_str()));
    }
    if let Some(agent_type) = &filter.agent_type {
        query = query.filter(agents::agent_type.eq(agent_type.as_str()));
    }
    if let Some(cluster) = &filter.cluster {
        query = query.filter(agents::cluster.eq(cluster.as_str()));
    }
    if let Some(keys) = &filter.keys {
        query = query.filter(agents::key.eq_any(keys));
    }
    for tag in &filter.tags {
        let tagged = agent_tags::table
            .filter(agent_tags::tag.eq(tag.as_str()))
            .select(agent_tags::agent_id);
        query = query.filter(agents::id.eq_any(tagged));
    }
    query
}
