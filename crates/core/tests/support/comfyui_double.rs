//! A test double of ComfyUI (HTTP + WebSocket on one port, 127.0.0.1), following the
//! recordings in `tests/fixtures/comfyui/`: per-client_id routing of execution events,
//! `executing {node: null}` as the last message after history is written, 400 with
//! `node_errors`, 403 on a foreign Origin, plain-text 500 on bad JSON, `/view`
//! traversal refusals, `/queue` delete and `/interrupt` at node boundaries.
//! Knobs: slow nodes, dropping the socket mid-job, an execution error, models.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/comfyui");

pub fn fixture(rel: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{rel}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn fixture_body(name: &str) -> Value {
    fixture(&format!("http/{name}.json"))["response"]["body_json"].clone()
}

#[derive(Default)]
pub struct Knobs {
    /// Time each node takes (KSampler spreads it over its steps).
    pub node_ms: AtomicU64,
    /// Close the submitting client's socket right after `execution_start`.
    pub drop_socket: AtomicBool,
    /// Refuse WebSocket upgrades (the client must poll).
    pub refuse_ws: AtomicBool,
    /// SaveImage fails like the recorded `execution_error`.
    pub fail_save: AtomicBool,
    /// Start no new prompt while set (the running one finishes).
    pub hold: AtomicBool,
    /// The next POST /prompt answers this recorded 400 body.
    pub reject_next: Mutex<Option<Value>>,
}

struct Item {
    number: i64,
    prompt_id: String,
    prompt: Map<String, Value>,
    client_id: Option<String>,
}

#[derive(Default)]
pub struct Inner {
    pub knobs: Knobs,
    object_info: Mutex<Map<String, Value>>,
    checkpoints: Mutex<Vec<String>>,
    sockets: Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>,
    pending: Mutex<Vec<Item>>,
    running: Mutex<Option<(String, Value)>>,
    history: Mutex<Map<String, Value>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    interrupt: AtomicBool,
    counter: AtomicU64,
    wake: Notify,
    /// Every graph POST /prompt accepted, in order.
    pub received: Mutex<Vec<Value>>,
    /// Every Origin header seen, and every request line.
    pub origins: Mutex<Vec<String>>,
    pub requests: Mutex<Vec<String>>,
    pub interrupts: AtomicU64,
    pub queue_deletes: Mutex<Vec<String>>,
    pub dropped_sockets: AtomicU64,
    /// Per prompt id: accepted by POST /prompt, and the end marker sent (ComfyUI's own time).
    pub timings: Mutex<HashMap<String, (std::time::Instant, Option<std::time::Instant>)>>,
}

pub struct ComfyDouble {
    pub addr: SocketAddr,
    pub inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
    worker: tokio::task::JoinHandle<()>,
}

impl Drop for ComfyDouble {
    fn drop(&mut self) {
        self.task.abort();
        self.worker.abort();
    }
}

impl ComfyDouble {
    pub async fn start() -> ComfyDouble {
        let gz = std::fs::read(format!("{FIXTURES}/bodies/object_info.json.gz")).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
            .unwrap();
        let Value::Object(info) = serde_json::from_str(&text).unwrap() else {
            panic!("object_info")
        };
        let inner = Arc::new(Inner::default());
        *inner.object_info.lock().unwrap() = info;
        let app = Router::new()
            .route("/system_stats", get(system_stats))
            .route("/object_info", get(object_info))
            .route("/object_info/{class}", get(object_info_one))
            .route("/prompt", post(post_prompt))
            .route("/history/{id}", get(history))
            .route("/queue", get(get_queue).post(post_queue))
            .route("/interrupt", post(interrupt))
            .route("/view", get(view))
            .route("/models/{folder}", get(models))
            .route("/ws", get(ws))
            .layer(axum::middleware::from_fn_with_state(
                inner.clone(),
                origin_check,
            ))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let worker = tokio::spawn(run_queue(inner.clone()));
        ComfyDouble {
            addr,
            inner,
            task,
            worker,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Make checkpoint files "installed" (they appear in object_info and /models).
    pub fn set_checkpoints(&self, names: &[&str]) {
        let list: Vec<Value> = names.iter().map(|n| json!(n)).collect();
        *self.inner.checkpoints.lock().unwrap() =
            names.iter().map(std::string::ToString::to_string).collect();
        let mut info = self.inner.object_info.lock().unwrap();
        info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = Value::Array(list);
    }

    pub fn node_ms(&self, ms: u64) {
        self.inner.knobs.node_ms.store(ms, Ordering::SeqCst);
    }

    /// Forget everything, as a restarted ComfyUI would.
    pub fn forget_all(&self) {
        self.inner.pending.lock().unwrap().clear();
        self.inner.history.lock().unwrap().clear();
        self.inner.interrupt.store(true, Ordering::SeqCst);
    }

    /// Drop every pending prompt without a trace (as a restart of ComfyUI would).
    pub fn clear_pending(&self) {
        self.inner.pending.lock().unwrap().clear();
    }

    pub fn pending_ids(&self) -> Vec<String> {
        self.inner
            .pending
            .lock()
            .unwrap()
            .iter()
            .map(|i| i.prompt_id.clone())
            .collect()
    }

    pub fn running_id(&self) -> Option<String> {
        self.inner
            .running
            .lock()
            .unwrap()
            .as_ref()
            .map(|r| r.0.clone())
    }

    pub fn history_of(&self, id: &str) -> Option<Value> {
        self.inner.history.lock().unwrap().get(id).cloned()
    }

    pub fn received(&self) -> Vec<Value> {
        self.inner.received.lock().unwrap().clone()
    }
}

async fn origin_check(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
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

fn plain_500() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "500 Internal Server Error\n\nServer got itself in trouble",
    )
        .into_response()
}

async fn system_stats() -> Json<Value> {
    Json(fixture_body("get_system_stats"))
}

async fn object_info(State(inner): State<Arc<Inner>>) -> Json<Value> {
    Json(Value::Object(inner.object_info.lock().unwrap().clone()))
}

async fn object_info_one(
    State(inner): State<Arc<Inner>>,
    Path(class): Path<String>,
) -> Json<Value> {
    let info = inner.object_info.lock().unwrap();
    Json(match info.get(&class) {
        Some(v) => json!({ class: v }),
        None => json!({}),
    })
}

fn err400(body: Value) -> Response {
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn post_prompt(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
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
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
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
    broadcast_status(&inner);
    inner.wake.notify_one();
    Json(json!({"prompt_id": prompt_id, "number": number, "node_errors": {}})).into_response()
}

async fn history(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Json<Value> {
    let h = inner.history.lock().unwrap();
    Json(match h.get(&id) {
        Some(e) => json!({ id: e }),
        None => json!({}),
    })
}

async fn get_queue(State(inner): State<Arc<Inner>>) -> Json<Value> {
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

async fn post_queue(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return plain_500();
    };
    if v["clear"] == json!(true) {
        inner.pending.lock().unwrap().clear();
    }
    for id in v["delete"].as_array().into_iter().flatten() {
        let id = id.as_str().unwrap_or("").to_string();
        inner.queue_deletes.lock().unwrap().push(id.clone());
        inner.pending.lock().unwrap().retain(|i| i.prompt_id != id);
    }
    StatusCode::OK.into_response()
}

async fn interrupt(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    // Recorded: always 200 with an empty body, whatever the body.
    let target = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["prompt_id"].as_str().map(str::to_string));
    let running = inner.running.lock().unwrap().as_ref().map(|r| r.0.clone());
    if running.is_some() && (target.is_none() || target == running) {
        inner.interrupts.fetch_add(1, Ordering::SeqCst);
        inner.interrupt.store(true, Ordering::SeqCst);
    }
    StatusCode::OK.into_response()
}

async fn view(
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
    match inner.files.lock().unwrap().get(&filename) {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, "image/png".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("filename=\"{filename}\""),
                ),
            ],
            bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn models(State(inner): State<Arc<Inner>>, Path(folder): Path<String>) -> Response {
    match folder.as_str() {
        "checkpoints" => Json(json!(inner.checkpoints.lock().unwrap().clone())).into_response(),
        "loras" | "vae" => Json(json!([])).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn ws(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let _ = headers;
    if inner.knobs.refuse_ws.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let client_id = q
        .get("clientId")
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    upgrade.on_upgrade(move |socket| serve_socket(inner, client_id, socket))
}

async fn serve_socket(inner: Arc<Inner>, client_id: String, socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let (mut sink, mut stream) = socket.split();
    let remaining =
        inner.pending.lock().unwrap().len() + inner.running.lock().unwrap().iter().count();
    let hello = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}}, "sid": client_id}});
    let _ = sink.send(Message::Text(hello.to_string().into())).await;
    // A reconnect with the same id takes over the routing (the old socket is orphaned).
    inner.sockets.lock().unwrap().insert(client_id.clone(), tx);
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Message::Close(f)) => { let _ = sink.send(Message::Close(f)).await; break; }
                Some(m) => if sink.send(m).await.is_err() { break },
                None => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                _ => {}
            },
        }
    }
}

