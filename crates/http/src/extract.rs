//! Request extraction with the documented errors: 415 for a body that is not JSON, 413 for
//! one over the limit, 400 `INVALID_REQUEST` for malformed JSON (with the parser's message)
//! and 400 `VALIDATION_ERROR` naming the field for a well-formed body of the wrong shape.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::error::ApiError;

/// How request bodies are read (set per app through `web::Data`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The largest JSON body accepted, in bytes.
    pub max_bytes: usize,
    /// The longest a whole body may take to arrive once its handler reads it: a client that
    /// trickles a body holds a connection (and a file descriptor) no longer than this.
    pub read_timeout: std::time::Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            read_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// A JSON request body parsed into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("Request body exceeds the limit of {limit} bytes"),
    )
    .with_details(json!({ "limit_bytes": limit }))
}

/// Reads the whole body, refusing more than `limits.max_bytes` bytes, or a body that has not
/// arrived whole within `limits.read_timeout` (408; the connection is closed).
async fn read_body(
    req: &HttpRequest,
    payload: Payload,
    limits: BodyLimits,
) -> Result<web::BytesMut, ApiError> {
    let timeout = limits.read_timeout;
    match tokio::time::timeout(timeout, read_all(req, payload, limits.max_bytes)).await {
        Ok(read) => read,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            format!(
                "The request body did not arrive within {} s",
                timeout.as_secs_f64()
            ),
        )
        .with_details(json!({ "timeout_secs": timeout.as_secs_f64() }))),
    }
}

/// Reads the whole body, refusing more than `limit` bytes.
async fn read_all(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::invalid_request(format!("Could not read the request body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses JSON, telling syntax errors (`INVALID_REQUEST`) from shape errors
/// (`VALIDATION_ERROR` with the path of the failing field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_request(
            "Request body is empty; a JSON object is expected",
        ));
    }
    if let Some(at) = escaped_nul(bytes) {
        // Named by the field that holds it when the body is otherwise valid JSON.
        let field = serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| nul_field(&v, ""));
        return Err(match field {
            Some(field) => ApiError::validation(&field, "must not contain NUL characters (\\u0000)"),
            None => ApiError::invalid_request(
                "Text in the request body contains a NUL character (\\u0000), which is not accepted",
            )
            .with_details(json!({ "offset": at })),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." {
                    field_from_message(&inner.to_string())
                } else {
                    path
                };
                ApiError::validation(&field, strip_position(&inner.to_string()))
            }
            _ => malformed(&inner),
        }
    })?;
    // One JSON value and nothing after it but whitespace: `{"name":"x"} xyz` is not JSON.
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::invalid_request(format!("Malformed JSON: {e}"))
        .with_details(json!({ "line": e.line(), "column": e.column() }))
}

/// The byte offset of a `\u0000` escape in JSON text, if any: the only way a JSON string
/// holds NUL (raw control characters are invalid JSON). `\\u0000` is a backslash followed by
/// the letters `u0000`, not NUL: the escape counts only after an even run of backslashes.
fn escaped_nul(bytes: &[u8]) -> Option<usize> {
    let mut backslashes = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\\' {
            backslashes += 1;
            continue;
        }
        if backslashes % 2 == 1 && b == b'u' && bytes.get(i + 1..i + 5) == Some(&b"0000"[..]) {
            return Some(i - 1);
        }
        backslashes = 0;
    }
    None
}

/// The path (`a.b[2].c`) of the first string or key holding NUL in `v`.
fn nul_field(v: &Value, at: &str) -> Option<String> {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_owned()
        } else {
            format!("{at}.{key}")
        }
    };
    match v {
        Value::String(s) if s.contains('\0') => Some(if at.is_empty() {
            ".".to_owned()
        } else {
            at.to_owned()
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_field(item, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            if k.contains('\0') {
                Some(join(&k.replace('\0', "\\u0000")))
            } else {
                nul_field(item, &join(k))
            }
        }),
        _ => None,
    }
}

/// serde names a missing or unknown field only in its message: "missing field `name`".
fn field_from_message(msg: &str) -> String {
    msg.split('`')
        .nth(1)
        .map_or_else(|| "body".to_owned(), str::to_owned)
}

