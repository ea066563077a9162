//! Media Gateway routes: image generation (both request shapes), jobs with
//! Server-Sent Events, the file store, health and models.

use crate::app::SharedState;
use crate::http::auth::Caller;
use crate::http::auth::{Front, Scope};
use crate::http::error::current_request_id;
use crate::http::{ApiError, ApiJson, ApiResult};
use crate::media::jobs::{JobStatus, JobView};
use crate::media::provider::ImageSpec;
use crate::media::request::GenerateRequest;
use crate::media::views::MediaAnswer;
use crate::media::{Generated, MediaRequestCtx};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;

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

/// The base of the URLs in an answer (see `http::urls`).
pub(crate) fn base_url(state: &SharedState, headers: &HeaderMap) -> String {
    crate::http::urls::base_url(
        state.config().server.public_url.as_deref(),
        &state.browser(),
        &state.bound_all,
        headers,
    )
}

/// A file's URL, signed so an `<img src>` can fetch it without a key.
fn file_url(state: &SharedState, base: &str, id: &str) -> String {
    format!("{base}{FILES_PATH}{id}?{}", state.signer.query_for(id))
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
    let generated_async = wants_async(&req, &headers);
    let ctx = MediaRequestCtx {
        request_id: req
            .request_id
            .clone()
            .or_else(current_request_id)
            .unwrap_or_default(),
        requester: caller.requester(),
        run_async: generated_async,
        base64_by_default: caller
            .key
            .as_ref()
            .and_then(|k| k.media_return.clone())
            .unwrap_or_else(|| state.config().media.default_return.clone())
            == "base64",
    };
    // Errors carry the id the request goes by (its own `request_id` when it sent one).
    let request_id = ctx.request_id.clone();
    let generated = match state.media.generate(req, ctx).await {
        Ok(g) => g,
        Err(e) => {
            return ApiError::from(e)
                .with("request_id", request_id)
                .into_response()
        }
    };
    let base = base_url(&state, &headers);
    let Generated {
        spec,
        view,
        return_base64,
        started,
    } = generated;
    // Asked for async: always the job (it may already have finished: a mock draws at once).
    if generated_async || !view.status.is_terminal() {
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
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match render_result(&state, &spec, &view, &base, return_base64, latency_ms).await {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The answer for a succeeded job: the design's `images` and the code's `outputs`.
pub(crate) async fn render_result(
    state: &SharedState,
    spec: &ImageSpec,
    view: &JobView,
    base: &str,
    return_base64: bool,
    latency_ms: f64,
) -> ApiResult<MediaAnswer> {
    let base64 = if return_base64 {
        let mut all = Vec::new();
        for f in view.result.iter().flat_map(|r| &r.files) {
            let (_, bytes) = state
                .media
                .files()
                .read(&f.id)
                .await
                .map_err(|e| ApiError::internal(format!("cannot read image {}: {e:#}", f.id)))?
                .ok_or_else(|| {
                    ApiError::internal(format!("image {} is missing from the store", f.id))
                })?;
            all.push(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        Some(all)
    } else {
        None
    };
    let url_of = |id: &str| file_url(state, base, id);
    Ok(MediaAnswer::new(spec, view, &url_of, base64, latency_ms))
}

/// How long a stored job took, from its creation to its last change.
fn job_latency_ms(view: &JobView) -> f64 {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (t(&view.created_at), t(&view.updated_at)) {
        (Some(a), Some(b)) => (b - a).num_milliseconds().max(0) as f64,
        _ => 0.0,
    }
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
        if let Some(spec) = state.media.job_spec(&view.job_id).await {
            if let Ok(Value::Object(r)) =
                render_result(state, &spec, view, base, false, job_latency_ms(view))
                    .await
                    .map(|a| serde_json::to_value(a).unwrap_or_default())
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
        let status = crate::media::Error::from_json(err).status();
        let mut err = err.clone();
        if let Some(o) = err.as_object_mut() {
            o.insert("status".into(), status.into());
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

/// A job is the business of its own caller only: the same key, or, for a job asked for
/// without one, a caller without one from a trusted address; an admin key may touch any.
/// Job ids show in the health's queue, so any gateway key could otherwise read another's
/// prompt and images, or stop them. An unknown id passes, to be answered 404.
async fn require_own_job(
    state: &SharedState,
    caller: &Caller,
    id: &str,
    verb: &str,
) -> ApiResult<()> {
    let Some(spec) = state.media.job_spec(id).await else {
        return Ok(());
    };
    let own = match &spec.key_id {
        Some(k) => caller.key_id.as_deref() == Some(k.as_str()),
        None => caller.key_id.is_none() && caller.trusted,
    };
    if own || caller.admin {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        format!("media job {id:?} was asked for by another caller; only it or an admin key may {verb} it"),
    ))
}

/// `GET /api/v1/media/jobs/{id}`: the job's own caller or an admin.
pub async fn get_job(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_own_job(&state, &caller, &id, "read").await?;
    let found = state.media.jobs.get(&id).await;
    job_answer(&state, &headers, &id, found).await
}

/// `DELETE /api/v1/media/jobs/{id}`: cancel (queue delete upstream, or interrupt); the
/// job's own caller or an admin.
pub async fn cancel_job(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_own_job(&state, &caller, &id, "cancel").await?;
    let found = state.media.jobs.cancel(&id).await;
    job_answer(&state, &headers, &id, found).await
}

/// `GET /api/v1/media/jobs/{id}/events`: the job's state as Server-Sent Events
/// (event name = status), ending after the final state or at shutdown. The job's own
/// caller or an admin.
pub async fn job_events(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    require_own_job(&state, &caller, &id, "follow").await?;
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

#[derive(Debug, Deserialize)]
pub struct Signature {
    exp: Option<u64>,
    sig: Option<String>,
}

/// `GET /api/v1/media/files/{id}`: an image from the store, by id only. A valid
/// signature (`?exp=&sig=`, as in the URLs answers carry) opens it without a key; an
/// unsigned request needs what any gateway route needs.
pub async fn get_file(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(signature): Query<Signature>,
    req_headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
) -> Response {
    let signed = match (signature.exp, signature.sig.as_deref()) {
        (Some(exp), Some(sig)) => state.signer.verify(&id, exp, sig),
        _ => false,
    };
    if !signed {
        let checked = state.auth().check(
            peer,
            crate::http::auth::bearer(&req_headers),
            Scope::Gateway,
            Front::Sparklio,
        );
        if let Err(e) = checked {
            return e.into_response();
        }
    }
    let not_found = || ApiError::not_found(format!("no media file {id:?}")).into_response();
    match state.media.files().read(&id).await {
        Ok(Some((file, bytes))) => {
            let mut resp = bytes.into_response();
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&file.mime) {
                h.insert(header::CONTENT_TYPE, v);
            }
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400, immutable"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
                h.insert(header::ETAG, v);
            }
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
pub async fn health(State(state): State<SharedState>) -> impl IntoResponse {
    let mut body = state.media.health().await;
    for (name, provider) in &mut body.providers {
        provider.services = state.supervisor.provider_services(name);
    }
    Json(body)
}

/// `GET /api/v1/media/models`: model files (checkpoints, LoRAs, VAEs) as each provider
/// reports them, plus the workflows and the kind/task tables.
pub async fn models(State(state): State<SharedState>) -> impl IntoResponse {
    Json(state.media.models().await)
}
