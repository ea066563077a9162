//! NVIDIA GPUs through NVML, loaded at run time (nvml.dll / libnvidia-ml.so).

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::Nvml;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GpuSample {
    pub index: u32,
    pub name: String,
    pub utilization_percent: Option<u32>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
}

pub(super) struct GpuProbe {
    nvml: Option<Nvml>,
    /// Why there is no GPU reading (no driver, no device), once tried.
    reason: Option<String>,
    tried: bool,
}

impl GpuProbe {
    pub(super) fn not_loaded() -> Self {
        Self {
            nvml: None,
            reason: None,
            tried: false,
        }
    }

    /// Load NVML on first use; a missing library is a normal answer, not an error.
    pub(super) fn load_once(&mut self) {
        if self.tried {
            return;
        }
        self.tried = true;
        match Nvml::init() {
            Ok(n) => match n.device_count() {
                Ok(0) => self.reason = Some("NVML is loaded but reports no NVIDIA GPU".into()),
                Ok(_) => self.nvml = Some(n),
                Err(e) => self.reason = Some(format!("NVML cannot count GPUs: {e}")),
            },
            Err(e) => {
                self.reason = Some(format!(
                    "no NVIDIA GPU or driver found (NVML could not be loaded: {e})"
                ));
            }
        }
    }

    pub(super) fn status(&self) -> (bool, Option<String>) {
        if !self.tried {
            return (false, Some("not sampled yet".into()));
        }
        (self.nvml.is_some(), self.reason.clone())
    }

    pub(super) fn sample(&self) -> Vec<GpuSample> {
        let Some(nvml) = &self.nvml else {
            return vec![];
        };
        let count = nvml.device_count().unwrap_or(0);
        (0..count)
            .filter_map(|i| {
                let d = nvml.device_by_index(i).ok()?;
                let mem = d.memory_info().ok();
                Some(GpuSample {
                    index: i,
                    name: d.name().unwrap_or_else(|_| format!("GPU {i}")),
                    utilization_percent: d.utilization_rates().ok().map(|u| u.gpu),
                    memory_used_bytes: mem.as_ref().map(|m| m.used),
                    memory_total_bytes: mem.as_ref().map(|m| m.total),
                    temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
                    power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
                })
            })
            .collect()
    }
}
