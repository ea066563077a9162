//! What a config reload replaces in the LLM Gateway: providers, routes, prompts,
//! sampling and validation. A request takes one snapshot when it starts and keeps it,
//! so a reload never changes a request half-way; the next request sees the new one.

use super::prompts::Prompts;
use super::provider::LlmProvider;
use super::router::Router;
use super::Slot;
use crate::config::{
    same_settings, LlmConfig, LlmProviderConfig, SamplingConfig, ValidationConfig,
};
use crate::gateway::GatewayLinks;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One provider and the token that ends its background work (probes) when a reload
/// retires it.
pub(super) struct Built {
    pub slot: Slot,
    config: LlmProviderConfig,
    retire: CancellationToken,
    /// Tells a kept provider from a rebuilt one of the same name.
    id: u64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

pub struct Setup {
    pub(super) providers: BTreeMap<String, Built>,
    pub router: Router,
    pub prompts: Prompts,
    pub(super) sampling: SamplingConfig,
    pub(super) validation: ValidationConfig,
}

/// What a reload did to the LLM providers.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LlmReload {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Rebuilt because their settings changed (unchanged instances keep their breakers).
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl Setup {
    /// Build from config, reusing `previous`'s providers whose settings did not change
    /// (with their breakers, pools and probes as they are).
    pub(super) fn build(
        cfg: &LlmConfig,
        links: &GatewayLinks,
        previous: Option<&Setup>,
    ) -> anyhow::Result<(Self, LlmReload)> {
        let prompts = Prompts::load(cfg.prompt_dir.as_deref())?;
        let mut report = LlmReload::default();
        let mut providers = BTreeMap::new();
        for (name, pc) in &cfg.providers {
            let old = previous.and_then(|p| p.providers.get(name));
            if let Some(old) = old.filter(|o| same_settings(&o.config, pc)) {
                report.unchanged.push(name.clone());
                providers.insert(
                    name.clone(),
                    Built {
                        slot: old.slot.clone(),
                        config: old.config.clone(),
                        retire: old.retire.clone(),
                        id: old.id,
                    },
                );
                continue;
            }
            let retire = links.shutdown.child_token();
            let slot = match super::providers::build_provider(name, pc) {
                Ok(p) => {
                    if let Some(Slot::Ready(prev)) = old.map(|o| &o.slot) {
                        p.inherit(prev.as_ref());
                    }
                    p.attach(links.board.clone(), retire.clone());
                    Slot::Ready(p)
                }
                Err(e) => {
                    tracing::error!(provider = %name, "LLM provider unusable: {e:#}");
                    Slot::Broken(format!("{e:#}"))
                }
            };
            if old.is_some() {
                report.changed.push(name.clone());
            } else if previous.is_some() {
                report.added.push(name.clone());
            }
            providers.insert(
                name.clone(),
                Built {
                    slot,
                    config: pc.clone(),
                    retire,
                    id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                },
            );
        }
        if let Some(prev) = previous {
            for name in prev.providers.keys() {
                if !providers.contains_key(name) {
                    report.removed.push(name.clone());
                }
            }
        }
        Ok((
            Self {
                providers,
                router: Router::new(cfg),
                prompts,
                sampling: cfg.sampling.clone(),
                validation: cfg.validation.clone(),
            },
            report,
        ))
    }

    /// End the background work of providers `next` no longer uses. Calls in flight keep
    /// their provider (they hold it) and finish normally.
    pub(super) fn retire_unused(&self, next: &Setup) {
        for (name, built) in &self.providers {
            let kept = next.providers.get(name).is_some_and(|n| n.id == built.id);
            if !kept {
                built.retire.cancel();
            }
        }
    }

    pub(super) fn ready(&self, name: &str) -> Option<Arc<dyn LlmProvider>> {
        match self.providers.get(name).map(|b| &b.slot) {
            Some(Slot::Ready(p)) => Some(p.clone()),
            _ => None,
        }
    }

    pub(super) fn slot(&self, name: &str) -> Option<&Slot> {
        self.providers.get(name).map(|b| &b.slot)
    }

    pub(super) fn slots(&self) -> impl Iterator<Item = (&String, &Slot)> {
        self.providers.iter().map(|(n, b)| (n, &b.slot))
    }
}
