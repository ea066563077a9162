//! The LLM Gateway: Sparklio's agents send role + task + input; the gateway routes
//! it to a provider and model (config), builds the prompt (templates), calls the
//! provider, parses JSON answers, enforces the role contract, records usage, and
//! answers in the Sparklio contract's shape.
//!
//! Transport-free: the HTTP layer parses requests, calls [`LlmGateway::generate`] or
//! [`LlmGateway::stream`], and renders the typed answer or [`Error`].

pub mod answer;
pub mod error;
pub mod front;
pub mod gpu_side;
pub mod json;
pub mod model_actions;
pub mod ndjson;
pub mod prompts;
pub mod provider;
pub mod providers;
pub mod pulls;
pub mod router;
pub mod setup;
pub mod views;
pub mod wire;

pub use answer::{Answer, GenerateAnswer};
pub use error::{Error, Target};

use crate::config::ValidationPolicy;
use crate::config::{GeneratorMode, LlmConfig};
use crate::gateway::{Finished, GatewayLinks, RequestKind, Requester};
use arc_swap::ArcSwap;
use provider::{
    CallContext, ChatMessage, FailureKind, LlmCall, LlmProvider, LlmReply, ProviderError, Sampling,
    StreamEvent, Usage,
};
use providers::mock::MockProvider;
use router::{RouteDecision, RouteQuery};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;
use views::{
    HealthStatus, LlmHealth, LlmModels, ModelRow, ProviderHealth, ProviderInfo, ProviderModels,
    RouterInfo,
};
use wire::{GenerateBody, GenerateRequest};

/// A configured provider, or why it could not be built (one broken provider must
/// not take the gateway down: requests to it fail, the rest work).
#[derive(Clone)]
enum Slot {
    Ready(Arc<dyn LlmProvider>),
    Broken(String),
}

pub struct LlmGateway {
    /// Providers, routes, prompts: replaced whole by a config reload.
    setup: ArcSwap<setup::Setup>,
    /// Answers in mock mode (global or `options.mock`), whatever the route says.
    mock: Arc<dyn LlmProvider>,
    /// Model pulls in progress, one per model.
    pulls: Arc<pulls::PullManager>,
    last_errors: Mutex<BTreeMap<String, String>>,
    links: GatewayLinks,
}

/// Everything decided before calling a provider.
pub struct Plan {
    pub provider: Arc<dyn LlmProvider>,
    /// The provider name reported in the answer (`mock` in mock mode).
    pub provider_label: String,
    pub model: String,
    pub route: RouteDecision,
    pub call: LlmCall,
    pub generator_mode: GeneratorMode,
    pub request: GenerateRequest,
    pub request_id: String,
    /// Earlier targets that failed before this one answered (configured fallbacks).
    pub attempts: Vec<answer::Attempt>,
}

impl Plan {
    fn target(&self) -> Target {
        Target::new(self.provider_label.clone(), self.model.clone())
    }
}

/// Who asked and under which id (the body's `request_id`, else the transport's).
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    pub requester: Requester,
    /// A time limit the transport asked for (`x-request-timeout`), if any.
    pub timeout: Option<std::time::Duration>,
}

/// One step of a streamed answer as the gateway hands it to the transport.
#[derive(Debug)]
pub enum StreamItem {
    Chunk { index: u64, delta: String },
    Done(Box<GenerateAnswer>),
    Failed(Error),
}

/// What the request-level bookkeeping needs while a request runs.
struct Tracker {
    started: Instant,
    finished: Finished,
    target: Target,
}

impl Tracker {
    fn new(ctx: &RequestCtx) -> Self {
        Self {
            started: Instant::now(),
            finished: Finished::new(
                RequestKind::Llm,
                ctx.request_id.clone(),
                ctx.requester.clone(),
            ),
            target: Target::default(),
        }
    }

    fn ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    fn describe(&mut self, request: &GenerateRequest) {
        self.finished.role = Some(request.role.clone());
        self.finished.task = Some(request.task.clone());
        self.finished.mode = Some(request.mode_label.clone());
    }

    fn success(mut self, usage: Usage) -> Finished {
        self.finished.provider = self.target.provider;
        self.finished.model = self.target.model;
        self.finished.tokens = Some((usage.prompt_tokens, usage.completion_tokens));
        self.finished.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.finished
    }

