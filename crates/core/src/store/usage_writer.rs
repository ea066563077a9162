//! The usage log's writer: one thread with its own SQLite connection, fed by a bounded
//! queue, inserting rows with one prepared statement in batched transactions.
//!
//! A request only puts its row on the queue (no blocking-pool hop, no connection
//! mutex, no transaction of its own). The writer wakes for the first row, lets rows
//! gather for [`BATCH_LINGER`], and commits what queued, up to [`BATCH_ROWS`] rows per
//! transaction: an idle Desk writes each row within about ten milliseconds, a busy one pays
//! one wake-up and one commit for many rows.
//!
//! When the queue is full the request waits up to [`BACKPRESSURE_WAIT`] for room
//! (back-pressure); only then is the row dropped and counted
//! ([`super::Store::usage_rows_dropped`], `usage_rows_dropped_total` in `/metrics`).
//! Readers of the usage table flush first, so they see every row recorded before
//! they asked. On shutdown [`super::Store::close_usage_log`] writes everything queued;
//! a row recorded after that is written directly, so a clean stop loses nothing.

use super::usage::{UsageRow, INSERT_USAGE};
use super::usage_window::UsageWindow;
use prometheus_client::metrics::counter::Counter;
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Rows the queue holds before requests wait (a few MB at most).
pub const QUEUE_ROWS: usize = 4096;
/// Rows per transaction at most.
pub const BATCH_ROWS: usize = 512;
/// How long the writer lets rows gather after the first one before it commits: at
/// most one wake-up and one transaction per this interval, however busy the Desk (at
/// 10,000 requests/s, ~100 rows a commit: the WAL's pages are written once per batch,
/// not once per few rows). A crash loses at most this much; a clean stop nothing.
pub const BATCH_LINGER: Duration = Duration::from_millis(10);
/// How long a request waits for room in a full queue before its row is dropped.
pub const BACKPRESSURE_WAIT: Duration = Duration::from_millis(250);
/// How long a shutdown waits for the writer to write what is queued.
const CLOSE_WAIT: Duration = Duration::from_secs(30);
/// The writer connection's page cache, in KiB (a negative `cache_size` is KiB).
const WRITER_CACHE_KIB: i64 = 256;

enum Msg {
    Row(Box<UsageRow>),
    /// Answered once every row queued before it is committed.
    Flush(oneshot::Sender<()>),
    /// Write everything queued, answer, stop.
    Close(oneshot::Sender<()>),
}

/// What happened to one row handed to the usage log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageWrite {
    /// On the writer's queue.
    Queued,
    /// Written directly (the writer had already stopped).
    Written,
    /// The queue stayed full for [`BACKPRESSURE_WAIT`]: the row is lost (and counted).
    Dropped,
}

/// The sending side, shared by every clone of the store.
pub(super) struct UsageQueue {
    tx: mpsc::Sender<Msg>,
    counts: Arc<Counts>,
    /// The recent figures, counted as rows are committed.
    window: Arc<Mutex<UsageWindow>>,
}

#[derive(Default)]
struct Counts {
    /// Rows lost: dropped on a full queue, or refused by SQLite (shared with
    /// `/metrics` as `usage_rows_dropped_total`).
    dropped: Counter,
    /// Rows committed by the writer.
    written: AtomicU64,
}

impl UsageQueue {
    /// Start the writer thread on its own connection to `path` (already migrated),
    /// counting into `window` what it commits.
    pub(super) fn start(path: &Path, window: UsageWindow) -> anyhow::Result<Self> {
        let conn = writer_connection(path)?;
        let (tx, rx) = mpsc::channel(QUEUE_ROWS);
        let counts = Arc::new(Counts::default());
        let window = Arc::new(Mutex::new(window));
        let shared = (counts.clone(), window.clone());
        std::thread::Builder::new()
            .name("usage-writer".into())
            .spawn(move || writer(conn, rx, &shared.0, &shared.1))?;
        Ok(Self { tx, counts, window })
    }

    /// The recent figures of the rows committed so far.
    pub(super) fn window(&self) -> MutexGuard<'_, UsageWindow> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue a row; waits (bounded) when the queue is full. `Err(row)`: the writer has
    /// stopped, the caller writes the row itself.
    pub(super) async fn push(&self, row: UsageRow) -> Result<UsageWrite, Box<UsageRow>> {
        match self.tx.try_send(Msg::Row(Box::new(row))) {
            Ok(()) => Ok(UsageWrite::Queued),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                match tokio::time::timeout(BACKPRESSURE_WAIT, self.tx.send(msg)).await {
                    Ok(Ok(())) => Ok(UsageWrite::Queued),
                    Ok(Err(mpsc::error::SendError(msg))) => Err(unwrap_row(msg)),
                    Err(_) => {
                        let n = self.counts.dropped.inc() + 1;
                        if n.is_power_of_two() {
                            tracing::warn!(dropped = n, "usage log queue full: row dropped");
                        }
                        Ok(UsageWrite::Dropped)
                    }
                }
            }
            Err(mpsc::error::TrySendError::Closed(msg)) => Err(unwrap_row(msg)),
        }
    }

    /// Wait until every row queued so far is committed (at once if the writer stopped).
    pub(super) async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Write everything queued and stop the writer. Later rows are written directly.
    pub(super) async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Close(ack)).await.is_err() {
            return;
        }
        if tokio::time::timeout(CLOSE_WAIT, done).await.is_err() {
            tracing::warn!(
                queued = QUEUE_ROWS - self.tx.capacity(),
                "the usage log writer did not finish in {CLOSE_WAIT:?}"
            );
        }
    }

    pub(super) fn dropped(&self) -> u64 {
        self.counts.dropped.get()
    }

    pub(super) fn dropped_counter(&self) -> Counter {
        self.counts.dropped.clone()
    }

    pub(super) fn written(&self) -> u64 {
        self.counts.written.load(Ordering::Relaxed)
    }

    /// A row the caller failed to write directly.
    pub(super) fn count_lost(&self) {
        self.counts.dropped.inc();
    }
}

