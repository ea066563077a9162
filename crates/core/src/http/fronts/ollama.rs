//! Ollama's own API at `/api/*` and `/ollama/api/*`: requests go as they came to the
//! instance that holds the model, answers (NDJSON streams included) come back chunk by
//! chunk; `tags`, `ps` and `version` merge the instances; `pull`, `delete`, `copy` and
//! `create` need an admin key, and a pull of a model already being pulled joins it.

use crate::app::SharedState;
use crate::http::auth::Caller;
use crate::http::error::current_request_id;
use crate::http::routes::llm::request_timeout;
use crate::http::ApiError;
use crate::llm::front::{FrontCall, FrontStream};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::convert::Infallible;

/// `[fronts.ollama] bind`, checked: where the extra listener goes, if anywhere.
pub fn listener_address(
    config: &crate::config::Config,
    insecure_no_auth: bool,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let Some(bind) = config.fronts.ollama.bind.as_deref() else {
        return Ok(None);
    };
    let addr: std::net::SocketAddr = bind
        .parse()
        .map_err(|e| anyhow::anyhow!("fronts.ollama.bind {bind:?} is not an address: {e}"))?;
    crate::http::auth::check_bind(addr, &config.server, insecure_no_auth)
        .map_err(|e| anyhow::anyhow!("fronts.ollama.bind: {e}"))?;
    Ok(Some(addr))
}

/// The extra listener's router: Ollama's paths at the root, answered by the whole router
/// under `/ollama`, so the same auth, limits, rules, usage rows and error shapes apply
/// and nothing but the Ollama front is reachable.
pub fn listener_router(main: Router) -> Router {
    let under_prefix = tower::ServiceExt::map_request(main, |mut req: axum::extract::Request| {
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/", axum::http::uri::PathAndQuery::as_str);
        // Only Ollama's own paths; anything else becomes an unknown one (404).
        let target = if pq.starts_with("/api/") && !pq.starts_with("/api/v1/") {
            format!("/ollama{pq}")
        } else {
            "/ollama/not-an-ollama-route".to_string()
        };
        if let Ok(uri) = target.parse() {
            *req.uri_mut() = uri;
        }
        req
    });
    Router::new().fallback_service(under_prefix)
}

/// Every route, at `/api/*` and again under `/ollama`.
pub fn routes(state: SharedState) -> Router<SharedState> {
    let open = Router::new()
        .route("/api/chat", forwarded("chat"))
        .route("/api/generate", forwarded("generate"))
        .route("/api/embed", forwarded("embed"))
        .route("/api/embeddings", forwarded("embeddings"))
        .route("/api/show", forwarded("show"))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/version", get(version))
        .route_layer(from_fn_with_state(state.clone(), super::require_gateway));
    let admin = Router::new()
        .route("/api/pull", post(pull))
        .route("/api/delete", delete(remove))
        .route("/api/copy", post(copy))
        .route("/api/create", forwarded("create"))
        .route_layer(from_fn_with_state(state, super::require_admin));
    let api = open.merge(admin);
    Router::new().merge(api.clone()).nest("/ollama", api)
}

fn front_call(
    caller: Option<Extension<Caller>>,
    headers: &HeaderMap,
    endpoint: &'static str,
) -> FrontCall {
    FrontCall {
        front: "ollama",
        endpoint,
        request_id: current_request_id().unwrap_or_default(),
        requester: caller.map(|Extension(c)| c.requester()).unwrap_or_default(),
        timeout: request_timeout(headers),
    }
}

/// The request's JSON object (Ollama's API takes nothing else).
fn object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "VALIDATION_ERROR",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(
            "VALIDATION_ERROR",
            format!("invalid JSON: {e}"),
        )),
    }
}

/// The model a request names (`model`; older clients send `name`).
fn model_of(body: &Map<String, Value>) -> Result<String, ApiError> {
    body.get("model")
        .or_else(|| body.get("name"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty() && m.len() <= 200)
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::bad_request("VALIDATION_ERROR", "model is required").with("field", "model")
        })
}

/// A partial line held back for its end (one NDJSON line; an unstreamed answer whole)
/// before it is passed on as it comes.
const MAX_HELD_LINE: usize = 8 * 1024 * 1024;

