//! HTTP health probes with a hard timeout.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub ok: bool,
    pub latency_ms: f64,
    /// Why it failed ("timed out after 1000 ms", "HTTP 500", "connection refused").
    pub error: Option<String>,
}

/// A client for probes: no proxy (a proxy from the environment must not sit between us
/// and a service on this machine), no connection reuse (a hung service must not look
/// alive through a kept-alive socket).
pub fn probe_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// GET `url`; healthy on any 2xx answer within `timeout`.
pub async fn probe(client: &reqwest::Client, url: &str, timeout: Duration) -> ProbeResult {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, client.get(url).timeout(timeout).send()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let error = match outcome {
        Err(_) => Some(format!("timed out after {} ms", timeout.as_millis())),
        Ok(Err(e)) if e.is_timeout() => Some(format!("timed out after {} ms", timeout.as_millis())),
        Ok(Err(e)) if e.is_connect() => Some(format!("cannot connect to {url}")),
        Ok(Err(e)) => Some(format!("request failed: {e}")),
        Ok(Ok(r)) if r.status().is_success() => None,
        Ok(Ok(r)) => Some(format!("HTTP {}", r.status().as_u16())),
    };
    ProbeResult {
        ok: error.is_none(),
        latency_ms,
        error,
    }
}
