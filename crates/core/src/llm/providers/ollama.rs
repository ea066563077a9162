//! Ollama over its HTTP API: `POST /api/chat` (JSON mode via `format: "json"`,
//! streaming as NDJSON), `GET /api/tags` and `/api/ps` for models, `GET /api/version`
//! as the cheap health check.
//!
//! Failures are classified so a stopped container answers PROVIDER_UNAVAILABLE at
//! once (connection refused) instead of after the request timeout.

use crate::config::LlmProviderConfig;
use crate::llm::ndjson::{LineError, LineReader};
use crate::llm::provider::{
    channel_stream, FailureKind, HealthReport, LlmCall, LlmProvider, LlmReply, ModelEntry,
    ModelInfo, ProviderError, ReplyStream, StreamEvent, Usage,
};
use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for a TCP connection: an unreachable host (desktop off) must not
/// cost the whole generation timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest NDJSON line accepted from a stream (one token's message is tiny).
const MAX_STREAM_LINE: usize = 1024 * 1024;
/// Timeout of the health, tags and ps calls.
const MAX_CHEAP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct OllamaProvider {
    name: String,
    base_url: String,
    default_model: Option<String>,
    keep_alive: Option<String>,
    timeout: Duration,
    client: reqwest::Client,
}

impl OllamaProvider {
    pub fn build(name: &str, cfg: &LlmProviderConfig) -> anyhow::Result<Arc<dyn LlmProvider>> {
        let base_url = cfg
            .base_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("llm.providers.{name}.base_url is required"))?
            .trim_end_matches('/')
            .to_string();
        let timeout = Duration::from_secs_f64(cfg.timeout_s);
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Arc::new(Self {
            name: name.to_string(),
            base_url,
            default_model: cfg.default_model.clone(),
            keep_alive: cfg.keep_alive.clone(),
            timeout,
            client,
        }))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    fn body(&self, call: &LlmCall, stream: bool) -> Value {
        let mut options = json!({
            "temperature": call.sampling.temperature,
            "top_p": call.sampling.top_p,
            "num_predict": call.sampling.max_tokens,
        });
        if !call.sampling.stop.is_empty() {
            options["stop"] = json!(call.sampling.stop);
        }
        let mut body = json!({
            "model": call.model,
            "messages": call.messages,
            "stream": stream,
            "options": options,
        });
        if call.json {
            body["format"] = json!("json");
        }
        if let Some(k) = &self.keep_alive {
            body["keep_alive"] = json!(k);
        }
        body
    }

    /// Send a chat request and return the response once its status is known to be 2xx.
    async fn send_chat(
        &self,
        call: &LlmCall,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let req = self
            .client
            .post(self.url("/api/chat"))
            .json(&self.body(call, stream));
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.status_error(resp, &call.model).await)
    }

    fn timeout_error(&self) -> ProviderError {
        ProviderError::new(
            FailureKind::Timeout,
            format!(
                "ollama ({}) gave no answer within {:.1} s (llm.providers.{}.timeout_s)",
                self.base_url,
                self.timeout.as_secs_f64(),
                self.name
            ),
        )
    }

    fn transport_error(&self, e: reqwest::Error) -> ProviderError {
        if e.is_connect() {
            // reqwest reports a connect timeout as both connect and timeout: it is
            // still "not reachable", not "slow to answer".
            return ProviderError::new(
                FailureKind::Unavailable,
                format!(
                    "cannot connect to ollama at {}: {} (is the container running?)",
                    self.base_url,
                    root_cause(&e)
                ),
            );
        }
        if e.is_timeout() {
            return self.timeout_error();
        }
        ProviderError::new(
            FailureKind::Upstream,
            format!(
                "ollama at {} failed mid-request: {}",
                self.base_url,
                root_cause(&e)
            ),
        )
    }

    async fn status_error(&self, resp: reqwest::Response, model: &str) -> ProviderError {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let upstream = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| text.chars().take(500).collect());
        let kind = if status == 404 {
            FailureKind::ModelNotFound
        } else {
            FailureKind::Upstream
        };
        let message = match kind {
            FailureKind::ModelNotFound => format!(
                "model {model:?} is not installed on ollama at {} ({upstream}); pull it or change the route",
                self.base_url
            ),
            _ => format!("ollama answered {status}: {upstream}"),
        };
        ProviderError {
            kind,
            message,
            upstream_status: Some(status),
        }
    }

    async fn get_json(&self, path: &str) -> Result<Value, ProviderError> {
        let resp = self
            .client
            .get(self.url(path))
            .timeout(self.timeout.min(MAX_CHEAP_TIMEOUT))
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp, "").await);
        }
        resp.json()
            .await
            .map_err(|e| self.upstream(format!("unreadable {path} answer: {e}")))
    }

    fn upstream(&self, message: String) -> ProviderError {
        ProviderError::new(FailureKind::Upstream, message)
    }
}

