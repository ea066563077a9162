//! Acting on an Ollama provider's models (admin): pull with live progress (one download
//! per model; a second request joins it), cancel, delete (refused while routes use the
//! model unless forced), load and unload. Every action is an event naming who asked.

use crate::app::SharedState;
use crate::http::auth::Caller;
use crate::http::error::current_request_id;
use crate::http::routes::services::actor;
use crate::http::ApiError;
use crate::llm::front::FrontCall;
use crate::llm::pulls::{Pull, PullState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::llm::model_actions::{LONG_PULL, LONG_PULL_MARK, MODELS_SERVICE};

fn call(caller: &Caller, endpoint: &'static str) -> FrontCall {
    FrontCall {
        front: "models",
        endpoint,
        request_id: current_request_id().unwrap_or_default(),
        requester: caller.requester(),
        timeout: None,
    }
}

#[derive(Deserialize)]
pub struct PullBody {
    model: String,
}

/// `POST /api/v1/models/{provider}/pull` `{model}` → 202 with the pull (joined when one
/// of that model is already running).
pub async fn pull(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(provider): Path<String>,
    crate::http::ApiJson(body): crate::http::ApiJson<PullBody>,
) -> Result<Response, ApiError> {
    let (pull, joined) = state
        .llm
        .pull(&call(&caller, "pull"), &body.model, Some(&provider))
        .await?;
    if !joined {
        let who = actor(&caller);
        state
            .supervisor
            .events
            .record(
                MODELS_SERVICE,
                None,
                "pulling",
                &format!("{} on {}", pull.model, pull.provider),
                Some(&who),
            )
            .await;
        tokio::spawn(record_end(state.clone(), pull.clone(), who));
    }
    let mut body = serde_json::to_value(pull.progress()).unwrap_or(Value::Null);
    body["joined"] = json!(joined);
    body["status_url"] = json!(format!("/api/v1/models/pulls/{}", pull.id));
    body["events_url"] = json!(format!("/api/v1/models/pulls/{}/events", pull.id));
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// When the pull ends: an event (the notifier tells the owner about long ones).
async fn record_end(state: SharedState, pull: Arc<Pull>, who: String) {
    let started = Instant::now();
    let result = pull.wait().await;
    let p = pull.progress();
    let took = started.elapsed();
    let long = if took >= LONG_PULL {
        format!(" {LONG_PULL_MARK}")
    } else {
        String::new()
    };
    let (to, reason) = match (&result, p.state) {
        (_, PullState::Cancelled) => ("pull cancelled", format!("{} on {}", p.model, p.provider)),
        (Ok(()), _) => (
            "pulled",
            format!(
                "{} on {} in {:.0} s{long}",
                p.model,
                p.provider,
                took.as_secs_f64()
            ),
        ),
        (Err(e), _) => (
            "pull failed",
            format!("{} on {}: {e}{long}", p.model, p.provider),
        ),
    };
    state
        .supervisor
        .events
        .record(MODELS_SERVICE, Some("pulling"), to, &reason, Some(&who))
        .await;
}

/// `GET /api/v1/models/pulls`: running pulls, then the last finished ones.
pub async fn list_pulls(State(state): State<SharedState>) -> Json<Value> {
    let pulls: Vec<_> = state
        .llm
        .pulls()
        .all()
        .iter()
        .map(|p| p.progress())
        .collect();
    Json(json!({ "pulls": pulls }))
}

fn find(state: &SharedState, id: &str) -> Result<Arc<Pull>, ApiError> {
    state
        .llm
        .pulls()
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no pull {id:?}")))
}

pub async fn get_pull(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let pull = find(&state, &id)?;
    Ok(Json(
        serde_json::to_value(pull.progress()).unwrap_or(Value::Null),
    ))
}

/// `GET /api/v1/models/pulls/{id}/events`: `progress` events until it ends.
pub async fn pull_events(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let pull = find(&state, &id)?;
    let events = pull.progress_updates().map(|p| {
        let name = if p.state == PullState::Running {
            "progress"
        } else {
            "done"
        };
        Ok::<_, Infallible>(
            Event::default()
                .event(name)
                .json_data(&p)
                .unwrap_or_else(|_| Event::default().event(name)),
        )
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `DELETE /api/v1/models/pulls/{id}`: stop it.
pub async fn cancel_pull(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let pull = find(&state, &id)?;
    pull.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), pull.wait()).await;
    Ok(Json(
        serde_json::to_value(pull.progress()).unwrap_or(Value::Null),
    ))
}

#[derive(Deserialize, Default)]
pub struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

/// `DELETE /api/v1/models/{provider}/{model}`: refused with the routes that use it
/// (409 MODEL_IN_USE) unless `?force=true`.
pub async fn delete(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((provider, model)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> Result<Json<Value>, ApiError> {
    let routes = state.llm.routes_using(&provider, &model);
    if !routes.is_empty() && !q.force {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "MODEL_IN_USE",
            format!(
                "{model} is used by {}; delete with ?force=true to remove it anyway",
                routes.join(", ")
            ),
        )
        .with("routes", routes));
    }
    let report = state
        .llm
        .delete_model(&call(&caller, "delete"), &provider, &model)
        .await?;
    let reason = if routes.is_empty() {
        format!("{model} on {provider}")
    } else {
        format!("{model} on {provider}, used by {}", routes.join(", "))
    };
    state
        .supervisor
        .events
        .record(
            MODELS_SERVICE,
            None,
            "deleted",
            &reason,
            Some(&actor(&caller)),
        )
        .await;
    Ok(Json(json!({"report": report, "routes": routes})))
}

/// `POST /api/v1/models/{provider}/{model}/load|unload`.
pub async fn load_or_unload(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((provider, rest)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (model, action) = rest
        .rsplit_once('/')
        .filter(|(m, a)| !m.is_empty() && (*a == "load" || *a == "unload"))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no route for /api/v1/models/{provider}/{rest} (POST …/{{model}}/load or …/unload)"
            ))
        })?;
    let c = call(&caller, if action == "load" { "load" } else { "unload" });
    let report = if action == "load" {
        state.llm.load_model(&c, &provider, model).await?
    } else {
        state.llm.unload_model(&c, &provider, model).await?
    };
    let to = if action == "load" {
        "loaded"
    } else {
        "unloaded"
    };
    state
        .supervisor
        .events
        .record(
            MODELS_SERVICE,
            None,
            to,
            &format!("{model} on {provider}"),
            Some(&actor(&caller)),
        )
        .await;
    Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null)))
}
