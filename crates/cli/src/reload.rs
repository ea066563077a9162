//! `sparklio-desk config reload`: ask the running Desk to read its config file again
//! and apply what changed (services, providers, routes, keys) without a restart.

use crate::models::{admin_key, client, desk_base, desk_up};
use serde_json::Value;
use sparklio_core::config::LoadedConfig;
use std::path::Path;
use std::process::ExitCode;

/// What the Desk answered, or why it could not be asked (`Ok(None)`: no Desk answers).
pub async fn ask(
    loaded: &LoadedConfig,
    url: Option<String>,
    key: Option<String>,
) -> Result<Option<Value>, String> {
    let base = desk_base(loaded, url);
    if !desk_up(&base).await {
        return Ok(None);
    }
    let mut req = client().post(format!("{base}/api/v1/config/reload"));
    if let Some(k) = admin_key(loaded, key) {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.map_err(|e| format!("{base}: {e}"))?;
    let ok = r.status().is_success();
    let body: Value = r.json().await.map_err(|e| format!("{base}: {e}"))?;
    if ok {
        Ok(Some(body))
    } else {
        let mut msg = body["error"]["message"]
            .as_str()
            .unwrap_or("the Desk refused")
            .to_string();
        if let Some(problems) = body["error"]["problems"].as_array() {
            for p in problems.iter().filter_map(Value::as_str) {
                msg.push_str(&format!("\n  {p}"));
            }
        }
        Err(msg)
    }
}

/// What the Desk says changed (its own one-line summary).
pub fn describe(report: &Value) -> String {
    report["summary"].as_str().unwrap_or("applied").to_string()
}

pub async fn run(loaded: &LoadedConfig, url: Option<String>, key: Option<String>) -> ExitCode {
    let given = url.is_some();
    let tried = desk_base(loaded, url.clone());
    match ask(loaded, url, key.clone()).await {
        Ok(Some(report)) => {
            println!("reloaded: {}", describe(&report));
            ExitCode::SUCCESS
        }
        Ok(None) if given => {
            eprintln!("no Sparklio Desk answers at {tried} (--url)");
            ExitCode::FAILURE
        }
        Ok(None) => {
            let from = match &loaded.file {
                Some(f) => format!("server.bind in {}", f.display()),
                None => "the default server.bind".to_string(),
            };
            eprintln!("no Sparklio Desk answers at {tried} ({from})");
            // A running Desk keeps the address it started with: server.bind is restart-only.
            match started_from_this_file(loaded, &tried, key).await {
                Some(other) => eprintln!(
                    "a Desk started from this config file answers at {other} (the address it \
                     started with; a new server.bind takes effect at its next restart): \
                     sparklio-desk config reload --url {other}"
                ),
                None => eprintln!(
                    "if a Desk runs on another address (one started before server.bind was \
                     edited keeps its old one), pass it with --url"
                ),
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: not applied: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the Desk using this config's data folder recorded it started serving, if it
/// answers there and runs this config file.
async fn started_from_this_file(
    loaded: &LoadedConfig,
    tried: &str,
    key: Option<String>,
) -> Option<String> {
    let data_dir = loaded.config.storage.resolved_data_dir();
    for base in sparklio_core::app::recorded_addresses(&data_dir) {
        if base == tried || !desk_up(&base).await {
            continue;
        }
        let mut req = client().get(format!("{base}/api/v1/status"));
        if let Some(k) = admin_key(loaded, key.clone()) {
            req = req.bearer_auth(k);
        }
        let Ok(status) = req.send().await else {
            continue;
        };
        let status: Value = status.json().await.unwrap_or(Value::Null);
        let runs = status["config_file"].as_str().map(Path::new);
        if same_file(runs, loaded.file.as_deref()) {
            return Some(base);
        }
    }
    None
}

fn same_file(a: Option<&Path>, b: Option<&Path>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        },
        (None, None) => true,
        _ => false,
    }
}
