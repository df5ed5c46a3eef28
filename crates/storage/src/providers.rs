//! [`ProviderStore`] over diesel. The API key is stored as text; it is exposed only to
//! write it.

use agentry_domain::Result;
use agentry_domain::ports::ProviderStore;
use agentry_domain::provider::{Provider, ProviderId};
use async_trait::async_trait;
use diesel::prelude::*;
use diesel::result::Error as DieselError;

use crate::rows::ProviderRow;
use crate::schema::providers;
use crate::store::DieselStore;
use crate::translate::{other, provider_error, query_error};

#[async_trait]
impl ProviderStore for DieselStore {
    async fn insert_provider(&self, provider: &Provider) -> Result<()> {
        let row = ProviderRow::from(provider);
        self.run(move |conn| {
            let inserted = diesel::insert_into(providers::table)
                .values(&row)
                .execute(conn);
            inserted.map(drop).map_err(|e| provider_error(e, &row))
        })
        .await
    }

    async fn get_provider(&self, id: &ProviderId) -> Result<Provider> {
        let id = id.clone();
        self.run(move |conn| {
            let found = providers::table
                .find(id.as_str())
                .select(ProviderRow::as_select())
                .first(conn);
            found
                .map_err(|e| other(e, "provider", id.as_str()))?
                .try_into()
        })
        .await
    }

    async fn list_providers(&self) -> Result<Vec<Provider>> {
        self.run(|conn| {
            let rows = providers::table
                .select(ProviderRow::as_select())
                .order(providers::id.asc())
                .load(conn)
                .map_err(query_error)?;
            rows.into_iter().map(Provider::try_from).collect()
        })
        .await
    }

    async fn update_provider(&self, provider: &Provider) -> Result<()> {
        let row = ProviderRow::from(provider);
        self.run(move |conn| {
            let changed = diesel::update(providers::table.find(&row.id))
                .set(&row)
                .execute(conn);
            match changed {
                Ok(0) => Err(provider_error(DieselError::NotFound, &row)),
                Ok(_) => Ok(()),
                Err(e) => Err(provider_error(e, &row)),
            }
        })
        .await
    }

    async fn delete_provider(&self, id: &ProviderId) -> Result<bool> {
        let id = id.clone();
        self.run(move |conn| {
            let deleted = diesel::delete(providers::table.find(id.as_str())).execute(conn);
            deleted
                .map(|n| n > 0)
                .map_err(|e| other(e, "provider", id.as_str()))
        })
        .await
    }
}
