//! Files (seed 002's Files API): uploaded documents, their metadata in the database and
//! their bytes in a blob store (a local folder or an S3-compatible bucket). Both ports are
//! here; the use case is [`crate::services::FileService`].

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_core::Stream;
use serde_json::{Map, Value};

use crate::error::{Invalid, Result};
use crate::page::{Page, Paged};

/// Prefix of file ids.
pub const FILE_ID_PREFIX: &str = "file";
/// Longest file name, in characters.
pub const FILENAME_MAX: usize = 255;
/// Largest `metadata` object, as JSON text.
pub const METADATA_MAX_BYTES: usize = 16 * 1024;

/// Bytes as they arrive (upload) or leave (download).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Where a file is in its processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    /// Stored; its text is being extracted and indexed.
    Processing,
    /// Stored (and indexed, when it has text).
    Ready,
    /// Stored, but its processing failed (`status_reason` says why).
    Failed,
}

impl FileStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    /// Reads the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "processing" => Some(Self::Processing),
            "ready" => Some(Self::Ready),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A stored file's record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFile {
    /// `file_…`.
    pub id: String,
    /// The name it was uploaded with (without any folder).
    pub filename: String,
    /// The media type, sniffed from its first bytes and its name.
    pub content_type: String,
    /// Its size.
    pub size_bytes: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// What the uploader said about it (`{"description": …}`).
    pub metadata: Map<String, Value>,
    /// Processing status.
    pub status: FileStatus,
    /// Why processing failed.
    pub status_reason: Option<String>,
    /// Who uploaded it.
    pub created_by: Option<String>,
    /// When it was uploaded.
    pub created_at: DateTime<Utc>,
}

impl StoredFile {
    /// Where its bytes are in the blob store.
    pub fn blob_key(&self) -> String {
        blob_key(&self.id)
    }
}

/// The blob key of a file id.
pub fn blob_key(id: &str) -> String {
    format!("files/{id}")
}

