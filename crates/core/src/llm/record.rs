//! One usage row and the Prometheus counters for every gateway request, success or error.

use super::provider::Usage;
use crate::app::AppState;
use crate::http::auth::Caller;
use crate::store::UsageRow;
use crate::telemetry::{LlmRequestLabels, ProviderCodeLabels, ProviderModelLabels};

/// What is known about a request when it ends.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub request_id: String,
    pub role: Option<String>,
    pub task: Option<String>,
    pub mode: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub usage: Option<Usage>,
    pub latency_ms: f64,
    pub status: u16,
    /// `None` on success.
    pub error_code: Option<String>,
}

/// Label for a value that was never determined (e.g. a request rejected before routing).
const UNKNOWN: &str = "none";

pub async fn record(state: &AppState, caller: Option<&Caller>, o: Outcome) {
    let label = |v: &Option<String>| v.clone().unwrap_or_else(|| UNKNOWN.to_string());
    let m = &state.metrics;
    m.llm_requests
        .get_or_create(&LlmRequestLabels {
            provider: label(&o.provider),
            model: label(&o.model),
            role: label(&o.role),
            task: label(&o.task),
            status: if o.error_code.is_none() {
                "success"
            } else {
                "error"
            }
            .into(),
        })
        .inc();
    m.llm_latency_ms
        .get_or_create(&ProviderModelLabels {
            provider: label(&o.provider),
            model: label(&o.model),
        })
        .observe(o.latency_ms);
    if let Some(code) = &o.error_code {
        m.llm_errors
            .get_or_create(&ProviderCodeLabels {
                provider: label(&o.provider),
                code: code.clone(),
            })
            .inc();
    }
    let estimated_cost_usd = o.usage.map(|u| {
        o.provider
            .as_ref()
            .and_then(|p| state.config().llm.providers.get(p))
            .map(|p| p.estimated_cost_usd(u.prompt_tokens, u.completion_tokens))
            .unwrap_or(0.0)
    });
    let row = UsageRow {
        ts: crate::store::now_text(),
        request_id: o.request_id,
        client: caller.map(|c| c.addr.ip().to_string()).unwrap_or_default(),
        key_id: caller.and_then(|c| c.key_id.clone()),
        kind: "llm".into(),
        role: o.role,
        task: o.task,
        mode: o.mode,
        provider: o.provider,
        model: o.model,
        prompt_tokens: o.usage.map(|u| u.prompt_tokens as i64),
        completion_tokens: o.usage.map(|u| u.completion_tokens as i64),
        total_tokens: o.usage.map(|u| u.total_tokens as i64),
        latency_ms: o.latency_ms,
        status: o.status,
        error_code: o.error_code,
        estimated_cost_usd,
    };
    if let Err(e) = state.store.insert_usage(row).await {
        tracing::warn!("usage log: {e:#}");
    }
}
