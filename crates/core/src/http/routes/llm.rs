//! LLM Gateway routes: `/api/v1/llm/*`, and the same under `/api/v1/llm/llm/*`
//! (the Sparklio backend's running code mounts its router twice).

use crate::app::{AppState, SharedState};
use crate::http::auth::Caller;
use crate::http::error::current_request_id;
use crate::http::request::parse_json;
use crate::http::ApiError;
use crate::llm::provider::StreamEvent;
use crate::llm::record::{record, Outcome};
use crate::llm::wire::GenerateBody;
use crate::llm::{FailureContext, Plan};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

/// Both prefixes, every route.
pub fn routes() -> Router<SharedState> {
    let mut r = Router::new();
    for prefix in ["/api/v1/llm", "/api/v1/llm/llm"] {
        r = r
            .route(&format!("{prefix}/generate"), post(generate))
            .route(&format!("{prefix}/health"), get(health))
            .route(&format!("{prefix}/models"), get(models))
            .route(&format!("{prefix}/router/info"), get(router_info))
            .route(&format!("{prefix}/schemas"), get(schemas));
    }
    r
}

pub async fn health(State(state): State<SharedState>) -> Json<Value> {
    let mut body = state
        .llm
        .health(state.runtime.mode(), &state.provider_board)
        .await;
    body["paused"] = json!(state.runtime.paused());
    crate::supervisor::annotate_provider_services(&state, &mut body["providers"]);
    Json(body)
}

pub async fn models(State(state): State<SharedState>) -> Json<Value> {
    Json(
        state
            .llm
            .models(state.runtime.mode(), &state.provider_board)
            .await,
    )
}

pub async fn router_info(State(state): State<SharedState>) -> Json<Value> {
    Json(state.llm.info(state.runtime.mode()))
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Make sure an error names provider, model and request id (null when unknown).
fn complete_error(mut e: ApiError, ctx: &FailureContext, request_id: &str) -> ApiError {
    if !e.fields.contains_key("provider") {
        e = e.with("provider", ctx.provider.clone());
    }
    if !e.fields.contains_key("model") {
        e = e.with("model", ctx.model.clone());
    }
    e.with("request_id", request_id)
}

pub async fn generate(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let caller = caller.map(|Extension(c)| c);
    let mut outcome = Outcome {
        request_id: current_request_id().unwrap_or_default(),
        ..Default::default()
    };
    let mut ctx = FailureContext::default();
    match prepare(&state, body, &mut outcome, &mut ctx) {
        Err(e) => fail(&state, caller.as_ref(), outcome, &ctx, e, started).await,
        Ok(plan) if plan.request.stream => {
            stream_answer(state.clone(), caller, outcome, ctx, plan, started).await
        }
        Ok(plan) => match state.llm.generate(&plan).await {
            Err(e) => fail(&state, caller.as_ref(), outcome, &ctx, e, started).await,
            Ok(answer) => {
                let latency_ms = ms_since(started);
                let body = answer.body(&plan, latency_ms);
                outcome.usage = Some(answer.reply.usage);
                outcome.latency_ms = latency_ms;
                outcome.status = 200;
                record(&state, caller.as_ref(), outcome).await;
                Json(body).into_response()
            }
        },
    }
}

/// Parse, check the switches, route and build the prompt.
fn prepare(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    outcome: &mut Outcome,
    ctx: &mut FailureContext,
) -> Result<Plan, ApiError> {
    let bytes = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            ApiError::bad_request("VALIDATION_ERROR", format!("cannot read the body: {rej}"))
        }
    })?;
    let request = parse_json::<GenerateBody>(&bytes)?.normalize(&state.config().llm.sampling)?;
    outcome.role = Some(request.role.clone());
    outcome.task = Some(request.task.clone());
    outcome.mode = Some(request.mode_label.clone());
    if let Some(id) = &request.request_id {
        outcome.request_id = id.clone();
    }
    if state.runtime.paused() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "GATEWAY_PAUSED",
            "the gateway is paused (resume it from the tray or the control API)",
        ));
    }
    let plan = state.llm.plan(
        request,
        state.runtime.mode(),
        &state.provider_board,
        outcome.request_id.clone(),
        ctx,
    );
    outcome.provider = ctx.provider.clone();
    outcome.model = ctx.model.clone();
    plan
}

