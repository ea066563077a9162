//! The LLM side of the GPU arbitration: whether a call is in flight, which models the
//! Ollama instances hold on the card, and unloading one (`keep_alive: 0`).

use super::front::FrontCall;
use super::LlmGateway;
use crate::gpu::{LlmSide, LoadedModel};
use crate::llm::provider::LlmProvider;
use async_trait::async_trait;
use std::sync::Weak;

pub struct LlmGpuSide {
    pub(super) gateway: Weak<LlmGateway>,
}

fn gpu_call() -> FrontCall {
    FrontCall {
        front: "gpu",
        endpoint: "unload",
        request_id: format!("gpu-{}", uuid::Uuid::new_v4().simple()),
        requester: crate::gateway::Requester {
            client: "gpu arbitration".into(),
            key_id: None,
        },
        timeout: None,
    }
}

#[async_trait]
impl LlmSide for LlmGpuSide {
    fn busy(&self) -> bool {
        let Some(g) = self.gateway.upgrade() else {
            return false;
        };
        g.ollama_backends().iter().any(|(_, p)| {
            LlmGateway::ollama(p)
                .is_some_and(|o| o.pool().instances.iter().any(|i| i.outstanding() > 0))
        })
    }

    async fn loaded(&self) -> Vec<LoadedModel> {
        let Some(g) = self.gateway.upgrade() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (provider, p) in g.ollama_backends() {
            for m in p.list_models().await.unwrap_or_default() {
                if m.loaded {
                    out.push(LoadedModel {
                        provider: provider.clone(),
                        model: m.name,
                        vram_bytes: m.size_vram.or(m.size_bytes).unwrap_or(0),
                    });
                }
            }
        }
        out
    }

    async fn unload(&self, provider: &str, model: &str) -> Result<(), String> {
        let Some(g) = self.gateway.upgrade() else {
            return Err("the gateway is gone".into());
        };
        g.unload_model(&gpu_call(), provider, model)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl LlmGateway {
    /// Before a live call to an Ollama model no instance holds in memory: let the GPU
    /// arbitration make room for it (it may ask an idle ComfyUI to free its models).
    pub(super) async fn make_room(&self, plan: &super::Plan) {
        if plan.generator_mode != crate::config::GeneratorMode::Live || !self.links.gpu.active() {
            return;
        }
        let Some(ollama) = Self::ollama(&plan.provider) else {
            return;
        };
        if ollama.model_loaded(&plan.model) {
            return;
        }
        let size = ollama.list_models().await.ok().and_then(|models| {
            models
                .into_iter()
                .find(|m| super::same_model(&m.name, &plan.model))
                .and_then(|m| m.size_bytes)
        });
        // Loaded meanwhile (the listing refreshed what the instances hold), or unknown.
        let (Some(need), false) = (size, ollama.model_loaded(&plan.model)) else {
            return;
        };
        self.links
            .gpu
            .before_llm_model(&plan.model, need, plan.call.deadline)
            .await;
    }

    /// This gateway as the GPU arbitration sees it.
    pub fn gpu_side(self: &std::sync::Arc<Self>) -> std::sync::Arc<dyn LlmSide> {
        std::sync::Arc::new(LlmGpuSide {
            gateway: std::sync::Arc::downgrade(self),
        })
    }
}
