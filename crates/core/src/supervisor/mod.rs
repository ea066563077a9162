//! The supervisor: keeps the services of `[[services]]` (Ollama, ComfyUI, ...) running,
//! says so the moment one is not, and tells the gateways which providers are down.
//!
//! One task per service runs its state machine ([`ServiceState`]):
//! `stopped → starting → running` (health passes), `running → unhealthy → restarting`,
//! exit → `crashed → backoff → starting`, `failed` after the crash-loop limit, and
//! `unavailable` when something outside the service blocks it (Docker is not running,
//! its port is held by a process we did not start). Every change is an [`events::Event`].

pub mod children;
pub mod discover;
pub mod docker;
pub mod events;
pub mod health;
pub mod hooks;
pub mod logs;
pub mod ports;
pub mod process;
mod runner;

use crate::config::{Config, ServiceConfig, ServiceKind};
use crate::gateway::BackingService;
use crate::runtime::ProviderBoard;
use crate::store::Store;
use events::EventLog;
use logs::{LogFileSpec, LogLimits, ServiceLogs};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Stopped,
    Starting,
    Running,
    Unhealthy,
    Restarting,
    Crashed,
    Backoff,
    Failed,
    /// Blocked by something outside the service: Docker not running, port taken.
    Unavailable,
}

impl ServiceState {
    pub const ALL: [ServiceState; 9] = [
        ServiceState::Stopped,
        ServiceState::Starting,
        ServiceState::Running,
        ServiceState::Unhealthy,
        ServiceState::Restarting,
        ServiceState::Crashed,
        ServiceState::Backoff,
        ServiceState::Failed,
        ServiceState::Unavailable,
    ];

    /// The state an event log row names (`None` for the gateway alarm's `ok`/`failing`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Stopped => "stopped",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Unhealthy => "unhealthy",
            ServiceState::Restarting => "restarting",
            ServiceState::Crashed => "crashed",
            ServiceState::Backoff => "backoff",
            ServiceState::Failed => "failed",
            ServiceState::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last exit of a service's process or container.
#[derive(Debug, Clone, Serialize)]
pub struct LastExit {
    pub code: Option<i64>,
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastProbe {
    pub ok: bool,
    pub latency_ms: f64,
    pub error: Option<String>,
    pub at: String,
}

/// What the engine says about a supervised container (`inspect` and its event stream).
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ContainerView {
    /// The image it runs, as named at `docker run`/`create`.
    pub image: Option<String>,
    /// The container's own health check: `starting`, `healthy`, `unhealthy` (none: no check).
    pub health: Option<String>,
    /// Restarts done by the engine's restart policy (not by the supervisor).
    pub restart_count: i64,
    /// Whether the engine's event stream is followed (`false`: polled every second).
    pub events_followed: bool,
}

/// What the API shows about one service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub state: ServiceState,
    /// Why it is in this state.
    pub reason: String,
    /// When it entered this state (RFC 3339).
    pub since: String,
    pub pid: Option<u32>,
    /// Automatic restarts since Sparklio Desk started.
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    pub last_error: Option<String>,
    pub last_probe: Option<LastProbe>,
    /// Who holds the service's port, when it is not us.
    pub port_holder: Option<String>,
    /// Docker services: image, health and restart count from the engine.
    pub docker: Option<ContainerView>,
    #[serde(skip)]
    pub launched_at: Option<Instant>,
}

/// Control requests from the API (commands themselves only ever come from the config).
#[derive(Debug, Clone)]
pub enum Control {
    Start { actor: String },
    Stop { actor: String },
    Restart { actor: String },
}

/// A control request and when it was made: a restart asked before the instance now
/// starting was launched is satisfied by that instance (not a second restart).
#[derive(Debug)]
pub(crate) struct Request {
    pub control: Control,
    pub at: Instant,
}

/// One configured service: its config, output and live status.
pub struct ServiceEntry {
    pub config: ServiceConfig,
    pub logs: Arc<ServiceLogs>,
    status: Mutex<ServiceStatus>,
    control: mpsc::UnboundedSender<Request>,
    control_rx: Mutex<Option<mpsc::UnboundedReceiver<Request>>>,
    /// Detached processes write here directly (their pipes must outlive us); rotated
    /// when a start finds it over the size of the service's own log.
    pub detached_log: Option<LogFileSpec>,
    /// Why a config reload ended this entry's runner (none: it runs, or the app quits).
    retired: Mutex<Option<String>>,
}

impl ServiceEntry {
    /// Why its runner is ending: a reload's reason, else `quit` (the app is stopping).
    pub(crate) fn quit_reason(&self, quit: &str) -> String {
        lock(&self.retired)
            .clone()
            .unwrap_or_else(|| quit.to_string())
    }

