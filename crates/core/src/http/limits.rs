//! Per-key and per-client request limits: a rate (requests per minute, as a token
//! bucket holding one minute's worth) and a number of requests in flight. A named key's
//! own limits win; otherwise `server.client_limits` applies per client address (not to
//! loopback unless configured). Over a limit: 429 `RATE_LIMITED` with `Retry-After`.

use super::auth::Caller;
use super::error::ApiError;
use crate::config::ClientLimits;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Buckets kept at most; idle ones are dropped first (an address scan must not grow us).
const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Limit {
    rate_per_min: u32,
    max_concurrent: u32,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    inflight: u32,
}

pub struct Limiter {
    /// Replaced by a config reload; the counters below carry over.
    clients: arc_swap::ArcSwap<ClientLimits>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Releases a request's in-flight slot when dropped (with the response body).
pub struct InFlight {
    limiter: Arc<Limiter>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut buckets = self
            .limiter
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(b) = buckets.get_mut(&self.key) {
            b.inflight = b.inflight.saturating_sub(1);
        }
    }
}

fn rate_limited(message: String, retry_after_s: u64) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
        .with("retry_after_s", retry_after_s)
}

impl Limiter {
    pub fn new(clients: ClientLimits) -> Arc<Self> {
        Arc::new(Self {
            clients: arc_swap::ArcSwap::from_pointee(clients),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// New per-client limits from a config reload (requests in flight keep their slots).
    pub fn set_client_limits(&self, clients: ClientLimits) {
        self.clients.store(Arc::new(clients));
    }

    /// Which bucket a caller counts against, and its limits (`None`: unlimited).
    fn bucket_for(&self, caller: &Caller) -> Option<(String, Limit)> {
        if let Some(k) = &caller.key {
            if k.rate_per_min.is_some() || k.max_concurrent.is_some() {
                return Some((
                    format!("key:{}", k.id),
                    Limit {
                        rate_per_min: k.rate_per_min.unwrap_or(0),
                        max_concurrent: k.max_concurrent.unwrap_or(0),
                    },
                ));
            }
        }
        let c = self.clients.load();
        let loopback = caller.addr.ip().to_canonical().is_loopback();
        if (c.rate_per_min == 0 && c.max_concurrent == 0) || (loopback && !c.loopback) {
            return None;
        }
        Some((
            format!("ip:{}", caller.addr.ip().to_canonical()),
            Limit {
                rate_per_min: c.rate_per_min,
                max_concurrent: c.max_concurrent,
            },
        ))
    }

    /// Count one request, or say why it must wait.
    pub fn admit(self: &Arc<Self>, caller: &Caller) -> Result<Option<InFlight>, ApiError> {
        let Some((key, limit)) = self.bucket_for(caller) else {
            return Ok(None);
        };
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&key) {
            buckets.retain(|_, b| b.inflight > 0);
            if buckets.len() >= MAX_TRACKED {
                return Err(rate_limited("too many clients at once".into(), 1));
            }
        }
        let capacity = f64::from(limit.rate_per_min);
        let b = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: capacity,
            last: now,
            inflight: 0,
        });
        if limit.max_concurrent > 0 && b.inflight >= limit.max_concurrent {
            return Err(rate_limited(
                format!(
                    "at most {} requests at a time from this {}",
                    limit.max_concurrent,
                    if key.starts_with("key:") {
                        "key"
                    } else {
                        "client"
                    }
                ),
                1,
            ));
        }
        if limit.rate_per_min > 0 {
            let per_s = capacity / 60.0;
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * per_s).min(capacity);
            b.last = now;
            if b.tokens < 1.0 {
                let wait = ((1.0 - b.tokens) / per_s).ceil() as u64;
                return Err(rate_limited(
                    format!("at most {} requests per minute", limit.rate_per_min),
                    wait.max(1),
                ));
            }
            b.tokens -= 1.0;
        }
        b.inflight += 1;
        Ok(Some(InFlight {
            limiter: self.clone(),
            key,
        }))
    }
}

/// The response with the request's in-flight slot held until its whole body is sent
/// (streams count while they run).
pub fn held_until_sent(resp: Response, slot: InFlight) -> Response {
    let (parts, body) = resp.into_parts();
    let body = body.map_frame(move |f| {
        let _held = &slot;
        f
    });
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(ip: &str) -> Caller {
        Caller {
            addr: format!("{ip}:5000").parse().unwrap(),
            trusted: false,
            key_id: None,
            admin: false,
            key: None,
        }
    }

    #[test]
    fn rate_and_concurrency_per_client_and_loopback_exempt() {
        let l = Limiter::new(ClientLimits {
            rate_per_min: 3,
            max_concurrent: 2,
            loopback: false,
        });
        let lan = caller("192.168.1.9");
        let a = l.admit(&lan).unwrap().unwrap();
        let b = l.admit(&lan).unwrap().unwrap();
        let e = l.admit(&lan).err().unwrap();
        assert_eq!(e.code, "RATE_LIMITED");
        assert!(e.message.contains("at a time"), "{}", e.message);
        drop(a);
        let _c = l.admit(&lan).unwrap().unwrap();
        drop(b);
        // Three in this minute already: the fourth waits ~20 s for a token.
        let e = l.admit(&lan).err().unwrap();
        assert!(e.message.contains("per minute"), "{}", e.message);
        assert!(e.fields["retry_after_s"].as_u64().unwrap() >= 1);
        // Another client has its own bucket; loopback is not limited by default.
        assert!(l.admit(&caller("192.168.1.10")).unwrap().is_some());
        for _ in 0..10 {
            assert!(l.admit(&caller("127.0.0.1")).unwrap().is_none());
        }
    }

    #[test]
    fn tracked_clients_are_bounded() {
        let l = Limiter::new(ClientLimits {
            rate_per_min: 100,
            max_concurrent: 0,
            loopback: false,
        });
        for i in 0..(MAX_TRACKED as u32 + 100) {
            let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            let _ = l.admit(&caller(&ip));
        }
        assert!(l.buckets.lock().unwrap().len() <= MAX_TRACKED);
    }
}
