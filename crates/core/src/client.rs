//! A small typed client for the gateway's HTTP API — the Rust equivalent of the
//! Sparklio backend's `LLMGatewayClient` / `MediaGatewayClient`. The end-to-end
//! check and the CLI use it, so they exercise the API exactly as the backend does.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;

/// Per-mode timeouts, as the team planned them: short in mock (a mock answers at once,
/// so waiting longer only hides a hang), long in live (models and images are slow).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub llm: Duration,
    pub media: Duration,
}

impl Timeouts {
    pub fn for_mode(live: bool) -> Self {
        if live {
            Self {
                llm: Duration::from_secs(180),
                media: Duration::from_secs(300),
            }
        } else {
            Self {
                llm: Duration::from_secs(5),
                media: Duration::from_secs(10),
            }
        }
    }
}

/// The standard errors as a type.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The gateway answered with its standard error body.
    #[error("{code} ({status}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        provider: Option<String>,
        model: Option<String>,
        request_id: Option<String>,
        /// The whole `error` object (raw answer, violations, node errors, ...).
        error: Value,
    },
    /// No answer within the client's timeout.
    #[error("no answer from the gateway within {0:?}")]
    Timeout(Duration),
    /// The gateway could not be reached or answered something that is not the API.
    #[error("gateway unreachable or not speaking the API: {0}")]
    Transport(String),
}

impl ClientError {
    /// The error code (`PROVIDER_UNAVAILABLE`, ...), or `TIMEOUT` / `TRANSPORT`.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Api { code, .. } => code,
            ClientError::Timeout(_) => "CLIENT_TIMEOUT",
            ClientError::Transport(_) => "TRANSPORT",
        }
    }
}

/// `POST /api/v1/llm/generate` request (the design's shape).
#[derive(Debug, Clone, Serialize)]
pub struct LlmRequest {
    pub role: String,
    pub task: String,
    pub mode: String,
    pub input: Value,
    pub options: Value,
}

impl LlmRequest {
    pub fn json(role: &str, task: &str, input: Value) -> Self {
        Self {
            role: role.into(),
            task: task.into(),
            mode: "json".into(),
            input,
            options: json!({}),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Usage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LlmOutput {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: Value,
    pub content: String,
    pub parsed: Value,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LlmResponse {
    pub provider: String,
    pub model: String,
    pub usage: Usage,
    pub output: LlmOutput,
    pub meta: Value,
    pub timestamp: String,
}

/// `POST /api/v1/media/image/generate` request (the design's shape).
#[derive(Debug, Clone, Serialize)]
pub struct ImageRequest {
    pub kind: String,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    pub options: Value,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ImageInfo {
    pub id: String,
    pub url: String,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub mime_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ImageResponse {
    pub provider: String,
    pub model: String,
    pub images: Vec<ImageInfo>,
    #[serde(default)]
    pub usage: Value,
    #[serde(default)]
    pub meta: Value,
}

#[derive(Clone)]
pub struct GatewayClient {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
    pub timeouts: Timeouts,
}

impl GatewayClient {
    /// `base` like `http://127.0.0.1:11500`; `key` for non-trusted networks.
    pub fn new(base: impl Into<String>, key: Option<String>, timeouts: Timeouts) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_string(),
            key,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .build()
                .expect("http client"),
            timeouts,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Resolve a gateway-relative URL (`/api/v1/media/files/…`) against the base.
    pub fn absolute(&self, url: &str) -> String {
        if url.starts_with("http://") || url.starts_with("https://") {
            url.to_string()
        } else {
            format!("{}{}", self.base, url)
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, ClientError> {
        let req = match &self.key {
            Some(k) => req.bearer_auth(k),
            None => req,
        };
        let resp = req.timeout(timeout).send().await.map_err(|e| {
            if e.is_timeout() {
                ClientError::Timeout(timeout)
            } else {
                ClientError::Transport(e.to_string())
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let error = body.get("error").cloned().unwrap_or(Value::Null);
        let text = |k: &str| error.get(k).and_then(Value::as_str).map(str::to_string);
        Err(ClientError::Api {
            status,
            code: text("code").unwrap_or_else(|| format!("HTTP_{status}")),
            message: text("message").unwrap_or_else(|| body.to_string()),
            provider: text("provider"),
            model: text("model"),
            request_id: text("request_id"),
            error,
        })
    }

    async fn decode<T: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Transport(format!(
                "unexpected answer ({e}): {}",
                String::from_utf8_lossy(&bytes)
            ))
        })
    }

    pub async fn llm_generate(&self, req: &LlmRequest) -> Result<LlmResponse, ClientError> {
        let r = self
            .send(
                self.http
                    .post(format!("{}/api/v1/llm/generate", self.base))
                    .json(req),
                self.timeouts.llm,
            )
            .await?;
        Self::decode(r).await
    }

    pub async fn image_generate(&self, req: &ImageRequest) -> Result<ImageResponse, ClientError> {
        let r = self
            .send(
                self.http
                    .post(format!("{}/api/v1/media/image/generate", self.base))
                    .json(req),
                self.timeouts.media,
            )
            .await?;
        Self::decode(r).await
    }

    /// Download a file the gateway serves (an image URL from a media answer).
    pub async fn download(&self, url: &str) -> Result<(String, Vec<u8>), ClientError> {
        let r = self
            .send(self.http.get(self.absolute(url)), self.timeouts.media)
            .await?;
        let mime = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = r
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok((mime, bytes.to_vec()))
    }

    /// `GET /api/v1/status`.
    pub async fn status(&self) -> Result<Value, ClientError> {
        let r = self
            .send(
                self.http.get(format!("{}/api/v1/status", self.base)),
                Duration::from_secs(5),
            )
            .await?;
        Self::decode(r).await
    }
}
