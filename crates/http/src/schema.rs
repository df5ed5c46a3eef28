//! Pieces of the OpenAPI document that say what the domain accepts: the fixed sets of words
//! (statuses, roles, scopes, kinds) as named enums, and JSON Schema written as JSON where the
//! derive macros cannot say it (`not`, `contains`, rules between fields, the OpenAI request
//! bodies the handlers read as JSON objects).
//!
//! The enums here are documentation only: the handlers parse text with the domain's parsers,
//! and the tests below hold each enum to the domain's list of accepted words.

use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, Array, ArrayItems, Object, Schema, SchemaType, Type,
};

/// A JSON Schema written as JSON, served as written. The keywords utoipa knows become its
/// typed fields (so the document is the same, in the same order, on every start); the others
/// (`not`, `contains`, `allOf` beside `properties`…) are kept as one extra keyword, several of
/// them as one `allOf`.
pub fn raw(schema: Value) -> Schema {
    let Value::Object(mut keywords) = schema else {
        return Schema::Object(Object::with_type(SchemaType::AnyValue));
    };
    let take = |keywords: &mut Map<String, Value>, key: &str| keywords.remove(key);
    let schema_type = take(&mut keywords, "type")
        .and_then(|t| serde_json::from_value::<SchemaType>(t).ok())
        .unwrap_or(SchemaType::AnyValue);
    let is_array = match &schema_type {
        SchemaType::Type(t) => *t == Type::Array,
        SchemaType::Array(ts) => ts.contains(&Type::Array),
        SchemaType::AnyValue => false,
    };
    let text = |keywords: &mut Map<String, Value>, key: &str| match keywords.remove(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let size = |keywords: &mut Map<String, Value>, key: &str| {
        keywords
            .remove(key)
            .and_then(|n| n.as_u64())
            .and_then(|n| usize::try_from(n).ok())
    };
    let number = |keywords: &mut Map<String, Value>, key: &str| {
        keywords
            .remove(key)
            .and_then(|n| serde_json::from_value::<utoipa::Number>(n).ok())
    };
    let title = text(&mut keywords, "title");
    let description = text(&mut keywords, "description");
    let example = take(&mut keywords, "example");
    let mut schema = if is_array {
        let mut array = Array::default();
        array.schema_type = schema_type;
        array.title = title;
        array.description = description;
        array.example = example;
        if let Some(items) = take(&mut keywords, "items") {
            array.items = ArrayItems::RefOrSchema(Box::new(raw_ref(items)));
        }
        array.min_items = size(&mut keywords, "minItems");
        array.max_items = size(&mut keywords, "maxItems");
        Schema::Array(array)
    } else {
        let mut object = Object::with_type(schema_type);
        object.title = title;
        object.description = description;
        object.example = example;
        if let Some(Value::Object(properties)) = take(&mut keywords, "properties") {
            for (name, property) in properties {
                object.properties.insert(name, raw_ref(property));
            }
        }
        if let Some(Value::Array(required)) = take(&mut keywords, "required") {
            object.required = required
                .into_iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
        }
        object.additional_properties = match take(&mut keywords, "additionalProperties") {
            Some(Value::Bool(free)) => Some(Box::new(AdditionalProperties::FreeForm(free))),
            Some(other) => Some(Box::new(AdditionalProperties::RefOr(raw_ref(other)))),
            None => None,
        };
        if let Some(Value::Array(words)) = take(&mut keywords, "enum") {
            object.enum_values = Some(words);
        }
        object.pattern = text(&mut keywords, "pattern");
        object.min_length = size(&mut keywords, "minLength");
        object.max_length = size(&mut keywords, "maxLength");
        object.minimum = number(&mut keywords, "minimum");
        object.maximum = number(&mut keywords, "maximum");
        Schema::Object(object)
    };
    set_extra(&mut schema, keywords);
    schema
}

/// Gives `schema` the keywords utoipa has no field for, as one extension: several become one
/// `allOf` (extensions are a hash map, whose order would vary from one start to the next).
fn set_extra(schema: &mut Schema, mut keywords: Map<String, Value>) {
    let extensions = match schema {
        Schema::Object(object) => &mut object.extensions,
        Schema::Array(array) => &mut array.extensions,
        _ => return,
    };
    if let Some(old) = extensions.take() {
        for (key, value) in old.iter() {
            keywords.insert(key.clone(), value.clone());
        }
    }
    if keywords.len() > 1 {
        let mut all_of = match keywords.remove("allOf") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        all_of.extend(keywords.into_iter().map(|(k, v)| json!({k: v})));
        keywords = Map::from_iter([("allOf".to_owned(), Value::Array(all_of))]);
    }
    if !keywords.is_empty() {
        *extensions = Some(keywords.into_iter().collect());
    }
}

/// Adds `rules` to a derived object schema: `properties` merged property by property (new
/// ones added after the derived ones), other keywords as in [`raw`].
pub fn add_rules(schema: &mut Schema, rules: Value) {
    let (Schema::Object(object), Value::Object(mut rules)) = (&mut *schema, rules) else {
        return;
    };
    if let Some(Value::Object(properties)) = rules.remove("properties") {
        for (name, rule) in properties {
            let merged = match object
                .properties
                .get(&name)
                .and_then(|p| serde_json::to_value(p).ok())
            {
                Some(mut existing) => {
                    merge(&mut existing, rule);
                    existing
                }
                None => rule,
            };
            object.properties.insert(name, raw_ref(merged));
        }
    }
    set_extra(schema, rules);
}

/// [`raw`] for a sub-schema: a `$ref` stays a reference.
pub fn raw_ref(schema: Value) -> RefOr<Schema> {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) if schema.as_object().is_some_and(|o| o.len() == 1) => {
            RefOr::Ref(utoipa::openapi::Ref::new(reference))
        }
        _ => RefOr::T(raw(schema)),
    }
}

