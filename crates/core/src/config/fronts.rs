//! `[fronts.comfyui]`: ComfyUI's own API served by the Desk (issue 14).

use serde::{Deserialize, Serialize};

/// `[fronts.comfyui]`: ComfyUI's own API under `/comfyui/*`, passed to the instances of
/// a `comfyui` media provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComfyFrontConfig {
    /// Serve the front at all.
    pub enabled: bool,
    /// The media provider (of kind `comfyui`) whose instances answer; unset: the
    /// provider named `comfyui`, else `media.default_provider` if it is ComfyUI, else
    /// the first ComfyUI provider.
    pub provider: Option<String>,
    /// Largest `upload/image` body (multipart), above `server.max_body_bytes`.
    pub max_upload_bytes: usize,
    /// `/ws` connections proxied at once.
    pub max_websockets: usize,
    /// Largest WebSocket message either way (ComfyUI's preview frames are binary).
    pub max_ws_message_bytes: usize,
    /// A whole `/view` or `upload/image` transfer, in seconds.
    pub transfer_timeout_s: f64,
    /// An extra listener serving only this front, at ComfyUI's own paths (`/prompt`,
    /// `/api/prompt`, `/ws`), for clients that cannot take a path prefix, e.g.
    /// `"127.0.0.1:11502"`; the same keys, limits and rules as `/comfyui`.
    pub bind: Option<String>,
}

impl Default for ComfyFrontConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            provider: None,
            max_upload_bytes: 64 * 1024 * 1024,
            max_websockets: 64,
            max_ws_message_bytes: 16 * 1024 * 1024,
            transfer_timeout_s: 120.0,
            bind: None,
        }
    }
}
