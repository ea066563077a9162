//! Core's integration tests as one binary: one link of the whole crate instead of one
//! per file. Doubles, the app harness and helpers come from `sparklio-testkit`.
//!
//! Run one module with `cargo test -p sparklio-desk-core --test it supervisor::`.

mod backend;
mod config;
mod contracts;
mod dashboard_api;
mod docker_engine;
mod faults;
mod flow;
mod front_comfyui;
mod front_ollama;
mod front_openai;
mod golden;
mod gpu;
mod http_foundation;
mod llm;
mod media;
mod model_actions;
mod notifier;
mod overload;
mod reload;
mod security;
mod supervisor;
