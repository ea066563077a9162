//! The Media Gateway: images by kind through provider workflows (ComfyUI, or the
//! local mock), as durable jobs with progress, stored in the gateway's file store.
//!
//! Transport-free: [`MediaGateway::generate`] owns the pipeline (switches, provider
//! choice, validation, down checks, the job, the wait, usage) the way `LlmGateway` owns
//! the LLM one; the HTTP layer parses, calls, and renders URLs.

pub mod error;
pub mod files;
pub mod gpu_side;
pub mod jobs;
pub mod passthrough;
pub mod provider;
pub mod providers;
pub mod request;
pub mod setup;
pub mod views;
pub mod workflows;

pub use error::{Error, ErrorKind};

use crate::config::{Config, GeneratorMode, MediaConfig, MediaProviderConfig};
use crate::gateway::{Finished, GatewayLinks, RequestKind, Requester};
use crate::store::Store;
use arc_swap::ArcSwap;
use files::FileStore;
use jobs::{JobManager, JobView};
use provider::{ImageSpec, SharedProvider};
use request::{resolve, GenerateRequest, ResolveContext};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest `request_id` a request may bring (as on the LLM side).
pub const MAX_REQUEST_ID: usize = 128;
pub struct MediaGateway {
    /// Providers, `[media]` tables and the ComfyUI front: replaced whole by a reload.
    setup: Arc<ArcSwap<setup::MediaSetup>>,
    pub jobs: Arc<JobManager>,
    /// Images drawn at once and waiting (mock and live alike).
    pub work: crate::work::WorkLimiter,
    links: GatewayLinks,
}

/// Who asked, under which id, and whether they wait for the image.
#[derive(Debug, Clone)]
pub struct MediaRequestCtx {
    pub request_id: String,
    pub requester: Requester,
    /// Answer once the provider accepted the job (202) instead of waiting for the image.
    pub run_async: bool,
    /// `outputs[].data` as base64 unless the request says `options.return` (the
    /// caller's key or `media.default_return` decides).
    pub base64_by_default: bool,
}

/// A request that got as far as a job.
#[derive(Debug, Clone)]
pub struct Generated {
    pub spec: ImageSpec,
    /// `succeeded`, or (async) the state when the provider accepted it.
    pub view: JobView,
    /// The caller asked for `outputs[].data` as base64.
    pub return_base64: bool,
    pub started: Instant,
}

/// The mock provider's settings when the config has none: no network, a 30 s job limit.
pub fn builtin_mock_config() -> MediaProviderConfig {
    MediaProviderConfig::of_kind("mock")
}

impl MediaGateway {
    /// Build every configured provider (a provider that cannot be built is left out
    /// with a warning: one bad entry must not stop the gateway).
    pub fn new(
        config: &Config,
        data_dir: &Path,
        store: Store,
        links: GatewayLinks,
    ) -> anyhow::Result<Self> {
        let (setup, _) = setup::MediaSetup::build(config, &links, None)?;
        let files = FileStore::new(data_dir, store.clone())?;
        Ok(Self {
            setup: Arc::new(ArcSwap::from_pointee(setup)),
            jobs: Arc::new(JobManager::new(
                store,
                files,
                links.usage.clone(),
                config.media.resubmit_after_restart,
                links.shutdown.clone(),
                links.gpu.clone(),
            )),
            work: crate::work::WorkLimiter::new(
                config.media.max_concurrent,
                config.media.max_queue,
            ),
            links,
        })
    }

    /// Apply a reloaded config: providers whose settings did not change are kept as they
    /// are; jobs in flight finish on the provider they started on. `[media]
    /// max_concurrent`/`max_queue` and the file store keep their start-up values.
    pub fn reload(&self, config: &Config) -> anyhow::Result<setup::MediaReload> {
        let previous = self.setup.load_full();
        let (next, report) = setup::MediaSetup::build(config, &self.links, Some(&previous))?;
        previous.retire_unused(&next);
        self.setup.store(Arc::new(next));
        Ok(report)
    }

    fn setup(&self) -> Arc<setup::MediaSetup> {
        self.setup.load_full()
    }

    /// ComfyUI's own API passed through (`/comfyui/*`), when a ComfyUI provider exists.
    pub fn front(&self) -> Option<Arc<passthrough::ComfyFront>> {
        self.setup().front.clone()
    }

