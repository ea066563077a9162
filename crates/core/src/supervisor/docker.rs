//! Docker containers through the Docker Engine API (bollard: named pipe on Windows,
//! Unix socket elsewhere, or TCP). "Docker is not running" is its own outcome, never
//! counted as a crash of the container: the engine unreachable, or answering 5xx (Docker
//! Desktop's named pipe is up while its engine starts or restarts, and answers 500).

use super::logs::ServiceLogs;
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, ListContainersOptionsBuilder, LogsOptions,
    RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Engine calls answer within this or count as "Docker is not running".
const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub enum DockerError {
    /// The engine cannot be reached (Docker Desktop not started, wrong docker_host), or
    /// answers 5xx (not ready: starting or restarting).
    Unavailable(String),
    NoSuchContainer(String),
    Other(String),
}

impl DockerError {
    pub fn message(&self) -> String {
        match self {
            DockerError::Unavailable(m)
            | DockerError::NoSuchContainer(m)
            | DockerError::Other(m) => m.clone(),
        }
    }
}

/// What `inspect` tells about a container.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerInfo {
    pub running: bool,
    pub pid: Option<u32>,
    pub exit_code: Option<i64>,
    pub status: String,
    pub error: Option<String>,
    /// The kernel's OOM killer ended it (`State.OOMKilled`).
    pub oom_killed: bool,
    /// The image it was created from, as the user named it (`Config.Image`).
    pub image: Option<String>,
    /// The container's own health check (`starting`, `healthy`, `unhealthy`), if it has one.
    pub health: Option<String>,
    /// Restarts done by the engine's own restart policy (`RestartCount`).
    pub restart_count: i64,
    /// Its memory limit in bytes (`HostConfig.Memory`; 0 = none).
    pub memory_limit: i64,
    /// When it was last started, in the engine's clock (RFC 3339).
    pub started_at: Option<String>,
}

impl ContainerInfo {
    /// Why it is not running, in words: exit code, OOM kill, the engine's own error.
    pub fn exit_reason(&self, container: &str, oom_event: bool) -> String {
        let mut reason = if self.oom_killed || oom_event {
            let limit = if self.memory_limit > 0 {
                format!(" (memory limit {} MiB)", self.memory_limit / (1024 * 1024))
            } else {
                String::new()
            };
            format!(
                "container {container} was killed for running out of memory{limit}, exit code {}",
                self.exit_code.unwrap_or(137)
            )
        } else {
            match self.exit_code {
                Some(c) => format!("container {container} exited with code {c}"),
                None => format!("container {container} is {}", self.status),
            }
        };
        if let Some(e) = &self.error {
            reason.push_str(&format!(" ({e})"));
        }
        reason
    }
}

/// What the engine's event stream says about a followed container.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerEvent {
    Start,
    /// A stop or kill was asked of the engine (`docker stop`, the engine shutting down).
    Kill {
        signal: Option<String>,
    },
    Die {
        exit_code: Option<i64>,
    },
    /// The engine finished a stop it was asked for (`docker stop`, engine shutdown).
    Stop,
    Oom,
    /// `health_status: healthy` and so on.
    Health(String),
    /// The stream ended: the engine went away (or closed the connection).
    Ended(String),
    /// The engine does not offer an event stream (an API double, an old proxy): poll.
    Unsupported(String),
}

/// A Docker Engine client; connecting never fails here, calls report the engine's state.
#[derive(Clone)]
pub struct DockerClient {
    /// Connected on first use and again until it works: bollard refuses to make a Unix
    /// socket client while the socket file is missing (the engine not started yet), and
    /// the engine may well start after Sparklio Desk.
    docker: Arc<std::sync::Mutex<Option<Docker>>>,
    /// `supervisor.docker_host`; `None`: the platform default / DOCKER_HOST.
    configured: Option<String>,
    host: String,
    /// The API version was agreed with the engine (bollard speaks a newer one than older
    /// engines such as Debian's 20.10 accept). Cleared when the engine goes away.
    negotiated: Arc<AtomicBool>,
    /// Starts Docker Desktop when the engine is not running (`docker_start_desktop`).
    desktop: Option<Arc<DesktopStarter>>,
}

