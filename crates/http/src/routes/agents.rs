//! `/api/v1/agents` (and the `/v1/agents` alias): create, list, get, patch, replace, delete.
//!
//! Input accepts every seed's spelling (`preamble`/`content`/`system_prompt`/`instructions`,
//! `llmModel`/`model`/`config.model`/`model_ref`/`provider`+`model`, `maxTokens`/`max_tokens`…);
//! output is canonical snake_case.

use actix_web::{HttpRequest, HttpResponse, web};
use agentry_domain::Invalid;
use agentry_domain::agent::{
    Agent, AgentFields, AgentFilter, AgentKey, AgentName, AgentRef, AgentStatus, AgentType,
    ClusterName, MAX_TOKENS_LIMIT, MaxTokens, ModelSpec, Tag, Temperature, ToolSpec, TopP,
    parse_description, parse_instructions,
};
use agentry_domain::cluster::INSTANCES_MAX;
use agentry_domain::guardrail::Guardrails;
use agentry_domain::knowledge::Knowledge;
use agentry_domain::page::Page;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{JsonBody, nullable};
use crate::routes::{DeleteResult, rfc3339};
use crate::schema::{AgentStatusName, NOT_BLANK, ObjectSchema, TAG, add_rules, raw};

/// Routes of this resource, mounted under `/api/v1` and `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/agents")
            .route(web::get().to(list_agents))
            .route(web::post().to(create_agent)),
    )
    .service(
        web::resource("/agents/{agent}")
            .route(web::get().to(get_agent))
            .route(web::patch().to(patch_agent))
            .route(web::put().to(put_agent))
            .route(web::delete().to(delete_agent)),
    );
}

/// A model as `"provider/model"`, a bare model name, or `{provider_id, model_name}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ModelInput {
    /// `"openai-prod/gpt-4o"` or `"gpt-4o"`.
    Name(String),
    /// `{"provider_id": "openai-prod", "model_name": "gpt-4o"}`.
    Ref(ModelRefInput),
}

impl PartialSchema for ModelInput {
    fn schema() -> RefOr<Schema> {
        raw(json!({
            "description": "A model as `\"provider/model\"`, a bare model name, or `{provider_id, model_name}`: one a provider serves (saving an agent with another is refused, naming the field and listing `available_models`).",
            "anyOf": [
                {"type": "string", "pattern": NOT_BLANK, "example": "mock/echo"},
                {"$ref": "#/components/schemas/ModelRefInput"},
            ],
        }))
        .into()
    }
}

impl ToSchema for ModelInput {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ModelRefInput::name().into_owned(), ModelRefInput::schema()));
    }
}

/// A model named by provider and model name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"provider_id": "mock", "model_name": "echo"}))]
pub struct ModelRefInput {
    /// The provider's id.
    pub provider_id: String,
    /// The model's name at that provider.
    #[schema(pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$")]
    pub model_name: String,
}

/// Seed 002's `config` object.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigInput {
    /// The model.
    pub model: Option<ModelInput>,
    /// Temperature, 0 to 2.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 2)]
    pub temperature: Option<Option<f64>>,
    /// Top-p, 0 to 1 (also `topP`).
    #[serde(default, deserialize_with = "nullable", alias = "topP")]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 1)]
    pub top_p: Option<Option<f64>>,
    /// Largest answer, in tokens, 1 to 1,000,000 (also `maxTokens`).
    #[serde(default, deserialize_with = "nullable", alias = "maxTokens")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    pub max_tokens: Option<Option<i64>>,
}

