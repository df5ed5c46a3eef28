//! Knowledge (issue 15, items 2 and 3): uploaded files are extracted, chunked and indexed in
//! the background (`processing` → `ready` | `failed`); `POST /api/v1/knowledge/search` ranks
//! chunks; an agent with `knowledge` retrieves passages on each turn, gives them to the model
//! with source markers (the mock's echo model answers with what it was given, so the answer
//! shows them) and cites them on every surface. With `knowledge_embedding_model`, ranking
//! is hybrid (BM25 and embeddings, fused); a failing embedder leaves BM25. The retrieval set
//! under `tests/knowledge/` measures recall@1 and recall@5 of both (docs/knowledge.md).

use std::time::Duration;

use agentry_test_harness::fake_upstream::{FakeUpstream, Scripted};
use agentry_test_harness::{TestApp, json};
use serde_json::{Value, json};

use crate::files::upload;
use crate::runtime::sse_events;
use crate::{assert_error, create};

const REFUNDS: &str = "# Refunds\n\nRefunds are paid back to the original card within fourteen days after the parcel reaches our warehouse.\n";
const SHIPPING: &str =
    "Parcels leave Rotterdam every morning; delivery inside the Netherlands takes two days.\n";

/// The file once it is no longer `processing` (within 20 seconds).
pub async fn settled(app: &TestApp, id: &str) -> Value {
    for _ in 0..400 {
        let (status, f) = json(app.get(&format!("/api/v1/files/{id}")).await).await;
        assert_eq!(status, 200, "{f}");
        if f["status"] != "processing" {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("file {id} stayed processing");
}

/// Uploads `text` as `name` and waits until it is ready; returns its id.
async fn ready(app: &TestApp, name: &str, bytes: &[u8]) -> String {
    let f = upload(app, name, bytes, None).await;
    assert_eq!(f["status"], "processing", "{f}");
    let id = f["id"].as_str().unwrap().to_owned();
    let f = settled(app, &id).await;
    assert_eq!(f["status"], "ready", "{f}");
    id
}

async fn search(app: &TestApp, body: Value) -> (u16, Value) {
    json(app.post("/api/v1/knowledge/search", &body).await).await
}

/// Makes agent `helper` with `file` as its knowledge, asks it `message` through agent chat
/// and checks that the answer cites `file` first; returns the answer.
async fn helper_cites(app: &TestApp, file: &str, message: &str) -> Value {
    create(app, json!({"name": "helper", "knowledge": [file]})).await;
    let (status, reply) = json(
        app.post("/api/v1/agents/helper/chat", &json!({"message": message}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["metadata"]["citations"][0]["file_id"], file,
        "{reply}"
    );
    reply
}

#[tokio::test]
async fn an_uploaded_file_is_searchable_and_an_agent_cites_it_on_every_surface() {
    let app = TestApp::spawn().await;
    let policy = ready(&app, "policy.md", REFUNDS.as_bytes()).await;
    let shipping = ready(&app, "shipping.txt", SHIPPING.as_bytes()).await;

    // Search: ranked chunks with file, name, position and score.
    let (status, found) = search(&app, json!({"query": "when are refunds paid back?"})).await;
    assert_eq!(status, 200, "{found}");
    let top = &found["results"][0];
    assert_eq!(top["file_id"], policy.as_str());
    assert_eq!(top["filename"], "policy.md");
    assert_eq!(top["position"], 0);
    assert!(top["score"].as_f64().unwrap() > 0.0);
    assert!(top["text"].as_str().unwrap().contains("fourteen days"));
    assert_eq!(found["ranking"], "bm25");
    // Only the files asked for.
    let (_, only) = search(
        &app,
        json!({"query": "refunds delivery", "file_ids": [shipping]}),
    )
    .await;
    let files: Vec<&Value> = only["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["file_id"])
        .collect();
    assert_eq!(files, [&json!(shipping)]);

    // An agent with that knowledge (alias `rag_modules`), on the mock's echo model.
    let agent = create(&app, json!({"name": "helper", "rag_modules": [policy]})).await;
    assert_eq!(agent["knowledge"]["files"], json!([policy]));
    assert_eq!(agent["knowledge"]["top_k"], 4);
    let question = "How fast are refunds paid?";

    // Agent chat: the answer holds the passage with its marker, and the citation.
    let (status, reply) = json(
        app.post("/api/v1/agents/helper/chat", &json!({"message": question}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let text = reply["message"].as_str().unwrap();
    assert!(text.contains("[1] policy.md (part 1):"), "{text}");
    assert!(text.contains("within fourteen days"), "{text}");
    assert!(
        !text.contains("Rotterdam"),
        "only the agent's files: {text}"
    );
    let cite = &reply["metadata"]["citations"][0];
    assert_eq!(cite["file_id"], policy.as_str());
    assert_eq!(cite["filename"], "policy.md");
    assert_eq!(
        (cite["index"].clone(), cite["marker"].clone()),
        (json!(0), json!("[1]"))
    );
    assert!(reply["metadata"]["retrieval_ms"].is_u64(), "{reply}");

    // Agent chat, streamed: the `end` event carries the same metadata.
    let res = app
        .post(
            "/api/v1/agents/helper/chat",
            &json!({"message": question, "stream": true}),
        )
        .await;
    let events = sse_events(&res.text().await.unwrap());
    let end = events.last().unwrap();
    assert_eq!(
        end["metadata"]["citations"][0]["file_id"],
        policy.as_str(),
        "{end}"
    );

    // Responses: `file_citation` annotations on the output text, also when read back.
    let (status, resp) = json(
        app.post(
            "/v1/responses",
            &json!({"model": "helper", "input": question}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    let part = &resp["output"][0]["content"][0];
    assert!(
        part["text"].as_str().unwrap().contains("fourteen days"),
        "{resp}"
    );
    assert_eq!(
        part["annotations"],
        json!([{"type": "file_citation", "file_id": policy, "filename": "policy.md", "index": 0}])
    );
    let id = resp["id"].as_str().unwrap();
    let (status, again) = json(app.get(&format!("/v1/responses/{id}")).await).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["output"][0]["content"][0]["annotations"], part["annotations"],
        "stored with the turn"
    );

    // Responses, streamed: an `annotation.added` event, and the completed response.
    let res = app
        .post(
            "/v1/responses",
            &json!({"model": "helper", "input": question, "stream": true}),
        )
        .await;
    let events = sse_events(&res.text().await.unwrap());
    let added = events
        .iter()
        .find(|e| e["type"] == "response.output_text.annotation.added")
        .expect("an annotation event");
    assert_eq!(added["annotation"]["file_id"], policy.as_str());
    let done = events
        .iter()
        .find(|e| e["type"] == "response.completed")
        .unwrap();
    assert_eq!(
        done["response"]["output"][0]["content"][0]["annotations"][0]["type"],
        "file_citation"
    );

    // Chat Completions: the passage and its marker are in the answer.
    let (status, cc) = json(
        app.post(
            "/v1/chat/completions",
            &json!({"model": "helper", "messages": [{"role": "user", "content": question}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{cc}");
    let content = cc["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.contains("[1] policy.md") && content.contains("fourteen days"),
        "{content}"
    );
    // Its run log notes the retrieval: its time and the citations.
    let mut noted = Value::Null;
    for _ in 0..100 {
        let (_, runs) = json(app.get("/api/v1/runs").await).await;
        noted = runs["runs"][0]["log_meta"]["knowledge"].clone();
        if noted.is_object() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(noted["retrieval_ms"].is_u64(), "{noted}");
    assert_eq!(noted["citations"][0]["file_id"], policy.as_str(), "{noted}");
}

#[tokio::test]
async fn knowledge_is_validated_and_changes_nothing_when_bad() {
    let app = TestApp::spawn().await;
    let policy = ready(&app, "policy.md", REFUNDS.as_bytes()).await;
    create(
        &app,
        json!({"name": "kb", "knowledge": {"files": [policy], "top_k": 2, "max_context_chars": 500}}),
    )
    .await;
    let missing = "file_0123456789abcdef0123456789abcdef";
    for (body, field) in [
        (json!({"knowledge": [missing]}), "knowledge.files[0]"),
        (json!({"knowledge": ["not-a-file"]}), "knowledge.files[0]"),
        (
            json!({"knowledge": {"files": [policy], "top_k": 0}}),
            "knowledge.top_k",
        ),
        (
            json!({"knowledge": {"files": [policy], "top_k": 21}}),
            "knowledge.top_k",
        ),
        (
            json!({"knowledge": {"max_context_chars": 10}}),
            "knowledge.max_context_chars",
        ),
        (json!({"knowledge": {"file": [policy]}}), "knowledge.file"),
        (json!({"knowledge": "policy"}), "knowledge"),
        (
            json!({"knowledge": [policy], "rag_modules": [policy]}),
            "rag_modules",
        ),
    ] {
        let (status, err) = json(app.patch("/api/v1/agents/kb", &body).await).await;
        let err = assert_error(status, &err, 400, "VALIDATION_ERROR");
        assert_eq!(err["details"]["field"], field, "{body}: {err}");
    }
    let (_, kb) = json(app.get("/api/v1/agents/kb").await).await;
    assert_eq!(
        kb["knowledge"],
        json!({"files": [policy], "top_k": 2, "max_context_chars": 500})
    );
    // Published versions keep it; `null` clears it.
    let (status, _) = json(app.post("/api/v1/agents/kb/versions", &json!({})).await).await;
    assert_eq!(status, 201);
    let (status, cleared) = json(
        app.patch("/api/v1/agents/kb", &json!({"knowledge": null}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["knowledge"]["files"], json!([]));
    let (_, v1) = json(app.get("/api/v1/agents/kb/versions/1").await).await;
    let snapshot = if v1["agent"].is_object() {
        &v1["agent"]
    } else {
        &v1
    };
    assert_eq!(snapshot["knowledge"]["files"], json!([policy]), "{v1}");
    // Searching as an agent obeys an API key's allowlist; a key that may only invoke
    // agents may not search.
    create(&app, json!({"name": "someone-else"})).await;
    let body = json!({"query": "refunds", "agent": "kb"});
    for (scopes, agents, want) in [
        (&["read"][..], Some(&["someone-else"][..]), 404),
        (&["read"][..], Some(&["kb"][..]), 200),
        (&["invoke"][..], None, 403),
    ] {
        let key = app.create_api_key(scopes, agents).await;
        let res = app
            .request_as(
                Some(&key),
                reqwest::Method::POST,
                "/api/v1/knowledge/search",
                Some(&body),
            )
            .await;
        assert_eq!(res.status().as_u16(), want, "{scopes:?} {agents:?}");
    }
    // An agent without knowledge answers without citations.
    let (_, reply) = json(
        app.post("/api/v1/agents/kb/chat", &json!({"message": "refunds?"}))
            .await,
    )
    .await;
    assert_eq!(reply["message"], "refunds?");
    assert!(reply["metadata"].get("citations").is_none(), "{reply}");
    assert!(reply["metadata"].get("retrieval_ms").is_none(), "{reply}");
}

#[tokio::test]
async fn search_input_is_checked() {
    let app = TestApp::spawn().await;
    for (body, status_code, field) in [
        (json!({"query": "  "}), 400, Some("query")),
        (json!({"query": "x".repeat(4001)}), 400, Some("query")),
        (json!({"query": "x", "top_k": 0}), 400, Some("top_k")),
        (json!({"query": "x", "top_k": 21}), 400, Some("top_k")),
        (
            json!({"query": "x", "file_ids": ["nope"]}),
            400,
            Some("file_ids[0]"),
        ),
        (json!({"query": "x", "other": 1}), 400, None),
        (json!({}), 400, None),
        (json!({"query": "x", "agent": "nobody"}), 404, None),
    ] {
        let (status, err) = search(&app, body.clone()).await;
        assert_eq!(status, status_code, "{body}: {err}");
        if let Some(field) = field {
            assert_eq!(err["error"]["details"]["field"], field, "{body}: {err}");
        }
    }
    // Nothing indexed yet: nothing found (and no error).
    let (status, found) = search(&app, json!({"query": "refunds"})).await;
    assert_eq!((status, found["results"].clone()), (200, json!([])));
}

#[tokio::test]
async fn deleting_a_file_removes_its_hits_and_formats_are_extracted() {
    let app = TestApp::spawn().await;
    let html = "<html><head><title>Warranty</title><script>var secretScript = 1;</script></head><body><p>Frames carry a <b>lifetime</b> warranty.</p></body></html>";
    let html_id = ready(&app, "warranty.html", html.as_bytes()).await;
    let json_id = ready(
        &app,
        "plans.json",
        br#"{"plans": [{"name": "Gold", "discount": "ten percent"}]}"#,
    )
    .await;
    let pdf_id = ready(
        &app,
        "manual.pdf",
        &tiny_pdf("Charge the battery for five hours"),
    )
    .await;
    let csv_id = ready(&app, "stores.csv", b"city,phone\nUtrecht,555-0101\n").await;
    for (query, id) in [
        ("lifetime warranty", &html_id),
        ("Gold discount", &json_id),
        ("battery charge hours", &pdf_id),
        ("Utrecht phone", &csv_id),
    ] {
        let (_, found) = search(&app, json!({"query": query, "top_k": 1})).await;
        assert_eq!(
            found["results"][0]["file_id"],
            id.as_str(),
            "{query}: {found}"
        );
    }
    let (_, found) = search(&app, json!({"query": "secretScript"})).await;
    assert_eq!(found["results"], json!([]), "scripts are not text");
    // A file without readable text fails, with the reason.
    let broken = upload(&app, "broken.pdf", b"%PDF-1.4 this is not a PDF", None).await;
    let broken = settled(&app, broken["id"].as_str().unwrap()).await;
    assert_eq!(broken["status"], "failed", "{broken}");
    assert!(
        broken["status_reason"].as_str().unwrap().contains("PDF"),
        "{broken}"
    );
    // Files without text (images) are ready as soon as stored.
    let png = upload(&app, "dot.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", None).await;
    assert_eq!(png["status"], "ready");
    // Delete: its chunks go from search and from agents' turns.
    create(
        &app,
        json!({"name": "warranty-bot", "knowledge": [html_id]}),
    )
    .await;
    let (status, _) = json(app.delete(&format!("/api/v1/files/{html_id}")).await).await;
    assert_eq!(status, 200);
    let (_, found) = search(&app, json!({"query": "lifetime warranty"})).await;
    assert_eq!(found["results"], json!([]), "{found}");
    let (_, reply) = json(
        app.post(
            "/api/v1/agents/warranty-bot/chat",
            &json!({"message": "lifetime warranty?"}),
        )
        .await,
    )
    .await;
    assert_eq!(reply["message"], "lifetime warranty?", "{reply}");
}

#[tokio::test]
async fn knowledge_works_on_postgres_too() {
    let Some(app) = crate::postgres_app(|_| {}).await else {
        return;
    };
    let policy = ready(&app, "policy.md", REFUNDS.as_bytes()).await;
    helper_cites(&app, &policy, "refunds paid?").await;
}

/// Uploads the retrieval set's corpus (`tests/knowledge/corpus`) and asks its questions
/// through the search API with `top_k` 5: (questions, found first, found in the top 5), and
/// checks each answer used `ranking`.
async fn recall(app: &TestApp, ranking: &str) -> (usize, usize, usize) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("knowledge");
    let mut ids = std::collections::HashMap::new();
    let mut names: Vec<_> = std::fs::read_dir(dir.join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let id = ready(app, &name, &std::fs::read(&path).unwrap()).await;
        ids.insert(id, name);
    }
    let questions: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("questions.json")).unwrap())
            .unwrap();
    assert!(questions.len() >= 30);
    let (mut at1, mut at5) = (0, 0);
    for q in &questions {
        let (status, found) = search(app, json!({"query": q["q"], "top_k": 5})).await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["ranking"], ranking, "{found}");
        let files: Vec<&str> = found["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| ids[h["file_id"].as_str().unwrap()].as_str())
            .collect();
        let want = q["file"].as_str().unwrap();
        if files.first() == Some(&want) {
            at1 += 1;
        } else {
            eprintln!("{ranking} miss@1: {} -> {files:?} (want {want})", q["q"]);
        }
        if files.contains(&want) {
            at5 += 1;
        }
    }
    (questions.len(), at1, at5)
}

/// The retrieval set: 38 questions with their known answer file over the 10 documents of
/// `tests/knowledge/corpus`, uploaded through the API; recall@1 and recall@5 (the answer
/// file among the files of the top 5 chunks) of BM25 alone and of hybrid ranking with the
/// mock's lexical embedder are printed and must stay at or above floors just under the
/// figures docs/knowledge.md reports (a regression fails; nothing is timed).
#[tokio::test]
async fn retrieval_set_recall() {
    let bm25 = TestApp::spawn().await;
    let hybrid = TestApp::builder()
        .configure(|c| c.knowledge_embedding_model = Some("mock/lexical".to_owned()))
        .spawn()
        .await;
    let ((n, b1, b5), (_, h1, h5)) = tokio::join!(recall(&bm25, "bm25"), recall(&hybrid, "hybrid"));
    #[allow(clippy::cast_precision_loss)]
    let r = |found: usize| found as f64 / n as f64;
    eprintln!(
        "retrieval set: {n} questions; bm25 recall@1 {:.3} ({b1}), recall@5 {:.3} ({b5}); \
         hybrid (mock/lexical) recall@1 {:.3} ({h1}), recall@5 {:.3} ({h5})",
        r(b1),
        r(b5),
        r(h1),
        r(h5)
    );
    assert!(r(b5) >= 0.9, "bm25 recall@5 fell to {:.3}", r(b5));
    assert!(r(b1) >= 0.75, "bm25 recall@1 fell to {:.3}", r(b1));
    assert!(
        r(h5) >= HYBRID_RECALL_AT_5,
        "hybrid recall@5 fell to {:.3}",
        r(h5)
    );
    assert!(
        r(h1) >= HYBRID_RECALL_AT_1,
        "hybrid recall@1 fell to {:.3}",
        r(h1)
    );
    // On this set, adding the second ranking must not lose what BM25 alone finds.
    assert!(
        h1 >= b1 && h5 >= b5,
        "hybrid ({h1}, {h5}) below bm25 ({b1}, {b5})"
    );
}

/// Floors of hybrid ranking with `mock/lexical` on the retrieval set, just under the
/// measured 38/38 and 35/38 (both rankings are deterministic: a change of chunking, fusion
/// or the mock's embedder that loses a question fails here).
const HYBRID_RECALL_AT_5: f64 = 0.97;
const HYBRID_RECALL_AT_1: f64 = 0.92;

/// An app whose knowledge embeds through the fake upstream's `/v1/embeddings` (an
/// OpenAI-kind provider `up`), as `up/<model>`, with no retries (failures show at once).
async fn embedding_app(fake: &FakeUpstream, model: &str) -> TestApp {
    let model = format!("up/{model}");
    TestApp::builder()
        .provider("up", "openai", Some(&fake.base_url()), &["fake-echo"])
        .configure(move |c| {
            c.knowledge_embedding_model = Some(model);
            c.provider_max_retries = 0;
        })
        .spawn()
        .await
}

/// Checks that some text sent to the fake's `/v1/embeddings` contained `needle`.
fn assert_chunk_embedded(fake: &FakeUpstream, needle: &str) {
    let inputs = embedding_inputs(fake);
    assert!(
        inputs
            .iter()
            .any(|i| i.as_str().is_some_and(|t| t.contains(needle))),
        "{inputs:?}"
    );
}

fn embedding_inputs(fake: &FakeUpstream) -> Vec<Value> {
    fake.requests()
        .iter()
        .filter(|r| r.path == "/v1/embeddings")
        .flat_map(|r| r.body["input"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn hybrid_ranking_embeds_chunks_and_questions_through_the_provider() {
    let fake = FakeUpstream::start().await;
    let app = embedding_app(&fake, "text-embedding-fake").await;
    let policy = ready(&app, "policy.md", REFUNDS.as_bytes()).await;
    let shipping = ready(&app, "shipping.txt", SHIPPING.as_bytes()).await;
    // Each chunk was embedded when its file was indexed (before it was ready).
    assert_chunk_embedded(&fake, "fourteen days");
    let (status, found) = search(&app, json!({"query": "When are refunds paid back?"})).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["ranking"], "hybrid", "{found}");
    assert_eq!(found["results"][0]["file_id"], policy.as_str(), "{found}");
    let score = found["results"][0]["score"].as_f64().unwrap();
    assert!(score > 0.0 && score <= 2.0 / 61.0 + 1e-6, "{found}");
    assert!(embedding_inputs(&fake).contains(&json!("When are refunds paid back?")));
    // The embedder failing for one question (retries are off): BM25 alone answers it.
    fake.push(Scripted::Error(500));
    let (status, found) = search(&app, json!({"query": "When are refunds paid back?"})).await;
    assert_eq!(
        (status, found["ranking"].as_str()),
        (200, Some("bm25")),
        "{found}"
    );
    assert_eq!(found["results"][0]["file_id"], policy.as_str(), "{found}");
    // Limited to one file: the other never appears, from either list.
    let (_, only) = search(
        &app,
        json!({"query": "refunds paid back", "file_ids": [shipping.as_str()]}),
    )
    .await;
    assert!(
        only["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["file_id"] == shipping.as_str()),
        "{only}"
    );
    // The turn retrieves the same way: the question is embedded, the passage cited, the
    // ranking noted with the retrieval time.
    let reply = helper_cites(&app, &policy, "how long until my money is back?").await;
    assert!(reply["metadata"]["retrieval_ms"].is_u64(), "{reply}");
    assert!(embedding_inputs(&fake).contains(&json!("how long until my money is back?")));
}

#[tokio::test]
async fn a_failing_embedder_leaves_bm25_and_the_turn_goes_on() {
    let fake = FakeUpstream::start().await;
    // Every embeddings call answers 500.
    let app = embedding_app(&fake, "fake-error-500").await;
    // Indexing fails open: the file is ready (not failed, not stuck), ranked by BM25; with
    // no vector stored, questions are not sent to the embedder.
    let policy = ready(&app, "policy.md", REFUNDS.as_bytes()).await;
    assert_chunk_embedded(&fake, "fourteen days");
    let (status, found) = search(&app, json!({"query": "refunds"})).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["ranking"], "bm25", "{found}");
    assert_eq!(found["results"][0]["file_id"], policy.as_str(), "{found}");
    helper_cites(&app, &policy, "refunds paid?").await;
}

#[tokio::test]
async fn the_embedding_model_is_checked_at_start_up() {
    let fake = FakeUpstream::start().await;
    let start = |model: &str| {
        let model = model.to_owned();
        TestApp::builder()
            .provider("claude", "anthropic", Some(&fake.origin()), &["claude-x"])
            .configure(move |c| c.knowledge_embedding_model = Some(model))
            .try_spawn()
    };
    for (model, says) in [
        ("nowhere/model", "does not exist"),
        ("claude/claude-x", "no embeddings endpoint"),
        ("mock/echo", "only embedding model is 'lexical'"),
        ("lexical", "must be provider/model"),
        ("mock/", "must be provider/model"),
    ] {
        let error = match start(model).await {
            Ok(_) => panic!("{model} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains("knowledge_embedding_model") && error.contains(says),
            "{model}: {error}"
        );
    }
    // Blank is unset: BM25 alone.
    let app = TestApp::builder()
        .configure(|c| c.knowledge_embedding_model = Some("  ".to_owned()))
        .spawn()
        .await;
    let id = ready(&app, "policy.md", REFUNDS.as_bytes()).await;
    let (_, found) = search(&app, json!({"query": "refunds"})).await;
    assert_eq!(
        (
            found["ranking"].as_str(),
            found["results"][0]["file_id"].as_str()
        ),
        (Some("bm25"), Some(id.as_str()))
    );
}

/// Vectors live in the database: a replica with an empty data folder ranks hybrid without
/// embedding any chunk itself, and a server restarted with another embedding model embeds
/// the stored chunks again.
#[tokio::test]
async fn vectors_are_shared_and_follow_the_configured_model() {
    let fake = FakeUpstream::start().await;
    let app = embedding_app(&fake, "model-a").await;
    let policy = ready(&app, "policy.md", REFUNDS.as_bytes()).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let folder = elsewhere.path().to_path_buf();
    let other = app
        .replica_with(move |c| c.data_dir = Some(folder))
        .await
        .unwrap();
    let mut found = json!({});
    for _ in 0..300 {
        found = search(&other, json!({"query": "refunds paid"})).await.1;
        if found["results"][0]["file_id"] == policy.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(found["ranking"], "hybrid", "{found}");
    let chunks_embedded_by = |model: &str| {
        fake.requests()
            .iter()
            .filter(|r| r.path == "/v1/embeddings" && r.body["model"] == model)
            .filter(|r| {
                r.body["input"].as_array().is_some_and(|i| {
                    i.iter()
                        .any(|t| t.as_str().is_some_and(|t| t.contains("fourteen days")))
                })
            })
            .count()
    };
    // The replica found the vectors stored, so it embedded no chunk itself.
    assert_eq!(chunks_embedded_by("model-a"), 1);
    // Restarted with another model (alone: replicas must agree on the model): the stored
    // chunks are embedded again, within the sync interval.
    drop(other);
    let changed = app
        .restart_with(|c| c.knowledge_embedding_model = Some("up/model-b".to_owned()))
        .await
        .unwrap();
    for _ in 0..300 {
        if chunks_embedded_by("model-b") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(chunks_embedded_by("model-b"), 1);
    let (_, found) = search(&changed, json!({"query": "refunds paid"})).await;
    assert_eq!(found["ranking"], "hybrid", "{found}");
    assert_eq!(found["results"][0]["file_id"], policy.as_str(), "{found}");
}

/// A one-page PDF whose page says `text` in Helvetica.
fn tiny_pdf(text: &str) -> Vec<u8> {
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

/// The index is a cache of the database: a replica with its own, empty data folder builds
/// its index from the stored chunks, and follows the other replica's deletions (both within
/// the sync interval, 5 s).
#[tokio::test]
async fn a_missing_index_is_rebuilt_and_replicas_follow_each_other() {
    let app = TestApp::spawn().await;
    let policy = ready(&app, "policy.md", REFUNDS.as_bytes()).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let folder = elsewhere.path().to_path_buf();
    let other = app
        .replica_with(move |c| c.data_dir = Some(folder))
        .await
        .unwrap();
    let hits = |found: &Value| found["results"].as_array().map_or(0, Vec::len);
    let mut found = json!({});
    for _ in 0..300 {
        found = search(&other, json!({"query": "refunds"})).await.1;
        if hits(&found) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(found["results"][0]["file_id"], policy.as_str(), "{found}");
    assert!(elsewhere.path().join("knowledge").exists());
    // Deleted through the first replica: gone from the second's index too.
    let (status, _) = json(app.delete(&format!("/api/v1/files/{policy}")).await).await;
    assert_eq!(status, 200);
    for _ in 0..300 {
        found = search(&other, json!({"query": "refunds"})).await.1;
        if hits(&found) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(found["results"], json!([]), "{found}");
}