/// Text without NUL (U+0000): the server refuses NUL in every string it reads, keys,
/// parameters and paths included (decision 55).
pub const NUL_FREE: &str = r"^[^\u0000]*$";

/// Where [`JsonValue`] lives.
const JSON_VALUE: &str = "#/components/schemas/JsonValue";

/// Any JSON value without NUL in its strings and keys: what free-form request fields
/// (`context`, `log_meta`, `metadata`, extra fields of tools) accept.
pub struct JsonValue;

impl utoipa::PartialSchema for JsonValue {
    fn schema() -> RefOr<Schema> {
        raw(json!({
            "description": "Any JSON value; no text in it (keys included) may hold NUL (U+0000).",
            "anyOf": [
                {"type": ["null", "boolean", "number"]},
                {"type": "string", "pattern": NUL_FREE},
                {"type": "array", "items": {"$ref": JSON_VALUE}},
                {"type": "object", "propertyNames": {"pattern": NUL_FREE}, "additionalProperties": {"$ref": JSON_VALUE}},
            ],
        }))
        .into()
    }
}

impl ToSchema for JsonValue {}

/// Whether a pattern cannot match text holding NUL, as far as its spelling shows: it is
/// anchored at both ends (after an optional leading negative lookahead) and spelled with
/// positive classes, escapes of literals and literals only. Conservative: `false` when in
/// doubt.
pub fn pattern_body_is_positive(pattern: &str) -> bool {
    let Some(body) = pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$')) else {
        return false;
    };
    let body = match body.strip_prefix("(?!") {
        Some(rest) => rest.split_once(')').map_or("", |(_, after)| after),
        None => body,
    };
    if body.is_empty() || body.contains("[^") {
        return false;
    }
    // Outside classes, an unescaped `.` matches anything; inside `[…]` it is a dot.
    let mut in_class = false;
    let mut escaped = false;
    for c in body.chars() {
        match (escaped, in_class, c) {
            (true, _, 'S' | 'W' | 'D') => return false,
            (true, _, _) => escaped = false,
            (false, _, '\\') => escaped = true,
            (false, false, '[') => in_class = true,
            (false, true, ']') => in_class = false,
            (false, false, '.') => return false,
            _ => {}
        }
    }
    true
}

