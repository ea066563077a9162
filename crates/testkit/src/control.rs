//! The control API of a double run as a separate process: its own port, so it still
//! answers while the double refuses, hangs or restarts.
//!
//! - `GET /fault`: the rule in force (`{"fault": "none"}` when healthy);
//! - `PUT /fault`: put a rule in force, e.g. `{"fault": "hang_after_accept"}` or
//!   `{"fault": "status", "status": 503, "path": "/api/chat", "times": 1}`;
//!   400 `{"error": "..."}` for one that cannot apply;
//! - `DELETE /fault`: healthy again;
//! - `POST /restart` `{"down_ms": 500}`: restart the double (answers once its port is closed);
//! - `GET /requests`: what the double received, oldest first; `DELETE /requests` forgets them.

use crate::fault::{FaultRule, FAULT_NAMES};
use crate::server::FaultSwitch;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// Default downtime of `POST /restart` without a body.
const DEFAULT_DOWN_MS: u64 = 500;

pub struct ControlServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Control {
    switch: FaultSwitch,
    double: &'static str,
}

/// Serve the control API of `switch` (the `double` named in `GET /`) on 127.0.0.1:`port`
/// (0: any free port).
pub async fn serve_control(
    port: u16,
    switch: FaultSwitch,
    double: &'static str,
) -> std::io::Result<ControlServer> {
    let app = Router::new()
        .route("/", get(describe))
        .route("/fault", get(get_fault).put(put_fault).delete(clear_fault))
        .route("/restart", axum::routing::post(restart))
        .route("/requests", get(requests).delete(clear_requests))
        .with_state(Control { switch, double });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(ControlServer { addr, task })
}

fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": message.into()})),
    )
        .into_response()
}

async fn describe(State(c): State<Control>) -> Json<Value> {
    Json(json!({
        "double": c.double,
        "listening": c.switch.addr().to_string(),
        "fault": c.switch.current(),
        "faults": FAULT_NAMES,
        "routes": ["GET /fault", "PUT /fault", "DELETE /fault", "POST /restart", "GET /requests", "DELETE /requests"],
    }))
}

async fn get_fault(State(c): State<Control>) -> Json<FaultRule> {
    Json(c.switch.current())
}

async fn put_fault(State(c): State<Control>, body: Bytes) -> Response {
    let rule: FaultRule = match serde_json::from_slice(&body) {
        Ok(rule) => rule,
        Err(e) => return bad_request(e.to_string()),
    };
    match c.switch.try_set(rule).await {
        Ok(()) => Json(c.switch.current()).into_response(),
        Err(problem) => bad_request(problem),
    }
}

async fn clear_fault(State(c): State<Control>) -> Json<FaultRule> {
    c.switch.clear().await;
    Json(c.switch.current())
}

async fn restart(State(c): State<Control>, body: Bytes) -> Response {
    let down_ms = if body.is_empty() {
        DEFAULT_DOWN_MS
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => v["down_ms"].as_u64().unwrap_or(DEFAULT_DOWN_MS),
            Err(e) => return bad_request(e.to_string()),
        }
    };
    c.switch.restart(Duration::from_millis(down_ms)).await;
    Json(json!({"restarting": true, "down_ms": down_ms})).into_response()
}

async fn requests(State(c): State<Control>) -> Json<Value> {
    Json(json!(c.switch.requests()))
}

async fn clear_requests(State(c): State<Control>) -> StatusCode {
    c.switch.clear_requests();
    StatusCode::NO_CONTENT
}
