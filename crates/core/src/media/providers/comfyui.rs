//! ComfyUI as a media provider: workflows checked against `/object_info` before
//! queueing, `POST /prompt` with our own client and prompt ids, progress from the
//! `/ws` socket (end = `executing` with `node: null`, sent after history is written),
//! `/history` polling when the socket drops, outputs through `/view`.
//!
//! A provider is a set of instances (`base_url` is one, named `main`); a job goes to
//! the instance with the shortest queue and stays pinned to it. A job survives its
//! socket dropping (reconnect, poll) and ComfyUI restarting (which empties its queue
//! and history: the job is submitted once more, same workflow and seed), within
//! `recovery_grace_s`. Every call has a short limit, so a hung ComfyUI answers
//! PROVIDER_UNAVAILABLE within seconds, and once its breaker opens, at once.

use super::comfyui_client::{
    execution_error, images_in, next_json, outcome_of, ClientTimeouts, ComfyClient, HistoryOutcome,
    ImageRef, QueueState, WsStream,
};
use super::comfyui_graph::{blame_the_request, param_values, validate_graph};
use crate::config::MediaProviderConfig;
use crate::gateway::HealthStatus;
use crate::media::error::{Error, ErrorKind};
use crate::media::jobs::JobUpdates;
use crate::media::png_size;
use crate::media::provider::{
    GeneratedImage, ImageSpec, JobRun, MediaProvider, ModelInfo, SharedProvider,
};
use crate::media::views::{Device, ProviderHealth};
use crate::media::workflows::Workflows;
use crate::resilience::pool::{probe_once, InstanceView, Preference, Prober};
use crate::resilience::{Instance, Outcome, PickError, Pool, ProbeError, ProbeFacts};
use crate::runtime::ProviderBoard;
use futures::FutureExt;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub struct ComfyUiProvider {
    name: String,
    config: MediaProviderConfig,
    workflows: Workflows,
    pool: Arc<Pool>,
    /// One client per instance, in the pool's order.
    clients: Vec<Arc<ComfyClient>>,
    /// The last model lists that could be read, answered with their age when ComfyUI is sick.
    models_seen: Mutex<Option<(Instant, Vec<ModelInfo>)>>,
    probe_every: Duration,
}

pub fn build(name: &str, config: &MediaProviderConfig) -> anyhow::Result<SharedProvider> {
    let specs = config
        .resilience
        .instances(config.base_url.as_deref(), &config.instances);
    if specs.is_empty() {
        anyhow::bail!("media.providers.{name} needs a base_url or [[instances]] (kind comfyui)");
    }
    let (workflows, problems) = Workflows::load(config.workflow_dir.as_deref());
    for p in problems {
        tracing::warn!(provider = name, "{p}");
    }
    let timeouts = ClientTimeouts {
        connect: Duration::from_millis(config.connect_timeout_ms),
        control: Duration::from_millis(config.control_timeout_ms),
        transfer: Duration::from_millis(config.control_timeout_ms * 10),
    };
    let ttl = Duration::from_secs(config.object_info_ttl_s);
    let clients = specs
        .iter()
        .map(|s| ComfyClient::new(name, &s.url, ttl, timeouts).map(Arc::new))
        .collect::<anyhow::Result<_>>()?;
    // ComfyUI queues prompts itself: the pool only chooses and guards instances.
    let mut resilience = config.resilience.clone();
    resilience.max_concurrent = 0;
    let specs = resilience.instances(config.base_url.as_deref(), &config.instances);
    Ok(Arc::new(ComfyUiProvider {
        name: name.to_string(),
        config: config.clone(),
        workflows,
        pool: Arc::new(Pool::new(name, specs, config.resilience.breaker())),
        clients,
        models_seen: Mutex::default(),
        probe_every: Duration::from_millis(config.resilience.probe_interval_ms.max(100)),
    }))
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

/// Where a prompt stands when looked at without the socket.
enum Look {
    Ended(HistoryOutcome),
    Waiting,
    /// Neither queued nor in the history: ComfyUI restarted or its queue was cleared.
    Gone,
}

/// What `follow` needs to resubmit a job ComfyUI lost.
struct Submission<'a> {
    graph: &'a Map<String, Value>,
    client_id: &'a str,
    resubmit: bool,
}

