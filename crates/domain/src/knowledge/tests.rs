#![allow(clippy::unwrap_used)]
use serde_json::json;

use super::*;

const F1: &str = "file_0123456789abcdef0123456789abcdef";
const F2: &str = "file_fedcba9876543210fedcba9876543210";

#[test]
fn knowledge_reads_a_list_or_an_object() {
    let k = Knowledge::parse(&json!([F1, F2, F1]), "knowledge").unwrap();
    assert_eq!(k.files, vec![F1, F2]);
    assert_eq!(k.top_k, TOP_K_DEFAULT);
    let k = Knowledge::parse(
        &json!({"files": [{"file_id": F1}], "top_k": 2, "max_context_chars": 500}),
        "knowledge",
    )
    .unwrap();
    assert_eq!((k.files.len(), k.top_k, k.max_context_chars), (1, 2, 500));
    assert_eq!(Knowledge::parse(&k.to_json(), "knowledge").unwrap(), k);
    assert!(
        Knowledge::parse(&json!(null), "knowledge")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn bad_knowledge_names_the_field() {
    let field = |v: serde_json::Value| Knowledge::parse(&v, "rag_modules").unwrap_err().field;
    assert_eq!(field(json!(["nope"])), "rag_modules.files[0]");
    assert_eq!(
        field(json!({"files": [F1], "top_k": 0})),
        "rag_modules.top_k"
    );
    assert_eq!(field(json!({"top_k": 99})), "rag_modules.top_k");
    assert_eq!(
        field(json!({"max_context_chars": 10})),
        "rag_modules.max_context_chars"
    );
    assert_eq!(field(json!({"other": 1})), "rag_modules.other");
    assert_eq!(field(json!({"files": "x"})), "rag_modules.files");
    assert_eq!(field(json!(3)), "rag_modules");
}

#[test]
fn chunks_overlap_and_cut_at_boundaries() {
    let sentence = "The quick brown fox jumps over the lazy dog. ";
    let text = sentence.repeat(40);
    let chunks = chunk_text(&text, 200, 50);
    assert!(chunks.len() > 5);
    for c in &chunks {
        assert!(c.chars().count() <= 200, "{c}");
        assert!(c.ends_with('.'), "cut at a sentence end: {c}");
    }
    // Each chunk starts with words the previous one ended with.
    for w in chunks.windows(2) {
        let head: String = w[1].chars().take(20).collect();
        assert!(w[0].contains(head.trim()), "{} / {}", w[0], w[1]);
    }
    assert!(chunk_text("   \n\n  ", 200, 50).is_empty());
    assert_eq!(chunk_text("short text", 200, 50), vec!["short text"]);
    // No word boundary at all still ends.
    assert_eq!(chunk_text(&"x".repeat(500), 100, 30).len(), 7);
}

#[test]
fn budget_keeps_whole_passages_and_cuts_only_the_first() {
    let hit = |n: usize| Hit {
        file_id: F1.to_owned(),
        filename: "a.txt".to_owned(),
        position: 0,
        text: "y".repeat(n),
        score: 1.0,
    };
    assert_eq!(fit_budget(vec![hit(100), hit(100), hit(100)], 250).len(), 2);
    let first = fit_budget(vec![hit(1000), hit(10)], 300);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].text.len(), 300);
}

#[test]
fn fusion_rewards_agreement() {
    let fused = reciprocal_rank_fusion(&[vec!["a", "b", "c"], vec!["b", "d", "a"]], 60.0);
    assert_eq!(fused[0].0, "b");
    assert_eq!(fused.len(), 4);
}

#[test]
fn sources_are_marked() {
    let p = Hit {
        file_id: F1.to_owned(),
        filename: "policy.md".to_owned(),
        position: 2,
        text: "Refunds take 14 days.".to_owned(),
        score: 1.5,
    };
    let text = prompt_with_sources(std::slice::from_ref(&p), "How long do refunds take?");
    assert!(text.contains("[1] policy.md (part 3):\nRefunds take 14 days."));
    assert!(text.ends_with("Question: How long do refunds take?"));
    let r = Retrieval {
        passages: vec![p],
        elapsed_ms: 3,
        ranking: Ranking::Bm25,
    };
    assert_eq!(r.citations()[0].index, 0);
    assert_eq!(r.log_json()["citations"][0]["marker"], "[1]");
}

#[test]
fn cosine_compares_directions_and_refuses_mismatches() {
    assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
    assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-6);
    assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-6);
    assert_eq!(cosine(&[1.0, 0.0], &[1.0, 0.0, 0.0]), 0.0);
    assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    assert_eq!(cosine(&[], &[]), 0.0);
}

#[test]
fn rankings_are_named_as_the_api_says() {
    assert_eq!(Ranking::default().as_str(), "bm25");
    assert_eq!(Ranking::Hybrid.as_str(), "hybrid");
    let r = Retrieval::default();
    assert_eq!(r.log_json()["ranking"], "bm25");
}
