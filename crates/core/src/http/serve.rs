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
//! Body-read timeouts and size limits are tower layers (see `http::router`).

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Slots::new(&limits));
    let connections = TaskTracker::new();
    let mut loops = Vec::new();
    for listener in listeners {
        loops.push(tokio::spawn(accept_loop(
            listener,
            router.clone(),
            limits,
            slots.clone(),
            stats.clone(),
            connections.clone(),
            shutdown.clone(),
        )));
    }
    for l in loops {
        let _ = l.await;
    }
    // No new connections: let the open ones finish their requests.
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    slots: Arc<Slots>,
    stats: Arc<ServerStats>,
    connections: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
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
        let Some(permit) = slots.take(&peer) else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let stats = stats.clone();
        let shutdown = shutdown.clone();
        stats.open.fetch_add(1, Ordering::Relaxed);
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.cancelled() => {
                    // Finish the request in flight, then close (no more keep-alive).
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::trace!(%peer, "connection ended: {e}");
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}
