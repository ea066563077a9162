//! The event log: every service state change, stored in SQLite (`events` table) and
//! broadcast live for the SSE stream, the tray's notifications and the gateways.

use crate::store::{now_text, EventQuery, Store};
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
        let mut event = Event {
            id: 0,
            ts: now_text(),
            service: service.to_string(),
            from: from.map(str::to_string),
            to: to.to_string(),
            reason: reason.to_string(),
            actor: actor.map(str::to_string),
        };
        match self.store.insert_event(event.clone()).await {
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
            .latest_events(EventQuery { limit, service })
            .await
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}
