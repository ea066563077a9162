//! Pause points in a service's automatic recovery, so a test can hold the runner at an
//! exact point and make a request land there (the restart race: `tests/it/supervisor.rs`).
//! Inert unless a test arms one: a runner passing a point checks one mutex-guarded map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Where an automatic recovery can be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecoveryPoint {
    /// The instance ended and `crashed` was recorded; the restart policy is next.
    Crashed,
    /// `backoff` was recorded; the wait before the next launch is next.
    Backoff,
    /// `starting` was recorded; the new instance is not started yet.
    Launching,
    /// The new instance was started; watching it (health probes) is next.
    Started,
    /// A health probe of the new instance passed; `running` is not recorded yet.
    Probed,
    /// Failing health probes: `restarting` was recorded; stopping the hung instance is next.
    Stopping,
}

/// One armed point: the runner says when it arrives and waits to be let go.
#[derive(Default)]
pub struct Pause {
    arrived: Notify,
    release: Notify,
}

impl Pause {
    /// Wait until the runner is held here.
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// Let the runner go on.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

#[derive(Default)]
pub struct Hooks {
    armed: Mutex<HashMap<(String, RecoveryPoint), Arc<Pause>>>,
}

impl Hooks {
    /// Hold `service`'s runner the next time it reaches `point` (once).
    pub fn pause_at(&self, service: &str, point: RecoveryPoint) -> Arc<Pause> {
        let pause = Arc::new(Pause::default());
        self.armed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((service.to_string(), point), pause.clone());
        pause
    }

    /// Called by the runner at `point`: returns at once unless a test armed it.
    pub(super) async fn at(&self, service: &str, point: RecoveryPoint) {
        let pause = self
            .armed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(service.to_string(), point));
        if let Some(p) = pause {
            tracing::debug!(service, ?point, "held at a test pause point");
            p.arrived.notify_one();
            p.release.notified().await;
        }
    }
}
