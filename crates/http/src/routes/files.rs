//! `/api/v1/files` (and seed 002's `/v1/files`): multipart uploads streamed to the blob
//! store, records, downloads with `Content-Disposition` and ranges, idempotent deletes.
//! See docs/files.md.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::Error;
use agentry_domain::file::{METADATA_MAX_BYTES, StoredFile, parse_filename, parse_metadata};
use agentry_domain::services::Received;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::routes::{DeleteResult, rfc3339};

/// Routes of this resource, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/files").route(web::get().to(list_files)))
        .service(web::resource("/files/upload").route(web::post().to(upload_file)))
        .service(
            web::resource("/files/{file_id}")
                .route(web::get().to(get_file))
                .route(web::delete().to(delete_file)),
        )
        .service(web::resource("/files/{file_id}/download").route(web::get().to(download_file)));
}

/// A stored file.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    /// `file_…`.
    #[schema(example = "file_0193a0b2c3d47e8f9a0b1c2d3e4f5a6b")]
    pub id: String,
    /// The name it was uploaded with (without folders).
    pub filename: String,
    /// Its media type, sniffed from its content (and its name, for text).
    #[schema(example = "application/pdf")]
    pub content_type: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// What the uploader said about it.
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    /// `processing`, `ready` or `failed`.
    pub status: String,
    /// Why processing failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Who uploaded it.
    pub created_by: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl From<&StoredFile> for FileView {
    fn from(f: &StoredFile) -> Self {
        Self {
            id: f.id.clone(),
            filename: f.filename.clone(),
            content_type: f.content_type.clone(),
            size_bytes: f.size_bytes,
            sha256: f.sha256.clone(),
            metadata: f.metadata.clone(),
            status: f.status.as_str().to_owned(),
            status_reason: f.status_reason.clone(),
            created_by: f.created_by.clone(),
            created_at: rfc3339(f.created_at),
        }
    }
}

/// A page of files.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    /// The files, newest first.
    pub files: Vec<FileView>,
    /// Files in all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// The multipart form of an upload (documentation only: the handler streams the parts).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file: its part's `filename` is kept (without folders); its bytes are streamed to
    /// storage.
    #[schema(value_type = String, format = Binary)]
    pub file: String,
    /// Optional JSON object, at most 16 KiB (`{"description": "Document for processing"}`).
    #[schema(example = r#"{"description": "Document for processing"}"#)]
    pub metadata: Option<String>,
}

/// List query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListFilesQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// Items to skip (default 0).
    pub offset: Option<String>,
}

/// A part's bytes, as the blob store reads them.
type Part = agentry_domain::Result<Bytes>;