/// When a submit that timed out is looked for again (after the timeout). ComfyUI's
/// handler goes on after the Desk hangs up, and a busy server may queue the prompt
/// well after the first look found nothing; so it is looked for until it is seen ended,
/// or for two minutes. Seven looks of two small calls each.
const ORPHAN_LOOKS: [Duration; 7] = [
    Duration::ZERO,
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(120),
];

/// Take a prompt nobody waits for off ComfyUI: out of the queue while pending,
/// interrupted (by its id) while running, left alone once it is in the history.
async fn withdraw_orphan(client: Arc<ComfyClient>, id: String) {
    let start = tokio::time::Instant::now();
    for at in ORPHAN_LOOKS {
        tokio::time::sleep_until(start + at).await;
        match client.queue_state(&id).await {
            Ok(QueueState::Pending(_)) => {
                tracing::info!(prompt = %id, "taking a prompt whose submit timed out out of ComfyUI's queue");
                let _ = client.delete_from_queue(&id).await;
            }
            Ok(QueueState::Running) => {
                tracing::info!(prompt = %id, "interrupting a prompt whose submit timed out");
                let _ = client.interrupt(&id).await;
            }
            // Ended (interrupted, done or failed): nothing more to do.
            Ok(QueueState::Absent) if matches!(client.history(&id).await, Ok(Some(_))) => return,
            // Not queued yet, taken off already, or ComfyUI not answering: look again.
            Ok(QueueState::Absent) | Err(_) => {}
        }
    }
}

fn breaker_outcome(e: &Error) -> Outcome {
    match e.kind {
        ErrorKind::Unavailable
            if e.details.get("timed_out").and_then(Value::as_bool) == Some(true) =>
        {
            Outcome::Timeout
        }
        ErrorKind::Unavailable => Outcome::ConnectFailure,
        ErrorKind::Provider => Outcome::ServerError,
        _ => Outcome::ClientError,
    }
}

impl ComfyUiProvider {
    fn instance(&self, name: &str) -> Option<(Arc<Instance>, Arc<ComfyClient>)> {
        let i = self
            .pool
            .instances
            .iter()
            .position(|i| i.spec.name == name)?;
        Some((self.pool.instances[i].clone(), self.clients[i].clone()))
    }

    /// Tell the instance's breaker what a call found.
    fn observe<T>(&self, inst: &Instance, r: &Result<T, Error>) {
        match r {
            Ok(_) => inst.report(Outcome::Success, "answered"),
            Err(e) => inst.report(breaker_outcome(e), &e.message),
        }
    }

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

    /// The instance for a new job: healthy, then the shortest queue.
    async fn choose(&self) -> Result<(Arc<Instance>, Arc<ComfyClient>), Error> {
        let prefer: Preference<'_> =
            &|i: &Instance| u8::try_from(i.facts().queue_len.unwrap_or(0).min(250)).unwrap_or(250);
        let deadline = Instant::now() + Duration::from_millis(self.config.control_timeout_ms);
        let lease = self.pool.acquire(prefer, deadline).await.map_err(|e| {
            let (message, retry) = match e {
                PickError::Unavailable {
                    reason,
                    retry_after,
                } => (reason, retry_after),
                PickError::Overloaded {
                    reason,
                    retry_after,
                } => (reason, Some(retry_after)),
            };
            let mut err = Error::new(
                ErrorKind::Unavailable,
                format!("no instance of {} can take the job: {message}", self.name),
            )
            .with("provider", self.name.clone());
            if let Some(r) = retry {
                err = err.with("retry_after_s", r.as_secs().max(1));
            }
            err
        })?;
        // The choice is made; the job's calls report on the instance themselves (a
        // half-open trial stays the trial until they do).
        let name = lease.instance.spec.name.clone();
        drop(lease);
        self.instance(&name)
            .ok_or_else(|| Error::internal(format!("instance {name} vanished")))
    }

