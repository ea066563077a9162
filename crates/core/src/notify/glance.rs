//! What the tray shows at a glance: the overall health (icon colour) and a tooltip with
//! one line per service, the generator mode and whether the gateway is paused. Computed
//! here so every front end says the same thing.

use super::{level_of_provider, overall, Level};
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

/// The app's state right now. `providers`: the live providers' reach, counted in live
/// mode only (mock answers need none).
pub fn glance(
    supervisor: &Supervisor,
    runtime: &RuntimeSwitches,
    providers: &[ProviderReach],
) -> Glance {
    let services: Vec<(String, ServiceState)> = supervisor
        .services()
        .iter()
        .map(|e| (e.config.name.clone(), e.status().state))
        .collect();
    let mode = runtime.mode();
    let paused = runtime.paused();
    let providers = match mode {
        crate::config::GeneratorMode::Live => providers,
        crate::config::GeneratorMode::Mock => &[],
    };
    let (level, summary, tooltip) = tooltip(&services, providers, mode.as_str(), paused);
    Glance {
        level,
        summary,
        tooltip,
        services,
        mode,
        paused,
    }
}

/// Overall level, summary and tooltip text for these services, providers, mode and
/// pause switch.
pub fn tooltip(
    services: &[(String, ServiceState)],
    providers: &[ProviderReach],
    mode: &str,
    paused: bool,
) -> (Level, String, String) {
    let (level, summary) = overall(services.iter().map(|(n, s)| (n.as_str(), *s)), providers);
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
            "live",
            true,
        );
        assert_eq!(level, Level::Down);
        assert_eq!(
            text,
            "Sparklio Desk: comfyui: crashed\nollama: running\ncomfyui: crashed\n\
             generator mode: live\ngateway PAUSED"
        );
        let (level, _, text) = tooltip(&svc(&[("ollama", "running")]), &[], "mock", false);
        assert_eq!(level, Level::Ok);
        assert_eq!(
            text,
            "Sparklio Desk: all services up\nollama: running\ngenerator mode: mock"
        );
    }
}