/// The forwarded answer, whole lines at a time; a failure mid-stream becomes Ollama's
/// own error line (`{"error": …}`), which its clients raise. Ollama's clients parse
/// each line: a line cut by a dropped upstream would be a JSON error in the client,
/// the Desk's message lost, so a cut line is never passed on.
fn streamed(s: FrontStream) -> Response {
    struct Lines {
        up: futures::stream::BoxStream<'static, Result<Bytes, crate::llm::Error>>,
        held: bytes::BytesMut,
        ended: bool,
    }
    let start = Lines {
        up: s.body,
        held: bytes::BytesMut::new(),
        ended: false,
    };
    let body = futures::stream::unfold(start, |mut l| async move {
        loop {
            if l.ended {
                return None;
            }
            match l.up.next().await {
                Some(Ok(bytes)) => {
                    l.held.extend_from_slice(&bytes);
                    let whole = match memchr::memrchr(b'\n', &l.held) {
                        Some(i) => i + 1,
                        // Too long for a line worth holding: passed on as it is.
                        None if l.held.len() > MAX_HELD_LINE => l.held.len(),
                        None => continue,
                    };
                    let out = l.held.split_to(whole).freeze();
                    return Some((Ok::<_, Infallible>(out), l));
                }
                Some(Err(e)) => {
                    l.ended = true;
                    l.held.clear();
                    let line = Bytes::from(format!("{}\n", json!({ "error": e.to_string() })));
                    return Some((Ok(line), l));
                }
                None => {
                    l.ended = true;
                    if l.held.is_empty() {
                        return None;
                    }
                    // The last line, or an unstreamed answer (no newline at its end).
                    let out = std::mem::take(&mut l.held).freeze();
                    return Some((Ok(out), l));
                }
            }
        }
    });
    answer(
        s.status,
        s.content_type,
        [s.provider, s.instance],
        Body::from_stream(body),
    )
}

/// The largest answer read whole before its status is sent (an unstreamed generation,
/// an embedding of many inputs); a larger one is passed on as it comes.
const MAX_WHOLE_ANSWER: usize = 64 * 1024 * 1024;

/// An answer Ollama sends whole (a generation asked for unstreamed, an embedding, a
/// model's details), read whole before its status is sent: a failure on the way is then
/// an error status with Ollama's `{"error": …}`, which its clients raise, not a 200 whose
/// body they cannot read. Past [`MAX_WHOLE_ANSWER`] it goes on as a stream (what was
/// read first, then the rest), as before: never refused for its size.
async fn answered_whole(s: FrontStream) -> Result<Response, ApiError> {
    let mut whole = bytes::BytesMut::new();
    let mut body = s.body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        whole.extend_from_slice(&chunk);
        if whole.len() > MAX_WHOLE_ANSWER {
            let read = futures::stream::once(async move { Ok(whole.freeze()) });
            return Ok(streamed(FrontStream {
                body: read.chain(body).boxed(),
                ..s
            }));
        }
    }
    Ok(answer(
        s.status,
        s.content_type,
        [s.provider, s.instance],
        Body::from(whole.freeze()),
    ))
}

fn answer(status: u16, content_type: Option<String>, who: [String; 2], body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        content_type
            .and_then(|c| HeaderValue::from_str(&c).ok())
            .unwrap_or(HeaderValue::from_static("application/json")),
    );
    for (name, value) in ["x-sparklio-provider", "x-sparklio-instance"]
        .into_iter()
        .zip(who)
    {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    resp
}

async fn forward(
    state: &SharedState,
    call: FrontCall,
    path: &str,
    body: Bytes,
) -> Result<Response, ApiError> {
    let parsed = object(&body)?;
    let model = model_of(&parsed)?;
    // Mock mode answers what a model would, in Ollama's own shape.
    if mock_mode(state) {
        match call.endpoint {
            "chat" | "generate" => {
                return super::ollama_mock::answer(state, &call, &parsed, model).await
            }
            "embed" | "embeddings" => {
                return Ok(super::ollama_mock::embed(state, &call, &parsed, model)
                    .await
                    .into_response())
            }
            "show" => {
                state.llm.record_front(&call, None).await;
                return Ok(Json(super::ollama_mock::show(&model)).into_response());
            }
            _ => {}
        }
    }
    let whole = match call.endpoint {
        "chat" | "generate" => parsed.get("stream").and_then(Value::as_bool) == Some(false),
        _ => matches!(call.endpoint, "embed" | "embeddings" | "show"),
    };
    let s = state
        .llm
        .ollama_forward(&call, reqwest::Method::POST, path, Some(body), Some(model))
        .await?;
    if whole {
        return answered_whole(s).await;
    }
    Ok(streamed(s))
}

/// `POST /api/<endpoint>`: forwarded to the instance holding the body's model (or
/// answered by the mock in mock mode).
fn forwarded(endpoint: &'static str) -> axum::routing::MethodRouter<SharedState> {
    post(
        move |State(state): State<SharedState>,
              caller: Option<Extension<Caller>>,
              headers: HeaderMap,
              body: Bytes| async move {
            let path = format!("/api/{endpoint}");
            forward(&state, front_call(caller, &headers, endpoint), &path, body).await
        },
    )
}

