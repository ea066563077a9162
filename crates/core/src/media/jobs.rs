//! Durable image jobs: a row in the SQLite `jobs` table per request, a task that
//! drives the provider, live state (progress, step, queue position) for polling and
//! Server-Sent Events, cancellation, timeouts, and recovery after a restart.

use super::files::{FileStore, NewFile};
use super::provider::{GeneratedImage, ImageSpec, JobRun, SharedProvider};
use super::views::{JobResult, StoredImage};
use crate::gateway::{Finished, RequestKind, Requester, UsageRecorder};
use crate::media::error::{Error, ErrorKind};
use crate::store::{now_text, JobKind, Store};
use crate::work::Ticket;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "cancelled" => Self::Cancelled,
            _ => Self::Failed,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// What a job looks like from outside (minus the rendered result, see `routes::media`).
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub job_id: String,
    pub status: JobStatus,
    /// 0..1.
    pub progress: f64,
    pub step: Option<u32>,
    pub total_steps: Option<u32>,
    /// The node running now (ComfyUI node id).
    pub node: Option<String>,
    /// Place in the provider's queue: 1 = next; `None` once running.
    pub queue_position: Option<u32>,
    pub provider: String,
    pub kind: String,
    pub task: Option<String>,
    pub workflow: String,
    pub upstream_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Set when succeeded: files and timings (rendered into `images`/`outputs`).
    pub result: Option<JobResult>,
    /// Set when failed or cancelled: `{code, message, ...}`.
    pub error: Option<Value>,
    /// The provider instance it runs on.
    pub instance: Option<String>,
    /// Something the caller should know (e.g. it was submitted again after a restart).
    pub note: Option<String>,
    /// The provider accepted the job (async answers wait for this).
    #[serde(skip)]
    pub accepted: bool,
    /// Bumped on every change, as the SSE event id.
    #[serde(skip)]
    pub seq: u64,
}

impl JobView {
    /// The job waits for the card to have room (the LLM side is busy).
    pub fn waiting_for_gpu(&self) -> bool {
        self.note
            .as_deref()
            .is_some_and(|n| n.starts_with(crate::gpu::GPU_WAIT_NOTE))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Cancel,
    Timeout,
}

struct JobEntry {
    view: watch::Sender<JobView>,
    spec: ImageSpec,
    stop: CancellationToken,
    stop_reason: Mutex<Option<StopReason>>,
    done: CancellationToken,
}

/// The handle a provider reports through.
pub struct JobUpdates {
    entry: Arc<JobEntry>,
    store: Store,
}

impl JobUpdates {
    fn change(&self, f: impl FnOnce(&mut JobView)) {
        self.entry.view.send_modify(|v| {
            f(v);
            v.seq += 1;
            v.updated_at = now_text();
        });
    }

    /// The provider's id for the job; stored before submitting, so a restart can find it.
    pub async fn upstream(&self, upstream_id: &str) {
        let id = upstream_id.to_string();
        self.change(|v| v.upstream_id = Some(id.clone()));
        let job_id = self.entry.view.borrow().job_id.clone();
        if let Err(e) = self.store.set_job_upstream(&job_id, upstream_id).await {
            tracing::warn!("cannot store the upstream id of a media job: {e:#}");
        }
    }

    /// The instance the job runs on.
    pub fn instance(&self, name: &str) {
        let name = name.to_string();
        self.change(|v| v.instance = Some(name));
    }

    /// Something the caller should know about the job's course (kept with the job).
    pub async fn note(&self, text: &str) {
        let note = text.to_string();
        self.change(|v| v.note = Some(note.clone()));
        let (id, progress) = {
            let v = self.entry.view.borrow();
            (v.job_id.clone(), v.progress)
        };
        if let Err(e) = self.store.set_job_progress(&id, progress, Some(note)).await {
            tracing::warn!("cannot store a media job's note: {e:#}");
        }
    }

    /// The provider took the job.
    pub fn accepted(&self) {
        self.change(|v| v.accepted = true);
    }

    pub fn queue_position(&self, position: Option<u32>) {
        self.change(|v| {
            if v.status == JobStatus::Queued {
                v.queue_position = position;
            }
        });
    }

    /// Execution started.
    pub async fn running(&self) {
        let was = self.entry.view.borrow().status;
        if was != JobStatus::Queued {
            return;
        }
        self.change(|v| {
            v.status = JobStatus::Running;
            v.queue_position = None;
        });
        persist_status(&self.store, &self.entry, JobStatus::Running).await;
    }

