//! ComfyUI's WebSocket and its prompt queue: one prompt at a time, node by node, with
//! the recorded message sequence sent to the submitting client's socket.

use super::{fixture, fixture_path, Inner, Item};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub(super) async fn ws(
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

/// Counts a socket in `open_sockets` while it lives (however its task ends).
struct OpenSocket(Arc<Inner>);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.open_sockets.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_socket(inner: Arc<Inner>, client_id: String, socket: WebSocket) {
    inner.open_sockets.fetch_add(1, Ordering::SeqCst);
    let _open = OpenSocket(inner.clone());
    serve_socket_until_closed(&inner, client_id, socket).await;
}

async fn serve_socket_until_closed(inner: &Arc<Inner>, client_id: String, socket: WebSocket) {
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
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
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

pub(super) fn broadcast_status(inner: &Inner) {
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

pub(super) async fn run_queue(inner: Arc<Inner>) {
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
        let epoch = inner.epoch.load(Ordering::SeqCst);
        *inner.running.lock().unwrap() =
            Some((item.prompt_id.clone(), Value::Object(item.prompt.clone())));
        broadcast_status(&inner);
        execute(&inner, &item, epoch).await;
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

/// Write the prompt's history entry, unless ComfyUI restarted since it started.
fn finish_history(
    inner: &Inner,
    item: &Item,
    epoch: u64,
    outputs: Value,
    status_str: &str,
    messages: Vec<Value>,
) {
    let mut history = inner.history.lock().unwrap();
    if inner.epoch.load(Ordering::SeqCst) != epoch {
        return;
    }
    history.insert(
        item.prompt_id.clone(),
        json!({
            "prompt": [item.number, item.prompt_id, item.prompt, {"client_id": item.client_id}, []],
            "outputs": outputs,
            "status": {"status_str": status_str, "completed": status_str == "success", "messages": messages},
            "meta": {},
        }),
    );
}

async fn execute(inner: &Inner, item: &Item, epoch: u64) {
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
                epoch,
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
                    epoch,
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
                    std::fs::read(fixture_path("bodies/output.png")).unwrap()
                } else {
                    super::picture::draw(w, h, &format!("comfy {pid} {b}"), n)
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
        epoch,
        Value::Object(outputs),
        "success",
        vec![start, success],
    );
}
