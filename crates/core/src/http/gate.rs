//! The one middleware every request passes through. It does, in this order, what seven
//! layers did before (each boxed a future and cloned its state, per request):
//! 1. a request id (the caller's or a new one) in scope for every error body, then
//!    `x-request-id` on the answer and the access log line;
//! 2. the answer's errors in the standard body, then in the front's own shape;
//! 3. the security headers on every answer;
//! 4. a body declared larger than the limit refused before a byte of it is read;
//! 5. the body read under an idle timeout;
//! 6. the browser rules and CORS (a preflight answered here, before auth).
//!
//! Access and limits are per route (`auth::require`).

use super::browser;
use super::error::REQUEST_ID;
use super::fronts::{front_of, reshape_errors};
use super::request::{self, Access, BodyLimits};
use crate::app::SharedState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Duration;
use tower_http::timeout::TimeoutBody;

/// What the gate needs, fixed when the router is built.
#[derive(Clone)]
pub struct Gate {
    pub state: SharedState,
    pub body_limits: BodyLimits,
    /// How long a request body may send nothing.
    pub body_timeout: Duration,
}

/// The middleware (see the module doc).
pub async fn gate(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let access = Access::of(&req, request::request_id_from(&req));
    let mut resp = REQUEST_ID
        .scope(access.id().to_string(), answered(gate, req, next))
        .await;
    access.finish(&mut resp);
    resp
}

/// Steps 2 to 6, inside the request id's scope.
async fn answered(gate: Gate, req: Request, next: Next) -> Response {
    let front = front_of(req.uri().path());
    let is_page = browser::is_page(req.uri().path());
    let mut resp = match request::refuse_declared_oversize(&gate.body_limits, &req) {
        Some(refused) => {
            request::drain_refused_body(req.into_body());
            refused
        }
        None => {
            let req = req.map(|b| Body::new(TimeoutBody::new(gate.body_timeout, b)));
            match browser::judge_request(&gate.state, &req) {
                browser::Verdict::Answer(answer) => answer,
                browser::Verdict::Serve(cors_origin) => {
                    let mut resp = next.run(req).await;
                    browser::allow_origin(&mut resp, cors_origin.as_deref());
                    resp
                }
            }
        }
    };
    browser::security_headers(resp.headers_mut(), is_page);
    // Ours first (a bare 405 or 413 from below the handlers), then in the front's shape.
    reshape_errors(front, request::normalize_error(resp)).await
}