fn mock_mode(state: &SharedState) -> bool {
    state.runtime.mode() == crate::config::GeneratorMode::Mock
}

async fn copy(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let parsed = object(&body)?;
    let source = parsed
        .get("source")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("VALIDATION_ERROR", "source is required"))?
        .to_string();
    let call = front_call(caller, &headers, "copy");
    let s = state
        .llm
        .ollama_forward(
            &call,
            reqwest::Method::POST,
            "/api/copy",
            Some(body),
            Some(source),
        )
        .await?;
    Ok(streamed(s))
}

async fn remove(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let parsed = object(&body)?;
    let model = model_of(&parsed)?;
    let call = front_call(caller, &headers, "delete");
    let s = state
        .llm
        .ollama_forward(
            &call,
            reqwest::Method::DELETE,
            "/api/delete",
            Some(body),
            Some(model),
        )
        .await?;
    Ok(streamed(s))
}

/// `POST /api/pull`: one download per model; a second request follows the first's
/// progress. `stream: false` answers once it is done.
async fn pull(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let parsed = object(&body)?;
    let model = model_of(&parsed)?;
    let wants_stream = parsed.get("stream").and_then(Value::as_bool) != Some(false);
    let call = front_call(caller, &headers, "pull");
    let (pull, joined) = state.llm.pull(&call, &model, None).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-sparklio-pull-id",
        HeaderValue::from_str(&pull.id).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    headers.insert(
        "x-sparklio-pull",
        HeaderValue::from_static(if joined { "joined" } else { "started" }),
    );
    if wants_stream {
        let lines = pull.follow().map(Ok::<_, Infallible>);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        return Ok((headers, Body::from_stream(lines)).into_response());
    }
    match pull.wait().await {
        Ok(()) => Ok((headers, Json(json!({"status": "success"}))).into_response()),
        Err(e) => Ok((
            StatusCode::INTERNAL_SERVER_ERROR,
            headers,
            Json(json!({ "error": e })),
        )
            .into_response()),
    }
}

/// `GET /api/tags` / `/api/ps`: every instance's list in one, each model once, with
/// `sparklio.held_by` naming the provider and instances that have it.
async fn merged(state: &SharedState, path: &str) -> Result<Value, ApiError> {
    let answers = state.llm.ollama_each_instance(path).await;
    let mut models: Vec<Value> = Vec::new();
    let mut first_error = None;
    let mut answered = false;
    for (provider, instance, answer) in answers {
        match answer {
            Ok(v) => {
                answered = true;
                for m in v["models"].as_array().into_iter().flatten() {
                    let name = m.get("name").or_else(|| m.get("model")).cloned();
                    let holder = json!({"provider": provider, "instance": instance});
                    match models
                        .iter_mut()
                        .find(|e| e.get("name").or_else(|| e.get("model")) == name.as_ref())
                    {
                        Some(e) => {
                            if let Some(list) = e["sparklio"]["held_by"].as_array_mut() {
                                list.push(holder);
                            }
                        }
                        None => {
                            let mut m = m.clone();
                            m["sparklio"] = json!({ "held_by": [holder] });
                            models.push(m);
                        }
                    }
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (answered, first_error) {
        (false, Some(e)) => Err(e.into()),
        _ => Ok(json!({ "models": models })),
    }
}

async fn tags(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let call = front_call(caller, &headers, "tags");
    let r = if mock_mode(&state) {
        Ok(super::ollama_mock::tags(&state))
    } else {
        merged(&state, "/api/tags").await
    };
    state
        .llm
        .record_front(&call, r.as_ref().err().map(|e| (e.code, e.status.as_u16())))
        .await;
    Ok(Json(r?))
}

async fn ps(
    State(state): State<SharedState>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let call = front_call(caller, &headers, "ps");
    let r = if mock_mode(&state) {
        Ok(json!({ "models": [] }))
    } else {
        merged(&state, "/api/ps").await
    };
    state
        .llm
        .record_front(&call, r.as_ref().err().map(|e| (e.code, e.status.as_u16())))
        .await;
    Ok(Json(r?))
}

/// `GET /api/version`: the first instance that answers.
async fn version(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    if mock_mode(&state) {
        return Ok(Json(super::ollama_mock::version()));
    }
    let mut first_error = None;
    for (_, _, answer) in state.llm.ollama_each_instance("/api/version").await {
        match answer {
            Ok(v) => return Ok(Json(v)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.map_or_else(
        || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "PROVIDER_UNAVAILABLE",
                "no Ollama provider is configured",
            )
        },
        Into::into,
    ))
}