    async fn check_history(
        &self,
        client: &ComfyClient,
        prompt_id: &str,
    ) -> Result<Option<HistoryOutcome>, Error> {
        Ok(client
            .history(prompt_id)
            .await?
            .and_then(|e| outcome_of(&e, &self.name)))
    }

    /// One look without the socket.
    async fn look(
        &self,
        client: &ComfyClient,
        prompt_id: &str,
        updates: &JobUpdates,
    ) -> Result<Look, Error> {
        if let Some(o) = self.check_history(client, prompt_id).await? {
            return Ok(Look::Ended(o));
        }
        match client.queue_state(prompt_id).await? {
            QueueState::Running => updates.running().await,
            QueueState::Pending(p) => updates.queue_position(Some(p)),
            QueueState::Absent => {
                // It may have finished between the two calls.
                if let Some(o) = self.check_history(client, prompt_id).await? {
                    return Ok(Look::Ended(o));
                }
                return Ok(Look::Gone);
            }
        }
        Ok(Look::Waiting)
    }

    fn lost(&self, prompt_id: &str, why: &str) -> Error {
        Error::new(
            ErrorKind::JobLost,
            format!("ComfyUI lost prompt {prompt_id}: {why}"),
        )
        .with("provider", self.name.clone())
        .with("prompt_id", prompt_id)
    }

    /// Submit the graph under a prompt id chosen here (stored first, so a restart finds
    /// it). A submit that times out is looked up by that id and removed, so no orphan
    /// runs on for nobody (see [`withdraw_orphan`]).
    async fn submit(
        &self,
        inst: &Arc<Instance>,
        client: &Arc<ComfyClient>,
        graph: &Map<String, Value>,
        client_id: &str,
        updates: &JobUpdates,
    ) -> Result<String, Error> {
        let id = uuid::Uuid::new_v4().to_string();
        updates.upstream(&id).await;
        let submitted = client.queue_prompt(graph, client_id, &id).await;
        self.observe(inst, &submitted);
        if let Err(e) = &submitted {
            if breaker_outcome(e) == Outcome::Timeout {
                tokio::spawn(withdraw_orphan(client.clone(), id.clone()));
            }
        }
        // A ComfyUI that does not take a caller's id (older than the recorded 0.3.64) queues
        // the prompt under one of its own: follow that one, or the job would end JOB_LOST.
        match submitted?.prompt_id {
            Some(theirs) if theirs != id => {
                tracing::warn!(ours = %id, theirs = %theirs, instance = %inst.label(), "ComfyUI queued the prompt under its own id; following that");
                updates.upstream(&theirs).await;
                Ok(theirs)
            }
            _ => Ok(id),
        }
    }

