//! Media Gateway routes: image generation (both request shapes), jobs with
//! Server-Sent Events, the file store, health and models.

use crate::app::SharedState;
use crate::http::auth::Caller;
use crate::http::error::current_request_id;
use crate::http::{ApiError, ApiJson, ApiResult};
use crate::media::jobs::{JobStatus, JobView};
use crate::media::provider::{error_from_json, ImageSpec};
use crate::media::request::{resolve, GenerateRequest, ResolveContext};
use crate::store::{now_text, UsageRow};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use futures::Stream;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::{Duration, Instant};

pub const FILES_PATH: &str = "/api/v1/media/files/";
const JOBS_PATH: &str = "/api/v1/media/jobs/";

/// `POST /api/v1/media/image/generate` (the design's shape).
pub async fn generate_image(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<GenerateRequest>,
) -> Response {
    generate_inner(state, caller, headers, req).await
}

/// `POST /api/v1/media/generate` (the running code's shape; same handling).
pub async fn generate(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<GenerateRequest>,
) -> Response {
    generate_inner(state, caller, headers, req).await
}

/// `http://host:port` as the caller reached us (falls back to the bound address).
fn base_url(state: &SharedState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| state.bound.to_string());
    format!("http://{host}")
}

fn wants_async(req: &GenerateRequest, headers: &HeaderMap) -> bool {
    req.run_async.unwrap_or(false)
        || headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
            })
}

async fn generate_inner(
    state: SharedState,
    caller: Caller,
    headers: HeaderMap,
    req: GenerateRequest,
) -> Response {
    let started = Instant::now();
    let request_id = req
        .request_id
        .clone()
        .or_else(current_request_id)
        .unwrap_or_default();
    // `options.mock = true` switches this one request to the mock, as on the LLM side.
    let mode = if req.options.as_ref().and_then(|o| o.mock) == Some(true) {
        crate::config::GeneratorMode::Mock
    } else {
        state.runtime.mode()
    };
    let mut spec_for_usage: Option<ImageSpec> = None;
    let result = async {
        if state.runtime.paused() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "GATEWAY_PAUSED",
                "the gateway is paused; resume it from the tray or the control API",
            ));
        }
        let provider = state
            .media
            .choose(mode, req.provider.as_deref())
            .map_err(|m| ApiError::validation("provider", m))?;
        let spec = resolve(
            &req,
            ResolveContext {
                config: &state.config().media,
                provider: provider.name().to_string(),
                generator_mode: mode.as_str(),
                request_id: request_id.clone(),
                caller: caller.addr.ip().to_string(),
                key_id: caller.key_id.clone(),
                random_seed: u64::from_le_bytes(
                    uuid::Uuid::new_v4().as_bytes()[..8]
                        .try_into()
                        .unwrap_or([0; 8]),
                ),
            },
        )?;
        spec_for_usage = Some(spec.clone());
        if provider.workflows().get(&spec.workflow).is_none() {
            return Err(ApiError::validation(
                "options.workflow",
                format!(
                    "{:?} is not a workflow (have: {})",
                    spec.workflow,
                    provider.workflows().names().join(", ")
                ),
            ));
        }
        if let Some(reason) = state.provider_board.down_reason(provider.name()) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "PROVIDER_UNAVAILABLE",
                format!("{} is down: {reason}", provider.name()),
            )
            .with("provider", provider.name()));
        }
        provider.prepare(&spec).await?;
        let mut rx = state
            .media
            .jobs
            .create(spec.clone(), provider.clone())
            .await?;
        Ok((spec, rx.clone(), {
            let run_async = wants_async(&req, &headers);
            // Async: answer once the provider has accepted (or refused) the job.
            // Sync: wait for the end; the job enforces the provider timeout itself.
            let limit = Duration::from_secs_f64(provider.config().timeout_s + 10.0);
            let _ = tokio::time::timeout(
                limit,
                rx.wait_for(|v| v.status.is_terminal() || (run_async && v.accepted)),
            )
            .await;
            let view = rx.borrow().clone();
            (run_async, view)
        }))
    }
    .await;

    match result {
        Ok((spec, _, (run_async, view))) => {
            let base = base_url(&state, &headers);
            if view.status == JobStatus::Failed || view.status == JobStatus::Cancelled {
                let e = view
                    .error
                    .as_ref()
                    .map(error_from_json)
                    .unwrap_or_else(|| ApiError::internal("job failed"));
                return e.with("job_id", view.job_id.clone()).into_response();
            }
            if run_async && !view.status.is_terminal() {
                let status_url = format!("{JOBS_PATH}{}", view.job_id);
                let body = json!({
                    "job_id": view.job_id,
                    "status": view.status,
                    "status_url": format!("{base}{status_url}"),
                    "events_url": format!("{base}{status_url}/events"),
                    "queue_position": view.queue_position,
                    "provider": view.provider,
                    "model": view.workflow,
                    "request_id": spec.request_id,
                });
                let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
                if let Ok(v) = HeaderValue::from_str(&status_url) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                return resp;
            }
            if view.status != JobStatus::Succeeded {
                return ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "MEDIA_TIMEOUT",
                    "the job did not finish in time",
                )
                .with("job_id", view.job_id.clone())
                .into_response();
            }
            let return_base64 =
                req.options.as_ref().and_then(|o| o.return_as.as_deref()) == Some("base64");
            match render_result(&state, &spec, &view, &base, return_base64, started).await {
                Ok(body) => Json(body).into_response(),
                Err(e) => e.into_response(),
            }
        }
        Err(e) => {
            // Failed before a job existed: the job task writes usage for the others.
            let provider = spec_for_usage
                .as_ref()
                .map(|s| s.provider.clone())
                .or_else(|| {
                    e.fields
                        .get("provider")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "none".into());
            let kind = spec_for_usage
                .as_ref()
                .map(|s| s.kind.clone())
                .or_else(|| req.kind.clone())
                .unwrap_or_else(|| "unknown".into());
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            state
                .media
                .jobs
                .metrics()
                .record(&provider, &kind, "error", latency_ms);
            let row = UsageRow {
                ts: now_text(),
                request_id,
                client: caller.addr.ip().to_string(),
                key_id: caller.key_id.clone(),
                kind: "media".into(),
                task: req.task.clone().or(Some(kind)),
                mode: Some(mode.as_str().into()),
                provider: Some(provider),
                model: spec_for_usage.as_ref().map(|s| s.workflow.clone()),
                latency_ms,
                status: e.status.as_u16(),
                error_code: Some(e.code.to_string()),
                ..Default::default()
            };
            if let Err(err) = state.store.insert_usage(row).await {
                tracing::warn!("cannot write the media usage row: {err:#}");
            }
            e.into_response()
        }
    }
}