/// Says in `schema` what the server's NUL rule says: every string without NUL (a pattern
/// where there is none, next to one that could admit NUL), and every object's keys and
/// free-form values too ([`JsonValue`]). `$ref`s are followed by the caller.
pub fn forbid_nul(schema: &mut RefOr<Schema>) {
    let RefOr::T(schema) = schema else {
        return;
    };
    match schema {
        Schema::Object(object) => {
            let types = match &object.schema_type {
                SchemaType::Type(t) => vec![t.clone()],
                SchemaType::Array(ts) => ts.clone(),
                SchemaType::AnyValue => Vec::new(),
            };
            let unconstrained = types.is_empty()
                && object.properties.is_empty()
                && object.enum_values.is_none()
                && object.extensions.as_ref().is_none_or(|e| e.is_empty());
            if unconstrained {
                // Any value: one without NUL.
                object.extensions = Some(
                    [("$ref".to_owned(), json!(JSON_VALUE))]
                        .into_iter()
                        .collect(),
                );
                return;
            }
            if types.contains(&Type::String) && object.enum_values.is_none() {
                match object.pattern.as_deref() {
                    None => object.pattern = Some(NUL_FREE.to_owned()),
                    Some(p) if !pattern_body_is_positive(p) && !p.contains(r"\u0000") => {
                        let mut extra = Map::new();
                        extra.insert("allOf".to_owned(), json!([{"pattern": NUL_FREE}]));
                        set_extra(schema, extra);
                        return forbid_nul_in(schema);
                    }
                    Some(_) => {}
                }
            }
            forbid_nul_in(schema);
        }
        _ => forbid_nul_in(schema),
    }
}

/// [`forbid_nul`] for what `schema` holds: properties, keys, items, alternatives.
fn forbid_nul_in(schema: &mut Schema) {
    match schema {
        Schema::Object(object) => {
            let is_object = match &object.schema_type {
                SchemaType::Type(t) => *t == Type::Object,
                SchemaType::Array(ts) => ts.contains(&Type::Object),
                SchemaType::AnyValue => !object.properties.is_empty(),
            };
            for property in object.properties.values_mut() {
                forbid_nul(property);
            }
            let closed = matches!(
                object.additional_properties.as_deref(),
                Some(AdditionalProperties::FreeForm(false))
            );
            if is_object && !closed {
                if object.property_names.is_none() {
                    let mut names = Object::with_type(Type::String);
                    names.pattern = Some(NUL_FREE.to_owned());
                    object.property_names = Some(Box::new(Schema::Object(names)));
                }
                match object.additional_properties.as_deref_mut() {
                    None | Some(AdditionalProperties::FreeForm(true)) => {
                        object.additional_properties = Some(Box::new(AdditionalProperties::RefOr(
                            RefOr::Ref(utoipa::openapi::Ref::new(JSON_VALUE)),
                        )));
                    }
                    Some(AdditionalProperties::RefOr(inner)) => forbid_nul(inner),
                    Some(AdditionalProperties::FreeForm(false)) => {}
                }
            }
            if let Some(extensions) = object.extensions.as_mut() {
                for value in extensions.values_mut() {
                    forbid_nul_json_keyword(value);
                }
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                forbid_nul(items);
            }
            if let Some(extensions) = array.extensions.as_mut() {
                for value in extensions.values_mut() {
                    forbid_nul_json_keyword(value);
                }
            }
        }
        Schema::OneOf(one_of) => one_of.items.iter_mut().for_each(forbid_nul),
        Schema::AllOf(all_of) => all_of.items.iter_mut().for_each(forbid_nul),
        Schema::AnyOf(any_of) => any_of.items.iter_mut().for_each(forbid_nul),
        _ => {}
    }
}

/// [`forbid_nul`] for the value of an extra keyword written as JSON (`allOf`, `anyOf`,
/// `contains`…): its sub-schemas, through [`raw`] and back.
fn forbid_nul_json_keyword(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(forbid_nul_json),
        Value::Object(_) => forbid_nul_json(value),
        _ => {}
    }
}

