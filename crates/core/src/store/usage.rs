//! The usage log: one row per gateway request, success or error.

use super::usage_window::UsageWindow;
use super::{Store, UsageWrite};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageRow {
    pub ts: String,
    pub request_id: String,
    pub client: String,
    pub key_id: Option<String>,
    /// `llm` or `media`.
    pub kind: String,
    pub role: Option<String>,
    pub task: Option<String>,
    pub mode: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub latency_ms: f64,
    pub status: u16,
    pub error_code: Option<String>,
    /// From the provider's configured token prices; 0 for local models.
    #[serde(default)]
    pub estimated_cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UsageQuery {
    pub limit: Option<u32>,
    pub kind: Option<String>,
}

/// What the gateway error-rate alarm judges: requests since a time, split by whose fault
/// a failure was.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct GatewayFailures {
    /// Requests answered (cancellations excluded: nobody waited for their answer).
    pub requests: u64,
    /// The gateway's or a provider's failures: 5xx (unavailable, overloaded, timeouts,
    /// provider errors), except the deliberate pause and shutdown.
    pub failures: u64,
    /// Client errors (4xx: validation, unknown model, auth, rate limits): not an outage.
    pub client_errors: u64,
    /// Requests the client gave up on (499).
    pub cancelled: u64,
}

/// Count one usage row: cancelled, a service failure, a client error, or fine.
fn classify(f: &mut GatewayFailures, status: u16, code: Option<&str>) {
    if status == 499 || code == Some("CLIENT_CLOSED") {
        f.cancelled += 1;
        return;
    }
    f.requests += 1;
    if is_service_failure(status, code) {
        f.failures += 1;
    } else if status >= 400 {
        f.client_errors += 1;
    }
}

/// Whether a usage row is the gateway's or a provider's failure (what the alarm counts).
pub fn is_service_failure(status: u16, error_code: Option<&str>) -> bool {
    status >= 500
        && status != 499
        && !matches!(error_code, Some("GATEWAY_PAUSED" | "SHUTTING_DOWN"))
}

/// Requests and failed requests (status ≥ 400) among usage rows with an id above `after`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub requests: u64,
    pub errors: u64,
    /// The highest row id counted (`after` when there were none): the next `after`.
    pub last_id: i64,
}

/// Aggregates over a recent window, for the dashboard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageSummary {
    pub window_s: u64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub requests_per_minute: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub total_tokens: i64,
    pub estimated_cost_usd: f64,
}

macro_rules! columns {
    () => {
        "ts, request_id, client, key_id, kind, role, task, mode, provider, model, \
         prompt_tokens, completion_tokens, total_tokens, latency_ms, status, error_code, estimated_cost_usd"
    };
}
const COLUMNS: &str = columns!();
pub(super) const INSERT_USAGE: &str = concat!(
    "INSERT INTO usage (",
    columns!(),
    ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)"
);

impl Store {
    /// Hand a row to the usage log's writer (see [`super::usage_writer`]): returns as
    /// soon as it is queued; waits a bounded time for room when the queue is full.
    pub async fn insert_usage(&self, row: UsageRow) -> anyhow::Result<UsageWrite> {
        match self.usage.push(row).await {
            Ok(outcome) => Ok(outcome),
            // The writer has stopped (after shutdown): write it here.
            Err(row) => {
                let written = self
                    .with(move |c| {
                        super::usage_writer::insert_rows(c, std::slice::from_ref(row.as_ref()))
                            .map(|()| row)
                    })
                    .await;
                match written {
                    Ok(row) => {
                        self.usage.window().add(&row);
                        Ok(UsageWrite::Written)
                    }
                    Err(e) => {
                        self.usage.count_lost();
                        Err(e)
                    }
                }
            }
        }
    }

    /// Wait until every usage row handed over so far is in the table.
    pub async fn flush_usage(&self) {
        self.usage.flush().await;
    }

    /// Write every queued usage row and stop the writer (shutdown). Rows handed over
    /// later are written directly.
    pub async fn close_usage_log(&self) {
        self.usage.close().await;
    }

    /// Usage rows lost since start: the queue stayed full, or SQLite refused them.
    pub fn usage_rows_dropped(&self) -> u64 {
        self.usage.dropped()
    }

    /// The counter behind [`Self::usage_rows_dropped`], for `/metrics`.
    pub fn usage_dropped_counter(&self) -> prometheus_client::metrics::counter::Counter {
        self.usage.dropped_counter()
    }

    /// Usage rows the writer has committed since start.
    pub fn usage_rows_written(&self) -> u64 {
        self.usage.written()
    }

