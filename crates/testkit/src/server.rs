//! Serving a double with faults: our own accept loop decides per connection (refuse,
//! hang, reset), then hands healthy connections to hyper's HTTP/1 server with the
//! double's axum router as the service. Request-level faults wrap the router's answer.

use crate::fault::{Fault, FaultRule, FaultSlot};
use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::{stream, StreamExt};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Largest request or response body the double buffers (requests are logged whole).
const BODY_LIMIT: usize = 256 * 1024 * 1024;
/// Requests kept in the log; older ones are dropped.
const LOG_LIMIT: usize = 10_000;
/// Time for the bytes already handed to the socket to leave before a reset.
const FLUSH_PAUSE: Duration = Duration::from_millis(50);
/// How long to keep trying to bind the port again after a refusal or a restart.
const REBIND_LIMIT: Duration = Duration::from_secs(10);

/// What the serving machinery needs from a double.
pub(crate) trait Upstream: Send + Sync + 'static {
    /// The error answer for a status, in the upstream's own shape.
    fn error(&self, status: u16) -> Response;
    /// A 200 body that is not valid JSON.
    fn bad_json(&self) -> &'static str;
    /// The upstream restarted: forget what it held in memory.
    fn forget(&self);
    /// Every connection is being dropped: close those served outside hyper (upgraded
    /// WebSockets).
    fn drop_connections(&self) {}
}

/// One request as the double received it (before any fault acted on it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The body as JSON when it parses, else as text, else `"<N bytes>"`; null when empty.
    pub body: Value,
}

impl ReceivedRequest {
    fn new(parts: &axum::http::request::Parts, body: &[u8]) -> Self {
        let body = if body.is_empty() {
            Value::Null
        } else if let Ok(json) = serde_json::from_slice(body) {
            json
        } else if let Ok(text) = std::str::from_utf8(body) {
            Value::String(text.to_string())
        } else {
            Value::String(format!("<{} bytes>", body.len()))
        };
        ReceivedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            body,
        }
    }
}

enum Command {
    /// Close the listener and drop every connection; `down_for` None: until `Up`.
    Down {
        down_for: Option<Duration>,
        ack: oneshot::Sender<()>,
    },
    /// Listen again (acknowledged once bound).
    Up { ack: oneshot::Sender<()> },
}

struct Shared {
    addr: SocketAddr,
    slot: FaultSlot,
    log: Mutex<VecDeque<ReceivedRequest>>,
    upstream: Arc<dyn Upstream>,
    commands: mpsc::UnboundedSender<Command>,
    /// Cancelled to drop every open connection; replaced by a fresh one after.
    connections: Mutex<CancellationToken>,
    /// Connections accepted since start (a client that reuses its connections opens few).
    accepted: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn drop_connections(&self) {
        let mut token = self.connections.lock().unwrap();
        token.cancel();
        *token = CancellationToken::new();
        self.upstream.drop_connections();
    }
}

/// A running double's listener: its address, the fault in force and the requests it
/// received. Cheap to clone (the control API holds one).
#[derive(Clone)]
pub struct FaultSwitch {
    shared: Arc<Shared>,
}

impl FaultSwitch {
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The rule in force.
    pub fn current(&self) -> FaultRule {
        self.shared.slot.current()
    }

    /// Put `rule` in force. Returns once it acts: for `Refuse` and `Restart` once the
    /// port is closed, and when leaving them once the port listens again. Panics on a
    /// rule that cannot apply (see [`FaultRule::problem`]); [`Self::try_set`] returns it.
    pub async fn set(&self, rule: impl Into<FaultRule>) {
        if let Err(problem) = self.try_set(rule).await {
            panic!("{problem}");
        }
    }

    pub async fn try_set(&self, rule: impl Into<FaultRule>) -> Result<(), String> {
        let rule = rule.into();
        if let Some(problem) = rule.problem() {
            return Err(problem);
        }
        let fault = rule.fault.clone();
        let previous = self.shared.slot.replace(rule);
        match fault {
            Fault::Refuse => {
                self.command(|ack| Command::Down {
                    down_for: None,
                    ack,
                })
                .await
            }
            Fault::Restart { down_ms } => {
                self.command(|ack| Command::Down {
                    down_for: Some(Duration::from_millis(down_ms)),
                    ack,
                })
                .await
            }
            _ if previous.fault.is_port_wide() => self.command(|ack| Command::Up { ack }).await,
            _ => {}
        }
        Ok(())
    }

    /// Back to healthy (listening again if the port was closed).
    pub async fn clear(&self) {
        self.set(Fault::None).await;
    }

    /// Restart: connections dropped, port refused for `down`, state emptied. Returns
    /// once the port is closed; it listens again after `down` by itself.
    pub async fn restart(&self, down: Duration) {
        self.set(Fault::Restart {
            down_ms: down.as_millis() as u64,
        })
        .await;
    }

