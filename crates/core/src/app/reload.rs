//! Config reload: read the config again and apply what can change while the Desk runs —
//! services, LLM and media providers, routes, keys, client limits, browser rules —
//! without dropping a request in flight. A request keeps the providers and routes it
//! started with; the next one sees the new ones. Providers and services whose settings
//! did not change are kept as they are (pools, breakers, running processes).
//!
//! What is bound at start (listeners, `data_dir`, connection limits, …) is reported as
//! `restart_required` and keeps its old value until the next start.

use super::AppState;
use crate::config::{ConfigInput, LoadedConfig, Problem};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// Settings read once at start: a change is reported, not applied.
const RESTART_ONLY: &[&str] = &[
    "server.bind",
    "server.limits",
    "server.public_url",
    "server.watch_config",
    "storage",
    "fronts.ollama.bind",
    "fronts.comfyui.bind",
    "media.max_concurrent",
    "media.max_queue",
    "media.url_ttl_s",
    "media.resubmit_after_restart",
    "supervisor",
    "system",
    "flows",
    "gpu",
];

/// What `POST /api/v1/config/reload` answers.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// The config file read (none: defaults and the environment only).
    pub file: Option<String>,
    /// Dotted keys whose value changed (applied or not).
    pub changed: Vec<String>,
    pub services: crate::supervisor::ServicesReload,
    pub llm_providers: crate::llm::setup::LlmReload,
    pub media_providers: crate::media::setup::MediaReload,
    /// Changed settings that take effect at the next start (the old value stays).
    pub restart_required: Vec<String>,
    /// Who asked: `api`, `tray`, `watcher`, `discover`.
    pub actor: String,
    /// One line saying what changed, as the tray, the CLI and the dashboard show it.
    pub summary: String,
}

/// Why a reload changed nothing.
#[derive(Debug, Clone)]
pub enum ReloadError {
    /// The new config does not load or validate: every problem found.
    Invalid(Vec<String>),
    /// It validates but cannot be applied (e.g. prompt templates that do not compile).
    Failed(String),
}

impl ReloadError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "CONFIG_INVALID",
            Self::Failed(_) => "CONFIG_NOT_APPLIED",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) => 422,
            Self::Failed(_) => 500,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::Invalid(p) => format!(
                "the config has {} problem(s); nothing was changed: {}",
                p.len(),
                p.join("; ")
            ),
            Self::Failed(m) => format!("the config was not applied (nothing changed): {m}"),
        }
    }

    pub fn problems(&self) -> &[String] {
        match self {
            Self::Invalid(p) => p,
            Self::Failed(_) => &[],
        }
    }
}

