//! Cross-cutting request handling: request ids, the access log, turning any
//! non-standard failure into the standard error body, and a JSON extractor whose
//! rejections name the offending field.

use super::error::{ApiError, ErrorCode};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::time::Instant;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Accept a caller's id when it is short printable ASCII; otherwise make one.
pub(super) fn request_id_from(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_string)
}

/// What the access log needs of a request, kept as it is (a method, a shared URI, an
/// address): formatted only if a line is written.
pub(super) struct Access {
    id: String,
    started: Instant,
    method: Method,
    uri: Uri,
    peer: Option<std::net::IpAddr>,
}

impl Access {
    pub(super) fn of(req: &Request, id: String) -> Self {
        Self {
            id,
            started: Instant::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            peer: req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        }
    }

    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Put `x-request-id` on the response and log it (failures at warn, the rest at debug).
    pub(super) fn finish(self, resp: &mut Response) {
        let Self {
            id,
            started,
            method,
            uri,
            peer,
        } = self;
        let status = resp.status().as_u16();
        let code = resp.extensions().get::<ErrorCode>().map_or("", |c| c.0);
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let path = uri.path();
        let client = PeerText(peer);
        if status >= 500 {
            tracing::warn!(request_id = %id, %method, %path, status, code, latency_ms, %client, "request failed");
        } else {
            tracing::debug!(request_id = %id, %method, %path, status, code, latency_ms, %client, "request");
        }
        if let Ok(v) = HeaderValue::try_from(id) {
            resp.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
    }
}

/// Body size limits: `server.max_body_bytes`, and a larger one for image uploads.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub default: usize,
    /// ComfyUI's `upload/image` (`[fronts.comfyui] max_upload_bytes`).
    pub upload: usize,
}

impl BodyLimits {
    pub fn for_path(&self, path: &str) -> usize {
        if super::fronts::comfyui::is_upload(path) {
            self.upload
        } else {
            self.default
        }
    }
}

/// The client's address in the access log (empty when unknown, as before).
struct PeerText(Option<std::net::IpAddr>);

impl std::fmt::Display for PeerText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => Ok(()),
        }
    }
}

/// A body declared larger than the limit is refused before a byte of it is read.
pub(super) fn refuse_declared_oversize(limits: &BodyLimits, req: &Request) -> Option<Response> {
    let max = limits.for_path(req.uri().path());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        let mut resp = ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE).into_response();
        // The client may still be sending: do not keep the connection for it.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Some(resp);
    }
    None
}

/// How much of a refused body is still read and thrown away, and for how long, so that
/// a client still sending reads the refusal: a socket closed with unread data resets the
/// connection, and the client sees a broken pipe instead of the 413 (nginx's lingering
/// close does the same).
const LINGER_BYTES: usize = 64 * 1024 * 1024;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Read what the client still sends of a refused body, bounded, then let it go.
pub(super) fn drain_refused_body(mut body: axum::body::Body) {
    use http_body_util::BodyExt;
    tokio::spawn(async move {
        let mut left = LINGER_BYTES;
        let drain = async {
            while let Some(Ok(frame)) = body.frame().await {
                let n = frame.data_ref().map_or(0, Bytes::len);
                left = left.saturating_sub(n);
                if left == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
}

/// Failures produced below our handlers (405, 413 from a body limit, …) come without
/// our JSON body; give them one. Runs inside the request-id scope (the body names it).
pub(super) fn normalize_error(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || resp.extensions().get::<ErrorCode>().is_some()
    {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let mut new = ApiError::from_status(status).into_response();
    if let Some(allow) = allow {
        new.headers_mut().insert(header::ALLOW, allow);
    }
    new
}

/// `Json<T>` with standard errors: 400 `VALIDATION_ERROR` naming the field, 413 when too large,
/// 415 for a body that is declared as something other than JSON.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_other = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let ct = ct.to_ascii_lowercase();
                !(ct.starts_with("application/json")
                    || ct.contains("+json")
                    || ct.starts_with("text/plain"))
            });
        if declared_other {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                ApiError::bad_request("VALIDATION_ERROR", format!("cannot read the body: {rej}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parse JSON, naming the field on failure (`options.temperature: invalid type ...`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "VALIDATION_ERROR",
            "the body is empty; expected a JSON object",
        ));
    }
    // The plain parse first: tracking the path costs on every request, and only a
    // failure needs it, so a failed body is parsed again to name the field. (The second
    // parse, like the only one before, accepts bytes after the value: a body with
    // trailing text is still taken, as it always was.)
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(
                "VALIDATION_ERROR",
                format!("the body is not valid JSON: {inner}"),
            );
        }
        let msg = inner.to_string();
        // serde reports a missing field at its parent; name the field itself.
        let field = match msg.split('`').nth(1) {
            Some(name) if msg.starts_with("missing field") => {
                if path == "." {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                }
            }
            _ if path == "." => "body".to_string(),
            _ => path,
        };
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        ApiError::validation(&field, msg)
    })
}