    /// This gateway as the GPU arbitration sees it.
    pub fn gpu_side(&self) -> std::sync::Arc<dyn crate::gpu::MediaSide> {
        std::sync::Arc::new(gpu_side::MediaGpuSide {
            setup: self.setup.clone(),
            work: self.work.clone(),
        })
    }

    /// Pick up jobs an earlier run left unfinished (or fail them with the reason).
    pub async fn recover(&self) -> anyhow::Result<usize> {
        let setup = self.setup();
        let providers = setup.providers.clone();
        let mock = setup.mock.clone();
        self.jobs
            .recover(move |name| {
                providers
                    .get(name)
                    .cloned()
                    .or_else(|| (name == mock.name()).then(|| mock.clone()))
            })
            .await
    }

    pub fn providers(&self) -> Vec<(String, SharedProvider)> {
        self.setup()
            .providers
            .iter()
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect()
    }

    pub fn default_provider(&self) -> String {
        self.setup().config.default_provider.clone()
    }

    /// `[media]` as the last (re)load set it.
    pub fn config(&self) -> MediaConfig {
        self.setup().config.clone()
    }

    pub fn files(&self) -> &FileStore {
        self.jobs.files()
    }

    pub fn mock(&self) -> SharedProvider {
        self.setup().mock.clone()
    }