/// An agent as a caller writes it. On create only `name` is required; on PATCH every field is
/// optional and `null` clears an optional field; on PUT absent fields return to defaults.
/// Each value is given in one of its spellings: two spellings of it at once are refused. The
/// document shows these fields as [`AgentCreate`], [`AgentReplace`] and [`AgentPatch`].
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = AgentInput::example)]
pub struct AgentInput {
    /// Unique key, the client API's `model`: 1 to 64 characters of a-z, 0-9, `-`, `_` and `.`,
    /// starting with a letter or a digit, not with `agent_`. Derived from `name` when absent.
    #[schema(max_length = 64, pattern = r"^(?!agent_)[a-z0-9][a-z0-9._-]{0,63}$")]
    pub key: Option<String>,
    /// Unique display name, 1 to 128 characters, no control characters.
    #[schema(
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: Option<String>,
    /// What the agent does, at most 2,000 characters.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    pub description: Option<Option<String>>,
    /// The system prompt, at most 200,000 characters. Also accepted as `preamble`, `content`
    /// or `system_prompt`.
    #[schema(max_length = 200_000)]
    pub instructions: Option<String>,
    /// Seed 000's spelling of `instructions`.
    #[schema(max_length = 200_000)]
    pub preamble: Option<String>,
    /// Seed 001's spelling of `instructions`.
    #[schema(max_length = 200_000)]
    pub content: Option<String>,
    /// Seed 004's spelling of `instructions`.
    #[schema(max_length = 200_000)]
    pub system_prompt: Option<String>,
    /// The model: `"provider/model"`, a bare name, or `{provider_id, model_name}`.
    pub model: Option<ModelInput>,
    /// Seed 001's spelling of `model`.
    #[serde(rename = "llmModel")]
    pub llm_model: Option<String>,
    /// Seed 000's spelling of `model`.
    pub model_ref: Option<ModelRefInput>,
    /// Seed 004's provider, combined with `model`.
    pub provider: Option<String>,
    /// Seed 002's `config`: model and parameters.
    pub config: Option<ConfigInput>,
    /// Temperature, 0 to 2.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 2)]
    pub temperature: Option<Option<f64>>,
    /// Top-p, 0 to 1 (also `topP`).
    #[serde(default, deserialize_with = "nullable", alias = "topP")]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 1)]
    pub top_p: Option<Option<f64>>,
    /// Largest answer in tokens, 1 to 1,000,000 (also `maxTokens`).
    #[serde(default, deserialize_with = "nullable", alias = "maxTokens")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    pub max_tokens: Option<Option<i64>>,
    /// Organisation tags: at most 32, each 1 to 64 characters without commas or control
    /// characters (duplicates are dropped).
    #[schema(max_items = 32)]
    pub tags: Option<Vec<String>>,
    /// `active` by default.
    #[schema(value_type = Option<AgentStatusName>)]
    pub status: Option<String>,
    /// Free classification, `chat` by default: 1 to 64 characters of a-z, 0-9, `-`, `_` and
    /// `.`, starting with a letter or a digit.
    #[serde(rename = "type")]
    #[schema(max_length = 64, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub agent_type: Option<String>,
    /// Bound tools, at most 64, with distinct names: HTTP tools (`type: "http"`, run by
    /// Agentry), or other objects with a string `type` and `name` (kept, not run).
    #[schema(value_type = Option<Vec<ToolInput>>, max_items = 64)]
    pub tools: Option<Vec<Value>>,
    /// The cluster the agent belongs to: 1 to 64 characters of a-z, 0-9, `-`, `_` and `.`,
    /// starting with a letter or a digit.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 64, pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub cluster: Option<Option<String>>,
    /// A model tried when the main model's provider fails before any text was sent:
    /// `"provider/model"`, a bare name, or `{provider_id, model_name}`; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<ModelInput>)]
    pub fallback_model: Option<Option<ModelInput>>,
    /// Input and output rules applied by every turn (docs/guardrails.md); `null` or `{}`
    /// removes them.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = guardrails_schema)]
    pub guardrails: Option<Option<Value>>,
    /// The files searched on each turn (docs/knowledge.md): file ids, or `{"files",
    /// "top_k", "max_context_chars"}`; `null` or `[]` removes them.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = knowledge_schema)]
    pub knowledge: Option<Option<Value>>,
    /// Seed 003's name of `knowledge` (the same value; give one of them).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = knowledge_schema)]
    pub rag_modules: Option<Option<Value>>,
}

/// The document's schema of `knowledge` (the domain's `Knowledge::parse` reads it).
fn knowledge_schema() -> utoipa::openapi::schema::Schema {
    let files = json!({"type": "array", "maxItems": agentry_domain::knowledge::FILES_MAX,
        "items": {"type": "string", "pattern": "^file_[0-9a-f]{32}$"}});
    raw(json!({
        "description": "The files searched on each turn (docs/knowledge.md): an array of file ids, or an object with `files`, `top_k` (passages per turn, 1 to 20, default 4) and `max_context_chars` (200 to 100000, default 6000); `null` or `[]` removes them. Every file must exist.",
        "oneOf": [
            {"type": "null"},
            files.clone(),
            {"type": "object", "additionalProperties": false, "properties": {
                "files": files,
                "top_k": {"type": "integer", "minimum": 1, "maximum": agentry_domain::knowledge::TOP_K_MAX},
                "max_context_chars": {"type": "integer", "minimum": agentry_domain::knowledge::CONTEXT_CHARS_MIN, "maximum": agentry_domain::knowledge::CONTEXT_CHARS_MAX},
            }},
        ],
        "example": {"files": ["file_0193a1b2c3d4e5f60718293a4b5c6d7e"], "top_k": 4},
    }))
}

