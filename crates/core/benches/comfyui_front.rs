//! ComfyUI front benchmark (bounded, about 20 s):
//! 1. overhead of `/comfyui/*` over calling the ComfyUI double directly: latency p50/p99
//!    at concurrency 1 and requests per second at concurrency 64, for a small JSON
//!    answer (`/system_stats`) and an image (`/view`);
//! 2. fail-fast: how long a `/comfyui/*` call takes to be answered 503 when ComfyUI is
//!    known down (the supervisor's board) and when its port is closed (breaker open).
//!
//! Run: `cargo bench -p sparklio-desk-core --bench comfyui_front`

use serde_json::{json, Value};
use sparklio_testkit::ComfyDouble;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERIAL: usize = 400;
const WARMUP: usize = 20;
const CONCURRENCY: usize = 64;
const RPS_WINDOW: Duration = Duration::from_secs(3);

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

/// p50 and p99 in ms of `SERIAL` sequential GETs (after a warm-up), expecting `status`.
async fn serial(client: &reqwest::Client, url: &str, status: u16) -> (f64, f64) {
    let mut times = Vec::with_capacity(SERIAL);
    for i in 0..SERIAL + WARMUP {
        let t = Instant::now();
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{url}");
        let _ = r.bytes().await.unwrap();
        if i >= WARMUP {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    (pct(&mut times, 0.5), pct(&mut times, 0.99))
}

/// Requests per second with `CONCURRENCY` clients for `RPS_WINDOW`.
async fn rate(client: &reqwest::Client, url: &str) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, done) = (client.clone(), url.to_string(), done.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < RPS_WINDOW {
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
                let _ = r.bytes().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn overhead() {
    let double = ComfyDouble::start().await;
    double.set_checkpoints(&["bench.safetensors"]);
    let dir = tempfile::tempdir().unwrap();
    let app = sparklio_testkit::app::start_app(
        &dir,
        &format!(
            "[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"{}\"\n",
            double.url()
        ),
        &[("GENERATOR_MODE", "live")],
    )
    .await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let desk = format!("http://{}/comfyui", app.addr);
    // One image to fetch: a prompt through the front.
    let graph = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}
    });
    let v: Value = client
        .post(format!("{desk}/prompt"))
        .json(&json!({"prompt": graph}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["prompt_id"].as_str().unwrap().to_string();
    let mut filename = None;
    for _ in 0..200 {
        if let Some(h) = double.history_of(&id) {
            filename = h["outputs"]["2"]["images"][0]["filename"]
                .as_str()
                .map(str::to_string);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let filename = filename.expect("the image was saved");
    let view = format!("/view?filename={filename}&subfolder=&type=output");
    for (name, path) in [
        ("system_stats", "/system_stats".to_string()),
        ("view", view),
    ] {
        let direct = format!("{}{path}", double.url());
        let front = format!("{desk}{path}");
        let (d50, d99) = serial(&client, &direct, 200).await;
        let (f50, f99) = serial(&client, &front, 200).await;
        let drps = rate(&client, &direct).await;
        let frps = rate(&client, &front).await;
        println!(
            "{name}: direct p50 {d50:.2} ms p99 {d99:.2} ms, {drps:.0} req/s at c={CONCURRENCY}; \
             through /comfyui p50 {f50:.2} ms p99 {f99:.2} ms, {frps:.0} req/s; \
             overhead p50 +{:.2} ms p99 +{:.2} ms",
            f50 - d50,
            f99 - d99
        );
    }
    app.shutdown().await.unwrap();
}

async fn fail_fast() {
    let client = reqwest::Client::new();
    // Known down: the supervisor's board says so; no call is made.
    let double = ComfyDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = sparklio_testkit::app::start_app(
        &dir,
        &format!(
            "[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"{}\"\n",
            double.url()
        ),
        &[("GENERATOR_MODE", "live")],
    )
    .await;
    app.state
        .provider_board
        .mark_down("comfyui", "service comfyui is stopped");
    let url = format!("http://{}/comfyui/system_stats", app.addr);
    let (b50, b99) = serial(&client, &url, 503).await;
    app.shutdown().await.unwrap();

    // Port closed: the first calls are refused, then the breaker answers.
    let port = sparklio_testkit::free_port();
    let app = sparklio_testkit::app::start_app(
        &dir,
        &format!(
            "[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"http://127.0.0.1:{port}\"\n"
        ),
        &[("GENERATOR_MODE", "live")],
    )
    .await;
    let url = format!("http://{}/comfyui/queue", app.addr);
    let (c50, c99) = serial(&client, &url, 503).await;
    app.shutdown().await.unwrap();
    println!(
        "fail-fast (503 in ComfyUI's shape, c=1): provider marked down p50 {b50:.2} ms p99 {b99:.2} ms; \
         port closed / breaker open p50 {c50:.2} ms p99 {c99:.2} ms (goal ≤ 20 ms)"
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        overhead().await;
        fail_fast().await;
    });
}