    /// The provider a request goes to, and the one whose workflows it is checked against:
    /// live → the named one (`auto` or none = `media.default_provider`) for both; mock
    /// mode → the mock draws, but the name and the workflow are judged as live would
    /// judge them, so a request mock mode accepts is one live mode accepts (a backend's
    /// mock suite must not pass requests its live run refuses).
    pub fn choose(
        &self,
        mode: GeneratorMode,
        requested: Option<&str>,
    ) -> Result<(SharedProvider, SharedProvider), Error> {
        let setup = self.setup();
        let named = match requested {
            None | Some("auto" | "") => None,
            Some(n) => Some(n),
        };
        let name = named.unwrap_or(setup.config.default_provider.as_str());
        let live = setup.providers.get(name).cloned();
        if mode == GeneratorMode::Mock {
            // Zero setup: with no live provider configured, the mock's own workflows.
            if live.is_some() || named.is_none() {
                let catalog = live.unwrap_or_else(|| setup.mock.clone());
                return Ok((setup.mock.clone(), catalog));
            }
        }
        live.map(|p| (p.clone(), p)).ok_or_else(|| {
            Error::validation(
                "provider",
                format!(
                    "{name:?} is not a configured media provider (have: {})",
                    setup
                        .providers
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    /// The whole pipeline for one image request. Failures before a job exists are
    /// recorded here; a job records its own end.
    pub async fn generate(
        &self,
        req: GenerateRequest,
        ctx: MediaRequestCtx,
    ) -> Result<Generated, Error> {
        let started = Instant::now();
        // Checked before anything records it: the id goes into usage rows and logs.
        if req
            .request_id
            .as_ref()
            .is_some_and(|id| id.len() > MAX_REQUEST_ID)
        {
            return Err(Error::validation(
                "request_id",
                format!("at most {MAX_REQUEST_ID} characters"),
            )
            .naming(None, None));
        }
        // `options.mock = true` switches this one request to the mock, as on the LLM side.
        let mode = self
            .links
            .mode_for(req.options.as_ref().and_then(|o| o.mock) == Some(true));
        let mut spec_seen: Option<ImageSpec> = None;
        let result = self.start_job(&req, &ctx, mode, &mut spec_seen).await;
        let (spec, mut rx, provider) = match result {
            Ok(x) => x,
            Err(e) => {
                self.record_rejected(&req, &ctx, mode, spec_seen.as_ref(), &e, started)
                    .await;
                let seen = spec_seen.as_ref();
                return Err(e.naming(
                    seen.map(|s| s.provider.as_str()),
                    seen.map(|s| s.workflow.as_str()),
                ));
            }
        };
        let named = |e: Error| e.naming(Some(&spec.provider), Some(&spec.workflow));
        // A caller that waits for the image and goes away takes the job with it.
        let job_id = rx.borrow().job_id.clone();
        let abandon = (!ctx.run_async).then(|| CancelOnDrop {
            jobs: self.jobs.clone(),
            job_id: Some(job_id),
        });
        // Async: answer once the provider has accepted (or refused) the job.
        // Sync: wait for the end; the job enforces the provider timeout itself.
        let limit = Duration::from_secs_f64(provider.config().timeout_s() + 10.0);
        let run_async = ctx.run_async;
        let _ = tokio::time::timeout(
            limit,
            // Async: also answered while the job waits for GPU memory (it says so).
            rx.wait_for(|v| {
                v.status.is_terminal() || (run_async && (v.accepted || v.waiting_for_gpu()))
            }),
        )
        .await;
        let view = rx.borrow().clone();
        if view.status.is_terminal() && view.status != jobs::JobStatus::Succeeded {
            let e = view
                .error
                .as_ref()
                .map_or_else(|| Error::internal("job failed"), Error::from_json);
            return Err(named(e.with("job_id", view.job_id.clone())));
        }
        if !run_async && view.status != jobs::JobStatus::Succeeded {
            return Err(named(
                Error::new(ErrorKind::Timeout, "the job did not finish in time")
                    .with("job_id", view.job_id.clone()),
            ));
        }
        if let Some(mut guard) = abandon {
            guard.job_id = None;
        }
        let return_base64 = match req.options.as_ref().and_then(|o| o.return_as.as_deref()) {
            Some(asked) => asked == "base64",
            None => ctx.base64_by_default,
        };
        Ok(Generated {
            spec,
            view,
            return_base64,
            started,
        })
    }

    /// Switches, provider, spec, checks, job: everything that can fail fast.
    async fn start_job(
        &self,
        req: &GenerateRequest,
        ctx: &MediaRequestCtx,
        mode: GeneratorMode,
        spec_seen: &mut Option<ImageSpec>,
    ) -> Result<
        (
            ImageSpec,
            tokio::sync::watch::Receiver<JobView>,
            SharedProvider,
        ),
        Error,
    > {
        if self.links.runtime.paused() {
            return Err(Error::new(
                ErrorKind::Paused,
                crate::gateway::PAUSED_MESSAGE,
            ));
        }
        let (provider, catalog) = self.choose(mode, req.provider.as_deref())?;
        let setup = self.setup();
        // A mock provider named in live mode answers mock data, and says so.
        let generator_mode = if provider.kind() == "mock" {
            GeneratorMode::Mock
        } else {
            mode
        };
        let spec = resolve(
            req,
            ResolveContext {
                config: &setup.config,
                provider: provider.name().to_string(),
                generator_mode: generator_mode.as_str(),
                request_id: ctx.request_id.clone(),
                caller: ctx.requester.client.clone(),
                key_id: ctx.requester.key_id.clone(),
                random_seed: u64::from_le_bytes(
                    uuid::Uuid::new_v4().as_bytes()[..8]
                        .try_into()
                        .unwrap_or([0; 8]),
                ),
            },
        )?;
        let mut spec = spec;
        if let Some(wf) = catalog.workflows().get(&spec.workflow) {
            // The mock draws on no GPU.
            if provider.kind() != "mock" {
                spec.vram_mb = wf.vram_mb;
            }
            report_what_the_workflow_runs(&mut spec, &wf);
        }
        *spec_seen = Some(spec.clone());
        if catalog.workflows().get(&spec.workflow).is_none() {
            return Err(Error::validation(
                "options.workflow",
                format!(
                    "{:?} is not a workflow (have: {})",
                    spec.workflow,
                    catalog.workflows().names().join(", ")
                ),
            ));
        }
        if let Some(reason) = self.links.board.down_reason(provider.name()) {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("{} is down: {reason}", provider.name()),
            )
            .with("provider", provider.name()));
        }
        spec.instance = provider.prepare(&spec).await?;
        let ticket = self.work.reserve().map_err(|o| {
            Error::new(
                ErrorKind::Overloaded,
                format!(
                    "{} image jobs are running or waiting already; try again in {} s",
                    o.waiting, o.retry_after_s
                ),
            )
            .with("retry_after_s", o.retry_after_s)
        })?;
        let rx = self
            .jobs
            .create(spec.clone(), provider.clone(), ticket)
            .await?;
        Ok((spec, rx, provider))
    }

    async fn record_rejected(
        &self,
        req: &GenerateRequest,
        ctx: &MediaRequestCtx,
        mode: GeneratorMode,
        spec: Option<&ImageSpec>,
        e: &Error,
        started: Instant,
    ) {
        let kind = spec
            .map(|s| s.kind.clone())
            .or_else(|| req.kind.clone())
            .unwrap_or_else(|| "unknown".into());
        let mut f = Finished::new(
            RequestKind::Media,
            ctx.request_id.clone(),
            ctx.requester.clone(),
        );
        f.provider = Some(
            spec.map(|s| s.provider.clone())
                .or_else(|| e.provider().map(str::to_string))
                .unwrap_or_else(|| "none".into()),
        );
        f.task = req.task.clone().or(Some(kind.clone()));
        f.image_kind = Some(kind);
        f.mode = Some(mode.as_str().into());
        f.model = spec.map(|s| s.workflow.clone());
        f.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        f.status = e.status();
        f.error_code = Some(e.code().to_string());
        self.links.usage.record(f).await;
    }

    /// Whether each live provider can be reached, from its probes and breakers (no call).
    pub fn reach(&self) -> Vec<crate::gateway::ProviderReach> {
        let setup = self.setup();
        setup
            .providers
            .iter()
            .filter(|(_, p)| p.kind() != "mock")
            .filter_map(|(name, p)| {
                crate::gateway::ProviderReach::of(
                    "media",
                    name,
                    *name == setup.config.default_provider,
                    &p.instances(),
                    self.links.board.down_reason(name).is_some(),
                )
            })
            .collect()
    }

    /// Every provider's cheap health, and the one requests go to now.
    pub async fn health(&self) -> views::MediaHealth {
        use crate::gateway::HealthStatus;
        let mode = self.links.runtime.mode();
        let setup = self.setup();
        let mut providers = BTreeMap::new();
        for (name, p) in &setup.providers {
            let mut h = p.health().await;
            if let Some(reason) = self.links.board.down_reason(name) {
                h.status = HealthStatus::Unavailable;
                h.error = Some(reason);
            }
            h.instances = p.instances().into_iter().collect();
            providers.insert(name.clone(), h);
        }
        let active = match mode {
            GeneratorMode::Mock => setup.mock.name().to_string(),
            GeneratorMode::Live => setup.config.default_provider.clone(),
        };
        if !providers.contains_key(&active) {
            providers.insert(active.clone(), setup.mock.health().await);
        }
        for h in providers.values_mut() {
            h.available = h.status == HealthStatus::Healthy;
        }
        let healthy = providers
            .get(&active)
            .is_some_and(|h| h.status == HealthStatus::Healthy);
        let (queued, running) = self.jobs.counts();
        let comfyui_queue = self.front_queue().await;
        views::MediaHealth {
            comfyui_queue,
            gateway: if healthy {
                HealthStatus::Healthy
            } else {
                HealthStatus::Unhealthy
            },
            mode: mode.as_str(),
            paused: self.links.runtime.paused(),
            active_provider: active,
            providers,
            jobs: views::JobCounts { queued, running },
        }
    }

    /// ComfyUI's one queue, shared by the Desk's jobs and outside prompts sent through
    /// the ComfyUI front, with whose each prompt is.
    pub async fn front_queue(&self) -> Option<passthrough::FrontQueue> {
        match self.front() {
            Some(f) => Some(f.queue(&self.jobs).await),
            None => None,
        }
    }

    /// Model files (checkpoints, LoRAs, VAEs) as each provider reports them, plus the
    /// workflows and the kind/task tables.
    pub async fn models(&self) -> views::MediaModels {
        use views::{ModelsStatus, ProviderModels, WorkflowInfo};
        let mock_mode = self.links.runtime.mode() == GeneratorMode::Mock;
        let mut models = Vec::new();
        let mut providers = BTreeMap::new();
        let setup = self.setup();
        for (name, p) in &setup.providers {
            let checkpoint = setup
                .config
                .providers
                .get(name)
                .and_then(|c| c.checkpoint.clone());
            let mut workflows: Vec<WorkflowInfo> = p
                .workflows()
                .all()
                .map(|w| WorkflowInfo {
                    name: w.name.clone(),
                    description: w.description.clone(),
                    parameters: w.parameters.keys().cloned().collect(),
                    source: w.source.clone(),
                    requires: w.required_models(checkpoint.as_deref()),
                    missing_models: Vec::new(),
                })
                .collect();
            let entry = if self.links.board.down_reason(name).is_some() {
                ProviderModels {
                    status: ModelsStatus::Unavailable,
                    models: None,
                    error: None,
                    workflows,
                }
            } else {
                match p.models().await {
                    Ok(list) => {
                        // Missing: a required file of a type the provider lists, not listed.
                        let listed_types: std::collections::BTreeSet<&str> =
                            ["checkpoint", "lora", "vae", "upscaler"]
                                .into_iter()
                                .collect();
                        // The mock draws without model files.
                        let checked = if p.kind() == "mock" {
                            &mut [][..]
                        } else {
                            &mut workflows[..]
                        };
                        for w in checked {
                            w.missing_models = w
                                .requires
                                .iter()
                                .filter(|f| listed_types.contains(f.model_type.as_str()))
                                .filter(|f| {
                                    !list
                                        .iter()
                                        .any(|m| m.model_type == f.model_type && m.name == f.name)
                                })
                                .cloned()
                                .collect();
                        }
                        // In live mode the mock's model is not one the caller can use.
                        if mock_mode || p.kind() != "mock" {
                            models.extend(list.iter().cloned());
                        }
                        ProviderModels {
                            status: ModelsStatus::Ok,
                            models: Some(list),
                            error: None,
                            workflows,
                        }
                    }
                    Err(e) => ProviderModels {
                        status: ModelsStatus::Unavailable,
                        models: None,
                        error: Some(e.message),
                        workflows,
                    },
                }
            };
            providers.insert(name.clone(), entry);
        }
        views::MediaModels {
            total: models.len(),
            models,
            default_provider: setup.config.default_provider.clone(),
            providers,
            kinds: setup.config.kinds.clone(),
            tasks: setup.config.tasks.clone(),
            aspect_ratios: setup.config.aspect_ratios.clone(),
            workflow_aliases: setup.config.workflow_aliases.clone(),
        }
    }

    /// The spec a stored job was made from.
    pub async fn job_spec(&self, id: &str) -> Option<ImageSpec> {
        self.jobs.spec(id).await
    }
}

/// The sampler settings as the run will use them, so the answer's `meta` tells: a
/// parameter the workflow has no place for is not reported as used, and one the request
/// left out is the graph's own value.
fn report_what_the_workflow_runs(spec: &mut ImageSpec, wf: &workflows::Workflow) {
    fn settle<T>(
        value: &mut Option<T>,
        wf: &workflows::Workflow,
        param: &str,
        read: impl Fn(&Value) -> Option<T>,
    ) {
        if !wf.maps(param) {
            *value = None;
        } else if value.is_none() {
            *value = wf.default_of(param).and_then(read);
        }
    }
    let text = |v: &Value| v.as_str().map(str::to_string);
    settle(&mut spec.steps, wf, "steps", |v| {
        v.as_u64().and_then(|n| u32::try_from(n).ok())
    });
    settle(&mut spec.cfg, wf, "cfg", Value::as_f64);
    settle(&mut spec.sampler, wf, "sampler", text);
    settle(&mut spec.scheduler, wf, "scheduler", text);
    settle(&mut spec.denoise, wf, "denoise", Value::as_f64);
}

/// Cancels a job when the caller waiting for it goes away (unless disarmed).
struct CancelOnDrop {
    jobs: Arc<JobManager>,
    job_id: Option<String>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.job_id.take() {
            let jobs = self.jobs.clone();
            tokio::spawn(async move {
                tracing::info!(job = %id, "the caller went away: cancelling its image job");
                let _ = jobs.cancel(&id).await;
            });
        }
    }
}

/// Width and height from a PNG's IHDR chunk.
pub fn png_size(data: &[u8]) -> Option<(u32, u32)> {
    if data.len() < 24 || &data[..8] != b"\x89PNG\r\n\x1a\n" || &data[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(data[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(data[20..24].try_into().ok()?);
    Some((w, h))
}
