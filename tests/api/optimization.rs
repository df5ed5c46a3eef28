//! Prompt optimisation (issue 17, item 4): candidates written from failing cases, measured
//! against the current instructions on a test set, the best saved as a draft version with its
//! evidence, nothing published; seed 001's `optimizationState`/`lastOptimized` follow it; one
//! at a time per agent; cancel. The agents answer through the mock's `instructions` model,
//! which follows its prompt to the letter (it answers with the system instructions it was
//! sent), so a better prompt really scores better.

use std::time::Duration;

use agentry_test_harness::{TestApp, json};
use serde_json::{Value, json};

use crate::{assert_error, create};

async fn app() -> TestApp {
    TestApp::builder()
        .configure(|c| {
            c.eval_lease_secs = 2;
            c.eval_poll_ms = 100;
        })
        .spawn()
        .await
}

async fn setup(app: &TestApp, model: &str) {
    create(
        app,
        json!({"name": "Refunds", "instructions": "Be helpful.", "model": model}),
    )
    .await;
    let (status, v) = json(
        app.post("/api/v1/agents/refunds/versions", &json!({"note": "first"}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, set) = json(
        app.post(
            "/api/v1/testsets",
            &json!({"name": "refund-questions", "cases": [
                {"name": "window", "input": "What is the refund window?", "expected": "30 days",
                    "assertions": [{"type": "contains", "value": "30 days"}]},
                {"name": "polite", "input": "Do you ship abroad?",
                    "assertions": [{"type": "contains", "value": "Be helpful"}]}
            ]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{set}");
}

async fn status(app: &TestApp) -> Value {
    let (code, s) = json(app.get("/api/v1/agents/refunds/status").await).await;
    assert_eq!(code, 200, "{s}");
    s
}

/// Follows an optimisation until it ends; the phases seen on the way.
async fn finish(app: &TestApp, id: &str) -> (Value, Vec<String>) {
    let mut phases = Vec::new();
    for _ in 0..600 {
        let (code, o) = json(app.get(&format!("/api/v1/optimizations/{id}")).await).await;
        assert_eq!(code, 200, "{o}");
        if let Some(p) = o["phase"].as_str()
            && phases.last().map(String::as_str) != Some(p)
        {
            phases.push(p.to_owned());
        }
        if ["completed", "failed", "cancelled"].contains(&o["status"].as_str().unwrap()) {
            return (o, phases);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("optimisation {id} did not end in 30 s");
}

/// Waits until the optimisation has started its baseline run; that run's id.
async fn baseline_run(app: &TestApp, id: &str) -> Value {
    for _ in 0..400 {
        let (_, o) = json(app.get(&format!("/api/v1/optimizations/{id}")).await).await;
        if !o["baseline_run_id"].is_null() {
            return o["baseline_run_id"].clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("optimisation {id} never started its baseline run");
}

#[tokio::test]
async fn a_better_prompt_becomes_a_draft_and_nothing_is_published() {
    let app = app().await;
    setup(&app, "mock/instructions").await;
    let before = status(&app).await;
    assert_eq!(before["optimizationState"], "idle");
    assert_eq!(before["lastOptimized"], Value::Null);

    let res = app
        .post(
            "/api/v1/agents/refunds/optimize",
            &json!({"testset_id": "refund-questions", "concurrency": 1}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let started: Value = res.json().await.unwrap();
    assert_eq!(started["status"], "pending");
    assert_eq!(
        location,
        format!("/api/v1/optimizations/{}", started["id"].as_str().unwrap())
    );
    let id = started["id"].as_str().unwrap().to_owned();
    // One optimisation per agent at a time.
    let (code, body) = json(
        app.post(
            "/api/v1/agents/refunds/optimize",
            &json!({"testset_id": "refund-questions"}),
        )
        .await,
    )
    .await;
    assert_error(code, &body, 409, "CONFLICT");
    let during = status(&app).await;
    assert!(
        ["analyzing", "optimizing", "testing", "idle"]
            .contains(&during["optimizationState"].as_str().unwrap()),
        "{during}"
    );

    let (done, phases) = finish(&app, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        phases
            .iter()
            .all(|p| ["analyzing", "optimizing", "testing"].contains(&p.as_str()))
    );
    assert_eq!(done["baseline_instructions"], "Be helpful.");
    // The built-in writer: guidelines, worked examples, both; it says what it is.
    let candidates = done["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 3, "{done}");
    assert!(
        candidates[0]["instructions"]
            .as_str()
            .unwrap()
            .contains("Include \"30 days\"")
    );
    assert!(
        candidates[1]["instructions"]
            .as_str()
            .unwrap()
            .contains("Assistant: 30 days")
    );
    assert!(candidates.iter().all(|c| {
        c["rationale"]
            .as_str()
            .unwrap()
            .contains("not a language model")
    }));
    // The evidence: the current instructions pass one case of two, every candidate both; the
    // first of the best wins; the refund case flipped.
    let ev = &done["evidence"];
    assert_eq!(ev["improved"], true, "{ev}");
    assert_eq!(ev["winner"], "candidate 1");
    assert_eq!(ev["scores"][0]["label"], "current");
    assert_eq!(ev["scores"][0]["pass_rate"], 0.5);
    assert_eq!(ev["scores"][1]["pass_rate"], 1.0);
    assert_eq!(ev["cases_fixed"].as_array().unwrap().len(), 1);
    assert_eq!(ev["cases_broken"], json!([]));
    assert_eq!(done["draft_version"], 2);
    assert_eq!(ev["draft_version"], 2);
    // Both evaluation runs are ordinary runs anyone may read.
    let (code, testing) = json(
        app.get(&format!(
            "/api/v1/eval-runs/{}",
            done["testing_run_id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(testing["summary"].as_array().unwrap().len(), 4);

    // The draft holds the winner; version 1 still serves.
    let (_, draft) = json(app.get("/api/v1/agents/refunds/versions/2").await).await;
    assert_eq!(draft["status"], "draft", "{draft}");
    assert_eq!(
        draft["agent"]["instructions"],
        candidates[0]["instructions"]
    );
    assert!(draft["note"].as_str().unwrap().contains(&id));
    let (_, v1) = json(app.get("/api/v1/agents/refunds/versions/1").await).await;
    assert_eq!(v1["status"], "published");
    let (code, chat) = json(
        app.post(
            "/api/v1/agents/refunds/chat",
            &json!({"message": "What is the refund window?"}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 200, "{chat}");
    assert_eq!(chat["response"], "Be helpful.", "{chat}");
    let (_, agent) = json(app.get("/api/v1/agents/refunds").await).await;
    assert_eq!(agent["instructions"], "Be helpful.");

    let after = status(&app).await;
    assert_eq!(after["optimizationState"], "idle");
    assert!(after["lastOptimized"].as_str().unwrap().ends_with('Z'));
    let (_, list) = json(app.get("/api/v1/agents/refunds/optimizations").await).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["optimizations"][0]["id"], id.as_str());
}

#[tokio::test]
async fn a_model_writes_the_candidates_when_named() {
    let app = app().await;
    setup(&app, "mock/instructions").await;
    // The scripted queue answers the two baseline turns, then the writer.
    app.mock_script().push_text("no idea");
    app.mock_script().push_text("Be helpful.");
    app.mock_script().push_text(
        "Here you go: {\"candidates\": [{\"instructions\": \"Be helpful. Refunds: 30 days.\", \"rationale\": \"states the window\"}]}",
    );
    let (code, started) = json(
        app.post(
            "/api/v1/agents/refunds/optimize",
            &json!({"testset": "refund-questions", "optimizer_model": "mock/echo", "candidates": 1, "concurrency": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 202, "{started}");
    let (done, _) = finish(&app, started["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["optimizer_model"], "mock/echo");
    assert_eq!(
        done["candidates"][0]["rationale"],
        "written by mock/echo: states the window"
    );
    assert_eq!(done["evidence"]["winner"], "candidate 1");
    assert_eq!(done["draft_version"], 2);
}

#[tokio::test]
async fn requests_are_checked_and_an_optimisation_can_be_cancelled() {
    let app = app().await;
    setup(&app, "mock/slow-3000").await;
    for (body, field) in [
        (json!({}), "testset_id"),
        (json!({"testset_id": "nope"}), "testset_id"),
        (
            json!({"testset_id": "refund-questions", "candidates": 9}),
            "candidates",
        ),
        (
            json!({"testset_id": "refund-questions", "optimizer_model": "nobody/nothing"}),
            "optimizer_model",
        ),
        (
            json!({"testset_id": "refund-questions", "extra": true}),
            "extra",
        ),
    ] {
        let (code, err) = json(app.post("/api/v1/agents/refunds/optimize", &body).await).await;
        let e = assert_error(code, &err, 400, "VALIDATION_ERROR");
        assert_eq!(e["details"]["field"], field, "{err}");
    }
    let (code, err) = json(
        app.post(
            "/api/v1/agents/ghost/optimize",
            &json!({"testset_id": "refund-questions"}),
        )
        .await,
    )
    .await;
    assert_error(code, &err, 404, "AGENT_NOT_FOUND");
    let (code, err) = json(app.get("/api/v1/optimizations/opt_nope").await).await;
    assert_error(code, &err, 404, "NOT_FOUND");
    let (_, none) = json(app.get("/api/v1/agents/refunds/optimizations").await).await;
    assert_eq!(none["total"], 0, "a refused request changes nothing");

    // A slow model: the baseline run is still going when the optimisation is cancelled.
    let (code, started) = json(
        app.post(
            "/api/v1/agents/refunds/optimize",
            &json!({"testset_id": "refund-questions"}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let baseline = baseline_run(&app, &id).await;
    assert_eq!(status(&app).await["optimizationState"], "analyzing");
    let (code, cancelled) = json(
        app.post(&format!("/api/v1/optimizations/{id}/cancel"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(code, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (_, run) = json(
        app.get(&format!("/api/v1/eval-runs/{}", baseline.as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(run["status"], "cancelled", "{run}");
    // Cancelling again answers the same; the agent is idle and may be optimised again.
    let (code, again) = json(
        app.post(&format!("/api/v1/optimizations/{id}/cancel"), &json!({}))
            .await,
    )
    .await;
    assert_eq!((code, again["status"].as_str()), (200, Some("cancelled")));
    assert_eq!(status(&app).await["optimizationState"], "idle");
    let (code, _) = json(
        app.post(
            "/api/v1/agents/refunds/optimize",
            &json!({"testset_id": "refund-questions"}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 202);
    let (_, list) = json(
        app.get("/api/v1/agents/refunds/optimizations?limit=1")
            .await,
    )
    .await;
    assert_eq!(
        (
            list["total"].as_u64(),
            list["optimizations"].as_array().map(Vec::len)
        ),
        (Some(2), Some(1))
    );
    // No draft was saved by the cancelled one.
    let (_, versions) = json(app.get("/api/v1/agents/refunds/versions").await).await;
    assert_eq!(versions["total"], 1, "{versions}");
}

#[tokio::test]
async fn a_restarted_server_goes_on_from_the_last_step() {
    let app = app().await;
    // A slow echo: the baseline run is still going when the server stops.
    setup(&app, "mock/slow-400").await;
    let (code, started) = json(
        app.post(
            "/api/v1/agents/refunds/optimize",
            &json!({"testset_id": "refund-questions", "concurrency": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(code, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let baseline = baseline_run(&app, &id).await;
    let app = app.restart().await.unwrap();
    // The lease (2 s) runs out; the new process's optimiser takes over from the stored step.
    let (done, _) = finish(&app, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["baseline_run_id"], baseline,
        "the baseline run was not started again"
    );
    assert_eq!(done["evidence"]["scores"][0]["label"], "current");
    let (_, runs) = json(app.get("/api/v1/eval-runs").await).await;
    assert_eq!(
        runs["total"], 2,
        "one baseline run and one testing run: {runs}"
    );
}
