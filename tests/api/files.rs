//! The Files API (issue 15, item 1; seed 002): multipart uploads streamed to the blob store
//! (a local folder, or an S3-compatible bucket tested against `moto`'s server), records,
//! downloads with `Content-Disposition` and ranges, limits, sniffing, idempotent deletes, and
//! nothing left behind by a failed upload.

use std::path::{Path, PathBuf};

use agentry_test_harness::{TestApp, json};
use bytes::Bytes;
use reqwest::header;
use serde_json::{Value, json};

use crate::assert_error;

const BOUNDARY: &str = "agentry-test-boundary-7MA4YWxk";

/// One part of a form: name, filename, content type, bytes.
pub struct Part<'a>(
    pub &'a str,
    pub Option<&'a str>,
    pub Option<&'a str>,
    pub &'a [u8],
);

/// A `multipart/form-data` body.
pub fn form(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for Part(name, filename, ct, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(f) = filename {
            disposition.push_str(&format!("; filename=\"{f}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(ct) = ct {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Posts a form to `path`; returns the status and the JSON answer.
pub async fn post_form(app: &TestApp, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let res = app
        .client()
        .post(app.url(path))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    json(res).await
}

/// Uploads `bytes` as `filename`; asserts 201 and returns the file.
pub async fn upload(app: &TestApp, filename: &str, bytes: &[u8], metadata: Option<&str>) -> Value {
    let mut parts = vec![Part(
        "file",
        Some(filename),
        Some("application/octet-stream"),
        bytes,
    )];
    if let Some(m) = metadata {
        parts.push(Part("metadata", None, None, m.as_bytes()));
    }
    let (status, file) = post_form(app, "/api/v1/files/upload", form(&parts)).await;
    assert_eq!(status, 201, "{file}");
    file
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

async fn round_trip(app: &TestApp) {
    let text = "Refunds are accepted within 30 days of purchase.\n".repeat(40);
    let file = upload(
        app,
        "../policies/refunds.md",
        text.as_bytes(),
        Some(r#"{"description": "Document for processing"}"#),
    )
    .await;
    let id = file["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("file_"), "{file}");
    assert_eq!(file["filename"], "refunds.md");
    assert_eq!(file["content_type"], "text/markdown");
    assert_eq!(file["size_bytes"], text.len());
    assert_eq!(file["sha256"], sha256_hex(text.as_bytes()));
    assert_eq!(
        file["metadata"],
        json!({"description": "Document for processing"})
    );
    // Text is indexed in the background (docs/knowledge.md): `processing`, then `ready`.
    assert_eq!(file["status"], "processing");
    assert!(file["created_by"].is_string() && file["created_at"].is_string());
    let file = crate::knowledge::settled(app, &id).await;
    assert_eq!(file["status"], "ready", "{file}");

    // Seed 002's spelling: /v1/files/…, trailing slashes ignored.
    let (status, list) = json(app.get("/v1/files/").await).await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(
        (list["limit"].as_u64(), list["offset"].as_u64()),
        (Some(20), Some(0))
    );
    assert_eq!(list["files"][0]["id"], id.as_str());
    let (status, got) = json(app.get(&format!("/v1/files/{id}")).await).await;
    assert_eq!((status, &got), (200, &file));

    let res = app.get(&format!("/api/v1/files/{id}/download")).await;
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "text/markdown");
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        "attachment; filename=\"refunds.md\"; filename*=UTF-8''refunds.md"
    );
    assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    assert_eq!(res.bytes().await.unwrap(), text.as_bytes());

    let res = app
        .client()
        .get(app.url(&format!("/v1/files/{id}/download")))
        .header(header::RANGE, "bytes=8-14")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(
        res.headers()[header::CONTENT_RANGE],
        format!("bytes 8-14/{}", text.len())
    );
    assert_eq!(res.bytes().await.unwrap(), &text.as_bytes()[8..15]);
    let res = app
        .client()
        .get(app.url(&format!("/api/v1/files/{id}/download")))
        .header(header::RANGE, format!("bytes={}-", text.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 416);
    assert_eq!(
        res.headers()[header::CONTENT_RANGE],
        format!("bytes */{}", text.len())
    );

    let (status, d) = json(app.delete(&format!("/v1/files/{id}")).await).await;
    assert_eq!((status, d["deleted"].as_bool()), (200, Some(true)), "{d}");
    let (status, d) = json(app.delete(&format!("/v1/files/{id}")).await).await;
    assert_eq!((status, d["deleted"].as_bool()), (200, Some(false)), "{d}");
    let (status, err) = json(app.get(&format!("/api/v1/files/{id}/download")).await).await;
    assert_error(status, &err, 404, "NOT_FOUND");
    let (_, list) = json(app.get("/api/v1/files").await).await;
    assert_eq!(list["total"], 0);
}

#[tokio::test]
async fn upload_list_get_download_ranges_and_delete() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let app = TestApp::builder()
        .configure(|c| c.data_dir = Some(dir))
        .spawn()
        .await;
    round_trip(&app).await;
    // The deleted file's bytes are gone from the data folder too.
    assert!(files_under(&data.path().join("files")).is_empty());
    // Files survive a restart.
    let file = upload(&app, "notes.txt", b"kept", None).await;
    let app = app.restart().await.unwrap();
    let res = app
        .get(&format!(
            "/api/v1/files/{}/download",
            file["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(res.bytes().await.unwrap(), "kept".as_bytes());
}

#[tokio::test]
async fn too_large_or_refused_uploads_leave_nothing() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_path_buf();
    let app = TestApp::builder()
        .configure(|c| {
            c.data_dir = Some(dir);
            c.files_max_bytes = 100_000;
        })
        .spawn()
        .await;
    // Announced too large by its length: refused before it is read.
    let big = vec![b'a'; 200_000];
    let (status, err) = post_form(
        &app,
        "/api/v1/files/upload",
        form(&[Part("file", Some("big.txt"), None, &big)]),
    )
    .await;
    let err = assert_error(status, &err, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(err["details"]["limit_bytes"], 100_000);
    // Streamed without a length: cut while it is stored, and the partial object removed.
    let body = form(&[Part("file", Some("big.txt"), None, &big)]);
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(16 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, err) = post_form(&app, "/api/v1/files/upload", stream).await;
    assert_error(status, &err, 413, "PAYLOAD_TOO_LARGE");

    // Sniffed and checked.
    let (status, err) = post_form(
        &app,
        "/api/v1/files/upload",
        form(&[Part(
            "file",
            Some("fake.pdf"),
            Some("application/pdf"),
            b"just words",
        )]),
    )
    .await;
    assert_error(status, &err, 415, "UNSUPPORTED_MEDIA_TYPE");
    let (status, err) = post_form(
        &app,
        "/api/v1/files/upload",
        form(&[Part(
            "file",
            Some("tool"),
            None,
            b"\x7fELF\x02\x01\x01\0\0\0",
        )]),
    )
    .await;
    assert_error(status, &err, 415, "UNSUPPORTED_MEDIA_TYPE");
    let (status, err) = json(
        app.post("/api/v1/files/upload", &json!({"file": "x"}))
            .await,
    )
    .await;
    assert_error(status, &err, 415, "UNSUPPORTED_MEDIA_TYPE");
    // Bad forms are 400 naming the field, also when the file came first.
    for (parts, field) in [
        (vec![Part("metadata", None, None, br#"{"a": 1}"#)], "file"),
        (
            vec![
                Part("file", Some("a.txt"), None, b"x"),
                Part("metadata", None, None, b"[1]"),
            ],
            "metadata",
        ),
        (
            vec![
                Part("file", Some("a.txt"), None, b"x"),
                Part("purpose", None, None, b"assistants"),
            ],
            "purpose",
        ),
        (vec![Part("file", Some(""), None, b"x")], "file"),
        (
            vec![
                Part("file", Some("a.txt"), None, b"x"),
                Part("file", Some("b.txt"), None, b"y"),
            ],
            "file",
        ),
    ] {
        let (status, err) = post_form(&app, "/api/v1/files/upload", form(&parts)).await;
        let err = assert_error(status, &err, 400, "VALIDATION_ERROR");
        assert_eq!(err["details"]["field"], field, "{err}");
    }
    // Not one record, not one object.
    let (_, list) = json(app.get("/api/v1/files").await).await;
    assert_eq!(list["total"], 0, "{list}");
    assert!(
        files_under(&data.path().join("files")).is_empty(),
        "{:?}",
        files_under(data.path())
    );
    // Unknown ids.
    let (status, err) = json(app.get("/api/v1/files/file_0123").await).await;
    assert_error(status, &err, 404, "NOT_FOUND");
    // An empty file is a file.
    let empty = upload(&app, "empty.txt", b"", None).await;
    let res = app
        .get(&format!(
            "/api/v1/files/{}/download",
            empty["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.unwrap().is_empty());
}

/// A `moto` S3 server on a free port, and its bucket; `None` (saying it skips) when the
/// package is not installed, unless `AGENTRY_TEST_REQUIRE_S3=1`.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn moto(bucket: &str) -> Option<Moto> {
    let Ok(bin) = std::env::var("AGENTRY_TEST_MOTO_SERVER") else {
        assert!(
            std::env::var("AGENTRY_TEST_REQUIRE_S3").as_deref() != Ok("1"),
            "AGENTRY_TEST_REQUIRE_S3=1 but AGENTRY_TEST_MOTO_SERVER is not set (scripts/s3-server.sh)"
        );
        eprintln!(
            "SKIPPED: moto is not installed (scripts/s3-server.sh sets AGENTRY_TEST_MOTO_SERVER)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(res) = client
            .put(format!("{}/{bucket}", moto.endpoint))
            .send()
            .await
            && res.status().is_success()
        {
            return Some(moto);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("moto did not start on port {port}");
}

/// The keys of a bucket (moto answers unsigned requests).
async fn bucket_keys(moto: &Moto, bucket: &str) -> Vec<String> {
    let text = reqwest::get(format!("{}/{bucket}?list-type=2", moto.endpoint))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.split("<Key>")
        .skip(1)
        .filter_map(|k| k.split("</Key>").next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_s3_compatible_bucket_round_trips() {
    let Some(moto) = moto("agentry-files").await else {
        return;
    };
    let endpoint = moto.endpoint.clone();
    let app = TestApp::builder()
        .configure(|c| {
            c.files_max_bytes = 200_000;
            c.files_s3 = Some(agentry::config::S3Config {
                endpoint: Some(endpoint),
                bucket: "agentry-files".to_owned(),
                region: "us-east-1".to_owned(),
                access_key_id: "testing".to_owned(),
                secret_access_key: "testing".to_owned().into(),
                allow_http: true,
            });
        })
        .spawn()
        .await;
    round_trip(&app).await;
    assert!(bucket_keys(&moto, "agentry-files").await.is_empty());
    let stored = upload(&app, "kept.txt", b"in the bucket", None).await;
    assert_eq!(
        bucket_keys(&moto, "agentry-files").await,
        [format!("files/{}", stored["id"].as_str().unwrap())]
    );
    // A streamed upload past the limit leaves no object (the multipart upload is aborted).
    let big = vec![b'b'; 300_000];
    let body = form(&[Part("file", Some("big.txt"), None, &big)]);
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(32 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let (status, err) = post_form(
        &app,
        "/api/v1/files/upload",
        reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
    )
    .await;
    assert_error(status, &err, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(bucket_keys(&moto, "agentry-files").await.len(), 1);
}