/// Every leaf key whose value differs between `a` and `b` (`a.b.c`; lists compare whole).
fn changed_keys(a: &Value, b: &Value, prefix: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                changed_keys(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &key,
                    out,
                );
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// Put `old`'s value at dotted `path` into `new` (nothing when `old` has none).
fn copy_path(old: &Value, new: &mut Value, path: &str) {
    let keys: Vec<&str> = path.split('.').collect();
    let Some(running) = keys.iter().try_fold(old, |v, k| v.get(*k)) else {
        return;
    };
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let parent = parents
        .iter()
        .try_fold(&mut *new, |v, k| v.get_mut(*k))
        .and_then(Value::as_object_mut);
    if let Some(parent) = parent {
        parent.insert((*last).to_string(), running.clone());
    }
}

/// The new config with every restart-only setting put back to its running value.
fn with_start_values(old: &Value, mut new: Value) -> Option<crate::config::Config> {
    for path in RESTART_ONLY {
        copy_path(old, &mut new, path);
    }
    serde_json::from_value(new).ok()
}

fn restart_only(key: &str) -> bool {
    RESTART_ONLY
        .iter()
        .any(|p| key == *p || key.starts_with(&format!("{p}.")))
}

impl AppState {
    /// The inputs a reload reads: those of the start, else the loaded file alone.
    fn reload_input(&self) -> ConfigInput {
        self.config_input.clone().unwrap_or_else(|| ConfigInput {
            config_flag: self.config().file.clone(),
            env: Default::default(),
            dotenv_path: None,
            use_os_config_dir: false,
        })
    }

    /// The file a reload reads and discovery writes into.
    pub fn config_file_path(&self) -> Option<std::path::PathBuf> {
        self.config()
            .file
            .clone()
            .or_else(|| self.reload_input().file_to_write())
    }

    /// Whether `text` would load as the config file at `path` (with this Desk's
    /// environment), checked as the next load reads it: layered over the defaults.
    pub fn check_config_text(&self, text: &str, path: &std::path::Path) -> Result<(), ReloadError> {
        super::load_config_edit(&self.reload_input(), path, text)
            .map(|_| ())
            .map_err(|p| ReloadError::Invalid(p.iter().map(Problem::to_string).collect()))
    }

    /// Remember what a discovery proposed: accepting names only these.
    pub fn remember_discovery(&self, found: Vec<crate::supervisor::discover::Found>) {
        *self
            .last_discovery
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = found;
    }

    pub fn last_discovery(&self) -> Vec<crate::supervisor::discover::Found> {
        self.last_discovery
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Read the config again and apply it (see the module's docs). One at a time.
    pub async fn reload_config(&self, actor: &str) -> Result<ReloadReport, ReloadError> {
        let _one = self.reloading.lock().await;
        let input = self.reload_input();
        let mut loaded: LoadedConfig = super::load_config(&input)
            .map_err(|p| ReloadError::Invalid(p.iter().map(Problem::to_string).collect()))?;
        for key in &self.extra_admin_keys {
            if !loaded.server.admin_keys.contains(key) {
                loaded.config.server.admin_keys.push(key.clone());
            }
        }
        let old = self.config();
        let old_tree = serde_json::to_value(&old.config).unwrap_or_default();
        // Command-line settings (`--bind`, `--data-dir`) outrank the file, as at start.
        let mut new_tree = serde_json::to_value(&loaded.config).unwrap_or_default();
        let from_cli: Vec<(String, crate::config::Source)> = old
            .provenance
            .iter()
            .filter(|(_, s)| matches!(s, crate::config::Source::Cli { .. }))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        if !from_cli.is_empty() {
            for (key, source) in &from_cli {
                copy_path(&old_tree, &mut new_tree, key);
                loaded.provenance.insert(key.clone(), source.clone());
            }
            loaded.config = serde_json::from_value(new_tree.clone())
                .map_err(|e| ReloadError::Failed(format!("command-line settings: {e}")))?;
        }
        let mut changed = Vec::new();
        changed_keys(&old_tree, &new_tree, "", &mut changed);
        let restart_required: Vec<String> = changed
            .iter()
            .filter(|k| restart_only(k))
            .cloned()
            .collect();
        // Keys are checked against every address actually served, as at start.
        for addr in &self.bound_all {
            crate::http::auth::check_bind(*addr, &loaded.server, self.insecure_no_auth)
                .map_err(|m| ReloadError::Invalid(vec![m]))?;
        }

        let llm_providers = self
            .llm
            .reload(&loaded.llm)
            .map_err(|e| ReloadError::Failed(format!("llm: {e:#}")))?;
        let media_providers = self
            .media
            .reload(&loaded)
            .map_err(|e| ReloadError::Failed(format!("media: {e:#}")))?;
        self.usage.reload(&loaded);
        self.auth.store(Arc::new(
            crate::http::auth::Auth::new(&loaded.server).with_internal_key(&self.internal_key),
        ));
        self.limiter
            .set_client_limits(loaded.server.client_limits.clone());
        self.browser
            .store(Arc::new(crate::http::browser::BrowserPolicy::new(
                &self.listen_addrs,
                &loaded.server.allowed_hosts,
                &loaded.server.cors_origins,
            )));
        if old.mode() != loaded.mode() {
            self.runtime.set_mode(loaded.mode());
        }
        let services = loaded.services.clone();
        let file = loaded.file.as_ref().map(|f| f.display().to_string());
        // Keep the start-up values of what a restart applies, so `config()` tells the truth.
        let mut effective = loaded;
        if let Some(config) = with_start_values(&old_tree, new_tree) {
            effective.config = config;
        }
        self.loaded.store(Arc::new(effective));

        let services = self.supervisor.reconcile(&services).await;
        let mut report = ReloadReport {
            file,
            changed,
            services,
            llm_providers,
            media_providers,
            restart_required,
            actor: actor.to_string(),
            summary: String::new(),
        };
        report.summary = summary(&report);
        let summary = report.summary.clone();
        tracing::info!(actor, "config reloaded: {summary}");
        self.supervisor
            .events
            .record("config", None, "reloaded", &summary, Some(actor))
            .await;
        Ok(report)
    }
}

/// One line for the event log and the tray.
fn summary(r: &ReloadReport) -> String {
    if r.changed.is_empty() {
        return "no change".into();
    }
    let mut parts = Vec::new();
    let mut list = |what: &str, names: &[String]| {
        if !names.is_empty() {
            parts.push(format!("{what} {}", names.join(", ")));
        }
    };
    list("services started:", &r.services.added);
    list("services restarted:", &r.services.changed);
    list("services removed:", &r.services.removed);
    list("LLM providers added:", &r.llm_providers.added);
    list("LLM providers rebuilt:", &r.llm_providers.changed);
    list("LLM providers removed:", &r.llm_providers.removed);
    list("media providers added:", &r.media_providers.added);
    list("media providers rebuilt:", &r.media_providers.changed);
    list("media providers removed:", &r.media_providers.removed);
    list("needs a restart:", &r.restart_required);
    if parts.is_empty() {
        format!("{} setting(s) changed", r.changed.len())
    } else {
        format!(
            "{} setting(s) changed; {}",
            r.changed.len(),
            parts.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_name_leaves_and_restart_only_ones() {
        let a = serde_json::json!({"server": {"bind": "127.0.0.1:1", "keys": []}, "llm": {"routes": [1]}});
        let b = serde_json::json!({"server": {"bind": "127.0.0.1:2", "keys": []}, "llm": {"routes": [2]}, "gpu": {"x": 1}});
        let mut out = Vec::new();
        changed_keys(&a, &b, "", &mut out);
        assert_eq!(out, ["gpu", "llm.routes", "server.bind"]);
        let restart: Vec<&String> = out.iter().filter(|k| restart_only(k)).collect();
        assert_eq!(restart, ["gpu", "server.bind"]);
        assert!(!restart_only("server.bindings"));
    }

    #[test]
    fn restart_only_settings_keep_their_running_value() {
        let old = crate::config::Config::default();
        let mut new = old.clone();
        new.media.max_queue = old.media.max_queue + 7;
        new.media.default_provider = "elsewhere".into();
        let tree = serde_json::to_value(&new).unwrap();
        let merged = with_start_values(&serde_json::to_value(&old).unwrap(), tree).unwrap();
        assert_eq!(merged.media.max_queue, old.media.max_queue);
        assert_eq!(merged.media.default_provider, "elsewhere");
    }
}
