//! HTTP/1.1 to one upstream (an Ollama instance) for the gateway's calls and the Ollama
//! front: pooled keep-alive connections, each driven by the task that uses it.
//!
//! A general client (reqwest over hyper-util) runs every connection as a task of its
//! own: a request is handed to it through a channel, and the answer's head and each
//! body chunk come back through others, each a wake-up of another task, often on the
//! other core. Here the caller's task polls the connection itself while it waits for
//! the head and reads the body, and puts the connection back in the pool when the
//! answer is complete. Nothing is spawned, and there is no URL to parse per request
//! (the target is parsed once).
//!
//! A connection idle in the pool is not polled, so one the upstream closed meanwhile
//! is found at checkout (one poll reads the end of its stream) and thrown away. A
//! request sent on a connection that then breaks is an error, never sent twice (it may
//! be running there); one the connection refused before sending is retried on a fresh
//! connection.

use bytes::Bytes;
use futures::Stream;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections kept per upstream and thread shard at most (more than the calls an
/// instance runs).
const MAX_IDLE: usize = 64;
/// Pools per upstream: one per connection thread, plus one (0) for every other thread
/// (the server's `connection_threads` stay below this).
pub const SHARDS: usize = 17;

thread_local! {
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Mark this thread as the one runtime of pool shard `n` (a connection thread): a
/// connection is registered with the reactor of the thread that opened it, so it is only
/// reused there, never woken through another thread.
pub fn set_thread_shard(n: usize) {
    SHARD.with(|s| s.set(n.min(SHARDS - 1)));
}

fn thread_shard() -> usize {
    SHARD.with(std::cell::Cell::get)
}
/// An idle connection older than this is closed rather than reused.
const IDLE_FOR: Duration = Duration::from_secs(30);

type Conn = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One upstream base URL (`http://host:port[/prefix]`) and its idle connections.
#[derive(Clone)]
pub struct Http1Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// `host:port`, for connecting.
    addr: String,
    host: HeaderValue,
    /// The base URL's path, without a trailing slash ("" for none).
    prefix: String,
    connect_timeout: Duration,
    /// Idle connections, by the thread shard that opened them.
    idle: Box<[Mutex<VecDeque<Pooled>>]>,
}

/// A connection and the handle that sends on it.
struct Pooled {
    sender: SendRequest<Full<Bytes>>,
    conn: Pin<Box<Conn>>,
    idle_since: Instant,
    /// The pool of the thread that opened it (whose reactor it is registered with).
    shard: usize,
}

impl Pooled {
    /// Whether it can take a request: still open after reading what arrived while it
    /// sat idle (an end of stream closes it), and ready for the next request.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.idle_since.elapsed() < IDLE_FOR
            && self.conn.as_mut().poll(&mut cx).is_pending()
            && self.sender.is_ready()
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum SendError {
    /// Nothing was sent (connect refused or timed out): trying elsewhere is safe.
    NotSent(String),
    /// The connection broke after the request went out: it may be running there.
    Broken(String),
}

impl SendError {
    pub fn not_sent(&self) -> bool {
        matches!(self, Self::NotSent(_))
    }

    pub fn message(&self) -> &str {
        match self {
            Self::NotSent(m) | Self::Broken(m) => m,
        }
    }
}

impl Http1Client {
    /// A client for `base_url` (`http://` only: the gateway speaks plain HTTP to its
    /// upstreams on the LAN).
    pub fn new(base_url: &str, connect_timeout: Duration) -> anyhow::Result<Self> {
        let uri: Uri = base_url.trim_end_matches('/').parse()?;
        if uri.scheme_str() != Some("http") {
            anyhow::bail!("{base_url}: only http:// upstreams are supported");
        }
        let Some(authority) = uri.authority() else {
            anyhow::bail!("{base_url}: no host");
        };
        let addr = match authority.port_u16() {
            Some(_) => authority.as_str().to_string(),
            None => format!("{}:80", authority.host()),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                addr,
                host: HeaderValue::from_str(authority.as_str())?,
                prefix: uri.path().trim_end_matches('/').to_string(),
                connect_timeout,
                idle: (0..SHARDS).map(|_| Mutex::new(VecDeque::new())).collect(),
            }),
        })
    }

    /// The request path under the base URL (`/api/chat` → `/prefix/api/chat`), built
    /// once by the caller.
    pub fn uri(&self, path: &str) -> anyhow::Result<Uri> {
        Ok(format!("{}{path}", self.inner.prefix).parse()?)
    }

    /// POST a JSON body and wait for the answer's head. The body is read from the
    /// returned answer, which drives the connection meanwhile.
    pub async fn post_json(&self, uri: &Uri, body: Bytes) -> Result<Http1Response, SendError> {
        self.send(Method::POST, uri, Some(body)).await
    }

    /// Send a request (a body is JSON) and wait for the answer's head.
    pub async fn send(
        &self,
        method: Method,
        uri: &Uri,
        body: Option<Bytes>,
    ) -> Result<Http1Response, SendError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri.clone())
            .header(HOST, self.inner.host.clone());
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let mut req = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| SendError::NotSent(e.to_string()))?;
        loop {
            let (mut conn, reused) = match self.checkout() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            let sent = conn.sender.try_send_request(req);
            match drive(&mut conn.conn, sent).await {
                Ok(resp) => {
                    let (head, body) = resp.into_parts();
                    return Ok(Http1Response {
                        status: head.status,
                        headers: head.headers,
                        body,
                        conn: Some(conn),
                        home: self.inner.clone(),
                    });
                }
                Err(mut e) => match e.take_message() {
                    // A pooled connection that could not take it: try a fresh one.
                    Some(back) if reused => req = back,
                    Some(_) => return Err(SendError::NotSent(root_cause(e.error()))),
                    None => return Err(SendError::Broken(root_cause(e.error()))),
                },
            }
        }
    }

    fn checkout(&self) -> Option<Pooled> {
        let mut idle = self.inner.idle();
        while let Some(mut c) = idle.pop_back() {
            if c.usable() {
                return Some(c);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Pooled, SendError> {
        let inner = &self.inner;
        let stream = match tokio::time::timeout(
            inner.connect_timeout,
            TcpStream::connect(inner.addr.as_str()),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(SendError::NotSent(e.to_string())),
            Err(_) => {
                return Err(SendError::NotSent(format!(
                    "no connection within {} ms",
                    inner.connect_timeout.as_millis()
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::NotSent(root_cause(&e)))?;
        Ok(Pooled {
            sender,
            conn: Box::pin(conn),
            idle_since: Instant::now(),
            shard: thread_shard(),
        })
    }

    /// Idle connections held now (for tests and figures).
    pub fn idle_connections(&self) -> usize {
        self.inner
            .idle
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

impl Inner {
    /// This thread's idle connections.
    fn idle(&self) -> std::sync::MutexGuard<'_, VecDeque<Pooled>> {
        self.shard(thread_shard())
    }

    /// One shard's idle connections (a panic elsewhere while holding them leaves a usable
    /// list).
    fn shard(&self, n: usize) -> std::sync::MutexGuard<'_, VecDeque<Pooled>> {
        self.idle[n]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Back to the pool of the thread that opened it, wherever its answer was read.
    fn give_back(&self, mut c: Pooled) {
        c.idle_since = Instant::now();
        let mut idle = self.shard(c.shard);
        if idle.len() >= MAX_IDLE {
            idle.pop_front();
        }
        idle.push_back(c);
    }
}

/// Poll `fut` while driving the connection it depends on, in this task.
async fn drive<F: Future>(conn: &mut Pin<Box<Conn>>, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut conn_done = false;
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if !conn_done && conn.as_mut().poll(cx).is_ready() {
            // Closed or failed: hyper has already answered `fut` with the error.
            conn_done = true;
        }
        fut.as_mut().poll(cx)
    })
    .await
}

/// An answer whose head has arrived. Its body is a stream of chunks; reading it to
/// the end puts the connection back in the pool, dropping it early closes it.
pub struct Http1Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Incoming,
    conn: Option<Pooled>,
    home: Arc<Inner>,
}

impl Http1Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The whole body as text, at most `max` bytes of it (an error answer's message).
    pub async fn text(mut self, max: usize) -> std::io::Result<String> {
        use futures::StreamExt;
        let mut out = Vec::new();
        while let Some(chunk) = self.next().await {
            let chunk = chunk?;
            let room = max.saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// The body is complete: the connection goes back to the pool if it can take
    /// another request (not if the upstream asked to close it).
    fn finished(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let mut cx = Context::from_waker(Waker::noop());
            if c.conn.as_mut().poll(&mut cx).is_pending() {
                self.home.give_back(c);
            }
        }
    }
}

impl Stream for Http1Response {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        // Look at the body, let the connection read and hand over what arrived, look
        // again: a chunk that came in with this wake-up is returned now.
        for drive_first in [false, true] {
            if drive_first {
                if let Some(c) = &mut this.conn {
                    if c.conn.as_mut().poll(cx).is_ready() {
                        // Closed or failed: the body gets the end or the error.
                        this.conn = None;
                    }
                }
            }
            loop {
                match Pin::new(&mut this.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) if !data.is_empty() => return Poll::Ready(Some(Ok(data))),
                        // Empty data or trailers: look again.
                        _ => continue,
                    },
                    Poll::Ready(Some(Err(e))) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(std::io::Error::other(root_cause(&e)))));
                    }
                    Poll::Ready(None) => {
                        this.finished();
                        return Poll::Ready(None);
                    }
                    Poll::Pending => break,
                }
            }
        }
        Poll::Pending
    }
}

