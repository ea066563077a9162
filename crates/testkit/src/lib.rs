//! Sparklio Desk's test kit (dev-only): what integration tests, benchmarks and
//! end-to-end tests share.
//!
//! - [`ports`]: [`free_port`], [`wait_for_port`];
//! - [`service`]: the supervised stand-in program ([`test_service`]) and
//!   `[[services]]` blocks for it ([`ServiceToml`]);
//! - [`app`]: a real core on 127.0.0.1 ([`TestApp`], [`app::start_app`]);
//! - [`ollama`] and [`comfyui`]: doubles of the two upstreams, following their APIs;
//! - [`fault`]: faults both doubles can be switched to while they run ([`Fault`],
//!   [`FaultRule`], through a double's [`FaultSwitch`]);
//! - [`fixed`]: a fixed-reply upstream for benchmarks (`sparklio-testkit fixed`);
//! - [`control`]: the HTTP control API of the `sparklio-testkit` binary, which runs a
//!   double as its own process (`sparklio-testkit --help`).
//!
//! Everything listens on 127.0.0.1 only.

pub mod app;
pub mod comfyui;
pub mod control;
pub mod fault;
pub mod fixed;
pub mod ollama;
pub mod ports;
mod server;
pub mod service;

pub use app::{input_for, TestApp};
pub use comfyui::ComfyDouble;
pub use fault::{Fault, FaultRule};
pub use ollama::{Behaviour, OllamaDouble};
pub use ports::{free_port, wait_for_port};
pub use server::{FaultSwitch, ReceivedRequest};
pub use service::{test_service, testkit_binary, ServiceToml};
