//! The full-text index: one tantivy index in a folder (`knowledge/` under the data folder),
//! one document per chunk (file id, file name, position, text), BM25 over the text
//! tokenised by tantivy's English stemmer. Opened on first use (a process whose agents have
//! no knowledge never opens it); created on first write. An index that cannot be opened (a
//! different layout, damage) is deleted and recreated empty: it is a cache, and the service's
//! sync fills it again from the database.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use agentry_domain::error::{Error, Result};
use agentry_domain::knowledge::{Chunk, Hit, KnowledgeIndex};
use async_trait::async_trait;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

/// Most distinct words of a query that are searched.
const QUERY_TERMS_MAX: usize = 64;
/// The writer's memory budget (tantivy's minimum for one thread).
const WRITER_BYTES: usize = 15_000_000;

/// The tantivy index adapter. Cheap to clone.
#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    state: Mutex<Option<Opened>>,
}

struct Fields {
    file_id: Field,
    filename: Field,
    position: Field,
    text: Field,
}

struct Opened {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    files: HashSet<String>,
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("knowledge index: {e}"))
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let file_id = b.add_text_field("file_id", STRING | STORED);
    let filename = b.add_text_field("filename", STORED);
    let position = b.add_u64_field("position", STORED);
    let text = b.add_text_field(
        "text",
        TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("en_stem")
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored(),
    );
    (
        b.build(),
        Fields {
            file_id,
            filename,
            position,
            text,
        },
    )
}

impl TantivyIndex {
    /// An index in `dir` (created when first written).
    pub fn new(dir: &Path) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                state: Mutex::new(None),
            }),
        }
    }

    /// Runs `f` on the opened index off the async threads. `create`: create the index when
    /// there is none (writes); else `f` gets `None` (reads of an index never written).
    async fn with<T: Send + 'static>(
        &self,
        create: bool,
        f: impl FnOnce(Option<&mut Opened>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.is_none() {
                *state = inner.open(create)?;
            }
            f(state.as_mut())
        })
        .await
        .map_err(internal)?
    }
}

impl Inner {
    fn open(&self, create: bool) -> Result<Option<Opened>> {
        let exists = self.dir.join("meta.json").exists();
        if !exists && !create {
            return Ok(None);
        }
        let (schema, fields) = schema();
        let index = if exists {
            match Index::open_in_dir(&self.dir) {
                Ok(index) if index.schema() == schema => index,
                Ok(_) | Err(_) if create => {
                    tracing::warn!(dir = %self.dir.display(), "knowledge index unreadable or of another layout; recreated (it is rebuilt from the database)");
                    std::fs::remove_dir_all(&self.dir).map_err(internal)?;
                    return self.open(true);
                }
                Ok(_) | Err(_) => return Ok(None),
            }
        } else {
            std::fs::create_dir_all(&self.dir).map_err(internal)?;
            Index::create_in_dir(&self.dir, schema).map_err(internal)?
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(internal)?;
        let mut opened = Opened {
            index,
            reader,
            fields,
            files: HashSet::new(),
        };
        opened.files = opened.stored_files()?;
        Ok(Some(opened))
    }
}

impl Opened {
    /// The file ids of every live document.
    fn stored_files(&self) -> Result<HashSet<String>> {
        let searcher = self.reader.searcher();
        let mut files = HashSet::new();
        for segment in searcher.segment_readers() {
            let store = segment.get_store_reader(1).map_err(internal)?;
            for doc in segment.doc_ids_alive() {
                let d: TantivyDocument = store.get(doc).map_err(internal)?;
                if let Some(id) = d.get_first(self.fields.file_id).and_then(|v| v.as_str()) {
                    files.insert(id.to_owned());
                }
            }
        }
        Ok(files)
    }

    fn writer(&self) -> Result<IndexWriter> {
        self.index
            .writer_with_num_threads(1, WRITER_BYTES)
            .map_err(internal)
    }

    fn commit(&self, mut writer: IndexWriter) -> Result<()> {
        writer.commit().map_err(internal)?;
        writer.wait_merging_threads().map_err(internal)?;
        self.reader.reload().map_err(internal)
    }

