//! The HTTP server loop: our own accept loop over hyper, so every connection is
//! bounded before a byte of it reaches a handler.
//!
//! - a cap on open connections, with a reserve only loopback may use (the owner's
//!   dashboard and tray always get in, even while a LAN client holds every other slot);
//! - a header-read timeout that also closes idle keep-alive connections (hyper starts it
//!   whenever the connection waits for a request head), so dripped headers and idle
//!   sockets cannot pile up;
//! - accept errors (e.g. out of file descriptors) back off instead of spinning.
//!
//! Each connection then runs on one of the [`ConnectionThreads`], not on the shared
//! runtime.
//!
//! Body-read timeouts and size limits are tower layers (see `http::router`).

use super::connection_threads::{ConnectionHere, ConnectionThreads};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Connection-level limits (`[server.limits]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most, loopback reserve included.
    pub max_connections: usize,
    /// Of those, how many only loopback clients may take.
    pub loopback_reserve: usize,
    /// A request head must arrive within this; also the keep-alive idle limit.
    pub header_timeout: Duration,
}

/// Counters the server keeps (shown in `/metrics`).
#[derive(Debug, Default)]
pub struct ServerStats {
    pub accepted: AtomicU64,
    /// Connections closed at once because the cap was reached.
    pub refused: AtomicU64,
    pub accept_errors: AtomicU64,
    pub open: AtomicU64,
}

/// The two pools of connection slots.
struct Slots {
    shared: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
}

impl Slots {
    fn new(limits: &ConnectionLimits) -> Self {
        let reserve = limits.loopback_reserve.min(limits.max_connections);
        Self {
            shared: Arc::new(Semaphore::new(limits.max_connections - reserve)),
            reserve: Arc::new(Semaphore::new(reserve)),
        }
    }

    fn take(&self, peer: &SocketAddr) -> Option<OwnedSemaphorePermit> {
        self.shared.clone().try_acquire_owned().ok().or_else(|| {
            peer.ip()
                .to_canonical()
                .is_loopback()
                .then(|| self.reserve.clone().try_acquire_owned().ok())
                .flatten()
        })
    }
}

/// Serve `router` on every listener until `shutdown`, then let open requests finish.
pub async fn serve(
    listeners: Vec<TcpListener>,
    router: Router,
    limits: ConnectionLimits,
    stats: Arc<ServerStats>,
    threads: Arc<ConnectionThreads>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let server = Arc::new(Server {
        router,
        http,
        slots: Slots::new(&limits),
        stats,
        connections: TaskTracker::new(),
        shutdown,
    });
    let mut loops = Vec::new();
    for listener in listeners {
        loops.push(tokio::spawn(accept_loop(
            listener,
            server.clone(),
            threads.clone(),
        )));
    }
    for l in loops {
        let _ = l.await;
    }
    // No new connections: let the open ones finish their requests.
    server.connections.close();
    server.connections.wait().await;
    Ok(())
}

/// What every accept loop and connection of one `serve` shares (not the threads: a
/// connection must not keep its own thread from stopping).
struct Server {
    router: Router,
    http: hyper::server::conn::http1::Builder,
    slots: Slots,
    stats: Arc<ServerStats>,
    connections: TaskTracker,
    shutdown: CancellationToken,
}

/// An open connection's place: counted in `open` and holding its slot until dropped,
/// however the connection ends (also when its thread is stopped under it).
struct OpenConnection {
    stats: Arc<ServerStats>,
    _slot: OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(stats: &Arc<ServerStats>, slot: OwnedSemaphorePermit) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Self {
            stats: stats.clone(),
            _slot: slot,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(listener: TcpListener, server: Arc<Server>, threads: Arc<ConnectionThreads>) {
    let stats = &server.stats;
    loop {
        let accepted = tokio::select! {
            () = server.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: wait for descriptors to come back instead of spinning.
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("accept error: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = server.slots.take(&peer) else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let open = OpenConnection::new(stats, permit);
        let _ = stream.set_nodelay(true);
        // Moved to the connection thread's reactor (registered there, polled there).
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, "cannot hand over a connection: {e}");
                continue;
            }
        };
        let this = server.clone();
        let (thread, placed) = threads.place();
        let connection = server.connections.track_future(async move {
            // The thread's place first: a client that saw the connection closed (the
            // server's open count) finds the place given back too.
            let _open = (placed, open);
            ConnectionHere::enter();
            match TcpStream::from_std(stream) {
                Ok(stream) => serve_connection(stream, peer, &this).await,
                Err(e) => tracing::debug!(%peer, "cannot take over a connection: {e}"),
            }
        });
        thread.spawn(connection);
    }
}

/// One connection's requests until it closes (or, after `shutdown`, until the request in
/// flight is answered).
async fn serve_connection(stream: TcpStream, peer: SocketAddr, server: &Server) {
    let router = server.router.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        ConnectionHere::request_seen();
        req.extensions_mut().insert(ConnectInfo(peer));
        let answer = router.clone().oneshot(req.map(axum::body::Body::new));
        async move {
            let answer = answer.await;
            ConnectionHere::request_seen();
            answer
        }
    });
    let conn = server
        .http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        () = server.shutdown.cancelled() => {
            // Finish the request in flight, then close (no more keep-alive).
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::trace!(%peer, "connection ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One `GET path` on an open keep-alive connection: the answer's body.
    async fn get_on(conn: &mut TcpStream, path: &str) -> String {
        conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                if got.len() >= end + 4 + len {
                    return text[end + 4..end + 4 + len].to_string();
                }
            }
        }
    }

    /// A running `serve` on 127.0.0.1 over `threads`.
    struct TestServer {
        addr: SocketAddr,
        stats: Arc<ServerStats>,
        shutdown: CancellationToken,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn test_server(router: Router, threads: &Arc<ConnectionThreads>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let limits = ConnectionLimits {
            max_connections: 16,
            loopback_reserve: 2,
            header_timeout: Duration::from_secs(5),
        };
        let stats = Arc::new(ServerStats::default());
        let server = tokio::spawn(serve(
            vec![listener],
            router,
            limits,
            stats.clone(),
            threads.clone(),
            shutdown.clone(),
        ));
        TestServer {
            addr,
            stats,
            shutdown,
            server,
        }
    }

    /// The open connections once they are `want`, or after 5 s: the server sees a close
    /// a moment after the client made it.
    async fn open_after_a_moment(stats: &ServerStats, want: u64) -> u64 {
        for _ in 0..500 {
            if stats.open.load(Ordering::Relaxed) == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stats.open.load(Ordering::Relaxed)
    }

    impl TestServer {
        async fn stop(self) {
            self.shutdown.cancel();
            self.server.await.unwrap().unwrap();
        }
    }

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("?").to_string()
    }

    #[tokio::test]
    async fn equal_threads_take_connections_in_turn_and_each_keeps_its_own() {
        let router = Router::new()
            .route("/thread", get(|| async { thread_name() }))
            // A task a handler spawns runs on its connection's thread.
            .route(
                "/spawned",
                get(|| async { tokio::spawn(async { thread_name() }).await.unwrap() }),
            );
        let threads = Arc::new(ConnectionThreads::start(2, Duration::ZERO).unwrap());
        let server = test_server(router, &threads).await;
        let (addr, stats) = (server.addr, server.stats.clone());
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let first = get_on(&mut conn, "/thread").await;
            assert!(first.starts_with("connections-"), "{first}");
            assert_eq!(get_on(&mut conn, "/thread").await, first, "moved thread");
            assert_eq!(get_on(&mut conn, "/spawned").await, first);
            seen.push(first);
            // Gone before the next comes, so both threads are equal again.
            drop(conn);
            assert_eq!(open_after_a_moment(&stats, 0).await, 0);
        }
        assert_ne!(seen[0], seen[1], "{seen:?}");
        assert_eq!((&seen[0], &seen[1]), (&seen[2], &seen[3]), "{seen:?}");

        // A connection left open (idle keep-alive) past the shutdown ends when the
        // threads stop, and gives its place back.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        get_on(&mut idle, "/thread").await;
        // (The server sees the loop's last connection close a moment after it did.)
        assert_eq!(open_after_a_moment(&stats, 1).await, 1);
        threads.stop();
        let mut buf = [0u8; 16];
        let end = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
            .await
            .expect("the connection outlived its thread");
        assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
        // (The socket may close a moment before the rest of the task is dropped.)
        assert_eq!(open_after_a_moment(&stats, 0).await, 0);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_new_connection_goes_to_the_thread_with_the_fewest_open() {
        let router = Router::new().route("/thread", get(|| async { thread_name() }));
        let threads = Arc::new(ConnectionThreads::start(2, Duration::ZERO).unwrap());
        let server = test_server(router, &threads).await;
        let (addr, stats) = (server.addr, server.stats.clone());
        // A long-lived connection (the dashboard's live stream) holds one thread...
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let its = get_on(&mut stream, "/thread").await;
        // ...and each client that comes and goes meanwhile gets the other one to itself
        // (in turn, every other one shared the stream's thread).
        for _ in 0..4 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let got = get_on(&mut client, "/thread").await;
            assert!(got.starts_with("connections-"), "{got}");
            assert_ne!(got, its);
            drop(client);
            assert_eq!(open_after_a_moment(&stats, 1).await, 1);
            // (A request now and then keeps the stream from idling out.)
            assert_eq!(get_on(&mut stream, "/thread").await, its);
        }
        // With one open on each, the next goes to either.
        let mut first = TcpStream::connect(addr).await.unwrap();
        let other = get_on(&mut first, "/thread").await;
        assert_ne!(other, its);
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(get_on(&mut third, "/thread")
            .await
            .starts_with("connections-"));
        drop((stream, first, third));
        server.stop().await;
    }

    /// The thread's `/proc` entry: `(voluntary context switches, CPU ticks)`. A
    /// voluntary switch is a sleep (here: in `epoll_wait`).
    #[cfg(target_os = "linux")]
    fn sleeps_and_cpu(tid: &str) -> (u64, u64) {
        let task = format!("/proc/self/task/{tid}");
        let status = std::fs::read_to_string(format!("{task}/status")).unwrap();
        let sleeps = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let stat = std::fs::read_to_string(format!("{task}/stat")).unwrap();
        // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let cpu = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        (sleeps, cpu)
    }

    /// Blocking keep-alive client: `n` requests of `GET /`, each `gap` after the
    /// answer to the one before. Returns how many pauses lasted longer than `late`
    /// (a loaded machine may leave the client waiting for a core).
    #[cfg(target_os = "linux")]
    fn requests_in_turn(
        conn: &mut std::net::TcpStream,
        n: usize,
        gap: Duration,
        late: Duration,
    ) -> u64 {
        use std::io::{Read, Write};
        let mut buf = [0u8; 1024];
        let mut late_pauses = 0;
        for _ in 0..n {
            let paused = std::time::Instant::now();
            std::thread::sleep(gap);
            if paused.elapsed() > late {
                late_pauses += 1;
            }
            conn.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
                .unwrap();
            let mut got = Vec::new();
            while !got.ends_with(b"ok") {
                let k = conn.read(&mut buf).unwrap();
                assert!(k > 0, "closed early");
                got.extend_from_slice(&buf[..k]);
            }
        }
        late_pauses
    }

    /// A thread with one connection polls through the client's pause between requests
    /// instead of sleeping; with a second connection open on it, it sleeps in each
    /// pause; and the poll ends with its window.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_lone_connection_is_busy_polled_and_a_shared_thread_sleeps() {
        let router = Router::new().route("/", get(|| async { "ok" })).route(
            "/tid",
            get(|| async {
                let me = std::fs::read_link("/proc/thread-self").unwrap();
                me.file_name().unwrap().to_string_lossy().into_owned()
            }),
        );
        // The longest window: a loaded test machine may leave the client waiting for a
        // core for milliseconds.
        let window = Duration::from_micros(crate::config::MAX_BUSY_POLL_US);
        let threads = Arc::new(ConnectionThreads::start(1, window).unwrap());
        let server = test_server(router, &threads).await;
        let addr = server.addr;
        let mut async_conn = TcpStream::connect(addr).await.unwrap();
        let tid = get_on(&mut async_conn, "/tid").await;
        let mut conn = async_conn.into_std().unwrap();
        conn.set_nonblocking(false).unwrap();

        // A pause well inside the window, and far longer than a request takes.
        const N: u64 = 100;
        let gap = Duration::from_millis(1);
        let late = window * 8 / 10;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let (lone, late_pauses, shared, idle_cpu) = tokio::task::spawn_blocking(move || {
            requests_in_turn(&mut conn, 10, Duration::ZERO, late);
            // Up to three tries, keeping the best: a thread kept off the CPU for most of a
            // window (the other tests load both cores) sleeps through no fault of its own.
            // A thread that does not poll sleeps about N times in every try.
            let mut best = (u64::MAX, 0);
            // (One core: nothing polls, and one try says so.)
            let tries = if cores >= 2 { 3 } else { 1 };
            for _ in 0..tries {
                let before = sleeps_and_cpu(&tid);
                let late_pauses = requests_in_turn(&mut conn, N as usize, gap, late);
                let lone = sleeps_and_cpu(&tid).0 - before.0;
                if lone.saturating_sub(late_pauses) < best.0.saturating_sub(best.1) {
                    best = (lone, late_pauses);
                }
                if lone < N / 5 + late_pauses {
                    break;
                }
            }
            let (lone, late_pauses) = best;
            // The window ends: the thread sleeps and spends nothing.
            std::thread::sleep(window * 3);
            let rest = sleeps_and_cpu(&tid);
            std::thread::sleep(Duration::from_millis(200));
            let idle_cpu = sleeps_and_cpu(&tid).1 - rest.1;
            // A second connection on the same (only) thread.
            let mut other = std::net::TcpStream::connect(addr).unwrap();
            requests_in_turn(&mut other, 1, Duration::ZERO, late);
            let before = sleeps_and_cpu(&tid);
            requests_in_turn(&mut conn, N as usize, gap, late);
            let shared = sleeps_and_cpu(&tid).0 - before.0;
            (lone, late_pauses, shared, idle_cpu)
        })
        .await
        .unwrap();
        if cores >= 2 {
            // A pause the client overslept may end after the window: that sleep is allowed.
            assert!(
                lone < N / 5 + late_pauses,
                "slept {lone} times in {N} pauses ({late_pauses} of them late)"
            );
        } else {
            // One core: nothing polls, the client needs that core.
            assert!(lone >= N * 9 / 10, "one core, yet slept only {lone} times");
        }
        assert!(
            shared >= N * 9 / 10,
            "slept only {shared} times in {N} pauses"
        );
        // 200 ms of polling would be 20 ticks.
        assert!(idle_cpu <= 2, "{idle_cpu} ticks of CPU after the window");
        threads.stop();
        server.stop().await;
    }
}