    /// Progress 0..1 (never goes back), with the sampler step when known. Stored each
    /// time it passes a tenth, so a restart resumes from there, not from 0.
    pub fn progress(&self, fraction: f64, step: Option<(u32, u32)>, node: Option<String>) {
        let before = self.entry.view.borrow().progress;
        let tenth = |p: f64| (p * 10.0).floor() as i32;
        if tenth(fraction.clamp(0.0, 1.0)) > tenth(before) {
            let (store, id) = (self.store.clone(), self.entry.view.borrow().job_id.clone());
            let p = fraction.clamp(0.0, 1.0);
            tokio::spawn(async move {
                let _ = store.set_job_progress(&id, p, None).await;
            });
        }
        self.change(|v| {
            let f = fraction.clamp(0.0, 1.0);
            if f > v.progress {
                v.progress = f;
            }
            if let Some((s, total)) = step {
                v.step = Some(s);
                v.total_steps = Some(total);
            }
            if node.is_some() {
                v.node = node;
            }
        });
    }
}

async fn persist_status(store: &Store, entry: &JobEntry, status: JobStatus) {
    let (id, result, error) = {
        let v = entry.view.borrow();
        (
            v.job_id.clone(),
            v.result
                .as_ref()
                .and_then(|r| serde_json::to_string(r).ok()),
            v.error.as_ref().map(Value::to_string),
        )
    };
    if let Err(e) = store
        .set_job_state(&id, status.as_str(), result, error)
        .await
    {
        tracing::warn!("cannot store a media job's state: {e:#}");
    }
}

/// All jobs of this process, plus the stored ones.
pub struct JobManager {
    store: Store,
    files: FileStore,
    usage: UsageRecorder,
    /// `media.resubmit_after_restart`.
    resubmit: bool,
    live: Mutex<HashMap<String, Arc<JobEntry>>>,
    shutdown: CancellationToken,
    /// Makes room on the card before a job that declares its GPU memory.
    gpu: Arc<crate::gpu::Arbiter>,
}

fn new_view(id: &str, spec: &ImageSpec, created_at: String) -> JobView {
    JobView {
        job_id: id.to_string(),
        status: JobStatus::Queued,
        progress: 0.0,
        step: None,
        total_steps: spec.steps,
        node: None,
        queue_position: None,
        provider: spec.provider.clone(),
        kind: spec.kind.clone(),
        task: spec.task.clone(),
        workflow: spec.workflow.clone(),
        upstream_id: None,
        updated_at: created_at.clone(),
        created_at,
        result: None,
        error: None,
        instance: spec.instance.clone(),
        note: None,
        accepted: false,
        seq: 0,
    }
}

impl JobManager {
    pub fn new(
        store: Store,
        files: FileStore,
        usage: UsageRecorder,
        resubmit: bool,
        shutdown: CancellationToken,
        gpu: Arc<crate::gpu::Arbiter>,
    ) -> Self {
        Self {
            store,
            files,
            usage,
            resubmit,
            live: Mutex::new(HashMap::new()),
            shutdown,
            gpu,
        }
    }

    pub fn files(&self) -> &FileStore {
        &self.files
    }

    /// Record and start a job; returns a receiver of its state.
    pub async fn create(
        self: &Arc<Self>,
        spec: ImageSpec,
        provider: SharedProvider,
        ticket: Ticket,
    ) -> Result<watch::Receiver<JobView>, Error> {
        let id = format!("job_{}", uuid::Uuid::new_v4().simple());
        let created = now_text();
        let request = serde_json::to_string(&spec).unwrap_or_default();
        self.store
            .insert_job(
                &id,
                JobKind::Image,
                Some(spec.provider.clone()),
                request,
                created.clone(),
            )
            .await
            .map_err(|e| Error::internal(format!("cannot record the job: {e:#}")))?;
        let view = new_view(&id, &spec, created);
        Ok(self.spawn(view, spec, provider, None, Some(ticket)))
    }

