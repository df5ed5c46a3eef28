//! The OpenAPI document tells the truth about requests: what it marks required is required,
//! the values, bounds and lengths it states are the ones the server enforces, and the example
//! of every request body is accepted (issue 13, item 13).

use std::collections::BTreeSet;

use agentry_test_harness::{TestApp, json};
use reqwest::Method;
use serde_json::{Value, json};

/// Operations left out, and why.
const LEFT_OUT: &[(&str, &str)] = &[
    // Ends the session of the token the test calls with.
    ("/api/v1/auth/logout", "post"),
    // The MCP server bodies (issue 14) have no example of their own, and their fields'
    // examples together give both `config` and `url`, which the server refuses.
    ("/api/v1/mcp-servers", "post"),
    ("/api/v1/mcp-servers/{server}", "put"),
];

/// Follows `$ref`s into the document's components.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The fields every value of `schema` must have: its own `required`, those of all its
/// `allOf` parts, and those every `anyOf`/`oneOf` alternative shares.
fn required(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let schema = resolve(doc, schema);
    let mut out: BTreeSet<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        out.extend(required(doc, part));
    }
    for key in ["anyOf", "oneOf"] {
        let shared = schema[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|alternative| required(doc, alternative))
            .reduce(|a, b| a.intersection(&b).cloned().collect());
        out.extend(shared.into_iter().flatten());
    }
    out
}

/// The properties `schema` describes (of all its alternatives), with their schemas resolved
/// and `null` alternatives removed.
fn properties(doc: &Value, schema: &Value) -> Vec<(String, Value)> {
    let schema = resolve(doc, schema);
    let mut out: Vec<(String, Value)> = Vec::new();
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        out.push((name.clone(), not_null(doc, property)));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for part in schema[key].as_array().into_iter().flatten() {
            for (name, property) in properties(doc, part) {
                if !out.iter().any(|(n, _)| *n == name) {
                    out.push((name, property));
                }
            }
        }
    }
    out
}

/// A property's schema without its `null` alternative (`oneOf: [X, {type: null}]` → `X`).
fn not_null(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(alternatives) = schema[key].as_array() {
            let rest: Vec<&Value> = alternatives
                .iter()
                .filter(|a| a["type"] != "null")
                .collect();
            if let [one] = rest.as_slice() {
                return not_null(doc, one);
            }
        }
    }
    schema.clone()
}

fn is_type(schema: &Value, name: &str) -> bool {
    schema["type"] == name
        || schema["type"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t == name))
}

/// The value of a path parameter in the test's world.
fn fixture(name: &str) -> Option<&'static str> {
    match name {
        "agent" => Some("support-bot"),
        "provider" => Some("local"),
        "user" => Some("bob"),
        "version" => Some("1"),
        "cluster" => Some("my-cluster"),
        // The test set example's own name: a `PUT` of the example keeps it.
        "testset" => Some("Customer Support Evaluation"),
        "case" => Some("case_00000000000000000000000000000001"),
        _ => None,
    }
}

