//! ComfyUI's HTTP routes (everything but the WebSocket), as recorded.

use super::{fixture_body, multipart, plain_500, Inner, Item, MODEL_FOLDERS};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(super) async fn origin_check(
    State(inner): State<Arc<Inner>>,
    req: Request,
    next: Next,
) -> Response {
    inner
        .requests
        .lock()
        .unwrap()
        .push(format!("{} {}", req.method(), req.uri()));
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(origin) = origin {
        inner.origins.lock().unwrap().push(origin.clone());
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split("://").nth(1).unwrap_or("");
        if origin_host != host {
            // Recorded: 403 with an empty body on every route.
            return StatusCode::FORBIDDEN.into_response();
        }
    }
    next.run(req).await
}

pub(super) async fn system_stats() -> Json<Value> {
    Json(fixture_body("get_system_stats"))
}

pub(super) async fn object_info(State(inner): State<Arc<Inner>>) -> Json<Value> {
    Json(Value::Object(inner.object_info.lock().unwrap().clone()))
}

pub(super) async fn object_info_one(
    State(inner): State<Arc<Inner>>,
    Path(class): Path<String>,
) -> Json<Value> {
    let info = inner.object_info.lock().unwrap();
    Json(match info.get(&class) {
        Some(v) => json!({ class: v }),
        None => json!({}),
    })
}

/// A body as Python's `json.loads` reads it: `NaN`, `Infinity` and `-Infinity` are
/// numbers there (truthy ones), so they become non-empty strings here, which compare
/// and test alike for what the routes do with them. (Nesting deeper than serde's 128
/// levels, which Python takes, is still refused.)
fn loads(body: &[u8]) -> Option<Value> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Some(v);
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut out = String::with_capacity(text.len() + 8);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) = ["NaN", "Infinity", "-Infinity"]
            .into_iter()
            .find(|w| rest.starts_with(w))
        {
            out.push_str(&format!("\"{word}\""));
            rest = &rest[word.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    serde_json::from_str(&out).ok()
}

/// Python's truth of a JSON value (`if json_data["clear"]:`).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// What Python's `for x in value` goes through: a list's items, a dict's keys, a
/// string's characters; `None` for what it cannot iterate (a TypeError: 500).
fn py_iter(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) => Some(a.clone()),
        Value::Object(o) => Some(o.keys().map(|k| json!(k)).collect()),
        Value::String(s) => Some(s.chars().map(|c| json!(c.to_string())).collect()),
        _ => None,
    }
}

/// ComfyUI's `POST /queue` and `POST /history` body: `clear` on any truthy value, then
/// `delete`'s ids; `None` where ComfyUI fails with a 500 (not JSON, not a dict, a
/// `delete` it cannot iterate).
fn clear_and_delete(body: &[u8]) -> Option<(bool, Vec<String>)> {
    let Value::Object(v) = loads(body)? else {
        return None;
    };
    let clear = v.get("clear").is_some_and(truthy);
    let delete = match v.get("delete") {
        Some(d) => py_iter(d)?,
        None => Vec::new(),
    };
    // Only a string is equal to a prompt id.
    let ids = delete
        .into_iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    Some((clear, ids))
}

fn err400(body: Value) -> Response {
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn queue_remaining(inner: &Inner) -> usize {
    inner.pending.lock().unwrap().len() + inner.running.lock().unwrap().iter().count()
}

pub(super) async fn get_prompt(State(inner): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({"exec_info": {"queue_remaining": queue_remaining(&inner)}}))
}

pub(super) async fn post_prompt(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    // On a task of its own: aiohttp does not cancel a handler whose caller went away.
    let handled = tokio::spawn(async move {
        let delay = inner.knobs.submit_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        queue_prompt(&inner, &body)
    });
    handled.await.unwrap_or_else(|_| plain_500())
}