/// The innermost error message (e.g. "Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// One `/api/chat` answer object (whole, or one NDJSON line when streaming).
#[derive(Debug, Deserialize, Default)]
struct ChatChunk {
    #[serde(default)]
    model: String,
    #[serde(default)]
    message: Option<ChunkMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    eval_count: u64,
    #[serde(default)]
    total_duration: u64,
    #[serde(default)]
    load_duration: u64,
    #[serde(default)]
    prompt_eval_duration: u64,
    #[serde(default)]
    eval_duration: u64,
}

#[derive(Debug, Deserialize, Default)]
struct ChunkMessage {
    #[serde(default)]
    content: String,
}

impl ChatChunk {
    fn into_reply(self, content: String, fallback_model: &str) -> LlmReply {
        LlmReply {
            model: if self.model.is_empty() {
                fallback_model.to_string()
            } else {
                self.model
            },
            content,
            usage: Usage::new(self.prompt_eval_count, self.eval_count),
            model_info: ModelInfo {
                total_duration: self.total_duration,
                load_duration: self.load_duration,
                prompt_eval_duration: self.prompt_eval_duration,
                eval_duration: self.eval_duration,
            },
            done_reason: self.done_reason,
        }
    }
}

#[async_trait]
impl LlmProvider for OllamaProvider {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &str {
        "ollama"
    }
    fn default_model(&self) -> Option<&str> {
        self.default_model.as_deref()
    }
    fn base_url(&self) -> Option<&str> {
        Some(&self.base_url)
    }

