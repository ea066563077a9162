//! The usage log for the dashboard: recent requests and aggregates.

use crate::app::SharedState;
use crate::http::{ApiError, ApiResult};
use crate::store::UsageQuery;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

pub async fn recent(
    State(state): State<SharedState>,
    Query(q): Query<UsageQuery>,
) -> ApiResult<Json<Value>> {
    let rows = state
        .store
        .recent_usage(q)
        .await
        .map_err(|e| ApiError::internal(format!("usage log: {e:#}")))?;
    Ok(Json(json!({"requests": rows})))
}

#[derive(Debug, Deserialize)]
pub struct SummaryQuery {
    /// Window in seconds (default 300, at most a day).
    pub window_s: Option<u64>,
}

pub async fn summary(
    State(state): State<SharedState>,
    Query(q): Query<SummaryQuery>,
) -> ApiResult<Json<Value>> {
    let window = q.window_s.unwrap_or(300).clamp(1, 86_400);
    let s = state
        .store
        .usage_summary(window)
        .await
        .map_err(|e| ApiError::internal(format!("usage log: {e:#}")))?;
    Ok(Json(
        json!({"summary": s, "generator_mode": state.runtime.mode().as_str(), "paused": state.runtime.paused()}),
    ))
}