/// `path` with its parameters filled in, if the test knows them all.
fn concrete(path: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}')? + start;
        out.push_str(&rest[..start]);
        out.push_str(fixture(&rest[start + 1..end])?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

async fn send(app: &TestApp, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
    let res = app.request(method, path, Some(body)).await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An app holding what the examples and path parameters name: agent `support-bot` with a
/// published version, provider `local` (created by API), user `bob`, cluster `my-cluster`
/// (the manifest example's), test set `Customer Support Evaluation` with case `case_…01`.
async fn world() -> TestApp {
    let app = TestApp::spawn().await;
    let agent = json!({"name": "Support Bot", "key": "support-bot", "model": "mock/echo"});
    assert_eq!(app.post("/api/v1/agents", &agent).await.status(), 201);
    let version = app
        .post("/api/v1/agents/support-bot/versions", &json!({}))
        .await;
    assert_eq!(version.status(), 201);
    let provider = json!({"id": "local", "kind": "mock", "models": ["m1"]});
    assert_eq!(app.post("/api/v1/providers", &provider).await.status(), 201);
    app.create_user("bob", "viewer").await;
    let testset = json!({"name": "Customer Support Evaluation", "cases": [
        {"id": "case_00000000000000000000000000000001", "input": "Hello", "expected": "Hello"}]});
    assert_eq!(app.post("/api/v1/testsets", &testset).await.status(), 201);
    let (_, doc) = json(app.get("/openapi.json").await).await;
    let manifest = &doc["components"]["schemas"]["ManifestInput"]["example"];
    let cluster = app.post("/api/v1/clusters", manifest).await;
    assert_eq!(cluster.status(), 201, "{manifest}");
    app
}

/// A string of exactly `len` characters built from `seed` (so that it keeps the seed's shape:
/// an e-mail address stays one), or `None` when the seed is longer.
fn of_length(seed: &str, len: usize) -> Option<String> {
    let have = seed.chars().count();
    (have <= len).then(|| format!("{seed}{}", "a".repeat(len - have)))
}

/// Whether an answer takes the request as well formed: anything but 400 (a missing
/// credential, resource or a conflict are other matters), and no server error.
fn well_formed(status: u16) -> bool {
    status != 400 && status < 500
}

#[tokio::test]
async fn every_documented_request_rule_is_the_servers() {
    let doc = {
        let app = TestApp::spawn().await;
        json(app.get("/openapi.json").await).await.1
    };
    let mut checked = Vec::new();
    let mut requests = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(schema) = op
                .pointer("/requestBody/content/application~1json/schema")
                .cloned()
            else {
                continue;
            };
            if LEFT_OUT.contains(&(path.as_str(), method.as_str())) {
                continue;
            }
            let at = format!("{} {path}", method.to_uppercase());
            // A world of its own: an accepted change (a new key…) would move what the next
            // operation names.
            let app = world().await;
            let example = resolve(&doc, &schema)["example"].clone();
            assert!(example.is_object(), "{at}: the body has no example");
            let target = concrete(path).unwrap_or_else(|| panic!("{at}: no fixture"));
            let (status, body) = send(&app, method, &target, &example).await;
            assert!(
                well_formed(status),
                "{at}: its own example is refused: {status} {body}"
            );
            // Every field marked required is required.
            for field in required(&doc, &schema) {
                let mut without = example.clone();
                let had = without.as_object_mut().unwrap().remove(&field).is_some();
                assert!(had, "{at}: the example lacks required '{field}'");
                let (status, body) = send(&app, method, &target, &without).await;
                requests += 1;
                assert_eq!(status, 400, "{at} without '{field}': {body}");
            }
            // Every stated rule of a field holds: each listed value is accepted and no other;
            // bounds and lengths are accepted at the limit and refused past it.
            for (field, rule) in properties(&doc, &schema) {
                let mut cases: Vec<(Value, bool)> = Vec::new();
                if let Some(values) = rule["enum"].as_array() {
                    cases.extend(values.iter().map(|v| (v.clone(), true)));
                    cases.push((json!("not-a-listed-value"), false));
                }
                if is_type(&rule, "integer") || is_type(&rule, "number") {
                    if let Some(max) = rule["maximum"].as_f64().filter(|m| *m < 1e15) {
                        cases.push((rule["maximum"].clone(), true));
                        let past = if is_type(&rule, "integer") {
                            json!(max as i64 + 1)
                        } else {
                            json!(max + 0.5)
                        };
                        cases.push((past, false));
                    }
                    if let Some(min) = rule["minimum"].as_f64().filter(|m| *m > -1e15) {
                        cases.push((rule["minimum"].clone(), true));
                        let past = if is_type(&rule, "integer") {
                            json!(min as i64 - 1)
                        } else {
                            json!(min - 0.5)
                        };
                        cases.push((past, false));
                    }
                }
                if let (Some(max), Some(seed)) =
                    (rule["maxLength"].as_u64(), example[&field].as_str())
                {
                    let max = usize::try_from(max).unwrap();
                    if let Some(longest) = of_length(seed, max) {
                        cases.push((json!(longest), true));
                    }
                    if let Some(too_long) = of_length(seed, max + 1) {
                        cases.push((json!(too_long), false));
                    }
                }
                // Refused values first: an accepted one may change what the path names.
                cases.sort_by_key(|(_, accepted)| *accepted);
                for (value, accepted) in cases {
                    // A value at the limit is tried on the field the example gives: another
                    // spelling of one of its values would be refused for that.
                    if accepted && example.get(&field).is_none() {
                        continue;
                    }
                    let mut body = example.clone();
                    body[&field] = value.clone();
                    let (status, answer) = send(&app, method, &target, &body).await;
                    requests += 1;
                    let shown: String = value.to_string().chars().take(40).collect();
                    if accepted {
                        assert!(
                            well_formed(status),
                            "{at}: {field} = {shown} is documented as valid: {status} {answer}"
                        );
                    } else {
                        assert_eq!(status, 400, "{at}: {field} = {shown}: {answer}");
                    }
                }
            }
            checked.push(at);
        }
    }
    for at in [
        "POST /api/v1/agents",
        "PUT /api/v1/agents/{agent}",
        "PATCH /api/v1/agents/{agent}",
        "POST /api/v1/runs",
        "POST /api/v1/agents/{agent}/chat",
        "POST /v1/chat/completions",
        "POST /v1/responses",
        "POST /api/v1/users",
        "POST /api/v1/api-keys",
        "POST /api/v1/providers",
    ] {
        assert!(checked.iter().any(|c| c == at), "{at} was not checked");
    }
    eprintln!("{} operations, {requests} requests", checked.len());
}