fn forbid_nul_json(value: &mut Value) {
    // Rules between fields (`{"properties": {"x": {"type": "null"}}}`) constrain what the
    // main schema already describes: only schemas that say what a value is are changed.
    let describes =
        value.get("type").is_some() || value.get("$ref").is_none() && value.get("items").is_some();
    if !describes {
        if let Some(Value::Array(items)) = value.get_mut("anyOf") {
            items.iter_mut().for_each(forbid_nul_json);
        }
        return;
    }
    let mut schema = RefOr::T(raw(value.take()));
    forbid_nul(&mut schema);
    *value = serde_json::to_value(&schema).unwrap_or_default();
}

/// The schema saying that at most one of `fields` holds a value other than `null` (two
/// spellings of one value, of which a handler accepts one at a time).
pub fn at_most_one_given(fields: &[&str]) -> Value {
    let branches: Vec<Value> = fields
        .iter()
        .map(|given| {
            let others: Map<String, Value> = fields
                .iter()
                .filter(|f| *f != given)
                .map(|f| ((*f).to_owned(), json!({"type": "null"})))
                .collect();
            json!({"properties": others})
        })
        .collect();
    json!({"anyOf": branches})
}

/// Merges `rules` into `schema`: objects key by key, anything else replaced.
pub fn merge(schema: &mut Value, rules: Value) {
    match (schema, rules) {
        (Value::Object(schema), Value::Object(rules)) => {
            for (key, rule) in rules {
                match schema.get_mut(&key) {
                    Some(existing) => merge(existing, rule),
                    None => {
                        schema.insert(key, rule);
                    }
                }
            }
        }
        (schema, rules) => *schema = rules,
    }
}

/// A tag: text without commas, with something other than whitespace, no control characters.
pub const TAG: &str = r"^[^,\u0000-\u001f\u007f-\u009f]*[^,\s\u0000-\u001f\u007f-\u009f][^,\u0000-\u001f\u007f-\u009f]*$";

/// Text with something other than whitespace in it (messages, prompts, model names).
pub const NOT_BLANK: &str = r"^[^\u0000]*[^\s\u0000][^\u0000]*$";

/// A function name as models see it: 1 to 64 characters of letters, digits, `_` and `-`.
pub const FUNCTION_NAME: &str = r"^[A-Za-z0-9_-]{1,64}$";

/// The types a JSON Schema may name.
const JSON_TYPES: [&str; 7] = [
    "string", "number", "integer", "boolean", "object", "array", "null",
];

/// A JSON Schema as Agentry's validator reads it (function `parameters`, structured output):
/// an object whose `type` names JSON types and whose sub-schemas are objects. Keywords it
/// does not check (`pattern`, `format`, `$ref`…) are allowed.
pub struct JsonSchemaObject;

impl utoipa::PartialSchema for JsonSchemaObject {
    fn schema() -> RefOr<Schema> {
        let this = "#/components/schemas/JsonSchemaObject";
        let list = json!({"type": "array", "items": {"$ref": this}});
        raw(json!({
            "type": "object",
            "description": "A JSON Schema: `type` names JSON types, sub-schemas are objects.",
            "properties": {
                "type": {"anyOf": [
                    {"enum": JSON_TYPES},
                    {"type": "array", "items": {"enum": JSON_TYPES}},
                ]},
                "properties": {"type": "object", "additionalProperties": {"$ref": this}},
                "required": {"type": "array", "items": {"type": "string"}},
                "items": {"$ref": this},
                "additionalProperties": {"anyOf": [{"type": "boolean"}, {"$ref": this}]},
                "anyOf": list,
                "oneOf": list,
                "allOf": list,
            },
            "example": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }))
        .into()
    }
}

impl ToSchema for JsonSchemaObject {}

/// A JSON Schema for an object (`type` absent or `"object"`): what an HTTP tool's
/// `parameters` must be.
pub struct ObjectSchema;

