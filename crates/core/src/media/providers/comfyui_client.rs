//! A small ComfyUI HTTP + WebSocket client, shaped by recordings of a real server
//! (see `tests/fixtures/comfyui/README.md`).
//!
//! Never sends an `Origin` header: ComfyUI on a loopback listener answers 403 to a
//! foreign one. Connection failures become `PROVIDER_UNAVAILABLE` at once.

use crate::media::error::{Error, ErrorKind};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What `POST /prompt` answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// The place in the queue.
    pub number: f64,
    /// The id it was queued under, as ComfyUI says.
    pub prompt_id: Option<String>,
}

/// Limits of one client: every call is a cheap control call (submission, reads), except
/// fetching an image, which may be megabytes; generation time is bounded by the job.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    pub connect: Duration,
    pub control: Duration,
    /// `/view` and `/object_info` (large answers).
    pub transfer: Duration,
}

/// `/object_info`: node class name → its inputs and outputs.
pub type NodeCatalogue = std::sync::Arc<Map<String, Value>>;

pub struct ComfyClient {
    provider: String,
    base: String,
    http: reqwest::Client,
    timeouts: ClientTimeouts,
    object_info: Mutex<Option<(Instant, NodeCatalogue)>>,
    object_info_ttl: Duration,
    /// One `/object_info` fetch at a time: concurrent requests wait for it.
    object_info_fetch: tokio::sync::Mutex<()>,
}

/// Where a prompt is in ComfyUI's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    Running,
    /// 1-based place among the pending items (in run order).
    Pending(u32),
    Absent,
}

/// How a finished prompt ended, from its history entry.
#[derive(Debug, Clone)]
pub enum HistoryOutcome {
    Success(Vec<ImageRef>),
    Error(Error),
    Interrupted,
}

/// An output file as ComfyUI names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub filename: String,
    pub subfolder: String,
    pub kind: String,
}