/// The document's schema of `guardrails` (the domain's `Guardrails::parse` reads it).
fn guardrails_schema() -> utoipa::openapi::schema::Schema {
    let rule = json!({
        "type": "object",
        "description": "One rule: `type` is `max_length` (`max_chars`), `blocked_terms` (`terms`), `regex` (`pattern`), `pii` (`kinds`: email, phone, card, iban), `json_schema` (`schema`) or `judge` (`model` or `agent`, `question`, `timeout_ms` 100 to 120000, `on_error` allow | block); `action` is `block` (default), `redact` or `flag`; `name` is optional.",
        "required": ["type"],
        "properties": {
            "type": {"enum": ["max_length", "blocked_terms", "regex", "pii", "json_schema", "judge"]},
            "action": {"enum": ["block", "redact", "flag"]},
            "name": {"type": "string", "minLength": 1, "maxLength": 64},
            "max_chars": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
            "terms": {"type": "array", "minItems": 1, "maxItems": 500, "items": {"type": "string", "minLength": 1, "maxLength": 200}},
            "pattern": {"type": "string", "minLength": 1, "maxLength": 2000},
            "kinds": {"type": "array", "minItems": 1, "items": {"enum": ["email", "phone", "card", "iban"]}},
            "schema": {"type": "object"},
            "model": {"type": "string", "minLength": 1, "maxLength": 256},
            "agent": {"type": "string", "minLength": 1, "maxLength": 64},
            "question": {"type": "string", "minLength": 1, "maxLength": 2000},
            "timeout_ms": {"type": "integer", "minimum": 100, "maximum": 120_000},
            "on_error": {"enum": ["allow", "block"]},
        },
    });
    raw(json!({
        "type": ["object", "null"],
        "description": "Input and output rules applied by every turn (docs/guardrails.md); `null` or `{}` removes them.",
        "additionalProperties": false,
        "properties": {
            "input": {"type": "array", "maxItems": 32, "items": rule.clone()},
            "output": {"type": "array", "maxItems": 32, "items": rule},
            "refusal_message": {"type": "string", "minLength": 1, "maxLength": 2000},
        },
        "example": {"input": [{"type": "pii", "action": "redact"}], "output": [{"type": "blocked_terms", "terms": ["internal only"]}]},
    }))
}

/// An entry of an agent's `tools` (documentation only: entries are read as JSON objects by
/// the domain's `ToolSpec::parse_list`).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ToolInput {
    /// A tool Agentry runs as an HTTP request.
    Http(HttpToolInput),
    /// Any other tool: kept on the agent, not run by Agentry.
    Other(OtherToolInput),
}

/// An HTTP tool: a function the model may call, run by Agentry as one HTTP request.
#[derive(Deserialize, ToSchema)]
#[schema(as = HttpTool, example = json!({"type": "http", "name": "get_weather", "url": "https://api.example.com/weather",
    "method": "GET", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}))]
#[allow(dead_code)]
pub struct HttpToolInput {
    /// `http`.
    #[serde(rename = "type")]
    #[schema(value_type = HttpToolType)]
    pub kind: String,
    /// The function's name: 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    /// An `http://` or `https://` URL.
    #[schema(pattern = r"^https?://[^\u0000]*$")]
    pub url: String,
    /// `GET` (the default), `POST`, `PUT`, `PATCH` or `DELETE`, in any case.
    #[schema(value_type = Option<HttpMethodName>)]
    pub method: Option<String>,
    /// What it does, for the model.
    pub description: Option<String>,
    /// Its arguments' JSON Schema, an object schema (any object when absent).
    #[schema(value_type = Option<ObjectSchema>)]
    pub parameters: Option<Value>,
    /// Headers sent with every call: names are tokens, values single lines. Values are
    /// secrets: write-only, read back as `********` (sending that back keeps the stored one).
    #[schema(schema_with = header_map)]
    pub headers: Option<Value>,
}

/// The type of an HTTP tool.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum HttpToolType {
    /// An HTTP tool.
    #[schema(rename = "http")]
    Http,
}

