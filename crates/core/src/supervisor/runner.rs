//! One service's state machine, run as its own task.

use super::docker::{DockerClient, DockerError};
use super::events::EventLog;
use super::health::{probe, probe_client, ProbeResult};
use super::process::{describe_exit, ProcessHandle, StopOutcome};
use super::{Control, LastExit, LastProbe, ServiceEntry, ServiceState};
use crate::config::{RestartPolicy, ServiceKind};
use crate::runtime::ProviderBoard;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a blocked service (Docker down, port taken) is checked again.
const UNAVAILABLE_RECHECK: Duration = Duration::from_secs(5);
/// How often a container's state is read while it runs.
const DOCKER_POLL: Duration = Duration::from_secs(1);
/// Probe cadence while starting, so "running" is seen soon after the service is ready:
/// quick at first (most services answer within seconds), then gentler for slow loaders.
fn starting_probe(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(5) {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(250)
    }
}

const SUPERVISOR: &str = "supervisor";

/// What the loop does next.
enum Next {
    Launch { reason: String, actor: String },
    Idle,
    Wait { delay: Duration, then: String },
    Exit,
}

enum LaunchError {
    /// Blocked from outside (Docker down, port taken): retried without counting as a crash.
    Unavailable(String),
    /// A start that failed (command not found, engine refused): counted like a crash.
    Failed(String),
    /// Cannot work until the config changes (no such container).
    Fatal(String),
}

enum Instance {
    Process(ProcessHandle),
    Docker {
        container: String,
        next_poll: Instant,
        logs_task: JoinHandle<()>,
    },
    External,
}

enum Exit {
    Crash { code: Option<i64>, reason: String },
    EngineGone(String),
}

pub(super) struct Runner {
    entry: Arc<ServiceEntry>,
    /// Where the gateways read whether this service's providers are up.
    board: Arc<ProviderBoard>,
    shutdown: CancellationToken,
    children: Arc<super::children::ChildRegistry>,
    events: EventLog,
    docker: Option<DockerClient>,
    rx: mpsc::UnboundedReceiver<Control>,
    client: reqwest::Client,
    /// Automatic restarts inside the crash-loop window.
    restart_times: VecDeque<Instant>,
    launches: u32,
}

impl Runner {
    pub(super) fn new(
        entry: Arc<ServiceEntry>,
        board: Arc<ProviderBoard>,
        shutdown: CancellationToken,
        children: Arc<super::children::ChildRegistry>,
        events: EventLog,
        docker: Option<DockerClient>,
        rx: mpsc::UnboundedReceiver<Control>,
    ) -> Self {
        Self {
            entry,
            board,
            shutdown,
            children,
            events,
            docker,
            rx,
            client: probe_client(),
            restart_times: VecDeque::new(),
            launches: 0,
        }
    }

    fn name(&self) -> &str {
        &self.entry.config.name
    }

    fn state(&self) -> ServiceState {
        self.entry.status().state
    }

    pub(super) async fn run(mut self) {
        let cfg = &self.entry.config;
        let mut next = if cfg.autostart || cfg.kind == ServiceKind::External {
            Next::Launch {
                reason: "autostart".into(),
                actor: SUPERVISOR.into(),
            }
        } else {
            Next::Idle
        };
        loop {
            next = match next {
                Next::Exit => break,
                Next::Idle => self.idle().await,
                Next::Wait { delay, then } => self.wait(delay, then).await,
                Next::Launch { reason, actor } => self.launch(reason, actor).await,
            };
        }
    }

    /// Change state: status, provider board, event log. Staying in a state is not an event.
    async fn transition(&self, to: ServiceState, reason: &str, actor: &str) {
        let from = self.state();
        let same_reason = self.entry.status().reason == reason;
        self.entry.update(|s| {
            if s.state != to {
                s.since = crate::store::now_text();
            }
            s.state = to;
            s.reason = reason.to_string();
            if matches!(
                to,
                ServiceState::Failed | ServiceState::Crashed | ServiceState::Unavailable
            ) {
                s.last_error = Some(reason.to_string());
            }
            if to != ServiceState::Unavailable {
                s.port_holder = None;
            }
        });
        for p in &self.entry.config.provides {
            if to == ServiceState::Running {
                self.board.mark_up(p);
            } else {
                self.board.mark_down(
                    p,
                    format!("service {} is {}: {reason}", self.name(), to.as_str()),
                );
            }
        }
        if from == to && same_reason {
            return;
        }
        self.entry.logs.push(
            "supervisor",
            format!("{} -> {}: {reason}", from.as_str(), to.as_str()),
        );
        self.events
            .record(
                self.name(),
                Some(from.as_str()),
                to.as_str(),
                reason,
                Some(actor),
            )
            .await;
    }

