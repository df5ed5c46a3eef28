#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use super::*;

fn rules(v: serde_json::Value) -> Guardrails {
    Guardrails::parse(&v).unwrap()
}

fn field_of(v: serde_json::Value) -> String {
    Guardrails::parse(&v).unwrap_err().field
}

#[test]
fn parses_every_rule_and_reads_back_its_json() {
    let g = rules(json!({
        "input": [
            {"type": "max_length", "max_chars": 100},
            {"type": "blocked_terms", "terms": ["secret", "C++"], "action": "redact"},
            {"type": "regex", "pattern": "\\bACME-\\d+\\b", "action": "flag", "name": "ticket"},
            {"type": "pii", "action": "redact"},
        ],
        "output": [
            {"type": "json_schema", "schema": {"type": "object"}},
            {"type": "judge", "model": "mock/echo", "question": "Is it rude?", "timeout_ms": 500, "on_error": "block"},
            {"type": "judge", "agent": "moderator", "question": "Is it off topic?", "action": "flag"},
        ],
        "refusal_message": "No."
    }));
    assert_eq!(g.input.len(), 4);
    assert_eq!(g.output.len(), 3);
    assert_eq!(g.input[0].action, Action::Block);
    assert_eq!(g.refusal(), "No.");
    assert!(g.output_needs_whole_answer());
    assert_eq!(Guardrails::parse(&g.to_json()).unwrap(), g);
    assert_eq!(g.judge_models().count(), 1);
    assert!(Guardrails::parse(&json!(null)).unwrap().is_empty());
    assert!(Guardrails::parse(&json!({})).unwrap().is_empty());
}

#[test]
fn bad_rules_name_their_field() {
    assert_eq!(field_of(json!([])), "guardrails");
    assert_eq!(field_of(json!({"inputs": []})), "guardrails.inputs");
    assert_eq!(
        field_of(json!({"input": [{"type": "nope"}]})),
        "guardrails.input[0].type"
    );
    assert_eq!(
        field_of(json!({"input": [{"type": "regex", "pattern": "("}]})),
        "guardrails.input[0].pattern"
    );
    assert_eq!(
        field_of(json!({"output": [{"type": "pii"}, {"type": "pii", "kinds": ["ssn"]}]})),
        "guardrails.output[1].kinds[0]"
    );
    assert_eq!(
        field_of(
            json!({"output": [{"type": "json_schema", "schema": {"type": "object"}, "action": "redact"}]})
        ),
        "guardrails.output[0].action"
    );
    assert_eq!(
        field_of(json!({"output": [{"type": "judge", "question": "x"}]})),
        "guardrails.output[0].model"
    );
    assert_eq!(
        field_of(
            json!({"output": [{"type": "judge", "model": "m", "question": "x", "timeout_ms": 5}]})
        ),
        "guardrails.output[0].timeout_ms"
    );
    assert_eq!(
        field_of(json!({"input": [{"type": "max_length", "max_chars": 0}]})),
        "guardrails.input[0].max_chars"
    );
    assert_eq!(
        field_of(json!({"input": [{"type": "max_length", "max_chars": 5, "pattern": "x"}]})),
        "guardrails.input[0].pattern"
    );
    assert_eq!(
        field_of(json!({"input": [{"type": "blocked_terms", "terms": []}]})),
        "guardrails.input[0].terms"
    );
    assert_eq!(
        field_of(json!({"input": [{"type": "pii", "action": "drop"}]})),
        "guardrails.input[0].action"
    );
}

fn kinds_in(text: &str) -> Vec<(PiiKind, &str)> {
    find_pii(text, &PiiKind::ALL)
        .into_iter()
        .map(|m| (m.kind, &text[m.start..m.end]))
        .collect()
}

#[test]
fn finds_personal_data_and_checks_numbers() {
    assert_eq!(
        kinds_in("Mail jane.doe+x@example.co.uk today."),
        vec![(PiiKind::Email, "jane.doe+x@example.co.uk")]
    );
    assert_eq!(
        kinds_in("Card 4111 1111 1111 1111, thanks"),
        vec![(PiiKind::Card, "4111 1111 1111 1111")]
    );
    // One digit off: not a card (Luhn), and too long for a phone.
    assert!(
        kinds_in("Card 4111 1111 1111 1112")
            .iter()
            .all(|(k, _)| *k != PiiKind::Card)
    );
    assert_eq!(
        kinds_in("IBAN DE89 3704 0044 0532 0130 00 OK"),
        vec![(PiiKind::Iban, "DE89 3704 0044 0532 0130 00")]
    );
    assert_eq!(
        kinds_in("GB82WEST12345698765432"),
        vec![(PiiKind::Iban, "GB82WEST12345698765432")]
    );
    assert!(
        kinds_in("GB82WEST12345698765433")
            .iter()
            .all(|(k, _)| *k != PiiKind::Iban)
    );
    assert_eq!(
        kinds_in("Call +44 20 7946 0958 or (555) 123-4567."),
        vec![
            (PiiKind::Phone, "+44 20 7946 0958"),
            (PiiKind::Phone, "(555) 123-4567")
        ]
    );
    assert_eq!(
        kinds_in("Call 555-123-4567"),
        vec![(PiiKind::Phone, "555-123-4567")]
    );
    // Dates, versions and small numbers are not phones.
    assert!(kinds_in("On 2026-12-03 version 1.2.3 cost 1234 euros").is_empty());
}

