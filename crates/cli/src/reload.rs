//! `sparklio-desk config reload`: ask the running Desk to read its config file again
//! and apply what changed (services, providers, routes, keys) without a restart.

use crate::models::{admin_key, client, desk_base, desk_up};
use serde_json::Value;
use sparklio_core::config::LoadedConfig;
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
    match ask(loaded, url, key).await {
        Ok(Some(report)) => {
            println!("reloaded: {}", describe(&report));
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!(
                "no Sparklio Desk answers at {}: the config is read when it starts",
                desk_base(loaded, None)
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: not applied: {e}");
            ExitCode::FAILURE
        }
    }
}
