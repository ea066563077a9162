//! Media Gateway benchmark (bounded, a few seconds):
//! 1. the overhead the gateway adds to a ComfyUI job beyond ComfyUI's own time
//!    (client-observed submit → result, minus the double's accept → end-marker time);
//! 2. mock-mode images per second.
//!
//! Run: `cargo bench -p sparklio-desk-core --bench media_gateway`

use serde_json::{json, Value};
use sparklio_testkit::ComfyDouble;
use std::time::{Duration, Instant};

async fn start_app(dir: &tempfile::TempDir, mode: &str, toml: &str) -> sparklio_core::RunningApp {
    sparklio_testkit::app::start_app(dir, toml, &[("GENERATOR_MODE", mode)]).await
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (pct(0.5), pct(0.95), v.iter().sum::<f64>() / v.len() as f64)
}

async fn overhead(node_ms: u64, runs: usize) {
    let double = ComfyDouble::start().await;
    double.node_ms(node_ms);
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(
        &dir,
        "live",
        &format!(
            "[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"{}\"\ntimeout_s = 30\n",
            double.url()
        ),
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/media/image/generate", app.addr);
    let mut totals = Vec::new();
    let mut overheads = Vec::new();
    for i in 0..runs + 3 {
        let body = json!({"prompt": format!("bench {i}"), "options": {"workflow": "diagnostic", "width": 64, "height": 64, "seed": i}});
        let t0 = Instant::now();
        let v: Value = client
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let total = t0.elapsed().as_secs_f64() * 1000.0;
        let pid = v["meta"]["prompt_id"]
            .as_str()
            .expect("succeeded")
            .to_string();
        let (accepted, ended) = double.inner.timings.lock().unwrap()[&pid];
        let comfy = (ended.expect("ended") - accepted).as_secs_f64() * 1000.0;
        if i >= 3 {
            // The first runs warm up connections and the /object_info cache.
            totals.push(total);
            overheads.push(total - comfy);
        }
    }
    let (t50, t95, _) = stats(totals);
    let (o50, o95, omean) = stats(overheads);
    println!(
        "live (ComfyUI double, {node_ms} ms per node, {runs} sync runs): total p50 {t50:.1} ms p95 {t95:.1} ms; \
         gateway overhead p50 {o50:.1} ms p95 {o95:.1} ms mean {omean:.1} ms"
    );
    app.shutdown().await.unwrap();
}

async fn mock_rate(side: u32, concurrency: usize, budget: Duration, max_images: usize) {
    let dir = tempfile::tempdir().unwrap();
    let app = start_app(&dir, "mock", "").await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/media/image/generate", app.addr);
    let started = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, url, done) = (client.clone(), url.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while started.elapsed() < budget
                && done.load(std::sync::atomic::Ordering::SeqCst) < max_images
            {
                let body = json!({"prompt": format!("mock {w} {i}"), "options": {"width": side, "height": side}});
                let r = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200);
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(std::sync::atomic::Ordering::SeqCst);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "mock {side}x{side}, {concurrency} client(s): {n} images in {secs:.2} s = {:.1} images/s",
        n as f64 / secs
    );
    app.shutdown().await.unwrap();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        overhead(0, 40).await;
        overhead(20, 20).await;
        for (side, conc) in [(512, 1), (512, 2), (1024, 1), (1024, 2)] {
            mock_rate(side, conc, Duration::from_secs(3), 300).await;
        }
    });
}