    fn failure(mut self, e: &Error) -> Finished {
        self.finished.provider = self.target.provider;
        self.finished.model = self.target.model;
        self.finished.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.finished.status = e.status();
        self.finished.error_code = Some(e.code().to_string());
        self.finished.cancelled = matches!(e, Error::ClientClosed);
        self.finished
    }
}

impl LlmGateway {
    /// Build from config. Fails only when prompt templates do not compile.
    pub fn from_config(cfg: &LlmConfig, links: GatewayLinks) -> anyhow::Result<Self> {
        let (setup, _) = setup::Setup::build(cfg, &links, None)?;
        let mock_default = cfg
            .providers
            .values()
            .find(|p| p.kind == "mock")
            .and_then(|p| p.default_model.clone());
        Ok(Self {
            setup: ArcSwap::from_pointee(setup),
            mock: Arc::new(MockProvider::new("mock", mock_default)),
            pulls: Arc::default(),
            last_errors: Mutex::new(BTreeMap::new()),
            links,
        })
    }

    /// Apply a reloaded `[llm]`: providers whose settings did not change are kept as
    /// they are (pools, breakers, probes); calls in flight finish on what they started
    /// with. Fails without changing anything when the prompt templates do not compile.
    pub fn reload(&self, cfg: &LlmConfig) -> anyhow::Result<setup::LlmReload> {
        let previous = self.setup.load_full();
        let (next, report) = setup::Setup::build(cfg, &self.links, Some(&previous))?;
        previous.retire_unused(&next);
        self.setup.store(Arc::new(next));
        Ok(report)
    }

    /// The providers, routes and prompts now (a snapshot: a reload does not change it).
    pub fn setup(&self) -> Arc<setup::Setup> {
        self.setup.load_full()
    }

    pub fn provider_names(&self) -> Vec<String> {
        self.setup().providers.keys().cloned().collect()
    }

    fn note_error(&self, provider: &str, message: &str) {
        self.last_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(provider.to_string(), message.to_string());
    }

    fn last_error(&self, provider: &str) -> Option<String> {
        self.last_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(provider)
            .cloned()
    }

    /// Count a request that failed before it reached the gateway (unreadable body).
    pub async fn record_rejected(
        &self,
        ctx: &RequestCtx,
        status: u16,
        code: &str,
        elapsed_ms: f64,
    ) {
        let mut f = Finished::new(
            RequestKind::Llm,
            ctx.request_id.clone(),
            ctx.requester.clone(),
        );
        f.status = status;
        f.error_code = Some(code.to_string());
        f.latency_ms = elapsed_ms;
        self.links.usage.record(f).await;
    }