/// The answer for a succeeded job: the design's `images` and the code's `outputs`.
async fn render_result(
    state: &SharedState,
    spec: &ImageSpec,
    view: &JobView,
    base: &str,
    return_base64: bool,
    started: Instant,
) -> ApiResult<Value> {
    let result = view.result.clone().unwrap_or(Value::Null);
    let files = result
        .get("files")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut images = Vec::new();
    let mut outputs = Vec::new();
    for f in &files {
        let id = f.get("id").and_then(Value::as_str).unwrap_or("");
        let mime = f.get("mime").and_then(Value::as_str).unwrap_or("image/png");
        let url = format!("{base}{FILES_PATH}{id}");
        let data = if return_base64 {
            let (_, bytes) = state
                .media
                .jobs
                .files()
                .read(id)
                .await
                .map_err(|e| ApiError::internal(format!("cannot read image {id}: {e:#}")))?
                .ok_or_else(|| {
                    ApiError::internal(format!("image {id} is missing from the store"))
                })?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            Value::String(url.clone())
        };
        images.push(json!({
            "id": id,
            "url": url,
            "width": f.get("width"),
            "height": f.get("height"),
            "seed": f.get("seed"),
            "mime_type": mime,
            "bytes": f.get("bytes"),
            "meta": {"workflow": spec.workflow, "seed": f.get("seed"), "aspect_ratio": spec.aspect_ratio},
        }));
        outputs.push(json!({
            "type": "image",
            "format": mime.strip_prefix("image/").unwrap_or("png"),
            "data": data,
            "encoding": if return_base64 { "base64" } else { "url" },
            "url": url,
            "width": f.get("width"),
            "height": f.get("height"),
            "duration": null,
        }));
    }
    let generation_time = result
        .get("generation_time_s")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    Ok(json!({
        "status": "completed",
        "job_id": view.job_id,
        "provider": view.provider,
        "model": view.workflow,
        "kind": spec.kind,
        "task": spec.task,
        "images": images,
        "outputs": outputs,
        "usage": {"generation_time": generation_time, "images": files.len(), "vram_used": 0},
        "meta": {
            "prompt": spec.prompt,
            "negative_prompt": spec.negative_prompt,
            "kind": spec.kind,
            "task": spec.task,
            "workflow": spec.workflow,
            "seed": spec.seed,
            "steps": spec.steps,
            "cfg_scale": spec.cfg,
            "width": spec.width,
            "height": spec.height,
            "requested_width": spec.requested_width,
            "requested_height": spec.requested_height,
            "aspect_ratio": spec.aspect_ratio,
            "prompt_id": view.upstream_id,
            "latency_ms": started.elapsed().as_secs_f64() * 1000.0,
            "generator_mode": spec.generator_mode,
            "request_id": spec.request_id,
        },
        "timestamp": now_text(),
    }))
}