    async fn next_control(&mut self) -> Option<Control> {
        tokio::select! {
            c = self.rx.recv() => c,
            _ = self.shutdown.cancelled() => None,
        }
    }

    /// Stopped, crashed (restart = never) or failed: only a request moves it.
    async fn idle(&mut self) -> Next {
        match self.next_control().await {
            None => Next::Exit,
            Some(Control::Start { actor }) => self.manual_launch("started", actor),
            Some(Control::Restart { actor }) => self.manual_launch("restarted", actor),
            Some(Control::Stop { actor }) => {
                if self.state() != ServiceState::Stopped {
                    self.transition(
                        ServiceState::Stopped,
                        &format!("stopped by {actor}"),
                        &actor,
                    )
                    .await;
                }
                Next::Idle
            }
        }
    }

    fn manual_launch(&mut self, verb: &str, actor: String) -> Next {
        // A person asking is a fresh start: the crash-loop window begins again.
        self.restart_times.clear();
        Next::Launch {
            reason: format!("{verb} by {actor}"),
            actor,
        }
    }

    /// Backoff or an unavailable recheck: the delay, unless someone asks first.
    async fn wait(&mut self, delay: Duration, then: String) -> Next {
        tokio::select! {
            _ = tokio::time::sleep(delay) => Next::Launch { reason: then, actor: SUPERVISOR.into() },
            c = self.next_control() => match c {
                None => Next::Exit,
                Some(Control::Start { actor }) => self.manual_launch("started", actor),
                Some(Control::Restart { actor }) => self.manual_launch("restarted", actor),
                Some(Control::Stop { actor }) => {
                    self.transition(ServiceState::Stopped, &format!("stopped by {actor}"), &actor).await;
                    Next::Idle
                }
            }
        }
    }

    async fn launch(&mut self, reason: String, actor: String) -> Next {
        if self.entry.config.kind != ServiceKind::External {
            self.transition(ServiceState::Starting, &reason, &actor)
                .await;
        } else if self.launches == 0 {
            self.transition(ServiceState::Starting, "watching", &actor)
                .await;
        }
        match self.start_instance().await {
            Ok(inst) => {
                self.launches += 1;
                self.supervise(inst).await
            }
            Err(LaunchError::Unavailable(why)) => {
                self.transition(ServiceState::Unavailable, &why, SUPERVISOR)
                    .await;
                self.serve_foreign_holder().await;
                Next::Wait {
                    delay: UNAVAILABLE_RECHECK,
                    then: "checking again".into(),
                }
            }
            Err(LaunchError::Fatal(why)) => {
                self.transition(ServiceState::Failed, &why, SUPERVISOR)
                    .await;
                Next::Idle
            }
            Err(LaunchError::Failed(why)) => self.after_crash(None, why).await,
        }
    }

    /// A port held by someone else that answers our health probe still serves the
    /// provider (e.g. a ComfyUI left running by hand): do not block the gateway then.
    async fn serve_foreign_holder(&mut self) {
        if self.entry.status().port_holder.is_none() {
            return;
        }
        if let Some(h) = &self.entry.config.health {
            if self.probe_once(h.url.clone(), h.timeout_ms).await.ok {
                for p in &self.entry.config.provides {
                    self.board.mark_up(p);
                }
            }
        }
    }

