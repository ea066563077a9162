//! Liveness, status, the effective config and metrics.

use crate::app::SharedState;
use crate::config::{is_secret_key, LoadedConfig, ServiceKind};
use crate::notify::Level;
use crate::supervisor::ServiceState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Liveness: answers as long as the process serves HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn status(State(state): State<SharedState>) -> Json<StatusView> {
    Json(status_view(&state))
}

/// `GET /api/v1/status` (also part of the dashboard stream's snapshots).
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub name: &'static str,
    pub health: HealthView,
    pub version: &'static str,
    /// The process serving this (the tray app or `serve`), for tools that stop it.
    pub pid: u32,
    pub uptime_s: u64,
    pub generator_mode: &'static str,
    pub paused: bool,
    pub bind: String,
    pub config_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub providers: ProvidersView,
    pub services: Vec<ServiceSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthView {
    pub level: Level,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProvidersView {
    pub llm: Vec<ProviderSummary>,
    pub media: Vec<ProviderSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderSummary {
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_model: Option<Option<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceSummary {
    pub name: String,
    pub kind: ServiceKind,
    pub state: Option<ServiceState>,
    pub autostart: bool,
    pub provides: Vec<String>,
}

pub fn status_view(state: &SharedState) -> StatusView {
    let loaded = state.config();
    let c = &loaded.config;
    let llm = c
        .llm
        .providers
        .iter()
        .map(|(name, p)| ProviderSummary {
            name: name.clone(),
            kind: p.kind.clone(),
            base_url: p.base_url.clone(),
            default_model: Some(p.default_model.clone()),
        })
        .collect();
    let media = c
        .media
        .providers
        .iter()
        .map(|(name, p)| ProviderSummary {
            name: name.clone(),
            kind: p.kind.clone(),
            base_url: p.base_url.clone(),
            default_model: None,
        })
        .collect();
    let services = c
        .services
        .iter()
        .map(|s| ServiceSummary {
            name: s.name.clone(),
            kind: s.kind,
            state: state.supervisor.get(&s.name).map(|e| e.status().state),
            autostart: s.autostart,
            provides: s.provides.clone(),
        })
        .collect();
    let glance = state.glance();
    let (level, summary) = (glance.level, glance.summary);
    StatusView {
        name: "sparklio-desk",
        health: HealthView { level, summary },
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        uptime_s: state.started_at.elapsed().as_secs(),
        generator_mode: state.runtime.mode().as_str(),
        paused: state.runtime.paused(),
        bind: state.bound.to_string(),
        config_file: loaded.file.clone(),
        data_dir: state.data_dir.clone(),
        providers: ProvidersView { llm, media },
        services,
    }
}

/// The effective config as JSON, secrets redacted, with each value's source.
pub async fn effective_config(State(state): State<SharedState>) -> Json<Value> {
    Json(config_with_sources(&state.config()))
}

fn config_with_sources(loaded: &LoadedConfig) -> Value {
    let tree = serde_json::to_value(&loaded.config).unwrap_or(Value::Null);
    let entries: Vec<Value> = crate::config::flatten(&tree)
        .into_iter()
        .map(|(key, value)| {
            let value = if is_secret_key(&key) {
                json!("<redacted>")
            } else {
                crate::config::shown(&key, &value)
            };
            json!({"key": key, "value": value, "source": loaded.source_of(&key).to_string()})
        })
        .collect();
    json!({"file": loaded.file, "values": entries})
}

pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let mut text = state.metrics.render();
    // Gauges and counters the server keeps itself, in the same exposition format.
    let text_end = text.trim_end_matches("# EOF\n").len();
    text.truncate(text_end);
    let s = &state.server_stats;
    let mut add = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
        let _ = writeln!(text, "# HELP {name} {help}.\n# TYPE {name} {kind}");
        for (labels, v) in lines {
            let _ = writeln!(text, "{name}{labels} {v}");
        }
    };
    add(
        "desk_connections_open",
        "gauge",
        "Open HTTP connections",
        &[(String::new(), s.open.load(Relaxed))],
    );
    add(
        "desk_connections_refused_total",
        "counter",
        "Connections closed at once because the connection cap was reached",
        &[(String::new(), s.refused.load(Relaxed))],
    );
    let work = [
        ("media", state.media.work.figures()),
        ("flows", state.flows.work()),
    ];
    let per_kind = |f: fn(&crate::work::WorkFigures) -> u64| -> Vec<(String, u64)> {
        work.iter()
            .map(|(k, w)| (format!("{{kind=\"{k}\"}}"), f(w)))
            .collect()
    };
    add(
        "desk_work_running",
        "gauge",
        "Work running now",
        &per_kind(|w| w.running as u64),
    );
    add(
        "desk_work_waiting",
        "gauge",
        "Work waiting for a slot",
        &per_kind(|w| w.waiting as u64),
    );
    add(
        "desk_work_rejected_total",
        "counter",
        "Work shed because the queue was full",
        &per_kind(|w| w.rejected),
    );
    add(
        "desk_work_stopped_total",
        "counter",
        "Work stopped before its end (cancelled, timed out, caller gone)",
        &per_kind(|w| w.stopped),
    );
    text.push_str("# EOF\n");
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// `GET /api/v1/storage`: what the database and the image store hold, the retention
/// policy, and what the last sweep removed.
pub async fn storage(
    State(state): State<SharedState>,
) -> Result<Json<Value>, crate::http::ApiError> {
    let figures = state
        .store
        .figures()
        .await
        .map_err(|e| crate::http::ApiError::internal(format!("storage figures: {e:#}")))?;
    let last = state
        .last_sweep
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(Json(json!({
        "figures": figures,
        "retention": state.config().storage.retention,
        "last_sweep": last,
        "work": {"media": state.media.work.figures(), "flows": state.flows.work()},
    })))
}

/// `GET /health`: liveness plus the overall level, in the shape the team's checks
/// read (`status`: `healthy`, `degraded` or `unhealthy`). Public like `/healthz`.
pub async fn health(State(state): State<SharedState>) -> Json<Value> {
    let glance = state.glance();
    let (level, summary) = (glance.level, glance.summary);
    let status = match level {
        Level::Ok => "healthy",
        Level::Degraded => "degraded",
        Level::Down => "unhealthy",
    };
    Json(json!({
        "status": status,
        "level": level,
        "summary": summary,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started_at.elapsed().as_secs(),
    }))
}

/// `GET /api/v1/debug/settings`: the effective generator mode and provider addresses,
/// under the names the team's scripts read (`generator_mode`, `ollama_base_url`, …),
/// then every provider. Credentials and query strings in URLs are redacted.
pub async fn debug_settings(State(state): State<SharedState>) -> Json<Value> {
    let c = state.config();
    let llm_urls = |p: &crate::config::LlmProviderConfig| {
        urls_of(
            p.base_url.as_deref(),
            p.instances.iter().map(|i| i.url.as_str()),
        )
    };
    let media_urls = |p: &crate::config::MediaProviderConfig| {
        urls_of(
            p.base_url.as_deref(),
            p.instances.iter().map(|i| i.url.as_str()),
        )
    };
    let ollama = c.llm.providers.values().find(|p| p.kind == "ollama");
    let comfyui = c.media.providers.values().find(|p| p.kind == "comfyui");
    let llm: Vec<Value> = c
        .llm
        .providers
        .iter()
        .map(|(name, p)| json!({"name": name, "kind": p.kind, "urls": llm_urls(p), "timeout_s": p.timeout_s, "default_model": p.default_model}))
        .collect();
    let media: Vec<Value> = c
        .media
        .providers
        .iter()
        .map(|(name, p)| json!({"name": name, "kind": p.kind, "urls": media_urls(p)}))
        .collect();
    Json(json!({
        "generator_mode": state.runtime.mode().as_str(),
        "paused": state.runtime.paused(),
        "ollama_base_url": ollama.and_then(|p| llm_urls(p).into_iter().next()),
        "ollama_timeout": ollama.map(|p| p.timeout_s),
        "ollama_default_model": ollama.and_then(|p| p.default_model.clone()),
        "comfyui_base_url": comfyui.and_then(|p| media_urls(p).into_iter().next()),
        "llm_providers": llm,
        "media_providers": media,
    }))
}

fn urls_of<'a>(base: Option<&'a str>, instances: impl Iterator<Item = &'a str>) -> Vec<String> {
    base.into_iter().chain(instances).map(redact_url).collect()
}

/// A URL safe to show: no password, no query string.
fn redact_url(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("redacted"));
            }
            if url.query().is_some() {
                url.set_query(Some("redacted"));
            }
            url.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_secrets() {
        assert_eq!(
            super::redact_url("http://u:pw@gpu:11434/?token=x"),
            "http://u:redacted@gpu:11434/?redacted"
        );
        assert_eq!(
            super::redact_url("http://127.0.0.1:8188"),
            "http://127.0.0.1:8188"
        );
    }
}
