//! Liveness, status, the effective config and metrics.

use crate::app::SharedState;
use crate::config::{is_secret_key, LoadedConfig};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

/// Liveness: answers as long as the process serves HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn status(State(state): State<SharedState>) -> Json<Value> {
    Json(status_json(&state))
}

/// The status document (also part of the dashboard stream's snapshots).
pub fn status_json(state: &SharedState) -> Value {
    let c = state.config();
    let llm: Vec<Value> = c
        .llm
        .providers
        .iter()
        .map(|(name, p)| json!({"name": name, "kind": p.kind, "base_url": p.base_url, "default_model": p.default_model}))
        .collect();
    let media: Vec<Value> = c
        .media
        .providers
        .iter()
        .map(|(name, p)| json!({"name": name, "kind": p.kind, "base_url": p.base_url}))
        .collect();
    let services: Vec<Value> = c
        .services
        .iter()
        .map(|s| {
            let state = state.supervisor.get(&s.name).map(|e| e.status().state);
            json!({"name": s.name, "kind": s.kind, "state": state, "autostart": s.autostart, "provides": s.provides})
        })
        .collect();
    let states: Vec<(String, String)> = state
        .supervisor
        .services()
        .iter()
        .map(|e| (e.config.name.clone(), e.status().state.as_str().to_string()))
        .collect();
    let (level, summary) =
        crate::notify::overall(states.iter().map(|(n, s)| (n.as_str(), s.as_str())));
    json!({
        "name": "sparklio-desk",
        "health": {"level": level, "summary": summary},
        "version": env!("CARGO_PKG_VERSION"),
        // The process serving this (the tray app or `serve`), for tools that stop it.
        "pid": std::process::id(),
        "uptime_s": state.started_at.elapsed().as_secs(),
        "generator_mode": state.runtime.mode().as_str(),
        "paused": state.runtime.paused(),
        "bind": state.bound.to_string(),
        "config_file": state.loaded.file,
        "data_dir": state.data_dir,
        "providers": {"llm": llm, "media": media},
        "services": services,
    })
}

/// The effective config as JSON, secrets redacted, with each value's source.
pub async fn effective_config(State(state): State<SharedState>) -> Json<Value> {
    Json(config_with_sources(&state.loaded))
}

fn config_with_sources(loaded: &LoadedConfig) -> Value {
    let tree = serde_json::to_value(&loaded.config).unwrap_or(Value::Null);
    let entries: Vec<Value> = crate::config::flatten(&tree)
        .into_iter()
        .map(|(key, value)| {
            let value = if is_secret_key(&key) {
                json!("<redacted>")
            } else {
                value
            };
            json!({"key": key, "value": value, "source": loaded.source_of(&key).to_string()})
        })
        .collect();
    json!({"file": loaded.file, "values": entries})
}

pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