    async fn start_instance(&mut self) -> Result<Instance, LaunchError> {
        let cfg = self.entry.config.clone();
        match cfg.kind {
            ServiceKind::External => Ok(Instance::External),
            ServiceKind::Process => {
                if let Some(port) = cfg.port {
                    let holder =
                        tokio::task::spawn_blocking(move || super::ports::check_port(port))
                            .await
                            .ok()
                            .flatten();
                    if let Some(h) = holder {
                        let text = h.describe();
                        self.entry.update(|s| s.port_holder = Some(text.clone()));
                        return Err(LaunchError::Unavailable(text));
                    }
                }
                let handle = super::process::spawn(
                    &cfg,
                    &self.entry.logs,
                    self.entry.detached_log.as_deref(),
                )
                .map_err(|e| {
                    LaunchError::Failed(format!(
                        "cannot start {:?}: {e}",
                        cfg.command.as_deref().unwrap_or_default()
                    ))
                })?;
                let pid = handle.pid;
                if !cfg.detach {
                    let (children, name) = (self.children.clone(), cfg.name.clone());
                    tokio::task::spawn_blocking(move || children.record(&name, pid));
                }
                self.entry.logs.push(
                    "supervisor",
                    format!(
                        "started pid {pid}: {} {}",
                        cfg.command.as_deref().unwrap_or_default(),
                        cfg.args.join(" ")
                    ),
                );
                self.entry.update(|s| {
                    s.pid = Some(pid);
                    s.launched_at = Some(std::time::Instant::now());
                });
                Ok(Instance::Process(handle))
            }
            ServiceKind::Docker => {
                let docker = self.docker.clone().ok_or_else(|| {
                    LaunchError::Failed("no Docker client (internal error)".into())
                })?;
                let name = cfg.container.clone().unwrap_or_default();
                let map = |e: DockerError| match e {
                    DockerError::Unavailable(m) => LaunchError::Unavailable(m),
                    DockerError::NoSuchContainer(m) => LaunchError::Fatal(m),
                    DockerError::Other(m) => LaunchError::Failed(m),
                };
                let info = docker.inspect(&name).await.map_err(map)?;
                if info.running {
                    self.entry
                        .logs
                        .push("supervisor", format!("container {name} is already running"));
                } else {
                    docker.start(&name).await.map_err(map)?;
                    self.entry
                        .logs
                        .push("supervisor", format!("started container {name}"));
                }
                let info = docker.inspect(&name).await.map_err(map)?;
                self.entry.update(|s| {
                    s.pid = info.pid;
                    s.launched_at = Some(std::time::Instant::now());
                });
                let logs = self.entry.logs.clone();
                let tail = if self.launches == 0 {
                    self.entry.config.log_lines
                } else {
                    0
                };
                let logs_task = tokio::spawn({
                    let name = name.clone();
                    async move { docker.follow_logs(name, tail, logs).await }
                });
                Ok(Instance::Docker {
                    container: name,
                    next_poll: Instant::now() + DOCKER_POLL,
                    logs_task,
                })
            }
        }
    }

    async fn probe_once(&self, url: String, timeout_ms: u64) -> ProbeResult {
        let r = probe(&self.client, &url, Duration::from_millis(timeout_ms)).await;
        self.entry.update(|s| {
            s.last_probe = Some(LastProbe {
                ok: r.ok,
                latency_ms: (r.latency_ms * 10.0).round() / 10.0,
                error: r.error.clone(),
                at: crate::store::now_text(),
            });
        });
        r
    }