    async fn chat(&self, call: &LlmCall) -> Result<LlmReply, ProviderError> {
        let work = async {
            let resp = self.send_chat(call, false).await?;
            let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
            let chunk: ChatChunk = serde_json::from_slice(&bytes).map_err(|e| {
                self.upstream(format!(
                    "unreadable /api/chat answer ({e}): {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                ))
            })?;
            if let Some(err) = chunk.error {
                return Err(self.upstream(format!("ollama error: {err}")));
            }
            let content = chunk
                .message
                .as_ref()
                .map(|m| m.content.clone())
                .unwrap_or_default();
            Ok(chunk.into_reply(content, &call.model))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| Err(self.timeout_error()))
    }

    async fn chat_stream(&self, call: &LlmCall) -> Result<ReplyStream, ProviderError> {
        let resp = tokio::time::timeout(self.timeout, self.send_chat(call, true))
            .await
            .unwrap_or_else(|_| Err(self.timeout_error()))?;
        let timeout = self.timeout;
        let timeout_err = self.timeout_error();
        let base = self.base_url.clone();
        let model = call.model.clone();
        let body = tokio_util::io::StreamReader::new(
            resp.bytes_stream()
                .map(|r| r.map_err(|e| std::io::Error::other(root_cause(&e)))),
        );
        // Lines may split across network chunks; the upstream may stall (idle timeout
        // per read, since a long answer legitimately streams for minutes).
        let stream = channel_stream(move |tx| async move {
            let mut lines = LineReader::new(body, MAX_STREAM_LINE);
            let mut content = String::new();
            let fail = |message: String| Err(ProviderError::new(FailureKind::Upstream, message));
            loop {
                let line = match lines.next_line(timeout).await {
                    Ok(Some(line)) => line,
                    Ok(None) => {
                        return tx
                            .send(fail(format!(
                                "ollama at {base} closed the stream before it was done"
                            )))
                            .await;
                    }
                    Err(LineError::Stalled(_)) => return tx.send(Err(timeout_err.clone())).await,
                    Err(e) => {
                        return tx
                            .send(fail(format!("ollama at {base} dropped the stream: {e}")))
                            .await;
                    }
                };
                let chunk: ChatChunk = match serde_json::from_slice(&line) {
                    Ok(c) => c,
                    Err(e) => {
                        return tx
                            .send(fail(format!(
                                "unreadable stream line from ollama ({e}): {}",
                                String::from_utf8_lossy(&line[..line.len().min(300)])
                            )))
                            .await;
                    }
                };
                if let Some(err) = chunk.error {
                    return tx.send(fail(format!("ollama error: {err}"))).await;
                }
                let piece = chunk
                    .message
                    .as_ref()
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                if !piece.is_empty() {
                    content.push_str(&piece);
                    if !tx.send(Ok(StreamEvent::Delta(piece))).await {
                        return false;
                    }
                }
                if chunk.done {
                    let reply = chunk.into_reply(std::mem::take(&mut content), &model);
                    return tx.send(Ok(StreamEvent::Done(reply))).await;
                }
            }
        });
        Ok(stream)
    }

    async fn list_models(&self) -> Result<Vec<ModelEntry>, ProviderError> {
        let tags = self.get_json("/api/tags").await?;
        // /api/ps is newer than /api/tags; an Ollama without it still lists models.
        let ps = self.get_json("/api/ps").await.unwrap_or(Value::Null);
        let loaded: Vec<String> = model_names(&ps);
        let vram_of = |name: &str| {
            ps.get("models")?
                .as_array()?
                .iter()
                .find(|m| m.get("name").and_then(Value::as_str) == Some(name))?
                .get("size_vram")?
                .as_u64()
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        Ok(tags
            .get("models")
            .and_then(Value::as_array)
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| {
                        let name = m
                            .get("name")
                            .or_else(|| m.get("model"))
                            .and_then(Value::as_str)?
                            .to_string();
                        let details = m.get("details");
                        Some(ModelEntry {
                            loaded: loaded.contains(&name),
                            size_bytes: m.get("size").and_then(Value::as_u64),
                            family: text(details.and_then(|d| d.get("family"))),
                            parameter_size: text(details.and_then(|d| d.get("parameter_size"))),
                            quantization: text(details.and_then(|d| d.get("quantization_level"))),
                            modified_at: text(m.get("modified_at")),
                            size_vram: vram_of(&name),
                            name,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn health(&self) -> HealthReport {
        let started = Instant::now();
        let result = self.get_json("/api/version").await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(v) => HealthReport {
                reachable: true,
                latency_ms,
                version: v.get("version").and_then(Value::as_str).map(str::to_string),
                error: None,
            },
            Err(e) => HealthReport {
                reachable: false,
                latency_ms,
                version: None,
                error: Some(e.message),
            },
        }
    }
}

fn model_names(v: &Value) -> Vec<String> {
    v.get("models")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("name").or_else(|| m.get("model")))
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::provider::{CallContext, ChatMessage, Sampling};

    fn provider(keep_alive: Option<&str>) -> Arc<dyn LlmProvider> {
        OllamaProvider::build(
            "ollama",
            &LlmProviderConfig {
                kind: "ollama".into(),
                base_url: Some("http://127.0.0.1:1/".into()),
                timeout_s: 5.0,
                default_model: Some("m".into()),
                keep_alive: keep_alive.map(str::to_string),
                cost_per_1k_prompt_tokens: 0.0,
                cost_per_1k_completion_tokens: 0.0,
            },
        )
        .unwrap()
    }

    #[test]
    fn request_body_maps_options() {
        let p = OllamaProvider {
            name: "o".into(),
            base_url: "http://x".into(),
            default_model: None,
            keep_alive: Some("5m".into()),
            timeout: Duration::from_secs(1),
            client: reqwest::Client::new(),
        };
        let call = LlmCall {
            model: "qwen2.5:14b".into(),
            messages: vec![ChatMessage::new("user", "hi")],
            json: true,
            sampling: Sampling {
                temperature: 0.3,
                top_p: 0.8,
                max_tokens: 77,
                stop: vec!["END".into()],
            },
            context: CallContext::default(),
        };
        let b = p.body(&call, false);
        assert_eq!(b["model"], "qwen2.5:14b");
        assert_eq!(b["format"], "json");
        assert_eq!(b["keep_alive"], "5m");
        assert_eq!(b["stream"], false);
        assert_eq!(b["options"]["num_predict"], 77);
        assert_eq!(b["options"]["temperature"], 0.3);
        assert_eq!(b["options"]["top_p"], 0.8);
        assert_eq!(b["options"]["stop"], json!(["END"]));
        assert_eq!(b["messages"][0]["content"], "hi");
    }

    #[test]
    fn base_url_is_trimmed() {
        assert_eq!(provider(None).base_url(), Some("http://127.0.0.1:1"));
    }
}
