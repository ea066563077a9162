//! "Don't tell me again": per-topic mutes of desktop notifications, set from the
//! dashboard or the tray. A topic is what the rate limit groups by (a service, `docker`,
//! `<service>:failed`, `<service>:restart`, `gateway`; [`event_topic`]). A mute lasts one
//! hour, or until the topic changes: the first notification of that topic at another level
//! (a service that went down coming back) ends it and is shown. Mutes live in memory: a
//! restart of Sparklio Desk tells everything again.

use super::Level;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a mute lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MuteFor {
    /// One hour from now.
    #[serde(rename = "1h")]
    Hour,
    /// Until a notification of the topic says something else (another level).
    #[serde(rename = "until_change")]
    UntilChange,
}

pub const MUTE_HOUR: Duration = Duration::from_secs(3600);

/// A mute as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MuteView {
    pub topic: String,
    #[serde(rename = "for")]
    pub for_: MuteFor,
    /// When it was set (RFC 3339).
    pub since: String,
    /// When a one-hour mute ends (RFC 3339).
    pub until: Option<String>,
    /// Until-change mutes: the level it holds back (`down`, `degraded`, `ok`).
    pub level: Option<Level>,
    /// Notifications held back so far.
    pub held_back: u32,
}

struct Entry {
    view: MuteView,
    ends: Option<Instant>,
}

#[derive(Default)]
pub struct Mutes {
    entries: Mutex<HashMap<String, Entry>>,
    /// The level each topic last notified (what "until it changes" compares against).
    last_level: Mutex<HashMap<String, Level>>,
}

/// Most topics muted at once: every topic the Desk notifies about (its services,
/// `docker`, `gateway`, …) many times over, and a bound on what requests can store.
pub const MAX_MUTES: usize = 256;

impl Mutes {
    /// Mute `topic`; replaces an earlier mute of it. `None`: [`MAX_MUTES`] other topics
    /// are muted (ended mutes are let go first), nothing changed.
    pub fn mute(&self, topic: &str, for_: MuteFor, now: Instant) -> Option<MuteView> {
        let level = match for_ {
            MuteFor::Hour => None,
            // Nothing notified yet: hold back the bad news it would bring.
            MuteFor::UntilChange => Some(
                self.lock_levels()
                    .get(topic)
                    .copied()
                    .unwrap_or(Level::Down),
            ),
        };
        let ends = (for_ == MuteFor::Hour).then(|| now + MUTE_HOUR);
        let view = MuteView {
            topic: topic.to_string(),
            for_,
            since: crate::store::now_text(),
            until: ends.map(|_| {
                (chrono::Utc::now() + chrono::Duration::seconds(MUTE_HOUR.as_secs() as i64))
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            }),
            level,
            held_back: 0,
        };
        let mut entries = self.lock();
        entries.retain(|_, e| e.ends.is_none_or(|t| t > now));
        if !entries.contains_key(topic) && entries.len() >= MAX_MUTES {
            return None;
        }
        entries.insert(
            topic.to_string(),
            Entry {
                view: view.clone(),
                ends,
            },
        );
        Some(view)
    }

    /// End a mute; whether there was one.
    pub fn unmute(&self, topic: &str) -> bool {
        self.lock().remove(topic).is_some()
    }

    /// The mutes in force, by topic.
    pub fn list(&self, now: Instant) -> Vec<MuteView> {
        let mut entries = self.lock();
        entries.retain(|_, e| e.ends.is_none_or(|t| t > now));
        let mut v: Vec<MuteView> = entries.values().map(|e| e.view.clone()).collect();
        v.sort_by(|a, b| a.topic.cmp(&b.topic));
        v
    }

