//! What the tray shows at a glance: the overall health (icon colour) and a tooltip with
//! one line per service, the generator mode and whether the gateway is paused. Computed
//! here so every front end says the same thing.

use super::{overall, Level};
use crate::runtime::RuntimeSwitches;
use crate::supervisor::{ServiceState, Supervisor};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glance {
    pub level: Level,
    pub tooltip: String,
    /// Configured services and their states, in config order.
    pub services: Vec<(String, ServiceState)>,
    pub mode: crate::config::GeneratorMode,
    pub paused: bool,
}

/// The app's state right now.
pub fn glance(supervisor: &Supervisor, runtime: &RuntimeSwitches) -> Glance {
    let services: Vec<(String, ServiceState)> = supervisor
        .services()
        .iter()
        .map(|e| (e.config.name.clone(), e.status().state))
        .collect();
    let mode = runtime.mode();
    let paused = runtime.paused();
    let (level, tooltip) = tooltip(&services, mode.as_str(), paused);
    Glance {
        level,
        tooltip,
        services,
        mode,
        paused,
    }
}

/// Overall level and tooltip text for these services, mode and pause switch.
pub fn tooltip(services: &[(String, ServiceState)], mode: &str, paused: bool) -> (Level, String) {
    let (level, summary) = overall(services.iter().map(|(n, s)| (n.as_str(), *s)));
    let mut text = format!("Sparklio Desk: {summary}");
    for (name, state) in services {
        text.push_str(&format!("\n{name}: {state}"));
    }
    text.push_str(&format!("\ngenerator mode: {mode}"));
    if paused {
        text.push_str("\ngateway PAUSED");
    }
    (level, text)
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
        let (level, text) = tooltip(
            &svc(&[("ollama", "running"), ("comfyui", "crashed")]),
            "live",
            true,
        );
        assert_eq!(level, Level::Down);
        assert_eq!(
            text,
            "Sparklio Desk: comfyui: crashed\nollama: running\ncomfyui: crashed\n\
             generator mode: live\ngateway PAUSED"
        );
        let (level, text) = tooltip(&svc(&[("ollama", "running")]), "mock", false);
        assert_eq!(level, Level::Ok);
        assert_eq!(
            text,
            "Sparklio Desk: all services up\nollama: running\ngenerator mode: mock"
        );
    }
}
