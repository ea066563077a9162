//! A test double of ComfyUI (HTTP + WebSocket on one port, 127.0.0.1), following the
//! recordings in `fixtures/comfyui/` (a real ComfyUI 0.3.64): per-client_id routing of
//! execution events, `executing {node: null}` as the last message after history is
//! written, 400 with `node_errors`, 403 on a foreign Origin, plain-text 500 on bad
//! JSON, `/view` traversal refusals, `/queue` delete and `/interrupt` at node
//! boundaries, `/free`, `/upload/image`, `/models`, `/embeddings`, `/history`, and
//! every route under `/api/` too, as ComfyUI serves them.
//!
//! Knobs: slow nodes, dropping the socket mid-job, an execution error, models; and the
//! shared [`Fault`]s for anything at the HTTP or TCP level. A restart (fault or
//! [`ComfyDouble::restart`]) empties the queue and the history, as a real one does.
//!
//! [`Fault`]: crate::Fault

mod multipart;
mod picture;
mod routes;
mod worker;

use crate::fault::FaultRule;
use crate::server::{self, FaultSwitch, ReceivedRequest, Serving, Upstream};
use axum::extract::ws::Message;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// The recorded ComfyUI exchanges the double is built from.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/comfyui");

/// Path of a recording, relative to [`FIXTURES`] (`bodies/output.png`).
pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(FIXTURES).join(rel)
}

/// A JSON recording, relative to [`FIXTURES`] (`http/post_prompt_ok.json`).
pub fn fixture(rel: &str) -> Value {
    let text = std::fs::read_to_string(fixture_path(rel)).unwrap();
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
    /// `POST /prompt` takes this long (ms) before it queues and answers, as a ComfyUI
    /// validating in-line on a busy server. Like aiohttp's, the handler goes on when the
    /// caller hangs up: the prompt is queued late, for nobody.
    pub submit_ms: AtomicU64,
    /// Queue every prompt under an id of its own, whatever `prompt_id` the body names,
    /// as a ComfyUI from before it took a caller's id does.
    pub ignore_prompt_id: AtomicBool,
}

struct Item {
    number: i64,
    prompt_id: String,
    prompt: Map<String, Value>,
    client_id: Option<String>,
}

/// An uploaded input image's place: type (`input`, `temp`, `output`), subfolder, name.
type UploadKey = (String, String, String);

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
    uploads: Mutex<HashMap<UploadKey, Vec<u8>>>,
    interrupt: AtomicBool,
    counter: AtomicU64,
    /// Bumped by a restart: work started before it writes nothing after it.
    epoch: AtomicU64,
    wake: Notify,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Every graph POST /prompt accepted, in order.
    pub received: Mutex<Vec<Value>>,
    /// Every Origin header seen, and every request line.
    pub origins: Mutex<Vec<String>>,
    pub requests: Mutex<Vec<String>>,
    /// Interrupts that took effect.
    pub interrupts: AtomicU64,
    /// Every `POST /interrupt` received: the prompt id it named (`None`: global).
    pub interrupt_requests: Mutex<Vec<Option<Value>>>,
    pub queue_deletes: Mutex<Vec<String>>,
    pub dropped_sockets: AtomicU64,
    /// WebSocket connections open now.
    pub open_sockets: std::sync::atomic::AtomicI64,
    /// `/free` requests received (their JSON bodies).
    pub frees: Mutex<Vec<Value>>,
    /// Per prompt id: accepted by POST /prompt, and the end marker sent (ComfyUI's own time).
    pub timings: Mutex<HashMap<String, (std::time::Instant, Option<std::time::Instant>)>>,
}

/// The serving machinery's view of the double: error shapes, restart, WebSockets.
struct ComfyUpstream(Arc<Inner>);

impl Upstream for ComfyUpstream {
    /// aiohttp's answers: plain text, `"<status>: <reason>"` (500 has its own).
    fn error(&self, status: u16) -> Response {
        if status == 500 {
            return plain_500();
        }
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let text = format!(
            "{}: {}",
            code.as_u16(),
            code.canonical_reason().unwrap_or("Error")
        );
        (
            code,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response()
    }

    fn bad_json(&self) -> &'static str {
        r#"{"prompt_id": "5d3c1a7e-8f2b-4c5d-9e6f-0a1b2c3d4e5f", "number": 0, "node_errors": {"#
    }

    /// Queue, running prompt and history gone, as after a real restart; output files
    /// stay (they are on disk).
    fn forget(&self) {
        let inner = &self.0;
        {
            let mut history = inner.history.lock().unwrap();
            inner.epoch.fetch_add(1, Ordering::SeqCst);
            history.clear();
        }
        inner.pending.lock().unwrap().clear();
        *inner.running.lock().unwrap() = None;
        inner.sockets.lock().unwrap().clear();
        let mut worker = inner.worker.lock().unwrap();
        if let Some(old) = worker.take() {
            old.abort();
        }
        *worker = Some(tokio::spawn(worker::run_queue(inner.clone())));
    }