/// Docker Desktop's standard install path on Windows.
pub const DESKTOP_DEFAULT_PATH: &str = r"C:\Program Files\Docker\Docker\Docker Desktop.exe";

/// Starts Docker Desktop once per run when its engine cannot be reached ("Docker Desktop
/// was not running" was a real outage), then waits for the engine to answer.
pub struct DesktopStarter {
    program: std::path::PathBuf,
    wait: Duration,
    /// `None` until tried; then what happened (shared by every docker service).
    outcome: tokio::sync::Mutex<Option<Result<String, String>>>,
}

impl DesktopStarter {
    /// From `[supervisor]`: `None` unless `docker_start_desktop = true`. The default path is
    /// Windows' standard one; elsewhere `docker_desktop_path` names the program.
    pub fn from_config(c: &crate::config::SupervisorConfig) -> Option<Self> {
        if !c.docker_start_desktop {
            return None;
        }
        let program = c
            .docker_desktop_path
            .clone()
            .unwrap_or_else(|| DESKTOP_DEFAULT_PATH.into());
        Some(Self::new(
            program,
            Duration::from_secs(c.docker_desktop_wait_s),
        ))
    }

    pub fn new(program: std::path::PathBuf, wait: Duration) -> Self {
        Self {
            program,
            wait,
            outcome: tokio::sync::Mutex::new(None),
        }
    }

    pub fn program(&self) -> &std::path::Path {
        &self.program
    }

    pub fn wait(&self) -> Duration {
        self.wait
    }
}

impl DockerClient {
    /// `host` from `supervisor.docker_host`; `None` = the platform default / DOCKER_HOST.
    pub fn new(host: Option<&str>) -> Self {
        let shown = match host {
            Some(h) => h.to_string(),
            None => {
                std::env::var("DOCKER_HOST").unwrap_or_else(|_| "the default Docker socket".into())
            }
        };
        Self {
            docker: Arc::default(),
            configured: host.map(str::to_string),
            host: shown,
            negotiated: Arc::new(AtomicBool::new(false)),
            desktop: None,
        }
    }

    /// Start Docker Desktop with `starter` when the engine is found not running.
    pub fn with_desktop(mut self, starter: DesktopStarter) -> Self {
        self.desktop = Some(Arc::new(starter));
        self
    }

    /// Whether Docker Desktop would be started now (configured and not tried yet).
    pub fn desktop_untried(&self) -> Option<&DesktopStarter> {
        let d = self.desktop.as_deref()?;
        match d.outcome.try_lock() {
            Ok(outcome) => outcome.is_none().then_some(d),
            // Another service is starting it right now: wait with it.
            Err(_) => Some(d),
        }
    }

