//! The HTTP API: one router, three access levels (public, gateway, admin),
//! and one middleware for what every request shares (`gate`).

pub mod auth;
pub mod browser;
pub mod connection_threads;
pub mod error;
pub mod fronts;
mod gate;
pub mod limits;
pub mod request;
mod routes;
pub mod serve;
pub mod sse;
mod ui;
pub mod urls;

pub use error::{ApiError, ApiResult};
pub use request::ApiJson;

use crate::app::SharedState;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::Router;
use std::time::Duration;

/// The whole API. Public routes need nothing; gateway routes need a trusted network or
/// a key; control routes a trusted network or an admin key.
pub fn router(state: SharedState) -> Router {
    let public = Router::new()
        .route("/healthz", get(routes::status::healthz))
        .route("/health", get(routes::status::health))
        .route("/api/v1/media/files/{id}", get(routes::media::get_file))
        .merge(ui::routes());

    let gateway = routes::gateway_routes()
        .route_layer(from_fn_with_state(state.clone(), auth::require_gateway));

    let admin =
        routes::admin_routes().route_layer(from_fn_with_state(state.clone(), auth::require_admin));

    let config = state.config();
    let server = &config.server;
    let gate = gate::Gate {
        state: state.clone(),
        body_limits: request::BodyLimits {
            default: server.max_body_bytes,
            upload: config.config.fronts.comfyui.max_upload_bytes,
        },
        body_timeout: Duration::from_secs_f64(server.limits.body_timeout_s),
    };
    Router::new()
        .merge(public)
        .merge(gateway)
        .merge(admin)
        .merge(fronts::ollama::routes(state.clone()))
        .merge(fronts::openai::routes(state.clone()))
        .merge(fronts::comfyui::routes(state.clone()))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(server.max_body_bytes))
        .layer(from_fn_with_state(gate, gate::gate))
        .with_state(state)
}
