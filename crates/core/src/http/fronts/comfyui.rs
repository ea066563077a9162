//! ComfyUI's own API under `/comfyui/*` and `/comfyui/api/*` (as ComfyUI serves both),
//! passed to the instances of the `comfyui` media provider: the HTTP side. The
//! upstream side (instance choice, timeouts, fail-fast, who queued what, the upstream
//! WebSocket) is `media::passthrough`.
//!
//! ComfyUI's web UI (`/`, its static files) is not served: API clients only. Errors the
//! Desk raises (auth, limits, fail-fast, rights) take ComfyUI's error shape through
//! `fronts::reshape_errors`; ComfyUI's own JSON answers pass through unchanged.

use crate::app::SharedState;
use crate::gateway::{Finished, RequestKind};
use crate::http::auth::Caller;
use crate::http::error::current_request_id;
use crate::http::ApiError;
use crate::media::passthrough::{Answer, AnswerBody, Call, CallKind, ComfyFront, Who, WsLink};
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Router};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite;

const FRONT: &str = "front:comfyui";
/// The most of an upstream error body read to describe it.
const MAX_ERROR_SNIPPET: usize = 64 * 1024;

/// Whether `path` is ComfyUI's image upload (it takes `[fronts.comfyui] max_upload_bytes`).
pub fn is_upload(path: &str) -> bool {
    matches!(path, "/comfyui/upload/image" | "/comfyui/api/upload/image")
}

/// The front's routes (auth by path, limits), at both prefixes.
pub fn routes(state: SharedState) -> Router<SharedState> {
    if !state.config().config.fronts.comfyui.enabled {
        return Router::new();
    }
    let mut gateway = Router::new();
    let mut admin = Router::new();
    for prefix in ["/comfyui", "/comfyui/api"] {
        for (path, route) in gateway_routes() {
            gateway = gateway.route(&format!("{prefix}{path}"), route);
        }
        admin = admin.route(&format!("{prefix}/free"), post(free));
    }
    let gateway = gateway.route_layer(from_fn_with_state(state.clone(), super::require_gateway));
    let admin = admin.route_layer(from_fn_with_state(state.clone(), super::require_admin));
    gateway.merge(admin)
}

/// `[fronts.comfyui] bind`: the address of the extra listener, if one is configured
/// (refused like `server.bind` when it is not loopback and there are no keys).
pub fn listener_address(
    config: &crate::config::Config,
    insecure_no_auth: bool,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let front = &config.fronts.comfyui;
    let Some(bind) = front.bind.as_deref().filter(|_| front.enabled) else {
        return Ok(None);
    };
    let addr: std::net::SocketAddr = bind
        .parse()
        .map_err(|e| anyhow::anyhow!("fronts.comfyui.bind {bind:?} is not an address: {e}"))?;
    crate::http::auth::check_bind(addr, &config.server, insecure_no_auth)
        .map_err(|e| anyhow::anyhow!("fronts.comfyui.bind: {e}"))?;
    Ok(Some(addr))
}

/// The extra listener's router: ComfyUI's paths at the root, answered by the whole
/// router under `/comfyui`, so the same auth, limits, browser rules, usage rows and
/// error shapes apply, and nothing but the front is reachable (`/` is ComfyUI's web UI:
/// not served).
pub fn listener_router(main: Router) -> Router {
    let under_prefix = tower::ServiceExt::map_request(main, |mut req: Request| {
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        if let Ok(uri) = format!("/comfyui{pq}").parse() {
            *req.uri_mut() = uri;
        }
        req
    });
    Router::new().fallback_service(under_prefix)
}

type Route = MethodRouter<SharedState>;

fn gateway_routes() -> Vec<(&'static str, Route)> {
    vec![
        ("/prompt", get(get_prompt).post(post_prompt)),
        ("/queue", get(get_queue).post(post_queue)),
        ("/history", get(get_history).post(post_history)),
        ("/history/{id}", get(get_history_one)),
        ("/view", get(view)),
        ("/object_info", get(object_info)),
        ("/object_info/{class}", get(object_info)),
        ("/system_stats", get(system_stats)),
        ("/interrupt", post(interrupt)),
        ("/upload/image", post(upload_image)),
        ("/models", get(models)),
        ("/models/{folder}", get(models)),
        ("/embeddings", get(embeddings)),
        ("/extensions", get(extensions)),
        ("/ws", get(ws)),
    ]
}