impl ComfyClient {
    pub fn new(
        provider: &str,
        base_url: &str,
        object_info_ttl: Duration,
        timeouts: ClientTimeouts,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.control)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            provider: provider.to_string(),
            base: base_url.trim_end_matches('/').to_string(),
            http,
            timeouts,
            object_info: Mutex::new(None),
            object_info_ttl,
            object_info_fetch: tokio::sync::Mutex::new(()),
        })
    }

    pub fn timeouts(&self) -> ClientTimeouts {
        self.timeouts
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A call that failed. `timed_out` when ComfyUI was reached but did not answer in
    /// time: it may have acted on the call (a queued prompt), so the caller cleans up.
    fn unavailable(&self, e: &reqwest::Error) -> Error {
        if e.is_timeout() && !e.is_connect() {
            return Error::new(
                ErrorKind::Unavailable,
                format!(
                    "ComfyUI at {} did not answer in time: {}",
                    self.base,
                    describe(e)
                ),
            )
            .with("provider", self.provider.clone())
            .with("timed_out", true);
        }
        Error::new(
            ErrorKind::Unavailable,
            format!("ComfyUI at {} is not reachable: {}", self.base, describe(e)),
        )
        .with("provider", self.provider.clone())
    }

    fn no_answer(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "ComfyUI at {} did not answer {what} within {:.1} s (hung? a stuck custom node or GPU driver)",
                self.base,
                self.timeouts.control.as_secs_f64()
            ),
        )
        .with("provider", self.provider.clone())
        .with("timed_out", true)
    }

    fn upstream_error(&self, what: &str, status: u16, body: &str) -> Error {
        let snippet: String = body.chars().take(300).collect();
        let hint = if status == 403 {
            " (ComfyUI refuses requests whose Origin header does not match its host)"
        } else {
            ""
        };
        Error::new(
            ErrorKind::Provider,
            format!("ComfyUI answered {status} to {what}{hint}: {snippet}"),
        )
        .with("provider", self.provider.clone())
        .with("upstream_status", status)
    }

    async fn get_json(&self, path: &str) -> Result<Value, Error> {
        self.get_json_within(path, self.timeouts.control).await
    }

    /// GET `path`: its answer must begin within the control timeout (a hung ComfyUI is
    /// known in seconds) and be complete within `limit` (a large catalogue may take longer).
    async fn get_json_within(&self, path: &str, limit: Duration) -> Result<Value, Error> {
        let send = self.http.get(self.url(path)).timeout(limit).send();
        let r = tokio::time::timeout(self.timeouts.control, send)
            .await
            .map_err(|_| self.no_answer(path))?
            .map_err(|e| self.unavailable(&e))?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| self.unavailable(&e))?;
        if status != 200 {
            return Err(self.upstream_error(&format!("GET {path}"), status, &text));
        }
        serde_json::from_str(&text)
            .map_err(|e| self.upstream_error(&format!("GET {path} (not JSON: {e})"), status, &text))
    }

    async fn post_json(&self, path: &str, body: &Value) -> Result<(u16, String), Error> {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .map_err(|e| self.unavailable(&e))?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| self.unavailable(&e))?;
        Ok((status, text))
    }

    /// `/system_stats` (the cheap health probe).
    pub async fn system_stats(&self) -> Result<Value, Error> {
        self.get_json("/system_stats").await
    }

    /// Prompts running and waiting (`/queue`), for choosing the least busy instance.
    pub async fn queue_len(&self) -> Result<u32, Error> {
        let v = self.get_json("/queue").await?;
        let n = |k: &str| v.get(k).and_then(Value::as_array).map_or(0, Vec::len);
        Ok((n("queue_running") + n("queue_pending")) as u32)
    }

    /// `/object_info` (every node class), cached for the TTL. `need` names classes a
    /// workflow uses: when the cache lacks one (a custom node installed since), it is
    /// fetched again, once for all callers waiting at that moment.
    pub async fn object_info(&self, need: &[&str]) -> Result<NodeCatalogue, Error> {
        let cached = |me: &Self| -> Option<NodeCatalogue> {
            let guard = me
                .object_info
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (at, v) = guard.as_ref()?;
            let fresh = at.elapsed() < me.object_info_ttl;
            (fresh && need.iter().all(|c| v.contains_key(*c))).then(|| v.clone())
        };
        if let Some(v) = cached(self) {
            return Ok(v);
        }
        let _one_at_a_time = self.object_info_fetch.lock().await;
        // Someone else may have fetched it while we waited.
        if let Some(v) = cached(self) {
            return Ok(v);
        }
        let v = self
            .get_json_within("/object_info", self.timeouts.transfer)
            .await?;
        let Value::Object(map) = v else {
            return Err(self.upstream_error("GET /object_info (not an object)", 200, ""));
        };
        let map = std::sync::Arc::new(map);
        *self
            .object_info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), map.clone()));
        Ok(map)
    }

    /// Re-read one node class (`/object_info/{class}`, a few KB) into the cache: how a
    /// model file added since the catalogue was fetched becomes known without fetching
    /// the whole catalogue again.
    pub async fn refresh_class(&self, class: &str) -> Result<NodeCatalogue, Error> {
        let v = self
            .get_json(&format!("/object_info/{}", urlencode(class)))
            .await?;
        let mut guard = self
            .object_info
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (at, old) = guard
            .take()
            .unwrap_or((Instant::now(), NodeCatalogue::default()));
        let mut map = (*old).clone();
        if let Some(entry) = v.get(class) {
            map.insert(class.to_string(), entry.clone());
        }
        let map = std::sync::Arc::new(map);
        *guard = Some((at, map.clone()));
        Ok(map)
    }

    /// Queue a graph. 400 answers become `WORKFLOW_INVALID` / `MODEL_NOT_FOUND` with
    /// ComfyUI's node errors. Returns ComfyUI's queue number.
    /// Queue a graph under `prompt_id`. ComfyUI answers the id it queued it under: ours,
    /// or, from a ComfyUI that does not take a caller's id, one of its own.
    pub async fn queue_prompt(
        &self,
        graph: &Map<String, Value>,
        client_id: &str,
        prompt_id: &str,
    ) -> Result<Queued, Error> {
        let body = json!({"prompt": graph, "client_id": client_id, "prompt_id": prompt_id});
        let (status, text) = self.post_json("/prompt", &body).await?;
        match status {
            200 => {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                Ok(Queued {
                    number: v.get("number").and_then(Value::as_f64).unwrap_or(0.0),
                    prompt_id: v
                        .get("prompt_id")
                        .and_then(Value::as_str)
                        .filter(|id| !id.is_empty())
                        .map(str::to_string),
                })
            }
            400 => Err(self.rejection(&text)),
            s => Err(self.upstream_error("POST /prompt", s, &text)),
        }
    }

    fn rejection(&self, text: &str) -> Error {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let node_errors = v.get("node_errors").cloned().unwrap_or(json!({}));
        let top = v.get("error").cloned().unwrap_or(Value::Null);
        let top_msg = top
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("rejected");
        let top_details = top.get("details").and_then(Value::as_str).unwrap_or("");
        // A missing model shows as value_not_in_list on a loader's name input.
        if let Some(obj) = node_errors.as_object() {
            for (node, ne) in obj {
                for err in ne
                    .get("errors")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let input = err
                        .pointer("/extra_info/input_name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if err.get("type").and_then(Value::as_str) == Some("value_not_in_list")
                        && super::comfyui_graph::is_model_input(input)
                    {
                        let class = ne.get("class_type").and_then(Value::as_str).unwrap_or("?");
                        let value = err
                            .pointer("/extra_info/received_value")
                            .cloned()
                            .unwrap_or(Value::Null);
                        return Error::new(ErrorKind::ModelNotFound,
                            format!("node {node} ({class}): {input} {value} is not installed in ComfyUI"),
                        )
                        .with("provider", self.provider.clone())
                        .with("node_id", node.clone())
                        .with("class_type", class)
                        .with("input", input)
                        .with("node_errors", node_errors.clone());
                    }
                }
            }
        }
        let mut described: Vec<String> = Vec::new();
        if let Some(obj) = node_errors.as_object() {
            for (node, ne) in obj {
                let class = ne.get("class_type").and_then(Value::as_str).unwrap_or("?");
                for err in ne
                    .get("errors")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let msg = err.get("message").and_then(Value::as_str).unwrap_or("");
                    let details = err.get("details").and_then(Value::as_str).unwrap_or("");
                    described.push(
                        format!("node {node} ({class}): {msg} {details}")
                            .trim()
                            .to_string(),
                    );
                }
            }
        }
        let message = if described.is_empty() {
            format!("ComfyUI rejected the workflow: {top_msg} {top_details}")
                .trim()
                .to_string()
        } else {
            format!("ComfyUI rejected the workflow: {}", described.join("; "))
        };
        Error::new(ErrorKind::WorkflowInvalid, message)
            .with("provider", self.provider.clone())
            .with("comfyui_error", top)
            .with("node_errors", node_errors)
    }

    /// The prompt's history entry; `None` while ComfyUI has none (unknown ids answer `{}`).
    pub async fn history(&self, prompt_id: &str) -> Result<Option<Value>, Error> {
        let v = self
            .get_json(&format!("/history/{}", urlencode(prompt_id)))
            .await?;
        Ok(v.get(prompt_id).cloned())
    }

    pub async fn queue_state(&self, prompt_id: &str) -> Result<QueueState, Error> {
        let v = self.get_json("/queue").await?;
        let id_of = |item: &Value| item.get(1).and_then(Value::as_str).map(str::to_string);
        let running = v
            .get("queue_running")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if running
            .iter()
            .any(|i| id_of(i).as_deref() == Some(prompt_id))
        {
            return Ok(QueueState::Running);
        }
        let mut pending: Vec<(f64, String)> = v
            .get("queue_pending")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| Some((i.get(0)?.as_f64()?, id_of(i)?)))
            .collect();
        pending.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(pending
            .iter()
            .position(|(_, id)| id == prompt_id)
            .map_or(QueueState::Absent, |p| QueueState::Pending(p as u32 + 1)))
    }

    /// Remove a pending prompt (running ones are not affected).
    pub async fn delete_from_queue(&self, prompt_id: &str) -> Result<(), Error> {
        let (s, t) = self
            .post_json("/queue", &json!({"delete": [prompt_id]}))
            .await?;
        if s != 200 {
            return Err(self.upstream_error("POST /queue", s, &t));
        }
        Ok(())
    }

    /// Interrupt the running prompt (takes effect at ComfyUI's next node boundary).
    pub async fn interrupt(&self, prompt_id: &str) -> Result<(), Error> {
        let (s, t) = self
            .post_json("/interrupt", &json!({"prompt_id": prompt_id}))
            .await?;
        if s != 200 {
            return Err(self.upstream_error("POST /interrupt", s, &t));
        }
        Ok(())
    }

    /// `POST /free`: unload its models and free the memory they held.
    pub async fn free(&self) -> Result<(), Error> {
        let (s, t) = self
            .post_json(
                "/free",
                &json!({"unload_models": true, "free_memory": true}),
            )
            .await?;
        if s != 200 {
            return Err(self.upstream_error("POST /free", s, &t));
        }
        Ok(())
    }

    /// Read an output file with `/view`.
    pub async fn view(&self, img: &ImageRef) -> Result<(Vec<u8>, String), Error> {
        let r = self
            .http
            .get(self.url("/view"))
            .timeout(self.timeouts.transfer)
            .query(&[
                ("filename", img.filename.as_str()),
                ("subfolder", img.subfolder.as_str()),
                ("type", img.kind.as_str()),
            ])
            .send()
            .await
            .map_err(|e| self.unavailable(&e))?;
        let status = r.status().as_u16();
        let mime = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("image/png")
            .to_string();
        let bytes = r.bytes().await.map_err(|e| self.unavailable(&e))?;
        if status != 200 {
            return Err(self.upstream_error(
                &format!("GET /view {}", img.filename),
                status,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        Ok((bytes.to_vec(), mime))
    }

    /// Files in one model folder (`checkpoints`, `loras`, `vae`); `None` when this
    /// ComfyUI has no such folder or route.
    pub async fn models(&self, folder: &str) -> Result<Option<Vec<String>>, Error> {
        let r = self
            .http
            .get(self.url(&format!("/models/{folder}")))
            .send()
            .await
            .map_err(|e| self.unavailable(&e))?;
        if r.status().as_u16() == 404 {
            return Ok(None);
        }
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| self.unavailable(&e))?;
        if status != 200 {
            return Err(self.upstream_error(&format!("GET /models/{folder}"), status, &text));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Some(
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect(),
        ))
    }

    /// Open the progress socket for `client_id` (execution events go only to it).
    pub async fn connect_ws(&self, client_id: &str) -> Result<WsStream, String> {
        let ws_base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            return Err(format!("base_url {} is not http(s)", self.base));
        };
        let url = format!("{ws_base}/ws?clientId={}", urlencode(client_id));
        match tokio::time::timeout(
            self.timeouts.connect + self.timeouts.control,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out connecting".into()),
        }
    }
}