    /// One complete answer (non-streaming): normalise, check the switches, route, call
    /// (the route's fallbacks in turn when the provider cannot answer), parse, enforce
    /// the contract, record usage.
    pub async fn generate(
        &self,
        body: GenerateBody,
        ctx: RequestCtx,
    ) -> Result<GenerateAnswer, Error> {
        let mut tracker = Tracker::new(&ctx);
        let result = async {
            let (request, mode) = self.prepare(body, &mut tracker)?;
            let mut plan = self.plan(request, mode, &ctx, None, &mut tracker.target)?;
            let targets = plan.route.fallbacks.clone();
            let mut next = targets.iter();
            loop {
                match self.complete(&plan).await {
                    Ok(answer) => {
                        let usage = answer.reply.usage;
                        return Ok::<_, Error>((answer.into_wire(&plan, tracker.ms()), usage));
                    }
                    Err(e) if e.allows_fallback() && Instant::now() < plan.call.deadline => {
                        let Some(fallback) = next.next() else {
                            return Err(e);
                        };
                        let mut attempts = std::mem::take(&mut plan.attempts);
                        attempts.push(answer::Attempt::failed(&plan, &e));
                        tracing::info!(
                            from = %plan.provider_label,
                            to = %fallback.provider,
                            code = e.code(),
                            "falling back"
                        );
                        plan = self.plan(
                            plan.request.clone(),
                            mode,
                            &ctx,
                            Some((fallback, plan.call.deadline)),
                            &mut tracker.target,
                        )?;
                        plan.attempts = attempts;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        .await;
        match result {
            Ok((wire, usage)) => {
                self.links.usage.record(tracker.success(usage)).await;
                Ok(wire)
            }
            Err(e) => {
                let e = e.with_target(&tracker.target);
                self.links.usage.record(tracker.failure(&e)).await;
                Err(e)
            }
        }
    }

    /// A streamed answer: chunks, then one `Done` (or `Failed`). Errors before the first
    /// byte come back as `Err`, so the transport can still answer with a proper status.
    /// The stream stops reading upstream when the receiver is dropped.
    pub async fn stream(
        self: &Arc<Self>,
        body: GenerateBody,
        ctx: RequestCtx,
    ) -> Result<mpsc::Receiver<StreamItem>, Error> {
        let mut tracker = Tracker::new(&ctx);
        let started = async {
            let (request, mode) = self.prepare(body, &mut tracker)?;
            let mut plan = self.plan(request, mode, &ctx, None, &mut tracker.target)?;
            let targets = plan.route.fallbacks.clone();
            let mut next = targets.iter();
            loop {
                self.make_room(&plan).await;
                match plan.provider.chat_stream(&plan.call).await {
                    Ok(upstream) => return Ok::<_, Error>((plan, upstream)),
                    Err(e) => {
                        let e = self.provider_failure(&plan, e);
                        let fallback = match next.next() {
                            Some(f)
                                if e.allows_fallback() && Instant::now() < plan.call.deadline =>
                            {
                                f
                            }
                            _ => return Err(e),
                        };
                        let mut attempts = std::mem::take(&mut plan.attempts);
                        attempts.push(answer::Attempt::failed(&plan, &e));
                        plan = self.plan(
                            plan.request.clone(),
                            mode,
                            &ctx,
                            Some((fallback, plan.call.deadline)),
                            &mut tracker.target,
                        )?;
                        plan.attempts = attempts;
                    }
                }
            }
        }
        .await;
        let (plan, mut upstream) = match started {
            Ok(x) => x,
            Err(e) => {
                let e = e.with_target(&tracker.target);
                self.links.usage.record(tracker.failure(&e)).await;
                return Err(e);
            }
        };
        let (tx, rx) = mpsc::channel(32);
        let gateway = self.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            let shutdown = gateway.links.shutdown.clone();
            let mut index = 0u64;
            let end: Result<(GenerateAnswer, Usage), Error> = loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => break Err(Error::ShuttingDown),
                    n = upstream.next() => n,
                };
                match next {
                    Some(Ok(StreamEvent::Delta(delta))) => {
                        if tx.send(StreamItem::Chunk { index, delta }).await.is_err() {
                            break Err(Error::ClientClosed);
                        }
                        index += 1;
                    }
                    Some(Ok(StreamEvent::Done(reply))) => {
                        let usage = reply.usage;
                        break gateway
                            .finish(&plan, reply)
                            .map(|a| (a.into_wire(&plan, tracker.ms()), usage));
                    }
                    Some(Err(e)) => break Err(gateway.provider_failure(&plan, e)),
                    None => {
                        break Err(Error::Upstream {
                            target: plan.target(),
                            message: "the provider's stream ended without a final message".into(),
                            upstream_status: None,
                        })
                    }
                }
            };
            let finished = match end {
                Ok((wire, usage)) => {
                    let _ = tx.send(StreamItem::Done(Box::new(wire))).await;
                    tracker.success(usage)
                }
                Err(e) => {
                    let e = e.with_target(&tracker.target);
                    let f = tracker.failure(&e);
                    let _ = tx.send(StreamItem::Failed(e)).await;
                    f
                }
            };
            gateway.links.usage.record(finished).await;
        });
        Ok(rx)
    }

    /// Normalise and check the pause switch.
    fn prepare(
        &self,
        body: GenerateBody,
        tracker: &mut Tracker,
    ) -> Result<(GenerateRequest, GeneratorMode), Error> {
        let request = body.normalize(&self.setup().sampling)?;
        tracker.describe(&request);
        if self.links.runtime.paused() {
            return Err(Error::Paused);
        }
        let mode = self.links.mode_for(request.mock);
        Ok((request, mode))
    }