fn front(state: &SharedState) -> Result<Arc<ComfyFront>, ApiError> {
    state.media.front().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "PROVIDER_UNAVAILABLE",
            "no ComfyUI media provider is configured ([media.providers.NAME] kind = \"comfyui\")",
        )
    })
}

fn who(caller: &Caller) -> Who {
    Who {
        client: caller.addr.ip().to_canonical().to_string(),
        key_id: caller.key_id.clone(),
        key_name: caller.key.as_ref().and_then(|k| k.name.clone()),
    }
}

/// `/comfyui/api/x?q` → `/api/x?q`; `/comfyui/x?q` → `/x?q`.
fn upstream_path(uri: &axum::http::Uri) -> String {
    let path = uri.path().strip_prefix("/comfyui").unwrap_or(uri.path());
    match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

/// What one request did, for its usage row.
struct Ctx {
    state: SharedState,
    caller: Caller,
    endpoint: &'static str,
    started: Instant,
    /// Taken when the request arrives: a socket's row is written after the request.
    request_id: String,
}

impl Ctx {
    fn new(state: SharedState, caller: Caller, endpoint: &'static str) -> Self {
        Self {
            state,
            caller,
            endpoint,
            started: Instant::now(),
            request_id: current_request_id().unwrap_or_default(),
        }
    }

    async fn record(&self, status: u16, error_code: Option<String>, provider: Option<String>) {
        let mut f = Finished::new(
            RequestKind::Front,
            self.request_id.clone(),
            self.caller.requester(),
        );
        f.role = Some(FRONT.into());
        f.task = Some(self.endpoint.into());
        f.provider = provider;
        f.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        f.status = status;
        f.error_code = error_code;
        self.state.usage.record(f).await;
    }

    /// Answer and write the usage row.
    async fn finish(&self, result: Result<Answer, ApiError>) -> Response {
        let provider = self.state.media.front().map(|f| f.provider().to_string());
        let response = match result {
            Ok(answer) => render(answer, &provider).await,
            Err(e) => Err(e),
        };
        match response {
            Ok(r) => {
                self.record(r.status().as_u16(), None, provider).await;
                r
            }
            Err(e) => {
                self.record(e.status.as_u16(), Some(e.code.to_string()), provider)
                    .await;
                e.into_response()
            }
        }
    }
}

/// ComfyUI's answer as it is; a non-JSON error (aiohttp's plain text) becomes an error
/// in ComfyUI's JSON shape with the same status.
async fn render(answer: Answer, provider: &Option<String>) -> Result<Response, ApiError> {
    let status = answer.status;
    let is_json = answer
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let text = match answer.body {
            AnswerBody::Full(b) => b,
            AnswerBody::Stream(s) => {
                let limited = http_body_util::Limited::new(Body::from_stream(s), MAX_ERROR_SNIPPET);
                axum::body::to_bytes(Body::new(limited), MAX_ERROR_SNIPPET)
                    .await
                    .unwrap_or_default()
            }
        };
        let snippet: String = String::from_utf8_lossy(&text).chars().take(300).collect();
        let mut e = ApiError::from_status(status);
        e.message = format!(
            "ComfyUI answered {}: {}",
            status.as_u16(),
            if snippet.trim().is_empty() {
                status.canonical_reason().unwrap_or("error")
            } else {
                snippet.trim()
            }
        );
        let mut e = e.with("upstream_status", status.as_u16());
        if let Some(p) = provider {
            e = e.with("provider", p.clone());
        }
        return Err(e);
    }
    let body = match answer.body {
        AnswerBody::Full(b) => Body::from(b),
        AnswerBody::Stream(s) => Body::from_stream(s),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = answer.headers;
    Ok(resp)
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if too_large(&e) {
            ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            ApiError::bad_request("VALIDATION_ERROR", format!("cannot read the body: {e}"))
        }
    })
}

fn too_large(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if x.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = x.source();
    }
    false
}

/// Pass a request through as it is.
async fn pass(
    state: SharedState,
    caller: Caller,
    req: Request,
    endpoint: &'static str,
    kind: CallKind,
) -> Response {
    let ctx = Ctx::new(state, caller, endpoint);
    let result: Result<Answer, ApiError> = async {
        let front = front(&ctx.state)?;
        let config = ctx.state.config();
        let limit = if endpoint == "upload_image" {
            config.config.fronts.comfyui.max_upload_bytes
        } else {
            config.config.server.max_body_bytes
        };
        let (parts, body) = req.into_parts();
        let body = read_body(body, limit).await?;
        let call = Call {
            method: parts.method,
            path: upstream_path(&parts.uri),
            headers: parts.headers,
            body,
            kind,
        };
        Ok(front.call(&who(&ctx.caller), call, None).await?)
    }
    .await;
    ctx.finish(result).await
}

