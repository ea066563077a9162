//! The threads that run the server's connections (see [`ConnectionThreads`]), and the two
//! tasks each of them runs beside its connections:
//! - the pacemaker, which keeps the thread's timers from waking its own driver;
//! - the busy poll, which finds a lone client's next request without a sleep.

use std::cell::{Cell, OnceCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Threads that run the server's connections, each on a single-threaded runtime of its
/// own: a connection's requests, and the upstream connections they open, stay on one
/// thread, so a request's wake-ups never cross to another worker (tokio's shared
/// scheduler hands a woken task to whichever worker is free and wakes an idle one to
/// steal). The accept loops hand each new connection to the thread with the fewest
/// open, the next in turn among equals: a long-lived connection (the dashboard's live
/// stream, a browser's idle keep-alive) then leaves the other threads to the clients, and
/// a lone client keeps a thread of its own, where it is busy-polled. (Taken in turn, every
/// other client shared the stream's thread and was not polled.) A connection counts until
/// its task ends: a WebSocket, once upgraded, runs in a task of its own and no longer
/// counts, so a client may be placed beside it. Two accept loops placing at once may both
/// pick the same thread; the next placements even it out.
///
/// A task a handler spawns runs on its connection's thread too (a media job, a model
/// pull, a service started by a reload): the threads run until [`Self::stop`] (or the
/// drop), which `RunningApp` calls after everything else has stopped. Work that blocks a
/// thread holds up its share of the connections, as it held a worker before.
pub struct ConnectionThreads {
    runtimes: Vec<tokio::runtime::Handle>,
    /// Connections open on each thread (their [`Placed`] guards): the accept loops place
    /// by it, and each thread's pacemaker and busy poll read their own.
    open: Arc<[AtomicUsize]>,
    next: std::sync::atomic::AtomicUsize,
    stops: std::sync::Mutex<Vec<tokio::sync::oneshot::Sender<()>>>,
}

// Each connection thread has a pool shard of its own (`upstream::set_thread_shard`).
const _: () = assert!(crate::config::MAX_CONNECTION_THREADS < crate::upstream::SHARDS);

/// How long a stopped thread waits for its blocking tasks (a usage row written directly).
const BLOCKING_WAIT: Duration = Duration::from_secs(5);

impl ConnectionThreads {
    /// `n` threads (at least one). Each busy-polls for `busy_poll` after the requests of
    /// a lone connection (zero: never); see [`busy_poll_loop`].
    pub fn start(n: usize, busy_poll: Duration) -> std::io::Result<Self> {
        let n = n.max(1);
        let open: Arc<[AtomicUsize]> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        let mut runtimes = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtimes.push(runtime.handle().clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            stops.push(stop);
            let counts = open.clone();
            std::thread::Builder::new()
                .name(format!("connections-{i}"))
                .spawn(move || {
                    crate::upstream::set_thread_shard(i + 1);
                    HERE.with(|h| {
                        let _ = h.counts.set((counts, i));
                    });
                    runtime.block_on(async {
                        // Spawned, not awaited here: waking the future `block_on` runs
                        // wakes the driver through its eventfd too.
                        tokio::spawn(pacemaker());
                        if !busy_poll.is_zero() {
                            HERE.with(|h| h.busy_poll.set(busy_poll));
                            tokio::spawn(busy_poll_loop());
                        }
                        let _ = stopped.await;
                    });
                    // Tasks still here are dropped; blocking ones get a little time.
                    runtime.shutdown_timeout(BLOCKING_WAIT);
                })?;
        }
        Ok(Self {
            runtimes,
            open,
            next: std::sync::atomic::AtomicUsize::new(0),
            stops: std::sync::Mutex::new(stops),
        })
    }

    /// Stop the threads: whatever still runs on them (a connection still open after the
    /// shutdown's grace period, a task a handler left behind) is dropped. Returns at once.
    pub fn stop(&self) {
        let stops = std::mem::take(
            &mut *self
                .stops
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for stop in stops {
            let _ = stop.send(());
        }
    }

    /// The runtime of a new connection, and its place there (to hold while it is open).
    pub(super) fn place(&self) -> (&tokio::runtime::Handle, Placed) {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let i = fewest_open(&self.open, start);
        self.open[i].fetch_add(1, Ordering::Relaxed);
        let placed = Placed {
            open: self.open.clone(),
            thread: i,
        };
        (&self.runtimes[i], placed)
    }
}

/// The thread with the fewest open connections; among equals, the first from `start`
/// on (so equals take connections in turn).
fn fewest_open(open: &[AtomicUsize], start: usize) -> usize {
    let n = open.len();
    (0..n)
        .map(|k| (start % n + k) % n)
        .min_by_key(|&i| open[i].load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// A connection's place on its thread, given back when it is dropped.
pub(super) struct Placed {
    open: Arc<[AtomicUsize]>,
    thread: usize,
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.open[self.thread].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for ConnectionThreads {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a connection thread knows of its own connections (a thread-local).
struct Here {
    /// The threads' open connections, and which of them is this thread's.
    counts: OnceCell<(Arc<[AtomicUsize]>, usize)>,
    /// When a request of this thread last began or was answered.
    last_request: Cell<Option<Instant>>,
    /// How long to busy-poll after it (zero: never).
    busy_poll: Cell<Duration>,
    /// The busy poll is running (a request need not wake it).
    polling: Cell<bool>,
    /// Told when a connection's task starts (the pacemaker waits for one).
    first_connection: Arc<Notify>,
    /// Told when a request begins or is answered while the busy poll waits.
    request_seen: Arc<Notify>,
}

thread_local! {
    static HERE: Here = Here {
        counts: OnceCell::new(),
        last_request: Cell::new(None),
        busy_poll: Cell::new(Duration::ZERO),
        polling: Cell::new(false),
        first_connection: Arc::new(Notify::new()),
        request_seen: Arc::new(Notify::new()),
    };
}

impl Here {
    /// Connections open on this thread (none on a thread that is not a connection thread).
    fn open(&self) -> usize {
        self.counts
            .get()
            .map_or(0, |(counts, i)| counts[*i].load(Ordering::Relaxed))
    }
}

/// What a connection tells its thread.
pub(super) struct ConnectionHere;

impl ConnectionHere {
    /// A connection's task starts on this thread (counted already, at its placing): the
    /// pacemaker may be waiting for it.
    pub(super) fn enter() {
        HERE.with(|h| h.first_connection.notify_one());
    }

    /// A request began, or its answer is ready: the client's next step usually follows
    /// within microseconds.
    pub(super) fn request_seen() {
        HERE.with(|h| {
            // Nothing to note for a thread the poll does not run on (most requests under
            // load: that thread has many connections).
            if h.busy_poll.get().is_zero() || h.open() != 1 {
                return;
            }
            h.last_request.set(Some(Instant::now()));
            if !h.polling.get() {
                h.request_seen.notify_one();
            }
        });
    }
}

/// How often the pacemaker's timer fires while its thread has connections.
const PACE: Duration = Duration::from_millis(500);

/// tokio wakes its own driver (an `eventfd` write, and one more event for the next
/// `epoll_wait`) whenever a timer is set to fire before the driver's next planned wake,
/// even from the driver's own thread (tokio-rs/tokio#5207). Every request sets such a
/// timer: hyper's header timeout after each answer, 10 s ahead while an upstream call's
/// farther ones are the next planned. A timer that always fires within [`PACE`] keeps
/// the planned wake that close, so those timers set nothing off: one `write` less per
/// request at c=1, 0.17 at c=64 (docs/performance.md, round 6). An idle thread waits
/// without a timer.
async fn pacemaker() {
    let first_connection = HERE.with(|h| h.first_connection.clone());
    loop {
        if HERE.with(Here::open) == 0 {
            first_connection.notified().await;
            continue;
        }
        tokio::time::sleep(PACE).await;
    }
}

/// A thread that serves one connection alone is latency-bound: its client sends the
/// next request as soon as it has the answer, and the upstream answers within a fraction
/// of a millisecond. Sleeping in `epoll_wait` between those costs a wake-up each time
/// (tens of microseconds on a virtual machine). So for `busy_poll` after a request
/// began or was answered, this task keeps yielding: the runtime then polls its driver
/// without a timeout instead of sleeping in it, as Linux's `busy_poll` or Go's spinning
/// scheduler do. With two connections or more on the thread, or after the window, the
/// thread sleeps as before: wake-ups are shared by the requests there, and the spin
/// would take the cores the clients and upstreams need.
async fn busy_poll_loop() {
    let request_seen = HERE.with(|h| h.request_seen.clone());
    loop {
        request_seen.notified().await;
        let Some(_turn) = PollingTurn::take() else {
            continue;
        };
        HERE.with(|h| h.polling.set(true));
        while HERE.with(|h| {
            h.open() == 1
                && h.last_request
                    .get()
                    .is_some_and(|t| t.elapsed() < h.busy_poll.get())
        }) {
            tokio::task::yield_now().await;
        }
        HERE.with(|h| h.polling.set(false));
    }
}

/// Threads busy-polling now, across all the connection threads.
static POLLING_THREADS: AtomicUsize = AtomicUsize::new(0);

/// One of the polling places: at most half the cores poll at once (none on one core), so
/// the clients and upstreams on the same machine keep cores to run on. Measured on two
/// cores with both threads polling at c=2: p50 better, p99 and requests/s worse. A lone
/// client that keeps sending renews its thread's window, and keeps its turn meanwhile.
struct PollingTurn(());

impl PollingTurn {
    fn take() -> Option<Self> {
        static MOST: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let most =
            *MOST.get_or_init(|| std::thread::available_parallelism().map_or(0, |n| n.get() / 2));
        POLLING_THREADS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < most).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(()))
    }
}

impl Drop for PollingTurn {
    fn drop(&mut self) {
        POLLING_THREADS.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_thread_with_the_fewest_open_and_equals_take_turns() {
        let open = |counts: &[usize]| -> Vec<AtomicUsize> {
            counts.iter().map(|&c| AtomicUsize::new(c)).collect()
        };
        // (open per thread, turn) → thread
        let table: &[(&[usize], usize, usize)] = &[
            (&[0, 0], 0, 0),
            (&[0, 0], 1, 1),
            (&[0, 0], 2, 0),
            (&[1, 0], 0, 1),
            (&[1, 0], 1, 1),
            (&[0, 1], 1, 0),
            (&[3, 1, 1], 0, 1),
            (&[3, 1, 1], 2, 2),
            (&[3, 1, 1], 3, 1),
            (&[2, 2, 0], 0, 2),
            (&[5], 7, 0),
        ];
        for &(counts, turn, want) in table {
            assert_eq!(
                fewest_open(&open(counts), turn),
                want,
                "{counts:?}, turn {turn}"
            );
        }
    }
}