/// An HTTP method a tool may use (any case).
#[derive(ToSchema)]
#[schema(as = HttpMethod)]
#[allow(dead_code)]
pub enum HttpMethodName {
    #[schema(rename = "GET")]
    Get,
    #[schema(rename = "POST")]
    Post,
    #[schema(rename = "PUT")]
    Put,
    #[schema(rename = "PATCH")]
    Patch,
    #[schema(rename = "DELETE")]
    Delete,
    #[schema(rename = "get")]
    GetLower,
    #[schema(rename = "post")]
    PostLower,
    #[schema(rename = "put")]
    PutLower,
    #[schema(rename = "patch")]
    PatchLower,
    #[schema(rename = "delete")]
    DeleteLower,
}

fn header_map() -> utoipa::openapi::schema::Schema {
    raw(json!({
        "type": ["object", "null"],
        "description": "Headers sent with every call: names are tokens, values single lines. Values are secrets: write-only, read back as `********` (sending that back keeps the stored one).",
        "propertyNames": {"pattern": "^[!-9;-~]+$"},
        "additionalProperties": {"type": "string", "pattern": "^[^\\r\\n\\u0000]*$"},
    }))
}

/// A tool of another type than `http`: kept on the agent as given, not run by Agentry.
#[derive(Deserialize, ToSchema)]
#[schema(as = OtherTool)]
#[allow(dead_code)]
pub struct OtherToolInput {
    /// Any type but `http`.
    #[serde(rename = "type")]
    #[schema(min_length = 1, pattern = r"^(?!http$)[^\u0000]*$")]
    pub kind: String,
    /// Its name, distinct among the agent's tools.
    #[schema(min_length = 1)]
    pub name: String,
}

