//! ComfyUI's own API passed through to the instances of a `comfyui` media provider (the
//! upstream side of the `/comfyui/*` front; the HTTP side lives in `http::fronts`).
//!
//! - The instance: the provider's pool (its breakers, the supervisor's board), so a
//!   provider known down answers `PROVIDER_UNAVAILABLE` at once, without a call. A
//!   caller stays on one instance while it is healthy (its prompts, history and files
//!   are there).
//! - Every call is bounded: the connection by `connect_timeout_ms`, the answer's first
//!   byte by `control_timeout_ms`, a whole transfer (`/view`, `/object_info`, uploads)
//!   by `[fronts.comfyui] transfer_timeout_s`.
//! - Only known request headers are forwarded: never `Origin` (ComfyUI answers 403 to a
//!   foreign one), `Authorization`, cookies or hop-by-hop headers.
//! - Prompts submitted here are remembered with who sent them, so the queue view can say
//!   whose prompt runs, and only their sender (or an admin) may interrupt or delete them.

use crate::config::ComfyFrontConfig;
use crate::media::error::{Error, ErrorKind};
use crate::media::provider::SharedProvider;
use crate::resilience::{Instance, Lease, Outcome, PickError, Pool};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderName};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Prompts remembered at most (the oldest are forgotten first).
const MAX_PROMPTS: usize = 1024;
/// Callers pinned to an instance at most.
const MAX_PINS: usize = 4096;
/// The largest answer read whole (JSON control answers).
const MAX_CONTROL_ANSWER: usize = 32 * 1024 * 1024;
/// Queue entries listed per instance in the queue view.
const MAX_LISTED: usize = 20;
/// Outside prompts listed in the queue view.
const RECENT_LISTED: usize = 10;

/// Request headers passed on to ComfyUI (everything else stays here).
const FORWARD_REQUEST: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::USER_AGENT,
    header::RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
];

/// Answer headers passed back to the client.
const FORWARD_ANSWER: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_DISPOSITION,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
];

/// Who called the front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Who {
    pub client: String,
    pub key_id: Option<String>,
    pub key_name: Option<String>,
}

impl Who {
    /// The same caller: the same key, or (without keys) the same address.
    pub fn same(&self, other: &Who) -> bool {
        match (&self.key_id, &other.key_id) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.client == other.client,
            _ => false,
        }
    }

    /// "127.0.0.1 (key backend)".
    pub fn describe(&self) -> String {
        match (&self.key_name, &self.key_id) {
            (Some(name), _) => format!("{} (key {name})", self.client),
            (None, Some(id)) => format!("{} (key {id})", self.client),
            _ => self.client.clone(),
        }
    }

    /// The instance-affinity key.
    fn pin_key(&self) -> String {
        self.key_id
            .as_ref()
            .map_or_else(|| format!("ip:{}", self.client), |k| format!("key:{k}"))
    }
}

/// A prompt an outside client submitted through the front.
#[derive(Debug, Clone, Serialize)]
pub struct OutsidePrompt {
    pub prompt_id: String,
    pub instance: String,
    pub who: Who,
    /// ComfyUI's queue number.
    pub number: Option<f64>,
    pub request_id: String,
    pub submitted_at: String,
}

/// How long a call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A small JSON answer, read whole within the control timeout.
    Control,
    /// First byte within the control timeout, streamed, the whole within the transfer timeout.
    Transfer,
}

/// One call to pass through.
pub struct Call {
    pub method: Method,
    /// Path and query as ComfyUI serves them (`/view?filename=…`).
    pub path: String,
    /// The client's headers (filtered here).
    pub headers: HeaderMap,
    pub body: Bytes,
    pub kind: CallKind,
}

pub enum AnswerBody {
    Full(Bytes),
    Stream(BoxStream<'static, Result<Bytes, std::io::Error>>),
}

/// ComfyUI's answer, to pass back as it is.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: AnswerBody,
    pub instance: String,
}

impl Answer {
    /// The whole body, when it was read whole.
    pub fn bytes(&self) -> Option<&Bytes> {
        match &self.body {
            AnswerBody::Full(b) => Some(b),
            AnswerBody::Stream(_) => None,
        }
    }
}