macro_rules! passthrough {
    ($name:ident, $endpoint:literal, $kind:expr) => {
        async fn $name(
            State(state): State<SharedState>,
            Extension(caller): Extension<Caller>,
            req: Request,
        ) -> Response {
            pass(state, caller, req, $endpoint, $kind).await
        }
    };
}

passthrough!(get_prompt, "prompt", CallKind::Control);
passthrough!(get_queue, "queue", CallKind::Control);
passthrough!(get_history, "history", CallKind::Transfer);
passthrough!(view, "view", CallKind::Transfer);
passthrough!(object_info, "object_info", CallKind::Transfer);
passthrough!(system_stats, "system_stats", CallKind::Control);
passthrough!(upload_image, "upload_image", CallKind::Transfer);
passthrough!(models, "models", CallKind::Control);
passthrough!(embeddings, "embeddings", CallKind::Control);
passthrough!(extensions, "extensions", CallKind::Control);
passthrough!(free, "free", CallKind::Control);

/// `GET /history/{id}`: to the instance the prompt went to.
async fn get_history_one(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    axum::extract::Path(id): axum::extract::Path<String>,
    req: Request,
) -> Response {
    let ctx = Ctx::new(state, caller, "history");
    let result: Result<Answer, ApiError> = async {
        let front = front(&ctx.state)?;
        let (parts, _) = req.into_parts();
        let call = Call {
            method: Method::GET,
            path: upstream_path(&parts.uri),
            headers: parts.headers,
            body: Bytes::new(),
            kind: CallKind::Transfer,
        };
        Ok(front.call(&who(&ctx.caller), call, Some(&id)).await?)
    }
    .await;
    ctx.finish(result).await
}

/// `POST /prompt`: refused while the gateway is paused; remembered with who sent it. A
/// `prompt_id` the client chose must be a string the Desk does not know as someone
/// else's (409 `PROMPT_ID_TAKEN`): ComfyUI would queue under it, and the sender would
/// gain the rights over the earlier prompt with that id.
async fn post_prompt(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let ctx = Ctx::new(state, caller, "prompt");
    let result: Result<Answer, ApiError> = async {
        let front = front(&ctx.state)?;
        if ctx.state.runtime.paused() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "GATEWAY_PAUSED",
                crate::gateway::PAUSED_MESSAGE,
            ));
        }
        let limit = ctx.state.config().config.server.max_body_bytes;
        let (parts, body) = req.into_parts();
        let body = read_body(body, limit).await?;
        let me = who(&ctx.caller);
        let chosen = match parsed(&body, "POST /prompt")?.get("prompt_id") {
            None => None,
            Some(Value::String(id)) => Some(id.clone()),
            // ComfyUI takes `str()` of any value: only a string is the id it will use.
            Some(_) => {
                return Err(ApiError::validation(
                    "prompt_id",
                    "must be a string when given",
                ))
            }
        };
        let _claim = match &chosen {
            Some(id) => Some(front.claim(id, &me, &ctx.state.media.jobs).map_err(|whose| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "PROMPT_ID_TAKEN",
                    format!("prompt id {id} is taken: it was queued by {whose}; choose a fresh one or leave it out"),
                )
                .with("prompt_id", id.clone())
            })?),
            None => None,
        };
        if let Some(id) = &chosen {
            let unknown_here = matches!(
                front.owner(id, &ctx.state.media.jobs),
                crate::media::passthrough::Owner::Unknown
            );
            if unknown_here && front.upstream_has(&me, id).await? {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "PROMPT_ID_TAKEN",
                    format!("prompt id {id} is taken: ComfyUI already has a prompt under it (queued or in its history, not sent through the Desk); choose a fresh one or leave it out"),
                )
                .with("prompt_id", id.clone()));
            }
        }
        let call = Call {
            method: Method::POST,
            path: upstream_path(&parts.uri),
            headers: parts.headers,
            body,
            kind: CallKind::Control,
        };
        let request_id = current_request_id().unwrap_or_default();
        Ok(front.submit(&me, call, &request_id).await?)
    }
    .await;
    ctx.finish(result).await
}

