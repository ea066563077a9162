//! The product-detail end-to-end check: in mock mode, live against the Ollama and
//! ComfyUI doubles, through the job API, and failing at the right step.

use serde_json::{json, Value};
use sparklio_core::client::{GatewayClient, Timeouts};
use sparklio_core::contracts::contract_for;
use sparklio_core::flow::{self, png_size, FlowEvent, FlowInput, FlowReport};
use sparklio_testkit::comfyui::ComfyDouble;
use sparklio_testkit::ollama::{Behaviour, OllamaDouble};
use sparklio_testkit::TestApp;
use std::time::{Duration, Instant};

const CHECKPOINT: &str = "sd_xl_base_1.0.safetensors";

fn client(app: &TestApp, live: bool) -> GatewayClient {
    GatewayClient::new(
        format!("http://{}", app.addr),
        None,
        Timeouts::for_mode(live),
    )
}

/// Every LLM step's answer satisfies its contract and the image is a real PNG.
async fn assert_complete(app: &TestApp, report: &FlowReport) {
    assert!(report.ok, "{report:#?}");
    let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
    for required in [
        "brand_summary",
        "brief",
        "sections",
        "image_prompt",
        "image",
        "review",
    ] {
        assert!(names.contains(&required), "{names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("copy:")), "{names:?}");
    for step in &report.steps {
        assert_eq!(
            step.status,
            sparklio_core::flow::StepStatus::Succeeded,
            "{step:?}"
        );
        assert!(step.violations.is_empty(), "{step:?}");
    }
    let r = &report.result;
    for (key, role, task) in [
        ("brand_summary", "brand", "brand_summary"),
        ("brief", "brief", "marketing_brief"),
        ("review", "reviewer", "style_check"),
    ] {
        let v = contract_for(role, task).unwrap().violations(&r[key]);
        assert!(v.is_empty(), "{key}: {v:?}");
    }
    assert!(r["sections"].as_array().is_some_and(|s| !s.is_empty()));
    for c in r["copy"].as_array().unwrap() {
        assert!(contract_for("copywriter", "product_detail")
            .unwrap()
            .violations(&c["copy"])
            .is_empty());
    }
    // The image: served by the gateway, a PNG of the hero size (16:9 → 1344x768).
    let image = &r["image"];
    assert_eq!(
        (image["width"].as_u64(), image["height"].as_u64()),
        (Some(1344), Some(768)),
        "{image}"
    );
    assert!(!image["prompt_used"].as_str().unwrap().is_empty());
    let resp = app
        .client
        .get(image["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(png_size(&bytes), Some((1344, 768)));
}

#[tokio::test]
async fn mock_flow_produces_six_valid_results_and_a_real_png() {
    let app = TestApp::start("").await;
    let mut events = Vec::new();
    let report = flow::run(&client(&app, false), &FlowInput::sample(), true, |e| {
        events.push(e);
    })
    .await;
    assert_complete(&app, &report).await;
    assert_eq!(report.generator_mode, "mock");
    assert!(
        report.within_budget,
        "mock budget is 30 s: {}",
        report.total_ms
    );
    // The input reaches the answers (a mock that ignores input hides prompt bugs).
    assert!(
        report.result["brief"]
            .to_string()
            .contains("프로틴플러스 초코맛"),
        "{}",
        report.result["brief"]
    );
    // Every step started and finished, in order.
    let finished: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            FlowEvent::StepFinished { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(finished, (0..report.steps.len()).collect::<Vec<_>>());
    app.stop().await;
}

#[tokio::test]
async fn live_flow_runs_against_the_ollama_and_comfyui_doubles() {
    let ollama = OllamaDouble::start().await;
    let comfy = ComfyDouble::start().await;
    comfy.set_checkpoints(&[CHECKPOINT]);
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\ntimeout_s = 10\n\
         [media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"{}\"\ntimeout_s = 20\npoll_interval_ms = 50\ncheckpoint = \"{CHECKPOINT}\"\n",
        ollama.base_url(),
        comfy.url()
    );
    let app = TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await;
    let report = flow::run(&client(&app, true), &FlowInput::sample(), false, |_| {}).await;
    assert_complete(&app, &report).await;
    assert_eq!(report.generator_mode, "live");
    for step in &report.steps {
        let expected = if step.name == "image" {
            "comfyui"
        } else {
            "ollama"
        };
        assert_eq!(step.provider.as_deref(), Some(expected), "{step:?}");
    }
    // The routed models reached Ollama: strategist/copywriter on 14b, the others on 7b.
    let models: Vec<String> = ollama
        .requests()
        .iter()
        .map(|r| r["model"].as_str().unwrap().to_string())
        .collect();
    assert!(
        models.contains(&"qwen2.5:14b".to_string()) && models.contains(&"qwen2.5:7b".to_string()),
        "{models:?}"
    );
    // Each step passed the previous results on: the brief prompt carries the brand summary.
    let brief_prompt = ollama.requests()[1]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(brief_prompt.contains("brand_summary"), "{brief_prompt}");
    app.stop().await;
}

/// A live check proves the live providers answer: against a Desk in mock mode it used to
/// pass on mock answers and call itself "live". Now its first step fails, saying why,
/// from the command line's client and through the job API alike.
#[tokio::test]
async fn a_live_check_answered_by_the_mock_fails_at_its_first_step() {
    let app = TestApp::start("").await;
    let report = flow::run(&client(&app, true), &FlowInput::sample(), false, |_| {}).await;
    assert!(!report.ok);
    assert_eq!(report.failed_step.as_deref(), Some("brand_summary"));
    assert_eq!(report.steps.len(), 1, "stopped at the first mock answer");
    let error = report.error.clone().unwrap();
    assert_eq!(error["code"], "NOT_LIVE", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("live mode"),
        "{error}"
    );

    let (status, started) = app
        .post_json("/api/v1/flows/product-detail", &json!({"live": true}))
        .await;
    assert_eq!(status, 202, "{started}");
    let id = started["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let (_, job) = app.get_json(&format!("/api/v1/flows/jobs/{id}")).await;
        if job["status"] != "running" && job["status"] != "queued" || Instant::now() > deadline {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["report"]["error"]["code"], "NOT_LIVE", "{job}");
    app.stop().await;
}

#[tokio::test]
async fn a_schema_violation_fails_its_step_after_the_repair_round_trip() {
    let ollama = OllamaDouble::start().await;
    ollama.set(Behaviour::Content(
        r#"{"mission": "only half an answer"}"#.into(),
    ));
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\n",
        ollama.base_url()
    );
    let app = TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await;
    let report = flow::run(&client(&app, true), &FlowInput::sample(), false, |_| {}).await;
    assert!(!report.ok);
    assert_eq!(report.failed_step.as_deref(), Some("brand_summary"));
    assert_eq!(
        report.error.as_ref().unwrap()["code"],
        "LLM_SCHEMA_MISMATCH"
    );
    assert_eq!(
        ollama.requests().len(),
        2,
        "one answer, one repair round-trip"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_provider_going_down_mid_flow_fails_the_right_step_at_once() {
    let ollama = OllamaDouble::start().await;
    let toml = format!(
        "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\ntimeout_s = 60\n",
        ollama.base_url()
    );
    let app = TestApp::start_with(&toml, &[("GENERATOR_MODE", "live")], Default::default()).await;
    let state = app.app.as_ref().unwrap().state.clone();
    let started = Instant::now();
    let mut failed_at = None;
    // After the brief, the supervisor sees the Ollama service crash.
    let report = flow::run(&client(&app, true), &FlowInput::sample(), false, |e| {
        if let FlowEvent::StepFinished { step, .. } = &e {
            if step.name == "brief" {
                state
                    .provider_board
                    .mark_down("ollama", "service ollama-sparklio is crashed (exit code 1)");
                failed_at = Some(Instant::now());
            }
        }
    })
    .await;
    assert!(!report.ok);
    assert_eq!(report.failed_step.as_deref(), Some("sections"));
    let error = report.error.clone().unwrap();
    assert_eq!(error["code"], "PROVIDER_UNAVAILABLE", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("crashed"),
        "{error}"
    );
    // Far below the 60 s provider timeout.
    assert!(failed_at.unwrap().elapsed() < Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(10));
    app.stop().await;
}

#[tokio::test]
async fn the_check_runs_as_a_job_with_progress_events() {
    let app = TestApp::start("").await;
    let (status, started) = app
        .post_json("/api/v1/flows/product-detail", &json!({}))
        .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["generator_mode"], "mock");
    let events_url = app.url(started["events_url"].as_str().unwrap());

    // Read the SSE stream to its end (it closes after the final state).
    let text = tokio::time::timeout(Duration::from_secs(30), async {
        app.client
            .get(&events_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
    .await
    .expect("the event stream ends");
    let jobs: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(jobs.len() >= 2, "{text}");
    let progress: Vec<f64> = jobs
        .iter()
        .map(|j| j["progress"].as_f64().unwrap())
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress goes forward: {progress:?}"
    );
    let last = jobs.last().unwrap();
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(last["report"]["within_budget"], true);

    // The job is kept: by id and in the list.
    let (s, job) = app
        .get_json(&format!(
            "/api/v1/flows/jobs/{}",
            started["job_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["report"]["result"]["image"]["width"], 1344);
    let (_, list) = app.get_json("/api/v1/flows/jobs").await;
    assert_eq!(list["jobs"][0]["id"], started["job_id"]);
    let (s, body) = app.get_json("/api/v1/flows/jobs/flow_nope").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    app.stop().await;
}