/// Reads a small text field whole (at most `max` bytes).
async fn small_field(
    field: &mut actix_multipart::Field,
    name: &str,
    max: usize,
) -> ApiResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::invalid_request(format!("unreadable multipart body: {e}")))?;
        if buf.len() + chunk.len() > max {
            return Err(ApiError::validation(
                name,
                format!("must be at most {max} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| ApiError::validation(name, "must be UTF-8 text"))
}

/// Streams the `file` part into the blob store through a small channel: the part is read
/// here (actix's multipart is not `Send`), the store writes on the other side; at most a few
/// chunks are in memory.
async fn receive_part(
    state: &AppState,
    field: &mut actix_multipart::Field,
) -> agentry_domain::Result<Received> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Part>(4);
    let rx = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let pump = async move {
        while let Some(chunk) = field.next().await {
            let item =
                chunk.map_err(|e| Error::invalid("file", format!("the upload was cut: {e}")));
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    };
    let (_, received) = futures_util::future::join(pump, state.files.receive(Box::pin(rx))).await;
    received
}

/// Upload a file (`multipart/form-data`: `file`, and optional `metadata`, a JSON object).
#[utoipa::path(post, path = "/api/v1/files/upload", tag = "files",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = FileView), (status = 400, body = ErrorEnvelope),
        (status = 413, description = "Larger than `files_max_bytes` (`details.limit_bytes`)", body = ErrorEnvelope),
        (status = 415, description = "Not `multipart/form-data`, an executable, or a declared type the content contradicts", body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn upload_file(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Uploads are multipart/form-data with a 'file' part",
        ));
    }
    let limit = state.files.max_bytes();
    let declared_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // The form's other parts and boundaries take a little room beside the file.
    if declared_length.is_some_and(|n| n > limit.saturating_add(64 * 1024)) {
        return Err(Error::TooLarge { limit_bytes: limit }.into());
    }
    let mut form = Multipart::new(req.headers(), payload);
    let mut received: Option<(Received, String, Option<String>)> = None;
    let mut metadata: Option<Map<String, Value>> = None;
    let outcome: ApiResult<()> = async {
        while let Some(field) = form.next().await {
            let mut field = field.map_err(|e| {
                ApiError::invalid_request(format!("unreadable multipart body: {e}"))
            })?;
            let name = field.name().unwrap_or_default().to_owned();
            match name.as_str() {
                "file" if received.is_none() => {
                    let raw = field
                        .content_disposition()
                        .and_then(|d| d.get_filename())
                        .unwrap_or_default()
                        .to_owned();
                    let filename = parse_filename(&raw)?;
                    let declared = field.content_type().map(ToString::to_string);
                    let r = receive_part(&state, &mut field).await?;
                    received = Some((r, filename, declared));
                }
                "file" => return Err(ApiError::validation("file", "give one file per upload")),
                "metadata" if metadata.is_none() => {
                    let text = small_field(&mut field, "metadata", METADATA_MAX_BYTES).await?;
                    metadata = Some(parse_metadata(&text)?);
                }
                "metadata" => return Err(ApiError::validation("metadata", "is given twice")),
                other => {
                    return Err(ApiError::validation(
                        if other.is_empty() { "multipart" } else { other },
                        "is not a field of an upload (file, metadata)",
                    ));
                }
            }
        }
        Ok(())
    }
    .await;
    let Some((r, filename, declared)) = received else {
        outcome?;
        return Err(ApiError::validation(
            "file",
            "is required (a multipart part named 'file')",
        ));
    };
    if let Err(e) = outcome {
        state.files.discard(r).await;
        return Err(e);
    }
    let created_by = Some(caller.0.created_by());
    let file = state
        .files
        .register(
            r,
            filename,
            declared.as_deref(),
            metadata.unwrap_or_default(),
            created_by,
        )
        .await?;
    Ok(HttpResponse::Created().json(FileView::from(&file)))
}

/// List files, newest first.
#[utoipa::path(get, path = "/api/v1/files", tag = "files", params(ListFilesQuery),
    responses((status = 200, body = FileList), (status = 400, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn list_files(
    state: web::Data<AppState>,
    q: web::Query<ListFilesQuery>,
) -> ApiResult<HttpResponse> {
    let page = crate::routes::providers::page_of(q.limit.as_deref(), q.offset.as_deref())?;
    let paged = state.files.list(page).await?;
    Ok(HttpResponse::Ok().json(FileList {
        files: paged.items.iter().map(FileView::from).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// One file's record.
#[utoipa::path(get, path = "/api/v1/files/{file_id}", tag = "files", params(("file_id" = String, Path)),
    responses((status = 200, body = FileView), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn get_file(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let f = state.files.get(&path).await?;
    Ok(HttpResponse::Ok().json(FileView::from(&f)))
}

/// Delete a file: its bytes, its record and its search entries. Deleting an absent file
/// answers `deleted: false`.
#[utoipa::path(delete, path = "/api/v1/files/{file_id}", tag = "files", params(("file_id" = String, Path)),
    responses((status = 200, body = DeleteResult)))]
#[tracing::instrument(skip_all)]
pub async fn delete_file(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let deleted = state.files.delete(&path).await?;
    Ok(HttpResponse::Ok().json(DeleteResult::new("File", deleted)))
}

/// What a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    /// The whole file (no header, one we do not serve, or several ranges).
    All,
    /// `start..end`, end exclusive, within the file.
    Part(u64, u64),
    /// Nothing of the file can answer it (416).
    Unsatisfiable,
}

/// Reads `Range: bytes=a-b`, `bytes=a-` and `bytes=-n` (one range) against a file of `size`
/// bytes; anything else is served whole, as RFC 9110 allows.
fn wanted(range: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::All;
    };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Wanted::All;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        (true, false) => b
            .parse::<u64>()
            .ok()
            .map(|n| (size.saturating_sub(n), size, n == 0)),
        (false, true) => a.parse::<u64>().ok().map(|s| (s, size, false)),
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(s), Ok(e)) if e >= s => Some((s, e.saturating_add(1).min(size), false)),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => Wanted::All,
        Some((start, end, empty)) if empty || start >= size || start >= end => {
            Wanted::Unsatisfiable
        }
        Some((start, end, _)) => Wanted::Part(start, end),
    }
}

/// `attachment; filename="…"; filename*=UTF-8''…`: an ASCII fallback and the exact name.
fn disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Download a file: `Content-Disposition: attachment` with its name, its type, and
/// single-range requests (`206` with `Content-Range`; `416` past its end).
#[utoipa::path(get, path = "/api/v1/files/{file_id}/download", tag = "files", params(("file_id" = String, Path),
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=0-99`, `bytes=100-` or `bytes=-100`")),
    responses((status = 200, description = "The file's bytes, with its own `Content-Type`", content_type = "*/*"),
        (status = 206, description = "The requested range, with the file's own `Content-Type`", content_type = "*/*"),
        (status = 404, body = ErrorEnvelope), (status = 416, description = "The range is past the file's end (`Content-Range: bytes */size`)", body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn download_file(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let file = state.files.get(&path).await?;
    let size = file.size_bytes;
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    let (status, part) = match wanted(range, size) {
        Wanted::All => (StatusCode::OK, None),
        Wanted::Part(s, e) => (StatusCode::PARTIAL_CONTENT, Some((s, e))),
        Wanted::Unsatisfiable => {
            let mut res = actix_web::ResponseError::error_response(
                &ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "RANGE_NOT_SATISFIABLE",
                    format!("The range is outside the file's {size} bytes"),
                )
                .with_details(serde_json::json!({"size_bytes": size})),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(res);
        }
    };
    // An empty file has no bytes to ask the store for.
    let body = if size == 0 {
        Box::pin(futures_util::stream::empty()) as agentry_domain::file::ByteStream
    } else {
        state.files.open(&file.id, part).await?.1
    };
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, file.content_type.clone()))
        .insert_header((header::CONTENT_DISPOSITION, disposition(&file.filename)))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::ETAG, format!("\"{}\"", file.sha256)));
    let length = match part {
        Some((s, e)) => {
            res.insert_header((header::CONTENT_RANGE, format!("bytes {s}-{}/{size}", e - 1)));
            e - s
        }
        None => size,
    };
    if let Ok(v) = HeaderValue::from_str(&length.to_string()) {
        res.insert_header((header::CONTENT_LENGTH, v));
    }
    let body = body.map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
    Ok(res.no_chunking(length).streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(wanted(None, 10), Wanted::All);
        assert_eq!(wanted(Some("bytes=0-3"), 10), Wanted::Part(0, 4));
        assert_eq!(wanted(Some("bytes=5-"), 10), Wanted::Part(5, 10));
        assert_eq!(wanted(Some("bytes=-3"), 10), Wanted::Part(7, 10));
        assert_eq!(wanted(Some("bytes=8-100"), 10), Wanted::Part(8, 10));
        assert_eq!(wanted(Some("bytes=10-"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-1,3-4"), 10), Wanted::All);
        assert_eq!(wanted(Some("items=0-1"), 10), Wanted::All);
        assert_eq!(wanted(Some("bytes=5-2"), 10), Wanted::All);
        assert_eq!(wanted(Some("bytes=-20"), 10), Wanted::Part(0, 10));
    }

    #[test]
    fn dispositions_keep_the_name() {
        assert_eq!(
            disposition("report 2026.pdf"),
            "attachment; filename=\"report 2026.pdf\"; filename*=UTF-8''report%202026.pdf"
        );
        assert_eq!(
            disposition("naïve \"q\".txt"),
            "attachment; filename=\"na_ve _q_.txt\"; filename*=UTF-8''na%C3%AFve%20%22q%22.txt"
        );
    }
}
