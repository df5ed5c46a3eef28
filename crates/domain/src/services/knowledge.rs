//! The knowledge use case: a stored file's text is extracted, chunked, stored and indexed in
//! the background (its status goes `processing` → `ready` or `failed` with a reason);
//! searches rank chunks; a turn retrieves passages for its user message within the agent's
//! budget. The index is a cache of the stored chunks: [`KnowledgeService::sync`] adds what
//! it lacks and drops what the database no longer has (at start, so a lost index is rebuilt,
//! and periodically, so replicas follow each other's uploads and deletions).
//!
//! With an [`Embedder`] (`knowledge_embedding_model`), chunks also get vectors, stored with
//! them, when their file is indexed (and later by the periodic sync for chunks that have
//! none of the configured model: a failed embedding, a changed model); searches then fuse the
//! BM25 list with a cosine-similarity list by reciprocal rank fusion (decisions 116-118).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::error::{Error, Invalid, Result};
use crate::file::{FileStatus, StoredFile};
use crate::knowledge::{
    Chunk, ChunkStore, ChunkVector, Embedder, Hit, Knowledge, KnowledgeIndex, QUERY_MAX_CHARS,
    Ranked, Ranking, Retrieval, TOP_K_MAX, TextExtractor, chunk_text, cosine, fit_budget,
    reciprocal_rank_fusion,
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

/// Reciprocal rank fusion's constant (the usual 60: a rank's weight is `1 / (60 + rank)`).
pub const RRF_K: f32 = 60.0;
/// Chunks taken from each list (BM25, similarity) before fusion, at least `top_k`.
const FUSION_DEPTH: usize = 50;
/// Texts per call of the embedder while indexing or catching up.
const EMBED_BATCH: usize = 64;
/// Batches embedded by one periodic catch-up, at most (the rest waits for the next one).
const CATCH_UP_BATCHES: usize = 16;

/// Indexes files and searches them. Cheap to clone.
#[derive(Clone)]
pub struct KnowledgeService {
    ports: Option<KnowledgePorts>,
    files: Option<FilePorts>,
    settings: KnowledgeSettings,
    permits: Arc<Semaphore>,
    embedder: Option<Arc<dyn Embedder>>,
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
            embedder: None,
        }
    }

    /// The same service ranking by BM25 and by the similarity of `embedder`'s vectors
    /// (hybrid); chunks get vectors when they are indexed.
    #[must_use]
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// The embedding model in use (`provider/model`), if any.
    pub fn embedding_model(&self) -> Option<&str> {
        self.embedder.as_deref().map(Embedder::model)
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
        // Fails open (decision 117): the file is ready and ranked by BM25 alone until the
        // periodic catch-up gives its chunks vectors.
        if let Some(embedder) = &self.embedder {
            for batch in chunks.chunks(EMBED_BATCH) {
                if let Err(e) = embed_batch(k, embedder.as_ref(), batch).await {
                    tracing::warn!(file = %file.id, error = %e, "could not embed the file's chunks; BM25 alone ranks them until the next catch-up");
                    break;
                }
            }
        }
        Ok(chunks.len())
    }

    /// Gives vectors of the configured model to stored chunks that lack them (an embedding
    /// that failed while indexing, a model changed since): at most
    /// `EMBED_BATCH * CATCH_UP_BATCHES` chunks per call. Returns how many were embedded.
    ///
    /// # Errors
    /// Storage or embedder failures (what was embedded before stays).
    pub async fn embed_missing(&self) -> Result<usize> {
        let (Some(k), Some(embedder)) = (&self.ports, &self.embedder) else {
            return Ok(0);
        };
        let mut done = 0;
        for _ in 0..CATCH_UP_BATCHES {
            let missing = k
                .chunks
                .chunks_without_vectors(embedder.model(), EMBED_BATCH)
                .await?;
            if missing.is_empty() {
                break;
            }
            embed_batch(k, embedder.as_ref(), &missing).await?;
            done += missing.len();
        }
        Ok(done)
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

    /// The best chunks for `query`: of `files` when given, at most `top_k` (1 to 20), and
    /// the ranking used (hybrid when an embedder is configured and answered).
    ///
    /// # Errors
    /// `Invalid` (`query` blank or too long, `top_k` out of range), `Unavailable`, index
    /// failures.
    pub async fn search(
        &self,
        query: &str,
        files: Option<&[String]>,
        top_k: u32,
    ) -> Result<Ranked> {
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
        self.rank(query, files, usize::try_from(top_k).unwrap_or(1))
            .await
    }

    /// The best `top_k` chunks for `query`: by BM25 alone without an embedder; else the BM25
    /// list and the cosine-similarity list (each [`FUSION_DEPTH`] long) fused by reciprocal
    /// rank fusion. When the question cannot be embedded, or no candidate chunk has a vector
    /// yet, BM25 alone (logged), as [`Ranked::ranking`] then says.
    async fn rank(&self, query: &str, files: Option<&[String]>, top_k: usize) -> Result<Ranked> {
        let (k, f) = self.ports()?;
        let Some(embedder) = &self.embedder else {
            return Ok(Ranked {
                hits: k.index.search(query, files, top_k).await?,
                ranking: Ranking::Bm25,
            });
        };
        let depth = FUSION_DEPTH.max(top_k);
        let mut bm25 = k.index.search(query, files, depth).await?;
        let similar = match similar(k, embedder.as_ref(), query, files, depth).await {
            Ok(similar) => similar,
            Err(e) => {
                tracing::warn!(error = %e, model = embedder.model(), "the query could not be ranked by similarity; BM25 alone ranks it");
                Vec::new()
            }
        };
        if similar.is_empty() {
            bm25.truncate(top_k);
            return Ok(Ranked {
                hits: bm25,
                ranking: Ranking::Bm25,
            });
        }
        let key = |file_id: &str, position: u32| (file_id.to_owned(), position);
        let lists = [
            bm25.iter().map(|h| key(&h.file_id, h.position)).collect(),
            similar
                .iter()
                .map(|c| key(&c.file_id, c.position))
                .collect(),
        ];
        let mut names: HashMap<String, String> = bm25
            .iter()
            .map(|h| (h.file_id.clone(), h.filename.clone()))
            .collect();
        let mut hits = Vec::with_capacity(top_k);
        for ((file_id, position), score) in reciprocal_rank_fusion(&lists, RRF_K) {
            if hits.len() >= top_k {
                break;
            }
            if let Some(h) = bm25
                .iter()
                .find(|h| h.file_id == file_id && h.position == position)
            {
                hits.push(Hit { score, ..h.clone() });
                continue;
            }
            let Some(c) = similar
                .iter()
                .find(|c| c.file_id == file_id && c.position == position)
            else {
                continue;
            };
            let filename = match names.get(&file_id) {
                Some(name) => name.clone(),
                None => match f.store.get_file(&file_id).await {
                    Ok(file) => {
                        names.insert(file_id.clone(), file.filename.clone());
                        file.filename
                    }
                    // Deleted meanwhile: its chunks go with it.
                    Err(Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                },
            };
            hits.push(Hit {
                file_id,
                filename,
                position,
                text: c.text.clone(),
                score,
            });
        }
        Ok(Ranked {
            hits,
            ranking: Ranking::Hybrid,
        })
    }

    /// A turn's retrieval: the best passages of `knowledge`'s files for `question` (ranked
    /// as [`KnowledgeService::search`] ranks), within its budget, and the time it took
    /// (embedding the question included). Fails open: an index failure is logged and the
    /// turn goes on without passages; an embedder failure leaves BM25 alone.
    pub async fn retrieve(&self, knowledge: &Knowledge, question: &str) -> Retrieval {
        let started = Instant::now();
        let question: String = question.chars().take(QUERY_MAX_CHARS).collect();
        let ranked = if self.ports().is_ok() && !question.trim().is_empty() {
            match self
                .rank(
                    &question,
                    Some(&knowledge.files),
                    usize::try_from(knowledge.top_k).unwrap_or(1),
                )
                .await
            {
                Ok(ranked) => ranked,
                Err(e) => {
                    tracing::warn!(error = %e, "retrieval failed; the turn goes on without passages");
                    Ranked::default()
                }
            }
        } else {
            Ranked::default()
        };
        let budget = usize::try_from(knowledge.max_context_chars).unwrap_or(usize::MAX);
        let retrieval = Retrieval {
            passages: fit_budget(ranked.hits, budget),
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ranking: ranked.ranking,
        };
        tracing::debug!(
            passages = retrieval.passages.len(),
            ms = retrieval.elapsed_ms,
            ranking = retrieval.ranking.as_str(),
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
            let mut embedding_fails = false;
            loop {
                every.tick().await;
                match this.sync().await {
                    Ok((0, 0)) => {}
                    Ok((added, removed)) => {
                        tracing::info!(added, removed, "knowledge index synced with the database");
                    }
                    Err(e) => tracing::warn!(error = %e, "could not sync the knowledge index"),
                }
                // Logged when it starts or stops failing, not at every tick.
                match this.embed_missing().await {
                    Ok(n) => {
                        if n > 0 {
                            tracing::info!(chunks = n, "knowledge chunks embedded");
                        }
                        if embedding_fails {
                            embedding_fails = false;
                            tracing::info!("knowledge chunks can be embedded again");
                        }
                    }
                    Err(e) if !embedding_fails => {
                        embedding_fails = true;
                        tracing::warn!(error = %e, "could not embed knowledge chunks; retried at each sync");
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// Embeds `chunks` (a batch) and stores their vectors, grouped by file.
async fn embed_batch(k: &KnowledgePorts, embedder: &dyn Embedder, chunks: &[Chunk]) -> Result<()> {
    let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
    let vectors = embedder.embed(&texts).await?;
    type Vectors = Vec<(u32, Vec<f32>)>;
    let mut by_file: Vec<(&str, Vectors)> = Vec::new();
    for (c, v) in chunks.iter().zip(vectors) {
        match by_file.iter_mut().find(|(f, _)| *f == c.file_id) {
            Some((_, list)) => list.push((c.position, v)),
            None => by_file.push((&c.file_id, vec![(c.position, v)])),
        }
    }
    for (file_id, vectors) in by_file {
        k.chunks
            .set_vectors(file_id, embedder.model(), &vectors)
            .await?;
    }
    Ok(())
}

/// The `depth` stored chunks (of `files` when given) most similar to `query`, best first;
/// only those with a positive cosine similarity. The question is embedded only when some
/// candidate chunk has a vector to compare it with (no provider call otherwise).
async fn similar(
    k: &KnowledgePorts,
    embedder: &dyn Embedder,
    query: &str,
    files: Option<&[String]>,
    depth: usize,
) -> Result<Vec<ChunkVector>> {
    let stored = k.chunks.vectors_of(files, embedder.model()).await?;
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    let asked = embedder
        .embed(&[query.to_owned()])
        .await?
        .pop()
        .ok_or_else(|| Error::Internal("the embedder gave no vector".to_owned()))?;
    let mut scored: Vec<(f32, ChunkVector)> = stored
        .into_iter()
        .map(|c| (cosine(&asked, &c.vector), c))
        .filter(|(s, _)| *s > 0.0)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.truncate(depth);
    Ok(scored.into_iter().map(|(_, c)| c).collect())
}
