//! Docker containers through the Docker Engine API (bollard: named pipe on Windows,
//! Unix socket elsewhere, or TCP). "Docker is not running" is its own outcome, never
//! counted as a crash of the container.

use super::logs::ServiceLogs;
use bollard::query_parameters::{
    InspectContainerOptions, LogsOptions, RestartContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Engine calls answer within this or count as "Docker is not running".
const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub enum DockerError {
    /// The engine cannot be reached (Docker Desktop not started, wrong docker_host).
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
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub running: bool,
    pub pid: Option<u32>,
    pub exit_code: Option<i64>,
    pub status: String,
    pub error: Option<String>,
}

/// A Docker Engine client; connecting never fails here, calls report the engine's state.
#[derive(Clone)]
pub struct DockerClient {
    docker: Result<Docker, String>,
    host: String,
}

impl DockerClient {
    /// `host` from `supervisor.docker_host`; `None` = the platform default / DOCKER_HOST.
    pub fn new(host: Option<&str>) -> Self {
        let (docker, shown) = match host {
            Some(h) => (Docker::connect_with_host(h), h.to_string()),
            None => (
                Docker::connect_with_defaults(),
                std::env::var("DOCKER_HOST").unwrap_or_else(|_| "the default Docker socket".into()),
            ),
        };
        Self {
            docker: docker.map_err(|e| e.to_string()),
            host: shown,
        }
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> DockerError {
        DockerError::Unavailable(format!(
            "Docker is not running (cannot reach the Docker engine at {}: {detail})",
            self.host
        ))
    }

    fn engine(&self) -> Result<&Docker, DockerError> {
        self.docker.as_ref().map_err(|e| self.unavailable(e))
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
            } => DockerError::Other(format!("Docker engine answered {status_code}: {message}")),
            other => self.unavailable(other),
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
            Err(_) => Err(self.unavailable(format!("no answer within {} s", limit.as_secs()))),
        }
    }

    pub async fn inspect(&self, name: &str) -> Result<ContainerInfo, DockerError> {
        let d = self.engine()?;
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
        })
    }

    pub async fn start(&self, name: &str) -> Result<(), DockerError> {
        let d = self.engine()?;
        self.call(
            name,
            d.start_container(name, None::<StartContainerOptions>),
            ENGINE_TIMEOUT * 6,
        )
        .await
    }

    /// Stop with the engine's own graceful-then-kill after `timeout`.
    pub async fn stop(&self, name: &str, timeout: Duration) -> Result<(), DockerError> {
        let d = self.engine()?;
        let t = timeout.as_secs().max(1) as i32;
        let opts = StopContainerOptions {
            t: Some(t),
            signal: None,
        };
        self.call(
            name,
            d.stop_container(name, Some(opts)),
            timeout + ENGINE_TIMEOUT,
        )
        .await
    }

    pub async fn restart(&self, name: &str, timeout: Duration) -> Result<(), DockerError> {
        let d = self.engine()?;
        let opts = RestartContainerOptions {
            t: Some(timeout.as_secs().max(1) as i32),
            signal: None,
        };
        self.call(
            name,
            d.restart_container(name, Some(opts)),
            timeout + ENGINE_TIMEOUT * 6,
        )
        .await
    }

    /// Follow the container's output into `logs` (the last `tail` lines first) until the
    /// stream ends (container stopped or engine gone).
    pub async fn follow_logs(&self, name: String, tail: usize, logs: Arc<ServiceLogs>) {
        let Ok(d) = self.engine() else { return };
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
}