fn send_to(inner: &Inner, client_id: Option<&str>, msg: Value) {
    let Some(id) = client_id else { return };
    if let Some(tx) = inner.sockets.lock().unwrap().get(id) {
        let _ = tx.send(Message::Text(msg.to_string().into()));
    }
}

fn broadcast_status(inner: &Inner) {
    let remaining =
        inner.pending.lock().unwrap().len() + inner.running.lock().unwrap().iter().count();
    let msg = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}}}});
    for tx in inner.sockets.lock().unwrap().values() {
        let _ = tx.send(Message::Text(msg.to_string().into()));
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn node_order(prompt: &Map<String, Value>) -> Vec<String> {
    let mut ids: Vec<String> = prompt.keys().cloned().collect();
    // Dependencies first: a node runs after every node it links to.
    let mut order = Vec::new();
    fn visit(id: &str, prompt: &Map<String, Value>, order: &mut Vec<String>) {
        if order.iter().any(|o| o == id) {
            return;
        }
        for v in prompt[id]["inputs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, v)| v)
        {
            if let Some(src) = v.get(0).and_then(Value::as_str) {
                if v.as_array().is_some_and(|a| a.len() == 2) && prompt.contains_key(src) {
                    visit(src, prompt, order);
                }
            }
        }
        order.push(id.to_string());
    }
    ids.sort_by_key(|i| i.parse::<u64>().unwrap_or(u64::MAX));
    for id in &ids {
        visit(id, prompt, &mut order);
    }
    order
}

/// Width, height and batch size of the graph's empty image or latent.
fn image_size(prompt: &Map<String, Value>) -> (u32, u32, u32) {
    for node in prompt.values() {
        if ["EmptyImage", "EmptyLatentImage"].contains(&node["class_type"].as_str().unwrap_or("")) {
            let i = &node["inputs"];
            return (
                i["width"].as_u64().unwrap_or(64) as u32,
                i["height"].as_u64().unwrap_or(64) as u32,
                i["batch_size"].as_u64().unwrap_or(1) as u32,
            );
        }
    }
    (64, 64, 1)
}

async fn run_queue(inner: Arc<Inner>) {
    loop {
        if inner.knobs.hold.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let item = {
            let mut p = inner.pending.lock().unwrap();
            p.sort_by_key(|i| i.number);
            if p.is_empty() {
                None
            } else {
                Some(p.remove(0))
            }
        };
        let Some(item) = item else {
            inner.wake.notified().await;
            continue;
        };
        inner.interrupt.store(false, Ordering::SeqCst);
        *inner.running.lock().unwrap() =
            Some((item.prompt_id.clone(), Value::Object(item.prompt.clone())));
        broadcast_status(&inner);
        execute(&inner, &item).await;
        *inner.running.lock().unwrap() = None;
        broadcast_status(&inner);
        let cid = item.client_id.as_deref();
        send_to(
            &inner,
            cid,
            json!({"type": "executing", "data": {"node": null, "prompt_id": item.prompt_id}}),
        );
        if let Some(t) = inner.timings.lock().unwrap().get_mut(&item.prompt_id) {
            t.1 = Some(std::time::Instant::now());
        }
    }
}

fn finish_history(
    inner: &Inner,
    item: &Item,
    outputs: Value,
    status_str: &str,
    messages: Vec<Value>,
) {
    inner.history.lock().unwrap().insert(
        item.prompt_id.clone(),
        json!({
            "prompt": [item.number, item.prompt_id, item.prompt, {"client_id": item.client_id}, []],
            "outputs": outputs,
            "status": {"status_str": status_str, "completed": status_str == "success", "messages": messages},
            "meta": {},
        }),
    );
}

async fn execute(inner: &Inner, item: &Item) {
    let cid = item.client_id.as_deref();
    let pid = item.prompt_id.as_str();
    let start = json!(["execution_start", {"prompt_id": pid, "timestamp": now_ms()}]);
    send_to(
        inner,
        cid,
        json!({"type": "execution_start", "data": start[1]}),
    );
    send_to(
        inner,
        cid,
        json!({"type": "execution_cached", "data": {"nodes": [], "prompt_id": pid, "timestamp": now_ms()}}),
    );
    if inner.knobs.drop_socket.load(Ordering::SeqCst) {
        if let Some(id) = cid {
            if let Some(tx) = inner.sockets.lock().unwrap().remove(id) {
                let _ = tx.send(Message::Close(None));
                inner.dropped_sockets.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let node_ms = inner.knobs.node_ms.load(Ordering::SeqCst);
    let mut states = Map::new();
    let mut executed = Vec::new();
    let mut outputs = Map::new();
    let (w, h, batch) = image_size(&item.prompt);
    for id in node_order(&item.prompt) {
        if inner.interrupt.swap(false, Ordering::SeqCst) {
            let data = json!({"prompt_id": pid, "node_id": id, "node_type": item.prompt[&id]["class_type"], "executed": executed, "timestamp": now_ms()});
            finish_history(
                inner,
                item,
                json!({}),
                "error",
                vec![start.clone(), json!(["execution_interrupted", data])],
            );
            send_to(
                inner,
                cid,
                json!({"type": "execution_interrupted", "data": data}),
            );
            return;
        }
        let class = item.prompt[&id]["class_type"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let node_state = |value: f64, max: f64, state: &str| json!({"value": value, "max": max, "state": state, "node_id": id, "prompt_id": pid, "display_node_id": id, "parent_node_id": null, "real_node_id": id});
        states.insert(id.clone(), node_state(0.0, 1.0, "running"));
        send_to(
            inner,
            cid,
            json!({"type": "progress_state", "data": {"prompt_id": pid, "nodes": states}}),
        );
        send_to(
            inner,
            cid,
            json!({"type": "executing", "data": {"node": id, "display_node": id, "prompt_id": pid}}),
        );
        if class == "KSampler" {
            let steps = item.prompt[&id]["inputs"]["steps"]
                .as_u64()
                .unwrap_or(20)
                .clamp(1, 50);
            for s in 1..=steps {
                tokio::time::sleep(Duration::from_millis(node_ms / steps)).await;
                send_to(
                    inner,
                    cid,
                    json!({"type": "progress", "data": {"value": s, "max": steps, "prompt_id": pid, "node": id}}),
                );
                states.insert(id.clone(), node_state(s as f64, steps as f64, "running"));
                send_to(
                    inner,
                    cid,
                    json!({"type": "progress_state", "data": {"prompt_id": pid, "nodes": states}}),
                );
            }
        } else if node_ms > 0 {
            tokio::time::sleep(Duration::from_millis(node_ms)).await;
        }
        if class == "SaveImage" {
            if inner.knobs.fail_save.load(Ordering::SeqCst) {
                let rec = fixture("ws/ws_execution_error.json");
                let frame = rec["received"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["json"]["type"] == "execution_error")
                    .unwrap()
                    .clone();
                let mut data = frame["json"]["data"].clone();
                data["prompt_id"] = json!(pid);
                data["node_id"] = json!(id);
                data["executed"] = json!(executed);
                finish_history(
                    inner,
                    item,
                    json!({}),
                    "error",
                    vec![start.clone(), json!(["execution_error", data])],
                );
                send_to(inner, cid, json!({"type": "execution_error", "data": data}));
                return;
            }
            let prefix = item.prompt[&id]["inputs"]["filename_prefix"]
                .as_str()
                .unwrap_or("ComfyUI")
                .to_string();
            let mut images = Vec::new();
            for b in 0..batch {
                let n = inner.counter.fetch_add(1, Ordering::SeqCst);
                let filename = format!("{prefix}_{n:05}_.png");
                let bytes = if (w, h) == (64, 64) {
                    std::fs::read(format!("{FIXTURES}/bodies/output.png")).unwrap()
                } else {
                    sparklio_core::media::providers::mock::draw_png(
                        w,
                        h,
                        &format!("comfy {pid} {b}"),
                        n,
                    )
                    .unwrap()
                };
                inner.files.lock().unwrap().insert(filename.clone(), bytes);
                images.push(json!({"filename": filename, "subfolder": "", "type": "output"}));
            }
            outputs.insert(id.clone(), json!({"images": images}));
            send_to(
                inner,
                cid,
                json!({"type": "executed", "data": {"node": id, "display_node": id, "output": {"images": images}, "prompt_id": pid}}),
            );
        }
        states.insert(id.clone(), node_state(1.0, 1.0, "finished"));
        send_to(
            inner,
            cid,
            json!({"type": "progress_state", "data": {"prompt_id": pid, "nodes": states}}),
        );
        executed.push(id);
    }
    let success = json!(["execution_success", {"prompt_id": pid, "timestamp": now_ms()}]);
    send_to(
        inner,
        cid,
        json!({"type": "execution_success", "data": success[1]}),
    );
    // Written after execution_success, before executing(null): as recorded.
    finish_history(
        inner,
        item,
        Value::Object(outputs),
        "success",
        vec![start, success],
    );
}