async fn fail(
    state: &AppState,
    caller: Option<&Caller>,
    mut outcome: Outcome,
    ctx: &FailureContext,
    e: ApiError,
    started: Instant,
) -> Response {
    let e = complete_error(e, ctx, &outcome.request_id);
    outcome.provider = ctx.provider.clone();
    outcome.model = ctx.model.clone();
    outcome.latency_ms = ms_since(started);
    outcome.status = e.status.as_u16();
    outcome.error_code = Some(e.code.to_string());
    record(state, caller, outcome).await;
    e.into_response()
}

/// Server-Sent Events: `chunk` events (`{index, delta}`), then one `done` event with
/// the same body as a non-streaming answer, or one `error` event with the error body.
async fn stream_answer(
    state: SharedState,
    caller: Option<Caller>,
    mut outcome: Outcome,
    ctx: FailureContext,
    plan: Plan,
    started: Instant,
) -> Response {
    let mut upstream = match state.llm.stream(&plan).await {
        Ok(s) => s,
        Err(e) => return fail(&state, caller.as_ref(), outcome, &ctx, e, started).await,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(32);
    let plan = Arc::new(plan);
    tokio::spawn(async move {
        let mut index = 0u64;
        let end: Result<Value, ApiError> = loop {
            let next = tokio::select! {
                _ = state.shutdown.cancelled() => break Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE, "SHUTTING_DOWN", "the gateway is shutting down")),
                n = upstream.next() => n,
            };
            match next {
                Some(Ok(StreamEvent::Delta(piece))) => {
                    let ev = Event::default()
                        .event("chunk")
                        .json_data(json!({"index": index, "delta": piece}))
                        .unwrap_or_default();
                    index += 1;
                    if tx.send(ev).await.is_err() {
                        break Err(ApiError::new(
                            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                            "CLIENT_CLOSED",
                            "the client closed the stream",
                        ));
                    }
                }
                Some(Ok(StreamEvent::Done(reply))) => {
                    outcome.usage = Some(reply.usage);
                    match state.llm.finish(&plan, reply) {
                        Ok(answer) => break Ok(answer.body(&plan, ms_since(started))),
                        Err(e) => break Err(e),
                    }
                }
                Some(Err(e)) => break Err(state.llm.stream_failure(&plan, e)),
                None => {
                    break Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "PROVIDER_ERROR",
                        "the provider's stream ended without a final message",
                    ))
                }
            }
        };
        outcome.latency_ms = ms_since(started);
        match end {
            Ok(body) => {
                outcome.status = 200;
                let _ = tx
                    .send(
                        Event::default()
                            .event("done")
                            .json_data(body)
                            .unwrap_or_default(),
                    )
                    .await;
            }
            Err(e) => {
                let e = complete_error(e, &ctx, &outcome.request_id);
                outcome.status = e.status.as_u16();
                outcome.error_code = Some(e.code.to_string());
                let _ = tx
                    .send(
                        Event::default()
                            .event("error")
                            .json_data(e.body())
                            .unwrap_or_default(),
                    )
                    .await;
            }
        }
        record(&state, caller.as_ref(), outcome).await;
    });
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /api/v1/llm/schemas`: the JSON Schema each role/task's json answer must satisfy.
async fn schemas() -> Json<Value> {
    let list: Vec<Value> = crate::contracts::contracts()
        .map(|c| {
            json!({
                "role": c.role,
                "task": c.task,
                "shape": c.shape_hint(),
                "schema": c.schema,
            })
        })
        .collect();
    Json(json!({"total": list.len(), "schemas": list}))
}
