//! One file per media provider kind; the registry is in `provider.rs`.

pub mod comfyui;
pub mod comfyui_client;
pub mod comfyui_graph;
pub mod mock;
