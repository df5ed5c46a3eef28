//! [`ChunkStore`] over diesel: the `knowledge_chunks` table, each chunk with an optional
//! vector (`embedding`, little-endian f32s) and the model that computed it
//! (`embedding_model`).

use agentry_domain::knowledge::{Chunk, ChunkStore, ChunkVector};
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

/// A vector as stored: its f32s, little-endian.
fn encode(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A stored vector; `None` when the bytes are not a whole number of f32s.
fn decode(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
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

    async fn set_vectors(
        &self,
        file_id: &str,
        model: &str,
        vectors: &[(u32, Vec<f32>)],
    ) -> Result<()> {
        let file_id = file_id.to_owned();
        let model = model.to_owned();
        let rows = vectors
            .iter()
            .map(|(p, v)| {
                i32::try_from(*p)
                    .map(|p| (p, encode(v)))
                    .map_err(|_| Error::Internal("chunk position out of range".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        self.run(move |conn| {
            conn.transaction(|c| {
                for (position, bytes) in &rows {
                    diesel::update(
                        knowledge_chunks::table
                            .filter(knowledge_chunks::file_id.eq(&file_id))
                            .filter(knowledge_chunks::position.eq(position)),
                    )
                    .set((
                        knowledge_chunks::embedding_model.eq(Some(&model)),
                        knowledge_chunks::embedding.eq(Some(bytes)),
                    ))
                    .execute(c)?;
                }
                Ok::<_, diesel::result::Error>(())
            })
            .map_err(query_error)
        })
        .await
    }

    async fn vectors_of(&self, files: Option<&[String]>, model: &str) -> Result<Vec<ChunkVector>> {
        if files.is_some_and(<[String]>::is_empty) {
            return Ok(Vec::new());
        }
        let files = files.map(<[String]>::to_vec);
        let model = model.to_owned();
        self.run(move |conn| {
            let mut query = knowledge_chunks::table
                .filter(knowledge_chunks::embedding_model.eq(&model))
                .select((
                    knowledge_chunks::file_id,
                    knowledge_chunks::position,
                    knowledge_chunks::text,
                    knowledge_chunks::embedding,
                ))
                .order((knowledge_chunks::file_id, knowledge_chunks::position))
                .into_boxed();
            if let Some(files) = &files {
                query = query.filter(knowledge_chunks::file_id.eq_any(files));
            }
            let rows: Vec<(String, i32, String, Option<Vec<u8>>)> =
                query.load(conn).map_err(query_error)?;
            Ok(rows
                .into_iter()
                .filter_map(|(file_id, position, text, bytes)| {
                    Some(ChunkVector {
                        file_id,
                        position: u32::try_from(position).ok()?,
                        text,
                        vector: decode(&bytes?)?,
                    })
                })
                .collect())
        })
        .await
    }

    async fn chunks_without_vectors(&self, model: &str, limit: usize) -> Result<Vec<Chunk>> {
        let model = model.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let rows = knowledge_chunks::table
                .filter(
                    knowledge_chunks::embedding_model
                        .is_null()
                        .or(knowledge_chunks::embedding_model.ne(&model))
                        .or(knowledge_chunks::embedding.is_null()),
                )
                .order((knowledge_chunks::file_id, knowledge_chunks::position))
                .limit(limit)
                .select(ChunkRow::as_select())
                .load(conn)
                .map_err(query_error)?;
            Ok(rows.into_iter().map(Chunk::from).collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_as_bytes() {
        let v = vec![0.5_f32, -1.25, f32::MIN_POSITIVE, 3.0e7];
        assert_eq!(decode(&encode(&v)), Some(v));
        assert_eq!(decode(&[1, 2, 3]), None);
        assert_eq!(decode(&[]), Some(Vec::new()));
    }
}
