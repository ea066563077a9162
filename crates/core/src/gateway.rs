//! What every gateway (LLM, media) and front shares: who asked ([`Requester`]), the
//! runtime facts each request checks first ([`GatewayLinks`]), and the one place a
//! finished request becomes a usage row and metrics ([`UsageRecorder`]).
//!
//! Written once here so the two gateways cannot drift apart (they once had different
//! paused messages, different down checks and different usage rows).

use crate::config::Config;
use crate::runtime::{GeneratorMode, ProviderBoard, RuntimeSwitches};
use crate::store::{now_text, Store, UsageRow};
use crate::telemetry::{
    FrontEndpointLabels, FrontRequestLabels, LlmRequestLabels, MediaRequestLabels, Metrics,
    ProviderCodeLabels, ProviderKindLabels, ProviderModelLabels,
};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};
use tokio_util::sync::CancellationToken;

/// Who sent a request, as the usage log records it (never the key itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    /// The client's IP address.
    pub client: String,
    /// A short, non-reversible id of the key used, if any.
    pub key_id: Option<String>,
}

/// The message every gateway answers with while paused.
pub const PAUSED_MESSAGE: &str =
    "the gateway is paused (resume it from the tray or the control API)";

/// The runtime facts and shared services a gateway needs, and nothing more.
#[derive(Clone)]
pub struct GatewayLinks {
    pub runtime: Arc<RuntimeSwitches>,
    pub board: Arc<ProviderBoard>,
    pub usage: UsageRecorder,
    pub shutdown: CancellationToken,
    /// Shares the card's memory between the LLM and media sides.
    pub gpu: Arc<crate::gpu::Arbiter>,
}

impl GatewayLinks {
    /// The generator mode for one request: `mock` when the request asks for it.
    pub fn mode_for(&self, mock_requested: bool) -> GeneratorMode {
        if mock_requested {
            GeneratorMode::Mock
        } else {
            self.runtime.mode()
        }
    }
}

/// Which gateway a usage row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Llm,
    Media,
    /// A native front's call passed through (`role = "front:<name>"`, `task = <endpoint>`).
    Front,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Llm => "llm",
            RequestKind::Media => "media",
            RequestKind::Front => "front",
        }
    }
}

/// Everything known about a request when it ends, success or failure.
#[derive(Debug, Clone)]
pub struct Finished {
    pub kind: RequestKind,
    pub request_id: String,
    pub requester: Requester,
    pub role: Option<String>,
    pub task: Option<String>,
    pub mode: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Media only: the image kind (`product_shot`, ...), a metric label.
    pub image_kind: Option<String>,
    /// Prompt and completion tokens, when the provider counted them.
    pub tokens: Option<(u64, u64)>,
    pub latency_ms: f64,
    /// The HTTP status answered.
    pub status: u16,
    /// `None` on success.
    pub error_code: Option<String>,
    /// The request was cancelled (by the caller or a job cancel), not failed.
    pub cancelled: bool,
}

impl Finished {
    pub fn new(kind: RequestKind, request_id: impl Into<String>, requester: Requester) -> Self {
        Self {
            kind,
            request_id: request_id.into(),
            requester,
            role: None,
            task: None,
            mode: None,
            provider: None,
            model: None,
            image_kind: None,
            tokens: None,
            latency_ms: 0.0,
            status: 200,
            error_code: None,
            cancelled: false,
        }
    }
}

/// Label for a value that was never determined (e.g. a request rejected before routing).
const UNKNOWN: &str = "none";

/// Metric label values come only from configuration (and the models providers report,
/// up to a bound); anything else is counted as `other`, so a client sending 100k
/// different task names cannot grow `/metrics` or our memory.
pub struct LabelPolicy {
    roles: BTreeSet<String>,
    tasks: BTreeSet<String>,
    providers: BTreeSet<String>,
    kinds: BTreeSet<String>,
    models: RwLock<BTreeSet<String>>,
}

/// The fronts' endpoints, as usage rows and metrics name them.
pub const FRONT_ENDPOINTS: &[&str] = &[
    "chat",
    "generate",
    "embed",
    "embeddings",
    "show",
    "tags",
    "ps",
    "version",
    "pull",
    "delete",
    "copy",
    "create",
    "chat_completions",
    "completions",
    "models",
    "images",
    // ComfyUI's (`models` and `embeddings` above too).
    "prompt",
    "queue",
    "history",
    "view",
    "object_info",
    "system_stats",
    "interrupt",
    "free",
    "upload_image",
    "extensions",
    "ws",
];

/// Installed models accepted as label values at most (on top of the configured ones).
const MAX_REPORTED_MODELS: usize = 256;
/// The label for values outside the policy.
pub const OTHER: &str = "other";

