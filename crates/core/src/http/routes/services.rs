//! Control API for the supervised services (admin scope) and the event log (gateway scope).
//! Requests choose services by name only: commands come from the local config, never
//! from a request.

use crate::app::SharedState;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::ApiJson;
use crate::supervisor::{Control, ServiceEntry, ServiceView};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use tokio_stream::wrappers::BroadcastStream;

const MAX_TAIL: usize = 10_000;
/// How much of a detached process's own log file a tail reads.
const DETACHED_TAIL_BYTES: u64 = 1024 * 1024;
const MAX_EVENTS: u32 = 1_000;

/// "admin from 100.64.1.2" / "trusted client from 127.0.0.1 (key ...)".
pub(crate) fn actor(caller: &Caller) -> String {
    let who = if caller.admin {
        "admin"
    } else if caller.trusted {
        "trusted client"
    } else {
        "client"
    };
    format!("{who} from {}", caller.describe())
}

fn entry(state: &SharedState, name: &str) -> Result<Arc<ServiceEntry>, ApiError> {
    state.supervisor.get(name).ok_or_else(|| {
        ApiError::not_found(format!("no service named {name:?}")).with("service", name)
    })
}

/// Every service as the list route shows it.
pub fn services_view(state: &SharedState) -> Vec<ServiceView> {
    state
        .supervisor
        .services()
        .iter()
        .map(|e| service_view(state, e))
        .collect()
}

fn service_view(state: &SharedState, e: &ServiceEntry) -> ServiceView {
    let usage = e.status().pid.and_then(|pid| state.system.tree_usage(pid));
    e.view(usage)
}

pub async fn list(State(state): State<SharedState>) -> Json<Value> {
    Json(json!({ "services": services_view(&state) }))
}

pub async fn get_one(
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceView>, ApiError> {
    let e = entry(&state, &name)?;
    Ok(Json(service_view(&state, &e)))
}

fn control(
    state: &SharedState,
    name: &str,
    action: &'static str,
    control: Control,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    match state.supervisor.control(name, control) {
        Ok(st) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"service": name, "action": action, "accepted": true, "state": st})),
        )),
        Err(e) => Err(ApiError::from(e).with("service", name)),
    }
}