    /// Route, pick the provider, build the prompt. Fails fast (no network) when the
    /// provider is unknown, broken or known to be down.
    pub fn plan(
        &self,
        request: GenerateRequest,
        mode: GeneratorMode,
        ctx: &RequestCtx,
        fallback: Option<(&crate::config::FallbackTarget, Instant)>,
        target: &mut Target,
    ) -> Result<Plan, Error> {
        let setup = self.setup();
        let mut route = setup.router.route(&RouteQuery {
            role: &request.role,
            task: &request.task,
            mode: &request.mode,
            provider: request.provider.as_deref(),
            model: request.model.as_deref(),
        });
        if let Some((f, _)) = fallback {
            route.matched = format!("{} → fallback {}", route.matched, f.provider);
            route.provider.clone_from(&f.provider);
            route.model.clone_from(&f.model);
        }
        *target = Target {
            provider: Some(route.provider.clone()),
            model: route.model.clone(),
        };
        let slot = setup.slot(&route.provider).cloned().ok_or_else(|| {
            Error::validation(
                if request.provider.is_some() {
                    "options.provider"
                } else {
                    "provider"
                },
                format!(
                    "{:?} is not a configured provider (have: {})",
                    route.provider,
                    self.provider_names().join(", ")
                ),
            )
        })?;

        let (provider, provider_label, generator_mode) = if mode == GeneratorMode::Mock {
            (self.mock.clone(), "mock".to_string(), GeneratorMode::Mock)
        } else {
            let provider = match slot {
                Slot::Ready(p) => p,
                Slot::Broken(why) => {
                    return Err(Error::Unavailable {
                        target: target.clone(),
                        message: format!("provider {} is misconfigured: {why}", route.provider),
                        instance: None,
                        retry_after_s: None,
                    })
                }
            };
            if let Some(reason) = self.links.board.down_reason(&route.provider) {
                return Err(Error::Unavailable {
                    target: target.clone(),
                    message: format!("provider {} is down: {reason}", route.provider),
                    instance: None,
                    retry_after_s: None,
                });
            }
            // A route that names the mock provider is an explicit choice, not a fallback.
            let mode = if provider.is_mock() {
                GeneratorMode::Mock
            } else {
                GeneratorMode::Live
            };
            (provider.clone(), route.provider.clone(), mode)
        };
        target.provider = Some(provider_label.clone());

        let model = match route.model.clone().or_else(|| {
            (generator_mode == GeneratorMode::Mock)
                .then(|| provider.default_model().map(str::to_string))
                .flatten()
        }) {
            Some(m) => m,
            None if generator_mode == GeneratorMode::Mock => route.provider.clone(),
            None => {
                return Err(Error::validation(
                    "options.model",
                    format!(
                        "the route ({}) names no model and llm.providers.{}.default_model is unset",
                        route.matched, route.provider
                    ),
                ))
            }
        };
        target.model = Some(model.clone());

        let shape = request.contract.as_ref().map(|c| c.shape_hint());
        let messages = setup
            .prompts
            .build_with_shape(
                &request.role,
                &request.task,
                &request.mode,
                &request.input,
                &request.hints,
                shape.as_deref(),
            )
            .map_err(|e| Error::Internal {
                target: target.clone(),
                message: format!("prompt: {e:#}"),
            })?;
        // The provider's limit, shortened by what the request or its transport asked for;
        // a fallback keeps the deadline of the first attempt.
        let deadline = match fallback {
            Some((_, d)) => d,
            None => {
                let limit = [Some(provider.timeout()), request.timeout, ctx.timeout]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or_else(|| provider.timeout());
                Instant::now() + limit
            }
        };
        let call = LlmCall {
            model: model.clone(),
            deadline,
            messages,
            json: request.mode == "json",
            schema: None,
            tools: None,
            sampling: Sampling {
                temperature: Some(request.temperature),
                top_p: Some(request.top_p),
                max_tokens: Some(request.max_tokens),
                stop: request.stop.clone(),
                ..Sampling::default()
            },
            context: CallContext {
                role: request.role.clone(),
                task: request.task.clone(),
                mode: request.mode.clone(),
                input: request.input.clone(),
                contract: request.contract.clone(),
            },
        };
        Ok(Plan {
            provider,
            provider_label,
            model,
            route,
            call,
            generator_mode,
            request,
            request_id: ctx.request_id.clone(),
            attempts: Vec::new(),
        })
    }

