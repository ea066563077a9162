//! The `events` table: every service state change (and the gateway alarm), newest
//! read first. A change identical to the service's latest event is not stored again: the
//! latest row counts it (`count`, `last_ts`), so a blocked service checked every few
//! seconds for an hour is one row, not 720.

use super::Store;
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

/// One state change of one service (or a run of identical ones).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventRow {
    pub id: i64,
    /// RFC 3339 UTC: when it first happened.
    pub ts: String,
    pub service: String,
    pub from: Option<String>,
    pub to: String,
    /// Why, e.g. "exit code 1", "3 health probes failed", "restarted by admin from 100.64.1.2".
    pub reason: String,
    /// Who caused it: "supervisor" or "admin from <ip>".
    pub actor: Option<String>,
    /// How many times it happened in a row (1 for a single change).
    pub count: u32,
    /// When it last happened (= `ts` for a single change).
    pub last_ts: String,
    /// `ok`, `degraded` or `down`: how the state it reached counts ([`event_level`]).
    pub level: &'static str,
}

/// How a state an event reaches counts: the tray's levels (`notify::level_of_state`) for
/// service states, and the gateway alarm's `failing` (down) / `ok`.
pub fn event_level(to: &str) -> &'static str {
    match to {
        "crashed" | "failed" | "unavailable" | "failing" => "down",
        "starting" | "restarting" | "backoff" | "unhealthy" => "degraded",
        _ => "ok",
    }
}

/// The states that count as `level` (for filtering in SQL).
fn states_of_level(level: &str) -> &'static [&'static str] {
    match level {
        "down" => &["crashed", "failed", "unavailable", "failing"],
        "degraded" => &["starting", "restarting", "backoff", "unhealthy"],
        "ok" => &["running", "stopped", "ok"],
        _ => &[],
    }
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub limit: u32,
    pub service: Option<String>,
    /// `ok`, `degraded`, `down` (several allowed).
    pub levels: Vec<String>,
    /// An actor, or its first word: `admin` matches "admin from 127.0.0.1".
    pub actor: Option<String>,
}

/// What storing an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    /// The row's count after this one (1: a new row).
    pub count: u32,
}

impl Store {
    /// Store one event: a new row, or one more count on the service's latest row when it
    /// says the same (same target state, reason and actor, and the same origin state or a
    /// repeat of the state it is already in).
    pub async fn insert_event(&self, row: EventRow) -> anyhow::Result<Stored> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let latest = tx
                .query_row(
                    "SELECT id, from_state, to_state, reason, actor, count FROM events \
                     WHERE service = ?1 ORDER BY id DESC LIMIT 1",
                    params![row.service],
                    |r| {
                        Ok(Latest {
                            id: r.get(0)?,
                            from: r.get(1)?,
                            to: r.get(2)?,
                            reason: r.get(3)?,
                            actor: r.get(4)?,
                            count: r.get(5)?,
                        })
                    },
                )
                .optional()?;
            let stored = match latest {
                Some(Latest {
                    id,
                    from,
                    to,
                    reason,
                    actor,
                    count,
                }) if to == row.to
                    && reason == row.reason
                    && actor == row.actor
                    && (from == row.from || row.from.as_deref() == Some(row.to.as_str())) =>
                {
                    tx.execute(
                        "UPDATE events SET count = count + 1, last_ts = ?2 WHERE id = ?1",
                        params![id, row.ts],
                    )?;
                    Stored {
                        id,
                        count: count + 1,
                    }
                }
                _ => {
                    tx.execute(
                        "INSERT INTO events (ts, service, from_state, to_state, reason, actor, count, last_ts) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?1)",
                        params![row.ts, row.service, row.from, row.to, row.reason, row.actor],
                    )?;
                    Stored {
                        id: tx.last_insert_rowid(),
                        count: 1,
                    }
                }
            };
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    /// One event by id.
    pub async fn event(&self, id: i64) -> anyhow::Result<Option<EventRow>> {
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM events WHERE id = ?1"),
                params![id],
                read_row,
            )
            .optional()
        })
        .await
    }

    /// The latest events, newest first (by when they last happened).
    pub async fn latest_events(&self, q: EventQuery) -> anyhow::Result<Vec<EventRow>> {
        self.with(move |c| {
            let states: Vec<&str> = q
                .levels
                .iter()
                .flat_map(|l| states_of_level(l).iter().copied())
                .collect();
            // An unknown level matches nothing rather than everything.
            let level_filter = !q.levels.is_empty();
            let states_json = serde_json::to_string(&states).unwrap_or_else(|_| "[]".into());
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM events \
                 WHERE (?1 IS NULL OR service = ?1) \
                   AND (?3 = 0 OR to_state IN (SELECT value FROM json_each(?4))) \
                   AND (?5 IS NULL OR actor = ?5 OR substr(actor, 1, length(?5) + 1) = ?5 || ' ') \
                 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(
                params![q.service, q.limit, level_filter, states_json, q.actor],
                read_row,
            )?;
            rows.collect()
        })
        .await
    }
}

/// A service's latest event, as far as deduplication compares it.
struct Latest {
    id: i64,
    from: Option<String>,
    to: String,
    reason: String,
    actor: Option<String>,
    count: u32,
}

