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
    /// `status == healthy`: what the team's frontend reads.
    pub available: bool,
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
    /// Each instance: breaker, queue, last probe (answered from memory).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub instances: BTreeMap<String, crate::resilience::pool::InstanceView>,
}

impl ProviderHealth {
    pub fn healthy(vendor: &'static str) -> Self {
        Self {
            status: HealthStatus::Healthy,
            available: true,
            vendor,
            base_url: None,
            version: None,
            devices: None,
            model: None,
            error: None,
            services: Vec::new(),
            instances: BTreeMap::new(),
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
    /// ComfyUI's queue (the Desk's jobs and outside prompts), when a ComfyUI provider exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comfyui_queue: Option<super::passthrough::FrontQueue>,
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
    /// `checkpoint`, `lora`, `vae` or `upscaler`.
    #[serde(rename = "type")]
    pub model_type: String,
    pub provider: String,
    /// The file's size, when ComfyUI's models folder is on this machine (`models_dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
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
    pub workflow_aliases: BTreeMap<String, String>,
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
    /// Model files the workflow loads (its loader nodes, with the configured checkpoint).
    pub requires: Vec<super::workflows::ModelFile>,
    /// Those the provider does not list (known only when its lists could be read).
    pub missing_models: Vec<super::workflows::ModelFile>,
}

/// One image a job stored (in the job's result).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StoredImage {
    pub id: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub seed: Option<u64>,
    pub bytes: u64,
    pub sha256: String,
}

/// What a succeeded job keeps: its images and how long the provider took.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct JobResult {
    pub files: Vec<StoredImage>,
    pub generation_time_s: f64,
}

/// `POST /api/v1/media/image/generate` and `/media/generate` → 200: the design's
/// `images` and the backend code's `outputs` for the same files.
#[derive(Debug, Clone, Serialize)]
pub struct MediaAnswer {
    pub status: &'static str,
    pub job_id: String,
    pub provider: String,
    /// The workflow (the backend's code calls it the model).
    pub model: String,
    pub kind: String,
    pub task: Option<String>,
    pub images: Vec<ImageView>,
    pub outputs: Vec<OutputView>,
    pub usage: MediaUsage,
    pub meta: MediaMeta,
    pub timestamp: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageView {
    pub id: String,
    pub url: String,
    pub width: u32,
    pub height: u32,
    pub seed: Option<u64>,
    pub mime_type: String,
    pub bytes: u64,
    pub meta: ImageMeta,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageMeta {
    pub workflow: String,
    pub seed: Option<u64>,
    pub aspect_ratio: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputView {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub format: String,
    /// The URL, or the image as base64 (`encoding` says which).
    pub data: String,
    pub encoding: &'static str,
    pub url: String,
    pub width: u32,
    pub height: u32,
    pub duration: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MediaUsage {
    pub generation_time: f64,
    pub images: usize,
    pub vram_used: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MediaMeta {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub kind: String,
    pub task: Option<String>,
    pub workflow: String,
    pub seed: u64,
    pub steps: Option<u32>,
    pub cfg_scale: Option<f64>,
    pub sampler: Option<String>,
    pub scheduler: Option<String>,
    pub denoise: Option<f64>,
    pub width: u32,
    pub height: u32,
    pub requested_width: u32,
    pub requested_height: u32,
    pub aspect_ratio: Option<String>,
    pub prompt_id: Option<String>,
    pub latency_ms: f64,
    pub generator_mode: String,
    pub request_id: String,
}

impl MediaAnswer {
    /// The answer for a succeeded job. `url_of` makes a file's URL; `base64`, when the
    /// caller asked for it, holds each file's content in the same order.
    pub fn new(
        spec: &super::provider::ImageSpec,
        view: &super::jobs::JobView,
        url_of: &dyn Fn(&str) -> String,
        base64: Option<Vec<String>>,
        latency_ms: f64,
    ) -> Self {
        let empty = JobResult {
            files: Vec::new(),
            generation_time_s: 0.0,
        };
        let result = view.result.as_ref().unwrap_or(&empty);
        let mut data = base64.map(Vec::into_iter);
        let mut images = Vec::new();
        let mut outputs = Vec::new();
        for f in &result.files {
            let url = url_of(&f.id);
            let (data, encoding) = match data.as_mut().and_then(Iterator::next) {
                Some(b64) => (b64, "base64"),
                None => (url.clone(), "url"),
            };
            images.push(ImageView {
                id: f.id.clone(),
                url: url.clone(),
                width: f.width,
                height: f.height,
                seed: f.seed,
                mime_type: f.mime.clone(),
                bytes: f.bytes,
                meta: ImageMeta {
                    workflow: spec.workflow.clone(),
                    seed: f.seed,
                    aspect_ratio: spec.aspect_ratio.clone(),
                },
            });
            outputs.push(OutputView {
                kind: "image",
                format: f.mime.strip_prefix("image/").unwrap_or("png").to_string(),
                data,
                encoding,
                url,
                width: f.width,
                height: f.height,
                duration: None,
            });
        }
        Self {
            status: "completed",
            job_id: view.job_id.clone(),
            provider: view.provider.clone(),
            model: view.workflow.clone(),
            kind: spec.kind.clone(),
            task: spec.task.clone(),
            usage: MediaUsage {
                generation_time: result.generation_time_s,
                images: result.files.len(),
                vram_used: 0,
            },
            images,
            outputs,
            meta: MediaMeta {
                prompt: spec.prompt.clone(),
                negative_prompt: spec.negative_prompt.clone(),
                kind: spec.kind.clone(),
                task: spec.task.clone(),
                workflow: spec.workflow.clone(),
                seed: spec.seed,
                steps: spec.steps,
                cfg_scale: spec.cfg,
                sampler: spec.sampler.clone(),
                scheduler: spec.scheduler.clone(),
                denoise: spec.denoise,
                width: spec.width,
                height: spec.height,
                requested_width: spec.requested_width,
                requested_height: spec.requested_height,
                aspect_ratio: spec.aspect_ratio.clone(),
                prompt_id: view.upstream_id.clone(),
                latency_ms,
                generator_mode: spec.generator_mode.clone(),
                request_id: spec.request_id.clone(),
            },
            timestamp: crate::store::now_text(),
        }
    }
}