impl utoipa::PartialSchema for ObjectSchema {
    fn schema() -> RefOr<Schema> {
        raw(json!({
            "allOf": [
                {"$ref": "#/components/schemas/JsonSchemaObject"},
                {"properties": {"type": {"enum": ["object"]}}},
            ],
        }))
        .into()
    }
}

impl ToSchema for ObjectSchema {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            JsonSchemaObject::name().into_owned(),
            <JsonSchemaObject as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// An agent's key, as other bodies name an agent.
pub struct AgentKeyText;

impl utoipa::PartialSchema for AgentKeyText {
    fn schema() -> RefOr<Schema> {
        raw(json!({
            "type": "string",
            "description": "An agent's key: 1 to 64 characters of a-z, 0-9, `-`, `_` and `.`, starting with a letter or a digit, not with `agent_`.",
            "maxLength": agentry_domain::agent::KEY_MAX,
            "pattern": "^(?!agent_)[a-z0-9][a-z0-9._-]{0,63}$",
            "example": "support-bot",
        }))
        .into()
    }
}

impl ToSchema for AgentKeyText {
    fn name() -> std::borrow::Cow<'static, str> {
        "AgentKey".into()
    }
}

/// A model's name at its provider.
pub struct ModelNameText;

impl utoipa::PartialSchema for ModelNameText {
    fn schema() -> RefOr<Schema> {
        raw(json!({
            "type": "string",
            "description": "A model's name at its provider: 1 to 200 characters, no whitespace or control characters.",
            "maxLength": 200,
            "pattern": "^[^\\s\\u0000-\\u001f\\u007f-\\u009f]+$",
            "example": "gpt-4o",
        }))
        .into()
    }
}

impl ToSchema for ModelNameText {
    fn name() -> std::borrow::Cow<'static, str> {
        "ModelName".into()
    }
}

/// An agent's lifecycle status.
#[derive(ToSchema)]
#[schema(as = AgentStatus)]
#[allow(dead_code)]
pub enum AgentStatusName {
    /// Being written; not served to clients.
    #[schema(rename = "draft")]
    Draft,
    /// Served (the default).
    #[schema(rename = "active")]
    Active,
    /// Kept but not served.
    #[schema(rename = "inactive")]
    Inactive,
    /// Retired; not served.
    #[schema(rename = "archived")]
    Archived,
}

/// The wire protocol a provider speaks.
#[derive(ToSchema)]
#[schema(as = ProviderKind)]
#[allow(dead_code)]
pub enum ProviderKindName {
    /// OpenAI's API and every compatible server (vLLM, Ollama, llama.cpp, LM Studio, Groq…).
    #[schema(rename = "openai")]
    OpenAi,
    /// Anthropic's Messages API.
    #[schema(rename = "anthropic")]
    Anthropic,
    /// The built-in scripted provider.
    #[schema(rename = "mock")]
    Mock,
}

/// A user's role.
#[derive(ToSchema)]
#[schema(as = Role)]
#[allow(dead_code)]
pub enum RoleName {
    /// Everything, users, providers and MCP servers included.
    #[schema(rename = "admin")]
    Admin,
    /// Agents, versions, chat and runs.
    #[schema(rename = "editor")]
    Editor,
    /// Reads (the default).
    #[schema(rename = "viewer")]
    Viewer,
}

/// What an API key may do.
#[derive(ToSchema)]
#[schema(as = Scope)]
#[allow(dead_code)]
pub enum ScopeName {
    /// Everything an admin may do.
    #[schema(rename = "admin")]
    Admin,
    /// Management writes (and reads), and calling agents.
    #[schema(rename = "write")]
    Write,
    /// Management reads.
    #[schema(rename = "read")]
    Read,
    /// Calling agents: runs, chat, the OpenAI-compatible client API.
    #[schema(rename = "invoke")]
    Invoke,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use utoipa::PartialSchema;

