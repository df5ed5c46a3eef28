//! [`HttpTools`]: the [`HttpToolClient`] port over reqwest.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use agentry_domain::tool::{
    HttpMethod, HttpTool, HttpToolClient, SECRET_MASK, ToolError, ToolLimits,
};
use async_trait::async_trait;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};
use serde_json::{Map, Value};

use crate::config::{AllowList, ConfigError, HttpToolsConfig, parse_ip};
use crate::resolve::{Forbidden, GuardedResolver};

/// Sent as `User-Agent` on every call.
pub const USER_AGENT: &str = concat!("agentry-tools/", env!("CARGO_PKG_VERSION"));
/// Sent as `Accept` unless the tool sets its own.
pub const ACCEPT_VALUE: &str = "application/json, text/*;q=0.9";
/// Redirects followed per call.
pub const MAX_REDIRECTS: usize = 5;
/// Characters of an error answer's body kept in [`ToolError::Status`].
pub const STATUS_BODY_CHARS: usize = 500;
/// Header values shorter than this are not masked in error messages (masking `1` would
/// garble every message); they are not secrets worth the name.
const MIN_MASKED_SECRET: usize = 4;

/// Calls HTTP tools. One client (one connection pool) for all calls; every destination is
/// checked against the SSRF guard after DNS resolution, as an IP literal before sending, and
/// at every redirect.
#[derive(Clone)]
pub struct HttpTools {
    client: reqwest::Client,
    allow: Arc<AllowList>,
}

impl std::fmt::Debug for HttpTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTools")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl HttpTools {
    /// Builds the client.
    ///
    /// # Errors
    /// [`ConfigError::AllowedHost`] for an entry of `allowed_hosts` that is neither a host name,
    /// an IP address nor a CIDR range; [`ConfigError::Client`] if TLS cannot be set up.
    pub fn new(config: HttpToolsConfig) -> Result<Self, ConfigError> {
        let allow = Arc::new(AllowList::parse(&config.allowed_hosts)?);
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // Redirects are followed in `call`, which checks each hop and keeps the tool's
            // headers (secrets) from other origins.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the destination itself, out of the guard's sight.
            .no_proxy()
            .referer(false)
            .dns_resolver(GuardedResolver {
                allow: Arc::clone(&allow),
            })
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(Self { client, allow })
    }

    /// Refuses a URL the guard forbids before anything is sent: a scheme other than http(s),
    /// or a host that is a forbidden IP literal (literals never reach the resolver).
    fn check_destination(&self, url: &Url) -> Result<(), ToolError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolError::Refused(format!(
                "{}: URLs are only allowed with http and https",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| ToolError::Failed("the URL has no host".to_owned()))?;
        match parse_ip(host) {
            Some(ip) if !self.allow.allows_ip(ip) => {
                tracing::debug!(%ip, "tool call refused by the SSRF guard");
                Err(ToolError::Refused(Forbidden::literal(ip).0))
            }
            _ => Ok(()),
        }
    }

    async fn send(
        &self,
        tool: &HttpTool,
        arguments: &Map<String, Value>,
        limits: ToolLimits,
    ) -> Result<String, ToolError> {
        let mut url = Url::parse(&tool.url)
            .map_err(|e| ToolError::Failed(format!("the tool's URL is not a valid URL ({e})")))?;
        let headers = tool_headers(tool)?;
        let mut method = wire_method(tool.method);
        let mut body = if tool.method.has_body() {
            Some(
                serde_json::to_vec(arguments)
                    .map_err(|e| ToolError::Failed(format!("arguments not serialisable: {e}")))?,
            )
        } else {
            append_query(&mut url, arguments);
            None
        };
        let origin = url.origin();
        let mut hops = 0;
        loop {
            self.check_destination(&url)?;
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .header(ACCEPT, ACCEPT_VALUE);
            if let Some(bytes) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(bytes.clone());
            }
            if url.origin() == origin {
                request = request.headers(headers.clone());
            }
            let response = request
                .send()
                .await
                .map_err(|e| from_reqwest(e, limits.timeout))?;
            let status = response.status();
            let Some(next) = redirect_target(&response, &url)? else {
                return read_answer(response, status, limits).await;
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(ToolError::Failed(format!(
                    "too many redirects (more than {MAX_REDIRECTS})"
                )));
            }
            if !matches!(
                status,
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
            ) && method != Method::HEAD
            {
                // 301, 302, 303: the next request is a GET without a body (as browsers do).
                method = Method::GET;
                body = None;
            }
            url = next;
        }
    }
}

#[async_trait]
impl HttpToolClient for HttpTools {
    #[tracing::instrument(skip_all, fields(tool = %tool.name, method = tool.method.as_str()))]
    async fn call(
        &self,
        tool: &HttpTool,
        arguments: &Map<String, Value>,
        limits: ToolLimits,
    ) -> Result<String, ToolError> {
        let result = tokio::time::timeout(limits.timeout, self.send(tool, arguments, limits))
            .await
            .unwrap_or(Err(ToolError::Timeout(limits.timeout)));
        result.map_err(|e| mask_secrets(e, &tool.headers))
    }
}

fn wire_method(method: HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
    }
}

/// The tool's headers, marked sensitive. Errors name the header, never its value.
fn tool_headers(tool: &HttpTool) -> Result<HeaderMap, ToolError> {
    let mut map = HeaderMap::new();
    for (name, value) in &tool.headers {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ToolError::Failed(format!("header {name:?} has an invalid name")))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| ToolError::Failed(format!("header {name:?} has an invalid value")))?;
        value.set_sensitive(true);
        map.append(key, value);
    }
    Ok(map)
}

