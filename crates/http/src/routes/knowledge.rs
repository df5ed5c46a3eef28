//! `/api/v1/knowledge/search`: ranked chunks of the indexed files, for debugging retrieval
//! (what an agent's turn would be given). See docs/knowledge.md.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::Error;
use agentry_domain::knowledge::{Hit, TOP_K_DEFAULT, TOP_K_MAX};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::JsonBody;

/// Routes of this resource, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/knowledge/search").route(web::post().to(search_knowledge)));
}

/// A search of the indexed files.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"query": "How long do refunds take?", "top_k": 4}))]
pub struct SearchInput {
    /// What to look for (1 to 4,000 characters): words, not a query language.
    #[schema(
        min_length = 1,
        max_length = 4000,
        example = "How long do refunds take?"
    )]
    pub query: String,
    /// Only these files (at most 100 ids); all indexed files when absent.
    #[schema(max_items = 100, example = json!(["file_0193a0b2c3d47e8f9a0b1c2d3e4f5a6b"]))]
    pub file_ids: Option<Vec<String>>,
    /// Only the files of this agent's knowledge (id or key), and its `top_k` unless given:
    /// what its turns would be given, before the context budget.
    pub agent: Option<String>,
    /// Chunks returned, 1 to 20 (default 4).
    #[schema(minimum = 1, maximum = 20)]
    pub top_k: Option<u32>,
}

/// A chunk found.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    /// The file.
    pub file_id: String,
    /// The file's name.
    pub filename: String,
    /// The chunk's place in the file, from 0.
    pub position: u32,
    /// Relevance, higher is better: the BM25 score (`ranking` `bm25`), or the reciprocal
    /// rank fusion score, at most 2/61 (`ranking` `hybrid`).
    pub score: f32,
    /// The chunk's text.
    pub text: String,
}

impl From<Hit> for SearchHit {
    fn from(h: Hit) -> Self {
        Self {
            file_id: h.file_id,
            filename: h.filename,
            position: h.position,
            score: h.score,
            text: h.text,
        }
    }
}

/// The chunks found, best first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    /// Best first.
    pub results: Vec<SearchHit>,
    /// The ranking used: `hybrid` (BM25 and embeddings' cosine similarity, fused by
    /// reciprocal rank fusion) when an embedding model is configured and answered, else
    /// `bm25` (docs/knowledge.md).
    pub ranking: String,
    /// Time the search took, in milliseconds.
    pub took_ms: u64,
}

/// Search the indexed files: ranked chunks with their file, position and score.
#[utoipa::path(post, path = "/api/v1/knowledge/search", tag = "knowledge", request_body = SearchInput,
    responses((status = 200, body = SearchResults),
        (status = 400, description = "A blank or long query, a malformed file id, `top_k` out of range", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 404, description = "No such agent", body = ErrorEnvelope),
        (status = 503, description = "Knowledge is not configured", body = ErrorEnvelope)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub async fn search_knowledge(
    req: HttpRequest,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<SearchInput>,
) -> ApiResult<HttpResponse> {
    let started = Instant::now();
    let mut files = body.file_ids;
    if let Some(ids) = &files {
        if ids.len() > agentry_domain::knowledge::FILES_MAX {
            return Err(Error::invalid(
                "file_ids",
                format!("at most {} ids", agentry_domain::knowledge::FILES_MAX),
            )
            .into());
        }
        if let Some(i) = ids
            .iter()
            .position(|id| !agentry_domain::ids::is_id(id, agentry_domain::file::FILE_ID_PREFIX))
        {
            return Err(
                Error::invalid(format!("file_ids[{i}]"), "must be a file id (file_…)").into(),
            );
        }
    }
    let mut top_k = body.top_k;
    if let Some(raw) = &body.agent {
        // An API key's allowlist hides the other agents, as on every read.
        let caller = crate::auth::principal(&req);
        let agent = state
            .agents
            .get_for(caller.as_ref(), &crate::routes::agents::agent_ref(raw)?)
            .await?;
        let mine = agent.knowledge.files.clone();
        files = Some(match files {
            Some(asked) => asked.into_iter().filter(|f| mine.contains(f)).collect(),
            None => mine,
        });
        top_k = top_k.or(Some(agent.knowledge.top_k));
    }
    let top_k = top_k.unwrap_or(TOP_K_DEFAULT);
    if !(1..=TOP_K_MAX).contains(&top_k) {
        return Err(Error::invalid("top_k", format!("must be from 1 to {TOP_K_MAX}")).into());
    }
    let ranked = state
        .knowledge
        .search(&body.query, files.as_deref(), top_k)
        .await?;
    Ok(HttpResponse::Ok().json(SearchResults {
        results: ranked.hits.into_iter().map(SearchHit::from).collect(),
        ranking: ranked.ranking.as_str().to_owned(),
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}