    /// Start Docker Desktop (once per run; later calls answer the first outcome) and wait
    /// until the engine answers. `Ok` says how long it took.
    pub async fn start_desktop(&self) -> Result<String, String> {
        let Some(d) = self.desktop.clone() else {
            return Err("docker_start_desktop is off".into());
        };
        let mut outcome = d.outcome.lock().await;
        if let Some(done) = outcome.as_ref() {
            return done.clone();
        }
        let started = std::time::Instant::now();
        let result = match std::process::Command::new(&d.program)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Err(e) => Err(format!(
                "cannot start Docker Desktop ({}): {e}",
                d.program.display()
            )),
            Ok(child) => {
                // Docker Desktop stays up on its own; reap the launcher when it returns.
                std::thread::spawn(move || {
                    let mut child = child;
                    let _ = child.wait();
                });
                let deadline = tokio::time::Instant::now() + d.wait;
                loop {
                    if self.ping().await.is_ok() {
                        break Ok(format!(
                            "started Docker Desktop ({}); its engine answered after {:.1} s",
                            d.program.display(),
                            started.elapsed().as_secs_f64()
                        ));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        break Err(format!(
                            "started Docker Desktop ({}) but its engine did not answer within {} s",
                            d.program.display(),
                            d.wait.as_secs()
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        };
        *outcome = Some(result.clone());
        result
    }

    /// Where the engine is looked for (for messages).
    pub fn host(&self) -> &str {
        &self.host
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> DockerError {
        DockerError::Unavailable(format!(
            "Docker is not running (cannot reach the Docker engine at {}: {detail})",
            self.host
        ))
    }

    /// The engine answered 5xx: up enough to answer (Docker Desktop's named pipe), not
    /// enough to work. "Not running" like an unreachable engine: rechecked, never a crash.
    fn not_ready(&self, status: u16, message: &str) -> DockerError {
        // Agree on the version again once it answers: a restart may be an upgrade.
        self.negotiated.store(false, Ordering::Relaxed);
        let said = if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        };
        DockerError::Unavailable(format!(
            "Docker is not running (the Docker engine at {} answered {status}, as Docker \
             Desktop does while its engine starts or restarts{said})",
            self.host
        ))
    }

    /// The client, with the API version agreed with the engine on first use.
    async fn engine(&self) -> Result<Docker, DockerError> {
        let d = self.connected()?;
        if self.negotiated.load(Ordering::Relaxed) {
            return Ok(d);
        }
        // Versions are shared between clones of the bollard client.
        match tokio::time::timeout(ENGINE_TIMEOUT, d.clone().negotiate_version()).await {
            Ok(Ok(_)) => {}
            // An engine (or proxy) without /version: keep bollard's default version.
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => {}
            // Docker Desktop answers 500 while its engine starts or restarts: not ready,
            // and nothing agreed (the version is asked again next time).
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            })) if status_code >= 500 => return Err(self.not_ready(status_code, &message)),
            // Another refusal (a proxy denying /version): use the default for this call
            // only, and ask again next time.
            Ok(Err(bollard::errors::Error::DockerResponseServerError { .. })) => return Ok(d),
            Ok(Err(e)) => {
                self.forget_connection();
                return Err(self.unavailable(e));
            }
            Err(_) => {
                return Err(
                    self.unavailable(format!("no answer within {} s", ENGINE_TIMEOUT.as_secs()))
                )
            }
        }
        self.negotiated.store(true, Ordering::Relaxed);
        Ok(d)
    }

    /// The bollard client, made now if it was not yet (or no longer) made.
    fn connected(&self) -> Result<Docker, DockerError> {
        let mut slot = self
            .docker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let made = match &self.configured {
            Some(h) => Docker::connect_with_host(h),
            None => Docker::connect_with_defaults(),
        };
        let d = made.map_err(|e| self.unavailable(e))?;
        *slot = Some(d.clone());
        Ok(d)
    }

    /// The engine went away: make a new client (and agree on a version) next time.
    fn forget_connection(&self) {
        self.negotiated.store(false, Ordering::Relaxed);
        *self
            .docker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn classify(&self, container: &str, e: bollard::errors::Error) -> DockerError {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code: 404, ..
            } => DockerError::NoSuchContainer(format!(
                "container {container:?} does not exist (check `docker ps -a`)"
            )),
            E::DockerResponseServerError {
                status_code,
                message,
            } if status_code >= 500 => self.not_ready(status_code, &message),
            E::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Other(format!("Docker engine answered {status_code}: {message}")),
            other => {
                self.forget_connection();
                self.unavailable(other)
            }
        }
    }

