//! The adapter: one struct over the pool implements every storage port. Diesel is
//! synchronous, so each call runs on tokio's blocking pool.

use agentry_domain::ports::HealthProbe;
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use diesel::connection::SimpleConnection;
use diesel::r2d2::Pool;

use crate::connection::{AnyConnection, Manager};
use crate::translate::{pool_error, query_error};

/// Implements [`AgentStore`](agentry_domain::ports::AgentStore),
/// [`ProviderStore`](agentry_domain::ports::ProviderStore),
/// [`ConversationStore`](agentry_domain::ports::ConversationStore),
/// [`RunStore`](agentry_domain::ports::RunStore),
/// [`McpServerStore`](agentry_domain::ports::McpServerStore) and [`HealthProbe`] with diesel.
#[derive(Clone)]
pub(crate) struct DieselStore {
    pool: Pool<Manager>,
    pub(crate) run_log: std::sync::Arc<crate::run_log::RunLog>,
    group: std::sync::Arc<crate::group_commit::GroupCommit>,
}

impl DieselStore {
    pub(crate) fn new(
        pool: Pool<Manager>,
        run_log: std::sync::Arc<crate::run_log::RunLog>,
        group: std::sync::Arc<crate::group_commit::GroupCommit>,
    ) -> Self {
        Self {
            pool,
            run_log,
            group,
        }
    }

    /// Runs `write` (a write whose caller waits for it) in the next group commit: one
    /// transaction with every other write ready at the time, answered once it committed. When
    /// `write` fails, its changes are undone (the batch runs again with a savepoint per
    /// write), so it needs no transaction of its own.
    pub(crate) async fn grouped(&self, write: impl crate::group_commit::Write) -> Result<bool> {
        self.group.run(&self.pool, write).await
    }

    /// Runs `work` with a pooled connection on the blocking pool. `work` translates its own
    /// diesel errors; a pool timeout is `Unavailable`.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| pool_error(&e))?;
            work(&mut conn)
        });
        task.await
            .map_err(|e| Error::Internal(format!("database task failed: {e}")))?
    }
}

#[async_trait]
impl HealthProbe for DieselStore {
    async fn ping(&self) -> Result<()> {
        let answered = self
            .run(|conn| conn.batch_execute("SELECT 1").map_err(query_error))
            .await;
        answered.map_err(|e| match e {
            Error::Unavailable(m) => Error::Unavailable(m),
            other => Error::Unavailable(other.to_string()),
        })
    }
}