fn strip_position(msg: &str) -> String {
    msg.split(" at line ").next().unwrap_or(msg).to_owned()
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            if !is_json(&req) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    "Content-Type must be application/json",
                ));
            }
            let limits = limits_of(&req);
            let bytes = read_body(&req, payload, limits).await?;
            parse_json(&bytes).map(JsonBody)
        })
    }
}

/// A JSON request body that may be left out: an empty body is `None` (whatever its content
/// type); any other body is read as [`JsonBody`] reads it, with the same errors.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let limits = limits_of(&req);
            let bytes = read_body(&req, payload, limits).await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Self(None));
            }
            if !is_json(&req) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    "Content-Type must be application/json",
                ));
            }
            parse_json(&bytes).map(|v| Self(Some(v)))
        })
    }
}

/// Whether the body is YAML (`application/yaml`, `application/x-yaml`, `text/yaml`,
/// `text/x-yaml`, `…+yaml`).
fn is_yaml(req: &HttpRequest) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            matches!(
                mime.as_str(),
                "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml"
            ) || (mime.starts_with("application/") && mime.ends_with("+yaml"))
        })
}

/// A document body, JSON or YAML (by its content type), read as a JSON value: how manifests
/// arrive. The same limits and errors as [`JsonBody`]; YAML that does not parse, or holds
/// more than one document, is `400 INVALID_REQUEST` with its line and column.
#[derive(Debug)]
pub struct DocumentBody(pub Value);

impl FromRequest for DocumentBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let yaml = is_yaml(&req);
            if !yaml && !is_json(&req) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    "Content-Type must be application/json or application/yaml",
                ));
            }
            let limits = limits_of(&req);
            let bytes = read_body(&req, payload, limits).await?;
            if !yaml {
                return parse_json(&bytes).map(DocumentBody);
            }
            parse_yaml(&bytes).map(DocumentBody)
        })
    }
}

/// Parses one YAML document into a JSON value.
///
/// # Errors
/// `INVALID_REQUEST` for text that is not one YAML document of JSON-compatible values.
pub fn parse_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_request(
            "Request body is empty; a YAML document is expected",
        ));
    }
    let value: Value = yaml_serde::from_slice(bytes).map_err(|e| {
        let mut details = serde_json::Map::new();
        if let Some(at) = e.location() {
            details.insert("line".to_owned(), at.line().into());
            details.insert("column".to_owned(), at.column().into());
        }
        ApiError::invalid_request(format!("Malformed YAML: {e}"))
            .with_details(Value::Object(details))
    })?;
    if value.is_null() {
        return Err(ApiError::invalid_request(
            "Request body is empty; a YAML document is expected",
        ));
    }
    if let Some(field) = nul_field(&value, "") {
        return Err(ApiError::validation(
            &field,
            "must not contain NUL characters (\\u0000)",
        ));
    }
    Ok(value)
}

/// Deserialises a field that may be absent (`None`), `null` (`Some(None)`) or a value.
///
/// # Errors
/// When the value has the wrong type.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Parses an optional numeric query parameter, naming it on error.
///
/// # Errors
/// `VALIDATION_ERROR` naming `field`.
pub fn query_number<N: std::str::FromStr>(
    field: &str,
    value: Option<&str>,
) -> Result<Option<N>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<N>().map_err(|_| {
                ApiError::validation(field, format!("must be a non-negative integer, got '{v}'"))
            })
        })
        .transpose()
}

/// Query-string error handler: a malformed query is a `VALIDATION_ERROR`, in the error format
/// of the surface it was sent to.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    req: &HttpRequest,
) -> actix_web::Error {
    on_surface(
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("Invalid query string: {err}"),
        ),
        req,
    )
}

/// Path error handler.
pub fn path_error(err: actix_web::error::PathError, req: &HttpRequest) -> actix_web::Error {
    on_surface(
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("Invalid path: {err}"),
        ),
        req,
    )
}