    /// Whether a notification of `topic` at `level` is held back. A one-hour mute that
    /// ran out, or an until-change mute meeting another level, ends here (and shows).
    pub fn holds_back(&self, topic: &str, level: Level, now: Instant) -> bool {
        self.lock_levels().insert(topic.to_string(), level);
        let mut entries = self.lock();
        let Some(e) = entries.get_mut(topic) else {
            return false;
        };
        let over = match e.view.for_ {
            MuteFor::Hour => e.ends.is_some_and(|t| t <= now),
            MuteFor::UntilChange => e.view.level != Some(level),
        };
        if over {
            entries.remove(topic);
            return false;
        }
        e.view.held_back += 1;
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_levels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Level>> {
        self.last_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The notification topic an event of the event log belongs to (what a mute names), or
/// `None` for changes that are never notified (starting, backoff, stopped).
pub fn event_topic(service: &str, to: &str, reason: &str) -> Option<String> {
    if service == super::notifier::GATEWAY_SERVICE
        || (service == super::CONFIG_SERVICE && matches!(to, "rejected" | "reloaded"))
    {
        return Some(service.to_string());
    }
    if reason
        .to_ascii_lowercase()
        .contains("docker is not running")
    {
        return Some("docker".into());
    }
    match to {
        "failed" => Some(format!("{service}:failed")),
        "crashed" | "unhealthy" | "unavailable" | "running" => Some(service.to_string()),
        "restarting" if reason.contains("by ") => Some(format!("{service}:restart")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_mute_holds_back_everything_then_ends() {
        let m = Mutes::default();
        let t0 = Instant::now();
        m.mute("comfyui", MuteFor::Hour, t0);
        assert!(m.holds_back("comfyui", Level::Down, t0));
        assert!(m.holds_back("comfyui", Level::Ok, t0 + Duration::from_secs(60)));
        assert!(
            !m.holds_back("ollama", Level::Down, t0),
            "other topics are told"
        );
        assert_eq!(m.list(t0)[0].held_back, 2);
        assert!(!m.holds_back("comfyui", Level::Down, t0 + MUTE_HOUR));
        assert!(m.list(t0 + MUTE_HOUR).is_empty());
    }

    #[test]
    fn an_until_change_mute_ends_with_the_first_other_level() {
        let m = Mutes::default();
        let t0 = Instant::now();
        assert!(!m.holds_back("docker", Level::Down, t0));
        let v = m.mute("docker", MuteFor::UntilChange, t0).unwrap();
        assert_eq!(v.level, Some(Level::Down));
        assert!(m.holds_back("docker", Level::Down, t0));
        assert!(m.holds_back("docker", Level::Down, t0 + Duration::from_secs(7200)));
        // Back: told, and the mute is over.
        assert!(!m.holds_back("docker", Level::Ok, t0));
        assert!(!m.holds_back("docker", Level::Down, t0));
        assert!(m.list(t0).is_empty());
        m.mute("docker", MuteFor::UntilChange, t0);
        assert!(m.unmute("docker"));
        assert!(!m.unmute("docker"));
    }

    #[test]
    fn events_name_the_topics_notifications_use() {
        assert_eq!(
            event_topic("comfyui", "crashed", "exit code 1").as_deref(),
            Some("comfyui")
        );
        assert_eq!(
            event_topic("comfyui", "running", "health probe passed").as_deref(),
            Some("comfyui")
        );
        assert_eq!(
            event_topic("comfyui", "failed", "crash loop").as_deref(),
            Some("comfyui:failed")
        );
        assert_eq!(
            event_topic("ollama", "unavailable", "Docker is not running (…)").as_deref(),
            Some("docker")
        );
        assert_eq!(
            event_topic(
                "comfyui",
                "unavailable",
                "port 8188 is already in use by pid 42"
            )
            .as_deref(),
            Some("comfyui")
        );
        assert_eq!(
            event_topic("gateway", "failing", "12 of 15").as_deref(),
            Some("gateway")
        );
        assert_eq!(
            event_topic("ollama", "restarting", "restarted by admin from 127.0.0.1").as_deref(),
            Some("ollama:restart")
        );
        assert_eq!(event_topic("ollama", "starting", "autostart"), None);
    }
}
