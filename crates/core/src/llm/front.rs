//! The gateway's side of the fronts that speak other APIs (Ollama's, OpenAI's): which
//! provider serves a model, forwarding with the same fail-fast as the Sparklio API,
//! merged model lists, direct chat calls, and the usage row every front request leaves
//! (`role = "front:<name>"`, `task = <endpoint>`, the caller's key id, the request id).

use super::error::Target;
use super::provider::{
    ChatMessage, FailureKind, LlmCall, LlmProvider, LlmReply, ModelEntry, ProviderError,
    ReplyStream, Sampling, StreamEvent,
};
use super::providers::ollama::forward::{Forward, Forwarded};
use super::providers::ollama::OllamaProvider;
use super::{Error, LlmGateway, Slot};
use crate::config::GeneratorMode;
use crate::gateway::{Finished, RequestKind, Requester, UsageRecorder};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who called which endpoint of which front.
#[derive(Debug, Clone)]
pub struct FrontCall {
    /// `ollama`, `openai`.
    pub front: &'static str,
    /// `chat`, `generate`, `embed`, `tags`, `chat_completions`, …
    pub endpoint: &'static str,
    pub request_id: String,
    pub requester: Requester,
    /// The request's own time limit, if it asked for one.
    pub timeout: Option<Duration>,
}

impl FrontCall {
    pub(super) fn finished(&self) -> Finished {
        let mut f = Finished::new(RequestKind::Llm, &self.request_id, self.requester.clone());
        f.role = Some(format!("front:{}", self.front));
        f.task = Some(self.endpoint.to_string());
        f.mode = Some(self.front.to_string());
        f
    }
}

/// A forwarded answer on its way to the client, counted when it ends.
pub struct FrontStream {
    pub status: u16,
    pub content_type: Option<String>,
    pub provider: String,
    pub instance: String,
    pub body: BoxStream<'static, Result<Bytes, Error>>,
}

/// The longest NDJSON line kept for counting tokens (a final line is small; an
/// embedding's line is large and is not needed whole).
const MAX_COUNTED_LINE: usize = 256 * 1024;

/// Reads Ollama's counts (`prompt_eval_count`, `eval_count`) from the lines passing by.
#[derive(Default)]
struct TokenMeter {
    partial: Vec<u8>,
    overflow: bool,
    prompt: Option<u64>,
    completion: Option<u64>,
    error: Option<String>,
    /// A line said `"done": true` (a generation's last).
    done: bool,
    /// A line too long to read was seen (an unstreamed answer's `context` of tens of
    /// thousands of tokens): whether the answer was done cannot be told then.
    unread: bool,
}

impl TokenMeter {
    fn feed(&mut self, bytes: &[u8]) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            if self.overflow || self.partial.len() + piece.len() > MAX_COUNTED_LINE {
                self.overflow = true;
            } else {
                self.partial.extend_from_slice(piece);
            }
            if piece.ends_with(b"\n") {
                self.line_done();
            }
        }
    }

    fn line_done(&mut self) {
        if self.overflow {
            self.unread = true;
        } else if let Ok(v) = serde_json::from_slice::<Value>(&self.partial) {
            if let Some(p) = v.get("prompt_eval_count").and_then(Value::as_u64) {
                self.prompt = Some(p);
            }
            if let Some(c) = v.get("eval_count").and_then(Value::as_u64) {
                self.completion = Some(c);
            }
            if let Some(e) = v.get("error").and_then(Value::as_str) {
                self.error = Some(e.chars().take(300).collect());
            }
            if v.get("done").and_then(Value::as_bool) == Some(true) {
                self.done = true;
            }
        }
        self.partial.clear();
        self.overflow = false;
    }

    fn tokens(&self) -> Option<(u64, u64)> {
        match (self.prompt, self.completion) {
            (None, None) => None,
            (p, c) => Some((p.unwrap_or(0), c.unwrap_or(0))),
        }
    }
}

/// Writes the usage row when the answer ends — or when the client drops it midway.
struct UsageOnDrop {
    usage: UsageRecorder,
    finished: Option<Finished>,
    started: Instant,
    meter: TokenMeter,
}