/// The innermost error message (e.g. "Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that answers each request with `reply(n)` (n counts requests on all
    /// connections; an empty reply closes without answering), and counts the
    /// connections it accepted.
    async fn server(
        reply: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        server_closing_after(reply, |_| false).await
    }

    /// The same, closing the connection silently after answering when `close(n)`.
    async fn server_closing_after(
        reply: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static,
        close: impl Fn(usize) -> bool + Send + Sync + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let reply = Arc::new(reply);
        let close = Arc::new(close);
        let served = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let reply = reply.clone();
                let close = close.clone();
                let served = served.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut have = 0;
                    loop {
                        let Ok(n) = s.read(&mut buf[have..]).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        have += n;
                        // One whole request: head and its Content-Length body.
                        let text = String::from_utf8_lossy(&buf[..have]).to_string();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if have < end + 4 + len {
                            continue;
                        }
                        have = 0;
                        let n = served.fetch_add(1, Ordering::SeqCst);
                        let out = reply(n);
                        if out.is_empty() {
                            return; // close without answering
                        }
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                        if close(n) {
                            // After the client has had the answer (and pooled the connection).
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            return;
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    fn ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    async fn read_all(mut r: Http1Response) -> String {
        let mut out = Vec::new();
        while let Some(c) = r.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    /// The error of a request that must fail.
    async fn failure(c: &Http1Client, uri: &Uri) -> SendError {
        match c.post_json(uri, Bytes::from_static(b"{}")).await {
            Ok(r) => panic!("answered {}", r.status()),
            Err(e) => e,
        }
    }

    fn client(url: &str) -> (Http1Client, Uri) {
        let c = Http1Client::new(url, Duration::from_secs(1)).unwrap();
        let uri = c.uri("/api/chat").unwrap();
        (c, uri)
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let (url, accepted) = server(|n| ok(&format!("answer {n}"))).await;
        let (c, uri) = client(&url);
        for i in 0..5 {
            let r = c.post_json(&uri, Bytes::from_static(b"{}")).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(read_all(r).await, format!("answer {i}"));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(c.idle_connections(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn each_connection_thread_reuses_only_the_connections_it_opened() {
        let (url, accepted) = server(|n| ok(&n.to_string())).await;
        let (c, uri) = client(&url);
        // Two threads, each a runtime of its own (as the server's connection threads),
        // one after the other: the second must not take the first's idle connection,
        // which is registered with the first thread's reactor. (The server runs on the
        // test's runtime: only this worker's thread blocks.)
        let on_thread = |shard: usize| {
            let (c, uri) = (c.clone(), uri.clone());
            tokio::task::block_in_place(|| {
                std::thread::spawn(move || {
                    set_thread_shard(shard);
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        for _ in 0..3 {
                            let r = c.post_json(&uri, Bytes::from_static(b"{}")).await.unwrap();
                            read_all(r).await;
                        }
                    });
                    // The runtime ends with the thread; its connections are not used again.
                })
                .join()
                .unwrap();
            });
        };
        on_thread(1);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        on_thread(2);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "the second thread opened its own connection"
        );
        assert_eq!(c.idle_connections(), 2);
    }

    #[tokio::test]
    async fn chunked_answers_are_read_whole_and_the_connection_reused() {
        let (url, accepted) = server(|_| {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n".to_vec()
        })
        .await;
        let (c, uri) = client(&url);
        for _ in 0..3 {
            let r = c.post_json(&uri, Bytes::from_static(b"{}")).await.unwrap();
            assert_eq!(read_all(r).await, r#"{"a":1}"#);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_not_reused() {
        // Each answer says "close" after it: the next request needs a new connection.
        let (url, accepted) = server(|n| {
            format!("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n{n}")
                .into_bytes()
        })
        .await;
        let (c, uri) = client(&url);
        for i in 0..3 {
            let r = c.post_json(&uri, Bytes::from_static(b"{}")).await.unwrap();
            assert_eq!(read_all(r).await, i.to_string());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        assert_eq!(c.idle_connections(), 0);
    }

    #[tokio::test]
    async fn a_connection_closed_silently_while_idle_is_found_at_checkout() {
        // The server closes the first connection after its answer without saying so
        // (as a restarted upstream does): the next request must not fail on it.
        let (url, accepted) = server_closing_after(|n| ok(&n.to_string()), |n| n == 0).await;
        let (c, uri) = client(&url);
        let r = c.post_json(&uri, Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(read_all(r).await, "0");
        assert_eq!(c.idle_connections(), 1);
        // Let the end of stream arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 1..4 {
            let r = c.post_json(&uri, Bytes::from_static(b"{}")).await.unwrap();
            assert_eq!(read_all(r).await, i.to_string());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_sent() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let (c, uri) = client(&url);
        let e = failure(&c, &uri).await;
        assert!(e.not_sent(), "{e:?}");
        assert!(e.message().contains("refused"), "{e:?}");
    }

    #[tokio::test]
    async fn a_connection_dropped_after_the_request_is_broken_not_unsent() {
        let (url, _) = server(|_| Vec::new()).await;
        let (c, uri) = client(&url);
        let e = failure(&c, &uri).await;
        assert!(!e.not_sent(), "{e:?}");
        assert_eq!(c.idle_connections(), 0);
    }

    #[tokio::test]
    async fn an_answer_dropped_before_its_end_closes_its_connection() {
        let (url, accepted) =
            server(|_| b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial".to_vec()).await;
        let (c, uri) = client(&url);
        let mut r = c.post_json(&uri, Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(&r.next().await.unwrap().unwrap()[..], b"partial");
        drop(r);
        assert_eq!(c.idle_connections(), 0);
        let _ = c.post_json(&uri, Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_base_url_path_prefixes_requests_and_https_is_refused() {
        let c = Http1Client::new("http://gpu-box:11434/ollama/", Duration::from_secs(1)).unwrap();
        assert_eq!(c.uri("/api/chat").unwrap(), "/ollama/api/chat");
        assert_eq!(c.inner.addr, "gpu-box:11434");
        let c = Http1Client::new("http://gpu-box", Duration::from_secs(1)).unwrap();
        assert_eq!(c.inner.addr, "gpu-box:80");
        assert!(Http1Client::new("https://gpu-box", Duration::from_secs(1)).is_err());
    }
}
