//! ComfyUI as a media provider: workflows checked against `/object_info` before
//! queueing, `POST /prompt` with our own client and prompt ids, progress from the
//! `/ws` socket (end = `executing` with `node: null`, sent after history is written),
//! `/history` polling when the socket drops, outputs through `/view`.

use super::comfyui_client::{
    execution_error, images_in, next_json, outcome_of, ComfyClient, HistoryOutcome, ImageRef,
    QueueState, WsStream,
};
use crate::config::MediaProviderConfig;
use crate::gateway::HealthStatus;
use crate::media::error::{Error, ErrorKind};
use crate::media::jobs::JobUpdates;
use crate::media::png_size;
use crate::media::provider::{
    GeneratedImage, ImageSpec, JobRun, MediaProvider, ModelInfo, SharedProvider,
};
use crate::media::views::{Device, ProviderHealth};
use crate::media::workflows::{ParamValues, Workflows};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub struct ComfyUiProvider {
    name: String,
    config: MediaProviderConfig,
    workflows: Workflows,
    client: ComfyClient,
}

pub fn build(name: &str, config: &MediaProviderConfig) -> anyhow::Result<SharedProvider> {
    let base = config.base_url.clone().ok_or_else(|| {
        anyhow::anyhow!("media.providers.{name}.base_url is required for kind comfyui")
    })?;
    let (workflows, problems) = Workflows::load(config.workflow_dir.as_deref());
    for p in problems {
        tracing::warn!(provider = name, "{p}");
    }
    Ok(Arc::new(ComfyUiProvider {
        name: name.to_string(),
        client: ComfyClient::new(name, &base, Duration::from_secs(config.object_info_ttl_s))?,
        config: config.clone(),
        workflows,
    }))
}

/// Inputs that name a model file: a value missing from their list is `MODEL_NOT_FOUND`.
pub fn is_model_input(input: &str) -> bool {
    input == "ckpt_name"
        || input.ends_with("_name")
            && [
                "lora",
                "vae",
                "unet",
                "clip",
                "control_net",
                "model",
                "upscale",
                "style",
                "gligen",
                "hypernetwork",
            ]
            .iter()
            .any(|k| input.starts_with(k))
        || input.starts_with("clip_name")
}

/// The values a spec puts into its workflow.
pub fn param_values(spec: &ImageSpec, default_checkpoint: Option<&str>) -> ParamValues {
    ParamValues {
        prompt: Some(spec.prompt.clone()),
        negative_prompt: spec.negative_prompt.clone(),
        width: Some(spec.width),
        height: Some(spec.height),
        seed: Some(spec.seed),
        steps: spec.steps,
        cfg: spec.cfg,
        checkpoint: spec
            .checkpoint
            .clone()
            .or_else(|| default_checkpoint.map(str::to_string)),
        batch_size: Some(spec.count.max(1)),
    }
}

/// The allowed values of a COMBO input spec (old `[[...], {...}]` and new `["COMBO", {options}]`).
fn combo_options(spec: &Value) -> Option<Vec<&Value>> {
    let first = spec.get(0)?;
    if let Some(list) = first.as_array() {
        return Some(list.iter().collect());
    }
    if first.as_str() == Some("COMBO") {
        return spec
            .get(1)
            .and_then(|o| o.get("options"))
            .and_then(Value::as_array)
            .map(|l| l.iter().collect());
    }
    None
}

fn is_link(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| a.len() == 2 && a[0].is_string() && a[1].is_u64())
}

