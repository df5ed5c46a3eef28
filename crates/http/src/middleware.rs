//! Cross-cutting request handling: request ids, trailing-slash normalisation, and JSON
//! bodies for errors that the framework answers by itself (unknown route, wrong method…).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, StatusCode, Uri};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};
use tracing::Instrument;

use crate::error::{ApiError, REQUEST_ID};

/// The request id header.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Keeps a well-formed incoming `X-Request-Id` (1 to 128 visible ASCII characters), otherwise
/// makes one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| agentry_domain::ids::new_id("req"), str::to_owned)
}

/// Removes a trailing `/` (`/v1/agents/` → `/v1/agents`), except under `/docs/` whose pages
/// need it.
fn normalise_path(req: &mut ServiceRequest) {
    let path = req.path();
    if path.len() <= 1 || !path.ends_with('/') || path.starts_with("/docs") {
        return;
    }
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let new = match req.uri().query() {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_owned(),
    };
    if let Ok(uri) = new.parse::<Uri>() {
        req.match_info_mut().get_mut().update(&uri);
        req.head_mut().uri = uri;
    }
}

/// Replaces the empty bodies the framework sends for unknown routes, wrong methods and
/// similar with the documented JSON error.
fn framework_error(status: StatusCode, method: &str, path: &str) -> Option<ApiError> {
    Some(match status {
        StatusCode::NOT_FOUND => ApiError::route_not_found(method, path),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "METHOD_NOT_ALLOWED",
            format!("Method {method} is not allowed on {path}"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "PAYLOAD_TOO_LARGE", "Request body is too large")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::new(status, "UNSUPPORTED_MEDIA_TYPE", "Unsupported content type")
        }
        s if s.is_client_error() => ApiError::new(
            s,
            "INVALID_REQUEST",
            s.canonical_reason().unwrap_or("Bad request"),
        ),
        s if s.is_server_error() => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal server error",
        ),
        _ => return None,
    })
}

/// The outermost middleware: sets the request id for the request's whole life, normalises
/// the path, and makes sure every error response has a JSON body and the id header.
pub async fn request_context(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = request_id(&req);
    normalise_path(&mut req);
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let header = HeaderValue::from_str(&id).ok();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
    let started = std::time::Instant::now();
    let result: Result<ServiceResponse<BoxBody>, Error> = REQUEST_ID
        .scope(id, async move {
            let res = if let Some((api, close)) = refusal(&req) {
                let mut res = render(api, &path);
                if close {
                    res.head_mut().set_connection_type(ConnectionType::Close);
                }
                req.into_response(res)
            } else if has_nul(req.uri()) {
                // Refused once, here, for every route: no stored text may hold NUL (PostgreSQL
                // cannot store it in `text`), and nothing else needs it.
                let api = ApiError::invalid_request(
                    "The path or query contains a NUL character (%00), which no identifier or \
                     filter may contain",
                );
                req.into_response(render(api, &path))
            } else {
                match next.call(req).await {
                    Ok(res) => res.map_into_boxed_body(),
                    Err(err) => {
                        let status = err.as_response_error().status_code();
                        let api = framework_error(status, &method, &path).unwrap_or_else(|| {
                            ApiError::new(status, "INVALID_REQUEST", err.to_string())
                        });
                        return Err(actix_web::error::InternalError::from_response(
                            err,
                            with_id(render(api, &path), header),
                        )
                        .into());
                    }
                }
            };
            let status = res.status();
            let has_json = res
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            let res = if (status.is_client_error() || status.is_server_error()) && !has_json {
                match framework_error(status, &method, &path) {
                    Some(api) => {
                        // A 405 keeps the `Allow` header the router put on it.
                        let allow = res.headers().get(ALLOW).cloned();
                        let mut json = render(api, &path);
                        if let Some(allow) = allow {
                            json.headers_mut().insert(ALLOW, allow);
                        }
                        res.into_response(json)
                    }
                    None => res,
                }
            } else {
                res
            };
            Ok(res.map_into_boxed_body().map_body(|_, b| b)).map(|mut r| {
                if let Some(h) = header {
                    r.headers_mut().insert(REQUEST_ID_HEADER, h);
                }
                r
            })
        })
        .instrument(span.clone())
        .await;
    let status = match &result {
        Ok(r) => r.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_us = started.elapsed().as_micros() as u64,
            "request finished"
        )
    });
    result
}

/// The longest path and query served; longer ones are `414 URI_TOO_LONG`. actix-http
/// answers a bare `400` past 65,534 bytes before this middleware runs (decision 59).
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// The most request header lines served; more are `431 HEADERS_TOO_LARGE`. actix-http
/// answers a bare `431` past 96.
pub const MAX_HEADERS: usize = 64;
/// The most header bytes served (names and values, 4 bytes of separators each); more are
/// `431 HEADERS_TOO_LARGE`. actix-http answers a bare `431` past a 128 KiB head.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Paths still served on a connection past the connection cap: what load balancers and
/// monitors ask, so an overloaded replica is not taken for a dead one.
fn serves_past_cap(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
}

/// Why a request is refused before routing, if it is, and whether its connection must close:
/// a connection accepted past the connection cap (503), a URI or header section past the
/// server's limits (414, 431). O(headers), no allocation unless refused.
fn refusal(req: &ServiceRequest) -> Option<(ApiError, bool)> {
    if req
        .conn_data::<crate::connections::Connection>()
        .is_some_and(crate::connections::Connection::refused)
        && !serves_past_cap(req.path())
    {
        let mut api = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "The server is at its connection limit; retry on a new connection shortly",
        )
        .with_details(serde_json::json!({ "retry_after_seconds": 1 }));
        api.set_retry_after(1);
        return Some((api, true));
    }
    let uri = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri > MAX_URI_BYTES {
        let api = ApiError::new(
            StatusCode::URI_TOO_LONG,
            "URI_TOO_LONG",
            format!("The path and query are {uri} bytes long, over the limit of {MAX_URI_BYTES}"),
        )
        .with_details(serde_json::json!({ "limit_bytes": MAX_URI_BYTES }));
        return Some((api, false));
    }
    let headers = req.headers();
    let count = headers.len();
    // At most 96 lines: actix-http refuses more before this runs.
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if count > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        let api = ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "HEADERS_TOO_LARGE",
            format!(
                "The request has {count} header lines ({bytes} bytes); at most \
                 {MAX_HEADERS} lines and {MAX_HEADER_BYTES} bytes are read"
            ),
        )
        .with_details(serde_json::json!({
            "limit_headers": MAX_HEADERS,
            "limit_bytes": MAX_HEADER_BYTES,
        }));
        return Some((api, false));
    }
    None
}

/// Whether the request's path or query carries a percent-encoded NUL.
fn has_nul(uri: &actix_web::http::Uri) -> bool {
    let raw = uri.path_and_query().map_or("", |pq| pq.as_str()).as_bytes();
    raw.windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// The error in the format of the surface it happened on: OpenAI's on the client API.
fn render(api: ApiError, path: &str) -> actix_web::HttpResponse {
    if crate::permissions::is_openai_surface(path) {
        crate::openai::OpenAiError::from(api).error_response()
    } else {
        api.error_response()
    }
}

fn with_id(
    mut res: actix_web::HttpResponse,
    header: Option<HeaderValue>,
) -> actix_web::HttpResponse {
    if let Some(h) = header {
        res.headers_mut().insert(REQUEST_ID_HEADER, h);
    }
    res
}
