//! `GET /api/v1/models`: what the dashboard's model panel shows — for every LLM
//! provider its installed and loaded models (and the routed models it lacks), for every
//! media provider its checkpoints, LoRAs and VAEs. Always the real providers' state,
//! whatever the generator mode.

use crate::app::SharedState;
use crate::config::GeneratorMode;
use crate::llm::provider::ModelEntry;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct ModelsView {
    pub llm: Vec<LlmProviderModels>,
    pub media: Vec<MediaProviderModels>,
}

#[derive(Debug, Serialize)]
pub struct LlmProviderModels {
    pub provider: String,
    pub kind: String,
    pub base_url: Option<String>,
    /// Null when the provider was not asked (it cannot be built).
    pub reachable: Option<bool>,
    pub error: Option<String>,
    pub service_down: Option<String>,
    pub models: Vec<ModelEntry>,
    /// Models a route sends to this provider that it does not have.
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct MediaProviderModels {
    pub provider: String,
    pub kind: &'static str,
    pub base_url: Option<String>,
    pub error: Option<String>,
    pub service_down: Option<String>,
    /// Folder (`checkpoints`, `loras`, `vaes`, `upscalers`) → files.
    pub models: BTreeMap<String, Vec<MediaFile>>,
    /// Each workflow's model files, and those missing.
    pub workflows: Vec<WorkflowModels>,
}

#[derive(Debug, Serialize)]
pub struct MediaFile {
    pub name: String,
    /// When ComfyUI's models folder is on this machine (`models_dir`).
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct WorkflowModels {
    pub name: String,
    pub requires: Vec<crate::media::workflows::ModelFile>,
    pub missing_models: Vec<crate::media::workflows::ModelFile>,
}

pub async fn models(State(state): State<SharedState>) -> Json<ModelsView> {
    let llm_view = state.llm.models(GeneratorMode::Live).await;
    let cfg = state.config();

    let llm = cfg
        .llm
        .providers
        .iter()
        .map(|(name, p)| {
            let view = llm_view.providers.get(name);
            LlmProviderModels {
                provider: name.clone(),
                kind: p.kind.clone(),
                base_url: p.base_url.clone(),
                reachable: view.map(|v| v.reachable),
                error: view.and_then(|v| v.error.clone()),
                service_down: state.provider_board.down_reason(name),
                models: view.map(|v| v.models.clone()).unwrap_or_default(),
                missing: llm_view.missing(name),
            }
        })
        .collect();

    let media_view = state.media.models().await;
    let mut media = Vec::new();
    for (name, p) in state.media.providers() {
        let view = media_view.providers.get(name.as_str());
        let mut folders: BTreeMap<String, Vec<MediaFile>> = BTreeMap::new();
        for m in view.and_then(|v| v.models.as_ref()).into_iter().flatten() {
            folders
                .entry(format!("{}s", m.model_type))
                .or_default()
                .push(MediaFile {
                    name: m.name.clone(),
                    size_bytes: m.size_bytes,
                });
        }
        let workflows = view
            .map(|v| {
                v.workflows
                    .iter()
                    .map(|w| WorkflowModels {
                        name: w.name.clone(),
                        requires: w.requires.clone(),
                        missing_models: w.missing_models.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        media.push(MediaProviderModels {
            provider: name.clone(),
            kind: p.kind(),
            base_url: cfg
                .media
                .providers
                .get(name.as_str())
                .and_then(|c| c.base_url.clone()),
            error: view.and_then(|v| v.error.clone()),
            service_down: state.provider_board.down_reason(&name),
            models: folders,
            workflows,
        });
    }
    Json(ModelsView { llm, media })
}
