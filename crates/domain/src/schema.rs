//! A small JSON Schema validator for tool arguments (and, later, structured-output checks).
//!
//! Supported keywords: `type` (a name or a list), `properties`, `required`,
//! `additionalProperties` (boolean or schema), `items`, `enum`, `const`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength`, `minItems`, `maxItems`,
//! `anyOf`, `oneOf`, `allOf`. Other keywords (`pattern`, `format`, `$ref`…) are accepted and
//! not checked: a value they would refuse passes (documented in docs/tools.md).

use serde_json::{Map, Value};

const TYPES: &[&str] = &[
    "string", "number", "integer", "boolean", "object", "array", "null",
];

/// Checks that `schema` is a schema this validator understands: an object whose `type` names
/// known types and whose sub-schemas are objects.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn check(schema: &Value) -> Result<(), String> {
    let Value::Object(s) = schema else {
        return Err("a schema must be a JSON object".to_owned());
    };
    match s.get("type") {
        None => {}
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
        Some(Value::Array(ts))
            if ts
                .iter()
                .all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))) => {}
        Some(t) => return Err(format!("unknown schema type {t}")),
    }
    if let Some(props) = s.get("properties") {
        let Value::Object(props) = props else {
            return Err("'properties' must be an object".to_owned());
        };
        props.values().try_for_each(check)?;
    }
    if let Some(req) = s.get("required")
        && !req
            .as_array()
            .is_some_and(|r| r.iter().all(Value::is_string))
    {
        return Err("'required' must be a list of names".to_owned());
    }
    if let Some(items) = s.get("items") {
        check(items)?;
    }
    if let Some(add @ Value::Object(_)) = s.get("additionalProperties") {
        check(add)?;
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = s.get(key) {
            let Value::Array(list) = list else {
                return Err(format!("'{key}' must be a list of schemas"));
            };
            list.iter().try_for_each(check)?;
        }
    }
    Ok(())
}

/// Validates `value` against `schema`.
///
/// # Errors
/// The first failure, as `at <path>: <reason>` (`$` is the root).
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    validate_at(schema, value, "$")
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn num(s: &Map<String, Value>, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

fn count(s: &Map<String, Value>, key: &str) -> Option<usize> {
    s.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

fn validate_at(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let Value::Object(s) = schema else {
        return Ok(());
    };
    let fail = |reason: String| Err(format!("at {at}: {reason}"));
    match s.get("type") {
        Some(Value::String(t)) if !type_matches(t, v) => {
            return fail(format!("expected {t}, got {}", kind(v)));
        }
        Some(Value::Array(ts))
            if !ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, v)) =>
        {
            return fail(format!(
                "expected one of {}, got {}",
                Value::Array(ts.clone()),
                kind(v)
            ));
        }
        _ => {}
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(v)
    {
        return fail(format!("must be one of {}", Value::Array(options.clone())));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return fail(format!("must be {c}"));
    }
    if let Some(x) = v.as_f64() {
        if num(s, "minimum").is_some_and(|m| x < m) {
            return fail(format!("must be at least {}", s["minimum"]));
        }
        if num(s, "maximum").is_some_and(|m| x > m) {
            return fail(format!("must be at most {}", s["maximum"]));
        }
        if num(s, "exclusiveMinimum").is_some_and(|m| x <= m) {
            return fail(format!("must be more than {}", s["exclusiveMinimum"]));
        }
        if num(s, "exclusiveMaximum").is_some_and(|m| x >= m) {
            return fail(format!("must be less than {}", s["exclusiveMaximum"]));
        }
    }
    if let Value::String(text) = v {
        let n = text.chars().count();
        if count(s, "minLength").is_some_and(|m| n < m) {
            return fail(format!("must have at least {} characters", s["minLength"]));
        }
        if count(s, "maxLength").is_some_and(|m| n > m) {
            return fail(format!("must have at most {} characters", s["maxLength"]));
        }
    }
    if let Value::Array(items) = v {
        if count(s, "minItems").is_some_and(|m| items.len() < m) {
            return fail(format!("must have at least {} items", s["minItems"]));
        }
        if count(s, "maxItems").is_some_and(|m| items.len() > m) {
            return fail(format!("must have at most {} items", s["maxItems"]));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate_at(item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Value::Object(obj) = v {
        if let Some(Value::Array(required)) = s.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(name) {
                    return fail(format!("missing required property '{name}'"));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (name, value) in obj {
            let path = format!("{at}.{name}");
            match props.and_then(|p| p.get(name)) {
                Some(p) => validate_at(p, value, &path)?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return fail(format!("unexpected property '{name}'"));
                    }
                    Some(extra @ Value::Object(_)) => validate_at(extra, value, &path)?,
                    _ => {}
                },
            }
        }
    }
    if let Some(Value::Array(all)) = s.get("allOf") {
        for sub in all {
            validate_at(sub, v, at)?;
        }
    }
    if let Some(Value::Array(any)) = s.get("anyOf")
        && !any.iter().any(|sub| validate_at(sub, v, at).is_ok())
    {
        return fail("matches none of 'anyOf'".to_owned());
    }
    if let Some(Value::Array(one)) = s.get("oneOf") {
        let matching = one
            .iter()
            .filter(|sub| validate_at(sub, v, at).is_ok())
            .count();
        if matching != 1 {
            return fail(format!("matches {matching} of 'oneOf', not exactly one"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn objects_types_and_bounds() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"enum": ["c", "f"]},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
            },
            "required": ["city"],
            "additionalProperties": false
        });
        assert!(check(&schema).is_ok());
        assert!(validate(&schema, &json!({"city": "Paris", "days": 3, "unit": "c"})).is_ok());
        let bad = [
            (json!({}), "missing required property 'city'"),
            (json!({"city": 3}), "at $.city: expected string"),
            (json!({"city": "P", "days": 1.5}), "expected integer"),
            (json!({"city": "P", "days": 9}), "at most 7"),
            (json!({"city": "P", "unit": "k"}), "must be one of"),
            (json!({"city": "P", "tags": ["a", 1]}), "at $.tags[1]"),
            (json!({"city": "P", "x": 1}), "unexpected property 'x'"),
            (json!("Paris"), "expected object"),
        ];
        for (value, needle) in bad {
            let err = validate(&schema, &value).unwrap_err();
            assert!(err.contains(needle), "{err} should contain {needle}");
        }
    }

    #[test]
    fn combinators_and_bad_schemas() {
        let s = json!({"anyOf": [{"type": "string"}, {"type": "null"}]});
        assert!(validate(&s, &json!(null)).is_ok());
        assert!(validate(&s, &json!(1)).is_err());
        let one = json!({"oneOf": [{"type": "number"}, {"type": "integer"}]});
        assert!(validate(&one, &json!(1.5)).is_ok());
        assert!(validate(&one, &json!(2)).is_err());
        assert!(check(&json!({"type": "strin"})).is_err());
        assert!(check(&json!({"properties": {"a": 1}})).is_err());
        assert!(check(&json!("object")).is_err());
    }
}
