//! GPU memory arbitration against the Ollama and ComfyUI doubles on a simulated 12 GB card
//! (`[gpu] total_mb`): an SDXL job unloads idle Ollama models first, never while an LLM
//! request is generating; an LLM call for a model that is not loaded asks an idle ComfyUI
//! to free its models, never one that is drawing.

use serde_json::{json, Value};
use sparklio_testkit::ollama::OllamaDouble;
use sparklio_testkit::{ComfyDouble, Fault, TestApp};
use std::time::{Duration, Instant};

const CHECKPOINT: &str = "juggernautXL_ragnarokBy.safetensors";

async fn desk(ollama: &OllamaDouble, comfy: &ComfyDouble, total_mb: u64) -> TestApp {
    comfy.set_checkpoints(&[CHECKPOINT]);
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\ntimeout_s = 30\n\
         [media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"{}\"\ncheckpoint = \"{CHECKPOINT}\"\n\
         [gpu]\narbitration = \"fair\"\ntotal_mb = {total_mb}\nwait_s = 20\n",
        ollama.base_url(),
        comfy.url()
    );
    TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await
}

fn loaded(ollama: &OllamaDouble) -> Vec<String> {
    ollama.state.loaded.lock().unwrap().clone()
}

async fn job(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/api/v1/media/jobs/{id}")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdxl_job_unloads_idle_llm_models_but_waits_while_one_generates() {
    // Two 4.4 GB models loaded on a 12 GB card: 3 GB free, SDXL needs 9 GB.
    let ollama = OllamaDouble::start_with(
        &["qwen2.5:7b", "qwen2.5:14b"],
        &["qwen2.5:7b", "qwen2.5:14b"],
    )
    .await;
    let comfy = ComfyDouble::start().await;
    let app = desk(&ollama, &comfy, 12_288).await;

    // An LLM answer that takes a while: its body trickles.
    ollama
        .set_fault(
            Fault::Trickle {
                bytes: 8,
                interval_ms: 60,
            }
            .on("/api/chat"),
        )
        .await;
    let client = app.client.clone();
    let url = app.url("/api/v1/llm/generate");
    let llm = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"role": "copywriter", "task": "sns", "mode": "text", "payload": {"prompt": "한 줄"}, "options": {"model": "qwen2.5:7b"}}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!llm.is_finished(), "the LLM answer is still streaming");

    let (status, started) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "루미 이어폰 제품 사진", "async": true}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let id = started["job_id"].as_str().unwrap().to_string();

    // While the LLM generates: the job waits and says why; nothing is unloaded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let j = job(&app, &id).await;
        if j["note"]
            .as_str()
            .is_some_and(|n| n.contains("waiting for GPU memory"))
        {
            break;
        }
        if Instant::now() >= deadline {
            let (_, ev) = app.get_json("/api/v1/events?service=gpu").await;
            panic!(
                "the job never said it waits: {j}\nevents: {ev}\nloaded: {:?}",
                loaded(&ollama)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!llm.is_finished());
    assert_eq!(
        loaded(&ollama).len(),
        2,
        "nothing unloaded while generating"
    );

    // The LLM finishes; then the models go and the job runs.
    assert_eq!(llm.await.unwrap(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = loop {
        let j = job(&app, &id).await;
        if j["status"] == "succeeded" || j["status"] == "failed" {
            break j;
        }
        assert!(Instant::now() < deadline, "the job never ended: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(loaded(&ollama).is_empty(), "{:?}", loaded(&ollama));
    let (_, events) = app.get_json("/api/v1/events?service=gpu").await;
    let reasons = events.to_string();
    assert!(
        reasons.contains("llm models unloaded") && reasons.contains("qwen2.5:14b"),
        "{events}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_call_for_an_unloaded_model_frees_an_idle_comfyui_never_a_drawing_one() {
    // Nothing loaded, a 4 GB card: a 4.4 GB model does not fit.
    let ollama = OllamaDouble::start_with(&["qwen2.5:7b", "qwen2.5:14b"], &[]).await;
    let comfy = ComfyDouble::start().await;
    let app = desk(&ollama, &comfy, 4_096).await;
    let frees = |c: &ComfyDouble| {
        c.request_log()
            .iter()
            .filter(|r| r.path.ends_with("/free"))
            .count()
    };

    // A drawing ComfyUI: slow nodes keep the job running for a while.
    comfy.node_ms(400);
    let (status, started) = app
        .post_json(
            "/api/v1/media/image/generate",
            &json!({"prompt": "루미", "async": true, "options": {"workflow": "diagnostic"}}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let id = started["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while job(&app, &id).await["status"] != "running" {
        assert!(Instant::now() < deadline, "the job never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let llm_started = Instant::now();
    let (status, body) = app
        .post_json(
            "/api/v1/llm/generate",
            &json!({"role": "copywriter", "task": "sns", "mode": "text", "payload": {"prompt": "한 줄"}, "options": {"model": "qwen2.5:14b"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The LLM call waited for the drawing: every node had run when it answered. (The
    // job may still be saving its images: that holds no GPU memory.)
    let job_then = job(&app, &id).await;
    assert!(
        job_then["status"] == "succeeded" || job_then["progress"].as_f64() >= Some(0.99),
        "the LLM call did not wait for the drawing: {job_then}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let job_end = loop {
        let j = job(&app, &id).await;
        if j["status"] != "running" {
            break j;
        }
        assert!(Instant::now() < deadline, "the job never ended: {j}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(job_end["status"], "succeeded", "{job_end}");
    assert_eq!(frees(&comfy), 1, "ComfyUI freed once, after its job");
    assert!(llm_started.elapsed() < Duration::from_secs(20));

    let (_, events) = app.get_json("/api/v1/events?service=gpu").await;
    assert!(
        events.to_string().contains("comfyui models freed"),
        "{events}"
    );
    app.stop().await;
}
