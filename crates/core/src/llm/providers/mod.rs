//! The provider registry: `kind` in `[llm.providers.NAME]` → constructor.
//! Adding a provider = a new file here + one line in [`REGISTRY`] + its config.

pub mod mock;
pub mod ollama;

use super::provider::LlmProvider;
use crate::config::LlmProviderConfig;
use std::sync::Arc;

type Constructor = fn(&str, &LlmProviderConfig) -> anyhow::Result<Arc<dyn LlmProvider>>;

/// Every provider kind this build knows.
pub const REGISTRY: &[(&str, Constructor)] = &[
    ("ollama", ollama::OllamaProvider::build),
    ("mock", mock::MockProvider::build),
];

/// The kinds a config may name.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|(k, _)| *k)
}

/// Build the provider `name` from its config section.
pub fn build_provider(name: &str, cfg: &LlmProviderConfig) -> anyhow::Result<Arc<dyn LlmProvider>> {
    let (_, construct) = REGISTRY
        .iter()
        .find(|(kind, _)| *kind == cfg.kind)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "llm.providers.{name}.kind {:?} is not a provider kind (have: {})",
                cfg.kind,
                kinds().collect::<Vec<_>>().join(", ")
            )
        })?;
    construct(name, cfg)
}