    async fn call<T>(
        &self,
        container: &str,
        fut: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
        limit: Duration,
    ) -> Result<T, DockerError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(|e| self.classify(container, e)),
            Err(_) => {
                self.forget_connection();
                Err(self.unavailable(format!("no answer within {} s", limit.as_secs())))
            }
        }
    }

    /// An action (start, stop, restart). A working engine also refuses one with a 5xx
    /// (port already allocated, an OCI runtime error): a crash with the engine's words
    /// when it answers its ping; "not running" when it does not.
    async fn act(
        &self,
        container: &str,
        fut: impl std::future::Future<Output = Result<(), bollard::errors::Error>>,
        limit: Duration,
    ) -> Result<(), DockerError> {
        let refused = match tokio::time::timeout(limit, fut).await {
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            })) if status_code >= 500 => (status_code, message),
            Ok(r) => return r.map_err(|e| self.classify(container, e)),
            Err(_) => {
                self.forget_connection();
                return Err(self.unavailable(format!("no answer within {} s", limit.as_secs())));
            }
        };
        match self.ping().await {
            Err(e @ DockerError::Unavailable(_)) => Err(e),
            // A 404 from a proxy without /_ping still answers.
            _ => Err(DockerError::Other(format!(
                "Docker engine answered {}: {}",
                refused.0, refused.1
            ))),
        }
    }

    /// Whether the engine answers at all (`/_ping`).
    pub async fn ping(&self) -> Result<(), DockerError> {
        let d = self.engine().await?;
        self.call("", d.ping(), ENGINE_TIMEOUT).await.map(|_| ())
    }

    /// Every container (running or not) whose image starts with `image`: name, image,
    /// state and the host port published for `private_port`.
    pub async fn containers_of(
        &self,
        image: &str,
        private_port: u16,
    ) -> Result<Vec<(String, String, String, Option<u16>)>, DockerError> {
        let d = self.engine().await?;
        let all = self
            .call(
                "",
                d.list_containers(Some(ListContainersOptionsBuilder::new().all(true).build())),
                ENGINE_TIMEOUT,
            )
            .await?;
        Ok(all
            .into_iter()
            .filter_map(|c| {
                let img = c.image.clone().unwrap_or_default();
                if !img.starts_with(image) {
                    return None;
                }
                let name = c
                    .names
                    .as_ref()?
                    .first()?
                    .trim_start_matches('/')
                    .to_string();
                let port = c
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.private_port == private_port)
                    .and_then(|p| p.public_port);
                let state = c.state.map_or_else(|| "unknown".into(), |s| s.to_string());
                Some((name, img, state, port))
            })
            .collect())
    }

    pub async fn inspect(&self, name: &str) -> Result<ContainerInfo, DockerError> {
        let d = self.engine().await?;
        let info = self
            .call(
                name,
                d.inspect_container(name, None::<InspectContainerOptions>),
                ENGINE_TIMEOUT,
            )
            .await?;
        let state = info.state.unwrap_or_default();
        Ok(ContainerInfo {
            running: state.running.unwrap_or(false),
            pid: state.pid.filter(|p| *p > 0).map(|p| p as u32),
            exit_code: state.exit_code,
            status: state
                .status
                .map_or_else(|| "unknown".into(), |s| s.to_string()),
            error: state.error.filter(|e| !e.is_empty()),
            oom_killed: state.oom_killed.unwrap_or(false),
            image: info
                .config
                .and_then(|c| c.image)
                .or(info.image)
                .filter(|i| !i.is_empty()),
            health: state
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
            restart_count: info.restart_count.unwrap_or(0),
            memory_limit: info.host_config.and_then(|h| h.memory).unwrap_or(0),
            started_at: state.started_at.filter(|t| !t.starts_with("0001-01-01")),
        })
    }

    pub async fn start(&self, name: &str) -> Result<(), DockerError> {
        let d = self.engine().await?;
        self.act(
            name,
            d.start_container(name, None::<StartContainerOptions>),
            ENGINE_TIMEOUT * 6,
        )
        .await
    }

    /// Stop with the engine's own graceful-then-kill after `timeout`.
    pub async fn stop(&self, name: &str, timeout: Duration) -> Result<(), DockerError> {
        let d = self.engine().await?;
        let opts = StopContainerOptions {
            t: Some(stop_seconds(timeout)),
            signal: None,
        };
        self.act(
            name,
            d.stop_container(name, Some(opts)),
            timeout + ENGINE_TIMEOUT,
        )
        .await
    }

    pub async fn restart(&self, name: &str, timeout: Duration) -> Result<(), DockerError> {
        let d = self.engine().await?;
        let opts = RestartContainerOptions {
            t: Some(stop_seconds(timeout)),
            signal: None,
        };
        self.act(
            name,
            d.restart_container(name, Some(opts)),
            timeout + ENGINE_TIMEOUT * 6,
        )
        .await
    }

    /// Follow the container's output into `logs` (the last `tail` lines first) until the
    /// stream ends (container stopped or engine gone).
    pub async fn follow_logs(&self, name: String, tail: usize, logs: Arc<ServiceLogs>) {
        let Ok(d) = self.engine().await else { return };
        let opts = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        let mut stream = d.logs(&name, Some(opts));
        while let Some(item) = stream.next().await {
            match item {
                Ok(out) => {
                    let stream_name = match out {
                        bollard::container::LogOutput::StdErr { .. } => "stderr",
                        _ => "stdout",
                    };
                    for line in out.to_string().lines() {
                        logs.push(stream_name, line.to_string());
                    }
                }
                Err(_) => break,
            }
        }
    }

    /// Follow the engine's event stream for one container (start, kill, die, stop, oom,
    /// health_status) into `tx` until the stream ends, which is sent as `Ended`.
    /// `since` (the container's `StartedAt`, the engine's clock) replays what happened
    /// between its start and the subscription, so a death in that gap is not missed.
    pub async fn follow_events(
        &self,
        container: String,
        since: Option<String>,
        tx: mpsc::UnboundedSender<ContainerEvent>,
    ) {
        let d = match self.engine().await {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.send(ContainerEvent::Ended(e.message()));
                return;
            }
        };
        let mut filters = HashMap::new();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        filters.insert("container".to_string(), vec![container.clone()]);
        filters.insert(
            "event".to_string(),
            ["start", "kill", "die", "stop", "oom", "health_status"]
                .map(String::from)
                .to_vec(),
        );
        let opts = EventsOptions {
            since: since.as_deref().and_then(engine_timestamp),
            until: None,
            filters: Some(filters),
        };
        let mut stream = d.events(Some(opts));
        while let Some(item) = stream.next().await {
            let msg = match item {
                Ok(msg) => msg,
                // A 5xx is the engine not ready (Docker Desktop restarting): it ended,
                // and the watcher asks the engine what became of it. Only a refusal
                // (404 from an old proxy, 403 from one that denies it) means "poll".
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code,
                    message,
                }) if status_code < 500 => {
                    let _ = tx.send(ContainerEvent::Unsupported(format!(
                        "the engine answered {status_code} to /events: {message}"
                    )));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(ContainerEvent::Ended(e.to_string()));
                    return;
                }
            };
            let attrs = msg.actor.and_then(|a| a.attributes).unwrap_or_default();
            let action = msg.action.unwrap_or_default();
            let event = match action.as_str() {
                "start" => ContainerEvent::Start,
                "kill" => ContainerEvent::Kill {
                    signal: attrs.get("signal").cloned(),
                },
                "die" => ContainerEvent::Die {
                    exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
                },
                "stop" => ContainerEvent::Stop,
                "oom" => ContainerEvent::Oom,
                a => match a.strip_prefix("health_status:") {
                    Some(h) => ContainerEvent::Health(h.trim().to_string()),
                    None => continue,
                },
            };
            if tx.send(event).is_err() {
                return;
            }
        }
        let _ = tx.send(ContainerEvent::Ended(
            "the engine closed its event stream".into(),
        ));
    }
}