fn queue_prompt(inner: &Arc<Inner>, body: &Bytes) -> Response {
    let Some(v) = loads(body) else {
        return plain_500();
    };
    if let Some(rejection) = inner.knobs.reject_next.lock().unwrap().take() {
        return err400(rejection);
    }
    let Some(Value::Object(prompt)) = v.get("prompt").cloned() else {
        return err400(fixture_body("post_prompt_err_no_prompt_key"));
    };
    {
        let info = inner.object_info.lock().unwrap();
        for (id, node) in &prompt {
            let class = node["class_type"].as_str().unwrap_or("");
            if !info.contains_key(class) {
                let mut b = fixture_body("post_prompt_err_unknown_class");
                b["error"]["message"] = json!(format!(
                    "Cannot execute because node {class} does not exist."
                ));
                b["error"]["details"] = json!(format!("Node ID '#{id}'"));
                return err400(b);
            }
        }
        for (id, node) in &prompt {
            if node["class_type"] == "CheckpointLoaderSimple" {
                let name = node["inputs"]["ckpt_name"].clone();
                let list =
                    info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0].clone();
                if !list.as_array().unwrap().contains(&name) {
                    let mut b = fixture_body("post_prompt_err_missing_checkpoint");
                    let ne = b["node_errors"]["1"].take();
                    b["node_errors"] = json!({ id.clone(): ne });
                    b["node_errors"][id]["errors"][0]["extra_info"]["received_value"] = name;
                    return err400(b);
                }
            }
        }
    }
    let number = inner.counter.fetch_add(1, Ordering::SeqCst) as i64;
    let prompt_id = v["prompt_id"]
        .as_str()
        .filter(|_| !inner.knobs.ignore_prompt_id.load(Ordering::SeqCst))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    inner
        .received
        .lock()
        .unwrap()
        .push(Value::Object(prompt.clone()));
    inner
        .timings
        .lock()
        .unwrap()
        .insert(prompt_id.clone(), (std::time::Instant::now(), None));
    inner.pending.lock().unwrap().push(Item {
        number,
        prompt_id: prompt_id.clone(),
        prompt,
        client_id: v["client_id"].as_str().map(str::to_string),
    });
    super::worker::broadcast_status(inner);
    inner.wake.notify_one();
    Json(json!({"prompt_id": prompt_id, "number": number, "node_errors": {}})).into_response()
}

pub(super) async fn history(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
) -> Json<Value> {
    let h = inner.history.lock().unwrap();
    Json(match h.get(&id) {
        Some(e) => json!({ id: e }),
        None => json!({}),
    })
}

/// All history (the newest `max_items` when given).
pub(super) async fn history_all(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let h = inner.history.lock().unwrap();
    let max = q
        .get("max_items")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let mut entries: Vec<(&String, &Value)> = h.iter().collect();
    entries.sort_by_key(|(_, e)| e["prompt"][0].as_i64().unwrap_or(0));
    let skip = entries.len().saturating_sub(max);
    let out: Map<String, Value> = entries
        .into_iter()
        .skip(skip)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Json(Value::Object(out))
}

pub(super) async fn post_history(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let Some((clear, ids)) = clear_and_delete(&body) else {
        return plain_500();
    };
    let mut h = inner.history.lock().unwrap();
    if clear {
        h.clear();
    }
    for id in ids {
        h.remove(&id);
    }
    StatusCode::OK.into_response()
}

pub(super) async fn get_queue(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let running: Vec<Value> = inner
        .running
        .lock()
        .unwrap()
        .iter()
        .map(|(id, p)| json!([0, id, p, {}, []]))
        .collect();
    let mut pending: Vec<(i64, Value)> = inner
        .pending
        .lock()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i.number,
                json!([i.number, i.prompt_id, i.prompt, {"client_id": i.client_id}, []]),
            )
        })
        .collect();
    pending.sort_by_key(|p| p.0);
    Json(
        json!({"queue_running": running, "queue_pending": pending.into_iter().map(|p| p.1).collect::<Vec<_>>()}),
    )
}

pub(super) async fn post_queue(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let Some((clear, ids)) = clear_and_delete(&body) else {
        return plain_500();
    };
    if clear {
        inner.pending.lock().unwrap().clear();
    }
    for id in ids {
        inner.queue_deletes.lock().unwrap().push(id.clone());
        inner.pending.lock().unwrap().retain(|i| i.prompt_id != id);
    }
    StatusCode::OK.into_response()
}