impl UsageOnDrop {
    fn end(&mut self, error: Option<(&str, u16)>) {
        let Some(mut f) = self.finished.take() else {
            return;
        };
        self.meter.line_done();
        f.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        f.tokens = self.meter.tokens();
        if let Some((code, status)) = error {
            f.error_code = Some(code.to_string());
            f.status = status;
        } else if f.status >= 400 {
            f.error_code = Some(upstream_code(f.status).to_string());
        }
        let usage = self.usage.clone();
        tokio::spawn(async move { usage.record(f).await });
    }
}

impl Drop for UsageOnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.finished.as_mut() {
            // Dropped before the end: the client went away.
            f.cancelled = true;
            f.status = 499;
        }
        if self.finished.is_some() {
            self.end(Some(("CLIENT_CLOSED", 499)));
        }
    }
}

fn upstream_code(status: u16) -> &'static str {
    match status {
        404 => "MODEL_NOT_FOUND",
        400..=499 => "VALIDATION_ERROR",
        _ => "PROVIDER_ERROR",
    }
}

/// A provider failure as the gateway's error (same codes as `/api/v1/llm/generate`).
pub fn provider_error(target: Target, e: ProviderError) -> Error {
    let message = e.message;
    match e.kind {
        FailureKind::Unavailable => Error::Unavailable {
            target,
            message,
            instance: e.instance,
            retry_after_s: e.retry_after_s,
        },
        FailureKind::Overloaded => Error::Overloaded {
            target,
            message,
            retry_after_s: e.retry_after_s.unwrap_or(1),
        },
        FailureKind::Timeout => Error::Timeout { target, message },
        FailureKind::ModelNotFound => Error::ModelNotFound {
            target,
            message,
            upstream_status: e.upstream_status,
        },
        FailureKind::Upstream => Error::Upstream {
            target,
            message,
            upstream_status: e.upstream_status,
        },
    }
}

/// A model as one backend has it, for merged lists.
#[derive(Debug, Clone)]
pub struct HeldModel {
    pub provider: String,
    pub entry: ModelEntry,
}

/// Where a direct (front) chat call goes.
pub struct DirectTarget {
    pub provider_label: String,
    pub provider: Arc<dyn LlmProvider>,
    pub model: String,
    pub generator_mode: GeneratorMode,
}

/// A front's chat request, already in the gateway's terms.
#[derive(Debug, Clone)]
pub struct DirectChat {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub sampling: Sampling,
    pub json: bool,
    /// A JSON Schema the answer must follow (structured outputs).
    pub schema: Option<Value>,
    /// Tools the model may call.
    pub tools: Option<Value>,
}

impl LlmGateway {
    /// The Ollama providers that can take calls: the default route's first, then the
    /// others in config order.
    pub fn ollama_backends(&self) -> Vec<(String, Arc<dyn LlmProvider>)> {
        let setup = self.setup();
        let first = setup.router.default_provider();
        let mut out: Vec<(String, Arc<dyn LlmProvider>)> = setup
            .slots()
            .filter_map(|(name, slot)| match slot {
                Slot::Ready(p) if p.kind() == "ollama" => Some((name.clone(), p.clone())),
                _ => None,
            })
            .collect();
        out.sort_by_key(|(name, _)| name != first);
        out
    }

    pub(super) fn ollama(p: &Arc<dyn LlmProvider>) -> Option<&OllamaProvider> {
        p.as_any()?.downcast_ref::<OllamaProvider>()
    }

    /// The backend for a model: the first whose instances report it installed or
    /// loaded, else the default route's (which answers "model not found" itself).
    pub(super) fn backend_for(
        &self,
        model: Option<&str>,
    ) -> Result<(String, Arc<dyn LlmProvider>), Error> {
        let backends = self.ollama_backends();
        let chosen = model
            .and_then(|m| {
                backends
                    .iter()
                    .find(|(_, p)| Self::ollama(p).is_some_and(|o| o.has_model(m)))
            })
            .or_else(|| backends.first())
            .cloned();
        chosen.ok_or_else(|| Error::Unavailable {
            target: Target::default(),
            message:
                "no Ollama provider is configured (add [llm.providers.ollama] with a base_url)"
                    .into(),
            instance: None,
            retry_after_s: None,
        })
    }

