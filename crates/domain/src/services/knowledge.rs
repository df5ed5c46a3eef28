//! The knowledge use case: a stored file's text is extracted, chunked, stored and indexed in
//! the background (its status goes `processing` → `ready` or `failed` with a reason);
//! searches rank chunks; a turn retrieves passages for its user message within the agent's
//! budget. The index is a cache of the stored chunks: [`KnowledgeService::sync`] adds what
//! it lacks and drops what the database no longer has (at start, so a lost index is rebuilt,
//! and periodically, so replicas follow each other's uploads and deletions).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::error::{Error, Invalid, Result};
use crate::file::{FileStatus, StoredFile};
use crate::knowledge::{
    ChunkStore, Hit, Knowledge, KnowledgeIndex, QUERY_MAX_CHARS, Retrieval, TOP_K_MAX,
    TextExtractor, chunk_text, fit_budget,
};
use crate::page::Page;
use crate::services::FilePorts;

/// The knowledge adapters.
#[derive(Clone)]
pub struct KnowledgePorts {
    /// Chunks, durably.
    pub chunks: Arc<dyn ChunkStore>,
    /// The full-text index.
    pub index: Arc<dyn KnowledgeIndex>,
    /// Text extraction.
    pub extractor: Arc<dyn TextExtractor>,
}

/// How files are indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnowledgeSettings {
    /// Characters per chunk (at most).
    pub chunk_chars: usize,
    /// Characters shared by consecutive chunks.
    pub overlap_chars: usize,
    /// Files larger than this are not indexed (their status says why).
    pub max_file_bytes: u64,
    /// Files indexed at once.
    pub concurrency: usize,
    /// How often the index is compared with the stored chunks.
    pub sync_interval: Duration,
}

impl Default for KnowledgeSettings {
    fn default() -> Self {
        Self {
            chunk_chars: 1_000,
            overlap_chars: 150,
            max_file_bytes: 32 * 1024 * 1024,
            concurrency: 2,
            sync_interval: Duration::from_secs(5),
        }
    }
}

/// Indexes files and searches them. Cheap to clone.
#[derive(Clone)]
pub struct KnowledgeService {
    ports: Option<KnowledgePorts>,
    files: Option<FilePorts>,
    settings: KnowledgeSettings,
    permits: Arc<Semaphore>,
}

impl KnowledgeService {
    /// A service over `ports` and the files' ports (`None` for either: knowledge is off;
    /// searches are `Unavailable` and files are not indexed).
    pub fn new(
        ports: Option<KnowledgePorts>,
        files: Option<FilePorts>,
        settings: KnowledgeSettings,
    ) -> Self {
        Self {
            ports,
            files,
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            settings,
        }
    }

    fn ports(&self) -> Result<(&KnowledgePorts, &FilePorts)> {
        match (&self.ports, &self.files) {
            (Some(k), Some(f)) => Ok((k, f)),
            _ => Err(Error::Unavailable("knowledge is not configured".to_owned())),
        }
    }

    /// Whether files of `content_type` are indexed (then they start `processing`).
    pub fn indexes(&self, content_type: &str) -> bool {
        self.ports()
            .is_ok_and(|(k, _)| k.extractor.supports(content_type))
    }

