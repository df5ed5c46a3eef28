//! The Files API's use case: an upload is streamed to the blob store (counted, hashed, never
//! held whole), then recorded; a failure at any step leaves neither a record nor an object.

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::file::{BlobStore, ByteStream, FileStatus, FileStore, StoredFile, blob_key, sniff};
use crate::ids::{is_id, new_id};
use crate::page::{Page, Paged};
use crate::ports::Clock;

/// Bytes kept from the start of an upload to sniff its type.
const SNIFF_BYTES: usize = 512;

/// Where files go.
#[derive(Clone)]
pub struct FilePorts {
    /// File records.
    pub store: Arc<dyn FileStore>,
    /// File bytes.
    pub blobs: Arc<dyn BlobStore>,
}

/// Uploads, reads and deletes files.
#[derive(Clone)]
pub struct FileService {
    ports: Option<FilePorts>,
    clock: Arc<dyn Clock>,
    max_bytes: u64,
    /// Indexes the files that have text (`None`: files are `ready` once stored).
    knowledge: Option<crate::services::KnowledgeService>,
}

/// An upload whose bytes are stored but not recorded yet.
#[derive(Debug)]
pub struct Received {
    id: String,
    size: u64,
    sha256: String,
    head: Vec<u8>,
}

impl Received {
    /// Its size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

#[derive(Default)]
struct Tally {
    size: u64,
    hasher: Sha256,
    head: Vec<u8>,
}

impl FileService {
    /// A service over `ports` (`None`: files are not configured, every call is
    /// `Unavailable`), refusing uploads over `max_bytes`.
    pub fn new(ports: Option<FilePorts>, clock: Arc<dyn Clock>, max_bytes: u64) -> Self {
        Self {
            ports,
            clock,
            max_bytes,
            knowledge: None,
        }
    }

    /// The same service indexing the files that have text with `knowledge`: they are
    /// recorded `processing` and indexed in the background; deleting a file removes its
    /// chunks and index entries.
    #[must_use]
    pub fn with_knowledge(mut self, knowledge: crate::services::KnowledgeService) -> Self {
        self.knowledge = Some(knowledge);
        self
    }

    /// The largest upload, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn ports(&self) -> Result<&FilePorts> {
        self.ports
            .as_ref()
            .ok_or_else(|| Error::Unavailable("file storage is not configured".to_owned()))
    }

    /// Streams `body` to the blob store under a new file id, counting and hashing it.
    ///
    /// # Errors
    /// `TooLarge` past the limit, the body's own error, storage failures; nothing is kept.
    pub async fn receive(&self, body: ByteStream) -> Result<Received> {
        let ports = self.ports()?;
        let id = new_id(crate::file::FILE_ID_PREFIX);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let counted = {
            let tally = tally.clone();
            let max = self.max_bytes;
            body.map(move |chunk| {
                let chunk = chunk?;
                let mut t = tally.lock().unwrap_or_else(PoisonError::into_inner);
                t.size += chunk.len() as u64;
                if t.size > max {
                    return Err(Error::TooLarge { limit_bytes: max });
                }
                t.hasher.update(&chunk);
                if t.head.len() < SNIFF_BYTES {
                    let take = (SNIFF_BYTES - t.head.len()).min(chunk.len());
                    t.head.extend_from_slice(&chunk[..take]);
                }
                Ok(chunk)
            })
        };
        let written = ports.blobs.put(&blob_key(&id), Box::pin(counted)).await?;
        let t = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
        if written != t.size {
            let _ = ports.blobs.delete(&blob_key(&id)).await;
            return Err(Error::Internal(format!(
                "the blob store wrote {written} bytes of {}",
                t.size
            )));
        }
        let digest = t.hasher.finalize();
        Ok(Received {
            id,
            size: t.size,
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            head: t.head,
        })
    }

    /// Records a received upload: its type is sniffed and checked. On any failure the stored
    /// bytes are deleted.
    ///
    /// # Errors
    /// `UnsupportedMedia`, storage failures.
    pub async fn register(
        &self,
        received: Received,
        filename: String,
        declared_type: Option<&str>,
        metadata: Map<String, Value>,
        created_by: Option<String>,
    ) -> Result<StoredFile> {
        let ports = self.ports()?;
        let content_type = match sniff(&received.head, &filename, declared_type) {
            Ok(t) => t,
            Err(reason) => {
                self.discard(received).await;
                return Err(Error::UnsupportedMedia(reason));
            }
        };
        let indexed = self.knowledge.as_ref().filter(|k| k.indexes(&content_type));
        let file = StoredFile {
            id: received.id.clone(),
            filename,
            content_type,
            size_bytes: received.size,
            sha256: received.sha256.clone(),
            metadata,
            status: if indexed.is_some() {
                FileStatus::Processing
            } else {
                FileStatus::Ready
            },
            status_reason: None,
            created_by,
            created_at: self.clock.now(),
        };
        if let Err(e) = ports.store.insert_file(&file).await {
            self.discard(received).await;
            return Err(e);
        }
        if let Some(k) = indexed {
            k.process_in_background(file.clone());
        }
        Ok(file)
    }

    /// Deletes the bytes of an upload that will not be recorded.
    pub async fn discard(&self, received: Received) {
        if let Ok(ports) = self.ports()
            && let Err(e) = ports.blobs.delete(&blob_key(&received.id)).await
        {
            tracing::warn!(file = %received.id, error = %e, "could not delete an abandoned upload");
        }
    }

    /// One file's record.
    ///
    /// # Errors
    /// `NotFound` (also for text that is not a file id).
    pub async fn get(&self, id: &str) -> Result<StoredFile> {
        if !is_id(id, crate::file::FILE_ID_PREFIX) {
            return Err(Error::not_found("file", id));
        }
        self.ports()?.store.get_file(id).await
    }

    /// Records, newest first.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn list(&self, page: Page) -> Result<Paged<StoredFile>> {
        self.ports()?.store.list_files(page).await
    }

    /// A file's record and its bytes (`range`: `start..end`, end exclusive, within the file).
    ///
    /// # Errors
    /// `NotFound`, storage failures.
    pub async fn open(
        &self,
        id: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(StoredFile, ByteStream)> {
        let file = self.get(id).await?;
        let body = self.ports()?.blobs.get(&file.blob_key(), range).await?;
        Ok((file, body))
    }

    /// Deletes a file: its bytes, its chunks and index entries, then its record. Returns whether it existed; deleting an
    /// absent file is not an error.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let file = match self.get(id).await {
            Ok(f) => f,
            Err(Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let ports = self.ports()?;
        ports.blobs.delete(&file.blob_key()).await?;
        // Its chunks and index entries before its record: a failure leaves the record, so
        // deleting again finishes the job.
        if let Some(k) = &self.knowledge {
            k.forget(&file.id).await?;
        }
        ports.store.delete_file(&file.id).await
    }
}
