//! How an LLM request fails: one variant per stable error code, each carrying what the
//! caller needs to act on it. The HTTP layer turns it into the standard envelope with
//! [`Error::code`], [`Error::status`] and [`Error::fields`].

use super::provider::Usage;
use serde_json::{Map, Value};

/// Provider and model a failure concerns (either may be unknown, e.g. before routing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    pub provider: Option<String>,
    pub model: Option<String>,
}

impl Target {
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            provider: Some(provider.into()),
            model: Some(model.into()),
        }
    }
}

/// What was wrong with an answer that does not fit its contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub raw: String,
    /// Still wrong after the repair round-trip (or the only check, when none ran).
    pub violations: Vec<String>,
    /// What the first answer got wrong, when a repair round-trip ran.
    pub first_violations: Option<Vec<String>>,
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The request is not usable; `field` names the offending part (`options.temperature`).
    #[error("{field}: {message}")]
    Validation {
        field: String,
        message: String,
        target: Target,
    },
    #[error("{}", crate::gateway::PAUSED_MESSAGE)]
    Paused,
    /// Refused connection, misconfigured provider, its service known to be down, an
    /// open breaker or a wedged instance.
    #[error("{message}")]
    Unavailable {
        target: Target,
        message: String,
        /// The instance that failed (`ollama/main`), when one was chosen.
        instance: Option<String>,
        retry_after_s: Option<u64>,
    },
    /// Every instance is busy and its queue full (load shedding).
    #[error("{message}")]
    Overloaded {
        target: Target,
        message: String,
        retry_after_s: u64,
    },
    #[error("{message}")]
    Timeout { target: Target, message: String },
    #[error("{message}")]
    ModelNotFound {
        target: Target,
        message: String,
        upstream_status: Option<u16>,
    },
    /// Any other upstream failure (HTTP error, dropped connection, unreadable answer).
    #[error("{message}")]
    Upstream {
        target: Target,
        message: String,
        upstream_status: Option<u16>,
    },
    /// json mode, and the answer is not JSON even after the local repair.
    #[error("{message}")]
    InvalidJson {
        target: Target,
        message: String,
        raw: String,
    },
    /// json mode, and the answer does not have the contract's shape.
    #[error("{message}")]
    SchemaMismatch {
        target: Target,
        message: String,
        details: Box<Mismatch>,
    },
    #[error("{message}")]
    Internal { target: Target, message: String },
    /// The caller went away before the answer was complete (streams).
    #[error("the client closed the stream")]
    ClientClosed,
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

impl Error {
    /// A failure another provider could answer instead (a configured fallback): the
    /// provider was down, slow, overloaded or failed on its side — never the request's fault.
    pub fn allows_fallback(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::Timeout { .. } | Self::Overloaded { .. } => true,
            Self::Upstream {
                upstream_status, ..
            } => upstream_status.is_none_or(|s| s >= 500),
            _ => false,
        }
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.to_string(),
            message: message.into(),
            target: Target::default(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "VALIDATION_ERROR",
            Self::Paused => "GATEWAY_PAUSED",
            Self::Unavailable { .. } => "PROVIDER_UNAVAILABLE",
            Self::Overloaded { .. } => "OVERLOADED",
            Self::Timeout { .. } => "LLM_TIMEOUT",
            Self::ModelNotFound { .. } => "MODEL_NOT_FOUND",
            Self::Upstream { .. } => "PROVIDER_ERROR",
            Self::InvalidJson { .. } => "LLM_INVALID_JSON",
            Self::SchemaMismatch { .. } => "LLM_SCHEMA_MISMATCH",
            Self::Internal { .. } => "INTERNAL",
            Self::ClientClosed => "CLIENT_CLOSED",
            Self::ShuttingDown => "SHUTTING_DOWN",
        }
    }

    /// The HTTP status this failure is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Validation { .. } => 400,
            Self::ModelNotFound { .. } => 404,
            Self::Internal { .. } => 500,
            Self::Upstream { .. } | Self::InvalidJson { .. } | Self::SchemaMismatch { .. } => 502,
            // nginx's "client closed request": never sent, only logged and counted.
            Self::ClientClosed => 499,
            Self::Paused
            | Self::Unavailable { .. }
            | Self::Overloaded { .. }
            | Self::ShuttingDown => 503,
            Self::Timeout { .. } => 504,
        }
    }

    pub fn target(&self) -> Option<&Target> {
        match self {
            Self::Paused | Self::ClientClosed | Self::ShuttingDown => None,
            Self::Validation { target, .. }
            | Self::Unavailable { target, .. }
            | Self::Overloaded { target, .. }
            | Self::Timeout { target, .. }
            | Self::ModelNotFound { target, .. }
            | Self::Upstream { target, .. }
            | Self::InvalidJson { target, .. }
            | Self::SchemaMismatch { target, .. }
            | Self::Internal { target, .. } => Some(target),
        }
    }

    /// Name the provider and model (where the failure did not already).
    pub fn with_target(mut self, t: &Target) -> Self {
        match &mut self {
            Self::Paused | Self::ClientClosed | Self::ShuttingDown => {}
            Self::Validation { target, .. }
            | Self::Unavailable { target, .. }
            | Self::Overloaded { target, .. }
            | Self::Timeout { target, .. }
            | Self::ModelNotFound { target, .. }
            | Self::Upstream { target, .. }
            | Self::InvalidJson { target, .. }
            | Self::SchemaMismatch { target, .. }
            | Self::Internal { target, .. } => {
                if target.provider.is_none() {
                    target.provider.clone_from(&t.provider);
                }
                if target.model.is_none() {
                    target.model.clone_from(&t.model);
                }
            }
        }
        self
    }

    /// The extra fields of the error object besides `code` and `message`.
    pub fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        // Always named, null when unknown: callers read `error.provider` unconditionally.
        let t = self.target().cloned().unwrap_or_default();
        m.insert("provider".into(), t.provider.into());
        m.insert("model".into(), t.model.into());
        match self {
            Self::Validation { field, .. } => {
                m.insert("field".into(), field.clone().into());
            }
            Self::Upstream {
                upstream_status: Some(s),
                ..
            }
            | Self::ModelNotFound {
                upstream_status: Some(s),
                ..
            } => {
                m.insert("upstream_status".into(), (*s).into());
            }
            Self::Unavailable {
                instance,
                retry_after_s,
                ..
            } => {
                if let Some(i) = instance {
                    m.insert("instance".into(), i.clone().into());
                }
                if let Some(s) = retry_after_s {
                    m.insert("retry_after_s".into(), (*s).into());
                }
            }
            Self::Overloaded { retry_after_s, .. } => {
                m.insert("retry_after_s".into(), (*retry_after_s).into());
            }
            Self::InvalidJson { raw, .. } => {
                m.insert("raw".into(), raw.clone().into());
            }
            Self::SchemaMismatch { details, .. } => {
                let Mismatch {
                    raw,
                    violations,
                    first_violations,
                    usage,
                } = details.as_ref();
                m.insert("raw".into(), raw.clone().into());
                // An answer that is not an object has no field-level violations to list.
                if !violations.is_empty() {
                    m.insert("violations".into(), violations.clone().into());
                }
                if let Some(first) = first_violations {
                    m.insert("first_violations".into(), first.clone().into());
                }
                if let Some(u) = usage {
                    m.insert(
                        "usage".into(),
                        serde_json::to_value(u).unwrap_or(Value::Null),
                    );
                }
            }
            _ => {}
        }
        m
    }
}