#[test]
fn text_rules_redact_without_echoing_the_match() {
    let g = rules(json!({"input": [
        {"type": "pii", "action": "redact"},
        {"type": "blocked_terms", "terms": ["secret"], "action": "redact"},
        {"type": "regex", "pattern": "ACME-\\d+", "action": "redact"},
        {"type": "max_length", "max_chars": 10, "action": "redact"},
    ]}));
    let text = "Write to a@b.io about the SECRET plan ACME-42";
    let Some(Checked::Triggered { detail, redacted }) = check_text(&g.input[0].kind, text, 0)
    else {
        panic!("pii not found");
    };
    assert_eq!(detail, "1 email");
    assert_eq!(
        redacted.as_deref(),
        Some("Write to [EMAIL] about the SECRET plan ACME-42")
    );
    let Some(Checked::Triggered { redacted, .. }) = check_text(&g.input[1].kind, text, 0) else {
        panic!("term not found");
    };
    assert_eq!(
        redacted.as_deref(),
        Some("Write to a@b.io about the [REDACTED] plan ACME-42")
    );
    // Whole words only: "secretary" is not "secret".
    assert_eq!(
        check_text(&g.input[1].kind, "the secretary", 0),
        Some(Checked::Pass)
    );
    let Some(Checked::Triggered { detail, .. }) = check_text(&g.input[2].kind, text, 0) else {
        panic!("regex not found");
    };
    assert_eq!(detail, "1 match");
    let Some(Checked::Triggered { redacted, .. }) = check_text(&g.input[3].kind, text, 0) else {
        panic!("length not found");
    };
    assert_eq!(redacted.as_deref(), Some("Write to a"));
    assert_eq!(
        check_text(&g.input[3].kind, "short", 5),
        Some(Checked::Pass)
    );
}

#[test]
fn json_schema_checks_the_whole_answer() {
    let g = rules(
        json!({"output": [{"type": "json_schema", "schema": {"type": "object", "required": ["ok"]}}]}),
    );
    assert_eq!(
        check_text(&g.output[0].kind, r#"{"ok": true}"#, 0),
        Some(Checked::Pass)
    );
    assert!(matches!(
        check_text(&g.output[0].kind, r#"{"no": 1}"#, 0),
        Some(Checked::Triggered { .. })
    ));
    assert!(matches!(
        check_text(&g.output[0].kind, "plain words", 0),
        Some(Checked::Triggered { .. })
    ));
}

fn released(guard: &mut OutputGuard, pieces: &[&str]) -> (String, Option<Trigger>) {
    let mut out = String::new();
    for p in pieces {
        match guard.push(p) {
            Release::Text(t) => out.push_str(&t),
            Release::Blocked(t) => return (out, Some(t)),
        }
    }
    match guard.flush() {
        Release::Text(t) => out.push_str(&t),
        Release::Blocked(t) => return (out, Some(t)),
    }
    (out, None)
}

#[test]
fn output_is_released_per_sentence_and_redacted_across_pieces() {
    let g = rules(json!({"output": [{"type": "pii", "action": "redact"}]}));
    let mut guard = OutputGuard::new(&g).unwrap();
    // An e-mail split over three pieces is still found: nothing is sent before the sentence ends.
    assert_eq!(guard.push("Write to jane"), Release::Text(String::new()));
    assert_eq!(guard.push("@exam"), Release::Text(String::new()));
    assert_eq!(
        guard.push("ple.com. Then"),
        Release::Text("Write to [EMAIL]. ".to_owned())
    );
    assert_eq!(guard.flush(), Release::Text("Then".to_owned()));
    assert_eq!(guard.triggers().len(), 1);
}

#[test]
fn output_block_stops_at_the_violating_sentence() {
    let g = rules(json!({"output": [{"type": "blocked_terms", "terms": ["forbidden"]}]}));
    let mut guard = OutputGuard::new(&g).unwrap();
    let (sent, blocked) = released(&mut guard, &["Fine. ", "This is forbidden. ", "More."]);
    assert_eq!(sent, "Fine. ");
    assert_eq!(blocked.map(|t| t.rule), Some("blocked_terms".to_owned()));
    assert_eq!(guard.refusal(), DEFAULT_REFUSAL);
}

#[test]
fn output_length_counts_every_sentence() {
    let g = rules(json!({"output": [{"type": "max_length", "max_chars": 12, "action": "redact"}]}));
    let mut guard = OutputGuard::new(&g).unwrap();
    let (sent, blocked) = released(&mut guard, &["One two. ", "Three four. ", "Five."]);
    assert_eq!(sent, "One two. Thr");
    assert!(blocked.is_none());
}

#[test]
fn whole_answer_rules_hold_everything() {
    let g = rules(json!({"output": [{"type": "json_schema", "schema": {"type": "object"}}]}));
    let mut guard = OutputGuard::new(&g).unwrap();
    assert!(guard.holds_whole_answer());
    assert_eq!(guard.push("{\"a\": 1}. \n"), Release::Text(String::new()));
    assert_eq!(guard.flush(), Release::Text("{\"a\": 1}. \n".to_owned()));
    // Flag-only whole-answer rules hold nothing.
    let g = rules(
        json!({"output": [{"type": "json_schema", "schema": {"type": "object"}, "action": "flag"}]}),
    );
    assert!(!OutputGuard::new(&g).unwrap().holds_whole_answer());
}
