//! The LLM Gateway: Sparklio's agents send role + task + input; the gateway routes
//! it to a provider and model (config), builds the prompt (templates), calls the
//! provider, parses JSON answers, and answers in the Sparklio contract's shape.
//!
//! HTTP handlers live in `http::routes::llm`; this module is transport-free.

pub mod json;
pub mod prompts;
pub mod provider;
pub mod providers;
pub mod record;
pub mod router;
pub mod wire;

use crate::app::ProviderBoard;
use crate::config::{GeneratorMode, LlmConfig};
use crate::http::ApiError;
use axum::http::StatusCode;
use prompts::Prompts;
use provider::{
    CallContext, ChatMessage, LlmCall, LlmProvider, LlmReply, ProviderError, ReplyStream, Sampling,
    Usage,
};
use providers::mock::MockProvider;
use router::{RouteDecision, RouteQuery, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use wire::GenerateRequest;

/// A configured provider, or why it could not be built (one broken provider must
/// not take the gateway down: requests to it fail, the rest work).
#[derive(Clone)]
enum Slot {
    Ready(Arc<dyn LlmProvider>),
    Broken(String),
}

pub struct LlmGateway {
    providers: BTreeMap<String, Slot>,
    /// Answers in mock mode (global or `options.mock`), whatever the route says.
    mock: Arc<dyn LlmProvider>,
    pub router: Router,
    pub prompts: Prompts,
    last_errors: Mutex<BTreeMap<String, String>>,
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
}

/// What the error body and the usage row need to know about a failed request.
#[derive(Debug, Clone, Default)]
pub struct FailureContext {
    pub provider: Option<String>,
    pub model: Option<String>,
}

impl LlmGateway {
    /// Build from config. Fails only when prompt templates do not compile.
    pub fn from_config(cfg: &LlmConfig) -> anyhow::Result<Self> {
        let providers = cfg
            .providers
            .iter()
            .map(|(name, pc)| {
                let slot = match providers::build_provider(name, pc) {
                    Ok(p) => Slot::Ready(p),
                    Err(e) => {
                        tracing::error!(provider = %name, "LLM provider unusable: {e:#}");
                        Slot::Broken(format!("{e:#}"))
                    }
                };
                (name.clone(), slot)
            })
            .collect();
        let mock_default = cfg
            .providers
            .values()
            .find(|p| p.kind == "mock")
            .and_then(|p| p.default_model.clone());
        Ok(Self {
            providers,
            mock: Arc::new(MockProvider::new("mock", mock_default)),
            router: Router::new(cfg),
            prompts: Prompts::load(cfg.prompt_dir.as_deref())?,
            last_errors: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn provider_names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    fn ready(&self, name: &str) -> Option<Arc<dyn LlmProvider>> {
        match self.providers.get(name) {
            Some(Slot::Ready(p)) => Some(p.clone()),
            _ => None,
        }
    }

    fn note_error(&self, provider: &str, message: &str) {
        self.last_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(provider.to_string(), message.to_string());
    }

    fn last_error(&self, provider: &str) -> Option<String> {
        self.last_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(provider)
            .cloned()
    }

    /// Route, pick the provider, build the prompt. Fails fast (no network) when the
    /// provider is unknown, broken or known to be down.
    pub fn plan(
        &self,
        request: GenerateRequest,
        global_mode: GeneratorMode,
        board: &ProviderBoard,
        request_id: String,
        ctx: &mut FailureContext,
    ) -> Result<Plan, ApiError> {
        let route = self.router.route(&RouteQuery {
            role: &request.role,
            task: &request.task,
            mode: &request.mode,
            provider: request.provider.as_deref(),
            model: request.model.as_deref(),
        });
        ctx.provider = Some(route.provider.clone());
        ctx.model = route.model.clone();
        let with_ctx = |e: ApiError| {
            e.with("provider", route.provider.clone())
                .with("model", route.model.clone())
        };
        let slot = self
            .providers
            .get(&route.provider)
            .cloned()
            .ok_or_else(|| {
                with_ctx(ApiError::validation(
                    if request.provider.is_some() {
                        "options.provider"
                    } else {
                        "provider"
                    },
                    format!(
                        "{:?} is not a configured provider (have: {})",
                        route.provider,
                        self.provider_names().collect::<Vec<_>>().join(", ")
                    ),
                ))
            })?;

        let mock_requested = global_mode == GeneratorMode::Mock || request.mock;
        let (provider, provider_label, generator_mode) = if mock_requested {
            (self.mock.clone(), "mock".to_string(), GeneratorMode::Mock)
        } else {
            let provider = match slot {
                Slot::Ready(p) => p,
                Slot::Broken(why) => {
                    return Err(with_ctx(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "PROVIDER_UNAVAILABLE",
                        format!("provider {} is misconfigured: {why}", route.provider),
                    )))
                }
            };
            if let Some(reason) = board.down_reason(&route.provider) {
                return Err(with_ctx(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "PROVIDER_UNAVAILABLE",
                    format!("provider {} is down: {reason}", route.provider),
                )));
            }
            // A route that names the mock provider is an explicit choice, not a fallback.
            let mode = if provider.is_mock() {
                GeneratorMode::Mock
            } else {
                GeneratorMode::Live
            };
            (provider.clone(), route.provider.clone(), mode)
        };
        ctx.provider = Some(provider_label.clone());

        let model = match route.model.clone().or_else(|| {
            (generator_mode == GeneratorMode::Mock)
                .then(|| provider.default_model().map(str::to_string))
                .flatten()
        }) {
            Some(m) => m,
            None if generator_mode == GeneratorMode::Mock => route.provider.clone(),
            None => {
                return Err(with_ctx(ApiError::validation(
                    "options.model",
                    format!(
                        "the route ({}) names no model and llm.providers.{}.default_model is unset",
                        route.matched, route.provider
                    ),
                )))
            }
        };
        ctx.model = Some(model.clone());

        let messages = self
            .prompts
            .build(
                &request.role,
                &request.task,
                &request.mode,
                &request.input,
                &request.hints,
            )
            .map_err(|e| {
                ApiError::internal(format!("prompt: {e:#}"))
                    .with("provider", provider_label.clone())
                    .with("model", model.clone())
            })?;
        let call = LlmCall {
            model: model.clone(),
            messages,
            json: request.mode == "json",
            sampling: Sampling {
                temperature: request.temperature,
                top_p: request.top_p,
                max_tokens: request.max_tokens,
                stop: request.stop.clone(),
            },
            context: CallContext {
                role: request.role.clone(),
                task: request.task.clone(),
                mode: request.mode.clone(),
                input: request.input.clone(),
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
            request_id,
        })
    }

    fn provider_failure(&self, plan: &Plan, e: ProviderError) -> ApiError {
        self.note_error(&plan.provider_label, &e.message);
        let mut err = ApiError::new(e.status(), e.code(), e.message.clone())
            .with("provider", plan.provider_label.clone())
            .with("model", plan.model.clone());
        if let Some(s) = e.upstream_status {
            err = err.with("upstream_status", s);
        }
        err
    }

    /// One complete answer (non-streaming). In json mode the answer must also satisfy the
    /// role contract; a violating answer gets one repair round-trip that tells the model
    /// what was wrong, then fails with `LLM_SCHEMA_MISMATCH`.
    pub async fn generate(&self, plan: &Plan) -> Result<Answer, ApiError> {
        let started = std::time::Instant::now();
        let reply = plan
            .provider
            .chat(&plan.call)
            .await
            .map_err(|e| self.provider_failure(plan, e))?;
        let mut answer = self.finish(plan, reply)?;
        answer.provider_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.enforce_contract(plan, answer).await
    }

    async fn enforce_contract(&self, plan: &Plan, first: Answer) -> Result<Answer, ApiError> {
        let (Some(parsed), Some(contract)) = (
            first.parsed.as_ref(),
            crate::contracts::contract_for(&plan.request.role, &plan.request.task),
        ) else {
            return Ok(first);
        };
        let violations = contract.violations(&parsed.value);
        if violations.is_empty() {
            return Ok(first);
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
        let started = std::time::Instant::now();
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
        let still: Vec<String> = second
            .parsed
            .as_ref()
            .map(|p| {
                contract
                    .violations(&p.value)
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if still.is_empty() {
            second.schema_repaired = true;
            return Ok(second);
        }
        let msg = format!(
            "the answer does not match the {}/{} contract, even after one repair round-trip: {}",
            contract.role,
            contract.task,
            still.join("; ")
        );
        self.note_error(&plan.provider_label, &msg);
        Err(
            ApiError::new(StatusCode::BAD_GATEWAY, "LLM_SCHEMA_MISMATCH", msg)
                .with("provider", plan.provider_label.clone())
                .with("model", plan.model.clone())
                .with("violations", still)
                .with("first_violations", listed)
                .with("raw", second.reply.content.clone())
                .with(
                    "usage",
                    serde_json::to_value(second.reply.usage).unwrap_or_default(),
                ),
        )
    }

    /// A streamed answer; errors before the first byte come back as `Err`.
    pub async fn stream(&self, plan: &Plan) -> Result<ReplyStream, ApiError> {
        plan.provider
            .chat_stream(&plan.call)
            .await
            .map_err(|e| self.provider_failure(plan, e))
    }

    /// Turn a mid-stream provider failure into the standard error.
    pub fn stream_failure(&self, plan: &Plan, e: ProviderError) -> ApiError {
        self.provider_failure(plan, e)
    }

    /// Parse (json mode) and shape the answer.
    pub fn finish(&self, plan: &Plan, reply: LlmReply) -> Result<Answer, ApiError> {
        let parsed = if plan.call.json {
            match json::parse_answer(&reply.content) {
                Ok(p) if p.value.is_object() => Some(p),
                // Callers read fields of `output.value`; an array or a bare value has none.
                Ok(p) => {
                    let msg = format!(
                        "json mode expects one JSON object; the model answered {}",
                        json_kind(&p.value)
                    );
                    self.note_error(&plan.provider_label, &msg);
                    return Err(
                        ApiError::new(StatusCode::BAD_GATEWAY, "LLM_SCHEMA_MISMATCH", msg)
                            .with("provider", plan.provider_label.clone())
                            .with("model", plan.model.clone())
                            .with("raw", reply.content.clone()),
                    );
                }
                Err(why) => {
                    let msg = format!(
                        "the model's answer is not valid JSON, even after one repair attempt: {why}"
                    );
                    self.note_error(&plan.provider_label, &msg);
                    return Err(
                        ApiError::new(StatusCode::BAD_GATEWAY, "LLM_INVALID_JSON", msg)
                            .with("provider", plan.provider_label.clone())
                            .with("model", plan.model.clone())
                            .with("raw", reply.content.clone()),
                    );
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
        })
    }

    /// The routing table, providers and prompts, for `router/info`.
    pub fn info(&self, mode: GeneratorMode) -> Value {
        let providers: serde_json::Map<String, Value> = self
            .providers
            .iter()
            .map(|(name, slot)| {
                let v = match slot {
                    Slot::Ready(p) => json!({
                        "kind": p.kind(),
                        "base_url": p.base_url(),
                        "default_model": p.default_model(),
                        "error": null,
                    }),
                    Slot::Broken(why) => json!({"kind": null, "error": why}),
                };
                (name.clone(), v)
            })
            .collect();
        let mut info = self.router.describe();
        info["generator_mode"] = json!(mode.as_str());
        info["providers"] = Value::Object(providers);
        info["role_aliases"] = wire::role_aliases();
        info["precedence"] = json!([
            "options.provider / options.model / override_model (request)",
            "first matching llm.routes rule by priority (lower first)",
            "llm.default_route",
            "llm.providers.<name>.default_model when the step names no model",
        ]);
        info["prompts"] = json!(self.prompts.templates());
        info
    }

    /// Reachability of every provider (cheap endpoints only), with the supervisor's view.
    pub async fn health(&self, mode: GeneratorMode, board: &ProviderBoard) -> Value {
        let checks = self.providers.iter().map(|(name, slot)| async move {
            let down = board.down_reason(name);
            let body = match slot {
                Slot::Broken(why) => json!({
                    "status": "error", "kind": null, "reachable": false, "latency_ms": null,
                    "default_model": null, "last_error": why, "service_down": down,
                }),
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
                    json!({
                        "status": if report.reachable { "healthy" } else { "unhealthy" },
                        "kind": p.kind(),
                        "vendor": p.kind(),
                        "base_url": p.base_url(),
                        "reachable": report.reachable,
                        "latency_ms": report.latency_ms,
                        "version": report.version,
                        "default_model": p.default_model(),
                        "last_error": report.error.or_else(|| self.last_error(name)),
                        "service_down": down,
                    })
                }
            };
            (name.clone(), body)
        });
        let results = futures::future::join_all(checks).await;
        let default_ok = results
            .iter()
            .find(|(n, _)| n == self.router.default_provider())
            .is_some_and(|(_, v)| v["reachable"] == json!(true));
        let gateway = if mode == GeneratorMode::Mock || default_ok {
            "healthy"
        } else {
            "unhealthy"
        };
        json!({
            "gateway": gateway,
            "mode": mode.as_str(),
            "default_provider": self.router.default_provider(),
            "providers": results.into_iter().collect::<serde_json::Map<_, _>>(),
        })
    }

    /// Installed models per provider, and every routed model with whether it is installed.
    /// In mock mode nothing is contacted: `installed` is null.
    pub async fn models(&self, mode: GeneratorMode, board: &ProviderBoard) -> Value {
        let live = mode == GeneratorMode::Live;
        let mut per_provider = serde_json::Map::new();
        let mut installed: BTreeMap<String, Vec<provider::ModelEntry>> = BTreeMap::new();
        let lists = self.providers.keys().filter_map(|name| {
            let p = self.ready(name)?;
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
                    per_provider.insert(
                        name.clone(),
                        json!({"reachable": true, "models": models, "error": null}),
                    );
                    installed.insert(name, models);
                }
                Some(Err(e)) => {
                    per_provider
                        .insert(name, json!({"reachable": false, "models": [], "error": e}));
                }
            }
        }
        let routed = self.router.routed_models();
        let mut models: Vec<Value> = routed
            .iter()
            .map(|(p, m)| {
                let found = installed
                    .get(p)
                    .map(|list| list.iter().find(|e| same_model(&e.name, m)).cloned());
                json!({
                    "model": m,
                    "provider": p,
                    "routed": true,
                    "installed": found.as_ref().map(Option::is_some),
                    "loaded": found.as_ref().map(|f| f.as_ref().is_some_and(|e| e.loaded)),
                })
            })
            .collect();
        for (p, list) in &installed {
            for e in list {
                if !routed
                    .iter()
                    .any(|(rp, rm)| rp == p && same_model(&e.name, rm))
                {
                    models.push(json!({
                        "model": e.name, "provider": p, "routed": false,
                        "installed": true, "loaded": e.loaded,
                    }));
                }
            }
        }
        json!({
            "total": models.len(),
            "models": models,
            "default_provider": self.router.default_provider(),
            "mode": mode.as_str(),
            "providers": per_provider,
        })
    }
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
fn same_model(installed: &str, wanted: &str) -> bool {
    let norm = |s: &str| {
        if s.contains(':') {
            s.to_string()
        } else {
            format!("{s}:latest")
        }
    };
    norm(installed) == norm(wanted)
}

/// A finished, parsed answer.
pub struct Answer {
    pub reply: LlmReply,
    pub parsed: Option<json::ParsedJson>,
    /// Time spent waiting for the provider (all round-trips), in ms.
    pub provider_ms: f64,
    /// The answer needed the contract repair round-trip.
    pub schema_repaired: bool,
}

impl Answer {
    /// The contract's superset body.
    pub fn body(&self, plan: &Plan, latency_ms: f64) -> Value {
        let parsed = self.parsed.as_ref().map(|p| p.value.clone());
        let output = json!({
            "type": if parsed.is_some() { "json" } else { "text" },
            "value": parsed.clone().unwrap_or_else(|| Value::String(self.reply.content.clone())),
            "content": self.reply.content,
            "parsed": parsed,
        });
        json!({
            "provider": plan.provider_label,
            "model": plan.model,
            "usage": self.reply.usage,
            "output": output,
            "meta": meta(plan, latency_ms, self),
            "timestamp": crate::store::now_text(),
        })
    }
}

fn meta(plan: &Plan, latency_ms: f64, answer: &Answer) -> Value {
    let reply = &answer.reply;
    let repaired = answer.parsed.as_ref().is_some_and(|p| p.repaired);
    json!({
        "role": plan.request.role,
        "requested_role": plan.request.requested_role,
        "task": plan.request.task,
        "mode": plan.request.mode_label,
        "latency_ms": (latency_ms * 10.0).round() / 10.0,
        "generator_mode": plan.generator_mode.as_str(),
        "request_id": plan.request_id,
        "route": plan.route.matched,
        "temperature": plan.call.sampling.temperature,
        "max_tokens": plan.call.sampling.max_tokens,
        "done_reason": reply.done_reason,
        "json_repaired": repaired,
        "schema_repaired": answer.schema_repaired,
        "provider_latency_ms": (answer.provider_ms * 10.0).round() / 10.0,
        "model_info": reply.model_info,
    })
}