    /// Watch a started instance until it exits, hangs, or someone asks for something.
    async fn supervise(&mut self, mut inst: Instance) -> Next {
        let cfg = self.entry.config.clone();
        let started = Instant::now();
        let mut was_up = false;
        let mut failures = 0u32;
        if cfg.health.is_none() {
            was_up = true;
            self.transition(
                ServiceState::Running,
                "started (no health probe configured)",
                SUPERVISOR,
            )
            .await;
        }
        let mut next_probe = Instant::now() + starting_probe(Duration::ZERO);
        loop {
            tokio::select! {
                exit = exited(self.docker.as_ref(), &mut inst) => {
                    self.clear_instance(&mut inst);
                    return match exit {
                        Exit::Crash { code, reason } => {
                            self.entry.update(|s| s.last_exit = Some(LastExit {
                                code, reason: reason.clone(), at: crate::store::now_text(),
                            }));
                            self.after_crash(code, reason).await
                        }
                        Exit::EngineGone(why) => {
                            self.transition(ServiceState::Unavailable, &why, SUPERVISOR).await;
                            Next::Wait { delay: UNAVAILABLE_RECHECK, then: "checking again".into() }
                        }
                    };
                }
                _ = tokio::time::sleep_until(next_probe), if cfg.health.is_some() => {
                    let h = cfg.health.clone().expect("guarded by the branch condition");
                    let probe_started = Instant::now();
                    let r = self.probe_once(h.url.clone(), h.timeout_ms).await;
                    let interval = Duration::from_millis(h.interval_ms);
                    let cadence = if was_up { interval } else { interval.min(starting_probe(started.elapsed())) };
                    // A fixed cadence from the probe's start: slow failing probes must not
                    // stretch the time to detect a hang.
                    next_probe = (probe_started + cadence).max(Instant::now() + Duration::from_millis(10));
                    if r.ok {
                        failures = 0;
                        if self.state() != ServiceState::Running {
                            let why = if was_up {
                                "health probe passes again".to_string()
                            } else {
                                format!("health probe passed {:.1} s after start", started.elapsed().as_secs_f64())
                            };
                            was_up = true;
                            self.transition(ServiceState::Running, &why, SUPERVISOR).await;
                        }
                        continue;
                    }
                    failures += 1;
                    let err = r.error.unwrap_or_default();
                    let hung = if !was_up {
                        (started.elapsed() >= Duration::from_millis(cfg.start_timeout_ms)).then(|| format!(
                            "no healthy answer within {} s of starting (last probe: {err})",
                            cfg.start_timeout_ms / 1000
                        ))
                    } else {
                        (failures >= h.failures).then(|| format!("{failures} health probes failed (last: {err})"))
                    };
                    let Some(why) = hung else { continue };
                    if self.state() == ServiceState::Unhealthy {
                        continue;
                    }
                    self.transition(ServiceState::Unhealthy, &why, SUPERVISOR).await;
                    if cfg.kind == ServiceKind::External || cfg.restart == RestartPolicy::Never {
                        // Keep watching: it may come back by itself.
                        continue;
                    }
                    if let Some(next) = self.crash_loop_check(&why).await {
                        self.stop_instance(&mut inst).await;
                        return next;
                    }
                    self.transition(ServiceState::Restarting, &format!("restarting: {why}"), SUPERVISOR).await;
                    self.stop_instance(&mut inst).await;
                    self.count_restart();
                    return Next::Launch { reason: "restart after failed health probes".into(), actor: SUPERVISOR.into() };
                }
                c = self.rx.recv() => match c {
                    Some(Control::Start { .. }) => {}
                    Some(Control::Stop { actor }) => {
                        self.stop_instance(&mut inst).await;
                        self.transition(ServiceState::Stopped, &format!("stopped by {actor}"), &actor).await;
                        return Next::Idle;
                    }
                    Some(Control::Restart { actor }) => {
                        let why = format!("restarted by {actor}");
                        self.transition(ServiceState::Restarting, &why, &actor).await;
                        if let Instance::Docker { container, logs_task, .. } = &inst {
                            logs_task.abort();
                            if let Some(d) = &self.docker {
                                if let Err(e) = d.restart(container, Duration::from_millis(cfg.stop_timeout_ms)).await {
                                    self.entry.logs.push("supervisor", format!("restart failed: {}", e.message()));
                                }
                            }
                            self.clear_instance(&mut inst);
                        } else {
                            self.stop_instance(&mut inst).await;
                        }
                        self.restart_times.clear();
                        return Next::Launch { reason: why, actor };
                    }
                    None => return Next::Exit,
                },
                _ = self.shutdown.cancelled() => {
                    if cfg.detach {
                        self.entry.logs.push("supervisor", "left running on quit (detach = true)");
                        self.events.record(self.name(), Some(self.state().as_str()), self.state().as_str(),
                            "Sparklio Desk quit; left running (detach = true)", Some(SUPERVISOR)).await;
                    } else {
                        self.stop_instance(&mut inst).await;
                        self.transition(ServiceState::Stopped, "Sparklio Desk is shutting down", SUPERVISOR).await;
                    }
                    return Next::Exit;
                }
            }
        }
    }

    /// The instance ended: forget its pid, end what is left of its tree.
    fn clear_instance(&self, inst: &mut Instance) {
        match inst {
            Instance::Process(h) => {
                h.kill_leftovers();
                self.children.forget(self.name());
            }
            Instance::Docker { logs_task, .. } => logs_task.abort(),
            Instance::External => {}
        }
        self.entry.update(|s| {
            s.pid = None;
            s.launched_at = None;
        });
    }

