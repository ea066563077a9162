//! Which state changes deserve a desktop notification, and how often.
//!
//! The tray app shows what this decides; the decision lives here (GUI-free, tested) so
//! a flapping service cannot flood the desktop whatever front end is used. Every
//! notification comes from an event that is also in the event log, so the dashboard's
//! timeline shows all of them.

pub mod glance;
pub mod mutes;
pub mod notifier;
pub mod recent;

pub use glance::{glance, Glance};
pub use mutes::{event_topic, MuteFor, MuteView, Mutes};
pub use notifier::{Notifier, NotifierInputs, NotifierOptions};
pub use recent::RecentNotifications;

use crate::gateway::ProviderReach;
use crate::supervisor::ServiceState;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The overall health the tray icon shows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Degraded,
    Down,
}

/// How a service state counts toward the overall health.
pub fn level_of_state(state: ServiceState) -> Level {
    match state {
        ServiceState::Running => Level::Ok,
        ServiceState::Starting
        | ServiceState::Restarting
        | ServiceState::Backoff
        | ServiceState::Unhealthy => Level::Degraded,
        // `unavailable`: Docker is not running, or another process holds the port.
        ServiceState::Crashed | ServiceState::Failed | ServiceState::Unavailable => Level::Down,
        // Stopped on purpose: not a fault.
        ServiceState::Stopped => Level::Ok,
    }
}

/// How a live provider's reach counts: the default one out of reach blocks the
/// backend (down); another, or some instances of one, degrade.
pub fn level_of_provider(p: &ProviderReach) -> Level {
    if p.reachable == p.total {
        Level::Ok
    } else if p.reachable == 0 && p.default {
        Level::Down
    } else {
        Level::Degraded
    }
}

/// A provider's reach as a concern of the overall health, `None` when it is fine.
pub fn provider_concern(p: &ProviderReach) -> Option<(Level, String)> {
    let level = level_of_provider(p);
    (level != Level::Ok).then(|| (level, describe_provider(p)))
}

/// "ollama (LLM) unreachable", "ollama (LLM): 1 of 2 instances reachable": no reason,
/// which would show addresses on the public `/health`.
fn describe_provider(p: &ProviderReach) -> String {
    if p.reachable == 0 {
        format!("{} ({}) unreachable", p.name, p.side)
    } else {
        format!(
            "{} ({}): {} of {} instances reachable",
            p.name, p.side, p.reachable, p.total
        )
    }
}

/// Overall health and a one-line summary (the tray tooltip's first line): the services'
/// states, and `concerns` beyond them — in live mode the providers' reach (with no
/// service supervised, an unreachable Ollama used to read "healthy"), a service running
/// again just after a crash (a slow crash loop read "all services up" between crashes).
pub fn overall<'a>(
    services: impl IntoIterator<Item = (&'a str, ServiceState)>,
    concerns: &[(Level, String)],
) -> (Level, String) {
    let mut level = Level::Ok;
    let mut any_service = false;
    let mut faults = Vec::new();
    for (name, state) in services {
        any_service = true;
        level = level.max(level_of_state(state));
        if state != ServiceState::Running {
            faults.push(format!("{name}: {state}"));
        }
    }
    for (l, text) in concerns {
        level = level.max(*l);
        faults.push(text.clone());
    }
    let summary = match (level, any_service) {
        (Level::Ok, false) => "no services supervised".to_string(),
        (Level::Ok, true) => "all services up".to_string(),
        _ => faults.join(", "),
    };
    (level, summary)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub title: String,
    pub body: String,
    pub level: Level,
    /// What the rate limit and mutes group by (a service, `docker`, `gateway`, …).
    pub topic: String,
}

/// Decides notifications with a per-topic rate limit. A change that is held back is
/// counted and mentioned in the next notification of its topic.
pub struct NotificationPolicy {
    min_interval: Duration,
    last_sent: HashMap<String, Instant>,
    held_back: HashMap<String, u32>,
    /// Services that went down since they last ran: their return is news.
    down: std::collections::HashSet<String>,
    /// Of those, the ones Docker not running took down: their return is Docker's.
    docker_down: std::collections::HashSet<String>,
    /// Docker went down and its return was not told yet (told once, by the first
    /// service back, whatever the number of containers it took down).
    docker_out: bool,
    /// Topics whose last *shown* notification said "down": only their return may skip
    /// the rate limit (a flapping service whose downs were held back stays quiet).
    shown_down: std::collections::HashSet<String>,
    /// Error-rate alarm: fraction of failed gateway requests, with a minimum sample.
    pub error_rate_threshold: f64,
    pub error_rate_min_requests: u64,
    gateway_alarm_on: bool,
}