pub(super) async fn interrupt(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    // Recorded: 200 with an empty body; a body that is not JSON counts as `{}`.
    let Value::Object(v) = loads(&body).unwrap_or_else(|| json!({})) else {
        // `json_data.get` on a list: an AttributeError.
        return plain_500();
    };
    // `if prompt_id:` targets the running prompt only when it has that id; a falsy or
    // missing one interrupts whatever runs.
    let target = v.get("prompt_id").filter(|p| truthy(p)).cloned();
    inner
        .interrupt_requests
        .lock()
        .unwrap()
        .push(target.clone());
    let running = inner.running.lock().unwrap().as_ref().map(|r| r.0.clone());
    let hit = match (&target, &running) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(t), Some(r)) => t.as_str() == Some(r.as_str()),
    };
    if hit {
        inner.interrupts.fetch_add(1, Ordering::SeqCst);
        inner.interrupt.store(true, Ordering::SeqCst);
    }
    StatusCode::OK.into_response()
}

/// `{"unload_models": true, "free_memory": true}`: 200 with an empty body.
pub(super) async fn free(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return plain_500();
    };
    inner.frees.lock().unwrap().push(v);
    StatusCode::OK.into_response()
}

/// Multipart form: `image` (the file), `type` (input), `subfolder`, `overwrite`.
/// Answers `{"name", "subfolder", "type"}`; a different file under a taken name is
/// renamed `name (1).png`, the same file keeps its name.
pub(super) async fn upload_image(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(parts) = multipart::parse(content_type, &body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let field = |name: &str| {
        parts
            .iter()
            .find(|p| p.name == name)
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    };
    let Some(image) = parts.iter().find(|p| p.name == "image") else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Some(filename) = image.filename.clone().filter(|f| !f.is_empty()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let kind = field("type").unwrap_or_else(|| "input".into());
    let subfolder = field("subfolder").unwrap_or_default();
    if !["input", "temp", "output"].contains(&kind.as_str())
        || filename.contains("..")
        || filename.contains('/')
        || subfolder.contains("..")
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let overwrite = matches!(field("overwrite").as_deref(), Some("true" | "1"));
    let mut uploads = inner.uploads.lock().unwrap();
    let (stem, ext) = match filename.rfind('.') {
        Some(dot) => (&filename[..dot], &filename[dot..]),
        None => (filename.as_str(), ""),
    };
    let mut name = filename.clone();
    let mut n = 1;
    let taken_by_another = |name: &str| {
        uploads
            .get(&(kind.clone(), subfolder.clone(), name.to_string()))
            .is_some_and(|existing| *existing != image.data)
    };
    while !overwrite && taken_by_another(&name) {
        name = format!("{stem} ({n}){ext}");
        n += 1;
    }
    uploads.insert(
        (kind.clone(), subfolder.clone(), name.clone()),
        image.data.to_vec(),
    );
    Json(json!({"name": name, "subfolder": subfolder, "type": kind})).into_response()
}

pub(super) async fn view(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filename = q.get("filename").cloned().unwrap_or_default();
    let subfolder = q.get("subfolder").cloned().unwrap_or_default();
    let kind = q.get("type").cloned().unwrap_or_else(|| "output".into());
    if !["output", "input", "temp"].contains(&kind.as_str())
        || filename.contains("..")
        || filename.starts_with('/')
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    if subfolder.contains("..") {
        return StatusCode::FORBIDDEN.into_response();
    }
    let bytes = inner
        .files
        .lock()
        .unwrap()
        .get(&filename)
        .cloned()
        .or_else(|| {
            inner
                .uploads
                .lock()
                .unwrap()
                .get(&(kind, subfolder, filename.clone()))
                .cloned()
        });
    match bytes {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, "image/png".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("filename=\"{filename}\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(super) async fn model_folders() -> Json<Value> {
    Json(json!(MODEL_FOLDERS))
}

pub(super) async fn models(
    State(inner): State<Arc<Inner>>,
    Path(folder): Path<String>,
) -> Response {
    match folder.as_str() {
        "checkpoints" => Json(json!(inner.checkpoints.lock().unwrap().clone())).into_response(),
        f if MODEL_FOLDERS.contains(&f) => Json(json!([])).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Embedding names without their extension; none installed.
pub(super) async fn embeddings() -> Json<Value> {
    Json(json!([]))
}

/// The web UI's extension scripts (the front-end's own; none from custom nodes here).
pub(super) async fn extensions() -> Json<Value> {
    Json(json!([
        "/extensions/core/clipspace.js",
        "/extensions/core/groupNode.js"
    ]))
}