/// Picks the one spelling a caller used among aliases; two different spellings at once is
/// an error naming both.
fn one_of<T>(
    candidates: Vec<(&'static str, Option<T>)>,
) -> Result<Option<(&'static str, T)>, Invalid> {
    let mut given = candidates
        .into_iter()
        .filter_map(|(f, v)| v.map(|v| (f, v)));
    let first = given.next();
    if let (Some((a, _)), Some((b, _))) = (&first, given.next()) {
        return Err(Invalid::new(
            b.to_owned(),
            format!("give only one of '{a}' and '{b}'"),
        ));
    }
    Ok(first)
}

fn model_spec(field: &str, input: ModelInput, provider: Option<String>) -> ModelSpec {
    match input {
        ModelInput::Name(model) => ModelSpec {
            provider_id: provider,
            model,
            field: field.to_owned(),
        },
        ModelInput::Ref(r) => ModelSpec {
            provider_id: Some(r.provider_id),
            model: r.model_name,
            field: field.to_owned(),
        },
    }
}

fn parse_opt<T, R>(
    field: &str,
    v: Option<Option<R>>,
    parse: impl Fn(R) -> Result<T, Invalid>,
) -> Result<Option<Option<T>>, Invalid> {
    v.map(|inner| inner.map(&parse).transpose())
        .transpose()
        .map_err(|e| e.renamed(field))
}

impl AgentInput {
    /// Validates every given field into domain values.
    ///
    /// # Errors
    /// The first failing field, named as the caller spelled it.
    pub fn try_into_domain(self) -> Result<AgentFields, Invalid> {
        let config = self.config.unwrap_or_default();
        let instructions = one_of(vec![
            ("instructions", self.instructions),
            ("preamble", self.preamble),
            ("content", self.content),
            ("system_prompt", self.system_prompt),
        ])?;
        let model = one_of(vec![
            ("model", self.model),
            ("llmModel", self.llm_model.map(ModelInput::Name)),
            ("model_ref", self.model_ref.map(ModelInput::Ref)),
            ("config.model", config.model),
        ])?;
        if self.provider.is_some() && !matches!(model, Some(("model", ModelInput::Name(_)))) {
            return Err(Invalid::new(
                "provider",
                "is only accepted together with a 'model' name",
            ));
        }
        let temperature = one_of(vec![
            ("temperature", self.temperature),
            ("config.temperature", config.temperature),
        ])?;
        let top_p = one_of(vec![("top_p", self.top_p), ("config.top_p", config.top_p)])?;
        let max_tokens = one_of(vec![
            ("max_tokens", self.max_tokens),
            ("config.max_tokens", config.max_tokens),
        ])?;
        Ok(AgentFields {
            key: self.key.as_deref().map(AgentKey::parse).transpose()?,
            name: self.name.as_deref().map(AgentName::parse).transpose()?,
            description: parse_opt("description", self.description, |d: String| {
                parse_description(&d)
            })?,
            instructions: instructions
                .map(|(f, v)| parse_instructions(&v).map_err(|e| e.renamed(f)))
                .transpose()?,
            model: model.map(|(f, m)| model_spec(f, m, self.provider)),
            temperature: temperature
                .map(|(f, v)| parse_opt(f, Some(v), Temperature::parse))
                .transpose()?
                .flatten(),
            top_p: top_p
                .map(|(f, v)| parse_opt(f, Some(v), TopP::parse))
                .transpose()?
                .flatten(),
            max_tokens: max_tokens
                .map(|(f, v)| parse_opt(f, Some(v), MaxTokens::parse))
                .transpose()?
                .flatten(),
            tags: self.tags.as_deref().map(Tag::parse_list).transpose()?,
            status: self.status.as_deref().map(AgentStatus::parse).transpose()?,
            agent_type: self
                .agent_type
                .as_deref()
                .map(AgentType::parse)
                .transpose()?,
            tools: self.tools.map(ToolSpec::parse_list).transpose()?,
            cluster: parse_opt("cluster", self.cluster, |c: String| ClusterName::parse(&c))?,
            fallback_model: self
                .fallback_model
                .map(|m| m.map(|m| model_spec("fallback_model", m, None))),
            guardrails: self
                .guardrails
                .map(|g| Guardrails::parse(&g.unwrap_or(Value::Null)))
                .transpose()?,
            knowledge: one_of(vec![
                ("knowledge", self.knowledge),
                ("rag_modules", self.rag_modules),
            ])?
            .map(|(_, k)| Knowledge::parse(&k.unwrap_or(Value::Null), "knowledge"))
            .transpose()?,
        })
    }
}

/// The spellings the seeds give an agent's instructions, model and sampling parameters. The
/// document lets an agent body hold the fields of one of them plus the fields every body
/// shares; the server also accepts spellings of different seeds mixed, as long as each value
/// is given once (which JSON Schema can say, but not in a form fuzzers can generate from).
const SPELLINGS: [(&str, &[&str]); 5] = [
    (
        "Agentry's spelling",
        &[
            "instructions",
            "model",
            "temperature",
            "top_p",
            "max_tokens",
        ],
    ),
    (
        "Seed 000's spelling",
        &[
            "preamble",
            "model_ref",
            "temperature",
            "top_p",
            "max_tokens",
        ],
    ),
    (
        "Seed 001's spelling",
        &["content", "llmModel", "temperature", "topP", "maxTokens"],
    ),
    ("Seed 002's spelling", &["instructions", "config"]),
    (
        "Seed 004's spelling: `provider` and a `model` name",
        &[
            "system_prompt",
            "provider",
            "model",
            "temperature",
            "top_p",
            "max_tokens",
        ],
    ),
];

/// The fields every agent body may hold, whatever its spelling.
const SHARED: [&str; 12] = [
    "key",
    "name",
    "description",
    "tags",
    "status",
    "type",
    "tools",
    "cluster",
    "fallback_model",
    "guardrails",
    "knowledge",
    "rag_modules",
];

/// An agent body as the document shows it: every field in every spelling, with one of
/// [`SPELLINGS`] (plus the [`SHARED`] fields) as the fields a body may hold; `name` required
/// when `name_required`; a `key` too when `key_derived` and the name has nothing to derive one
/// from.
fn agent_body(description: &str, name_required: bool, key_derived: bool) -> RefOr<Schema> {
    agent_schema(description, name_required, key_derived, &[], None)
}

/// An agent of an `AgentCluster` manifest: an agent body with a `name` (also its key unless
/// `key` is given), without the fields the cluster sets (`cluster`, `status`), with its
/// `instances`.
pub(crate) fn manifest_agent() -> RefOr<Schema> {
    agent_schema(
        "An agent of the cluster: an agent definition in one of the seeds' spellings (`name` is also its key unless `key` is given; `cluster` and `status` are set by the cluster), with its `instances` (also `replicas`).",
        true,
        true,
        &["cluster", "status"],
        Some((
            "instances",
            json!({"type": "integer", "minimum": 1, "maximum": INSTANCES_MAX,
                "description": "Concurrency slots, 1 to 1,000 (1 for a new agent when absent, else kept); also `replicas`."}),
        )),
    )
}

fn agent_schema(
    description: &str,
    name_required: bool,
    key_derived: bool,
    without: &[&str],
    extra: Option<(&str, Value)>,
) -> RefOr<Schema> {
    let mut body = AgentInput::schema();
    let mut rules = json!({"properties": {
        "tags": {"items": {"maxLength": 64, "pattern": TAG}},
        "topP": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
            "description": "Seed 001's spelling of `top_p`: top-p, 0 to 1."},
        "maxTokens": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_TOKENS_LIMIT,
            "description": "Seed 001's spelling of `max_tokens`: the largest answer in tokens, 1 to 1,000,000."},
    }});
    if name_required {
        // Required, so not `null` either.
        rules["properties"]["name"] = json!({"type": "string"});
    }
    if let Some((name, schema)) = &extra {
        rules["properties"][*name] = schema.clone();
    }
    let shared: Vec<&str> = SHARED
        .iter()
        .filter(|f| !without.contains(f))
        .copied()
        .chain(extra.as_ref().map(|(name, _)| *name))
        .collect();
    let spellings: Vec<Value> = SPELLINGS
        .iter()
        .map(|(title, spelling)| {
            let fields: Vec<&str> = shared.iter().chain(spelling.iter()).copied().collect();
            let mut branch = json!({"title": title, "propertyNames": {"enum": fields}});
            if spelling.contains(&"provider") {
                branch["required"] = json!(["model"]);
                branch["properties"] = json!({"model": {"type": "string", "pattern": NOT_BLANK,
                    "description": "The model's name at `provider`."}});
            }
            branch
        })
        .collect();
    let mut all_of = vec![json!({"anyOf": spellings})];
    if key_derived {
        all_of.push(json!({"anyOf": [
            {"required": ["key"], "properties": {"key": {"type": "string"}}},
            {"properties": {"name": {"pattern": "[A-Za-z0-9]"}}},
        ]}));
    }
    rules["allOf"] = json!(all_of);
    if let RefOr::T(schema) = &mut body {
        add_rules(schema, rules);
        if let Schema::Object(object) = schema {
            for field in without {
                object.properties.shift_remove(*field);
            }
            if name_required {
                object.required = vec!["name".to_owned()];
            }
            object.description = Some(description.to_owned());
        }
    }
    body
}

