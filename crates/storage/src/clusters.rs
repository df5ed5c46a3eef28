//! [`ClusterStore`] over diesel, and the row of `clusters`. The policy and the members are
//! JSON text (both backends share `Text`); the generation makes updates compare-and-set.

use std::time::Duration;

use agentry_domain::agent::{AgentKey, ClusterName};
use agentry_domain::cluster::{
    Cluster, ClusterId, ClusterMember, ClusterStore, Namespace, ResourcePolicy,
};
use agentry_domain::page::{Page, Paged};
use agentry_domain::{Error, Invalid, Result};
use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use serde::{Deserialize, Serialize};

use crate::rows::{corrupt, parse_json};
use crate::schema::clusters;
use crate::store::DieselStore;
use crate::translate::{conflict_on, other, query_error};

/// One row of `clusters`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = clusters, treat_none_as_null = true)]
pub(crate) struct ClusterRow {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub api_version: String,
    pub policy: String,
    pub members: String,
    pub generation: i64,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// The stored form of a policy.
#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    max_concurrent_agents: Option<u32>,
    idle_timeout_secs: Option<u64>,
    scale_to_zero: bool,
}

/// The stored form of a member.
#[derive(Serialize, Deserialize)]
struct StoredMember {
    key: String,
    instances: u32,
}

impl From<&Cluster> for ClusterRow {
    fn from(c: &Cluster) -> Self {
        let policy = StoredPolicy {
            max_concurrent_agents: c.policy.max_concurrent_agents,
            idle_timeout_secs: c.policy.idle_timeout.map(|d| d.as_secs()),
            scale_to_zero: c.policy.scale_to_zero,
        };
        let members: Vec<StoredMember> = c
            .members
            .iter()
            .map(|m| StoredMember {
                key: m.key.to_string(),
                instances: m.instances,
            })
            .collect();
        Self {
            id: c.id.to_string(),
            name: c.name.to_string(),
            namespace: c.namespace.as_str().to_owned(),
            api_version: c.api_version.clone(),
            policy: serde_json::to_string(&policy).unwrap_or_else(|_| "{}".to_owned()),
            members: serde_json::to_string(&members).unwrap_or_else(|_| "[]".to_owned()),
            generation: i64::try_from(c.generation).unwrap_or(i64::MAX),
            created_by: c.created_by.clone(),
            created_at: c.created_at.naive_utc(),
            updated_at: c.updated_at.naive_utc(),
        }
    }
}

impl TryFrom<ClusterRow> for Cluster {
    type Error = Error;

    fn try_from(row: ClusterRow) -> Result<Self, Error> {
        let bad = |e: Invalid| corrupt("cluster", &row.id, &e);
        let policy: StoredPolicy = parse_json("cluster", &row.id, "policy", &row.policy)?;
        let members: Vec<StoredMember> = parse_json("cluster", &row.id, "members", &row.members)?;
        Ok(Self {
            id: ClusterId::parse(&row.id).map_err(bad)?,
            name: ClusterName::parse(&row.name).map_err(bad)?,
            namespace: Namespace::parse(&row.namespace).map_err(bad)?,
            api_version: row.api_version.clone(),
            policy: ResourcePolicy {
                max_concurrent_agents: policy.max_concurrent_agents,
                idle_timeout: policy.idle_timeout_secs.map(Duration::from_secs),
                scale_to_zero: policy.scale_to_zero,
            },
            members: members
                .into_iter()
                .map(|m| {
                    Ok(ClusterMember {
                        key: AgentKey::parse(&m.key).map_err(bad)?,
                        instances: m.instances,
                    })
                })
                .collect::<Result<_>>()?,
            generation: u64::try_from(row.generation).map_err(|_| {
                Error::Internal(format!("cluster '{}': negative generation", row.id))
            })?,
            created_by: row.created_by,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        })
    }
}

/// An error on a cluster being written: a taken name or id is a conflict on that field.
fn cluster_error(error: DieselError, row: &ClusterRow) -> Error {
    match conflict_on(&error) {
        Some("name") => Error::conflict(
            "name",
            format!("a cluster named '{}' already exists", row.name),
        ),
        Some(field) => Error::conflict(
            field,
            format!("a cluster with id '{}' already exists", row.id),
        ),
        None => other(error, "cluster", &row.name),
    }
}

#[async_trait]
impl ClusterStore for DieselStore {
    async fn insert_cluster(&self, cluster: &Cluster) -> Result<()> {
        let row = ClusterRow::from(cluster);
        self.run(move |conn| {
            let inserted = diesel::insert_into(clusters::table)
                .values(&row)
                .execute(conn);
            inserted.map(drop).map_err(|e| cluster_error(e, &row))
        })
        .await
    }

    async fn get_cluster(&self, name: &ClusterName) -> Result<Cluster> {
        let name = name.to_string();
        self.run(move |conn| {
            let found = clusters::table
                .filter(clusters::name.eq(&name))
                .select(ClusterRow::as_select())
                .first(conn);
            found.map_err(|e| other(e, "cluster", &name))?.try_into()
        })
        .await
    }

    async fn list_clusters(&self, page: Page) -> Result<Paged<Cluster>> {
        self.run(move |conn| {
            let (total, rows) = conn
                .transaction(|c| {
                    let total: i64 = clusters::table.count().get_result(c)?;
                    let rows = clusters::table
                        .select(ClusterRow::as_select())
                        .order(clusters::name.asc())
                        .limit(i64::from(page.limit()))
                        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX))
                        .load(c)?;
                    Ok::<_, DieselError>((total, rows))
                })
                .map_err(query_error)?;
            let items = rows
                .into_iter()
                .map(Cluster::try_from)
                .collect::<Result<_>>()?;
            let total =
                u64::try_from(total).map_err(|_| Error::Internal("negative count".into()))?;
            Ok(Paged { items, total, page })
        })
        .await
    }

    async fn update_cluster(&self, cluster: &Cluster, expected_generation: u64) -> Result<bool> {
        let row = ClusterRow::from(cluster);
        let expected = i64::try_from(expected_generation).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let changed = diesel::update(
                clusters::table
                    .find(&row.id)
                    .filter(clusters::generation.eq(expected)),
            )
            .set(&row)
            .execute(conn)
            .map_err(|e| cluster_error(e, &row))?;
            if changed > 0 {
                return Ok(true);
            }
            let exists: i64 = clusters::table
                .find(&row.id)
                .count()
                .get_result(conn)
                .map_err(query_error)?;
            if exists == 0 {
                return Err(Error::not_found("cluster", row.name.clone()));
            }
            Ok(false)
        })
        .await
    }

    async fn delete_cluster(&self, id: &ClusterId) -> Result<bool> {
        let id = id.to_string();
        self.run(move |conn| {
            let deleted = diesel::delete(clusters::table.find(&id)).execute(conn);
            deleted.map(|n| n > 0).map_err(|e| other(e, "cluster", &id))
        })
        .await
    }
}
