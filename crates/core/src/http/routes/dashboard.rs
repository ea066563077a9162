//! The dashboard's live stream: one SSE connection carrying a snapshot of everything
//! the page shows every couple of seconds, plus state-change events as they happen.
//!
//! The stream is a gateway route, but the service list is admin-only
//! (`GET /api/v1/services`): a caller that may not read it gets a snapshot without
//! `services` and with `"access": "read-only"`, so one key never reads through the stream
//! what another route refuses it, and the page can say why its controls are gone.

use super::status::status_view;
use crate::app::SharedState;
use crate::http::auth::Caller;
use crate::http::sse::{json_event, sse_response};
use crate::store::UsageQuery;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::Extension;
use serde_json::{json, Value};
use std::time::Duration;

const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);
/// The window of the gateway figures (requests per minute, error rate, percentiles).
const USAGE_WINDOW_S: u64 = 300;

/// Everything the dashboard renders, in one document; `control`: whether the caller may
/// read the admin-only parts (the services).
pub async fn snapshot(state: &SharedState, control: bool) -> Value {
    let summary = state.store.usage_summary(USAGE_WINDOW_S).await.ok();
    let recent = state
        .store
        .recent_usage(UsageQuery {
            limit: Some(15),
            kind: None,
        })
        .await
        .unwrap_or_default();
    let mut snap = json!({
        "access": if control { "admin" } else { "read-only" },
        "status": status_view(state),
        "system": super::system::system_json(state, false).await,
        "usage": {
            "summary": summary,
            "generator_mode": state.runtime.mode().as_str(),
            "paused": state.runtime.paused(),
        },
        "recent": recent,
        // ComfyUI's shared queue: whose prompt runs, how many wait (Desk's and outside).
        "media_queue": state.media.front_queue().await,
    });
    if control {
        snap["services"] = json!(super::services::services_view(state));
    }
    snap
}

pub async fn stream(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
) -> impl IntoResponse {
    use futures::StreamExt;
    let control = caller.may_control();
    let st = state.clone();
    let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(SNAPSHOT_EVERY));
    let snapshots = ticks.then(move |_| {
        let st = st.clone();
        async move { json_event("snapshot", &snapshot(&st, control).await) }
    });
    // State changes as they happen (a lagging client skips what it missed; the next
    // snapshot has the current states anyway).
    let events = tokio_stream::wrappers::BroadcastStream::new(state.supervisor.events.subscribe())
        .filter_map(|e| async move {
            e.ok()
                .map(|e| json_event("event", &super::services::event_json(&e)))
        });
    sse_response(
        futures::stream::select(snapshots, events),
        state.shutdown.clone(),
    )
}