const COLUMNS: &str = "id, ts, service, from_state, to_state, reason, actor, count, last_ts";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    let ts: String = r.get(1)?;
    let to: String = r.get(4)?;
    let last_ts: Option<String> = r.get(8)?;
    Ok(EventRow {
        id: r.get(0)?,
        last_ts: last_ts.unwrap_or_else(|| ts.clone()),
        ts,
        service: r.get(2)?,
        from: r.get(3)?,
        level: event_level(&to),
        to,
        reason: r.get(5)?,
        actor: r.get(6)?,
        count: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts: &str, from: &str, to: &str, reason: &str) -> EventRow {
        EventRow {
            id: 0,
            ts: ts.into(),
            service: "ollama".into(),
            from: Some(from.into()),
            to: to.into(),
            reason: reason.into(),
            actor: Some("supervisor".into()),
            count: 1,
            last_ts: ts.into(),
            level: event_level(to),
        }
    }

    /// An event is read-then-written in one transaction while the usage log's writer
    /// commits from its own connection: a deferred transaction that read before the
    /// other commit cannot write after it (SQLITE_BUSY at once, whatever the busy
    /// timeout), and the event was lost. Taking the write lock first makes it wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_are_kept_while_the_usage_log_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..4000 {
                    let row = crate::store::UsageRow {
                        ts: crate::store::now_text(),
                        request_id: format!("r{i}"),
                        kind: "llm".into(),
                        status: 200,
                        ..Default::default()
                    };
                    store.insert_usage(row).await.unwrap();
                    if i % 50 == 0 {
                        store.flush_usage().await;
                    }
                }
            })
        };
        let mut failed = Vec::new();
        for i in 0..300 {
            let mut r = row(
                "2026-01-01T14:02:00Z",
                "running",
                "crashed",
                &format!("exit {i}"),
            );
            r.service = format!("svc{}", i % 7);
            if let Err(e) = store.insert_event(r).await {
                failed.push(format!("{e:#}"));
            }
        }
        writer.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} events lost: {:?}",
            failed.len(),
            failed.first()
        );
    }

    #[tokio::test]
    async fn an_hour_of_identical_checks_is_one_counted_row() {
        let dir = std::env::temp_dir().join(format!("sparklio-ev-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir).unwrap();
        let why = "Docker is not running (cannot reach the Docker engine)";
        let first = store
            .insert_event(row("2026-01-01T14:02:00Z", "starting", "unavailable", why))
            .await
            .unwrap();
        assert_eq!(first.count, 1);
        // A check every 5 s for an hour: 720 more, each "still unavailable".
        let mut last = first;
        for i in 1..=720u32 {
            let ts = (chrono::DateTime::parse_from_rfc3339("2026-01-01T14:02:00Z").unwrap()
                + chrono::Duration::seconds(i64::from(i) * 5))
            .to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            last = store
                .insert_event(row(&ts, "unavailable", "unavailable", why))
                .await
                .unwrap();
        }
        assert_eq!(
            last,
            Stored {
                id: first.id,
                count: 721
            }
        );
        let all = store
            .latest_events(EventQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].count, 721);
        assert_eq!(all[0].ts, "2026-01-01T14:02:00Z");
        assert_eq!(all[0].last_ts, "2026-01-01T15:02:00Z");
        assert_eq!(all[0].level, "down");
        // A different change is a new row; the same one after it is new again.
        store
            .insert_event(row(
                "2026-01-01T15:03:00Z",
                "unavailable",
                "starting",
                "checked again",
            ))
            .await
            .unwrap();
        let again = store
            .insert_event(row("2026-01-01T15:04:00Z", "starting", "unavailable", why))
            .await
            .unwrap();
        assert_eq!(again.count, 1);
        assert_ne!(again.id, first.id);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn filters_by_service_level_and_actor() {
        let dir = std::env::temp_dir().join(format!("sparklio-ev-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir).unwrap();
        let mut r = row("2026-01-01T10:00:00Z", "running", "crashed", "exit code 1");
        store.insert_event(r.clone()).await.unwrap();
        r.to = "running".into();
        r.from = Some("starting".into());
        r.reason = "health probe passed".into();
        store.insert_event(r.clone()).await.unwrap();
        r.service = "comfyui".into();
        r.to = "restarting".into();
        r.reason = "restarted by admin from 127.0.0.1".into();
        r.actor = Some("admin from 127.0.0.1".into());
        store.insert_event(r.clone()).await.unwrap();
        let q = |service: Option<&str>, levels: &[&str], actor: Option<&str>| EventQuery {
            limit: 50,
            service: service.map(String::from),
            levels: levels.iter().map(ToString::to_string).collect(),
            actor: actor.map(String::from),
        };
        let reasons = |v: Vec<EventRow>| v.into_iter().map(|e| e.reason).collect::<Vec<_>>();
        assert_eq!(
            reasons(store.latest_events(q(None, &["down"], None)).await.unwrap()),
            ["exit code 1"]
        );
        assert_eq!(
            reasons(
                store
                    .latest_events(q(None, &["down", "degraded"], None))
                    .await
                    .unwrap()
            ),
            ["restarted by admin from 127.0.0.1", "exit code 1"]
        );
        assert_eq!(
            reasons(
                store
                    .latest_events(q(None, &[], Some("admin")))
                    .await
                    .unwrap()
            ),
            ["restarted by admin from 127.0.0.1"]
        );
        assert_eq!(
            store
                .latest_events(q(None, &[], Some("adm")))
                .await
                .unwrap()
                .len(),
            0
        );
        assert_eq!(
            store
                .latest_events(q(Some("ollama"), &[], Some("supervisor")))
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store
                .latest_events(q(None, &["nonsense"], None))
                .await
                .unwrap()
                .len(),
            0
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
