//! Route tables, one file per area.

pub mod llm;
pub mod status;

use super::error::ApiError;
use crate::app::SharedState;
use axum::http::Uri;
use axum::routing::get;
use axum::Router;

/// Routes for gateway clients (API key or trusted network).
pub fn gateway_routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/config", get(status::effective_config))
        .route("/metrics", get(status::metrics))
        .merge(llm::routes())
}

/// Control routes (admin key or trusted network).
pub fn admin_routes() -> Router<SharedState> {
    Router::new()
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}