    /// Every request received, oldest first (the last 10 000).
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.log.lock().unwrap().iter().cloned().collect()
    }

    /// Connections accepted since the double started.
    pub fn connections_accepted(&self) -> u64 {
        self.shared
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn clear_requests(&self) {
        self.shared.log.lock().unwrap().clear();
    }

    async fn command(&self, make: impl FnOnce(oneshot::Sender<()>) -> Command) {
        let (ack, done) = oneshot::channel();
        // A stopped double has nothing left to close or open.
        if self.shared.commands.send(make(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

/// A double's server task; dropping it stops the double and drops its connections.
pub(crate) struct Serving {
    pub(crate) switch: FaultSwitch,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
        self.switch.shared.connections.lock().unwrap().cancel();
        self.switch.shared.upstream.drop_connections();
    }
}

/// Serve `router` on 127.0.0.1:`port` (0: any free port).
pub(crate) async fn serve(
    port: u16,
    router: Router,
    upstream: Arc<dyn Upstream>,
) -> std::io::Result<Serving> {
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    let (commands, receiver) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        addr: listener.local_addr()?,
        slot: FaultSlot::default(),
        log: Mutex::new(VecDeque::new()),
        upstream,
        commands,
        connections: Mutex::new(CancellationToken::new()),
        accepted: Default::default(),
    });
    let task = tokio::spawn(accept_loop(shared.clone(), router, listener, receiver));
    Ok(Serving {
        switch: FaultSwitch { shared },
        task,
    })
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    // Bind again right after a refusal or restart, whatever is left in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn bind_again(addr: SocketAddr) -> TcpListener {
    let deadline = tokio::time::Instant::now() + REBIND_LIMIT;
    loop {
        match bind(addr) {
            Ok(listener) => return listener,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("cannot listen on {addr} again: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    router: Router,
    mut listener: TcpListener,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    loop {
        // Up: serve until told to close.
        let (down_for, ack) = loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Down { down_for, ack }) => break (down_for, ack),
                    Some(Command::Up { ack }) => { let _ = ack.send(()); }
                },
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        // Many small writes per answer (NDJSON pieces): without this,
                        // Nagle and the client's delayed ACK add 40 ms per answer.
                        let _ = stream.set_nodelay(true);
                        shared.accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let cancel = shared.connections.lock().unwrap().clone();
                        tokio::spawn(connection(shared.clone(), router.clone(), stream, cancel));
                    }
                    // Out of file descriptors and the like: let it pass rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
            }
        };
        drop(listener);
        shared.drop_connections();
        if down_for.is_some() {
            shared.upstream.forget();
        }
        let _ = ack.send(());

        // Down: refuse until cleared, or until the restart's downtime is over.
        let mut up_requested = None;
        let mut deadline = down_for.map(|d| tokio::time::Instant::now() + d);
        loop {
            let downtime = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = downtime => break,
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Up { ack }) => { up_requested = Some(ack); break; }
                    Some(Command::Down { down_for, ack }) => {
                        deadline = down_for.map(|d| tokio::time::Instant::now() + d);
                        if down_for.is_some() {
                            shared.upstream.forget();
                        }
                        let _ = ack.send(());
                    }
                },
            }
        }
        listener = bind_again(shared.addr).await;
        // A restart is over once the port listens again.
        shared.slot.end_restart();
        if let Some(ack) = up_requested {
            let _ = ack.send(());
        }
    }
}

/// Asks the connection's task to reset it (RST) now.
#[derive(Clone)]
struct ResetHandle(Arc<Notify>);

impl ResetHandle {
    fn reset(&self) {
        self.0.notify_one();
    }
}

async fn connection(
    shared: Arc<Shared>,
    router: Router,
    stream: TcpStream,
    cancel: CancellationToken,
) {
    match shared.slot.take_at_accept() {
        Some(Fault::HangAfterAccept) => {
            // Hold the socket unread until the double lets go of its connections.
            cancel.cancelled().await;
            drop(stream);
            return;
        }
        Some(Fault::Reset) => {
            reset_now(&stream);
            return;
        }
        _ => {}
    }
    // A second handle on the socket, to reset it while hyper owns the stream.
    let Ok((stream, spare)) = split_handle(stream) else {
        return;
    };
    let reset = ResetHandle(Arc::new(Notify::new()));
    let service = {
        let reset = reset.clone();
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let (shared, router, reset) = (shared.clone(), router.clone(), reset.clone());
            async move {
                Ok::<_, Infallible>(handle(&shared, router, reset, request.map(Body::new)).await)
            }
        })
    };
    let serving = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let reset_requested = tokio::select! {
        _ = serving => false,
        _ = cancel.cancelled() => false,
        _ = reset.0.notified() => true,
    };
    // The hyper connection (and its handle on the socket) is gone by now; closing the
    // last handle with SO_LINGER 0 sends the RST.
    if reset_requested {
        reset_now(&spare);
    }
    drop(spare);
}

fn split_handle(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let spare = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, spare))
}

