//! LLM Gateway overhead: the latency the gateway adds over calling the Ollama test
//! double directly (p50/p99 at concurrency 1 and 64), and mock-mode requests/s.
//!
//! Run: `cargo bench -p sparklio-desk-core --bench llm_gateway` (about 30 s).
//! Request counts are fixed (`ROUNDS`), so the runtime stays bounded.

#[path = "common/load.rs"]
mod load;

use load::{percentile, row, run};
use serde_json::json;
use sparklio_testkit::OllamaDouble;

/// Requests per measured series (after a warm-up of `WARMUP`).
const ROUNDS: usize = 2_000;
const WARMUP: usize = 200;
/// Requests in the mock throughput run.
const MOCK_REQUESTS: usize = 5_000;

async fn start_app(
    dir: &tempfile::TempDir,
    base_url: &str,
    mode: &str,
) -> sparklio_core::RunningApp {
    let toml = format!("[llm.providers.ollama]\nbase_url = \"{base_url}\"\ntimeout_s = 30\n");
    sparklio_testkit::app::start_app(dir, &toml, &[("GENERATOR_MODE", mode)]).await
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
        // The same upstream request the gateway sends (same prompt size and options;
        // the gateway always streams from Ollama).
        let direct_body = {
            let prompts = sparklio_core::llm::prompts::Prompts::load(None).unwrap();
            let messages = prompts
                .build("copywriter", "product_detail", "json", &payload, &Default::default())
                .unwrap();
            json!({"model": "qwen2.5:14b", "messages": messages, "stream": true, "format": "json",
                   "options": {"temperature": 0.7, "top_p": 0.9, "num_predict": 2000}, "keep_alive": "10m"})
        };
        let direct_url = format!("{}/api/chat", double.base_url());

        println!("LLM gateway overhead ({ROUNDS} requests per series, {} CPUs)", std::thread::available_parallelism().map_or(0, std::num::NonZero::get));
        println!("{:<34} {:>9} {:>9} {:>9}", "series", "p50 ms", "p99 ms", "req/s");
        for concurrency in [1usize, 64] {
            run(&client, &direct_url, &direct_body, WARMUP, concurrency.min(WARMUP), 200).await;
            run(&client, &gateway_url, &gateway_body, WARMUP, concurrency.min(WARMUP), 200).await;
            let (d, dt) = run(&client, &direct_url, &direct_body, ROUNDS, concurrency, 200).await;
            let (g, gt) = run(&client, &gateway_url, &gateway_body, ROUNDS, concurrency, 200).await;
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
        run(&client, &mock_url, &gateway_body, WARMUP, 16, 200).await;
        for concurrency in [1usize, 16, 64] {
            let n = if concurrency == 1 { MOCK_REQUESTS / 5 } else { MOCK_REQUESTS };
            let (m, mt) = run(&client, &mock_url, &gateway_body, n, concurrency, 200).await;
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
