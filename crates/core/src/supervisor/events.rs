//! The event log: every service state change, stored in SQLite (`events` table) and
//! broadcast live for the SSE stream, the tray's notifications and the gateways. A change
//! identical to the service's latest one is counted on that event instead of stored again
//! (`count`, `last_ts`); the live feed then carries the updated event (same `id`).

use crate::store::{event_level, now_text, EventQuery, Store};
use tokio::sync::broadcast;

pub use crate::store::EventRow as Event;

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
        let ts = now_text();
        let mut event = Event {
            id: 0,
            ts: ts.clone(),
            service: service.to_string(),
            from: from.map(str::to_string),
            to: to.to_string(),
            reason: reason.to_string(),
            actor: actor.map(str::to_string),
            count: 1,
            last_ts: ts,
            level: event_level(to),
        };
        match self.store.insert_event(event.clone()).await {
            Ok(stored) if stored.count > 1 => {
                // A repeat: what the row says now (its first time, count, last time).
                match self.store.event(stored.id).await {
                    Ok(Some(row)) => event = row,
                    _ => {
                        event.id = stored.id;
                        event.count = stored.count;
                    }
                }
            }
            Ok(stored) => event.id = stored.id,
            Err(e) => tracing::error!(error = %e, service, "cannot store event"),
        }
        if event.count == 1 {
            tracing::info!(
                service,
                from = from.unwrap_or("-"),
                to,
                reason,
                actor = actor.unwrap_or("-"),
                "service state"
            );
        } else {
            tracing::debug!(
                service,
                to,
                reason,
                count = event.count,
                "service state (again)"
            );
        }
        // No subscriber is fine.
        let _ = self.live.send(event.clone());
        event
    }

    /// The service is still in `state` for the same reason (a recheck that found nothing
    /// changed): counted on its latest event.
    pub async fn record_repeat(&self, service: &str, state: &str, reason: &str) -> Event {
        self.record(service, Some(state), state, reason, Some("supervisor"))
            .await
    }

    /// The latest `limit` events, newest first.
    pub async fn latest(&self, limit: u32, service: Option<String>) -> anyhow::Result<Vec<Event>> {
        self.query(EventQuery {
            limit,
            service,
            ..Default::default()
        })
        .await
    }

    /// The latest events matching `q`, newest first.
    pub async fn query(&self, q: EventQuery) -> anyhow::Result<Vec<Event>> {
        self.store.latest_events(q).await
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use crate::notify::{level_of_state, Level};
    use crate::store::event_level;
    use crate::supervisor::ServiceState;

    #[test]
    fn event_levels_agree_with_the_tray() {
        for st in ServiceState::ALL {
            let want = match level_of_state(st) {
                Level::Ok => "ok",
                Level::Degraded => "degraded",
                Level::Down => "down",
            };
            assert_eq!(event_level(st.as_str()), want, "{st}");
        }
        assert_eq!(event_level("failing"), "down");
        assert_eq!(event_level("ok"), "ok");
    }
}
