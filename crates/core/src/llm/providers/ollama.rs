//! Ollama over its HTTP API: `POST /api/chat` (JSON mode via `format: "json"`), `GET
//! /api/tags` and `/api/ps` for models, `GET /api/version` as the cheap health probe.
//!
//! A provider is a set of instances (`base_url` is one, named `main`). A call goes to a
//! healthy instance that already has the model loaded, else one that has it installed,
//! else the least busy. Every call streams from Ollama, even when the caller wants one
//! piece: that is what lets a first-byte timeout (a model's cold load) and an idle
//! timeout (a runner that stalls mid-answer) bound a call instead of one long timeout.
//! A stopped instance answers PROVIDER_UNAVAILABLE at once (connection refused), a
//! wedged one within a probe's time, and an open breaker in microseconds.

pub mod forward;
mod reading;

use crate::config::LlmProviderConfig;
use crate::llm::provider::{
    channel_stream, ChatMessage, FailureKind, HealthReport, LlmCall, LlmProvider, LlmReply,
    ModelEntry, ProviderError, ReplyStream, StreamEvent,
};
use crate::resilience::pool::{probe_once, InstanceView, Preference, Prober};
use crate::resilience::{Instance, Lease, Outcome, PickError, Pool, ProbeError, ProbeFacts};
use crate::runtime::ProviderBoard;
use crate::upstream::{Http1Client, Http1Response, SendError};
use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use reading::{read_answer, Limits, Pieces};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How much of an error answer's body is kept for its message.
const ERROR_TEXT_MAX: usize = 64 * 1024;

/// How often the installed models (`/api/tags`) are re-read by the probe.
const TAGS_EVERY: Duration = Duration::from_secs(30);

/// Timeouts, from the provider's config.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    control: Duration,
    first_byte: Duration,
    idle: Duration,
    overall: Duration,
    probe_every: Duration,
}

pub struct OllamaProvider {
    name: String,
    default_model: Option<String>,
    keep_alive: Option<String>,
    timeouts: Timeouts,
    /// For the control calls (probes, model listings).
    client: reqwest::Client,
    pool: Arc<Pool>,
    /// Each instance's connections (chat calls and the front) and `/api/chat` path,
    /// in the pool's order; `Err` says why its URL cannot be used (calls fail with that).
    upstreams: Vec<Result<Upstream, String>>,
    /// The first instance's URL, for messages and `router/info`.
    base_url: String,
}

impl OllamaProvider {
    pub fn build(name: &str, cfg: &LlmProviderConfig) -> anyhow::Result<Arc<dyn LlmProvider>> {
        Ok(Arc::new(Self::new(name, cfg)?))
    }

