//! Retention: what the database keeps, and the figures the dashboard shows.
//! Image files live on disk (`media::files`); this module only decides which of their
//! rows go and reports the file contents nobody references any more.

use super::Store;
use crate::config::RetentionConfig;
use rusqlite::params;
use serde::Serialize;

/// What one sweep removed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub at: String,
    pub usage_rows: u64,
    pub event_rows: u64,
    pub job_rows: u64,
    pub media_rows: u64,
    /// Files no longer referenced by any row (deleted by the file store).
    pub media_files: u64,
    pub media_bytes: u64,
}

/// Row counts and sizes, for the dashboard.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StorageFigures {
    pub db_bytes: u64,
    pub usage_rows: u64,
    pub event_rows: u64,
    pub job_rows: u64,
    pub media_rows: u64,
    /// Bytes of the distinct stored images.
    pub media_bytes: u64,
    pub oldest_usage: Option<String>,
}

/// A stored image's content no row refers to any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub sha256: String,
    pub mime: String,
    pub bytes: u64,
}

fn cutoff(days: u32) -> String {
    (chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Delete what is older or larger than `policy` allows. Returns the report and the
    /// image contents that became unreferenced (for the file store to delete).
    pub async fn sweep(
        &self,
        policy: RetentionConfig,
    ) -> anyhow::Result<(SweepReport, Vec<Orphan>)> {
        self.flush_usage().await;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut r = SweepReport {
                at: super::now_text(),
                ..Default::default()
            };
            if policy.usage_days > 0 {
                r.usage_rows = tx.execute("DELETE FROM usage WHERE ts < ?1", params![cutoff(policy.usage_days)])? as u64;
            }
            if policy.events_days > 0 {
                r.event_rows = tx.execute("DELETE FROM events WHERE ts < ?1", params![cutoff(policy.events_days)])? as u64;
            }
            if policy.events_max_rows > 0 {
                r.event_rows += tx.execute(
                    "DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                    params![policy.events_max_rows as i64],
                )? as u64;
            }
            if policy.jobs_days > 0 {
                // Finished jobs only: a running one is never swept from under its task.
                r.job_rows = tx.execute(
                    "DELETE FROM jobs WHERE updated_at < ?1 AND status NOT IN ('queued', 'running')",
                    params![cutoff(policy.jobs_days)],
                )? as u64;
            }
            let before: Vec<(String, String, i64)> = {
                let mut st = tx.prepare("SELECT DISTINCT sha256, mime, bytes FROM media_files")?;
                let rows = st.query_map([], |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            if policy.media_days > 0 {
                r.media_rows = tx.execute(
                    "DELETE FROM media_files WHERE created_at < ?1",
                    params![cutoff(policy.media_days)],
                )? as u64;
            }
            if policy.media_max_bytes > 0 {
                // Oldest first until the distinct contents fit.
                loop {
                    let total: i64 = tx.query_row(
                        "SELECT COALESCE(SUM(bytes), 0) FROM (SELECT DISTINCT sha256, bytes FROM media_files)",
                        [],
                        |x| x.get(0),
                    )?;
                    if total as u64 <= policy.media_max_bytes {
                        break;
                    }
                    let gone = tx.execute(
                        "DELETE FROM media_files WHERE id IN (SELECT id FROM media_files ORDER BY created_at LIMIT 64)",
                        [],
                    )?;
                    if gone == 0 {
                        break;
                    }
                    r.media_rows += gone as u64;
                }
            }
            let mut orphans = Vec::new();
            for (sha, mime, bytes) in before {
                let still: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM media_files WHERE sha256 = ?1",
                    params![sha],
                    |x| x.get(0),
                )?;
                if still == 0 {
                    r.media_files += 1;
                    r.media_bytes += bytes as u64;
                    orphans.push(Orphan { sha256: sha, mime, bytes: bytes as u64 });
                }
            }
            tx.commit()?;
            Ok((r, orphans))
        })
        .await
    }

    pub async fn figures(&self) -> anyhow::Result<StorageFigures> {
        let path = self.path().to_path_buf();
        self.flush_usage().await;
        self.with(move |c| {
            let count = |sql: &str| c.query_row(sql, [], |x| x.get::<_, i64>(0)).map(|n| n as u64);
            Ok(StorageFigures {
                db_bytes: ["", "-wal"]
                    .iter()
                    .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
                    .map(|m| m.len())
                    .sum(),
                usage_rows: count("SELECT COUNT(*) FROM usage")?,
                event_rows: count("SELECT COUNT(*) FROM events")?,
                job_rows: count("SELECT COUNT(*) FROM jobs")?,
                media_rows: count("SELECT COUNT(*) FROM media_files")?,
                media_bytes: count(
                    "SELECT COALESCE(SUM(bytes), 0) FROM (SELECT DISTINCT sha256, bytes FROM media_files)",
                )?,
                oldest_usage: c
                    .query_row("SELECT MIN(ts) FROM usage", [], |x| x.get(0))
                    .unwrap_or(None),
            })
        })
        .await
    }
}
