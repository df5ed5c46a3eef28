//! The [`BlobStore`] adapter over the `object_store` crate: a folder on local disk (the
//! default, under the data folder) or any S3-compatible bucket (AWS S3, MinIO, Ceph, moto…).
//!
//! Uploads are multipart: the body is cut into parts as it arrives (1 MiB on disk, 5 MiB on
//! S3, S3's smallest part) and at most two parts are in flight, so an upload holds a few
//! parts in memory whatever its size. A failed upload is aborted, so nothing is left behind.

use std::sync::Arc;

use agentry_domain::file::{BlobStore, ByteStream};
use agentry_domain::{Error, Result};
use async_trait::async_trait;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use secrecy::{ExposeSecret, SecretString};

/// Parts in flight during an upload.
const PARTS_IN_FLIGHT: usize = 2;

/// An S3-compatible bucket.
#[derive(Clone)]
pub struct S3Settings {
    /// The endpoint (`https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`); `None`
    /// for AWS's own, from the region.
    pub endpoint: Option<String>,
    /// The bucket.
    pub bucket: String,
    /// The region (`us-east-1` when the server does not care).
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// Allow `http://` endpoints (local servers).
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// Files' bytes in an object store.
#[derive(Clone)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    part_size: usize,
    what: String,
}

impl std::fmt::Debug for ObjectBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBlobStore")
            .field("what", &self.what)
            .finish()
    }
}

impl ObjectBlobStore {
    /// A folder on local disk, created when missing.
    ///
    /// # Errors
    /// `Unavailable` when the folder cannot be created or used.
    pub fn local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Unavailable(format!(
                "cannot create the files folder {}: {e}",
                dir.display()
            ))
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| Error::Unavailable(format!("files folder {}: {e}", dir.display())))?;
        Ok(Self {
            store: Arc::new(store),
            part_size: 1024 * 1024,
            what: format!("folder {}", dir.display()),
        })
    }

    /// An S3-compatible bucket.
    ///
    /// # Errors
    /// `Invalid` (field `files_s3`) when the settings are refused.
    pub fn s3(s: &S3Settings) -> Result<Self> {
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_access_key_id(&s.access_key_id)
            .with_secret_access_key(s.secret_access_key.expose_secret())
            .with_allow_http(s.allow_http);
        if let Some(endpoint) = &s.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|e| Error::invalid("files_s3", e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            part_size: 5 * 1024 * 1024,
            what: format!("bucket {}", s.bucket),
        })
    }
}

/// An object store failure as the domain's: a missing object is `NotFound`, anything else
/// `Unavailable` (logged; its text may name the bucket, never a key's secret).
fn translate(e: object_store::Error, key: &str) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::not_found("file", key),
        other => {
            tracing::warn!(key, error = %other, "blob store failure");
            Error::Unavailable(format!("file storage: {other}"))
        }
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(&self, key: &str, mut body: ByteStream) -> Result<u64> {
        let path = Path::from(key);
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| translate(e, key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut written: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    if let Err(abort) = writer.abort().await {
                        tracing::warn!(key, error = %abort, "could not abort an upload");
                    }
                    return Err(e);
                }
            };
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                return Err(translate(e, key));
            }
            written += chunk.len() as u64;
            writer.put(chunk);
        }
        match writer.finish().await {
            Ok(_) => Ok(written),
            Err(e) => {
                // A failed completion may leave a whole object: remove it.
                let _ = self.store.delete(&path).await;
                Err(translate(e, key))
            }
        }
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let path = Path::from(key);
        let options = GetOptions {
            range: range.map(|(start, end)| GetRange::Bounded(start..end)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&path, options)
            .await
            .map_err(|e| translate(e, key))?;
        let owned = key.to_owned();
        Ok(Box::pin(
            got.into_stream()
                .map(move |chunk| chunk.map_err(|e| translate(e, &owned))),
        ))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(translate(e, key)),
        }
    }
}

#[cfg(test)]
mod tests;