    pub fn status(&self) -> ServiceStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut ServiceStatus)) {
        f(&mut self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// Seconds since the current process/container was started (while it runs).
    pub fn uptime(&self) -> Option<Duration> {
        self.status().launched_at.map(|t| t.elapsed())
    }
}

/// A service as the API shows it: its config, its state, and what its processes use.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub kind: crate::config::ServiceKind,
    pub state: ServiceState,
    pub reason: String,
    pub since: String,
    pub pid: Option<u32>,
    pub uptime_s: Option<u64>,
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    pub last_error: Option<String>,
    pub cpu_percent: Option<f32>,
    pub memory_bytes: Option<u64>,
    pub processes: Option<u32>,
    pub port: Option<u16>,
    pub port_holder: Option<String>,
    pub last_probe_latency_ms: Option<f64>,
    pub last_probe: Option<LastProbe>,
    pub health_url: Option<String>,
    pub container: Option<String>,
    /// Docker services: image, health and restart count from the engine.
    pub docker: Option<ContainerView>,
    pub provides: Vec<String>,
    pub autostart: bool,
    pub restart: crate::config::RestartPolicy,
    pub detach: bool,
}

impl ServiceEntry {
    /// The API's view, with the CPU/memory of its process tree when known.
    pub fn view(&self, usage: Option<crate::system::ProcessUsage>) -> ServiceView {
        let st = self.status();
        let c = &self.config;
        ServiceView {
            name: c.name.clone(),
            kind: c.kind,
            state: st.state,
            reason: st.reason,
            since: st.since,
            pid: st.pid,
            uptime_s: self.uptime().map(|d| d.as_secs()),
            restarts: st.restarts,
            last_exit: st.last_exit,
            last_error: st.last_error,
            cpu_percent: usage.map(|u| u.cpu_percent),
            memory_bytes: usage.map(|u| u.memory_bytes),
            processes: usage.map(|u| u.processes),
            port: c.port,
            port_holder: st.port_holder,
            last_probe_latency_ms: st
                .last_probe
                .as_ref()
                .filter(|p| p.ok)
                .map(|p| p.latency_ms),
            last_probe: st.last_probe,
            health_url: c.health.as_ref().map(|h| h.url.clone()),
            container: c.container.clone(),
            docker: st.docker,
            provides: c.provides.clone(),
            autostart: c.autostart,
            restart: c.restart,
            detach: c.detach,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    NotFound(String),
    /// External services are only watched.
    #[error("{0}")]
    NotControllable(String),
}

impl ControlError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NOT_FOUND",
            Self::NotControllable(_) => "NOT_CONTROLLABLE",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound(_) => 404,
            Self::NotControllable(_) => 409,
        }
    }
}

pub struct Supervisor {
    /// Replaced by a config reload (unchanged services keep their entry and runner).
    services: RwLock<Vec<Arc<ServiceEntry>>>,
    pub events: EventLog,
    /// Each running service task and the token that retires it.
    tasks: Mutex<Vec<Task>>,
    settings: crate::config::SupervisorConfig,
    log_dir: PathBuf,
    /// Set by [`Supervisor::start`]: what runners started later (by a reload) share.
    shared: Mutex<Option<runner::Shared>>,
    /// Processes we started, so a crashed run's leftovers are ended at the next start.
    children: Arc<children::ChildRegistry>,
    /// Test pause points in automatic recovery (inert unless armed).
    hooks: Arc<hooks::Hooks>,
}

struct Task {
    entry: Arc<ServiceEntry>,
    retire: CancellationToken,
    handle: JoinHandle<()>,
}

/// What a config reload did to the services.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ServicesReload {
    /// Started.
    pub added: Vec<String>,
    /// Stopped (unless `detach = true`) and no longer supervised.
    pub removed: Vec<String>,
    /// Stopped and started again with their new settings.
    pub changed: Vec<String>,
    /// Left running as they were.
    pub unchanged: Vec<String>,
}