    /// Indexes a stored file in the background; its status says when it is done.
    pub fn process_in_background(&self, file: StoredFile) {
        let this = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { this.process(&file).await });
            }
            Err(_) => tracing::warn!(file = %file.id, "no async runtime: the file is not indexed"),
        }
    }

    /// Indexes a stored file now: extract, chunk, store, index; then its status is `ready`,
    /// or `failed` with the reason.
    pub async fn process(&self, file: &StoredFile) {
        let Ok(_permit) = self.permits.acquire().await else {
            return;
        };
        let started = Instant::now();
        let (status, reason, chunks) = match self.index_file(file).await {
            Ok(n) => (FileStatus::Ready, None, n),
            Err(reason) => (FileStatus::Failed, Some(reason), 0),
        };
        tracing::info!(file = %file.id, status = status.as_str(), chunks, ms = started.elapsed().as_millis() as u64, "file indexed");
        if let Ok((_, files)) = self.ports() {
            match files
                .store
                .set_file_status(&file.id, status, reason.as_deref())
                .await
            {
                // Deleted while it was indexed: what was indexed goes too.
                Ok(false) => {
                    let _ = self.forget(&file.id).await;
                }
                Ok(true) => {}
                Err(e) => {
                    tracing::warn!(file = %file.id, error = %e, "could not set a file's status")
                }
            }
        }
    }

    /// The number of chunks indexed, or why the file could not be.
    async fn index_file(&self, file: &StoredFile) -> std::result::Result<usize, String> {
        let (k, files) = self.ports().map_err(|e| e.to_string())?;
        if file.size_bytes > self.settings.max_file_bytes {
            return Err(format!(
                "files over {} bytes are stored but not indexed",
                self.settings.max_file_bytes
            ));
        }
        let mut body = files
            .blobs
            .get(&file.blob_key(), None)
            .await
            .map_err(|e| format!("could not read the file: {e}"))?;
        let mut bytes = Vec::with_capacity(usize::try_from(file.size_bytes).unwrap_or(0));
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.map_err(|e| format!("could not read the file: {e}"))?);
        }
        let extractor = k.extractor.clone();
        let content_type = file.content_type.clone();
        let settings = self.settings;
        let texts = tokio::task::spawn_blocking(move || {
            extractor
                .extract(&content_type, &bytes)
                .map(|text| chunk_text(&text, settings.chunk_chars, settings.overlap_chars))
        })
        .await
        .map_err(|e| format!("text extraction stopped: {e}"))??;
        if texts.is_empty() {
            return Err("no text could be extracted from this file".to_owned());
        }
        let chunks: Vec<_> = texts
            .into_iter()
            .zip(0u32..)
            .map(|(text, position)| crate::knowledge::Chunk {
                file_id: file.id.clone(),
                position,
                text,
            })
            .collect();
        k.chunks
            .replace_chunks(&file.id, &chunks)
            .await
            .map_err(|e| format!("could not store the chunks: {e}"))?;
        k.index
            .put_file(&file.id, &file.filename, &chunks)
            .await
            .map_err(|e| format!("could not index the chunks: {e}"))?;
        Ok(chunks.len())
    }

    /// Removes a file's chunks and index entries (a deleted file).
    ///
    /// # Errors
    /// Storage or index failures.
    pub async fn forget(&self, file_id: &str) -> Result<()> {
        let Some(k) = &self.ports else {
            return Ok(());
        };
        k.chunks.delete_chunks(file_id).await?;
        k.index.remove_file(file_id).await
    }

    /// The best chunks for `query`: of `files` when given, at most `top_k` (1 to 20).
    ///
    /// # Errors
    /// `Invalid` (`query` blank or too long, `top_k` out of range), `Unavailable`, index
    /// failures.
    pub async fn search(
        &self,
        query: &str,
        files: Option<&[String]>,
        top_k: u32,
    ) -> Result<Vec<Hit>> {
        if query.trim().is_empty() {
            return Err(Invalid::new("query", "must not be blank").into());
        }
        if query.chars().count() > QUERY_MAX_CHARS {
            return Err(Invalid::new(
                "query",
                format!("must be at most {QUERY_MAX_CHARS} characters"),
            )
            .into());
        }
        if !(1..=TOP_K_MAX).contains(&top_k) {
            return Err(Invalid::new("top_k", format!("must be from 1 to {TOP_K_MAX}")).into());
        }
        let (k, _) = self.ports()?;
        k.index
            .search(query, files, usize::try_from(top_k).unwrap_or(1))
            .await
    }

    /// A turn's retrieval: the best passages of `knowledge`'s files for `question`, within
    /// its budget, and the time it took. Fails open: an index failure is logged and the
    /// turn goes on without passages.
    pub async fn retrieve(&self, knowledge: &Knowledge, question: &str) -> Retrieval {
        let started = Instant::now();
        let question: String = question.chars().take(QUERY_MAX_CHARS).collect();
        let hits = match self.ports() {
            Ok((k, _)) if !question.trim().is_empty() => {
                match k
                    .index
                    .search(
                        &question,
                        Some(&knowledge.files),
                        usize::try_from(knowledge.top_k).unwrap_or(1),
                    )
                    .await
                {
                    Ok(hits) => hits,
                    Err(e) => {
                        tracing::warn!(error = %e, "retrieval failed; the turn goes on without passages");
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        };
        let budget = usize::try_from(knowledge.max_context_chars).unwrap_or(usize::MAX);
        let retrieval = Retrieval {
            passages: fit_budget(hits, budget),
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        tracing::debug!(
            passages = retrieval.passages.len(),
            ms = retrieval.elapsed_ms,
            "knowledge retrieved"
        );
        retrieval
    }

    /// Makes the index hold exactly the files that have stored chunks: indexes the missing
    /// ones (all of them when the index was lost) and drops the others. Returns how many
    /// files were added and removed.
    ///
    /// # Errors
    /// Storage or index failures.
    pub async fn sync(&self) -> Result<(usize, usize)> {
        let Ok((k, files)) = self.ports() else {
            return Ok((0, 0));
        };
        let stored = k.chunks.chunked_files().await?;
        let indexed = k.index.file_ids().await?;
        let mut added = 0;
        for id in stored.iter().filter(|id| !indexed.contains(id)) {
            let file = match files.store.get_file(id).await {
                Ok(f) => f,
                // Chunks of a file deleted meanwhile: dropped.
                Err(Error::NotFound { .. }) => {
                    k.chunks.delete_chunks(id).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let chunks = k.chunks.chunks_of(id).await?;
            k.index.put_file(id, &file.filename, &chunks).await?;
            added += 1;
        }
        let mut removed = 0;
        for id in indexed.iter().filter(|id| !stored.contains(id)) {
            k.index.remove_file(id).await?;
            removed += 1;
        }
        Ok((added, removed))
    }

    /// Files left `processing` (the process stopped while it indexed them), indexed again.
    async fn resume(&self) -> Result<usize> {
        let (_, files) = self.ports()?;
        let mut pending = Vec::new();
        let mut offset = 0;
        loop {
            let page = files
                .store
                .list_files(Page::new(Some(crate::page::MAX_LIMIT), Some(offset))?)
                .await?;
            let n = page.items.len();
            pending.extend(
                page.items
                    .into_iter()
                    .filter(|f| f.status == FileStatus::Processing),
            );
            offset += u64::try_from(n).unwrap_or(u64::MAX);
            if n == 0 || offset >= page.total {
                break;
            }
        }
        let count = pending.len();
        for f in pending {
            self.process_in_background(f);
        }
        Ok(count)
    }

    /// The background work: files left `processing` resumed, then the index synced with
    /// the stored chunks now and every `sync_interval`, forever. Does nothing when
    /// knowledge is off.
    pub fn background(&self) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            if this.ports().is_err() {
                return;
            }
            match this.resume().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "indexing files left processing"),
                Err(e) => tracing::warn!(error = %e, "could not list files left processing"),
            }
            let mut every = tokio::time::interval(this.settings.sync_interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                match this.sync().await {
                    Ok((0, 0)) => {}
                    Ok((added, removed)) => {
                        tracing::info!(added, removed, "knowledge index synced with the database");
                    }
                    Err(e) => tracing::warn!(error = %e, "could not sync the knowledge index"),
                }
            }
        }
    }
}
