//! Config reload and first-run discovery (control routes: admin key or trusted network).
//!
//! Discovery only proposes; accepting writes the proposals this Desk itself found into
//! the config file (comments kept) and reloads. A client names proposals, it never sends
//! config text: commands still come only from the local config file.

use super::services::actor;
use crate::app::{ReloadError, SharedState};
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ApiResult};
use crate::http::ApiJson;
use crate::supervisor::discover::{self, Found, Search};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

impl From<ReloadError> for ApiError {
    fn from(e: ReloadError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.code(), e.message()).with("problems", e.problems().to_vec())
    }
}

/// `POST /api/v1/config/reload`
pub async fn reload(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let report = state.reload_config(&actor(&caller)).await?;
    Ok(Json(json!(report)))
}

/// `POST /api/v1/discover` `{ports?, dirs?, no_docker?}`: what runs on this machine and
/// is not configured yet. Nothing is changed.
pub async fn discover(
    State(state): State<SharedState>,
    ApiJson(search): ApiJson<Search>,
) -> ApiResult<Json<Value>> {
    for dir in &search.dirs {
        if let Some(why) = discover::remote_or_relative(dir) {
            return Err(ApiError::validation(
                "dirs",
                format!("{}: {why}", dir.display()),
            ));
        }
    }
    let findings = discover::find_all(&state.config(), &search).await;
    state.remember_discovery(findings.found.clone());
    Ok(Json(json!({
        "found": findings.found,
        "ports": findings.ports,
        "folders": findings.folders,
        "docker_error": findings.docker_error,
        "config_file": state.config_file_path().map(|p| p.display().to_string()),
        "services_configured": state.supervisor.services().len(),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    /// Names of proposals from the last discovery.
    pub names: Vec<String>,
}

/// `POST /api/v1/discover/accept` `{names}`: write the named proposals of the last
/// discovery into the config file and reload, so they are supervised at once.
pub async fn accept(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<Accept>,
) -> ApiResult<Json<Value>> {
    if body.names.is_empty() {
        return Err(ApiError::validation("names", "name at least one proposal"));
    }
    let known = state.last_discovery();
    let mut chosen: Vec<Found> = Vec::new();
    for name in &body.names {
        match known.iter().find(|f| &f.name == name) {
            Some(f) => chosen.push(f.clone()),
            None => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "NOT_DISCOVERED",
                    format!("{name:?} is not a proposal of the last discovery: run it again"),
                )
                .with("name", name.as_str()))
            }
        }
    }
    let Some(path) = state.config_file_path() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "NO_CONFIG_FILE",
            "this Desk has no config file location (start it with --config FILE)",
        ));
    };
    let current = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(ApiError::internal(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let (text, added) = discover::write_into(&current, &chosen)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "CONFIG_NOT_WRITTEN", e))?;
    // Checked before writing: a proposal that would break the config is not written.
    state.check_config_text(&text, &path)?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&path, text)
        .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
    let who = actor(&caller);
    state
        .supervisor
        .events
        .record(
            "config",
            None,
            "written",
            &format!("discovery accepted: added {}", added.join(", ")),
            Some(&who),
        )
        .await;
    let report = state.reload_config(&who).await?;
    Ok(Json(json!({
        "config_file": path.display().to_string(),
        "added": added,
        "reload": report,
    })))
}