impl ServiceEntry {
    fn new(
        svc: &ServiceConfig,
        settings: &crate::config::SupervisorConfig,
        log_dir: &Path,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let spec = LogFileSpec {
            path: log_dir.join(format!("{}.log", svc.name)),
            max_bytes: settings.log_file_max_bytes,
            kept: settings.log_files_kept,
        };
        let detached_log = (svc.detach && svc.kind == ServiceKind::Process).then(|| LogFileSpec {
            path: log_dir.join(format!("{}.detached.log", svc.name)),
            ..spec.clone()
        });
        Self {
            config: svc.clone(),
            logs: Arc::new(ServiceLogs::new(
                LogLimits {
                    ring_lines: svc.log_lines,
                    ring_bytes: settings.log_memory_max_bytes,
                    max_line_bytes: settings.log_line_max_bytes,
                },
                spec,
            )),
            status: Mutex::new(ServiceStatus {
                state: ServiceState::Stopped,
                reason: "not started yet".into(),
                since: crate::store::now_text(),
                pid: None,
                restarts: 0,
                last_exit: None,
                last_error: None,
                last_probe: None,
                port_holder: None,
                docker: None,
                launched_at: None,
            }),
            control: tx,
            control_rx: Mutex::new(Some(rx)),
            detached_log,
            retired: Mutex::new(None),
        }
    }
}

impl Supervisor {
    pub fn new(config: &Config, store: Store, data_dir: &Path) -> Self {
        let log_dir = data_dir.join("logs");
        let services = config
            .services
            .iter()
            .map(|svc| Arc::new(ServiceEntry::new(svc, &config.supervisor, &log_dir)))
            .collect();
        Self {
            services: RwLock::new(services),
            events: EventLog::new(store),
            tasks: Mutex::new(Vec::new()),
            settings: config.supervisor.clone(),
            log_dir,
            shared: Mutex::new(None),
            children: Arc::new(children::ChildRegistry::open(data_dir)),
            hooks: Arc::default(),
        }
    }

    fn docker_client(&self) -> docker::DockerClient {
        let client = docker::DockerClient::new(self.settings.docker_host.as_deref());
        match docker::DesktopStarter::from_config(&self.settings) {
            Some(starter) => client.with_desktop(starter),
            None => client,
        }
    }

    /// Start one task per service (once). Providers start out down until their service runs.
    pub fn start(&self, board: Arc<ProviderBoard>, shutdown: CancellationToken) {
        for ended in self.children.reap_previous() {
            tracing::warn!("ended a process a previous run of Sparklio Desk left behind: {ended}");
        }
        let docker = self
            .services()
            .iter()
            .any(|s| s.config.kind == ServiceKind::Docker)
            .then(|| self.docker_client());
        let shared = runner::Shared {
            board,
            shutdown,
            children: self.children.clone(),
            events: self.events.clone(),
            docker,
            recheck: Duration::from_millis(self.settings.unavailable_recheck_ms),
            hooks: self.hooks.clone(),
        };
        *lock(&self.shared) = Some(shared.clone());
        for entry in self.services() {
            self.spawn_runner(&entry, &shared);
        }
    }

    fn spawn_runner(&self, entry: &Arc<ServiceEntry>, shared: &runner::Shared) {
        let Some(rx) = lock(&entry.control_rx).take() else {
            return;
        };
        for p in &entry.config.provides {
            shared.board.mark_down(
                p,
                format!("service {} is stopped: not started yet", entry.config.name),
            );
        }
        // Its own token: a reload retires one service, a shutdown (the parent) all.
        let retire = shared.shutdown.child_token();
        let mut own = shared.clone();
        own.shutdown = retire.clone();
        let runner = runner::Runner::new(entry.clone(), own, rx);
        lock(&self.tasks).push(Task {
            entry: entry.clone(),
            retire,
            handle: tokio::spawn(runner.run()),
        });
    }

