//! # Sparklio Desk core
//!
//! Everything Sparklio Desk does, with no GUI dependency: the LLM and Media gateway
//! the Sparklio backend calls over the LAN, the supervisor that keeps Ollama and
//! ComfyUI running on the GPU desktop, and the dashboard's HTTP API.
//!
//! The headless `sparklio-desk` binary and the Tauri tray app both call
//! [`app::start`], so a server, CI and the desktop run exactly the same code.

pub mod app;
pub mod client;
pub mod config;
pub mod contracts;
pub mod flow;
pub mod gateway;
pub mod gpu;
pub mod http;
#[cfg(test)]
mod layering;
pub mod llm;
pub mod media;
pub mod notify;
pub mod platform;
pub mod resilience;
pub mod runtime;
pub mod store;
pub mod supervisor;
pub mod system;
pub mod telemetry;
pub mod upstream;
pub mod work;

pub use app::{load_config, load_config_edit, start, RunningApp, StartOptions};