/// A new agent (`POST`): `name` is required, `key` too when the name has no letter or digit
/// to derive one from.
pub struct AgentCreate;

impl utoipa::PartialSchema for AgentCreate {
    fn schema() -> RefOr<Schema> {
        agent_body(
            "A new agent, in one of the seeds' spellings: `name` is required, `key` too when the name has no letter or digit to derive one from.",
            true,
            true,
        )
    }
}

impl ToSchema for AgentCreate {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        AgentInput::schemas(schemas);
    }
}

/// A whole agent definition (`PUT`): `name` is required.
pub struct AgentReplace;

impl utoipa::PartialSchema for AgentReplace {
    fn schema() -> RefOr<Schema> {
        agent_body(
            "An agent's whole definition, in one of the seeds' spellings: `name` is required, absent fields return to their defaults, the key is kept unless given.",
            true,
            false,
        )
    }
}

impl ToSchema for AgentReplace {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        AgentInput::schemas(schemas);
    }
}

/// A change to an agent (`PATCH`): the given fields only.
pub struct AgentPatch;

impl utoipa::PartialSchema for AgentPatch {
    fn schema() -> RefOr<Schema> {
        agent_body(
            "A change to an agent, in one of the seeds' spellings: only the given fields change; `null` clears an optional field.",
            false,
            false,
        )
    }
}

impl ToSchema for AgentPatch {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        AgentInput::schemas(schemas);
    }
}

impl AgentInput {
    /// The example of the document's agent bodies.
    fn example() -> Value {
        json!({"name": "Support Bot", "key": "support-bot", "instructions": "You answer support questions.",
            "model": "mock/echo", "temperature": 0.7, "max_tokens": 1024, "tags": ["support"], "status": "active"})
    }
}

/// Seed 002's `config` view of an agent's model and parameters.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentConfigView {
    /// `provider/model`.
    pub model: String,
    /// Temperature.
    pub temperature: Option<f64>,
    /// Top-p.
    pub top_p: Option<f64>,
    /// Max tokens.
    pub max_tokens: Option<u32>,
}