/// Appends the arguments to the URL's query: strings as they are, numbers and booleans as
/// text, arrays as repeated parameters, objects as JSON text; nulls are left out.
fn append_query(url: &mut Url, arguments: &Map<String, Value>) {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (key, value) in arguments {
        match value {
            Value::Array(items) => {
                pairs.extend(
                    items
                        .iter()
                        .filter_map(query_text)
                        .map(|v| (key.as_str(), v)),
                );
            }
            other => pairs.extend(query_text(other).map(|v| (key.as_str(), v))),
        }
    }
    if pairs.is_empty() {
        return;
    }
    let mut query = url.query_pairs_mut();
    for (key, value) in pairs {
        query.append_pair(key, &value);
    }
}

fn query_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The next URL when `response` is a redirect with a usable `Location`.
fn redirect_target(response: &Response, current: &Url) -> Result<Option<Url>, ToolError> {
    let redirect = matches!(
        response.status(),
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    );
    let Some(location) = response.headers().get(LOCATION).filter(|_| redirect) else {
        return Ok(None);
    };
    let location = location
        .to_str()
        .map_err(|_| ToolError::Failed("a redirect's Location is not text".to_owned()))?;
    current
        .join(location)
        .map(Some)
        .map_err(|e| ToolError::Failed(format!("a redirect's Location is not a URL ({e})")))
}

/// The body of the final answer: the text for 1xx-3xx, [`ToolError::Status`] for 4xx/5xx.
async fn read_answer(
    response: Response,
    status: StatusCode,
    limits: ToolLimits,
) -> Result<String, ToolError> {
    if status.is_client_error() || status.is_server_error() {
        // Enough bytes for STATUS_BODY_CHARS characters of any width.
        let (bytes, _) = read_capped(response, STATUS_BODY_CHARS * 4, limits.timeout).await?;
        let text = String::from_utf8_lossy(&bytes);
        let mut body: String = text.chars().take(STATUS_BODY_CHARS).collect();
        if body.len() < text.len() {
            body.push('…');
        }
        return Err(ToolError::Status {
            status: status.as_u16(),
            body,
        });
    }
    let cap = limits.max_response_bytes;
    let (mut bytes, truncated) = read_capped(response, cap, limits.timeout).await?;
    if !truncated {
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    // Do not end on half a character.
    if let Err(e) = std::str::from_utf8(&bytes)
        && e.error_len().is_none()
    {
        bytes.truncate(e.valid_up_to());
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    text.push_str(&agentry_domain::tool::truncated_note(cap));
    Ok(text)
}

/// Reads at most `cap` bytes of the body as it streams in; `true` when there was more.
async fn read_capped(
    mut response: Response,
    cap: usize,
    timeout: Duration,
) -> Result<(Vec<u8>, bool), ToolError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| from_reqwest(e, timeout))?
    {
        let room = cap.saturating_sub(bytes.len());
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, true));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, false))
}

/// A reqwest error in the port's terms; the URL (which may hold credentials) is left out.
fn from_reqwest(err: reqwest::Error, timeout: Duration) -> ToolError {
    if let Some(forbidden) = Forbidden::find(&err) {
        return ToolError::Refused(forbidden.0.clone());
    }
    if err.is_timeout() {
        return ToolError::Timeout(timeout);
    }
    let err = err.without_url();
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        message.push_str(": ");
        message.push_str(&e.to_string());
        cause = e.source();
    }
    ToolError::Failed(message)
}

/// Replaces any header value of the tool found in an error's text by the mask (an upstream
/// may echo a key back in its error body).
fn mask_secrets(err: ToolError, headers: &[(String, String)]) -> ToolError {
    let mask = |mut text: String| {
        for (_, value) in headers {
            if value.len() >= MIN_MASKED_SECRET && text.contains(value.as_str()) {
                text = text.replace(value.as_str(), SECRET_MASK);
            }
        }
        text
    };
    match err {
        ToolError::Refused(m) => ToolError::Refused(mask(m)),
        ToolError::Failed(m) => ToolError::Failed(mask(m)),
        ToolError::Status { status, body } => ToolError::Status {
            status,
            body: mask(body),
        },
        timeout @ ToolError::Timeout(_) => timeout,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn query_encoding_of_each_json_kind() {
        let mut url = Url::parse("http://h/p?fixed=1").unwrap();
        append_query(
            &mut url,
            &args(json!({
                "s": "a b&c", "n": 4.5, "b": true, "z": null,
                "tags": ["x", 2, null], "o": {"k": 1}
            })),
        );
        let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        // The URL's own query stays first; argument order follows the map's.
        assert_eq!(pairs[0], ("fixed".to_owned(), "1".to_owned()));
        pairs.sort();
        let want = [
            ("fixed", "1"),
            ("b", "true"),
            ("n", "4.5"),
            ("o", "{\"k\":1}"),
            ("s", "a b&c"),
            ("tags", "x"),
            ("tags", "2"),
        ];
        let mut want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        want.sort();
        assert_eq!(pairs, want);
    }

    #[test]
    fn no_arguments_leave_the_url_alone() {
        let mut url = Url::parse("http://h/p").unwrap();
        append_query(&mut url, &Map::new());
        assert_eq!(url.as_str(), "http://h/p");
    }

    #[test]
    fn secrets_are_masked_in_every_message() {
        let headers = vec![("X-Key".to_owned(), "sk-secret".to_owned())];
        let e = mask_secrets(
            ToolError::Status {
                status: 401,
                body: "bad key sk-secret".to_owned(),
            },
            &headers,
        );
        assert_eq!(e.to_string(), "tool answered HTTP 401: bad key ********");
        let e = mask_secrets(ToolError::Failed("x sk-secret".to_owned()), &headers);
        assert!(!e.to_string().contains("sk-secret"));
    }
}