/// A proxied `/ws` connection's upstream end; holds one of `max_websockets` slots.
pub struct WsLink {
    pub stream: WsStream,
    pub instance: String,
    _slot: OwnedSemaphorePermit,
}

/// One entry of ComfyUI's queue, with whose it is.
#[derive(Debug, Clone, Serialize)]
pub struct QueueEntry {
    pub prompt_id: String,
    /// `desk` (a Media Gateway job), `front` (an outside prompt sent through the Desk) or
    /// `unknown` (sent to ComfyUI directly).
    pub owner: &'static str,
    /// Who asked: the client and key, when known.
    pub who: Option<String>,
    /// The Media Gateway job, when the Desk's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// One instance's queue as the Media Gateway reports it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceQueue {
    pub instance: String,
    pub running: Vec<QueueEntry>,
    /// The first waiting prompts, in run order.
    pub pending: Vec<QueueEntry>,
    pub pending_total: usize,
    pub pending_desk: usize,
    pub pending_outside: usize,
    /// Why the queue could not be read (down, breaker open, no answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The shared ComfyUI queue: the Desk's jobs and outside prompts alike.
#[derive(Debug, Clone, Serialize)]
pub struct FrontQueue {
    pub provider: String,
    pub instances: Vec<InstanceQueue>,
    /// The latest prompts sent through the front (newest first): prompt id, instance,
    /// who (client, key id and name), ComfyUI's number, the request id of its usage row.
    pub recent_outside: Vec<OutsidePrompt>,
}

/// Who owns a prompt, for the rights checks.
pub enum Owner {
    Outside(Who),
    /// A Desk job (job id).
    Desk(String),
    Unknown,
}

pub struct ComfyFront {
    provider: String,
    pool: Arc<Pool>,
    http: reqwest::Client,
    control: Duration,
    transfer: Duration,
    connect: Duration,
    max_ws_message: usize,
    ws_slots: Arc<Semaphore>,
    prompts: Mutex<VecDeque<OutsidePrompt>>,
    /// Client-chosen prompt ids whose submission is under way (see [`ComfyFront::claim`]).
    claims: Mutex<HashSet<String>>,
    pins: Mutex<HashMap<String, (String, Instant)>>,
}

/// A client-chosen prompt id held for one submission; released when dropped.
pub struct Claim<'a> {
    front: &'a ComfyFront,
    id: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.front
            .claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// The provider the front passes to: the configured one, else `comfyui`, else the
/// default media provider if it is ComfyUI, else the first ComfyUI provider.
pub fn front_provider<'a>(
    config: &ComfyFrontConfig,
    default_provider: &str,
    providers: impl Iterator<Item = (&'a String, &'a SharedProvider)> + Clone,
) -> Option<SharedProvider> {
    let comfy = providers.filter(|(_, p)| p.kind() == "comfyui");
    let find = |name: &str| {
        comfy
            .clone()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, p)| p.clone())
    };
    if let Some(name) = &config.provider {
        return find(name);
    }
    find("comfyui")
        .or_else(|| find(default_provider))
        .or_else(|| comfy.clone().next().map(|(_, p)| p.clone()))
}