    fn query(&self, text: &str, files: Option<&[String]>) -> Result<Option<Box<dyn Query>>> {
        let mut analyzer = self
            .index
            .tokenizer_for_field(self.fields.text)
            .map_err(internal)?;
        let mut words: Vec<String> = Vec::new();
        let mut stream = analyzer.token_stream(text);
        while stream.advance() {
            let w = &stream.token().text;
            if !words.contains(w) && words.len() < QUERY_TERMS_MAX {
                words.push(w.clone());
            }
        }
        if words.is_empty() {
            return Ok(None);
        }
        let terms: Vec<(Occur, Box<dyn Query>)> = words
            .iter()
            .map(|w| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.text, w),
                    IndexRecordOption::WithFreqs,
                ));
                (Occur::Should, q)
            })
            .collect();
        let text_query: Box<dyn Query> = Box::new(BooleanQuery::new(terms));
        let Some(files) = files else {
            return Ok(Some(text_query));
        };
        let any_file: Vec<(Occur, Box<dyn Query>)> = files
            .iter()
            .map(|f| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.file_id, f),
                    IndexRecordOption::Basic,
                ));
                (Occur::Should, q)
            })
            .collect();
        let filter: Box<dyn Query> = Box::new(ConstScoreQuery::new(
            Box::new(BooleanQuery::new(any_file)),
            0.0,
        ));
        Ok(Some(Box::new(BooleanQuery::new(vec![
            (Occur::Must, text_query),
            (Occur::Must, filter),
        ]))))
    }

    fn search(&self, text: &str, files: Option<&[String]>, limit: usize) -> Result<Vec<Hit>> {
        if files.is_some_and(<[String]>::is_empty) || limit == 0 {
            return Ok(Vec::new());
        }
        let Some(query) = self.query(text, files)? else {
            return Ok(Vec::new());
        };
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(limit).order_by_score())
            .map_err(internal)?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let d: TantivyDocument = searcher.doc(address).map_err(internal)?;
            let text_of = |f: Field| {
                d.get_first(f)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            hits.push(Hit {
                file_id: text_of(self.fields.file_id),
                filename: text_of(self.fields.filename),
                position: d
                    .get_first(self.fields.position)
                    .and_then(|v| v.as_u64())
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or_default(),
                text: text_of(self.fields.text),
                score,
            });
        }
        Ok(hits)
    }
}

#[async_trait]
impl KnowledgeIndex for TantivyIndex {
    async fn put_file(&self, file_id: &str, filename: &str, chunks: &[Chunk]) -> Result<()> {
        let (file_id, filename, chunks) =
            (file_id.to_owned(), filename.to_owned(), chunks.to_vec());
        self.with(true, move |o| {
            let o = o.ok_or_else(|| internal("could not be created"))?;
            let writer = o.writer()?;
            writer.delete_term(Term::from_field_text(o.fields.file_id, &file_id));
            for c in &chunks {
                let mut d = TantivyDocument::default();
                d.add_text(o.fields.file_id, &file_id);
                d.add_text(o.fields.filename, &filename);
                d.add_u64(o.fields.position, u64::from(c.position));
                d.add_text(o.fields.text, &c.text);
                writer.add_document(d).map_err(internal)?;
            }
            o.commit(writer)?;
            o.files.insert(file_id);
            Ok(())
        })
        .await
    }

    async fn remove_file(&self, file_id: &str) -> Result<()> {
        let file_id = file_id.to_owned();
        self.with(false, move |o| {
            let Some(o) = o else { return Ok(()) };
            if !o.files.contains(&file_id) {
                return Ok(());
            }
            let writer = o.writer()?;
            writer.delete_term(Term::from_field_text(o.fields.file_id, &file_id));
            o.commit(writer)?;
            o.files.remove(&file_id);
            Ok(())
        })
        .await
    }

    async fn search(
        &self,
        query: &str,
        files: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        let (query, files) = (query.to_owned(), files.map(<[String]>::to_vec));
        self.with(false, move |o| match o {
            Some(o) => o.search(&query, files.as_deref(), limit),
            None => Ok(Vec::new()),
        })
        .await
    }

    async fn file_ids(&self) -> Result<Vec<String>> {
        self.with(false, |o| {
            Ok(o.map(|o| o.files.iter().cloned().collect())
                .unwrap_or_default())
        })
        .await
    }
}
