//! Children that outlive a crashed Desk. A `kill -9` of the Desk leaves the processes
//! it started running (Unix has no "die with your parent" that survives our threads),
//! and the next start would then find their ports "held by a process Sparklio Desk did
//! not start". So every started (not detached) process is written to
//! `<data_dir>/children.json` with its pid, start time and command; at start, a child of
//! the previous run is recognised by all three (a reused pid does not match) and its
//! process group is ended before anything else starts.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRecord {
    pub pid: u32,
    /// Seconds since the epoch at which the process started (as the OS reports it).
    pub start_time: u64,
    /// Its executable name, as the OS reports it.
    pub name: String,
}

pub struct ChildRegistry {
    path: PathBuf,
    children: Mutex<BTreeMap<String, ChildRecord>>,
}

fn process_info(pid: u32) -> Option<(u64, String)> {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    let mut sys = System::new().ok()?;
    let pid = Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing(),
    );
    sys.process(pid)
        .map(|p| (p.start_time(), p.name().to_string_lossy().into_owned()))
}

impl ChildRegistry {
    pub fn open(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("children.json"),
            children: Mutex::default(),
        }
    }

    fn save(&self, children: &BTreeMap<String, ChildRecord>) {
        let text = serde_json::to_vec_pretty(children).unwrap_or_default();
        let tmp = self.path.with_extension("tmp");
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(
                "cannot record started processes in {}: {e}",
                self.path.display()
            );
        }
    }

    /// End the children a previous run left behind; returns what was ended.
    pub fn reap_previous(&self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        let previous: BTreeMap<String, ChildRecord> =
            serde_json::from_str(&text).unwrap_or_default();
        let mut ended = Vec::new();
        for (service, rec) in previous {
            let Some((start_time, name)) = process_info(rec.pid) else {
                continue;
            };
            if start_time != rec.start_time || name != rec.name {
                continue; // the pid was reused by something else
            }
            if end_group(rec.pid) {
                ended.push(format!("{service} (pid {}, {})", rec.pid, rec.name));
            }
        }
        let _ = std::fs::remove_file(&self.path);
        ended
    }

    /// The service whose recorded process is `pid` or one of its ancestors (a service
    /// may listen from a child of the process the Desk started).
    pub fn service_holding(&self, pid: u32) -> Option<String> {
        use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
        let recorded: Vec<(String, u32)> = self
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(s, r)| (s.clone(), r.pid))
            .collect();
        if recorded.is_empty() {
            return None;
        }
        let mut sys = System::new().ok()?;
        sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing(),
        );
        let mut at = Some(Pid::from_u32(pid));
        // Bounded: a parent chain is short, and a cycle (pid reuse) must not spin.
        for _ in 0..32 {
            let here = at?;
            if let Some((service, _)) = recorded.iter().find(|(_, p)| Pid::from_u32(*p) == here) {
                return Some(service.clone());
            }
            at = sys.process(here).and_then(sysinfo::Process::parent);
        }
        None
    }

    /// Remember a started process of `service`.
    pub fn record(&self, service: &str, pid: u32) {
        let Some((start_time, name)) = process_info(pid) else {
            return;
        };
        let mut children = self
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        children.insert(
            service.to_string(),
            ChildRecord {
                pid,
                start_time,
                name,
            },
        );
        self.save(&children);
    }

    /// The process of `service` ended (or was stopped).
    pub fn forget(&self, service: &str) {
        let mut children = self
            .children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if children.remove(service).is_some() {
            self.save(&children);
        }
    }
}

/// End a process group led by `pid` (our children run in their own group).
#[cfg(unix)]
fn end_group(pid: u32) -> bool {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let group = Pid::from_raw(raw);
    if killpg(group, Signal::SIGTERM).is_err() {
        return false;
    }
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if killpg(group, None).is_err() {
            return true;
        }
    }
    killpg(group, Signal::SIGKILL).is_ok()
}

/// On Windows the Job Object ends our children when the Desk dies; a leftover is
/// ended by pid.
#[cfg(not(unix))]
fn end_group(pid: u32) -> bool {
    let Ok(sys) = sysinfo::System::new_all() else {
        return false;
    };
    sys.process(sysinfo::Pid::from_u32(pid))
        .is_some_and(sysinfo::Process::kill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_a_reused_pid_is_not_acted_on() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let (start, name) = process_info(me).unwrap();
        // Our own pid with another start time: a reused pid, never killed.
        let fake: BTreeMap<String, ChildRecord> = [(
            "svc".to_string(),
            ChildRecord {
                pid: me,
                start_time: start + 1,
                name,
            },
        )]
        .into();
        std::fs::write(
            dir.path().join("children.json"),
            serde_json::to_vec(&fake).unwrap(),
        )
        .unwrap();
        let reg = ChildRegistry::open(dir.path());
        assert!(reg.reap_previous().is_empty());
        assert!(!dir.path().join("children.json").exists());
    }
}