/// Check a graph against ComfyUI's node catalogue: every node type installed, every
/// required input given, every model file present.
pub fn validate_graph(
    graph: &Map<String, Value>,
    object_info: &Map<String, Value>,
    provider: &str,
) -> Result<(), Error> {
    let invalid = |node: &str, class: &str, msg: String| {
        Error::new(
            ErrorKind::WorkflowInvalid,
            format!("node {node} ({class}): {msg}"),
        )
        .with("provider", provider)
        .with("node_id", node)
        .with("class_type", class)
    };
    for (id, node) in graph {
        let class = node.get("class_type").and_then(Value::as_str).unwrap_or("");
        let Some(info) = object_info.get(class) else {
            return Err(invalid(
                id,
                class,
                format!("node type {class:?} is not installed in ComfyUI (missing custom node?)"),
            ));
        };
        let inputs = node
            .get("inputs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let required = info.pointer("/input/required").and_then(Value::as_object);
        let optional = info.pointer("/input/optional").and_then(Value::as_object);
        for (name, _) in required.into_iter().flatten() {
            if !inputs.contains_key(name) {
                return Err(
                    invalid(id, class, format!("required input {name:?} is missing"))
                        .with("input", name.as_str()),
                );
            }
        }
        for (name, value) in &inputs {
            if is_link(value) {
                let target = value[0].as_str().unwrap_or("");
                if !graph.contains_key(target) {
                    return Err(invalid(
                        id,
                        class,
                        format!(
                            "input {name:?} links to node {target:?}, which is not in the workflow"
                        ),
                    )
                    .with("input", name.as_str()));
                }
                continue;
            }
            let spec = required
                .and_then(|r| r.get(name))
                .or_else(|| optional.and_then(|o| o.get(name)));
            let Some(options) = spec.and_then(combo_options) else {
                continue;
            };
            if options.contains(&value) {
                continue;
            }
            let shown: Vec<String> = options
                .iter()
                .take(20)
                .map(std::string::ToString::to_string)
                .collect();
            if is_model_input(name) {
                return Err(Error::new(ErrorKind::ModelNotFound,
                    format!(
                        "node {id} ({class}): {name} {value} is not installed in ComfyUI (available: {})",
                        if shown.is_empty() { "none".to_string() } else { shown.join(", ") }
                    ),
                )
                .with("provider", provider)
                .with("node_id", id.as_str())
                .with("class_type", class)
                .with("input", name.as_str())
                .with("model", value.clone()));
            }
            return Err(invalid(
                id,
                class,
                format!("{name} {value} is not one of {}", shown.join(", ")),
            )
            .with("input", name.as_str()));
        }
    }
    Ok(())
}

/// Progress from ComfyUI's per-node states.
struct Progress {
    total: usize,
    done: HashSet<String>,
    partial: HashMap<String, f64>,
}

impl Progress {
    fn fraction(&self) -> f64 {
        let part: f64 = self
            .partial
            .iter()
            .filter(|(k, _)| !self.done.contains(*k))
            .map(|(_, v)| v)
            .sum();
        // Never report 1.0 before the outputs are stored.
        ((self.done.len() as f64 + part) / self.total.max(1) as f64).min(0.99)
    }
}

impl ComfyUiProvider {
    fn graph_for(&self, spec: &ImageSpec) -> Result<Map<String, Value>, Error> {
        let wf = self.workflows.get(&spec.workflow).ok_or_else(|| {
            Error::new(
                ErrorKind::WorkflowInvalid,
                format!("workflow {:?} does not exist", spec.workflow),
            )
            .with("provider", self.name.clone())
        })?;
        Ok(wf
            .build(&param_values(spec, self.config.checkpoint.as_deref()))
            .0)
    }

    async fn check_history(&self, prompt_id: &str) -> Result<Option<HistoryOutcome>, Error> {
        Ok(self
            .client
            .history(prompt_id)
            .await?
            .and_then(|e| outcome_of(&e, &self.name)))
    }

    /// One look without the socket: the outcome if the prompt ended, its queue place
    /// otherwise, and `JOB_LOST` when ComfyUI knows nothing of it any more.
    async fn poll_once(
        &self,
        prompt_id: &str,
        updates: &JobUpdates,
    ) -> Result<Option<HistoryOutcome>, Error> {
        if let Some(o) = self.check_history(prompt_id).await? {
            return Ok(Some(o));
        }
        match self.client.queue_state(prompt_id).await? {
            QueueState::Running => updates.running().await,
            QueueState::Pending(p) => updates.queue_position(Some(p)),
            QueueState::Absent => {
                // It may have finished between the two calls.
                if let Some(o) = self.check_history(prompt_id).await? {
                    return Ok(Some(o));
                }
                return Err(Error::new(ErrorKind::JobLost,
                    format!("ComfyUI no longer knows prompt {prompt_id}: it is neither queued nor in its history (was ComfyUI restarted or its queue cleared?)"),
                )
                .with("provider", self.name.clone())
                .with("prompt_id", prompt_id));
            }
        }
        Ok(None)
    }

    /// Follow the prompt until it ends, over the socket while it lasts, then by polling.
    async fn follow(
        &self,
        prompt_id: &str,
        mut ws: Option<WsStream>,
        updates: &JobUpdates,
        total_nodes: usize,
    ) -> Result<HistoryOutcome, Error> {
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        // With the socket up, still look at /history now and then, in case an event was missed.
        let quiet = (poll * 10).max(Duration::from_secs(5));
        let mut progress = Progress {
            total: total_nodes,
            done: HashSet::new(),
            partial: HashMap::new(),
        };
        let mut seen_outputs: Vec<ImageRef> = Vec::new();
        let mut started = false;
        loop {
            let Some(sock) = ws.as_mut() else {
                if let Some(o) = self.poll_once(prompt_id, updates).await? {
                    return Ok(o);
                }
                tokio::time::sleep(poll).await;
                continue;
            };
            let msg = match tokio::time::timeout(quiet, next_json(sock)).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::info!(
                        prompt_id,
                        "ComfyUI progress socket dropped ({e}); polling /history"
                    );
                    ws = None;
                    continue;
                }
                Err(_) => {
                    if let Some(o) = self.poll_once(prompt_id, updates).await? {
                        return Ok(o);
                    }
                    continue;
                }
            };
            let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
            let data = msg.get("data").cloned().unwrap_or(Value::Null);
            let pid = data.get("prompt_id").and_then(Value::as_str);
            if pid.is_some_and(|p| p != prompt_id) {
                continue;
            }
            match kind {
                "status" if !started => match self.client.queue_state(prompt_id).await {
                    Ok(QueueState::Pending(p)) => updates.queue_position(Some(p)),
                    Ok(QueueState::Running) => {
                        started = true;
                        updates.running().await;
                    }
                    _ => {}
                },
                "execution_start" => {
                    started = true;
                    updates.running().await;
                    updates.progress(0.0, None, None);
                }
                "execution_cached" => {
                    for n in data
                        .get("nodes")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(n) = n.as_str() {
                            progress.done.insert(n.to_string());
                        }
                    }
                    updates.progress(progress.fraction(), None, None);
                }
                "progress_state" => {
                    let mut step = None;
                    for (id, n) in data
                        .get("nodes")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                    {
                        let value = n.get("value").and_then(Value::as_f64).unwrap_or(0.0);
                        let max = n.get("max").and_then(Value::as_f64).unwrap_or(1.0).max(1.0);
                        match n.get("state").and_then(Value::as_str) {
                            Some("finished") => {
                                progress.done.insert(id.clone());
                            }
                            Some("running") => {
                                progress.partial.insert(id.clone(), value / max);
                                if max > 1.0 {
                                    step = Some((value as u32, max as u32));
                                }
                            }
                            _ => {}
                        }
                    }
                    updates.progress(progress.fraction(), step, None);
                }
                "progress" => {
                    let value = data.get("value").and_then(Value::as_f64).unwrap_or(0.0);
                    let max = data
                        .get("max")
                        .and_then(Value::as_f64)
                        .unwrap_or(1.0)
                        .max(1.0);
                    let node = data.get("node").and_then(Value::as_str).map(str::to_string);
                    if let Some(n) = &node {
                        progress.partial.insert(n.clone(), value / max);
                    }
                    updates.progress(progress.fraction(), Some((value as u32, max as u32)), node);
                }
                "executing" => match data.get("node").and_then(Value::as_str) {
                    Some(node) => {
                        started = true;
                        updates.running().await;
                        updates.progress(progress.fraction(), None, Some(node.to_string()));
                    }
                    None if pid == Some(prompt_id) => {
                        // The end: history is written before this message.
                        return Ok(match self.check_history(prompt_id).await? {
                            Some(o) => o,
                            None => HistoryOutcome::Success(seen_outputs),
                        });
                    }
                    None => {}
                },
                "executed" => {
                    if let Some(node) = data.get("node").and_then(Value::as_str) {
                        progress.done.insert(node.to_string());
                    }
                    let outputs = json!({"x": data.get("output").cloned().unwrap_or(Value::Null)});
                    for r in images_in(Some(&outputs)) {
                        if !seen_outputs.contains(&r) {
                            seen_outputs.push(r);
                        }
                    }
                    updates.progress(progress.fraction(), None, None);
                }
                "execution_error" => {
                    return Ok(HistoryOutcome::Error(execution_error(&data, &self.name)));
                }
                "execution_interrupted" => return Ok(HistoryOutcome::Interrupted),
                _ => {}
            }
        }
    }

    async fn fetch_outputs(
        &self,
        refs: Vec<ImageRef>,
        spec: &ImageSpec,
    ) -> Result<Vec<GeneratedImage>, Error> {
        if refs.is_empty() {
            return Err(Error::new(
                ErrorKind::GenerationFailed,
                format!(
                    "workflow {:?} finished without saving an image (it needs a SaveImage node)",
                    spec.workflow
                ),
            )
            .with("provider", self.name.clone()));
        }
        let mut out = Vec::new();
        for r in refs {
            let (data, mime) = self.client.view(&r).await?;
            let (width, height) = png_size(&data).unwrap_or((spec.width, spec.height));
            out.push(GeneratedImage {
                data,
                mime,
                width,
                height,
                seed: spec.seed,
            });
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl MediaProvider for ComfyUiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "comfyui"
    }

    fn config(&self) -> &MediaProviderConfig {
        &self.config
    }

    fn workflows(&self) -> &Workflows {
        &self.workflows
    }

    async fn health(&self) -> ProviderHealth {
        let base = ProviderHealth {
            base_url: Some(self.client.base_url().to_string()),
            ..ProviderHealth::healthy("comfyui")
        };
        match self.client.system_stats().await {
            Ok(stats) => {
                let field = |x: &Value, k: &str| x.get(k).cloned().unwrap_or(Value::Null);
                ProviderHealth {
                    version: Some(
                        stats
                            .pointer("/system/comfyui_version")
                            .cloned()
                            .unwrap_or(Value::Null),
                    ),
                    devices: stats.get("devices").and_then(Value::as_array).map(|d| {
                        d.iter()
                            .map(|x| Device {
                                name: field(x, "name"),
                                kind: field(x, "type"),
                                vram_total: field(x, "vram_total"),
                                vram_free: field(x, "vram_free"),
                            })
                            .collect()
                    }),
                    ..base
                }
            }
            Err(e) => ProviderHealth {
                status: HealthStatus::Unhealthy,
                error: Some(e),
                ..base
            },
        }
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, Error> {
        let mut out = Vec::new();
        for (folder, kind) in [
            ("checkpoints", "checkpoint"),
            ("loras", "lora"),
            ("vae", "vae"),
        ] {
            for name in self.client.models(folder).await?.unwrap_or_default() {
                out.push(ModelInfo {
                    name,
                    model_type: kind.into(),
                    provider: self.name.clone(),
                });
            }
        }
        Ok(out)
    }

    async fn prepare(&self, spec: &ImageSpec) -> Result<(), Error> {
        let graph = self.graph_for(spec)?;
        let (info, age) = self.client.object_info(false).await?;
        match validate_graph(&graph, &info, &self.name) {
            // A model or custom node may have been added since the catalogue was cached.
            Err(_) if age > Duration::ZERO => {
                let (info, _) = self.client.object_info(true).await?;
                validate_graph(&graph, &info, &self.name)
            }
            r => r,
        }
    }

    async fn run(&self, job: &JobRun, updates: &JobUpdates) -> Result<Vec<GeneratedImage>, Error> {
        let spec = &job.spec;
        let graph = self.graph_for(spec)?;
        // Subscribe before queueing so no event is missed; without a socket we poll.
        let ws = match self.client.connect_ws(&spec.client_id).await {
            Ok(ws) => Some(ws),
            Err(e) => {
                tracing::info!(job = %job.job_id, "no ComfyUI progress socket ({e}); polling /history");
                None
            }
        };
        let prompt_id = match &job.resume_upstream {
            Some(id) => {
                if let Some(o) = self.poll_once(id, updates).await? {
                    return self.finish(o, spec).await;
                }
                id.clone()
            }
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                // Stored before queueing: a crash right after still finds the prompt.
                updates.upstream(&id).await;
                self.client
                    .queue_prompt(&graph, &spec.client_id, &id)
                    .await?;
                id
            }
        };
        match self.client.queue_state(&prompt_id).await? {
            QueueState::Pending(p) => updates.queue_position(Some(p)),
            QueueState::Running => updates.running().await,
            QueueState::Absent => {}
        }
        // After the queue place is known, so a 202 answer can carry it.
        updates.accepted();
        let outcome = self.follow(&prompt_id, ws, updates, graph.len()).await?;
        self.finish(outcome, spec).await
    }

    async fn cancel(&self, upstream_id: &str) -> Result<(), Error> {
        self.client.delete_from_queue(upstream_id).await?;
        if self.client.queue_state(upstream_id).await? == QueueState::Running {
            self.client.interrupt(upstream_id).await?;
        }
        Ok(())
    }
}

impl ComfyUiProvider {
    async fn finish(
        &self,
        outcome: HistoryOutcome,
        spec: &ImageSpec,
    ) -> Result<Vec<GeneratedImage>, Error> {
        match outcome {
            HistoryOutcome::Success(refs) => self.fetch_outputs(refs, spec).await,
            HistoryOutcome::Error(e) => Err(e),
            HistoryOutcome::Interrupted => Err(Error::new(
                ErrorKind::GenerationFailed,
                "ComfyUI interrupted the job (cancelled in ComfyUI itself?)",
            )
            .with("provider", self.name.clone())),
        }
    }
}
