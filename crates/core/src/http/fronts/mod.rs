//! Other APIs' own wire formats through the Desk — Ollama's (`/api/*`, `/ollama/api/*`),
//! OpenAI's (`/v1/*`) and ComfyUI's (`/comfyui/*`) — with the same keys, limits, browser
//! rules, usage log and fail-fast as the Sparklio API. Each front answers errors in its
//! own API's shape, so the official clients read them.

pub mod comfyui;
pub mod ollama;
mod ollama_mock;
pub mod openai;

use crate::app::SharedState;
use crate::http::auth::{self, Front, Scope};
use crate::http::error::ErrorCode;
use crate::http::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};

/// Which API a path belongs to.
pub fn front_of(path: &str) -> Front {
    if path == "/api/v1" || path.starts_with("/api/v1/") {
        Front::Sparklio
    } else if path.starts_with("/api/") || path.starts_with("/ollama/") {
        Front::Ollama
    } else if path.starts_with("/v1/") {
        Front::OpenAi
    } else if path == "/comfyui" || path.starts_with("/comfyui/") {
        Front::ComfyUi
    } else {
        Front::Sparklio
    }
}

/// Route middleware: a trusted network or a key that opens this front.
pub async fn require_gateway(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let front = front_of(req.uri().path());
    auth::require(state, Scope::Gateway, front, req, next).await
}

/// Route middleware for a front's admin routes (pull, delete, create, …).
pub async fn require_admin(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let front = front_of(req.uri().path());
    auth::require(state, Scope::Admin, front, req, next).await
}

/// The largest standard error body read back for reshaping.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An error in the standard format (auth, limits, browser rules, body limits, unknown
/// routes, fail-fast) becomes the front's own error shape, same status and headers
/// (`Retry-After`, `WWW-Authenticate`).
pub async fn reshape_errors(front: Front, response: Response) -> Response {
    if front == Front::Sparklio {
        return response;
    }
    let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>().copied() else {
        return response;
    };
    let (mut parts, body) = response.into_parts();
    let standard: Value = match axum::body::to_bytes(body, MAX_ERROR_BODY).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    if front == Front::OpenAi && code == "PROVIDER_ERROR" && refused_the_request(&standard["error"])
    {
        // The instance refused what the client sent (tools on a model without them, a
        // bad option): the client's 400, which the SDKs raise as `BadRequestError` and
        // do not send again, not a server error.
        parts.status = StatusCode::BAD_REQUEST;
    }
    let reshaped = front_error(front, parts.status, code, &standard["error"]);
    if front == Front::OpenAi && parts.status.is_server_error() && code != "OVERLOADED" {
        // The OpenAI SDKs retry every 5xx twice by default, waiting out `Retry-After`
        // (a breaker's open time, up to minutes): a down provider would answer a default
        // client in minutes, and a hung one get the prompt three times. Only a full
        // queue is worth another try.
        parts
            .headers
            .insert("x-should-retry", HeaderValue::from_static("false"));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(reshaped.to_string()))
}

/// An upstream's own 4xx (not a missing model, not a rate limit): the request's fault.
pub(crate) fn refused_the_request(error: &Value) -> bool {
    error["upstream_status"]
        .as_u64()
        .is_some_and(|s| (400..500).contains(&s) && s != 404 && s != 429)
}

/// One error in a front's shape, from the standard error object.
pub fn front_error(front: Front, status: StatusCode, code: &str, error: &Value) -> Value {
    let message = error["message"]
        .as_str()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
    match front {
        // Ollama: `{"error": "message"}`.
        Front::Ollama => json!({ "error": message }),
        // OpenAI: `{"error": {"message", "type", "param", "code"}}`.
        Front::OpenAi => json!({
            "error": {
                "message": message,
                "type": openai_type(status),
                "param": error.get("field").cloned().unwrap_or(Value::Null),
                "code": code.to_ascii_lowercase(),
            }
        }),
        // ComfyUI's `/prompt` error: `{"error": {type, message, details, extra_info}, "node_errors": {}}`.
        Front::ComfyUi => json!({
            "error": {
                "type": code.to_ascii_lowercase(),
                "message": message,
                "details": "",
                "extra_info": {},
            },
            "node_errors": {},
        }),
        Front::Sparklio => json!({ "error": error }),
    }
}

/// A deterministic unit vector from a text (mock mode: same text, same vector).
pub(crate) fn mock_embedding(text: &str) -> Vec<f32> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    let raw: Vec<f32> = digest.iter().map(|b| f32::from(*b) / 255.0 - 0.5).collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.into_iter().map(|x| x / norm).collect()
}

/// OpenAI's error `type` for a status (its SDKs pick the exception class by status).
fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_belong_to_their_front() {
        for (path, front) in [
            ("/api/v1/llm/generate", Front::Sparklio),
            ("/api/v1", Front::Sparklio),
            ("/api/chat", Front::Ollama),
            ("/api/tags", Front::Ollama),
            ("/ollama/api/chat", Front::Ollama),
            ("/v1/chat/completions", Front::OpenAi),
            ("/comfyui/prompt", Front::ComfyUi),
            ("/comfyui/api/ws", Front::ComfyUi),
            ("/metrics", Front::Sparklio),
            ("/", Front::Sparklio),
        ] {
            assert_eq!(front_of(path), front, "{path}");
        }
    }

    #[test]
    fn errors_take_each_fronts_shape() {
        let e = json!({"code": "RATE_LIMITED", "message": "slow down", "field": "model"});
        let s = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            front_error(Front::Ollama, s, "RATE_LIMITED", &e),
            json!({"error": "slow down"})
        );
        let o = front_error(Front::OpenAi, s, "RATE_LIMITED", &e);
        assert_eq!(o["error"]["type"], "rate_limit_error");
        assert_eq!(o["error"]["code"], "rate_limited");
        assert_eq!(o["error"]["param"], "model");
        let c = front_error(Front::ComfyUi, s, "RATE_LIMITED", &e);
        assert_eq!(c["error"]["message"], "slow down");
        assert!(c["node_errors"].is_object());
    }
}