/// The next JSON message from the socket; `Err` when it closed or failed.
/// Binary frames (previews, text progress) are skipped.
pub async fn next_json(ws: &mut WsStream) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                    return Ok(v);
                }
            }
            Some(Ok(Message::Close(_))) | None => return Err("socket closed".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
        }
    }
}

/// How a history entry ended, or `None` while it has not.
pub fn outcome_of(entry: &Value, provider: &str) -> Option<HistoryOutcome> {
    let status = entry.get("status")?;
    let messages = status
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let find = |name: &str| {
        messages
            .iter()
            .find(|m| m.get(0).and_then(Value::as_str) == Some(name))
            .and_then(|m| m.get(1).cloned())
    };
    match status.get("status_str").and_then(Value::as_str) {
        Some("success") => Some(HistoryOutcome::Success(images_in(entry.get("outputs")))),
        Some("error") => {
            if find("execution_interrupted").is_some() {
                return Some(HistoryOutcome::Interrupted);
            }
            let data = find("execution_error").unwrap_or(Value::Null);
            Some(HistoryOutcome::Error(execution_error(&data, provider)))
        }
        _ if status.get("completed").and_then(Value::as_bool) == Some(true) => {
            Some(HistoryOutcome::Success(images_in(entry.get("outputs"))))
        }
        _ => None,
    }
}

