//! A test double of Ollama on 127.0.0.1:0 that follows its documented HTTP API:
//! `POST /api/chat` (non-streaming JSON, or NDJSON when `stream` is true or absent;
//! `format: "json"`), `GET /api/tags`, `GET /api/ps`, `GET /api/version`, 404
//! `{"error": "model \"x\" not found, try pulling it first"}` for a model it lacks,
//! and `{"error": ...}` bodies on other failures. Behaviours for the failure paths:
//! hang, drop the connection mid-answer, answer bad JSON, fail with a status.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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
}

pub struct DoubleState {
    /// Installed models (`/api/tags`).
    pub models: Vec<String>,
    /// Loaded models (`/api/ps`).
    pub loaded: Vec<String>,
    pub behaviour: Mutex<Behaviour>,
    /// Every `/api/chat` body received.
    pub requests: Mutex<Vec<Value>>,
}

pub struct OllamaDouble {
    pub addr: SocketAddr,
    pub state: Arc<DoubleState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OllamaDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
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
        let state = Arc::new(DoubleState {
            models: models
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            loaded: loaded
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            behaviour: Mutex::new(Behaviour::Normal),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/", get(|| async { "Ollama is running" }))
            .route(
                "/api/version",
                get(|| async { Json(json!({"version": "0.5.7"})) }),
            )
            .route("/api/tags", get(tags))
            .route("/api/ps", get(ps))
            .route("/api/chat", post(chat))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
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
}

fn normalize(name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

fn model_entry(name: &str) -> Value {
    json!({
        "name": name, "model": name, "modified_at": "2025-11-16T10:00:00Z",
        "size": 4_683_087_332u64, "digest": "845dbda0ea48ed749caafd9e6037047aa19acfcfd82e704d7ca97d631a0b697e",
        "details": {"format": "gguf", "family": "qwen2", "parameter_size": "7.6B", "quantization_level": "Q4_K_M"}
    })
}

async fn tags(State(s): State<Arc<DoubleState>>) -> Json<Value> {
    Json(json!({"models": s.models.iter().map(|m| model_entry(m)).collect::<Vec<_>>()}))
}

async fn ps(State(s): State<Arc<DoubleState>>) -> Json<Value> {
    let models: Vec<Value> = s
        .loaded
        .iter()
        .map(|m| {
            let mut e = model_entry(m);
            e["expires_at"] = json!("2099-01-01T00:00:00Z");
            e["size_vram"] = json!(4_683_087_332u64);
            e
        })
        .collect();
    Json(json!({"models": models}))
}

fn error(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({"error": message})),
    )
        .into_response()
}

/// What the "model" says: JSON echoing the request in JSON mode, a sentence otherwise.
fn answer_for(body: &Value, model: &str) -> String {
    let user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let head: String = user.chars().take(40).collect();
    if body["format"] == "json" {
        // Like an obedient model: follow the JSON shape the prompt asks for.
        if let Some(answer) = follow_shape(user) {
            return answer.to_string();
        }
        json!({"answer": format!("double answer from {model}"), "prompt_head": head, "score": 7})
            .to_string()
    } else {
        format!("Double answer from {model}: {head}")
    }
}

/// Fill the compact shape a prompt asks for (`{"headline": string, "n": number (1-10),
/// "list": [string, at least 1], "x": string (optional)}`) with plausible values.
pub fn follow_shape(prompt: &str) -> Option<Value> {
    let marker = "exactly this shape";
    let after = &prompt[prompt.find(marker)? + marker.len()..];
    let start = after.find('{')?;
    let line = after[start..].lines().next()?;
    let mut text = line.replace(" (optional)", "");
    // `string (e.g. "16:9")` → the example.
    while let Some(i) = text.find("string (e.g. ") {
        let rest = &text[i + "string (e.g. ".len()..];
        let end = rest.find(')')?;
        let example = rest[..end].to_string();
        text.replace_range(i..i + "string (e.g. ".len() + end + 1, &example);
    }
    // number (a-b) → a; [X, at least N] → [X]; alternatives → the first.
    while let Some(i) = text.find(" (") {
        let close = text[i..].find(')')? + i;
        let range = &text[i + 2..close];
        let lo = range.split('-').next().unwrap_or("1").to_string();
        let num_start = text[..i]
            .rfind(|c: char| !c.is_ascii_alphabetic())
            .map_or(0, |p| p + 1);
        text.replace_range(num_start..=close, &lo);
    }
    let text = text
        .replace(", at least 1]", "]")
        .replace(", at least 2]", "]")
        .replace("boolean | string | number", "boolean")
        .replace("boolean | string | array", "boolean")
        .replace("string | object", "string")
        .replace("array | string | object", "string");
    let text = text
        .replace(": string", ": \"double text\"")
        .replace("[string]", "[\"double item\"]")
        .replace(": boolean", ": true")
        .replace(": integer", ": 1")
        .replace(": number", ": 7")
        .replace(": any", ": null");
    serde_json::from_str(&text).ok()
}

fn counts(body: &Value, content: &str) -> (u64, u64) {
    let prompt_chars: usize = body["messages"].as_array().map_or(0, |m| {
        m.iter()
            .filter_map(|x| x["content"].as_str())
            .map(|s| s.chars().count())
            .sum()
    });
    (
        (prompt_chars / 4 + 1) as u64,
        (content.chars().count() / 4 + 1) as u64,
    )
}

fn final_chunk(model: &str, content: &str, prompt: u64, eval: u64) -> Value {
    json!({
        "model": model, "created_at": "2025-11-16T10:00:00.000000Z",
        "message": {"role": "assistant", "content": content},
        "done_reason": "stop", "done": true,
        "total_duration": 5_321_400_000u64, "load_duration": 12_000_000u64,
        "prompt_eval_count": prompt, "prompt_eval_duration": 300_000_000u64,
        "eval_count": eval, "eval_duration": 5_000_000_000u64,
    })
}

async fn chat(State(s): State<Arc<DoubleState>>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid character 'x' looking for beginning of value");
    };
    s.requests.lock().unwrap().push(body.clone());
    let behaviour = {
        let mut b = s.behaviour.lock().unwrap();
        match &mut *b {
            Behaviour::Sequence(queue) if !queue.is_empty() => Behaviour::Content(queue.remove(0)),
            Behaviour::Sequence(_) => Behaviour::Normal,
            other => other.clone(),
        }
    };
    let model = body["model"].as_str().unwrap_or("").to_string();
    if model.is_empty() {
        return error(400, "model is required");
    }
    match &behaviour {
        Behaviour::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            return error(500, "unreachable");
        }
        Behaviour::Fail(status, msg) => return error(*status, msg),
        _ => {}
    }
    if !s.models.iter().any(|m| normalize(m) == normalize(&model)) {
        return error(
            404,
            &format!("model \"{model}\" not found, try pulling it first"),
        );
    }
    let content = match &behaviour {
        Behaviour::Content(c) => c.clone(),
        _ => answer_for(&body, &model),
    };
    let (prompt, eval) = counts(&body, &content);
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(true);

    if behaviour == Behaviour::DropConnection {
        // The head and a first piece go out (the pause lets them flush), then the
        // connection is cut mid-body.
        let head = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
            b"{\"model\":\"",
        ))]);
        let cut = futures::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Err::<Bytes, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "dropped",
            ))
        });
        let content_type = if streaming {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        return Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from_stream(futures::StreamExt::chain(head, cut)))
            .unwrap();
    }
    if !streaming {
        return Json(final_chunk(&model, &content, prompt, eval)).into_response();
    }
    // NDJSON: a few content pieces, then the final object with the counts. Lines are
    // split across body chunks on purpose, as a network may deliver them.
    let chars: Vec<char> = content.chars().collect();
    let piece = chars.len().div_ceil(4).max(1);
    let mut text = String::new();
    for p in chars.chunks(piece) {
        let line = json!({
            "model": model, "created_at": "2025-11-16T10:00:00.000000Z",
            "message": {"role": "assistant", "content": p.iter().collect::<String>()},
            "done": false,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    text.push_str(&final_chunk(&model, "", prompt, eval).to_string());
    text.push('\n');
    let bytes = text.into_bytes();
    let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(37)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap()
}