    pub fn new(name: &str, cfg: &LlmProviderConfig) -> anyhow::Result<Self> {
        let specs = cfg
            .resilience
            .instances(cfg.base_url.as_deref(), &cfg.instances);
        let Some(first) = specs.first() else {
            anyhow::bail!("llm.providers.{name} needs a base_url or [[instances]]");
        };
        let base_url = first.url.clone();
        let overall = Duration::from_secs_f64(cfg.timeout_s);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms).min(overall))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()?;
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms).min(overall);
        let upstreams = specs
            .iter()
            .map(|s| Upstream::new(&s.url, connect_timeout).map_err(|e| e.to_string()))
            .collect();
        Ok(Self {
            upstreams,
            name: name.to_string(),
            default_model: cfg.default_model.clone(),
            keep_alive: cfg.keep_alive.clone(),
            timeouts: Timeouts {
                control: Duration::from_millis(cfg.control_timeout_ms),
                first_byte: Duration::from_secs_f64(cfg.first_byte_timeout_s).min(overall),
                idle: Duration::from_secs_f64(cfg.idle_timeout_s),
                overall,
                probe_every: Duration::from_millis(cfg.resilience.probe_interval_ms.max(100)),
            },
            client,
            pool: Arc::new(Pool::new(name, specs, cfg.resilience.breaker())),
            base_url,
        })
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    fn body<'a>(&'a self, call: &'a LlmCall, stream: bool) -> ChatRequest<'a> {
        ChatRequest {
            model: &call.model,
            messages: &call.messages,
            stream,
            options: ChatOptions {
                temperature: call.sampling.temperature,
                top_p: call.sampling.top_p,
                num_predict: call.sampling.max_tokens,
                stop: &call.sampling.stop,
                seed: call.sampling.seed,
                presence_penalty: call.sampling.presence_penalty,
                frequency_penalty: call.sampling.frequency_penalty,
            },
            format: match &call.schema {
                Some(schema) => Some(Format::Schema(schema)),
                None => call.json.then_some(Format::Named("json")),
            },
            tools: call.tools.as_ref(),
            keep_alive: self.keep_alive.as_deref(),
        }
    }

    /// The `/api/chat` request's body, asking for the answer line by line (`reading`).
    fn chat_body(&self, call: &LlmCall) -> Result<Bytes, ProviderError> {
        // Sized for a typical chat body (two prompts), so it is not regrown on the way.
        let mut body = Vec::with_capacity(2048);
        serde_json::to_writer(&mut body, &self.body(call, true)).map_err(|e| {
            ProviderError::new(
                FailureKind::Upstream,
                format!("the request to ollama could not be built: {e}"),
            )
        })?;
        Ok(body.into())
    }

    /// An instance's connections, made once (not for every call).
    fn upstream(&self, inst: &Instance) -> Result<&Upstream, String> {
        self.pool
            .instances
            .iter()
            .position(|i| std::ptr::eq(Arc::as_ptr(i), inst))
            .and_then(|i| self.upstreams.get(i))
            .ok_or_else(|| "not an instance of this provider".to_string())?
            .as_ref()
            .map_err(Clone::clone)
    }

    fn timeout_error(&self, inst: &Instance, what: &str, limit: Duration) -> ProviderError {
        ProviderError::new(
            FailureKind::Timeout,
            format!(
                "{} ({}) gave {what} within {:.1} s",
                inst.label(),
                inst.spec.url,
                limit.as_secs_f64(),
            ),
        )
        .on_instance(inst.label())
    }

    fn transport_error(&self, inst: &Instance, e: &SendError) -> (ProviderError, Outcome) {
        if e.not_sent() {
            // A connect timeout is still "not reachable", not "slow to answer".
            return (
                ProviderError::new(
                    FailureKind::Unavailable,
                    format!(
                        "cannot connect to {} at {}: {} (is the container running?)",
                        inst.label(),
                        inst.spec.url,
                        e.message()
                    ),
                )
                .on_instance(inst.label()),
                Outcome::ConnectFailure,
            );
        }
        // Reset after the request went out: it may be running there, so not "not sent".
        let mut err = ProviderError::new(
            FailureKind::Unavailable,
            format!(
                "{} at {} dropped the request: {}",
                inst.label(),
                inst.spec.url,
                e.message()
            ),
        )
        .on_instance(inst.label());
        err.upstream_status = Some(0);
        (err, Outcome::ConnectFailure)
    }

    /// An answer that is not a success: its status and body's `error` (read within the
    /// control timeout) become the call's error.
    async fn status_error(
        &self,
        inst: &Instance,
        status: u16,
        body: impl std::future::Future<Output = Option<String>>,
        model: &str,
    ) -> (ProviderError, Outcome) {
        let text = tokio::time::timeout(self.timeouts.control, body)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let upstream = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| text.chars().take(500).collect());
        let (kind, outcome) = match status {
            404 => (FailureKind::ModelNotFound, Outcome::ClientError),
            s if s >= 500 => (FailureKind::Upstream, Outcome::ServerError),
            _ => (FailureKind::Upstream, Outcome::ClientError),
        };
        let message = match kind {
            FailureKind::ModelNotFound => format!(
                "model {model:?} is not installed on {} at {} ({upstream}); pull it or change the route",
                inst.label(),
                inst.spec.url
            ),
            _ => format!("{} answered {status}: {upstream}", inst.label()),
        };
        let mut e = ProviderError::new(kind, message).on_instance(inst.label());
        e.upstream_status = Some(status);
        (e, outcome)
    }

    /// The instance for a call: healthy, then has the model loaded, then installed.
    async fn lease(
        &self,
        model: &str,
        deadline: Instant,
        tried: &[String],
    ) -> Result<Lease, ProviderError> {
        let prefer: Preference<'_> = &|i: &Instance| {
            let f = i.facts();
            if f.loaded.iter().any(|m| crate::llm::same_model(m, model)) {
                0
            } else if f.installed.iter().any(|m| crate::llm::same_model(m, model)) {
                1
            } else {
                2
            }
        };
        self.pool
            .acquire_excluding(prefer, deadline, tried)
            .await
            .map_err(|e| pick_error(&self.name, e))
    }

    /// Send the chat request to one instance and wait for its answer to begin (its
    /// headers), bounded by the first-byte timeout, the deadline, and the instance being
    /// found wedged meanwhile.
    async fn begin(
        &self,
        lease: &Lease,
        call: &LlmCall,
        body: Bytes,
    ) -> Result<Http1Response, (ProviderError, Outcome)> {
        let inst = &lease.instance;
        let first_byte = self.first_byte_limit(call);
        let started = async {
            let chat = self
                .upstream(inst)
                .map_err(|why| self.transport_error(inst, &SendError::NotSent(why)))?;
            let resp = chat
                .client
                .post_json(&chat.chat_uri, body)
                .await
                .map_err(|e| self.transport_error(inst, &e))?;
            if !resp.status().is_success() {
                let status = resp.status().as_u16();
                let body = async { resp.text(ERROR_TEXT_MAX).await.ok() };
                return Err(self.status_error(inst, status, body, &call.model).await);
            }
            Ok(resp)
        };
        tokio::select! {
            r = tokio::time::timeout(first_byte, started) => r.unwrap_or_else(|_| Err((
                self.timeout_error(inst, "no answer", first_byte),
                Outcome::Timeout,
            ))),
            () = inst.wedged_after(lease.epoch()) => Err(wedged_error(inst)),
        }
    }

    /// Pick an instance and start the call there (another if it refused).
    async fn start(&self, call: &LlmCall) -> Result<(Lease, Http1Response), ProviderError> {
        // Built once, before a slot is taken: the slot is held for the instance's work
        // only, and a second instance is sent the same bytes.
        let body = self.chat_body(call)?;
        let mut attempts = Attempts::new(Vec::new());
        loop {
            let lease = match self
                .lease(&call.model, call.deadline, &attempts.tried)
                .await
            {
                Ok(l) => l,
                Err(e) => return Err(attempts.exhausted(e)),
            };
            match self.begin(&lease, call, body.clone()).await {
                Ok(resp) => return Ok((lease, resp)),
                Err((e, outcome)) => {
                    if let Some(e) = attempts.failed(lease, e, outcome) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The limits for reading a started call's answer.
    fn read_limits(&self, call: &LlmCall) -> Limits {
        Limits {
            first_byte: self.first_byte_limit(call),
            idle: self.timeouts.idle,
            deadline: call.deadline,
        }
    }

    fn first_byte_limit(&self, call: &LlmCall) -> Duration {
        self.timeouts
            .first_byte
            .min(call.deadline.saturating_duration_since(Instant::now()))
    }

    fn probe_fn(&self) -> Prober {
        let client = self.client.clone();
        Arc::new(move |inst: Arc<Instance>| {
            let client = client.clone();
            async move {
                let get = |path: &str| {
                    let url = format!("{}{path}", inst.spec.url);
                    let client = client.clone();
                    let inst = inst.clone();
                    async move {
                        let r = client.get(&url).send().await.map_err(|e| {
                            if e.is_connect() {
                                ProbeError::Unreachable(format!(
                                    "cannot connect to {} at {}: {} (is the container running?)",
                                    inst.label(),
                                    inst.spec.url,
                                    root_cause(&e)
                                ))
                            } else {
                                ProbeError::Failed(format!("{url}: {}", root_cause(&e)))
                            }
                        })?;
                        if !r.status().is_success() {
                            return Err(ProbeError::Failed(format!("answered {}", r.status())));
                        }
                        r.json::<Value>()
                            .await
                            .map_err(|e| ProbeError::Failed(format!("unreadable answer: {e}")))
                    }
                };
                let version = get("/api/version").await?;
                let ps = get("/api/ps").await.ok();
                let tags_due = inst
                    .facts()
                    .installed_at
                    .is_none_or(|t| t.elapsed() >= TAGS_EVERY);
                let tags = if tags_due {
                    get("/api/tags").await.ok()
                } else {
                    None
                };
                Ok(ProbeFacts {
                    version: version
                        .get("version")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    loaded: ps.as_ref().map(model_names),
                    installed: tags.as_ref().map(model_names),
                    queue_len: None,
                })
            }
            .boxed()
        })
    }

    async fn get_json(&self, inst: &Instance, path: &str) -> Result<Value, ProviderError> {
        let work = async {
            let resp = self
                .client
                .get(format!("{}{path}", inst.spec.url))
                .send()
                .await
                .map_err(|e| self.transport_error(inst, &send_error(&e)).0)?;
            if !resp.status().is_success() {
                let status = resp.status().as_u16();
                let body = async { resp.text().await.ok() };
                return Err(self.status_error(inst, status, body, "").await.0);
            }
            resp.json().await.map_err(|e| {
                ProviderError::new(
                    FailureKind::Upstream,
                    format!("unreadable {path} answer from {}: {e}", inst.label()),
                )
            })
        };
        tokio::time::timeout(self.timeouts.control, work)
            .await
            .unwrap_or_else(|_| {
                Err(self.timeout_error(
                    inst,
                    &format!("no answer to {path}"),
                    self.timeouts.control,
                ))
            })
    }

    /// The models one instance has, with which are loaded and their VRAM.
    async fn instance_models(&self, inst: &Instance) -> Result<Vec<ModelEntry>, ProviderError> {
        let tags = self.get_json(inst, "/api/tags").await?;
        // /api/ps is newer than /api/tags; an Ollama without it still lists models.
        let ps = self.get_json(inst, "/api/ps").await.unwrap_or(Value::Null);
        let loaded: Vec<String> = model_names(&ps);
        inst.update_facts(|f| {
            f.loaded.clone_from(&loaded);
            f.installed = model_names(&tags);
            f.installed_at = Some(Instant::now());
        });
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
                            instances: vec![inst.spec.name.clone()],
                            name,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// The error for "no instance can take this call".
pub fn pick_error(provider: &str, e: PickError) -> ProviderError {
    match e {
        PickError::Unavailable {
            reason,
            retry_after,
        } => {
            let mut err = ProviderError::new(
                FailureKind::Unavailable,
                format!("no instance of {provider} can take the request: {reason}"),
            );
            err.retry_after_s = retry_after.map(|d| d.as_secs().max(1));
            err
        }
        PickError::Overloaded {
            reason,
            retry_after,
        } => {
            let mut err =
                ProviderError::new(FailureKind::Overloaded, format!("{provider}: {reason}"));
            err.retry_after_s = Some(retry_after.as_secs().max(1));
            err
        }
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

/// The instances a request has tried. A request that never reached its instance
/// (refused before it was sent) moves to another; one that was sent does not (it may be
/// running there). When every instance refused, the first refusal is the answer.
struct Attempts {
    tried: Vec<String>,
    first_failure: Option<ProviderError>,
}

impl Attempts {
    /// `tried`: instances not to pick.
    fn new(tried: Vec<String>) -> Self {
        Self {
            tried,
            first_failure: None,
        }
    }

    /// No instance left to lease: the error to answer.
    fn exhausted(&mut self, e: ProviderError) -> ProviderError {
        self.first_failure.take().unwrap_or(e)
    }

    /// A send failed on `lease`'s instance: `None` to try another, else the error.
    fn failed(
        &mut self,
        lease: Lease,
        e: ProviderError,
        outcome: Outcome,
    ) -> Option<ProviderError> {
        let not_sent = outcome == Outcome::ConnectFailure && e.not_sent();
        self.tried.push(lease.instance.spec.name.clone());
        lease.report(outcome, &e.message);
        if !not_sent {
            return Some(e);
        }
        self.first_failure.get_or_insert(e);
        None
    }
}

/// One instance's connections, and `/api/chat` under its base URL.
struct Upstream {
    client: Http1Client,
    chat_uri: hyper::Uri,
}

impl Upstream {
    fn new(base_url: &str, connect_timeout: Duration) -> anyhow::Result<Self> {
        let client = Http1Client::new(base_url, connect_timeout)?;
        let chat_uri = client.uri("/api/chat")?;
        Ok(Self { client, chat_uri })
    }
}

/// A reqwest failure (the control calls) in the terms of the connections' failures.
fn send_error(e: &reqwest::Error) -> SendError {
    if e.is_connect() {
        SendError::NotSent(root_cause(e))
    } else {
        SendError::Broken(root_cause(e))
    }
}

/// The `/api/chat` request, serialised straight from the call: no JSON tree built and
/// no prompt copied on the way.
#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    options: ChatOptions<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Format<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<&'a str>,
}

#[derive(Serialize)]
struct ChatOptions<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
}

/// `format`: a JSON schema, or `"json"`.
#[derive(Serialize)]
#[serde(untagged)]
enum Format<'a> {
    Schema(&'a Value),
    Named(&'static str),
}

/// A call that cannot go on because its instance was found wedged meanwhile.
fn wedged_error(inst: &Instance) -> (ProviderError, Outcome) {
    (
        ProviderError::new(
            FailureKind::Unavailable,
            format!(
                "{} stopped answering (wedged: its health probe timed out)",
                inst.label()
            ),
        )
        .on_instance(inst.label()),
        // Already counted by the probe that found it wedged.
        Outcome::ClientError,
    )
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
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    async fn chat(&self, call: &LlmCall) -> Result<LlmReply, ProviderError> {
        // Read in the caller's own task: the slot is free when the answer is.
        let (lease, resp) = self.start(call).await?;
        let limits = self.read_limits(call);
        read_answer(lease, resp, limits, &call.model, Pieces::Collect)
            .await?
            .ok_or_else(|| {
                ProviderError::new(
                    FailureKind::Upstream,
                    "the stream ended without a final message",
                )
            })
    }

    async fn chat_stream(&self, call: &LlmCall) -> Result<ReplyStream, ProviderError> {
        let (lease, resp) = self.start(call).await?;
        let limits = self.read_limits(call);
        let model = call.model.clone();
        let stream = channel_stream(move |tx| async move {
            // `read_answer` lets the lease go before the end is sent.
            match read_answer(lease, resp, limits, &model, Pieces::Stream(&tx)).await {
                Ok(Some(reply)) => tx.send(Ok(StreamEvent::Done(reply))).await,
                Ok(None) => false,
                Err(e) => tx.send(Err(e)).await,
            }
        });
        Ok(stream)
    }

    async fn list_models(&self) -> Result<Vec<ModelEntry>, ProviderError> {
        let mut merged: Vec<ModelEntry> = Vec::new();
        let mut errors = Vec::new();
        let lists = self.pool.instances.iter().map(|inst| async move {
            // An instance whose breaker is open answers from what it last reported.
            if !inst.breaker().is_closed() {
                let f = inst.facts();
                return Ok(f
                    .installed
                    .iter()
                    .map(|name| ModelEntry {
                        name: name.clone(),
                        size_bytes: None,
                        loaded: f.loaded.contains(name),
                        family: None,
                        parameter_size: None,
                        quantization: None,
                        modified_at: None,
                        size_vram: None,
                        instances: vec![inst.spec.name.clone()],
                    })
                    .collect::<Vec<_>>())
                .and_then(|l: Vec<ModelEntry>| {
                    if l.is_empty() {
                        Err(ProviderError::new(
                            FailureKind::Unavailable,
                            format!(
                                "{}: {}",
                                inst.label(),
                                inst.last_error().unwrap_or_else(|| "breaker open".into())
                            ),
                        ))
                    } else {
                        Ok(l)
                    }
                });
            }
            self.instance_models(inst).await
        });
        for result in futures::future::join_all(lists).await {
            match result {
                Ok(list) => {
                    for m in list {
                        match merged.iter_mut().find(|e| e.name == m.name) {
                            Some(e) => {
                                e.instances.extend(m.instances);
                                e.loaded |= m.loaded;
                            }
                            None => merged.push(m),
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if merged.is_empty() {
            if let Some(e) = errors.into_iter().next() {
                return Err(e);
            }
        }
        Ok(merged)
    }

    async fn health(&self) -> HealthReport {
        // A probe from the last interval and a half is fresh enough; otherwise look now
        // (bounded by the control timeout).
        let stale = |i: &Instance| {
            i.facts()
                .probed_at
                .is_none_or(|t| t.elapsed() > self.timeouts.probe_every * 3 / 2)
        };
        let probe = self.probe_fn();
        let fresh = self
            .pool
            .instances
            .iter()
            .filter(|i| i.breaker().is_closed() && stale(i))
            .map(|i| {
                let probe = probe.clone();
                async move { probe_once(i, self.timeouts.control, &probe).await }
            });
        futures::future::join_all(fresh).await;
        let mut report = HealthReport {
            reachable: false,
            latency_ms: 0.0,
            version: None,
            error: None,
        };
        let mut errors = Vec::new();
        for inst in &self.pool.instances {
            let f = inst.facts();
            let up = f.probe_ok
                && !matches!(
                    inst.breaker(),
                    crate::resilience::breaker::State::Open { .. }
                );
            if up && (!report.reachable || f.probe_latency_ms < report.latency_ms) {
                report.reachable = true;
                report.latency_ms = f.probe_latency_ms;
                report.version.clone_from(&f.version);
            } else if !up {
                if !report.reachable {
                    report.latency_ms = f.probe_latency_ms;
                }
                errors.push(
                    f.probe_error
                        .or_else(|| inst.last_error())
                        .unwrap_or_else(|| format!("{}: breaker open", inst.label())),
                );
            }
        }
        if !report.reachable && !errors.is_empty() {
            report.error = Some(errors.join("; "));
        }
        report
    }

    fn timeout(&self) -> Duration {
        self.timeouts.overall
    }

    fn attach(&self, board: Arc<ProviderBoard>, shutdown: CancellationToken) {
        self.pool.attach_board(board);
        self.pool.spawn_prober(
            self.timeouts.probe_every,
            self.timeouts.control,
            shutdown,
            self.probe_fn(),
        );
    }

    fn inherit(&self, old: &dyn LlmProvider) {
        if let Some(old) = old
            .as_any()
            .and_then(|a| a.downcast_ref::<OllamaProvider>())
        {
            self.pool.inherit(&old.pool);
        }
    }

    fn instances(&self) -> Vec<(String, InstanceView)> {
        self.pool
            .instances
            .iter()
            .map(|i| (i.spec.name.clone(), i.view()))
            .collect()
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
    use crate::llm::provider::{CallContext, Sampling};
    use serde_json::json;

    fn provider(keep_alive: Option<&str>) -> OllamaProvider {
        let mut cfg = LlmProviderConfig::of_kind("ollama");
        cfg.base_url = Some("http://127.0.0.1:1/".into());
        cfg.timeout_s = 5.0;
        cfg.default_model = Some("m".into());
        cfg.keep_alive = keep_alive.map(str::to_string);
        OllamaProvider::new("ollama", &cfg).unwrap()
    }

    #[test]
    fn request_body_maps_options() {
        let p = provider(Some("5m"));
        let call = LlmCall {
            model: "qwen2.5:14b".into(),
            deadline: Instant::now(),
            messages: vec![ChatMessage::new("user", "hi")],
            json: true,
            schema: None,
            tools: None,
            sampling: Sampling {
                temperature: Some(0.3),
                top_p: Some(0.8),
                max_tokens: Some(77),
                stop: vec!["END".into()],
                ..Sampling::default()
            },
            context: CallContext::default(),
        };
        let b = serde_json::to_value(p.body(&call, false)).unwrap();
        assert_eq!(b["model"], "qwen2.5:14b");
        assert_eq!(b["format"], "json");
        assert_eq!(b["keep_alive"], "5m");
        assert_eq!(b["stream"], false);
        assert_eq!(b["options"]["num_predict"], 77);
        assert_eq!(b["options"]["temperature"], 0.3);
        assert_eq!(b["options"]["top_p"], 0.8);
        assert_eq!(b["options"]["stop"], json!(["END"]));
        assert_eq!(b["messages"][0]["content"], "hi");

        // A schema wins over "json"; tools go as given; nothing unset is sent.
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let call = LlmCall {
            schema: Some(schema.clone()),
            tools: Some(tools.clone()),
            sampling: Sampling {
                stop: Vec::new(),
                ..call.sampling
            },
            ..call
        };
        let b = serde_json::to_value(provider(None).body(&call, true)).unwrap();
        assert_eq!(b["format"], schema);
        assert_eq!(b["tools"], tools);
        assert_eq!(b["stream"], true);
        assert!(b.get("keep_alive").is_none(), "{b}");
        assert!(b["options"].get("stop").is_none(), "{b}");
        assert_eq!(b["messages"], json!([{"role": "user", "content": "hi"}]));
    }

    #[test]
    fn base_url_is_trimmed() {
        assert_eq!(provider(None).base_url(), Some("http://127.0.0.1:1"));
    }
}