    fn spawn(
        self: &Arc<Self>,
        view: JobView,
        spec: ImageSpec,
        provider: SharedProvider,
        resume_upstream: Option<String>,
        ticket: Option<Ticket>,
    ) -> watch::Receiver<JobView> {
        let (tx, rx) = watch::channel(view);
        let id = tx.borrow().job_id.clone();
        let entry = Arc::new(JobEntry {
            view: tx,
            spec: spec.clone(),
            stop: CancellationToken::new(),
            stop_reason: Mutex::new(None),
            done: CancellationToken::new(),
        });
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), entry.clone());
        let manager = self.clone();
        tokio::spawn(async move {
            let run = JobRun {
                job_id: id.clone(),
                spec,
                resume_upstream,
                stop: entry.stop.clone(),
                resubmit: manager.resubmit,
            };
            manager.drive(entry, run, provider, ticket).await;
        });
        rx
    }

    async fn drive(
        self: Arc<Self>,
        entry: Arc<JobEntry>,
        run: JobRun,
        provider: SharedProvider,
        ticket: Option<Ticket>,
    ) {
        let started = Instant::now();
        let timeout = Duration::from_secs_f64(provider.config().timeout_s());
        let updates = JobUpdates {
            entry: entry.clone(),
            store: self.store.clone(),
        };
        if let Some(id) = &run.resume_upstream {
            entry.view.send_modify(|v| {
                v.upstream_id = Some(id.clone());
                v.accepted = true;
            });
        }
        // Waiting for a drawing slot counts against the job's time like the drawing does.
        let work = async {
            let running = match ticket {
                Some(t) => Some(t.start().await),
                None => None,
            };
            if let Some(need_mb) = run.spec.vram_mb {
                // Room on the card first; the job says why it waits, while it does.
                let note_entry = entry.clone();
                let note = move |why: Option<String>| {
                    note_entry.view.send_modify(|v| match &why {
                        Some(w) => v.note = Some(w.clone()),
                        // Clear our own note only.
                        None if v.waiting_for_gpu() => {
                            v.note = None;
                        }
                        None => {}
                    });
                };
                self.gpu.before_media_job(need_mb, &note).await;
            }
            let r = provider.run(&run, &updates).await;
            if let Some(running) = running {
                running.finished();
            }
            r
        };
        let outcome = tokio::select! {
            r = work => r,
            () = tokio::time::sleep(timeout) => {
                *entry.stop_reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(StopReason::Timeout);
                // Local work (the mock's drawing) stops too, not only our waiting for it.
                entry.stop.cancel();
                Err(Error::new(ErrorKind::Timeout, format!(
                    "{} did not finish the image within {:.0} s (the job was interrupted upstream)",
                    provider.name(), timeout.as_secs_f64()
                )).with("provider", provider.name()).with("timeout_s", timeout.as_secs_f64()))
            }
            _ = entry.stop.cancelled() => {
                Err(Error::new(ErrorKind::Cancelled, "the job was cancelled").with("provider", provider.name()))
            }
            _ = self.shutdown.cancelled() => {
                // Leave the row queued/running: the next start picks it up again.
                entry.done.cancel();
                return;
            }
        };
        let reason = *entry
            .stop_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if reason.is_some() {
            let (upstream, instance) = {
                let v = entry.view.borrow();
                (v.upstream_id.clone(), v.instance.clone())
            };
            if let Some(up) = upstream {
                if let Err(e) = provider.cancel(&up, instance.as_deref()).await {
                    tracing::warn!(job = %run.job_id, "cannot cancel the job upstream: {e}");
                }
            }
        }
        let (status, result, error) = match outcome {
            Ok(images) => match self.store_images(&run, images).await {
                Ok(files) => {
                    let result = JobResult {
                        files,
                        generation_time_s: started.elapsed().as_secs_f64(),
                    };
                    (JobStatus::Succeeded, Some(result), None)
                }
                Err(e) => failure(
                    &entry.spec,
                    Error::new(
                        ErrorKind::Internal,
                        format!("cannot store the image: {e:#}"),
                    ),
                    reason,
                ),
            },
            Err(e) => failure(&entry.spec, e, reason),
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        // Stored and counted before anyone sees the final state, so a caller that
        // gets its answer finds the row, the usage record and the metric in place.
        persist_final(&self.store, &run.job_id, status, &result, &error).await;
        self.record_usage(&run.spec, status, error.as_ref(), latency_ms)
            .await;
        entry.view.send_modify(|v| {
            v.status = status;
            v.queue_position = None;
            if status == JobStatus::Succeeded {
                v.progress = 1.0;
            }
            v.result = result;
            v.error = error;
            v.seq += 1;
            v.updated_at = now_text();
        });
        // Later reads come from the table.
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&run.job_id);
        entry.done.cancel();
    }

    async fn store_images(
        &self,
        run: &JobRun,
        images: Vec<GeneratedImage>,
    ) -> anyhow::Result<Vec<StoredImage>> {
        if images.is_empty() {
            anyhow::bail!("the provider returned no image");
        }
        let mut out = Vec::new();
        for img in images {
            let f = self
                .files
                .save(
                    img.data,
                    NewFile {
                        mime: img.mime,
                        width: img.width,
                        height: img.height,
                        job_id: Some(run.job_id.clone()),
                        provider: Some(run.spec.provider.clone()),
                        workflow: Some(run.spec.workflow.clone()),
                        prompt: Some(run.spec.prompt.clone()),
                        seed: Some(img.seed),
                    },
                )
                .await?;
            out.push(StoredImage {
                id: f.id,
                mime: f.mime,
                width: f.width,
                height: f.height,
                seed: f.seed,
                bytes: f.bytes,
                sha256: f.sha256,
            });
        }
        Ok(out)
    }

    async fn record_usage(
        &self,
        spec: &ImageSpec,
        status: JobStatus,
        error: Option<&Value>,
        latency_ms: f64,
    ) {
        let mut f = Finished::new(
            RequestKind::Media,
            spec.request_id.clone(),
            Requester {
                client: spec.caller.clone(),
                key_id: spec.key_id.clone(),
            },
        );
        f.task = Some(spec.task.clone().unwrap_or_else(|| spec.kind.clone()));
        f.mode = Some(spec.generator_mode.clone());
        f.provider = Some(spec.provider.clone());
        f.model = Some(spec.workflow.clone());
        f.image_kind = Some(spec.kind.clone());
        f.latency_ms = latency_ms;
        f.cancelled = status == JobStatus::Cancelled;
        match (status, error.map(Error::from_json)) {
            (JobStatus::Succeeded, _) => {}
            (_, Some(e)) => {
                f.status = e.status();
                f.error_code = Some(e.code().to_string());
            }
            (_, None) => {
                f.status = 500;
                f.error_code = Some("INTERNAL".into());
            }
        }
        self.usage.record(f).await;
    }

    /// The live state of a job of this process, if any.
    pub fn watch(&self, id: &str) -> Option<watch::Receiver<JobView>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .map(|e| e.view.subscribe())
    }

    /// The spec a job (live or stored) was made from.
    pub async fn spec(&self, id: &str) -> Option<ImageSpec> {
        let live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .map(|e| e.spec.clone());
        match live {
            Some(spec) => Some(spec),
            None => self.load(id).await.ok().flatten().map(|(_, spec)| spec),
        }
    }

    /// The job's state: live, else as stored.
    pub async fn get(&self, id: &str) -> anyhow::Result<Option<JobView>> {
        if let Some(rx) = self.watch(id) {
            return Ok(Some(rx.borrow().clone()));
        }
        Ok(self.load(id).await?.map(|(view, _)| view))
    }

    async fn load(&self, id: &str) -> anyhow::Result<Option<(JobView, ImageSpec)>> {
        let Some(row) = self.store.job(id, JobKind::Image).await? else {
            return Ok(None);
        };
        let (id, status, upstream, request, result, error, created, updated) = (
            row.id,
            row.status,
            row.upstream_id,
            row.request,
            row.result,
            row.error,
            row.created_at,
            row.updated_at,
        );
        let (stored_progress, note) = (row.progress, row.note);
        let spec: ImageSpec = serde_json::from_str(&request)?;
        let mut view = new_view(&id, &spec, created);
        view.status = JobStatus::parse(&status);
        view.upstream_id = upstream;
        view.updated_at = updated;
        view.result = result.and_then(|r| serde_json::from_str(&r).ok());
        view.error = error.and_then(|r| serde_json::from_str(&r).ok());
        view.progress = stored_progress.unwrap_or(0.0);
        view.note = note;
        if view.status == JobStatus::Succeeded {
            view.progress = 1.0;
        }
        Ok(Some((view, spec)))
    }

    /// Cancel a job: upstream queue delete or interrupt, then `cancelled`.
    /// Returns the final view (or the current one when it already ended).
    pub async fn cancel(&self, id: &str) -> anyhow::Result<Option<JobView>> {
        let entry = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned();
        let Some(entry) = entry else {
            return self.get(id).await;
        };
        if !entry.view.borrow().status.is_terminal() {
            *entry
                .stop_reason
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(StopReason::Cancel);
            entry.stop.cancel();
            // The task cancels upstream and writes the final state; bounded wait.
            let _ = tokio::time::timeout(Duration::from_secs(15), entry.done.cancelled()).await;
        }
        let view = entry.view.borrow().clone();
        Ok(Some(view))
    }

    /// Jobs left queued or running by an earlier run: resume them with their provider
    /// (which finds them in its history or queue), or mark them failed with the reason.
    pub async fn recover(
        self: &Arc<Self>,
        provider_for: impl Fn(&str) -> Option<SharedProvider>,
    ) -> anyhow::Result<usize> {
        let ids = self.store.unfinished_jobs(JobKind::Image).await?;
        let mut resumed = 0;
        for id in ids {
            let loaded = self.load(&id).await;
            let (view, spec) = match loaded {
                Ok(Some(x)) => x,
                Ok(None) => continue,
                Err(e) => {
                    self.fail_stored(
                        &id,
                        Error::new(
                            ErrorKind::JobLost,
                            format!("the stored job cannot be read after a restart: {e:#}"),
                        ),
                    )
                    .await;
                    continue;
                }
            };
            // A job far past its time limit is not resumed: it could not finish (or not be
            // saved, e.g. on a full disk) last time, and must not be re-run at every start.
            let age_s = chrono::DateTime::parse_from_rfc3339(&view.created_at).map_or(0, |t| {
                (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()
            });
            let limit_s =
                provider_for(&spec.provider).map_or(crate::config::DEFAULT_MEDIA_TIMEOUT_S, |p| {
                    p.config().timeout_s()
                }) * 2.0
                    + 600.0;
            if age_s as f64 > limit_s {
                self.fail_stored(
                    &id,
                    Error::new(
                        ErrorKind::JobLost,
                        format!("the job is {age_s} s old, past its time limit; it is not resumed"),
                    ),
                )
                .await;
                continue;
            }
            let Some(provider) = provider_for(&spec.provider) else {
                self.fail_stored(
                    &id,
                    Error::new(
                        ErrorKind::JobLost,
                        format!(
                            "the gateway restarted and provider {:?} is no longer configured",
                            spec.provider
                        ),
                    ),
                )
                .await;
                continue;
            };
            let Some(upstream) = view.upstream_id.clone() else {
                self.fail_stored(&id, Error::new(ErrorKind::JobLost, format!(
                    "the gateway stopped before the job was submitted to {}; submit it again", spec.provider
                ))).await;
                continue;
            };
            tracing::info!(job = %id, upstream = %upstream, "resuming a media job after restart");
            self.spawn(view, spec, provider, Some(upstream), None);
            resumed += 1;
        }
        Ok(resumed)
    }

    async fn fail_stored(&self, id: &str, e: Error) {
        tracing::warn!(job = %id, "media job failed at restart: {}", e.message);
        if let Err(err) = self
            .store
            .set_job_state(
                id,
                JobStatus::Failed.as_str(),
                None,
                Some(e.to_json().to_string()),
            )
            .await
        {
            tracing::warn!("cannot store a recovered job's failure: {err:#}");
        }
    }

    /// The live job that submitted `upstream_id` to its provider, with who asked for it
    /// (client address, key id): how the ComfyUI front tells the Desk's prompts apart.
    pub fn by_upstream(&self, upstream_id: &str) -> Option<(String, String, Option<String>)> {
        let live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.values().find_map(|e| {
            let v = e.view.borrow();
            (v.upstream_id.as_deref() == Some(upstream_id)).then(|| {
                (
                    v.job_id.clone(),
                    e.spec.caller.clone(),
                    e.spec.key_id.clone(),
                )
            })
        })
    }

    /// Counts of live jobs by status, for health.
    pub fn counts(&self) -> (usize, usize) {
        let live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut queued = 0;
        let mut running = 0;
        for e in live.values() {
            match e.view.borrow().status {
                JobStatus::Queued => queued += 1,
                JobStatus::Running => running += 1,
                _ => {}
            }
        }
        (queued, running)
    }
}

/// The final state of a job that did not succeed.
fn failure(
    spec: &ImageSpec,
    e: Error,
    reason: Option<StopReason>,
) -> (JobStatus, Option<JobResult>, Option<Value>) {
    match reason {
        Some(StopReason::Cancel) => (
            JobStatus::Cancelled,
            None,
            Some(
                Error::new(ErrorKind::Cancelled, "the job was cancelled")
                    .with("provider", spec.provider.clone())
                    .to_json(),
            ),
        ),
        _ => (JobStatus::Failed, None, Some(e.to_json())),
    }
}

async fn persist_final(
    store: &Store,
    id: &str,
    status: JobStatus,
    result: &Option<JobResult>,
    error: &Option<Value>,
) {
    let result = result.as_ref().and_then(|r| serde_json::to_string(r).ok());
    let error = error.as_ref().map(Value::to_string);
    if let Err(e) = store
        .set_job_state(id, status.as_str(), result, error)
        .await
    {
        tracing::warn!("cannot store a media job's final state: {e:#}");
    }
}