/// The writer's own connection to the database at `path`.
fn writer_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Appending touches only the right edge of the table and its index, a few dozen
    // pages; SQLite's default cache (2 MB) would fill with pages it never reuses as the
    // table grows, and hold them (a soak's RSS crept by 2–3 MB).
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn unwrap_row(msg: Msg) -> Box<UsageRow> {
    match msg {
        Msg::Row(row) => row,
        // Only rows are ever pushed through `push`.
        Msg::Flush(_) | Msg::Close(_) => unreachable!("push sends rows only"),
    }
}

/// Insert `rows` in one transaction with the cached prepared statement.
pub(super) fn insert_rows(c: &mut Connection, rows: &[UsageRow]) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(INSERT_USAGE)?;
        for row in rows {
            stmt.execute(params![
                row.ts,
                row.request_id,
                row.client,
                row.key_id,
                row.kind,
                row.role,
                row.task,
                row.mode,
                row.provider,
                row.model,
                row.prompt_tokens,
                row.completion_tokens,
                row.total_tokens,
                row.latency_ms,
                row.status,
                row.error_code,
                row.estimated_cost_usd
            ])?;
        }
    }
    tx.commit()
}

/// The writer thread's state.
struct Writer<'a> {
    conn: Connection,
    batch: Vec<UsageRow>,
    /// Close requests, answered once everything is written.
    closed: Vec<oneshot::Sender<()>>,
    counts: &'a Counts,
    window: &'a Mutex<UsageWindow>,
}

impl Writer<'_> {
    fn commit(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let n = self.batch.len() as u64;
        match insert_rows(&mut self.conn, &self.batch) {
            Ok(()) => {
                self.counts.written.fetch_add(n, Ordering::Relaxed);
                let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
                for row in &self.batch {
                    window.add(row);
                }
            }
            Err(e) => {
                let lost = self.counts.dropped.inc_by(n) + n;
                tracing::warn!(rows = n, lost, "usage log: {e}");
            }
        }
        self.batch.clear();
    }

    fn take(&mut self, msg: Msg, rx: &mut mpsc::Receiver<Msg>) {
        match msg {
            Msg::Row(row) => {
                self.batch.push(*row);
                if self.batch.len() >= BATCH_ROWS {
                    self.commit();
                }
            }
            Msg::Flush(ack) => {
                self.commit();
                let _ = ack.send(());
            }
            Msg::Close(ack) => {
                // Refuse new rows (they are written directly); drain what is queued.
                rx.close();
                self.closed.push(ack);
            }
        }
    }
}