    /// Down or paused: answer now, without touching the network.
    fn front_gate(&self, provider: &str, target: &Target) -> Result<(), Error> {
        if self.links.runtime.paused() {
            return Err(Error::Paused);
        }
        if let Some(reason) = self.links.board.down_reason(provider) {
            return Err(Error::Unavailable {
                target: target.clone(),
                message: format!("provider {provider} is down: {reason}"),
                instance: None,
                retry_after_s: None,
            });
        }
        Ok(())
    }

    /// The Ollama provider named `name`, ready for calls.
    pub(super) fn ollama_backend(
        &self,
        name: &str,
    ) -> Result<(String, Arc<dyn LlmProvider>), Error> {
        self.ollama_backends()
            .into_iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| {
                Error::validation(
                    "provider",
                    format!(
                        "{name:?} is not a configured Ollama provider (have: {})",
                        self.ollama_backends()
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    }

    /// Forward one Ollama API call to the instance that holds `model`, streaming the
    /// answer back; the usage row is written when it ends.
    pub async fn ollama_forward(
        &self,
        call: &FrontCall,
        method: reqwest::Method,
        path: &str,
        body: Option<Bytes>,
        model: Option<String>,
    ) -> Result<FrontStream, Error> {
        self.forward_counted(call, None, method, path, body, model)
            .await
    }

    /// As [`Self::ollama_forward`], on the named provider.
    pub async fn ollama_forward_to(
        &self,
        call: &FrontCall,
        provider: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Bytes>,
        model: Option<String>,
    ) -> Result<FrontStream, Error> {
        self.forward_counted(call, Some(provider), method, path, body, model)
            .await
    }

    async fn forward_counted(
        &self,
        call: &FrontCall,
        provider: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Bytes>,
        model: Option<String>,
    ) -> Result<FrontStream, Error> {
        let started = Instant::now();
        let mut finished = call.finished();
        finished.model.clone_from(&model);
        let result = self
            .forward_inner(call, provider, method, path, body, model)
            .await;
        // A generation's answer ends with its `done` line; one that stops cleanly before
        // it was cut off upstream, and is told as a failure, not passed on as whole.
        let must_finish = matches!(call.endpoint, "chat" | "generate");
        match result {
            Ok((provider, fwd)) => {
                let must_finish = must_finish && fwd.status == 200;
                finished.provider = Some(provider.clone());
                finished.status = fwd.status;
                let guard = UsageOnDrop {
                    usage: self.links.usage.clone(),
                    finished: Some(finished),
                    started,
                    meter: TokenMeter::default(),
                };
                let target = Target {
                    provider: Some(provider.clone()),
                    model: guard.finished.as_ref().and_then(|f| f.model.clone()),
                };
                let body = futures::stream::unfold(
                    (fwd.body, guard, target, false),
                    move |(mut up, mut guard, target, done)| async move {
                        if done {
                            return None;
                        }
                        match up.next().await {
                            Some(Ok(bytes)) => {
                                guard.meter.feed(&bytes);
                                Some((Ok(bytes), (up, guard, target, false)))
                            }
                            Some(Err(e)) => {
                                let e = provider_error(target.clone(), e);
                                guard.end(Some((e.code(), e.status())));
                                Some((Err(e), (up, guard, target, true)))
                            }
                            None => {
                                // The last line may have no newline (a non-streamed answer).
                                guard.meter.line_done();
                                let m = &guard.meter;
                                if must_finish && !m.done && !m.unread && m.error.is_none() {
                                    let e = provider_error(
                                        target.clone(),
                                        ProviderError::new(
                                            FailureKind::Upstream,
                                            format!(
                                                "{} closed the answer before it was done",
                                                target
                                                    .provider
                                                    .as_deref()
                                                    .unwrap_or("the provider")
                                            ),
                                        ),
                                    );
                                    guard.end(Some((e.code(), e.status())));
                                    return Some((Err(e), (up, guard, target, true)));
                                }
                                guard.end(None);
                                None
                            }
                        }
                    },
                )
                .boxed();
                Ok(FrontStream {
                    status: fwd.status,
                    content_type: fwd.content_type,
                    provider,
                    instance: fwd.instance,
                    body,
                })
            }
            Err((provider, e)) => {
                finished.provider = provider;
                finished.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                finished.error_code = Some(e.code().to_string());
                finished.status = e.status();
                self.links.usage.record(finished).await;
                Err(e)
            }
        }
    }

    async fn forward_inner(
        &self,
        call: &FrontCall,
        provider: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Bytes>,
        model: Option<String>,
    ) -> Result<(String, Forwarded), (Option<String>, Error)> {
        let (name, provider) = match provider {
            Some(p) => self.ollama_backend(p),
            None => self.backend_for(model.as_deref()),
        }
        .map_err(|e| (None, e))?;
        let target = Target {
            provider: Some(name.clone()),
            model: model.clone(),
        };
        self.front_gate(&name, &target)
            .map_err(|e| (Some(name.clone()), e))?;
        let ollama = Self::ollama(&provider).expect("ollama backends are Ollama providers");
        let limit = [Some(ollama.overall_timeout()), call.timeout]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| ollama.overall_timeout());
        let fwd = ollama
            .forward(Forward {
                method,
                path: path.to_string(),
                body,
                model,
                instance: None,
                deadline: Instant::now() + limit,
            })
            .await
            .map_err(|e| {
                self.note_error(&name, &e.message);
                (Some(name.clone()), provider_error(target.clone(), e))
            })?;
        Ok((name, fwd))
    }

    /// Every model of every Ollama backend, each with the provider and instances that
    /// hold it. Fails only when no backend answers.
    pub async fn ollama_models(&self) -> Result<Vec<HeldModel>, Error> {
        let backends = self.ollama_backends();
        if backends.is_empty() {
            return Err(self.backend_for(None).err().unwrap_or(Error::ShuttingDown));
        }
        let lists = futures::future::join_all(backends.iter().map(|(name, p)| async move {
            if let Some(reason) = self.links.board.down_reason(name) {
                return (
                    name.clone(),
                    Err(ProviderError::new(
                        FailureKind::Unavailable,
                        format!("provider {name} is down: {reason}"),
                    )),
                );
            }
            (name.clone(), p.list_models().await)
        }))
        .await;
        let mut out = Vec::new();
        let mut first_error = None;
        for (provider, list) in lists {
            match list {
                Ok(models) => {
                    self.links
                        .usage
                        .labels()
                        .allow_models(models.iter().map(|m| m.name.as_str()));
                    out.extend(models.into_iter().map(|entry| HeldModel {
                        provider: provider.clone(),
                        entry,
                    }));
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| {
                        provider_error(Target::new(provider.clone(), ""), e)
                    });
                }
            }
        }
        match (out.is_empty(), first_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }

    /// Forward a cheap GET (`/api/version`, `/api/ps`, `/api/tags`) to every Ollama
    /// backend's instances and return each answer body (for merging).
    pub async fn ollama_each_instance(
        &self,
        path: &str,
    ) -> Vec<(String, String, Result<Value, Error>)> {
        let mut out = Vec::new();
        for (name, p) in self.ollama_backends() {
            let Some(ollama) = Self::ollama(&p) else {
                continue;
            };
            if let Some(reason) = self.links.board.down_reason(&name) {
                out.push((
                    name.clone(),
                    String::new(),
                    Err(Error::Unavailable {
                        target: Target::new(name.clone(), ""),
                        message: format!("provider {name} is down: {reason}"),
                        instance: None,
                        retry_after_s: None,
                    }),
                ));
                continue;
            }
            for instance in ollama.instance_names() {
                let result = ollama
                    .forward(Forward {
                        method: reqwest::Method::GET,
                        path: path.to_string(),
                        body: None,
                        model: None,
                        instance: Some(instance.clone()),
                        deadline: Instant::now() + ollama.control_timeout(),
                    })
                    .await
                    .map_err(|e| provider_error(Target::new(name.clone(), ""), e));
                let value = match result {
                    Ok(fwd) => read_json(fwd)
                        .await
                        .map_err(|e| provider_error(Target::new(name.clone(), ""), e)),
                    Err(e) => Err(e),
                };
                out.push((name.clone(), instance, value));
            }
        }
        out
    }

    /// The usage row of a front request answered without a provider call of its own
    /// (merged lists): `error` is its code and status when it failed.
    pub async fn record_front(&self, call: &FrontCall, error: Option<(&str, u16)>) {
        let mut f = call.finished();
        if let Some((code, status)) = error {
            f.error_code = Some(code.to_string());
            f.status = status;
        }
        self.links.usage.record(f).await;
    }

    /// Where a front's chat call for `model` goes: the mock in mock mode; else a
    /// configured alias, else the backend that has the model installed.
    pub fn direct_target(
        &self,
        model: &str,
        aliases: &std::collections::BTreeMap<String, crate::config::FrontModel>,
    ) -> Result<DirectTarget, Error> {
        if self.links.runtime.paused() {
            return Err(Error::Paused);
        }
        let (provider_name, upstream_model) = match aliases.get(model) {
            Some(alias) => (alias.provider.clone(), alias.model.clone()),
            None => {
                let (name, _) = self.backend_for(Some(model))?;
                (name, model.to_string())
            }
        };
        if self.links.runtime.mode() == GeneratorMode::Mock {
            return Ok(DirectTarget {
                provider_label: "mock".into(),
                provider: self.mock.clone(),
                model: upstream_model,
                generator_mode: GeneratorMode::Mock,
            });
        }
        let target = Target::new(provider_name.clone(), upstream_model.clone());
        let provider = match self.setup().slot(&provider_name) {
            Some(Slot::Ready(p)) => p.clone(),
            Some(Slot::Broken(why)) => {
                return Err(Error::Unavailable {
                    target,
                    message: format!("provider {provider_name} is misconfigured: {why}"),
                    instance: None,
                    retry_after_s: None,
                })
            }
            None => {
                return Err(Error::ModelNotFound {
                    target,
                    message: format!(
                    "model {model:?} maps to provider {provider_name:?}, which is not configured"
                ),
                    upstream_status: None,
                })
            }
        };
        self.front_gate(&provider_name, &target)?;
        let generator_mode = if provider.is_mock() {
            GeneratorMode::Mock
        } else {
            GeneratorMode::Live
        };
        Ok(DirectTarget {
            provider_label: provider_name,
            provider,
            model: upstream_model,
            generator_mode,
        })
    }

    fn direct_call(&self, target: &DirectTarget, chat: DirectChat, call: &FrontCall) -> LlmCall {
        let limit = [Some(target.provider.timeout()), call.timeout]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| target.provider.timeout());
        let input = serde_json::json!({
            "messages": chat.messages.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
        });
        LlmCall {
            model: target.model.clone(),
            deadline: Instant::now() + limit,
            messages: chat.messages,
            json: chat.json || chat.schema.is_some(),
            schema: chat.schema,
            tools: chat.tools,
            sampling: chat.sampling,
            context: super::provider::CallContext {
                role: format!("front:{}", call.front),
                task: call.endpoint.to_string(),
                mode: if chat.json { "json" } else { "chat" }.into(),
                input,
                contract: None,
            },
        }
    }

    /// One complete answer for a front's chat request; the usage row is written.
    pub async fn direct_chat(
        &self,
        target: &DirectTarget,
        chat: DirectChat,
        call: &FrontCall,
    ) -> Result<LlmReply, Error> {
        let started = Instant::now();
        let llm_call = self.direct_call(target, chat, call);
        let result = target.provider.chat(&llm_call).await.map_err(|e| {
            self.note_error(&target.provider_label, &e.message);
            provider_error(
                Target::new(target.provider_label.clone(), target.model.clone()),
                e,
            )
        });
        let mut f = call.finished();
        f.provider = Some(target.provider_label.clone());
        f.model = Some(target.model.clone());
        f.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok(reply) => {
                f.tokens = Some((reply.usage.prompt_tokens, reply.usage.completion_tokens));
            }
            Err(e) => {
                f.error_code = Some(e.code().to_string());
                f.status = e.status();
            }
        }
        self.links.usage.record(f).await;
        result
    }

