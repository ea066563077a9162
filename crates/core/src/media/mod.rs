//! The Media Gateway: images by kind through provider workflows (ComfyUI, or the
//! local mock), as durable jobs with progress, stored in the gateway's file store.
//!
//! Built once at start from `[media]`; HTTP handlers are in `http/routes/media.rs`.

pub mod files;
pub mod jobs;
pub mod provider;
pub mod providers;
pub mod request;
pub mod workflows;

use crate::config::{Config, GeneratorMode};
use crate::store::Store;
use crate::telemetry::Metrics;
use files::FileStore;
use jobs::JobManager;
use provider::SharedProvider;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct MediaGateway {
    providers: BTreeMap<String, SharedProvider>,
    /// Used in mock mode: the first provider of kind `mock` (a built-in one if none is configured).
    mock: SharedProvider,
    pub jobs: Arc<JobManager>,
    default_provider: String,
}

impl MediaGateway {
    /// Build every configured provider (a provider that cannot be built is left out
    /// with a warning: one bad entry must not stop the gateway).
    pub fn new(
        config: &Config,
        data_dir: &Path,
        store: Store,
        metrics: &Metrics,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut providers = BTreeMap::new();
        for (name, pc) in &config.media.providers {
            match provider::build(name, pc) {
                Ok(p) => {
                    providers.insert(name.clone(), p);
                }
                Err(e) => tracing::warn!(provider = %name, "media provider not available: {e:#}"),
            }
        }
        let mock = match providers.values().find(|p| p.kind() == "mock") {
            Some(p) => p.clone(),
            None => providers::mock::build(
                "mock",
                &crate::config::MediaProviderConfig {
                    kind: "mock".into(),
                    base_url: None,
                    timeout_s: 30.0,
                    workflow_dir: None,
                    checkpoint: None,
                    poll_interval_ms: 1000,
                    object_info_ttl_s: 0,
                    step_delay_ms: 0,
                },
            )?,
        };
        let files = FileStore::new(data_dir, store.clone())?;
        Ok(Self {
            providers,
            mock,
            jobs: Arc::new(JobManager::new(store, files, metrics, shutdown)),
            default_provider: config.media.default_provider.clone(),
        })
    }

    /// Pick up jobs an earlier run left unfinished (or fail them with the reason).
    pub async fn recover(&self) -> anyhow::Result<usize> {
        let providers = self.providers.clone();
        let mock = self.mock.clone();
        self.jobs
            .recover(move |name| {
                providers
                    .get(name)
                    .cloned()
                    .or_else(|| (name == mock.name()).then(|| mock.clone()))
            })
            .await
    }

    pub fn provider(&self, name: &str) -> Option<SharedProvider> {
        self.providers.get(name).cloned()
    }

    pub fn providers(&self) -> impl Iterator<Item = (&String, &SharedProvider)> {
        self.providers.iter()
    }

    pub fn default_provider(&self) -> &str {
        &self.default_provider
    }

    /// The provider a request goes to: mock mode → the mock; live → the named one
    /// (`auto` or none = `media.default_provider`).
    pub fn choose(
        &self,
        mode: GeneratorMode,
        requested: Option<&str>,
    ) -> Result<SharedProvider, String> {
        if mode == GeneratorMode::Mock {
            return Ok(self.mock.clone());
        }
        let name = match requested {
            None | Some("auto") | Some("") => self.default_provider.as_str(),
            Some(n) => n,
        };
        self.providers.get(name).cloned().ok_or_else(|| {
            format!(
                "{name:?} is not a configured media provider (have: {})",
                self.providers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    pub fn mock(&self) -> &SharedProvider {
        &self.mock
    }
}
