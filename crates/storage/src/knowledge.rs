//! [`ChunkStore`] over diesel: the `knowledge_chunks` table.

use agentry_domain::knowledge::{Chunk, ChunkStore};
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use diesel::prelude::*;

use crate::schema::knowledge_chunks;
use crate::store::DieselStore;
use crate::translate::query_error;

/// One row of `knowledge_chunks`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = knowledge_chunks)]
struct ChunkRow {
    file_id: String,
    position: i32,
    text: String,
}

impl TryFrom<&Chunk> for ChunkRow {
    type Error = Error;

    fn try_from(c: &Chunk) -> Result<Self> {
        Ok(Self {
            file_id: c.file_id.clone(),
            position: i32::try_from(c.position)
                .map_err(|_| Error::Internal("chunk position out of range".into()))?,
            text: c.text.clone(),
        })
    }
}

impl From<ChunkRow> for Chunk {
    fn from(r: ChunkRow) -> Self {
        Self {
            file_id: r.file_id,
            position: u32::try_from(r.position).unwrap_or_default(),
            text: r.text,
        }
    }
}

#[async_trait]
impl ChunkStore for DieselStore {
    async fn replace_chunks(&self, file_id: &str, chunks: &[Chunk]) -> Result<()> {
        let file_id = file_id.to_owned();
        let rows = chunks
            .iter()
            .map(|c| {
                if c.file_id == file_id {
                    ChunkRow::try_from(c)
                } else {
                    Err(Error::Internal("a chunk of another file".into()))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        self.run(move |conn| {
            conn.transaction(|c| {
                diesel::delete(
                    knowledge_chunks::table.filter(knowledge_chunks::file_id.eq(&file_id)),
                )
                .execute(c)?;
                // One statement per row: the multi-backend connection has no batch insert.
                for row in &rows {
                    diesel::insert_into(knowledge_chunks::table)
                        .values(row)
                        .execute(c)?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .map_err(query_error)
        })
        .await
    }

    async fn chunks_of(&self, file_id: &str) -> Result<Vec<Chunk>> {
        let file_id = file_id.to_owned();
        self.run(move |conn| {
            let rows = knowledge_chunks::table
                .filter(knowledge_chunks::file_id.eq(&file_id))
                .order(knowledge_chunks::position)
                .select(ChunkRow::as_select())
                .load(conn)
                .map_err(query_error)?;
            Ok(rows.into_iter().map(Chunk::from).collect())
        })
        .await
    }

    async fn delete_chunks(&self, file_id: &str) -> Result<()> {
        let file_id = file_id.to_owned();
        self.run(move |conn| {
            diesel::delete(knowledge_chunks::table.filter(knowledge_chunks::file_id.eq(&file_id)))
                .execute(conn)
                .map_err(query_error)?;
            Ok(())
        })
        .await
    }

    async fn chunked_files(&self) -> Result<Vec<String>> {
        self.run(move |conn| {
            knowledge_chunks::table
                .select(knowledge_chunks::file_id)
                .distinct()
                .order(knowledge_chunks::file_id)
                .load(conn)
                .map_err(query_error)
        })
        .await
    }
}