/// An agent, canonical form.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    /// `agent_…`.
    #[schema(example = "agent_0193a0b2c3d47e8f9a0b1c2d3e4f5a6b")]
    pub id: String,
    /// Unique key, the client API's `model`.
    #[schema(example = "support-bot")]
    pub key: String,
    /// Unique display name.
    pub name: String,
    /// What the agent does.
    pub description: Option<String>,
    /// The system prompt.
    pub instructions: String,
    /// `provider/model`.
    #[schema(example = "openai-prod/gpt-4o")]
    pub model: String,
    /// The provider's id.
    pub provider: String,
    /// The model's name at the provider.
    pub model_name: String,
    /// Temperature.
    pub temperature: Option<f64>,
    /// Top-p.
    pub top_p: Option<f64>,
    /// Max tokens.
    pub max_tokens: Option<u32>,
    /// Model and parameters grouped as seed 002 shows them.
    pub config: AgentConfigView,
    /// Tags.
    pub tags: Vec<String>,
    /// `draft`, `active`, `inactive` or `archived`.
    pub status: String,
    /// Type.
    #[serde(rename = "type")]
    pub agent_type: String,
    /// Bound tools.
    pub tools: Vec<Value>,
    /// Cluster.
    pub cluster: Option<String>,
    /// `provider/model` tried when the model's provider fails, if any.
    pub fallback_model: Option<String>,
    /// Input and output rules (docs/guardrails.md).
    #[schema(value_type = Object)]
    pub guardrails: Value,
    /// The files searched on each turn: `{"files": [...], "top_k", "max_context_chars"}`
    /// (docs/knowledge.md).
    #[schema(value_type = Object)]
    pub knowledge: Value,
    /// Creator.
    pub created_by: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

impl From<&Agent> for AgentView {
    fn from(a: &Agent) -> Self {
        let model = a.model.to_string();
        let (temperature, top_p, max_tokens) = (
            a.temperature.map(|t| t.get()),
            a.top_p.map(|t| t.get()),
            a.max_tokens.map(|t| t.get()),
        );
        Self {
            id: a.id.to_string(),
            key: a.key.to_string(),
            name: a.name.to_string(),
            description: a.description.clone(),
            instructions: a.instructions.clone(),
            config: AgentConfigView {
                model: model.clone(),
                temperature,
                top_p,
                max_tokens,
            },
            model,
            provider: a.model.provider_id.to_string(),
            model_name: a.model.model_name.clone(),
            temperature,
            top_p,
            max_tokens,
            tags: a.tags.iter().map(ToString::to_string).collect(),
            status: a.status.as_str().to_owned(),
            agent_type: a.agent_type.to_string(),
            tools: a
                .tools
                .iter()
                .map(|t| Value::Object(t.public_json()))
                .collect(),
            cluster: a.cluster.as_ref().map(ToString::to_string),
            fallback_model: a.fallback_model.as_ref().map(ToString::to_string),
            guardrails: a.guardrails.to_json(),
            knowledge: a.knowledge.to_json(),
            created_by: a.created_by.clone(),
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

/// A page of agents.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    /// The agents, newest first.
    pub agents: Vec<AgentView>,
    /// Matches in all pages.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
}

/// List filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListAgentsQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// Items to skip (default 0).
    pub offset: Option<String>,
    /// Comma-separated tags (at most 32, each at most 64 characters, no control characters);
    /// agents carrying all of them.
    #[param(
        pattern = r"^[^,\u0000-\u001f\u007f-\u009f]{0,64}(,[^,\u0000-\u001f\u007f-\u009f]{0,64}){0,31}$"
    )]
    pub tags: Option<String>,
    /// Only agents in this status.
    #[param(value_type = Option<AgentStatusName>)]
    pub status: Option<String>,
    /// Agent type.
    #[serde(rename = "type")]
    #[param(rename = "type", pattern = r"^([a-z0-9][a-z0-9._-]{0,63})?$")]
    pub agent_type: Option<String>,
    /// Cluster name.
    #[param(pattern = r"^([a-z0-9][a-z0-9._-]{0,63})?$")]
    pub cluster: Option<String>,
}

