//! How a media request or job fails: a kind per stable error code (each knowing its
//! HTTP status, with no fallback), a message, and the details the caller needs (the
//! provider, the ComfyUI node and input, the model file, ...).
//!
//! Jobs store their error as JSON and read it back after a restart, so an [`Error`]
//! round-trips through [`Error::to_json`] / [`Error::from_json`].

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Validation,
    UnsupportedMediaType,
    ModelNotFound,
    NotFound,
    Cancelled,
    WorkflowInvalid,
    Internal,
    Provider,
    GenerationFailed,
    JobLost,
    Unavailable,
    Paused,
    Timeout,
    Overloaded,
    /// The caller may not do this (another caller's prompt on the ComfyUI front).
    Forbidden,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 15] = [
        Self::Validation,
        Self::UnsupportedMediaType,
        Self::ModelNotFound,
        Self::NotFound,
        Self::Cancelled,
        Self::WorkflowInvalid,
        Self::Internal,
        Self::Provider,
        Self::GenerationFailed,
        Self::JobLost,
        Self::Unavailable,
        Self::Paused,
        Self::Timeout,
        Self::Overloaded,
        Self::Forbidden,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::Validation => "VALIDATION_ERROR",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::ModelNotFound => "MODEL_NOT_FOUND",
            Self::NotFound => "NOT_FOUND",
            Self::Cancelled => "JOB_CANCELLED",
            Self::WorkflowInvalid => "WORKFLOW_INVALID",
            Self::Internal => "INTERNAL",
            Self::Provider => "PROVIDER_ERROR",
            Self::GenerationFailed => "GENERATION_FAILED",
            Self::JobLost => "JOB_LOST",
            Self::Unavailable => "PROVIDER_UNAVAILABLE",
            Self::Paused => "GATEWAY_PAUSED",
            Self::Timeout => "MEDIA_TIMEOUT",
            Self::Overloaded => "OVERLOADED",
            Self::Forbidden => "FORBIDDEN",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::Validation | Self::UnsupportedMediaType => 400,
            Self::Forbidden => 403,
            Self::ModelNotFound | Self::NotFound => 404,
            Self::Cancelled => 409,
            Self::WorkflowInvalid => 422,
            Self::Internal => 500,
            Self::Provider | Self::GenerationFailed | Self::JobLost => 502,
            Self::Unavailable | Self::Paused | Self::Overloaded => 503,
            Self::Timeout => 504,
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// `provider`, `node_id`, `class_type`, `input`, `model`, `prompt_id`, `field`, ...
    pub details: Map<String, Value>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// Add a detail to the error object.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// Names the provider and the model (workflow) the request went to, null when not
    /// known yet: the contract's error carries both, and callers read them unconditionally.
    pub fn naming(mut self, provider: Option<&str>, model: Option<&str>) -> Self {
        for (key, value) in [("provider", provider), ("model", model)] {
            self.details
                .entry(key)
                .or_insert_with(|| value.map_or(Value::Null, Value::from));
        }
        self
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::Validation,
            format!("{field}: {}", message.into()),
        )
        .with("field", field)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn provider(&self) -> Option<&str> {
        self.details.get("provider").and_then(Value::as_str)
    }

    /// The extra fields of the error object besides `code` and `message`.
    pub fn fields(&self) -> Map<String, Value> {
        self.details.clone()
    }

    /// As stored with a job: `{code, message, ...details}`.
    pub fn to_json(&self) -> Value {
        let mut m = self.details.clone();
        m.insert("code".into(), self.code().into());
        m.insert("message".into(), self.message.clone().into());
        Value::Object(m)
    }

    /// Back from the stored form. A code this build does not know (a newer version
    /// wrote it) is kept visible as an internal error rather than guessed.
    pub fn from_json(v: &Value) -> Self {
        let code = v.get("code").and_then(Value::as_str).unwrap_or("INTERNAL");
        let message = v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("failed")
            .to_string();
        let mut e = match ErrorKind::from_code(code) {
            Some(kind) => Self::new(kind, message),
            None => Self::internal(format!("{message} (stored error code {code:?})")),
        };
        if let Some(obj) = v.as_object() {
            for (k, val) in obj {
                if k != "code" && k != "message" {
                    e.details.insert(k.clone(), val.clone());
                }
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_code_and_has_a_status() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
            assert!((400..=599).contains(&kind.status()), "{kind:?}");
        }
        let e = Error::new(ErrorKind::ModelNotFound, "no such checkpoint")
            .with("provider", "comfyui")
            .with("node_id", "4");
        let back = Error::from_json(&e.to_json());
        assert_eq!(back, e);
        assert_eq!(back.status(), 404);
    }

    #[test]
    fn an_unknown_stored_code_is_internal_and_says_so() {
        let e = Error::from_json(&serde_json::json!({"code": "FUTURE_CODE", "message": "x"}));
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.message.contains("FUTURE_CODE"));
    }
}
