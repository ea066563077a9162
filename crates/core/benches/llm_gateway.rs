//! LLM Gateway overhead: the latency the gateway adds over calling the Ollama test
//! double directly (p50/p99 at concurrency 1 and 64), and mock-mode requests/s.
//!
//! Run: `cargo bench -p sparklio-desk-core --bench llm_gateway` (about 30 s).
//! Request counts are fixed (`ROUNDS`), so the runtime stays bounded.

#[path = "../tests/support/ollama_double.rs"]
mod ollama_double;
#[path = "support/app.rs"]
mod support;

use ollama_double::OllamaDouble;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Requests per measured series (after a warm-up of `WARMUP`).
const ROUNDS: usize = 2_000;
const WARMUP: usize = 200;
/// Requests in the mock throughput run.
const MOCK_REQUESTS: usize = 5_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

async fn start_app(
    dir: &tempfile::TempDir,
    base_url: &str,
    mode: &str,
) -> sparklio_core::RunningApp {
    let toml = format!("[llm.providers.ollama]\nbase_url = \"{base_url}\"\ntimeout_s = 30\n");
    support::start_app(dir, &toml, &[("GENERATOR_MODE", mode)]).await
}

/// Send `total` requests with `concurrency` in flight; per-request latencies in ms.
async fn run(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    total: usize,
    concurrency: usize,
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
                assert!(r.status().is_success(), "{}", r.status());
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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let double = OllamaDouble::start().await;
        let dir = tempfile::tempdir().unwrap();
        let live = start_app(&dir, &double.base_url(), "live").await;
        let mock = start_app(&dir, &double.base_url(), "mock").await;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .build()
            .unwrap();

        let payload = json!({"product_name": "프로틴플러스 초코맛", "features": ["30g 단백질", "저당"]});
        let gateway_body = json!({"role": "copywriter", "task": "product_detail", "payload": payload});
        let gateway_url = format!("http://{}/api/v1/llm/generate", live.addr);
        // The same upstream request the gateway sends (same prompt size and options).
        let direct_body = {
            let prompts = sparklio_core::llm::prompts::Prompts::load(None).unwrap();
            let messages = prompts
                .build("copywriter", "product_detail", "json", &payload, &Default::default())
                .unwrap();
            json!({"model": "qwen2.5:14b", "messages": messages, "stream": false, "format": "json",
                   "options": {"temperature": 0.7, "top_p": 0.9, "num_predict": 2000}, "keep_alive": "10m"})
        };
        let direct_url = format!("{}/api/chat", double.base_url());

        println!("LLM gateway overhead ({ROUNDS} requests per series, {} CPUs)", std::thread::available_parallelism().map_or(0, std::num::NonZero::get));
        println!("{:<34} {:>9} {:>9} {:>9}", "series", "p50 ms", "p99 ms", "req/s");
        for concurrency in [1usize, 64] {
            run(&client, &direct_url, &direct_body, WARMUP, concurrency.min(WARMUP)).await;
            run(&client, &gateway_url, &gateway_body, WARMUP, concurrency.min(WARMUP)).await;
            let (d, dt) = run(&client, &direct_url, &direct_body, ROUNDS, concurrency).await;
            let (g, gt) = run(&client, &gateway_url, &gateway_body, ROUNDS, concurrency).await;
            let row = |name: &str, v: &[f64], t: Duration| {
                println!(
                    "{name:<34} {:>9.3} {:>9.3} {:>9.0}",
                    percentile(v, 0.50),
                    percentile(v, 0.99),
                    v.len() as f64 / t.as_secs_f64()
                );
            };
            row(&format!("direct to double, c={concurrency}"), &d, dt);
            row(&format!("through gateway, c={concurrency}"), &g, gt);
            println!(
                "{:<34} {:>9.3} {:>9.3}",
                format!("gateway overhead, c={concurrency}"),
                percentile(&g, 0.50) - percentile(&d, 0.50),
                percentile(&g, 0.99) - percentile(&d, 0.99)
            );
        }

        let mock_url = format!("http://{}/api/v1/llm/generate", mock.addr);
        run(&client, &mock_url, &gateway_body, WARMUP, 16).await;
        for concurrency in [1usize, 16, 64] {
            let n = if concurrency == 1 { MOCK_REQUESTS / 5 } else { MOCK_REQUESTS };
            let (m, mt) = run(&client, &mock_url, &gateway_body, n, concurrency).await;
            println!(
                "{:<34} {:>9.3} {:>9.3} {:>9.0}",
                format!("mock mode, c={concurrency}"),
                percentile(&m, 0.50),
                percentile(&m, 0.99),
                m.len() as f64 / mt.as_secs_f64()
            );
        }
        assert!(double.requests().len() >= 2 * ROUNDS, "the live series reached the double");
        live.shutdown().await.unwrap();
        mock.shutdown().await.unwrap();
    });
}
