//! What the tray shows at a glance: the overall health (icon colour) and a tooltip with
//! one line per service, the generator mode and whether the gateway is paused. Computed
//! here so every front end says the same thing.

use super::{level_of_provider, overall, provider_concern, Level};
use crate::gateway::ProviderReach;
use crate::runtime::RuntimeSwitches;
use crate::supervisor::{ServiceState, Supervisor};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glance {
    pub level: Level,
    /// The tooltip's first line: what is wrong, or "all services up".
    pub summary: String,
    pub tooltip: String,
    /// Configured services and their states, in config order.
    pub services: Vec<(String, ServiceState)>,
    pub mode: crate::config::GeneratorMode,
    pub paused: bool,
}

/// How long a service running again after a crash still counts as degraded: a service
/// crashing every half minute never trips the crash-loop limit (5 in 120 s) and read
/// "all services up" between its crashes.
pub const RECOVERING_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The app's state right now. `providers`: the live providers' reach, counted in live
/// mode only (mock answers need none).
pub fn glance(
    supervisor: &Supervisor,
    runtime: &RuntimeSwitches,
    providers: &[ProviderReach],
) -> Glance {
    let now = chrono::Utc::now();
    let mut recovering = Vec::new();
    let services: Vec<(String, ServiceState)> = supervisor
        .services()
        .iter()
        .map(|e| {
            let status = e.status();
            if let Some(ago) = crashed_ago(&status, now) {
                recovering.push((e.config.name.clone(), ago));
            }
            (e.config.name.clone(), status.state)
        })
        .collect();
    let mode = runtime.mode();
    let paused = runtime.paused();
    let providers = match mode {
        crate::config::GeneratorMode::Live => providers,
        crate::config::GeneratorMode::Mock => &[],
    };
    let (level, summary, tooltip) =
        tooltip(&services, providers, &recovering, mode.as_str(), paused);
    Glance {
        level,
        summary,
        tooltip,
        services,
        mode,
        paused,
    }
}

/// Seconds since a running service's last crash, while that is recent.
fn crashed_ago(
    status: &crate::supervisor::ServiceStatus,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<u64> {
    if status.state != ServiceState::Running {
        return None;
    }
    let at = chrono::DateTime::parse_from_rfc3339(&status.last_exit.as_ref()?.at).ok()?;
    let ago = (now - at.with_timezone(&chrono::Utc)).to_std().ok()?;
    (ago < RECOVERING_FOR).then_some(ago.as_secs())
}

/// Overall level, summary and tooltip text for these services (and those running again
/// after a crash `n` seconds ago), providers, mode and pause switch.
pub fn tooltip(
    services: &[(String, ServiceState)],
    providers: &[ProviderReach],
    recovering: &[(String, u64)],
    mode: &str,
    paused: bool,
) -> (Level, String, String) {
    let mut concerns: Vec<(Level, String)> = recovering
        .iter()
        .map(|(name, ago)| {
            (
                Level::Degraded,
                format!("{name}: running again after a crash {ago} s ago"),
            )
        })
        .collect();
    concerns.extend(providers.iter().filter_map(provider_concern));
    let (level, summary) = overall(services.iter().map(|(n, s)| (n.as_str(), *s)), &concerns);
    let mut text = format!("Sparklio Desk: {summary}");
    for (name, state) in services {
        text.push_str(&format!("\n{name}: {state}"));
    }
    for p in providers
        .iter()
        .filter(|p| level_of_provider(p) != Level::Ok)
    {
        text.push_str(&format!(
            "\n{} ({}): {} of {} reachable",
            p.name, p.side, p.reachable, p.total
        ));
    }
    text.push_str(&format!("\ngenerator mode: {mode}"));
    if paused {
        text.push_str("\ngateway PAUSED");
    }
    (level, summary, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(list: &[(&str, &str)]) -> Vec<(String, ServiceState)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), ServiceState::parse(b).unwrap()))
            .collect()
    }

    #[test]
    fn tooltip_lists_every_service_and_the_switches() {
        let (level, _, text) = tooltip(
            &svc(&[("ollama", "running"), ("comfyui", "crashed")]),
            &[],
            &[],
            "live",
            true,
        );
        assert_eq!(level, Level::Down);
        assert_eq!(
            text,
            "Sparklio Desk: comfyui: crashed\nollama: running\ncomfyui: crashed\n\
             generator mode: live\ngateway PAUSED"
        );
        let (level, _, text) = tooltip(&svc(&[("ollama", "running")]), &[], &[], "mock", false);
        assert_eq!(level, Level::Ok);
        assert_eq!(
            text,
            "Sparklio Desk: all services up\nollama: running\ngenerator mode: mock"
        );
    }

    /// A service running again just after a crash keeps the level degraded for a while
    /// (a slow crash loop read "all services up" between its crashes).
    #[test]
    fn a_service_running_again_just_after_a_crash_is_degraded() {
        let running = svc(&[("comfyui", "running")]);
        let (level, summary, _) = tooltip(&running, &[], &[("comfyui".into(), 12)], "live", false);
        assert_eq!(
            (level, summary.as_str()),
            (
                Level::Degraded,
                "comfyui: running again after a crash 12 s ago"
            )
        );
        let (level, summary, _) = tooltip(&running, &[], &[], "live", false);
        assert_eq!((level, summary.as_str()), (Level::Ok, "all services up"));
    }
}
