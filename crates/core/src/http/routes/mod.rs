//! Route tables, one file per area.

pub mod config;
pub mod dashboard;
pub mod flows;
pub mod llm;
pub mod media;
pub mod model_actions;
pub mod models;
pub mod runtime;
pub mod services;
pub mod status;
pub mod system;
pub mod usage;

use super::error::ApiError;
use crate::app::SharedState;
use axum::http::Uri;
use axum::routing::{delete, get, post};
use axum::Router;

/// Routes for gateway clients (API key or trusted network).
pub fn gateway_routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/config", get(status::effective_config))
        .route("/api/v1/storage", get(status::storage))
        .route("/api/v1/debug/settings", get(status::debug_settings))
        .route("/api/v1/runtime", get(runtime::get_runtime))
        .route("/api/v1/flows/product-detail", post(flows::start))
        .route("/api/v1/flows/jobs", get(flows::list))
        .route("/api/v1/flows/jobs/{id}", get(flows::get))
        .route("/api/v1/flows/jobs/{id}/events", get(flows::events))
        .route("/api/v1/stream", get(dashboard::stream))
        .route("/api/v1/usage", get(usage::recent))
        .route("/api/v1/usage/summary", get(usage::summary))
        .route("/metrics", get(status::metrics))
        .route("/api/v1/media/image/generate", post(media::generate_image))
        .route("/api/v1/media/generate", post(media::generate))
        .route(
            "/api/v1/media/jobs/{id}",
            get(media::get_job).delete(media::cancel_job),
        )
        .route("/api/v1/media/jobs/{id}/events", get(media::job_events))
        .route("/api/v1/media/health", get(media::health))
        .route("/api/v1/media/models", get(media::models))
        .merge(llm::routes())
        .route("/api/v1/events", get(services::events))
        .route("/api/v1/events/stream", get(services::events_stream))
        .route("/api/v1/notifications", get(services::notifications))
        .route("/api/v1/notifications/mutes", get(services::mutes))
        .route("/api/v1/system", get(system::system))
        .route("/api/v1/models", get(models::models))
        .route("/api/v1/models/pulls", get(model_actions::list_pulls))
        .route("/api/v1/models/pulls/{id}", get(model_actions::get_pull))
        .route(
            "/api/v1/models/pulls/{id}/events",
            get(model_actions::pull_events),
        )
}

/// Control routes (admin key or trusted network).
pub fn admin_routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/runtime", post(runtime::set_runtime))
        .route("/api/v1/config/reload", post(config::reload))
        .route("/api/v1/discover", post(config::discover))
        .route("/api/v1/discover/accept", post(config::accept))
        .route("/api/v1/services", get(services::list))
        .route("/api/v1/services/restart-all", post(services::restart_all))
        .route("/api/v1/services/{name}", get(services::get_one))
        .route("/api/v1/services/{name}/{action}", post(services::action))
        .route("/api/v1/services/{name}/logs", get(services::logs))
        .route("/api/v1/notifications/mutes", post(services::mute))
        .route(
            "/api/v1/notifications/mutes/{topic}",
            axum::routing::delete(services::unmute),
        )
        .route(
            "/api/v1/services/{name}/logs/stream",
            get(services::logs_stream),
        )
        .route("/api/v1/models/{provider}/pull", post(model_actions::pull))
        .route(
            "/api/v1/models/pulls/{id}",
            delete(model_actions::cancel_pull),
        )
        .route(
            "/api/v1/models/{provider}/{*model}",
            delete(model_actions::delete).post(model_actions::load_or_unload),
        )
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}
