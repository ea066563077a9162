//! One service's state machine, run as its own task.

use super::docker::{ContainerEvent, ContainerInfo, DockerClient, DockerError};
use super::events::EventLog;
use super::health::{probe, probe_client, ProbeResult};
use super::hooks::{Hooks, RecoveryPoint};
use super::process::{describe_exit, ProcessHandle, StopOutcome};
use super::{Control, LastExit, LastProbe, Request, ServiceEntry, ServiceState};
use crate::config::{RestartPolicy, ServiceKind};
use crate::runtime::ProviderBoard;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a container's state is read while it runs and the engine's event stream
/// cannot be followed (an engine or proxy without `/events`).
const DOCKER_POLL: Duration = Duration::from_secs(1);
/// With the event stream followed, polling is only a safety net.
const DOCKER_POLL_WITH_EVENTS: Duration = Duration::from_secs(5);
/// A container that died after a graceful stop was asked of the engine (`docker stop`, or
/// the engine shutting down): wait this long for the engine to go before calling it a crash.
const OUTSIDE_STOP_GRACE: Duration = Duration::from_secs(3);
/// A container killed with code 137 without a kill asked of the engine: wait this long for
/// the engine's `oom` event, which may follow the `die`.
const OOM_GRACE: Duration = Duration::from_millis(200);
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
    Docker(DockerWatch),
    External,
}

/// A running container: polled, and followed through the engine's event stream.
struct DockerWatch {
    container: String,
    next_poll: Instant,
    poll: Duration,
    logs_task: JoinHandle<()>,
    events_task: Option<JoinHandle<()>>,
    events: mpsc::UnboundedReceiver<ContainerEvent>,
    events_tx: mpsc::UnboundedSender<ContainerEvent>,
    /// The engine reported an OOM kill.
    oom: bool,
    /// A graceful stop (SIGTERM) was asked of the engine from outside.
    stop_asked: bool,
    /// A kill was asked of the engine (`docker kill`): the signal.
    killed_with: Option<String>,
    /// A `die` seen, its verdict waiting for what may follow (oom, engine gone) until then.
    pending_die: Option<(Option<i64>, Instant)>,
    /// When the event stream was last asked for.
    subscribed_at: Instant,
    /// The event stream ended (why): whether the engine is still there is being asked.
    /// Kept here until answered, like `pending_die`: the watch may be dropped at that await.
    stream_ended: Option<String>,
}

impl DockerWatch {
    fn stop_following(&mut self) {
        self.logs_task.abort();
        if let Some(t) = self.events_task.take() {
            t.abort();
        }
    }
}

enum Exit {
    Crash { code: Option<i64>, reason: String },
    EngineGone(String),
}

/// What every service's runner shares.
#[derive(Clone)]
pub(super) struct Shared {
    /// Where the gateways read whether a service's providers are up.
    pub board: Arc<ProviderBoard>,
    pub shutdown: CancellationToken,
    pub children: Arc<super::children::ChildRegistry>,
    pub events: EventLog,
    pub docker: Option<DockerClient>,
    /// How often a blocked service is checked again.
    pub recheck: Duration,
    pub hooks: Arc<Hooks>,
}

pub(super) struct Runner {
    entry: Arc<ServiceEntry>,
    /// Where the gateways read whether this service's providers are up.
    board: Arc<ProviderBoard>,
    shutdown: CancellationToken,
    children: Arc<super::children::ChildRegistry>,
    events: EventLog,
    docker: Option<DockerClient>,
    rx: mpsc::UnboundedReceiver<Request>,
    client: reqwest::Client,
    /// Automatic restarts inside the crash-loop window.
    restart_times: VecDeque<Instant>,
    launches: u32,
    /// How often a blocked service is checked again.
    recheck: Duration,
    hooks: Arc<Hooks>,
}

