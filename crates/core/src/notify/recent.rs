//! The notifications the notifier delivered lately, numbered, for front ends that are not
//! the notifier's own sink: a tray app attached to a core that runs as a Windows service
//! reads them over HTTP (`GET /api/v1/notifications?after=N`) and shows them itself.

use super::{Level, Notification};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// How many are kept: a reader polling every few seconds never falls this far behind.
pub const KEPT: usize = 100;

/// One delivered notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivered {
    /// 1, 2, 3, … in delivery order (never reused while the core runs).
    pub id: u64,
    /// When it was delivered (RFC 3339, UTC).
    pub at: String,
    pub title: String,
    pub body: String,
    pub level: Level,
    pub topic: String,
}

/// The latest [`KEPT`] notifications.
#[derive(Default)]
pub struct RecentNotifications {
    inner: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    items: VecDeque<Delivered>,
    last_id: u64,
}

/// What a reader gets: the notifications after its `after`, oldest first, and the id to
/// ask after next time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Since {
    pub notifications: Vec<Delivered>,
    pub last_id: u64,
}

impl RecentNotifications {
    pub fn push(&self, n: &Notification) -> u64 {
        let mut ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        ring.last_id += 1;
        let id = ring.last_id;
        if ring.items.len() == KEPT {
            ring.items.pop_front();
        }
        ring.items.push_back(Delivered {
            id,
            at: crate::store::now_text(),
            title: n.title.clone(),
            body: n.body.clone(),
            level: n.level,
            topic: n.topic.clone(),
        });
        id
    }

    /// Those after `after` (all kept ones for 0). An `after` beyond the last id (the core
    /// restarted and counts from 1 again) reads as 0: the reader starts over.
    pub fn since(&self, after: u64) -> Since {
        let ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let after = if after > ring.last_id { 0 } else { after };
        Since {
            notifications: ring
                .items
                .iter()
                .filter(|d| d.id > after)
                .cloned()
                .collect(),
            last_id: ring.last_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(title: &str) -> Notification {
        Notification {
            title: title.into(),
            body: "b".into(),
            level: Level::Down,
            topic: "comfyui".into(),
        }
    }

    #[test]
    fn readers_get_what_came_after_their_last_id_and_the_ring_is_bounded() {
        let recent = RecentNotifications::default();
        assert_eq!(recent.since(0).last_id, 0);
        assert!(recent.since(0).notifications.is_empty());
        assert_eq!(recent.push(&n("a")), 1);
        assert_eq!(recent.push(&n("b")), 2);
        let s = recent.since(1);
        assert_eq!(s.last_id, 2);
        assert_eq!(
            s.notifications
                .iter()
                .map(|d| d.title.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        assert!(recent.since(2).notifications.is_empty());
        // A reader ahead of us (we restarted): everything kept.
        assert_eq!(recent.since(99).notifications.len(), 2);
        for i in 0..(KEPT + 10) {
            recent.push(&n(&format!("n{i}")));
        }
        let all = recent.since(0);
        assert_eq!(all.notifications.len(), KEPT);
        assert_eq!(all.last_id, (KEPT + 12) as u64);
        assert_eq!(all.notifications[0].id, 13);
    }
}
