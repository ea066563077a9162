//! Child processes done right: each service runs in its own process group (Unix) or
//! Job Object (Windows), so stopping it ends the whole tree (ComfyUI and Ollama both
//! start children). Stop is graceful first, then a kill after `stop_timeout_ms`:
//! - Unix: SIGTERM to the group, SIGKILL to the group at the deadline;
//! - Windows, a ladder: CTRL_BREAK to the child's process group (every child is started
//!   with `CREATE_NEW_PROCESS_GROUP`; on our console when we have one, else on its own
//!   hidden console, see `platform::windows`), then at half the timeout WM_CLOSE to the
//!   tree's visible windows (GUI programs), then `TerminateJobObject` at the deadline. A
//!   step that cannot be delivered is not waited for; each step is written to the log.

use super::logs::{pump, LogFileSpec, ServiceLogs};
use crate::config::ServiceConfig;
use process_wrap::tokio::*;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// A running service process and its tree.
pub struct ProcessHandle {
    child: Box<dyn ChildWrapper>,
    pub pid: u32,
    exited: Option<ExitStatus>,
    /// Windows: where the stop ladder's steps are written (stream `supervisor`).
    #[cfg(windows)]
    logs: Arc<ServiceLogs>,
    /// Windows: the child was started on our console (else on its own hidden one).
    #[cfg(windows)]
    on_our_console: bool,
}

impl std::fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.pid)
            .field("exited", &self.exited)
            .finish_non_exhaustive()
    }
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The tree ended within the stop timeout after the polite request.
    Graceful,
    /// It had to be killed.
    Killed,
}

/// Start the service's command. Output goes to `logs` line by line, or straight to
/// `detached_log` for a detached service (whose pipes must survive our exit).
pub fn spawn(
    cfg: &ServiceConfig,
    logs: &Arc<ServiceLogs>,
    detached_log: Option<&LogFileSpec>,
) -> std::io::Result<ProcessHandle> {
    let program = cfg.command.as_deref().unwrap_or_default();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&cfg.args).envs(&cfg.env).stdin(Stdio::null());
    if let Some(dir) = &cfg.cwd {
        cmd.current_dir(dir);
    }
    match detached_log {
        Some(spec) => {
            if let Some(dir) = spec.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // The child writes it with nobody reading: bounded at each start (a long
            // run still grows it, but not across restarts for ever).
            if std::fs::metadata(&spec.path).is_ok_and(|m| m.len() >= spec.max_bytes) {
                if let Err(e) = super::logs::shift_files(spec) {
                    tracing::warn!(path = %spec.path.display(), "cannot rotate the detached log: {e}");
                }
            }
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&spec.path)?;
            let err = out.try_clone()?;
            cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        }
        None => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    let mut wrap = CommandWrap::from(cmd);
    #[cfg(unix)]
    wrap.wrap(ProcessGroup::leader());
    // Until the child exists: no console attachment of `ctrl_break` meanwhile.
    #[cfg(windows)]
    let console = crate::platform::windows::console_guard();
    #[cfg(windows)]
    let on_our_console = {
        use windows::Win32::System::Threading::{CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW};
        wrap.wrap(JobObject);
        // Closing the job (our exit, even a crash) ends the tree, unless detached.
        if detached_log.is_none() {
            wrap.wrap(KillOnDrop);
        }
        // Own process group (group id = pid) so CTRL_BREAK reaches this tree only. Share
        // our console when we have one; else (tray, Windows service) or when detached (it
        // must outlive our console) a console of its own, hidden.
        let on_our_console = detached_log.is_none() && crate::platform::windows::has_console();
        let flags = if on_our_console {
            CREATE_NEW_PROCESS_GROUP
        } else {
            CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
        };
        wrap.wrap(CreationFlags(flags));
        on_our_console
    };
    let mut child = wrap.spawn()?;
    #[cfg(windows)]
    drop(console);
    let pid = child.id().unwrap_or_default();
    if let Some(out) = child.stdout().take() {
        tokio::spawn(pump(out, "stdout", logs.clone()));
    }
    if let Some(err) = child.stderr().take() {
        tokio::spawn(pump(err, "stderr", logs.clone()));
    }
    Ok(ProcessHandle {
        child,
        pid,
        exited: None,
        #[cfg(windows)]
        logs: logs.clone(),
        #[cfg(windows)]
        on_our_console,
    })
}