    /// Apply a reloaded `[[services]]`: services whose settings did not change keep
    /// running untouched; removed ones are stopped (as at quit: `detach = true` ones are
    /// left running) and forgotten; changed ones are stopped, then started with their
    /// new settings; new ones are started. Returns once every stop has finished.
    pub async fn reconcile(&self, services: &[ServiceConfig]) -> ServicesReload {
        let mut report = ServicesReload::default();
        let current = self.services();
        let mut next = Vec::with_capacity(services.len());
        for svc in services {
            match current.iter().find(|e| e.config.name == svc.name) {
                Some(e) if crate::config::same_settings(&e.config, svc) => {
                    report.unchanged.push(svc.name.clone());
                    next.push(e.clone());
                }
                Some(_) => {
                    report.changed.push(svc.name.clone());
                    next.push(Arc::new(ServiceEntry::new(
                        svc,
                        &self.settings,
                        &self.log_dir,
                    )));
                }
                None => {
                    report.added.push(svc.name.clone());
                    next.push(Arc::new(ServiceEntry::new(
                        svc,
                        &self.settings,
                        &self.log_dir,
                    )));
                }
            }
        }
        let leaving: Vec<Arc<ServiceEntry>> = current
            .iter()
            .filter(|e| !next.iter().any(|n| Arc::ptr_eq(n, e)))
            .cloned()
            .collect();
        for e in &leaving {
            if !services.iter().any(|s| s.name == e.config.name) {
                report.removed.push(e.config.name.clone());
            }
        }
        // Stop the leaving runners first: a changed service's new instance needs the port.
        let retiring: Vec<Task> = {
            let mut tasks = lock(&self.tasks);
            let (gone, kept): (Vec<Task>, Vec<Task>) = std::mem::take(&mut *tasks)
                .into_iter()
                .partition(|t| leaving.iter().any(|e| Arc::ptr_eq(e, &t.entry)));
            *tasks = kept;
            gone
        };
        for t in retiring {
            let why = if report.removed.contains(&t.entry.config.name) {
                "removed from the config"
            } else {
                "its settings changed in the config"
            };
            *lock(&t.entry.retired) = Some(why.to_string());
            t.retire.cancel();
            let limit =
                Duration::from_millis(t.entry.config.stop_timeout_ms) + Duration::from_secs(10);
            let abort = t.handle.abort_handle();
            if tokio::time::timeout(limit, t.handle).await.is_err() {
                tracing::warn!(service = %t.entry.config.name, "did not stop within {limit:?}");
                abort.abort();
            }
        }
        let shared = lock(&self.shared).clone();
        if let Some(shared) = &shared {
            for e in &leaving {
                for p in &e.config.provides {
                    shared.board.mark_up(p);
                }
            }
        }
        *self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner) = next.clone();
        // Not started yet (no `start`): the new entries wait for it like the others.
        if let Some(mut shared) = shared {
            if shared.docker.is_none() && next.iter().any(|e| e.config.kind == ServiceKind::Docker)
            {
                shared.docker = Some(self.docker_client());
                *lock(&self.shared) = Some(shared.clone());
            }
            for e in &next {
                self.spawn_runner(e, &shared);
            }
        }
        report
    }

    /// Pause points for tests (see [`hooks`]).
    pub fn hooks(&self) -> &hooks::Hooks {
        &self.hooks
    }

    /// The services now (a snapshot: a reload may replace the list).
    pub fn services(&self) -> Vec<Arc<ServiceEntry>> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<ServiceEntry>> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|s| s.config.name == name)
            .cloned()
    }

    /// Ask a service to start, stop or restart; answers its state at the time of asking.
    pub fn control(&self, name: &str, control: Control) -> Result<ServiceState, ControlError> {
        let entry = self
            .get(name)
            .ok_or_else(|| ControlError::NotFound(format!("no service named {name:?}")))?;
        if entry.config.kind == ServiceKind::External {
            return Err(ControlError::NotControllable(format!(
                "service {name:?} is external: it is only watched, someone else runs it"
            )));
        }
        // The receiver lives as long as the service task; after shutdown the request is moot.
        let _ = entry.control.send(Request {
            control,
            at: Instant::now(),
        });
        Ok(entry.status().state)
    }

    /// The services backing a gateway provider, with their states (for health endpoints).
    pub fn provider_services(&self, provider: &str) -> Vec<BackingService> {
        self.services()
            .iter()
            .filter(|s| s.config.provides.iter().any(|p| p == provider))
            .map(|s| {
                let st = s.status();
                BackingService {
                    name: s.config.name.clone(),
                    state: st.state.as_str().to_string(),
                    reason: st.reason,
                    since: st.since,
                }
            })
            .collect()
    }

    /// Wait for every service task to finish after shutdown was requested (they stop
    /// their services unless `detach = true`).
    pub async fn join(&self) {
        let tasks: Vec<Task> = std::mem::take(&mut *lock(&self.tasks));
        let longest = self
            .services()
            .iter()
            .map(|s| s.config.stop_timeout_ms)
            .max()
            .unwrap_or(0);
        let limit = Duration::from_millis(longest) + Duration::from_secs(10);
        for t in tasks {
            let abort = t.handle.abort_handle();
            if tokio::time::timeout(limit, t.handle).await.is_err() {
                tracing::warn!("a service did not stop within {limit:?}");
                abort.abort();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
