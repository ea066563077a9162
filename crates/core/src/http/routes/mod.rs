//! Route tables, one file per area.

pub mod services;
pub mod status;
pub mod system;

use super::error::ApiError;
use crate::app::SharedState;
use axum::http::Uri;
use axum::routing::{get, post};
use axum::Router;

/// Routes for gateway clients (API key or trusted network).
pub fn gateway_routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/config", get(status::effective_config))
        .route("/metrics", get(status::metrics))
        .route("/api/v1/events", get(services::events))
        .route("/api/v1/events/stream", get(services::events_stream))
        .route("/api/v1/system", get(system::system))
}

/// Control routes (admin key or trusted network).
pub fn admin_routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/services", get(services::list))
        .route("/api/v1/services/restart-all", post(services::restart_all))
        .route("/api/v1/services/{name}", get(services::get_one))
        .route("/api/v1/services/{name}/start", post(services::start))
        .route("/api/v1/services/{name}/stop", post(services::stop))
        .route("/api/v1/services/{name}/restart", post(services::restart))
        .route("/api/v1/services/{name}/logs", get(services::logs))
        .route(
            "/api/v1/services/{name}/logs/stream",
            get(services::logs_stream),
        )
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}
