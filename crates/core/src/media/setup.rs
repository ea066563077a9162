//! What a config reload replaces in the Media Gateway: providers, the `[media]` tables
//! (default provider, kinds, tasks) and the ComfyUI front's upstream. Jobs and their
//! files stay; a job in flight keeps the provider it started on.

use super::passthrough::{self, ComfyFront};
use super::provider::{self, SharedProvider};
use crate::config::{same_settings, ComfyFrontConfig, Config, MediaConfig, MediaProviderConfig};
use crate::gateway::GatewayLinks;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

struct Built {
    provider: SharedProvider,
    config: MediaProviderConfig,
    retire: CancellationToken,
}

pub struct MediaSetup {
    built: BTreeMap<String, Built>,
    pub(super) providers: BTreeMap<String, SharedProvider>,
    /// Used in mock mode: the first provider of kind `mock` (a built-in one if none is configured).
    pub(super) mock: SharedProvider,
    pub(super) config: MediaConfig,
    front_config: ComfyFrontConfig,
    /// ComfyUI's own API passed through (`/comfyui/*`), when a ComfyUI provider exists.
    pub(super) front: Option<Arc<ComfyFront>>,
}

/// What a reload did to the media providers.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MediaReload {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl MediaSetup {
    /// Build every configured provider (a provider that cannot be built is left out
    /// with a warning: one bad entry must not stop the gateway), reusing `previous`'s
    /// unchanged ones as they are.
    pub(super) fn build(
        config: &Config,
        links: &GatewayLinks,
        previous: Option<&MediaSetup>,
    ) -> anyhow::Result<(Self, MediaReload)> {
        let mut report = MediaReload::default();
        let mut built = BTreeMap::new();
        for (name, pc) in &config.media.providers {
            let old = previous.and_then(|p| p.built.get(name));
            if let Some(old) = old.filter(|o| same_settings(&o.config, pc)) {
                report.unchanged.push(name.clone());
                built.insert(
                    name.clone(),
                    Built {
                        provider: old.provider.clone(),
                        config: old.config.clone(),
                        retire: old.retire.clone(),
                    },
                );
                continue;
            }
            match provider::build(name, pc) {
                Ok(p) => {
                    if let (Some(new_pool), Some(old_pool)) =
                        (p.pool(), old.and_then(|o| o.provider.pool()))
                    {
                        new_pool.inherit(&old_pool);
                    }
                    let retire = links.shutdown.child_token();
                    p.attach(links.board.clone(), retire.clone());
                    built.insert(
                        name.clone(),
                        Built {
                            provider: p,
                            config: pc.clone(),
                            retire,
                        },
                    );
                }
                Err(e) => tracing::warn!(provider = %name, "media provider not available: {e:#}"),
            }
            if old.is_some() {
                report.changed.push(name.clone());
            } else if previous.is_some() {
                report.added.push(name.clone());
            }
        }
        if let Some(prev) = previous {
            report.removed = prev
                .built
                .keys()
                .filter(|n| !config.media.providers.contains_key(*n))
                .cloned()
                .collect();
        }
        let providers: BTreeMap<String, SharedProvider> = built
            .iter()
            .map(|(n, b)| (n.clone(), b.provider.clone()))
            .collect();
        let mock = match providers.values().find(|p| p.kind() == "mock") {
            Some(p) => p.clone(),
            // The built-in mock (not a configured one) is kept with its jobs.
            None => {
                match previous.filter(|p| !p.providers.values().any(|q| Arc::ptr_eq(q, &p.mock))) {
                    Some(prev) => prev.mock.clone(),
                    None => super::providers::mock::build("mock", &super::builtin_mock_config())?,
                }
            }
        };
        let front = Self::front(config, &providers, previous);
        Ok((
            Self {
                built,
                providers,
                mock,
                config: config.media.clone(),
                front_config: config.fronts.comfyui.clone(),
                front,
            },
            report,
        ))
    }

    /// The ComfyUI front: kept (with the outside prompts it remembers) when its provider
    /// and settings did not change.
    fn front(
        config: &Config,
        providers: &BTreeMap<String, SharedProvider>,
        previous: Option<&MediaSetup>,
    ) -> Option<Arc<ComfyFront>> {
        let chosen = passthrough::front_provider(
            &config.fronts.comfyui,
            &config.media.default_provider,
            providers.iter(),
        );
        let Some(p) = chosen else {
            if let Some(name) = &config.fronts.comfyui.provider {
                tracing::warn!(
                    "fronts.comfyui.provider = {name:?} is not a media provider of kind \"comfyui\": /comfyui answers 503"
                );
            }
            return None;
        };
        if let Some(prev) = previous {
            let same_provider = prev
                .providers
                .get(p.name())
                .is_some_and(|old| Arc::ptr_eq(old, &p));
            if same_provider && same_settings(&prev.front_config, &config.fronts.comfyui) {
                if let Some(f) = &prev.front {
                    return Some(f.clone());
                }
            }
        }
        match ComfyFront::new(&p, &config.fronts.comfyui) {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                tracing::warn!("the ComfyUI front has no upstream: {e:#}");
                None
            }
        }
    }

    /// End the probes of providers `next` no longer uses.
    pub(super) fn retire_unused(&self, next: &MediaSetup) {
        for (name, b) in &self.built {
            let kept = next
                .built
                .get(name)
                .is_some_and(|n| Arc::ptr_eq(&n.provider, &b.provider));
            if !kept {
                b.retire.cancel();
            }
        }
    }
}