    fn provider_failure(&self, plan: &Plan, e: ProviderError) -> Error {
        self.note_error(&plan.provider_label, &e.message);
        let (target, message) = (plan.target(), e.message);
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

    /// One complete answer for a plan. In json mode the answer must also satisfy the
    /// role contract; a violating answer gets one repair round-trip that tells the model
    /// what was wrong, then fails with `LLM_SCHEMA_MISMATCH`.
    pub async fn complete(&self, plan: &Plan) -> Result<Answer, Error> {
        let started = Instant::now();
        self.make_room(plan).await;
        let reply = plan
            .provider
            .chat(&plan.call)
            .await
            .map_err(|e| self.provider_failure(plan, e))?;
        let mut answer = self.finish(plan, reply)?;
        answer.provider_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.enforce_contract(plan, answer).await
    }

    async fn enforce_contract(&self, plan: &Plan, mut first: Answer) -> Result<Answer, Error> {
        let Some(contract) = plan.request.contract.as_deref() else {
            return Ok(first);
        };
        let policy = self
            .setup()
            .validation
            .policy_for(&plan.request.role, &plan.request.task);
        if first.parsed.is_none() || policy == ValidationPolicy::Off {
            return Ok(first);
        }
        let violations = checked(contract, &mut first);
        if violations.is_empty() {
            return Ok(first);
        }
        if policy == ValidationPolicy::Strict {
            let listed: Vec<String> = violations.iter().map(ToString::to_string).collect();
            let message = format!(
                "the answer does not match the {}/{} contract (validation strict): {}",
                contract.role,
                contract.task,
                listed.join("; ")
            );
            self.note_error(&plan.provider_label, &message);
            return Err(Error::SchemaMismatch {
                target: plan.target(),
                message,
                details: Box::new(error::Mismatch {
                    raw: first.reply.content.clone(),
                    violations: listed,
                    first_violations: None,
                    usage: Some(first.reply.usage),
                }),
            });
        }
        let listed: Vec<String> = violations.iter().map(ToString::to_string).collect();
        let mut call = plan.call.clone();
        call.messages
            .push(ChatMessage::new("assistant", first.reply.content.clone()));
        call.messages.push(ChatMessage::new(
            "user",
            format!(
                "That JSON does not match the required shape:\n- {}\n\nAnswer again with one corrected JSON object of exactly this shape, and nothing else (no prose, no code fences):\n{}",
                listed.join("\n- "),
                contract.shape_hint()
            ),
        ));
        let started = Instant::now();
        let reply = plan
            .provider
            .chat(&call)
            .await
            .map_err(|e| self.provider_failure(plan, e))?;
        let mut second = self.finish(plan, reply)?;
        second.provider_ms = first.provider_ms + started.elapsed().as_secs_f64() * 1000.0;
        let u = (first.reply.usage, second.reply.usage);
        second.reply.usage = Usage::new(
            u.0.prompt_tokens + u.1.prompt_tokens,
            u.0.completion_tokens + u.1.completion_tokens,
        );
        let still: Vec<String> = if second.parsed.is_some() {
            checked(contract, &mut second)
                .iter()
                .map(ToString::to_string)
                .collect()
        } else {
            Vec::new()
        };
        if still.is_empty() {
            second.schema_repaired = true;
            return Ok(second);
        }
        let message = format!(
            "the answer does not match the {}/{} contract, even after one repair round-trip: {}",
            contract.role,
            contract.task,
            still.join("; ")
        );
        self.note_error(&plan.provider_label, &message);
        Err(Error::SchemaMismatch {
            target: plan.target(),
            message,
            details: Box::new(error::Mismatch {
                raw: second.reply.content.clone(),
                violations: still,
                first_violations: Some(listed),
                usage: Some(second.reply.usage),
            }),
        })
    }

    /// Parse (json mode) and shape the answer.
    pub fn finish(&self, plan: &Plan, reply: LlmReply) -> Result<Answer, Error> {
        let parsed = if plan.call.json {
            match json::parse_answer(&reply.content) {
                Ok(p) if p.value.is_object() => Some(p),
                // Callers read fields of `output.value`; an array or a bare value has none.
                Ok(p) => {
                    let message = format!(
                        "json mode expects one JSON object; the model answered {}",
                        json_kind(&p.value)
                    );
                    self.note_error(&plan.provider_label, &message);
                    return Err(Error::SchemaMismatch {
                        target: plan.target(),
                        message,
                        details: Box::new(error::Mismatch {
                            raw: reply.content,
                            violations: Vec::new(),
                            first_violations: None,
                            usage: None,
                        }),
                    });
                }
                Err(why) => {
                    let message = format!(
                        "the model's answer is not valid JSON, even after one repair attempt: {why}"
                    );
                    self.note_error(&plan.provider_label, &message);
                    return Err(Error::InvalidJson {
                        target: plan.target(),
                        message,
                        raw: reply.content,
                    });
                }
            }
        } else {
            None
        };
        Ok(Answer {
            reply,
            parsed,
            provider_ms: 0.0,
            schema_repaired: false,
            normalised: Vec::new(),
        })
    }

    /// The routing table, providers and prompts, for `router/info`.
    pub fn info(&self) -> RouterInfo {
        let setup = self.setup();
        let providers = setup
            .slots()
            .map(|(name, slot)| {
                let info = match slot {
                    Slot::Ready(p) => ProviderInfo {
                        kind: Some(p.kind().to_string()),
                        base_url: p.base_url().map(str::to_string),
                        default_model: p.default_model().map(str::to_string),
                        error: None,
                    },
                    Slot::Broken(why) => ProviderInfo {
                        kind: None,
                        base_url: None,
                        default_model: None,
                        error: Some(why.clone()),
                    },
                };
                (name.clone(), info)
            })
            .collect();
        RouterInfo {
            table: setup.router.describe(),
            generator_mode: self.links.runtime.mode().as_str(),
            providers,
            role_aliases: wire::role_aliases(),
            precedence: [
                "options.provider / options.model / override_model (request)",
                "first matching llm.routes rule by priority (lower first)",
                "llm.default_route",
                "llm.providers.<name>.default_model when the step names no model",
            ],
            prompts: setup.prompts.templates().to_vec(),
            missing_models: self.missing_models(),
        }
    }

    /// Whether each live provider can be reached, from its probes and breakers (no call):
    /// for the overall health. A provider whose config cannot be built is unreachable.
    pub fn reach(&self) -> Vec<crate::gateway::ProviderReach> {
        let setup = self.setup();
        let default = setup.router.default_provider();
        setup
            .slots()
            .filter_map(|(name, slot)| {
                let down = self.links.board.down_reason(name).is_some();
                match slot {
                    // A provider whose config cannot be built is out of reach.
                    Slot::Broken(_) => {
                        crate::gateway::ProviderReach::of("LLM", name, name == default, &[], true)
                    }
                    Slot::Ready(p) if p.kind() != "mock" => crate::gateway::ProviderReach::of(
                        "LLM",
                        name,
                        name == default,
                        &p.instances(),
                        down,
                    ),
                    Slot::Ready(_) => None,
                }
            })
            .collect()
    }

    /// Reachability of every provider (cheap endpoints only), with the supervisor's view.
    pub async fn health(&self) -> LlmHealth {
        let mode = self.links.runtime.mode();
        let board = &self.links.board;
        let setup = self.setup();
        let checks = setup.slots().map(|(name, slot)| async move {
            let down = board.down_reason(name);
            let health = match slot {
                Slot::Broken(why) => ProviderHealth {
                    status: HealthStatus::Error,
                    kind: None,
                    vendor: None,
                    base_url: None,
                    reachable: false,
                    latency_ms: None,
                    version: None,
                    default_model: None,
                    last_error: Some(why.clone()),
                    service_down: down,
                    services: Vec::new(),
                    instances: BTreeMap::new(),
                },
                Slot::Ready(p) => {
                    // A provider the supervisor reports down is not probed: that would
                    // only wait for a connection that cannot succeed.
                    let report = match &down {
                        Some(reason) => provider::HealthReport {
                            reachable: false,
                            latency_ms: 0.0,
                            version: None,
                            error: Some(format!("service down: {reason}")),
                        },
                        None => p.health().await,
                    };
                    if let Some(e) = &report.error {
                        self.note_error(name, e);
                    }
                    ProviderHealth {
                        status: if report.reachable {
                            HealthStatus::Healthy
                        } else {
                            HealthStatus::Unhealthy
                        },
                        kind: Some(p.kind().to_string()),
                        vendor: Some(p.kind().to_string()),
                        base_url: p.base_url().map(str::to_string),
                        reachable: report.reachable,
                        latency_ms: Some(report.latency_ms),
                        version: report.version,
                        default_model: p.default_model().map(str::to_string),
                        last_error: report.error.or_else(|| self.last_error(name)),
                        service_down: down,
                        services: Vec::new(),
                        instances: p.instances().into_iter().collect(),
                    }
                }
            };
            (name.clone(), health)
        });
        let providers: BTreeMap<String, ProviderHealth> = futures::future::join_all(checks)
            .await
            .into_iter()
            .collect();
        let default_ok = providers
            .get(setup.router.default_provider())
            .is_some_and(|h| h.reachable);
        LlmHealth {
            gateway: if mode == GeneratorMode::Mock || default_ok {
                HealthStatus::Healthy
            } else {
                HealthStatus::Unhealthy
            },
            mode: mode.as_str(),
            paused: self.links.runtime.paused(),
            default_provider: setup.router.default_provider().to_string(),
            providers,
        }
    }

    /// Installed models per provider, and every routed model with whether it is installed.
    /// When `mode` is mock nothing is contacted: `installed` is null.
    pub async fn models(&self, mode: GeneratorMode) -> LlmModels {
        let live = mode == GeneratorMode::Live;
        let board = &self.links.board;
        let mut per_provider = BTreeMap::new();
        let mut installed: BTreeMap<String, Vec<provider::ModelEntry>> = BTreeMap::new();
        let setup = self.setup();
        let lists = setup.providers.keys().filter_map(|name| {
            let p = setup.ready(name)?;
            let down = board.down_reason(name);
            Some(async move {
                let r = match down {
                    _ if !live => None,
                    Some(reason) => Some(Err(format!("service down: {reason}"))),
                    None => Some(p.list_models().await.map_err(|e| e.message)),
                };
                (name.clone(), r)
            })
        });
        for (name, r) in futures::future::join_all(lists).await {
            match r {
                None => {}
                Some(Ok(models)) => {
                    self.links
                        .usage
                        .labels()
                        .allow_models(models.iter().map(|m| m.name.as_str()));
                    per_provider.insert(
                        name.clone(),
                        ProviderModels {
                            reachable: true,
                            models: models.clone(),
                            error: None,
                        },
                    );
                    installed.insert(name, models);
                }
                Some(Err(e)) => {
                    per_provider.insert(
                        name,
                        ProviderModels {
                            reachable: false,
                            models: Vec::new(),
                            error: Some(e),
                        },
                    );
                }
            }
        }
        let routed = setup.router.routed_models();
        let mut models: Vec<ModelRow> = routed
            .iter()
            .map(|(p, m)| {
                let found = installed
                    .get(p)
                    .map(|list| list.iter().find(|e| same_model(&e.name, m)).cloned());
                ModelRow {
                    model: m.clone(),
                    provider: p.clone(),
                    routed: true,
                    installed: found.as_ref().map(Option::is_some),
                    loaded: found.as_ref().map(|f| f.as_ref().is_some_and(|e| e.loaded)),
                }
            })
            .collect();
        for (p, list) in &installed {
            for e in list {
                if !routed
                    .iter()
                    .any(|(rp, rm)| rp == p && same_model(&e.name, rm))
                {
                    models.push(ModelRow {
                        model: e.name.clone(),
                        provider: p.clone(),
                        routed: false,
                        installed: Some(true),
                        loaded: Some(e.loaded),
                    });
                }
            }
        }
        LlmModels {
            total: models.len(),
            models,
            default_provider: setup.router.default_provider().to_string(),
            mode: mode.as_str(),
            providers: per_provider,
        }
    }
}

/// Normalise a parsed answer to the contract's shape (where the shape makes it
/// unambiguous), then list what still breaks the contract.
fn checked(
    contract: &crate::contracts::Contract,
    answer: &mut Answer,
) -> Vec<crate::contracts::Violation> {
    let Some(parsed) = answer.parsed.as_mut() else {
        return Vec::new();
    };
    if let Some(shape) = &contract.shape {
        answer.normalised = shape.normalise(&mut parsed.value);
    }
    contract.violations(&parsed.value)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Object(_) => "an object",
    }
}

/// Ollama names `llama3.2` and `llama3.2:latest` the same model.
pub fn same_model(installed: &str, wanted: &str) -> bool {
    let norm = |s: &str| {
        if s.contains(':') {
            s.to_string()
        } else {
            format!("{s}:latest")
        }
    };
    norm(installed) == norm(wanted)
}
