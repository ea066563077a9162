//! Runtime switches: generator mode (mock/live) and pausing the gateway.
//! Reading is a gateway route; changing is a control route.

use crate::app::SharedState;
use crate::config::GeneratorMode;
use crate::http::auth::Caller;
use crate::http::ApiJson;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeChange {
    pub generator_mode: Option<GeneratorMode>,
    pub paused: Option<bool>,
}

pub async fn get_runtime(State(state): State<SharedState>) -> Json<Value> {
    Json(runtime_json(&state))
}

pub async fn set_runtime(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    ApiJson(change): ApiJson<RuntimeChange>,
) -> Json<Value> {
    if let Some(mode) = change.generator_mode {
        state.runtime.set_mode(mode);
        tracing::info!(mode = mode.as_str(), by = %caller.describe(), "generator mode switched");
    }
    if let Some(paused) = change.paused {
        state.runtime.set_paused(paused);
        tracing::info!(paused, by = %caller.describe(), "gateway pause switched");
    }
    Json(runtime_json(&state))
}

fn runtime_json(state: &SharedState) -> Value {
    json!({
        "generator_mode": state.runtime.mode().as_str(),
        "paused": state.runtime.paused(),
    })
}