/// Docker's stop timeout is whole seconds: round up, so a stop is never cut shorter than
/// `stop_timeout_ms` asks (at least 1 s).
pub fn stop_seconds(timeout: Duration) -> i32 {
    timeout
        .as_millis()
        .div_ceil(1000)
        .clamp(1, i32::MAX as u128) as i32
}

/// An RFC 3339 time as the engine's `since` parameter (`seconds.nanoseconds`).
fn engine_timestamp(rfc3339: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    Some(format!(
        "{}.{:09}",
        t.timestamp(),
        t.timestamp_subsec_nanos()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_timeout_rounds_up_to_whole_seconds() {
        assert_eq!(stop_seconds(Duration::from_millis(0)), 1);
        assert_eq!(stop_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(stop_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(stop_seconds(Duration::from_millis(10_000)), 10);
    }

    #[test]
    fn engine_times_become_since_parameters() {
        assert_eq!(
            engine_timestamp("2026-11-29T23:18:13.644592586Z").as_deref(),
            Some("1795994293.644592586")
        );
        assert_eq!(engine_timestamp("not a time"), None);
    }

    #[test]
    fn exit_reasons_name_oom_kills_and_codes() {
        let info = ContainerInfo {
            exit_code: Some(137),
            oom_killed: true,
            memory_limit: 8 * 1024 * 1024,
            ..Default::default()
        };
        assert_eq!(
            info.exit_reason("hog", false),
            "container hog was killed for running out of memory (memory limit 8 MiB), exit code 137"
        );
        let info = ContainerInfo {
            exit_code: Some(3),
            ..Default::default()
        };
        assert_eq!(
            info.exit_reason("svc", false),
            "container svc exited with code 3"
        );
        assert!(info.exit_reason("svc", true).contains("out of memory"));
    }
}