impl ProcessHandle {
    /// Resolves when the main process exits (cancel-safe: use it in `select!`).
    /// Only the leader is awaited: a crash must be seen at once even if a child lingers.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        if let Some(s) = self.exited {
            return s;
        }
        let status = match self.child.inner_mut().wait().await {
            Ok(s) => s,
            // Waiting failed (should not happen): treat as gone so the loop moves on.
            Err(_) => exit_status_unknown(),
        };
        self.exited = Some(status);
        status
    }

    /// End what is left of the tree after the main process exited (orphans would hold
    /// the port and block the restart).
    pub fn kill_leftovers(&mut self) {
        let _ = self.child.start_kill();
    }

    /// Graceful stop, then kill after `timeout`. Returns once the main process is gone.
    pub async fn stop(&mut self, timeout: Duration) -> StopOutcome {
        #[cfg(unix)]
        {
            let _ = self.child.signal(nix::sys::signal::Signal::SIGTERM as i32);
            let deadline = tokio::time::Instant::now() + timeout;
            let leader_gone = tokio::time::timeout_at(deadline, self.wait_exit())
                .await
                .is_ok();
            if leader_gone && self.group_gone_by(deadline).await {
                return StopOutcome::Graceful;
            }
            self.kill_leftovers();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.wait_exit()).await;
            StopOutcome::Killed
        }
        #[cfg(windows)]
        {
            self.stop_ladder(timeout).await
        }
        #[cfg(not(any(unix, windows)))]
        {
            let _ = timeout;
            self.kill_leftovers();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.wait_exit()).await;
            StopOutcome::Killed
        }
    }

    /// Windows: CTRL_BREAK; WM_CLOSE at half the timeout (at once when the break could not be
    /// delivered); TerminateJobObject at the deadline (at once when neither could be).
    #[cfg(windows)]
    async fn stop_ladder(&mut self, timeout: Duration) -> StopOutcome {
        use crate::platform::windows as win;
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        let (pid, shared) = (self.pid, self.on_our_console);
        let step = tokio::task::spawn_blocking(move || win::ctrl_break(pid, shared))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let break_sent = step.is_ok();
        self.logs.push(
            "supervisor",
            match step {
                Ok(how) => format!("stop: {how}"),
                Err(why) => format!("stop: no CTRL_BREAK ({why})"),
            },
        );
        if break_sent && self.tree_gone_by(start + timeout / 2).await {
            return StopOutcome::Graceful;
        }
        let mut tree = win::descendants(pid);
        tree.push(pid);
        let closed = tokio::task::spawn_blocking(move || win::close_windows(&tree))
            .await
            .unwrap_or(0);
        self.logs.push(
            "supervisor",
            format!(
                "stop: {}WM_CLOSE posted to {closed} window(s)",
                if break_sent {
                    format!("still running after {} ms; ", timeout.as_millis() / 2)
                } else {
                    String::new()
                }
            ),
        );
        if (break_sent || closed > 0) && self.tree_gone_by(deadline).await {
            return StopOutcome::Graceful;
        }
        let left = tokio::task::spawn_blocking(move || win::descendants_named(pid))
            .await
            .unwrap_or_default();
        let leader = if self.exited.is_some() {
            "exited"
        } else {
            "running"
        };
        self.logs.push(
            "supervisor",
            format!(
                "stop: {} the main process is {leader}; descendants left: {}; terminating the job",
                if break_sent || closed > 0 {
                    "at the deadline"
                } else {
                    "nothing could be asked politely:"
                },
                if left.is_empty() {
                    "none".to_string()
                } else {
                    left.iter()
                        .map(|(p, n)| format!("{n} ({p})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        );
        self.kill_leftovers();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.wait_exit()).await;
        StopOutcome::Killed
    }

    /// Windows: whether the leader and all its descendants have exited by `deadline`.
    #[cfg(windows)]
    async fn tree_gone_by(&mut self, deadline: tokio::time::Instant) -> bool {
        if tokio::time::timeout_at(deadline, self.wait_exit())
            .await
            .is_err()
        {
            return false;
        }
        loop {
            let pid = self.pid;
            let left = tokio::task::spawn_blocking(move || {
                crate::platform::windows::descendants(pid).len()
            })
            .await
            .unwrap_or(0);
            if left == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether every member of the group has exited by `deadline` (zombies count as gone).
    #[cfg(unix)]
    async fn group_gone_by(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            if !group_has_live_members(self.pid) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Does process group `pgid` still have a running (non-zombie) member?
#[cfg(unix)]
fn group_has_live_members(pgid: u32) -> bool {
    use nix::sys::signal::killpg;
    use nix::unistd::Pid;
    if killpg(Pid::from_raw(pgid as i32), None).is_err() {
        return false;
    }
    // killpg succeeds while zombies remain (a reaper may be slow, e.g. in containers
    // where PID 1 does not reap); on Linux look closer.
    #[cfg(target_os = "linux")]
    {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return true;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((state, pgrp)) = proc_state_and_group(pid) {
                if pgrp == pgid && state != 'Z' && state != 'X' {
                    return true;
                }
            }
        }
        false
    }
    #[cfg(not(target_os = "linux"))]
    true
}

/// (state letter, process group) from `/proc/<pid>/stat`.
#[cfg(target_os = "linux")]
pub fn proc_state_and_group(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(unix)]
fn exit_status_unknown() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(255 << 8)
}

#[cfg(windows)]
fn exit_status_unknown() -> ExitStatus {
    use std::os::windows::process::ExitStatusExt;
    ExitStatus::from_raw(255)
}

/// "exit code 1", "killed by signal 9 (SIGKILL)".
pub fn describe_exit(status: ExitStatus) -> (Option<i32>, String) {
    if let Some(code) = status.code() {
        return (Some(code), format!("exit code {code}"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map_or_else(|_| "unknown".into(), |s| s.as_str().to_string());
            return (None, format!("killed by signal {sig} ({name})"));
        }
    }
    (None, "exited".to_string())
}
