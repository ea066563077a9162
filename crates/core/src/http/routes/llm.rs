//! LLM Gateway routes: `/api/v1/llm/*`, and the same under `/api/v1/llm/llm/*`
//! (the Sparklio backend's running code mounts its router twice).

use crate::app::SharedState;
use crate::http::auth::Caller;
use crate::http::error::current_request_id;
use crate::http::request::parse_json;
use crate::http::ApiError;
use crate::llm::wire::{ChatBody, GenerateBody};
use crate::llm::{RequestCtx, StreamItem};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Instant;

/// Both prefixes, every route.
pub fn routes() -> Router<SharedState> {
    let mut r = Router::new();
    for prefix in ["/api/v1/llm", "/api/v1/llm/llm"] {
        r = r
            .route(&format!("{prefix}/generate"), post(generate))
            .route(&format!("{prefix}/chat"), post(chat))
            .route(&format!("{prefix}/health"), get(health))
            .route(&format!("{prefix}/models"), get(models))
            .route(&format!("{prefix}/router/info"), get(router_info))
            .route(&format!("{prefix}/schemas"), get(schemas));
    }
    r
}

pub async fn health(State(state): State<SharedState>) -> impl IntoResponse {
    let mut body = state.llm.health().await;
    for (name, provider) in &mut body.providers {
        provider.services = state.supervisor.provider_services(name);
    }
    Json(body)
}

pub async fn models(State(state): State<SharedState>) -> impl IntoResponse {
    Json(state.llm.models(state.runtime.mode()).await)
}

pub async fn router_info(State(state): State<SharedState>) -> impl IntoResponse {
    Json(state.llm.info())
}

/// The error body for a failed request: the standard envelope, naming the request id
/// the request goes by (its own `request_id` when it sent one).
fn failure(e: impl Into<ApiError>, request_id: &str) -> ApiError {
    e.into().with("request_id", request_id)
}

/// `x-request-timeout: <seconds>`: a caller's own time limit (only ever shortens).
pub fn request_timeout(headers: &HeaderMap) -> Option<std::time::Duration> {
    headers
        .get("x-request-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0 && s.is_finite() && *s <= 86_400.0)
        .map(std::time::Duration::from_secs_f64)
}

/// The caller's `x-request-timeout`, read from the request's own headers (the
/// `HeaderMap` extractor would copy them all).
pub struct CallerTimeout(Option<std::time::Duration>);

impl<S: Sync> FromRequestParts<S> for CallerTimeout {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(request_timeout(&parts.headers)))
    }
}

pub async fn generate(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    timeout: CallerTimeout,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = read_body(body).and_then(|bytes| parse_json::<GenerateBody>(&bytes));
    answer(&state, caller, timeout, parsed).await
}

/// `POST /api/v1/llm/chat`: `{messages: [{role, content}], model?, stream?, options?}`;
/// the answer is the generate answer (chat mode).
pub async fn chat(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    timeout: CallerTimeout,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = read_body(body)
        .and_then(|bytes| parse_json::<ChatBody>(&bytes))
        .and_then(|chat| chat.into_generate().map_err(ApiError::from));
    answer(&state, caller, timeout, parsed).await
}

fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            ApiError::bad_request("VALIDATION_ERROR", format!("cannot read the body: {rej}"))
        }
    })
}

/// Run a parsed request (or record why it was refused): JSON, or SSE when it asked to stream.
async fn answer(
    state: &SharedState,
    caller: Option<Extension<Caller>>,
    CallerTimeout(timeout): CallerTimeout,
    parsed: Result<GenerateBody, ApiError>,
) -> Response {
    let started = Instant::now();
    let transport_id = current_request_id().unwrap_or_default();
    let requester = caller.map(|Extension(c)| c.requester()).unwrap_or_default();
    let body = match parsed {
        Ok(body) => body,
        Err(e) => {
            let ctx = RequestCtx {
                request_id: transport_id.clone(),
                requester,
                timeout: None,
            };
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            state
                .llm
                .record_rejected(&ctx, e.status.as_u16(), e.code, elapsed)
                .await;
            return e
                .with("provider", None::<String>)
                .with("model", None::<String>)
                .with("request_id", transport_id)
                .into_response();
        }
    };
    let ctx = RequestCtx {
        request_id: body.request_id_or(&transport_id),
        requester,
        timeout,
    };
    let request_id = ctx.request_id.clone();
    if body.wants_stream() {
        return match state.llm.stream(body, ctx).await {
            Ok(rx) => sse(rx, request_id),
            Err(e) => failure(e, &request_id).into_response(),
        };
    }
    match state.llm.generate(body, ctx).await {
        Ok(answer) => json_answer(&answer, &request_id),
        Err(e) => failure(e, &request_id).into_response(),
    }
}

/// A JSON 200, written into a buffer sized for a typical answer (`Json` starts at
/// 128 bytes and regrows several times for one).
fn json_answer(answer: &impl Serialize, request_id: &str) -> Response {
    let mut body = Vec::with_capacity(2048);
    match serde_json::to_writer(&mut body, answer) {
        Ok(()) => (
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response(),
        Err(e) => failure(
            ApiError::internal(format!("the answer could not be written: {e}")),
            request_id,
        )
        .into_response(),
    }
}

#[derive(Serialize)]
struct Chunk<'a> {
    index: u64,
    delta: &'a str,
}

/// Server-Sent Events: `chunk` events (`{index, delta}`), then one `done` event with
/// the same body as a non-streaming answer, or one `error` event with the error body.
fn sse(rx: tokio::sync::mpsc::Receiver<StreamItem>, request_id: String) -> Response {
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |item| {
        let event = match item {
            StreamItem::Chunk { index, delta } => {
                Event::default().event("chunk").json_data(Chunk {
                    index,
                    delta: &delta,
                })
            }
            StreamItem::Done(answer) => Event::default().event("done").json_data(answer),
            StreamItem::Failed(e) => Event::default()
                .event("error")
                .json_data(failure(e, &request_id).body()),
        };
        Ok::<_, Infallible>(event.unwrap_or_default())
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /api/v1/llm/schemas`: the JSON Schema each role/task's json answer must satisfy.
async fn schemas() -> impl IntoResponse {
    let list: Vec<_> = crate::contracts::contracts()
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
