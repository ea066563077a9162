//! The one error envelope every failure uses:
//! `{"error": {"code", "message", "request_id", ...}, "detail": {...}}`.
//!
//! `detail` (`error` = the code in lower case, `message`, `provider`) is there for
//! Sparklio's existing callers, which read FastAPI's `detail` object.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

tokio::task_local! {
    /// The id of the request being handled; errors pick it up from here.
    pub static REQUEST_ID: String;
}

/// The current request id, if running inside a request.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(std::clone::Clone::clone).ok()
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields of the `error` object (provider, model, raw, violations, ...).
    pub fields: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Map::new(),
        }
    }

    /// Add a field to the `error` object.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            format!("{field}: {message}"),
        )
        .with("field", field)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }

    /// The error code a bare HTTP status maps to, for failures raised below the handlers.
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status.as_u16() {
            400 => ("VALIDATION_ERROR", "the request is not valid"),
            401 => ("UNAUTHORIZED", "authentication required"),
            403 => ("FORBIDDEN", "not allowed"),
            404 => ("NOT_FOUND", "no such route"),
            405 => ("METHOD_NOT_ALLOWED", "method not allowed on this route"),
            408 => ("REQUEST_TIMEOUT", "the request took too long"),
            413 => (
                "PAYLOAD_TOO_LARGE",
                "the request body is larger than server.max_body_bytes",
            ),
            415 => (
                "UNSUPPORTED_MEDIA_TYPE",
                "expected Content-Type: application/json",
            ),
            422 => ("VALIDATION_ERROR", "the request is not valid"),
            429 => ("RATE_LIMITED", "too many requests"),
            503 => ("SERVICE_UNAVAILABLE", "service unavailable"),
            504 => ("TIMEOUT", "timed out"),
            s if s >= 500 => ("INTERNAL", "internal error"),
            _ => ("ERROR", "request failed"),
        };
        Self::new(status, code, message)
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.clone().into());
        error.insert(
            "request_id".into(),
            current_request_id().map_or(Value::Null, Value::String),
        );
        for (k, v) in &self.fields {
            error.insert(k.clone(), v.clone());
        }
        let provider = self.fields.get("provider").cloned().unwrap_or(Value::Null);
        json!({
            "error": error,
            "detail": {
                "error": self.code.to_ascii_lowercase(),
                "message": self.message,
                "provider": provider,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        // Shed load and rate limits say when to come back.
        if let Some(s) = self.fields.get("retry_after_s").and_then(Value::as_u64) {
            if let Ok(v) = axum::http::HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

/// Marks a response as already in the standard format (and carries its code for logs).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

pub type ApiResult<T> = Result<T, ApiError>;

fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<crate::llm::Error> for ApiError {
    fn from(e: crate::llm::Error) -> Self {
        Self {
            status: status_of(e.status()),
            code: e.code(),
            fields: e.fields(),
            message: e.to_string(),
        }
    }
}

impl From<crate::media::Error> for ApiError {
    fn from(e: crate::media::Error) -> Self {
        Self {
            status: status_of(e.status()),
            code: e.code(),
            fields: e.details,
            message: e.message,
        }
    }
}

impl From<crate::supervisor::ControlError> for ApiError {
    fn from(e: crate::supervisor::ControlError) -> Self {
        Self::new(status_of(e.status()), e.code(), e.to_string())
    }
}
