#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use futures_util::StreamExt;

use super::*;

fn chunks(parts: Vec<Result<&'static [u8]>>) -> ByteStream {
    Box::pin(futures_util::stream::iter(
        parts.into_iter().map(|p| p.map(Bytes::from_static)),
    ))
}

async fn read(body: ByteStream) -> Vec<u8> {
    body.fold(Vec::new(), |mut all, c| async move {
        all.extend_from_slice(&c.unwrap());
        all
    })
    .await
}

#[tokio::test]
async fn a_local_folder_round_trips_ranges_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = ObjectBlobStore::local(&dir.path().join("files")).unwrap();
    let n = blobs
        .put("files/a", chunks(vec![Ok(b"hello "), Ok(b"world")]))
        .await
        .unwrap();
    assert_eq!(n, 11);
    assert_eq!(
        read(blobs.get("files/a", None).await.unwrap()).await,
        b"hello world"
    );
    assert_eq!(
        read(blobs.get("files/a", Some((6, 11))).await.unwrap()).await,
        b"world"
    );
    blobs.delete("files/a").await.unwrap();
    blobs.delete("files/a").await.unwrap();
    assert!(matches!(
        blobs.get("files/a", None).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_failing_body_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    let blobs = ObjectBlobStore::local(&root).unwrap();
    let failed = blobs
        .put(
            "files/b",
            chunks(vec![
                Ok(b"partial"),
                Err(Error::TooLarge { limit_bytes: 7 }),
            ]),
        )
        .await;
    assert!(matches!(failed, Err(Error::TooLarge { .. })));
    assert!(matches!(
        blobs.get("files/b", None).await,
        Err(Error::NotFound { .. })
    ));
    // No staging file either.
    let left: Vec<_> = walk(&root);
    assert!(left.is_empty(), "{left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
