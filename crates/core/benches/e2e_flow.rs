//! The product-detail check in mock mode: total time (median of 10 runs) and, per
//! step, the time the client saw, the gateway's own time and the provider's time.
//! Gateway overhead = client time − provider time (HTTP, routing, prompts, validation,
//! usage log; for the image also PNG storage).
//!
//! Run: `cargo bench -p sparklio-desk-core --bench e2e_flow` (a few seconds).

#[path = "support/app.rs"]
mod support;

use sparklio_core::client::{GatewayClient, Timeouts};
use sparklio_core::flow::{self, FlowInput};
use std::collections::BTreeMap;

const RUNS: usize = 10;

/// Per step: client, gateway and provider milliseconds of every run.
type StepTimes = BTreeMap<String, (Vec<f64>, Vec<f64>, Vec<f64>)>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::start_app(&dir, "", &[]).await;
    let client = GatewayClient::new(
        format!("http://{}", app.addr),
        None,
        Timeouts::for_mode(false),
    );
    let input = FlowInput::sample();

    // One warm-up run (first-use costs: schema compilation, templates, SQLite pages).
    let warm = flow::run(&client, &input, true, |_| {}).await;
    assert!(warm.ok, "{:?}", warm.error);

    let mut totals = Vec::new();
    let mut per_step = StepTimes::new();
    for _ in 0..RUNS {
        let r = flow::run(&client, &input, true, |_| {}).await;
        assert!(r.ok, "{:?}", r.error);
        totals.push(r.total_ms);
        for s in r.steps {
            let e = per_step.entry(s.name.clone()).or_default();
            e.0.push(s.ms);
            e.1.push(s.gateway_ms.unwrap_or(f64::NAN));
            e.2.push(s.provider_ms.unwrap_or(f64::NAN));
        }
    }
    println!("mock-mode product-detail check, {RUNS} runs after 1 warm-up");
    println!(
        "total: median {:.1} ms (min {:.1}, max {:.1}); budget 30 s",
        median(totals.clone()),
        totals.iter().copied().fold(f64::INFINITY, f64::min),
        totals.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "{:<16} {:>10} {:>10} {:>11} {:>10}",
        "step (median)", "client ms", "gateway ms", "provider ms", "overhead"
    );
    for (name, (client_ms, gw, prov)) in per_step {
        let (c, g, p) = (median(client_ms), median(gw), median(prov));
        if p.is_nan() {
            // The media answer reports no separate provider time.
            println!("{name:<16} {c:>10.2} {g:>10.2} {:>11} {:>10}", "n/a", "n/a");
        } else {
            println!("{name:<16} {c:>10.2} {g:>10.2} {p:>11.2} {:>10.2}", c - p);
        }
    }
    app.shutdown().await.unwrap();
}
