//! The end-to-end check as an async job: started over HTTP (the dashboard's button),
//! followed by polling or Server-Sent Events, kept in SQLite for the record.

use super::{run, FlowEvent, FlowInput, FlowReport, StepReport};
use crate::client::{GatewayClient, Timeouts};
use crate::store::{now_text, JobKind, Store};
use crate::work::WorkLimiter;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How many finished jobs stay in memory for the dashboard.
const KEEP_IN_MEMORY: usize = 50;

/// Where a run of the check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl FlowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            _ => Self::Failed,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FlowJob {
    pub id: String,
    pub status: FlowStatus,
    pub generator_mode: String,
    pub progress: f64,
    pub current_step: Option<String>,
    pub steps: Vec<StepReport>,
    pub report: Option<FlowReport>,
    pub created_at: String,
    pub updated_at: String,
}

impl FlowJob {
    pub fn is_finished(&self) -> bool {
        matches!(self.status, FlowStatus::Succeeded | FlowStatus::Failed)
    }
}

struct Entry {
    job: FlowJob,
    events: broadcast::Sender<FlowJob>,
}

/// The flow jobs of this app.
#[derive(Clone)]
pub struct FlowJobs {
    inner: Arc<Mutex<Inner>>,
    store: Store,
    /// Checks run one (or a few) at a time; more wait, and beyond that are refused.
    work: Arc<WorkLimiter>,
}

/// Why a check could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0} checks are running or waiting already; try again later")]
    Overloaded(usize, u64),
    #[error("{0:#}")]
    Store(#[from] anyhow::Error),
}

#[derive(Default)]
struct Inner {
    jobs: BTreeMap<String, Entry>,
    order: VecDeque<String>,
}

impl FlowJobs {
    /// Jobs left unfinished by a previous run are marked failed: a flow cannot be resumed
    /// halfway, and a job must never be silently lost.
    pub async fn open(store: Store, limits: &crate::config::FlowsConfig) -> anyhow::Result<Self> {
        let error = json!({"code": "INTERRUPTED", "message": "the app stopped while this check was running"}).to_string();
        store.fail_unfinished_jobs(JobKind::Flow, error).await?;
        Ok(Self {
            inner: Arc::default(),
            store,
            work: Arc::new(WorkLimiter::new(limits.max_concurrent, limits.max_queue)),
        })
    }

