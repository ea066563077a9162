//! The one interface every LLM backend implements, and the values that cross it.
//!
//! A provider only talks to its upstream: routing, prompts, JSON parsing, usage
//! logging and metrics stay in the gateway, so adding a provider is one file plus
//! one line in `providers::REGISTRY` plus its config section.

use crate::resilience::pool::InstanceView;
use crate::runtime::ProviderBoard;
use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One chat message sent upstream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// An assistant turn's tool calls (Ollama's shape: `[{function: {name, arguments}}]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    /// A `tool` turn: which tool's result this is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_string(),
            content: content.into(),
            tool_calls: None,
            tool_name: None,
        }
    }
}

/// Sampling settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sampling {
    /// Unset: the model's own (its Modelfile's) value. The gateway's own API always
    /// sets the first three; a front sends only what its client asked for.
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
}

/// What a provider is asked to do: the routed model, the built prompt, the knobs.
#[derive(Debug, Clone)]
pub struct LlmCall {
    pub model: String,
    /// When the whole answer must be in: the provider's `timeout_s`, or sooner when the
    /// request asked for less. Never extended.
    pub deadline: std::time::Instant,
    pub messages: Vec<ChatMessage>,
    /// Switch the provider's JSON mode on.
    pub json: bool,
    /// A JSON Schema the answer must follow (structured outputs), when the caller gave one.
    pub schema: Option<Value>,
    /// Tools the model may call (Ollama's / OpenAI's function format), when given.
    pub tools: Option<Value>,
    pub sampling: Sampling,
    /// The request as the gateway understood it; the mock provider builds its answer from it.
    pub context: CallContext,
}

/// The business side of a call (role/task/input), for providers that answer without a model.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub role: String,
    pub task: String,
    pub mode: String,
    pub input: Value,
    /// The contract the answer will be held to; the mock answers in its shape.
    pub contract: Option<crate::contracts::ContractRef>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// Upstream timings in nanoseconds (Ollama's names), reported as `meta.model_info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    pub total_duration: u64,
    pub load_duration: u64,
    pub prompt_eval_duration: u64,
    pub eval_duration: u64,
}

/// A finished answer.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmReply {
    /// The model that answered (as the upstream names it).
    pub model: String,
    pub content: String,
    pub usage: Usage,
    pub model_info: ModelInfo,
    /// Why generation stopped (`stop`, `length`, ...), when the upstream says.
    pub done_reason: Option<String>,
    /// The tools the model asked to call (Ollama's shape), if any.
    pub tool_calls: Vec<Value>,
}

/// One step of a streamed answer: text pieces, then exactly one `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    /// The whole answer (content = all deltas joined) with its usage.
    Done(LlmReply),
}

pub type ReplyStream = BoxStream<'static, Result<StreamEvent, ProviderError>>;

/// A model a provider can serve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEntry {
    pub name: String,
    pub size_bytes: Option<u64>,
    /// Loaded in memory right now (Ollama `/api/ps`).
    pub loaded: bool,
    /// Model family, parameter count and quantisation, as Ollama reports them.
    pub family: Option<String>,
    pub parameter_size: Option<String>,
    pub quantization: Option<String>,
    pub modified_at: Option<String>,
    /// Bytes of it in GPU memory while loaded (`/api/ps` `size_vram`).
    pub size_vram: Option<u64>,
    /// The instances that have it (`main`, `gpu2`, ...).
    pub instances: Vec<String>,
}

/// The result of a cheap reachability check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    pub reachable: bool,
    pub latency_ms: f64,
    /// Upstream version or similar, when it says.
    pub version: Option<String>,
    pub error: Option<String>,
}