/// SO_LINGER 0: closing the socket's last handle sends RST instead of FIN.
fn reset_now<S>(socket: &S)
where
    for<'a> socket2::SockRef<'a>: From<&'a S>,
{
    let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
}

async fn handle(
    shared: &Shared,
    router: Router,
    reset: ResetHandle,
    request: Request<Body>,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    {
        let mut log = shared.log.lock().unwrap();
        if log.len() == LOG_LIMIT {
            log.pop_front();
        }
        log.push_back(ReceivedRequest::new(&parts, &body));
    }
    let path = parts.uri.path().to_string();
    let request = Request::from_parts(parts, Body::from(body));
    let answer = |request| async move {
        match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    };
    let Some(fault) = shared.slot.take_for_request(&path) else {
        return answer(request).await;
    };
    match fault {
        Fault::HangAfterAccept | Fault::HangBeforeHeaders => std::future::pending().await,
        Fault::Reset => {
            reset.reset();
            std::future::pending().await
        }
        Fault::Status(status) => shared.upstream.error(status),
        Fault::BadJson => (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            shared.upstream.bad_json(),
        )
            .into_response(),
        Fault::StallMidStream { after_chunks } => stall(answer(request).await, after_chunks),
        Fault::Trickle { bytes, interval_ms } => trickle(
            answer(request).await,
            bytes,
            Duration::from_millis(interval_ms),
        ),
        Fault::Truncated => truncate(answer(request).await).await,
        Fault::ResetMidStream => reset_mid_stream(answer(request).await, reset),
        Fault::None | Fault::Refuse | Fault::Restart { .. } => answer(request).await,
    }
}

/// The response's parts and body, with its length written out when the body knows it,
/// so the client expects every byte even though the body is replaced by a stream.
fn open_up(response: Response) -> (axum::http::response::Parts, Body) {
    let (mut parts, body) = response.into_parts();
    if let Some(len) = body.size_hint().exact() {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    (parts, body)
}

/// Upgrades (WebSocket) and bodiless answers pass through the body faults unchanged.
fn has_no_body_to_spoil(response: &Response) -> bool {
    response.status() == StatusCode::SWITCHING_PROTOCOLS
}

fn stall(response: Response, after_chunks: usize) -> Response {
    if has_no_body_to_spoil(&response) {
        return response;
    }
    let (parts, body) = open_up(response);
    let chunks = body
        .into_data_stream()
        .take(after_chunks)
        .chain(stream::pending());
    Response::from_parts(parts, Body::from_stream(chunks))
}

fn trickle(response: Response, bytes: usize, interval: Duration) -> Response {
    if has_no_body_to_spoil(&response) {
        return response;
    }
    let (parts, body) = open_up(response);
    let pieces = body
        .into_data_stream()
        .flat_map(move |chunk| match chunk {
            Ok(chunk) => {
                let pieces: Vec<Result<Bytes, axum::Error>> = (0..chunk.len())
                    .step_by(bytes)
                    .map(|at| Ok(chunk.slice(at..(at + bytes).min(chunk.len()))))
                    .collect();
                stream::iter(pieces)
            }
            Err(e) => stream::iter(vec![Err(e)]),
        })
        .then(move |piece| async move {
            tokio::time::sleep(interval).await;
            piece
        });
    Response::from_parts(parts, Body::from_stream(pieces))
}

async fn truncate(response: Response) -> Response {
    if has_no_body_to_spoil(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .unwrap_or_default();
    let ndjson = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson"));
    parts.headers.remove(header::CONTENT_LENGTH);
    let kept = if ndjson {
        // Every line but the last (the final `done` message), ending cleanly.
        let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let cut = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        bytes.slice(..cut)
    } else {
        // Announce the whole length, send half: the connection closes short of it.
        let announced = bytes.len().max(1);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(announced));
        bytes.slice(..bytes.len() / 2)
    };
    // The pause lets hyper write what it was given before the body ends short.
    let body = stream::once(async move { Ok::<_, Infallible>(kept) })
        .chain(stream::once(tokio::time::sleep(FLUSH_PAUSE)).filter_map(|_| async { None }));
    Response::from_parts(parts, Body::from_stream(body))
}

fn reset_mid_stream(response: Response, reset: ResetHandle) -> Response {
    if has_no_body_to_spoil(&response) {
        return response;
    }
    let (parts, body) = open_up(response);
    // Half of the first chunk, so even a one-piece JSON answer is cut.
    let first = body.into_data_stream().take(1).map(|chunk| {
        chunk.map(|c| {
            let half = c.len().div_ceil(2);
            c.slice(..half)
        })
    });
    let then_reset = stream::once(async move {
        tokio::time::sleep(FLUSH_PAUSE).await;
        reset.reset();
        std::future::pending::<Result<Bytes, axum::Error>>().await
    });
    Response::from_parts(parts, Body::from_stream(first.chain(then_reset)))
}
