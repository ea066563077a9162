//! The product-detail end-to-end check over HTTP: start it, follow it, read the result.

use crate::app::SharedState;
use crate::flow::jobs::{FlowJob, StartError};
use crate::flow::FlowInput;
use crate::http::sse::{json_event, sse_response};
use crate::http::{request::parse_json, ApiError, ApiResult};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartFlow {
    /// Brand and product; the team's sample when absent.
    input: Option<FlowInput>,
    /// Run against the live providers (default: the app's generator mode).
    live: Option<bool>,
}

/// `POST /api/v1/flows/product-detail` → 202 with the job.
pub async fn start(State(state): State<SharedState>, body: Bytes) -> ApiResult<Response> {
    // An empty body means "the sample, in the app's mode".
    let req: StartFlow = if body.iter().all(u8::is_ascii_whitespace) {
        StartFlow::default()
    } else {
        parse_json(&body)?
    };
    let live = req
        .live
        .unwrap_or(state.runtime.mode() == crate::config::GeneratorMode::Live);
    let input = req.input.unwrap_or_else(FlowInput::sample);
    let job = state
        .flows
        .start(state.bound, state.internal_key.clone(), input, !live)
        .await
        .map_err(|e| match e {
            StartError::Overloaded(_, retry) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "OVERLOADED", e.to_string())
                    .with("retry_after_s", retry)
            }
            StartError::Store(e) => ApiError::internal(format!("cannot start the check: {e:#}")),
        })?;
    let body = json!({
        "job_id": job.id,
        "status": job.status,
        "status_url": format!("/api/v1/flows/jobs/{}", job.id),
        "events_url": format!("/api/v1/flows/jobs/{}/events", job.id),
        "generator_mode": job.generator_mode,
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn find(state: &SharedState, id: &str) -> ApiResult<FlowJob> {
    state
        .flows
        .get(id)
        .await
        .map_err(|e| ApiError::internal(format!("{e:#}")))?
        .ok_or_else(|| ApiError::not_found(format!("no flow job {id:?}")))
}

pub async fn get(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> ApiResult<Json<FlowJob>> {
    Ok(Json(find(&state, &id).await?))
}

pub async fn list(State(state): State<SharedState>) -> Json<serde_json::Value> {
    Json(json!({"jobs": state.flows.recent()}))
}

/// SSE: the job's state now, then every change, closing after the final state.
pub async fn events(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let Some((now, rx)) = state.flows.subscribe(&id) else {
        // Not running in this process: one final event from the database.
        let job = find(&state, &id).await?;
        let stream = futures::stream::iter([json_event("job", &job)]);
        return Ok(sse_response(stream, state.shutdown.clone()).into_response());
    };
    let stream =
        futures::stream::unfold((Some(now), rx, false), |(first, mut rx, done)| async move {
            if done {
                return None;
            }
            let job = match first {
                Some(job) => job,
                None => loop {
                    match rx.recv().await {
                        Ok(job) => break job,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    }
                },
            };
            let finished = job.is_finished();
            Some((json_event("job", &job), (None, rx, finished)))
        });
    Ok(sse_response(stream, state.shutdown.clone()).into_response())
}