    async fn stop_instance(&self, inst: &mut Instance) {
        let timeout = Duration::from_millis(self.entry.config.stop_timeout_ms);
        match inst {
            Instance::Process(h) => {
                let outcome = h.stop(timeout).await;
                self.entry.logs.push(
                    "supervisor",
                    match outcome {
                        StopOutcome::Graceful => "stopped gracefully".to_string(),
                        StopOutcome::Killed => format!(
                            "killed the process tree (not gone {} ms after the stop request)",
                            timeout.as_millis()
                        ),
                    },
                );
            }
            Instance::Docker { container, .. } => {
                if let Some(d) = &self.docker {
                    if let Err(e) = d.stop(container, timeout).await {
                        self.entry
                            .logs
                            .push("supervisor", format!("stop failed: {}", e.message()));
                    }
                }
            }
            Instance::External => {}
        }
        self.clear_instance(inst);
    }

    /// `Some(Failed)` when another automatic restart would exceed the crash-loop limit.
    async fn crash_loop_check(&mut self, why: &str) -> Option<Next> {
        let cl = self.entry.config.crash_loop.clone();
        let window = Duration::from_secs(cl.within_s);
        while self
            .restart_times
            .front()
            .is_some_and(|t| t.elapsed() > window)
        {
            self.restart_times.pop_front();
        }
        if self.restart_times.len() < cl.restarts as usize {
            return None;
        }
        let reason = format!(
            "crash loop: {} restarts within {} s (last: {why}); no more retries until started by hand",
            self.restart_times.len(),
            cl.within_s
        );
        self.transition(ServiceState::Failed, &reason, SUPERVISOR)
            .await;
        Some(Next::Idle)
    }

    fn count_restart(&mut self) {
        self.restart_times.push_back(Instant::now());
        self.entry.update(|s| s.restarts += 1);
    }

    /// The process or container ended (or never started): apply the restart policy.
    async fn after_crash(&mut self, code: Option<i64>, reason: String) -> Next {
        self.transition(ServiceState::Crashed, &reason, SUPERVISOR)
            .await;
        let policy = self.entry.config.restart;
        if policy == RestartPolicy::Never {
            return Next::Idle;
        }
        if policy == RestartPolicy::OnFailure && code == Some(0) {
            self.transition(
                ServiceState::Stopped,
                "exited normally (exit code 0; restart = \"on-failure\")",
                SUPERVISOR,
            )
            .await;
            return Next::Idle;
        }
        if let Some(next) = self.crash_loop_check(&reason).await {
            return next;
        }
        self.count_restart();
        let b = &self.entry.config.backoff;
        let n = self.restart_times.len().saturating_sub(1).min(30) as u32;
        let delay = b.initial_ms.saturating_mul(1u64 << n).min(b.max_ms);
        self.transition(
            ServiceState::Backoff,
            &format!(
                "restarting in {delay} ms (restart {} of {} allowed within {} s)",
                self.restart_times.len(),
                self.entry.config.crash_loop.restarts,
                self.entry.config.crash_loop.within_s
            ),
            SUPERVISOR,
        )
        .await;
        Next::Wait {
            delay: Duration::from_millis(delay),
            then: format!("backoff of {delay} ms elapsed"),
        }
    }
}

/// Resolves when the instance has ended (never for an external service).
async fn exited(docker: Option<&DockerClient>, inst: &mut Instance) -> Exit {
    match inst {
        Instance::Process(h) => {
            let (code, reason) = describe_exit(h.wait_exit().await);
            Exit::Crash {
                code: code.map(i64::from),
                reason,
            }
        }
        Instance::Docker {
            container,
            next_poll,
            ..
        } => loop {
            // A fixed deadline: select! recreating this future must not postpone it.
            tokio::time::sleep_until(*next_poll).await;
            *next_poll = Instant::now() + DOCKER_POLL;
            let Some(docker) = docker else {
                std::future::pending::<()>().await;
                unreachable!()
            };
            match docker.inspect(container).await {
                Ok(info) if info.running => {}
                Ok(info) => {
                    let mut reason = match info.exit_code {
                        Some(c) => format!("container {container} exited with code {c}"),
                        None => format!("container {} is {}", container, info.status),
                    };
                    if let Some(e) = info.error {
                        reason.push_str(&format!(" ({e})"));
                    }
                    return Exit::Crash {
                        code: info.exit_code,
                        reason,
                    };
                }
                Err(DockerError::Unavailable(m)) => return Exit::EngineGone(m),
                Err(DockerError::NoSuchContainer(m)) => {
                    return Exit::Crash {
                        code: None,
                        reason: m,
                    }
                }
                Err(DockerError::Other(_)) => {}
            }
        },
        Instance::External => std::future::pending().await,
    }
}