/// The writer thread: a batch is whatever queued while the last one was written.
fn writer(
    conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    counts: &Counts,
    window: &Mutex<UsageWindow>,
) {
    let mut w = Writer {
        conn,
        batch: Vec::with_capacity(BATCH_ROWS),
        closed: Vec::new(),
        counts,
        window,
    };
    while let Some(first) = rx.blocking_recv() {
        let gather = matches!(first, Msg::Row(_));
        w.take(first, &mut rx);
        if gather {
            // Requests meanwhile only append to the queue (no wake-up while we sleep).
            std::thread::sleep(BATCH_LINGER);
        }
        while let Ok(msg) = rx.try_recv() {
            w.take(msg, &mut rx);
        }
        w.commit();
        if !w.closed.is_empty() {
            break;
        }
    }
    // Closed (or every sender is gone): anything still buffered is written too.
    while let Ok(msg) = rx.try_recv() {
        w.take(msg, &mut rx);
    }
    w.commit();
    for ack in w.closed.drain(..) {
        let _ = ack.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, UsageQuery};

    fn row(i: usize) -> UsageRow {
        UsageRow {
            ts: crate::store::now_text(),
            request_id: format!("r{i}"),
            client: "127.0.0.1".into(),
            kind: "llm".into(),
            latency_ms: 1.0,
            status: 200,
            ..Default::default()
        }
    }

    async fn count(store: &Store) -> u64 {
        store
            .with(|c| c.query_row("SELECT COUNT(*) FROM usage", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap() as u64
    }

    #[test]
    fn the_writer_holds_a_small_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let conn = writer_connection(&dir.path().join("usage.db")).unwrap();
        let kib: i64 = conn
            .pragma_query_value(None, "cache_size", |r| r.get(0))
            .unwrap();
        assert_eq!(kib, -WRITER_CACHE_KIB);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn readers_see_every_row_recorded_before_they_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..1500 {
            assert_eq!(
                store.insert_usage(row(i)).await.unwrap(),
                UsageWrite::Queued
            );
        }
        let recent = store
            .recent_usage(UsageQuery {
                limit: Some(1000),
                kind: None,
            })
            .await
            .unwrap();
        assert_eq!(recent.len(), 1000);
        assert_eq!(
            recent[0].request_id, "r1499",
            "newest first, nothing missing"
        );
        assert_eq!(store.usage_summary(3600).await.unwrap().requests, 1500);
        assert_eq!(store.usage_rows_written(), 1500);
        assert_eq!(store.usage_rows_dropped(), 0);
    }

    #[tokio::test]
    async fn close_writes_what_is_queued_and_later_rows_are_written_directly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let pushes: Vec<_> = (0..2000).map(|i| store.insert_usage(row(i))).collect();
        for outcome in futures::future::join_all(pushes).await {
            assert_eq!(outcome.unwrap(), UsageWrite::Queued);
        }
        store.close_usage_log().await;
        // No flush needed: close returned after the writer committed everything.
        let direct = store
            .with(|c| c.query_row("SELECT COUNT(*) FROM usage", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        assert_eq!(direct, 2000);
        assert_eq!(
            store.insert_usage(row(2000)).await.unwrap(),
            UsageWrite::Written
        );
        assert_eq!(count(&store).await, 2001);
        assert_eq!(store.usage_rows_dropped(), 0);
        assert_eq!(
            store.usage_summary(60).await.unwrap().requests,
            2001,
            "a row written directly counts in the recent figures too"
        );
    }

    #[tokio::test]
    async fn a_reopened_store_rebuilds_the_recent_figures_from_its_table() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for i in 0..300 {
                let mut r = row(i);
                r.status = if i % 3 == 0 { 503 } else { 200 };
                r.latency_ms = 2.0;
                store.insert_usage(r).await.unwrap();
            }
            // Two days old: outside every window.
            let mut old = row(300);
            old.ts = (chrono::Utc::now() - chrono::Duration::days(2))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            store.insert_usage(old).await.unwrap();
            store.close_usage_log().await;
        }
        let store = Store::open(dir.path()).unwrap();
        let s = store.usage_summary(300).await.unwrap();
        assert_eq!((s.requests, s.errors), (300, 100));
        assert!((s.p50_ms.unwrap() - 2.0).abs() < 0.1, "{s:?}");
        assert_eq!(store.usage_summary(86_400).await.unwrap().requests, 300);
    }

    #[tokio::test]
    async fn a_full_queue_pushes_back_then_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Another connection holds the write lock: the writer blocks on its first batch.
        let blocker = Connection::open(store.path()).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let total = QUEUE_ROWS + BATCH_ROWS + 200;
        let pushes: Vec<_> = (0..total).map(|i| store.insert_usage(row(i))).collect();
        let outcomes = futures::future::join_all(pushes).await;
        let dropped = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(UsageWrite::Dropped)))
            .count();
        // The queue holds QUEUE_ROWS; the blocked writer holds 1 to BATCH_ROWS more.
        assert!(
            (total - QUEUE_ROWS - BATCH_ROWS..total - QUEUE_ROWS).contains(&dropped),
            "dropped {dropped} of {total}"
        );
        assert_eq!(store.usage_rows_dropped(), dropped as u64);
        assert_eq!(store.usage_dropped_counter().get(), dropped as u64);
        blocker.execute_batch("ROLLBACK").unwrap();
        store.flush_usage().await;
        assert_eq!(count(&store).await, (total - dropped) as u64);
        assert_eq!(store.usage_rows_written(), (total - dropped) as u64);
    }

    #[tokio::test]
    async fn counts_after_an_id_cover_only_the_new_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let start = store.usage_id_before(300).await.unwrap();
        assert_eq!(start, 0, "an empty log starts at 0");
        for i in 0..10 {
            let mut r = row(i);
            r.status = if i % 5 == 0 { 502 } else { 200 };
            store.insert_usage(r).await.unwrap();
        }
        let first = store.usage_counts_after(start).await.unwrap();
        assert_eq!((first.requests, first.errors), (10, 2));
        for i in 10..13 {
            let mut r = row(i);
            r.status = 429;
            store.insert_usage(r).await.unwrap();
        }
        let next = store.usage_counts_after(first.last_id).await.unwrap();
        assert_eq!((next.requests, next.errors), (3, 3));
        let none = store.usage_counts_after(next.last_id).await.unwrap();
        assert_eq!((none.requests, none.last_id), (0, next.last_id));
        // Rows of the window are found again from their timestamps (a restart).
        assert_eq!(store.usage_id_before(300).await.unwrap(), start);
    }
}