/// `POST /api/v1/services/{name}/start|stop|restart`.
pub async fn action(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((name, action)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let actor = actor(&caller);
    let (label, control_msg) = match action.as_str() {
        "start" => ("start", Control::Start { actor }),
        "stop" => ("stop", Control::Stop { actor }),
        "restart" => ("restart", Control::Restart { actor }),
        other => {
            return Err(ApiError::not_found(format!(
                "no action {other:?} (start, stop, restart)"
            )))
        }
    };
    control(&state, &name, label, control_msg)
}

pub async fn restart_all(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
) -> (StatusCode, Json<Value>) {
    let who = actor(&caller);
    let restarted: Vec<String> = state
        .supervisor
        .services()
        .iter()
        .filter(|e| {
            state
                .supervisor
                .control(&e.config.name, Control::Restart { actor: who.clone() })
                .is_ok()
        })
        .map(|e| e.config.name.clone())
        .collect();
    (
        StatusCode::ACCEPTED,
        Json(json!({"action": "restart", "accepted": true, "services": restarted})),
    )
}

#[derive(Debug, Deserialize)]
pub struct TailQuery {
    tail: Option<String>,
}

fn parse_tail(q: &TailQuery, default: usize) -> Result<usize, ApiError> {
    match &q.tail {
        None => Ok(default),
        Some(t) => t
            .parse::<usize>()
            .map(|n| n.min(MAX_TAIL))
            .map_err(|_| ApiError::validation("tail", format!("{t:?} is not a number of lines"))),
    }
}

pub async fn logs(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    Query(q): Query<TailQuery>,
) -> Result<Json<Value>, ApiError> {
    let e = entry(&state, &name)?;
    let n = parse_tail(&q, 200)?;
    let mut lines: Vec<Value> = e.logs.tail(n).into_iter().map(|l| json!(l)).collect();
    // A detached process writes to its own file; show that file's end too (read off
    // the runtime, and only its last bytes: the file may be large).
    if let (Some(path), true) = (e.detached_log.as_ref().map(|d| d.path.clone()), n > 0) {
        let from_file = tokio::task::spawn_blocking(move || {
            crate::supervisor::logs::tail_file(&path, n, DETACHED_TAIL_BYTES)
        })
        .await
        .unwrap_or_default();
        lines.extend(
            from_file
                .into_iter()
                .map(|l| json!({"ts": null, "stream": "file", "line": l})),
        );
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    Ok(Json(json!({
        "service": name,
        "lines": lines,
        "file": e.logs.file_path(),
    })))
}

/// Stream that ends when the app shuts down (axum's graceful shutdown waits for it).
fn until_shutdown<S>(state: &SharedState, s: S) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    S: Stream<Item = SseEvent> + Send + 'static,
{
    s.map(Ok)
        .take_until(state.shutdown.clone().cancelled_owned())
}

pub async fn logs_stream(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    Query(q): Query<TailQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let e = entry(&state, &name)?;
    let n = parse_tail(&q, 0)?;
    // Subscribe before reading the tail so no line falls between the two.
    let live = BroadcastStream::new(e.logs.subscribe());
    let backlog = futures::stream::iter(e.logs.tail(n));
    let lines = backlog
        .chain(live.filter_map(|r| async move { r.ok() }))
        .map(|l| {
            SseEvent::default()
                .event("log")
                .json_data(&l)
                .unwrap_or_default()
        });
    Ok(Sse::new(until_shutdown(&state, lines)).keep_alive(KeepAlive::default()))
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    limit: Option<String>,
    service: Option<String>,
    /// `ok`, `degraded`, `down`; several comma-separated.
    level: Option<String>,
    /// `supervisor`, `notifier`, `admin` (matches "admin from …"), or a whole actor.
    actor: Option<String>,
}

const EVENT_LEVELS: [&str; 3] = ["ok", "degraded", "down"];

pub async fn events(
    State(state): State<SharedState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = match &q.limit {
        None => 100,
        Some(l) => l
            .parse::<u32>()
            .map(|n| n.clamp(1, MAX_EVENTS))
            .map_err(|_| ApiError::validation("limit", format!("{l:?} is not a number")))?,
    };
    let levels: Vec<String> = q
        .level
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = levels.iter().find(|l| !EVENT_LEVELS.contains(&l.as_str())) {
        return Err(ApiError::validation(
            "level",
            format!("{bad:?} is not a level (ok, degraded, down)"),
        ));
    }
    let empty_to_none = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let events = state
        .supervisor
        .events
        .query(event_query(
            limit,
            empty_to_none(&q.service),
            levels,
            empty_to_none(&q.actor),
        ))
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the event log: {e}")))?;
    let events: Vec<Value> = events.iter().map(event_json).collect();
    Ok(Json(json!({ "events": events })))
}

/// An event as the API shows it: the stored row plus the notification topic it belongs
/// to (what a mute names; null when such changes are never notified).
pub fn event_json(ev: &crate::supervisor::events::Event) -> Value {
    let mut v = serde_json::to_value(ev).unwrap_or_default();
    v["topic"] = json!(crate::notify::event_topic(&ev.service, &ev.to, &ev.reason));
    v
}

#[derive(Debug, Deserialize)]
pub struct MuteBody {
    topic: String,
    #[serde(rename = "for")]
    for_: crate::notify::MuteFor,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsQuery {
    #[serde(default)]
    after: u64,
}

/// `GET /api/v1/notifications?after=N`: the notifications delivered after id N (all
/// kept ones for 0), oldest first, and `last_id` to ask after next. A tray attached to
/// the Windows service's core shows these itself: the service has no desktop.
pub async fn notifications(
    State(state): State<SharedState>,
    query: Result<Query<NotificationsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::notify::recent::Since>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation("after", e.body_text()))?;
    Ok(Json(state.notifications.since(q.after)))
}

/// `GET /api/v1/notifications/mutes`: the topics muted now.
pub async fn mutes(State(state): State<SharedState>) -> Json<Value> {
    Json(json!({ "mutes": state.mutes.list(std::time::Instant::now()) }))
}

/// `POST /api/v1/notifications/mutes` `{"topic": "docker", "for": "1h" | "until_change"}`.
pub async fn mute(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<MuteBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let topic = body.topic.trim();
    if topic.is_empty() || topic.len() > 200 {
        return Err(ApiError::validation("topic", "must be 1 to 200 characters"));
    }
    let Some(view) = state
        .mutes
        .mute(topic, body.for_, std::time::Instant::now())
    else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "TOO_MANY_MUTES",
            format!(
                "{} topics are muted already; unmute one first",
                crate::notify::mutes::MAX_MUTES
            ),
        ));
    };
    tracing::info!(topic, by = %actor(&caller), "notifications muted");
    Ok((StatusCode::CREATED, Json(json!({ "mute": view }))))
}

/// `DELETE /api/v1/notifications/mutes/{topic}`.
pub async fn unmute(
    State(state): State<SharedState>,
    Path(topic): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.mutes.unmute(&topic) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no mute for topic {topic:?}")))
    }
}

fn event_query(
    limit: u32,
    service: Option<String>,
    levels: Vec<String>,
    actor: Option<String>,
) -> crate::store::EventQuery {
    crate::store::EventQuery {
        limit,
        service,
        levels,
        actor,
    }
}

pub async fn events_stream(State(state): State<SharedState>) -> impl IntoResponse {
    let live = BroadcastStream::new(state.supervisor.events.subscribe())
        .filter_map(|r| async move { r.ok() })
        .map(|ev| {
            SseEvent::default()
                .event("service_state")
                .id(ev.id.to_string())
                .json_data(event_json(&ev))
                .unwrap_or_default()
        });
    Sse::new(until_shutdown(&state, live)).keep_alive(KeepAlive::default())
}