    fn drop_connections(&self) {
        self.0.sockets.lock().unwrap().clear();
    }
}

pub struct ComfyDouble {
    pub addr: SocketAddr,
    pub inner: Arc<Inner>,
    serving: Serving,
}

impl Drop for ComfyDouble {
    fn drop(&mut self) {
        if let Some(worker) = self.inner.worker.lock().unwrap().take() {
            worker.abort();
        }
    }
}

/// Model folders a stock ComfyUI lists at `/models`.
const MODEL_FOLDERS: &[&str] = &[
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
];

impl ComfyDouble {
    pub async fn start() -> ComfyDouble {
        Self::start_on(0)
            .await
            .expect("the ComfyUI double listens on 127.0.0.1")
    }

    /// Listen on 127.0.0.1:`port` (0: any free port).
    pub async fn start_on(port: u16) -> std::io::Result<ComfyDouble> {
        let gz = std::fs::read(fixture_path("bodies/object_info.json.gz"))?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)?;
        let Value::Object(info) = serde_json::from_str(&text)? else {
            panic!("object_info")
        };
        let inner = Arc::new(Inner::default());
        *inner.object_info.lock().unwrap() = info;
        let app = Router::new()
            .merge(routes())
            .nest("/api", routes())
            .layer(axum::middleware::from_fn_with_state(
                inner.clone(),
                routes::origin_check,
            ))
            .with_state(inner.clone());
        let serving = server::serve(port, app, Arc::new(ComfyUpstream(inner.clone()))).await?;
        *inner.worker.lock().unwrap() = Some(tokio::spawn(worker::run_queue(inner.clone())));
        Ok(ComfyDouble {
            addr: serving.switch.addr(),
            inner,
            serving,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Make checkpoint files "installed" (they appear in object_info and /models).
    pub fn set_checkpoints(&self, names: &[&str]) {
        let list: Vec<Value> = names.iter().map(|n| json!(n)).collect();
        *self.inner.checkpoints.lock().unwrap() = names.iter().map(|s| s.to_string()).collect();
        let mut info = self.inner.object_info.lock().unwrap();
        info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = Value::Array(list);
    }

    pub fn node_ms(&self, ms: u64) {
        self.inner.knobs.node_ms.store(ms, Ordering::SeqCst);
    }

    /// See [`Knobs::submit_ms`].
    pub fn submit_ms(&self, ms: u64) {
        self.inner.knobs.submit_ms.store(ms, Ordering::SeqCst);
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

    /// An output file as ComfyUI stored it (what `/view` serves).
    pub fn output_file(&self, filename: &str) -> Option<Vec<u8>> {
        self.inner.files.lock().unwrap().get(filename).cloned()
    }

    pub fn received(&self) -> Vec<Value> {
        self.inner.received.lock().unwrap().clone()
    }

    /// The fault switch (shared with the control API).
    pub fn faults(&self) -> &FaultSwitch {
        &self.serving.switch
    }

    /// Put a fault in force; see [`FaultSwitch::set`].
    pub async fn set_fault(&self, rule: impl Into<FaultRule>) {
        self.faults().set(rule).await;
    }

    pub async fn clear_fault(&self) {
        self.faults().clear().await;
    }

    /// Restart: connections dropped, port refused for `down`, queue and history empty after.
    pub async fn restart(&self, down: Duration) {
        self.faults().restart(down).await;
    }

    /// Every request received on any route, oldest first.
    pub fn request_log(&self) -> Vec<ReceivedRequest> {
        self.faults().requests()
    }
}

/// ComfyUI's routes, served both at `/` and under `/api`.
fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/system_stats", get(routes::system_stats))
        .route("/object_info", get(routes::object_info))
        .route("/object_info/{class}", get(routes::object_info_one))
        .route("/prompt", get(routes::get_prompt).post(routes::post_prompt))
        .route(
            "/history",
            get(routes::history_all).post(routes::post_history),
        )
        .route("/history/{id}", get(routes::history))
        .route("/queue", get(routes::get_queue).post(routes::post_queue))
        .route("/interrupt", post(routes::interrupt))
        .route("/free", post(routes::free))
        .route("/upload/image", post(routes::upload_image))
        .route("/view", get(routes::view))
        .route("/models", get(routes::model_folders))
        .route("/models/{folder}", get(routes::models))
        .route("/embeddings", get(routes::embeddings))
        .route("/extensions", get(routes::extensions))
        .route("/ws", get(worker::ws))
}

fn plain_500() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "500 Internal Server Error\n\nServer got itself in trouble",
    )
        .into_response()
}