impl ListAgentsQuery {
    fn parse(&self) -> Result<(AgentFilter, Page), ApiError> {
        let page =
            crate::routes::providers::page_of(self.limit.as_deref(), self.offset.as_deref())?;
        let tags: Vec<&str> = self
            .tags
            .as_deref()
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let filter = AgentFilter {
            tags: Tag::parse_list(&tags)?,
            status: self
                .status
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(AgentStatus::parse)
                .transpose()?,
            agent_type: self
                .agent_type
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(AgentType::parse)
                .transpose()?,
            cluster: self
                .cluster
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(ClusterName::parse)
                .transpose()?,
            keys: None,
        };
        Ok((filter, page))
    }
}

impl From<Invalid> for ApiError {
    fn from(inv: Invalid) -> Self {
        agentry_domain::Error::Invalid(inv).into()
    }
}

/// Parses the `{agent}` path segment: an id (`agent_…`) or a key.
pub(crate) fn agent_ref(raw: &str) -> Result<AgentRef, ApiError> {
    AgentRef::parse(raw).map_err(|_| agentry_domain::Error::not_found("agent", raw).into())
}

/// Create an agent.
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", request_body = AgentCreate,
    responses((status = 201, body = AgentView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn create_agent(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<AgentInput>,
) -> ApiResult<HttpResponse> {
    let fields = body.try_into_domain()?;
    let created_by = crate::auth::principal(&req).map(|p| p.created_by());
    let agent = state.agents.create(fields, created_by).await?;
    Ok(HttpResponse::Created().json(AgentView::from(&agent)))
}

/// List agents, newest first.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", params(ListAgentsQuery),
    responses((status = 200, body = AgentList), (status = 400, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn list_agents(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ListAgentsQuery>,
) -> ApiResult<HttpResponse> {
    let (filter, page) = query.parse()?;
    let filter = filter.visible_to(crate::auth::principal(&req).as_ref());
    let paged = state.agents.list(&filter, page).await?;
    Ok(HttpResponse::Ok().json(AgentList {
        agents: paged.items.iter().map(AgentView::from).collect(),
        total: paged.total,
        limit: page.limit(),
        offset: page.offset(),
    }))
}

/// Get an agent by id or key.
#[utoipa::path(get, path = "/api/v1/agents/{agent}", tag = "agents", params(("agent" = String, Path, description = "Agent id or key")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn get_agent(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let caller = crate::auth::principal(&req);
    let agent = state
        .agents
        .get_for(caller.as_ref(), &agent_ref(&path)?)
        .await?;
    Ok(HttpResponse::Ok().json(AgentView::from(&agent)))
}

/// Change the given fields of an agent; `null` clears an optional field.
#[utoipa::path(patch, path = "/api/v1/agents/{agent}", tag = "agents", request_body = AgentPatch, params(("agent" = String, Path, description = "Agent id or key")),
    responses((status = 200, body = AgentView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn patch_agent(
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonBody(body): JsonBody<AgentInput>,
) -> ApiResult<HttpResponse> {
    let target = agent_ref(&path)?;
    let fields = body.try_into_domain()?;
    let agent = state.agents.patch(&target, fields).await?;
    Ok(HttpResponse::Ok().json(AgentView::from(&agent)))
}

/// Replace an agent's definition; absent fields return to their defaults, the key is kept
/// unless given.
#[utoipa::path(put, path = "/api/v1/agents/{agent}", tag = "agents", request_body = AgentReplace, params(("agent" = String, Path, description = "Agent id or key")),
    responses((status = 200, body = AgentView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
#[tracing::instrument(skip_all)]
pub async fn put_agent(
    state: web::Data<AppState>,
    path: web::Path<String>,
    JsonBody(body): JsonBody<AgentInput>,
) -> ApiResult<HttpResponse> {
    let target = agent_ref(&path)?;
    let fields = body.try_into_domain()?;
    let agent = state.agents.replace(&target, fields).await?;
    Ok(HttpResponse::Ok().json(AgentView::from(&agent)))
}

/// Delete an agent. Deleting an absent agent succeeds with `deleted: false`.
#[utoipa::path(delete, path = "/api/v1/agents/{agent}", tag = "agents", params(("agent" = String, Path, description = "Agent id or key")),
    responses((status = 200, body = DeleteResult)))]
#[tracing::instrument(skip_all)]
pub async fn delete_agent(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let deleted = match AgentRef::parse(&path) {
        Ok(target) => state.agents.delete(&target).await?,
        Err(_) => false,
    };
    Ok(HttpResponse::Ok().json(DeleteResult::new("Agent", deleted)))
}