/// A run-time failure from ComfyUI's `execution_error` data, without its tensor dumps.
pub fn execution_error(data: &Value, provider: &str) -> Error {
    let msg = data
        .get("exception_message")
        .and_then(Value::as_str)
        .unwrap_or("ComfyUI reported an execution error")
        .trim()
        .to_string();
    let node = data.get("node_id").cloned().unwrap_or(Value::Null);
    let node_type = data.get("node_type").cloned().unwrap_or(Value::Null);
    Error::new(
        ErrorKind::GenerationFailed,
        format!(
            "ComfyUI failed in node {} ({}): {msg}",
            node.as_str().unwrap_or("?"),
            node_type.as_str().unwrap_or("?")
        ),
    )
    .with("provider", provider)
    .with("node_id", node)
    .with("node_type", node_type)
    .with(
        "exception_type",
        data.get("exception_type").cloned().unwrap_or(Value::Null),
    )
}

/// Saved output images (type `output`) of every node, in node order.
pub fn images_in(outputs: Option<&Value>) -> Vec<ImageRef> {
    let mut nodes: Vec<(&String, &Value)> = outputs
        .and_then(Value::as_object)
        .map(|o| o.iter().collect())
        .unwrap_or_default();
    nodes.sort_by_key(|n| natural(n.0));
    let mut out = Vec::new();
    for (_, node) in nodes {
        for img in node
            .get("images")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = img.get("type").and_then(Value::as_str).unwrap_or("output");
            if kind != "output" {
                continue;
            }
            if let Some(filename) = img.get("filename").and_then(Value::as_str) {
                let r = ImageRef {
                    filename: filename.to_string(),
                    subfolder: img
                        .get("subfolder")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    kind: kind.to_string(),
                };
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
    }
    out
}

fn natural(id: &str) -> (u64, String) {
    (id.parse().unwrap_or(u64::MAX), id.to_string())
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
