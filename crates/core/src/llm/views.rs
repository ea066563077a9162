//! What the LLM gateway reports about itself: the routing table (`router/info`),
//! providers' reachability (`health`) and models (`models`), as typed wire shapes.

use super::prompts::TemplateInfo;
use super::provider::ModelEntry;
use super::router::RoutingTable;
use crate::gateway::BackingService;
pub use crate::gateway::HealthStatus;
use serde::Serialize;
use std::collections::BTreeMap;

/// `GET /api/v1/llm/router/info`.
#[derive(Debug, Clone, Serialize)]
pub struct RouterInfo {
    #[serde(flatten)]
    pub table: RoutingTable,
    pub generator_mode: &'static str,
    pub providers: BTreeMap<String, ProviderInfo>,
    /// The backend's role names (`brief_agent`) → canonical roles.
    pub role_aliases: BTreeMap<String, String>,
    pub precedence: [&'static str; 4],
    pub prompts: Vec<TemplateInfo>,
    /// Routed models their provider does not have (known once its instances listed
    /// their models), with the routes that need them.
    pub missing_models: Vec<super::model_actions::MissingModel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderInfo {
    pub kind: Option<String>,
    pub base_url: Option<String>,
    pub default_model: Option<String>,
    /// Why the provider could not be built from its config.
    pub error: Option<String>,
}

/// `GET /api/v1/llm/health`.
#[derive(Debug, Clone, Serialize)]
pub struct LlmHealth {
    /// `healthy` in mock mode or when the default provider answers.
    pub gateway: HealthStatus,
    pub mode: &'static str,
    pub paused: bool,
    pub default_provider: String,
    pub providers: BTreeMap<String, ProviderHealth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderHealth {
    pub status: HealthStatus,
    pub kind: Option<String>,
    pub vendor: Option<String>,
    pub base_url: Option<String>,
    pub reachable: bool,
    pub latency_ms: Option<f64>,
    pub version: Option<String>,
    pub default_model: Option<String>,
    pub last_error: Option<String>,
    /// Why the supervisor says the provider's service is down.
    pub service_down: Option<String>,
    /// The supervised services backing it (filled in by the caller that knows them).
    pub services: Vec<BackingService>,
    /// Each instance: breaker, load, last probe (answered from memory, never blocking).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub instances: BTreeMap<String, crate::resilience::pool::InstanceView>,
}

/// `GET /api/v1/llm/models`.
#[derive(Debug, Clone, Serialize)]
pub struct LlmModels {
    pub total: usize,
    pub models: Vec<ModelRow>,
    pub default_provider: String,
    pub mode: &'static str,
    pub providers: BTreeMap<String, ProviderModels>,
}

/// A routed or installed model; `installed`/`loaded` are null when not checked (mock mode).
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub model: String,
    pub provider: String,
    pub routed: bool,
    pub installed: Option<bool>,
    pub loaded: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderModels {
    pub reachable: bool,
    pub models: Vec<ModelEntry>,
    pub error: Option<String>,
}

impl LlmModels {
    /// Routed models the provider does not have.
    pub fn missing(&self, provider: &str) -> Vec<String> {
        self.models
            .iter()
            .filter(|m| m.provider == provider && m.routed && m.installed == Some(false))
            .map(|m| m.model.clone())
            .collect()
    }
}
