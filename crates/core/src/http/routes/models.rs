//! `GET /api/v1/models`: what the dashboard's model panel shows — for every LLM
//! provider its installed and loaded models (and the routed models it lacks), for every
//! media provider its checkpoints, LoRAs and VAEs. Always the real providers' state,
//! whatever the generator mode.

use crate::app::SharedState;
use crate::config::GeneratorMode;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

pub async fn models(State(state): State<SharedState>) -> Json<Value> {
    let llm_view = state
        .llm
        .models(GeneratorMode::Live, &state.provider_board)
        .await;
    let cfg = state.config();

    let mut llm = Vec::new();
    for (name, p) in &cfg.llm.providers {
        let view = &llm_view["providers"][name];
        let missing: Vec<Value> = llm_view["models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| {
                m["provider"] == name.as_str() && m["routed"] == true && m["installed"] == false
            })
            .map(|m| m["model"].clone())
            .collect();
        llm.push(json!({
            "provider": name,
            "kind": p.kind,
            "base_url": p.base_url,
            "reachable": view["reachable"],
            "error": view["error"],
            "service_down": state.provider_board.down_reason(name),
            "models": view["models"].as_array().cloned().unwrap_or_default(),
            "missing": missing,
        }));
    }

    let mut media = Vec::new();
    for (name, p) in state.media.providers() {
        let (folders, error) = match p.models().await {
            Ok(list) => {
                let mut folders: Map<String, Value> = Map::new();
                for m in list {
                    let v = serde_json::to_value(&m).unwrap_or_default();
                    let kind = v["type"].as_str().unwrap_or("other").to_string();
                    let entry = folders
                        .entry(format!("{kind}s"))
                        .or_insert_with(|| json!([]));
                    if let Some(a) = entry.as_array_mut() {
                        a.push(v["name"].clone());
                    }
                }
                (Value::Object(folders), Value::Null)
            }
            Err(e) => (json!({}), json!(e.message)),
        };
        let pc = cfg.media.providers.get(name.as_str());
        media.push(json!({
            "provider": name,
            "kind": p.kind(),
            "base_url": pc.and_then(|c| c.base_url.clone()),
            "error": error,
            "service_down": state.provider_board.down_reason(name),
            "models": folders,
        }));
    }
    Json(json!({"llm": llm, "media": media}))
}