impl LabelPolicy {
    pub fn from_config(config: &Config) -> Self {
        let llm = &config.llm;
        let mut roles: BTreeSet<String> = [
            "brand",
            "brief",
            "strategist",
            "copywriter",
            "vision",
            "reviewer",
            "editor",
            "optimizer",
            "designer",
            "assistant",
            "front:ollama",
            "front:openai",
            "front:comfyui",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        // The fronts' endpoints (`role = "front:<name>"`, `task = <endpoint>`).
        let mut tasks: BTreeSet<String> = FRONT_ENDPOINTS.iter().map(ToString::to_string).collect();
        for c in crate::contracts::contracts() {
            roles.insert(c.role.clone());
            tasks.insert(c.task.clone());
        }
        for r in &llm.routes {
            roles.extend(r.roles.iter().cloned());
            tasks.extend(r.tasks.iter().cloned());
        }
        roles.extend(llm.sampling.roles.keys().cloned());
        tasks.extend(llm.sampling.tasks.keys().cloned());
        tasks.extend(config.media.tasks.keys().cloned());
        tasks.extend(config.media.kinds.keys().cloned());
        let mut models: BTreeSet<String> = llm
            .routes
            .iter()
            .filter_map(|r| r.model.clone())
            .chain(llm.default_route.model.clone())
            .chain(
                llm.providers
                    .values()
                    .filter_map(|p| p.default_model.clone()),
            )
            .collect();
        models.insert("mock-model".into());
        let providers = llm
            .providers
            .keys()
            .chain(config.media.providers.keys())
            .cloned()
            .chain(["mock".to_string(), UNKNOWN.to_string()])
            .collect();
        Self {
            roles,
            tasks,
            providers,
            kinds: config.media.kinds.keys().cloned().collect(),
            models: RwLock::new(models),
        }
    }

    /// Accept the models a provider reports as installed (bounded).
    pub fn allow_models<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut models = self.models.write().unwrap_or_else(PoisonError::into_inner);
        for n in names {
            if models.len() >= MAX_REPORTED_MODELS {
                break;
            }
            models.insert(n.to_string());
        }
    }

    fn pick(set: &BTreeSet<String>, v: &Option<String>) -> String {
        match v {
            None => UNKNOWN.to_string(),
            Some(v) if set.contains(v) => v.clone(),
            Some(_) => OTHER.to_string(),
        }
    }

    pub fn role(&self, v: &Option<String>) -> String {
        Self::pick(&self.roles, v)
    }
    pub fn task(&self, v: &Option<String>) -> String {
        Self::pick(&self.tasks, v)
    }
    pub fn provider(&self, v: &Option<String>) -> String {
        Self::pick(&self.providers, v)
    }
    pub fn kind(&self, v: &Option<String>) -> String {
        match v {
            None => "unknown".into(),
            Some(k) if self.kinds.contains(k) => k.clone(),
            Some(_) => OTHER.to_string(),
        }
    }
    pub fn model(&self, v: &Option<String>) -> String {
        let models = self.models.read().unwrap_or_else(PoisonError::into_inner);
        Self::pick(&models, v)
    }
}

/// Writes one usage row and the Prometheus series for every finished request.
#[derive(Clone)]
pub struct UsageRecorder {
    store: Store,
    metrics: Arc<Metrics>,
    /// USD per 1,000 prompt / completion tokens, per LLM provider (reloadable).
    prices: Arc<ArcSwap<BTreeMap<String, (f64, f64)>>>,
    labels: Arc<ArcSwap<LabelPolicy>>,
}

fn prices_of(config: &Config) -> BTreeMap<String, (f64, f64)> {
    config
        .llm
        .providers
        .iter()
        .map(|(name, p)| {
            (
                name.clone(),
                (p.cost_per_1k_prompt_tokens, p.cost_per_1k_completion_tokens),
            )
        })
        .collect()
}

impl UsageRecorder {
    pub fn new(store: Store, metrics: Arc<Metrics>, config: &Config) -> Self {
        Self {
            store,
            metrics,
            prices: Arc::new(ArcSwap::from_pointee(prices_of(config))),
            labels: Arc::new(ArcSwap::from_pointee(LabelPolicy::from_config(config))),
        }
    }

    /// Prices and metric label values from a reloaded config.
    pub fn reload(&self, config: &Config) {
        self.prices.store(Arc::new(prices_of(config)));
        self.labels
            .store(Arc::new(LabelPolicy::from_config(config)));
    }

