//! Test sets and evaluation runs (issue 16): seed 000's test set routes, case editing, JSON
//! Lines import/export, and runs across configurations (agents on the scripted mock, an
//! inline model on a fake OpenAI upstream, a judge on another fake upstream), with progress,
//! cancel and a restart in the middle of a run.

use std::time::Duration;

use agentry_test_harness::fake_upstream::{FakeUpstream, Scripted};
use agentry_test_harness::{TestApp, json};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{assert_error, create};

/// An app whose idle runners look for work at once and whose leases are short.
async fn app() -> TestApp {
    TestApp::builder()
        .configure(|c| {
            c.eval_lease_secs = 2;
            c.eval_poll_ms = 100;
        })
        .spawn()
        .await
}

/// Registers an OpenAI-kind provider `id` at `fake`.
async fn provider(app: &TestApp, id: &str, fake: &FakeUpstream) {
    let (status, p) = json(
        app.post(
            "/api/v1/providers",
            &json!({"id": id, "kind": "openai", "base_url": fake.base_url(), "api_key": "k", "models": ["m1"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{p}");
}

async fn testset(app: &TestApp, body: Value) -> Value {
    let (status, set) = json(app.post("/api/v1/testsets", &body).await).await;
    assert_eq!(status, 201, "{set}");
    set
}

async fn start(app: &TestApp, set: &str, body: Value) -> String {
    let (status, run) = json(
        app.post(&format!("/api/v1/testsets/{set}/runs"), &body)
            .await,
    )
    .await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["status"], "pending", "{run}");
    run["id"].as_str().unwrap().to_owned()
}

async fn get_run(app: &TestApp, id: &str) -> Value {
    let (status, run) = json(app.get(&format!("/api/v1/eval-runs/{id}")).await).await;
    assert_eq!(status, 200, "{run}");
    run
}

/// Polls until the run is in `want` (or until `done` results are in, when `want` is
/// `"progress:N"`).
async fn wait_for(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let run = get_run(app, id).await;
        if done(&run) {
            return run;
        }
        last = run;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {id} never got there: {last}");
}

fn status_is(want: &'static str) -> impl Fn(&Value) -> bool {
    move |run| run["status"] == want
}

#[tokio::test]
async fn seed_000_test_sets_are_created_and_listed() {
    let app = app().await;
    // Seed 000's request fields, with cases in Agentry's spelling.
    let set = testset(
        &app,
        json!({"name": "Customer Support Evaluation", "description": "Test cases for customer support scenarios",
            "cases": [{"input": "How do I reset my password?", "assertions": [{"type": "contains", "value": "password"}]},
                      {"input": "Where is my order?", "expected": "Where is my order?"}]}),
    )
    .await;
    let id = set["id"].as_str().unwrap();
    assert!(id.starts_with("testset_"), "{set}");
    assert_eq!(set["case_count"], 2);
    assert!(set["cases"][0]["id"].as_str().unwrap().starts_with("case_"));
    // A case with only `expected` checks that answer.
    assert_eq!(set["cases"][1]["assertions"][0]["type"], "equals");

    // Seed 000's list shape.
    let (status, list) = json(app.get("/api/v1/testsets").await).await;
    assert_eq!(status, 200);
    let item = &list["testsets"][0];
    for key in ["id", "name", "description", "case_count", "created_at"] {
        assert!(item.get(key).is_some(), "{key} missing: {list}");
    }
    assert_eq!(item["name"], "Customer Support Evaluation");
    assert_eq!(item["case_count"], 2);
    assert!(
        item.get("cases").is_none(),
        "lists leave the cases out: {list}"
    );
    assert_eq!(list["total"], 1);
    assert_eq!(list["limit"], 20);

    // By id and by name, on the /v1 alias too.
    let (status, by_name) = json(
        app.get("/v1/testsets/Customer%20Support%20Evaluation")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{by_name}");
    assert_eq!(by_name["id"], id);

    // One name per test set.
    let (status, body) = json(
        app.post(
            "/api/v1/testsets",
            &json!({"name": "Customer Support Evaluation", "cases": []}),
        )
        .await,
    )
    .await;
    assert_error(status, &body, 409, "CONFLICT");
}

#[tokio::test]
async fn bad_test_sets_and_cases_are_refused_naming_the_field() {
    let app = app().await;
    for (body, field) in [
        (json!({"cases": []}), "name"),
        (json!({"name": "x"}), "cases"),
        (
            json!({"name": "x", "cases": [{"input": ""}]}),
            "cases[0].input",
        ),
        (
            json!({"name": "x", "cases": [{"input": "hi"}]}),
            "cases[0].assertions",
        ),
        (
            json!({"name": "x", "cases": [{"input": "hi", "assertions": [{"type": "regex", "pattern": "(("}]}]}),
            "cases[0].assertions[0].pattern",
        ),
        (
            json!({"name": "x", "cases": [{"input": "hi", "assertions": [{"type": "sounds_good"}]}]}),
            "cases[0].assertions[0].type",
        ),
        (
            json!({"name": "x", "cases": [{"input": [{"role": "tool", "content": "x"}], "expected": "y"}]}),
            "cases[0].input[0].role",
        ),
        (
            json!({"name": "x", "cases": [{"input": "hi", "expected": "hi", "colour": "red"}]}),
            "cases[0].colour",
        ),
    ] {
        let (status, err) = json(app.post("/api/v1/testsets", &body).await).await;
        let e = assert_error(status, &err, 400, "VALIDATION_ERROR");
        assert_eq!(e["details"]["field"], field, "{body}: {err}");
    }
    let (_, list) = json(app.get("/api/v1/testsets").await).await;
    assert_eq!(list["total"], 0, "nothing was stored: {list}");
}

#[tokio::test]
async fn cases_are_edited_one_by_one_and_round_trip_as_jsonl() {
    let app = app().await;
    let set = testset(
        &app,
        json!({"name": "edits", "cases": [{"name": "one", "input": "1", "expected": "1"}]}),
    )
    .await;
    let id = set["id"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/testsets/{id}");

    let (status, added) = json(
        app.post(
            &format!("{base}/cases"),
            &json!({"name": "two", "input": [{"role": "system", "content": "Be {{tone}}."}, {"role": "user", "content": "2"}],
                "context": {"tone": "brief"}, "assertions": [{"type": "judge", "rubric": "is brief", "threshold": 0.5, "judge": "mock/echo"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let case = added["id"].as_str().unwrap().to_owned();
    let (status, got) = json(app.get(&format!("{base}/cases/{case}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(got, added);

    let (status, replaced) = json(
        app.put(
            &format!("{base}/cases/{case}"),
            &json!({"name": "two", "input": "2", "assertions": [{"type": "max_tokens", "value": 5}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["id"], case.as_str());
    let (_, list) = json(app.get(&format!("{base}/cases")).await).await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["cases"][1]["assertions"][0]["type"], "max_tokens");

    // Export, then import into a new set: the same cases, ids included.
    let res = app.get(&format!("{base}/export")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let jsonl = res.text().await.unwrap();
    assert_eq!(jsonl.lines().count(), 2, "{jsonl}");
    let copy = testset(&app, json!({"name": "copy", "cases": []})).await;
    let copy_id = copy["id"].as_str().unwrap();
    let res = app
        .client()
        .post(app.url(&format!("/api/v1/testsets/{copy_id}/import?mode=replace")))
        .bearer_auth(app.admin_token())
        .header("content-type", "application/x-ndjson")
        .body(jsonl.clone())
        .send()
        .await
        .unwrap();
    let (status, imported) = json(res).await;
    assert_eq!(status, 200, "{imported}");
    let (_, original) = json(app.get(&base).await).await;
    assert_eq!(imported["cases"], original["cases"]);

    // A bad line changes nothing and is named.
    let res = app
        .client()
        .post(app.url(&format!("/api/v1/testsets/{copy_id}/import")))
        .bearer_auth(app.admin_token())
        .body("{\"input\": \"ok\", \"expected\": \"ok\"}\n\n{\"input\": 3}\n")
        .send()
        .await
        .unwrap();
    let (status, err) = json(res).await;
    let e = assert_error(status, &err, 400, "VALIDATION_ERROR");
    assert_eq!(e["details"]["field"], "line 3.input", "{err}");
    let (_, after) = json(app.get(&format!("/api/v1/testsets/{copy_id}")).await).await;
    assert_eq!(after["case_count"], 2);
    // Appending the same ids again is refused: ids are unique in a set.
    let res = app
        .client()
        .post(app.url(&format!("/api/v1/testsets/{copy_id}/import")))
        .bearer_auth(app.admin_token())
        .body(jsonl)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // Removing is idempotent; patching renames.
    let (status, del) = json(app.delete(&format!("{base}/cases/{case}")).await).await;
    assert_eq!((status, del["deleted"].clone()), (200, json!(true)));
    let (_, del) = json(app.delete(&format!("{base}/cases/{case}")).await).await;
    assert_eq!(del["deleted"], false);
    let (status, patched) = json(
        app.patch(&base, &json!({"name": "edited", "description": null}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (patched["name"].clone(), patched["case_count"].clone()),
        (json!("edited"), json!(1))
    );
    let (_, del) = json(app.delete(&base).await).await;
    assert_eq!(del["deleted"], true);
    let (status, _) = json(app.delete(&base).await).await;
    assert_eq!(status, 200, "deleting again is fine");
    let (status, _) = json(app.get(&base).await).await;
    assert_eq!(status, 404);
}

/// Three configurations (an agent's live definition and its published version on the mock,
/// an inline model on a fake upstream) over cases whose every assertion kind passes under
/// one configuration and fails under another; `judge` asks a scripted judge.
#[tokio::test]
async fn a_run_over_three_configurations_checks_every_assertion_kind() {
    let app = app().await;
    let upstream = FakeUpstream::start().await;
    let judge = FakeUpstream::start().await;
    provider(&app, "up", &upstream).await;
    provider(&app, "judge", &judge).await;
    create(
        &app,
        json!({"name": "Support", "key": "support", "model": "mock/echo",
            "tools": [{"type": "http", "name": "lookup_order", "description": "An order",
                "url": "http://127.0.0.1:9/orders", "method": "GET",
                "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}}}]}),
    )
    .await;
    let (status, v) = json(
        app.post("/api/v1/agents/support/versions", &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{v}");

    let set = testset(
        &app,
        json!({"name": "every kind", "cases": [
            {"name": "greeting", "input": "Hello Ada", "assertions": [
                {"type": "equals", "value": "Hello Ada"},
                {"type": "contains", "value": "ada", "ignore_case": true},
                {"type": "not_contains", "value": "Sorry"}]},
            {"name": "json", "input": "{\"order\": 7, \"status\": \"shipped\"}", "assertions": [
                {"type": "json_schema", "schema": {"type": "object", "required": ["order", "status"]}},
                {"type": "regex", "pattern": "\"order\":\\s*7"}]},
            {"name": "tool", "input": "/call lookup_order {\"id\": 7}", "assertions": [
                {"type": "tool_called", "name": "lookup_order", "arguments": {"id": 7}}]},
            {"name": "limits", "input": "ping", "assertions": [
                {"type": "max_latency_ms", "value": 1000},
                {"type": "max_tokens", "value": 5}]},
            {"name": "polite", "input": "Please answer politely", "assertions": [
                {"type": "judge", "rubric": "The answer is polite."}]}
        ]}),
    )
    .await;
    let set_id = set["id"].as_str().unwrap();
    // The inline model's answers, in case order (one case at a time).
    upstream.push(Scripted::Text("Sorry, no.".into()));
    upstream.push(Scripted::Text("not json".into()));
    upstream.push(Scripted::Text("no tools here".into()));
    upstream.push(Scripted::Delayed(
        Duration::from_millis(1500),
        Box::new(Scripted::Text("pong ".repeat(40))),
    ));
    upstream.push(Scripted::Text("Thank you kindly.".into()));
    // The judge grades case 5 under each configuration in turn.
    judge.push(Scripted::Text(
        r#"{"score": 0.9, "reason": "courteous"}"#.into(),
    ));
    judge.push(Scripted::Text(
        "```json\n{\"score\": 0.2, \"reason\": \"curt\"}\n```".into(),
    ));
    judge.push(Scripted::Text(r#"{"score": 0.8, "reason": "fine"}"#.into()));

    let id = start(
        &app,
        set_id,
        json!({"configurations": [
                {"agent": "support", "label": "live"},
                {"model": "up/m1", "preamble": "Be brief.", "temperature": 0.1, "label": "upstream"},
                {"agent": "support", "version": 1}],
            "concurrency": 1, "judge": "judge/m1"}),
    )
    .await;
    assert!(id.starts_with("eval_run_"));
    let run = wait_for(&app, &id, status_is("completed")).await;
    assert_eq!(run["progress"], json!({"done": 15, "total": 15}), "{run}");
    let summary = run["summary"].as_array().unwrap();
    let labels: Vec<&str> = summary
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["live", "upstream", "support@1"]);
    let rates: Vec<f64> = summary
        .iter()
        .map(|s| s["pass_rate"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, [1.0, 0.0, 1.0], "{}", json!(summary));
    // Every kind passed at least once and failed at least once.
    for kind in [
        "equals",
        "contains",
        "not_contains",
        "regex",
        "json_schema",
        "max_latency_ms",
        "max_tokens",
        "tool_called",
        "judge",
    ] {
        let passed: u64 = summary
            .iter()
            .map(|s| s["assertions"][kind]["passed"].as_u64().unwrap())
            .sum();
        let total: u64 = summary
            .iter()
            .map(|s| s["assertions"][kind]["total"].as_u64().unwrap())
            .sum();
        assert!(passed >= 1 && passed < total, "{kind}: {passed} of {total}");
    }
    assert!(summary[0]["latency_p50_ms"].is_u64());
    assert!(
        summary[1]["latency_p95_ms"].as_u64().unwrap() >= 1500,
        "{}",
        summary[1]
    );
    assert!(summary[0]["tokens"]["total"].as_u64().unwrap() > 0);

    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 15);
    let one = |case: &str, label: &str| {
        results
            .iter()
            .find(|r| r["case_name"] == case && r["label"] == label)
            .unwrap_or_else(|| panic!("no result for {case} under {label}"))
            .clone()
    };
    let tool = one("tool", "live");
    assert_eq!(tool["tool_calls"][0]["name"], "lookup_order", "{tool}");
    assert_eq!(tool["passed"], true);
    let judged = one("polite", "upstream");
    assert_eq!(judged["assertions"][0]["score"], 0.2, "{judged}");
    assert!(
        judged["assertions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("curt")
    );
    let greeting = one("greeting", "upstream");
    assert_eq!(greeting["output"], "Sorry, no.");
    assert!(
        greeting["assertions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("expected \"Hello Ada\""),
        "{greeting}"
    );
    // The inline preamble reached the upstream as the system message.
    let sent = upstream.requests();
    assert!(
        sent[0].body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Be brief."),
        "{:?}",
        sent[0].body
    );
    assert_eq!(judge.requests().len(), 3);

    // Which cases flipped between the live agent and the inline model.
    let (status, cmp) = json(
        app.get(&format!(
            "/api/v1/eval-runs/{id}/compare?base=live&candidate=upstream"
        ))
        .await,
    )
    .await;
    assert_eq!(status, 200, "{cmp}");
    assert_eq!(cmp["regressed"].as_array().unwrap().len(), 5, "{cmp}");
    assert_eq!(cmp["improved"].as_array().unwrap().len(), 0);
    assert_eq!(cmp["pass_rate_delta"], -1.0);
    let (status, cmp) = json(
        app.get(&format!(
            "/api/v1/eval-runs/{id}/compare?base=0&candidate=2"
        ))
        .await,
    )
    .await;
    assert_eq!((status, cmp["unchanged"].clone()), (200, json!(5)), "{cmp}");
    let (status, err) = json(
        app.get(&format!("/api/v1/eval-runs/{id}/compare?base=nope"))
            .await,
    )
    .await;
    assert_error(status, &err, 400, "VALIDATION_ERROR");

    // Listed, by test set; the runs are tagged in the run log.
    let (_, list) = json(
        app.get(&format!("/api/v1/eval-runs?testset_id={set_id}"))
            .await,
    )
    .await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["eval_runs"][0]["progress"]["done"], 15);
    assert!(list["eval_runs"][0].get("results").is_none());
    let (_, without) = json(
        app.get(&format!("/api/v1/eval-runs/{id}?results=false"))
            .await,
    )
    .await;
    assert!(without.get("results").is_none() && without["summary"].is_array());

    // Evaluation turns are not production traffic: the metrics count none of them.
    let (_, metrics) = json(app.get("/api/v1/metrics").await).await;
    let counted = metrics.to_string();
    assert!(
        !counted.contains("\"support\""),
        "evaluation turns counted: {counted}"
    );
}

#[tokio::test]
async fn runs_refuse_what_they_cannot_run() {
    let app = app().await;
    create(&app, json!({"name": "A", "key": "a", "model": "mock/echo"})).await;
    let set = testset(
        &app,
        json!({"name": "judged", "cases": [{"input": "x", "assertions": [{"type": "judge", "rubric": "r"}]}]}),
    )
    .await;
    let path = format!("/api/v1/testsets/{}/runs", set["id"].as_str().unwrap());
    for (body, field) in [
        (json!({}), "configurations"),
        (json!({"configurations": []}), "configurations"),
        (
            json!({"configurations": [{"agent": "nobody"}], "judge": "mock/echo"}),
            "configurations[0].agent",
        ),
        (
            json!({"configurations": [{"agent": "a", "version": 4}], "judge": "mock/echo"}),
            "configurations[0].version",
        ),
        (
            json!({"configurations": [{"model": "nowhere/m"}], "judge": "mock/echo"}),
            "configurations[0].model",
        ),
        (json!({"configurations": [{"agent": "a"}]}), "judge"),
        (
            json!({"configurations": [{"agent": "a"}], "judge": "mock/echo", "concurrency": 17}),
            "concurrency",
        ),
        (
            json!({"configurations": [{"agent": "a"}, {"agent": "a"}], "judge": "mock/echo"}),
            "configurations[1].label",
        ),
    ] {
        let (status, err) = json(app.post(&path, &body).await).await;
        let e = assert_error(status, &err, 400, "VALIDATION_ERROR");
        assert_eq!(e["details"]["field"], field, "{body}: {err}");
    }
    let (status, err) = json(
        app.post(
            "/api/v1/testsets/nope/runs",
            &json!({"configurations": [{"agent": "a"}]}),
        )
        .await,
    )
    .await;
    assert_error(status, &err, 404, "NOT_FOUND");
    let (_, list) = json(app.get("/api/v1/eval-runs").await).await;
    assert_eq!(list["total"], 0);

    // A key limited to agent `a` may not run models directly, nor see others' runs.
    let key = app.create_api_key(&["write"], Some(&["a"])).await;
    let res = app
        .request_as(
            Some(&key),
            Method::POST,
            &path,
            Some(&json!({"configurations": [{"model": "mock/echo"}], "judge": "a"})),
        )
        .await;
    let (status, err) = json(res).await;
    assert_error(status, &err, 403, "FORBIDDEN");
    let admin_run = start(
        &app,
        set["id"].as_str().unwrap(),
        json!({"configurations": [{"agent": "a"}], "judge": "mock/echo"}),
    )
    .await;
    let res = app
        .request_as(
            Some(&key),
            Method::GET,
            &format!("/api/v1/eval-runs/{admin_run}"),
            None,
        )
        .await;
    assert_eq!(res.status(), 404);
    let res = app
        .request_as(Some(&key), Method::GET, "/api/v1/eval-runs", None)
        .await;
    let (_, list) = json(res).await;
    assert_eq!(list["total"], 0, "{list}");
}

/// A slow agent: each answer takes 300 ms.
async fn slow_run(app: &TestApp, cases: usize) -> String {
    create(
        app,
        json!({"name": "Slow", "key": "slow", "model": "mock/slow-300"}),
    )
    .await;
    let cases: Vec<Value> = (0..cases)
        .map(|i| json!({"input": format!("case {i}"), "assertions": [{"type": "contains", "value": "case"}]}))
        .collect();
    let set = testset(app, json!({"name": "slow set", "cases": cases})).await;
    start(
        app,
        set["id"].as_str().unwrap(),
        json!({"configurations": [{"agent": "slow"}], "concurrency": 1}),
    )
    .await
}

#[tokio::test]
async fn progress_shows_while_running_and_cancel_stops_the_run() {
    let app = app().await;
    let id = slow_run(&app, 20).await;
    let running = wait_for(&app, &id, |r| {
        r["status"] == "running" && r["progress"]["done"].as_u64().unwrap() >= 2
    })
    .await;
    assert_eq!(running["progress"]["total"], 20);
    let (status, cancelled) = json(
        app.post(&format!("/api/v1/eval-runs/{id}/cancel"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(
        (status, cancelled["status"].clone()),
        (200, json!("cancelled")),
        "{cancelled}"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    let after = get_run(&app, &id).await;
    let done = after["progress"]["done"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let later = get_run(&app, &id).await;
    assert_eq!(later["status"], "cancelled");
    assert_eq!(
        later["progress"]["done"].as_u64().unwrap(),
        done,
        "no result after the cancel settled"
    );
    assert!(done < 20, "{later}");
    // Cancelling again returns it unchanged.
    let (status, again) = json(
        app.post(&format!("/api/v1/eval-runs/{id}/cancel"), &json!({}))
            .await,
    )
    .await;
    assert_eq!((status, again["status"].clone()), (200, json!("cancelled")));
    let (status, _) = json(
        app.post(
            "/api/v1/eval-runs/eval_run_00000000000000000000000000000000/cancel",
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_restart_in_the_middle_of_a_run_resumes_it() {
    let app = app().await;
    let id = slow_run(&app, 12).await;
    wait_for(&app, &id, |r| r["progress"]["done"].as_u64().unwrap() >= 3).await;
    let app = app.restart().await.unwrap();
    let run = wait_for(&app, &id, status_is("completed")).await;
    assert_eq!(run["progress"], json!({"done": 12, "total": 12}), "{run}");
    assert_eq!(run["summary"][0]["pass_rate"], 1.0);
    let results = run["results"].as_array().unwrap();
    let mut cases: Vec<&str> = results
        .iter()
        .map(|r| r["case_id"].as_str().unwrap())
        .collect();
    cases.dedup();
    assert_eq!(cases.len(), 12, "each case once: {run}");
}

/// A replica that has never seen a run (its runner dormant: looking every ten polls) still
/// executes a run started on a replica that executes none; on SQLite it learns of it only
/// from the database.
#[tokio::test]
async fn a_dormant_replica_executes_a_run_started_on_another() {
    let runner = app().await;
    let starter = runner.replica_with(|c| c.eval_runners = 0).await.unwrap();
    create(
        &starter,
        json!({"name": "Echo", "key": "echo", "model": "mock/echo"}),
    )
    .await;
    let set = testset(
        &starter,
        json!({"name": "far set", "cases": [
            {"input": "far one", "assertions": [{"type": "contains", "value": "far"}]},
            {"input": "far two", "assertions": [{"type": "contains", "value": "two"}]}]}),
    )
    .await;
    let id = start(
        &starter,
        set["id"].as_str().unwrap(),
        json!({"configurations": [{"agent": "echo"}]}),
    )
    .await;
    let run = wait_for(&starter, &id, status_is("completed")).await;
    assert_eq!(run["progress"], json!({"done": 2, "total": 2}), "{run}");
    assert_eq!(run["summary"][0]["pass_rate"], 1.0, "{run}");
}
