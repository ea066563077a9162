//! Shared runtime facts every part reads and a few write: the generator mode, the
//! gateway pause switch, and which providers are known to be down.
//!
//! A leaf module: it imports nothing else of the crate, so the supervisor (which
//! writes the provider board), the gateways (which read it) and the HTTP layer can all
//! depend on it without depending on each other.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::RwLock;

/// Whether requests are answered locally (`mock`) or by the configured providers (`live`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorMode {
    Mock,
    Live,
}

impl GeneratorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GeneratorMode::Mock => "mock",
            GeneratorMode::Live => "live",
        }
    }
}

/// Settings the tray and the control API can flip while running.
pub struct RuntimeSwitches {
    mode: AtomicU8,
    paused: AtomicBool,
}

impl RuntimeSwitches {
    pub fn new(mode: GeneratorMode) -> Self {
        Self {
            mode: AtomicU8::new(mode as u8),
            paused: AtomicBool::new(false),
        }
    }

    pub fn mode(&self) -> GeneratorMode {
        if self.mode.load(Ordering::Relaxed) == GeneratorMode::Live as u8 {
            GeneratorMode::Live
        } else {
            GeneratorMode::Mock
        }
    }

    pub fn set_mode(&self, mode: GeneratorMode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }
}

/// What the supervisor knows about the services behind each gateway provider, so a
/// request to a provider whose service is down fails at once instead of timing out.
#[derive(Default)]
pub struct ProviderBoard {
    down: RwLock<HashMap<String, String>>,
}

impl ProviderBoard {
    /// Mark `provider` down, with a reason such as "service comfyui is crashed (exit code 1)".
    pub fn mark_down(&self, provider: &str, reason: impl Into<String>) {
        self.down
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(provider.to_string(), reason.into());
    }

    pub fn mark_up(&self, provider: &str) {
        self.down
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(provider);
    }

    /// `Some(reason)` when the provider's service is known to be down.
    pub fn down_reason(&self, provider: &str) -> Option<String> {
        self.down
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(provider)
            .cloned()
    }
}
