//! `GET /api/v1/system`: CPU, RAM, disk of the models folder, NVIDIA GPUs, and history.

use crate::app::SharedState;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
pub struct SystemQuery {
    /// `history=false` leaves the history out.
    history: Option<bool>,
}

pub async fn system(State(state): State<SharedState>, Query(q): Query<SystemQuery>) -> Json<Value> {
    Json(system_json(&state, q.history.unwrap_or(true)).await)
}

/// The system document (the dashboard stream carries it without history).
pub async fn system_json(state: &SharedState, with_history: bool) -> Value {
    let monitor = state.system.clone();
    // The first call may come before the first sample (and loads NVML): take one now.
    let latest = match monitor.latest() {
        Some(s) => Some(s),
        None => {
            let m = monitor.clone();
            tokio::task::spawn_blocking(move || m.sample_now())
                .await
                .ok()
        }
    };
    let m = monitor.clone();
    let disk = tokio::task::spawn_blocking(move || m.disk())
        .await
        .ok()
        .flatten();
    let (gpu_available, gpu_reason) = monitor.gpu_status();
    let history = if with_history {
        json!(monitor.history())
    } else {
        Value::Null
    };
    json!({
        "cpu_percent": latest.as_ref().map(|s| s.cpu_percent),
        "memory_used_bytes": latest.as_ref().map(|s| s.memory_used_bytes),
        "memory_total_bytes": latest.as_ref().map(|s| s.memory_total_bytes),
        "disk": disk,
        "gpu": {
            "available": gpu_available,
            "reason": gpu_reason,
            "devices": latest.as_ref().map(|s| s.gpus.clone()).unwrap_or_default(),
        },
        "sampled_at": latest.as_ref().map(|s| s.ts.clone()),
        "sample_interval_ms": state.config().system.sample_interval_ms,
        "history": history,
    })
}
