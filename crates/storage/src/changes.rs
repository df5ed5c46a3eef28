//! [`ChangeLog`] over diesel: one row, one counter, shared by every replica.

use agentry_domain::ports::ChangeLog;
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use diesel::prelude::*;

use crate::schema::change_counter;
use crate::store::DieselStore;
use crate::translate::query_error;

/// The id of the one row (the migration inserts it).
const ROW: i32 = 1;

#[async_trait]
impl ChangeLog for DieselStore {
    async fn change_counter(&self) -> Result<i64> {
        self.run(|conn| {
            change_counter::table
                .find(ROW)
                .select(change_counter::counter)
                .first::<i64>(conn)
                .map_err(query_error)
        })
        .await
    }

    async fn record_change(&self) -> Result<()> {
        self.run(|conn| {
            let changed = diesel::update(change_counter::table.find(ROW))
                .set(change_counter::counter.eq(change_counter::counter + 1))
                .execute(conn)
                .map_err(query_error)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(Error::Internal("the change counter row is missing".into()))
            }
        })
        .await
    }
}
