//! System status for the dashboard: CPU, RAM, the models folder's disk and NVIDIA GPUs
//! (NVML, loaded at run time: a machine without an NVIDIA driver says so and carries on),
//! with a short in-memory history, plus CPU and memory of each supervised process tree.

mod cpu_times;
mod gpu;

use crate::config::SystemConfig;
use gpu::{GpuProbe, GpuSample};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sysinfo::{Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};
use tokio_util::sync::CancellationToken;

/// One reading.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub ts: String,
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub gpus: Vec<GpuSample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskStatus {
    pub path: PathBuf,
    pub mount_point: PathBuf,
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub used_percent: f64,
}

/// CPU and memory of one process tree.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ProcessUsage {
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    pub processes: u32,
}

#[derive(Clone, Copy)]
struct ProcRow {
    cpu: f32,
    memory: u64,
    parent: Option<u32>,
}

struct Sampler {
    /// `None` where sysinfo cannot read this OS (then CPU/RAM read as zero).
    system: Option<System>,
    gpu: GpuProbe,
    /// Windows: whole-machine CPU from the kernel's system times, not PDH (see cpu_times).
    #[cfg_attr(not(windows), allow(dead_code))]
    cpu_times: cpu_times::CpuTimes,
}

pub struct SystemMonitor {
    config: SystemConfig,
    data_dir: PathBuf,
    sampler: Arc<Mutex<Sampler>>,
    history: Mutex<VecDeque<Sample>>,
    processes: Mutex<HashMap<u32, ProcRow>>,
}

impl SystemMonitor {
    pub fn new(config: &SystemConfig, data_dir: &Path) -> Self {
        Self {
            config: config.clone(),
            data_dir: data_dir.to_path_buf(),
            sampler: Arc::new(Mutex::new(Sampler {
                system: System::new_with_specifics(RefreshKind::nothing()).ok(),
                gpu: GpuProbe::not_loaded(),
                cpu_times: cpu_times::CpuTimes::default(),
            })),
            history: Mutex::new(VecDeque::new()),
            processes: Mutex::new(HashMap::new()),
        }
    }

    fn capacity(&self) -> usize {
        (self.config.history_s * 1000 / self.config.sample_interval_ms.max(1)).max(1) as usize
    }

    /// Take one reading now (blocking: sysinfo and NVML calls).
    pub fn sample_now(&self) -> Sample {
        let mut s = self
            .sampler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.gpu.load_once();
        let gpus = s.gpu.sample();
        #[cfg(windows)]
        let windows_cpu = s.cpu_times.usage();
        let Some(system) = s.system.as_mut() else {
            return Sample {
                ts: crate::store::now_text(),
                cpu_percent: 0.0,
                memory_used_bytes: 0,
                memory_total_bytes: 0,
                gpus,
            };
        };
        // Not on Windows: sysinfo's CPU usage goes through PDH (see cpu_times).
        #[cfg(not(windows))]
        system.refresh_cpu_usage();
        system.refresh_memory();
        system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let rows: HashMap<u32, ProcRow> = system
            .processes()
            .iter()
            .map(|(pid, p)| {
                (
                    pid.as_u32(),
                    ProcRow {
                        cpu: p.cpu_usage(),
                        memory: p.memory(),
                        parent: p.parent().map(Pid::as_u32),
                    },
                )
            })
            .collect();
        *self
            .processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rows;
        let sample = Sample {
            ts: crate::store::now_text(),
            #[cfg(not(windows))]
            cpu_percent: (system.global_cpu_usage() * 10.0).round() / 10.0,
            #[cfg(windows)]
            cpu_percent: windows_cpu,
            memory_used_bytes: system.used_memory(),
            memory_total_bytes: system.total_memory(),
            gpus,
        };
        drop(s);
        let cap = self.capacity();
        let mut h = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while h.len() >= cap {
            h.pop_front();
        }
        h.push_back(sample.clone());
        sample
    }

    /// Sample every `sample_interval_ms` until `shutdown`.
    pub fn spawn_sampler(self: &Arc<Self>, shutdown: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(me.config.sample_interval_ms));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => break,
                }
                let m = me.clone();
                if tokio::task::spawn_blocking(move || m.sample_now())
                    .await
                    .is_err()
                {
                    tracing::warn!("system sampling panicked");
                }
            }
        });
    }

    pub fn latest(&self) -> Option<Sample> {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .back()
            .cloned()
    }

    pub fn history(&self) -> Vec<Sample> {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// `{"available": bool, "reason": ...}` about NVIDIA GPUs.
    pub fn gpu_status(&self) -> (bool, Option<String>) {
        let s = self
            .sampler
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.gpu.status()
    }

    /// The disk holding the models folder (or the data folder when none is set).
    pub fn disk(&self) -> Option<DiskStatus> {
        let path = self
            .config
            .models_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.clone());
        let full = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let disks = Disks::new_with_refreshed_list().ok()?;
        let disk = disks
            .iter()
            .filter(|d| full.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())?;
        let total = disk.total_space();
        let available = disk.available_space();
        Some(DiskStatus {
            path,
            mount_point: disk.mount_point().to_path_buf(),
            total_bytes: total,
            available_bytes: available,
            used_percent: if total == 0 {
                0.0
            } else {
                (((total - available.min(total)) as f64 / total as f64) * 1000.0).round() / 10.0
            },
        })
    }

    /// CPU and memory of `pid` and all its descendants, from the latest reading.
    pub fn tree_usage(&self, pid: u32) -> Option<ProcessUsage> {
        let rows = self
            .processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let root = rows.get(&pid)?;
        let mut usage = ProcessUsage {
            cpu_percent: root.cpu,
            memory_bytes: root.memory,
            processes: 1,
        };
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (p, row) in rows.iter() {
            if let Some(parent) = row.parent {
                children.entry(parent).or_default().push(*p);
            }
        }
        let mut stack = children.get(&pid).cloned().unwrap_or_default();
        let mut guard = 0;
        while let Some(p) = stack.pop() {
            guard += 1;
            if guard > 10_000 {
                break;
            }
            if let Some(row) = rows.get(&p) {
                usage.cpu_percent += row.cpu;
                usage.memory_bytes += row.memory;
                usage.processes += 1;
            }
            if let Some(c) = children.get(&p) {
                stack.extend(c);
            }
        }
        usage.cpu_percent = (usage.cpu_percent * 10.0).round() / 10.0;
        Some(usage)
    }
}
