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
    /// Folder (`checkpoints`, `loras`, `vaes`) → file names.
    pub models: BTreeMap<String, Vec<String>>,
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

    let mut media = Vec::new();
    for (name, p) in state.media.providers() {
        let (folders, error) = match p.models().await {
            Ok(list) => {
                let mut folders: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for m in list {
                    folders
                        .entry(format!("{}s", m.model_type))
                        .or_default()
                        .push(m.name);
                }
                (folders, None)
            }
            Err(e) => (BTreeMap::new(), Some(e.message)),
        };
        media.push(MediaProviderModels {
            provider: name.clone(),
            kind: p.kind(),
            base_url: cfg
                .media
                .providers
                .get(name.as_str())
                .and_then(|c| c.base_url.clone()),
            error,
            service_down: state.provider_board.down_reason(name),
            models: folders,
        });
    }
    Json(ModelsView { llm, media })
}