    /// Which label values the metrics keep as they are.
    pub fn labels(&self) -> Arc<LabelPolicy> {
        self.labels.load_full()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn estimated_cost_usd(&self, provider: Option<&str>, prompt: u64, completion: u64) -> f64 {
        provider
            .and_then(|p| self.prices.load().get(p).copied())
            .map_or(0.0, |(p, c)| {
                (prompt as f64 * p + completion as f64 * c) / 1000.0
            })
    }

    /// Count the request in the metrics and write its usage row. A storage failure is
    /// logged, never the caller's problem.
    pub async fn record(&self, f: Finished) {
        let m = &self.metrics;
        let l = self.labels.load();
        match f.kind {
            RequestKind::Llm => {
                m.llm_requests
                    .get_or_create(&LlmRequestLabels {
                        provider: l.provider(&f.provider),
                        model: l.model(&f.model),
                        role: l.role(&f.role),
                        task: l.task(&f.task),
                        status: if f.error_code.is_none() {
                            "success"
                        } else {
                            "error"
                        }
                        .into(),
                    })
                    .inc();
                m.llm_latency_ms
                    .get_or_create(&ProviderModelLabels {
                        provider: l.provider(&f.provider),
                        model: l.model(&f.model),
                    })
                    .observe(f.latency_ms);
                if let Some(code) = &f.error_code {
                    m.llm_errors
                        .get_or_create(&ProviderCodeLabels {
                            provider: l.provider(&f.provider),
                            code: code.clone(),
                        })
                        .inc();
                }
            }
            RequestKind::Front => {
                // Both from the label policy: configured roles (`front:<name>`) and the
                // fronts' endpoints only.
                let front = l
                    .role(&f.role)
                    .strip_prefix("front:")
                    .unwrap_or(OTHER)
                    .to_string();
                let endpoint = l.task(&f.task);
                m.front_requests
                    .get_or_create(&FrontRequestLabels {
                        front: front.clone(),
                        endpoint: endpoint.clone(),
                        status: format!("{}xx", f.status / 100),
                    })
                    .inc();
                m.front_latency_ms
                    .get_or_create(&FrontEndpointLabels { front, endpoint })
                    .observe(f.latency_ms);
            }
            RequestKind::Media => {
                let status = match (&f.error_code, f.cancelled) {
                    (None, _) => "success",
                    (Some(_), true) => "cancelled",
                    (Some(_), false) => "error",
                };
                let provider = l.provider(&f.provider);
                let kind = l.kind(&f.image_kind);
                m.media_requests
                    .get_or_create(&MediaRequestLabels {
                        provider: provider.clone(),
                        kind: kind.clone(),
                        status: status.into(),
                    })
                    .inc();
                m.media_latency_ms
                    .get_or_create(&ProviderKindLabels { provider, kind })
                    .observe(f.latency_ms);
            }
        }
        let estimated_cost_usd = f
            .tokens
            .map(|(p, c)| self.estimated_cost_usd(f.provider.as_deref(), p, c));
        let row = UsageRow {
            ts: now_text(),
            request_id: f.request_id,
            client: f.requester.client,
            key_id: f.requester.key_id,
            kind: f.kind.as_str().into(),
            role: f.role,
            task: f.task,
            mode: f.mode,
            provider: f.provider,
            model: f.model,
            prompt_tokens: f.tokens.map(|(p, _)| p as i64),
            completion_tokens: f.tokens.map(|(_, c)| c as i64),
            total_tokens: f.tokens.map(|(p, c)| (p + c) as i64),
            latency_ms: f.latency_ms,
            status: f.status,
            error_code: f.error_code,
            estimated_cost_usd,
        };
        // A dropped row is counted by the store (`usage_rows_dropped_total`).
        if let Err(e) = self.store.insert_usage(row).await {
            tracing::warn!("usage log: {e:#}");
        }
    }
}

/// A supervised service backing a provider, as health answers show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackingService {
    pub name: String,
    pub state: String,
    pub reason: String,
    pub since: String,
}

/// Whether a live provider can be reached, as its probes and breakers last saw it (no
/// call is made): what the overall health and the tray add to the services' states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReach {
    /// `LLM` or `media`.
    pub side: &'static str,
    pub name: String,
    /// The provider requests go to when nothing else is asked (`llm.default_route`,
    /// `media.default_provider`): the backend is blocked without it.
    pub default: bool,
    /// Instances that can take calls (breaker not open, last probe not failed).
    pub reachable: usize,
    pub total: usize,
}

impl ProviderReach {
    /// From the instances' views; `None` when nothing is known (no instances, as a
    /// provider without a pool). A provider whose service is down is unreachable. No
    /// reason is kept: the overall health is public (`/health`), and reasons carry
    /// addresses (the gateway-scope `/api/v1/llm/health` gives them).
    pub fn of(
        side: &'static str,
        name: &str,
        default: bool,
        instances: &[(String, crate::resilience::pool::InstanceView)],
        service_down: bool,
    ) -> Option<Self> {
        let can_call = |v: &crate::resilience::pool::InstanceView| {
            v.breaker != "open" && v.probe_ok != Some(false)
        };
        let reachable = if service_down {
            0
        } else {
            instances.iter().filter(|(_, v)| can_call(v)).count()
        };
        let total = instances.len().max(usize::from(service_down));
        if total == 0 {
            return None;
        }
        Some(Self {
            side,
            name: name.to_string(),
            default,
            reachable,
            total,
        })
    }
}

/// How a provider's (or a gateway's) health is summed up (`error`: misconfigured,
/// cannot be built).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    /// It answers, wrongly.
    Unhealthy,
    /// It cannot be reached (down, wedged, breaker open, service stopped).
    Unavailable,
    Error,
}