/// Validates an uploaded file's name: any folder part is dropped; 1 to 255 characters
/// without control characters.
///
/// # Errors
/// [`Invalid`] naming `file` (the multipart field).
pub fn parse_filename(raw: &str) -> Result<String, Invalid> {
    let name = raw.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if name.is_empty() || name == "." || name == ".." {
        return Err(Invalid::new(
            "file",
            "needs a file name (the part's filename)",
        ));
    }
    if name.chars().count() > FILENAME_MAX {
        return Err(Invalid::new(
            "file",
            format!("the file name must be at most {FILENAME_MAX} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Invalid::new(
            "file",
            "the file name must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Validates the `metadata` field: a JSON object of at most 16 KiB.
///
/// # Errors
/// [`Invalid`] naming `metadata`.
pub fn parse_metadata(text: &str) -> Result<Map<String, Value>, Invalid> {
    if text.len() > METADATA_MAX_BYTES {
        return Err(Invalid::new(
            "metadata",
            format!("must be at most {METADATA_MAX_BYTES} bytes"),
        ));
    }
    if text.contains('\u{0}') {
        return Err(Invalid::new("metadata", "must not contain NUL characters"));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Invalid::new("metadata", "must be a JSON object")),
        Err(e) => Err(Invalid::new("metadata", format!("is not valid JSON: {e}"))),
    }
}

/// Durable storage of file records.
#[async_trait]
pub trait FileStore: Send + Sync {
    /// Stores a new record.
    ///
    /// # Errors
    /// MUST return `Conflict` when the id is taken.
    async fn insert_file(&self, file: &StoredFile) -> Result<()>;

    /// One record.
    ///
    /// # Errors
    /// MUST return `NotFound` (entity `file`) when there is none.
    async fn get_file(&self, id: &str) -> Result<StoredFile>;

    /// Records, newest first, with the total.
    async fn list_files(&self, page: Page) -> Result<Paged<StoredFile>>;

    /// Changes a record's status. Returns whether the record exists.
    async fn set_file_status(
        &self,
        id: &str,
        status: FileStatus,
        reason: Option<&str>,
    ) -> Result<bool>;

    /// Deletes a record. Returns whether it existed.
    async fn delete_file(&self, id: &str) -> Result<bool>;
}

/// Where files' bytes live: a local folder, an S3-compatible bucket.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Writes `body` under `key`, chunk by chunk (never holding the whole body), and returns
    /// the number of bytes written. When `body` yields an error, or writing fails, nothing
    /// MUST be left under `key` and that error is returned.
    async fn put(&self, key: &str, body: ByteStream) -> Result<u64>;

    /// The bytes of `key`, all or `range` (`start..end`, end exclusive, within the object).
    ///
    /// # Errors
    /// MUST return `NotFound` when there is no such object.
    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream>;

    /// Deletes `key`; an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
}

/// Sniffs a file's media type from its first bytes (and, for text, its name), or refuses it.
/// `declared` is the type the uploader's part announced: a specific type that contradicts
/// the content is refused; `application/octet-stream` (or none) says nothing.
///
/// # Errors
/// A sentence for 415 `UNSUPPORTED_MEDIA_TYPE`: executables, and declared types the content
/// contradicts.
pub fn sniff(head: &[u8], filename: &str, declared: Option<&str>) -> Result<String, String> {
    let by_magic: Option<&str> = if head.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else if head.starts_with(b"PK\x03\x04") {
        Some("application/zip")
    } else if head.starts_with(b"\x1f\x8b") {
        Some("application/gzip")
    } else {
        None
    };
    if head.starts_with(b"\x7fELF")
        || head.starts_with(b"MZ")
        || head.starts_with(&[0xcf, 0xfa, 0xed, 0xfe])
        || head.starts_with(&[0xfe, 0xed, 0xfa, 0xcf])
        || head.starts_with(b"#!")
    {
        return Err("executables and scripts are not accepted".to_owned());
    }
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let sniffed = match by_magic {
        Some(t) if t == "application/zip" => match ext.as_str() {
            "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            _ => t,
        }
        .to_owned(),
        Some(t) => t.to_owned(),
        None if is_text(head) => match ext.as_str() {
            "md" | "markdown" => "text/markdown",
            "csv" => "text/csv",
            "json" => "application/json",
            "html" | "htm" => "text/html",
            "xml" => "application/xml",
            _ => {
                let start =
                    String::from_utf8_lossy(&head[..head.len().min(64)]).to_ascii_lowercase();
                let start = start.trim_start();
                if start.starts_with("<!doctype html") || start.starts_with("<html") {
                    "text/html"
                } else {
                    "text/plain"
                }
            }
        }
        .to_owned(),
        None => "application/octet-stream".to_owned(),
    };
    let declared = declared
        .map(|d| {
            d.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|d| !d.is_empty() && d != "application/octet-stream");
    if let Some(d) = declared {
        let text_like =
            |t: &str| t.starts_with("text/") || t == "application/json" || t == "application/xml";
        let agrees = d == sniffed
            || (text_like(&d) && text_like(&sniffed))
            || (sniffed == "application/zip" && d.starts_with("application/"))
            || (sniffed.starts_with("application/vnd.openxmlformats") && d == "application/zip");
        if !agrees {
            return Err(format!(
                "the part says '{d}' but the content is '{sniffed}'"
            ));
        }
    }
    Ok(sniffed)
}

/// Whether the first bytes read as text: UTF-8 (a character cut at the end allowed), no NUL.
fn is_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_lose_their_folders() {
        assert_eq!(parse_filename("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(
            parse_filename("C:\\Users\\me\\report.pdf").unwrap(),
            "report.pdf"
        );
        assert!(parse_filename("dir/").is_err());
        assert!(parse_filename("a\nb.txt").is_err());
    }

    #[test]
    fn content_is_sniffed_and_checked() {
        assert_eq!(
            sniff(b"%PDF-1.7 ...", "x.bin", None).unwrap(),
            "application/pdf"
        );
        assert_eq!(
            sniff(b"# Title\n\nText", "notes.md", None).unwrap(),
            "text/markdown"
        );
        assert_eq!(
            sniff(b"a,b\n1,2\n", "t.csv", Some("text/csv")).unwrap(),
            "text/csv"
        );
        assert_eq!(
            sniff(b"hello", "readme", Some("application/octet-stream")).unwrap(),
            "text/plain"
        );
        assert_eq!(
            sniff(b"<!DOCTYPE html><p>x", "page", None).unwrap(),
            "text/html"
        );
        assert_eq!(
            sniff(&[0, 1, 2, 3], "blob", None).unwrap(),
            "application/octet-stream"
        );
        // A declared type the content contradicts, and executables, are refused.
        assert!(sniff(b"plain words", "fake.pdf", Some("application/pdf")).is_err());
        assert!(sniff(b"\x7fELF\x02\x01", "tool", None).is_err());
        assert!(sniff(b"#!/bin/sh\nrm -rf /", "run.sh", None).is_err());
        // A UTF-8 character cut by the sniffing window is still text.
        assert_eq!(
            sniff("é".as_bytes().get(..1).unwrap(), "x.txt", None).unwrap(),
            "text/plain"
        );
    }

    #[test]
    fn metadata_is_a_small_object() {
        assert!(parse_metadata(r#"{"description": "x"}"#).is_ok());
        assert_eq!(parse_metadata("[1]").unwrap_err().field, "metadata");
        assert_eq!(parse_metadata("{").unwrap_err().field, "metadata");
    }
}
