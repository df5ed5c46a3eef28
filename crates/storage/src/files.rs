//! [`FileStore`] over diesel: the `files` table.

use agentry_domain::file::{FileStatus, FileStore, StoredFile};
use agentry_domain::page::{Page, Paged};
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::Value;

use crate::rows::{corrupt_text, parse_json};
use crate::schema::files;
use crate::store::DieselStore;
use crate::translate::{other, query_error};

/// One row of `files`. `metadata` is a JSON object.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = files)]
pub(crate) struct FileRow {
    pub id: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub metadata: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
}

impl TryFrom<&StoredFile> for FileRow {
    type Error = Error;

    fn try_from(f: &StoredFile) -> Result<Self> {
        Ok(Self {
            id: f.id.clone(),
            filename: f.filename.clone(),
            content_type: f.content_type.clone(),
            size_bytes: i64::try_from(f.size_bytes)
                .map_err(|_| Error::Internal("file size out of range".into()))?,
            sha256: f.sha256.clone(),
            metadata: Value::Object(f.metadata.clone()).to_string(),
            status: f.status.as_str().to_owned(),
            status_reason: f.status_reason.clone(),
            created_by: f.created_by.clone(),
            created_at: f.created_at.naive_utc(),
        })
    }
}

impl TryFrom<FileRow> for StoredFile {
    type Error = Error;

    fn try_from(row: FileRow) -> Result<Self> {
        const E: &str = "file";
        Ok(Self {
            metadata: parse_json(E, &row.id, "metadata", &row.metadata)?,
            size_bytes: u64::try_from(row.size_bytes)
                .map_err(|_| corrupt_text(E, &row.id, "size_bytes is negative"))?,
            status: FileStatus::parse(&row.status)
                .ok_or_else(|| corrupt_text(E, &row.id, "unknown status"))?,
            created_at: row.created_at.and_utc(),
            filename: row.filename,
            content_type: row.content_type,
            sha256: row.sha256,
            status_reason: row.status_reason,
            created_by: row.created_by,
            id: row.id,
        })
    }
}

#[async_trait]
impl FileStore for DieselStore {
    async fn insert_file(&self, file: &StoredFile) -> Result<()> {
        let row = FileRow::try_from(file)?;
        self.run(
            move |conn| match diesel::insert_into(files::table).values(&row).execute(conn) {
                Ok(_) => Ok(()),
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                )) => Err(Error::conflict(
                    "id",
                    format!("a file with id '{}' already exists", row.id),
                )),
                Err(e) => Err(other(e, "file", &row.id)),
            },
        )
        .await
    }

    async fn get_file(&self, id: &str) -> Result<StoredFile> {
        let id = id.to_owned();
        self.run(move |conn| {
            let found = files::table
                .find(&id)
                .select(FileRow::as_select())
                .first(conn);
            found.map_err(|e| other(e, "file", &id))?.try_into()
        })
        .await
    }

    async fn list_files(&self, page: Page) -> Result<Paged<StoredFile>> {
        self.run(move |conn| {
            let (total, rows) = conn
                .transaction(|c| {
                    let total: i64 = files::table.count().get_result(c)?;
                    let rows = files::table
                        .select(FileRow::as_select())
                        .order((files::created_at.desc(), files::id.desc()))
                        .limit(i64::from(page.limit()))
                        .offset(i64::try_from(page.offset()).unwrap_or(i64::MAX))
                        .load(c)?;
                    Ok::<_, diesel::result::Error>((total, rows))
                })
                .map_err(query_error)?;
            let items = rows
                .into_iter()
                .map(StoredFile::try_from)
                .collect::<Result<_>>()?;
            let total =
                u64::try_from(total).map_err(|_| Error::Internal("negative count".into()))?;
            Ok(Paged { items, total, page })
        })
        .await
    }

    async fn set_file_status(
        &self,
        id: &str,
        status: FileStatus,
        reason: Option<&str>,
    ) -> Result<bool> {
        let (id, reason) = (id.to_owned(), reason.map(str::to_owned));
        self.run(move |conn| {
            let n = diesel::update(files::table.find(&id))
                .set((
                    files::status.eq(status.as_str()),
                    files::status_reason.eq(reason),
                ))
                .execute(conn)
                .map_err(query_error)?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_file(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.run(move |conn| {
            diesel::delete(files::table.find(&id))
                .execute(conn)
                .map(|n| n > 0)
                .map_err(query_error)
        })
        .await
    }
}