/// How a provider call failed; the gateway turns it into the standard error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Connection refused, DNS failure, unreachable host, service known down.
    Unavailable,
    /// No answer within the provider's timeout.
    Timeout,
    /// The upstream does not have the model.
    ModelNotFound,
    /// Any other upstream failure (HTTP error, dropped connection, unreadable answer).
    Upstream,
    /// Every instance is busy and its queue full (load shedding).
    Overloaded,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderError {
    pub kind: FailureKind,
    pub message: String,
    /// The upstream's HTTP status, when it answered with one.
    pub upstream_status: Option<u16>,
    /// The instance that failed (`ollama/main`), when one was chosen.
    pub instance: Option<String>,
    /// When to try again (an open breaker, a full queue).
    pub retry_after_s: Option<u64>,
}

impl ProviderError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            upstream_status: None,
            instance: None,
            retry_after_s: None,
        }
    }

    pub fn on_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Whether the request never reached an instance (so another may take it).
    pub fn not_sent(&self) -> bool {
        matches!(self.kind, FailureKind::Unavailable) && self.upstream_status.is_none()
    }

    pub fn code(&self) -> &'static str {
        match self.kind {
            FailureKind::Unavailable => "PROVIDER_UNAVAILABLE",
            FailureKind::Timeout => "LLM_TIMEOUT",
            FailureKind::ModelNotFound => "MODEL_NOT_FOUND",
            FailureKind::Upstream => "PROVIDER_ERROR",
            FailureKind::Overloaded => "OVERLOADED",
        }
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message)
    }
}

impl std::error::Error for ProviderError {}

#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// The config name (`[llm.providers.NAME]`).
    fn name(&self) -> &str;
    /// The registry kind (`ollama`, `mock`, ...).
    fn kind(&self) -> &str;
    /// The model used when neither a route nor the request names one.
    fn default_model(&self) -> Option<&str>;
    /// Where it lives, for health/info output.
    fn base_url(&self) -> Option<&str> {
        None
    }
    /// Whether its answers are generated locally without a model (generator_mode "mock").
    fn is_mock(&self) -> bool {
        false
    }
    /// One complete answer.
    async fn chat(&self, call: &LlmCall) -> Result<LlmReply, ProviderError>;
    /// A streamed answer. Errors before the first byte come back as `Err` here, so the
    /// gateway can still answer with a proper HTTP status.
    async fn chat_stream(&self, call: &LlmCall) -> Result<ReplyStream, ProviderError>;
    /// Installed models (and whether each is loaded).
    async fn list_models(&self) -> Result<Vec<ModelEntry>, ProviderError>;
    /// A cheap reachability check (never a generation); answers from the last probe
    /// when it is recent, so a sick instance never blocks it.
    async fn health(&self) -> HealthReport;
    /// The longest a call may take (`timeout_s`); a request may ask for less.
    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(120)
    }
    /// Start background work (probes) and see the supervisor's view of services.
    fn attach(&self, _board: Arc<ProviderBoard>, _shutdown: CancellationToken) {}
    /// A config reload replaced `old` (same name) by this provider: keep what `old`
    /// learned about instances that did not change (breakers, last probe).
    fn inherit(&self, _old: &dyn LlmProvider) {}
    /// Each instance's state (breaker, load, last probe), for health answers.
    fn instances(&self) -> Vec<(String, InstanceView)> {
        Vec::new()
    }
    /// The concrete provider, for fronts that speak its own API (the Ollama front).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// A channel-backed stream: `produce` pushes items through a sender whose `send`
/// returns false once the consumer is gone (so the producer stops reading upstream).
pub fn channel_stream<F, Fut>(produce: F) -> ReplyStream
where
    F: FnOnce(StreamSender) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    tokio::spawn(async move {
        produce(StreamSender(tx)).await;
    });
    futures::StreamExt::boxed(tokio_stream::wrappers::ReceiverStream::new(rx))
}

pub struct StreamSender(tokio::sync::mpsc::Sender<Result<StreamEvent, ProviderError>>);

impl StreamSender {
    /// Send one item; false when the receiver was dropped.
    pub async fn send(&self, item: Result<StreamEvent, ProviderError>) -> bool {
        self.0.send(item).await.is_ok()
    }
}
