//! What the media gateway reports about itself (`health`, `models`), as typed wire
//! shapes.

use crate::config::{MediaKindConfig, MediaTaskConfig};
use crate::gateway::BackingService;
use crate::gateway::HealthStatus;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One provider's cheap health check (never generates anything).
#[derive(Debug, Clone, Serialize)]
pub struct ProviderHealth {
    pub status: HealthStatus,
    pub vendor: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<Device>>,
    /// The model a provider without model files reports (the mock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The supervised services backing it (filled in by the caller that knows them).
    pub services: Vec<BackingService>,
}

impl ProviderHealth {
    pub fn healthy(vendor: &'static str) -> Self {
        Self {
            status: HealthStatus::Healthy,
            vendor,
            base_url: None,
            version: None,
            devices: None,
            model: None,
            error: None,
            services: Vec::new(),
        }
    }
}

/// A compute device as ComfyUI's `/system_stats` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub name: Value,
    #[serde(rename = "type")]
    pub kind: Value,
    pub vram_total: Value,
    pub vram_free: Value,
}

/// `GET /api/v1/media/health`.
#[derive(Debug, Clone, Serialize)]
pub struct MediaHealth {
    pub gateway: HealthStatus,
    pub mode: &'static str,
    pub paused: bool,
    /// The provider requests go to now (the mock in mock mode).
    pub active_provider: String,
    pub providers: BTreeMap<String, ProviderHealth>,
    pub jobs: JobCounts,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct JobCounts {
    pub queued: usize,
    pub running: usize,
}

/// A model file a provider can use.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// `checkpoint`, `lora` or `vae`.
    #[serde(rename = "type")]
    pub model_type: String,
    pub provider: String,
}

/// `GET /api/v1/media/models`.
#[derive(Debug, Clone, Serialize)]
pub struct MediaModels {
    pub total: usize,
    pub models: Vec<ModelInfo>,
    pub default_provider: String,
    pub providers: BTreeMap<String, ProviderModels>,
    pub kinds: BTreeMap<String, MediaKindConfig>,
    pub tasks: BTreeMap<String, MediaTaskConfig>,
    pub aspect_ratios: BTreeMap<String, [u32; 2]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelsStatus {
    Ok,
    Unavailable,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderModels {
    pub status: ModelsStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<ModelInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub workflows: Vec<WorkflowInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkflowInfo {
    pub name: String,
    pub description: String,
    pub parameters: Vec<String>,
    pub source: String,
}