/// `error` in the format of the surface `req` was sent to: OpenAI's on the client API.
fn on_surface(error: ApiError, req: &HttpRequest) -> actix_web::Error {
    if crate::permissions::is_openai_surface(req.path()) {
        crate::openai::OpenAiError::from(error).into()
    } else {
        error.into()
    }
}

/// A UTF-8 text body (JSON Lines imports), read with the JSON body's size limit and deadline;
/// any content type is taken.
#[derive(Debug)]
pub struct TextBody(pub String);

impl FromRequest for TextBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let limits = limits_of(&req);
            let bytes = read_body(&req, payload, limits).await?;
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::invalid_request("The request body is not UTF-8 text"))?;
            if text.contains('\0') {
                return Err(ApiError::invalid_request(
                    "The request body contains a NUL character, which is not accepted",
                ));
            }
            Ok(TextBody(text))
        })
    }
}

/// The body limits the app set, or the defaults.
fn limits_of(req: &HttpRequest) -> BodyLimits {
    req.app_data::<web::Data<BodyLimits>>()
        .map_or_else(BodyLimits::default, |l| *l.get_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        name: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    #[test]
    fn finds_escaped_nul_only() {
        assert_eq!(escaped_nul(br#"{"a": "x\u0000y"}"#), Some(8));
        assert_eq!(escaped_nul(br#"{"a\u0000": 1}"#), Some(3), "keys too");
        assert_eq!(escaped_nul(br#"{"a": "\\\u0000"}"#), Some(9));
        assert_eq!(
            escaped_nul(br#"{"a": "\\u0000"}"#),
            None,
            "an escaped backslash, then text"
        );
        assert_eq!(escaped_nul(br#"{"a": "\u0001 u0000"}"#), None);
        let named = parse_json::<Probe>(br#"{"name": "a\u0000b"}"#)
            .err()
            .map(|e| (e.code(), format!("{e}")));
        assert!(
            matches!(&named, Some(("VALIDATION_ERROR", m)) if m.contains("name")),
            "{named:?}"
        );
        let broken = parse_json::<Probe>(br#"{"name": "a\u0000b""#)
            .err()
            .map(|e| e.code());
        assert_eq!(broken, Some("INVALID_REQUEST"), "not JSON: named by offset");
        let nested = serde_json::json!({"a": [1, {"b\u{0}": 2}], "c": {"d": "x\u{0}"}});
        assert_eq!(nul_field(&nested, "").as_deref(), Some("a[1].b\\u0000"));
        let deep = serde_json::json!({"c": {"d": ["ok", "x\u{0}"]}});
        assert_eq!(nul_field(&deep, "").as_deref(), Some("c.d[1]"));
    }

    #[test]
    fn classifies_json_errors() {
        let syntax = parse_json::<Probe>(b"{\"name\": ").err().map(|e| e.code());
        assert_eq!(syntax, Some("INVALID_REQUEST"));
        let missing = parse_json::<Probe>(b"{}")
            .err()
            .map(|e| (e.code(), format!("{e}")));
        assert!(
            matches!(missing, Some(("VALIDATION_ERROR", ref m)) if m.contains("name")),
            "{missing:?}"
        );
        let nested = parse_json::<Probe>(br#"{"name":"a","inner":{"n":"x"}}"#)
            .err()
            .map(|e| format!("{e}"));
        assert!(nested.is_some_and(|m| m.contains("inner.n")));
        let unknown = parse_json::<Probe>(br#"{"name":"a","bogus":1}"#)
            .err()
            .map(|e| format!("{e}"));
        assert!(unknown.is_some_and(|m| m.contains("bogus")));
        assert_eq!(
            parse_json::<Probe>(b"  ").err().map(|e| e.code()),
            Some("INVALID_REQUEST")
        );
        for trailing in [
            &br#"{"name":"a"} xyz"#[..],
            br#"{"name":"a"}{"name":"b"}"#,
            br#"{"name":"a"},"#,
        ] {
            assert_eq!(
                parse_json::<Probe>(trailing).err().map(|e| e.code()),
                Some("INVALID_REQUEST"),
                "{}",
                String::from_utf8_lossy(trailing)
            );
        }
        assert!(parse_json::<Probe>(b"{\"name\":\"a\"} \r\n\t").is_ok());
    }
}