    /// A streamed answer for a front's chat request: deltas, then the whole reply;
    /// the usage row is written when it ends (or the client leaves).
    pub async fn direct_chat_stream(
        &self,
        target: &DirectTarget,
        chat: DirectChat,
        call: &FrontCall,
    ) -> Result<BoxStream<'static, Result<StreamEvent, Error>>, Error> {
        let started = Instant::now();
        let llm_call = self.direct_call(target, chat, call);
        let error_target = Target::new(target.provider_label.clone(), target.model.clone());
        let mut f = call.finished();
        f.provider = Some(target.provider_label.clone());
        f.model = Some(target.model.clone());
        let stream: ReplyStream = match target.provider.chat_stream(&llm_call).await {
            Ok(s) => s,
            Err(e) => {
                self.note_error(&target.provider_label, &e.message);
                let e = provider_error(error_target, e);
                f.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                f.error_code = Some(e.code().to_string());
                f.status = e.status();
                self.links.usage.record(f).await;
                return Err(e);
            }
        };
        let guard = UsageOnDrop {
            usage: self.links.usage.clone(),
            finished: Some(f),
            started,
            meter: TokenMeter::default(),
        };
        Ok(futures::stream::unfold(
            (stream, guard, error_target, false),
            |(mut up, mut guard, target, done)| async move {
                if done {
                    return None;
                }
                match up.next().await {
                    Some(Ok(StreamEvent::Done(reply))) => {
                        guard.meter.prompt = Some(reply.usage.prompt_tokens);
                        guard.meter.completion = Some(reply.usage.completion_tokens);
                        guard.end(None);
                        Some((Ok(StreamEvent::Done(reply)), (up, guard, target, true)))
                    }
                    Some(Ok(delta)) => Some((Ok(delta), (up, guard, target, false))),
                    Some(Err(e)) => {
                        let e = provider_error(target.clone(), e);
                        guard.end(Some((e.code(), e.status())));
                        Some((Err(e), (up, guard, target, true)))
                    }
                    None => {
                        guard.end(Some(("PROVIDER_ERROR", 502)));
                        None
                    }
                }
            },
        )
        .boxed())
    }
}