/// A state-changing body, read as the rights checks need it. Python's `json.loads`
/// takes what serde does not (`NaN`, `Infinity`, deeper nesting): a body not read here
/// could still act on ComfyUI, so it is refused rather than passed on unchecked.
fn parsed(body: &[u8], what: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "VALIDATION_ERROR",
            format!("the body of {what} must be JSON the Desk can read: {e}"),
        )
    })
}

/// The prompt ids of `delete`. ComfyUI iterates whatever it is given (a dict's keys, a
/// string's characters), so only a list of strings is taken.
fn ids(v: &serde_json::Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::validation("delete", "must be a list of prompt ids");
    match v.get("delete") {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// `POST /queue` and `POST /history` (`{"clear": true}` / `{"delete": [ids]}`): clearing
/// takes an admin; deleting another caller's prompt too. ComfyUI clears on any truthy
/// `clear` (`1`, `"no"`, `NaN`), so any `clear` at all takes an admin.
async fn clear_or_delete(
    state: SharedState,
    caller: Caller,
    req: Request,
    endpoint: &'static str,
) -> Response {
    let ctx = Ctx::new(state, caller, endpoint);
    let result: Result<Answer, ApiError> = async {
        let front = front(&ctx.state)?;
        let limit = ctx.state.config().config.server.max_body_bytes;
        let (parts, body) = req.into_parts();
        let body = read_body(body, limit).await?;
        let v = parsed(&body, &format!("POST /{endpoint}"))?;
        let Some(v) = v.as_object() else {
            return Err(ApiError::bad_request(
                "VALIDATION_ERROR",
                format!("the body of POST /{endpoint} must be a JSON object"),
            ));
        };
        let me = who(&ctx.caller);
        let admin = ctx.caller.may_control();
        if v.contains_key("clear") && !admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                format!("clearing ComfyUI's {endpoint} touches everyone's prompts: it needs an admin key (any `clear`, whatever its value)"),
            ));
        }
        front.check_owned(&ids(v)?, &me, admin, &ctx.state.media.jobs, "deleting")?;
        let call = Call {
            method: Method::POST,
            path: upstream_path(&parts.uri),
            headers: parts.headers,
            body,
            kind: CallKind::Control,
        };
        Ok(front.call(&me, call, None).await?)
    }
    .await;
    ctx.finish(result).await
}

async fn post_queue(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    clear_or_delete(state, caller, req, "queue").await
}

async fn post_history(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    clear_or_delete(state, caller, req, "history").await
}

/// `POST /interrupt` (`{"prompt_id": …}` or none: the running one). Interrupting a
/// prompt that is not the caller's takes an admin; the call always names the prompt
/// checked, so another one starting meanwhile is not interrupted instead. With nothing
/// running, the answer is ComfyUI's own (200, empty) without a call: ComfyUI takes an
/// interrupt without an id as global.
async fn interrupt(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Response {
    let ctx = Ctx::new(state, caller, "interrupt");
    let result: Result<Answer, ApiError> = async {
        let front = front(&ctx.state)?;
        let limit = ctx.state.config().config.server.max_body_bytes;
        let (parts, body) = req.into_parts();
        let body = read_body(body, limit).await?;
        let me = who(&ctx.caller);
        // ComfyUI's web UI sends no body when it knows no prompt id.
        let v = if body.trim_ascii().is_empty() {
            Value::Null
        } else {
            parsed(&body, "POST /interrupt")?
        };
        // A missing, null or empty id is ComfyUI's global interrupt: the running one here.
        let asked = match v.get("prompt_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if id.is_empty() => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(_) => {
                return Err(ApiError::validation(
                    "prompt_id",
                    "must be a string when given",
                ))
            }
        };
        let target = match asked {
            Some(id) => id,
            None => match front.running_prompt(&me).await? {
                Some(id) => id,
                None => {
                    return Ok(Answer {
                        status: StatusCode::OK,
                        headers: axum::http::HeaderMap::new(),
                        body: AnswerBody::Full(Bytes::new()),
                        // Answered here: no instance was called.
                        instance: String::new(),
                    });
                }
            },
        };
        front.check_owned(
            std::slice::from_ref(&target),
            &me,
            ctx.caller.may_control(),
            &ctx.state.media.jobs,
            "interrupting",
        )?;
        let body = Bytes::from(json!({ "prompt_id": target }).to_string());
        let mut headers = parts.headers;
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let call = Call {
            method: Method::POST,
            path: upstream_path(&parts.uri),
            headers,
            body,
            kind: CallKind::Control,
        };
        Ok(front.call(&me, call, Some(&target)).await?)
    }
    .await;
    ctx.finish(result).await
}