    fn words<T: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn enums_list_what_the_domain_accepts() {
        use agentry_domain::agent::AgentStatus;
        use agentry_domain::auth::{Role, Scope};
        use agentry_domain::provider::ProviderKind;
        assert_eq!(words::<AgentStatusName>(), AgentStatus::ALL);
        assert_eq!(words::<ProviderKindName>(), ProviderKind::ALL);
        assert_eq!(words::<RoleName>(), Role::ALL);
        assert_eq!(words::<ScopeName>(), Scope::ALL);
    }

    #[test]
    fn patterns_that_cannot_hold_nul() {
        for positive in [
            r"^[a-z0-9][a-z0-9._-]{0,63}$",
            r"^(?!agent_)[a-z0-9][a-z0-9._-]{0,63}$",
            r"^[!-?A-~]+@[!-?A-~]+$",
            r"^[A-Za-z0-9_-]{1,64}$",
        ] {
            assert!(pattern_body_is_positive(positive), "{positive}");
        }
        for open in [
            r"\S",
            r"^https?://",
            r"^[^\r\n]*$",
            r"^a.b$",
            r"^\S+$",
            "^$",
        ] {
            assert!(!pattern_body_is_positive(open), "{open}");
        }
    }

    #[test]
    fn the_nul_rule_reaches_every_string_key_and_free_value() {
        let mut schema = RefOr::T(raw(json!({
            "type": "object",
            "properties": {
                "plain": {"type": "string"},
                "slug": {"type": "string", "pattern": "^[a-z]+$"},
                "open": {"type": "string", "pattern": "^https?://"},
                "word": {"type": "string", "enum": ["a"]},
                "any": {"description": "anything"},
                "list": {"type": "array", "items": {"type": "string"}},
                "rules": {"type": "object", "anyOf": [{"properties": {"x": {"type": "null"}}}]},
            },
        })));
        forbid_nul(&mut schema);
        let s = serde_json::to_value(&schema).unwrap();
        let p = &s["properties"];
        assert_eq!(p["plain"]["pattern"], NUL_FREE);
        assert_eq!(p["slug"]["pattern"], "^[a-z]+$", "{s}");
        assert_eq!(p["open"]["allOf"], json!([{"pattern": NUL_FREE}]), "{s}");
        assert!(p["word"].get("pattern").is_none(), "{s}");
        assert_eq!(p["any"]["$ref"], JSON_VALUE, "{s}");
        assert_eq!(p["list"]["items"]["pattern"], NUL_FREE, "{s}");
        assert_eq!(s["propertyNames"]["pattern"], NUL_FREE, "{s}");
        assert_eq!(s["additionalProperties"]["$ref"], JSON_VALUE, "{s}");
        assert_eq!(
            p["rules"]["anyOf"],
            json!([{"properties": {"x": {"type": "null"}}}]),
            "rules between fields stay as written"
        );
    }

    #[test]
    fn raw_schemas_are_served_as_written() {
        let written = json!({
            "type": "object",
            "description": "d",
            "required": ["a"],
            "properties": {
                "a": {"type": ["string", "null"], "pattern": "x", "minLength": 1, "not": {"enum": ["b"]}},
                "b": {"$ref": "#/components/schemas/B"},
                "c": {"type": "array", "items": {"type": "integer", "minimum": -1, "maximum": 2.5}, "maxItems": 3, "contains": {"enum": [1]}},
            },
            "additionalProperties": false,
            "not": {"required": ["a", "b"]},
            "anyOf": [{"required": ["a"]}],
        });
        let served = serde_json::to_value(raw(written.clone())).unwrap();
        let mut expected = written;
        let rest = [
            json!({"anyOf": expected["anyOf"].take()}),
            json!({"not": expected["not"].take()}),
        ];
        let expected = expected.as_object_mut().map(|o| {
            o.remove("anyOf");
            o.remove("not");
            o.insert("allOf".into(), json!(rest));
            o.clone()
        });
        assert_eq!(served, json!(expected));
        assert_eq!(
            serde_json::to_string(&raw(json!({"not": {}, "contains": {}}))).unwrap(),
            r#"{"allOf":[{"contains":{}},{"not":{}}]}"#,
            "one extra keyword, in a fixed order"
        );
    }
}