impl Default for NotificationPolicy {
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

impl NotificationPolicy {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_sent: HashMap::new(),
            held_back: HashMap::new(),
            down: Default::default(),
            docker_down: Default::default(),
            docker_out: false,
            shown_down: Default::default(),
            error_rate_threshold: 0.2,
            error_rate_min_requests: 10,
            gateway_alarm_on: false,
        }
    }

    fn gate(&mut self, topic: &str, now: Instant, mut n: Notification) -> Option<Notification> {
        if let Some(last) = self.last_sent.get(topic) {
            if now.duration_since(*last) < self.min_interval {
                *self.held_back.entry(topic.to_string()).or_default() += 1;
                return None;
            }
        }
        n.topic = topic.to_string();
        if let Some(count) = self.held_back.remove(topic) {
            n.body
                .push_str(&format!(" ({count} earlier change(s) not shown)"));
        }
        self.last_sent.insert(topic.to_string(), now);
        if n.level == Level::Down {
            self.shown_down.insert(topic.to_string());
        } else {
            self.shown_down.remove(topic);
        }
        Some(n)
    }

    /// A service changed state (an event of the event log).
    pub fn on_state_change(
        &mut self,
        service: &str,
        to: ServiceState,
        reason: &str,
        now: Instant,
    ) -> Option<Notification> {
        use ServiceState as S;
        let docker_down = reason
            .to_ascii_lowercase()
            .contains("docker is not running");
        let (was_down, back_from_docker) = if to == S::Running {
            (self.down.remove(service), self.docker_down.remove(service))
        } else {
            // `unavailable` too: Docker not running, or the port held by another program.
            if matches!(to, S::Crashed | S::Unhealthy | S::Failed | S::Unavailable) {
                self.down.insert(service.to_string());
                if docker_down {
                    self.docker_down.insert(service.to_string());
                    self.docker_out = true;
                } else {
                    self.docker_down.remove(service);
                }
            }
            (false, false)
        };
        let (topic, title, level) = match to {
            _ if docker_down => (
                "docker".to_string(),
                "Docker is not running".to_string(),
                Level::Down,
            ),
            // On Docker's topic, so it ends a mute of "Docker is not running" until it
            // changes; the other containers it took down coming back are not news again.
            S::Running if back_from_docker => {
                if !std::mem::take(&mut self.docker_out) {
                    return None;
                }
                (
                    "docker".to_string(),
                    "Docker is running again".to_string(),
                    Level::Ok,
                )
            }
            // Its own topic: the end of a crash loop is news even right after "went
            // down", and nothing follows it to carry a held-back count.
            S::Failed => (
                format!("{service}:failed"),
                format!("{service} failed (crash loop)"),
                Level::Down,
            ),
            S::Crashed | S::Unhealthy => (
                service.to_string(),
                format!("{service} went down"),
                Level::Down,
            ),
            // Blocked from outside (its port held by another program): retried, but
            // it serves nothing until that program goes.
            S::Unavailable => (
                service.to_string(),
                format!("{service} cannot start"),
                Level::Down,
            ),
            S::Restarting if reason.contains("by ") => (
                format!("{service}:restart"),
                format!("{service} is restarting"),
                Level::Degraded,
            ),
            S::Running if was_down => {
                (service.to_string(), format!("{service} is back"), Level::Ok)
            }
            _ => return None,
        };
        // "Back up" must not be swallowed by the rate limit of the "down" that was shown
        // before it, or the desktop would keep showing a stale failure.
        if to == S::Running && self.shown_down.contains(&topic) {
            self.last_sent.remove(&topic);
        }
        let body = if back_from_docker {
            format!("{service} is back: {reason}")
        } else {
            reason.to_string()
        };
        self.gate(
            &topic,
            now,
            Notification {
                title,
                body,
                level,
                topic: String::new(),
            },
        )
    }

    /// Whether the gateway error-rate alarm is on (failing requests above the threshold).
    pub fn gateway_alarm_on(&self) -> bool {
        self.gateway_alarm_on
    }

    /// The gateway's recent error rate — `errors` are the gateway's or a provider's
    /// failures only (5xx, timeouts, unavailable), never client errors or cancellations;
    /// notifies once when it crosses the threshold and once when it recovers.
    pub fn on_gateway_errors(
        &mut self,
        requests: u64,
        errors: u64,
        now: Instant,
    ) -> Option<Notification> {
        if requests < self.error_rate_min_requests {
            return None;
        }
        let rate = errors as f64 / requests as f64;
        let failing = rate >= self.error_rate_threshold;
        if failing == self.gateway_alarm_on {
            return None;
        }
        self.gateway_alarm_on = failing;
        let n = if failing {
            Notification {
                title: "Gateway requests are failing".into(),
                body: format!(
                    "{errors} of the last {requests} requests failed on the gateway's or a \
                     provider's side ({:.0} %)",
                    rate * 100.0
                ),
                level: Level::Down,
                topic: String::new(),
            }
        } else {
            Notification {
                title: "Gateway recovered".into(),
                body: format!("{errors} of the last {requests} requests failed"),
                level: Level::Ok,
                topic: String::new(),
            }
        };
        if !failing {
            self.last_sent.remove("gateway");
        }
        self.gate("gateway", now, n)
    }
}