/// `GET /ws?clientId=…`: ComfyUI's socket, both ways. The upstream socket is opened
/// first (bounded), so a down ComfyUI is answered with 503 rather than an upgrade that
/// closes at once; either side closing closes the other.
async fn ws(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let ctx = Ctx::new(state, caller, "ws");
    let opened = async {
        let upgrade = upgrade.map_err(|r| {
            ApiError::bad_request(
                "VALIDATION_ERROR",
                format!("/ws takes a WebSocket upgrade: {r}"),
            )
        })?;
        let front = front(&ctx.state)?;
        let link = front
            .connect_ws(&who(&ctx.caller), query.as_deref())
            .await?;
        Ok::<_, ApiError>((upgrade, link, front.max_ws_message()))
    }
    .await;
    let (upgrade, link, max) = match opened {
        Ok(x) => x,
        Err(e) => return ctx.finish(Err(e)).await,
    };
    let shutdown = ctx.state.shutdown.clone();
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            pump(socket, link, shutdown).await;
            let provider = ctx.state.media.front().map(|f| f.provider().to_string());
            ctx.record(101, None, provider).await;
        })
}

/// Longest wait for a close handshake once one side has gone.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

async fn pump(client: WebSocket, link: WsLink, shutdown: tokio_util::sync::CancellationToken) {
    let WsLink {
        stream: upstream, ..
    } = link;
    let (mut up_tx, mut up_rx) = upstream.split();
    let (mut down_tx, mut down_rx) = client.split();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            m = up_rx.next() => match m {
                Some(Ok(tungstenite::Message::Close(f))) => {
                    let frame = f.map(|f| CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                    let _ = tokio::time::timeout(CLOSE_WAIT, down_tx.send(Message::Close(frame))).await;
                    break;
                }
                Some(Ok(msg)) => {
                    let Some(out) = to_client(msg) else { continue };
                    if down_tx.send(out).await.is_err() {
                        break;
                    }
                }
                Some(Err(_)) | None => break,
            },
            m = down_rx.next() => match m {
                Some(Ok(Message::Close(f))) => {
                    let frame = f.map(|f| tungstenite::protocol::CloseFrame {
                        code: f.code.into(),
                        reason: f.reason.as_str().into(),
                    });
                    let _ = tokio::time::timeout(CLOSE_WAIT, up_tx.send(tungstenite::Message::Close(frame))).await;
                    break;
                }
                Some(Ok(msg)) => {
                    let Some(out) = to_upstream(msg) else { continue };
                    if up_tx.send(out).await.is_err() {
                        break;
                    }
                }
                Some(Err(_)) | None => break,
            },
        }
    }
    // Whichever side went first, the other is closed too (bounded).
    let _ = tokio::time::timeout(CLOSE_WAIT, up_tx.close()).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, down_tx.close()).await;
}

/// Data frames cross; pings and pongs are answered by each side's own library.
fn to_client(m: tungstenite::Message) -> Option<Message> {
    match m {
        tungstenite::Message::Text(t) => Some(Message::Text(t.as_str().into())),
        tungstenite::Message::Binary(b) => Some(Message::Binary(b)),
        _ => None,
    }
}

fn to_upstream(m: Message) -> Option<tungstenite::Message> {
    match m {
        Message::Text(t) => Some(tungstenite::Message::Text(t.as_str().into())),
        Message::Binary(b) => Some(tungstenite::Message::Binary(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_comfyuis_api_prefix_and_query() {
        let uri: axum::http::Uri = "/comfyui/api/view?filename=a.png&type=output"
            .parse()
            .unwrap();
        assert_eq!(upstream_path(&uri), "/api/view?filename=a.png&type=output");
        let uri: axum::http::Uri = "/comfyui/prompt".parse().unwrap();
        assert_eq!(upstream_path(&uri), "/prompt");
        assert!(is_upload("/comfyui/api/upload/image"));
        assert!(!is_upload("/comfyui/view"));
    }
}
