//! The `events` table: every service state change (and the gateway alarm), newest
//! read first.

use super::Store;
use rusqlite::params;
use serde::Serialize;

/// One state change of one service.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventRow {
    pub id: i64,
    /// RFC 3339 UTC.
    pub ts: String,
    pub service: String,
    pub from: Option<String>,
    pub to: String,
    /// Why, e.g. "exit code 1", "3 health probes failed", "restarted by admin from 100.64.1.2".
    pub reason: String,
    /// Who caused it: "supervisor" or "admin from <ip>".
    pub actor: Option<String>,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub limit: u32,
    pub service: Option<String>,
}

impl Store {
    /// Store one event; returns its id.
    pub async fn insert_event(&self, row: EventRow) -> anyhow::Result<i64> {
        self.with(move |c| {
            c.execute(
                "INSERT INTO events (ts, service, from_state, to_state, reason, actor) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![row.ts, row.service, row.from, row.to, row.reason, row.actor],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    /// The latest events, newest first.
    pub async fn latest_events(&self, q: EventQuery) -> anyhow::Result<Vec<EventRow>> {
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, ts, service, from_state, to_state, reason, actor FROM events \
                 WHERE (?1 IS NULL OR service = ?1) ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![q.service, q.limit], |r| {
                Ok(EventRow {
                    id: r.get(0)?,
                    ts: r.get(1)?,
                    service: r.get(2)?,
                    from: r.get(3)?,
                    to: r.get(4)?,
                    reason: r.get(5)?,
                    actor: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}