#[tokio::test]
async fn the_document_lists_required_fields_enums_and_bounds() {
    let app = TestApp::spawn().await;
    let (_, doc) = json(app.get("/openapi.json").await).await;
    let body = |path: &str, method: &str| {
        doc["paths"][path][method]
            .pointer("/requestBody/content/application~1json/schema")
            .cloned()
            .unwrap_or_else(|| panic!("{method} {path} has no JSON body"))
    };
    let words = |name: &str| -> Vec<String> {
        doc["components"]["schemas"][name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is not an enum"))
            .iter()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect()
    };
    // An agent: `name` is required to create or replace it, not to change it.
    let create = body("/api/v1/agents", "post");
    assert_eq!(required(&doc, &create), BTreeSet::from(["name".to_owned()]));
    assert_eq!(
        required(&doc, &body("/api/v1/agents/{agent}", "put")),
        BTreeSet::from(["name".to_owned()])
    );
    assert!(required(&doc, &body("/api/v1/agents/{agent}", "patch")).is_empty());
    let fields = properties(&doc, &create);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("the agent body lacks {name}"))
    };
    for seed_spelling in [
        "llmModel",
        "preamble",
        "content",
        "system_prompt",
        "maxTokens",
        "model_ref",
        "config",
    ] {
        field(seed_spelling);
    }
    assert_eq!(
        field("status")["enum"],
        json!(["draft", "active", "inactive", "archived"])
    );
    assert_eq!(
        (
            field("temperature")["minimum"].clone(),
            field("temperature")["maximum"].clone()
        ),
        (json!(0), json!(2))
    );
    assert_eq!(field("max_tokens")["maximum"], 1_000_000);
    assert_eq!(field("key")["maxLength"], 64);
    // The fixed sets of words.
    assert_eq!(words("Role"), ["admin", "editor", "viewer"]);
    assert_eq!(words("Scope"), ["admin", "write", "read", "invoke"]);
    assert_eq!(words("ProviderKind"), ["openai", "anthropic", "mock"]);
    // The OpenAI bodies: required fields, `tool_choice`'s words.
    let chat = body("/v1/chat/completions", "post");
    assert_eq!(
        required(&doc, &chat),
        BTreeSet::from(["messages".to_owned(), "model".to_owned()])
    );
    let tool_choice = resolve(&doc, &chat)["properties"]["tool_choice"].to_string();
    for word in ["\"none\"", "\"auto\"", "\"required\""] {
        assert!(
            tool_choice.contains(word),
            "tool_choice lacks {word}: {tool_choice}"
        );
    }
    assert_eq!(
        required(&doc, &body("/v1/responses", "post")),
        BTreeSet::from(["input".to_owned(), "model".to_owned()])
    );
    // Parameters: page sizes and version numbers.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let schema = &p["schema"];
                match p["name"].as_str() {
                    Some("limit") => {
                        let max = if path.ends_with("/chat/history") {
                            200
                        } else {
                            100
                        };
                        assert_eq!(
                            (schema["minimum"].clone(), schema["maximum"].clone()),
                            (json!(1), json!(max)),
                            "{method} {path}"
                        );
                    }
                    Some("version") => assert_eq!(schema["minimum"], 1, "{method} {path}"),
                    _ => {}
                }
            }
        }
    }
}

#[tokio::test]
async fn documented_parameter_rules_are_the_servers() {
    let app = world().await;
    let (_, doc) = json(app.get("/openapi.json").await).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else {
            continue;
        };
        let Some(target) = concrete(path) else {
            continue;
        };
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] != "query" {
                continue;
            }
            let name = p["name"].as_str().unwrap();
            let schema = not_null(&doc, &p["schema"]);
            let mut cases: Vec<(String, bool)> = Vec::new();
            for v in schema["enum"].as_array().into_iter().flatten() {
                cases.push((v.as_str().unwrap().to_owned(), true));
                cases.push(("not-a-listed-value".to_owned(), false));
            }
            if let Some(max) = schema["maximum"].as_u64().filter(|m| *m < 1_000_000) {
                cases.push((max.to_string(), true));
                cases.push(((max + 1).to_string(), false));
            }
            if let Some(min) = schema["minimum"].as_u64().filter(|m| *m > 0) {
                cases.push((min.to_string(), true));
                cases.push(((min - 1).to_string(), false));
            }
            for (value, accepted) in cases {
                let url = format!("{target}?{name}={value}");
                let res = app.get(&url).await;
                let status = res.status().as_u16();
                if accepted {
                    assert!(status < 400, "GET {url}: {status}");
                } else {
                    assert_eq!(status, 400, "GET {url}");
                }
            }
        }
    }
}