impl ComfyFront {
    /// The front for `provider` (`None` when it has no instances to pass to).
    pub fn new(provider: &SharedProvider, config: &ComfyFrontConfig) -> anyhow::Result<Self> {
        let pool = provider
            .pool()
            .ok_or_else(|| anyhow::anyhow!("provider {} has no instances", provider.name()))?;
        let pc = provider.config();
        let connect = Duration::from_millis(pc.connect_timeout_ms.max(1));
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            provider: provider.name().to_string(),
            pool,
            http,
            control: Duration::from_millis(pc.control_timeout_ms.max(1)),
            transfer: Duration::from_secs_f64(config.transfer_timeout_s.max(0.001)),
            connect,
            max_ws_message: config.max_ws_message_bytes,
            ws_slots: Arc::new(Semaphore::new(config.max_websockets)),
            prompts: Mutex::new(VecDeque::new()),
            claims: Mutex::new(HashSet::new()),
            pins: Mutex::new(HashMap::new()),
        })
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    fn unavailable(&self, message: String) -> Error {
        Error::new(ErrorKind::Unavailable, message).with("provider", self.provider.clone())
    }

    /// The instance for this caller: its pinned one while that is healthy, else the
    /// healthy one with the shortest queue. Never waits: down or open is answered now.
    async fn pick(&self, who: &Who, prompt_id: Option<&str>) -> Result<Lease, Error> {
        let pinned = prompt_id
            .and_then(|id| self.prompt(id).map(|p| p.instance))
            .or_else(|| {
                self.pins
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&who.pin_key())
                    .map(|(i, _)| i.clone())
            });
        let prefer = |i: &Instance| -> u8 {
            if pinned.as_deref() == Some(i.spec.name.as_str()) {
                0
            } else {
                1 + u8::try_from(i.facts().queue_len.unwrap_or(0).min(200)).unwrap_or(200)
            }
        };
        let lease = self
            .pool
            .acquire(&prefer, Instant::now())
            .await
            .map_err(|e| {
                let (reason, retry) = match e {
                    PickError::Unavailable {
                        reason,
                        retry_after,
                    } => (reason, retry_after),
                    PickError::Overloaded {
                        reason,
                        retry_after,
                    } => (reason, Some(retry_after)),
                };
                let mut err = self.unavailable(format!(
                    "ComfyUI ({}) is not available: {reason}",
                    self.provider
                ));
                if let Some(r) = retry {
                    err = err.with("retry_after_s", r.as_secs().max(1));
                }
                err
            })?;
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        if pins.len() >= MAX_PINS && !pins.contains_key(&who.pin_key()) {
            if let Some(oldest) = pins
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                pins.remove(&oldest);
            }
        }
        pins.insert(
            who.pin_key(),
            (lease.instance.spec.name.clone(), Instant::now()),
        );
        Ok(lease)
    }

    /// Pass one call through to the caller's instance.
    pub async fn call(
        &self,
        who: &Who,
        call: Call,
        prompt_id: Option<&str>,
    ) -> Result<Answer, Error> {
        let lease = self.pick(who, prompt_id).await?;
        let inst = lease.instance.clone();
        let url = format!("{}{}", inst.spec.url.trim_end_matches('/'), call.path);
        let mut headers = HeaderMap::new();
        for name in FORWARD_REQUEST {
            if let Some(v) = call.headers.get(name) {
                headers.insert(name.clone(), v.clone());
            }
        }
        let whole = match call.kind {
            CallKind::Control => self.control,
            CallKind::Transfer => self.transfer,
        };
        let send = self
            .http
            .request(call.method.clone(), &url)
            .headers(headers)
            .body(call.body)
            .timeout(whole)
            .send();
        let what = format!("{} {}", call.method, path_only(&call.path));
        let resp = match tokio::time::timeout(self.control, send).await {
            Err(_) => {
                let msg = format!(
                    "ComfyUI at {} did not answer {what} within {:.1} s",
                    inst.spec.url,
                    self.control.as_secs_f64()
                );
                lease.report(Outcome::Timeout, &msg);
                return Err(self.unavailable(msg).with("timed_out", true));
            }
            Ok(Err(e)) => {
                let timed_out = e.is_timeout();
                let msg = if timed_out {
                    format!(
                        "ComfyUI at {} did not answer {what} within {:.1} s",
                        inst.spec.url,
                        whole.min(self.control).as_secs_f64()
                    )
                } else {
                    format!(
                        "ComfyUI at {} is not reachable for {what}: {}",
                        inst.spec.url,
                        describe(&e)
                    )
                };
                lease.report(
                    if timed_out {
                        Outcome::Timeout
                    } else {
                        Outcome::ConnectFailure
                    },
                    &msg,
                );
                return Err(self.unavailable(msg).with("timed_out", timed_out));
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let outcome = if status.is_server_error() {
            Outcome::ServerError
        } else if status.is_client_error() {
            Outcome::ClientError
        } else {
            Outcome::Success
        };
        lease.report(outcome, &format!("{what} answered {}", status.as_u16()));
        let mut back = HeaderMap::new();
        for name in FORWARD_ANSWER {
            if let Some(v) = resp.headers().get(name) {
                back.insert(name.clone(), v.clone());
            }
        }
        let instance = inst.spec.name.clone();
        let body = match call.kind {
            CallKind::Control => AnswerBody::Full(self.read_whole(resp, &what).await?),
            CallKind::Transfer => {
                if let Some(v) = resp.headers().get(header::CONTENT_LENGTH) {
                    back.insert(header::CONTENT_LENGTH, v.clone());
                }
                AnswerBody::Stream(
                    resp.bytes_stream()
                        .map(|r| r.map_err(std::io::Error::other))
                        .boxed(),
                )
            }
        };
        Ok(Answer {
            status,
            headers: back,
            body,
            instance,
        })
    }

    async fn read_whole(&self, mut resp: reqwest::Response, what: &str) -> Result<Bytes, Error> {
        let mut out = bytes::BytesMut::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if out.len() + c.len() > MAX_CONTROL_ANSWER {
                        return Err(Error::new(
                            ErrorKind::Provider,
                            format!("ComfyUI's answer to {what} is larger than {MAX_CONTROL_ANSWER} bytes"),
                        )
                        .with("provider", self.provider.clone()));
                    }
                    out.extend_from_slice(&c);
                }
                Ok(None) => return Ok(out.freeze()),
                Err(e) => {
                    return Err(self
                        .unavailable(format!(
                            "ComfyUI's answer to {what} broke off: {}",
                            describe(&e)
                        ))
                        .with("timed_out", e.is_timeout()))
                }
            }
        }
    }

    /// `POST /prompt`: passed through, and remembered with who sent it when accepted.
    pub async fn submit(&self, who: &Who, call: Call, request_id: &str) -> Result<Answer, Error> {
        let answer = self.call(who, call, None).await?;
        if answer.status == StatusCode::OK {
            let v: Value = answer
                .bytes()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            if let Some(id) = v.get("prompt_id").and_then(Value::as_str) {
                tracing::info!(prompt_id = id, instance = %answer.instance, who = %who.describe(), "outside prompt queued through the ComfyUI front");
                self.remember(OutsidePrompt {
                    prompt_id: id.to_string(),
                    instance: answer.instance.clone(),
                    who: who.clone(),
                    number: v.get("number").and_then(Value::as_f64),
                    request_id: request_id.to_string(),
                    submitted_at: crate::store::now_text(),
                });
            }
        }
        Ok(answer)
    }

    fn remember(&self, p: OutsidePrompt) {
        let mut prompts = self.prompts.lock().unwrap_or_else(PoisonError::into_inner);
        // An id already another caller's stays theirs: the sender must not gain rights
        // over the earlier prompt (`claim` refuses such ids before they are sent).
        if let Some(old) = prompts
            .iter()
            .find(|x| x.prompt_id == p.prompt_id && !x.who.same(&p.who))
        {
            tracing::warn!(prompt_id = %p.prompt_id, owner = %old.who.describe(), sender = %p.who.describe(), "a prompt id already another caller's was queued again; it stays the first caller's");
            return;
        }
        prompts.retain(|x| x.prompt_id != p.prompt_id);
        if prompts.len() >= MAX_PROMPTS {
            prompts.pop_front();
        }
        prompts.push_back(p);
    }

    /// A prompt sent through the front, if remembered.
    pub fn prompt(&self, prompt_id: &str) -> Option<OutsidePrompt> {
        self.prompts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|p| p.prompt_id == prompt_id)
            .cloned()
    }

    /// The prompts sent through the front, newest last.
    pub fn prompts(&self) -> Vec<OutsidePrompt> {
        self.prompts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Hold `prompt_id`, chosen by the client (ComfyUI queues a prompt under the id its
    /// `POST /prompt` body names), for this submission. Refused, with whose it is, when
    /// the Desk knows it as another caller's prompt or a Desk job's, or another
    /// submission with it is under way: the sender would be remembered as that prompt's
    /// owner and could then delete or interrupt it. Unknown ids (fresh ones) are held.
    pub fn claim(
        &self,
        prompt_id: &str,
        who: &Who,
        jobs: &super::jobs::JobManager,
    ) -> Result<Claim<'_>, String> {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        if claims.contains(prompt_id) {
            return Err("another submission with that id, under way now".into());
        }
        match self.owner(prompt_id, jobs) {
            Owner::Outside(w) if w.same(who) => {}
            Owner::Unknown => {}
            other => return Err(describe_owner(other)),
        }
        claims.insert(prompt_id.to_string());
        Ok(Claim {
            front: self,
            id: prompt_id.to_string(),
        })
    }

    /// The prompt running now on the caller's instance (for an interrupt without an id).
    pub async fn running_prompt(&self, who: &Who) -> Result<Option<String>, Error> {
        let q = self.read_queue(who).await?;
        Ok(q.get("queue_running")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|i| i.get(1))
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    /// Whether ComfyUI itself has a prompt under `prompt_id`, queued, running or in its
    /// history: one the Desk does not know (sent to ComfyUI directly, or older than what
    /// the Desk remembers) is someone's all the same.
    pub async fn upstream_has(&self, who: &Who, prompt_id: &str) -> Result<bool, Error> {
        let q = self.read_queue(who).await?;
        let queued = ["queue_running", "queue_pending"].iter().any(|k| {
            q.get(*k).and_then(Value::as_array).is_some_and(|items| {
                items
                    .iter()
                    .any(|i| i.get(1).and_then(Value::as_str) == Some(prompt_id))
            })
        });
        if queued {
            return Ok(true);
        }
        let a = self
            .call(
                who,
                Call {
                    method: Method::GET,
                    path: format!(
                        "/history/{}",
                        super::providers::comfyui_client::urlencode(prompt_id)
                    ),
                    headers: HeaderMap::new(),
                    body: Bytes::new(),
                    kind: CallKind::Control,
                },
                None,
            )
            .await?;
        let history: Value = a
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        Ok(a.status == StatusCode::OK && history.get(prompt_id).is_some())
    }

    async fn read_queue(&self, who: &Who) -> Result<Value, Error> {
        let a = self
            .call(
                who,
                Call {
                    method: Method::GET,
                    path: "/queue".into(),
                    headers: HeaderMap::new(),
                    body: Bytes::new(),
                    kind: CallKind::Control,
                },
                None,
            )
            .await?;
        if a.status != StatusCode::OK {
            return Err(Error::new(
                ErrorKind::Provider,
                format!("ComfyUI answered {} to GET /queue", a.status.as_u16()),
            )
            .with("provider", self.provider.clone()));
        }
        Ok(a.bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null))
    }

    /// Open `/ws` upstream for a client (`query` as the client sent it, e.g.
    /// `clientId=…`), within the connect and control timeouts; at most `max_websockets`.
    pub async fn connect_ws(&self, who: &Who, query: Option<&str>) -> Result<WsLink, Error> {
        let slot = self.ws_slots.clone().try_acquire_owned().map_err(|_| {
            Error::new(
                ErrorKind::Overloaded,
                "too many ComfyUI WebSocket connections through the Desk ([fronts.comfyui] max_websockets)",
            )
            .with("retry_after_s", 5)
        })?;
        let lease = self.pick(who, None).await?;
        let inst = lease.instance.clone();
        let base = inst.spec.url.trim_end_matches('/');
        let ws_base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            return Err(self.unavailable(format!("instance URL {base} is not http(s)")));
        };
        let url = match query.filter(|q| !q.is_empty()) {
            Some(q) => format!("{ws_base}/ws?{q}"),
            None => format!("{ws_base}/ws"),
        };
        let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        config.max_message_size = Some(self.max_ws_message);
        config.max_frame_size = Some(self.max_ws_message);
        let connect =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        match tokio::time::timeout(self.connect + self.control, connect).await {
            Ok(Ok((stream, _))) => {
                lease.report(Outcome::Success, "ws connected");
                Ok(WsLink {
                    stream,
                    instance: inst.spec.name.clone(),
                    _slot: slot,
                })
            }
            Ok(Err(e)) => {
                let msg = format!("ComfyUI at {} refused /ws: {e}", inst.spec.url);
                let outcome = match &e {
                    tokio_tungstenite::tungstenite::Error::Http(r)
                        if r.status().is_client_error() =>
                    {
                        Outcome::ClientError
                    }
                    tokio_tungstenite::tungstenite::Error::Http(_) => Outcome::ServerError,
                    _ => Outcome::ConnectFailure,
                };
                lease.report(outcome, &msg);
                Err(self.unavailable(msg))
            }
            Err(_) => {
                let msg = format!(
                    "ComfyUI at {} did not open /ws within {:.1} s",
                    inst.spec.url,
                    (self.connect + self.control).as_secs_f64()
                );
                lease.report(Outcome::Timeout, &msg);
                Err(self.unavailable(msg).with("timed_out", true))
            }
        }
    }

    /// The largest WebSocket message either way.
    pub fn max_ws_message(&self) -> usize {
        self.max_ws_message
    }

    /// Whose a prompt is: remembered outside prompts, then the Desk's live jobs.
    pub fn owner(&self, prompt_id: &str, jobs: &super::jobs::JobManager) -> Owner {
        if let Some(p) = self.prompt(prompt_id) {
            return Owner::Outside(p.who);
        }
        match jobs.by_upstream(prompt_id) {
            Some((job_id, _, _)) => Owner::Desk(job_id),
            None => Owner::Unknown,
        }
    }

    /// Refuse touching prompts that are not the caller's, unless it may act as admin.
    pub fn check_owned(
        &self,
        ids: &[String],
        who: &Who,
        admin: bool,
        jobs: &super::jobs::JobManager,
        what: &str,
    ) -> Result<(), Error> {
        if admin {
            return Ok(());
        }
        for id in ids {
            let whose = match self.owner(id, jobs) {
                Owner::Outside(w) if w.same(who) => continue,
                other => describe_owner(other),
            };
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!("{what} prompt {id} needs an admin key: it was queued by {whose}"),
            )
            .with("prompt_id", id.clone()));
        }
        Ok(())
    }

    /// Each instance's queue with whose each prompt is. An instance that is down or
    /// whose breaker is open is not asked (its `error` says why).
    pub async fn queue(&self, jobs: &super::jobs::JobManager) -> FrontQueue {
        let mut instances = Vec::new();
        for inst in &self.pool.instances {
            let mut iq = InstanceQueue {
                instance: inst.spec.name.clone(),
                running: Vec::new(),
                pending: Vec::new(),
                pending_total: 0,
                pending_desk: 0,
                pending_outside: 0,
                error: None,
            };
            match self.instance_queue(inst).await {
                Ok(v) => {
                    let entry = |item: &Value| -> Option<QueueEntry> {
                        let id = item.get(1)?.as_str()?.to_string();
                        Some(match self.owner(&id, jobs) {
                            Owner::Outside(w) => QueueEntry {
                                prompt_id: id,
                                owner: "front",
                                who: Some(w.describe()),
                                job_id: None,
                            },
                            Owner::Desk(job) => {
                                let who = jobs.by_upstream(&id).map(|(_, client, key)| {
                                    Who {
                                        client,
                                        key_id: key,
                                        key_name: None,
                                    }
                                    .describe()
                                });
                                QueueEntry {
                                    prompt_id: id,
                                    owner: "desk",
                                    who,
                                    job_id: Some(job),
                                }
                            }
                            Owner::Unknown => QueueEntry {
                                prompt_id: id,
                                owner: "unknown",
                                who: None,
                                job_id: None,
                            },
                        })
                    };
                    let list = |k: &str| -> Vec<QueueEntry> {
                        let mut items: Vec<&Value> = v
                            .get(k)
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .collect();
                        items.sort_by(|a, b| {
                            let n = |x: &Value| x.get(0).and_then(Value::as_f64).unwrap_or(0.0);
                            n(a).total_cmp(&n(b))
                        });
                        items.into_iter().filter_map(entry).collect()
                    };
                    iq.running = list("queue_running");
                    let pending = list("queue_pending");
                    iq.pending_total = pending.len();
                    iq.pending_desk = pending.iter().filter(|e| e.owner == "desk").count();
                    iq.pending_outside = pending.iter().filter(|e| e.owner != "desk").count();
                    iq.pending = pending.into_iter().take(MAX_LISTED).collect();
                }
                Err(e) => iq.error = Some(e),
            }
            instances.push(iq);
        }
        FrontQueue {
            provider: self.provider.clone(),
            instances,
            recent_outside: self
                .prompts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .rev()
                .take(RECENT_LISTED)
                .cloned()
                .collect(),
        }
    }

    async fn instance_queue(&self, inst: &Arc<Instance>) -> Result<Value, String> {
        if !inst.breaker().is_closed() {
            return Err(format!(
                "{}: breaker {}",
                inst.label(),
                inst.breaker().name()
            ));
        }
        if let Some(e) = inst.facts().probe_error.filter(|_| !inst.facts().probe_ok) {
            if inst.facts().probed_at.is_some() {
                return Err(e);
            }
        }
        let url = format!("{}/queue", inst.spec.url.trim_end_matches('/'));
        let r = tokio::time::timeout(
            self.control,
            self.http.get(&url).timeout(self.control).send(),
        )
        .await
        .map_err(|_| format!("no answer within {:.1} s", self.control.as_secs_f64()))?
        .map_err(|e| describe(&e))?;
        if !r.status().is_success() {
            return Err(format!("ComfyUI answered {}", r.status().as_u16()));
        }
        r.json().await.map_err(|e| describe(&e))
    }
}