    /// The latest rows, newest first.
    pub async fn recent_usage(&self, q: UsageQuery) -> anyhow::Result<Vec<UsageRow>> {
        let limit = q.limit.unwrap_or(50).min(1000);
        self.flush_usage().await;
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM usage WHERE (?1 IS NULL OR kind = ?1) ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![q.kind, limit], |r| {
                Ok(UsageRow {
                    ts: r.get(0)?,
                    request_id: r.get(1)?,
                    client: r.get(2)?,
                    key_id: r.get(3)?,
                    kind: r.get(4)?,
                    role: r.get(5)?,
                    task: r.get(6)?,
                    mode: r.get(7)?,
                    provider: r.get(8)?,
                    model: r.get(9)?,
                    prompt_tokens: r.get(10)?,
                    completion_tokens: r.get(11)?,
                    total_tokens: r.get(12)?,
                    latency_ms: r.get(13)?,
                    status: r.get(14)?,
                    error_code: r.get(15)?,
                    estimated_cost_usd: r.get(16)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// The id just before the first row of the last `window_s` seconds (the starting
    /// point for [`Self::usage_counts_after`]); an index seek, whatever the table's size.
    pub async fn usage_id_before(&self, window_s: u64) -> anyhow::Result<i64> {
        self.usage_id_before_time(chrono::Utc::now() - chrono::Duration::seconds(window_s as i64))
            .await
    }

    /// The id just before the first row written at or after `since` (the newest id
    /// when there is none).
    pub async fn usage_id_before_time(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<i64> {
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.flush_usage().await;
        self.with(move |c| {
            let first: Option<i64> = c
                .query_row(
                    "SELECT id FROM usage WHERE ts >= ?1 ORDER BY ts LIMIT 1",
                    params![since],
                    |r| r.get(0),
                )
                .optional()?;
            match first {
                Some(id) => Ok(id - 1),
                None => c.query_row("SELECT COALESCE(MAX(id), 0) FROM usage", [], |r| r.get(0)),
            }
        })
        .await
    }

    /// Count the rows written after row `after` (a range of the primary key: the cost
    /// follows the new rows, not the table), for a watcher that polls.
    pub async fn usage_counts_after(&self, after: i64) -> anyhow::Result<UsageCounts> {
        self.flush_usage().await;
        self.with(move |c| {
            c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(status >= 400), 0), COALESCE(MAX(id), ?1) FROM usage WHERE id > ?1",
                params![after],
                |r| {
                    Ok(UsageCounts {
                        requests: r.get::<_, i64>(0)? as u64,
                        errors: r.get::<_, i64>(1)? as u64,
                        last_id: r.get(2)?,
                    })
                },
            )
        })
        .await
    }

    /// Request rate, error rate and latency percentiles over the last `window_s` seconds
    /// (at most a day): from the figures counted as rows were committed, so it costs the
    /// same whatever the window holds (see [`super::usage_window`]).
    pub async fn usage_summary(&self, window_s: u64) -> anyhow::Result<UsageSummary> {
        self.flush_usage().await;
        let now = chrono::Utc::now().timestamp();
        Ok(self.usage.window().summary(now, window_s))
    }

    /// The alarm's counts over the rows written after row `after` (a range of the primary
    /// key: the cost follows the new rows, not the table), and the last id counted.
    pub async fn gateway_failures_after(
        &self,
        after: i64,
    ) -> anyhow::Result<(GatewayFailures, i64)> {
        self.flush_usage().await;
        self.with(move |c| {
            let mut stmt = c.prepare("SELECT id, status, error_code FROM usage WHERE id > ?1")?;
            let mut rows = stmt.query(params![after])?;
            let mut f = GatewayFailures::default();
            let mut last = after;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                last = last.max(id);
                let status: u16 = r.get(1)?;
                let code: Option<String> = r.get(2)?;
                classify(&mut f, status, code.as_deref());
            }
            Ok((f, last))
        })
        .await
    }
}

/// Rows read at start to rebuild the recent figures, at most (the newest ones).
pub(super) const SEED_ROWS: i64 = 200_000;

/// The recent figures of the rows already in the table: the last day's, at most the
/// newest [`SEED_ROWS`] of them (read backwards through the `ts` index, so the cost
/// follows the rows read, not the table).
pub(super) fn seed_window(c: &Connection) -> rusqlite::Result<UsageWindow> {
    let since = (chrono::Utc::now() - chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut window = UsageWindow::default();
    let mut stmt = c.prepare(
        "SELECT ts, latency_ms, status, total_tokens, estimated_cost_usd FROM usage \
         WHERE ts >= ?1 ORDER BY ts DESC LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![since, SEED_ROWS])?;
    while let Some(r) = rows.next()? {
        window.add(&UsageRow {
            ts: r.get(0)?,
            latency_ms: r.get(1)?,
            status: r.get(2)?,
            total_tokens: r.get(3)?,
            estimated_cost_usd: r.get(4)?,
            ..Default::default()
        });
    }
    Ok(window)
}
