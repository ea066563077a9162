//! A bounded load loop shared by the HTTP benchmarks: a fixed number of requests with a
//! fixed number in flight, every answer's status checked, latencies in ms.

use serde_json::Value;
use std::time::{Duration, Instant};

/// The `p` quantile (0..=1) of sorted latencies.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// POST `body` to `url` `total` times, `concurrency` at once; each answer must have
/// `status`. Returns the sorted latencies and the wall time.
pub async fn run(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    total: usize,
    concurrency: usize,
    status: u16,
) -> (Vec<f64>, Duration) {
    let started = Instant::now();
    let per_worker = total / concurrency;
    let workers = (0..concurrency).map(|_| {
        let client = client.clone();
        let url = url.to_string();
        let body = body.clone();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                let t = Instant::now();
                let r = client.post(&url).json(&body).send().await.expect("send");
                assert_eq!(r.status().as_u16(), status, "{url}");
                let _ = r.bytes().await.expect("body");
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        })
    });
    let mut all = Vec::with_capacity(total);
    for w in futures::future::join_all(workers).await {
        all.extend(w.expect("worker"));
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (all, started.elapsed())
}

/// One table row: p50, p99, requests/s.
pub fn row(name: &str, v: &[f64], t: Duration) {
    println!(
        "{name:<40} {:>9.3} {:>9.3} {:>9.0}",
        percentile(v, 0.50),
        percentile(v, 0.99),
        v.len() as f64 / t.as_secs_f64()
    );
}