async fn job_spec(state: &SharedState, id: &str) -> Option<ImageSpec> {
    let id = id.to_string();
    let text: Option<String> = state
        .store
        .with(move |c| {
            use rusqlite::OptionalExtension;
            c.query_row(
                "SELECT request FROM jobs WHERE id = ?1 AND kind = 'image'",
                [id],
                |r| r.get(0),
            )
            .optional()
        })
        .await
        .ok()
        .flatten();
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// A job as the API shows it: state, and the rendered result or error.
async fn job_body(state: &SharedState, view: &JobView, base: &str) -> Value {
    let mut body = serde_json::to_value(view).unwrap_or(Value::Null);
    let obj = body.as_object_mut().expect("a job view is an object");
    obj.remove("result");
    obj.insert(
        "status_url".into(),
        format!("{base}{JOBS_PATH}{}", view.job_id).into(),
    );
    if view.status == JobStatus::Succeeded {
        if let Some(spec) = job_spec(state, &view.job_id).await {
            if let Ok(Value::Object(r)) =
                render_result(state, &spec, view, base, false, Instant::now()).await
            {
                for key in ["images", "outputs", "usage", "meta", "model"] {
                    if let Some(v) = r.get(key) {
                        obj.insert(key.into(), v.clone());
                    }
                }
            }
        }
    }
    if let Some(err) = &view.error {
        let e = error_from_json(err);
        let mut err = err.clone();
        if let Some(o) = err.as_object_mut() {
            o.insert("status".into(), e.status.as_u16().into());
        }
        obj.insert("error".into(), err);
    }
    body
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no media job {id:?}"))
}

/// The answer for a job lookup (get or cancel): its body, or the standard 404 / 500.
async fn job_answer(
    state: &SharedState,
    headers: &HeaderMap,
    id: &str,
    found: anyhow::Result<Option<crate::media::jobs::JobView>>,
) -> ApiResult<Json<Value>> {
    let view = found
        .map_err(|e| ApiError::internal(format!("{e:#}")))?
        .ok_or_else(|| job_not_found(id))?;
    Ok(Json(
        job_body(state, &view, &base_url(state, headers)).await,
    ))
}

/// `GET /api/v1/media/jobs/{id}`.
pub async fn get_job(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let found = state.media.jobs.get(&id).await;
    job_answer(&state, &headers, &id, found).await
}

/// `DELETE /api/v1/media/jobs/{id}`: cancel (queue delete upstream, or interrupt).
pub async fn cancel_job(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let found = state.media.jobs.cancel(&id).await;
    job_answer(&state, &headers, &id, found).await
}

/// `GET /api/v1/media/jobs/{id}/events`: the job's state as Server-Sent Events
/// (event name = status), ending after the final state or at shutdown.
pub async fn job_events(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let base = base_url(&state, &headers);
    // Subscribe first, so a job ending in between is read back from the table.
    let rx = state.media.jobs.watch(&id);
    let first = match &rx {
        Some(rx) => rx.borrow().clone(),
        None => state
            .media
            .jobs
            .get(&id)
            .await
            .map_err(|e| ApiError::internal(format!("{e:#}")))?
            .ok_or_else(|| job_not_found(&id))?,
    };
    struct Cursor {
        state: SharedState,
        rx: Option<tokio::sync::watch::Receiver<JobView>>,
        pending: Option<JobView>,
        done: bool,
        base: String,
        shutdown: tokio_util::sync::CancellationToken,
    }
    let init = Cursor {
        shutdown: state.shutdown.clone(),
        state,
        rx,
        pending: Some(first),
        done: false,
        base,
    };
    let stream = futures::stream::unfold(init, |mut s| async move {
        if s.done {
            return None;
        }
        let view = match s.pending.take() {
            Some(v) => v,
            None => {
                let rx = s.rx.as_mut()?;
                tokio::select! {
                    changed = rx.changed() => {
                        // Err: the job task is gone and its last state was already sent.
                        changed.ok()?;
                        rx.borrow_and_update().clone()
                    }
                    _ = s.shutdown.cancelled() => return None,
                }
            }
        };
        s.done = view.status.is_terminal() || s.rx.is_none();
        let body = job_body(&s.state, &view, &s.base).await;
        let event = Event::default()
            .event(view.status.as_str())
            .id(view.seq.to_string())
            .json_data(body)
            .unwrap_or_else(|_| Event::default().event("error"));
        Some((Ok(event), s))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `GET /api/v1/media/files/{id}`: an image from the store, by id only.
pub async fn get_file(State(state): State<SharedState>, Path(id): Path<String>) -> Response {
    let not_found = || ApiError::not_found(format!("no media file {id:?}")).into_response();
    match state.media.jobs.files().read(&id).await {
        Ok(Some((file, bytes))) => {
            let mut resp = bytes.into_response();
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&file.mime) {
                h.insert(header::CONTENT_TYPE, v);
            }
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
                h.insert(header::ETAG, v);
            }
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            resp
        }
        Ok(None) => not_found(),
        Err(e) => {
            tracing::warn!(file = %id, "cannot read a media file: {e:#}");
            not_found()
        }
    }
}

/// `GET /api/v1/media/health`: like the LLM health (gateway, mode, providers), cheap probes only.
pub async fn health(State(state): State<SharedState>) -> Json<Value> {
    let mode = state.runtime.mode();
    let mut providers = serde_json::Map::new();
    for (name, p) in state.media.providers() {
        let mut h = p.health().await;
        if let Some(reason) = state.provider_board.down_reason(name) {
            h["status"] = "unhealthy".into();
            h["error"] = reason.into();
        }
        providers.insert(name.clone(), h);
    }
    let active = match mode {
        crate::config::GeneratorMode::Mock => state.media.mock().name().to_string(),
        crate::config::GeneratorMode::Live => state.media.default_provider().to_string(),
    };
    if !providers.contains_key(&active) {
        providers.insert(active.clone(), state.media.mock().health().await);
    }
    let healthy = providers
        .get(&active)
        .and_then(|h| h.get("status"))
        .and_then(Value::as_str)
        == Some("healthy");
    let (queued, running) = state.media.jobs.counts();
    let mut providers = Value::Object(providers);
    crate::supervisor::annotate_provider_services(&state, &mut providers);
    Json(json!({
        "gateway": if healthy { "healthy" } else { "unhealthy" },
        "mode": mode.as_str(),
        "paused": state.runtime.paused(),
        "active_provider": active,
        "providers": providers,
        "jobs": {"queued": queued, "running": running},
    }))
}

/// `GET /api/v1/media/models`: model files (checkpoints, LoRAs, VAEs) as each provider
/// reports them, plus the workflows and the kind/task tables.
pub async fn models(State(state): State<SharedState>) -> Json<Value> {
    let mut models = Vec::new();
    let mut providers = serde_json::Map::new();
    for (name, p) in state.media.providers() {
        let workflows: Vec<Value> = p
            .workflows()
            .all()
            .map(|w| {
                json!({
                    "name": w.name,
                    "description": w.description,
                    "parameters": w.parameters.keys().collect::<Vec<_>>(),
                    "source": w.source,
                })
            })
            .collect();
        let entry = if state.provider_board.down_reason(name).is_some() {
            json!({"status": "unavailable", "workflows": workflows})
        } else {
            match p.models().await {
                Ok(list) => {
                    models.extend(
                        list.iter()
                            .map(|m| serde_json::to_value(m).unwrap_or_default()),
                    );
                    json!({"status": "ok", "models": list, "workflows": workflows})
                }
                Err(e) => {
                    json!({"status": "unavailable", "error": e.message, "workflows": workflows})
                }
            }
        };
        providers.insert(name.clone(), entry);
    }
    let media = &state.config().media;
    Json(json!({
        "total": models.len(),
        "models": models,
        "default_provider": media.default_provider,
        "providers": providers,
        "kinds": media.kinds,
        "tasks": media.tasks,
        "aspect_ratios": media.aspect_ratios,
    }))
}