impl Runner {
    pub(super) fn new(
        entry: Arc<ServiceEntry>,
        shared: Shared,
        rx: mpsc::UnboundedReceiver<Request>,
    ) -> Self {
        let Shared {
            board,
            shutdown,
            children,
            events,
            docker,
            recheck,
            hooks,
        } = shared;
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
            recheck,
            hooks,
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
            r = self.rx.recv() => r.map(|r| r.control),
            _ = self.shutdown.cancelled() => None,
        }
    }

    async fn hold(&self, point: RecoveryPoint) {
        self.hooks.at(self.name(), point).await;
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
        // A blocked service checked again stays `unavailable` until the check passes: no
        // `starting` in between, so an hour of Docker being down is one counted event.
        let recheck = self.state() == ServiceState::Unavailable && actor == SUPERVISOR;
        if !recheck && self.entry.config.kind != ServiceKind::External {
            self.transition(ServiceState::Starting, &reason, &actor)
                .await;
            self.hold(RecoveryPoint::Launching).await;
        } else if !recheck && self.launches == 0 {
            self.transition(ServiceState::Starting, "watching", &actor)
                .await;
        }
        match self.start_instance().await {
            Ok(inst) => {
                if recheck {
                    self.transition(
                        ServiceState::Starting,
                        "checked again: no longer blocked",
                        SUPERVISOR,
                    )
                    .await;
                }
                self.launches += 1;
                self.hold(RecoveryPoint::Started).await;
                self.supervise(inst).await
            }
            Err(LaunchError::Unavailable(why)) => {
                let blocked_by = self.entry.status().reason;
                if recheck && same_blocker(&blocked_by, &why) {
                    self.events
                        .record_repeat(self.name(), ServiceState::Unavailable.as_str(), &blocked_by)
                        .await;
                } else {
                    self.transition(ServiceState::Unavailable, &why, SUPERVISOR)
                        .await;
                }
                self.serve_foreign_holder().await;
                Next::Wait {
                    delay: self.recheck,
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
                    let children = self.children.clone();
                    let holder = tokio::task::spawn_blocking(move || {
                        let mut h = super::ports::check_port(port)?;
                        h.service = h.pid.and_then(|pid| children.service_holding(pid));
                        Some(h)
                    })
                    .await
                    .ok()
                    .flatten();
                    if let Some(h) = holder {
                        let text = h.describe();
                        self.entry.update(|s| s.port_holder = Some(text.clone()));
                        return Err(LaunchError::Unavailable(text));
                    }
                }
                let handle =
                    super::process::spawn(&cfg, &self.entry.logs, self.entry.detached_log.as_ref())
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
                let info = match docker.inspect(&name).await {
                    Err(DockerError::Unavailable(why)) if docker.desktop_untried().is_some() => {
                        let wait = docker.desktop_untried().map(|d| d.wait().as_secs());
                        self.transition(
                            ServiceState::Unavailable,
                            &format!(
                                "{why}; starting Docker Desktop and waiting up to {} s for its engine",
                                wait.unwrap_or_default()
                            ),
                            SUPERVISOR,
                        )
                        .await;
                        let told = match docker.start_desktop().await {
                            Ok(m) | Err(m) => m,
                        };
                        self.entry.logs.push("supervisor", told);
                        docker.inspect(&name).await.map_err(launch_error)?
                    }
                    other => other.map_err(launch_error)?,
                };
                if info.running {
                    self.entry
                        .logs
                        .push("supervisor", format!("container {name} is already running"));
                } else {
                    docker.start(&name).await.map_err(launch_error)?;
                    self.entry
                        .logs
                        .push("supervisor", format!("started container {name}"));
                }
                let info = docker.inspect(&name).await.map_err(launch_error)?;
                self.entry.update(|s| {
                    s.pid = info.pid;
                    s.launched_at = Some(std::time::Instant::now());
                    s.docker = Some(container_view(&info, true));
                });
                let logs = self.entry.logs.clone();
                let tail = if self.launches == 0 {
                    self.entry.config.log_lines
                } else {
                    0
                };
                let logs_task = tokio::spawn({
                    let (docker, name) = (docker.clone(), name.clone());
                    async move { docker.follow_logs(name, tail, logs).await }
                });
                let (events_tx, events) = mpsc::unbounded_channel();
                let events_task = Some(tokio::spawn({
                    let (tx, name) = (events_tx.clone(), name.clone());
                    let since = info.started_at.clone();
                    async move { docker.follow_events(name, since, tx).await }
                }));
                Ok(Instance::Docker(DockerWatch {
                    container: name,
                    next_poll: Instant::now() + DOCKER_POLL_WITH_EVENTS,
                    poll: DOCKER_POLL_WITH_EVENTS,
                    logs_task,
                    events_task,
                    events,
                    events_tx,
                    oom: false,
                    stop_asked: false,
                    killed_with: None,
                    pending_die: None,
                    stream_ended: None,
                    subscribed_at: Instant::now(),
                }))
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
            // While the engine's verdict on a die is due, no probe timer may interrupt it:
            // an inspect slower than the probe cadence would be dropped and asked again
            // for ever.
            let die_pending = matches!(&inst, Instance::Docker(w) if w.pending_die.is_some());
            tokio::select! {
                exit = exited(self.docker.as_ref(), &self.entry, &mut inst) => {
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
                            Next::Wait { delay: self.recheck, then: "checking again".into() }
                        }
                    };
                }
                _ = tokio::time::sleep_until(next_probe), if cfg.health.is_some() && !die_pending => {
                    let h = cfg.health.clone().expect("guarded by the branch condition");
                    if let Instance::Docker(w) = &inst {
                        if w.pending_die.is_some() {
                            // The engine said it died: its verdict comes from `exited`.
                            next_probe = Instant::now() + Duration::from_millis(50);
                            continue;
                        }
                    }
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
                            self.hold(RecoveryPoint::Probed).await;
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
                    self.hold(RecoveryPoint::Stopping).await;
                    self.stop_instance(&mut inst).await;
                    self.count_restart();
                    return Next::Launch { reason: "restart after failed health probes".into(), actor: SUPERVISOR.into() };
                }
                r = self.rx.recv() => match r.map(|r| (r.control, r.at)) {
                    Some((Control::Start { .. }, _)) => {}
                    Some((Control::Restart { actor }, at))
                        if self.entry.status().launched_at.is_some_and(|launched| at <= launched) =>
                    {
                        // Asked before this instance was launched (during an automatic
                        // recovery): this instance is the restart asked for. Restarting it
                        // again would cost another stop_timeout_ms for nothing.
                        self.entry.logs.push(
                            "supervisor",
                            format!("restart asked by {actor} is satisfied by the instance started since"),
                        );
                    }
                    Some((Control::Stop { actor }, _)) => {
                        self.stop_instance(&mut inst).await;
                        self.transition(ServiceState::Stopped, &format!("stopped by {actor}"), &actor).await;
                        return Next::Idle;
                    }
                    Some((Control::Restart { actor }, _)) => {
                        let why = format!("restarted by {actor}");
                        self.transition(ServiceState::Restarting, &why, &actor).await;
                        if let Instance::Docker(w) = &mut inst {
                            w.stop_following();
                            if let Some(d) = &self.docker {
                                if let Err(e) = d.restart(&w.container, Duration::from_millis(cfg.stop_timeout_ms)).await {
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
                            &format!("{}; left running (detach = true)", self.entry.quit_reason("Sparklio Desk quit")), Some(SUPERVISOR)).await;
                    } else {
                        self.stop_instance(&mut inst).await;
                        let why = self.entry.quit_reason("Sparklio Desk is shutting down");
                        self.transition(ServiceState::Stopped, &why, SUPERVISOR).await;
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
            Instance::Docker(w) => w.stop_following(),
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
            Instance::Docker(w) => {
                // Our own stop: its die is not news.
                w.stop_following();
                if let Some(d) = &self.docker {
                    if let Err(e) = d.stop(&w.container, timeout).await {
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
        self.hold(RecoveryPoint::Crashed).await;
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
        self.hold(RecoveryPoint::Backoff).await;
        Next::Wait {
            delay: Duration::from_millis(delay),
            then: format!("backoff of {delay} ms elapsed"),
        }
    }
}

/// Resolves when the instance has ended (never for an external service).
async fn exited(docker: Option<&DockerClient>, entry: &ServiceEntry, inst: &mut Instance) -> Exit {
    match inst {
        Instance::Process(h) => {
            let (code, reason) = describe_exit(h.wait_exit().await);
            Exit::Crash {
                code: code.map(i64::from),
                reason,
            }
        }
        Instance::Docker(w) => {
            let Some(docker) = docker else {
                return std::future::pending().await;
            };
            watch_container(docker, entry, w).await
        }
        Instance::External => std::future::pending().await,
    }
}

/// Whether a recheck found the same thing blocking the service: the same words, or the
/// engine still not running (whatever the socket error says this time).
fn same_blocker(before: &str, now: &str) -> bool {
    const DOCKER_DOWN: &str = "Docker is not running";
    before == now || (before.starts_with(DOCKER_DOWN) && now.starts_with(DOCKER_DOWN))
}

fn launch_error(e: DockerError) -> LaunchError {
    match e {
        DockerError::Unavailable(m) => LaunchError::Unavailable(m),
        DockerError::NoSuchContainer(m) => LaunchError::Fatal(m),
        DockerError::Other(m) => LaunchError::Failed(m),
    }
}

fn container_view(info: &ContainerInfo, events_followed: bool) -> super::ContainerView {
    super::ContainerView {
        image: info.image.clone(),
        health: info.health.clone(),
        restart_count: info.restart_count,
        events_followed,
    }
}

/// Until the container ends or the engine goes: the engine's events (instant) with a slow
/// poll as a safety net. Every piece of state lives in `w`, so this future can be dropped
/// and recreated by the caller's `select!` at any await without losing what was seen.
async fn watch_container(docker: &DockerClient, entry: &ServiceEntry, w: &mut DockerWatch) -> Exit {
    loop {
        if let Some(why) = w.stream_ended.clone() {
            let pinged = docker.ping().await;
            w.stream_ended = None;
            match pinged {
                Err(DockerError::Unavailable(m)) => return Exit::EngineGone(m),
                _ => {
                    tracing::debug!(container = %w.container, "event stream ended ({why}); following again");
                    if let Some((code, _)) = w.pending_die {
                        return crash_verdict(docker, w, code).await;
                    }
                    // Follow again; the poll covers the gap. A stream that ended at once
                    // (the engine failing /events while it answers its ping) is asked for
                    // again after a pause, not in a tight loop.
                    w.next_poll = Instant::now();
                    let pause = if w.subscribed_at.elapsed() < DOCKER_POLL {
                        DOCKER_POLL
                    } else {
                        Duration::ZERO
                    };
                    w.subscribed_at = Instant::now() + pause;
                    let (tx, name, d) = (w.events_tx.clone(), w.container.clone(), docker.clone());
                    w.events_task = Some(tokio::spawn(async move {
                        tokio::time::sleep(pause).await;
                        d.follow_events(name, None, tx).await;
                    }));
                }
            }
        }
        let verdict_at = w.pending_die.map(|(_, at)| at);
        tokio::select! {
            ev = w.events.recv() => {
                // The sender lives in `w`: the channel never closes under us.
                let Some(ev) = ev else { continue };
                match ev {
                    ContainerEvent::Start => {}
                    ContainerEvent::Stop => {}
                    ContainerEvent::Kill { signal } => {
                        if matches!(signal.as_deref(), Some("15" | "SIGTERM" | "TERM")) {
                            w.stop_asked = true;
                        } else {
                            w.killed_with = signal;
                        }
                    }
                    ContainerEvent::Oom => {
                        w.oom = true;
                        if let Some((code, _)) = w.pending_die {
                            return crash_verdict(docker, w, code).await;
                        }
                    }
                    ContainerEvent::Health(h) => entry.update(|s| {
                        if let Some(d) = s.docker.as_mut() {
                            d.health = Some(h);
                        }
                    }),
                    ContainerEvent::Die { exit_code } => {
                        if w.stop_asked {
                            // `docker stop` from outside, or the engine shutting down (it
                            // stops containers before it goes): which one shows shortly.
                            w.pending_die = Some((exit_code, Instant::now() + OUTSIDE_STOP_GRACE));
                        } else if exit_code == Some(137) && w.killed_with.is_none() && !w.oom {
                            w.pending_die = Some((exit_code, Instant::now() + OOM_GRACE));
                        } else {
                            return crash_verdict(docker, w, exit_code).await;
                        }
                    }
                    ContainerEvent::Ended(why) => {
                        w.events_task = None;
                        w.stream_ended = Some(why);
                    }
                    ContainerEvent::Unsupported(why) => {
                        tracing::info!(container = %w.container, "not following the engine's events: {why}; polling every {} ms", DOCKER_POLL.as_millis());
                        w.events_task = None;
                        w.poll = DOCKER_POLL;
                        w.next_poll = Instant::now().min(w.next_poll);
                        entry.update(|s| {
                            if let Some(d) = s.docker.as_mut() {
                                d.events_followed = false;
                            }
                        });
                    }
                }
            }
            _ = tokio::time::sleep_until(verdict_at.unwrap_or_else(Instant::now)), if verdict_at.is_some() => {
                let code = w.pending_die.and_then(|(c, _)| c);
                return crash_verdict(docker, w, code).await;
            }
            // A fixed deadline: select! recreating this future must not postpone it.
            _ = tokio::time::sleep_until(w.next_poll) => {
                w.next_poll = Instant::now() + w.poll;
                match docker.inspect(&w.container).await {
                    Ok(info) if info.running => {
                        let followed = w.events_task.is_some();
                        entry.update(|s| s.docker = Some(container_view(&info, followed)));
                    }
                    // Dead as the engine said; its verdict waits for what may follow.
                    Ok(_) if w.pending_die.is_some() => {}
                    Ok(info) => {
                        return Exit::Crash {
                            code: info.exit_code,
                            reason: info.exit_reason(&w.container, w.oom),
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
            }
        }
    }
}

/// The container died: the reason from the engine (exit code, OOM kill, error), or the
/// engine itself going away.
async fn crash_verdict(docker: &DockerClient, w: &mut DockerWatch, code: Option<i64>) -> Exit {
    // The die stays pending, due now, until the engine has answered: the caller's select!
    // drops this future when a probe's timer fires (every 50 ms while a pending die holds
    // the probes back), and the next watch must give the verdict again, not lose the die
    // to the slow safety poll (and its "stopped from outside" to a bare exit code).
    w.pending_die = Some((code, Instant::now()));
    let inspected = docker.inspect(&w.container).await;
    w.pending_die = None;
    match inspected {
        Err(DockerError::Unavailable(m)) => Exit::EngineGone(m),
        Err(e) => Exit::Crash {
            code,
            reason: format!(
                "container {} died (exit code {}); {}",
                w.container,
                code.map_or("unknown".into(), |c| c.to_string()),
                e.message()
            ),
        },
        Ok(info) if info.running => {
            // Already running again (the engine's own restart policy): still a crash.
            let mut reason = format!(
                "container {} exited with code {} (the engine restarted it)",
                w.container,
                code.map_or("unknown".into(), |c| c.to_string())
            );
            if w.oom {
                reason = format!(
                    "container {} was killed for running out of memory (the engine restarted it)",
                    w.container
                );
            }
            Exit::Crash { code, reason }
        }
        Ok(info) => {
            let mut reason = info.exit_reason(&w.container, w.oom);
            if w.stop_asked && !(info.oom_killed || w.oom) {
                reason = format!("{reason}: stopped from outside Sparklio Desk (docker stop)");
            } else if let Some(sig) = &w.killed_with {
                if !(info.oom_killed || w.oom) {
                    reason = format!(
                        "{reason}: killed from outside Sparklio Desk (docker kill, signal {sig})"
                    );
                }
            }
            Exit::Crash {
                code: info.exit_code.or(code),
                reason,
            }
        }
    }
}
