#![allow(clippy::unwrap_used)]
use agentry_domain::knowledge::{Chunk, KnowledgeIndex};

use super::TantivyIndex;

const A: &str = "file_0123456789abcdef0123456789abcdef";
const B: &str = "file_fedcba9876543210fedcba9876543210";

fn chunks(file: &str, texts: &[&str]) -> Vec<Chunk> {
    texts
        .iter()
        .zip(0u32..)
        .map(|(t, position)| Chunk {
            file_id: file.to_owned(),
            position,
            text: (*t).to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn search_ranks_filters_and_forgets() {
    let dir = tempfile::tempdir().unwrap();
    let index = TantivyIndex::new(&dir.path().join("knowledge"));
    // Nothing written yet: reads find nothing and create nothing.
    assert!(index.search("refund", None, 5).await.unwrap().is_empty());
    assert!(index.file_ids().await.unwrap().is_empty());
    assert!(!dir.path().join("knowledge").exists());
    index
        .put_file(
            A,
            "policy.md",
            &chunks(
                A,
                &[
                    "Refunds are paid within 14 days.",
                    "Shipping is free over 50 euros.",
                ],
            ),
        )
        .await
        .unwrap();
    index
        .put_file(
            B,
            "faq.txt",
            &chunks(B, &["Our office opens at 9 and refunds nothing."]),
        )
        .await
        .unwrap();
    let hits = index
        .search("How are refunds paid?", None, 5)
        .await
        .unwrap();
    assert_eq!(hits[0].file_id, A);
    assert_eq!(hits[0].filename, "policy.md");
    assert_eq!(hits[0].position, 0);
    assert!(hits[0].score > 0.0);
    // Stemming: "shipped" finds "Shipping".
    let hits = index.search("shipped", None, 5).await.unwrap();
    assert_eq!((hits[0].file_id.as_str(), hits[0].position), (A, 1));
    // Only the files asked for.
    let only_b = index
        .search("refunds", Some(&[B.to_owned()]), 5)
        .await
        .unwrap();
    assert!(only_b.iter().all(|h| h.file_id == B) && only_b.len() == 1);
    assert!(
        index
            .search("refunds", Some(&[]), 5)
            .await
            .unwrap()
            .is_empty()
    );
    // Syntax characters are words, not a query language.
    assert!(index.search("refunds AND (\"x OR:", None, 5).await.is_ok());
    assert!(index.search("?!", None, 5).await.unwrap().is_empty());
    // Replaced, then removed.
    index
        .put_file(A, "policy.md", &chunks(A, &["Returns take a week."]))
        .await
        .unwrap();
    assert!(index.search("shipping", None, 5).await.unwrap().is_empty());
    index.remove_file(A).await.unwrap();
    assert!(index.search("returns", None, 5).await.unwrap().is_empty());
    assert_eq!(index.file_ids().await.unwrap(), vec![B.to_owned()]);
    // A new process sees what was committed.
    let again = TantivyIndex::new(&dir.path().join("knowledge"));
    assert_eq!(again.file_ids().await.unwrap(), vec![B.to_owned()]);
}

#[tokio::test]
async fn a_damaged_index_is_recreated_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("knowledge");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("meta.json"), b"not json").unwrap();
    let index = TantivyIndex::new(&path);
    index
        .put_file(A, "a.txt", &chunks(A, &["alpha beta"]))
        .await
        .unwrap();
    assert_eq!(index.search("alpha", None, 3).await.unwrap().len(), 1);
}

/// A one-page PDF whose page says `text` in Helvetica (a standard font), with a correct
/// cross-reference table.
pub fn tiny_pdf(text: &str) -> Vec<u8> {
    let stream = format!("BT /F1 12 Tf 72 712 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[test]
fn pdf_text_is_extracted() {
    use agentry_domain::knowledge::TextExtractor;
    let text = super::Extractor
        .extract("application/pdf", &tiny_pdf("Refunds take fourteen days"))
        .unwrap();
    assert!(text.contains("Refunds take fourteen days"), "{text:?}");
}
