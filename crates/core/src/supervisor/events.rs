//! The event log: every service state change, stored in SQLite (`events` table) and
//! broadcast live for the SSE stream, the tray's notifications and the gateways.

use crate::store::{now_text, Store};
use rusqlite::params;
use serde::Serialize;
use tokio::sync::broadcast;

/// One state change of one service.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
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

/// Writes events and fans them out to live subscribers.
#[derive(Clone)]
pub struct EventLog {
    store: Store,
    live: broadcast::Sender<Event>,
}

impl EventLog {
    pub fn new(store: Store) -> Self {
        let (live, _) = broadcast::channel(256);
        Self { store, live }
    }

    /// Store and broadcast one event. A storage failure is logged, never fatal: the
    /// supervisor keeps supervising even with a broken database.
    pub async fn record(
        &self,
        service: &str,
        from: Option<&str>,
        to: &str,
        reason: &str,
        actor: Option<&str>,
    ) -> Event {
        let mut event = Event {
            id: 0,
            ts: now_text(),
            service: service.to_string(),
            from: from.map(str::to_string),
            to: to.to_string(),
            reason: reason.to_string(),
            actor: actor.map(str::to_string),
        };
        let row = event.clone();
        match self
            .store
            .with(move |c| {
                c.execute(
                    "INSERT INTO events (ts, service, from_state, to_state, reason, actor) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![row.ts, row.service, row.from, row.to, row.reason, row.actor],
                )?;
                Ok(c.last_insert_rowid())
            })
            .await
        {
            Ok(id) => event.id = id,
            Err(e) => tracing::error!(error = %e, service, "cannot store event"),
        }
        tracing::info!(
            service,
            from = from.unwrap_or("-"),
            to,
            reason,
            actor = actor.unwrap_or("-"),
            "service state"
        );
        // No subscriber is fine.
        let _ = self.live.send(event.clone());
        event
    }

    /// The latest `limit` events, newest first.
    pub async fn latest(&self, limit: u32, service: Option<String>) -> anyhow::Result<Vec<Event>> {
        self.store
            .with(move |c| {
                let mut stmt = c.prepare(
                    "SELECT id, ts, service, from_state, to_state, reason, actor FROM events \
                     WHERE (?1 IS NULL OR service = ?1) ORDER BY id DESC LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![service, limit], |r| {
                    Ok(Event {
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

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}
