//! How fast a sick provider is answered, and what choosing among instances costs.
//!
//! - fail-fast: p50/p99 of `generate`, `health` and `models` against an Ollama and a
//!   ComfyUI that accept TCP and never answer, once their breakers are open; and
//!   against a refused port (no breaker needed);
//! - balancer: one instance vs two instances of the same double at c=1 and c=64.
//!
//! Run: `cargo bench -p sparklio-desk-core --bench resilience` (about 40 s). Request
//! counts are fixed, every target is on 127.0.0.1.

use serde_json::{json, Value};
use sparklio_testkit::comfyui::ComfyDouble;
use sparklio_testkit::fault::Fault;
use sparklio_testkit::OllamaDouble;
use std::time::{Duration, Instant};

const ROUNDS: usize = 1_000;
const BALANCER_ROUNDS: usize = 2_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// `total` requests, `concurrency` at a time; sorted latencies (ms) and the wall time.
async fn run(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
    total: usize,
    concurrency: usize,
    want: u16,
) -> (Vec<f64>, Duration) {
    let started = Instant::now();
    let per = total / concurrency;
    let workers = (0..concurrency).map(|_| {
        let (client, url, body, method) = (
            client.clone(),
            url.to_string(),
            body.cloned(),
            method.clone(),
        );
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                let mut req = client.request(method.clone(), &url);
                if let Some(b) = &body {
                    req = req.json(b);
                }
                let r = req.send().await.expect("send");
                assert_eq!(r.status().as_u16(), want, "{url}");
                let _ = r.bytes().await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        })
    });
    let mut all = Vec::new();
    for w in futures::future::join_all(workers).await {
        all.extend(w.unwrap());
    }
    all.sort_by(f64::total_cmp);
    (all, started.elapsed())
}

fn row(name: &str, v: &[f64], t: Duration) {
    println!(
        "{name:<52} {:>8.3} {:>8.3} {:>9.0}",
        percentile(v, 0.50),
        percentile(v, 0.99),
        v.len() as f64 / t.as_secs_f64()
    );
}

const FAST: &str = "connect_timeout_ms = 500\ncontrol_timeout_ms = 1000\n";
const RES: &str = "probe_interval_ms = 200\nbreaker_failures = 2\nbreaker_open_s = 600\n";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        println!(
            "{:<52} {:>8} {:>8} {:>9}",
            "series (ms)", "p50", "p99", "req/s"
        );

        // ---- fail-fast: hung Ollama and ComfyUI, breakers open ----
        let ollama = OllamaDouble::start().await;
        let comfy = ComfyDouble::start().await;
        let toml = format!(
            "[llm.providers.ollama]\nbase_url = \"{}\"\n{FAST}first_byte_timeout_s = 5\n[llm.providers.ollama.resilience]\n{RES}\
             [media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"{}\"\n{FAST}\
             [media.providers.comfyui.resilience]\n{RES}",
            ollama.base_url(),
            comfy.url()
        );
        let app = sparklio_testkit::app::start_app(&dir, &toml, &[("GENERATOR_MODE", "live")]).await;
        let base = format!("http://{}", app.addr);
        ollama.set_fault(Fault::HangAfterAccept).await;
        comfy.set_fault(Fault::HangAfterAccept).await;
        // The probes find both wedged within a control timeout and a probe period.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let gen = json!({"role": "brief", "task": "marketing_brief", "mode": "text", "payload": {"x": 1}});
        let img = json!({"prompt": "x", "options": {"workflow": "diagnostic", "width": 64, "height": 64}});
        let post = reqwest::Method::POST;
        let get = reqwest::Method::GET;
        for (name, method, path, body, want) in [
            ("hung Ollama, breaker open: generate", post.clone(), "/api/v1/llm/generate", Some(&gen), 503),
            ("hung Ollama, breaker open: llm/health", get.clone(), "/api/v1/llm/health", None, 200),
            ("hung Ollama, breaker open: llm/models", get.clone(), "/api/v1/llm/models", None, 200),
            ("hung ComfyUI, breaker open: image/generate", post.clone(), "/api/v1/media/image/generate", Some(&img), 503),
            ("hung ComfyUI, breaker open: media/health", get.clone(), "/api/v1/media/health", None, 200),
            ("hung ComfyUI, breaker open: media/models", get.clone(), "/api/v1/media/models", None, 200),
        ] {
            let url = format!("{base}{path}");
            run(&client, method.clone(), &url, body, 50, 1, want).await;
            let (v, t) = run(&client, method, &url, body, ROUNDS, 1, want).await;
            row(name, &v, t);
        }
        app.shutdown().await.unwrap();

        // ---- fail-fast: refused port (the service is stopped) ----
        let toml = format!(
            "[llm.providers.ollama]\nbase_url = \"http://127.0.0.1:9\"\n{FAST}\
             [llm.providers.ollama.resilience]\nprobe_interval_ms = 200\nbreaker_failures = 1000\n"
        );
        let dir2 = tempfile::tempdir().unwrap();
        let app = sparklio_testkit::app::start_app(&dir2, &toml, &[("GENERATOR_MODE", "live")]).await;
        let url = format!("http://{}/api/v1/llm/generate", app.addr);
        run(&client, post.clone(), &url, Some(&gen), 50, 1, 503).await;
        let (v, t) = run(&client, post.clone(), &url, Some(&gen), ROUNDS, 1, 503).await;
        row("refused port (breaker kept closed): generate", &v, t);
        app.shutdown().await.unwrap();

        // ---- balancer: one instance vs two ----
        let a = OllamaDouble::start().await;
        let b = OllamaDouble::start().await;
        let one = format!("[llm.providers.ollama]\nbase_url = \"{}\"\n", a.base_url());
        let two = format!(
            "[llm.providers.ollama]\n[[llm.providers.ollama.instances]]\nname = \"a\"\nurl = \"{}\"\n\
             [[llm.providers.ollama.instances]]\nname = \"b\"\nurl = \"{}\"\n",
            a.base_url(),
            b.base_url()
        );
        for (label, toml) in [("one instance", one), ("two instances", two)] {
            let d = tempfile::tempdir().unwrap();
            let app = sparklio_testkit::app::start_app(&d, &toml, &[("GENERATOR_MODE", "live")]).await;
            let url = format!("http://{}/api/v1/llm/generate", app.addr);
            for c in [1usize, 64] {
                run(&client, post.clone(), &url, Some(&gen), 256, c.min(64), 200).await;
                let (v, t) = run(&client, post.clone(), &url, Some(&gen), BALANCER_ROUNDS, c, 200).await;
                row(&format!("{label}, c={c}"), &v, t);
            }
            app.shutdown().await.unwrap();
        }
    });
}
