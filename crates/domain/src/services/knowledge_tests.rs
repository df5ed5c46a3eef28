//! The knowledge use case over fakes: background indexing and statuses, deletion, the
//! index rebuilt from the stored chunks, searches, and retrieval as a step of the turn.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Map;

use super::{FilePorts, FileService, KnowledgePorts, KnowledgeService, KnowledgeSettings};
use crate::agent::AgentRef;
use crate::error::{Error, Result};
use crate::file::{BlobStore, ByteStream, FileStatus, FileStore, StoredFile};
use crate::knowledge::{
    Chunk, ChunkStore, ChunkVector, Embedder, Hit, Knowledge, KnowledgeIndex, Ranking,
    TextExtractor,
};
use crate::llm::Role;
use crate::page::{Page, Paged};
use crate::ports::SystemClock;
use crate::services::runtime::test_support::{Harness, delta, done};
use crate::services::{RuntimeSettings, TurnRequest, TurnTarget};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap()
}

#[derive(Default)]
pub struct Files {
    records: Mutex<HashMap<String, StoredFile>>,
    blobs: Mutex<HashMap<String, Vec<u8>>>,
}

#[async_trait]
impl FileStore for Files {
    async fn insert_file(&self, file: &StoredFile) -> Result<()> {
        lock(&self.records).insert(file.id.clone(), file.clone());
        Ok(())
    }
    async fn get_file(&self, id: &str) -> Result<StoredFile> {
        lock(&self.records)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found("file", id))
    }
    async fn list_files(&self, page: Page) -> Result<Paged<StoredFile>> {
        let items: Vec<_> = lock(&self.records).values().cloned().collect();
        Ok(Paged {
            total: items.len() as u64,
            items,
            page,
        })
    }
    async fn set_file_status(
        &self,
        id: &str,
        status: FileStatus,
        reason: Option<&str>,
    ) -> Result<bool> {
        Ok(match lock(&self.records).get_mut(id) {
            Some(f) => {
                f.status = status;
                f.status_reason = reason.map(str::to_owned);
                true
            }
            None => false,
        })
    }
    async fn delete_file(&self, id: &str) -> Result<bool> {
        Ok(lock(&self.records).remove(id).is_some())
    }
}

#[async_trait]
impl BlobStore for Files {
    async fn put(&self, key: &str, mut body: ByteStream) -> Result<u64> {
        let mut all = Vec::new();
        while let Some(c) = body.next().await {
            all.extend_from_slice(&c?);
        }
        let n = all.len() as u64;
        lock(&self.blobs).insert(key.to_owned(), all);
        Ok(n)
    }
    async fn get(&self, key: &str, _range: Option<(u64, u64)>) -> Result<ByteStream> {
        let bytes = lock(&self.blobs)
            .get(key)
            .cloned()
            .ok_or_else(|| Error::not_found("blob", key))?;
        Ok(Box::pin(futures_util::stream::iter([Ok(Bytes::from(
            bytes,
        ))])))
    }
    async fn delete(&self, key: &str) -> Result<()> {
        lock(&self.blobs).remove(key);
        Ok(())
    }
}

/// Plain text as it is; PDFs always fail.
pub struct Extract;

impl TextExtractor for Extract {
    fn supports(&self, content_type: &str) -> bool {
        matches!(content_type, "text/plain" | "application/pdf")
    }
    fn extract(&self, content_type: &str, bytes: &[u8]) -> std::result::Result<String, String> {
        match content_type {
            "text/plain" => Ok(String::from_utf8_lossy(bytes).into_owned()),
            _ => Err("broken PDF".to_owned()),
        }
    }
}

/// Vectors by `(file, position)`, with the model that made them.
type Vectors = HashMap<(String, u32), (String, Vec<f32>)>;

/// Chunks by file, and their vectors.
#[derive(Default)]
pub struct Chunks(Mutex<HashMap<String, Vec<Chunk>>>, pub Mutex<Vectors>);