/// A model pull that ended after a long download, or failed: worth telling the owner
/// (`service` and `to` as the model actions write them to the event log).
pub fn model_notification(service: &str, to: &str, reason: &str) -> Option<Notification> {
    use crate::llm::model_actions::{LONG_PULL_MARK, MODELS_SERVICE};
    if service != MODELS_SERVICE {
        return None;
    }
    let (title, level) = match to {
        "pull failed" => ("Model pull failed", Level::Down),
        "pulled" if reason.contains(LONG_PULL_MARK) => ("Model pulled", Level::Ok),
        _ => return None,
    };
    Some(Notification {
        title: title.into(),
        body: reason.replace(LONG_PULL_MARK, "").trim().to_string(),
        level,
        topic: MODELS_SERVICE.into(),
    })
}

/// The service name config events carry (reloads, discovery writes).
pub const CONFIG_SERVICE: &str = "config";

/// A config file the watcher could not apply is news (the owner saved it and expects it
/// live); so is one it applied. Reloads asked for from the tray, the dashboard or the API
/// are answered there.
pub fn config_notification(
    service: &str,
    to: &str,
    reason: &str,
    actor: Option<&str>,
) -> Option<Notification> {
    if service != CONFIG_SERVICE {
        return None;
    }
    let (title, level) = match (to, actor) {
        ("rejected", _) => ("Config not applied", Level::Down),
        ("reloaded", Some("watcher")) => ("Config reloaded", Level::Ok),
        _ => return None,
    };
    Some(Notification {
        title: title.into(),
        body: reason.to_string(),
        level,
        topic: CONFIG_SERVICE.into(),
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_watchers_reloads_are_told_others_are_answered_where_asked() {
        let n = config_notification(
            "config",
            "rejected",
            "the config has 1 problem(s)",
            Some("watcher"),
        )
        .unwrap();
        assert_eq!(
            (n.title.as_str(), n.level, n.topic.as_str()),
            ("Config not applied", Level::Down, "config")
        );
        let n = config_notification(
            "config",
            "reloaded",
            "2 setting(s) changed",
            Some("watcher"),
        )
        .unwrap();
        assert_eq!(n.level, Level::Ok);
        assert!(config_notification("config", "reloaded", "x", Some("tray")).is_none());
        assert!(config_notification("config", "written", "x", Some("admin")).is_none());
        assert!(config_notification("comfyui", "rejected", "x", Some("watcher")).is_none());
    }

    #[test]
    fn long_pulls_and_failed_pulls_are_told_short_ones_are_not() {
        let n = model_notification(
            "models",
            "pulled",
            "qwen2.5:14b on ollama in 312 s (long pull)",
        )
        .unwrap();
        assert_eq!(
            (n.title.as_str(), n.level, n.topic.as_str()),
            ("Model pulled", Level::Ok, "models")
        );
        assert_eq!(n.body, "qwen2.5:14b on ollama in 312 s");
        let n = model_notification("models", "pull failed", "x on ollama: disk full").unwrap();
        assert_eq!(n.level, Level::Down);
        assert!(model_notification("models", "pulled", "x on ollama in 3 s").is_none());
        assert!(model_notification("models", "deleted", "x").is_none());
        assert!(model_notification("comfyui", "pull failed", "x").is_none());
    }
    use super::*;

    #[test]
    fn overall_takes_the_worst_state() {
        assert_eq!(
            overall(
                [
                    ("ollama", ServiceState::Running),
                    ("comfyui", ServiceState::Running)
                ],
                &[]
            )
            .0,
            Level::Ok
        );
        let (level, summary) = overall(
            [
                ("ollama", ServiceState::Running),
                ("comfyui", ServiceState::Backoff),
            ],
            &[],
        );
        assert_eq!(
            (level, summary.as_str()),
            (Level::Degraded, "comfyui: backoff")
        );
        assert_eq!(
            overall(
                [
                    ("ollama", ServiceState::Failed),
                    ("comfyui", ServiceState::Backoff)
                ],
                &[]
            )
            .0,
            Level::Down
        );
        assert_eq!(overall([], &[]).1, "no services supervised");
    }

    /// A live provider out of reach counts with the services (with none supervised, an
    /// unreachable Ollama read "healthy"): the default one is down, another or some of
    /// its instances degrade.
    #[test]
    fn providers_out_of_reach_count_toward_the_overall_health() {
        let reach = |name: &str, default: bool, reachable: usize, total: usize| ProviderReach {
            side: "LLM",
            name: name.into(),
            default,
            reachable,
            total,
        };
        let table: &[(&[ProviderReach], Level, &str)] = &[
            (
                &[reach("ollama", true, 1, 1)],
                Level::Ok,
                "no services supervised",
            ),
            (
                &[reach("ollama", true, 0, 1)],
                Level::Down,
                "ollama (LLM) unreachable",
            ),
            (
                &[reach("vllm", false, 0, 1)],
                Level::Degraded,
                "vllm (LLM) unreachable",
            ),
            (
                &[reach("ollama", true, 1, 2)],
                Level::Degraded,
                "ollama (LLM): 1 of 2 instances reachable",
            ),
        ];
        let concerns = |providers: &[ProviderReach]| -> Vec<(Level, String)> {
            providers.iter().filter_map(provider_concern).collect()
        };
        for (providers, level, summary) in table {
            assert_eq!(
                overall([], &concerns(providers)),
                (*level, summary.to_string())
            );
        }
        let (level, summary) = overall(
            [("comfyui", ServiceState::Backoff)],
            &concerns(&[reach("ollama", true, 0, 1)]),
        );
        assert_eq!(level, Level::Down);
        assert_eq!(summary, "comfyui: backoff, ollama (LLM) unreachable");
    }

    #[test]
    fn a_flapping_service_is_rate_limited_and_the_rest_is_counted() {
        let mut p = NotificationPolicy::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let n = p
            .on_state_change("comfyui", ServiceState::Crashed, "exit code 1", t0)
            .unwrap();
        assert_eq!(n.title, "comfyui went down");
        assert_eq!(n.level, Level::Down);
        // Ten more crashes within the minute: silent.
        for i in 1..=10 {
            assert!(p
                .on_state_change(
                    "comfyui",
                    ServiceState::Crashed,
                    "exit code 1",
                    t0 + Duration::from_secs(i)
                )
                .is_none());
        }
        // After the interval, one notification that mentions what was held back.
        let n = p
            .on_state_change(
                "comfyui",
                ServiceState::Crashed,
                "exit code 1",
                t0 + Duration::from_secs(61),
            )
            .unwrap();
        assert!(n.body.contains("10 earlier change(s)"), "{}", n.body);
    }

    #[test]
    fn a_service_flapping_between_down_and_back_is_told_once_each_way() {
        let mut p = NotificationPolicy::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let mut shown = Vec::new();
        for i in 0..10 {
            let t = t0 + Duration::from_secs(i);
            shown.extend(p.on_state_change("comfyui", ServiceState::Crashed, "exit code 1", t));
            shown.extend(p.on_state_change(
                "comfyui",
                ServiceState::Running,
                "health probe passed",
                t,
            ));
        }
        let titles: Vec<_> = shown.iter().map(|n| n.title.as_str()).collect();
        assert_eq!(titles, ["comfyui went down", "comfyui is back"]);
        // The end of the crash loop is told even within the interval.
        let failed = p
            .on_state_change(
                "comfyui",
                ServiceState::Failed,
                "5 restarts within 120 s",
                t0,
            )
            .unwrap();
        assert!(failed.title.contains("crash loop"));
    }

    #[test]
    fn coming_back_is_always_told_and_quiet_transitions_are_not() {
        let mut p = NotificationPolicy::default();
        let t0 = Instant::now();
        assert!(p
            .on_state_change(
                "ollama",
                ServiceState::Unhealthy,
                "3 health probes failed",
                t0
            )
            .is_some());
        let back = p
            .on_state_change("ollama", ServiceState::Running, "health probe passed", t0)
            .unwrap();
        assert_eq!(back.title, "ollama is back");
        assert!(p
            .on_state_change("ollama", ServiceState::Starting, "", t0)
            .is_none());
        assert!(p
            .on_state_change("ollama", ServiceState::Running, "", t0)
            .is_none());
    }

    #[test]
    fn crash_loop_docker_and_admin_restarts_have_their_own_messages() {
        let mut p = NotificationPolicy::default();
        let t0 = Instant::now();
        let n = p
            .on_state_change(
                "comfyui",
                ServiceState::Failed,
                "5 restarts within 120 s",
                t0,
            )
            .unwrap();
        assert!(n.title.contains("crash loop"));
        let n = p
            .on_state_change(
                "ollama-sparklio",
                ServiceState::Crashed,
                "Docker is not running",
                t0,
            )
            .unwrap();
        assert_eq!(n.title, "Docker is not running");
        let n = p
            .on_state_change(
                "ollama-sparklio",
                ServiceState::Restarting,
                "restarted by admin from 127.0.0.1",
                t0,
            )
            .unwrap();
        assert!(n.title.contains("restarting"));
    }

    /// Each row: seconds since the start, a state change, and the notification it gives
    /// (title, topic, level).
    type Row<'a> = (
        u64,
        &'a str,
        ServiceState,
        &'a str,
        Option<(&'a str, &'a str, Level)>,
    );

    fn play(rows: &[Row]) {
        let mut p = NotificationPolicy::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for (i, (at, service, to, reason, want)) in rows.iter().enumerate() {
            let got = p.on_state_change(service, *to, reason, t0 + Duration::from_secs(*at));
            let got = got
                .as_ref()
                .map(|n| (n.title.as_str(), n.topic.as_str(), n.level));
            assert_eq!(got, *want, "row {i}: {service} -> {to}: {reason}");
        }
    }

    const DOCKER_DOWN: &str = "Docker is not running (cannot reach the Docker engine at npipe:////./pipe/docker_engine: not found)";
    const DOCKER_500: &str = "Docker is not running (the Docker engine at npipe:////./pipe/docker_engine answered 500, as Docker Desktop does while its engine starts or restarts)";
    const PORT_HELD: &str = "port 8188 is already in use by pid 4242 (python.exe), a process Sparklio Desk did not start";

    #[test]
    fn unavailable_and_back_are_told_once_each_way() {
        use Level::{Down, Ok};
        use ServiceState::{Crashed, Running, Starting, Unavailable};
        play(&[
            // Docker not running, then back: told on Docker's topic both ways.
            (0, "ollama", Starting, "autostart", None),
            (
                0,
                "ollama",
                Unavailable,
                DOCKER_DOWN,
                Some(("Docker is not running", "docker", Down)),
            ),
            (
                30,
                "ollama",
                Starting,
                "checked again: no longer blocked",
                None,
            ),
            (
                30,
                "ollama",
                Running,
                "health probe passed 0.4 s after start",
                Some(("Docker is running again", "docker", Ok)),
            ),
            (40, "ollama", Running, "health probe passes again", None),
            // A running container whose engine restarts (answering 500 meanwhile).
            (
                100,
                "ollama",
                Unavailable,
                DOCKER_500,
                Some(("Docker is not running", "docker", Down)),
            ),
            (
                110,
                "ollama",
                Running,
                "health probe passed",
                Some(("Docker is running again", "docker", Ok)),
            ),
            // Two containers down with Docker: one "not running", one "back" (the first).
            (
                200,
                "ollama",
                Unavailable,
                DOCKER_DOWN,
                Some(("Docker is not running", "docker", Down)),
            ),
            (200, "ollama-lab", Unavailable, DOCKER_DOWN, None),
            (
                300,
                "ollama-lab",
                Running,
                "health probe passed",
                Some(("Docker is running again", "docker", Ok)),
            ),
            (400, "ollama", Running, "health probe passed", None),
            // A port held by another program, then freed.
            (
                500,
                "comfyui",
                Unavailable,
                PORT_HELD,
                Some(("comfyui cannot start", "comfyui", Down)),
            ),
            (
                500,
                "comfyui",
                Starting,
                "checked again: no longer blocked",
                None,
            ),
            (
                510,
                "comfyui",
                Running,
                "health probe passed",
                Some(("comfyui is back", "comfyui", Ok)),
            ),
            // Down for Docker, then crashing on its own: its return is its own.
            (
                600,
                "ollama",
                Unavailable,
                DOCKER_DOWN,
                Some(("Docker is not running", "docker", Down)),
            ),
            (
                700,
                "ollama",
                Crashed,
                "container ollama exited with code 1",
                Some(("ollama went down", "ollama", Down)),
            ),
            (
                710,
                "ollama",
                Running,
                "health probe passed",
                Some(("ollama is back", "ollama", Ok)),
            ),
        ]);
    }

    #[test]
    fn docker_flapping_is_rate_limited_like_a_crashing_service() {
        use Level::{Down, Ok};
        use ServiceState::{Running, Unavailable};
        let mut rows: Vec<Row> = vec![
            (
                0,
                "ollama",
                Unavailable,
                DOCKER_DOWN,
                Some(("Docker is not running", "docker", Down)),
            ),
            (
                1,
                "ollama",
                Running,
                "health probe passed",
                Some(("Docker is running again", "docker", Ok)),
            ),
        ];
        // Within the minute: held back both ways.
        for at in 2..7 {
            rows.push((at, "ollama", Unavailable, DOCKER_DOWN, None));
            rows.push((at, "ollama", Running, "health probe passed", None));
        }
        // After it, told again.
        rows.push((
            70,
            "ollama",
            Unavailable,
            DOCKER_DOWN,
            Some(("Docker is not running", "docker", Down)),
        ));
        play(&rows);
    }

    #[test]
    fn docker_back_ends_a_mute_until_it_changes() {
        let mutes = Mutes::default();
        let mut p = NotificationPolicy::default();
        let t0 = Instant::now();
        let mut shown = Vec::new();
        let mut deliver = |n: Option<Notification>, now: Instant| {
            if let Some(n) = n {
                if !mutes.holds_back(&n.topic, n.level, now) {
                    shown.push(n.title);
                }
            }
        };
        let down = p.on_state_change("ollama", ServiceState::Unavailable, DOCKER_DOWN, t0);
        deliver(down, t0);
        mutes.mute("docker", MuteFor::UntilChange, t0);
        let t1 = t0 + Duration::from_secs(120);
        let again = p.on_state_change("ollama", ServiceState::Running, "health probe passed", t1);
        deliver(again, t1);
        assert_eq!(shown, ["Docker is not running", "Docker is running again"]);
        assert!(mutes.list(t1).is_empty(), "the mute ended with the change");
    }

    #[test]
    fn gateway_error_rate_alarm_fires_once_and_recovers() {
        let mut p = NotificationPolicy::default();
        let t0 = Instant::now();
        assert!(
            p.on_gateway_errors(5, 5, t0).is_none(),
            "too few requests to judge"
        );
        assert!(p
            .on_gateway_errors(20, 10, t0)
            .unwrap()
            .title
            .contains("failing"));
        assert!(
            p.on_gateway_errors(30, 15, t0).is_none(),
            "still failing: no repeat"
        );
        assert!(p
            .on_gateway_errors(30, 0, t0)
            .unwrap()
            .title
            .contains("recovered"));
    }
}
