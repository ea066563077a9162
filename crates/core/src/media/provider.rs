//! The one interface every media provider implements, and the registry that builds
//! providers from `[media.providers.NAME]` by their `kind`.
//!
//! Adding a provider: a new file in `providers/` and one line in [`REGISTRY`].

use super::error::Error;
use super::jobs::JobUpdates;
use super::workflows::Workflows;
use crate::config::MediaProviderConfig;
use crate::runtime::ProviderBoard;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// A fully resolved image request: what the provider runs and what the job remembers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageSpec {
    pub provider: String,
    pub kind: String,
    pub task: Option<String>,
    pub workflow: String,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    /// The size generated (multiples of 8).
    pub width: u32,
    pub height: u32,
    /// The size asked for, before rounding.
    pub requested_width: u32,
    pub requested_height: u32,
    pub aspect_ratio: Option<String>,
    /// The actual seed (a random one when the caller sent none or -1).
    pub seed: u64,
    pub steps: Option<u32>,
    pub cfg: Option<f64>,
    /// KSampler's `sampler_name`, `scheduler` and `denoise` (older stored jobs have none).
    #[serde(default)]
    pub sampler: Option<String>,
    #[serde(default)]
    pub scheduler: Option<String>,
    #[serde(default)]
    pub denoise: Option<f64>,
    pub count: u32,
    pub checkpoint: Option<String>,
    pub brand: Option<Value>,
    pub generator_mode: String,
    pub request_id: String,
    /// ComfyUI routes execution events to this client id only.
    pub client_id: String,
    /// Who asked (for the usage row written when the job ends).
    pub caller: String,
    pub key_id: Option<String>,
    /// The provider instance the job runs on (pinned for progress, cancel and recovery).
    #[serde(default)]
    pub instance: Option<String>,
    /// GPU memory the workflow needs (MB), from its manifest.
    #[serde(default)]
    pub vram_mb: Option<u64>,
}

/// One image a provider produced.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub data: Vec<u8>,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub seed: u64,
}

/// Everything a provider needs to run (or resume) one job.
pub struct JobRun {
    pub job_id: String,
    pub spec: ImageSpec,
    /// Set when the gateway restarted: the upstream id of a job submitted before.
    pub resume_upstream: Option<String>,
    /// Cancelled when the job is cancelled or times out: work done locally (the mock's
    /// drawing) checks it and stops.
    pub stop: tokio_util::sync::CancellationToken,
    /// Submit once more when the provider restarted and lost the job.
    pub resubmit: bool,
}

pub use super::views::ModelInfo;

#[async_trait::async_trait]
pub trait MediaProvider: Send + Sync {
    fn name(&self) -> &str;
    /// The registry kind (`comfyui`, `mock`).
    fn kind(&self) -> &'static str;
    fn config(&self) -> &MediaProviderConfig;
    fn workflows(&self) -> &Workflows;
    /// Cheap health (never generates anything).
    async fn health(&self) -> super::views::ProviderHealth;
    async fn models(&self) -> Result<Vec<ModelInfo>, Error>;
    /// Checks that can fail fast, before a job exists (reachable, workflow valid, model
    /// present). Returns the instance the job should run on, when the provider has several.
    async fn prepare(&self, spec: &ImageSpec) -> Result<Option<String>, Error>;
    /// Run (or resume) one job to its end, reporting state through `updates`.
    /// Dropping the future stops following the job; it does not cancel it upstream.
    async fn run(&self, job: &JobRun, updates: &JobUpdates) -> Result<Vec<GeneratedImage>, Error>;
    /// Remove a job from the upstream queue, or interrupt it when it is running.
    async fn cancel(&self, upstream_id: &str, instance: Option<&str>) -> Result<(), Error>;
    /// Start background work (probes) and see the supervisor's view of services.
    fn attach(&self, _board: Arc<ProviderBoard>, _shutdown: tokio_util::sync::CancellationToken) {}
    /// Give the GPU memory back (ComfyUI's `POST /free`); nothing for a provider without one.
    async fn free_memory(&self) -> Result<(), Error> {
        Ok(())
    }
    /// GPU bytes it holds now (its CUDA devices), when it says.
    async fn vram_used(&self) -> Option<u64> {
        None
    }
    /// Each instance's state (breaker, queue, last probe), for health answers.
    fn instances(&self) -> Vec<(String, crate::resilience::pool::InstanceView)> {
        Vec::new()
    }
    /// The instances with their breakers, for a front that passes the provider's own
    /// API through (ComfyUI's); `None` for providers without one.
    fn pool(&self) -> Option<Arc<crate::resilience::Pool>> {
        None
    }
}

pub type SharedProvider = Arc<dyn MediaProvider>;

type Constructor = fn(name: &str, config: &MediaProviderConfig) -> anyhow::Result<SharedProvider>;

/// Provider kinds and how to build them.
const REGISTRY: &[(&str, Constructor)] = &[
    ("comfyui", super::providers::comfyui::build),
    ("mock", super::providers::mock::build),
];

pub fn known_kinds() -> Vec<&'static str> {
    REGISTRY.iter().map(|(k, _)| *k).collect()
}

pub fn is_known_kind(kind: &str) -> bool {
    REGISTRY.iter().any(|(k, _)| *k == kind)
}

/// Build the provider configured as `name`.
pub fn build(name: &str, config: &MediaProviderConfig) -> anyhow::Result<SharedProvider> {
    let (_, constructor) = REGISTRY
        .iter()
        .find(|(k, _)| *k == config.kind)
        .ok_or_else(|| anyhow::anyhow!("unknown media provider kind {:?}", config.kind))?;
    constructor(name, config)
}