    /// Follow the prompt until it ends: over the socket while it lasts, reconnecting and
    /// polling when it drops, resubmitting once when ComfyUI restarted and forgot it.
    #[allow(clippy::too_many_lines)]
    async fn follow(
        &self,
        inst: &Arc<Instance>,
        client: &Arc<ComfyClient>,
        mut prompt_id: String,
        mut ws: Option<WsStream>,
        updates: &JobUpdates,
        submission: &Submission<'_>,
    ) -> Result<HistoryOutcome, Error> {
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        let grace = Duration::from_secs_f64(self.config.recovery_grace_s.max(0.0));
        // With the socket up, still look at /history now and then, in case an event was missed.
        let quiet = (poll * 10).max(Duration::from_secs(5));
        let mut progress = Progress {
            total: submission.graph.len(),
            done: HashSet::new(),
            partial: HashMap::new(),
        };
        let mut seen_outputs: Vec<ImageRef> = Vec::new();
        let mut started = false;
        let mut resubmitted = false;
        // Since when ComfyUI has not answered (a restart, a crash): bounded by `grace`.
        let mut unreachable_since: Option<Instant> = None;
        loop {
            let Some(sock) = ws.as_mut() else {
                let looked = self.look(client, &prompt_id, updates).await;
                match looked {
                    Ok(Look::Ended(o)) => return Ok(o),
                    Ok(Look::Waiting) => unreachable_since = None,
                    Ok(Look::Gone) if submission.resubmit && !resubmitted => {
                        resubmitted = true;
                        tracing::warn!(prompt_id, instance = %inst.label(), "ComfyUI forgot the prompt (restarted?): submitting it once more");
                        updates
                            .note("ComfyUI restarted and lost the job: submitted again (same workflow and seed)")
                            .await;
                        prompt_id = self
                            .submit(inst, client, submission.graph, submission.client_id, updates)
                            .await?;
                        unreachable_since = None;
                    }
                    Ok(Look::Gone) => {
                        return Err(self.lost(
                            &prompt_id,
                            if resubmitted {
                                "it was submitted again after a restart and lost again"
                            } else {
                                "it is neither queued nor in its history (was ComfyUI restarted or its queue cleared?); media.resubmit_after_restart is off"
                            },
                        ))
                    }
                    Err(e) if matches!(e.kind, ErrorKind::Unavailable) => {
                        let since = *unreachable_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= grace {
                            return Err(self.lost(
                                &prompt_id,
                                &format!(
                                    "ComfyUI did not come back within {:.0} s ({})",
                                    grace.as_secs_f64(),
                                    e.message
                                ),
                            ));
                        }
                    }
                    Err(e) => return Err(e),
                }
                tokio::time::sleep(poll).await;
                // The socket gives progress again once ComfyUI answers.
                if unreachable_since.is_none() {
                    ws = client.connect_ws(submission.client_id).await.ok();
                }
                continue;
            };
            let msg = match tokio::time::timeout(quiet, next_json(sock)).await {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::info!(
                        prompt_id,
                        "ComfyUI progress socket dropped ({e}); reconnecting and polling /history"
                    );
                    ws = None;
                    continue;
                }
                Err(_) => {
                    match self.look(client, &prompt_id, updates).await? {
                        Look::Ended(o) => return Ok(o),
                        Look::Waiting => {}
                        // Let the socket-less path decide (resubmit or lost).
                        Look::Gone => ws = None,
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
                "status" if !started => match client.queue_state(&prompt_id).await {
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
                    None if pid == Some(prompt_id.as_str()) => {
                        // The end: history is written before this message.
                        return Ok(match self.check_history(client, &prompt_id).await? {
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
        client: &ComfyClient,
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
            let (data, mime) = client.view(&r).await?;
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

    async fn finish(
        &self,
        client: &ComfyClient,
        outcome: HistoryOutcome,
        spec: &ImageSpec,
    ) -> Result<Vec<GeneratedImage>, Error> {
        match outcome {
            HistoryOutcome::Success(refs) => self.fetch_outputs(client, refs, spec).await,
            HistoryOutcome::Error(e) => Err(e),
            HistoryOutcome::Interrupted => Err(Error::new(
                ErrorKind::GenerationFailed,
                "ComfyUI interrupted the job (cancelled in ComfyUI itself?)",
            )
            .with("provider", self.name.clone())),
        }
    }

    fn probe_fn(&self) -> Prober {
        let clients: HashMap<String, Arc<ComfyClient>> = self
            .pool
            .instances
            .iter()
            .zip(&self.clients)
            .map(|(i, c)| (i.spec.name.clone(), c.clone()))
            .collect();
        Arc::new(move |inst: Arc<Instance>| {
            let client = clients.get(&inst.spec.name).cloned();
            async move {
                let Some(client) = client else {
                    return Err(ProbeError::Failed("no client".into()));
                };
                let stats = client.system_stats().await.map_err(|e| {
                    if breaker_outcome(&e) == Outcome::ServerError {
                        ProbeError::Failed(e.message)
                    } else {
                        ProbeError::Unreachable(e.message)
                    }
                })?;
                let queue_len = client.queue_len().await.ok();
                Ok(ProbeFacts {
                    version: stats
                        .pointer("/system/comfyui_version")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    loaded: None,
                    installed: None,
                    queue_len,
                })
            }
            .boxed()
        })
    }

    fn remember_models(&self, list: &[ModelInfo]) {
        *self
            .models_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), list.to_vec()));
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
        // Fresh enough (one and a half probe periods): answer from memory; otherwise
        // look now, bounded by the control timeout. An open breaker is never waited on.
        let probe = self.probe_fn();
        let stale = self.pool.instances.iter().filter(|i| {
            i.breaker().is_closed()
                && i.facts()
                    .probed_at
                    .is_none_or(|t| t.elapsed() > self.probe_every * 3 / 2)
        });
        let timeout = Duration::from_millis(self.config.control_timeout_ms);
        futures::future::join_all(stale.map(|i| probe_once(i, timeout, &probe))).await;
        let first = &self.pool.instances[0];
        let f = first.facts();
        let up = f.probe_ok && first.breaker().is_closed();
        let mut h = ProviderHealth {
            base_url: Some(first.spec.url.clone()),
            ..ProviderHealth::healthy("comfyui")
        };
        if up {
            // Devices come from a fresh /system_stats when the instance is up.
            if let Ok(stats) = self.clients[0].system_stats().await {
                let field = |x: &Value, k: &str| x.get(k).cloned().unwrap_or(Value::Null);
                h.version = Some(
                    stats
                        .pointer("/system/comfyui_version")
                        .cloned()
                        .unwrap_or(Value::Null),
                );
                h.devices = stats.get("devices").and_then(Value::as_array).map(|d| {
                    d.iter()
                        .map(|x| Device {
                            name: field(x, "name"),
                            kind: field(x, "type"),
                            vram_total: field(x, "vram_total"),
                            vram_free: field(x, "vram_free"),
                        })
                        .collect()
                });
            }
        }
        let any_up = self
            .pool
            .instances
            .iter()
            .any(|i| i.facts().probe_ok && i.breaker().is_closed());
        if !any_up {
            h.status = HealthStatus::Unavailable;
            h.error = Some(
                self.pool
                    .instances
                    .iter()
                    .filter_map(|i| i.facts().probe_error.or_else(|| i.last_error()))
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        h
    }

    async fn free_memory(&self) -> Result<(), Error> {
        let mut first_error = None;
        for (client, inst) in self.clients.iter().zip(&self.pool.instances) {
            if !inst.breaker().is_closed() {
                continue;
            }
            if let Err(e) = client.free().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn vram_used(&self) -> Option<u64> {
        let mut used = None;
        for (client, inst) in self.clients.iter().zip(&self.pool.instances) {
            if !inst.breaker().is_closed() {
                continue;
            }
            let Ok(stats) = client.system_stats().await else {
                continue;
            };
            for d in stats["devices"].as_array().into_iter().flatten() {
                // ComfyUI on the CPU reports RAM as "vram": not the card's.
                if d["type"] == "cpu" {
                    continue;
                }
                let (total, free) = (d["vram_total"].as_u64(), d["vram_free"].as_u64());
                if let (Some(t), Some(f)) = (total, free) {
                    *used.get_or_insert(0) += t.saturating_sub(f);
                }
            }
        }
        used
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, Error> {
        let usable = self
            .pool
            .instances
            .iter()
            .position(|i| i.breaker().is_closed());
        let Some(i) = usable else {
            // Sick: what was last seen, rather than waiting on it.
            if let Some((_, list)) = self
                .models_seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
            {
                return Ok(list);
            }
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("no instance of {} answers (breaker open)", self.name),
            ));
        };
        let client = &self.clients[i];
        let mut out = Vec::new();
        for (folder, kind) in [
            ("checkpoints", "checkpoint"),
            ("loras", "lora"),
            ("vae", "vae"),
            ("upscale_models", "upscaler"),
        ] {
            let listed = client.models(folder).await;
            self.observe(&self.pool.instances[i], &listed);
            for name in listed?.unwrap_or_default() {
                // Only a plain relative name inside the folder is looked up on disk.
                let size_bytes = match &self.config.models_dir {
                    Some(dir)
                        if !name.contains("..") && !std::path::Path::new(&name).is_absolute() =>
                    {
                        tokio::fs::metadata(dir.join(folder).join(&name))
                            .await
                            .ok()
                            .map(|m| m.len())
                    }
                    _ => None,
                };
                out.push(ModelInfo {
                    name,
                    model_type: kind.into(),
                    provider: self.name.clone(),
                    size_bytes,
                });
            }
        }
        self.remember_models(&out);
        Ok(out)
    }

    async fn prepare(&self, spec: &ImageSpec) -> Result<Option<String>, Error> {
        let graph = self.graph_for(spec)?;
        let (inst, client) = self.choose().await?;
        let classes: Vec<&str> = graph
            .values()
            .filter_map(|n| n.get("class_type").and_then(Value::as_str))
            .collect();
        let info = client.object_info(&classes).await;
        self.observe(&inst, &info);
        let blame = |e| match self.workflows.get(&spec.workflow) {
            Some(wf) => blame_the_request(e, &wf, spec),
            None => e,
        };
        match validate_graph(&graph, info?.as_ref(), &self.name) {
            Ok(()) => {}
            // A value not in a node's list (a model file added since the catalogue was
            // read): look at that one node class again before refusing.
            Err(e) if e.details.contains_key("input") => {
                let class = e
                    .details
                    .get("class_type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let info = client.refresh_class(&class).await?;
                validate_graph(&graph, info.as_ref(), &self.name).map_err(blame)?;
            }
            Err(e) => return Err(blame(e)),
        }
        Ok(Some(inst.spec.name.clone()))
    }

    async fn run(&self, job: &JobRun, updates: &JobUpdates) -> Result<Vec<GeneratedImage>, Error> {
        let spec = &job.spec;
        let graph = self.graph_for(spec)?;
        // Pinned to the instance it was prepared on (or submitted to, before a restart).
        let (inst, client) = match spec.instance.as_deref() {
            Some(name) => self.instance(name).ok_or_else(|| {
                Error::new(
                    ErrorKind::JobLost,
                    format!("instance {name:?} of {} is no longer configured", self.name),
                )
                .with("provider", self.name.clone())
            })?,
            None => self.choose().await?,
        };
        updates.instance(&inst.spec.name);
        // Subscribe before queueing so no event is missed; without a socket we poll.
        let ws = match client.connect_ws(&spec.client_id).await {
            Ok(ws) => Some(ws),
            Err(e) => {
                tracing::info!(job = %job.job_id, "no ComfyUI progress socket ({e}); polling /history");
                None
            }
        };
        let submission = Submission {
            graph: &graph,
            client_id: &spec.client_id,
            resubmit: job.resubmit,
        };
        let prompt_id = match &job.resume_upstream {
            Some(id) => {
                if let Ok(Look::Ended(o)) = self.look(&client, id, updates).await {
                    return self.finish(&client, o, spec).await;
                }
                id.clone()
            }
            None => {
                self.submit(&inst, &client, &graph, &spec.client_id, updates)
                    .await?
            }
        };
        match client.queue_state(&prompt_id).await {
            Ok(QueueState::Pending(p)) => updates.queue_position(Some(p)),
            Ok(QueueState::Running) => updates.running().await,
            _ => {}
        }
        // After the queue place is known, so a 202 answer can carry it.
        updates.accepted();
        let outcome = self
            .follow(&inst, &client, prompt_id, ws, updates, &submission)
            .await?;
        self.finish(&client, outcome, spec).await
    }

    async fn cancel(&self, upstream_id: &str, instance: Option<&str>) -> Result<(), Error> {
        let client = instance
            .and_then(|n| self.instance(n))
            .map_or_else(|| self.clients[0].clone(), |(_, c)| c);
        client.delete_from_queue(upstream_id).await?;
        if client.queue_state(upstream_id).await? == QueueState::Running {
            client.interrupt(upstream_id).await?;
        }
        Ok(())
    }

    fn attach(&self, board: Arc<ProviderBoard>, shutdown: CancellationToken) {
        self.pool.attach_board(board);
        self.pool.spawn_prober(
            self.probe_every,
            Duration::from_millis(self.config.control_timeout_ms),
            shutdown,
            self.probe_fn(),
        );
    }

    fn pool(&self) -> Option<Arc<Pool>> {
        Some(self.pool.clone())
    }

    fn instances(&self) -> Vec<(String, InstanceView)> {
        self.pool
            .instances
            .iter()
            .map(|i| (i.spec.name.clone(), i.view()))
            .collect()
    }
}
