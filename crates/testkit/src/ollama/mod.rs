//! A test double of Ollama on 127.0.0.1 that follows its documented HTTP API
//! (<https://github.com/ollama/ollama/blob/main/docs/api.md>):
//! `POST /api/chat` and `POST /api/generate` (one JSON object, or NDJSON when `stream`
//! is true or absent; `format: "json"` or a JSON schema; an empty prompt loads the
//! model, `keep_alive: 0` unloads it), `GET /api/tags`, `GET /api/ps`, `GET /api/version`,
//! `POST /api/show`, `POST /api/embed`, `POST /api/embeddings`, `POST /api/pull`
//! (progress as NDJSON), `DELETE /api/delete`, `POST /api/copy`, 404
//! `{"error": "model \"x\" not found, try pulling it first"}` for a model it lacks, and
//! `{"error": ...}` bodies on other failures.
//!
//! Two sets of knobs: [`Behaviour`] for how `/api/chat` answers (hang, drop the
//! connection mid-answer, set content, fail with a status), and the shared [`Fault`]s
//! for anything at the HTTP or TCP level on any route.
//!
//! [`Fault`]: crate::Fault

mod chat;
mod models;

pub use chat::follow_shape;

use crate::fault::FaultRule;
use crate::server::{self, FaultSwitch, ReceivedRequest, Serving, Upstream};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What `/api/chat` does with the next requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Answer normally.
    Normal,
    /// Accept the request and never answer.
    Hang,
    /// Send the status line and part of the body, then drop the connection.
    DropConnection,
    /// Answer with this text as the model's content (for JSON repair tests).
    Content(String),
    /// Fail with this status and `{"error": message}`.
    Fail(u16, String),
    /// Answer these contents to the next requests, one each, then answer normally.
    Sequence(Vec<String>),
    /// Think this long (ms) before answering at all, then answer normally: an
    /// unstreamed answer arrives whole after it, as a real Ollama's does.
    Slow(u64),
}

/// The Ollama version the double reports.
pub const VERSION: &str = "0.5.7";

pub struct DoubleState {
    /// Installed models (`/api/tags`); `pull`, `copy` and `delete` change them.
    pub models: Mutex<Vec<String>>,
    /// Loaded models (`/api/ps`); empty after a restart.
    pub loaded: Mutex<Vec<String>>,
    pub behaviour: Mutex<Behaviour>,
    /// Every `/api/chat` body received.
    pub requests: Mutex<Vec<Value>>,
}

impl DoubleState {
    fn has(&self, model: &str) -> bool {
        let wanted = normalize(model);
        self.models
            .lock()
            .unwrap()
            .iter()
            .any(|m| normalize(m) == wanted)
    }
}

impl Upstream for DoubleState {
    fn error(&self, status: u16) -> Response {
        let message = match status {
            404 => "model not found, try pulling it first".to_string(),
            500 => "llama runner process has terminated: exit status 2".to_string(),
            503 => "server busy, please try again.  maximum pending requests exceeded".to_string(),
            _ => StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error")
                .to_lowercase(),
        };
        error(status, &message)
    }

    fn bad_json(&self) -> &'static str {
        r#"{"model":"qwen2.5:7b","created_at":"2025-11-16T10:00:00.000000Z","message":{"role":"assistant","content":"Hel"#
    }

    /// Models stay installed (they are on disk); none is loaded any more.
    fn forget(&self) {
        self.loaded.lock().unwrap().clear();
    }
}

pub struct OllamaDouble {
    pub addr: SocketAddr,
    pub state: Arc<DoubleState>,
    serving: Serving,
}

/// The models the default Sparklio routing uses, as `ollama pull` names them.
pub const INSTALLED: &[&str] = &[
    "qwen2.5:7b",
    "qwen2.5:14b",
    "llama3.2:latest",
    "mistral-small:latest",
];

impl OllamaDouble {
    pub async fn start() -> Self {
        Self::start_with(INSTALLED, &["qwen2.5:7b"]).await
    }

    pub async fn start_with(models: &[&str], loaded: &[&str]) -> Self {
        Self::start_on(0, models, loaded)
            .await
            .expect("the Ollama double listens on 127.0.0.1")
    }

    /// Listen on 127.0.0.1:`port` (0: any free port).
    pub async fn start_on(port: u16, models: &[&str], loaded: &[&str]) -> std::io::Result<Self> {
        let state = Arc::new(DoubleState {
            models: Mutex::new(models.iter().map(|s| s.to_string()).collect()),
            loaded: Mutex::new(loaded.iter().map(|s| s.to_string()).collect()),
            behaviour: Mutex::new(Behaviour::Normal),
            requests: Mutex::new(Vec::new()),
        });
        let serving = server::serve(port, router(state.clone()), state.clone()).await?;
        Ok(Self {
            addr: serving.switch.addr(),
            state,
            serving,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, b: Behaviour) {
        *self.state.behaviour.lock().unwrap() = b;
    }

    pub fn requests(&self) -> Vec<Value> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn last_request(&self) -> Value {
        self.requests()
            .last()
            .cloned()
            .expect("the double got a request")
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

    /// Restart: connections dropped, port refused for `down`, nothing loaded after.
    pub async fn restart(&self, down: Duration) {
        self.faults().restart(down).await;
    }

    /// Every request received on any route, oldest first.
    pub fn request_log(&self) -> Vec<ReceivedRequest> {
        self.faults().requests()
    }

    /// Whether a request to `path` has arrived, waiting up to `patience` for one: a test
    /// that acts on a request in flight (a restart, a second caller) waits for it to be
    /// here rather than sleeping and hoping.
    pub async fn got_request_to(&self, path: &str, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if self.request_log().iter().any(|r| r.path == path) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn router(state: Arc<DoubleState>) -> Router {
    Router::new()
        .route("/", get(|| async { "Ollama is running" }))
        .route(
            "/api/version",
            get(|| async { Json(json!({ "version": VERSION })) }),
        )
        .route("/api/tags", get(models::tags))
        .route("/api/ps", get(models::ps))
        .route("/api/show", post(models::show))
        .route("/api/pull", post(models::pull))
        .route("/api/copy", post(models::copy))
        .route("/api/delete", delete(models::delete))
        .route("/api/embed", post(models::embed))
        .route("/api/embeddings", post(models::embeddings))
        .route("/api/chat", post(chat::chat))
        .route("/api/generate", post(chat::generate))
        .with_state(state)
}

fn normalize(name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

fn error(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({"error": message})),
    )
        .into_response()
}

/// The request body as JSON.
fn parse(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(body).ok()
}

/// Ollama's 400 for a body that is not JSON.
fn unreadable() -> Response {
    error(400, "invalid character 'x' looking for beginning of value")
}

/// Ollama's answer for a model it does not have.
fn not_found(model: &str) -> Response {
    error(
        404,
        &format!("model \"{model}\" not found, try pulling it first"),
    )
}
