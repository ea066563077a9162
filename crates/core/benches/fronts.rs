//! The fronts' overhead: Ollama's `/api/chat` and OpenAI's `/v1/chat/completions` through
//! the Desk against calling the Ollama test double directly (p50/p99 at concurrency 1,
//! requests/s at 64), and how fast each front answers when Ollama is down.
//!
//! Run: `cargo bench -p sparklio-desk-core --bench fronts` (about 30 s). Request counts
//! are fixed, so the runtime stays bounded; everything is on 127.0.0.1.

#[path = "common/load.rs"]
mod load;

use load::{percentile, row, run};
use serde_json::json;
use sparklio_testkit::OllamaDouble;

const ROUNDS: usize = 2_000;
const WARMUP: usize = 200;
const DOWN_ROUNDS: usize = 500;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let double = OllamaDouble::start().await;
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            "[llm.providers.ollama]\nbase_url = \"{}\"\ntimeout_s = 30\n",
            double.base_url()
        );
        let live =
            sparklio_testkit::app::start_app(&dir, &toml, &[("GENERATOR_MODE", "live")]).await;
        let down_port = sparklio_testkit::free_port();
        let down_toml = format!(
            "[llm.providers.ollama]\nbase_url = \"http://127.0.0.1:{down_port}\"\ntimeout_s = 60\n"
        );
        let down =
            sparklio_testkit::app::start_app(&dir, &down_toml, &[("GENERATOR_MODE", "live")]).await;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .build()
            .unwrap();

        let messages =
            json!([{"role": "user", "content": "루미 무선 이어폰을 한 줄로 소개해 주세요"}]);
        let ollama_body = json!({"model": "qwen2.5:7b", "messages": messages, "stream": false});
        let openai_body = json!({"model": "qwen2.5:7b", "messages": messages});
        let direct = format!("{}/api/chat", double.base_url());
        let series = [
            (
                "direct to the double /api/chat",
                direct.clone(),
                &ollama_body,
            ),
            (
                "Ollama front /api/chat",
                format!("http://{}/api/chat", live.addr),
                &ollama_body,
            ),
            (
                "OpenAI front /v1/chat/completions",
                format!("http://{}/v1/chat/completions", live.addr),
                &openai_body,
            ),
        ];
        println!(
            "Front overhead ({ROUNDS} requests per series, {} CPUs)",
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
        );
        println!(
            "{:<40} {:>9} {:>9} {:>9}",
            "series", "p50 ms", "p99 ms", "req/s"
        );
        for concurrency in [1usize, 64] {
            let mut p50 = Vec::new();
            for (name, url, body) in &series {
                run(&client, url, body, WARMUP, concurrency.min(WARMUP), 200).await;
                let (lat, took) = run(&client, url, body, ROUNDS, concurrency, 200).await;
                row(&format!("{name}, c={concurrency}"), &lat, took);
                p50.push((percentile(&lat, 0.50), percentile(&lat, 0.99)));
            }
            for (i, (name, _, _)) in series.iter().enumerate().skip(1) {
                println!(
                    "{:<40} {:>9.3} {:>9.3}",
                    format!(
                        "overhead of {}, c={concurrency}",
                        name.split(' ').next().unwrap_or("")
                    ),
                    p50[i].0 - p50[0].0,
                    p50[i].1 - p50[0].1
                );
            }
        }
        println!("Fail-fast with Ollama down (connection refused; timeout_s = 60)");
        for (name, path, body) in [
            ("Ollama front /api/chat", "/api/chat", &ollama_body),
            (
                "OpenAI front /v1/chat/completions",
                "/v1/chat/completions",
                &openai_body,
            ),
        ] {
            let url = format!("http://{}{path}", down.addr);
            run(&client, &url, body, 50, 1, 503).await;
            let (lat, took) = run(&client, &url, body, DOWN_ROUNDS, 1, 503).await;
            row(&format!("{name} down, c=1"), &lat, took);
        }
        live.shutdown().await.unwrap();
        down.shutdown().await.unwrap();
    });
}