/// A forwarded answer read whole (small control answers only).
pub async fn read_json(fwd: Forwarded) -> Result<Value, ProviderError> {
    const MAX: usize = 4 * 1024 * 1024;
    let mut body = Vec::new();
    let mut stream = fwd.body;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX {
            return Err(ProviderError::new(
                FailureKind::Upstream,
                format!("{} answered more than {MAX} bytes", fwd.instance),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if !(200..300).contains(&fwd.status) {
        let mut e = ProviderError::new(
            FailureKind::Upstream,
            format!(
                "{} answered {}: {}",
                fwd.instance,
                fwd.status,
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ),
        );
        e.upstream_status = Some(fwd.status);
        return Err(e);
    }
    serde_json::from_slice(&body).map_err(|e| {
        ProviderError::new(
            FailureKind::Upstream,
            format!("unreadable answer from {}: {e}", fwd.instance),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_reads_counts_across_split_lines_and_ignores_huge_ones() {
        let mut m = TokenMeter::default();
        m.feed(b"{\"message\":{\"content\":\"hi\"},\"done\":false}\n{\"done\":true,\"prompt_eval");
        m.feed(b"_count\":12,\"eval_count\":34}\n");
        assert_eq!(m.tokens(), Some((12, 34)));
        let mut big = TokenMeter::default();
        let line = format!(
            "{{\"embeddings\":[[{}]],\"prompt_eval_count\":5}}",
            "0.1,".repeat(100_000) + "0.1"
        );
        big.feed(line.as_bytes());
        big.line_done();
        assert_eq!(big.tokens(), None, "an over-long line is not kept");
        let mut small = TokenMeter::default();
        small.feed(b"{\"embeddings\":[[0.1]],\"prompt_eval_count\":5}");
        small.line_done();
        assert_eq!(small.tokens(), Some((5, 0)));
    }
}