#[async_trait]
impl ChunkStore for Chunks {
    async fn replace_chunks(&self, file_id: &str, chunks: &[Chunk]) -> Result<()> {
        lock(&self.0).insert(file_id.to_owned(), chunks.to_vec());
        lock(&self.1).retain(|(f, _), _| f != file_id);
        Ok(())
    }
    async fn chunks_of(&self, file_id: &str) -> Result<Vec<Chunk>> {
        Ok(lock(&self.0).get(file_id).cloned().unwrap_or_default())
    }
    async fn delete_chunks(&self, file_id: &str) -> Result<()> {
        lock(&self.0).remove(file_id);
        lock(&self.1).retain(|(f, _), _| f != file_id);
        Ok(())
    }
    async fn chunked_files(&self) -> Result<Vec<String>> {
        Ok(lock(&self.0).keys().cloned().collect())
    }
    async fn set_vectors(
        &self,
        file_id: &str,
        model: &str,
        vectors: &[(u32, Vec<f32>)],
    ) -> Result<()> {
        let chunks = lock(&self.0);
        let Some(have) = chunks.get(file_id) else {
            return Ok(());
        };
        for (position, v) in vectors {
            if have.iter().any(|c| c.position == *position) {
                lock(&self.1).insert(
                    (file_id.to_owned(), *position),
                    (model.to_owned(), v.clone()),
                );
            }
        }
        Ok(())
    }
    async fn vectors_of(&self, files: Option<&[String]>, model: &str) -> Result<Vec<ChunkVector>> {
        let chunks = lock(&self.0);
        let vectors = lock(&self.1);
        Ok(chunks
            .values()
            .flatten()
            .filter(|c| files.is_none_or(|f| f.contains(&c.file_id)))
            .filter_map(|c| {
                let (m, v) = vectors.get(&(c.file_id.clone(), c.position))?;
                (m == model).then(|| ChunkVector {
                    file_id: c.file_id.clone(),
                    position: c.position,
                    text: c.text.clone(),
                    vector: v.clone(),
                })
            })
            .collect())
    }
    async fn chunks_without_vectors(&self, model: &str, limit: usize) -> Result<Vec<Chunk>> {
        let chunks = lock(&self.0);
        let vectors = lock(&self.1);
        Ok(chunks
            .values()
            .flatten()
            .filter(|c| {
                vectors
                    .get(&(c.file_id.clone(), c.position))
                    .is_none_or(|(m, _)| m != model)
            })
            .take(limit)
            .cloned()
            .collect())
    }
}

/// An embedder of concepts: one dimension per group of related words (so "money back" is
/// near "refunds" although they share no word); fails while `failing` is set; counts calls.
pub struct Concepts {
    pub name: String,
    pub failing: std::sync::atomic::AtomicBool,
    pub calls: std::sync::atomic::AtomicUsize,
}

impl Concepts {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            failing: false.into(),
            calls: 0.into(),
        })
    }
    pub fn fail(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }
}

const CONCEPTS: [&[&str]; 3] = [
    &["refund", "money back", "reimburse"],
    &["parcel", "deliver", "ship"],
    &["bicycle", "bike", "frame"],
];

