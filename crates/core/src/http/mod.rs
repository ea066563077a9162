//! The HTTP API: one router, three access levels (public, gateway, admin),
//! and tower layers for what every request shares.

pub mod auth;
pub mod error;
pub mod request;
mod routes;
pub mod sse;
mod ui;

pub use error::{ApiError, ApiResult};
pub use request::ApiJson;

use crate::app::SharedState;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use axum::Router;

/// The whole API. Public routes need nothing; gateway routes need a trusted network or
/// a key; control routes a trusted network or an admin key.
pub fn router(state: SharedState) -> Router {
    let public = Router::new()
        .route("/healthz", get(routes::status::healthz))
        .merge(ui::routes());

    let gateway = routes::gateway_routes()
        .route_layer(from_fn_with_state(state.clone(), auth::require_gateway));

    let admin =
        routes::admin_routes().route_layer(from_fn_with_state(state.clone(), auth::require_admin));

    Router::new()
        .merge(public)
        .merge(gateway)
        .merge(admin)
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(state.config().server.max_body_bytes))
        .layer(from_fn(request::request_context))
        .with_state(state)
}