/// Who queued a prompt, for the refusals.
fn describe_owner(owner: Owner) -> String {
    match owner {
        Owner::Outside(w) => w.describe(),
        Owner::Desk(job) => format!("the Desk (media job {job})"),
        Owner::Unknown => "a client of ComfyUI itself".into(),
    }
}

fn path_only(p: &str) -> &str {
    p.split('?').next().unwrap_or(p)
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(client: &str, key: Option<&str>) -> Who {
        Who {
            client: client.into(),
            key_id: key.map(str::to_string),
            key_name: None,
        }
    }

    #[test]
    fn the_same_caller_is_the_same_key_or_the_same_keyless_address() {
        assert!(who("10.0.0.1", Some("k1")).same(&who("10.0.0.2", Some("k1"))));
        assert!(!who("10.0.0.1", Some("k1")).same(&who("10.0.0.1", Some("k2"))));
        assert!(who("10.0.0.1", None).same(&who("10.0.0.1", None)));
        assert!(!who("10.0.0.1", None).same(&who("10.0.0.1", Some("k1"))));
        let named = Who {
            key_name: Some("backend".into()),
            ..who("10.0.0.1", Some("k1"))
        };
        assert_eq!(named.describe(), "10.0.0.1 (key backend)");
    }

    #[test]
    fn the_front_takes_the_named_provider_then_comfyui_then_the_default_then_the_first() {
        use crate::config::MediaProviderConfig;
        let make = |name: &str, kind: &str| {
            let mut c = MediaProviderConfig::of_kind(kind);
            c.base_url = Some("http://127.0.0.1:9".into());
            (
                name.to_string(),
                crate::media::provider::build(name, &c).unwrap(),
            )
        };
        let mut providers: std::collections::BTreeMap<String, SharedProvider> = [
            make("mock", "mock"),
            make("b", "comfyui"),
            make("a", "comfyui"),
        ]
        .into_iter()
        .collect();
        let default = ComfyFrontConfig::default();
        let pick = |cfg: &ComfyFrontConfig,
                    dflt: &str,
                    p: &std::collections::BTreeMap<String, SharedProvider>| {
            front_provider(cfg, dflt, p.iter()).map(|p| p.name().to_string())
        };
        assert_eq!(pick(&default, "b", &providers).as_deref(), Some("b"));
        assert_eq!(pick(&default, "mock", &providers).as_deref(), Some("a"));
        let named = ComfyFrontConfig {
            provider: Some("b".into()),
            ..ComfyFrontConfig::default()
        };
        assert_eq!(pick(&named, "mock", &providers).as_deref(), Some("b"));
        let not_comfy = ComfyFrontConfig {
            provider: Some("mock".into()),
            ..ComfyFrontConfig::default()
        };
        assert_eq!(pick(&not_comfy, "mock", &providers), None);
        providers.insert("comfyui".into(), make("comfyui", "comfyui").1);
        assert_eq!(pick(&default, "b", &providers).as_deref(), Some("comfyui"));
    }

    #[test]
    fn origin_and_credentials_are_never_forwarded() {
        for h in [
            header::ORIGIN,
            header::AUTHORIZATION,
            header::COOKIE,
            header::HOST,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
        ] {
            assert!(!FORWARD_REQUEST.contains(&h), "{h}");
        }
    }
}