#[async_trait]
impl Embedder for Concepts {
    fn model(&self) -> &str {
        &self.name
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Unavailable("the embedder is down".to_owned()));
        }
        Ok(texts
            .iter()
            .map(|t| {
                let t = t.to_lowercase();
                let mut v: Vec<f32> = CONCEPTS
                    .iter()
                    .map(|words| {
                        if words.iter().any(|w| t.contains(w)) {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                v.push(0.01);
                v
            })
            .collect())
    }
}

/// Scores a chunk by the query words it contains; counts its searches.
#[derive(Default)]
pub struct Index {
    docs: Mutex<Vec<Hit>>,
    pub searches: Mutex<usize>,
}

#[async_trait]
impl KnowledgeIndex for Index {
    async fn put_file(&self, file_id: &str, filename: &str, chunks: &[Chunk]) -> Result<()> {
        let mut docs = lock(&self.docs);
        docs.retain(|d| d.file_id != file_id);
        docs.extend(chunks.iter().map(|c| Hit {
            file_id: file_id.to_owned(),
            filename: filename.to_owned(),
            position: c.position,
            text: c.text.clone(),
            score: 0.0,
        }));
        Ok(())
    }
    async fn remove_file(&self, file_id: &str) -> Result<()> {
        lock(&self.docs).retain(|d| d.file_id != file_id);
        Ok(())
    }
    async fn search(
        &self,
        query: &str,
        files: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        *lock(&self.searches) += 1;
        let words: Vec<String> = query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() > 3)
            .map(str::to_lowercase)
            .collect();
        let mut hits: Vec<Hit> = lock(&self.docs)
            .iter()
            .filter(|d| files.is_none_or(|f| f.contains(&d.file_id)))
            .filter_map(|d| {
                let text = d.text.to_lowercase();
                #[allow(clippy::cast_precision_loss)]
                let score = words.iter().filter(|w| text.contains(w.as_str())).count() as f32;
                (score > 0.0).then(|| Hit { score, ..d.clone() })
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(limit);
        Ok(hits)
    }
    async fn file_ids(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = lock(&self.docs).iter().map(|d| d.file_id.clone()).collect();
        ids.dedup();
        Ok(ids)
    }
}

pub struct Kit {
    pub files: FileService,
    pub knowledge: KnowledgeService,
    pub chunks: Arc<Chunks>,
    pub index: Arc<Index>,
}

pub fn kit() -> Kit {
    kit_with(None)
}

/// A kit whose knowledge ranks with `embedder` (hybrid) when given.
pub fn kit_with(embedder: Option<Arc<dyn Embedder>>) -> Kit {
    let store = Arc::new(Files::default());
    let chunks = Arc::new(Chunks::default());
    let index = Arc::new(Index::default());
    let file_ports = FilePorts {
        store: store.clone(),
        blobs: store.clone(),
    };
    let mut knowledge = KnowledgeService::new(
        Some(KnowledgePorts {
            chunks: chunks.clone(),
            index: index.clone(),
            extractor: Arc::new(Extract),
        }),
        Some(file_ports.clone()),
        KnowledgeSettings {
            chunk_chars: 200,
            overlap_chars: 40,
            ..KnowledgeSettings::default()
        },
    );
    if let Some(e) = embedder {
        knowledge = knowledge.with_embedder(e);
    }
    let files = FileService::new(Some(file_ports), Arc::new(SystemClock), 1 << 20)
        .with_knowledge(knowledge.clone());
    Kit {
        files,
        knowledge,
        chunks,
        index,
    }
}

impl Kit {
    pub async fn upload(&self, name: &str, text: &str) -> StoredFile {
        let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from(
            text.as_bytes().to_vec(),
        ))]));
        let received = self.files.receive(body).await.unwrap();
        self.files
            .register(received, name.to_owned(), None, Map::new(), None)
            .await
            .unwrap()
    }

    /// The file's status once it is no longer `processing`.
    pub async fn settled(&self, id: &str) -> StoredFile {
        for _ in 0..200 {
            let f = self.files.get(id).await.unwrap();
            if f.status != FileStatus::Processing {
                return f;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("file {id} stayed processing");
    }
}

const REFUNDS: &str =
    "Refunds are paid back to the original card within fourteen days of the return.";
const SHIPPING: &str =
    "Parcels ship from Rotterdam; delivery inside the Netherlands takes two days.";

#[tokio::test]
async fn an_upload_is_processing_then_ready_and_searchable() {
    let k = kit();
    let f = k.upload("policy.txt", REFUNDS).await;
    assert_eq!(f.status, FileStatus::Processing);
    let f = k.settled(&f.id).await;
    assert_eq!((f.status, f.status_reason), (FileStatus::Ready, None));
    let hits = k
        .knowledge
        .search("when are refunds paid", None, 5)
        .await
        .unwrap()
        .hits;
    assert_eq!(hits[0].file_id, f.id);
    assert_eq!(hits[0].filename, "policy.txt");
}

#[tokio::test]
async fn a_file_without_text_fails_with_its_reason() {
    let k = kit();
    let received = k
        .files
        .receive(Box::pin(futures_util::stream::iter([Ok(
            Bytes::from_static(b"%PDF-1.4 nothing"),
        )])))
        .await
        .unwrap();
    let f = k
        .files
        .register(received, "x.pdf".to_owned(), None, Map::new(), None)
        .await
        .unwrap();
    let f = k.settled(&f.id).await;
    assert_eq!(f.status, FileStatus::Failed);
    assert_eq!(f.status_reason.as_deref(), Some("broken PDF"));
    // An empty text file is not "ready" either.
    let empty = k.upload("blank.txt", "   \n  ").await;
    let empty = k.settled(&empty.id).await;
    assert_eq!(empty.status, FileStatus::Failed);
    assert!(empty.status_reason.unwrap().contains("no text"));
}

#[tokio::test]
async fn deleting_a_file_removes_its_chunks_and_hits() {
    let k = kit();
    let f = k.upload("policy.txt", REFUNDS).await;
    k.settled(&f.id).await;
    assert!(k.files.delete(&f.id).await.unwrap());
    assert!(k.chunks.chunks_of(&f.id).await.unwrap().is_empty());
    assert!(
        k.knowledge
            .search("refunds", None, 5)
            .await
            .unwrap()
            .hits
            .is_empty()
    );
}

#[tokio::test]
async fn a_lost_index_is_rebuilt_from_the_stored_chunks() {
    let k = kit();
    let a = k.upload("policy.txt", REFUNDS).await;
    let b = k.upload("shipping.txt", SHIPPING).await;
    k.settled(&a.id).await;
    k.settled(&b.id).await;
    k.index.remove_file(&a.id).await.unwrap();
    k.index.remove_file(&b.id).await.unwrap();
    // And one the database no longer has.
    k.index
        .put_file(
            "file_0123456789abcdef0123456789abcdef",
            "gone.txt",
            &[Chunk {
                file_id: "file_0123456789abcdef0123456789abcdef".to_owned(),
                position: 0,
                text: "gone".to_owned(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(k.knowledge.sync().await.unwrap(), (2, 1));
    assert_eq!(
        k.knowledge.search("parcels", None, 5).await.unwrap().hits[0].file_id,
        b.id
    );
    assert_eq!(k.knowledge.sync().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn searches_check_their_input() {
    let k = kit();
    let field = |e: Error| match e {
        Error::Invalid(i) => i.field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(k.knowledge.search("  ", None, 5).await.unwrap_err()),
        "query"
    );
    assert_eq!(
        field(k.knowledge.search("x", None, 0).await.unwrap_err()),
        "top_k"
    );
    assert_eq!(
        field(
            k.knowledge
                .search(&"x".repeat(5000), None, 5)
                .await
                .unwrap_err()
        ),
        "query"
    );
    let off = KnowledgeService::new(None, None, KnowledgeSettings::default());
    assert!(matches!(
        off.search("x", None, 5).await,
        Err(Error::Unavailable(_))
    ));
}

fn live(key: &str) -> TurnTarget {
    TurnTarget::LiveAgent(AgentRef::parse(key).unwrap())
}

#[tokio::test]
async fn a_turn_gets_the_passages_and_cites_them() {
    let k = kit();
    let a = k.upload("policy.txt", REFUNDS).await;
    let b = k.upload("shipping.txt", SHIPPING).await;
    k.settled(&a.id).await;
    k.settled(&b.id).await;
    let h = Harness::with_knowledge(RuntimeSettings::default(), k.knowledge.clone());
    let mut agent = h
        .agent(
            "helper",
            crate::agent::AgentStatus::Active,
            "Be brief.",
            vec![],
        )
        .await;
    agent.knowledge = Knowledge {
        files: vec![a.id.clone()],
        ..Knowledge::default()
    };
    crate::ports::AgentStore::update_agent(h.mem.as_ref(), &agent)
        .await
        .unwrap();
    h.llm
        .answer(vec![delta("Within fourteen days [1]."), done("stop", 5, 5)]);
    let out = h
        .runtime
        .start_turn(
            None,
            live("helper"),
            TurnRequest::user("How fast are refunds paid?"),
        )
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    // The model got the passage, marked, with the question.
    let sent = &h.llm.requests()[0].messages;
    let user = sent.iter().rev().find(|m| m.role == Role::User).unwrap();
    assert!(
        user.content.contains("[1] policy.txt (part 1):"),
        "{}",
        user.content
    );
    assert!(user.content.contains(REFUNDS));
    assert!(
        user.content
            .ends_with("Question: How fast are refunds paid?")
    );
    // Only the agent's files: the shipping file is not among the sources.
    assert!(!user.content.contains("Rotterdam"));
    // Cited, timed, and stored with the answer; the stored question is the user's own.
    assert_eq!(out.citations.len(), 1);
    assert_eq!(
        (out.citations[0].index, out.citations[0].file_id.as_str()),
        (0, a.id.as_str())
    );
    assert!(out.retrieval_ms.is_some());
    let chat = out.chat.unwrap();
    assert_eq!(chat.answer.annotations.citations, out.citations);
    assert_eq!(chat.answer.annotations.retrieval_ms, out.retrieval_ms);
    assert_eq!(chat.input[0].content, "How fast are refunds paid?");
}

#[tokio::test]
async fn an_agent_without_knowledge_never_touches_the_index() {
    let k = kit();
    let h = Harness::with_knowledge(RuntimeSettings::default(), k.knowledge.clone());
    h.agent("plain", crate::agent::AgentStatus::Active, "", vec![])
        .await;
    h.llm.answer(vec![delta("Hi."), done("stop", 1, 1)]);
    let out = h
        .runtime
        .start_turn(None, live("plain"), TurnRequest::user("refunds?"))
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!(*k.index.searches.lock().unwrap(), 0);
    assert!(out.citations.is_empty() && out.retrieval_ms.is_none());
    assert!(out.chat.unwrap().answer.annotations.is_empty());
}

#[tokio::test]
async fn nothing_found_sends_the_question_alone() {
    let k = kit();
    let a = k.upload("policy.txt", REFUNDS).await;
    k.settled(&a.id).await;
    let h = Harness::with_knowledge(RuntimeSettings::default(), k.knowledge.clone());
    let mut agent = h
        .agent("helper", crate::agent::AgentStatus::Active, "", vec![])
        .await;
    agent.knowledge = Knowledge {
        files: vec![a.id.clone()],
        ..Knowledge::default()
    };
    crate::ports::AgentStore::update_agent(h.mem.as_ref(), &agent)
        .await
        .unwrap();
    h.llm.answer(vec![delta("No idea."), done("stop", 1, 1)]);
    let out = h
        .runtime
        .start_turn(
            None,
            live("helper"),
            TurnRequest::user("What about penguins?"),
        )
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    let sent = &h.llm.requests()[0].messages;
    assert_eq!(sent.last().unwrap().content, "What about penguins?");
    assert!(out.citations.is_empty());
    assert!(out.retrieval_ms.is_some());
}

const MONEY: &str = "Money back is wired to the card you paid with.";

#[tokio::test]
async fn hybrid_ranking_finds_what_words_alone_miss() {
    let embedder = Concepts::new("test/concepts");
    let k = kit_with(Some(embedder.clone()));
    let money = k.upload("money.txt", MONEY).await;
    let shipping = k.upload("shipping.txt", SHIPPING).await;
    assert_eq!(k.settled(&money.id).await.status, FileStatus::Ready);
    assert_eq!(k.settled(&shipping.id).await.status, FileStatus::Ready);
    // BM25 (the fake's word matching) finds nothing for "refunds"; the vectors do.
    let bm25 = kit();
    let m = bm25.upload("money.txt", MONEY).await;
    bm25.settled(&m.id).await;
    let alone = bm25.knowledge.search("refunds", None, 3).await.unwrap();
    assert_eq!((alone.hits.len(), alone.ranking), (0, Ranking::Bm25));
    let found = k.knowledge.search("refunds", None, 3).await.unwrap();
    assert_eq!(found.ranking, Ranking::Hybrid);
    assert_eq!(found.hits[0].file_id, money.id);
    assert_eq!(found.hits[0].filename, "money.txt");
    assert!(found.hits[0].score > 0.0 && found.hits[0].score <= 2.0 / 61.0);
    // Agreement of both lists ranks first: "parcels" is a word of SHIPPING and its concept.
    let found = k.knowledge.search("parcels", None, 3).await.unwrap();
    assert_eq!(found.hits[0].file_id, shipping.id);
    // Limited to some files: nothing of the others, by either list.
    let only = k
        .knowledge
        .search("refunds", Some(std::slice::from_ref(&shipping.id)), 3)
        .await
        .unwrap();
    assert!(
        only.hits.iter().all(|h| h.file_id == shipping.id),
        "{only:?}"
    );
    // The turn's retrieval ranks the same way and says so in the run log.
    let knowledge = Knowledge {
        files: vec![money.id.clone()],
        ..Knowledge::default()
    };
    let r = k
        .knowledge
        .retrieve(&knowledge, "how do refunds work")
        .await;
    assert_eq!(r.ranking, Ranking::Hybrid);
    assert_eq!(r.passages[0].file_id, money.id);
    assert_eq!(r.log_json()["ranking"], "hybrid");
}

#[tokio::test]
async fn a_failing_embedder_leaves_bm25_and_vectors_catch_up() {
    let embedder = Concepts::new("test/concepts");
    embedder.fail(true);
    let k = kit_with(Some(embedder.clone()));
    let refunds = k.upload("refunds.txt", REFUNDS).await;
    // Fails open: the file is ready, ranked by BM25 alone.
    assert_eq!(k.settled(&refunds.id).await.status, FileStatus::Ready);
    assert!(lock(&k.chunks.1).is_empty());
    let calls = embedder.calls.load(std::sync::atomic::Ordering::SeqCst);
    let found = k.knowledge.search("refunds", None, 3).await.unwrap();
    assert_eq!(found.ranking, Ranking::Bm25);
    assert_eq!(found.hits[0].file_id, refunds.id);
    // No vector to compare with: the question is not even sent to the embedder.
    assert_eq!(
        embedder.calls.load(std::sync::atomic::Ordering::SeqCst),
        calls
    );
    let knowledge = Knowledge {
        files: vec![refunds.id.clone()],
        ..Knowledge::default()
    };
    let r = k.knowledge.retrieve(&knowledge, "refunds").await;
    assert_eq!((r.ranking, r.passages.len()), (Ranking::Bm25, 1));
    assert!(k.knowledge.embed_missing().await.is_err());
    // Back: the catch-up gives the chunks vectors; searches are hybrid again.
    embedder.fail(false);
    assert_eq!(k.knowledge.embed_missing().await.unwrap(), 1);
    assert_eq!(k.knowledge.embed_missing().await.unwrap(), 0);
    let found = k.knowledge.search("refunds", None, 3).await.unwrap();
    assert_eq!(found.ranking, Ranking::Hybrid);
    // The question alone failing (vectors stored): BM25 alone, no error.
    embedder.fail(true);
    let found = k.knowledge.search("refunds", None, 3).await.unwrap();
    assert_eq!((found.ranking, found.hits.len()), (Ranking::Bm25, 1));
}

#[tokio::test]
async fn a_changed_model_embeds_the_chunks_again() {
    let old = Concepts::new("test/old");
    let k = kit_with(Some(old.clone()));
    let refunds = k.upload("refunds.txt", REFUNDS).await;
    k.settled(&refunds.id).await;
    assert_eq!(lock(&k.chunks.1).values().next().unwrap().0, "test/old");
    // Another service over the same chunks with another model: the old vectors are not
    // compared with the new model's (BM25 alone) until the catch-up replaces them.
    let new = Concepts::new("test/new");
    let other = KnowledgeService::new(
        Some(KnowledgePorts {
            chunks: k.chunks.clone(),
            index: k.index.clone(),
            extractor: Arc::new(Extract),
        }),
        Some(FilePorts {
            store: Arc::new(Files::default()),
            blobs: Arc::new(Files::default()),
        }),
        KnowledgeSettings::default(),
    )
    .with_embedder(new.clone());
    assert_eq!(other.embedding_model(), Some("test/new"));
    assert_eq!(
        other.search("refunds", None, 3).await.unwrap().ranking,
        Ranking::Bm25
    );
    assert_eq!(other.embed_missing().await.unwrap(), 1);
    assert_eq!(lock(&k.chunks.1).values().next().unwrap().0, "test/new");
    assert_eq!(
        other.search("refunds", None, 3).await.unwrap().ranking,
        Ranking::Hybrid
    );
}