    /// Start a run against the gateway at `addr` and return its job at once.
    pub async fn start(
        &self,
        addr: SocketAddr,
        key: String,
        input: FlowInput,
        mock: bool,
    ) -> Result<FlowJob, StartError> {
        let ticket = self
            .work
            .reserve()
            .map_err(|o| StartError::Overloaded(o.waiting, o.retry_after_s))?;
        let id = format!("flow_{}", uuid::Uuid::new_v4().simple());
        let now = now_text();
        let job = FlowJob {
            id: id.clone(),
            status: FlowStatus::Queued,
            generator_mode: if mock { "mock" } else { "live" }.into(),
            progress: 0.0,
            current_step: None,
            steps: vec![],
            report: None,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let request = json!({"input": input, "mock": mock}).to_string();
        self.store
            .insert_job(&id, JobKind::Flow, None, request, now)
            .await?;
        {
            let mut inner = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (events, _) = broadcast::channel(64);
            inner.jobs.insert(
                id.clone(),
                Entry {
                    job: job.clone(),
                    events,
                },
            );
            inner.order.push_back(id.clone());
            while inner.order.len() > KEEP_IN_MEMORY {
                if let Some(old) = inner.order.pop_front() {
                    inner.jobs.remove(&old);
                }
            }
        }

        let this = self.clone();
        let base = format!("http://{}", loopback_of(addr));
        tokio::spawn(async move {
            let client = GatewayClient::new(base, Some(key), Timeouts::for_mode(!mock));
            let running = ticket.start().await;
            this.update(&id, |j| j.status = FlowStatus::Running);
            let report = run(&client, &input, mock, |event| this.on_event(&id, event)).await;
            running.finished();
            let status = if report.ok {
                FlowStatus::Succeeded
            } else {
                FlowStatus::Failed
            };
            this.update(&id, |j| {
                j.status = status;
                j.progress = 1.0;
                j.current_step = None;
                j.report = Some(report.clone());
            });
            let (result, error) = if report.ok {
                (serde_json::to_string(&report).ok(), None)
            } else {
                (
                    serde_json::to_string(&report).ok(),
                    report.error.as_ref().map(Value::to_string),
                )
            };
            if let Err(e) = this
                .store
                .set_job_state(&id, status.as_str(), result, error)
                .await
            {
                tracing::warn!(job = %id, "could not record the flow result: {e:#}");
            }
        });
        Ok(job)
    }

    fn on_event(&self, id: &str, event: FlowEvent) {
        self.update(id, |j| match event {
            FlowEvent::StepStarted { name, total, index } => {
                j.current_step = Some(name);
                // The total grows once the section plan is known: never go backwards.
                j.progress = j.progress.max(index as f64 / total.max(1) as f64);
            }
            FlowEvent::StepFinished { step, index, total } => {
                j.steps.push(*step);
                // 1.0 is kept for "finished", after the result is recorded.
                j.progress = j
                    .progress
                    .max(((index + 1) as f64 / total.max(1) as f64).min(0.99));
            }
        });
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut FlowJob)) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = inner.jobs.get_mut(id) {
            f(&mut entry.job);
            entry.job.updated_at = now_text();
            let _ = entry.events.send(entry.job.clone());
        }
    }

    /// A job by id: from memory, else from the database (older or from a previous run).
    pub async fn get(&self, id: &str) -> anyhow::Result<Option<FlowJob>> {
        if let Some(e) = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .jobs
            .get(id)
        {
            return Ok(Some(e.job.clone()));
        }
        let Some(row) = self.store.job(id, JobKind::Flow).await? else {
            return Ok(None);
        };
        let request: Value = serde_json::from_str(&row.request).unwrap_or(Value::Null);
        let report: Option<FlowReport> = row
            .result
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok());
        let error: Option<Value> = row
            .error
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok());
        let status = FlowStatus::parse(&row.status);
        Ok(Some(FlowJob {
            id: row.id,
            generator_mode: if request["mock"] == json!(false) {
                "live"
            } else {
                "mock"
            }
            .into(),
            progress: if matches!(status, FlowStatus::Succeeded | FlowStatus::Failed) {
                1.0
            } else {
                0.0
            },
            current_step: None,
            steps: report.as_ref().map(|r| r.steps.clone()).unwrap_or_default(),
            report: report.or_else(|| {
                error.map(|e| FlowReport {
                    generator_mode: String::new(),
                    ok: false,
                    failed_step: None,
                    error: Some(e),
                    result: json!({}),
                    steps: vec![],
                    total_ms: 0.0,
                    budget_s: 0.0,
                    within_budget: false,
                })
            }),
            status,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }))
    }

    /// Runs at once and waiting.
    pub fn work(&self) -> crate::work::WorkFigures {
        self.work.figures()
    }

    /// The latest jobs held in memory, newest first.
    pub fn recent(&self) -> Vec<FlowJob> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner
            .order
            .iter()
            .rev()
            .filter_map(|id| inner.jobs.get(id))
            .map(|e| e.job.clone())
            .collect()
    }

    /// The job now, and a receiver of its later states (None when not in memory).
    pub fn subscribe(&self, id: &str) -> Option<(FlowJob, broadcast::Receiver<FlowJob>)> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner
            .jobs
            .get(id)
            .map(|e| (e.job.clone(), e.events.subscribe()))
    }
}

/// Where to reach our own server: a wildcard bind is reached on loopback.
fn loopback_of(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}
