//! SQLite storage for the usage log, the event log and jobs.
//!
//! One connection behind a mutex, used from `spawn_blocking`, for everything but the
//! usage log's inserts: those go to a writer thread with its own connection
//! ([`usage_writer`]), batched, so a request never waits for SQLite.

mod events;
mod jobs;
mod media_files;
mod retention;
mod usage;
mod usage_window;
mod usage_writer;

pub use events::{event_level, EventQuery, EventRow, Stored as StoredEvent};
pub use jobs::{JobKind, JobRow};
pub use media_files::StoredFile;
pub use retention::{Orphan, StorageFigures, SweepReport};
pub use usage::{
    is_service_failure, GatewayFailures, UsageCounts, UsageQuery, UsageRow, UsageSummary,
};
pub use usage_writer::{UsageWrite, BACKPRESSURE_WAIT, BATCH_LINGER, BATCH_ROWS, QUEUE_ROWS};

use anyhow::Context;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Schema migrations, applied in order; `PRAGMA user_version` remembers how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: usage log, events, jobs.
    "CREATE TABLE usage (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        request_id TEXT NOT NULL,
        client TEXT NOT NULL,
        key_id TEXT,
        kind TEXT NOT NULL,
        role TEXT,
        task TEXT,
        mode TEXT,
        provider TEXT,
        model TEXT,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        total_tokens INTEGER,
        latency_ms REAL NOT NULL,
        status INTEGER NOT NULL,
        error_code TEXT
    );
    CREATE INDEX usage_ts ON usage(ts);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        service TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        reason TEXT NOT NULL,
        actor TEXT
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        provider TEXT,
        upstream_id TEXT,
        request TEXT NOT NULL,
        result TEXT,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX jobs_status ON jobs(status);",
    // 2: media file store (content-addressed files under data_dir/media).
    "CREATE TABLE media_files (
        id TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        mime TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        job_id TEXT,
        provider TEXT,
        workflow TEXT,
        prompt TEXT,
        seed INTEGER,
        created_at TEXT NOT NULL
    );
    CREATE INDEX media_files_job ON media_files(job_id);",
    // 3: the estimated cost of each request (contract: the usage record carries it).
    "ALTER TABLE usage ADD COLUMN estimated_cost_usd REAL",
    // 4: a job's progress survives a restart (it never goes back), and its note.
    "ALTER TABLE jobs ADD COLUMN progress REAL;
     ALTER TABLE jobs ADD COLUMN note TEXT",
    // 5: a run of identical events is one row with a count and the last time.
    "ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE events ADD COLUMN last_ts TEXT",
];

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    usage: Arc<usage_writer::UsageQueue>,
}

impl Store {
    /// Open (creating if needed) `sparklio-desk.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data folder {}", data_dir.display()))?;
        let path = data_dir.join("sparklio-desk.db");
        let conn =
            Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn)?;
        // Only figures: a table they cannot be read from still opens, with none.
        let window = usage::seed_window(&conn).unwrap_or_else(|e| {
            tracing::warn!(
                "cannot read the recent usage figures from {}: {e}",
                path.display()
            );
            Default::default()
        });
        let usage = usage_writer::UsageQueue::start(&path, window)
            .with_context(|| format!("cannot start the usage log writer on {}", path.display()))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
            usage: Arc::new(usage),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on the connection off the async runtime.
    pub async fn with<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .context("store task panicked")?
        .context("sqlite")
    }
}

fn migrate(conn: &Connection) -> anyhow::Result<()> {
    let done: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .with_context(|| format!("migration {}", i + 1))?;
    }
    Ok(())
}

/// Now, as the RFC 3339 UTC text every table stores.
pub fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
